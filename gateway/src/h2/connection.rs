//! One sidecar connection over TCP: the TLS 1.3 handshake (RFC 8446) with the mesh's client
//! verifier, admission from the verified certificate, then HTTP/2 (RFC 9113) with one
//! stream per request until the connection ends, the gateway shuts down (GOAWAY, grace
//! period) or the CRL watcher closes it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::stream::{self, ChannelBody, RecvHalf, SendHalf};
use super::{ALPN_H2, CloseHandle};
use crate::metrics::Transport;
use crate::rt::OwnedExecutor;
use crate::tunnel::registry::Handle;
use crate::tunnel::stream::serve as serve_stream;
use crate::tunnel::transport::{StreamRecv, StreamSend};
use crate::tunnel::{self, Admitted, ConnectionDeps, report_panic};

/// The media type of a tunnel stream's request and response bodies (SPEC.md §12.1).
pub(crate) const ENVELOPE_MEDIA_TYPE: &str = "application/aimux-envelope";
/// Longest TLS handshake; QUIC's is bounded by its idle timeout in the same way.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 PING interval (RFC 9113 §6.7), as QUIC's keep-alive: NAT bindings stay open and a
/// dead sidecar is noticed. Sidecars ping more often themselves.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// A PING unanswered this long ends the connection (QUIC's idle timeout is 30 s).
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Per-stream receive window, quinn's default (1.25 MB) so both transports let a sidecar
/// send as far ahead on one stream (RFC 9113 §6.9.2 SETTINGS_INITIAL_WINDOW_SIZE).
const STREAM_WINDOW: u32 = 1_250_000;
/// Connection receive window: what one sidecar can make the gateway buffer across all its
/// streams, as QUIC's connection window (RFC 9113 §6.9.1).
const CONNECTION_WINDOW: u32 = 64 * 1024 * 1024;
/// After a refused handshake, how long to drain the socket before closing it.
const LINGER: Duration = Duration::from_secs(1);
/// How long hyper's per-stream tasks get to stop once the connection is over.
const TASK_WAIT: Duration = Duration::from_secs(1);

type ResponseBody = Either<ChannelBody, Empty<Bytes>>;

/// A stream accepted by hyper, waiting for its task.
type Accepted = (SendHalf, RecvHalf);

/// Why the stream loop ended.
enum End {
    Shutdown,
    Closed,
    Ended(Result<(), hyper::Error>),
}

/// Serves one accepted TCP connection to its end.
pub(super) async fn serve(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: TlsAcceptor,
    max_streams: u32,
    deps: Arc<ConnectionDeps>,
    shutdown: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    super::tune_tunnel_socket(&tcp);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp).into_fallible());
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        () = shutdown.cancelled() => return,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err((e, tcp))) => {
            // Certificates from another CA, expired, revoked or missing end here: the
            // verifier refused them and rustls wrote the matching TLS alert.
            info!(%remote, error = %e, "refused a sidecar connection during the handshake");
            linger(tcp).await;
            return;
        }
        Err(_elapsed) => {
            debug!(%remote, "no TLS handshake within {}s; closing", HANDSHAKE_TIMEOUT.as_secs());
            return;
        }
    };
    let (_, session) = stream.get_ref();
    if session.alpn_protocol() != Some(ALPN_H2) {
        // rustls refuses a client that offers other protocols only; one that offers none
        // gets here.
        warn!(%remote, "a client connected without ALPN `h2`; closing");
        return;
    }
    let Some(certs) = session
        .peer_certificates()
        .filter(|c| !c.is_empty())
        .map(|c| Arc::from(c.to_vec()))
    else {
        warn!(%remote, "a connection completed without a client certificate; closing");
        return;
    };
    let close = CloseHandle::new();
    let handle = Handle::H2(close.clone());
    let Some(admitted) = tunnel::admit(&deps, certs, handle, Transport::H2, remote) else {
        return;
    };
    let executor = OwnedExecutor::default();
    let grace = deps.shared.timeouts.shutdown_grace;
    drive(
        stream,
        admitted,
        &close,
        &executor,
        max_streams,
        grace,
        shutdown,
    )
    .await;
    executor.shutdown(TASK_WAIT).await;
}

/// Runs HTTP/2 on the admitted connection; returns once it is over and dropped.
async fn drive(
    stream: TlsStream<TcpStream>,
    admitted: Admitted,
    close: &CloseHandle,
    executor: &OwnedExecutor,
    max_streams: u32,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let (id, ctx) = (&admitted.id, &admitted.ctx);
    let queue = usize::try_from(max_streams).unwrap_or(usize::MAX).max(1);
    let (accepted_tx, mut accepted_rx) = mpsc::channel::<Accepted>(queue);
    let next_stream = AtomicU64::new(0);
    let service = service_fn(move |request: Request<Incoming>| {
        let n = next_stream.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok::<_, Infallible>(open_stream(request, &accepted_tx, n)))
    });
    let mut builder = http2::Builder::new(executor.clone());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_streams)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .keep_alive_interval(KEEP_ALIVE)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .auto_date_header(false);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
    let mut streams = JoinSet::new();
    let spawn = |streams: &mut JoinSet<()>, (send, recv): Accepted| {
        let (send, recv) = (StreamSend::H2(send), StreamRecv::H2(recv));
        streams.spawn(serve_stream(Arc::clone(ctx), send, recv));
    };
    let end = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break End::Shutdown,
            () = close.requested.cancelled() => break End::Closed,
            Some(done) = streams.join_next() => report_panic(done, id),
            Some(accepted) = accepted_rx.recv() => spawn(&mut streams, accepted),
            result = conn.as_mut() => break End::Ended(result),
        }
    };
    match end {
        End::Shutdown => {
            // GOAWAY (RFC 9113 §6.8): no new streams; those in flight may finish.
            conn.as_mut().graceful_shutdown();
            let in_flight = streams.len();
            let deadline = Instant::now() + grace;
            let finished = loop {
                tokio::select! {
                    biased;
                    () = tokio::time::sleep_until(deadline) => break false,
                    () = close.requested.cancelled() => break false,
                    Some(done) = streams.join_next() => report_panic(done, id),
                    // Streams the sidecar opened before the GOAWAY reached it.
                    Some(accepted) = accepted_rx.recv() => spawn(&mut streams, accepted),
                    _ = conn.as_mut() => break true,
                }
            };
            if !finished {
                warn!(identity = %id, remaining = streams.len(), in_flight,
                    "shutdown grace period over; abandoning the requests still in flight");
            }
        }
        // The CRL watcher logged why.
        End::Closed => {}
        End::Ended(Ok(())) => info!(identity = %id, "sidecar disconnected"),
        End::Ended(Err(e)) => info!(identity = %id, reason = %e, "sidecar disconnected"),
    }
    // Aborted stream tasks abandon their responses: hyper resets those streams, so nothing
    // truncated looks complete.
    streams.abort_all();
    while streams.join_next().await.is_some() {}
}

/// Answers a new stream at once with `200` and a body fed by the stream's task (SPEC.md
/// §12.1), or with an error status if the request is not a tunnel stream.
fn open_stream(
    request: Request<Incoming>,
    accepted: &mpsc::Sender<Accepted>,
    n: u64,
) -> Response<ResponseBody> {
    if let Some(status) = not_a_tunnel_stream(&request) {
        debug!(%status, method = %request.method(), path = request.uri().path(),
            "refusing an HTTP/2 request that is not a tunnel stream");
        return status_only(status);
    }
    let (send, body) = stream::channel(n);
    let recv = RecvHalf::new(request.into_body());
    if accepted.try_send((send, recv)).is_err() {
        // More streams queued than SETTINGS_MAX_CONCURRENT_STREAMS, or the connection is
        // closing.
        return status_only(StatusCode::SERVICE_UNAVAILABLE);
    }
    let mut response = Response::new(Either::Left(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ENVELOPE_MEDIA_TYPE),
    );
    response
}

/// Why a request is not a tunnel stream: `POST /` with the envelope media type.
fn not_a_tunnel_stream<B>(request: &Request<B>) -> Option<StatusCode> {
    if request.method() != Method::POST {
        return Some(StatusCode::METHOD_NOT_ALLOWED);
    }
    if request.uri().path() != "/" {
        return Some(StatusCode::NOT_FOUND);
    }
    let media_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if media_type != Some(ENVELOPE_MEDIA_TYPE) {
        return Some(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    None
}

fn status_only(status: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = status;
    response
}

/// Closes a refused connection gracefully: FIN after the TLS alert, then reads (and
/// discards) what the client still sends, for at most [`LINGER`]. Closing a socket with
/// unread data makes the kernel send a TCP RST, which can overtake the alert and leave the
/// sidecar with "connection reset" instead of `certificate_revoked` (RFC 9293 §3.6; the
/// same reason HTTP/1.1 servers linger, RFC 9112 §9.6).
async fn linger(mut tcp: TcpStream) {
    if tcp.shutdown().await.is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    let drain = async { while matches!(tcp.read(&mut scratch).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, media_type: Option<&str>) -> Request<()> {
        let mut r = Request::builder().method(method).uri(path);
        if let Some(m) = media_type {
            r = r.header(header::CONTENT_TYPE, m);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn only_post_slash_with_the_envelope_media_type_is_a_tunnel_stream() {
        let ok = request(Method::POST, "/", Some(ENVELOPE_MEDIA_TYPE));
        assert_eq!(not_a_tunnel_stream(&ok), None);
        let get = request(Method::GET, "/", Some(ENVELOPE_MEDIA_TYPE));
        assert_eq!(
            not_a_tunnel_stream(&get),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        let path = request(Method::POST, "/x", Some(ENVELOPE_MEDIA_TYPE));
        assert_eq!(not_a_tunnel_stream(&path), Some(StatusCode::NOT_FOUND));
        let json = request(Method::POST, "/", Some("application/json"));
        assert_eq!(
            not_a_tunnel_stream(&json),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
        let none = request(Method::POST, "/", None);
        assert_eq!(
            not_a_tunnel_stream(&none),
            Some(StatusCode::UNSUPPORTED_MEDIA_TYPE)
        );
    }
}
