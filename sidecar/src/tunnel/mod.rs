//! The tunnel: one persistent mutual-TLS connection to the gateway (SPEC.md §12), over QUIC
//! or over HTTP/2 on TLS/TCP (§12.1).
//!
//! One supervisor task owns the connection ([`supervisor`]): it connects, publishes the
//! connection in a `watch` channel, waits for it to close, classifies why ([`classify`]) and
//! reconnects after a backoff ([`backoff`]). Request handlers hold a [`Tunnel`] (a receiver)
//! and take the current connection from it, waiting a bounded time when there is none; they
//! use it through the transport seam ([`transport`]).

mod backoff;
mod classify;
pub(crate) mod h2;
mod supervisor;
pub(crate) mod transport;
mod verifier;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aimux_certs::Identity;
use aimux_certs::pki_types::ServerName;
use aimux_certs::rustls;
use aimux_certs::tls::{MeshServerVerifier, MeshTrust};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use tokio::sync::watch;
use tokio::time::Instant;

pub(crate) use self::classify::Subject;
pub(crate) use self::supervisor::{Dialer, Supervisor};
use self::transport::TunnelConn;
use self::verifier::RecordingVerifier;
use crate::config::{GatewayTarget, TunnelSettings};
use crate::error::SidecarError;
use crate::stats::ConnectionState;

/// What the supervisor publishes: the state, the live connection if any, and why the last
/// attempt failed.
#[derive(Debug, Clone)]
pub(crate) struct LinkStatus {
    pub(crate) state: ConnectionState,
    pub(crate) conn: Option<TunnelConn>,
    /// The operator-facing description of the last failure.
    pub(crate) cause: Option<Arc<str>>,
    /// The delay before the next attempt, while backing off.
    pub(crate) retry_in: Option<Duration>,
}

impl LinkStatus {
    pub(crate) fn initial() -> Self {
        LinkStatus {
            state: ConnectionState::Connecting,
            conn: None,
            cause: None,
            retry_in: None,
        }
    }
}

/// Why a request cannot have a connection.
#[derive(Debug, Clone)]
pub(crate) enum Unavailable {
    /// No usable connection appeared before the deadline.
    NoConnection { cause: Option<Arc<str>> },
    /// The gateway refused this agent (or the sidecar refused the gateway); waiting would not
    /// help.
    Refused { cause: Option<Arc<str>> },
    /// The sidecar is shutting down.
    Stopped,
}

/// A request handler's view of the tunnel.
#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    link: watch::Receiver<LinkStatus>,
}

impl Tunnel {
    pub(crate) fn new(link: watch::Receiver<LinkStatus>) -> Self {
        Tunnel { link }
    }

    /// The live connection, waiting until `deadline` for one. `failed` is the id of a
    /// connection this request already found dead: it is skipped while the supervisor has
    /// not noticed yet.
    pub(crate) async fn connection(
        &self,
        deadline: Instant,
        failed: Option<usize>,
    ) -> Result<TunnelConn, Unavailable> {
        let mut link = self.link.clone();
        let usable = |l: &LinkStatus| {
            l.conn
                .as_ref()
                .is_some_and(|c| Some(c.id()) != failed && !c.is_closed())
        };
        let settled = |l: &LinkStatus| {
            usable(l) || l.state.refuses_requests() || l.state == ConnectionState::Stopped
        };
        let settled_in_time = match tokio::time::timeout_at(deadline, link.wait_for(settled)).await
        {
            Ok(Ok(l)) => Some(match &l.conn {
                Some(c) if usable(&l) => Ok(c.clone()),
                _ if l.state == ConnectionState::Stopped => Err(Unavailable::Stopped),
                _ => Err(Unavailable::Refused {
                    cause: l.cause.clone(),
                }),
            }),
            // The supervisor is gone: the sidecar is stopping.
            Ok(Err(_)) => Some(Err(Unavailable::Stopped)),
            Err(_elapsed) => None,
        };
        settled_in_time.unwrap_or_else(|| {
            Err(Unavailable::NoConnection {
                cause: link.borrow().cause.clone(),
            })
        })
    }
}

/// The mesh TLS client configuration of `aimux-certs` (TLS 1.3, no resumption, gateway
/// pinned to its SPIFFE ID), with a verifier wrapper that remembers why it refused a
/// gateway. The ALPN is set per transport (`aimux/1` for QUIC, `h2` over TCP).
pub(crate) fn tls_config(
    identity: &Identity,
    trust: MeshTrust,
    gateway: &GatewayTarget,
) -> Result<(rustls::ClientConfig, Arc<RecordingVerifier>), SidecarError> {
    let tls_error = |source| SidecarError::Tls {
        identity: identity.spiffe_id().to_string(),
        source: Box::new(source),
    };
    let mesh = Arc::new(
        MeshServerVerifier::new(trust, gateway.identity.clone(), Vec::new()).map_err(tls_error)?,
    );
    let mut tls =
        aimux_certs::tls::client_config(identity, Arc::clone(&mesh)).map_err(tls_error)?;
    // Same checks, same provider; only wrapped so that a refusal can be explained precisely
    // (quinn reports it as a bare `TransportError` string, tokio-rustls as an I/O error).
    let recorder = Arc::new(RecordingVerifier::new(mesh));
    tls.dangerous()
        .set_certificate_verifier(Arc::clone(&recorder) as _);
    Ok((tls, recorder))
}

/// The quinn client configuration: the mesh TLS configuration (ALPN `aimux/1`) and the
/// transport settings.
pub(crate) fn quic_client_config(
    tls: rustls::ClientConfig,
    gateway: &GatewayTarget,
    settings: &TunnelSettings,
    deliveries: u32,
) -> Result<quinn::ClientConfig, SidecarError> {
    let quic =
        QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| SidecarError::InvalidGateway {
            addr: gateway.addr,
            problem: format!("the TLS configuration cannot be used for QUIC: {e}"),
        })?;

    let mut transport = TransportConfig::default();
    let idle =
        IdleTimeout::try_from(settings.idle_timeout).map_err(|_| SidecarError::InvalidSetting {
            setting: "idle_timeout",
            problem: "is too large for QUIC".into(),
        })?;
    transport
        .keep_alive_interval(Some(settings.keep_alive))
        .max_idle_timeout(Some(idle))
        // SPEC.md §12.2: the gateway opens streams only to deliver requests to this agent,
        // and only as many as the agent's inbound allows (none without one).
        .max_concurrent_bidi_streams(VarInt::from_u32(deliveries))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Checks the gateway target before anything is bound.
pub(crate) fn check_gateway(gateway: &GatewayTarget) -> Result<(), SidecarError> {
    let problem = if gateway.addr.port() == 0 {
        Some("port 0 cannot be connected to".to_owned())
    } else if gateway.addr.ip().is_unspecified() {
        Some("an unspecified address (0.0.0.0 or ::) cannot be connected to".to_owned())
    } else if let Err(e) = ServerName::try_from(gateway.server_name.as_str()) {
        Some(format!(
            "server name {:?} is unusable: {e}",
            gateway.server_name
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SidecarError::InvalidGateway {
            addr: gateway.addr,
            problem,
        }),
        None => Ok(()),
    }
}

/// Opens the client endpoint on an ephemeral UDP port of the gateway's address family.
pub(crate) fn bind_endpoint(gateway: SocketAddr) -> Result<Endpoint, SidecarError> {
    let local: SocketAddr = if gateway.is_ipv6() {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    };
    Endpoint::client(local).map_err(|source| SidecarError::UdpBind {
        local,
        gateway,
        source,
    })
}
