//! Forwarding upstream: the services table (each service balancing over its upstream URLs,
//! with a circuit breaker and a request limit per upstream) and the clients (HTTP/1.1,
//! h2c and HTTPS in `client`, HTTP/3 in `h3`) that send a request and return the response
//! head as soon as it arrives, its body still streaming.

pub(crate) mod balance;
pub(crate) mod body;
pub(crate) mod client;
pub(crate) mod h3;
pub(crate) mod headers;
pub(crate) mod tls;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_wire::{Outcome, TraceContext};
use futures_util::TryFutureExt;
use futures_util::future::Either;
use http::header::{HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};

use self::balance::{Balancer, BreakerState, Lease, Unavailable};
use self::body::{Leased, RequestBody, ResponseBody, UpstreamBody};
use self::h3::{H3Client, H3Error, H3Upstream};
use crate::config::{ServiceConfig, Timeouts, UpstreamProtocol};
use crate::error::GatewayError;
use crate::metrics::UNKNOWN_SERVICE;
use crate::policy::{Caller, Refusal};

/// One upstream base URL of a service.
#[derive(Debug)]
struct Upstream {
    /// The URL as configured, for messages.
    url: String,
    authority: Authority,
    /// `Host` sent upstream: the upstream's authority (RFC 9110 §7.2).
    host: HeaderValue,
    /// The base path without a trailing `/` (empty for `http://host:port`).
    base_path: String,
    /// A raw TCP upstream (`tcp://host:port`): it takes raw streams, not HTTP requests.
    tcp: bool,
    /// An `https://` upstream: reached through the service's TLS client.
    tls: bool,
}

impl Upstream {
    fn parse(service: &str, uri: &Uri) -> Result<Self, GatewayError> {
        let bad = |reason| GatewayError::BadUpstream {
            service: service.to_owned(),
            upstream: uri.to_string(),
            reason,
        };
        let tcp = uri.scheme_str() == Some("tcp");
        let tls = uri.scheme_str() == Some("https");
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some("tcp") if uri.port().is_some() && uri.path() == "/" => {}
            Some("tcp") => {
                return Err(bad(
                    "a raw TCP upstream is tcp://HOST:PORT, with a port and no path",
                ));
            }
            _ => {
                return Err(bad(
                    "it must be an absolute http://HOST[:PORT] or https://HOST[:PORT] URL",
                ));
            }
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in upstream URLs is not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a base URL cannot have a query"));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("its host cannot be sent as a Host header"))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let scheme = uri.scheme_str().unwrap_or("http");
        Ok(Self {
            url: format!("{scheme}://{authority}{base_path}"),
            authority,
            host,
            base_path,
            tcp,
            tls,
        })
    }

    /// The upstream URL of a request target in origin form (`/mcp?x=1`): the target
    /// appended to the base path.
    fn uri_for(&self, target: &str) -> Result<Uri, Refusal> {
        if !target.starts_with('/') {
            // Only `*` (asterisk-form, `OPTIONS *`) gets here: it addresses the server
            // itself, and a base path could not be joined with it.
            return Err(Refusal::new(
                Outcome::MalformedRequest,
                format!("request target `{target}` cannot be forwarded: only paths can"),
            ));
        }
        let pq: PathAndQuery = format!("{}{target}", self.base_path).parse().map_err(|_| {
            Refusal::new(
                Outcome::MalformedRequest,
                format!("request target `{target}` is not a valid URI path"),
            )
        })?;
        Uri::builder()
            .scheme(if self.tls {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            })
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| {
                Refusal::new(
                    Outcome::InternalError,
                    format!("cannot build the upstream URL from {}: {e}", self.url),
                )
            })
    }
}

/// A service: its name, upstreams and their balancer.
#[derive(Debug)]
pub(crate) struct Service {
    name: String,
    upstreams: Vec<Upstream>,
    balancer: Balancer,
    protocol: UpstreamProtocol,
    retries: u32,
    /// Raw TCP upstreams: the service takes raw streams only.
    tcp: bool,
    tls_client: Option<client::TlsClient>,
    /// For an `http3` service, the QUIC side of each upstream (same order as `upstreams`).
    h3: Vec<H3Upstream>,
    /// An agent of the mesh: requests go over its sidecar's connection, not to upstreams.
    agent: Option<aimux_certs::WorkloadName>,
}

impl Service {
    fn from_config(cfg: &ServiceConfig, connect_timeout: Duration) -> Result<Self, GatewayError> {
        if let Some(agent) = &cfg.agent {
            return Self::agent(cfg, agent);
        }
        if cfg.max_requests == 0 {
            return Err(GatewayError::InvalidService {
                service: cfg.name.clone(),
                reason: "max_requests = 0 would refuse every request; give each upstream a \
                         limit of at least 1 (default 1024)"
                    .to_owned(),
            });
        }
        if cfg.upstreams.is_empty() {
            return Err(GatewayError::NoUpstreams {
                service: cfg.name.clone(),
            });
        }
        let (upstreams, h3) = match cfg.protocol {
            UpstreamProtocol::Http3 => {
                let quic = h3::client_config(&cfg.name, &cfg.tls)?;
                cfg.upstreams
                    .iter()
                    .map(|u| H3Upstream::parse(&cfg.name, u, &cfg.tls, &quic))
                    .collect::<Result<(Vec<_>, Vec<_>), _>>()?
            }
            _ => (
                cfg.upstreams
                    .iter()
                    .map(|u| Upstream::parse(&cfg.name, u))
                    .collect::<Result<_, _>>()?,
                Vec::new(),
            ),
        };
        let tcp = upstreams.iter().any(|u| u.tcp);
        if upstreams.iter().any(|u| u.tcp != tcp) {
            return Err(GatewayError::BadUpstream {
                service: cfg.name.clone(),
                upstream: cfg
                    .upstreams
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: "a service's upstreams are either all tcp:// (raw TCP) or all \
                         http:// and https://",
            });
        }
        check_schemes(&cfg.name, cfg.protocol, &upstreams)?;
        let tls_client =
            if cfg.protocol != UpstreamProtocol::Http3 && upstreams.iter().any(|u| u.tls) {
                Some(client::build_tls(
                    &cfg.name,
                    &cfg.tls,
                    cfg.protocol,
                    connect_timeout,
                )?)
            } else {
                None
            };
        let balancer = Balancer::new(
            &cfg.name,
            upstreams.iter().map(|u| u.url.as_str()),
            cfg.balance,
            cfg.breaker,
            cfg.max_requests,
        );
        Ok(Self {
            name: cfg.name.clone(),
            upstreams,
            balancer,
            protocol: cfg.protocol,
            retries: cfg.retries.min(MAX_RETRIES),
            tcp,
            tls_client,
            h3,
            agent: None,
        })
    }

    /// A service that is an agent of the mesh: no upstreams, no balancer to speak of.
    fn agent(cfg: &ServiceConfig, agent: &aimux_certs::WorkloadName) -> Result<Self, GatewayError> {
        if !cfg.upstreams.is_empty() {
            return Err(GatewayError::AgentWithUpstreams {
                service: cfg.name.clone(),
                agent: agent.to_string(),
            });
        }
        Ok(Self {
            name: cfg.name.clone(),
            upstreams: Vec::new(),
            balancer: Balancer::new(
                &cfg.name,
                std::iter::empty(),
                cfg.balance,
                cfg.breaker,
                cfg.max_requests,
            ),
            protocol: cfg.protocol,
            retries: 0,
            tcp: false,
            tls_client: None,
            h3: Vec::new(),
            agent: Some(agent.clone()),
        })
    }

    /// The agent this service is, if it is one.
    pub(crate) fn agent_name(&self) -> Option<&aimux_certs::WorkloadName> {
        self.agent.as_ref()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// True for a raw TCP service (`tcp://` upstreams).
    pub(crate) fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// The upstream the balancer picks, with the lease that counts the request on it.
    fn pick(&self, now: Instant) -> Result<(&Upstream, Lease), Unavailable> {
        let lease = self.balancer.pick(now)?;
        let upstream = self
            .upstreams
            .get(lease.index())
            .ok_or(Unavailable::NoUpstreams)?;
        Ok((upstream, lease))
    }
}

/// The URL schemes a protocol can be spoken over: `h2c` is HTTP/2 *without* TLS (RFC 9113
/// §3.3), `http2` HTTP/2 over TLS, which needs ALPN (RFC 9113 §3.2), so an `https://` URL.
fn check_schemes(
    service: &str,
    protocol: UpstreamProtocol,
    upstreams: &[Upstream],
) -> Result<(), GatewayError> {
    let mismatch = |u: &Upstream| match protocol {
        UpstreamProtocol::Http2 if !u.tls && !u.tcp => Some(
            "protocol http2 is HTTP/2 over TLS and needs an https:// URL; for HTTP/2 without \
             TLS use protocol = \"h2c\"",
        ),
        UpstreamProtocol::H2c if u.tls => Some(
            "protocol h2c is HTTP/2 without TLS; for an https:// upstream use protocol = \
             \"http2\" (or \"auto\")",
        ),
        _ => None,
    };
    match upstreams.iter().find_map(|u| mismatch(u).map(|r| (u, r))) {
        Some((u, reason)) => Err(GatewayError::BadUpstream {
            service: service.to_owned(),
            upstream: u.url.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The state of one upstream, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpstreamStatus<'a> {
    pub(crate) service: &'a str,
    /// The upstream's URL.
    pub(crate) upstream: &'a str,
    pub(crate) breaker: BreakerState,
    /// Requests in flight, response bodies included.
    pub(crate) outstanding: usize,
}

/// The configured services, by name.
#[derive(Debug, Default)]
pub(crate) struct Services {
    by_name: HashMap<String, Arc<Service>>,
}

impl Services {
    /// The services of `configs`; TLS upstreams' connections get `connect_timeout` to
    /// connect, as every upstream's do.
    pub(crate) fn from_config(
        configs: &[ServiceConfig],
        connect_timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let mut by_name = HashMap::with_capacity(configs.len());
        for cfg in configs {
            let service = Service::from_config(cfg, connect_timeout)?;
            if by_name
                .insert(cfg.name.clone(), Arc::new(service))
                .is_some()
            {
                return Err(GatewayError::DuplicateService {
                    service: cfg.name.clone(),
                });
            }
        }
        Ok(Self { by_name })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Service>> {
        self.by_name.get(name)
    }

    /// The breaker state and requests in flight of every upstream of every service.
    pub(crate) fn upstream_status(&self, now: Instant) -> Vec<UpstreamStatus<'_>> {
        let mut all = Vec::new();
        for service in self.by_name.values() {
            let states = service.balancer.status(now);
            for (upstream, state) in service.upstreams.iter().zip(states) {
                all.push(UpstreamStatus {
                    service: &service.name,
                    upstream: &upstream.url,
                    breaker: state.breaker,
                    outstanding: state.outstanding,
                });
            }
        }
        all
    }

    /// The metrics label for a destination: its name if it is a service, else `unknown`.
    pub(crate) fn label<'a>(&'a self, name: &str) -> &'a str {
        self.by_name
            .get_key_value(name)
            .map_or(UNKNOWN_SERVICE, |(k, _)| k.as_str())
    }
}

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
            Self::Hyper(e) => client::error_chain(e),
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
        let retry_parts = retryable.then(|| (method.clone(), headers.clone()));
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
                lease.failed(Instant::now());
                Err(Refusal::new(
                    Outcome::UpstreamUnreachable,
                    format!(
                        "upstream {} of service `{}` could not be reached: {e}",
                        upstream.url, service.name
                    ),
                ))
            }
            Err(_) => {
                lease.failed(Instant::now());
                Err(Refusal::new(
                    Outcome::UpstreamUnreachable,
                    format!(
                        "upstream {} of service `{}` did not accept a connection within {}s",
                        upstream.url,
                        service.name,
                        self.connect_timeout.as_secs_f64()
                    ),
                ))
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
                    lease.failed(Instant::now());
                } else {
                    lease.succeeded();
                }
                Ok(response.map(|body| Leased::new(body, lease)))
            }
            Ok(Err(e)) if e.is_request_body_error() => Err(ForwardError::Cancelled(e.chain())),
            Ok(Err(e)) => {
                lease.failed(Instant::now());
                Err(ForwardError::Refused(match e {
                    UpstreamError::Hyper(e) => client::refusal(
                        &e,
                        &upstream.url,
                        &service.name,
                        service.protocol,
                        self.connect_timeout,
                    ),
                    UpstreamError::H3(e) => e.refusal(&upstream.url, &service.name),
                }))
            }
            Err(_) => {
                lease.failed(Instant::now());
                Err(ForwardError::Refused(Refusal::new(
                    Outcome::UpstreamTimeout,
                    format!(
                        "upstream {} of service `{}` sent no response head within {}s of \
                     receiving the whole request",
                        upstream.url,
                        service.name,
                        head_timeout.as_secs_f64()
                    ),
                )))
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
const MAX_RETRIES: u32 = 5;

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

    fn config(name: &str, urls: &[&str], protocol: UpstreamProtocol) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            upstreams: urls.iter().map(|u| u.parse().unwrap()).collect(),
            protocol,
            balance: Default::default(),
            breaker: Default::default(),
            retries: 2,
            tls: Default::default(),
            agent: None,
            max_requests: ServiceConfig::DEFAULT_MAX_REQUESTS,
        }
    }

    const CONNECT: Duration = Duration::from_secs(5);

    fn service(urls: &[&str]) -> Result<Service, GatewayError> {
        Service::from_config(&config("echo", urls, UpstreamProtocol::Http1), CONNECT)
    }

    fn pick(s: &Service) -> &Upstream {
        s.pick(Instant::now()).unwrap().0
    }

    #[test]
    fn joins_the_target_onto_the_base_path() {
        let s = service(&["http://127.0.0.1:9000/api/"]).unwrap();
        let up = pick(&s);
        assert_eq!(
            up.uri_for("/mcp?x=1").unwrap().to_string(),
            "http://127.0.0.1:9000/api/mcp?x=1"
        );
        assert_eq!(up.host, "127.0.0.1:9000");
        let plain = service(&["http://localhost:8080"]).unwrap();
        assert_eq!(
            pick(&plain).uri_for("/").unwrap().to_string(),
            "http://localhost:8080/"
        );
        assert!(pick(&plain).uri_for("*").is_err());
    }

    #[test]
    fn picks_upstreams_round_robin() {
        let s = service(&["http://a:1", "http://b:2", "http://c:3"]).unwrap();
        let picked: Vec<_> = (0..6).map(|_| pick(&s).url.clone()).collect();
        assert_eq!(
            picked,
            [
                "http://a:1",
                "http://b:2",
                "http://c:3",
                "http://a:1",
                "http://b:2",
                "http://c:3"
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert!(matches!(
            service(&[]),
            Err(GatewayError::NoUpstreams { .. })
        ));
        let dup = config("x", &["http://a:1"], UpstreamProtocol::Http1);
        let err = Services::from_config(&[dup.clone(), dup], CONNECT).unwrap_err();
        assert!(matches!(err, GatewayError::DuplicateService { .. }));
        let mut zero = config("x", &["http://a:1"], UpstreamProtocol::Http1);
        zero.max_requests = 0;
        let err = Service::from_config(&zero, CONNECT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_requests = 0"), "{err}");
    }

    #[test]
    fn protocols_must_match_the_url_schemes() {
        let h2 = Service::from_config(
            &config("x", &["http://a:1"], UpstreamProtocol::Http2),
            CONNECT,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            h2,
            "service `x`: upstream `http://a:1` cannot be used: protocol http2 is HTTP/2 over \
             TLS and needs an https:// URL; for HTTP/2 without TLS use protocol = \"h2c\""
        );
        let h2c = Service::from_config(
            &config("x", &["https://a:1"], UpstreamProtocol::H2c),
            CONNECT,
        )
        .unwrap_err()
        .to_string();
        assert!(h2c.contains("protocol h2c is HTTP/2 without TLS"), "{h2c}");
    }

    #[test]
    fn https_upstreams_get_the_services_tls_client_and_https_urls() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        for protocol in [
            UpstreamProtocol::Http1,
            UpstreamProtocol::Http2,
            UpstreamProtocol::Auto,
        ] {
            let mut cfg = config("x", &["https://api.test/v1/", "https://b:8443"], protocol);
            cfg.tls.roots = vec![ca.cert.der().clone()];
            let s = Service::from_config(&cfg, CONNECT).unwrap();
            assert!(s.tls_client.is_some());
            let up = pick(&s);
            assert_eq!(up.url, "https://api.test/v1");
            assert_eq!(
                up.uri_for("/mcp").unwrap().to_string(),
                "https://api.test/v1/mcp"
            );
            assert_eq!(pick(&s).url, "https://b:8443");
        }
        // http:// only: no TLS client, even for `auto`.
        let plain = Service::from_config(
            &config("x", &["http://a:1"], UpstreamProtocol::Auto),
            CONNECT,
        )
        .unwrap();
        assert!(plain.tls_client.is_none());
    }

    #[test]
    fn unknown_destinations_get_a_fixed_label() {
        let s = Services::from_config(
            &[config("echo", &["http://a:1"], UpstreamProtocol::Http1)],
            CONNECT,
        )
        .unwrap();
        assert_eq!(s.label("echo"), "echo");
        assert_eq!(s.label("attacker-chosen"), UNKNOWN_SERVICE);
    }

    #[test]
    fn upstream_status_lists_every_upstream_with_its_lease_count() {
        let s = Services::from_config(
            &[config(
                "echo",
                &["http://a:1", "http://b:2/api"],
                UpstreamProtocol::Http1,
            )],
            CONNECT,
        )
        .unwrap();
        let now = Instant::now();
        let (_, lease) = s.get("echo").unwrap().pick(now).unwrap();
        let status = s.upstream_status(now);
        assert_eq!(
            status,
            [
                UpstreamStatus {
                    service: "echo",
                    upstream: "http://a:1",
                    breaker: BreakerState::Closed,
                    outstanding: 1,
                },
                UpstreamStatus {
                    service: "echo",
                    upstream: "http://b:2/api",
                    breaker: BreakerState::Closed,
                    outstanding: 0,
                },
            ]
        );
        drop(lease);
    }

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
