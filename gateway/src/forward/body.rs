//! Request bodies handed to the upstream client: the payload of a tunnel stream (QUIC or
//! HTTP/2), read chunk by chunk as it arrives (never buffered whole), or a dev-mode hyper
//! body. And the upstream's response body, which holds the upstream's balancer lease until
//! it ends.

use std::pin::Pin;
use std::task::{Context, Poll};

use aimux_wire::codes;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::{FutureExt, Stream};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use super::balance::Lease;
use crate::tunnel::transport::{RecvError, StreamRecv};

/// Errors a request body can fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest chunk taken from the stream at once. QUIC chunks are zero-copy `Bytes` of
/// received packets and HTTP/2 chunks are DATA frames, so this bounds the size of one body
/// frame, not a buffer we allocate; the transport's stream receive window bounds what the
/// sidecar can send ahead of us.
const MAX_CHUNK: usize = 64 * 1024;

/// A stream that, when dropped before its end, asks the sidecar to stop sending with
/// `CANCELLED` (SPEC.md §12) instead of quinn's default code 0, which is not a stream code
/// of ours.
struct StopOnDrop {
    recv: StreamRecv,
    finished: bool,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !self.finished {
            self.recv.stop(codes::STREAM_CANCELLED);
        }
    }
}

/// The payload of a request stream as an `http_body::Body`: each chunk the transport hands
/// out becomes one data frame as soon as it arrives; the end of the stream (FIN,
/// END_STREAM) ends the body (SPEC.md §2.3), and a reset from the sidecar fails it, which
/// makes the upstream client abort the request instead of passing on a truncated body.
pub(crate) struct TunnelBody {
    /// A chunk read ahead by [`TunnelBody::peek_end`].
    first: Option<Bytes>,
    /// `None` once the stream has ended.
    chunks: Option<BoxStream<'static, Result<Bytes, RecvError>>>,
}

impl std::fmt::Debug for TunnelBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelBody")
            .field("first", &self.first.as_ref().map(Bytes::len))
            .field("ended", &self.chunks.is_none())
            .finish()
    }
}

impl TunnelBody {
    /// The rest of `recv`, starting right after the request envelope.
    pub(crate) fn new(recv: StreamRecv) -> Self {
        Self {
            first: None,
            chunks: Some(chunks(recv).boxed()),
        }
    }

    /// Reads ahead until the first chunk or the end of the body, so that an empty body is
    /// known to be empty before the request goes upstream: HTTP/1.1 then sends no body
    /// (rather than an empty chunked one) for a bodiless `GET`. Bounded by the caller.
    pub(crate) async fn peek_end(&mut self) {
        if self.first.is_some() {
            return;
        }
        if let Some(chunks) = &mut self.chunks {
            match chunks.next().await {
                Some(Ok(bytes)) => self.first = Some(bytes),
                // The error comes back on the next poll: keep the stream to yield it.
                Some(Err(e)) => {
                    self.chunks = Some(stream::once(async move { Err(e) }).boxed());
                }
                None => self.chunks = None,
            }
        }
    }

    /// Like [`TunnelBody::peek_end`], without waiting: uses what has already arrived.
    pub(crate) fn peek_end_now(&mut self) {
        // `peek_end` only holds state in `self` between polls, so dropping it is safe.
        let _ = self.peek_end().now_or_never();
    }
}

fn chunks(recv: StreamRecv) -> impl Stream<Item = Result<Bytes, RecvError>> + Send + 'static {
    let state = Some(StopOnDrop {
        recv,
        finished: false,
    });
    stream::unfold(state, |state| async move {
        let mut s = state?;
        match s.recv.read_chunk(MAX_CHUNK).await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(s))),
            Ok(None) => {
                s.finished = true;
                None
            }
            Err(e) => {
                // Reset by the sidecar or connection lost: nothing to stop any more.
                s.finished = true;
                Some((Err(e), None))
            }
        }
    })
}

impl Body for TunnelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        let Some(chunks) = self.chunks.as_mut() else {
            return Poll::Ready(None);
        };
        match chunks.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Poll::Ready(Some(Err(e))) => {
                self.chunks = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                self.chunks = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.chunks.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

/// The body of a request forwarded upstream.
pub(crate) type RequestBody = SignalEnd<Inner>;

/// Where a forwarded request's body comes from.
#[derive(Debug)]
pub(crate) enum Inner {
    /// The payload of a sidecar's tunnel stream.
    Tunnel(TunnelBody),
    /// A dev-mode request's body.
    Dev(hyper::body::Incoming),
    /// No body: a retried request that had none.
    Empty,
}

impl Body for Inner {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Tunnel(b) => Pin::new(b).poll_frame(cx),
            Self::Dev(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Tunnel(b) => b.is_end_stream(),
            Self::Dev(b) => b.is_end_stream(),
            Self::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Tunnel(b) => b.size_hint(),
            Self::Dev(b) => b.size_hint(),
            Self::Empty => SizeHint::with_exact(0),
        }
    }
}

impl RequestBody {
    pub(crate) fn tunnel(body: TunnelBody) -> Self {
        SignalEnd::new(Inner::Tunnel(body))
    }

    pub(crate) fn dev(body: hyper::body::Incoming) -> Self {
        SignalEnd::new(Inner::Dev(body))
    }

    pub(crate) fn empty() -> Self {
        SignalEnd::new(Inner::Empty)
    }

    /// True if nothing of the body is left to send (so the request can be sent again).
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Something to do once, when a body has ended: read whole, failed, or known to be empty
/// (such a body may never be polled at all).
pub(crate) trait AtEnd {
    fn at_end(self);
}

/// The request side: tells the forwarder the body has been sent whole, the moment from
/// which an upstream owes its response head.
impl AtEnd for oneshot::Sender<()> {
    fn at_end(self) {
        let _ = self.send(());
    }
}

/// The response side: gives back the upstream's lease, so that a streamed response (SSE, a
/// long download) counts as a request in flight on that upstream until it ends, which is
/// what least-request balancing needs to see.
impl AtEnd for Lease {
    fn at_end(self) {}
}

/// A body that runs an [`AtEnd`] hook when it ends (or drops it unrun when dropped early:
/// a dropped sender also wakes its receiver, a dropped lease is given back).
#[derive(Debug)]
pub(crate) struct OnEnd<B, T> {
    inner: B,
    hook: Option<T>,
}

/// A request body that signals its end.
pub(crate) type SignalEnd<B> = OnEnd<B, oneshot::Sender<()>>;

/// A response body that holds its upstream's lease until it ends.
pub(crate) type Leased<B> = OnEnd<B, Lease>;

impl<B: Body + Unpin, T: AtEnd> OnEnd<B, T> {
    fn fire(&mut self) {
        if let Some(hook) = self.hook.take() {
            hook.at_end();
        }
    }

    fn with_hook(inner: B, hook: Option<T>) -> Self {
        let mut body = Self { inner, hook };
        if body.inner.is_end_stream() {
            body.fire();
        }
        body
    }
}

impl<B: Body + Unpin> SignalEnd<B> {
    fn new(inner: B) -> Self {
        Self::with_hook(inner, None)
    }

    /// Resolves once the whole body has been handed out (or it failed, or the client
    /// dropped it).
    pub(crate) fn end_signal(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.hook = Some(tx);
        if self.inner.is_end_stream() {
            self.fire();
        }
        rx
    }
}

impl<B: Body + Unpin> Leased<B> {
    pub(crate) fn new(inner: B, lease: Lease) -> Self {
        Self::with_hook(inner, Some(lease))
    }
}

impl<B: Body + Unpin, T: AtEnd + Unpin> Body for OnEnd<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            // Sent whole, or never will be: either way the hook runs.
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.fire(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.fire(),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of an upstream's response, whichever protocol carried it.
pub(crate) type ResponseBody = Leased<UpstreamBody>;

/// A response body as the upstream client hands it out.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// HTTP/1.1 or HTTP/2 (hyper).
    Hyper(hyper::body::Incoming),
    /// HTTP/3: the response stream, which also finishes sending the request body (boxed:
    /// it holds both halves of a QUIC stream).
    H3(Box<super::h3::H3Body>),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::H3(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Hyper(b) => b.is_end_stream(),
            Self::H3(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Hyper(b) => b.size_hint(),
            Self::H3(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty, Full, StreamBody};

    use super::*;

    #[tokio::test]
    async fn signals_the_end_of_a_body_once_it_has_been_read() {
        let frames = stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"a")))]);
        let mut body = SignalEnd::new(StreamBody::new(frames));
        let mut ended = body.end_signal();
        assert!(ended.try_recv().is_err(), "not yet");
        assert!(body.frame().await.is_some());
        assert!(body.frame().await.is_none());
        assert_eq!(ended.try_recv(), Ok(()));
    }

    #[tokio::test]
    async fn known_ends_signal_without_an_extra_poll() {
        let mut empty = SignalEnd::new(Empty::<Bytes>::new().map_err(BoxError::from));
        assert_eq!(empty.end_signal().try_recv(), Ok(()));

        let mut full = SignalEnd::new(Full::new(Bytes::from_static(b"x")).map_err(BoxError::from));
        let mut ended = full.end_signal();
        assert!(full.frame().await.is_some());
        assert_eq!(ended.try_recv(), Ok(()));
    }

    #[tokio::test]
    async fn a_leased_body_holds_its_upstream_until_it_ends() {
        use std::time::Instant;

        use crate::config::{Balance, BreakerConfig};
        use crate::forward::balance::Balancer;

        let balancer = Balancer::new(
            "svc",
            ["http://a:1"],
            Balance::LeastRequest,
            BreakerConfig::default(),
            1024,
        );
        let now = Instant::now();
        let outstanding = || balancer.status(now)[0].outstanding;
        let frames = stream::iter([
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ]);
        let mut body = Leased::new(StreamBody::new(frames), balancer.pick(now).unwrap());
        assert!(body.frame().await.is_some());
        assert_eq!(outstanding(), 1, "still streaming");
        assert!(body.frame().await.is_some());
        assert!(body.frame().await.is_none());
        assert_eq!(
            outstanding(),
            0,
            "released at the end, before the body is dropped"
        );
        drop(body);

        let empty = Leased::new(Empty::<Bytes>::new(), balancer.pick(now).unwrap());
        assert_eq!(outstanding(), 0, "an empty body is over at once");
        drop(empty);

        let frames = stream::iter([Err::<Frame<Bytes>, BoxError>("reset".into())]);
        let mut failed = Leased::new(StreamBody::new(frames), balancer.pick(now).unwrap());
        assert!(failed.frame().await.unwrap().is_err());
        assert_eq!(outstanding(), 0);
        let abandoned = Leased::new(
            Full::new(Bytes::from_static(b"x")),
            balancer.pick(now).unwrap(),
        );
        assert_eq!(outstanding(), 1);
        drop(abandoned);
        assert_eq!(outstanding(), 0);
        drop(failed);
    }

    #[tokio::test]
    async fn a_failed_body_also_starts_the_clock() {
        let frames = stream::iter([Err::<Frame<Bytes>, BoxError>("reset".into())]);
        let mut body = SignalEnd::new(StreamBody::new(frames));
        let mut ended = body.end_signal();
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(ended.try_recv(), Ok(()));
    }
}
