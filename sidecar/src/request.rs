//! Turning an agent's HTTP request head into a request envelope (SPEC.md §5). Pure: the random
//! ids are drawn by the caller, so the same inputs always give the same envelope.
//!
//! Only the head is translated; the body follows the envelope on the stream byte for byte.
//! The intent comes from the sniffer (`sniff/`), which has seen the head and a bounded body
//! prefix.

use std::borrow::Cow;

use aimux_wire::{Header, HttpRequestHead, Intent, RequestEnvelope, RequestId, TraceContext};
use bytes::Bytes;
use http::{HeaderMap, Method};

/// Where a request goes and what it asks for, as resolved by the listener (see `proxy.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The destination service.
    pub(crate) destination: String,
    /// The authority the agent addressed (`Host`, or the absolute-form URI's), maybe empty.
    pub(crate) authority: String,
    /// Path and query in origin form (`/mcp?x=1`), or `*`.
    pub(crate) path: String,
}

/// The random values of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreshIds {
    /// The envelope's request id (SPEC.md §5.6 recommends 16 random bytes).
    pub(crate) request_id: [u8; 16],
    /// A trace id for a request that arrives without a valid `traceparent`.
    pub(crate) trace_id: [u8; 16],
    /// Its parent (span) id.
    pub(crate) span_id: [u8; 8],
}

impl FreshIds {
    /// Draws fresh ids. W3C Trace Context forbids all-zero trace and parent ids; with 128 and
    /// 64 random bits that never happens in practice, but it is cheap to rule out.
    pub(crate) fn random() -> FreshIds {
        let mut ids = FreshIds {
            request_id: rand::random(),
            trace_id: rand::random(),
            span_id: rand::random(),
        };
        if ids.trace_id == [0; 16] {
            ids.trace_id[15] = 1;
        }
        if ids.span_id == [0; 8] {
            ids.span_id[7] = 1;
        }
        ids
    }
}

/// Longest `tracestate` carried on. W3C Trace Context §3.3.1.5 asks vendors to propagate at
/// least 512 characters; far longer values are dropped whole rather than cut mid-member.
const MAX_TRACESTATE: usize = 4096;

/// Builds the envelope for one HTTP request.
///
/// - `identity`: the agent's SPIFFE ID, from its certificate (the gateway checks the claim
///   against the certificate it saw, SPEC.md §5.3);
/// - `intent`: what the sniffer made of the request (SPEC.md §5.2, `sidecar/INTENTS.md`);
/// - header fields are copied in order, minus hop-by-hop fields ([`is_hop_by_hop`]) and the
///   ones the envelope carries itself: `host` (the authority, as HTTP/2 carries `:authority`
///   instead of `Host`, RFC 9113 §8.3.1), `traceparent` and `tracestate` (their own fields,
///   SPEC.md §5.5), and `proxy-authorization` (credentials meant for this proxy hop, RFC 9110
///   §11.7.4);
/// - `content-length` stays: it is end-to-end content metadata (the payload still ends at
///   FIN, SPEC.md §2.4);
/// - a `TE` field listing `trailers` (hop-by-hop, so not copied) becomes the `te-trailers`
///   field (SPEC.md §5.9): the agent takes trailers, so the answer may carry them.
pub(crate) fn build_envelope(
    identity: &str,
    target: &Target,
    method: &Method,
    headers: &HeaderMap,
    intent: Intent,
    ids: &FreshIds,
) -> RequestEnvelope {
    let options = connection_options(headers);
    let mut head = HttpRequestHead::new(
        method_name(method),
        target.authority.clone(),
        target.path.clone(),
    );
    head.headers = envelope_fields(headers, &options, &CARRIED_OR_CONSUMED);

    let mut envelope = RequestEnvelope::http(target.destination.clone(), head);
    envelope.identity = Some(identity.to_owned());
    envelope.intent = Some(intent);
    envelope.trace = Some(trace_context(headers, ids));
    envelope.request_id = Some(RequestId::from(ids.request_id));
    envelope.te_trailers = accepts_trailers(headers);
    envelope
}

/// Whether a request's `TE` field lists `trailers` (RFC 9110 §10.1.4: a comma-separated
/// list of case-insensitive codings, each maybe with parameters). gRPC clients always send
/// `te: trailers`.
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let name = coding.split(';').next().unwrap_or_default();
            name.trim().eq_ignore_ascii_case("trailers")
        })
}

/// The fields of `headers` for an envelope's head, in order: hop-by-hop fields and those
/// in `skip` left out.
pub(crate) fn envelope_fields(
    headers: &HeaderMap,
    options: &[String],
    skip: &[&str],
) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !is_hop_by_hop(name, options) && !skip.contains(&name)
        })
        .map(|(name, value)| {
            Header::new(
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}

/// Fields the envelope carries in its own fields or that this hop consumes.
const CARRIED_OR_CONSUMED: [&str; 4] = ["host", "traceparent", "tracestate", "proxy-authorization"];

/// Hop-by-hop fields of RFC 9110 §7.6.1 (`connection`, `proxy-connection`, `keep-alive`,
/// `te`, `transfer-encoding`, `upgrade`) and every field the `connection` header names.
/// `options` are the lower-cased `connection` tokens ([`connection_options`]).
pub(crate) fn is_hop_by_hop(name: &str, options: &[String]) -> bool {
    matches!(
        name,
        "connection" | "proxy-connection" | "keep-alive" | "te" | "transfer-encoding" | "upgrade"
    ) || options.iter().any(|o| o == name)
}

/// The connection options (field names) listed in all `connection` header lines, lower-cased
/// (RFC 9110 §7.6.1: `Connection = #connection-option`, case-insensitive tokens).
pub(crate) fn connection_options(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|o| o.trim().to_ascii_lowercase())
        .filter(|o| !o.is_empty())
        .collect()
}

/// The W3C trace context to send: the agent's if its `traceparent` is valid (with its
/// `tracestate`), else a new trace with the fresh ids, not sampled (the sidecar records
/// nothing itself).
fn trace_context(headers: &HeaderMap, ids: &FreshIds) -> TraceContext {
    let mut parents = headers.get_all("traceparent").iter();
    // W3C Trace Context §3.2: more than one traceparent makes the header invalid.
    let parsed = match (parents.next(), parents.next()) {
        (Some(value), None) => TraceContext::parse_traceparent(value.as_bytes()),
        _ => None,
    };
    match parsed {
        Some(mut tc) => {
            tc.tracestate = tracestate(headers);
            tc
        }
        None => TraceContext {
            version: 0,
            trace_id: ids.trace_id,
            parent_id: ids.span_id,
            flags: 0,
            tracestate: None,
        },
    }
}

/// All `tracestate` lines joined with `,` (W3C Trace Context §3.3.1.1 allows several), if the
/// result is non-empty printable ASCII of reasonable length (SPEC.md §5.5).
fn tracestate(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all("tracestate") {
        let value = value.to_str().ok()?.trim();
        if value.is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
        if joined.len() > MAX_TRACESTATE {
            return None;
        }
    }
    let printable = joined.bytes().all(|b| (0x20..=0x7e).contains(&b));
    (!joined.is_empty() && printable).then_some(joined)
}

/// The method as a `Cow`, borrowing the standard ones.
fn method_name(method: &Method) -> Cow<'static, str> {
    const STANDARD: [(&Method, &str); 9] = [
        (&Method::GET, "GET"),
        (&Method::HEAD, "HEAD"),
        (&Method::POST, "POST"),
        (&Method::PUT, "PUT"),
        (&Method::DELETE, "DELETE"),
        (&Method::CONNECT, "CONNECT"),
        (&Method::OPTIONS, "OPTIONS"),
        (&Method::TRACE, "TRACE"),
        (&Method::PATCH, "PATCH"),
    ];
    STANDARD.iter().find(|(m, _)| *m == method).map_or_else(
        || Cow::Owned(method.as_str().to_owned()),
        |(_, s)| Cow::Borrowed(*s),
    )
}

#[cfg(test)]
mod tests {
    use aimux_wire::{IntentFlags, Limits, Protocol};
    use http::HeaderValue;

    use super::*;

    const ALICE: &str = "spiffe://example.org/agent/alice";

    fn ids() -> FreshIds {
        FreshIds {
            request_id: [7; 16],
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
        }
    }

    fn http_intent() -> Intent {
        Intent::new(Protocol::Http, "POST", "/mcp")
    }

    fn target() -> Target {
        Target {
            destination: "tools".into(),
            authority: "127.0.0.1:15002".into(),
            path: "/mcp?session=1".into(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(*n, HeaderValue::from_static(v));
        }
        map
    }

    fn names(env: &RequestEnvelope) -> Vec<&str> {
        let head = env.http.as_ref().unwrap();
        head.headers.iter().map(|h| h.name.as_ref()).collect()
    }

    #[test]
    fn builds_identity_destination_intent_and_head() {
        let h = headers(&[
            ("host", "127.0.0.1:15002"),
            ("content-type", "application/json"),
            ("content-length", "17"),
        ]);
        let sniffed = Intent {
            flags: IntentFlags::STREAMING,
            ..Intent::new(Protocol::Mcp, "tools/call", "get_weather")
        };
        let env = build_envelope(ALICE, &target(), &Method::POST, &h, sniffed.clone(), &ids());
        assert_eq!(env.identity.as_deref(), Some(ALICE));
        assert_eq!(env.destination, "tools");
        // The sniffer's intent is carried as it is.
        assert_eq!(env.intent.as_ref(), Some(&sniffed));
        assert_eq!(env.request_id, Some(RequestId::from([7; 16])));
        let head = env.http.as_ref().unwrap();
        assert_eq!(head.method, "POST");
        assert!(matches!(head.method, Cow::Borrowed(_)));
        assert_eq!(head.authority, "127.0.0.1:15002");
        assert_eq!(head.path, "/mcp?session=1");
        assert_eq!(names(&env), ["content-type", "content-length"]);
        // The envelope is encodable with the default limits.
        env.to_bytes(&Limits::default()).unwrap();
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named_fields() {
        let h = headers(&[
            ("connection", "keep-alive, X-Private-Hop"),
            ("connection", "upgrade"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-private-hop", "secret"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-end-to-end", "kept"),
            ("authorization", "Bearer kept"),
        ]);
        let env = build_envelope(ALICE, &target(), &Method::GET, &h, http_intent(), &ids());
        assert_eq!(names(&env), ["x-end-to-end", "authorization"]);
        // `te: trailers` is not copied, but said in the envelope's own field.
        assert!(env.te_trailers);
    }

    #[test]
    fn te_trailers_follows_the_agents_te_field() {
        for (te, yes) in [
            (None, false),
            (Some("trailers"), true),
            (Some("gzip, Trailers;q=0.9"), true),
            (Some("gzip"), false),
            (Some("trailers-not"), false),
        ] {
            let h = match te {
                Some(v) => headers(&[("te", v)]),
                None => headers(&[]),
            };
            let env = build_envelope(ALICE, &target(), &Method::POST, &h, http_intent(), &ids());
            assert_eq!(env.te_trailers, yes, "{te:?}");
            env.to_bytes(&Limits::default()).unwrap();
        }
    }

    #[test]
    fn repeated_fields_keep_their_order() {
        let h = headers(&[("accept", "a"), ("x-multi", "1"), ("x-multi", "2")]);
        let env = build_envelope(ALICE, &target(), &Method::GET, &h, http_intent(), &ids());
        let head = env.http.unwrap();
        let values: Vec<_> = head.headers.iter().map(|h| h.value.clone()).collect();
        assert_eq!(values, ["a", "1", "2"]);
    }

    #[test]
    fn continues_a_valid_trace_and_carries_tracestate() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let h = headers(&[
            ("traceparent", tp),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let env = build_envelope(ALICE, &target(), &Method::GET, &h, http_intent(), &ids());
        let trace = env.trace.as_ref().unwrap();
        assert_eq!(trace.traceparent(), tp);
        assert_eq!(
            trace.tracestate.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        // Carried in the envelope's own fields, not duplicated as headers.
        assert!(names(&env).is_empty());
        env.to_bytes(&Limits::default()).unwrap();
    }

    #[test]
    fn starts_a_new_trace_when_the_header_is_missing_or_invalid() {
        for h in [
            headers(&[]),
            headers(&[("traceparent", "garbage"), ("tracestate", "a=b")]),
            headers(&[(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )]),
        ] {
            let env = build_envelope(ALICE, &target(), &Method::GET, &h, http_intent(), &ids());
            let trace = env.trace.unwrap();
            assert_eq!(trace.trace_id, [0xab; 16]);
            assert_eq!(trace.parent_id, [0xcd; 8]);
            assert_eq!(trace.flags, 0);
            assert_eq!(trace.tracestate, None);
        }
    }

    #[test]
    fn fresh_ids_are_random_and_valid() {
        let a = FreshIds::random();
        let b = FreshIds::random();
        assert_ne!(a.request_id, b.request_id);
        assert_ne!(a.trace_id, [0; 16]);
        assert_ne!(a.span_id, [0; 8]);
    }

    #[test]
    fn literal_methods_and_asterisk_paths() {
        let t = Target {
            path: "*".into(),
            ..target()
        };
        let env = build_envelope(
            ALICE,
            &t,
            &Method::OPTIONS,
            &HeaderMap::new(),
            http_intent(),
            &ids(),
        );
        assert_eq!(env.http.as_ref().unwrap().path, "*");
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let env = build_envelope(
            ALICE,
            &target(),
            &purge,
            &HeaderMap::new(),
            http_intent(),
            &ids(),
        );
        assert_eq!(env.http.as_ref().unwrap().method, "PURGE");
        env.to_bytes(&Limits::default()).unwrap();
    }
}
