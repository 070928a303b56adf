//! The TLS stream under an HTTP/2 tunnel connection, observed: hyper reports how a
//! connection ended only coarsely (a GOAWAY, a keep-alive timeout and a TCP reset can all
//! look alike), so the socket itself records the first thing that ended it, and when bytes
//! last arrived. The supervisor and the streams read it to tell a lost connection from a
//! reset stream, and to say why.
//!
//! It also follows the frames the gateway sends, to notice its GOAWAY (`frames.rs`), and
//! replays the bytes read while confirming the handshake (see `H2Dialer::dial`) before
//! reading from the socket again.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use aimux_certs::rustls;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::frames::{FrameScanner, GoAway};

/// What ended the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IoEnd {
    /// The gateway closed it (TLS close_notify or TCP FIN).
    Eof,
    /// The gateway sent this TLS alert (RFC 8446 §6.2).
    Alert(u8),
    /// A read or write failed (e.g. the connection was reset).
    Error(String),
    /// Our side dropped it: hyper closed the connection (keep-alive timeout, HTTP/2 error,
    /// or after a GOAWAY).
    Dropped,
}

impl IoEnd {
    /// The end an I/O error stands for.
    pub(crate) fn from_io(e: &io::Error) -> IoEnd {
        if let Some(rustls::Error::AlertReceived(alert)) = rustls_error(e) {
            return IoEnd::Alert(u8::from(*alert));
        }
        // rustls reports a TCP FIN without close_notify as an unexpected EOF: the gateway
        // closed the connection all the same.
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return IoEnd::Eof;
        }
        IoEnd::Error(e.to_string())
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if any.
pub(crate) fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What one connection's socket has seen.
#[derive(Debug)]
pub(crate) struct ConnState {
    started: Instant,
    /// Milliseconds after `started` when bytes last arrived.
    last_read_ms: AtomicU64,
    end: Mutex<Option<IoEnd>>,
    goaway: Mutex<Option<GoAway>>,
    /// Cancelled once the connection takes no new streams: GOAWAY received, or the socket
    /// is over.
    closing: CancellationToken,
}

impl ConnState {
    pub(crate) fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            started: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            end: Mutex::new(None),
            goaway: Mutex::new(None),
            closing: CancellationToken::new(),
        })
    }

    /// Whether the connection takes no new streams (GOAWAY, or over).
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Resolves once the connection takes no new streams.
    pub(crate) async fn closing(&self) {
        self.closing.cancelled().await;
    }

    /// The gateway's GOAWAY, if it sent one.
    pub(crate) fn goaway(&self) -> Option<GoAway> {
        *self.goaway.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the socket is over.
    pub(crate) fn ended(&self) -> bool {
        self.lock().is_some()
    }

    /// The first thing that ended the socket, if it is over.
    pub(crate) fn end(&self) -> Option<IoEnd> {
        self.lock().clone()
    }

    /// How long since bytes last arrived.
    pub(crate) fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Why the connection is gone, for messages about requests it took with it.
    pub(crate) fn describe_lost(&self) -> String {
        if let Some(goaway) = self.goaway() {
            return format!(
                "the gateway is closing the connection (HTTP/2 GOAWAY, error code {:#x})",
                goaway.error_code
            );
        }
        match self.end() {
            Some(IoEnd::Eof) => "the gateway closed the connection".to_owned(),
            Some(IoEnd::Alert(alert)) => format!("the gateway sent TLS alert {alert}"),
            Some(IoEnd::Error(e)) => e,
            Some(IoEnd::Dropped) | None => {
                "the connection was closed (HTTP/2 keep-alive timeout or protocol error)".to_owned()
            }
        }
    }

    fn record_end(&self, end: IoEnd) {
        self.lock().get_or_insert(end);
        self.closing.cancel();
    }

    fn record_goaway(&self, goaway: GoAway) {
        self.goaway
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(goaway);
        self.closing.cancel();
    }

    fn record_read(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<IoEnd>> {
        // Every critical section is one assignment or clone: a poisoned value is whole.
        self.end.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The TLS stream hyper reads and writes, recording into a [`ConnState`].
#[derive(Debug)]
pub(crate) struct Observed {
    prefix: Bytes,
    io: TlsStream<TcpStream>,
    state: Arc<ConnState>,
    frames: FrameScanner,
}

impl Observed {
    /// `prefix`: bytes already read from `io`, handed out first.
    pub(crate) fn new(prefix: Bytes, io: TlsStream<TcpStream>, state: Arc<ConnState>) -> Self {
        state.record_read();
        Observed {
            prefix,
            io,
            state,
            frames: FrameScanner::default(),
        }
    }

    fn scan(&mut self, bytes: &[u8]) {
        let state = &self.state;
        self.frames
            .feed(bytes, |goaway| state.record_goaway(goaway));
    }
}

impl AsyncRead for Observed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            let chunk = this.prefix.split_to(n);
            this.scan(&chunk);
            buf.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.state.record_read();
                let fresh = &buf.filled()[before..];
                let state = &this.state;
                this.frames
                    .feed(fresh, |goaway| state.record_goaway(goaway));
            }
            Poll::Ready(Ok(())) if buf.remaining() > 0 => this.state.record_end(IoEnd::Eof),
            Poll::Ready(Err(e)) => this.state.record_end(IoEnd::from_io(e)),
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Observed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Err(e)) = &polled {
            this.state.record_end(IoEnd::from_io(e));
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Err(e)) = &polled {
            this.state.record_end(IoEnd::from_io(e));
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        if let Poll::Ready(Err(e)) = &polled {
            this.state.record_end(IoEnd::from_io(e));
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.state.record_end(IoEnd::Dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_ends() {
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        );
        assert_eq!(IoEnd::from_io(&alert), IoEnd::Alert(44));
        let fin = io::Error::new(io::ErrorKind::UnexpectedEof, "no close_notify");
        assert_eq!(IoEnd::from_io(&fin), IoEnd::Eof);
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(IoEnd::from_io(&reset), IoEnd::Error("reset".into()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_end_wins_and_silence_is_measured() {
        let state = ConnState::new();
        assert!(!state.ended());
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(state.silent_for(), Duration::from_secs(3));
        state.record_read();
        assert_eq!(state.silent_for(), Duration::ZERO);
        state.record_end(IoEnd::Eof);
        state.record_end(IoEnd::Dropped);
        assert_eq!(state.end(), Some(IoEnd::Eof));
        assert_eq!(state.describe_lost(), "the gateway closed the connection");
    }
}
