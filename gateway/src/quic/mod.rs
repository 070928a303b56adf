//! The QUIC listener for sidecars (SPEC.md §12): mutual TLS 1.3 with ALPN `aimux/1`, client
//! certificates chained to the mesh CA and absent from its CRL, one bidirectional stream
//! per request. Admission and the streams themselves are `crate::tunnel`'s.

mod connection;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimux_certs::tls::{MeshClientVerifier, server_config};
use aimux_wire::codes;
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, IdleTimeout, ServerConfig, TransportConfig, VarInt};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::TunnelConfig;
use crate::error::GatewayError;
use crate::tunnel::ConnectionDeps;

/// Idle timeout of sidecar connections. Sidecars send keep-alives well within it.
const IDLE_TIMEOUT_MS: u32 = 30_000;
/// The gateway's own keep-alive, so that NAT bindings stay open from this side too.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// Connection-level receive window. Each stream is bounded by quinn's per-stream window
/// (1.25 MB); this caps what one sidecar can make the gateway buffer across all its streams
/// (quinn's default is unbounded), while leaving room for dozens of full-speed uploads.
const CONNECTION_RECEIVE_WINDOW: u32 = 64 * 1024 * 1024;
/// Most sidecar connections (including handshakes in progress); more are refused.
const MAX_CONNECTIONS: usize = 10_000;
/// After the connections are closed, how long to wait for CONNECTION_CLOSE to go out.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A bound QUIC endpoint, not yet accepting.
#[derive(Debug)]
pub(crate) struct QuicListener {
    endpoint: Endpoint,
    addr: SocketAddr,
}

impl QuicListener {
    /// Builds the TLS configuration (ALPN `aimux/1`) around the shared `verifier` and binds
    /// the UDP socket on `listen`.
    pub(crate) fn bind(
        listen: SocketAddr,
        config: &TunnelConfig,
        verifier: &Arc<MeshClientVerifier>,
    ) -> Result<Self, GatewayError> {
        let tls = server_config(&config.identity, Arc::clone(verifier)).map_err(|source| {
            GatewayError::Tls {
                source: Box::new(source),
            }
        })?;
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| GatewayError::QuicCrypto {
            reason: e.to_string(),
        })?;
        let mut server = ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(Arc::new(transport(config.max_streams_per_connection)));
        let bind_error = |source| GatewayError::Bind {
            what: "QUIC listener",
            addr: listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_error)?;
        let runtime = quinn::default_runtime().ok_or_else(|| {
            bind_error(std::io::Error::other(
                "no async runtime for the QUIC endpoint",
            ))
        })?;
        let endpoint = Endpoint::new(
            endpoint_config(&config.identity),
            Some(server),
            socket,
            runtime,
        )
        .map_err(bind_error)?;
        let addr = endpoint.local_addr().map_err(|source| GatewayError::Bind {
            what: "QUIC listener",
            addr: listen,
            source,
        })?;
        Ok(Self { endpoint, addr })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts connections until `shutdown`, then lets them drain and closes the endpoint.
    pub(crate) async fn run(self, deps: Arc<ConnectionDeps>, shutdown: CancellationToken) {
        info!(addr = %self.addr, "QUIC listener accepting sidecar connections");
        let grace = deps.shared.timeouts.shutdown_grace;
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = connections.join_next() => {
                    if let Err(e) = done && e.is_panic() {
                        error!("a connection task panicked: {e}");
                    }
                }
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    if connections.len() >= MAX_CONNECTIONS {
                        warn!(remote = %incoming.remote_address(),
                            "refusing a connection: {MAX_CONNECTIONS} connections are open");
                        incoming.refuse();
                        continue;
                    }
                    connections.spawn(connection::serve(
                        incoming,
                        Arc::clone(&deps),
                        shutdown.clone(),
                    ));
                }
            }
        }
        // No new connections from here on; the open ones drain on their own (each bounded
        // by the grace period), with a backstop in case one does not.
        self.endpoint.set_server_config(None);
        let drained = tokio::time::timeout(grace + CLOSE_LINGER, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        self.endpoint
            .close(VarInt::from_u32(codes::CLOSE_SHUTDOWN), b"shutdown");
        let _ = tokio::time::timeout(CLOSE_LINGER, self.endpoint.wait_idle()).await;
        info!(addr = %self.addr, "QUIC listener stopped");
    }
}

/// Endpoint configuration with a *static* stateless-reset key, derived from the gateway's
/// private key. RFC 9000 §10.3: a stateless reset lets an endpoint that lost a
/// connection's state (here: a restarted gateway) tell the peer the connection is gone;
/// the peer accepts it only if the token was made with the same key (§10.3.2 recommends a
/// static key for exactly this). With a random key per process, a sidecar would keep
/// sending on its dead connection until its idle timeout; with this one it reconnects as
/// soon as the restarted gateway answers a packet.
fn endpoint_config(identity: &aimux_certs::Identity) -> quinn::EndpointConfig {
    let key = identity.clone_key();
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"aimux/1 stateless reset key");
    context.update(key.secret_der());
    let derived = context.finish();
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref());
    quinn::EndpointConfig::new(Arc::new(hmac))
}

/// Transport parameters of sidecar connections (RFC 9000 §18.2).
fn transport(max_streams: u32) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(max_streams));
    // Sidecars may open only bidirectional streams (SPEC.md §12). One unidirectional
    // stream is allowed so that opening one reaches the gateway, which then closes the
    // connection with PROTOCOL_VIOLATION as the spec requires; with a limit of 0 the
    // sidecar's QUIC stack would just wait forever for credit.
    t.max_concurrent_uni_streams(VarInt::from_u32(1));
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    t.receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
    t
}
