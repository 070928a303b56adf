//! The fuzzing oracles: entry points that run the decoders on arbitrary bytes and check
//! they agree with each other and with the encoders.
//!
//! `fuzz/fuzz_targets/decode_envelope.rs` calls [`decode_any`] and
//! `fuzz/fuzz_targets/decode_payload.rs` calls [`decode_payload`]; `wire/tests/fuzz_entry.rs`
//! runs both over every test vector and every prefix of one, so the targets cannot rot. They
//! panic (by design) when an invariant breaks; they must never panic otherwise.

// Panicking is this module's job: a broken invariant must crash the fuzzer.
#![allow(clippy::panic)]

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError, Malformed};
use crate::frame::{Preface, envelope_len, peek_preface};
use crate::http::Header;
use crate::limits::Limits;
use crate::payload::{DataFrames, PayloadDecoder, PayloadFrame, encode_trailers};
use crate::request::RequestEnvelope;
use crate::response::ResponseEnvelope;

/// What [`decode_any`] found in its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The input is a prefix of a possible envelope.
    Incomplete,
    /// The input is not an envelope.
    Malformed,
    /// A valid request envelope of this many bytes opens the input.
    Request(usize),
    /// A valid response envelope of this many bytes opens the input.
    Response(usize),
}

/// The operations both envelope types share, so one oracle checks both.
trait Envelope: Sized + PartialEq + std::fmt::Debug {
    const DIRECTION: &'static str;
    fn decode_slice(src: &[u8], limits: &Limits) -> Result<(Self, usize), DecodeError>;
    fn decode_buf(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError>;
    fn encoded_len(&self, limits: &Limits) -> Result<usize, EncodeError>;
    fn to_bytes(&self, limits: &Limits) -> Result<Bytes, EncodeError>;
}

macro_rules! envelope {
    ($t:ty, $dir:literal) => {
        impl Envelope for $t {
            const DIRECTION: &'static str = $dir;
            fn decode_slice(src: &[u8], limits: &Limits) -> Result<(Self, usize), DecodeError> {
                <$t>::decode_slice(src, limits)
            }
            fn decode_buf(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
                <$t>::decode(buf, limits)
            }
            fn encoded_len(&self, limits: &Limits) -> Result<usize, EncodeError> {
                <$t>::encoded_len(self, limits)
            }
            fn to_bytes(&self, limits: &Limits) -> Result<Bytes, EncodeError> {
                <$t>::to_bytes(self, limits)
            }
        }
    };
}

envelope!(RequestEnvelope, "request");
envelope!(ResponseEnvelope, "response");

/// Runs the framing function and both decoders over `data` with default limits and checks:
/// the decoders agree with the framing function (same length, same incompleteness, same
/// preface errors); decoding from a `Buf` consumes exactly the envelope or nothing; anything
/// decoded re-encodes, decodes back to the same value, is no longer than the input envelope,
/// and every strict prefix of the re-encoding is incomplete.
///
/// # Panics
/// When one of those invariants breaks — that is a bug to report.
pub fn decode_any(data: &[u8]) -> Verdict {
    let limits = Limits::default();
    let preface = peek_preface(data, &limits);
    match (
        check::<RequestEnvelope>(data, &limits, &preface),
        check::<ResponseEnvelope>(data, &limits, &preface),
    ) {
        (Some(n), None) => Verdict::Request(n),
        (None, Some(n)) => Verdict::Response(n),
        (None, None) => match preface {
            Err(DecodeError::Incomplete { .. }) => Verdict::Incomplete,
            Ok(p) if data.len() < p.total_len() => Verdict::Incomplete,
            _ => Verdict::Malformed,
        },
        (Some(_), Some(_)) => panic!("input decoded as both a request and a response"),
    }
}

/// Checks one decoder against the framing result; returns the envelope length on success.
fn check<E: Envelope>(
    data: &[u8],
    limits: &Limits,
    preface: &Result<Preface, DecodeError>,
) -> Option<usize> {
    let result = E::decode_slice(data, limits);

    // The Buf decoder agrees with the slice decoder and consumes exactly the envelope.
    let mut cursor = data;
    let from_buf = E::decode_buf(&mut cursor, limits);
    match (&result, &from_buf) {
        (Ok((a, n)), Ok(b)) => {
            assert_eq!(a, b, "slice and Buf decoders disagree");
            assert_eq!(
                Some(cursor.len()),
                data.len().checked_sub(*n),
                "Buf decoder consumed the wrong amount"
            );
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "slice and Buf decoders disagree");
            assert_eq!(cursor.len(), data.len(), "a failed decode consumed input");
        }
        _ => panic!("slice decoder said {result:?}, Buf decoder said {from_buf:?}"),
    }

    // The decoder agrees with the framing function.
    match preface {
        Err(e) => assert_eq!(
            result.as_ref().err(),
            Some(e),
            "preface error not reproduced"
        ),
        Ok(p) if p.kind.direction() != E::DIRECTION => assert_eq!(
            result.as_ref().err().and_then(DecodeError::malformed),
            Some(&Malformed::WrongKind {
                expected: E::DIRECTION,
                found: p.kind.direction()
            })
        ),
        Ok(p) if data.len() < p.total_len() => assert_eq!(
            result.as_ref().err(),
            Some(&DecodeError::Incomplete {
                needed: p.total_len().saturating_sub(data.len()),
                total: Some(p.total_len())
            })
        ),
        Ok(p) => match &result {
            Ok((_, n)) => assert_eq!(*n, p.total_len(), "decoded length != framed length"),
            Err(e) => assert!(e.malformed().is_some(), "complete envelope judged {e:?}"),
        },
    }

    let (envelope, len) = result.ok()?;
    round_trip(&envelope, len, data, limits);
    Some(len)
}

/// Re-encodes a decoded envelope and checks the result.
fn round_trip<E: Envelope>(envelope: &E, len: usize, data: &[u8], limits: &Limits) {
    let bytes = match envelope.to_bytes(limits) {
        Ok(b) => b,
        Err(e) => panic!("decoded envelope does not re-encode: {e}\n{envelope:?}"),
    };
    assert_eq!(envelope.encoded_len(limits).ok(), Some(bytes.len()));
    assert!(
        bytes.len() <= len,
        "canonical encoding longer than the input envelope"
    );
    assert_eq!(envelope_len(&bytes, limits).ok(), Some(bytes.len()));
    match E::decode_slice(&bytes, limits) {
        Ok((again, n)) => {
            assert_eq!(&again, envelope, "decode(encode(x)) != x");
            assert_eq!(n, bytes.len());
        }
        Err(e) => panic!("re-encoded envelope does not decode: {e}"),
    }
    // Strict prefixes are incomplete (a few, to keep the oracle linear).
    for cut in [0, 1, bytes.len() / 2, bytes.len().saturating_sub(1)] {
        if let Some(prefix) = bytes.get(..cut).filter(|_| cut < bytes.len()) {
            let r = E::decode_slice(prefix, limits);
            assert!(
                matches!(r, Err(DecodeError::Incomplete { .. })),
                "prefix {cut} of {}: {r:?}",
                bytes.len()
            );
        }
    }
    if let Some(prefix) = data.get(..len.saturating_sub(1)) {
        let r = E::decode_slice(prefix, limits);
        assert!(r.as_ref().is_err_and(DecodeError::is_incomplete), "{r:?}");
    }
}

/// What [`decode_payload`] found in its input, read as a whole framed payload (SPEC.md
/// §6.3) that ends where the input ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVerdict {
    /// A complete payload: this many body bytes, with or without trailers.
    Complete {
        /// Body bytes, all DATA frames together.
        body_len: usize,
        /// Whether it ended with a TRAILERS frame.
        trailers: bool,
    },
    /// A prefix of a possible payload, ending inside a frame: truncated if the stream ended
    /// here.
    Truncated,
    /// Not a framed payload, whatever follows.
    Malformed,
}

/// The complete result of decoding one payload: body, trailers, and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    body: Vec<u8>,
    trailers: Option<Vec<Header>>,
    end: Result<(), Malformed>,
}

/// Decodes `data` pushed in pieces that end at `cuts` (ascending offsets), then finishes.
fn decode_in_pieces(data: &[u8], cuts: &[usize], limits: &Limits) -> Decoded {
    let mut decoder = PayloadDecoder::new(limits);
    let mut body = Vec::new();
    let mut trailers = None;
    let mut start = 0;
    for &cut in cuts.iter().chain(&[data.len()]) {
        let cut = cut.clamp(start, data.len());
        decoder.push(Bytes::copy_from_slice(
            data.get(start..cut).unwrap_or_default(),
        ));
        start = cut;
        loop {
            match decoder.next_frame() {
                Ok(Some(PayloadFrame::Data(bytes))) => {
                    assert!(!bytes.is_empty(), "empty DATA piece");
                    assert!(trailers.is_none(), "DATA after the trailers");
                    body.extend_from_slice(&bytes);
                }
                Ok(Some(PayloadFrame::Trailers(t))) => {
                    assert!(trailers.is_none(), "two trailer sections");
                    assert!(decoder.has_trailers());
                    trailers = Some(t);
                }
                Ok(None) => break,
                Err(e) => {
                    // Failed for good: the same error again, whatever else arrives.
                    decoder.push(Bytes::from_static(b"\x00\x00"));
                    assert_eq!(decoder.next_frame(), Err(e.clone()));
                    assert_eq!(decoder.finish(), Err(e.clone()));
                    return Decoded {
                        body,
                        trailers,
                        end: Err(e),
                    };
                }
            }
        }
    }
    Decoded {
        body,
        trailers,
        end: decoder.finish(),
    }
}

/// Decodes `data` as a framed payload with default limits, pushed whole, byte by byte
/// (for short inputs) and in pieces cut where the input says, and checks: every way of
/// splitting the input gives the same body, trailers and verdict; a complete payload
/// re-encodes (DATA frames and a TRAILERS frame), decodes back to the same body and
/// trailers, and every strict prefix of the re-encoding decodes without an error, ending
/// cleanly exactly at frame boundaries.
///
/// # Panics
/// When one of those invariants breaks — that is a bug to report.
pub fn decode_payload(data: &[u8]) -> PayloadVerdict {
    let limits = Limits::default();
    let whole = decode_in_pieces(data, &[], &limits);
    // Cut points chosen by the input itself, so the fuzzer explores them.
    let mut cuts: Vec<usize> = data
        .iter()
        .take(8)
        .scan(0usize, |at, &b| {
            *at = at.saturating_add(usize::from(b));
            Some(at.checked_rem(data.len()).unwrap_or(0))
        })
        .collect();
    cuts.sort_unstable();
    let split = decode_in_pieces(data, &cuts, &limits);
    assert_eq!(split, whole, "splitting the input changed the result");
    if data.len() <= 512 {
        let every: Vec<usize> = (1..data.len()).collect();
        let bytewise = decode_in_pieces(data, &every, &limits);
        assert_eq!(bytewise, whole, "byte-by-byte decoding changed the result");
    }
    match &whole.end {
        Ok(()) => {
            round_trip_payload(&whole, &limits);
            PayloadVerdict::Complete {
                body_len: whole.body.len(),
                trailers: whole.trailers.is_some(),
            }
        }
        Err(Malformed::TruncatedPayload { .. }) => PayloadVerdict::Truncated,
        Err(_) => PayloadVerdict::Malformed,
    }
}

/// Re-encodes a decoded payload canonically and checks it decodes to the same thing, and
/// that its strict prefixes are truncated, never malformed.
fn round_trip_payload(decoded: &Decoded, limits: &Limits) {
    let mut bytes = BytesMut::new();
    let mut boundaries = vec![0];
    let frames = match DataFrames::new(Bytes::copy_from_slice(&decoded.body), limits) {
        Ok(frames) => frames,
        Err(e) => panic!("a decoded body does not re-encode: {e}"),
    };
    for (header, data) in frames {
        bytes.extend_from_slice(header.as_slice());
        bytes.extend_from_slice(&data);
        boundaries.push(bytes.len());
    }
    if let Some(trailers) = &decoded.trailers {
        if let Err(e) = encode_trailers(&mut bytes, trailers, limits) {
            panic!("decoded trailers do not re-encode: {e}\n{trailers:?}");
        }
        boundaries.push(bytes.len());
    }
    let again = decode_in_pieces(&bytes, &[], limits);
    assert_eq!(&again, decoded, "decode(encode(x)) != x");
    // Strict prefixes (a few, to keep the oracle linear): never malformed, and complete
    // exactly at frame boundaries.
    let len = bytes.len();
    for cut in [
        1,
        2,
        3,
        len / 2,
        len.saturating_sub(2),
        len.saturating_sub(1),
    ] {
        let Some(prefix) = bytes.get(..cut).filter(|_| cut < len) else {
            continue;
        };
        let r = decode_in_pieces(prefix, &[], limits);
        match r.end {
            Ok(()) => assert!(boundaries.contains(&cut), "prefix {cut} of {len} complete"),
            Err(Malformed::TruncatedPayload { .. }) => {
                assert!(
                    !boundaries.contains(&cut),
                    "prefix {cut} of {len} truncated"
                );
            }
            Err(e) => panic!("prefix {cut} of {len} of a valid payload: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_simple_inputs() {
        assert_eq!(decode_any(&[]), Verdict::Incomplete);
        assert_eq!(decode_any(b"GET / HTTP/1.1\r\n"), Verdict::Malformed);
        assert_eq!(
            decode_any(&[0xa1, 0x4d, 0x58, 0x01, 0x02, 0x04]),
            Verdict::Incomplete
        );
        let stream = [
            0xa1, 0x4d, 0x58, 0x01, 0x02, 0x04, 0x03, 0x02, b'd', b'b', 0xff,
        ];
        assert_eq!(decode_any(&stream), Verdict::Request(10));
        let response = [0xa1, 0x4d, 0x58, 0x01, 0x03, 0x03, 0x01, 0x01, 0x00];
        assert_eq!(decode_any(&response), Verdict::Response(9));
        assert_eq!(
            decode_any(&[0xa1, 0x4d, 0x58, 0x01, 0x03, 0x00]),
            Verdict::Malformed
        );
    }

    #[test]
    fn classifies_simple_payloads() {
        assert_eq!(
            decode_payload(&[]),
            PayloadVerdict::Complete {
                body_len: 0,
                trailers: false
            }
        );
        assert_eq!(
            decode_payload(b"\x00\x02hi\x01\x00"),
            PayloadVerdict::Complete {
                body_len: 2,
                trailers: true
            }
        );
        assert_eq!(decode_payload(b"\x00\x05hi"), PayloadVerdict::Truncated);
        assert_eq!(decode_payload(b"\x01\x00\x00"), PayloadVerdict::Malformed);
    }

    #[test]
    fn payload_oracle_survives_a_deterministic_byte_soup() {
        let mut x: u32 = 0x9e37_79b9;
        for len in 0..300 {
            let mut data = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Mostly small values: frame types 0 and 1, short lengths, header bytes.
                data.push(match x % 5 {
                    0 => 0x00,
                    1 => 0x01,
                    2 => 0x13,
                    _ => (x >> 8) as u8 % 24,
                });
            }
            let _ = decode_payload(&data);
        }
    }

    #[test]
    fn survives_a_deterministic_byte_soup() {
        // A cheap smoke test; the real coverage is cargo-fuzz and the proptests.
        let mut x: u32 = 0x1234_5678;
        for len in 0..400 {
            let mut data = vec![0xa1, 0x4d, 0x58, 0x01];
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                data.push((x % 7) as u8 * 0x13 % 64);
            }
            let _ = decode_any(&data);
        }
    }
}
