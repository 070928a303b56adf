//! An HTTP request delivered to this agent: the head from the envelope, the payload
//! streamed from the tunnel as the request body, to the agent's own loopback HTTP server
//! over HTTP/1.1; its response head goes back as a `forwarded` response envelope and its
//! body frame by frame (server-sent events arrive at the caller one by one). When the
//! envelope carries `te-trailers`, the agent is asked for trailers (`te: trailers`) and the
//! answer is a framed payload that ends with them (SPEC.md §5.9, §6.3).

use std::net::SocketAddr;
use std::time::Duration;

use aimux_certs::SpiffeId;
use aimux_wire::{
    DataFrames, EncodeError, HttpResponseHead, Limits, Outcome, RequestEnvelope, ResponseEnvelope,
    codes, trailers_frame,
};
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::{debug, warn};

use super::{Inbound, RESPONSE_HEAD_WAIT, agent_failed, answer, refuse};
use crate::body::{RecvBody, RecvGuard};
use crate::fmt::client_error_chain;
use crate::reply::end_to_end;
use crate::request::{connection_options, envelope_fields};
use crate::tunnel::transport::{SendError, StreamRecv, StreamSend};

/// The header that tells the agent which mesh identity is calling, as the gateway tells
/// upstreams.
const IDENTITY_HEADER: HeaderName = HeaderName::from_static("x-aimux-identity");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// DATA frames up to this size go out in one write with their frame header (a copy);
/// larger ones as the header and then the agent's bytes as they are.
const COALESCE_MAX: usize = 4 * 1024;
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
                        client_error_chain(&e)
                    )
                } else {
                    format!(
                        "{label} failed before answering: {}",
                        client_error_chain(&e)
                    )
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
    // The caller takes trailers: answer framed, trailers and all (SPEC.md §6.3).
    let framed = envelope.te_trailers;
    let mut reply = ResponseEnvelope::forwarded(head);
    reply.framed_payload = framed;
    let bytes = match reply.to_bytes(&inbound.limits) {
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
    // Frame by frame, as the agent writes them; trailers only in a framed payload.
    loop {
        match body.frame().await {
            None => {
                send.finish();
                return;
            }
            Some(Ok(frame)) => match relay(&mut send, frame, framed, &inbound.limits).await {
                Ok(()) => {}
                Err(RelayError::Send(e)) => {
                    debug!(
                        request_id,
                        error = %e,
                        "the gateway stopped reading the agent's response"
                    );
                    return;
                }
                Err(RelayError::Encode(e)) => {
                    warn!(
                        request_id,
                        "the response of {label} cannot be framed for the gateway: {e}"
                    );
                    send.reset(codes::STREAM_UPSTREAM_FAILED);
                    return;
                }
            },
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

/// Why a frame of the agent's response could not be passed on.
#[derive(Debug)]
enum RelayError {
    /// The gateway stopped reading.
    Send(SendError),
    /// The agent's trailers cannot be put in a TRAILERS frame (over a limit).
    Encode(EncodeError),
}

/// Writes one body frame of the agent's response: its data as it is, or (`framed`) as DATA
/// frames, and its trailers (hop-by-hop fields removed) as a TRAILERS frame. Unframed,
/// trailers are dropped: the caller did not ask for them.
async fn relay(
    send: &mut StreamSend,
    frame: Frame<Bytes>,
    framed: bool,
    limits: &Limits,
) -> Result<(), RelayError> {
    let data = match frame.into_data() {
        Ok(data) => data,
        Err(frame) => {
            let Ok(trailers) = frame.into_trailers() else {
                return Ok(());
            };
            let options = connection_options(&trailers);
            let trailers = envelope_fields(&trailers, &options, &[]);
            if !framed || trailers.is_empty() {
                return Ok(());
            }
            let bytes = trailers_frame(&trailers, limits).map_err(RelayError::Encode)?;
            return send.write(bytes).await.map_err(RelayError::Send);
        }
    };
    if data.is_empty() {
        return Ok(());
    }
    if !framed {
        return send.write(data).await.map_err(RelayError::Send);
    }
    for (header, piece) in DataFrames::new(data, limits).map_err(RelayError::Encode)? {
        if piece.len() <= COALESCE_MAX {
            let mut chunk = BytesMut::with_capacity(header.as_slice().len() + piece.len());
            chunk.extend_from_slice(header.as_slice());
            chunk.extend_from_slice(&piece);
            send.write(chunk.freeze()).await.map_err(RelayError::Send)?;
        } else {
            send.write(header.to_bytes())
                .await
                .map_err(RelayError::Send)?;
            send.write(piece).await.map_err(RelayError::Send)?;
        }
    }
    Ok(())
}

/// The request to the agent: the envelope's method, path and end-to-end fields, `Host`
/// naming the agent's address, `x-aimux-identity` the caller the gateway proved (whatever
/// the caller sent), and the envelope's trace context unless the head has one; with
/// `te-trailers`, `te: trailers` (named in `Connection`, RFC 9110 §10.1.4: the agent is
/// spoken to over HTTP/1.1).
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
    if envelope.te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("te"));
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}
