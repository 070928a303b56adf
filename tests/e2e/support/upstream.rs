//! A real HTTP/1.1 upstream for end-to-end tests (hyper, on 127.0.0.1:0).
//!
//! - `POST /sink`: reads the body as it streams, answers `{len} {sha256}` and echoes the
//!   `x-aimux-identity` header it received.
//! - `GET /source?len=N`: streams N deterministic bytes (`pattern(N)`) in 64 KiB chunks.
//! - `GET /sse`: an event stream whose pacing the test controls: event `i` is written only
//!   after the test calls `SseGate::release`, and `SseGate::written` reports each write.
//! - anything else: echoes the request body back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, hyper::Error>;

const CHUNK: usize = 64 * 1024;

/// `len` deterministic bytes: the same on both sides of a test, cheap to produce.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The test's side of `/sse`: release the next event, learn when it was written.
pub struct SseGate {
    release: mpsc::Sender<()>,
    pub written: mpsc::Receiver<usize>,
}

impl SseGate {
    pub async fn release(&self) {
        self.release.send(()).await.unwrap();
    }
}

struct Shared {
    sse: Mutex<Option<(mpsc::Receiver<()>, mpsc::Sender<usize>)>>,
}

/// Starts the upstream on the current tokio runtime.
pub async fn start() -> (SocketAddr, SseGate) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release_tx, release_rx) = mpsc::channel(1);
    let (written_tx, written_rx) = mpsc::channel(16);
    let shared = Arc::new(Shared {
        sse: Mutex::new(Some((release_rx, written_tx))),
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (
        addr,
        SseGate {
            release: release_tx,
            written: written_rx,
        },
    )
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let identity = req.headers().get("x-aimux-identity").cloned();
    let path = req.uri().path().to_owned();
    let mut response = match path.as_str() {
        "/sink" => sink(req.into_body()).await,
        "/source" => source(req.uri().query().unwrap_or_default()),
        "/sse" => sse(&shared),
        _ => Response::new(req.into_body().boxed()),
    };
    if let Some(identity) = identity {
        response.headers_mut().insert("x-aimux-identity", identity);
    }
    Ok(response)
}

async fn sink(mut body: Incoming) -> Response<Body> {
    let mut hasher = Sha256::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    len += data.len();
                    hasher.update(data);
                }
            }
            Err(e) => return full(format!("body error: {e}")),
        }
    }
    full(format!("{len} {}", hex::encode(hasher.finalize())))
}

fn source(query: &str) -> Response<Body> {
    let len: usize = query
        .strip_prefix("len=")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let data = Bytes::from(pattern(len));
    let chunks = (0..len.div_ceil(CHUNK)).map(move |i| {
        Ok::<_, hyper::Error>(Frame::data(
            data.slice(i * CHUNK..((i + 1) * CHUNK).min(len)),
        ))
    });
    Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(
        chunks,
    ))))
}

fn sse(shared: &Shared) -> Response<Body> {
    let Some((release, written)) = shared.sse.lock().unwrap().take() else {
        return full("the SSE stream can be opened once per test".into());
    };
    let events = futures_util::stream::unfold(
        (release, written, 0usize),
        |(mut release, written, i)| async move {
            release.recv().await?;
            let event = Bytes::from(format!("id: {i}\ndata: event {i}\n\n"));
            let _ = written.send(i).await;
            Some((event, (release, written, i + 1)))
        },
    );
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(
        events.map(|e| Ok(Frame::data(e))),
    )));
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    response
}

fn full(text: String) -> Response<Body> {
    Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    )
}
