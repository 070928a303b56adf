//! The AIMux wire envelope: the small binary header that opens every QUIC stream between a
//! sidecar and a gateway, in both directions. Normative description: `wire/SPEC.md`.
//!
//! This crate is sans-I/O: it turns bytes into typed envelopes and back, on `bytes::Buf` /
//! `BufMut`, and never touches a socket or a runtime. The async glue around it is:
//!
//! 1. read from the stream until [`envelope_len`] stops returning
//!    [`DecodeError::Incomplete`] (it needs at most [`MAX_PREFACE_LEN`] bytes);
//! 2. read until that many bytes are buffered in one `BytesMut`;
//! 3. call [`RequestEnvelope::decode`] (or [`ResponseEnvelope::decode`]), which advances the
//!    buffer exactly past the envelope; what is left is the start of the payload, which runs
//!    to the end of the stream.
//!
//! ```
//! use aimux_wire::{
//!     envelope_len, HttpRequestHead, Intent, Limits, Protocol, RequestEnvelope,
//! };
//!
//! let limits = Limits::default();
//! let mut request = RequestEnvelope::http(
//!     "tools",
//!     HttpRequestHead::new("POST", "127.0.0.1:15002", "/mcp")
//!         .with_header("content-type", "application/json"),
//! );
//! request.intent = Some(Intent::new(Protocol::Mcp, "tools/call", "search_web"));
//!
//! let mut stream = bytes::BytesMut::new();
//! let n = request.encode(&mut stream, &limits)?;
//! stream.extend_from_slice(br#"{"jsonrpc":"2.0"}"#); // the payload follows
//!
//! assert_eq!(envelope_len(&stream[..3], &limits).unwrap_err().is_incomplete(), true);
//! assert_eq!(envelope_len(&stream, &limits)?, n);
//! let decoded = RequestEnvelope::decode(&mut stream, &limits)?;
//! assert_eq!(decoded, request);
//! assert_eq!(&stream[..], br#"{"jsonrpc":"2.0"}"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A response envelope with `framed_payload` set (only in answer to a request with
//! `te_trailers`) is followed by payload frames instead of raw body bytes, so that HTTP
//! trailers can follow the body: see [`PayloadDecoder`] and SPEC.md §6.3.
//!
//! Decoders never panic and never allocate on the strength of a declared length before
//! checking it against [`Limits`] and the bytes present; encoders refuse to produce what a
//! decoder with the same limits would reject.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Peer data must never be able to panic this crate (tests may).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::arithmetic_side_effects
    )
)]

pub mod codes;
mod error;
mod field;
mod frame;
pub mod fuzz;
mod http;
mod intent;
mod limits;
mod payload;
mod request;
mod response;
pub mod table;
mod text;
mod trace;
pub mod varint;

pub use error::{DecodeError, EncodeError, FieldId, FrameId, Malformed};
pub use frame::{
    EnvelopeKind, MAGIC, MAX_PREFACE_LEN, MIN_PREFACE_LEN, Preface, RequestKind, VERSION,
    envelope_len, peek_preface,
};
pub use http::{Header, HttpRequestHead, HttpResponseHead};
pub use intent::{Intent, IntentFlags, Protocol, UnknownProtocolName};
pub use limits::Limits;
pub use payload::{
    DataFrames, FrameHeader, MAX_FRAME_HEADER_LEN, PayloadDecoder, PayloadFrame, encode_trailers,
    frame_type, trailers_frame,
};
pub use request::{MAX_REQUEST_ID_LEN, RequestEnvelope, RequestId};
pub use response::{Outcome, ResponseEnvelope};
pub use text::MAX_SPIFFE_ID_LEN;
pub use trace::{TRACEPARENT_LEN, TraceContext};

/// Field type numbers (SPEC.md §5.1 and §6.1). Request and response fields are separate
/// registries; `HTTP_HEADER` is the same in both.
pub mod field_type {
    /// Request: claimed SPIFFE ID (UTF-8).
    pub const IDENTITY: u64 = 0x01;
    /// Request: intent (protocol, flags, operation, target).
    pub const INTENT: u64 = 0x02;
    /// Request: destination service name (UTF-8). Required.
    pub const DESTINATION: u64 = 0x03;
    /// Request: binary W3C traceparent (26 bytes).
    pub const TRACEPARENT: u64 = 0x04;
    /// Request: W3C tracestate (printable ASCII).
    pub const TRACESTATE: u64 = 0x05;
    /// Request: request id (1 to 64 bytes).
    pub const REQUEST_ID: u64 = 0x06;
    /// Request: empty; the requester accepts a framed response payload with trailers
    /// (SPEC.md §5.9). HTTP requests only.
    pub const TE_TRAILERS: u64 = 0x07;
    /// Request: HTTP method, authority and path. Required in HTTP requests.
    pub const HTTP_REQUEST_LINE: u64 = 0x10;
    /// Response: outcome code (varint). Required.
    pub const OUTCOME: u64 = 0x01;
    /// Response: reason text (UTF-8).
    pub const REASON: u64 = 0x02;
    /// Response: HTTP status (varint, 100..=599).
    pub const HTTP_STATUS: u64 = 0x10;
    /// Response: empty; the payload that follows is framed (SPEC.md §6.3).
    pub const FRAMED_PAYLOAD: u64 = 0x14;
    /// Both: one HTTP header (repeatable, in order).
    pub const HTTP_HEADER: u64 = crate::field::HTTP_HEADER;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_type_numbers_match_the_registries() {
        use field_type as ty;
        for (t, name) in [
            (ty::IDENTITY, "identity"),
            (ty::INTENT, "intent"),
            (ty::DESTINATION, "destination"),
            (ty::TRACEPARENT, "traceparent"),
            (ty::TRACESTATE, "tracestate"),
            (ty::REQUEST_ID, "request-id"),
            (ty::TE_TRAILERS, "te-trailers"),
            (ty::HTTP_REQUEST_LINE, "http-request-line"),
            (ty::HTTP_HEADER, "http-header"),
        ] {
            assert_eq!(request::names(t), name);
        }
        for (t, name) in [
            (ty::OUTCOME, "outcome"),
            (ty::REASON, "reason"),
            (ty::HTTP_STATUS, "http-status"),
            (ty::HTTP_HEADER, "http-header"),
            (ty::FRAMED_PAYLOAD, "framed-payload"),
        ] {
            assert_eq!(response::names(t), name);
        }
        // Singleton duplicate detection keys on a 64-bit mask: known types stay below 64.
        for t in 0..0x4000 {
            if request::names(t) != field::UNKNOWN || response::names(t) != field::UNKNOWN {
                assert!(
                    t < 64,
                    "known field type {t:#x} is outside the duplicate mask"
                );
            }
        }
    }

    #[test]
    fn preface_constants_agree() {
        assert_eq!(MIN_PREFACE_LEN, 6);
        assert_eq!(MAX_PREFACE_LEN, 20);
        assert_eq!(MAGIC, [0xa1, b'M', b'X']);
    }
}
