//! HTTP/3 upstreams (`protocol = "http3"`, RFC 9114): a real h3 server (h3 + h3-quinn)
//! behind the gateway, its certificate issued at test time by a CA given to the service as
//! its only trust anchor. Agents reach it over HTTP/1.1 (the dev-mode listener) and through
//! the QUIC tunnel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_macros, unused_imports)] // the transport macro is for the tunnel tests
use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aimux_gateway::{ServiceConfig, UpstreamProtocol};
use aimux_wire::{Outcome, codes};
use bytes::{Bytes, BytesMut};
use support::h3_server::{self, H3Upstream, TestCa};
use support::{
    Mesh, ReadErr, Running, STEP, Transport, config, connect, http_get, read_at_least,
    read_envelope, request, service, upstream,
};

/// An `http3` service `h3` on `server`, trusting `ca` only.
fn h3_service(server: SocketAddr, ca: &TestCa) -> ServiceConfig {
    let mut svc = service("h3", format!("https://{server}"));
    svc.protocol = UpstreamProtocol::Http3;
    svc.tls.roots = vec![ca.der()];
    svc
}

async fn h3_upstream(ca: &TestCa) -> H3Upstream {
    h3_server::start(&ca.server_cert(), "127.0.0.1:0".parse().unwrap()).await
}

/// A gateway with the default test services plus `svc`.
async fn gateway(mesh: &Mesh, svc: ServiceConfig) -> Running {
    let up = upstream::start().await;
    let mut cfg = config(mesh, up.addr);
    cfg.policy.services.push(svc);
    Running::start(cfg).await
}

const AS_ALICE: [(&str, &str); 2] = [("host", "h3"), ("x-aimux-identity", "alice")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_agent_reaches_an_http3_upstream_with_bodies_and_headers_intact() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let h3 = h3_upstream(&ca).await;
    let gw = gateway(&mesh, h3_service(h3.addr, &ca)).await;
    let dev = gw.dev.unwrap();

    let body = Bytes::from(support::upstream::pattern(256 * 1024));
    let mut headers = AS_ALICE.to_vec();
    headers.extend([("x-custom", "one"), ("x-custom", "two")]);
    let (status, seen, echoed) = http_get(dev, "/upload?x=1", &headers, Some(body.clone())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&echoed));
    assert_eq!(seen["x-seen-method"], "POST");
    assert_eq!(seen["x-seen-authority"], h3.addr.to_string().as_str());
    assert_eq!(seen["x-seen-path"], "/upload?x=1");
    assert_eq!(
        seen["x-seen-host-header"], "no",
        "Host is :authority in HTTP/3"
    );
    assert_eq!(seen["x-seen-identity"], "spiffe://aimux.test/agent/alice");
    assert_eq!(seen["x-seen-custom"], "one,two", "repeated fields in order");
    assert_eq!(seen["x-body-len"], "262144");
    let multi: Vec<_> = seen.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    assert_eq!(
        echoed, body,
        "the body crossed HTTP/1.1 → HTTP/3 → HTTP/1.1 intact"
    );

    // Echoed as it arrives: the response head comes first, and the rest of the upload goes
    // up while the response comes down.
    let (status, _, echoed) = http_get(dev, "/duplex", &AS_ALICE, Some(body.clone())).await;
    assert_eq!((status, echoed), (200, body));

    // A bodiless GET.
    let (status, seen, echoed) = http_get(dev, "/nothing", &AS_ALICE, None).await;
    assert_eq!((status, seen["x-body-len"].to_str().unwrap()), (200, "0"));
    assert!(echoed.is_empty());
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_quic_connection_closed_on_shutdown() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let mut h3 = h3_upstream(&ca).await;
    let gw = gateway(&mesh, h3_service(h3.addr, &ca)).await;
    let dev = gw.dev.unwrap();

    // Twenty at once, before any connection exists: one handshake, twenty streams.
    let mut calls = Vec::new();
    for i in 0..20 {
        calls.push(tokio::spawn(async move {
            let payload = Bytes::from(format!("request {i}"));
            let (status, _, echoed) = http_get(dev, "/", &AS_ALICE, Some(payload.clone())).await;
            assert_eq!((status, echoed), (200, payload));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    assert_eq!(h3.connections.load(Ordering::SeqCst), 1);

    // Shutdown closes the connection with H3_NO_ERROR (0x100) rather than leaving it to
    // time out.
    gw.stop().await.unwrap();
    let close = tokio::time::timeout(STEP, h3.closes.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        close.contains("gateway shutting down (code 256)"),
        "{close}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_arrives_chunk_by_chunk_through_the_tunnel() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let h3 = h3_upstream(&ca).await;
    let gw = gateway(&mesh, h3_service(h3.addr, &ca)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;

    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "h3", "GET", "/events/stream");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let (envelope, early) = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(envelope.outcome, Outcome::Forwarded);
    assert_eq!(
        envelope.http.unwrap().header("content-type").unwrap(),
        "text/plain"
    );
    assert!(early.is_empty());
    // Each chunk is released only once the previous one has reached the client, with a
    // pause between: any buffering in the gateway would stall this test.
    for i in 0..4 {
        let chunk = format!("chunk {i}\n");
        h3.chunks
            .send(Some(Bytes::from(chunk.clone())))
            .await
            .unwrap();
        let got = read_at_least(&mut recv, BytesMut::new(), chunk.len()).await;
        assert_eq!(got, chunk.as_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The end (with a trailer the envelope has no room for) ends the stream with a FIN.
    h3.chunks.send(None).await.unwrap();
    let end = tokio::time::timeout(STEP, recv.read_chunk()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_agent_abandons_is_cancelled_upstream_not_finished() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let mut h3 = h3_upstream(&ca).await;
    let gw = gateway(&mesh, h3_service(h3.addr, &ca)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;

    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "h3", "POST", "/upload");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.write_all(&[b'x'; 64 * 1024]).await.unwrap();
    // Once the upstream has the request (a reset before the gateway has read the envelope
    // would never reach the upstream at all), the agent gives up.
    let path = tokio::time::timeout(STEP, h3.requests.recv())
        .await
        .unwrap();
    assert_eq!(path.as_deref(), Some("/upload"));
    send.reset(codes::STREAM_CANCELLED).await;
    // RFC 9114 §4.1.1: the upstream sees its request stream reset, never a FIN that would
    // make the truncated body look whole.
    let failure = tokio::time::timeout(STEP, h3.failures.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(failure.contains("H3_REQUEST_CANCELLED"), "{failure}");
    let answer = tokio::time::timeout(STEP, recv.read_chunk()).await.unwrap();
    assert!(matches!(answer, Err(ReadErr::Reset(_))), "{answer:?}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_502_that_names_the_problem() {
    let mesh = Mesh::new();
    let trusted = TestCa::new("upstream CA");
    let other = TestCa::new("someone else's CA");
    let h3 = h3_upstream(&other).await;
    let gw = gateway(&mesh, h3_service(h3.addr, &trusted)).await;

    let (status, headers, body) = http_get(gw.dev.unwrap(), "/", &AS_ALICE, None).await;
    let reason = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{reason}");
    assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
    assert!(
        reason.contains(&format!("https://{}", h3.addr))
            && reason.contains("invalid peer certificate")
            && reason.contains("tls.ca"),
        "{reason}"
    );
    assert_eq!(h3.connections.load(Ordering::SeqCst), 0);
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_upstream_is_reconnected_on_the_next_request() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let cert = ca.server_cert();
    let h3 = h3_server::start(&cert, "127.0.0.1:0".parse().unwrap()).await;
    let addr = h3.addr;
    // Checked by name rather than by IP this time.
    let mut svc = h3_service(addr, &ca);
    svc.tls.server_name = Some("localhost".into());
    let gw = gateway(&mesh, svc).await;
    let dev = gw.dev.unwrap();

    let (status, _, _) = http_get(dev, "/", &AS_ALICE, Some(Bytes::from("before"))).await;
    assert_eq!(status, 200);
    h3.stop().await;
    let h3 = h3_server::start(&cert, addr).await;
    let (status, _, echoed) = http_get(dev, "/", &AS_ALICE, Some(Bytes::from("after"))).await;
    assert_eq!((status, echoed), (200, Bytes::from("after")));
    assert_eq!(h3.connections.load(Ordering::SeqCst), 1, "a new connection");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_beyond_the_upstreams_stream_limit_waits_only_the_connect_timeout() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let h3 = h3_server::start_limited(&ca.server_cert(), "127.0.0.1:0".parse().unwrap(), 1).await;
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    cfg.timeouts.connect = Duration::from_millis(500);
    cfg.policy.services.push(h3_service(h3.addr, &ca));
    let gw = Running::start(cfg).await;
    let dev = gw.dev.unwrap();

    // The one stream the upstream allows is taken by a response that does not end yet.
    let streaming = tokio::spawn(http_get(dev, "/held/stream", &AS_ALICE, None));
    h3.chunks.send(Some(Bytes::from("held\n"))).await.unwrap();
    let mut requests = h3.requests;
    let held = tokio::time::timeout(STEP, requests.recv()).await.unwrap();
    assert_eq!(held.as_deref(), Some("/held/stream"));

    let (status, headers, body) = http_get(dev, "/", &AS_ALICE, Some(Bytes::from("x"))).await;
    let reason = String::from_utf8_lossy(&body);
    assert_eq!(status, 504, "{reason}");
    assert_eq!(headers["x-aimux-outcome"], "upstream_timeout");
    assert!(
        reason.contains("granted no request stream within 0.5s"),
        "{reason}"
    );

    // Once the held response ends, its stream is the next request's.
    h3.chunks.send(None).await.unwrap();
    let (status, _, body) = streaming.await.unwrap();
    assert_eq!((status, body), (200, Bytes::from("held\n")));
    let (status, _, echoed) = http_get(dev, "/", &AS_ALICE, Some(Bytes::from("y"))).await;
    assert_eq!((status, echoed), (200, Bytes::from("y")));
    gw.stop().await.unwrap();
}
