//! Hard caps on what a peer may make us parse or allocate.
//!
//! Every declared length is checked against these limits (and against the bytes actually
//! present) before anything is allocated, so a hostile peer can cost us at most
//! `max_header_block` bytes of buffering per stream. Encoders apply the same limits, so a
//! conforming sender never produces an envelope the receiver would reject (SPEC.md §8).
//! Framed response payloads (SPEC.md §6.3) are bounded the same way, frame by frame.

/// Limits enforced by both the decoders and the encoders.
///
/// Construct with [`Limits::default()`] (or [`Limits::DEFAULT`]) and adjust fields as needed:
/// the struct is `#[non_exhaustive]` so new limits can be added without breaking callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest header block (the bytes after the preface), in bytes. Default 16 KiB.
    pub max_header_block: usize,
    /// Most fields in one header block, counting unknown fields but not HTTP header fields.
    /// Default 64.
    pub max_fields: usize,
    /// Largest value of any single field, in bytes. Default 8 KiB.
    pub max_field_value: usize,
    /// Most HTTP header fields (type 0x13) in one header block. Default 128.
    pub max_http_headers: usize,
    /// Largest DATA (or unknown) frame of a framed payload, in bytes (SPEC.md §6.3). A
    /// TRAILERS frame is bounded by `max_header_block` instead. Default 1 MiB.
    pub max_payload_frame: usize,
}

impl Limits {
    /// The defaults every AIMux component uses unless configured otherwise.
    pub const DEFAULT: Limits = Limits {
        max_header_block: 16 * 1024,
        max_fields: 64,
        max_field_value: 8 * 1024,
        max_http_headers: 128,
        max_payload_frame: 1024 * 1024,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let l = Limits::default();
        assert_eq!(l.max_header_block, 16_384);
        assert_eq!(l.max_fields, 64);
        assert_eq!(l.max_field_value, 8_192);
        assert_eq!(l.max_http_headers, 128);
        assert_eq!(l.max_payload_frame, 1_048_576);
        // A field can never be larger than the block that holds it.
        assert!(l.max_field_value < l.max_header_block);
    }
}
