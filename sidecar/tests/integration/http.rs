//! The data path through a real sidecar: agent HTTP/1.1 → sidecar listener → tunnel stream
//! with an envelope → test gateway, and back. Real certificates, real QUIC and real HTTP/2
//! over TLS/TCP (every test runs once per transport), real HTTP clients.
// Test helpers outside `#[test]` functions may unwrap too (clippy.toml allows it in tests).
#![allow(clippy::unwrap_used)]

use crate::support;

use std::convert::Infallible;
use std::sync::Arc;

use aimux_wire::{HttpResponseHead, Outcome, ResponseEnvelope, codes};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::Request;
use hyper::body::Frame;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};

use aimux_sidecar::Transport;
use support::http_client::{Client, Raw, WAIT, fetch, get, post};
use support::{GatewayStream, Harness, ReadErr, echo, handler, outcome, over_both};

over_both!(
    the_envelope_carries_identity_destination_intent_and_trace,
    hop_by_hop_headers_are_stripped,
    chunked_and_multi_megabyte_bodies_are_byte_identical_both_ways,
    large_uploads_and_downloads_stream_intact,
    keep_alive_and_pipelined_requests_share_one_connection,
    the_proxy_listener_takes_the_destination_from_the_request,
    outcomes_other_than_forwarded_become_status_and_outcome_header,
    a_denial_before_the_body_is_read_is_answered_at_once,
    server_sent_events_reach_the_agent_one_by_one,
    a_streamed_response_is_not_held_back_by_a_pipelined_request_behind_it,
    a_stream_reset_mid_body_aborts_the_agents_response,
    an_agent_that_goes_away_cancels_its_stream,
    unusable_replies_become_502,
);

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {parts:?}"))
        .to_str()
        .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic, non-repeating-looking test data.
fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn the_envelope_carries_identity_destination_intent_and_trace(t: Transport) {
    let mut h = Harness::start(t, echo()).await;
    let tools = h.listener("tools");
    let authority = tools.to_string();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = Request::post("/mcp?session=1")
        .header("host", &authority)
        .header("content-type", "application/json")
        .header("traceparent", traceparent)
        .body(Full::new(Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}")))
        .unwrap();
    let (parts, body) = fetch(tools, request).await;

    assert_eq!(parts.status, 200);
    assert_eq!(&body[..], b"{\"jsonrpc\":\"2.0\"}");
    let alice = h.mesh.alice_id().to_string();
    assert_eq!(alice, "spiffe://example.org/agent/alice");
    assert_eq!(header(&parts, "x-echo-identity"), alice, "claimed identity");
    assert_eq!(header(&parts, "x-echo-peer"), alice, "certificate identity");
    assert_eq!(header(&parts, "x-echo-destination"), "tools");
    assert_eq!(header(&parts, "x-echo-intent"), "http POST /mcp");
    assert_eq!(header(&parts, "x-echo-method"), "POST");
    assert_eq!(header(&parts, "x-echo-path"), "/mcp?session=1");
    assert_eq!(header(&parts, "x-echo-authority"), authority);
    assert_eq!(header(&parts, "x-echo-trace"), traceparent);
    // The request's content-length travels as a header and comes back on the echo.
    assert_eq!(header(&parts, "content-length"), "17");

    let seen = h.gateway.next_seen().await;
    assert_eq!(seen.peer, h.mesh.alice_id());
    let request_id = seen.envelope.request_id.expect("a request id");
    assert_eq!(request_id.as_bytes().len(), 16);

    // A request without traceparent starts a new trace.
    let (parts, _) = fetch(tools, get(&authority, "/")).await;
    let fresh = header(&parts, "x-echo-trace");
    assert_eq!(fresh.len(), 55);
    assert!(
        fresh.starts_with("00-") && fresh.ends_with("-00"),
        "{fresh}"
    );
    h.stop().await;
}

async fn hop_by_hop_headers_are_stripped(t: Transport) {
    let h = Harness::start(t, echo()).await;
    let addr = h.listener("echo");
    let mut raw = Raw::connect(addr).await;
    raw.write(
        b"POST /x HTTP/1.1\r\n\
          Host: echo.local\r\n\
          Connection: keep-alive, X-Private-Hop\r\n\
          Keep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\n\
          TE: trailers\r\n\
          Upgrade: h2c\r\n\
          X-Private-Hop: secret\r\n\
          Proxy-Authorization: Basic c2VjcmV0\r\n\
          X-End-To-End: kept\r\n\
          Authorization: Bearer kept\r\n\
          Content-Type: text/plain\r\n\
          Content-Length: 5\r\n\
          \r\n\
          hello",
    )
    .await;
    let response = raw.read_response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"hello");
    assert_eq!(
        response.header("x-echo-headers"),
        Some("x-end-to-end,authorization,content-type,content-length")
    );
    assert_eq!(response.header("x-echo-authority"), Some("echo.local"));
    h.stop().await;
}

async fn chunked_and_multi_megabyte_bodies_are_byte_identical_both_ways(t: Transport) {
    let h = Harness::start(t, echo()).await;
    let addr = h.listener("echo");

    // A chunked request body (no content-length), sent in uneven pieces: the echo comes back
    // chunked and byte-identical.
    let pieces: Vec<Vec<u8>> = [1, 7, 4096, 65_537, 3, 200_000]
        .iter()
        .enumerate()
        .map(|(i, n)| data(*n, i as u32 + 1))
        .collect();
    let sent: Vec<u8> = pieces.concat();
    let frames = stream::iter(
        pieces
            .into_iter()
            .map(|p| Ok::<_, Infallible>(Frame::data(Bytes::from(p)))),
    );
    let mut client = Client::connect(addr).await;
    let request = Request::post("/chunked")
        .header("host", "echo")
        .body(StreamBody::new(frames))
        .unwrap();
    let response = client.send(request).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none());
    let received = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(received.len(), sent.len());
    assert_eq!(sha256(&received), sha256(&sent));

    // 24 MiB up and echoed down at once, full duplex, with content-length framing.
    let big = data(24 << 20, 99);
    let (parts, body) = fetch(addr, post("echo", "/big", big.clone())).await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts, "content-length"), (24 << 20).to_string());
    assert_eq!(body.len(), big.len());
    assert_eq!(sha256(&body), sha256(&big));
    h.stop().await;
}

/// Hashes the uploaded body and answers with a generated body of the requested size, so
/// each direction is checked on its own.
fn hash_and_generate() -> support::Handler {
    handler(|mut s: GatewayStream| async move {
        let body = s.read_body().await;
        let size: usize = s
            .envelope
            .http
            .as_ref()
            .and_then(|h| h.header("x-respond-bytes"))
            .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
            .unwrap_or(0);
        let reply = data(size, 7);
        let head = HttpResponseHead::new(200)
            .with_header("x-upload-sha256", sha256(&body))
            .with_header("x-upload-len", body.len().to_string())
            .with_header("x-download-sha256", sha256(&reply));
        s.respond(&ResponseEnvelope::forwarded(head)).await;
        for chunk in reply.chunks(1 << 20) {
            s.write(Bytes::copy_from_slice(chunk)).await;
        }
        s.finish();
    })
}

async fn large_uploads_and_downloads_stream_intact(t: Transport) {
    let h = Harness::start(t, hash_and_generate()).await;
    let addr = h.listener("tools");
    let upload = data(32 << 20, 3);
    let request = Request::post("/upload")
        .header("host", "tools")
        .header("x-respond-bytes", (40u64 << 20).to_string())
        .body(Full::new(Bytes::from(upload.clone())))
        .unwrap();
    let (parts, body) = fetch(addr, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(header(&parts, "x-upload-len"), (32u64 << 20).to_string());
    assert_eq!(header(&parts, "x-upload-sha256"), sha256(&upload));
    assert_eq!(body.len(), 40 << 20);
    assert_eq!(sha256(&body), header(&parts, "x-download-sha256"));
    h.stop().await;
}

async fn keep_alive_and_pipelined_requests_share_one_connection(t: Transport) {
    let mut h = Harness::start(t, echo()).await;
    let addr = h.listener("echo");

    // Three requests written back to back before reading anything (RFC 9112 §9.3.2): the
    // responses come back in order on the same connection.
    let mut raw = Raw::connect(addr).await;
    let mut pipelined = Vec::new();
    for body in ["one", "two", "three"] {
        pipelined.extend_from_slice(
            format!(
                "POST /{body} HTTP/1.1\r\nHost: echo\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    raw.write(&pipelined).await;
    for body in ["one", "two", "three"] {
        let response = raw.read_response().await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, body.as_bytes());
        assert_eq!(
            response.header("x-echo-path"),
            Some(format!("/{body}").as_str())
        );
    }
    // The connection is still usable afterwards (keep-alive).
    raw.write(b"GET /again HTTP/1.1\r\nHost: echo\r\n\r\n")
        .await;
    let response = raw.read_response().await;
    assert_eq!(response.header("x-echo-path"), Some("/again"));
    for path in ["/one", "/two", "/three", "/again"] {
        let seen = h.gateway.next_seen().await;
        assert_eq!(seen.envelope.http.unwrap().path, path);
    }

    // And with hyper's client: sequential requests on one connection.
    let mut client = Client::connect(addr).await;
    for i in 0..5 {
        let response = client.send(post("echo", "/seq", format!("body {i}"))).await;
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, format!("body {i}"));
    }
    h.stop().await;
}

async fn the_proxy_listener_takes_the_destination_from_the_request(t: Transport) {
    let h = Harness::start(t, echo()).await;
    let proxy = h.proxy();

    // Absolute form, as clients send with HTTP_PROXY set.
    let mut raw = Raw::connect(proxy).await;
    raw.write(b"GET http://tools/mcp?x=1 HTTP/1.1\r\nHost: tools\r\n\r\n")
        .await;
    let response = raw.read_response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-echo-destination"), Some("tools"));
    assert_eq!(response.header("x-echo-path"), Some("/mcp?x=1"));
    assert_eq!(response.header("x-echo-authority"), Some("tools"));
    assert_eq!(response.header("x-echo-intent"), Some("http GET /mcp"));

    // Host addressing, with a port.
    raw.write(b"POST /rpc HTTP/1.1\r\nHost: Echo:80\r\nContent-Length: 2\r\n\r\nhi")
        .await;
    let response = raw.read_response().await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-echo-destination"), Some("echo"));
    assert_eq!(response.header("x-echo-authority"), Some("Echo:80"));
    assert_eq!(response.body, b"hi");

    // CONNECT is not supported yet, and says so.
    let mut raw = Raw::connect(proxy).await;
    raw.write(b"CONNECT tools:443 HTTP/1.1\r\nHost: tools:443\r\n\r\n")
        .await;
    let response = raw.read_response().await;
    assert_eq!(response.status, 405);
    assert_eq!(
        response.header("x-aimux-outcome"),
        Some("method_not_allowed")
    );
    assert!(response.header("allow").is_some());
    let text = String::from_utf8(response.body).unwrap();
    assert!(text.contains("CONNECT tunnels are not supported"), "{text}");

    // A request naming no service, or this machine, is refused with a hint.
    let (parts, body) = fetch(proxy, get(&proxy.to_string(), "/")).await;
    assert_eq!(parts.status, 400);
    assert_eq!(header(&parts, "x-aimux-outcome"), "bad_request");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.starts_with("aimux sidecar (agent/alice): the request is addressed to 127.0.0.1"),
        "{text}"
    );
    let mut raw = Raw::connect(proxy).await;
    raw.write(b"GET /mcp HTTP/1.0\r\n\r\n").await;
    let response = raw.read_response().await;
    assert_eq!(response.status, 400);
    assert!(
        String::from_utf8(response.body)
            .unwrap()
            .contains("HTTP_PROXY")
    );
    h.stop().await;
}

async fn outcomes_other_than_forwarded_become_status_and_outcome_header(t: Transport) {
    // The gateway picks the outcome code from the path: /outcome/N.
    let gateway = handler(|mut s: GatewayStream| async move {
        let path = s.envelope.http.as_ref().unwrap().path.clone();
        let code: u64 = path.rsplit('/').next().unwrap().parse().unwrap();
        let outcome = Outcome::from_code(code);
        s.respond(&ResponseEnvelope::new(outcome, format!("reason {code}")))
            .await;
        s.finish();
    });
    let h = Harness::start(t, gateway).await;
    let addr = h.listener("tools");
    for (code, status, name) in [
        (1, 403, "denied_by_policy"),
        (2, 502, "no_route"),
        (3, 502, "upstream_unreachable"),
        (4, 504, "upstream_timeout"),
        (5, 403, "revoked"),
        (6, 400, "malformed_request"),
        (7, 503, "overloaded"),
        (8, 403, "identity_mismatch"),
        (9, 500, "internal_error"),
        (10, 429, "rate_limited"),
        (11, 403, "isolated"),
        (77, 502, "unknown"),
    ] {
        let (parts, body) = fetch(addr, get("tools", &format!("/outcome/{code}"))).await;
        assert_eq!(parts.status, status, "outcome {code}");
        assert_eq!(header(&parts, "x-aimux-outcome"), name);
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains(&format!("reason {code}")), "{text}");
    }
    let stats = h.stats.snapshot();
    assert_eq!(stats.refused, 12);
    assert_eq!(stats.failures, 0);
    h.stop().await;
}

async fn a_denial_before_the_body_is_read_is_answered_at_once(t: Transport) {
    let h = Harness::start(
        t,
        outcome(Outcome::DeniedByPolicy, "agent/alice may not call tools"),
    )
    .await;
    let addr = h.listener("tools");
    // The gateway answers without reading the 4 MiB body (SPEC.md §2.6).
    let (parts, body) = fetch(addr, post("tools", "/mcp", data(4 << 20, 5))).await;
    assert_eq!(parts.status, 403);
    assert_eq!(header(&parts, "x-aimux-outcome"), "denied_by_policy");
    assert_eq!(
        &body[..],
        b"aimux gateway: denied_by_policy: agent/alice may not call tools\n"
    );
    h.stop().await;
}

async fn server_sent_events_reach_the_agent_one_by_one(t: Transport) {
    let (events_tx, events_rx) = mpsc::channel::<Bytes>(1);
    let events_rx = Arc::new(Mutex::new(events_rx));
    let gateway = handler(move |mut s: GatewayStream| {
        let events = Arc::clone(&events_rx);
        async move {
            let head = HttpResponseHead::new(200)
                .with_header("content-type", "text/event-stream")
                .with_header("cache-control", "no-cache");
            s.respond(&ResponseEnvelope::forwarded(head)).await;
            let mut events = events.lock().await;
            while let Some(event) = events.recv().await {
                s.write(event).await;
            }
            s.finish();
        }
    });
    let h = Harness::start(t, gateway).await;
    let addr = h.listener("tools");
    let mut client = Client::connect(addr).await;
    let response = client.send(get("tools", "/sse")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    // The test gives the gateway one event at a time and waits until the agent has it
    // before giving the next: an event held back anywhere on the way would stall here.
    for i in 0..5 {
        let event = format!("id: {i}\nevent: message\ndata: {{\"n\":{i}}}\n\n");
        events_tx.send(Bytes::from(event.clone())).await.unwrap();
        let mut got = Vec::new();
        while got.len() < event.len() {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .unwrap_or_else(|_| panic!("event {i} did not arrive"))
                .expect("body ended early")
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(String::from_utf8(got).unwrap(), event);
    }
    drop(events_tx);
    let end = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert!(
        end.is_none(),
        "the stream ends cleanly after the last event"
    );
    h.stop().await;
}

async fn a_streamed_response_is_not_held_back_by_a_pipelined_request_behind_it(t: Transport) {
    let (events_tx, events_rx) = mpsc::channel::<Bytes>(1);
    let events_rx = Arc::new(Mutex::new(events_rx));
    let gateway = handler(move |mut s: GatewayStream| {
        let events = Arc::clone(&events_rx);
        async move {
            let path = s.envelope.http.as_ref().unwrap().path.clone();
            let head = HttpResponseHead::new(200).with_header("x-path", path.clone());
            s.respond(&ResponseEnvelope::forwarded(head)).await;
            if path == "/sse" {
                let mut events = events.lock().await;
                while let Some(event) = events.recv().await {
                    s.write(event).await;
                }
            }
            s.finish();
        }
    });
    let h = Harness::start(t, gateway).await;
    let mut raw = Raw::connect(h.listener("tools")).await;
    // The second request is already in the sidecar's read buffer while the first streams.
    raw.write(b"GET /sse HTTP/1.1\r\nHost: tools\r\n\r\nGET /next HTTP/1.1\r\nHost: tools\r\n\r\n")
        .await;
    let (status, headers) = raw.read_head().await;
    assert_eq!(status, 200);
    assert!(headers.contains(&("x-path".to_owned(), "/sse".to_owned())));
    for i in 0..3 {
        let event = format!("data: {i}\n\n");
        events_tx.send(Bytes::from(event.clone())).await.unwrap();
        let got = raw.read_until(event.as_bytes()).await;
        assert!(got.ends_with(event.as_bytes()));
    }
    drop(events_tx);
    raw.read_until(b"0\r\n\r\n").await;
    let next = raw.read_response().await;
    assert_eq!(next.header("x-path"), Some("/next"));
    h.stop().await;
}

async fn a_stream_reset_mid_body_aborts_the_agents_response(t: Transport) {
    // The gateway resets only once the agent has seen part of the body (the test says
    // when), so the order of events does not depend on timing.
    let (reset_tx, reset_rx) = mpsc::channel::<()>(1);
    let reset_rx = Arc::new(Mutex::new(reset_rx));
    let gateway = handler(move |mut s: GatewayStream| {
        let reset_now = Arc::clone(&reset_rx);
        async move {
            let with_length = s.envelope.http.as_ref().unwrap().path == "/with-length";
            let mut head = HttpResponseHead::new(200);
            if with_length {
                head = head.with_header("content-length", "1000");
            }
            s.respond(&ResponseEnvelope::forwarded(head)).await;
            s.write(Bytes::from_static(b"partial")).await;
            reset_now.lock().await.recv().await;
            s.reset(codes::STREAM_UPSTREAM_FAILED).await;
        }
    });
    let h = Harness::start(t, gateway).await;
    let addr = h.listener("tools");
    for path in ["/chunked", "/with-length"] {
        let mut client = Client::connect(addr).await;
        let response = client.send(get("tools", path)).await;
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let mut got = Vec::new();
        while got.len() < b"partial".len() {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .expect("the first bytes arrive")
                .expect("the body goes on")
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(got, b"partial");
        reset_tx.send(()).await.unwrap();
        let result = tokio::time::timeout(WAIT, body.collect())
            .await
            .expect("the body neither ended nor failed");
        assert!(
            result.is_err(),
            "{path}: a reset body must not look complete"
        );
    }
    assert_eq!(h.stats.snapshot().failures, 2);
    h.stop().await;
}

async fn an_agent_that_goes_away_cancels_its_stream(t: Transport) {
    // The gateway reports the code with which the sidecar gave up on each stream.
    let (codes_tx, mut codes_rx) = mpsc::unbounded_channel::<(String, Option<u64>)>();
    let gateway = handler(move |mut s: GatewayStream| {
        let codes_tx = codes_tx.clone();
        async move {
            let path = s.envelope.http.as_ref().unwrap().path.clone();
            if path == "/upload" {
                // The agent vanishes mid-body: the request stream must be reset, not
                // finished, or a truncated body would pass for a complete one.
                let code = loop {
                    match s.read_chunk().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => break None,
                        Err(ReadErr::Reset(code)) => break Some(code),
                        Err(e) => panic!("{e:?}"),
                    }
                };
                codes_tx.send((path, code)).unwrap();
                return;
            }
            s.respond(&ResponseEnvelope::forwarded(HttpResponseHead::new(200)))
                .await;
            s.write(Bytes::from_static(b"first event\n\n")).await;
            // The agent vanishes mid-response: the sidecar stops our sending direction.
            let code = s.stopped().await;
            codes_tx.send((path, code)).unwrap();
        }
    });
    let mut h = Harness::start(t, gateway).await;
    let addr = h.listener("tools");

    let mut raw = Raw::connect(addr).await;
    raw.write(b"GET /events HTTP/1.1\r\nHost: tools\r\n\r\n")
        .await;
    raw.read_until(b"first event\n\n").await;
    drop(raw);
    let (path, code) = tokio::time::timeout(WAIT, codes_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, "/events");
    // Over HTTP/2 the stream is reset (RST_STREAM) without the aimux code.
    let expected = match t {
        Transport::H2 => None,
        _ => Some(u64::from(codes::STREAM_CANCELLED)),
    };
    assert_eq!(code, expected);

    let mut raw = Raw::connect(addr).await;
    raw.write(b"POST /upload HTTP/1.1\r\nHost: tools\r\nContent-Length: 100000\r\n\r\npartial")
        .await;
    // Only once the gateway has the request is the agent's departure meaningful.
    h.gateway_seen_path("/upload").await;
    drop(raw);
    let (path, code) = tokio::time::timeout(WAIT, codes_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(path, "/upload");
    assert_eq!(code, Some(u64::from(codes::STREAM_CANCELLED)));
    h.stop().await;
}

async fn unusable_replies_become_502(t: Transport) {
    let gateway = handler(|mut s: GatewayStream| async move {
        let path = s.envelope.http.as_ref().unwrap().path.clone();
        match path.as_str() {
            "/garbage" => {
                s.write(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"))
                    .await
            }
            "/no-head" => {
                s.respond(&ResponseEnvelope::new(Outcome::Forwarded, ""))
                    .await;
            }
            "/reset" => {
                s.reset(codes::STREAM_UPSTREAM_FAILED).await;
                return;
            }
            _ => {}
        }
        s.finish();
    });
    let h = Harness::start(t, gateway).await;
    let addr = h.listener("tools");
    for (path, outcome, needle) in [
        ("/garbage", "bad_gateway_reply", "invalid response envelope"),
        ("/no-head", "bad_gateway_reply", "no HTTP response head"),
        ("/reset", "stream_reset", "UPSTREAM_FAILED"),
        (
            "/empty",
            "bad_gateway_reply",
            "before a complete response envelope",
        ),
    ] {
        let (parts, body) = fetch(addr, get("tools", path)).await;
        assert_eq!(parts.status, 502, "{path}");
        assert_eq!(header(&parts, "x-aimux-outcome"), outcome, "{path}");
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains(needle), "{path}: {text}");
    }
    h.stop().await;
}
