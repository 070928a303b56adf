//! The response envelope: opens every reply stream direction (SPEC.md §6).
//!
//! It says what became of the request (an [`Outcome`]), why, and for HTTP the response head;
//! the response body or stream bytes follow until FIN. Outcome codes are an open registry:
//! codes this version does not know decode to [`Outcome::Unknown`] instead of failing, so a
//! newer gateway can report new outcomes to an older sidecar.

use std::fmt;

use bytes::{Buf, BufMut, Bytes};

use crate::error::{DecodeError, EncodeError, FieldId, Malformed};
use crate::field::{self, BlockWriter, FieldIter, UNKNOWN, ValueReader, utf8};
use crate::field_type as ty;
use crate::frame::{self, EnvelopeKind};
use crate::http::{self, HttpResponseHead};
use crate::limits::Limits;
use crate::varint;

/// What the gateway (or sidecar) did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// 0: forwarded upstream; the HTTP head (if any) is the upstream's.
    Forwarded,
    /// 1: a policy denied the request.
    DeniedByPolicy,
    /// 2: no route to the destination.
    NoRoute,
    /// 3: the upstream could not be reached.
    UpstreamUnreachable,
    /// 4: the upstream did not answer in time.
    UpstreamTimeout,
    /// 5: the sender's identity has been revoked.
    Revoked,
    /// 6: the request envelope or request was malformed.
    MalformedRequest,
    /// 7: the receiver is shedding load; retry later.
    Overloaded,
    /// 8: the claimed identity does not match the peer certificate.
    IdentityMismatch,
    /// 9: the receiver failed.
    InternalError,
    /// 10: the caller sent more requests than its rate limit allows; retry later.
    RateLimited,
    /// 11: the caller is cut off for a while because too many of its recent requests were
    /// denied or failed.
    Isolated,
    /// A code this version does not define (never one of the codes above).
    Unknown(u64),
}

impl Outcome {
    /// Every outcome this version names, in code order.
    pub const KNOWN: [Outcome; 12] = [
        Outcome::Forwarded,
        Outcome::DeniedByPolicy,
        Outcome::NoRoute,
        Outcome::UpstreamUnreachable,
        Outcome::UpstreamTimeout,
        Outcome::Revoked,
        Outcome::MalformedRequest,
        Outcome::Overloaded,
        Outcome::IdentityMismatch,
        Outcome::InternalError,
        Outcome::RateLimited,
        Outcome::Isolated,
    ];

    /// The outcome's code on the wire.
    #[must_use]
    pub const fn code(self) -> u64 {
        match self {
            Outcome::Forwarded => 0,
            Outcome::DeniedByPolicy => 1,
            Outcome::NoRoute => 2,
            Outcome::UpstreamUnreachable => 3,
            Outcome::UpstreamTimeout => 4,
            Outcome::Revoked => 5,
            Outcome::MalformedRequest => 6,
            Outcome::Overloaded => 7,
            Outcome::IdentityMismatch => 8,
            Outcome::InternalError => 9,
            Outcome::RateLimited => 10,
            Outcome::Isolated => 11,
            Outcome::Unknown(code) => code,
        }
    }

    /// The outcome for a code; never fails.
    #[must_use]
    pub const fn from_code(code: u64) -> Outcome {
        match code {
            0 => Outcome::Forwarded,
            1 => Outcome::DeniedByPolicy,
            2 => Outcome::NoRoute,
            3 => Outcome::UpstreamUnreachable,
            4 => Outcome::UpstreamTimeout,
            5 => Outcome::Revoked,
            6 => Outcome::MalformedRequest,
            7 => Outcome::Overloaded,
            8 => Outcome::IdentityMismatch,
            9 => Outcome::InternalError,
            10 => Outcome::RateLimited,
            11 => Outcome::Isolated,
            other => Outcome::Unknown(other),
        }
    }

    /// snake_case name (`forwarded`, `denied_by_policy`, ..., `unknown`), for logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::DeniedByPolicy => "denied_by_policy",
            Outcome::NoRoute => "no_route",
            Outcome::UpstreamUnreachable => "upstream_unreachable",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::Revoked => "revoked",
            Outcome::MalformedRequest => "malformed_request",
            Outcome::Overloaded => "overloaded",
            Outcome::IdentityMismatch => "identity_mismatch",
            Outcome::InternalError => "internal_error",
            Outcome::RateLimited => "rate_limited",
            Outcome::Isolated => "isolated",
            Outcome::Unknown(_) => "unknown",
        }
    }

    /// The HTTP status a sidecar should answer an agent with when the response carries no
    /// HTTP head (SPEC.md §6.2).
    #[must_use]
    pub const fn suggested_http_status(self) -> u16 {
        match self {
            Outcome::Forwarded => 200,
            Outcome::MalformedRequest => 400,
            Outcome::DeniedByPolicy
            | Outcome::Revoked
            | Outcome::IdentityMismatch
            | Outcome::Isolated => 403,
            Outcome::RateLimited => 429,
            Outcome::InternalError => 500,
            Outcome::NoRoute | Outcome::UpstreamUnreachable | Outcome::Unknown(_) => 502,
            Outcome::Overloaded => 503,
            Outcome::UpstreamTimeout => 504,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Unknown(code) => write!(f, "unknown outcome {code}"),
            known => f.write_str(known.as_str()),
        }
    }
}

/// The envelope that opens a reply. The payload (HTTP body or stream bytes) follows it on
/// the stream until FIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseEnvelope {
    /// What became of the request.
    pub outcome: Outcome,
    /// Human-readable reason, empty if none (not sent when empty).
    pub reason: String,
    /// The HTTP response head, for HTTP requests.
    pub http: Option<HttpResponseHead>,
    /// The payload that follows is a sequence of payload frames that may end with trailers
    /// (`framed-payload`, SPEC.md §6.3), not raw body bytes. Only in answer to a request
    /// that carried `te-trailers`.
    pub framed_payload: bool,
}

/// Names of the response field types (SPEC.md §6.1).
pub(crate) fn names(t: u64) -> &'static str {
    match t {
        ty::OUTCOME => "outcome",
        ty::REASON => "reason",
        ty::HTTP_STATUS => "http-status",
        ty::HTTP_HEADER => "http-header",
        ty::FRAMED_PAYLOAD => "framed-payload",
        _ => UNKNOWN,
    }
}

fn id(t: u64) -> FieldId {
    field::id(names, t)
}

impl ResponseEnvelope {
    /// A response with an outcome and reason and no HTTP head.
    pub fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        ResponseEnvelope {
            outcome,
            reason: reason.into(),
            http: None,
            framed_payload: false,
        }
    }

    /// A `Forwarded` response carrying the upstream's HTTP head.
    #[must_use]
    pub fn forwarded(head: HttpResponseHead) -> Self {
        ResponseEnvelope {
            outcome: Outcome::Forwarded,
            reason: String::new(),
            http: Some(head),
            framed_payload: false,
        }
    }

    /// Decodes a response envelope from the front of `buf`, advancing it exactly past the
    /// envelope. On any error nothing is consumed. The envelope must lie in `buf`'s first
    /// chunk (see [`RequestEnvelope::decode`](crate::RequestEnvelope::decode)).
    pub fn decode<B: Buf + ?Sized>(buf: &mut B, limits: &Limits) -> Result<Self, DecodeError> {
        frame::decode_buf(buf, limits, "response", |k, b| parse(k, b, limits))
    }

    /// Decodes a response envelope from the front of `src`, returning it and its length.
    pub fn decode_slice(src: &[u8], limits: &Limits) -> Result<(Self, usize), DecodeError> {
        frame::decode_slice(src, limits, "response", |k, b| parse(k, b, limits))
    }

    /// The number of bytes [`encode`](Self::encode) would write.
    pub fn encoded_len(&self, limits: &Limits) -> Result<usize, EncodeError> {
        self.check()?;
        frame::encoded_len(EnvelopeKind::Response, limits, names, |w| {
            self.write_block(w)
        })
    }

    /// Encodes the envelope into `buf`, returning the bytes written. Refuses (writing
    /// nothing) anything a receiver with the same `limits` would reject.
    pub fn encode<B: BufMut + ?Sized>(
        &self,
        buf: &mut B,
        limits: &Limits,
    ) -> Result<usize, EncodeError> {
        self.check()?;
        frame::encode(buf, EnvelopeKind::Response, limits, names, |w| {
            self.write_block(w)
        })
    }

    /// Encodes the envelope into a new buffer.
    pub fn to_bytes(&self, limits: &Limits) -> Result<Bytes, EncodeError> {
        let mut out = Vec::with_capacity(self.encoded_len(limits)?);
        self.encode(&mut out, limits)?;
        Ok(out.into())
    }

    fn check(&self) -> Result<(), Malformed> {
        let code = self.outcome.code();
        if code > varint::MAX {
            return Err(Malformed::VarintOutOfRange {
                field: id(ty::OUTCOME),
                value: code,
            });
        }
        if matches!(self.outcome, Outcome::Unknown(_)) && code < Outcome::KNOWN.len() as u64 {
            return Err(Malformed::InvalidValue {
                field: id(ty::OUTCOME),
                reason: "Outcome::Unknown holds a defined code; use the named variant",
            });
        }
        if let Some(head) = &self.http {
            http::check_status(id(ty::HTTP_STATUS), head.status)?;
            let f = id(ty::HTTP_HEADER);
            head.headers
                .iter()
                .try_for_each(|h| http::check_header(f, h))?;
        }
        Ok(())
    }

    fn write_block(&self, w: &mut BlockWriter<'_>) -> Result<(), Malformed> {
        w.field(ty::OUTCOME, |s| s.put_varint(self.outcome.code()))?;
        if !self.reason.is_empty() {
            w.field(ty::REASON, |s| s.put_slice(self.reason.as_bytes()))?;
        }
        if let Some(head) = &self.http {
            w.field(ty::HTTP_STATUS, |s| s.put_varint(u64::from(head.status)))?;
            for h in &head.headers {
                w.field(ty::HTTP_HEADER, |s| http::write_header(s, h))?;
            }
        }
        // Ascending type order: after the headers (SPEC.md §5.1).
        if self.framed_payload {
            w.field(ty::FRAMED_PAYLOAD, |_| {})?;
        }
        Ok(())
    }
}

/// Decodes a response header block (the preface has been checked).
fn parse(kind: EnvelopeKind, block: &[u8], limits: &Limits) -> Result<ResponseEnvelope, Malformed> {
    if kind != EnvelopeKind::Response {
        return Err(Malformed::WrongKind {
            expected: "response",
            found: kind.direction(),
        });
    }
    let scan = field::scan(block, limits, names)?;
    if !scan.has(ty::OUTCOME) {
        return Err(Malformed::MissingField {
            field: id(ty::OUTCOME),
            why: "every response states its outcome",
        });
    }
    if scan.headers > 0 && !scan.has(ty::HTTP_STATUS) {
        return Err(Malformed::MissingField {
            field: id(ty::HTTP_STATUS),
            why: "HTTP headers come with a status",
        });
    }
    let shared = if scan.headers > 0 {
        Bytes::copy_from_slice(block)
    } else {
        Bytes::new()
    };
    let src: &[u8] = if scan.headers > 0 { &shared } else { block };

    let mut env = ResponseEnvelope::new(Outcome::InternalError, String::new());
    let mut status = None;
    let mut headers = Vec::with_capacity(scan.headers);
    for f in FieldIter::new(src, limits, names) {
        let f = f?;
        let fid = id(f.ty);
        match f.ty {
            ty::OUTCOME => {
                let mut r = ValueReader::new(fid, f.value);
                let code = r.varint("outcome code")?;
                r.finish()?;
                env.outcome = Outcome::from_code(code);
            }
            ty::REASON => env.reason = utf8(fid, f.value)?.to_owned(),
            ty::HTTP_STATUS => status = Some(http::read_status(fid, f.value)?),
            // An empty value: nothing may follow (SPEC.md §6.1).
            ty::FRAMED_PAYLOAD => {
                ValueReader::new(fid, f.value).finish()?;
                env.framed_payload = true;
            }
            ty::HTTP_HEADER => headers.push(http::read_header(fid, f.value, |v| {
                field::sub_bytes(&shared, v)
            })?),
            // Forward compatibility: unknown field types are skipped (SPEC.md §7).
            _ => {}
        }
    }
    env.http = status.map(|status| HttpResponseHead { status, headers });
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    const L: Limits = Limits::DEFAULT;

    fn malformed(bytes: &[u8]) -> Malformed {
        match ResponseEnvelope::decode_slice(bytes, &L) {
            Err(DecodeError::Malformed(m)) => m,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    fn raw(block: &[u8]) -> Vec<u8> {
        let mut out = vec![0xa1, 0x4d, 0x58, 0x01, 0x03];
        varint::encode(&mut out, block.len() as u64).unwrap();
        out.extend_from_slice(block);
        out
    }

    #[test]
    fn forwarded_round_trip_with_payload_after() {
        let env = ResponseEnvelope::forwarded(
            HttpResponseHead::new(200)
                .with_header("content-type", "text/event-stream")
                .with_header("mcp-session-id", "abc")
                .with_header("set-cookie", "a=1")
                .with_header("set-cookie", "b=2"),
        );
        let mut buf = bytes::BytesMut::from(&env.to_bytes(&L).unwrap()[..]);
        buf.extend_from_slice(b"event: message\n");
        assert_eq!(ResponseEnvelope::decode(&mut buf, &L).unwrap(), env);
        assert_eq!(&buf[..], b"event: message\n");
    }

    #[test]
    fn minimal_denied_layout() {
        let env = ResponseEnvelope::new(Outcome::DeniedByPolicy, "no");
        let bytes = env.to_bytes(&L).unwrap();
        assert_eq!(
            &bytes[..],
            &[
                0xa1, 0x4d, 0x58, 0x01, 0x03, 0x07, 0x01, 0x01, 0x01, 0x02, 0x02, b'n', b'o'
            ]
        );
        assert_eq!(ResponseEnvelope::decode_slice(&bytes, &L).unwrap().0, env);
    }

    #[test]
    fn unknown_outcomes_decode_and_re_encode() {
        let bytes = raw(&[0x01, 0x02, 0x40, 0x2a]);
        let env = ResponseEnvelope::decode_slice(&bytes, &L).unwrap().0;
        assert_eq!(env.outcome, Outcome::Unknown(42));
        assert_eq!(env.outcome.to_string(), "unknown outcome 42");
        let again = env.to_bytes(&L).unwrap();
        assert_eq!(ResponseEnvelope::decode_slice(&again, &L).unwrap().0, env);
    }

    #[test]
    fn outcome_codes_are_stable() {
        for (i, o) in Outcome::KNOWN.into_iter().enumerate() {
            assert_eq!(o.code(), i as u64);
            assert_eq!(Outcome::from_code(i as u64), o);
        }
        assert_eq!(Outcome::from_code(12), Outcome::Unknown(12));
        assert_eq!(Outcome::RateLimited.suggested_http_status(), 429);
        assert_eq!(Outcome::Isolated.suggested_http_status(), 403);
        assert_eq!(Outcome::Isolated.as_str(), "isolated");
        assert_eq!(Outcome::Revoked.suggested_http_status(), 403);
        assert_eq!(Outcome::UpstreamTimeout.suggested_http_status(), 504);
        assert_eq!(Outcome::DeniedByPolicy.to_string(), "denied_by_policy");
    }

    #[test]
    fn encoder_refuses_ambiguous_or_huge_outcomes() {
        let ambiguous = ResponseEnvelope::new(Outcome::Unknown(1), "");
        assert!(matches!(
            ambiguous.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::InvalidValue { .. }))
        ));
        let huge = ResponseEnvelope::new(Outcome::Unknown(u64::MAX), "");
        assert!(matches!(
            huge.to_bytes(&L),
            Err(EncodeError::Invalid(Malformed::VarintOutOfRange { .. }))
        ));
        let bad_status = ResponseEnvelope::forwarded(HttpResponseHead::new(99));
        assert!(bad_status.to_bytes(&L).is_err());
        let bad_header = ResponseEnvelope::forwarded(HttpResponseHead {
            status: 200,
            headers: vec![Header::new("X-Upper", "v")],
        });
        assert!(bad_header.to_bytes(&L).is_err());
    }

    #[test]
    fn structural_rules() {
        assert!(
            matches!(malformed(&raw(&[])), Malformed::MissingField { field, .. } if field.ty == ty::OUTCOME)
        );
        assert!(matches!(
            malformed(&raw(&[0x01, 0x01, 0x00, 0x13, 0x01, 0x26])),
            Malformed::MissingField { field, .. } if field.ty == ty::HTTP_STATUS
        ));
        assert_eq!(
            malformed(&raw(&[0x01, 0x01, 0x00, 0x01, 0x01, 0x00])),
            Malformed::DuplicateField {
                field: id(ty::OUTCOME)
            }
        );
        assert_eq!(
            malformed(&raw(&[0x01, 0x02, 0x00, 0x00])),
            Malformed::TrailingBytes {
                field: id(ty::OUTCOME),
                extra: 1
            }
        );
        assert_eq!(
            malformed(&raw(&[0x01, 0x01, 0x00, 0x02, 0x01, 0xff])),
            Malformed::InvalidUtf8 {
                field: id(ty::REASON)
            }
        );
        assert_eq!(
            malformed(&raw(&[0x01, 0x00])),
            Malformed::TruncatedValue {
                field: id(ty::OUTCOME),
                what: "outcome code"
            }
        );
        let request = [0xa1, 0x4d, 0x58, 0x01, 0x02, 0x00];
        assert_eq!(
            malformed(&request),
            Malformed::WrongKind {
                expected: "response",
                found: "request"
            }
        );
    }

    #[test]
    fn framed_payload_is_an_empty_flag_written_last() {
        let mut env = ResponseEnvelope::forwarded(
            HttpResponseHead::new(200).with_header("content-type", "application/grpc"),
        );
        env.framed_payload = true;
        let bytes = env.to_bytes(&L).unwrap();
        assert_eq!(&bytes[bytes.len() - 2..], &[0x14, 0x00]);
        assert_eq!(ResponseEnvelope::decode_slice(&bytes, &L).unwrap().0, env);
        // Any position is accepted.
        let first = raw(&[0x14, 0x00, 0x01, 0x01, 0x00]);
        let decoded = ResponseEnvelope::decode_slice(&first, &L).unwrap().0;
        assert!(decoded.framed_payload);
        assert_eq!(
            malformed(&raw(&[0x01, 0x01, 0x00, 0x14, 0x01, 0x00])),
            Malformed::TrailingBytes {
                field: id(ty::FRAMED_PAYLOAD),
                extra: 1
            }
        );
        assert_eq!(
            malformed(&raw(&[0x01, 0x01, 0x00, 0x14, 0x00, 0x14, 0x00])),
            Malformed::DuplicateField {
                field: id(ty::FRAMED_PAYLOAD)
            }
        );
    }

    #[test]
    fn unknown_fields_are_skipped() {
        let bytes = raw(&[0x30, 0x02, 0xaa, 0xbb, 0x01, 0x01, 0x05]);
        assert_eq!(
            ResponseEnvelope::decode_slice(&bytes, &L).unwrap().0,
            ResponseEnvelope::new(Outcome::Revoked, "")
        );
    }
}
