//! An HTTP request delivered to this agent: the head from the envelope, the payload
//! streamed from the tunnel as the request body, to the agent's own loopback HTTP server
//! over HTTP/1.1; its response head goes back as a `forwarded` response envelope and its
//! body frame by frame (server-sent events arrive at the caller one by one).

use std::net::SocketAddr;
use std::time::Duration;

use aimux_certs::SpiffeId;
use aimux_wire::{HttpResponseHead, Outcome, RequestEnvelope, ResponseEnvelope, codes};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::{debug, warn};

use super::{Inbound, RESPONSE_HEAD_WAIT, agent_failed, answer, refuse};
use crate::body::{RecvBody, RecvGuard};
use crate::reply::end_to_end;
use crate::request::{connection_options, envelope_fields};
use crate::tunnel::transport::{StreamRecv, StreamSend};

/// The header that tells the agent which mesh identity is calling, as the gateway tells
/// upstreams.
const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-aimux-identity");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Idle connections to the agent kept for reuse.
const MAX_IDLE: usize = 16;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) type AgentClient = Client<HttpConnector, RecvBody>;

/// A pooled HTTP/1.1 client for the agent's loopback server.
pub(super) fn client(connect_timeout: Duration) -> AgentClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .set_host(false)
        .build(connector)
}

/// Calls the agent at `addr` with the delivered request and answers the gateway.
pub(super) async fn deliver(
    inbound: &Inbound,
    envelope: &RequestEnvelope,
    caller: &SpiffeId,
    addr: SocketAddr,
    mut send: StreamSend,
    recv: StreamRecv,
    request_id: &str,
) {
    let request = match build(envelope, caller, addr) {
        Ok(parts) => parts,
        Err(reason) => {
            return refuse(inbound, send, recv, Outcome::MalformedRequest, reason).await;
        }
    };
    let body = RecvBody::new(
        Bytes::new(),
        RecvGuard::new(recv),
        request_id.to_owned(),
        inbound.counters.clone(),
        None,
    );
    let request = request.map(|()| body);
    let label = &inbound.label;
    let response =
        match tokio::time::timeout(RESPONSE_HEAD_WAIT, inbound.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let reason = if e.is_connect() {
                    format!(
                        "{label} could not be reached at http://{addr}: {}; is the agent running?",
                        chain(&e)
                    )
                } else {
                    format!("{label} failed before answering: {}", chain(&e))
                };
                let outcome = Outcome::UpstreamUnreachable;
                return agent_failed(inbound, send, outcome, reason, request_id).await;
            }
            Err(_) => {
                let reason = format!(
                    "{label} sent no response head within {}s",
                    RESPONSE_HEAD_WAIT.as_secs()
                );
                let outcome = Outcome::UpstreamTimeout;
                return agent_failed(inbound, send, outcome, reason, request_id).await;
            }
        };
    let (parts, mut body) = response.into_parts();
    let options = connection_options(&parts.headers);
    let head = HttpResponseHead {
        status: parts.status.as_u16(),
        headers: envelope_fields(&parts.headers, &options, &[]),
    };
    let bytes = match ResponseEnvelope::forwarded(head).to_bytes(&inbound.limits) {
        Ok(bytes) => bytes,
        Err(e) => {
            let reason = format!("the response head of {label} cannot be carried: {e}");
            return answer(
                inbound,
                &mut send,
                ResponseEnvelope::new(Outcome::InternalError, reason),
            )
            .await;
        }
    };
    if send.write(bytes).await.is_err() {
        return;
    }
    // Frame by frame, as the agent writes them. Trailers have no place in the envelope.
    loop {
        match body.frame().await {
            None => {
                send.finish();
                return;
            }
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if !data.is_empty() && send.write(data).await.is_err() {
                    debug!(
                        request_id,
                        "the gateway stopped reading the agent's response"
                    );
                    return;
                }
            }
            Some(Err(e)) => {
                warn!(
                    request_id,
                    "{label} failed in the middle of its response: {e}"
                );
                send.reset(codes::STREAM_UPSTREAM_FAILED);
                return;
            }
        }
    }
}

/// The request to the agent: the envelope's method, path and end-to-end fields, `Host`
/// naming the agent's address, `x-aimux-identity` the caller the gateway proved (whatever
/// the caller sent), and the envelope's trace context unless the head has one.
fn build(
    envelope: &RequestEnvelope,
    caller: &SpiffeId,
    addr: SocketAddr,
) -> Result<Request<()>, String> {
    let head = envelope
        .http
        .as_ref()
        .ok_or_else(|| "an HTTP delivery without an HTTP head".to_owned())?;
    let method = Method::from_bytes(head.method.as_bytes())
        .map_err(|_| format!("method `{}` cannot be sent to the agent", head.method))?;
    if !head.path.starts_with('/') {
        return Err(format!(
            "request target `{}` cannot be sent to the agent: only paths can",
            head.path
        ));
    }
    let uri: Uri = format!("http://{addr}{}", head.path)
        .parse()
        .map_err(|_| format!("request target `{}` is not a valid path", head.path))?;
    let mut headers = HeaderMap::with_capacity(head.headers.len() + 3);
    for (name, value) in end_to_end(&head.headers) {
        headers.append(name, value);
    }
    let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
    headers.insert(header::HOST, host);
    let identity = HeaderValue::from_str(&caller.to_string()).map_err(|e| e.to_string())?;
    headers.insert(IDENTITY_HEADER, identity);
    if let Some(trace) = &envelope.trace
        && !headers.contains_key(TRACEPARENT)
        && let Ok(value) = HeaderValue::from_str(&trace.traceparent())
    {
        headers.insert(TRACEPARENT, value);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// `outer: inner: innermost`, skipping hyper-util's generic wrapper.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = error.source().or(Some(error));
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}
