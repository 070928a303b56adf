//! Fuzz target for the sidecar's protocol sniffer.
//!
//! `aimux_sidecar::sniff::fuzz::sniff_bytes` turns the input into a request (method, target,
//! headers, body), sniffs it whole and cut at several points, and panics only if an invariant
//! breaks (text over the cap or with control characters, undefined flags, a cut inside the
//! first JSON object not flagged `partial`). The stable tests `sidecar/tests/sniff.rs` and
//! `sidecar/tests/sniff_props.rs` run the same oracle on every commit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aimux_sidecar::sniff::fuzz::sniff_bytes(data);
});
