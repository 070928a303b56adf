//! An HTTP/2 upstream without TLS (`protocol = "h2c"`, prior knowledge, RFC 9113 §3.3): a
//! real hyper HTTP/2 server behind the gateway, reached by HTTP/1.1 clients through the
//! dev-mode listener. Bodies arrive intact, the authority travels as `:authority`, and
//! concurrent requests share one upstream connection as streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_macros, unused_imports)] // the transport macro is for the tunnel tests
use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aimux_gateway::UpstreamProtocol;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{Mesh, Running, config, http_get, service, upstream};

/// An h2c server: answers with the request body, its HTTP version and its authority.
async fn h2c_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let version = format!("{:?}", req.version());
                        let authority = req
                            .uri()
                            .authority()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        let host = req.headers().get("host").is_some();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let mut resp = Response::new(Full::new(body));
                        let h = resp.headers_mut();
                        h.insert("x-seen-version", version.parse().unwrap());
                        h.insert("x-seen-authority", authority.parse().unwrap());
                        h.insert(
                            "x-seen-host-header",
                            if host { "yes" } else { "no" }.parse().unwrap(),
                        );
                        Ok::<_, Infallible>(resp)
                    });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, connections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_agent_reaches_an_h2c_upstream_over_one_connection() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let (h2, connections) = h2c_server().await;
    let mut cfg = config(&mesh, up.addr);
    let mut svc = service("h2", format!("http://{h2}"));
    svc.protocol = UpstreamProtocol::H2c;
    cfg.policy.services.push(svc);
    let gw = Running::start(cfg).await;
    let dev = gw.dev.unwrap();
    let headers = [("host", "h2"), ("x-aimux-identity", "alice")];

    let body = Bytes::from(vec![b'x'; 256 * 1024]);
    let (status, seen, echoed) = http_get(dev, "/upload", &headers, Some(body.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(seen["x-seen-version"], "HTTP/2.0");
    assert_eq!(seen["x-seen-authority"], h2.to_string().as_str());
    assert_eq!(seen["x-seen-host-header"], "no");
    assert_eq!(echoed, body, "the body crossed HTTP/1.1 → HTTP/2 intact");

    // Twenty at once: HTTP/2 multiplexes them on the connection already open.
    let mut calls = Vec::new();
    for i in 0..20 {
        calls.push(tokio::spawn(async move {
            let payload = Bytes::from(format!("request {i}"));
            let (status, _, echoed) = http_get(dev, "/", &headers, Some(payload.clone())).await;
            assert_eq!((status, echoed), (200, payload));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "one upstream connection, many streams"
    );
    gw.stop().await.unwrap();
}
