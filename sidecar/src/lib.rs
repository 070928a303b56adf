//! The AIMux sidecar: one per agent.
//!
//! It owns the agent-facing side of the mesh: local listeners on loopback (one per service
//! the agent may call, plus an optional generic proxy listener), and the single persistent
//! mutual-TLS connection to the gateway, over QUIC or over HTTP/2 on TLS/TCP
//! ([`Transport`]), on which every request becomes its own stream opened by an `aimux-wire`
//! request envelope. Bodies are never rewritten: the bytes the upstream receives are the
//! bytes the agent sent, and back.
//!
//! ```text
//! agent ──HTTP/1.1──▶ listener ──▶ exchange ──stream──▶ ┐
//!                      (hyper)     envelope + body       │ one QUIC or HTTP/2 connection,
//! agent ◀─────────────────────── response head + body ◀─ ┘ owned by the tunnel supervisor
//! ```
//!
//! Modules: `config` (typed settings), `tunnel` (supervisor, backoff, close classification,
//! the transport seam and the HTTP/2 transport), `listener` (accept loops, hyper), `proxy`
//! (destination of a request, pure), `lookahead` (the bounded read of a body's first bytes),
//! `sniff` (the protocol sniffer: MCP, A2A, OpenAI or HTTP, pure; see `INTENTS.md`),
//! `request` (envelope building, pure), `exchange` (one request over one stream), `upload`
//! and `body` (the two directions of a stream), `reply` (responses to the agent), `stats`,
//! `rt` (an owned executor for hyper's HTTP/2 tasks).
//!
//! ```no_run
//! # async fn run(config: aimux_sidecar::SidecarConfig) -> Result<(), aimux_sidecar::SidecarError> {
//! use tokio_util::sync::CancellationToken;
//!
//! let sidecar = aimux_sidecar::Sidecar::bind(config).await?;
//! for (addr, service) in sidecar.listener_addrs() {
//!     println!("{addr} → {}", service.as_deref().unwrap_or("(proxy)"));
//! }
//! let shutdown = CancellationToken::new();
//! // ... cancel `shutdown` on SIGTERM ...
//! sidecar.run(shutdown).await
//! # }
//! ```
//!
//! See `ARCHITECTURE.md` at the repository root for where it sits in the data path.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Peer data and configuration must never be able to panic the sidecar (tests may).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod body;
mod config;
mod error;
mod exchange;
mod fmt;
mod inbound;
mod listener;
mod lookahead;
mod proxy;
mod raw;
mod reply;
mod request;
mod rt;
#[doc(hidden)]
pub mod sniff;
mod stats;
mod tunnel;
mod upload;

use std::fmt as stdfmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimux_wire::codes;
use quinn::{Endpoint, VarInt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

pub use crate::config::{
    GatewayTarget, InboundConfig, ListenerConfig, ListenerKind, MAX_SNIFF_LIMIT, SidecarConfig,
    Transport, TunnelSettings,
};
pub use crate::error::SidecarError;
pub use crate::stats::{ConnectionState, SidecarStats, StatsHandle};

use crate::exchange::Shared;
use crate::fmt::Secs;
use crate::listener::BoundListener;
use crate::proxy::Addressing;
use crate::stats::Counters;
use crate::tunnel::h2::H2Dialer;
use crate::tunnel::{Dialer, LinkStatus, Subject, Supervisor, Tunnel};

/// After the grace period, how long cut-off connections get to wind down.
const HARD_STOP_WAIT: Duration = Duration::from_secs(1);
/// How long to wait for the QUIC endpoint to deliver the CONNECTION_CLOSE and go idle. The
/// close is sent at once; the wait covers the closing period (three PTOs, RFC 9000 §10.2),
/// which is milliseconds on a healthy path.
const ENDPOINT_IDLE_WAIT: Duration = Duration::from_secs(2);

/// A bound sidecar: its listeners are open (and, for QUIC, its UDP socket is bound), but
/// nothing is accepted and no connection is made until [`Sidecar::run`].
pub struct Sidecar {
    shared: Arc<Shared>,
    listeners: Vec<BoundListener>,
    supervisor: Supervisor,
    /// The QUIC endpoint; `None` over HTTP/2.
    endpoint: Option<Endpoint>,
    stats: StatsHandle,
}

impl stdfmt::Debug for Sidecar {
    fn fmt(&self, f: &mut stdfmt::Formatter<'_>) -> stdfmt::Result {
        f.debug_struct("Sidecar")
            .field("identity", &self.shared.identity)
            .field("gateway", &self.shared.gateway)
            .field("listeners", &self.listener_addrs())
            .finish_non_exhaustive()
    }
}

impl Sidecar {
    /// Validates the configuration, builds the TLS (and QUIC) configuration, binds every
    /// listener (and the UDP endpoint). Errors name the address or setting at fault.
    pub async fn bind(config: SidecarConfig) -> Result<Sidecar, SidecarError> {
        let SidecarConfig {
            identity,
            trust,
            gateway,
            listeners,
            proxy,
            tunnel: settings,
            inbound,
        } = config;
        settings.validate()?;
        if let Some(inbound) = &inbound {
            check_inbound(inbound, gateway.transport)?;
        }
        tunnel::check_gateway(&gateway)?;
        if listeners.is_empty() && proxy.is_none() && inbound.is_none() {
            return Err(SidecarError::NoListeners);
        }
        for l in &listeners {
            check_service(l)?;
        }

        let (tls, verifier) = tunnel::tls_config(&identity, trust, &gateway)?;
        let mut bound = Vec::with_capacity(listeners.len() + 1);
        for l in listeners {
            let mut listener =
                BoundListener::bind(l.listen, Addressing::Service(l.service)).await?;
            listener.set_tcp(l.kind == ListenerKind::Tcp);
            bound.push(listener);
        }
        if let Some(listen) = proxy {
            bound.push(BoundListener::bind(listen, Addressing::Proxy).await?);
        }
        let (dialer, endpoint) = match gateway.transport {
            Transport::Quic => {
                let deliveries = inbound.as_ref().map_or(0, |i| i.max_streams);
                let client_config =
                    tunnel::quic_client_config(tls, &gateway, &settings, deliveries)?;
                let mut endpoint = tunnel::bind_endpoint(gateway.addr)?;
                endpoint.set_default_client_config(client_config);
                (Dialer::Quic(endpoint.clone()), Some(endpoint))
            }
            Transport::H2 => (Dialer::H2(H2Dialer::new(tls, &gateway, &settings)?), None),
        };

        let id = identity.spiffe_id();
        let label = id.path().trim_start_matches('/').to_owned();
        let subject = Subject {
            transport: gateway.transport,
            gateway: gateway.addr,
            agent_label: label.clone(),
            agent_name: id.workload_name().unwrap_or("NAME").to_owned(),
        };
        let counters = Arc::new(Counters::default());
        let inbound = inbound.map(|config| {
            Arc::new(inbound::Inbound::new(
                config,
                id,
                settings.limits,
                Arc::clone(&counters),
            ))
        });
        let (link_tx, link_rx) = watch::channel(LinkStatus::initial());
        let shared = Arc::new(Shared {
            identity: id.to_string(),
            label,
            gateway: gateway.addr,
            tunnel: Tunnel::new(link_rx.clone()),
            settings: settings.clone(),
            counters: Arc::clone(&counters),
            tasks: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
        });
        let supervisor = Supervisor {
            dialer,
            verifier,
            gateway,
            settings,
            subject,
            link: link_tx,
            counters: Arc::clone(&counters),
            inbound,
        };
        Ok(Sidecar {
            shared,
            listeners: bound,
            supervisor,
            endpoint,
            stats: StatsHandle::new(counters, link_rx),
        })
    }

    /// The bound listener addresses (with the OS-chosen port if one was configured as 0) and
    /// their services; `None` marks the proxy listener.
    #[must_use]
    pub fn listener_addrs(&self) -> Vec<(SocketAddr, Option<String>)> {
        self.listeners
            .iter()
            .map(|l| (l.addr(), l.service()))
            .collect()
    }

    /// The current counters and connection state.
    #[must_use]
    pub fn stats(&self) -> SidecarStats {
        self.stats.snapshot()
    }

    /// A handle that keeps reporting statistics after [`Sidecar::run`] took the sidecar.
    #[must_use]
    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Runs until `shutdown` is cancelled, then shuts down in order:
    ///
    /// 1. stop accepting; idle agent connections close, busy ones finish their request;
    /// 2. after [`TunnelSettings::shutdown_grace`], cut off what is still running;
    /// 3. close the connection, so the gateway learns at once instead of by idle timeout:
    ///    QUIC with `SHUTDOWN` (SPEC.md §12), waiting (bounded) for the endpoint to go idle;
    ///    HTTP/2 with GOAWAY (RFC 9113 §6.8).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SidecarError> {
        let Sidecar {
            shared,
            listeners,
            supervisor,
            endpoint,
            stats,
        } = self;
        let tasks = shared.tasks.clone();
        let drain = CancellationToken::new();
        let tunnel_stop = CancellationToken::new();

        let mut supervisor_task = tokio::spawn(supervisor.run(tunnel_stop.clone()));
        for listener in listeners {
            info!(
                listen = %listener.addr(),
                "{} for {} listening",
                match listener.service() {
                    Some(service) => format!("service {service}"),
                    None => "proxy".to_owned(),
                },
                shared.label
            );
            tasks.spawn(listener.serve(Arc::clone(&shared), tasks.clone(), drain.clone()));
        }

        // The supervisor only returns when told to; if it dies (a bug), shut down rather than
        // serve requests that can never be carried.
        let mut supervisor_failed = None;
        tokio::select! {
            () = shutdown.cancelled() => {}
            joined = &mut supervisor_task => {
                let why = match joined {
                    Ok(()) => "the tunnel supervisor stopped unexpectedly".to_owned(),
                    Err(e) => format!("the tunnel supervisor failed: {e}"),
                };
                error!("{why}; shutting down");
                supervisor_failed = Some(why);
            }
        }
        let grace = shared.settings.shutdown_grace;
        let busy = stats.snapshot().in_flight;
        info!(
            "shutting down: no new connections; {busy} request{} in flight, waiting up to {}",
            if busy == 1 { "" } else { "s" },
            Secs(grace)
        );
        drain.cancel();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            let left = stats.snapshot().in_flight;
            warn!(
                "{left} request{} still in flight after {}: cutting them off",
                if left == 1 { "" } else { "s" },
                Secs(grace)
            );
        }
        shared.hard_stop.cancel();
        let _ = tokio::time::timeout(HARD_STOP_WAIT, tasks.wait()).await;

        // Only a live connection has someone to tell; abandoned handshake attempts would
        // linger for three PTOs (RFC 9000 §10.2) with no one listening.
        let was_connected = stats.snapshot().state == ConnectionState::Connected;
        tunnel_stop.cancel();
        let joined = match supervisor_failed {
            Some(why) => Err(SidecarError::Task(why)),
            None => supervisor_task
                .await
                .map_err(|e| SidecarError::Task(format!("the tunnel supervisor failed: {e}"))),
        };
        if let Some(endpoint) = endpoint {
            endpoint.close(VarInt::from_u32(codes::CLOSE_SHUTDOWN), b"shutdown");
            if was_connected
                && tokio::time::timeout(ENDPOINT_IDLE_WAIT, endpoint.wait_idle())
                    .await
                    .is_err()
            {
                debug!(
                    "the QUIC endpoint did not go idle within {}",
                    Secs(ENDPOINT_IDLE_WAIT)
                );
            }
        }
        info!("sidecar for {} stopped", shared.label);
        joined
    }
}

/// Deliveries come over QUIC only (an HTTP/2 server cannot open streams, RFC 9113
/// §5.1.1), and only to the agent's own loopback ports: the mesh must not become a way
/// into the agent's network.
fn check_inbound(inbound: &InboundConfig, transport: Transport) -> Result<(), SidecarError> {
    let invalid = |problem: String| SidecarError::InvalidSetting {
        setting: "inbound",
        problem,
    };
    if transport != Transport::Quic {
        return Err(invalid(
            "deliveries to an agent need the QUIC transport (over HTTP/2 the gateway \
             cannot open streams towards the sidecar); use transport = \"quic\""
                .into(),
        ));
    }
    for addr in inbound.http.iter().chain(&inbound.tcp) {
        if !addr.ip().is_loopback() {
            return Err(invalid(format!(
                "{addr} is not a loopback address; deliveries go only to the agent's own \
                 loopback ports"
            )));
        }
    }
    if inbound.http.is_none() && inbound.tcp.is_none() {
        return Err(invalid("give an http or tcp address to deliver to".into()));
    }
    if inbound.max_streams == 0 {
        return Err(invalid("max_streams must be at least 1".into()));
    }
    Ok(())
}

/// A service name must be a valid envelope destination (SPEC.md §5.4): non-empty, without
/// whitespace or control characters.
fn check_service(l: &ListenerConfig) -> Result<(), SidecarError> {
    let problem = if l.service.is_empty() {
        Some("it is empty")
    } else if l
        .service
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        Some("it contains whitespace or control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SidecarError::InvalidService {
            listen: l.listen,
            service: l.service.clone(),
            problem,
        }),
        None => Ok(()),
    }
}
