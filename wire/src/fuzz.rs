//! The fuzzing oracle: one entry point that runs every decoder on arbitrary bytes and checks
//! they agree with each other and with the encoders.
//!
//! `fuzz/fuzz_targets/decode_envelope.rs` calls [`decode_any`], and `wire/tests/fuzz_entry.rs`
//! runs it over every test vector and every prefix of one, so the target cannot rot. It
//! panics (by design) when an invariant breaks; it must never panic otherwise.

// Panicking is this module's job: a broken invariant must crash the fuzzer.
#![allow(clippy::panic)]

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError, Malformed};
use crate::frame::{Preface, envelope_len, peek_preface};
use crate::limits::Limits;
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
