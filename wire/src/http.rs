//! HTTP request and response heads, and the encoding of their fields.
//!
//! A request head travels as one `http-request-line` field (method, authority, path) plus one
//! `http-header` field per header, in order; a response head as `http-status` plus
//! `http-header` fields. One field per header keeps the per-field limit meaningful per header
//! and preserves order and repeated names for free. Names are checked as lower-case RFC 9110
//! tokens; values are bytes (not necessarily UTF-8) without NUL, CR or LF (RFC 9110 §5.5),
//! because the gateway re-serializes them into HTTP/1.1 where CR/LF would split the message.

use std::borrow::Cow;

use bytes::Bytes;

use crate::error::{FieldId, Malformed};
use crate::field::{Sink, ValueReader};
use crate::table;

/// One HTTP header: a lower-case name and a byte-string value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Lower-case RFC 9110 token. Static-table names are borrowed, never allocated.
    pub name: Cow<'static, str>,
    /// The field value: any bytes except NUL, CR and LF.
    pub value: Bytes,
}

impl Header {
    /// A header from a name and a value (validated when encoded).
    pub fn new(name: impl Into<Cow<'static, str>>, value: impl Into<Bytes>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The head of an HTTP request carried by an HTTP-kind request envelope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpRequestHead {
    /// Request method, an RFC 9110 token (case-sensitive), e.g. `POST`.
    pub method: Cow<'static, str>,
    /// Authority (`host[:port]`), possibly empty; visible ASCII without `/ ? # @`.
    pub authority: String,
    /// Path and query in origin form (`/mcp?x=1`), or `*`; visible ASCII.
    pub path: String,
    /// Headers in order; names may repeat.
    pub headers: Vec<Header>,
}

impl HttpRequestHead {
    /// A head without headers.
    pub fn new(
        method: impl Into<Cow<'static, str>>,
        authority: impl Into<String>,
        path: impl Into<String>,
    ) -> Self {
        HttpRequestHead {
            method: method.into(),
            authority: authority.into(),
            path: path.into(),
            headers: Vec::new(),
        }
    }

    /// Appends a header (builder style).
    #[must_use]
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The value of the first header called `name` (lower-case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        first(&self.headers, name)
    }
}

/// The head of an HTTP response carried by a response envelope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpResponseHead {
    /// Status code, `100..=599`.
    pub status: u16,
    /// Headers in order; names may repeat.
    pub headers: Vec<Header>,
}

impl HttpResponseHead {
    /// A head without headers.
    #[must_use]
    pub fn new(status: u16) -> Self {
        HttpResponseHead {
            status,
            headers: Vec::new(),
        }
    }

    /// Appends a header (builder style).
    #[must_use]
    pub fn with_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Bytes>,
    ) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// The value of the first header called `name` (lower-case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        first(&self.headers, name)
    }
}

fn first<'h>(headers: &'h [Header], name: &str) -> Option<&'h Bytes> {
    headers.iter().find(|h| h.name == name).map(|h| &h.value)
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn invalid(field: FieldId, reason: &'static str) -> Malformed {
    Malformed::InvalidValue { field, reason }
}

fn check_name(field: FieldId, name: &[u8]) -> Result<(), Malformed> {
    if name.is_empty() {
        return Err(invalid(field, "empty header name"));
    }
    if !name.iter().all(|&b| is_tchar(b) && !b.is_ascii_uppercase()) {
        return Err(invalid(
            field,
            "header name is not a lower-case RFC 9110 token",
        ));
    }
    Ok(())
}

fn check_value(field: FieldId, value: &[u8]) -> Result<(), Malformed> {
    if value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(invalid(field, "header value contains NUL, CR or LF"));
    }
    Ok(())
}

fn check_method(field: FieldId, method: &[u8]) -> Result<(), Malformed> {
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(invalid(field, "method is not an RFC 9110 token"));
    }
    Ok(())
}

fn check_authority(field: FieldId, authority: &[u8]) -> Result<(), Malformed> {
    if !authority
        .iter()
        .all(|&b| b.is_ascii_graphic() && !b"/?#@".contains(&b))
    {
        return Err(invalid(
            field,
            "authority must be visible ASCII without '/', '?', '#' or '@'",
        ));
    }
    Ok(())
}

fn check_path(field: FieldId, path: &[u8]) -> Result<(), Malformed> {
    if !(path.first() == Some(&b'/') || path == b"*") {
        return Err(invalid(field, "path must start with '/' or be '*'"));
    }
    if !path.iter().all(u8::is_ascii_graphic) {
        return Err(invalid(field, "path must be visible ASCII"));
    }
    Ok(())
}

/// Checks a header before encoding, with the same rules as decoding.
pub(crate) fn check_header(field: FieldId, h: &Header) -> Result<(), Malformed> {
    check_name(field, h.name.as_bytes())?;
    check_value(field, &h.value)
}

/// Checks a request line before encoding, with the same rules as decoding.
pub(crate) fn check_request_line(field: FieldId, head: &HttpRequestHead) -> Result<(), Malformed> {
    check_method(field, head.method.as_bytes())?;
    check_authority(field, head.authority.as_bytes())?;
    check_path(field, head.path.as_bytes())
}

/// Checks a status before encoding.
pub(crate) fn check_status(field: FieldId, status: u16) -> Result<(), Malformed> {
    if (100..=599).contains(&status) {
        Ok(())
    } else {
        Err(Malformed::InvalidStatus {
            field,
            status: u64::from(status),
        })
    }
}

/// `http-header` value: name index (0 = literal name follows, length-prefixed), then the
/// value as the rest of the field, unless the index names a whole pair (then nothing).
pub(crate) fn write_header(s: &mut dyn Sink, h: &Header) {
    match table::index_of(&h.name, &h.value) {
        Some((index, true)) => s.put_varint(index),
        Some((index, false)) => {
            s.put_varint(index);
            s.put_slice(&h.value);
        }
        None => {
            s.put_varint(0);
            s.put_prefixed(h.name.as_bytes());
            s.put_slice(&h.value);
        }
    }
}

/// Decodes an `http-header` value. `value_bytes` turns a sub-slice of the field into
/// `Bytes` (a zero-copy slice of the decoder's shared block copy).
pub(crate) fn read_header(
    field: FieldId,
    value: &[u8],
    value_bytes: impl Fn(&[u8]) -> Bytes,
) -> Result<Header, Malformed> {
    let mut r = ValueReader::new(field, value);
    let index = r.varint("header name index")?;
    let (name, pair_value) = if index == 0 {
        let literal = r.prefixed("literal header name")?;
        check_name(field, literal)?;
        let name = std::str::from_utf8(literal).map_err(|_| Malformed::InvalidUtf8 { field })?;
        (Cow::Owned(name.to_owned()), None)
    } else {
        let (name, value) =
            table::entry(index).ok_or(Malformed::UnknownStaticIndex { field, index })?;
        (Cow::Borrowed(name), value)
    };
    let value = match pair_value {
        Some(v) => {
            r.finish()?;
            Bytes::from_static(v.as_bytes())
        }
        None => {
            let v = r.rest();
            check_value(field, v)?;
            value_bytes(v)
        }
    };
    Ok(Header { name, value })
}

/// `http-request-line` value: method index (0 = literal method follows, length-prefixed),
/// authority (length-prefixed), then the path as the rest of the field.
pub(crate) fn write_request_line(s: &mut dyn Sink, head: &HttpRequestHead) {
    match table::method_index(&head.method) {
        Some(index) => s.put_varint(index),
        None => {
            s.put_varint(0);
            s.put_prefixed(head.method.as_bytes());
        }
    }
    s.put_prefixed(head.authority.as_bytes());
    s.put_slice(head.path.as_bytes());
}

/// Decodes an `http-request-line` value into a head without headers.
pub(crate) fn read_request_line(
    field: FieldId,
    value: &[u8],
) -> Result<HttpRequestHead, Malformed> {
    let mut r = ValueReader::new(field, value);
    let index = r.varint("method index")?;
    let method = if index == 0 {
        let literal = r.prefixed("literal method")?;
        check_method(field, literal)?;
        // Tokens are ASCII, so this cannot fail; map the error anyway rather than panic.
        let m = std::str::from_utf8(literal).map_err(|_| Malformed::InvalidUtf8 { field })?;
        Cow::Owned(m.to_owned())
    } else {
        Cow::Borrowed(table::method(index).ok_or(Malformed::UnknownStaticIndex { field, index })?)
    };
    let authority = r.prefixed("authority")?;
    check_authority(field, authority)?;
    let path = r.rest();
    check_path(field, path)?;
    let ascii = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(HttpRequestHead {
        method,
        authority: ascii(authority),
        path: ascii(path),
        headers: Vec::new(),
    })
}

/// Decodes an `http-status` value: one varint, `100..=599`, nothing after it.
pub(crate) fn read_status(field: FieldId, value: &[u8]) -> Result<u16, Malformed> {
    let mut r = ValueReader::new(field, value);
    let status = r.varint("status")?;
    r.finish()?;
    match u16::try_from(status) {
        Ok(s) if (100..=599).contains(&s) => Ok(s),
        _ => Err(Malformed::InvalidStatus { field, status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::Out;

    const F: FieldId = FieldId {
        ty: 0x13,
        name: "http-header",
    };

    fn enc_header(h: &Header) -> Vec<u8> {
        let mut v = Vec::new();
        write_header(&mut Out(&mut v), h);
        v
    }

    fn dec_header(v: &[u8]) -> Result<Header, Malformed> {
        read_header(F, v, Bytes::copy_from_slice)
    }

    #[test]
    fn header_encodings_pick_the_cheapest_form() {
        let pair = Header::new("content-type", "application/json");
        assert_eq!(enc_header(&pair), vec![51]);
        let named = Header::new("content-type", "text/html");
        assert_eq!(enc_header(&named), b"\x08text/html".to_vec());
        let literal = Header::new("x-k", "v");
        assert_eq!(enc_header(&literal), b"\x00\x03x-kv".to_vec());
        for h in [pair, named, literal, Header::new("x-empty", "")] {
            assert_eq!(dec_header(&enc_header(&h)).unwrap(), h);
        }
    }

    #[test]
    fn non_canonical_header_forms_are_accepted() {
        // A literal name that is also in the table, and a name index with a value that
        // matches a pair entry: both decode to the same header.
        let expected = Header::new("accept", "*/*");
        assert_eq!(dec_header(b"\x00\x06accept*/*").unwrap(), expected);
        assert_eq!(dec_header(b"\x01*/*").unwrap(), expected);
        assert_eq!(enc_header(&expected), vec![42]);
    }

    #[test]
    fn header_values_are_bytes_but_not_cr_lf_nul() {
        let h = dec_header(b"\x00\x03x-b\xff\xfe").unwrap();
        assert_eq!(&h.value[..], b"\xff\xfe");
        for bad in [&b"\x01a\rb"[..], b"\x01a\nb", b"\x01a\x00"] {
            assert_eq!(
                dec_header(bad),
                Err(Malformed::InvalidValue {
                    field: F,
                    reason: "header value contains NUL, CR or LF"
                })
            );
        }
    }

    #[test]
    fn header_names_must_be_lower_case_tokens() {
        for bad in [
            &b"\x00\x01X"[..],
            b"\x00\x02a b",
            b"\x00\x01:",
            b"\x00\x00v",
        ] {
            assert!(
                matches!(dec_header(bad), Err(Malformed::InvalidValue { .. })),
                "{bad:?}"
            );
        }
        assert!(check_header(F, &Header::new("Content-Type", "x")).is_err());
        assert!(check_header(F, &Header::new("\u{e9}", "x")).is_err());
    }

    #[test]
    fn header_structure_errors() {
        assert_eq!(
            dec_header(b"\x40\x40"),
            Err(Malformed::UnknownStaticIndex {
                field: F,
                index: 64
            })
        );
        // A pair entry takes no value bytes.
        assert_eq!(
            dec_header(b"\x30x"),
            Err(Malformed::TrailingBytes { field: F, extra: 1 })
        );
        assert_eq!(
            dec_header(b"\x00\x05ab"),
            Err(Malformed::TruncatedValue {
                field: F,
                what: "literal header name"
            })
        );
        assert_eq!(
            dec_header(b""),
            Err(Malformed::TruncatedValue {
                field: F,
                what: "header name index"
            })
        );
    }

    #[test]
    fn request_line_round_trip_and_rules() {
        let head = HttpRequestHead::new("POST", "127.0.0.1:15002", "/mcp?x=1");
        let mut v = Vec::new();
        write_request_line(&mut Out(&mut v), &head);
        assert_eq!(v, b"\x03\x0f127.0.0.1:15002/mcp?x=1".to_vec());
        assert_eq!(read_request_line(F, &v).unwrap(), head);

        let custom = HttpRequestHead::new("PROPFIND", "", "*");
        let mut v = Vec::new();
        write_request_line(&mut Out(&mut v), &custom);
        assert_eq!(v, b"\x00\x08PROPFIND\x00*".to_vec());
        assert_eq!(read_request_line(F, &v).unwrap(), custom);

        for bad in [
            &b"\x0a\x00/"[..], // method index 10 does not exist
            b"\x00\x00\x00/",  // empty literal method
            b"\x03\x00",       // empty path
            b"\x03\x00mcp",    // path without '/'
            b"\x03\x00/a b",   // space in path
            b"\x03\x03a/b/",   // '/' in authority
            b"\x03\x03a@b/",   // userinfo
            b"\x03\x05ab/",    // authority overruns
        ] {
            assert!(read_request_line(F, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_rules() {
        assert_eq!(read_status(F, &[0x40, 0xc8]), Ok(200));
        assert_eq!(
            read_status(F, &[0x40, 0x63]),
            Err(Malformed::InvalidStatus {
                field: F,
                status: 99
            })
        );
        assert_eq!(
            read_status(F, &[0x42, 0x58]),
            Err(Malformed::InvalidStatus {
                field: F,
                status: 600
            })
        );
        assert_eq!(
            read_status(F, &[0x40, 0xc8, 0x00]),
            Err(Malformed::TrailingBytes { field: F, extra: 1 })
        );
        assert!(check_status(F, 99).is_err() && check_status(F, 599).is_ok());
    }
}
