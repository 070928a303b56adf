//! Header rewriting at the gateway, the only place the mesh touches a request head.
//!
//! The payload is never touched. The head changes only as a proxy's must (RFC 9110 §7.6.1:
//! hop-by-hop fields do not cross the hop; `Host` names the upstream) plus the mesh's own
//! statement of who is calling (`x-aimux-identity`, always the gateway's, never the
//! agent's) and the trace context the sidecar carried in the envelope.

use aimux_wire::{Header, HttpRequestHead, TraceContext};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::policy::Refusal;

/// The header that tells an upstream which mesh identity is calling.
pub(crate) const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-aimux-identity");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes the hop-by-hop fields of RFC 9110 §7.6.1: `Connection` and every field it
/// names, and `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding`, `Upgrade`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        PROXY_CONNECTION,
        KEEP_ALIVE,
        header::TE,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Turns the envelope's header list into a `HeaderMap`, in order. Values that HTTP/1.1
/// cannot carry (control characters other than tab, which the envelope allows) refuse the
/// request as malformed.
pub(crate) fn from_envelope(head: &HttpRequestHead) -> Result<HeaderMap, Refusal> {
    let mut map = HeaderMap::with_capacity(head.headers.len());
    for Header { name, value } in &head.headers {
        let malformed = |what: &str| {
            Refusal::new(
                aimux_wire::Outcome::MalformedRequest,
                format!("request header `{name}` has {what} that HTTP/1.1 cannot carry"),
            )
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| malformed("a name"))?;
        let value = HeaderValue::from_maybe_shared(value.clone())
            .map_err(|_| malformed("a value with control characters"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Prepares the head of a request going upstream: hop-by-hop fields removed, `Host` set to
/// the upstream, `x-aimux-identity` set to the caller (any value the agent sent is
/// dropped), and the envelope's trace context added where the head has none.
pub(crate) fn prepare_request(
    headers: &mut HeaderMap,
    upstream_host: &HeaderValue,
    identity: &HeaderValue,
    trace: Option<&TraceContext>,
) {
    remove_hop_by_hop(headers);
    headers.insert(header::HOST, upstream_host.clone());
    headers.insert(IDENTITY_HEADER, identity.clone());
    let Some(trace) = trace else { return };
    if !headers.contains_key(TRACEPARENT)
        && let Ok(v) = HeaderValue::from_str(&trace.traceparent())
    {
        headers.insert(TRACEPARENT, v);
        // tracestate belongs to the traceparent it came with (W3C Trace Context §3.3).
        if let Some(state) = &trace.tracestate
            && !headers.contains_key(TRACESTATE)
            && let Ok(v) = HeaderValue::from_str(state)
        {
            headers.insert(TRACESTATE, v);
        }
    }
}

/// Whether a request's `TE` field lists `trailers` (RFC 9110 §10.1.4: a comma-separated
/// list of case-insensitive codings, each maybe with parameters).
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let name = coding.split(';').next().unwrap_or_default();
            name.trim().eq_ignore_ascii_case("trailers")
        })
}

/// Tells the upstream the gateway takes trailers: `te: trailers` (RFC 9110 §10.1.4), sent
/// when the request envelope carries `te-trailers` (SPEC.md §5.9), after the agent's own
/// hop-by-hop fields are gone. Over HTTP/1.1 (`http1`), `TE` is named in `Connection` too,
/// as RFC 9110 §10.1.4 asks of its senders; HTTP/2 and HTTP/3 forbid `Connection` and allow
/// `TE` only with this value (RFC 9113 §8.2.2, RFC 9114 §4.2), so where the protocol is not
/// known to be HTTP/1.1 the `Connection` option is left out (hyper's HTTP/2 client would
/// otherwise strip `TE` along with it).
pub(crate) fn accept_trailers(headers: &mut HeaderMap, http1: bool) {
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    if http1 {
        headers.append(header::CONNECTION, HeaderValue::from_static("te"));
    }
}

/// The upstream's response headers (or trailers) as envelope headers, hop-by-hop fields
/// removed.
pub(crate) fn to_envelope(mut headers: HeaderMap) -> Vec<Header> {
    remove_hop_by_hop(&mut headers);
    let mut out = Vec::with_capacity(headers.len());
    let mut current: Option<HeaderName> = None;
    // `into_iter` yields the name only for the first value of each name.
    for (name, value) in headers {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = &current {
            out.push(Header::new(
                name.as_str().to_owned(),
                bytes::Bytes::copy_from_slice(value.as_bytes()),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut m = map(&[
            ("connection", "close, x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("content-type", "application/json"),
        ]);
        remove_hop_by_hop(&mut m);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m.contains_key("content-type"));
    }

    #[test]
    fn identity_is_replaced_and_trace_added_only_when_absent() {
        let trace = TraceContext::parse_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        let mut m = map(&[
            ("x-aimux-identity", "spiffe://example.org/agent/mallory"),
            ("x-aimux-identity", "forged"),
            ("host", "127.0.0.1:15001"),
        ]);
        let host = HeaderValue::from_static("10.0.0.1:9000");
        let id = HeaderValue::from_static("spiffe://example.org/agent/alice");
        prepare_request(&mut m, &host, &id, Some(&trace));
        assert_eq!(
            m.get_all("x-aimux-identity").iter().collect::<Vec<_>>(),
            vec!["spiffe://example.org/agent/alice"]
        );
        assert_eq!(m["host"], "10.0.0.1:9000");
        assert_eq!(
            m["traceparent"],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );

        let mut own = map(&[("traceparent", "00-mine")]);
        prepare_request(&mut own, &host, &id, Some(&trace));
        assert_eq!(own["traceparent"], "00-mine");
    }

    #[test]
    fn trailers_are_accepted_only_when_te_lists_them() {
        for (te, yes) in [
            ("trailers", true),
            ("gzip, Trailers", true),
            ("deflate;q=0.5, trailers;q=1", true),
            ("gzip", false),
            ("trailersx", false),
        ] {
            assert_eq!(accepts_trailers(&map(&[("te", te)])), yes, "{te}");
        }
        assert!(!accepts_trailers(&HeaderMap::new()));
        assert!(accepts_trailers(&map(&[
            ("te", "gzip"),
            ("te", "trailers")
        ])));

        let mut h1 = map(&[("te", "gzip"), ("connection", "close")]);
        remove_hop_by_hop(&mut h1);
        accept_trailers(&mut h1, true);
        assert_eq!(h1["te"], "trailers");
        assert_eq!(h1["connection"], "te");
        let mut h2 = HeaderMap::new();
        accept_trailers(&mut h2, false);
        assert_eq!(h2.len(), 1);
        assert_eq!(h2["te"], "trailers");
    }

    #[test]
    fn envelope_headers_keep_order_and_repeats() {
        let head = HttpRequestHead::new("GET", "", "/")
            .with_header("accept", "a")
            .with_header("x-two", "1")
            .with_header("x-two", "2");
        let m = from_envelope(&head).unwrap();
        assert_eq!(
            m.get_all("x-two").iter().collect::<Vec<_>>(),
            vec!["1", "2"]
        );
        let back = to_envelope(m);
        assert_eq!(back, head.headers);

        let bad = HttpRequestHead::new("GET", "", "/").with_header("x", &b"a\x01b"[..]);
        let err = from_envelope(&bad).unwrap_err();
        assert_eq!(err.outcome, aimux_wire::Outcome::MalformedRequest);
    }
}
