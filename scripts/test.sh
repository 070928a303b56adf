#!/usr/bin/env bash
# The whole AIMux test suite, exactly as CI runs it (.ci/run calls this script).
#
# Installs what the tests need (Debian packages when run as root), then: formatting,
# clippy with warnings as errors, every test of every crate, and the architectural checks.
#
# AIMUX_REQUIRE_PRIVILEGED_TESTS=1 (set by .ci/run) turns a skipped privileged test
# (network namespaces, nftables) into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- System packages -------------------------------------------------------------------
# command → Debian package providing it
declare -A packages=([openssl]=openssl [ip]=iproute2 [nginx]=nginx)
missing=()
for cmd in "${!packages[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "installing Debian packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "missing: ${missing[*]}; install them (as root: apt-get install ${missing[*]}) and re-run" >&2
        exit 1
    fi
fi

# --- Rust ------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the wire crate stays sans-I/O (no tokio in its dependency tree)"
if cargo tree -p aimux-wire -e normal --locked | grep -q '\btokio\b'; then
    echo "aimux-wire depends on tokio; the envelope codec must not do I/O" >&2
    exit 1
fi

step "cargo test (every crate, unit, integration and doc tests)"
cargo test --workspace --locked
