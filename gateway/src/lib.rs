//! The AIMux gateway: the mesh's policy point.
//!
//! It accepts sidecar tunnel connections over QUIC or over HTTP/2 on TLS/TCP (client
//! certificates chained to the mesh CA and absent from its CRL), decodes the `aimux-wire` envelope that opens each stream, routes on
//! the destination and intent, enforces access rules against the certificate-proven SPIFFE
//! identity, records metrics and forwards the opaque payload upstream. A dev-mode plain-HTTP
//! listener offers the same routing keyed on a claimed identity, for experiments only.
//!
//! ```text
//! sidecar ══QUIC═════▶ quic::connection ─┐
//!                                         ├▶ tunnel::stream ─▶ policy (route, access) ─▶ forward ─▶ upstream
//! sidecar ══H2/TLS/TCP▶ h2::connection ───┘                     (HTTP/1.1 pool, h2c, HTTP/3)
//!              ▲ revocation (CRL watcher) closes revoked connections of both transports
//! dev client ──HTTP──▶ dev_http ─────────────────────▶ policy ──────────────▶ forward
//! admin: /healthz /readyz /metrics
//! ```
//!
//! Build a [`GatewayConfig`], [`Gateway::bind`] it (every socket is bound and the CRL loaded
//! there, so mistakes surface at startup), then [`Gateway::run`] it until a
//! `CancellationToken` is cancelled.
//!
//! See `ARCHITECTURE.md` at the repository root for where it sits in the data path.
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod config;
mod dev_http;
mod error;
mod forward;
mod gateway;
mod h2;
mod http_server;
pub mod intent_pattern;
mod limits;
mod metrics;
mod policy;
mod quic;
mod revocation;
mod rt;
pub mod semantic;
mod shared;
mod snapshot;
mod tunnel;

pub use audit::{AuditConfig, AuditSink};
pub use config::{
    AccessRuleConfig, Action, Balance, BreakerConfig, GatewayConfig, PolicyConfig, RouteConfig,
    ServiceConfig, Timeouts, TunnelConfig, UpstreamProtocol, UpstreamTls,
};
pub use error::GatewayError;
pub use gateway::Gateway;
pub use intent_pattern::{Glob, IntentPattern, IntentPatternError};
pub use limits::LimitConfigError;
pub use limits::isolation::IsolationConfig;
pub use limits::rate::{RateLimitConfig, RateRule};
pub use policy::route::{RouteConflict, Specificity, conflicts as route_conflicts};
pub use snapshot::Reloader;
/// The cancellation token [`Gateway::run`] takes.
pub use tokio_util::sync::CancellationToken;
