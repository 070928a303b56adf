//! The bounded look-ahead: the first bytes of an agent's request body, read before the stream
//! is opened so the sniffer (`sniff/`) can classify the request, then sent first, unchanged,
//! ahead of the rest of the body.
//!
//! How long it waits (see `TunnelSettings::sniff_limit` and `sniff_wait`):
//! - a bodyless request (GET, `Content-Length: 0`): not at all;
//! - a body the sniffer would not parse (compressed): not at all;
//! - a declared `Content-Length`: for `min(length, limit)` bytes, unless the body turns out
//!   not to start like JSON (then there is nothing to sniff in it);
//! - no declared length (chunked): until the first JSON value is complete, the body ends, the
//!   limit is reached, or the body turns out not to be JSON;
//! - in every case at most `wait` in all: an agent that streams an upload and waits for an
//!   answer before sending more must not hang on the look-ahead.
//!
//! Memory: the chunks as hyper delivered them (no copy), at most `limit` plus the chunk that
//! crossed it. A contiguous copy is made only for sniffing a prefix that spans chunks.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::sniff::{Scan, ValueEnd};

/// The body bytes read ahead.
#[derive(Debug, Default)]
pub(crate) struct LookAhead {
    chunks: Vec<Bytes>,
    len: usize,
    ended: bool,
}

impl LookAhead {
    /// The body ended within the look-ahead: the chunks are all of it.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// True if the first `limit` bytes are the whole body.
    pub(crate) fn complete(&self, limit: usize) -> bool {
        self.ended && self.len <= limit
    }

    /// At most `limit` bytes from the start, in one slice (borrowed when one chunk holds
    /// them).
    pub(crate) fn prefix(&self, limit: usize) -> Cow<'_, [u8]> {
        match self.chunks.as_slice() {
            [] => Cow::Borrowed(&[]),
            [one] => Cow::Borrowed(one.get(..limit.min(one.len())).unwrap_or_default()),
            many => {
                let mut joined = Vec::with_capacity(limit.min(self.len));
                for chunk in many {
                    let room = limit.saturating_sub(joined.len());
                    if room == 0 {
                        break;
                    }
                    joined
                        .extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
                }
                Cow::Owned(joined)
            }
        }
    }

    /// `head` followed by every byte read, as one buffer: a request whose body ended within
    /// the look-ahead goes out in one write (and, if small, one packet).
    pub(crate) fn joined_after(&self, head: Bytes) -> Bytes {
        if self.chunks.is_empty() {
            return head;
        }
        let mut all = BytesMut::with_capacity(head.len().saturating_add(self.len));
        all.extend_from_slice(&head);
        for chunk in &self.chunks {
            all.extend_from_slice(chunk);
        }
        all.freeze()
    }

    /// The chunks, to be sent before the rest of the body.
    pub(crate) fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    fn push(&mut self, chunk: Bytes) {
        self.len = self.len.saturating_add(chunk.len());
        self.chunks.push(chunk);
    }
}

/// Reads ahead in `body` (see the module documentation). `readable`: false if the sniffer
/// would not parse the body anyway. An error is the agent's body failing (it disconnected,
/// or sent a malformed chunked encoding).
pub(crate) async fn read<B>(
    body: &mut B,
    limit: usize,
    wait: Duration,
    readable: bool,
) -> Result<LookAhead, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut ahead = LookAhead::default();
    if body.is_end_stream() {
        ahead.ended = true;
        return Ok(ahead);
    }
    if limit == 0 || !readable {
        return Ok(ahead);
    }
    let declared = body.size_hint().exact();
    let want = declared.map_or(limit, |n| {
        usize::try_from(n).map_or(limit, |n| n.min(limit))
    });
    let deadline = Instant::now() + wait;
    let mut scan = ValueEnd::default();
    while ahead.len < want {
        // A body that is already here (the usual case: a small request arrives with its
        // head) is taken without arming a timer.
        let next = match frame_now(body) {
            Some(ready) => Ok(ready),
            None => tokio::time::timeout_at(deadline, body.frame()).await,
        };
        let frame = match next {
            Err(_elapsed) => break,
            Ok(None) => {
                ahead.ended = true;
                break;
            }
            Ok(Some(Err(e))) => return Err(e),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers come last: the next poll ends the body.
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        if chunk.is_empty() {
            continue;
        }
        let scanned = scan.feed(&chunk);
        ahead.push(chunk);
        match scanned {
            Scan::NotJson => break,
            // A declared length's bytes are on their way; a stream of unknown length may
            // be waiting for our answer after its first message.
            Scan::End if declared.is_none() => break,
            Scan::End | Scan::More => {}
        }
    }
    if !ahead.ended {
        // A declared length says itself whether it is used up; a chunked body is asked.
        ahead.ended = body.is_end_stream() || (declared.is_none() && ended_now(body, &mut ahead)?);
    }
    Ok(ahead)
}

/// The body's next frame if it is ready now (`None` if it would have to wait).
#[allow(clippy::option_option)] // Some(None): ready, and the body has ended
fn frame_now<B>(body: &mut B) -> Option<Option<Result<http_body::Frame<Bytes>, B::Error>>>
where
    B: Body<Data = Bytes> + Unpin,
{
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(&mut *body).poll_frame(&mut cx) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
}

/// Polls the body once without waiting: a chunked body's last chunk usually arrives with
/// its data, and knowing that the body ended lets the whole request go out in one write.
fn ended_now<B>(body: &mut B, ahead: &mut LookAhead) -> Result<bool, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(&mut *body).poll_frame(&mut cx) {
        Poll::Ready(None) => Ok(true),
        Poll::Ready(Some(Err(e))) => Err(e),
        Poll::Ready(Some(Ok(frame))) => {
            if let Ok(chunk) = frame.into_data()
                && !chunk.is_empty()
            {
                ahead.push(chunk);
            }
            Ok(body.is_end_stream())
        }
        Poll::Pending => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body::{Frame, SizeHint};
    use tokio::sync::mpsc;

    use super::*;

    /// A body fed by the test: `Some(bytes)` is a chunk, dropping the sender ends it.
    struct Fed {
        rx: mpsc::UnboundedReceiver<Bytes>,
        declared: Option<u64>,
        sent: u64,
        done: bool,
    }

    fn fed(declared: Option<u64>) -> (mpsc::UnboundedSender<Bytes>, Fed) {
        let (tx, rx) = mpsc::unbounded_channel();
        let body = Fed {
            rx,
            declared,
            sent: 0,
            done: false,
        };
        (tx, body)
    }

    impl Body for Fed {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(b)) => {
                    self.sent += b.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(b))))
                }
                Poll::Ready(None) => {
                    self.done = true;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            }
        }
        fn is_end_stream(&self) -> bool {
            self.done || self.declared.is_some_and(|d| d == self.sent)
        }
        fn size_hint(&self) -> SizeHint {
            self.declared
                .map_or_else(SizeHint::new, |d| SizeHint::with_exact(d - self.sent))
        }
    }

    const WAIT: Duration = Duration::from_millis(50);

    #[tokio::test(start_paused = true)]
    async fn a_declared_length_is_read_whole_and_joined_after_the_envelope() {
        let (tx, mut body) = fed(Some(10));
        tx.send(Bytes::from_static(b"{\"a\":")).unwrap();
        tx.send(Bytes::from_static(b"\"b\"} ")).unwrap();
        let ahead = read(&mut body, 1024, WAIT, true).await.unwrap();
        assert!(ahead.ended() && ahead.complete(1024));
        assert_eq!(&*ahead.prefix(1024), b"{\"a\":\"b\"} ");
        assert_eq!(&*ahead.prefix(3), b"{\"a");
        assert!(!ahead.complete(3));
        assert_eq!(
            &ahead.joined_after(Bytes::from_static(b"ENV"))[..],
            b"ENV{\"a\":\"b\"} "
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_body_is_read_up_to_the_limit_and_the_rest_left() {
        let (tx, mut body) = fed(Some(100));
        for _ in 0..10 {
            tx.send(Bytes::from_static(b"[[[[[[[[[[")).unwrap();
        }
        let ahead = read(&mut body, 25, WAIT, true).await.unwrap();
        assert!(!ahead.ended());
        assert_eq!(ahead.prefix(25).len(), 25);
        assert_eq!(ahead.into_chunks().len(), 3);
        assert_eq!(body.sent, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunked_body_stops_at_its_first_value_or_the_deadline() {
        let (tx, mut body) = fed(None);
        tx.send(Bytes::from_static(b"{\"method\":")).unwrap();
        tx.send(Bytes::from_static(b"\"ping\"}")).unwrap();
        tx.send(Bytes::from_static(b"{\"next\":1}")).unwrap();
        let start = Instant::now();
        let ahead = read(&mut body, 1024, WAIT, true).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The next chunk was already there and is taken along, but the body goes on.
        assert!(!ahead.ended());
        assert_eq!(&*ahead.prefix(1024), b"{\"method\":\"ping\"}{\"next\":1}");

        // The body ends right after its value: known at once.
        let (tx, mut body) = fed(None);
        tx.send(Bytes::from_static(b"{}")).unwrap();
        drop(tx);
        assert!(read(&mut body, 1024, WAIT, true).await.unwrap().ended());

        // A stalled upload: the deadline ends the wait.
        let (tx, mut body) = fed(None);
        tx.send(Bytes::from_static(b"{\"method\":")).unwrap();
        let start = Instant::now();
        let ahead = read(&mut body, 1024, WAIT, true).await.unwrap();
        assert_eq!(start.elapsed(), WAIT);
        assert!(!ahead.ended() && !ahead.complete(1024));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_that_are_not_json_or_not_readable_are_not_waited_for() {
        let (tx, mut body) = fed(Some(1000));
        tx.send(Bytes::from_static(b"PK\x03\x04")).unwrap();
        let ahead = read(&mut body, 1024, WAIT, true).await.unwrap();
        assert_eq!(ahead.prefix(1024).len(), 4);
        assert!(!ahead.ended());

        let (_tx, mut body) = fed(Some(1000));
        let ahead = read(&mut body, 1024, WAIT, false).await.unwrap();
        assert_eq!(ahead.into_chunks().len(), 0);
        let (_tx, mut body) = fed(Some(1000));
        let ahead = read(&mut body, 0, WAIT, true).await.unwrap();
        assert!(ahead.prefix(0).is_empty() && !ahead.ended());

        let (_tx, mut body) = fed(Some(0));
        let ahead = read(&mut body, 1024, WAIT, true).await.unwrap();
        assert!(ahead.ended() && ahead.complete(0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_declared_length_waits_past_the_end_of_the_value_but_not_past_the_deadline() {
        let (tx, mut body) = fed(Some(20));
        tx.send(Bytes::from_static(b"{}")).unwrap();
        let start = Instant::now();
        let ahead = read(&mut body, 1024, WAIT, true).await.unwrap();
        assert_eq!(start.elapsed(), WAIT);
        assert_eq!(ahead.prefix(1024).len(), 2);
        drop(tx);
    }
}
