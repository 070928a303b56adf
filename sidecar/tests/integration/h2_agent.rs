//! HTTP/2 agents: an agent that speaks HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3) to
//! its sidecar listener, over both tunnels. Every HTTP/2 stream becomes its own tunnel
//! stream with its own envelope and intent; concurrent streams on one agent connection are
//! carried concurrently, and bodies cross byte for byte.
#![allow(clippy::unwrap_used)]

use crate::support;

use std::collections::HashSet;

use aimux_sidecar::Transport;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

use support::{Harness, echo, over_both};

over_both!(h2c_streams_become_tunnel_streams);

async fn h2c_streams_become_tunnel_streams(t: Transport) {
    let mut h = Harness::start(t, echo()).await;
    let tools = h.listener("tools");
    let tcp = tokio::net::TcpStream::connect(tools).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);

    // Ten MCP calls at once on one HTTP/2 connection.
    let mut calls = Vec::new();
    for i in 0..10 {
        let mut sender = sender.clone();
        calls.push(tokio::spawn(async move {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"tool_{i}"}}}}"#
            );
            let req = Request::post(format!("http://tools/mcp?call={i}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            let intent = resp.headers()["x-echo-intent"].to_str().unwrap().to_owned();
            let authority = resp.headers()["x-echo-authority"].to_str().unwrap().to_owned();
            let echoed = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(echoed, body.as_bytes(), "the body crossed intact");
            assert_eq!(authority, "tools");
            intent
        }));
    }
    let mut intents = HashSet::new();
    for c in calls {
        intents.insert(c.await.unwrap());
    }
    let expected: HashSet<String> = (0..10)
        .map(|i| format!("mcp tools/call tool_{i}"))
        .collect();
    assert_eq!(intents, expected, "each stream was sniffed on its own");
    // One envelope per HTTP/2 stream reached the gateway.
    for _ in 0..10 {
        let seen = h.gateway.next_seen().await;
        assert_eq!(seen.envelope.destination, "tools");
    }
    h.stop().await;
}
