//! Forwarding over real QUIC and real HTTP/2-over-TLS with real certificates to a real
//! HTTP/1.1 upstream: bodies byte for byte in both directions, header rewriting, streaming
//! (SSE), failures. Every test runs once per transport.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use aimux_wire::{Outcome, TraceContext, codes};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use support::upstream::{self, pattern, sha256_hex};
use support::{
    Mesh, ReadErr, Running, STEP, Transport, config, connect, exchange, over_both, read_at_least,
    read_envelope, request,
};

over_both!(
    forwards_bodies_byte_for_byte_in_both_directions,
    rewrites_identity_hop_by_hop_and_trace_headers,
    streams_each_sse_event_as_soon_as_the_upstream_writes_it,
    upstream_failures_become_outcomes_or_resets,
    a_thousand_concurrent_streams_on_one_connection_all_succeed,
    malformed_envelopes_get_an_outcome_and_the_stream_is_stopped,
    cancellation_by_the_sidecar_reaches_the_upstream,
    an_envelope_that_never_completes_is_reset_with_timeout,
);

async fn forwards_bodies_byte_for_byte_in_both_directions(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    // Small echo: body out and back, path joined onto the base path.
    let env = request(&mesh.alice, "echo", "POST", "/hello?x=1");
    let reply = exchange(&conn, &env, Bytes::from_static(b"ping"))
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded, "{reply:?}");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.body, b"ping");
    assert_eq!(reply.header("x-seen-path"), "/svc/echo/hello?x=1");
    assert_eq!(reply.header("x-seen-host"), up.addr.to_string());
    assert!(reply.end.is_ok());

    // Multi-MB upload, hashed by the upstream as it streams in.
    let big = pattern(12 * 1024 * 1024 + 7);
    let env = request(&mesh.alice, "tools", "POST", "/sink");
    let reply = tokio::time::timeout(STEP, exchange(&conn, &env, Bytes::from(big.clone())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8(reply.body).unwrap(),
        format!("{} {}", big.len(), sha256_hex(&big))
    );

    // Multi-MB download.
    let len = 12 * 1024 * 1024 + 3;
    let env = request(&mesh.alice, "echo", "GET", &format!("/source?len={len}"));
    let reply = tokio::time::timeout(STEP, exchange(&conn, &env, Bytes::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.body.len(), len);
    assert_eq!(sha256_hex(&reply.body), sha256_hex(&pattern(len)));

    // Both at once: a multi-MB body echoed back while it is still being sent.
    let env = request(&mesh.alice, "echo", "PUT", "/mirror");
    let reply = tokio::time::timeout(STEP, exchange(&conn, &env, Bytes::from(big.clone())))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.body.len(), big.len());
    assert_eq!(sha256_hex(&reply.body), sha256_hex(&big));

    gw.stop().await.unwrap();
}

async fn rewrites_identity_hop_by_hop_and_trace_headers(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    let mut env = request(&mesh.alice, "echo", "GET", "/headers");
    let head = env.http.as_mut().unwrap();
    for (k, v) in [
        ("x-aimux-identity", "spiffe://aimux.test/agent/mallory"),
        ("x-aimux-identity", "root"),
        ("connection", "x-private"),
        ("x-private", "must not cross the hop"),
        ("keep-alive", "timeout=5"),
        ("host", "evil.example"),
    ] {
        head.headers.push(aimux_wire::Header::new(k, v));
    }
    let trace =
        TraceContext::parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .unwrap();
    env.trace = Some(trace.clone());
    let reply = exchange(&conn, &env, Bytes::new()).await.unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);
    // The verified identity, and only it: the agent's own values are dropped.
    assert_eq!(reply.header("x-seen-identity"), mesh.alice.id.to_string());
    assert_eq!(reply.header("x-seen-private"), "");
    assert_eq!(reply.header("x-seen-keep-alive"), "");
    assert_eq!(reply.header("x-seen-host"), up.addr.to_string());
    assert_eq!(reply.header("x-seen-traceparent"), trace.traceparent());

    // An envelope without a claimed identity is fine: the certificate speaks.
    let mut env = request(&mesh.alice, "echo", "GET", "/anonymous-claim");
    env.identity = None;
    let reply = exchange(&conn, &env, Bytes::new()).await.unwrap();
    assert_eq!(reply.header("x-seen-identity"), mesh.alice.id.to_string());
    gw.stop().await.unwrap();
}

async fn streams_each_sse_event_as_soon_as_the_upstream_writes_it(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "GET", "/events/sse");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    // The response head arrives before any event has been written.
    let (envelope, early) = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(envelope.outcome, Outcome::Forwarded);
    assert_eq!(
        envelope.http.unwrap().header("content-type").unwrap(),
        "text/event-stream"
    );
    assert!(early.is_empty());
    // Each event is released only after the previous one reached the client, so any
    // buffering in the gateway would block this test (and time out).
    for i in 0..5 {
        let event = format!("data: event {i}\n\n");
        up.sse_events
            .send(Bytes::from(event.clone()))
            .await
            .unwrap();
        let got = read_at_least(&mut recv, BytesMut::new(), event.len()).await;
        assert_eq!(got, event.as_bytes());
    }
    gw.stop().await.unwrap();
}

async fn upstream_failures_become_outcomes_or_resets(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    // Nothing listens: upstream_unreachable, with the URL and service in the reason.
    let reply = exchange(
        &conn,
        &request(&mesh.alice, "dead", "GET", "/"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::UpstreamUnreachable);
    assert!(
        reply
            .envelope
            .reason
            .contains("of service `dead` refused the connection"),
        "{}",
        reply.envelope.reason
    );
    assert!(
        reply
            .envelope
            .reason
            .starts_with("upstream http://127.0.0.1:")
    );

    // No response head within the configured 2 s: upstream_timeout.
    let reply = exchange(
        &conn,
        &request(&mesh.alice, "echo", "GET", "/hang"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::UpstreamTimeout);
    assert!(reply.envelope.reason.contains("no response head within 2s"));

    // The upstream breaks mid-body: the head and what arrived are forwarded, then the
    // stream is reset with UPSTREAM_FAILED so the sidecar cannot mistake it for complete
    // (over HTTP/2 the code travels in the `aimux-reset` trailer).
    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "GET", "/fail");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let (envelope, body) = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(envelope.outcome, Outcome::Forwarded);
    let body = read_at_least(&mut recv, body, b"partial".len()).await;
    assert_eq!(&body[..], b"partial");
    up.fail_now.send(()).await.unwrap();
    let end = tokio::time::timeout(STEP, recv.read_chunk()).await.unwrap();
    assert_eq!(
        end.unwrap_err(),
        ReadErr::Reset(codes::STREAM_UPSTREAM_FAILED.into())
    );
    gw.stop().await.unwrap();
}

async fn a_thousand_concurrent_streams_on_one_connection_all_succeed(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    let all = async {
        let mut pending: FuturesUnordered<_> = (0..1000)
            .map(|i| {
                let conn = conn.clone();
                let env = request(&mesh.alice, "echo", "POST", &format!("/n/{i}"));
                async move {
                    let body = Bytes::from(format!("request {i}"));
                    let reply = exchange(&conn, &env, body.clone()).await.unwrap();
                    assert_eq!(reply.envelope.outcome, Outcome::Forwarded, "{i}");
                    assert_eq!(reply.body, body, "{i}");
                }
            })
            .collect();
        let mut done = 0;
        while pending.next().await.is_some() {
            done += 1;
        }
        done
    };
    let done = tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("1000 requests finish within the bound");
    assert_eq!(done, 1000);
    gw.stop().await.unwrap();
}

async fn malformed_envelopes_get_an_outcome_and_the_stream_is_stopped(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    let (mut send, recv) = conn.open().await.unwrap();
    // An HTTP/1 request line where the envelope should be: bad magic at byte 0.
    send.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let reply = tokio::time::timeout(STEP, support::read_reply(recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::MalformedRequest);
    assert!(
        reply.envelope.reason.contains("bad magic"),
        "{:?}",
        reply.envelope
    );
    // The gateway asked us to stop sending: with MALFORMED over QUIC; over HTTP/2 with a
    // RST_STREAM (NO_ERROR, the response being complete), which carries no aimux code.
    let stopped = tokio::time::timeout(STEP, send.stopped()).await.unwrap();
    let expected = match t {
        Transport::Quic => Some(codes::STREAM_MALFORMED.into()),
        Transport::H2 => None,
    };
    assert_eq!(stopped, expected);

    // A stream that ends inside the envelope is malformed too.
    let (mut send, recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "GET", "/");
    let bytes = env.to_bytes(&Default::default()).unwrap();
    send.write_all(&bytes[..bytes.len() - 3]).await.unwrap();
    send.finish().unwrap();
    let reply = tokio::time::timeout(STEP, support::read_reply(recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::MalformedRequest);
    assert!(
        reply.envelope.reason.contains("ended"),
        "{:?}",
        reply.envelope
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_unidirectional_stream_closes_the_connection_as_a_protocol_violation() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;
    let conn = conn.quic();

    let mut uni = conn.open_uni().await.unwrap();
    uni.write_all(b"x").await.unwrap();
    uni.finish().unwrap();
    let closed = tokio::time::timeout(STEP, conn.closed()).await.unwrap();
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, codes::CLOSE_PROTOCOL_VIOLATION.into());
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    gw.stop().await.unwrap();
}

async fn cancellation_by_the_sidecar_reaches_the_upstream(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    // The sidecar stops reading a streaming response: the gateway drops the upstream
    // request, so the upstream's event stream is dropped too.
    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "GET", "/sse");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let (envelope, _) = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(envelope.outcome, Outcome::Forwarded);
    recv.stop(codes::STREAM_CANCELLED);
    tokio::time::timeout(STEP, up.sse_events.closed())
        .await
        .expect("the upstream request is cancelled");

    // The sidecar resets its request body mid-upload: the gateway gives up on the
    // request and resets its answer with CANCELLED.
    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "POST", "/sink");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.write_all(&pattern(100_000)).await.unwrap();
    send.reset(codes::STREAM_CANCELLED).await;
    let err = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, "stream reset by peer: error 16", "CANCELLED is 0x10");
    gw.stop().await.unwrap();
}

async fn an_envelope_that_never_completes_is_reset_with_timeout(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    cfg.timeouts.envelope = Duration::from_millis(300);
    let gw = Running::start(cfg).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "GET", "/");
    let bytes = env.to_bytes(&Default::default()).unwrap();
    // Half an envelope, and then nothing: the gateway's bound runs out.
    send.write_all(&bytes[..bytes.len() / 2]).await.unwrap();
    let err = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, "stream reset by peer: error 19", "TIMEOUT is 0x13");
    let stopped = tokio::time::timeout(STEP, send.stopped()).await.unwrap();
    let expected = match t {
        Transport::Quic => Some(codes::STREAM_TIMEOUT.into()),
        Transport::H2 => None,
    };
    assert_eq!(stopped, expected);
    gw.stop().await.unwrap();
}
