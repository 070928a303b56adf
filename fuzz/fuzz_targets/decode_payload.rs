//! Fuzz target for the framed-payload decoder (SPEC.md §6.3).
//!
//! All the checking lives in `aimux_wire::fuzz::decode_payload` (the input decoded whole,
//! byte by byte and in input-chosen pieces, which must agree; a complete payload re-encoded
//! and decoded back; strict prefixes of the re-encoding never malformed), so the stable test
//! `wire/tests/fuzz_entry.rs` exercises the same oracle on every commit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aimux_wire::fuzz::decode_payload(data);
});
