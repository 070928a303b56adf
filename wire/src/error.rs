//! Error types: *incomplete* (wait for more bytes) is kept apart from *malformed* (reject).
//!
//! The distinction drives the async glue: `Incomplete` means "read more and call again" and
//! never consumes input; `Malformed` means the stream is unusable and the peer should be told
//! (a `malformed request` outcome) or the stream reset. Every [`Malformed`] variant names the
//! field and the rule that was broken so operators can tell a buggy peer from a hostile one,
//! and [`Malformed::label`] gives a stable snake_case name for metrics and the test vectors.

use std::fmt;

/// A field type together with its name, for error messages: `field 0x03 (destination)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldId {
    /// The field's type number.
    pub ty: u64,
    /// The field's name in SPEC.md, or `"unknown"`.
    pub name: &'static str,
}

impl fmt::Display for FieldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field {:#04x} ({})", self.ty, self.name)
    }
}

/// A payload frame type together with its name, for error messages: `payload frame 0x00
/// (DATA)` (SPEC.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameId {
    /// The frame's type number.
    pub ty: u64,
    /// The frame type's name in SPEC.md, or `"unknown"`.
    pub name: &'static str,
}

impl fmt::Display for FrameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "payload frame {:#04x} ({})", self.ty, self.name)
    }
}

/// Why an envelope was rejected. Shared by decoding and encoding (an encoder refuses exactly
/// what a decoder with the same [`Limits`](crate::Limits) would reject).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The stream does not start with the magic `a1 4d 58`; reported at the first byte
    /// that differs, so garbage is rejected without waiting for more.
    #[error("bad magic: byte {offset} is {byte:#04x}, not an AIMux envelope (expected a1 4d 58)")]
    BadMagic {
        /// Offset of the first wrong byte (0, 1 or 2).
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
    /// The version byte names a version this implementation does not speak.
    #[error("unsupported envelope version {version} (this implementation speaks version 1)")]
    UnsupportedVersion {
        /// The version byte received.
        version: u8,
    },
    /// The kind varint is not in the kind registry.
    #[error("unknown envelope kind {kind:#x}")]
    UnknownKind {
        /// The kind code received.
        kind: u64,
    },
    /// A valid envelope of the other direction (e.g. a response where a request was expected).
    #[error("expected a {expected} envelope, found a {found} envelope")]
    WrongKind {
        /// What the decoder was asked for.
        expected: &'static str,
        /// What the preface said.
        found: &'static str,
    },
    /// The declared header block is larger than `Limits::max_header_block`.
    #[error("header block is {len} bytes, over the {limit}-byte limit")]
    HeaderBlockTooLarge {
        /// Declared length.
        len: u64,
        /// The limit in force.
        limit: usize,
    },
    /// More fields than `Limits::max_fields` (HTTP header fields are counted separately).
    #[error("more than {limit} fields in the header block")]
    TooManyFields {
        /// The limit in force.
        limit: usize,
    },
    /// More HTTP header fields than `Limits::max_http_headers`.
    #[error("more than {limit} HTTP headers")]
    TooManyHeaders {
        /// The limit in force.
        limit: usize,
    },
    /// A field value is longer than `Limits::max_field_value`.
    #[error("{field} is {len} bytes, over the {limit}-byte limit")]
    FieldTooLarge {
        /// The offending field.
        field: FieldId,
        /// Declared (or, when encoding, actual) value length.
        len: u64,
        /// The limit in force.
        limit: usize,
    },
    /// A field's declared length runs past the end of the header block.
    #[error("{field} declares {len} bytes but only {remaining} remain in the header block")]
    FieldOverrun {
        /// The offending field.
        field: FieldId,
        /// Declared value length.
        len: u64,
        /// Bytes left in the header block after the field's type and length.
        remaining: usize,
    },
    /// The header block ends inside a field's type or length varint.
    #[error("header block ends inside a field type or length at block offset {offset}")]
    TruncatedFieldHeader {
        /// Offset of the field's first byte within the header block.
        offset: usize,
    },
    /// A singleton field appears twice.
    #[error("{field} appears more than once")]
    DuplicateField {
        /// The repeated field.
        field: FieldId,
    },
    /// A required field is absent.
    #[error("{field} is missing ({why})")]
    MissingField {
        /// The absent field.
        field: FieldId,
        /// When it is required.
        why: &'static str,
    },
    /// A known field appears where the spec forbids it.
    #[error("{field} is not allowed {context}")]
    NotAllowed {
        /// The offending field.
        field: FieldId,
        /// Where it appeared.
        context: &'static str,
    },
    /// A text field is not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The offending field.
        field: FieldId,
    },
    /// A field value breaks a syntax rule of its field.
    #[error("{field} is invalid: {reason}")]
    InvalidValue {
        /// The offending field.
        field: FieldId,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A structured field value ends before its last element.
    #[error("{field} ends early: {what} is truncated")]
    TruncatedValue {
        /// The offending field.
        field: FieldId,
        /// The element that did not fit.
        what: &'static str,
    },
    /// A structured field value has bytes left over after its last element.
    #[error("{field} has {extra} unexpected trailing byte(s)")]
    TrailingBytes {
        /// The offending field.
        field: FieldId,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The intent's protocol code is not in the protocol registry.
    #[error("{field} has unknown protocol code {code}")]
    UnknownProtocol {
        /// The intent field.
        field: FieldId,
        /// The code received.
        code: u64,
    },
    /// A header name or method reference points past the static table.
    #[error("{field} refers to static table index {index}, which does not exist")]
    UnknownStaticIndex {
        /// The offending field.
        field: FieldId,
        /// The index received.
        index: u64,
    },
    /// An HTTP status outside `100..=599`.
    #[error("{field} holds status {status}, outside 100..=599")]
    InvalidStatus {
        /// The status field.
        field: FieldId,
        /// The status received.
        status: u64,
    },
    /// A framed payload's frame declares more bytes than its limit (SPEC.md §6.3:
    /// `max_payload_frame` for DATA and unknown frames, `max_header_block` for TRAILERS).
    #[error("{frame} declares {len} bytes, over the {limit}-byte limit")]
    PayloadFrameTooLarge {
        /// The offending frame's type.
        frame: FrameId,
        /// Declared (or, when encoding, actual) frame length.
        len: u64,
        /// The limit in force.
        limit: usize,
    },
    /// Bytes follow the TRAILERS frame, which must be the last frame of a framed payload.
    #[error("bytes follow the TRAILERS frame, which must end the payload")]
    FrameAfterTrailers,
    /// The payload ended (FIN) inside a frame: the response was cut off.
    #[error("the framed payload ended inside {inside}: the response is truncated")]
    TruncatedPayload {
        /// Where it ended: "a frame header", "a DATA frame", ...
        inside: &'static str,
    },
    /// The field block of a TRAILERS frame breaks a rule of SPEC.md §5.1 or §5.8.
    #[error("TRAILERS frame: {0}")]
    InvalidTrailers(Box<Malformed>),
    /// A value too large for a varint (encoding only; e.g. `Outcome::Unknown(u64::MAX)`).
    #[error("{field} holds {value}, which does not fit a varint (max 2^62-1)")]
    VarintOutOfRange {
        /// The offending field.
        field: FieldId,
        /// The value.
        value: u64,
    },
}

impl Malformed {
    /// A stable snake_case name for the kind of error, used as a metrics label and as the
    /// `"error"` member of invalid test vectors (SPEC.md §9).
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Malformed::BadMagic { .. } => "bad_magic",
            Malformed::UnsupportedVersion { .. } => "unsupported_version",
            Malformed::UnknownKind { .. } => "unknown_kind",
            Malformed::WrongKind { .. } => "wrong_kind",
            Malformed::HeaderBlockTooLarge { .. } => "header_block_too_large",
            Malformed::TooManyFields { .. } => "too_many_fields",
            Malformed::TooManyHeaders { .. } => "too_many_headers",
            Malformed::FieldTooLarge { .. } => "field_too_large",
            Malformed::FieldOverrun { .. } => "field_overrun",
            Malformed::TruncatedFieldHeader { .. } => "truncated_field_header",
            Malformed::DuplicateField { .. } => "duplicate_field",
            Malformed::MissingField { .. } => "missing_field",
            Malformed::NotAllowed { .. } => "field_not_allowed",
            Malformed::InvalidUtf8 { .. } => "invalid_utf8",
            Malformed::InvalidValue { .. } => "invalid_value",
            Malformed::TruncatedValue { .. } => "truncated_value",
            Malformed::TrailingBytes { .. } => "trailing_bytes",
            Malformed::UnknownProtocol { .. } => "unknown_protocol",
            Malformed::UnknownStaticIndex { .. } => "unknown_static_index",
            Malformed::InvalidStatus { .. } => "invalid_status",
            Malformed::VarintOutOfRange { .. } => "varint_out_of_range",
            Malformed::PayloadFrameTooLarge { .. } => "payload_frame_too_large",
            Malformed::FrameAfterTrailers => "frame_after_trailers",
            Malformed::TruncatedPayload { .. } => "truncated_payload",
            Malformed::InvalidTrailers(_) => "invalid_trailers",
        }
    }
}

/// Why an envelope could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the envelope does: read more bytes and call again.
    /// Nothing was consumed.
    #[error("incomplete envelope: need {needed} more byte(s){}", match total {
        Some(t) => format!(" of a {t}-byte envelope"),
        None => " at least".to_owned(),
    })]
    Incomplete {
        /// More bytes needed: exact when `total` is known, otherwise a lower bound (≥ 1).
        needed: usize,
        /// The whole envelope's length, once the preface has been read.
        total: Option<usize>,
    },
    /// The input is not a valid envelope; the stream cannot be used.
    #[error("malformed envelope: {0}")]
    Malformed(#[from] Malformed),
    /// The `Buf` passed to a `decode` function is split into chunks and its first chunk ends
    /// inside the envelope. Pass a contiguous buffer (`BytesMut`, `Bytes`, `&[u8]`).
    #[error(
        "envelope is split across buffer chunks (first chunk {chunk} of {remaining} bytes); \
         use a contiguous buffer such as BytesMut"
    )]
    Segmented {
        /// Length of the buffer's first chunk.
        chunk: usize,
        /// Total bytes in the buffer.
        remaining: usize,
    },
}

impl DecodeError {
    /// True for [`DecodeError::Incomplete`].
    #[must_use]
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::Incomplete { .. })
    }

    /// The malformation, if this is [`DecodeError::Malformed`].
    #[must_use]
    pub fn malformed(&self) -> Option<&Malformed> {
        match self {
            DecodeError::Malformed(m) => Some(m),
            _ => None,
        }
    }
}

/// Why an envelope could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The envelope breaks a rule or a limit, so a receiver would reject it.
    #[error("refusing to encode: {0}")]
    Invalid(#[from] Malformed),
    /// The destination buffer cannot grow to hold the envelope. Nothing was written.
    #[error("output buffer has room for {remaining} bytes but the envelope needs {needed}")]
    BufferTooSmall {
        /// Bytes the envelope needs.
        needed: usize,
        /// Bytes the buffer can still take.
        remaining: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESTINATION: FieldId = FieldId {
        ty: 0x03,
        name: "destination",
    };

    #[test]
    fn messages_say_what_was_wrong() {
        let e = Malformed::FieldTooLarge {
            field: DESTINATION,
            len: 9000,
            limit: 8192,
        };
        assert_eq!(
            e.to_string(),
            "field 0x03 (destination) is 9000 bytes, over the 8192-byte limit"
        );
        assert_eq!(e.label(), "field_too_large");
        assert_eq!(
            Malformed::BadMagic {
                offset: 0,
                byte: b'G'
            }
            .to_string(),
            "bad magic: byte 0 is 0x47, not an AIMux envelope (expected a1 4d 58)"
        );
    }

    #[test]
    fn incomplete_messages_distinguish_exact_from_lower_bound() {
        let exact = DecodeError::Incomplete {
            needed: 12,
            total: Some(200),
        };
        assert_eq!(
            exact.to_string(),
            "incomplete envelope: need 12 more byte(s) of a 200-byte envelope"
        );
        let bound = DecodeError::Incomplete {
            needed: 1,
            total: None,
        };
        assert_eq!(
            bound.to_string(),
            "incomplete envelope: need 1 more byte(s) at least"
        );
        assert!(bound.is_incomplete());
        assert!(bound.malformed().is_none());
    }

    #[test]
    fn encode_errors_wrap_the_same_reasons() {
        let e = EncodeError::from(Malformed::MissingField {
            field: DESTINATION,
            why: "every request names its destination",
        });
        assert_eq!(
            e.to_string(),
            "refusing to encode: field 0x03 (destination) is missing (every request names its destination)"
        );
    }
}
