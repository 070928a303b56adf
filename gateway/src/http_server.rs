//! The plain HTTP/1.1 server loop shared by the dev-mode and the admin listeners: bounded
//! connections, a bound on reading request heads, keep-alive, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::error::GatewayError;
use crate::forward::body::BoxError;

/// Response bodies of these servers.
pub(crate) type ServerBody = UnsyncBoxBody<Bytes, BoxError>;

/// How long to back off after a failed `accept` (e.g. out of file descriptors), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds a TCP listener, with an operator-facing error.
pub(crate) async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { what, addr, source })
}

/// Limits of one server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    /// Most connections at once; more wait in the kernel's accept queue.
    pub(crate) max_connections: usize,
    /// How long a client may take to send a request head.
    pub(crate) header_read_timeout: Duration,
    /// After shutdown, how long open connections may take to finish their request.
    pub(crate) grace: Duration,
}

/// Serves `handler` on `listener` until `shutdown`, then lets in-flight requests finish
/// for at most `limits.grace`.
pub(crate) async fn serve<H, F>(
    what: &'static str,
    listener: TcpListener,
    limits: ServerLimits,
    shutdown: CancellationToken,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ServerBody>> + Send + 'static,
{
    let addr = listener.local_addr().ok();
    info!(?addr, "{what} accepting connections");
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = connections.join_next() => {
                if let Err(e) = done && e.is_panic() {
                    error!("a {what} connection task panicked: {e}");
                }
            }
            accepted = listener.accept(), if connections.len() < limits.max_connections => {
                match accepted {
                    Ok((stream, remote)) => {
                        connections.spawn(serve_connection(
                            stream,
                            remote,
                            handler.clone(),
                            limits.header_read_timeout,
                            shutdown.clone(),
                        ));
                    }
                    Err(e) => {
                        warn!(error = %e, "{what} could not accept a connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = connections.len(),
            "{what}: shutdown grace period over; closing the connections still busy"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
    info!(?addr, "{what} stopped");
}

async fn serve_connection<H, F>(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    handler: H,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ServerBody>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let response = handler(req);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = shutdown.cancelled() => {
            // Finish the request in progress, if any, then close (no more keep-alive).
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!(%remote, error = %e, "HTTP connection ended with an error");
    }
}
