//! HTTP trailers through the gateway (SPEC.md §5.9, §6.3): a request envelope with
//! `te-trailers` makes the gateway send `te: trailers` upstream and answer with a framed
//! payload whose last frame holds the upstream's trailers; without it nothing changes.
//! Real upstreams: a hyper HTTP/2 server (h2c, prior knowledge) answering like a gRPC
//! server (`grpc-status`, `grpc-message` as trailers) and a hyper HTTP/1.1 server sending a
//! chunked trailer section. Every test runs over both tunnel transports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;

use aimux_gateway::UpstreamProtocol;
use aimux_wire::{Header, Limits, Outcome, PayloadDecoder, PayloadFrame};
use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, HeaderValue};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::upstream::{self, pattern};
use support::{Mesh, Reply, Running, STEP, Transport, config, connect, exchange, over_both};

over_both!(
    an_h2c_upstreams_trailers_reach_a_requester_that_asked_for_them,
    without_te_trailers_the_payload_is_raw_and_trailers_are_dropped,
    an_http1_upstreams_chunked_trailers_are_carried_too,
    a_framed_answer_without_trailers_is_only_data,
);

type UpstreamBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A gRPC-like answer: the request body echoed back, then trailers `grpc-status: 0` and
/// `grpc-message: ok`; `x-seen-te` and `x-seen-connection` report what the upstream got.
async fn answer(req: Request<Incoming>) -> Result<Response<UpstreamBody>, Infallible> {
    let seen = |name: &str| {
        let values: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        HeaderValue::from_str(&values.join(", ")).unwrap()
    };
    let te = seen("te");
    let connection = seen("connection");
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
    // Two data frames, so the gateway writes more than one DATA frame.
    let half = body.len() / 2;
    let frames = vec![
        Ok(Frame::data(body.slice(..half))),
        Ok(Frame::data(body.slice(half..))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut resp = Response::new(StreamBody::new(stream::iter(frames)));
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    // HTTP/1.1 servers send only the trailer fields announced here (RFC 9110 §6.6.2).
    h.insert(
        "trailer",
        HeaderValue::from_static("grpc-status, grpc-message"),
    );
    h.insert("x-seen-te", te);
    h.insert("x-seen-connection", connection);
    Ok(resp)
}

/// Starts an upstream speaking HTTP/2 with prior knowledge (`h2c`) or HTTP/1.1.
async fn trailer_server(h2: bool) -> SocketAddr {
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

/// A gateway with services `grpc` (h2c) and `chunked` (HTTP/1.1) on the trailer servers.
async fn start() -> (Mesh, Running) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    let mut grpc = support::service("grpc", format!("http://{}", trailer_server(true).await));
    grpc.protocol = UpstreamProtocol::H2c;
    cfg.policy.services.push(grpc);
    let chunked = support::service("chunked", format!("http://{}", trailer_server(false).await));
    cfg.policy.services.push(chunked);
    let gw = Running::start(cfg).await;
    (mesh, gw)
}

/// Decodes a framed payload (pushed in the pieces it arrived in would be the same; the
/// proptests of aimux-wire check that): the body and the trailers.
fn decode(reply: &Reply) -> (Vec<u8>, Option<Vec<Header>>) {
    let mut d = PayloadDecoder::new(&Limits::default());
    d.push(Bytes::from(reply.body.clone()));
    let mut body = Vec::new();
    let mut trailers = None;
    while let Some(frame) = d.next_frame().unwrap() {
        match frame {
            PayloadFrame::Data(b) => body.extend_from_slice(&b),
            PayloadFrame::Trailers(t) => trailers = Some(t),
        }
    }
    d.finish().unwrap();
    (body, trailers)
}

fn grpc_trailers() -> Vec<Header> {
    vec![
        Header::new("grpc-status", "0"),
        Header::new("grpc-message", "ok"),
    ]
}

fn trailers_request(mesh: &Mesh, service: &str) -> aimux_wire::RequestEnvelope {
    let mut env = support::request(&mesh.alice, service, "POST", "/helloworld.Greeter/SayHello");
    env.te_trailers = true;
    env
}

async fn an_h2c_upstreams_trailers_reach_a_requester_that_asked_for_them(t: Transport) {
    let (mesh, gw) = start().await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    let env = trailers_request(&mesh, "grpc");
    for body in [
        Bytes::from_static(b"\x00\x00\x00\x00\x07\x0a\x05world"),
        // Big enough for DATA frames written as a header and the bytes apart.
        Bytes::from(pattern(300 * 1024 + 5)),
    ] {
        let reply = tokio::time::timeout(STEP, exchange(&conn, &env, body.clone()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply.envelope.outcome, Outcome::Forwarded, "{reply:?}");
        assert!(reply.envelope.framed_payload, "a framed answer");
        assert!(reply.end.is_ok());
        assert_eq!(reply.header("x-seen-te"), "trailers");
        // HTTP/2 has no Connection field (RFC 9113 §8.2.2).
        assert_eq!(reply.header("x-seen-connection"), "");
        let (got, trailers) = decode(&reply);
        assert_eq!(got, body, "the body, byte for byte");
        assert_eq!(trailers, Some(grpc_trailers()));
    }
    gw.stop().await.unwrap();
}

async fn without_te_trailers_the_payload_is_raw_and_trailers_are_dropped(t: Transport) {
    let (mesh, gw) = start().await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    for service in ["grpc", "chunked"] {
        let env = support::request(&mesh.alice, service, "POST", "/x");
        let reply = exchange(&conn, &env, Bytes::from_static(b"plain body"))
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "{reply:?}");
        assert!(!reply.envelope.framed_payload);
        assert_eq!(reply.body, b"plain body", "raw bytes, as before");
        assert_eq!(reply.header("x-seen-te"), "", "no TE upstream");
        assert!(reply.end.is_ok());
    }
    gw.stop().await.unwrap();
}

async fn an_http1_upstreams_chunked_trailers_are_carried_too(t: Transport) {
    let (mesh, gw) = start().await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    let env = trailers_request(&mesh, "chunked");
    let reply = exchange(&conn, &env, Bytes::from_static(b"over HTTP/1.1"))
        .await
        .unwrap();
    assert!(reply.envelope.framed_payload, "{reply:?}");
    assert_eq!(reply.header("x-seen-te"), "trailers");
    // RFC 9110 §10.1.4: an HTTP/1.1 sender of TE names it in Connection.
    assert_eq!(reply.header("x-seen-connection"), "te");
    let (got, trailers) = decode(&reply);
    assert_eq!(got, b"over HTTP/1.1");
    assert_eq!(trailers, Some(grpc_trailers()));
    gw.stop().await.unwrap();
}

async fn a_framed_answer_without_trailers_is_only_data(t: Transport) {
    let (mesh, gw) = start().await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    // The ordinary test upstream sends no trailers; the answer is framed all the same.
    let mut env = support::request(&mesh.alice, "echo", "PUT", "/mirror");
    env.te_trailers = true;
    let big = Bytes::from(pattern(2 * 1024 * 1024 + 1));
    let reply = tokio::time::timeout(STEP, exchange(&conn, &env, big.clone()))
        .await
        .unwrap()
        .unwrap();
    assert!(reply.envelope.framed_payload, "{:?}", reply.envelope);
    assert!(reply.end.is_ok());
    let (got, trailers) = decode(&reply);
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the body, byte for byte");
    assert_eq!(trailers, None);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn the_dev_listener_relays_trailers_to_a_client_that_asks() {
    let (_mesh, gw) = start().await;
    let dev = gw.dev.unwrap();
    for te in [true, false] {
        let tcp = tokio::net::TcpStream::connect(dev).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::post("/call")
            .header("host", "grpc")
            .header("x-aimux-identity", "alice");
        if te {
            req = req.header("te", "trailers");
        }
        let req = req
            .body(http_body_util::Full::new(Bytes::from_static(b"dev")))
            .unwrap();
        let resp = tokio::time::timeout(STEP, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200);
        let want_te = if te { "trailers" } else { "" };
        assert_eq!(resp.headers()["x-seen-te"], want_te);
        let collected = resp.into_body().collect().await.unwrap();
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .cloned();
        assert_eq!(
            status,
            te.then(|| HeaderValue::from_static("0")),
            "te: {te}"
        );
        assert_eq!(collected.to_bytes(), "dev");
    }
    gw.stop().await.unwrap();
}
