//! HTTP trailers at the sidecar (SPEC.md §5.9, §6.3): an agent's `TE: trailers` becomes the
//! envelope's `te-trailers`; a framed answer is decoded, its DATA frames become the body and
//! its TRAILERS frame the trailers the agent receives (natively over HTTP/2, as a chunked
//! trailer section over HTTP/1.1); a malformed or truncated framed payload aborts the
//! agent's response instead of ending it; an agent's request trailers are dropped and its
//! body arrives unframed. A test gateway writes the frames in 3-byte
//! pieces, so frame boundaries never line up with what the transport delivers. Every test
//! runs over both tunnels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use aimux_sidecar::Transport;
use aimux_wire::{
    DataFrames, Header, HttpResponseHead, Limits, ResponseEnvelope, codes, trailers_frame,
};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{GatewayStream, Handler, Harness, handler, over_both};
use tokio::sync::mpsc;

/// Every wait in these tests is bounded by this.
const STEP: Duration = Duration::from_secs(20);

over_both!(
    an_http2_agent_receives_the_trailers,
    an_http1_agent_receives_them_in_the_chunked_trailer_section,
    without_te_the_request_asks_for_nothing_and_gets_no_trailers,
    broken_framed_payloads_abort_the_response,
    an_agents_request_trailers_are_dropped_and_its_body_arrives_unframed,
);

const BODY: &[u8] = b"\x00\x00\x00\x00\x0d\x0a\x0bhello world";

fn grpc_trailers() -> Vec<Header> {
    vec![
        Header::new("grpc-status", "0"),
        Header::new("grpc-message", "ok"),
    ]
}

/// Answers by path. `/grpc`: framed (when asked for) with the body and gRPC trailers, or
/// raw; `/truncated`, `/malformed`, `/after-trailers`: broken framed payloads. Reports the
/// request's `te-trailers` in `x-te-trailers`, and sends how the sidecar stopped reading a
/// broken answer (the STOP_SENDING code, QUIC only) on `stops`.
fn gateway(stops: mpsc::UnboundedSender<Option<u64>>) -> Handler {
    handler(move |mut s: GatewayStream| {
        let stops = stops.clone();
        async move {
            let te = s.envelope.te_trailers;
            let path = s.envelope.http.as_ref().unwrap().path.clone();
            let received = s.read_body().await;
            if path == "/echo" {
                // The request payload exactly as it arrived, unframed.
                s.respond(&ResponseEnvelope::forwarded(HttpResponseHead::new(200)))
                    .await;
                s.write(received).await;
                s.finish();
                return;
            }
            let limits = Limits::default();
            let mut head = HttpResponseHead::new(200)
                .with_header("content-type", "application/grpc")
                .with_header("x-te-trailers", te.to_string());
            if te {
                // HTTP/1.1 servers send only the trailers announced (RFC 9110 §6.6.2).
                head = head.with_header("trailer", "grpc-status, grpc-message");
            }
            let mut envelope = ResponseEnvelope::forwarded(head);
            envelope.framed_payload = te;
            let mut payload = BytesMut::new();
            if te {
                for (header, data) in DataFrames::new(Bytes::from_static(BODY), &limits).unwrap() {
                    payload.extend_from_slice(header.as_slice());
                    payload.extend_from_slice(&data);
                }
            } else {
                payload.extend_from_slice(BODY);
            }
            match path.as_str() {
                "/grpc" if te => {
                    payload.extend_from_slice(&trailers_frame(&grpc_trailers(), &limits).unwrap());
                }
                "/truncated" => payload.extend_from_slice(b"\x00\x0aonly"),
                "/malformed" => payload.extend_from_slice(b"\x00\x80\x20\x00\x00"),
                "/after-trailers" => {
                    payload.extend_from_slice(&trailers_frame(&grpc_trailers(), &limits).unwrap());
                    payload.extend_from_slice(b"\x00\x01x");
                }
                _ => {}
            }
            s.respond(&envelope).await;
            for piece in payload.chunks(3) {
                s.write(Bytes::copy_from_slice(piece)).await;
            }
            if path != "/grpc" && path != "/truncated" && s.is_quic() {
                // QUIC tells why the sidecar stopped reading (HTTP/2 has no such code).
                let _ = stops.send(s.stopped().await);
            }
            s.finish();
        }
    })
}

async fn start(t: Transport) -> (Harness, mpsc::UnboundedReceiver<Option<u64>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Harness::start(t, gateway(tx)).await, rx)
}

/// Sends one request over a new HTTP/2 (prior knowledge) or HTTP/1.1 connection.
async fn call(h: &Harness, h2: bool, path: &str, te: bool) -> hyper::Response<Incoming> {
    try_call(h, h2, path, te).await.unwrap()
}

async fn try_call(
    h: &Harness,
    h2: bool,
    path: &str,
    te: bool,
) -> Result<hyper::Response<Incoming>, hyper::Error> {
    let tcp = tokio::net::TcpStream::connect(h.listener("tools"))
        .await
        .unwrap();
    let mut req = Request::post(format!("http://tools{path}"))
        .header("content-type", "application/grpc")
        .header("host", "tools");
    if te {
        req = req.header("te", "trailers");
    }
    let req = req
        .body(Full::new(Bytes::from_static(b"\x00\x00\x00\x00\x00")))
        .unwrap();
    if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await
    }
}

fn trailer(collected: &http_body_util::Collected<Bytes>, name: &str) -> Option<String> {
    collected
        .trailers()
        .and_then(|t| t.get(name))
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn an_http2_agent_receives_the_trailers(t: Transport) {
    let (h, _) = start(t).await;
    let resp = call(&h, true, "/grpc", true).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["x-te-trailers"],
        "true",
        "te-trailers was sent"
    );
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(trailer(&collected, "grpc-status").as_deref(), Some("0"));
    assert_eq!(trailer(&collected, "grpc-message").as_deref(), Some("ok"));
    assert_eq!(collected.to_bytes(), BODY, "the body, without the framing");
}

async fn an_http1_agent_receives_them_in_the_chunked_trailer_section(t: Transport) {
    let (h, _) = start(t).await;
    let resp = call(&h, false, "/grpc", true).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-te-trailers"], "true");
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let collected = resp.into_body().collect().await.unwrap();
    assert_eq!(trailer(&collected, "grpc-status").as_deref(), Some("0"));
    assert_eq!(trailer(&collected, "grpc-message").as_deref(), Some("ok"));
    assert_eq!(collected.to_bytes(), BODY);
}

async fn without_te_the_request_asks_for_nothing_and_gets_no_trailers(t: Transport) {
    let (h, _) = start(t).await;
    for h2 in [true, false] {
        let resp = call(&h, h2, "/grpc", false).await;
        assert_eq!(resp.headers()["x-te-trailers"], "false");
        let collected = resp.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none());
        assert_eq!(collected.to_bytes(), BODY, "raw bytes, as before");
    }
    // A bodiless request with TE asks too.
    let tcp = tokio::net::TcpStream::connect(h.listener("tools"))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://tools/grpc")
        .header("host", "tools")
        .header("te", "trailers")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["x-te-trailers"], "true");
}

async fn broken_framed_payloads_abort_the_response(t: Transport) {
    let (h, mut stops) = start(t).await;
    for path in ["/truncated", "/malformed", "/after-trailers"] {
        for h2 in [true, false] {
            // The whole answer arrives at once, so the agent may see the reset before the
            // head (HTTP/2 then drops the head it had not sent yet) or after it: either
            // way the response is aborted, never ended.
            let result = tokio::time::timeout(STEP, async {
                match try_call(&h, h2, path, true).await {
                    Ok(resp) => resp
                        .into_body()
                        .collect()
                        .await
                        .map(|c| (c.trailers().cloned(), c.to_bytes())),
                    Err(e) => Err(e),
                }
            })
            .await
            .expect("the agent's response ends or fails within the bound");
            assert!(
                result.is_err(),
                "{path} (h2 agent: {h2}): the response must be aborted, not ended: {result:?}"
            );
            if path != "/truncated" && t == Transport::Quic {
                let stopped = tokio::time::timeout(STEP, stops.recv()).await.unwrap();
                let code = u64::from(codes::STREAM_MALFORMED);
                assert_eq!(
                    stopped,
                    Some(Some(code)),
                    "{path} (h2 agent: {h2}): STOP_SENDING with MALFORMED"
                );
            }
        }
    }
}

/// Request payloads are never framed (SPEC.md §6.3): an agent's request trailers are dropped
/// (with a warning), and the body arrives as the bytes the agent sent, with no framing.
async fn an_agents_request_trailers_are_dropped_and_its_body_arrives_unframed(t: Transport) {
    let (h, _) = start(t).await;
    let tcp = tokio::net::TcpStream::connect(h.listener("tools"))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
    let frames: Vec<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(hyper::body::Frame::data(Bytes::from_static(b"first "))),
        Ok(hyper::body::Frame::data(Bytes::from_static(b"second"))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    let req = Request::post("http://tools/echo")
        .header("host", "tools")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap();
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let collected = tokio::time::timeout(STEP, resp.into_body().collect())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collected.to_bytes(), &b"first second"[..]);
}
