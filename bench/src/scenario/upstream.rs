//! The upstream every scenario talks to: a hyper HTTP/1.1 + HTTP/2 server on its own
//! runtime thread that answers each request with its body (a 1 KiB POST gets 1 KiB back),
//! and `GET /bulk?len=N` with N bytes streamed in 64 KiB chunks (the bulk transfer of the
//! WAN scenarios).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::Response;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::oneshot;

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start() -> std::io::Result<Upstream> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("bench-upstream".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        let stream = tokio::select! {
                            _ = &mut stopped => return,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                        };
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(respond);
                            let _ = auto::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })?;
        Ok(Upstream {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Largest bulk response, so a typo cannot ask for an endless stream.
const MAX_BULK: u64 = 1 << 34;
const CHUNK: usize = 64 * 1024;

async fn respond(req: hyper::Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/bulk" {
        let len = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("len="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            .min(MAX_BULK);
        let chunk = Bytes::from(vec![0u8; CHUNK]);
        let chunks = futures_util::stream::unfold(len, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(CHUNK as u64);
                Some((Ok(Frame::data(chunk.slice(..n as usize))), left - n))
            }
        });
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(chunks))));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(Response::new(BodyExt::boxed(Full::new(body))))
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
