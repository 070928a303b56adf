//! Errors of [`Sidecar::bind`](crate::Sidecar::bind) and [`Sidecar::run`](crate::Sidecar::run).
//!
//! Request-level failures never surface here: they become HTTP answers to the agent (with a
//! body that says why) and one log line each.

use std::io;
use std::net::SocketAddr;

/// Why the sidecar could not start or stopped abnormally. Messages are for operators: each
/// names the setting, address or certificate involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// A tunnel setting is out of range or inconsistent with another.
    #[error("invalid sidecar setting `{setting}`: {problem}")]
    InvalidSetting {
        /// The setting's field name in [`TunnelSettings`](crate::TunnelSettings).
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Neither a service listener nor a proxy listener is configured.
    #[error(
        "the sidecar has nothing to do: configure at least one listener \
         (`{{ listen = \"127.0.0.1:15001\", service = \"NAME\" }}`), a proxy listener, or an \
         inbound for deliveries to the agent"
    )]
    NoListeners,
    /// A listener's service name cannot be a wire destination (SPEC.md §5.4).
    #[error("listener {listen}: service name {service:?} is not a valid destination: {problem}")]
    InvalidService {
        /// The listener's address.
        listen: SocketAddr,
        /// The configured service name.
        service: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A listener address is not a loopback address. A sidecar listener lends the agent's
    /// identity to whoever connects, so it must not be reachable from the network.
    #[error(
        "{what} on {listen}: not a loopback address; a sidecar listener lends the agent's \
         identity to whoever connects, so it must listen on 127.0.0.1 or ::1"
    )]
    NotLoopback {
        /// The configured address.
        listen: SocketAddr,
        /// `listener for service NAME` or `proxy listener`.
        what: String,
    },
    /// A TCP listener could not be bound.
    #[error("cannot listen on {listen} ({what}): {source}")]
    Bind {
        /// The address.
        listen: SocketAddr,
        /// `listener for service NAME` or `proxy listener`.
        what: String,
        /// The operating system's error (e.g. address in use, permission denied).
        source: io::Error,
    },
    /// The UDP socket of the QUIC endpoint could not be opened.
    #[error(
        "cannot open the UDP socket for the tunnel to the gateway {gateway} on {local}: {source}"
    )]
    UdpBind {
        /// The local address tried.
        local: SocketAddr,
        /// The gateway it was for.
        gateway: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// The gateway target is unusable (e.g. a server name rustls cannot send).
    #[error("invalid gateway target {addr}: {problem}")]
    InvalidGateway {
        /// The gateway's address.
        addr: SocketAddr,
        /// What is wrong.
        problem: String,
    },
    /// The TLS configuration could not be built from the agent's identity and the mesh trust.
    #[error("cannot build the TLS configuration of {identity}: {source}")]
    Tls {
        /// The agent's SPIFFE ID.
        identity: String,
        /// The cause (wrong certificate kind, gateway outside the trust domain...). Boxed:
        /// it is large and errors should be cheap to move.
        source: Box<aimux_certs::Error>,
    },
    /// A sidecar task panicked or was cancelled unexpectedly.
    #[error("a sidecar task failed: {0}")]
    Task(String),
}
