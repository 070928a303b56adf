//! The request envelope: opens every QUIC stream a sidecar opens (SPEC.md §5).
//!
//! Decoding runs [`field::scan`] first (framing, limits, duplicates, presence of required
//! fields — no allocation), then builds the typed envelope. Header values are zero-copy
//! slices of one copy of the header block. Encoding checks every rule the decoder checks,
//! then writes fields in ascending type order (headers last, in order).

use std::fmt;

use bytes::{Buf, BufMut, Bytes};

use crate::error::{DecodeError, EncodeError, Malformed};
use crate::field::{self, BlockWriter, FieldIter, UNKNOWN, ValueReader, utf8};
use crate::field_type as ty;
use crate::frame::{self, EnvelopeKind, RequestKind};
use crate::http::{self, HttpRequestHead};
use crate::intent::{self, Intent};
use crate::limits::Limits;
use crate::text;
use crate::trace::{self, TraceContext};

/// Longest request id accepted, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// An opaque request id of 1 to 64 bytes (16 random bytes recommended).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(Bytes);

impl RequestId {
    /// A request id, or `None` if `bytes` is empty or longer than [`MAX_REQUEST_ID_LEN`].
    pub fn new(bytes: impl Into<Bytes>) -> Option<RequestId> {
        let bytes = bytes.into();
        (1..=MAX_REQUEST_ID_LEN)
            .contains(&bytes.len())
            .then_some(RequestId(bytes))
    }

    /// The id's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<[u8; 16]> for RequestId {
    fn from(bytes: [u8; 16]) -> Self {
        RequestId(Bytes::copy_from_slice(&bytes))
    }
}

impl fmt::Display for RequestId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({self})")
    }
}

/// The envelope that opens a request stream. The payload (HTTP body or raw stream bytes)
/// follows it on the stream until FIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEnvelope {
    /// HTTP request or raw byte stream. Must agree with `http`.
    pub kind: RequestKind,
    /// The SPIFFE ID the sender claims (the gateway checks it against the peer certificate).
    pub identity: Option<String>,
    /// What the sniffer concluded the request is for.
    pub intent: Option<Intent>,
    /// The service the request is for. Required.
    pub destination: String,
    /// W3C trace context.
    pub trace: Option<TraceContext>,
    /// Request id, for logs and correlation.
    pub request_id: Option<RequestId>,
    /// The requester accepts a framed response payload that may end with trailers
    /// (`te-trailers`, SPEC.md §5.9 and §6.3), as `TE: trailers` says in HTTP (RFC 9110
    /// §10.1.4). HTTP requests only.
    pub te_trailers: bool,
    /// The HTTP request head: present exactly when `kind` is [`RequestKind::Http`].
    pub http: Option<HttpRequestHead>,
}

/// Names of the request field types (SPEC.md §5.1).
pub(crate) fn names(t: u64) -> &'static str {
    match t {
        ty::IDENTITY => "identity",
        ty::INTENT => "intent",
        ty::DESTINATION => "destination",
        ty::TRACEPARENT => "traceparent",
        ty::TRACESTATE => "tracestate",
        ty::REQUEST_ID => "request-id",
        ty::TE_TRAILERS => "te-trailers",
        ty::HTTP_REQUEST_LINE => "http-request-line",
        ty::HTTP_HEADER => "http-header",
        _ => UNKNOWN,
    }
}

fn id(t: u64) -> crate::FieldId {
    field::id(names, t)
}

const HTTP_NEEDS_HEAD: &str = "an HTTP request carries its request line";
const IN_STREAM: &str = "in a raw-stream request";

impl RequestEnvelope {
    /// An HTTP request envelope with only the required fields.
    pub fn http(destination: impl Into<String>, head: HttpRequestHead) -> Self {
        RequestEnvelope {
            kind: RequestKind::Http,
            identity: None,
            intent: None,
            destination: destination.into(),
            trace: None,
            request_id: None,
            te_trailers: false,
            http: Some(head),
        }
    }

    /// A raw-stream request envelope with only the required fields.
    pub fn stream(destination: impl Into<String>) -> Self {
        RequestEnvelope {
            kind: RequestKind::Stream,
            identity: None,
            intent: None,
            destination: destination.into(),
            trace: None,
            request_id: None,
            te_trailers: false,
            http: None,
        }
    }

    /// Decodes a request envelope from the front of `buf`, advancing it exactly past the
    /// envelope (the payload stays in `buf`). On any error nothing is consumed.
    ///
    /// The envelope must lie in `buf`'s first chunk, as it does for `BytesMut`, `Bytes` and
    /// `&[u8]`; otherwise the result is [`DecodeError::Segmented`].
    pub fn decode<B: Buf + ?Sized>(buf: &mut B, limits: &Limits) -> Result<Self, DecodeError> {
        frame::decode_buf(buf, limits, "request", |k, b| parse(k, b, limits))
    }

    /// Decodes a request envelope from the front of `src`, returning it and its length (the
    /// offset where the payload starts).
    pub fn decode_slice(src: &[u8], limits: &Limits) -> Result<(Self, usize), DecodeError> {
        frame::decode_slice(src, limits, "request", |k, b| parse(k, b, limits))
    }

    /// The number of bytes [`encode`](Self::encode) would write.
    pub fn encoded_len(&self, limits: &Limits) -> Result<usize, EncodeError> {
        self.check()?;
        frame::encoded_len(self.envelope_kind(), limits, names, |w| self.write_block(w))
    }

    /// Encodes the envelope into `buf`, returning the bytes written. Refuses (writing
    /// nothing) anything a receiver with the same `limits` would reject.
    pub fn encode<B: BufMut + ?Sized>(
        &self,
        buf: &mut B,
        limits: &Limits,
    ) -> Result<usize, EncodeError> {
        self.check()?;
        frame::encode(buf, self.envelope_kind(), limits, names, |w| {
            self.write_block(w)
        })
    }

    /// Encodes the envelope into a new buffer.
    pub fn to_bytes(&self, limits: &Limits) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len(limits)?);
        self.encode(&mut out, limits)?;
        Ok(out.into())
    }

    fn envelope_kind(&self) -> EnvelopeKind {
        EnvelopeKind::Request(self.kind)
    }

    /// Every value rule the decoder enforces, checked before encoding.
    fn check(&self) -> Result<(), Malformed> {
        if let Some(identity) = &self.identity {
            text::check_spiffe_id(id(ty::IDENTITY), identity)?;
        }
        if let Some(i) = &self.intent {
            intent::check(id(ty::INTENT), i)?;
        }
        text::check_destination(id(ty::DESTINATION), &self.destination)?;
        if let Some(tc) = &self.trace {
            trace::check_traceparent(id(ty::TRACEPARENT), tc)?;
            if let Some(ts) = &tc.tracestate {
                trace::check_tracestate(id(ty::TRACESTATE), ts.as_bytes())?;
            }
        }
        if self.te_trailers && self.kind == RequestKind::Stream {
            return Err(Malformed::NotAllowed {
                field: id(ty::TE_TRAILERS),
                context: IN_STREAM,
            });
        }
        match (self.kind, &self.http) {
            (RequestKind::Http, None) => Err(Malformed::MissingField {
                field: id(ty::HTTP_REQUEST_LINE),
                why: HTTP_NEEDS_HEAD,
            }),
            (RequestKind::Stream, Some(_)) => Err(Malformed::NotAllowed {
                field: id(ty::HTTP_REQUEST_LINE),
                context: IN_STREAM,
            }),
            (_, Some(head)) => {
                http::check_request_line(id(ty::HTTP_REQUEST_LINE), head)?;
                let f = id(ty::HTTP_HEADER);
                head.headers
                    .iter()
                    .try_for_each(|h| http::check_header(f, h))
            }
            (RequestKind::Stream, None) => Ok(()),
        }
    }

    fn write_block(&self, w: &mut BlockWriter<'_>) -> Result<(), Malformed> {
        if let Some(identity) = &self.identity {
            w.field(ty::IDENTITY, |s| s.put_slice(identity.as_bytes()))?;
        }
        if let Some(i) = &self.intent {
            w.field(ty::INTENT, |s| intent::write(s, i))?;
        }
        w.field(ty::DESTINATION, |s| {
            s.put_slice(self.destination.as_bytes())
        })?;
        if let Some(tc) = &self.trace {
            w.field(ty::TRACEPARENT, |s| trace::write_traceparent(s, tc))?;
            if let Some(ts) = &tc.tracestate {
                w.field(ty::TRACESTATE, |s| s.put_slice(ts.as_bytes()))?;
            }
        }
        if let Some(rid) = &self.request_id {
            w.field(ty::REQUEST_ID, |s| s.put_slice(rid.as_bytes()))?;
        }
        if self.te_trailers {
            w.field(ty::TE_TRAILERS, |_| {})?;
        }
        if let Some(head) = &self.http {
            w.field(ty::HTTP_REQUEST_LINE, |s| http::write_request_line(s, head))?;
            for h in &head.headers {
                w.field(ty::HTTP_HEADER, |s| http::write_header(s, h))?;
            }
        }
        Ok(())
    }
}

/// Decodes a request header block (the preface has been checked).
fn parse(kind: EnvelopeKind, block: &[u8], limits: &Limits) -> Result<RequestEnvelope, Malformed> {
    let EnvelopeKind::Request(kind) = kind else {
        return Err(Malformed::WrongKind {
            expected: "request",
            found: kind.direction(),
        });
    };
    let scan = field::scan(block, limits, names)?;
    if !scan.has(ty::DESTINATION) {
        return Err(Malformed::MissingField {
            field: id(ty::DESTINATION),
            why: "every request names its destination",
        });
    }
    match kind {
        RequestKind::Http if !scan.has(ty::HTTP_REQUEST_LINE) => {
            return Err(Malformed::MissingField {
                field: id(ty::HTTP_REQUEST_LINE),
                why: HTTP_NEEDS_HEAD,
            });
        }
        RequestKind::Stream
            if scan.has(ty::HTTP_REQUEST_LINE) || scan.headers > 0 || scan.has(ty::TE_TRAILERS) =>
        {
            let t = if scan.headers > 0 {
                ty::HTTP_HEADER
            } else if scan.has(ty::HTTP_REQUEST_LINE) {
                ty::HTTP_REQUEST_LINE
            } else {
                ty::TE_TRAILERS
            };
            return Err(Malformed::NotAllowed {
                field: id(t),
                context: IN_STREAM,
            });
        }
        _ => {}
    }
    if scan.has(ty::TRACESTATE) && !scan.has(ty::TRACEPARENT) {
        return Err(Malformed::MissingField {
            field: id(ty::TRACEPARENT),
            why: "tracestate is only meaningful with a traceparent",
        });
    }

    // One copy of the block backs every header value (zero-copy slices after this).
    let shared = if scan.headers > 0 {
        Bytes::copy_from_slice(block)
    } else {
        Bytes::new()
    };
    let src: &[u8] = if scan.headers > 0 { &shared } else { block };

    let mut env = RequestEnvelope::stream(String::new());
    env.kind = kind;
    let mut tracestate = None;
    let mut head = None;
    let mut headers = Vec::with_capacity(scan.headers);
    for f in FieldIter::new(src, limits, names) {
        let f = f?;
        let fid = id(f.ty);
        match f.ty {
            ty::IDENTITY => {
                let s = utf8(fid, f.value)?;
                text::check_spiffe_id(fid, s)?;
                env.identity = Some(s.to_owned());
            }
            ty::INTENT => env.intent = Some(intent::read(fid, f.value)?),
            ty::DESTINATION => {
                let s = utf8(fid, f.value)?;
                text::check_destination(fid, s)?;
                env.destination = s.to_owned();
            }
            ty::TRACEPARENT => env.trace = Some(trace::read_traceparent(fid, f.value)?),
            ty::TRACESTATE => {
                trace::check_tracestate(fid, f.value)?;
                tracestate = Some(utf8(fid, f.value)?.to_owned());
            }
            ty::REQUEST_ID => {
                let rid = RequestId::new(Bytes::copy_from_slice(f.value)).ok_or(
                    Malformed::InvalidValue {
                        field: fid,
                        reason: "request id must be 1 to 64 bytes",
                    },
                )?;
                env.request_id = Some(rid);
            }
            // An empty value: nothing may follow (SPEC.md §5.9).
            ty::TE_TRAILERS => {
                ValueReader::new(fid, f.value).finish()?;
                env.te_trailers = true;
            }
            ty::HTTP_REQUEST_LINE => head = Some(http::read_request_line(fid, f.value)?),
            ty::HTTP_HEADER => headers.push(http::read_header(fid, f.value, |v| {
                field::sub_bytes(&shared, v)
            })?),
            // Forward compatibility: unknown field types are skipped (SPEC.md §7).
            _ => {}
        }
    }
    if let Some(tc) = env.trace.as_mut() {
        tc.tracestate = tracestate;
    }
    if let Some(mut h) = head {
        h.headers = headers;
        env.http = Some(h);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;
    use crate::intent::Protocol;

    const L: Limits = Limits::DEFAULT;

    fn mcp() -> RequestEnvelope {
        let head = HttpRequestHead::new("POST", "127.0.0.1:15002", "/mcp")
            .with_header("content-type", "application/json")
            .with_header("accept", "application/json, text/event-stream")
            .with_header("x-raw", &b"\xff\xfeok"[..2])
            .with_header("x-raw", "second");
        RequestEnvelope {
            identity: Some("spiffe://aimux.local/agent/demo-agent".into()),
            intent: Some(Intent::new(Protocol::Mcp, "tools/call", "search_web")),
            trace: Some(TraceContext {
                version: 0,
                trace_id: [7; 16],
                parent_id: [9; 8],
                flags: 1,
                tracestate: Some("vendor=1".into()),
            }),
            request_id: Some(RequestId::from([0xab; 16])),
            ..RequestEnvelope::http("tools", head)
        }
    }

    fn enc(env: &RequestEnvelope) -> Vec<u8> {
        env.to_bytes(&L).unwrap().to_vec()
    }

    /// Builds an envelope from raw fields (type, value) so tests can break the rules.
    fn raw(kind: u64, fields: &[(u64, &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        for (t, v) in fields {
            crate::varint::encode(&mut block, *t).unwrap();
            crate::varint::encode(&mut block, v.len() as u64).unwrap();
            block.extend_from_slice(v);
        }
        let mut out = vec![0xa1, 0x4d, 0x58, 0x01];
        crate::varint::encode(&mut out, kind).unwrap();
        crate::varint::encode(&mut out, block.len() as u64).unwrap();
        out.extend_from_slice(&block);
        out
    }

    fn malformed(bytes: &[u8]) -> Malformed {
        match RequestEnvelope::decode_slice(bytes, &L) {
            Err(DecodeError::Malformed(m)) => m,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_http_and_stream() {
        let env = mcp();
        let bytes = enc(&env);
        assert_eq!(env.encoded_len(&L).unwrap(), bytes.len());
        assert_eq!(
            RequestEnvelope::decode_slice(&bytes, &L).unwrap(),
            (env, bytes.len())
        );
        let mut stream = RequestEnvelope::stream("db:5432");
        stream.intent = Some(Intent::new(Protocol::Tcp, "", ""));
        let bytes = enc(&stream);
        assert_eq!(RequestEnvelope::decode_slice(&bytes, &L).unwrap().0, stream);
    }

    #[test]
    fn decode_from_buf_leaves_the_payload_and_shares_header_memory() {
        let env = mcp();
        let mut buf = bytes::BytesMut::from(&enc(&env)[..]);
        buf.extend_from_slice(b"{\"jsonrpc\":\"2.0\"}");
        let decoded = RequestEnvelope::decode(&mut buf, &L).unwrap();
        assert_eq!(decoded, env);
        assert_eq!(&buf[..], b"{\"jsonrpc\":\"2.0\"}");
        let mut slice: &[u8] = &enc(&env);
        RequestEnvelope::decode(&mut slice, &L).unwrap();
        assert!(slice.is_empty());
    }

    #[test]
    fn every_truncation_is_incomplete_and_consumes_nothing() {
        let bytes = enc(&mcp());
        for n in 0..bytes.len() {
            let mut prefix = &bytes[..n];
            let e = RequestEnvelope::decode(&mut prefix, &L).unwrap_err();
            let DecodeError::Incomplete { needed, total } = e else {
                panic!("prefix {n}: {e}")
            };
            assert_eq!(prefix.len(), n, "nothing consumed");
            assert!(needed >= 1 && n + needed <= bytes.len());
            if let Some(total) = total {
                assert_eq!((total, n + needed), (bytes.len(), bytes.len()));
            }
        }
    }

    #[test]
    fn response_envelopes_are_refused() {
        let bytes = raw(0x03, &[(0x01, &[0x00])]);
        assert_eq!(
            malformed(&bytes),
            Malformed::WrongKind {
                expected: "request",
                found: "response"
            }
        );
    }

    #[test]
    fn required_fields() {
        assert_eq!(
            malformed(&raw(0x02, &[])),
            Malformed::MissingField {
                field: id(ty::DESTINATION),
                why: "every request names its destination"
            }
        );
        assert_eq!(
            malformed(&raw(0x01, &[(0x03, b"tools")])),
            Malformed::MissingField {
                field: id(ty::HTTP_REQUEST_LINE),
                why: HTTP_NEEDS_HEAD
            }
        );
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"db"), (0x10, b"\x01\x00/")])),
            Malformed::NotAllowed {
                field: id(ty::HTTP_REQUEST_LINE),
                context: IN_STREAM
            }
        );
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"db"), (0x13, b"\x26")])),
            Malformed::NotAllowed {
                field: id(ty::HTTP_HEADER),
                context: IN_STREAM
            }
        );
        assert!(matches!(
            malformed(&raw(0x02, &[(0x03, b"db"), (0x05, b"a=b")])),
            Malformed::MissingField { field, .. } if field.ty == ty::TRACEPARENT
        ));
    }

    #[test]
    fn duplicate_singletons_are_rejected_but_headers_repeat() {
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"a"), (0x03, b"b")])),
            Malformed::DuplicateField {
                field: id(ty::DESTINATION)
            }
        );
        let ok = raw(
            0x01,
            &[
                (0x03, b"a"),
                (0x10, b"\x01\x00/"),
                (0x13, b"\x01x"),
                (0x13, b"\x01y"),
            ],
        );
        let env = RequestEnvelope::decode_slice(&ok, &L).unwrap().0;
        let head = env.http.unwrap();
        assert_eq!(head.headers.len(), 2);
        assert_eq!(head.header("accept").unwrap(), "x");
    }

    #[test]
    fn text_fields_must_be_utf8() {
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"t\xffols")])),
            Malformed::InvalidUtf8 {
                field: id(ty::DESTINATION)
            }
        );
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"a"), (0x01, b"spiffe://a/\xc3")])),
            Malformed::InvalidUtf8 {
                field: id(ty::IDENTITY)
            }
        );
    }

    #[test]
    fn field_values_are_validated() {
        let tp = [&[0u8][..], &[1; 16], &[2; 8], &[1], &[0]].concat();
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"a"), (0x04, &tp)])),
            Malformed::TrailingBytes {
                field: id(ty::TRACEPARENT),
                extra: 1
            }
        );
        for rid in [&[][..], &[1; 65]] {
            assert!(matches!(
                malformed(&raw(0x02, &[(0x03, b"a"), (0x06, rid)])),
                Malformed::InvalidValue { field, .. } if field.ty == ty::REQUEST_ID
            ));
        }
        assert!(matches!(
            malformed(&raw(0x02, &[(0x03, b"a"), (0x01, b"spiffe://A/b")])),
            Malformed::InvalidValue { field, .. } if field.ty == ty::IDENTITY
        ));
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"a"), (0x02, b"\x09\x00\x00")])),
            Malformed::UnknownProtocol {
                field: id(ty::INTENT),
                code: 9
            }
        );
    }

    #[test]
    fn unknown_fields_are_skipped_but_counted() {
        let with_unknown = raw(0x02, &[(0x3f, b"future"), (0x03, b"db"), (0x1234, b"")]);
        let env = RequestEnvelope::decode_slice(&with_unknown, &L).unwrap().0;
        assert_eq!(env, RequestEnvelope::stream("db"));
        // A duplicate unknown field is not an error either.
        let twice = raw(0x02, &[(0x3f, b""), (0x3f, b""), (0x03, b"db")]);
        assert!(RequestEnvelope::decode_slice(&twice, &L).is_ok());
        let many: Vec<(u64, &[u8])> = (0..64).map(|i| (0x100 + i, &b""[..])).collect();
        let mut fields = many.clone();
        fields.push((0x03, b"db"));
        assert_eq!(
            malformed(&raw(0x02, &fields)),
            Malformed::TooManyFields { limit: 64 }
        );
    }

    #[test]
    fn over_limit_field_is_malformed() {
        // A 9003-byte block holding one 9000-byte destination: under the block limit, over
        // the field limit. The declared length is judged before any value is read.
        let mut bytes = vec![0xa1, 0x4d, 0x58, 0x01, 0x02, 0x80, 0x00, 0x23, 0x2b];
        bytes.extend_from_slice(&[0x03, 0x63, 0x28, b'x']);
        let needed = RequestEnvelope::decode_slice(&bytes, &L).unwrap_err();
        assert!(needed.is_incomplete(), "block not all here yet: {needed}");
        bytes.resize(9 + 9003, b'x');
        assert_eq!(
            malformed(&bytes),
            Malformed::FieldTooLarge {
                field: id(ty::DESTINATION),
                len: 9000,
                limit: 8192
            }
        );
        assert_eq!(
            malformed(&bytes).to_string(),
            "field 0x03 (destination) is 9000 bytes, over the 8192-byte limit"
        );
    }

    #[test]
    fn non_minimal_varints_are_accepted() {
        // Kind, block length, field type and field length all in 2- or 4-byte form.
        let bytes = [
            0xa1, 0x4d, 0x58, 0x01, 0x40, 0x02, 0x80, 0x00, 0x00, 0x06, 0x40, 0x03, 0x40, 0x02,
            b'd', b'b',
        ];
        let (env, len) = RequestEnvelope::decode_slice(&bytes, &L).unwrap();
        assert_eq!((env, len), (RequestEnvelope::stream("db"), bytes.len()));
        // Re-encoding yields the canonical (shorter) form.
        assert_eq!(enc(&RequestEnvelope::stream("db")).len(), 10);
    }

    #[test]
    fn encoder_refuses_what_a_decoder_rejects() {
        let mut bad = mcp();
        bad.identity = Some("alice".into());
        assert!(matches!(
            bad.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::InvalidValue { .. }))
        ));

        let mut bad = mcp();
        bad.kind = RequestKind::Stream;
        assert!(matches!(
            bad.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::NotAllowed { .. }))
        ));

        let mut bad = mcp();
        bad.http = None;
        assert!(matches!(
            bad.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::MissingField { .. }))
        ));

        let mut bad = mcp();
        bad.destination = "x".repeat(9000);
        assert_eq!(
            bad.to_bytes(&L).unwrap_err().to_string(),
            "refusing to encode: field 0x03 (destination) is 9000 bytes, over the 8192-byte limit"
        );

        let mut bad = mcp();
        if let Some(h) = bad.http.as_mut() {
            h.headers = vec![Header::new("x-a", "1"); 129];
        }
        assert_eq!(
            bad.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::TooManyHeaders {
                limit: 128
            }))
        );

        let mut bad = mcp();
        if let Some(h) = bad.http.as_mut() {
            h.headers = vec![Header::new("x-a", "v".repeat(8000)); 3];
        }
        assert!(matches!(
            bad.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::HeaderBlockTooLarge {
                limit: 16384,
                ..
            }))
        ));

        let mut bad = mcp();
        if let Some(h) = bad.http.as_mut() {
            h.headers.push(Header::new("x-a", "evil\r\nhost: x"));
        }
        assert!(bad.to_bytes(&L).is_err());
    }

    #[test]
    fn encoder_writes_nothing_when_the_buffer_is_too_small() {
        let env = mcp();
        let len = env.encoded_len(&L).unwrap();
        let mut small = vec![0u8; len - 1];
        let mut out: &mut [u8] = &mut small;
        assert_eq!(
            env.encode(&mut out, &L),
            Err(EncodeError::BufferTooSmall {
                needed: len,
                remaining: len - 1
            })
        );
        assert!(small.iter().all(|&b| b == 0));
    }

    #[test]
    fn te_trailers_is_an_empty_http_only_flag() {
        let mut env = RequestEnvelope::http("grpc", HttpRequestHead::new("POST", "", "/a.B/C"));
        let plain = enc(&env);
        env.te_trailers = true;
        let bytes = enc(&env);
        // Two bytes: type 0x07, length 0, between request-id and the request line.
        assert_eq!(bytes.len(), plain.len() + 2);
        let block = &bytes[6..];
        assert_eq!(&block[..2], &[0x03, 0x04]);
        assert_eq!(&block[6..8], &[0x07, 0x00]);
        assert_eq!(RequestEnvelope::decode_slice(&bytes, &L).unwrap().0, env);
        assert!(
            !RequestEnvelope::decode_slice(&plain, &L)
                .unwrap()
                .0
                .te_trailers
        );

        // A value is trailing bytes; twice is a duplicate; a raw stream may not carry it.
        let line: &[u8] = b"\x03\x00/";
        assert_eq!(
            malformed(&raw(0x01, &[(0x03, b"a"), (0x07, b"x"), (0x10, line)])),
            Malformed::TrailingBytes {
                field: id(ty::TE_TRAILERS),
                extra: 1
            }
        );
        assert_eq!(
            malformed(&raw(
                0x01,
                &[(0x03, b"a"), (0x07, b""), (0x07, b""), (0x10, line)]
            )),
            Malformed::DuplicateField {
                field: id(ty::TE_TRAILERS)
            }
        );
        let not_allowed = Malformed::NotAllowed {
            field: id(ty::TE_TRAILERS),
            context: IN_STREAM,
        };
        assert_eq!(
            malformed(&raw(0x02, &[(0x03, b"db"), (0x07, b"")])),
            not_allowed
        );
        let mut stream = RequestEnvelope::stream("db");
        stream.te_trailers = true;
        assert_eq!(stream.to_bytes(&L), Err(EncodeError::Invalid(not_allowed)));
    }

    #[test]
    fn request_id_rules_and_display() {
        assert!(RequestId::new(Bytes::new()).is_none());
        assert!(RequestId::new(vec![0; 65]).is_none());
        let rid = RequestId::new(vec![0x0a, 0xff]).unwrap();
        assert_eq!(rid.to_string(), "0aff");
        assert_eq!(format!("{rid:?}"), "RequestId(0aff)");
    }
}
