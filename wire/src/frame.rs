//! The fixed preface and the framing function.
//!
//! Every envelope starts `a1 4d 58` (magic), `01` (version), then the kind varint and the
//! header-block length varint (RFC 9000 §16 varints). The preface alone fixes the envelope's
//! total length, so [`envelope_len`] can tell async glue exactly how many bytes to buffer
//! before calling a full decoder, and the payload starts at a position known without parsing
//! any field. The first byte is not ASCII so that a stray HTTP/1 request line, TLS record or
//! HTTP/2 preface is rejected at byte 0.

use bytes::{Buf, BufMut};

use crate::error::{DecodeError, EncodeError, Malformed};
use crate::field::{BlockWriter, Counter, Names, Out, Sink};
use crate::limits::Limits;
use crate::varint;

/// The three magic bytes every envelope starts with.
pub const MAGIC: [u8; 3] = [0xa1, 0x4d, 0x58];
/// The envelope version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Magic plus version: the fixed-size part of the preface.
const FIXED_LEN: usize = MAGIC.len() + 1;
/// The longest possible preface: magic, version and two 8-byte varints.
pub const MAX_PREFACE_LEN: usize = MAGIC.len() + 1 + 8 + 8;
/// The shortest possible preface: magic, version and two 1-byte varints.
pub const MIN_PREFACE_LEN: usize = MAGIC.len() + 1 + 1 + 1;

/// What a request stream carries after its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// An HTTP request: the envelope carries the request head; the payload is the body.
    Http,
    /// A raw byte stream (e.g. TCP): the payload is the stream itself.
    Stream,
}

/// The kind varint of the preface: which envelope this is (SPEC.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeKind {
    /// A request envelope (kind 0x01 for HTTP, 0x02 for a raw stream).
    Request(RequestKind),
    /// A response envelope (kind 0x03).
    Response,
}

impl EnvelopeKind {
    /// The kind's code on the wire.
    #[must_use]
    pub const fn code(self) -> u64 {
        match self {
            EnvelopeKind::Request(RequestKind::Http) => 0x01,
            EnvelopeKind::Request(RequestKind::Stream) => 0x02,
            EnvelopeKind::Response => 0x03,
        }
    }

    /// The kind for a wire code, if it is one this version defines.
    #[must_use]
    pub const fn from_code(code: u64) -> Option<Self> {
        match code {
            0x01 => Some(EnvelopeKind::Request(RequestKind::Http)),
            0x02 => Some(EnvelopeKind::Request(RequestKind::Stream)),
            0x03 => Some(EnvelopeKind::Response),
            _ => None,
        }
    }

    /// "request" or "response", for error messages.
    #[must_use]
    pub const fn direction(self) -> &'static str {
        match self {
            EnvelopeKind::Request(_) => "request",
            EnvelopeKind::Response => "response",
        }
    }
}

/// What the preface of an envelope says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preface {
    /// The envelope's kind.
    pub kind: EnvelopeKind,
    /// Bytes taken by the preface itself (magic, version, kind, block length).
    pub preface_len: usize,
    /// Bytes in the header block that follows the preface.
    pub header_block_len: usize,
}

impl Preface {
    /// The whole envelope's length: where the payload starts.
    #[must_use]
    pub fn total_len(&self) -> usize {
        // Both terms are bounded (≤ 20 and ≤ the header-block limit); saturate regardless.
        self.preface_len.saturating_add(self.header_block_len)
    }
}

/// Reads the preface from the start of `prefix`, which may be any prefix of the stream.
///
/// Returns [`DecodeError::Incomplete`] (with a lower bound on the bytes still needed) until
/// the whole preface is present, and [`DecodeError::Malformed`] as soon as the bytes present
/// prove the stream is not a valid envelope (wrong magic byte, version or kind, or a header
/// block over `limits.max_header_block`). Never reads past the preface.
pub fn peek_preface(prefix: &[u8], limits: &Limits) -> Result<Preface, DecodeError> {
    // Check the magic and version byte by byte so garbage is rejected at its first byte.
    for (offset, &expected) in MAGIC.iter().chain(&[VERSION]).enumerate() {
        let Some(&byte) = prefix.get(offset) else {
            return Err(DecodeError::Incomplete {
                needed: MIN_PREFACE_LEN.saturating_sub(prefix.len()),
                total: None,
            });
        };
        if byte != expected {
            return Err(if offset < MAGIC.len() {
                Malformed::BadMagic { offset, byte }
            } else {
                Malformed::UnsupportedVersion { version: byte }
            }
            .into());
        }
    }
    let rest = prefix.get(FIXED_LEN..).unwrap_or_default();
    let (kind_code, kind_len) =
        varint::decode(rest).map_err(|varint::VarintError::Incomplete { needed }| {
            // After the kind, at least the 1-byte block length is still to come.
            DecodeError::Incomplete {
                needed: needed.saturating_add(1),
                total: None,
            }
        })?;
    let kind =
        EnvelopeKind::from_code(kind_code).ok_or(Malformed::UnknownKind { kind: kind_code })?;
    let rest = rest.get(kind_len..).unwrap_or_default();
    let (block_len, len_len) =
        varint::decode(rest).map_err(|varint::VarintError::Incomplete { needed }| {
            DecodeError::Incomplete {
                needed,
                total: None,
            }
        })?;
    let too_large = Malformed::HeaderBlockTooLarge {
        len: block_len,
        limit: limits.max_header_block,
    };
    let header_block_len = usize::try_from(block_len).map_err(|_| too_large.clone())?;
    if header_block_len > limits.max_header_block {
        return Err(too_large.into());
    }
    Ok(Preface {
        kind,
        // At most 4 + 8 + 8.
        preface_len: FIXED_LEN.saturating_add(kind_len).saturating_add(len_len),
        header_block_len,
    })
}

/// The framing function: given any prefix of a stream, the total length of the envelope
/// that opens it (preface plus header block), or `Incomplete` if the preface is not all there.
///
/// Cheap (reads at most [`MAX_PREFACE_LEN`] bytes). Async glue reads until this succeeds, then
/// reads exactly that many bytes into one buffer and calls the full decoder.
pub fn envelope_len(prefix: &[u8], limits: &Limits) -> Result<usize, DecodeError> {
    peek_preface(prefix, limits).map(|p| p.total_len())
}

/// Decodes the envelope at the start of `src` with `parse`, which gets the kind and the
/// header block. Returns the value and the envelope's length. Shared by both directions.
pub(crate) fn decode_slice<T>(
    src: &[u8],
    limits: &Limits,
    direction: &'static str,
    parse: impl FnOnce(EnvelopeKind, &[u8]) -> Result<T, Malformed>,
) -> Result<(T, usize), DecodeError> {
    let preface = peek_preface(src, limits)?;
    if preface.kind.direction() != direction {
        return Err(Malformed::WrongKind {
            expected: direction,
            found: preface.kind.direction(),
        }
        .into());
    }
    let total = preface.total_len();
    let Some(block) = src.get(preface.preface_len..total) else {
        return Err(DecodeError::Incomplete {
            needed: total.saturating_sub(src.len()),
            total: Some(total),
        });
    };
    Ok((parse(preface.kind, block)?, total))
}

/// [`decode_slice`] over a `Buf`: decodes from its first chunk and, on success only,
/// advances it exactly past the envelope.
pub(crate) fn decode_buf<B: Buf + ?Sized, T>(
    buf: &mut B,
    limits: &Limits,
    direction: &'static str,
    parse: impl FnOnce(EnvelopeKind, &[u8]) -> Result<T, Malformed>,
) -> Result<T, DecodeError> {
    let chunk = buf.chunk();
    let chunk_len = chunk.len();
    match decode_slice(chunk, limits, direction, parse) {
        Ok((value, len)) => {
            buf.advance(len);
            Ok(value)
        }
        Err(DecodeError::Incomplete { total, .. }) if buf.remaining() > chunk_len => {
            let remaining = buf.remaining();
            match total {
                // Genuinely short: the whole buffer does not hold the envelope yet.
                Some(total) if remaining < total => Err(DecodeError::Incomplete {
                    needed: total.saturating_sub(remaining),
                    total: Some(total),
                }),
                _ => Err(DecodeError::Segmented {
                    chunk: chunk_len,
                    remaining,
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Length of the preface for `kind` and a header block of `block_len` bytes.
fn preface_len(kind: EnvelopeKind, block_len: usize) -> usize {
    let kind_len = varint::encoded_len(kind.code()).unwrap_or(8);
    let len_len = varint::encoded_len(block_len as u64).unwrap_or(8);
    FIXED_LEN.saturating_add(kind_len).saturating_add(len_len)
}

/// Measures and checks the header block that `block` writes, returning the preface-inclusive
/// envelope length and the block length.
fn measure(
    kind: EnvelopeKind,
    limits: &Limits,
    names: Names,
    block: &impl Fn(&mut BlockWriter<'_>) -> Result<(), Malformed>,
) -> Result<(usize, usize), Malformed> {
    let mut counter = Counter::default();
    block(&mut BlockWriter::new(&mut counter, limits, names))?;
    let block_len = counter.0;
    if block_len > limits.max_header_block {
        return Err(Malformed::HeaderBlockTooLarge {
            len: block_len as u64,
            limit: limits.max_header_block,
        });
    }
    Ok((
        preface_len(kind, block_len).saturating_add(block_len),
        block_len,
    ))
}

/// The encoded length of an envelope, after checking it against `limits`.
pub(crate) fn encoded_len(
    kind: EnvelopeKind,
    limits: &Limits,
    names: Names,
    block: impl Fn(&mut BlockWriter<'_>) -> Result<(), Malformed>,
) -> Result<usize, EncodeError> {
    Ok(measure(kind, limits, names, &block)?.0)
}

/// Encodes an envelope: checks everything and measures first, so on error nothing is written.
pub(crate) fn encode<B: BufMut + ?Sized>(
    buf: &mut B,
    kind: EnvelopeKind,
    limits: &Limits,
    names: Names,
    block: impl Fn(&mut BlockWriter<'_>) -> Result<(), Malformed>,
) -> Result<usize, EncodeError> {
    let (total, block_len) = measure(kind, limits, names, &block)?;
    if buf.remaining_mut() < total {
        return Err(EncodeError::BufferTooSmall {
            needed: total,
            remaining: buf.remaining_mut(),
        });
    }
    let mut out = Out(buf);
    out.put_slice(&MAGIC);
    out.put_slice(&[VERSION]);
    out.put_varint(kind.code());
    out.put_varint(block_len as u64);
    block(&mut BlockWriter::new(&mut out, limits, names))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits::DEFAULT;

    #[test]
    fn reads_a_preface() {
        let p = peek_preface(&[0xa1, 0x4d, 0x58, 0x01, 0x01, 0x40, 0xc3, 0xee], &L).unwrap();
        assert_eq!(
            p,
            Preface {
                kind: EnvelopeKind::Request(RequestKind::Http),
                preface_len: 7,
                header_block_len: 0xc3,
            }
        );
        assert_eq!(p.total_len(), 7 + 0xc3);
        assert_eq!(
            envelope_len(&[0xa1, 0x4d, 0x58, 0x01, 0x03, 0x00], &L),
            Ok(6)
        );
    }

    #[test]
    fn every_prefix_of_the_preface_is_incomplete() {
        let preface = [0xa1, 0x4d, 0x58, 0x01, 0x40, 0x02, 0x80, 0x00, 0x00, 0x10];
        for n in 0..preface.len() {
            let e = peek_preface(&preface[..n], &L).unwrap_err();
            let DecodeError::Incomplete { needed, total } = e else {
                panic!("prefix {n}: {e}")
            };
            assert!(
                needed >= 1 && n + needed <= preface.len(),
                "prefix {n}: {needed}"
            );
            assert_eq!(total, None);
        }
        assert_eq!(envelope_len(&preface, &L), Ok(10 + 16));
    }

    #[test]
    fn bad_magic_is_caught_at_its_first_byte() {
        assert_eq!(
            peek_preface(b"G", &L),
            Err(Malformed::BadMagic {
                offset: 0,
                byte: b'G'
            }
            .into())
        );
        assert_eq!(
            peek_preface(&[0xa1, 0x4d, 0x00], &L),
            Err(Malformed::BadMagic { offset: 2, byte: 0 }.into())
        );
    }

    #[test]
    fn version_and_kind_are_checked() {
        assert_eq!(
            peek_preface(&[0xa1, 0x4d, 0x58, 0x02], &L),
            Err(Malformed::UnsupportedVersion { version: 2 }.into())
        );
        assert_eq!(
            peek_preface(&[0xa1, 0x4d, 0x58, 0x01, 0x00, 0x00], &L),
            Err(Malformed::UnknownKind { kind: 0 }.into())
        );
        assert_eq!(
            peek_preface(&[0xa1, 0x4d, 0x58, 0x01, 0x3f], &L),
            Err(Malformed::UnknownKind { kind: 0x3f }.into())
        );
    }

    #[test]
    fn oversized_block_is_rejected_from_the_preface_alone() {
        // Declares a 2^62-1 byte header block; rejected without waiting for it.
        let mut p = vec![0xa1, 0x4d, 0x58, 0x01, 0x01];
        p.extend_from_slice(&[0xff; 8]);
        assert_eq!(
            peek_preface(&p, &L),
            Err(Malformed::HeaderBlockTooLarge {
                len: varint::MAX,
                limit: 16384
            }
            .into())
        );
        // Exactly at the limit is fine.
        let at_limit = [0xa1, 0x4d, 0x58, 0x01, 0x01, 0x80, 0x00, 0x40, 0x00];
        assert_eq!(envelope_len(&at_limit, &L), Ok(9 + 16384));
        let over = [0xa1, 0x4d, 0x58, 0x01, 0x01, 0x80, 0x00, 0x40, 0x01];
        assert!(matches!(
            envelope_len(&over, &L),
            Err(DecodeError::Malformed(Malformed::HeaderBlockTooLarge {
                len: 16385,
                ..
            }))
        ));
    }

    #[test]
    fn kind_codes_round_trip() {
        for code in 0..10 {
            if let Some(k) = EnvelopeKind::from_code(code) {
                assert_eq!(k.code(), code);
            }
        }
        assert_eq!(EnvelopeKind::from_code(4), None);
    }

    #[test]
    fn segmented_buffers_are_reported_not_waited_on() {
        let env = [0xa1, 0x4d, 0x58, 0x01, 0x03, 0x02, 0x01, 0x00];
        let mut chained = (&env[..5]).chain(&env[5..]);
        let r = decode_buf(&mut chained, &L, "response", |_, b| Ok(b.len()));
        assert_eq!(
            r,
            Err(DecodeError::Segmented {
                chunk: 5,
                remaining: 8
            })
        );
        assert_eq!(chained.remaining(), 8, "nothing consumed");
        // Short overall: genuinely incomplete even though segmented.
        let mut short = (&env[..6]).chain(&env[6..7]);
        let r = decode_buf(&mut short, &L, "response", |_, b| Ok(b.len()));
        assert_eq!(
            r,
            Err(DecodeError::Incomplete {
                needed: 1,
                total: Some(8)
            })
        );
    }
}
