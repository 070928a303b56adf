//! A minimal A2A agent for the tests (A2A JSON-RPC binding, `message/send` and
//! `message/stream`, as in A2A 0.3 §7.1–§7.2): it answers with the caller's verified
//! identity, and streams its status updates as server-sent events one at a time, each only
//! when the test releases it, so a test can prove the stream is not buffered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

type Body = BoxBody<Bytes, Infallible>;

/// One request as the agent received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub identity: Option<String>,
    pub body: Bytes,
}

/// The test's handle on the agent.
pub struct A2aAgent {
    pub addr: SocketAddr,
    /// Releases the next streamed event.
    pub release: mpsc::Sender<()>,
    pub received: mpsc::Receiver<Received>,
}

struct Shared {
    release: Mutex<Option<mpsc::Receiver<()>>>,
    received: mpsc::Sender<Received>,
}

/// Number of events `message/stream` sends (the last one `final: true`).
pub const STREAM_EVENTS: usize = 3;

/// Serves on `listener` (the caller binds it, e.g. inside a network namespace) on the
/// current runtime.
pub fn serve(listener: tokio::net::TcpListener) -> A2aAgent {
    let addr = listener.local_addr().unwrap();
    let (release_tx, release_rx) = mpsc::channel(STREAM_EVENTS);
    let (received_tx, received_rx) = mpsc::channel(64);
    let shared = Arc::new(Shared {
        release: Mutex::new(Some(release_rx)),
        received: received_tx,
    });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    A2aAgent {
        addr,
        release: release_tx,
        received: received_rx,
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let identity = req
        .headers()
        .get("x-aimux-identity")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let _ = shared
        .received
        .send(Received {
            identity: identity.clone(),
            body: body.clone(),
        })
        .await;
    let call: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let id = call["id"].clone();
    let caller = identity.unwrap_or_else(|| "nobody".into());
    match call["method"].as_str() {
        Some("message/stream") => Ok(stream(&shared, id)),
        _ => {
            let text = call["params"]["message"]["parts"][0]["text"]
                .as_str()
                .unwrap_or("");
            let reply = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "kind": "message",
                    "role": "agent",
                    "messageId": "reply-1",
                    "parts": [{"kind": "text", "text": format!("{caller} said: {text}")}],
                }
            });
            let mut response = Response::new(Full::new(Bytes::from(reply.to_string())).boxed());
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            Ok(response)
        }
    }
}

/// `message/stream`: task status updates as SSE events, each sent when released.
fn stream(shared: &Shared, id: serde_json::Value) -> Response<Body> {
    let release = shared
        .release
        .lock()
        .unwrap()
        .take()
        .expect("one stream per agent");
    let events = futures_util::stream::unfold((release, 0usize), move |(mut release, n)| {
        let id = id.clone();
        async move {
            if n == STREAM_EVENTS {
                return None;
            }
            release.recv().await?;
            let last = n + 1 == STREAM_EVENTS;
            let event = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "kind": "status-update",
                    "taskId": "task-1",
                    "contextId": "ctx-1",
                    "status": {"state": if last { "completed" } else { "working" }},
                    "final": last,
                    "metadata": {"n": n},
                }
            });
            let frame = Frame::data(Bytes::from(format!("data: {event}\n\n")));
            Some((Ok::<_, Infallible>(frame), (release, n + 1)))
        }
    });
    let mut response = Response::new(StreamBody::new(events).boxed());
    response
        .headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    response
}
