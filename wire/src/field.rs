//! The TLV layer: reading and writing `type varint, length varint, value` fields.
//!
//! Decoding is two-pass. [`scan`] walks the header block once without allocating, checking
//! every declared length against the [`Limits`] and the bytes present, counting fields and
//! rejecting duplicate singletons; only then do the envelope decoders walk it again with
//! [`FieldIter`] to build typed values, knowing exact capacities. Encoding measures each
//! field with a [`Counter`] before writing it, so the length prefix is exact and limits are
//! enforced before a byte leaves.

use crate::error::{FieldId, Malformed};
use crate::limits::Limits;
use crate::varint;

/// Field type of an HTTP header, shared by requests and responses: the only repeatable field.
pub(crate) const HTTP_HEADER: u64 = 0x13;

/// Maps a field type to its name in SPEC.md (`"unknown"` if it has none); one per direction.
pub(crate) type Names = fn(u64) -> &'static str;

/// Names a field for error messages.
pub(crate) fn id(names: Names, ty: u64) -> FieldId {
    FieldId {
        ty,
        name: names(ty),
    }
}

/// One field as it sits in the header block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawField<'a> {
    pub(crate) ty: u64,
    pub(crate) value: &'a [u8],
}

/// Iterates over the fields of a header block, checking each declared length.
#[derive(Debug)]
pub(crate) struct FieldIter<'a> {
    block: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    names: Names,
}

impl<'a> FieldIter<'a> {
    pub(crate) fn new(block: &'a [u8], limits: &'a Limits, names: Names) -> Self {
        FieldIter {
            block,
            pos: 0,
            limits,
            names,
        }
    }

    fn read_field(&mut self) -> Result<RawField<'a>, Malformed> {
        let start = self.pos;
        let truncated = Malformed::TruncatedFieldHeader { offset: start };
        let rest = self.block.get(start..).unwrap_or_default();
        let (ty, ty_len) = varint::decode(rest).map_err(|_| truncated.clone())?;
        let rest = rest.get(ty_len..).unwrap_or_default();
        let (len, len_len) = varint::decode(rest).map_err(|_| truncated)?;
        let rest = rest.get(len_len..).unwrap_or_default();
        let field = id(self.names, ty);
        // Check the limit first: it is the more useful message for an oversized field.
        if len > self.limits.max_field_value as u64 {
            return Err(Malformed::FieldTooLarge {
                field,
                len,
                limit: self.limits.max_field_value,
            });
        }
        let overrun = Malformed::FieldOverrun {
            field,
            len,
            remaining: rest.len(),
        };
        let len = usize::try_from(len).map_err(|_| overrun.clone())?;
        let value = rest.get(..len).ok_or(overrun)?;
        // Cannot overflow: every term is bounded by `block.len()`.
        let offset = start.saturating_add(ty_len).saturating_add(len_len);
        self.pos = offset.saturating_add(len);
        Ok(RawField { ty, value })
    }
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Result<RawField<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.block.len() {
            return None;
        }
        let result = self.read_field();
        if result.is_err() {
            // Stop after the first error: the rest of the block cannot be framed.
            self.pos = self.block.len();
        }
        Some(result)
    }
}

/// What [`scan`] learned about a header block.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scan {
    /// Bit `t` is set when known singleton field type `t` (< 64) is present.
    pub(crate) present: u64,
    /// Number of HTTP header fields.
    pub(crate) headers: usize,
}

impl Scan {
    pub(crate) fn has(&self, ty: u64) -> bool {
        ty < 64 && self.present & (1 << ty) != 0
    }
}

/// First pass over a header block: frames every field, enforces the count limits and rejects
/// duplicate singleton fields, without allocating. Known field types are those `names`
/// knows; all of them except [`HTTP_HEADER`] are singletons and are numbered below 64.
pub(crate) fn scan(block: &[u8], limits: &Limits, names: Names) -> Result<Scan, Malformed> {
    let mut scan = Scan::default();
    let mut fields = 0usize;
    for field in FieldIter::new(block, limits, names) {
        let field = field?;
        if field.ty == HTTP_HEADER {
            scan.headers = scan.headers.saturating_add(1);
            if scan.headers > limits.max_http_headers {
                return Err(Malformed::TooManyHeaders {
                    limit: limits.max_http_headers,
                });
            }
            continue;
        }
        fields = fields.saturating_add(1);
        if fields > limits.max_fields {
            return Err(Malformed::TooManyFields {
                limit: limits.max_fields,
            });
        }
        if names(field.ty) != UNKNOWN && field.ty < 64 {
            if scan.has(field.ty) {
                return Err(Malformed::DuplicateField {
                    field: id(names, field.ty),
                });
            }
            scan.present |= 1 << field.ty;
        }
    }
    Ok(scan)
}

/// The name of every field type a registry does not know.
pub(crate) const UNKNOWN: &str = "unknown";

/// Reads the parts of one structured field value, front to back.
#[derive(Debug)]
pub(crate) struct ValueReader<'a> {
    field: FieldId,
    rest: &'a [u8],
}

impl<'a> ValueReader<'a> {
    pub(crate) fn new(field: FieldId, value: &'a [u8]) -> Self {
        ValueReader { field, rest: value }
    }

    fn truncated(&self, what: &'static str) -> Malformed {
        Malformed::TruncatedValue {
            field: self.field,
            what,
        }
    }

    /// A varint; `what` names it in the error if the value ends inside it.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, Malformed> {
        let (v, n) = varint::decode(self.rest).map_err(|_| self.truncated(what))?;
        self.rest = self.rest.get(n..).unwrap_or_default();
        Ok(v)
    }

    /// Exactly `N` bytes.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], Malformed> {
        let (head, tail) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or_else(|| self.truncated(what))?;
        self.rest = tail;
        Ok(*head)
    }

    /// A varint length followed by that many bytes.
    pub(crate) fn prefixed(&mut self, what: &'static str) -> Result<&'a [u8], Malformed> {
        let len = self.varint(what)?;
        let len = usize::try_from(len).map_err(|_| self.truncated(what))?;
        let (bytes, tail) = self
            .rest
            .split_at_checked(len)
            .ok_or_else(|| self.truncated(what))?;
        self.rest = tail;
        Ok(bytes)
    }

    /// Everything left (the last element of a value takes the rest of the field).
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Rejects leftover bytes: a value must end where its last element ends.
    pub(crate) fn finish(self) -> Result<(), Malformed> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Malformed::TrailingBytes {
                field: self.field,
                extra: self.rest.len(),
            })
        }
    }
}

/// Returns `sub` as `Bytes` sharing `shared`'s allocation when `sub` lies inside it (the
/// decoders iterate over the shared copy, so it always does); otherwise copies it.
pub(crate) fn sub_bytes(shared: &bytes::Bytes, sub: &[u8]) -> bytes::Bytes {
    let base = shared.as_ptr() as usize;
    let start = (sub.as_ptr() as usize).checked_sub(base);
    match start.and_then(|s| Some((s, s.checked_add(sub.len())?))) {
        Some((start, end)) if end <= shared.len() => shared.slice(start..end),
        _ => bytes::Bytes::copy_from_slice(sub),
    }
}

/// Validates `bytes` as UTF-8 before anything is allocated for it.
pub(crate) fn utf8(field: FieldId, bytes: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(bytes).map_err(|_| Malformed::InvalidUtf8 { field })
}

/// Where encoded bytes go: a real buffer, or a [`Counter`] that only measures.
pub(crate) trait Sink {
    fn put_slice(&mut self, bytes: &[u8]);

    /// Writes the shortest varint for `v`. Callers validate `v <= varint::MAX` first; an
    /// out-of-range value writes nothing (and the measuring pass would have caught it).
    fn put_varint(&mut self, v: u64) {
        let mut tmp = [0u8; 8];
        let mut out: &mut [u8] = &mut tmp;
        if let Some(n) = varint::encode(&mut out, v) {
            self.put_slice(tmp.get(..n).unwrap_or_default());
        }
    }

    /// A varint length followed by the bytes.
    fn put_prefixed(&mut self, bytes: &[u8]) {
        self.put_varint(bytes.len() as u64);
        self.put_slice(bytes);
    }
}

/// A [`Sink`] that counts bytes instead of storing them.
#[derive(Debug, Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// A [`Sink`] over any `BufMut` whose capacity the caller has already checked.
#[derive(Debug)]
pub(crate) struct Out<'b, B: ?Sized>(pub(crate) &'b mut B);

impl<B: bytes::BufMut + ?Sized> Sink for Out<'_, B> {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.0.put_slice(bytes);
    }
}

/// Writes fields into a header block, measuring each value first so that its length prefix
/// is exact and the [`Limits`] are enforced exactly as [`scan`] enforces them.
pub(crate) struct BlockWriter<'a> {
    sink: &'a mut dyn Sink,
    limits: &'a Limits,
    names: Names,
    fields: usize,
    headers: usize,
}

impl std::fmt::Debug for BlockWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("fields", &self.fields)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl<'a> BlockWriter<'a> {
    pub(crate) fn new(sink: &'a mut dyn Sink, limits: &'a Limits, names: Names) -> Self {
        BlockWriter {
            sink,
            limits,
            names,
            fields: 0,
            headers: 0,
        }
    }

    /// Writes one field whose value `value` produces (called once to measure, once to write).
    pub(crate) fn field(
        &mut self,
        ty: u64,
        value: impl Fn(&mut dyn Sink),
    ) -> Result<(), Malformed> {
        if ty == HTTP_HEADER {
            self.headers = self.headers.saturating_add(1);
            if self.headers > self.limits.max_http_headers {
                return Err(Malformed::TooManyHeaders {
                    limit: self.limits.max_http_headers,
                });
            }
        } else {
            self.fields = self.fields.saturating_add(1);
            if self.fields > self.limits.max_fields {
                return Err(Malformed::TooManyFields {
                    limit: self.limits.max_fields,
                });
            }
        }
        let mut len = Counter::default();
        value(&mut len);
        if len.0 > self.limits.max_field_value {
            return Err(Malformed::FieldTooLarge {
                field: id(self.names, ty),
                len: len.0 as u64,
                limit: self.limits.max_field_value,
            });
        }
        self.sink.put_varint(ty);
        self.sink.put_varint(len.0 as u64);
        value(self.sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(ty: u64) -> &'static str {
        match ty {
            0x01 => "one",
            0x02 => "two",
            HTTP_HEADER => "http-header",
            _ => UNKNOWN,
        }
    }

    fn collect(block: &[u8], limits: &Limits) -> Vec<Result<(u64, Vec<u8>), Malformed>> {
        FieldIter::new(block, limits, names)
            .map(|f| f.map(|f| (f.ty, f.value.to_vec())))
            .collect()
    }

    #[test]
    fn iterates_fields() {
        let block = [0x01, 0x02, b'a', b'b', 0x02, 0x00, 0x40, 0x07, 0x01, b'z'];
        let limits = Limits::default();
        let fields: Vec<_> = FieldIter::new(&block, &limits, names)
            .map(|f| f.unwrap())
            .map(|f| (f.ty, f.value))
            .collect();
        assert_eq!(
            fields,
            vec![
                (1, &b"ab"[..]),
                (2, &b""[..]),
                // Non-minimal type varint 0x4007 is accepted.
                (7, &b"z"[..]),
            ]
        );
    }

    #[test]
    fn truncated_field_header_is_malformed() {
        let limits = Limits::default();
        // Ends inside the type varint.
        assert_eq!(
            collect(&[0x01, 0x00, 0x40], &limits),
            vec![
                Ok((1, vec![])),
                Err(Malformed::TruncatedFieldHeader { offset: 2 })
            ]
        );
        // Ends before the length.
        assert_eq!(
            collect(&[0x01], &limits),
            vec![Err(Malformed::TruncatedFieldHeader { offset: 0 })]
        );
    }

    #[test]
    fn over_limit_length_is_rejected_before_reading() {
        let limits = Limits::default();
        // Declares 2^62-1 bytes: limit error, not overrun, and nothing allocated.
        let block = [0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            collect(&block, &limits),
            vec![Err(Malformed::FieldTooLarge {
                field: FieldId { ty: 2, name: "two" },
                len: varint::MAX,
                limit: 8192,
            })]
        );
    }

    #[test]
    fn overrun_is_rejected() {
        let limits = Limits::default();
        assert_eq!(
            collect(&[0x01, 0x05, b'a'], &limits),
            vec![Err(Malformed::FieldOverrun {
                field: FieldId { ty: 1, name: "one" },
                len: 5,
                remaining: 1,
            })]
        );
    }

    #[test]
    fn scan_counts_and_rejects_duplicates() {
        let limits = Limits::default();
        let ok = [0x01, 0x00, 0x13, 0x00, 0x13, 0x00, 0x3f, 0x00, 0x3f, 0x00];
        let s = scan(&ok, &limits, names).unwrap();
        assert_eq!(s.headers, 2);
        assert!(
            s.has(1) && !s.has(2) && !s.has(0x3f),
            "unknown fields are not recorded"
        );
        assert_eq!(
            scan(&[0x02, 0x00, 0x02, 0x00], &limits, names).unwrap_err(),
            Malformed::DuplicateField {
                field: FieldId { ty: 2, name: "two" }
            }
        );
    }

    #[test]
    fn scan_enforces_counts() {
        let limits = Limits {
            max_fields: 2,
            max_http_headers: 1,
            ..Limits::default()
        };
        let unknowns = [0x30, 0x00, 0x31, 0x00, 0x32, 0x00];
        assert_eq!(
            scan(&unknowns, &limits, names).unwrap_err(),
            Malformed::TooManyFields { limit: 2 }
        );
        let headers = [0x13, 0x00, 0x13, 0x00];
        assert_eq!(
            scan(&headers, &limits, names).unwrap_err(),
            Malformed::TooManyHeaders { limit: 1 }
        );
    }

    #[test]
    fn value_reader_parts_and_trailing_bytes() {
        let f = FieldId { ty: 9, name: "x" };
        let mut r = ValueReader::new(f, &[0x02, b'h', b'i', 0x07, 0xaa]);
        assert_eq!(r.prefixed("text").unwrap(), b"hi");
        assert_eq!(r.varint("n").unwrap(), 7);
        assert_eq!(
            r.finish(),
            Err(Malformed::TrailingBytes { field: f, extra: 1 })
        );

        let mut r = ValueReader::new(f, &[0x05, b'h']);
        assert_eq!(
            r.prefixed("text"),
            Err(Malformed::TruncatedValue {
                field: f,
                what: "text"
            })
        );
        let mut r = ValueReader::new(f, &[1, 2, 3]);
        assert_eq!(
            r.array::<4>("id"),
            Err(Malformed::TruncatedValue {
                field: f,
                what: "id"
            })
        );
    }

    #[test]
    fn sub_bytes_shares_or_copies() {
        let shared = bytes::Bytes::from_static(b"hello world");
        let sub = &shared[6..];
        let b = sub_bytes(&shared, sub);
        assert_eq!(&b[..], b"world");
        assert_eq!(b.as_ptr(), sub.as_ptr(), "zero-copy");
        let other = b"elsewhere".to_vec();
        assert_eq!(&sub_bytes(&shared, &other)[..], b"elsewhere");
        assert!(sub_bytes(&shared, &[]).is_empty());
    }

    #[test]
    fn block_writer_measures_and_limits() {
        let limits = Limits {
            max_field_value: 3,
            ..Limits::default()
        };
        let mut out = Vec::new();
        let mut sink = Out(&mut out);
        let mut w = BlockWriter::new(&mut sink, &limits, names);
        w.field(1, |s| s.put_slice(b"abc")).unwrap();
        assert_eq!(
            w.field(2, |s| s.put_slice(b"abcd")),
            Err(Malformed::FieldTooLarge {
                field: FieldId { ty: 2, name: "two" },
                len: 4,
                limit: 3,
            })
        );
        assert_eq!(out, vec![0x01, 0x03, b'a', b'b', b'c']);
    }
}
