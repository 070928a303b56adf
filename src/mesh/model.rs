//! The validated mesh: what the gateway and sidecars are built from. Every address is
//! parsed, every name resolves, every path is absolute (relative paths in the file are
//! relative to the file's own directory).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use aimux_gateway::{Glob, IntentPattern};

/// A whole mesh file, validated.
#[derive(Debug, Clone)]
pub(crate) struct Mesh {
    pub(crate) trust_domain: String,
    /// Where the CA, CRL and every certificate live (`aimux certs --dir`).
    pub(crate) certs_dir: PathBuf,
    /// Create a development CA and missing certificates on `aimux up`.
    pub(crate) bootstrap_certs: bool,
    pub(crate) gateway: Gateway,
    pub(crate) agents: Vec<Agent>,
    pub(crate) services: Vec<Service>,
    pub(crate) routes: Vec<Route>,
    pub(crate) access: Vec<AccessRule>,
    pub(crate) semantic: Semantic,
    pub(crate) rate_limits: Vec<RateLimit>,
    pub(crate) isolation: Option<aimux_gateway::IsolationConfig>,
}

/// `[[rate_limit]]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RateLimit {
    pub(crate) from: Vec<String>,
    pub(crate) rate: f64,
    pub(crate) burst: u32,
}

/// Where the gateway writes its audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audit {
    Stdout,
    File(PathBuf),
}

/// `[semantic]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Semantic {
    pub(crate) model: Option<PathBuf>,
    pub(crate) min_score: Option<f32>,
    pub(crate) margin: Option<f32>,
    pub(crate) cache: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gateway {
    pub(crate) name: String,
    /// UDP address the QUIC listener binds.
    pub(crate) quic: SocketAddr,
    /// TCP address of the HTTP/2-over-mutual-TLS tunnel listener, for agents whose network
    /// blocks UDP (`transport = "h2"`).
    pub(crate) h2: Option<SocketAddr>,
    /// Address sidecars dial for QUIC (differs from `quic` when that is a wildcard address).
    pub(crate) connect: SocketAddr,
    /// TLS server name sidecars send (SNI); the certificate must carry it.
    pub(crate) server_name: String,
    /// Plain-HTTP listener with claimed identities; for experiments, never production.
    pub(crate) dev_http: Option<SocketAddr>,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) max_streams_per_connection: u32,
    pub(crate) audit: Option<Audit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) listeners: Vec<Listener>,
    /// Generic listener for proxy-style (`HTTP_PROXY`) and Host-addressed requests.
    pub(crate) proxy: Option<SocketAddr>,
    /// How the sidecar reaches the gateway.
    pub(crate) transport: Transport,
    /// Bytes of each request body read ahead to classify it; `None`: the sidecar default.
    pub(crate) sniff_limit: Option<usize>,
    /// Deliveries from other agents, over this agent's sidecar connection.
    pub(crate) inbound: Option<Inbound>,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Where deliveries to an agent go (its own loopback ports) and who may send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inbound {
    pub(crate) http: Option<SocketAddr>,
    pub(crate) tcp: Option<SocketAddr>,
    /// Agent names or SPIFFE IDs, `*` globs allowed.
    pub(crate) allow: Vec<String>,
    pub(crate) max_streams: u32,
}

/// The tunnel between a sidecar and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Mutual-TLS QUIC (UDP): one stream per request, no head-of-line blocking.
    Quic,
    /// HTTP/2 over mutual TLS over TCP: the fallback where UDP is blocked.
    H2,
}

impl Transport {
    pub(crate) const ALL: [(&'static str, Transport); 2] =
        [("quic", Transport::Quic), ("h2", Transport::H2)];
}

impl Gateway {
    /// The TCP address sidecars dial for the HTTP/2 tunnel: the `h2` listener, or, when that
    /// is a wildcard address, the `connect` IP with the `h2` port.
    pub(crate) fn h2_connect(&self) -> Option<SocketAddr> {
        self.h2.map(|h2| {
            if h2.ip().is_unspecified() {
                SocketAddr::new(self.connect.ip(), h2.port())
            } else {
                h2
            }
        })
    }
}

/// A loopback listener of a sidecar that stands in for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub(crate) listen: SocketAddr,
    pub(crate) service: String,
    /// `protocol = "tcp"`: raw TCP, one opaque stream per connection.
    pub(crate) tcp: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) name: String,
    /// Empty for an agent service.
    pub(crate) upstreams: Vec<Upstream>,
    /// The agent of the mesh this service is, if it is one.
    pub(crate) agent: Option<String>,
    pub(crate) protocol: UpstreamProtocol,
    pub(crate) balance: aimux_gateway::Balance,
    pub(crate) retries: u32,
    pub(crate) breaker: aimux_gateway::BreakerConfig,
    /// `tls = { ... }`: how the certificates of `https://` upstreams are checked; `None`:
    /// against the system's trust store, for the URL's host.
    pub(crate) tls: Option<ServiceTls>,
    /// Requests in flight at once per upstream.
    pub(crate) max_requests: u32,
}

/// The `tls` table of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceTls {
    /// PEM file of the CA certificate(s) to trust (absolute); `None`: the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// The name the certificate must carry, also sent as SNI.
    pub(crate) server_name: Option<String>,
}

/// Where a service's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Upstream {
    /// An `http://`, `https://` or `tcp://` URL.
    Url(String),
    /// A demo service the `aimux` binary serves itself (`builtin:echo`, `builtin:mcp-tools`).
    Builtin(Builtin),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Builtin {
    Echo,
    McpTools,
}

impl Builtin {
    pub(crate) const ALL: [(&'static str, Builtin); 2] =
        [("echo", Builtin::Echo), ("mcp-tools", Builtin::McpTools)];
}

/// How the gateway speaks to a service's upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamProtocol {
    Http1,
    H2c,
    Http2,
    Http3,
    Auto,
}

impl UpstreamProtocol {
    pub(crate) const ALL: [(&'static str, UpstreamProtocol); 5] = [
        ("http1", UpstreamProtocol::Http1),
        ("h2c", UpstreamProtocol::H2c),
        ("http2", UpstreamProtocol::Http2),
        ("http3", UpstreamProtocol::Http3),
        ("auto", UpstreamProtocol::Auto),
    ];
}

/// Sends requests that match to another service than the one the agent addressed.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) name: Option<String>,
    pub(crate) service: Option<Glob>,
    pub(crate) intent: Option<IntentPattern>,
    pub(crate) method: Option<Glob>,
    pub(crate) path: Option<Glob>,
    pub(crate) examples: Vec<String>,
    pub(crate) to: String,
    pub(crate) timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessRule {
    pub(crate) name: Option<String>,
    /// Agent-name or SPIFFE-ID globs; `None` means every caller (`"*"`).
    pub(crate) from: Option<Vec<Glob>>,
    /// Service globs; `None` means every service (`"*"`).
    pub(crate) to: Option<Vec<Glob>>,
    /// Empty means every intent.
    pub(crate) intents: Vec<IntentPattern>,
    pub(crate) action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Allow,
    Deny,
}
