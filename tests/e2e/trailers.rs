//! HTTP trailers end to end, as a user runs it (SPEC.md §5.9, §6.3): `aimux gateway` and
//! `aimux sidecar` processes from one mesh file, certificates from `aimux certs`.
//!
//! - Service `grpc` is a real HTTP/2 server without TLS (h2c) that answers like a gRPC
//!   server: the body, then `grpc-status: 0` and `grpc-message: ok` as trailers. Alice's
//!   agent calls it through her sidecar as an HTTP/2 client with prior knowledge (as gRPC
//!   clients do, with `te: trailers`) and as an HTTP/1.1 client with `TE: trailers`, and gets
//!   the trailers: natively over HTTP/2, in the chunked trailer section over HTTP/1.1. Without
//!   `TE` the answer is the body alone and the upstream is not asked for trailers.
//! - Service `bob` is agent bob: the request is delivered over bob's sidecar connection, bob's
//!   sidecar asks bob (HTTP/1.1) for trailers and answers framed, and the gateway relays it.
//!
//! Alice's tunnel is QUIC in one test and HTTP/2 over TLS in the other.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Collected, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Pki, Proc, free_tcp, free_udp, wait_tcp};

const TRUST_DOMAIN: &str = "trailers.test";

type AnswerBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// The body echoed back in two pieces, then gRPC's trailers; `x-seen-te` reports the
/// request's `TE`.
async fn answer(req: Request<Incoming>) -> Result<hyper::Response<AnswerBody>, Infallible> {
    let te = req
        .headers()
        .get("te")
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
    let half = body.len() / 2;
    let frames = vec![
        Ok(Frame::data(body.slice(..half))),
        Ok(Frame::data(body.slice(half..))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = hyper::Response::new(StreamBody::new(futures_util::stream::iter(frames)));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    // An HTTP/1.1 server sends only announced trailer fields (RFC 9110 §6.6.2); so does the
    // sidecar's HTTP/1.1 listener, which relays this header.
    h.insert(
        "trailer",
        HeaderValue::from_static("grpc-status, grpc-message"),
    );
    h.insert("x-seen-te", te);
    Ok(resp)
}

/// Serves [`answer`] over HTTP/2 with prior knowledge (`h2`) or HTTP/1.1.
async fn server(h2: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let io = TokioIo::new(tcp);
                let service = hyper::service::service_fn(answer);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    addr
}

struct Mesh {
    _dir: tempfile::TempDir,
    _procs: Vec<Proc>,
    /// Alice's listener for service `grpc`.
    grpc: SocketAddr,
    /// Alice's listener for service `bob`.
    bob: SocketAddr,
}

/// Starts the gateway, alice's sidecar on `transport` and bob's sidecar (QUIC: deliveries
/// travel on streams the gateway opens).
async fn start(transport: &str) -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    Pki::new(dir.path(), TRUST_DOMAIN, &["alice", "bob"]);
    let (grpc_upstream, bob_agent) = (server(true).await, server(false).await);
    let (quic, h2, admin) = (free_udp(), free_tcp(), free_tcp());
    let (grpc, bob) = (free_tcp(), free_tcp());
    let config = dir.path().join("mesh.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mesh]
trust_domain = "{TRUST_DOMAIN}"
certs = "pki"

[gateway]
quic = "{quic}"
h2 = "{h2}"
admin = "{admin}"

[[agent]]
name = "alice"
transport = "{transport}"
listeners = [
  {{ listen = "{grpc}", service = "grpc" }},
  {{ listen = "{bob}", service = "bob" }},
]

[[agent]]
name = "bob"
inbound = {{ http = "{bob_agent}", allow = ["alice"] }}

[[service]]
name = "grpc"
upstreams = ["http://{grpc_upstream}"]
protocol = "h2c"

[[service]]
name = "bob"
agent = "bob"

[[access]]
from = ["alice"]
to = ["grpc", "bob"]
"#
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let gateway = Proc::spawn("gateway", &["gateway", "--config", c], dir.path());
    wait_tcp(admin, "the gateway");
    let procs = vec![
        gateway,
        Proc::spawn(
            "bob",
            &["sidecar", "--config", c, "--agent", "bob"],
            dir.path(),
        ),
        Proc::spawn(
            "alice",
            &["sidecar", "--config", c, "--agent", "alice"],
            dir.path(),
        ),
    ];
    for l in [grpc, bob] {
        wait_tcp(l, "alice's sidecar");
    }
    Mesh {
        _dir: dir,
        _procs: procs,
        grpc,
        bob,
    }
}

/// One gRPC-style call to `addr` on a new connection: HTTP/2 with prior knowledge (`h2`)
/// or HTTP/1.1, with `te: trailers` if `te`. Returns the status, the head and the whole
/// body with its trailers.
async fn call(
    addr: SocketAddr,
    h2: bool,
    te: bool,
    body: &'static [u8],
) -> Result<(StatusCode, HeaderMap, Collected<Bytes>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut req = Request::post(format!("http://{addr}/helloworld.Greeter/SayHello"))
        .header("content-type", "application/grpc");
    if te {
        req = req.header("te", "trailers");
    }
    let req = req.body(Full::new(Bytes::from_static(body))).unwrap();
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await
    }
    .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.map_err(|e| e.to_string())?;
    Ok((parts.status, parts.headers, collected))
}

/// Calls until the mesh answers 200 (the sidecars connect in the background).
async fn first_ok(
    addr: SocketAddr,
    h2: bool,
    te: bool,
    body: &'static [u8],
) -> (HeaderMap, Collected<Bytes>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = tokio::time::timeout(Duration::from_secs(20), call(addr, h2, te, body))
            .await
            .expect("a call finishes within the bound");
        match result {
            Ok((StatusCode::OK, head, collected)) => return (head, collected),
            other => {
                let other = other.map(|(s, _, c)| (s, c.to_bytes()));
                assert!(
                    Instant::now() < deadline,
                    "the mesh never answered: {other:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn trailer(collected: &Collected<Bytes>, name: &str) -> Option<String> {
    collected
        .trailers()
        .and_then(|t| t.get(name))
        .map(|v| v.to_str().unwrap().to_owned())
}

const MESSAGE: &[u8] = b"\x00\x00\x00\x00\x07\x0a\x05world";

async fn trailers_cross_the_mesh(transport: &str) {
    let mesh = start(transport).await;
    for (addr, what) in [(mesh.grpc, "an h2c upstream"), (mesh.bob, "agent bob")] {
        for h2 in [true, false] {
            let agent = if h2 { "HTTP/2" } else { "HTTP/1.1" };
            let (head, collected) = first_ok(addr, h2, true, MESSAGE).await;
            assert_eq!(
                head["x-seen-te"], "trailers",
                "{what}, {agent} agent: asked for trailers"
            );
            assert_eq!(
                trailer(&collected, "grpc-status").as_deref(),
                Some("0"),
                "{what}, {agent} agent: {:?}",
                collected.trailers()
            );
            assert_eq!(trailer(&collected, "grpc-message").as_deref(), Some("ok"));
            assert_eq!(
                collected.to_bytes(),
                MESSAGE,
                "{what}, {agent} agent: the body"
            );

            // Without TE: the body alone, and nobody asked for trailers.
            let (head, collected) = first_ok(addr, h2, false, MESSAGE).await;
            assert_eq!(head["x-seen-te"], "", "{what}, {agent} agent");
            assert!(collected.trailers().is_none(), "{what}, {agent} agent");
            assert_eq!(collected.to_bytes(), MESSAGE);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_cross_the_mesh_over_quic() {
    trailers_cross_the_mesh("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_cross_the_mesh_over_h2() {
    trailers_cross_the_mesh("h2").await;
}
