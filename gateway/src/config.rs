//! The gateway's typed configuration. The `aimux` binary builds it from `mesh.toml`; the
//! library never reads files other than the certificates and the CRL named here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aimux_certs::Identity;
use aimux_certs::tls::MeshTrust;

use crate::audit::AuditConfig;
use crate::intent_pattern::{Glob, IntentPattern};
use crate::limits::isolation::IsolationConfig;
use crate::limits::rate::RateLimitConfig;
use crate::semantic::SemanticConfig;

/// Everything the gateway needs to run.
#[derive(Debug)]
pub struct GatewayConfig {
    /// The mesh CA and trust domain: client certificates must chain to it, and access rules
    /// name agents of this trust domain.
    pub trust: MeshTrust,
    /// The mutual-TLS tunnel listeners for sidecars (QUIC, HTTP/2 over TCP, or both); `None`
    /// runs without any (dev mode only).
    pub tunnel: Option<TunnelConfig>,
    /// The dev-mode plain-HTTP listener (identity *claimed* in `x-aimux-identity`): for
    /// experiments only, never production.
    pub dev_http: Option<SocketAddr>,
    /// The admin listener: `/healthz`, `/readyz`, `/metrics`.
    pub admin: Option<SocketAddr>,
    /// Services, routes, access rules and limits: what a reload may replace
    /// ([`crate::Reloader`]).
    pub policy: PolicyConfig,
    /// Where the audit log goes (one JSON line per decision); `None` for no audit log.
    pub audit: Option<AuditConfig>,
    /// Time limits.
    pub timeouts: Timeouts,
}

/// The hot-reloadable part of the configuration.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// The services requests can be forwarded to.
    pub services: Vec<ServiceConfig>,
    /// Rule routes (most specific wins) and semantic routes.
    pub routes: Vec<RouteConfig>,
    /// Access rules. Nothing is allowed unless a rule allows it; a matching deny always wins.
    pub access: Vec<AccessRuleConfig>,
    /// Per-identity rate limits; no rules, no limits.
    pub rate_limits: RateLimitConfig,
    /// Cutting off callers whose requests are mostly denied or failing; `None` turns it off.
    pub isolation: Option<IsolationConfig>,
    /// How semantic routes compare intents with their examples.
    pub semantic: SemanticConfig,
}

/// The tunnel listeners for sidecars (SPEC.md §12): the same certificate, client verifier,
/// CRL and stream limit for every transport, so a sidecar is admitted (or refused) the
/// same way whichever it uses. At least one of `quic` and `h2` must be set.
#[derive(Debug)]
pub struct TunnelConfig {
    /// The gateway's certificate (`spiffe://DOMAIN/gateway/NAME`) and key.
    pub identity: Identity,
    /// The mesh CRL (`crl.pem`), watched for changes while the gateway runs; a revoked
    /// agent loses its live connections on every transport.
    pub crl_path: PathBuf,
    /// How many requests (streams) one sidecar connection may have in flight at once: QUIC
    /// `initial_max_streams_bidi` (RFC 9000 §4.6), HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`
    /// (RFC 9113 §6.5.2).
    pub max_streams_per_connection: u32,
    /// UDP address of the QUIC listener (ALPN `aimux/1`), if any.
    pub quic: Option<SocketAddr>,
    /// TCP address of the HTTP/2-over-TLS listener (ALPN `h2`, SPEC.md §12.1), if any: for
    /// networks where UDP is blocked.
    pub h2: Option<SocketAddr>,
}

impl TunnelConfig {
    /// The default of [`TunnelConfig::max_streams_per_connection`].
    pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 1024;

    /// A tunnel with the default stream limit and no listener yet: set
    /// [`quic`](TunnelConfig::quic), [`h2`](TunnelConfig::h2) or both.
    pub fn new(identity: Identity, crl_path: impl Into<PathBuf>) -> Self {
        Self {
            identity,
            crl_path: crl_path.into(),
            max_streams_per_connection: Self::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            quic: None,
            h2: None,
        }
    }
}

/// A destination service and where its requests go.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The name envelopes (and routes and access rules) use.
    pub name: String,
    /// Base URLs `http://host:port[/base]` or `https://host[:port][/base]` (or
    /// `tcp://host:port` for a raw TCP service); requests are spread over them as
    /// `balance` says. Empty for an agent service.
    pub upstreams: Vec<http::Uri>,
    /// The service is this agent of the mesh: its requests and TCP streams are delivered,
    /// still in their envelopes, over the agent's own sidecar connection (SPEC.md §12.2),
    /// so the agent needs no inbound port. Exclusive with `upstreams`.
    pub agent: Option<aimux_certs::WorkloadName>,
    /// How the gateway speaks to the upstreams.
    pub protocol: UpstreamProtocol,
    /// How requests are spread over the upstreams. Default round-robin.
    pub balance: Balance,
    /// When an upstream is taken out of rotation after failures, and for how long.
    pub breaker: BreakerConfig,
    /// How many times a request that is safe to repeat (an idempotent method, no body) is
    /// sent again, to another upstream if there is one, when the upstream could not be
    /// reached or answered 503. Default 2.
    pub retries: u32,
    /// How the certificates of `https://` and HTTP/3 upstreams are checked.
    pub tls: UpstreamTls,
    /// Requests (or raw TCP connections) in flight at once per upstream, at least 1. An
    /// upstream at its limit gets no more; when all are, requests are refused at once with
    /// `overloaded` (503), like Envoy's `max_requests` circuit breaker. Default 1024.
    pub max_requests: u32,
}

/// How the gateway checks the certificate of a service's TLS upstreams (`https://` URLs,
/// and every HTTP/3 upstream): against the given CA certificates, or the system's roots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Trust anchors (DER). Empty: the system's trust store (read once, at startup, by
    /// `rustls-native-certs`).
    pub roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The name the certificate must be valid for, instead of the upstream URL's host
    /// (for upstreams addressed by IP or by an internal alias). Also sent as SNI.
    pub server_name: Option<String>,
}

impl ServiceConfig {
    /// The default number of retries of a request that is safe to repeat.
    pub const DEFAULT_RETRIES: u32 = 2;
    /// The default of [`ServiceConfig::max_requests`].
    pub const DEFAULT_MAX_REQUESTS: u32 = 1024;
}

/// How a service's requests are spread over its upstreams. Upstreams whose circuit breaker
/// is open are skipped either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each upstream in turn.
    #[default]
    RoundRobin,
    /// The upstream with the fewest requests in flight (power of two random choices when a
    /// service has many upstreams): slow or stuck upstreams get less traffic.
    LeastRequest,
}

impl Balance {
    /// The name used in `mesh.toml`: `round_robin`, `least_request`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequest => "least_request",
        }
    }
}

/// The circuit breaker of each upstream. Connection failures, timeouts and a 502, 503 or
/// 504 from the upstream are failures; any other answer is a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (no request goes to the upstream).
    /// Default 5; 0 disables the breaker.
    pub consecutive_failures: u32,
    /// How long an open breaker stays open before one trial request is let through (a
    /// success closes it, a failure opens it again). Default 10 s.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            cooldown: Duration::from_secs(10),
        }
    }
}

/// How the gateway speaks to a service's upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with a connection pool, over TCP, or over TLS (ALPN `http/1.1`) for
    /// `https://` upstreams.
    Http1,
    /// HTTP/2 over cleartext TCP with prior knowledge (RFC 9113 §3.3): one multiplexed
    /// connection per upstream.
    H2c,
    /// HTTP/2 over TLS (`https://` upstreams), negotiated with ALPN `h2` (RFC 9113 §3.2):
    /// one multiplexed connection per upstream.
    Http2,
    /// HTTP/3 over QUIC (RFC 9114): one multiplexed connection per upstream.
    Http3,
    /// Whatever the upstream picks by ALPN: HTTP/2 or HTTP/1.1 over TLS for `https://`
    /// upstreams, HTTP/1.1 for `http://` ones.
    Auto,
}

impl UpstreamProtocol {
    /// The name used in `mesh.toml`: `http1`, `h2c`, `http2`, `http3`, `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
            Self::Http2 => "http2",
            Self::Http3 => "http3",
            Self::Auto => "auto",
        }
    }
}

/// A route. A *rule route* (no `examples`) sends requests matching every present condition
/// to `to`; when several match, the most specific wins (`policy/route.rs`). A *semantic
/// route* (with `examples`) is a candidate for requests no rule route matches: its
/// conditions filter, and its examples are compared in meaning with the request's intent.
#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    /// For logs, error messages and the audit log.
    pub name: Option<String>,
    /// Matches the envelope's destination (the service the agent addressed).
    pub service: Option<Glob>,
    /// Matches the envelope's intent (protocol, operation, target). A request without an
    /// intent matches only a pattern that leaves every part open.
    pub intent: Option<IntentPattern>,
    /// Matches the HTTP method (`POST`, `GET`, ...).
    pub method: Option<Glob>,
    /// Matches the request path (without the query).
    pub path: Option<Glob>,
    /// Example intents in plain language ("forecast revenue"): makes this a semantic route.
    pub examples: Vec<String>,
    /// The service to send matching requests to.
    pub to: String,
    /// The longest the upstream may take to send its response head, for requests this route
    /// sends (instead of [`Timeouts::response_head`]).
    pub timeout: Option<Duration>,
}

/// An access rule. `None` lists mean "any"; an empty `intents` list means any intent.
#[derive(Debug, Clone)]
pub struct AccessRuleConfig {
    /// For the refusal message and the audit log (else the rule's 1-based position).
    pub name: Option<String>,
    /// Callers: globs over the agent name (the `NAME` of `spiffe://DOMAIN/agent/NAME`), or,
    /// for a glob starting with `spiffe://`, over the whole SPIFFE ID.
    pub from: Option<Vec<Glob>>,
    /// Service globs, compared with the service the request is routed to.
    pub to: Option<Vec<Glob>>,
    /// Intent patterns; the rule matches when any of them does.
    pub intents: Vec<IntentPattern>,
    /// What a match means.
    pub action: Action,
}

/// What a matching access rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Allow the request (unless a deny rule also matches).
    Allow,
    /// Deny the request, whatever else matches.
    Deny,
}

/// Time limits of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a TCP connection to an upstream (for HTTP/3: the QUIC handshake, and
    /// the wait for a request stream). Default 5 s.
    pub connect: Duration,
    /// How long an upstream may take to send its response head once it has the whole
    /// request (the request body's end). Default 30 s.
    pub response_head: Duration,
    /// Reading a request envelope (and, in dev mode, a request head). Default 10 s.
    pub envelope: Duration,
    /// On shutdown, how long in-flight requests may take to finish. Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            response_head: Duration::from_secs(30),
            envelope: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let t = Timeouts::default();
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.response_head, Duration::from_secs(30));
        assert_eq!(t.envelope, Duration::from_secs(10));
        assert_eq!(t.shutdown_grace, Duration::from_secs(5));
        assert_eq!(TunnelConfig::DEFAULT_MAX_STREAMS_PER_CONNECTION, 1024);
        assert_eq!(UpstreamProtocol::Http2.as_str(), "http2");
        let b = BreakerConfig::default();
        assert_eq!(b.consecutive_failures, 5);
        assert_eq!(b.cooldown, Duration::from_secs(10));
        assert_eq!(Balance::default(), Balance::RoundRobin);
        assert_eq!(Balance::LeastRequest.as_str(), "least_request");
    }
}
