//! Building the agent's HTTP responses: the upstream's head from a `forwarded` envelope, or a
//! short text answer that says why the request was not forwarded.

use aimux_wire::{HttpResponseHead, ResponseEnvelope};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{Either, Full};

use crate::body::RecvBody;
use crate::request::is_hop_by_hop;

/// The body of every response the sidecar gives: a small fixed text, or the stream.
pub(crate) type ResponseBody = Either<Full<Bytes>, RecvBody>;

/// Names what happened to a request that was not forwarded: an outcome of SPEC.md §6.2
/// (`denied_by_policy`, `no_route`...) when the gateway answered, or one of the sidecar's own
/// (`no_connection`, `bad_gateway_reply`...) when the gateway could not be asked.
pub(crate) const OUTCOME_HEADER: HeaderName = HeaderName::from_static("x-aimux-outcome");

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// A text answer: `status`, `x-aimux-outcome: outcome`, and `message` as the body.
pub(crate) fn text(
    status: StatusCode,
    outcome: &'static str,
    message: &str,
) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(format!("{message}\n")))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, TEXT_PLAIN);
    headers.insert(OUTCOME_HEADER, HeaderValue::from_static(outcome));
    response
}

/// The answer to a request the gateway did not forward: the envelope's HTTP status if it sent
/// a head, else the outcome's suggested status (SPEC.md §6.2); its end-to-end header fields;
/// `x-aimux-outcome`; and the reason as text. The reason is for people (SPEC.md §6.1), so it
/// goes in the body, never parsed.
pub(crate) fn refusal(envelope: &ResponseEnvelope) -> Response<ResponseBody> {
    let outcome = envelope.outcome;
    let message = if envelope.reason.is_empty() {
        format!("aimux gateway: {outcome}")
    } else {
        format!("aimux gateway: {outcome}: {}", envelope.reason)
    };
    let status = envelope
        .http
        .as_ref()
        .map(|head| head.status)
        .filter(|s| (200..=599).contains(s))
        .unwrap_or_else(|| outcome.suggested_http_status());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    // The outcome header is set below, once the gateway's own fields are in.
    let mut response = text(status, "unknown", &message);
    let headers = response.headers_mut();
    if let Some(head) = &envelope.http {
        for (name, value) in end_to_end(&head.headers) {
            // The body is ours, so the gateway's framing and type do not apply to it.
            if name != http::header::CONTENT_LENGTH && name != CONTENT_TYPE {
                headers.append(name, value);
            }
        }
    }
    headers.insert(OUTCOME_HEADER, HeaderValue::from_static(outcome.as_str()));
    response
}

/// The status and header fields of a `forwarded` response head.
///
/// Hop-by-hop fields are dropped (the gateway should not send them, SPEC.md §2.4; hyper frames
/// the agent's response itself). `content-length` is kept, so the agent sees the upstream's
/// framing: hyper then sends exactly that many bytes, and fails the response if the stream
/// carries more or fewer.
pub(crate) fn forwarded(head: &HttpResponseHead) -> Result<(StatusCode, HeaderMap), String> {
    // 1xx are interim responses and 101 would switch protocols: neither can be relayed as the
    // final answer to an HTTP/1.1 request here.
    let status = StatusCode::from_u16(head.status)
        .ok()
        .filter(|s| !s.is_informational())
        .ok_or_else(|| format!("the gateway relayed an unusable status {}", head.status))?;
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in end_to_end(&head.headers) {
        headers.append(name, value);
    }
    Ok((status, headers))
}

/// The end-to-end fields of an envelope's head that are valid HTTP/1.1 fields. SPEC.md §5.8 already
/// excludes NUL, CR and LF; the few values hyper would still refuse (other control bytes) are
/// skipped rather than failing the whole response.
pub(crate) fn end_to_end(
    headers: &[aimux_wire::Header],
) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
    let options: Vec<String> = headers
        .iter()
        .filter(|h| h.name == "connection")
        .filter_map(|h| std::str::from_utf8(&h.value).ok())
        .flat_map(|v| v.split(','))
        .map(|o| o.trim().to_ascii_lowercase())
        .collect();
    headers.iter().filter_map(move |h| {
        if is_hop_by_hop(&h.name, &options) {
            return None;
        }
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_maybe_shared(h.value.clone()).ok()?;
        Some((name, value))
    })
}

#[cfg(test)]
mod tests {
    use aimux_wire::Outcome;
    use http_body_util::BodyExt;

    use super::*;

    async fn body_text(response: Response<ResponseBody>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn refusals_use_the_suggested_status_and_name_the_outcome() {
        let cases = [
            (Outcome::DeniedByPolicy, 403),
            (Outcome::NoRoute, 502),
            (Outcome::UpstreamTimeout, 504),
            (Outcome::Overloaded, 503),
            (Outcome::MalformedRequest, 400),
            (Outcome::RateLimited, 429),
            (Outcome::Isolated, 403),
            (Outcome::Unknown(42), 502),
        ];
        for (outcome, status) in cases {
            let response = refusal(&ResponseEnvelope::new(outcome, "because"));
            assert_eq!(response.status().as_u16(), status, "{outcome}");
            assert_eq!(response.headers()[OUTCOME_HEADER], outcome.as_str());
            let text = body_text(response).await;
            assert_eq!(text, format!("aimux gateway: {outcome}: because\n"));
        }
    }

    #[tokio::test]
    async fn a_refusal_with_a_head_keeps_its_status_and_fields() {
        let env = ResponseEnvelope {
            outcome: Outcome::Overloaded,
            reason: String::new(),
            http: Some(
                HttpResponseHead::new(429)
                    .with_header("retry-after", "3")
                    .with_header("content-length", "99")
                    .with_header("connection", "close"),
            ),
            framed_payload: false,
        };
        let response = refusal(&env);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3");
        assert!(response.headers().get("connection").is_none());
        assert!(response.headers().get("content-length").is_none());
        assert_eq!(body_text(response).await, "aimux gateway: overloaded\n");
    }

    #[tokio::test]
    async fn rate_limits_and_isolation_pass_retry_after_on() {
        for (outcome, status) in [
            (Outcome::RateLimited, StatusCode::TOO_MANY_REQUESTS),
            (Outcome::Isolated, StatusCode::FORBIDDEN),
        ] {
            let env = ResponseEnvelope {
                outcome,
                reason: "slow down".into(),
                http: Some(HttpResponseHead::new(status.as_u16()).with_header("retry-after", "7")),
                framed_payload: false,
            };
            let response = refusal(&env);
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()["retry-after"], "7");
            assert_eq!(response.headers()[OUTCOME_HEADER], outcome.as_str());
        }
    }

    #[test]
    fn forwarded_heads_drop_hop_by_hop_fields_and_keep_content_length() {
        let head = HttpResponseHead::new(200)
            .with_header("content-type", "text/event-stream")
            .with_header("content-length", "12")
            .with_header("transfer-encoding", "chunked")
            .with_header("connection", "x-hop")
            .with_header("x-hop", "1")
            .with_header("set-cookie", "a=1")
            .with_header("set-cookie", "b=2");
        let (status, headers) = forwarded(&head).unwrap();
        assert_eq!(status, StatusCode::OK);
        let names: Vec<_> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "content-length", "set-cookie"]);
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);

        assert!(forwarded(&HttpResponseHead::new(101)).is_err());
        assert!(forwarded(&HttpResponseHead::new(100)).is_err());
    }

    #[test]
    fn text_answers() {
        let r = text(StatusCode::SERVICE_UNAVAILABLE, "no_connection", "down");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[OUTCOME_HEADER], "no_connection");
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    }
}
