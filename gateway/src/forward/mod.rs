//! Forwarding upstream: the services table (each service balancing over its upstream URLs,
//! with a circuit breaker and a request limit per upstream) and the clients (HTTP/1.1,
//! h2c and HTTPS in `client`, HTTP/3 in `h3`) that send a request and return the response
//! head as soon as it arrives, its body still streaming.

pub(crate) mod balance;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod h3;
pub(crate) mod headers;
mod service;
pub(crate) mod tls;

pub(crate) use self::service::{Service, Services, UpstreamStatus};

use std::pin::pin;
use std::time::{Duration, Instant};

use aimux_wire::{Outcome, TraceContext};
use futures_util::TryFutureExt;
use futures_util::future::Either;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use self::balance::{Lease, Unavailable};
use self::body::{Leased, RequestBody, ResponseBody, UpstreamBody};
use self::h3::{H3Client, H3Error};
use crate::config::{Timeouts, UpstreamProtocol};
use crate::policy::{Caller, Refusal};

/// A request on its way upstream.
#[derive(Debug)]
pub(crate) struct Outgoing<'a> {
    pub(crate) method: Method,
    /// The request target in origin form, as the agent sent it.
    pub(crate) target: &'a str,
    pub(crate) headers: HeaderMap,
    pub(crate) body: RequestBody,
    pub(crate) caller: &'a Caller,
    pub(crate) trace: Option<&'a TraceContext>,
    /// The route's response-head timeout, instead of the gateway's default.
    pub(crate) response_timeout: Option<Duration>,
    /// The caller takes trailers (SPEC.md §5.9): `te: trailers` goes upstream.
    pub(crate) te_trailers: bool,
}

/// What stays the same across the attempts of one request.
#[derive(Debug)]
struct Fixed<'a> {
    target: &'a str,
    caller: &'a Caller,
    trace: Option<&'a TraceContext>,
    response_timeout: Option<Duration>,
    te_trailers: bool,
}

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// The gateway answers the sidecar with this outcome.
    Refused(Refusal),
    /// The request body failed (the sidecar reset its stream): nobody is waiting for an
    /// answer.
    Cancelled(String),
}

/// Why an upstream client returned no response head.
#[derive(Debug)]
enum UpstreamError {
    Hyper(hyper_util::client::legacy::Error),
    H3(H3Error),
}

impl UpstreamError {
    fn is_request_body_error(&self) -> bool {
        match self {
            Self::Hyper(e) => client::is_request_body_error(e),
            Self::H3(e) => e.is_request_body_error(),
        }
    }

    fn chain(&self) -> String {
        match self {
            Self::Hyper(e) => client::client_error_chain(e),
            Self::H3(e) => e.to_string(),
        }
    }
}

/// Sends requests upstream.
#[derive(Debug)]
pub(crate) struct Forwarder {
    clients: client::UpstreamClients,
    /// The QUIC client endpoints and connections of HTTP/3 upstreams.
    h3: H3Client,
    connect_timeout: Duration,
    response_head_timeout: Duration,
}

impl Forwarder {
    pub(crate) fn new(timeouts: &Timeouts) -> Self {
        Self {
            clients: client::build_all(timeouts.connect),
            h3: H3Client::new(timeouts.connect),
            connect_timeout: timeouts.connect,
            response_head_timeout: timeouts.response_head,
        }
    }

    /// Closes the HTTP/3 connections and client endpoints (bounded); hyper's pooled
    /// connections close as the forwarder is dropped.
    pub(crate) async fn shutdown(&self) {
        self.h3.shutdown().await;
    }

    /// Sends `out` to one of `service`'s upstreams and returns as soon as the response
    /// head has arrived; the body streams as the caller polls it. Dropping the returned
    /// future or body cancels the upstream request (hyper closes that connection; an
    /// HTTP/3 request stream is reset with H3_REQUEST_CANCELLED).
    ///
    /// The upstream's breaker hears how the exchange went once the head (or the failure) is
    /// known; the body holds the upstream's lease, so the request counts as in flight there
    /// until the body ends.
    pub(crate) async fn send(
        &self,
        service: &Service,
        out: Outgoing<'_>,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        // RFC 9110 §9.2.2: a request with an idempotent method can be sent again when the
        // first attempt may or may not have reached the server; a body already streamed
        // cannot, so only bodyless requests are retried.
        if let Some(agent) = &service.agent {
            return Err(ForwardError::Refused(Refusal::new(
                Outcome::NoRoute,
                format!(
                    "service `{}` is agent `{agent}`, reachable only through the mesh's \
                     tunnel (its sidecar's connection), not from the dev-mode listener",
                    service.name
                ),
            )));
        }
        if service.tcp {
            return Err(ForwardError::Refused(Refusal::new(
                Outcome::NoRoute,
                format!(
                    "service `{}` is a raw TCP service: it takes TCP connections (a sidecar \
                     listener with protocol = \"tcp\"), not HTTP requests",
                    service.name
                ),
            )));
        }
        let Outgoing {
            method,
            target,
            headers,
            body,
            caller,
            trace,
            response_timeout,
            te_trailers,
        } = out;
        let fixed = Fixed {
            target,
            caller,
            trace,
            response_timeout,
            te_trailers,
        };
        let retryable = method.is_idempotent() && body.is_empty();
        let attempts = if retryable { 1 + service.retries } else { 1 };
        // Kept for a retry only when one may happen: no header copy per request otherwise.
        let retry_parts = (attempts > 1).then(|| (method.clone(), headers.clone()));
        let mut result = self.attempt(service, method, headers, body, &fixed).await;
        for attempt in 1..attempts {
            let Some((method, headers)) = &retry_parts else {
                break;
            };
            let again = match &result {
                Err(ForwardError::Refused(r)) => r.outcome == Outcome::UpstreamUnreachable,
                Ok(response) => response.status() == StatusCode::SERVICE_UNAVAILABLE,
                Err(ForwardError::Cancelled(_)) => false,
            };
            if !again {
                break;
            }
            // A short, jittered pause: the next pick avoids an upstream whose breaker
            // opened, and a restarting one gets a moment.
            let pause = RETRY_BACKOFF.mul_f64(0.5 + rand_unit());
            tokio::time::sleep(pause).await;
            tracing::debug!(service = %service.name, attempt, "retrying an idempotent request");
            let body = RequestBody::empty();
            result = self
                .attempt(service, method.clone(), headers.clone(), body, &fixed)
                .await;
        }
        result
    }

    /// Connects to one of a raw TCP service's upstreams (within the connect timeout). The
    /// lease counts the connection as in flight until it is dropped; a failure to connect
    /// counts against the upstream's breaker.
    pub(crate) async fn connect_tcp(
        &self,
        service: &Service,
    ) -> Result<(tokio::net::TcpStream, Lease), Refusal> {
        let (upstream, mut lease) = service
            .pick(Instant::now())
            .map_err(|e| unavailable(service, &e))?;
        let connect = tokio::net::TcpStream::connect(upstream.authority.as_str());
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                lease.succeeded();
                Ok((tcp, lease))
            }
            Ok(Err(e)) => {
                let refusal = Refusal::new(
                    Outcome::UpstreamUnreachable,
                    format!(
                        "upstream {} of service `{}` could not be reached: {e}",
                        upstream.url, service.name
                    ),
                );
                lease.failed(Instant::now(), &refusal.reason);
                Err(refusal)
            }
            Err(_) => {
                let refusal = Refusal::new(
                    Outcome::UpstreamUnreachable,
                    format!(
                        "upstream {} of service `{}` did not accept a connection within {}s",
                        upstream.url,
                        service.name,
                        self.connect_timeout.as_secs_f64()
                    ),
                );
                lease.failed(Instant::now(), &refusal.reason);
                Err(refusal)
            }
        }
    }

    /// One attempt at one upstream.
    async fn attempt(
        &self,
        service: &Service,
        method: Method,
        headers: HeaderMap,
        body: RequestBody,
        out: &Fixed<'_>,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let (upstream, mut lease) = service
            .pick(Instant::now())
            .map_err(|e| ForwardError::Refused(unavailable(service, &e)))?;
        let uri = upstream
            .uri_for(out.target)
            .map_err(ForwardError::Refused)?;
        let identity = HeaderValue::from_str(out.caller.id_str()).map_err(|_| {
            ForwardError::Refused(Refusal::new(
                Outcome::InternalError,
                "the caller's identity cannot be sent as a header",
            ))
        })?;
        let mut headers = headers;
        headers::prepare_request(&mut headers, &upstream.host, &identity, out.trace);
        if out.te_trailers {
            let http1 = service.protocol == UpstreamProtocol::Http1;
            headers::accept_trailers(&mut headers, http1);
        }
        let head_timeout = out.response_timeout.unwrap_or(self.response_head_timeout);
        let mut body = body;
        let body_sent = body.end_signal();
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        // The response-head timeout runs from the end of the request body (as Envoy's
        // route timeout does): an upload that takes longer than the timeout to a server
        // that answers only once it has read everything is not an upstream fault. An
        // upstream may also answer before the body is complete.
        let response = match service.protocol {
            UpstreamProtocol::Http3 => {
                let h3 = service.h3.get(lease.index()).ok_or_else(|| {
                    ForwardError::Refused(Refusal::new(
                        Outcome::InternalError,
                        format!(
                            "service `{}` has no HTTP/3 upstream {}",
                            service.name, upstream.url
                        ),
                    ))
                })?;
                Either::Left(
                    self.h3
                        .request(h3, request)
                        .map_ok(|r| r.map(|b| UpstreamBody::H3(Box::new(b))))
                        .map_err(UpstreamError::H3),
                )
            }
            protocol => {
                let sent = match (&service.tls_client, protocol) {
                    (Some(tls), _) if upstream.tls => {
                        // hyper-util writes `Host` from the URI on HTTP/1.1 connections
                        // only; on HTTP/2 ones the authority travels as `:authority` (RFC
                        // 9113 §8.3.1).
                        request.headers_mut().remove(http::header::HOST);
                        tls.request(request)
                    }
                    (_, UpstreamProtocol::H2c) => {
                        // RFC 9113 §8.3.1: the authority travels as `:authority` (from the
                        // URI).
                        request.headers_mut().remove(http::header::HOST);
                        self.clients.h2c.request(request)
                    }
                    _ => self.clients.http1.request(request),
                };
                Either::Right(
                    sent.map_ok(|r| r.map(UpstreamBody::Hyper))
                        .map_err(UpstreamError::Hyper),
                )
            }
        };
        let mut response = pin!(response);
        let early = tokio::select! {
            r = &mut response => Some(r),
            _ = body_sent => None,
        };
        let result = match early {
            Some(r) => Ok(r),
            None => tokio::time::timeout(head_timeout, response).await,
        };
        // A request that fails because its own body did is no verdict on the upstream: the
        // lease is dropped unsettled.
        match result {
            Ok(Ok(response)) => {
                if is_upstream_failure(response.status()) {
                    let cause = format!(
                        "upstream {} of service `{}` answered {}",
                        upstream.url,
                        service.name,
                        response.status()
                    );
                    lease.failed(Instant::now(), &cause);
                } else {
                    lease.succeeded();
                }
                Ok(response.map(|body| Leased::new(body, lease)))
            }
            Ok(Err(e)) if e.is_request_body_error() => Err(ForwardError::Cancelled(e.chain())),
            Ok(Err(e)) => {
                let refusal = match e {
                    UpstreamError::Hyper(e) => client::refusal(
                        &e,
                        &upstream.url,
                        &service.name,
                        service.protocol,
                        self.connect_timeout,
                    ),
                    UpstreamError::H3(e) => e.refusal(&upstream.url, &service.name),
                };
                lease.failed(Instant::now(), &refusal.reason);
                Err(ForwardError::Refused(refusal))
            }
            Err(_) => {
                let refusal = Refusal::new(
                    Outcome::UpstreamTimeout,
                    format!(
                        "upstream {} of service `{}` sent no response head within {}s of \
                     receiving the whole request",
                        upstream.url,
                        service.name,
                        head_timeout.as_secs_f64()
                    ),
                );
                lease.failed(Instant::now(), &refusal.reason);
                Err(ForwardError::Refused(refusal))
            }
        }
    }
}

/// The refusal when no upstream of `service` can take a request: `overloaded` (503) when
/// they are at their request limit, `upstream_unreachable` when their breakers are open.
fn unavailable(service: &Service, e: &Unavailable) -> Refusal {
    let outcome = match e {
        Unavailable::NoUpstreams => Outcome::NoRoute,
        Unavailable::AllOpen { .. } => Outcome::UpstreamUnreachable,
        Unavailable::AtLimit { .. } => Outcome::Overloaded,
    };
    Refusal::new(outcome, format!("service `{}`: {e}", service.name))
}

/// The most retries a service may ask for: each is another attempt at a struggling upstream.
pub(super) const MAX_RETRIES: u32 = 5;

/// The base pause before a retry (jittered between half and one and a half of it).
const RETRY_BACKOFF: Duration = Duration::from_millis(25);

/// A number in [0, 1) from the clock's low bits: retry jitter needs spread, not secrecy.
fn rand_unit() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// The statuses of an upstream that is down, overloaded or restarting (often sent by a
/// proxy in front of it) count against its breaker; every other status is the
/// application's answer.
fn is_upstream_failure(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_gateway_errors_and_unavailability_count_against_an_upstream() {
        for code in [502, 503, 504] {
            assert!(is_upstream_failure(StatusCode::from_u16(code).unwrap()));
        }
        for code in [200, 204, 400, 404, 429, 500, 501] {
            assert!(!is_upstream_failure(StatusCode::from_u16(code).unwrap()));
        }
    }
}
