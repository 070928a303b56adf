//! QUIC variable-length integers (RFC 9000 §16), the only integer encoding in the envelope.
//!
//! The two most significant bits of the first byte give the encoded length (`00` = 1 byte,
//! `01` = 2, `10` = 4, `11` = 8); the remaining bits are the value in network byte order.
//! Values range over `0..=2^62-1`.
//!
//! Encoders here always produce the shortest encoding. Decoders accept longer-than-necessary
//! encodings, as RFC 9000 §16 allows ("values do not need to be encoded on the minimum number
//! of bytes"), so generic QUIC varint writers interoperate; the envelope is therefore not
//! byte-canonical on input, only on output (see SPEC.md §3).

use bytes::BufMut;

/// The largest value a varint can carry: 2^62 - 1.
pub const MAX: u64 = (1 << 62) - 1;

/// Why a varint could not be read from a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The slice ends inside the varint; `needed` more bytes complete it.
    Incomplete {
        /// How many more bytes the varint needs (at least 1).
        needed: usize,
    },
}

/// Number of bytes the shortest encoding of `value` takes, or `None` if `value > MAX`.
#[must_use]
pub const fn encoded_len(value: u64) -> Option<usize> {
    match value {
        0..=0x3f => Some(1),
        0x40..=0x3fff => Some(2),
        0x4000..=0x3fff_ffff => Some(4),
        0x4000_0000..=MAX => Some(8),
        _ => None,
    }
}

/// Length of a varint whose first byte is `first` (RFC 9000 §16: the top two bits).
#[must_use]
pub const fn len_from_first_byte(first: u8) -> usize {
    1 << (first >> 6)
}

/// Reads one varint from the front of `src`, returning the value and the bytes it used.
///
/// Never reads past `src` and never panics; non-minimal encodings are accepted.
pub fn decode(src: &[u8]) -> Result<(u64, usize), VarintError> {
    let Some(&first) = src.first() else {
        return Err(VarintError::Incomplete { needed: 1 });
    };
    let len = len_from_first_byte(first);
    let Some(bytes) = src.get(..len) else {
        return Err(VarintError::Incomplete {
            needed: len.saturating_sub(src.len()),
        });
    };
    // Mask off the two length bits, then fold in the remaining big-endian bytes.
    let mut value = u64::from(first & 0x3f);
    for &b in bytes.iter().skip(1) {
        value = (value << 8) | u64::from(b);
    }
    Ok((value, len))
}

/// Writes the shortest encoding of `value`, or returns `None` (writing nothing) if
/// `value > MAX`. The caller guarantees `buf` has room (see [`encoded_len`]).
pub fn encode<B: BufMut + ?Sized>(buf: &mut B, value: u64) -> Option<usize> {
    let len = encoded_len(value)?;
    match len {
        1 => buf.put_u8(value as u8),
        2 => buf.put_u16(0x4000 | value as u16),
        4 => buf.put_u32(0x8000_0000 | value as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | value),
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, v).unwrap();
        out
    }

    /// The sample encodings from RFC 9000 Appendix A.1.
    #[test]
    fn rfc9000_appendix_a_examples() {
        let cases: [(&str, u64); 5] = [
            ("c2197c5eff14e88c", 151_288_809_941_952_652),
            ("9d7f3e7d", 494_878_333),
            ("7bbd", 15_293),
            ("25", 37),
            // Appendix A.1: the two-byte sequence 0x4025 also decodes to 37 (non-minimal).
            ("4025", 37),
        ];
        for (hex, value) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(decode(&bytes), Ok((value, bytes.len())), "{hex}");
        }
        assert_eq!(
            enc(151_288_809_941_952_652),
            hex::decode("c2197c5eff14e88c").unwrap()
        );
        assert_eq!(enc(494_878_333), hex::decode("9d7f3e7d").unwrap());
        assert_eq!(enc(15_293), hex::decode("7bbd").unwrap());
        assert_eq!(enc(37), vec![0x25]);
    }

    #[test]
    fn boundaries_use_shortest_form() {
        let cases = [
            (0, 1),
            (63, 1),
            (64, 2),
            (16_383, 2),
            (16_384, 4),
            (1_073_741_823, 4),
            (1_073_741_824, 8),
            (MAX, 8),
        ];
        for (v, len) in cases {
            let bytes = enc(v);
            assert_eq!(bytes.len(), len, "{v}");
            assert_eq!(encoded_len(v), Some(len));
            assert_eq!(decode(&bytes), Ok((v, len)));
        }
    }

    #[test]
    fn too_large_values_are_refused() {
        assert_eq!(encoded_len(MAX + 1), None);
        let mut out = Vec::new();
        assert_eq!(encode(&mut out, u64::MAX), None);
        assert!(out.is_empty(), "nothing written on refusal");
    }

    #[test]
    fn truncated_input_reports_missing_bytes() {
        assert_eq!(decode(&[]), Err(VarintError::Incomplete { needed: 1 }));
        assert_eq!(decode(&[0x40]), Err(VarintError::Incomplete { needed: 1 }));
        assert_eq!(
            decode(&[0x80, 0]),
            Err(VarintError::Incomplete { needed: 2 })
        );
        assert_eq!(decode(&[0xc0]), Err(VarintError::Incomplete { needed: 7 }));
    }

    #[test]
    fn non_minimal_encodings_are_accepted() {
        assert_eq!(decode(&[0x40, 0x00]), Ok((0, 2)));
        assert_eq!(decode(&[0x80, 0, 0, 0x05]), Ok((5, 4)));
        assert_eq!(decode(&[0xc0, 0, 0, 0, 0, 0, 0, 0x3f]), Ok((63, 8)));
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        assert_eq!(decode(&[0x25, 0xff, 0xff]), Ok((37, 1)));
    }
}
