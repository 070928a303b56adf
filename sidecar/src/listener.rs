//! The agent-facing HTTP/1.1 listeners on loopback.
//!
//! One accept task per listener; one task per TCP connection, served by hyper with
//! keep-alive (RFC 9112 §9.3) and pipelining (§9.3.2: responses in request order, which
//! hyper's HTTP/1 dispatcher guarantees by serving one request at a time per connection).
//! On shutdown, accept loops stop at once, idle connections close, and connections with a
//! request in flight finish it (hyper's graceful shutdown) until the hard stop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use crate::error::SidecarError;
use crate::exchange::{Shared, handle};
use crate::proxy::Addressing;
use crate::rt::OwnedExecutor;

/// How long a client may take to send a request head (slow-loris bound).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after an accept error (e.g. EMFILE), so a persistent error does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Concurrent HTTP/2 streams one agent connection may open (each becomes a tunnel stream).
const MAX_AGENT_H2_STREAMS: u32 = 256;
/// After an agent connection ends, how long hyper's stream tasks get to finish.
const STREAM_TASK_WAIT: Duration = Duration::from_secs(1);

/// A bound listener, not yet accepting.
#[derive(Debug)]
pub(crate) struct BoundListener {
    listener: TcpListener,
    addr: SocketAddr,
    addressing: Arc<Addressing>,
    /// Raw TCP: each connection is one opaque stream (`raw.rs`), not HTTP.
    tcp: bool,
}

impl BoundListener {
    /// Binds `listen` (which must be loopback) for `addressing`.
    pub(crate) async fn bind(
        listen: SocketAddr,
        addressing: Addressing,
    ) -> Result<Self, SidecarError> {
        let what = addressing.describe();
        if !listen.ip().is_loopback() {
            return Err(SidecarError::NotLoopback { listen, what });
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SidecarError::Bind {
                listen,
                what: what.clone(),
                source,
            })?;
        // With port 0 the OS picks; report the real address.
        let addr = listener.local_addr().map_err(|source| SidecarError::Bind {
            listen,
            what,
            source,
        })?;
        Ok(BoundListener {
            listener,
            addr,
            addressing: Arc::new(addressing),
            tcp: false,
        })
    }

    /// Makes this a raw TCP listener.
    pub(crate) fn set_tcp(&mut self, tcp: bool) {
        self.tcp = tcp;
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service name, `None` for the proxy listener.
    pub(crate) fn service(&self) -> Option<String> {
        match &*self.addressing {
            Addressing::Service(name) => Some(name.clone()),
            Addressing::Proxy => None,
        }
    }

    /// Accepts connections until `drain` is cancelled. Connection tasks go to `tasks`.
    pub(crate) async fn serve(
        self,
        shared: Arc<Shared>,
        tasks: TaskTracker,
        drain: CancellationToken,
    ) {
        let what = self.addressing.describe();
        debug!(listen = %self.addr, "{what} accepting");
        loop {
            let accepted = tokio::select! {
                biased;
                () = drain.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) if self.tcp => {
                    if let Addressing::Service(service) = &*self.addressing {
                        tasks.spawn(crate::raw::serve(
                            Arc::clone(&shared),
                            service.clone(),
                            tcp,
                            peer,
                        ));
                    }
                }
                Ok((tcp, peer)) => {
                    let conn = Connection {
                        shared: Arc::clone(&shared),
                        addressing: Arc::clone(&self.addressing),
                        drain: drain.clone(),
                        hard_stop: shared.hard_stop.clone(),
                    };
                    tasks.spawn(conn.serve(tcp, peer));
                }
                Err(e) if is_per_connection(&e) => {
                    debug!(listen = %self.addr, "accept: {e}");
                }
                Err(e) => {
                    error!(listen = %self.addr, "{what}: cannot accept connections: {e}");
                    tokio::select! {
                        () = drain.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
                }
            }
        }
        debug!(listen = %self.addr, "{what} stopped accepting");
    }
}

/// Errors that concern one connection only (it was reset before we accepted it).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

struct Connection {
    shared: Arc<Shared>,
    addressing: Arc<Addressing>,
    drain: CancellationToken,
    hard_stop: CancellationToken,
}

impl Connection {
    async fn serve(self, tcp: TcpStream, peer: SocketAddr) {
        // Small writes (an SSE event, a short response) must leave at once.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(%peer, "cannot set TCP_NODELAY: {e}");
        }
        // hyper-util's auto server waits for the first bytes (to tell HTTP/1.1 from the
        // HTTP/2 preface) without a bound of its own: a connection that sends nothing is
        // closed after the same time a request head may take.
        let mut first = [0u8; 1];
        let peeked = tokio::select! {
            () = self.drain.cancelled() => return,
            peeked = tokio::time::timeout(HEADER_READ_TIMEOUT, tcp.peek(&mut first)) => peeked,
        };
        match peeked {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Ok(_) | Err(_)) => return,
            Err(_) => {
                debug!(%peer, "closing a connection that sent nothing for {HEADER_READ_TIMEOUT:?}");
                return;
            }
        }
        let Connection {
            shared,
            addressing,
            drain,
            hard_stop,
        } = self;
        let service = service_fn(move |request| {
            handle(Arc::clone(&shared), Arc::clone(&addressing), request)
        });
        // HTTP/1.1, or HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3), told apart by the
        // connection preface; every HTTP/2 stream is a request of its own, and so its own
        // tunnel stream. hyper's per-stream tasks run on an executor this connection owns.
        let executor = OwnedExecutor::default();
        let mut builder = auto::Builder::new(executor.clone());
        // `pipeline_flush` stays off (hyper's default). With it on, hyper skips every flush
        // while pipelined request bytes wait in its read buffer, and buffers the response
        // without bound instead: a streamed (SSE) response with a request pipelined behind it
        // would never reach the agent, and a large one would be held in memory. Pipelining
        // works without it: hyper answers pipelined requests in order either way (tested).
        builder
            .http1()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_AGENT_H2_STREAMS);
        let conn = builder.serve_connection(TokioIo::new(tcp), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = drain.cancelled() => {
                // Finish the requests in flight, if any, then close (HTTP/2: GOAWAY).
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = hard_stop.cancelled() => {
                        debug!(%peer, "connection cut off at the end of the shutdown grace period");
                        executor.shutdown(Duration::ZERO).await;
                        return;
                    }
                }
            }
        };
        executor.shutdown(STREAM_TASK_WAIT).await;
        let parse_error = |e: &(dyn std::error::Error + Send + Sync + 'static)| {
            e.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_parse() || h.is_parse_too_large())
        };
        match result {
            Ok(()) => {}
            // hyper already answered 400 or 431; the agent sent something that is not HTTP.
            Err(e) if parse_error(&*e) => {
                warn!(%peer, "malformed HTTP request from the agent: {e}");
            }
            // The agent went away, a response body was cut off (logged where it happened), or
            // the head did not arrive in time.
            Err(e) => debug!(%peer, "connection ended: {e}"),
        }
    }
}
