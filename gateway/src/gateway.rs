//! `Gateway`: binds every socket up front (so configuration and port problems surface at
//! startup with a clear message), then runs every component until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimux_wire::Limits;
use arc_swap::ArcSwap;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::admin::{AdminListener, Readiness};
use crate::audit::{AuditLog, AuditWriter};
use crate::config::GatewayConfig;
use crate::dev_http::DevHttpListener;
use crate::error::GatewayError;
use crate::forward::Forwarder;
use crate::limits::isolation::Isolation;
use crate::limits::rate::RateLimiter;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::snapshot::{self, Reloader};
use crate::tunnel::TunnelListeners;
use crate::tunnel::registry::Registry;

/// Beyond the grace period, how long components get to wind down before being aborted.
const SHUTDOWN_BACKSTOP: Duration = Duration::from_secs(2);

/// A gateway with every socket bound, ready to [`run`](Gateway::run).
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    audit_writer: Option<AuditWriter>,
    tunnel: Option<TunnelListeners>,
    dev_http: Option<DevHttpListener>,
    admin: Option<AdminListener>,
}

impl Gateway {
    /// Checks the configuration, loads the CRL and binds every listener. Errors name the
    /// address, file or service concerned and what to do about it.
    pub async fn bind(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        if config.tunnel.is_none() && config.dev_http.is_none() {
            return Err(GatewayError::NothingToServe);
        }
        let rate = RateLimiter::new(&config.policy.rate_limits)?;
        let isolation = Isolation::new(config.policy.isolation)?;
        let snapshot = snapshot::build(config.policy, &config.timeouts, None)?;
        let (audit, audit_writer) = match &config.audit {
            Some(cfg) => {
                let (log, writer) =
                    AuditLog::new(cfg).map_err(|e| GatewayError::Audit(e.to_string()))?;
                (Some(log), Some(writer))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            trust_domain: config.trust.trust_domain().clone(),
            snapshot: ArcSwap::from_pointee(snapshot),
            rate,
            isolation,
            audit,
            semantic_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            )),
            forwarder: Forwarder::new(&config.timeouts),
            metrics: Metrics::new(),
            timeouts: config.timeouts,
            limits: Limits::default(),
        });
        let tunnel = match &config.tunnel {
            Some(t) => Some(TunnelListeners::bind(t, &config.trust).await?),
            None => None,
        };
        let dev_http = match config.dev_http {
            Some(addr) => Some(DevHttpListener::bind(addr).await?),
            None => None,
        };
        let admin = match config.admin {
            Some(addr) => Some(AdminListener::bind(addr).await?),
            None => None,
        };
        Ok(Gateway {
            shared,
            audit_writer,
            tunnel,
            dev_http,
            admin,
        })
    }

    /// A handle that replaces routes, access rules and services while the gateway runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The UDP address of the QUIC listener, if configured (the real port if 0 was asked).
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        let quic = self.tunnel.as_ref()?.quic.as_ref()?;
        Some(quic.local_addr())
    }

    /// The TCP address of the HTTP/2 tunnel listener, if configured (the real port if 0 was
    /// asked).
    pub fn h2_addr(&self) -> Option<SocketAddr> {
        let h2 = self.tunnel.as_ref()?.h2.as_ref()?;
        Some(h2.local_addr())
    }

    /// The address of the dev-mode HTTP listener, if configured.
    pub fn dev_http_addr(&self) -> Option<SocketAddr> {
        self.dev_http.as_ref().map(DevHttpListener::local_addr)
    }

    /// The address of the admin listener, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(AdminListener::local_addr)
    }

    /// Serves until `shutdown` is cancelled: then stops accepting, lets in-flight requests
    /// finish for the configured grace period, closes sidecar connections (QUIC with
    /// SHUTDOWN, HTTP/2 with GOAWAY) and returns. Returns an error if a component stopped on its own.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), GatewayError> {
        let Gateway {
            shared,
            audit_writer,
            tunnel,
            dev_http,
            admin,
        } = self;
        let grace = shared.timeouts.shutdown_grace;
        // Components stop on `stop`: the caller's shutdown, or one of them failing.
        let stop = shutdown.child_token();
        let mut components = JoinSet::new();
        let mut names: Vec<(Id, &'static str)> = Vec::new();
        if let Some(tunnel) = tunnel {
            let registry = Arc::new(Registry::default());
            let watcher = tunnel.watcher(&shared, &registry);
            let deps = tunnel.deps(&shared, &registry);
            if let Some(quic) = tunnel.quic {
                let handle = components.spawn(quic.run(Arc::clone(&deps), stop.clone()));
                names.push((handle.id(), "QUIC listener"));
            }
            if let Some(h2) = tunnel.h2 {
                let handle = components.spawn(h2.run(deps, stop.clone()));
                names.push((handle.id(), "HTTP/2 tunnel listener"));
            }
            let handle = components.spawn(watcher.run(stop.clone()));
            names.push((handle.id(), "CRL watcher"));
        }
        if let Some(dev) = dev_http {
            let handle = components.spawn(dev.run(Arc::clone(&shared), stop.clone()));
            names.push((handle.id(), "dev-mode HTTP listener"));
        }
        // The audit writer, like the admin listener, outlives the listeners, so that the
        // decisions of draining requests are written; it flushes and returns when stopped.
        let audit_stop = CancellationToken::new();
        let mut audit_task = JoinSet::new();
        if let Some(writer) = audit_writer {
            audit_task.spawn(writer.run(audit_stop.clone()));
        }
        // The admin listener outlives the others, to answer /readyz with 503 while they
        // drain; it has its own owner and stop signal.
        let readiness = Arc::new(Readiness::default());
        let admin_stop = CancellationToken::new();
        let mut admin_task = JoinSet::new();
        if let Some(admin) = admin {
            admin_task.spawn(admin.run(
                Arc::clone(&shared),
                Arc::clone(&readiness),
                admin_stop.clone(),
            ));
        }
        // Every socket was bound in `bind` and every accept loop now runs.
        readiness.set_ready();
        info!("gateway ready");

        let failure = tokio::select! {
            // Shutdown first: components that return because it was asked are not failures.
            biased;
            () = stop.cancelled() => None,
            Some(done) = components.join_next_with_id() => {
                if stop.is_cancelled() && done.is_ok() {
                    // The shutdown raced the component's own return: a normal stop.
                    None
                } else {
                let (id, reason) = match done {
                    Ok((id, ())) => (id, "it stopped unexpectedly".to_owned()),
                    Err(e) => (e.id(), format!("it panicked: {e}")),
                };
                let component = names
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map_or("component", |(_, n)| *n);
                error!("{component} failed: {reason}; shutting the gateway down");
                Some(GatewayError::ComponentFailed { component, reason })
                }
            }
        };
        readiness.set_draining();
        stop.cancel();
        info!(
            grace_secs = grace.as_secs_f64(),
            "shutting down: letting in-flight requests finish"
        );
        let drained = tokio::time::timeout(grace + SHUTDOWN_BACKSTOP, async {
            while components.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("components still running after the grace period; aborting them");
            components.abort_all();
            while components.join_next().await.is_some() {}
        }
        // No request is in flight any more: close the HTTP/3 upstream connections and
        // their endpoints (with their driver tasks).
        shared.forwarder.shutdown().await;
        admin_stop.cancel();
        while admin_task.join_next().await.is_some() {}
        audit_stop.cancel();
        while audit_task.join_next().await.is_some() {}
        info!("gateway stopped");
        failure.map_or(Ok(()), Err)
    }
}
