//! The HTTP/2 tunnel listener for sidecars (SPEC.md §12.1): TLS 1.3 over TCP with the same
//! certificate, client verifier and CRL as QUIC, ALPN `h2`, one HTTP/2 stream per request
//! (RFC 9113). For networks where UDP is blocked; the design is Istio ambient's HBONE.
//! Admission and the streams themselves are `crate::tunnel`'s.

mod connection;
pub(crate) mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aimux_certs::tls::{MeshClientVerifier, server_config};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::TunnelConfig;
use crate::error::GatewayError;
use crate::tunnel::ConnectionDeps;

/// The ALPN protocol identifier of HTTP/2 over TLS (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

const WHAT: &str = "HTTP/2 tunnel listener";
/// Most sidecar connections (including TLS handshakes in progress); more are closed at once.
const MAX_CONNECTIONS: usize = 10_000;
/// Pending connections the kernel queues for us.
const BACKLOG: u32 = 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Beyond the grace period, how long connection tasks get to close before being aborted.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Identifies HTTP/2 connections in the registry (quinn numbers its own).
static NEXT_CONNECTION_ID: AtomicUsize = AtomicUsize::new(0);

/// A bound TCP listener, not yet accepting.
pub(crate) struct H2Listener {
    listener: TcpListener,
    addr: SocketAddr,
    tls: TlsAcceptor,
    max_streams: u32,
}

impl H2Listener {
    /// Builds the TLS configuration (ALPN `h2`) around the shared `verifier` and binds the
    /// TCP socket on `listen`.
    pub(crate) async fn bind(
        listen: SocketAddr,
        config: &TunnelConfig,
        verifier: &Arc<MeshClientVerifier>,
    ) -> Result<Self, GatewayError> {
        let mut tls = server_config(&config.identity, Arc::clone(verifier)).map_err(|source| {
            GatewayError::Tls {
                source: Box::new(source),
            }
        })?;
        // The same TLS 1.3 configuration as QUIC's (no resumption, so a revoked agent cannot
        // skip the certificate check on a ticket); only the application protocol differs.
        tls.alpn_protocols = vec![ALPN_H2.to_vec()];
        let bind_error = |source| GatewayError::Bind {
            what: WHAT,
            addr: listen,
            source,
        };
        let socket = if listen.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(bind_error)?;
        socket.set_reuseaddr(true).map_err(bind_error)?;
        // Accepted sockets inherit these on Linux; they are set again on each connection.
        socket.set_keepalive(true).map_err(bind_error)?;
        socket.set_nodelay(true).map_err(bind_error)?;
        socket.bind(listen).map_err(bind_error)?;
        let listener = socket.listen(BACKLOG).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            addr,
            tls: TlsAcceptor::from(Arc::new(tls)),
            max_streams: config.max_streams_per_connection,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accepts connections until `shutdown`, then lets them drain (GOAWAY, grace period).
    pub(crate) async fn run(self, deps: Arc<ConnectionDeps>, shutdown: CancellationToken) {
        info!(addr = %self.addr, "HTTP/2 tunnel listener accepting sidecar connections");
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
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, remote)) => {
                        if connections.len() >= MAX_CONNECTIONS {
                            warn!(%remote,
                                "refusing a connection: {MAX_CONNECTIONS} connections are open");
                            drop(tcp);
                            continue;
                        }
                        connections.spawn(connection::serve(
                            tcp,
                            remote,
                            self.tls.clone(),
                            self.max_streams,
                            Arc::clone(&deps),
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        warn!(error = %e, "{WHAT} could not accept a connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
            }
        }
        // No new connections from here on; the open ones drain on their own (each bounded
        // by the grace period), with a backstop in case one does not.
        drop(self.listener);
        let drained = tokio::time::timeout(grace + CLOSE_LINGER, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
        info!(addr = %self.addr, "HTTP/2 tunnel listener stopped");
    }
}

impl std::fmt::Debug for H2Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Listener")
            .field("addr", &self.addr)
            .field("max_streams", &self.max_streams)
            .finish_non_exhaustive()
    }
}

/// Lets the CRL watcher close one HTTP/2 connection.
///
/// HTTP/2 has no way to carry an aimux close code: hyper sends GOAWAY only with NO_ERROR
/// and without debug data. The connection task therefore drops the connection at once
/// (in-flight streams end abruptly, as with a QUIC CONNECTION_CLOSE), and the sidecar
/// learns why from its next handshake, which the CRL now refuses with `certificate_revoked`
/// (SPEC.md §12.1).
#[derive(Debug, Clone)]
pub(crate) struct CloseHandle {
    id: usize,
    requested: CancellationToken,
}

impl CloseHandle {
    pub(crate) fn new() -> Self {
        Self {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            requested: CancellationToken::new(),
        }
    }

    pub(crate) fn id(&self) -> usize {
        self.id
    }

    pub(crate) fn close(&self) {
        self.requested.cancel();
    }
}

/// Unsent bytes a tunnel socket may hold (`TCP_NOTSENT_LOWAT`). Without a cap the kernel
/// accepts megabytes of a bulk response ahead of every small one (`tcp_wmem` autotuning),
/// and HTTP/2 can no longer interleave streams; with it, frames wait in HTTP/2's queues,
/// where streams take turns. bench/RESULTS.md §3 measured the difference.
const NOTSENT_LOWAT: u32 = 128 * 1024;
/// The tunnel's TCP congestion controller: Cubic, the same as the QUIC tunnel's (quinn's
/// default), so that the two transports are compared and behave on equal terms whatever
/// the host's default (often BBR).
const CONGESTION_CONTROL: &[u8] = b"cubic";

/// Applies the tunnel's TCP settings; each is best effort (an unprivileged process may not
/// choose a congestion controller outside `tcp_allowed_congestion_control`).
pub(crate) fn tune_tunnel_socket(socket: &impl std::os::fd::AsFd) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_tcp_notsent_lowat(NOTSENT_LOWAT) {
        tracing::debug!("cannot set TCP_NOTSENT_LOWAT on a tunnel socket: {e}");
    }
    if let Err(e) = sock.set_tcp_congestion(CONGESTION_CONTROL) {
        tracing::debug!("cannot select TCP congestion control cubic for a tunnel socket: {e}");
    }
}
