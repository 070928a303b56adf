//! The HTTP/2 tunnel transport (SPEC.md §12.1): one TLS 1.3 connection over TCP (RFC 8446)
//! with the mesh certificates and verifiers, ALPN `h2`, one HTTP/2 stream per request (RFC
//! 9113). For networks where UDP is blocked; the design is Istio ambient's HBONE.

pub(crate) mod classify;
mod frames;
pub(crate) mod io;
pub(crate) mod slots;
pub(crate) mod stream;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aimux_certs::pki_types::ServerName;
use aimux_certs::rustls;
use bytes::Bytes;
use http::Uri;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use self::io::{ConnState, Observed};
use self::slots::Slots;
use self::stream::ChannelBody;
use super::classify::Failure;
use super::transport::H2Conn;
use super::verifier::RecordingVerifier;
use crate::config::{GatewayTarget, TunnelSettings};
use crate::error::SidecarError;
use crate::rt::OwnedExecutor;

/// The ALPN protocol identifier of HTTP/2 over TLS (RFC 9113 §3.2).
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// Per-stream receive window, quinn's default (1.25 MB), so both transports let the gateway
/// send as far ahead on one stream (RFC 9113 §6.9.2 SETTINGS_INITIAL_WINDOW_SIZE).
const STREAM_WINDOW: u32 = 1_250_000;
/// Connection receive window across all streams (RFC 9113 §6.9.1): large, as QUIC's is
/// (quinn's client default is unbounded), yet bounded.
const CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;
/// Largest read while waiting for the gateway's first bytes (its SETTINGS frame).
const CONFIRM_READ: usize = 16 * 1024;

/// Identifies HTTP/2 connections (quinn numbers its own).
static NEXT_CONNECTION_ID: AtomicUsize = AtomicUsize::new(0);

type Driver = http2::Connection<TokioIo<Observed>, ChannelBody, OwnedExecutor>;

/// Dials the gateway over TCP.
pub(crate) struct H2Dialer {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    uri: Uri,
    tls: TlsConnector,
    keep_alive: Duration,
    keep_alive_timeout: Duration,
    /// Runs hyper's tasks of every connection: a connection that ended with a GOAWAY keeps
    /// serving its streams in flight (RFC 9113 §6.8) while the next one is made, and all of
    /// them are stopped together on shutdown.
    executor: OwnedExecutor,
}

impl std::fmt::Debug for H2Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Dialer")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl H2Dialer {
    /// `tls`: the mesh client configuration (with the recording verifier); its ALPN is set
    /// to `h2` here.
    pub(crate) fn new(
        mut tls: rustls::ClientConfig,
        gateway: &GatewayTarget,
        settings: &TunnelSettings,
    ) -> Result<Self, SidecarError> {
        tls.alpn_protocols = vec![ALPN_H2.to_vec()];
        let server_name = ServerName::try_from(gateway.server_name.clone()).map_err(|e| {
            SidecarError::InvalidGateway {
                addr: gateway.addr,
                problem: format!("server name {:?} is unusable: {e}", gateway.server_name),
            }
        })?;
        // The authority is informational (the gateway routes on the envelope); a server
        // name that is no valid authority (an IPv6 literal) is replaced.
        let uri = format!("https://{}/", gateway.server_name)
            .parse()
            .unwrap_or_else(|_| Uri::from_static("https://aimux-gateway/"));
        Ok(H2Dialer {
            addr: gateway.addr,
            server_name,
            uri,
            tls: TlsConnector::from(Arc::new(tls)),
            keep_alive: settings.keep_alive,
            // PINGs every `keep_alive`; one unanswered for the rest of `idle_timeout` ends
            // the connection, so a silent gateway is noticed after about `idle_timeout`, as
            // over QUIC (RFC 9113 §6.7).
            keep_alive_timeout: settings.idle_timeout.saturating_sub(settings.keep_alive),
            executor: OwnedExecutor::default(),
        })
    }

    /// Stops what is left of every connection (those that ended with a GOAWAY may still
    /// be serving their last streams): waits at most `wait` for them, then cuts them off.
    pub(crate) async fn shutdown(&self, wait: Duration) {
        self.executor.shutdown(wait).await;
    }

    /// One connection attempt, ending with a *confirmed* handshake; the caller bounds it.
    ///
    /// Why confirmed: in TLS 1.3 the client's handshake completes as soon as it sends its
    /// Finished, before the server has checked the client certificate (RFC 8446 §4.4.4).
    /// A gateway that refuses the certificate answers with an alert; one that accepts it
    /// sends its HTTP/2 connection preface, a SETTINGS frame, at once (RFC 9113 §3.4). So
    /// the first bytes decide, before any request is trusted to the connection, and a
    /// revoked agent never looks connected. They are then replayed to hyper.
    pub(crate) async fn dial(&self, verifier: &RecordingVerifier) -> Result<H2Live, Failure> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| Failure::Local(format!("cannot open a TCP socket: {e}")))?;
        // Small writes (a request head, an envelope) must leave at once; keep-alive lets the
        // kernel notice a dead peer too (HTTP/2 PINGs notice it sooner).
        let _ = socket.set_nodelay(true);
        let _ = socket.set_keepalive(true);
        tune_tunnel_socket(&socket);
        let tcp = socket
            .connect(self.addr)
            .await
            .map_err(|e| classify::tcp_failed(&e))?;
        let mut tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| classify::tls_failed(&e, verifier.take()))?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err(Failure::NoHttp2);
        }
        let mut first = vec![0u8; CONFIRM_READ];
        let n = tls
            .read(&mut first)
            .await
            .map_err(|e| classify::tls_failed(&e, verifier.take()))?;
        if n == 0 {
            return Err(Failure::Broken {
                reason: "the gateway closed the connection right after the TLS handshake".into(),
            });
        }
        first.truncate(n);
        let slots = Slots::new(slots::max_concurrent_streams(&first));
        let state = ConnState::new();
        let io = Observed::new(Bytes::from(first), tls, Arc::clone(&state));
        let (send, driver) = http2::Builder::new(self.executor.clone())
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .keep_alive_interval(self.keep_alive)
            .keep_alive_timeout(self.keep_alive_timeout)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| Failure::Broken {
                reason: format!("the HTTP/2 handshake failed: {e}"),
            })?;
        let conn = H2Conn {
            send,
            state,
            slots,
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            uri: self.uri.clone(),
        };
        Ok(H2Live {
            conn,
            driver: Box::pin(driver),
            executor: self.executor.clone(),
            keep_alive_timeout: self.keep_alive_timeout,
        })
    }
}

/// A connected HTTP/2 tunnel: the handle to publish, and what drives it.
pub(crate) struct H2Live {
    pub(crate) conn: H2Conn,
    driver: Pin<Box<Driver>>,
    executor: OwnedExecutor,
    keep_alive_timeout: Duration,
}

impl H2Live {
    /// Drives the connection until it can take no new requests (it ended, or the gateway
    /// sent GOAWAY: streams in flight then go on, on the executor), and says why.
    pub(crate) async fn closed(&mut self) -> Failure {
        let state = Arc::clone(&self.conn.state);
        let error = tokio::select! {
            result = self.driver.as_mut() => result.err(),
            () = state.closing() => None,
        };
        classify::h2_ended(
            error.as_ref(),
            state.goaway().map(|g| g.error_code),
            state.end(),
            state.silent_for(),
            self.keep_alive_timeout,
        )
    }

    /// Closes an idle connection on shutdown: with every request handle gone, h2 sends
    /// GOAWAY (RFC 9113 §6.8) and closes. Waits at most `wait` for that, then cuts it off,
    /// with every other connection of this dialer still draining. Call it once the
    /// connection is no longer published.
    pub(crate) async fn close(self, wait: Duration) {
        let H2Live {
            conn,
            mut driver,
            executor,
            ..
        } = self;
        drop(conn);
        let _ = tokio::time::timeout(wait, driver.as_mut()).await;
        drop(driver);
        executor.shutdown(wait).await;
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
