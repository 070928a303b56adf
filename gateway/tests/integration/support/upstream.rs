//! A real HTTP/1.1 upstream (hyper on 127.0.0.1:0) whose behaviour depends on the last
//! path segment, so one server can stand behind several services (told apart by their
//! base paths, which it reports back):
//!
//! - `…/sink`: reads the body as it streams and answers `{len} {sha256}`;
//! - `…/source?len=N`: streams N deterministic bytes in 64 KiB chunks;
//! - `…/sse`: an event stream whose events the test releases one at a time;
//! - `…/hang`: never answers;
//! - `…/fail`: sends a first chunk, then breaks the connection mid-body when the test
//!   says so;
//! - anything else: echoes the request body back as it arrives.
//!
//! Every answer reports what the upstream saw in `x-seen-*` headers: the path, `Host`,
//! every `x-aimux-identity` value, `traceparent`, and two hop-by-hop probes.

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

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

const CHUNK: usize = 64 * 1024;

/// `len` deterministic bytes, cheap to produce on both sides.
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

/// The test's handle on the upstream.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Each value sent becomes one SSE event written by `…/sse` (one request at a time).
    pub sse_events: mpsc::Sender<Bytes>,
    /// Breaks the pending `…/fail` response.
    pub fail_now: mpsc::Sender<()>,
}

struct Shared {
    sse: Mutex<Option<mpsc::Receiver<Bytes>>>,
    fail: Mutex<Option<mpsc::Receiver<()>>>,
}

/// Starts the upstream on the current runtime; it lives as long as the runtime.
pub async fn start() -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    let (fail_tx, fail_rx) = mpsc::channel(1);
    let shared = Arc::new(Shared {
        sse: Mutex::new(Some(rx)),
        fail: Mutex::new(Some(fail_rx)),
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
    Upstream {
        addr,
        sse_events: tx,
        fail_now: fail_tx,
    }
}

fn seen(req: &Request<Incoming>) -> Vec<(&'static str, String)> {
    let all = |name: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        ("x-seen-path", req.uri().to_string()),
        ("x-seen-host", all("host")),
        ("x-seen-identity", all("x-aimux-identity")),
        ("x-seen-traceparent", all("traceparent")),
        ("x-seen-private", all("x-private")),
        ("x-seen-keep-alive", all("keep-alive")),
    ]
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let seen = seen(&req);
    let last = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    let body: Body = match last.as_str() {
        "sink" => {
            let mut body = req.into_body();
            let (mut len, mut hash) = (0usize, Sha256::new());
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    len += data.len();
                    hash.update(&data);
                }
            }
            let text = format!("{len} {}", hex::encode(hash.finalize()));
            Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed()
        }
        "source" => {
            let len: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("len="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let data = Bytes::from(pattern(len));
            let chunks = (0..len.div_ceil(CHUNK)).map(move |i| {
                let end = ((i + 1) * CHUNK).min(len);
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(
                    data.slice(i * CHUNK..end),
                ))
            });
            BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)))
        }
        "sse" => {
            let rx = shared
                .sse
                .lock()
                .unwrap()
                .take()
                .expect("one SSE request at a time");
            let events = tokio_stream_from(rx)
                .map(|data| Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(data)));
            BodyExt::boxed(StreamBody::new(events))
        }
        "hang" => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        "fail" => {
            let first = futures_util::stream::once(async {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Frame::data(Bytes::from_static(
                    b"partial",
                )))
            });
            let mut gate = shared
                .fail
                .lock()
                .unwrap()
                .take()
                .expect("one /fail at a time");
            let broken = futures_util::stream::once(async move {
                gate.recv().await;
                Err::<Frame<Bytes>, _>("upstream broke down".into())
            });
            BodyExt::boxed(StreamBody::new(first.chain(broken)))
        }
        _ => req
            .into_body()
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .boxed(),
    };
    let mut response = Response::new(body);
    for (name, value) in seen {
        if let Ok(v) = value.parse() {
            response.headers_mut().insert(name, v);
        }
    }
    if last == "sse" {
        response
            .headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
    }
    Ok(response)
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
