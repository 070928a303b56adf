//! Fuzz target for the AIMux wire envelope decoders.
//!
//! All the checking lives in `aimux_wire::fuzz::decode_any` (framing function, request and
//! response decoders from a slice and from a `Buf`, re-encoding, prefix incompleteness), so
//! the stable test `wire/tests/fuzz_entry.rs` exercises the same oracle on every commit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = aimux_wire::fuzz::decode_any(data);
});
