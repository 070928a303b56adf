//! The mesh file exactly as written: serde structs that mirror the TOML, with source spans
//! kept on every value a later check may need to point at. Nothing here is validated beyond
//! its TOML type; `validate.rs` turns these into the typed model.

use serde::Deserialize;
use toml::Spanned;

/// `[mesh]`: facts about the whole mesh.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMesh {
    pub(crate) trust_domain: Spanned<String>,
    pub(crate) certs: Option<Spanned<String>>,
    pub(crate) bootstrap_certs: Option<bool>,
}

/// `[gateway]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) quic: Spanned<String>,
    pub(crate) h2: Option<Spanned<String>>,
    pub(crate) connect: Option<Spanned<String>>,
    pub(crate) server_name: Option<Spanned<String>>,
    pub(crate) dev_http: Option<Spanned<String>>,
    pub(crate) admin: Option<Spanned<String>>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    pub(crate) max_streams_per_connection: Option<Spanned<i64>>,
    /// `"stdout"` or a file path: one JSON line per decision.
    pub(crate) audit: Option<Spanned<String>>,
}

/// One `[[agent]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) listeners: Vec<Spanned<RawListener>>,
    pub(crate) proxy: Option<Spanned<String>>,
    pub(crate) transport: Option<Spanned<String>>,
    pub(crate) cert: Option<Spanned<String>>,
    pub(crate) key: Option<Spanned<String>>,
    /// Bytes of each request body the sidecar reads ahead to classify it (default 64 KiB).
    pub(crate) sniff_limit: Option<Spanned<i64>>,
    /// What other agents may send this one, delivered over its sidecar's connection.
    pub(crate) inbound: Option<Spanned<RawInbound>>,
}

/// `inbound = { http = "127.0.0.1:9100", tcp = "127.0.0.1:9200", allow = ["alice"] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInbound {
    pub(crate) http: Option<Spanned<String>>,
    pub(crate) tcp: Option<Spanned<String>>,
    pub(crate) allow: Spanned<Vec<Spanned<String>>>,
    pub(crate) max_streams: Option<Spanned<i64>>,
}

/// `{ listen = "127.0.0.1:15001", service = "echo" }` inside an agent's `listeners`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) listen: Spanned<String>,
    pub(crate) service: Spanned<String>,
    /// `http` (default) or `tcp`.
    pub(crate) protocol: Option<Spanned<String>>,
}

/// One `[[service]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) name: Spanned<String>,
    /// Absent for an agent service.
    pub(crate) upstreams: Option<Spanned<Vec<Spanned<String>>>>,
    /// The service is this agent of the mesh (exclusive with `upstreams`).
    pub(crate) agent: Option<Spanned<String>>,
    pub(crate) protocol: Option<Spanned<String>>,
    /// `round_robin` (default) or `least_request`.
    pub(crate) balance: Option<Spanned<String>>,
    /// Retries of requests that are safe to repeat.
    pub(crate) retries: Option<Spanned<i64>>,
    pub(crate) breaker: Option<Spanned<RawBreaker>>,
    /// How the certificates of `https://` upstreams are checked.
    pub(crate) tls: Option<Spanned<RawTls>>,
    /// Requests in flight at once per upstream (default 1024).
    pub(crate) max_requests: Option<Spanned<i64>>,
}

/// `tls = { ca = "upstream-ca.pem", server_name = "api.internal" }` of a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// PEM file of the CA certificate(s) to trust instead of the system's.
    pub(crate) ca: Option<Spanned<String>>,
    /// The name the certificate must carry (and SNI), instead of the URL's host.
    pub(crate) server_name: Option<Spanned<String>>,
}

/// `breaker = { failures = 5, cooldown = "10s" }` of a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub(crate) failures: Option<Spanned<i64>>,
    pub(crate) cooldown: Option<Spanned<String>>,
}

/// One `[[route]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub(crate) matches: Option<Spanned<RawRouteMatch>>,
    /// Example intents in plain language: a semantic route.
    pub(crate) examples: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) to: Spanned<String>,
    pub(crate) timeout: Option<Spanned<String>>,
}

/// The `match = { ... }` of a route; every key present must match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteMatch {
    pub(crate) service: Option<Spanned<String>>,
    pub(crate) intent: Option<Spanned<String>>,
    pub(crate) protocol: Option<Spanned<String>>,
    pub(crate) operation: Option<Spanned<String>>,
    pub(crate) target: Option<Spanned<String>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) path: Option<Spanned<String>>,
}

/// One `[[access]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) from: Spanned<Vec<Spanned<String>>>,
    pub(crate) to: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) intents: Vec<Spanned<String>>,
    pub(crate) action: Option<Spanned<String>>,
}

/// `[semantic]`: how semantic routes compare intents with their examples.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSemantic {
    /// The all-MiniLM-L6-v2 model folder; without it, the lexical matcher.
    pub(crate) model: Option<Spanned<String>>,
    pub(crate) min_score: Option<Spanned<f64>>,
    pub(crate) margin: Option<Spanned<f64>>,
    pub(crate) cache: Option<Spanned<i64>>,
}

/// One `[[rate_limit]]`: a token bucket per matching identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    pub(crate) from: Spanned<Vec<Spanned<String>>>,
    /// Sustained requests per second.
    pub(crate) rate: Spanned<f64>,
    /// Bucket size; default: one second's worth, at least 1.
    pub(crate) burst: Option<Spanned<i64>>,
}

/// `[isolation]`: the reputation engine.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIsolation {
    pub(crate) window: Option<Spanned<String>>,
    pub(crate) min_requests: Option<Spanned<i64>>,
    pub(crate) max_bad_ratio: Option<Spanned<f64>>,
    pub(crate) cooldown: Option<Spanned<String>>,
}
