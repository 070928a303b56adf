//! The look-ahead on the real data path: agent HTTP/1.1 → sidecar (look-ahead, sniffer) →
//! tunnel → test gateway, which echoes the body and reports the intent it received. The
//! intent must be right, the body must arrive byte for byte whatever the look-ahead read, and
//! an agent that streams an upload and waits for an answer must not be held up.
// Test helpers outside `#[test]` functions may unwrap too (clippy.toml allows it in tests).
#![allow(clippy::unwrap_used)]

use crate::support;

use aimux_sidecar::Transport;
use aimux_wire::{IntentFlags, Protocol};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use sha2::{Digest, Sha256};

use support::http_client::{Raw, fetch};
use support::{Harness, echo, over_both};

over_both!(
    requests_are_classified_and_their_bodies_arrive_whole,
    a_streamed_upload_waiting_for_its_answer_is_not_held_up,
);

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn header<'a>(parts: &'a http::response::Parts, name: &str) -> &'a str {
    parts.headers[name].to_str().unwrap()
}

async fn requests_are_classified_and_their_bodies_arrive_whole(t: Transport) {
    let mut h = Harness::start(t, echo()).await;
    let tools = h.listener("tools");

    // A small JSON-RPC request: envelope and body leave in one write.
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Seattle"}}}"#;
    let request = Request::post("/mcp")
        .header("host", "tools")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", "2025-06-18")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let (parts, echoed) = fetch(tools, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(
        header(&parts, "x-echo-intent"),
        "mcp tools/call get_weather"
    );
    assert_eq!(&echoed[..], body.as_bytes());
    let seen = h.gateway.next_seen().await;
    assert_eq!(seen.envelope.intent.unwrap().flags, IntentFlags::NONE);

    // A body far beyond the look-ahead: classified from its first 64 KiB, sent whole.
    let mut big =
        br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":""#.to_vec();
    big.extend((0..300_000).map(|i| b'a' + (i % 26) as u8));
    big.extend_from_slice(br#""}]}"#);
    let request = Request::post("/v1/chat/completions")
        .header("host", "tools")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let (parts, echoed) = fetch(tools, request).await;
    assert_eq!(header(&parts, "x-echo-intent"), "openai chat gpt-4o");
    assert_eq!(echoed.len(), big.len());
    assert_eq!(sha256(&echoed), sha256(&big));
    let intent = h.gateway.next_seen().await.envelope.intent.unwrap();
    assert_eq!(intent.protocol, Protocol::OpenAi);
    assert_eq!(
        intent.flags,
        IntentFlags::STREAMING.union(IntentFlags::PARTIAL)
    );
    h.stop().await;
}

async fn a_streamed_upload_waiting_for_its_answer_is_not_held_up(t: Transport) {
    let mut h = Harness::start(t, echo()).await;
    let tools = h.listener("tools");
    let head = "POST /mcp HTTP/1.1\r\nHost: tools\r\nContent-Type: application/json\r\n\
                MCP-Protocol-Version: 2025-06-18\r\nTransfer-Encoding: chunked\r\n\r\n";

    // The first message is complete: the look-ahead stops there, the request goes out, and
    // the answer's head comes back while the agent still holds the rest of its upload.
    let first = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}"#;
    let mut raw = Raw::connect(tools).await;
    raw.write(format!("{head}{:x}\r\n{first}\r\n", first.len()).as_bytes())
        .await;
    let (status, headers) = raw.read_head().await;
    assert_eq!(status, 200);
    let intent = headers.iter().find(|(n, _)| n == "x-echo-intent").unwrap();
    assert_eq!(intent.1, "mcp tools/call a");
    let second = b"\n{\"more\":true}";
    raw.write(format!("{:x}\r\n", second.len()).as_bytes())
        .await;
    raw.write(second).await;
    raw.write(b"\r\n0\r\n\r\n").await;
    let mut expected = first.as_bytes().to_vec();
    expected.extend_from_slice(second);
    let echoed = read_chunked_body(&mut raw, expected.len()).await;
    assert_eq!(echoed, expected);
    h.gateway.next_seen().await;

    // The first message is not complete yet: after `sniff_wait` the request goes out anyway,
    // classified from what arrived and flagged partial.
    let mut raw = Raw::connect(tools).await;
    let part = r#"{"jsonrpc":"2.0","id":2,"method":"#;
    raw.write(format!("{head}{:x}\r\n{part}\r\n", part.len()).as_bytes())
        .await;
    let (status, _) = raw.read_head().await;
    assert_eq!(status, 200);
    let seen = h.gateway.next_seen().await.envelope.intent.unwrap();
    assert_eq!(
        (seen.protocol, seen.operation.as_str(), seen.flags),
        (Protocol::Mcp, "", IntentFlags::PARTIAL)
    );
    let rest = r#""ping"}"#;
    raw.write(format!("{:x}\r\n{rest}\r\n0\r\n\r\n", rest.len()).as_bytes())
        .await;
    let echoed = read_chunked_body(&mut raw, part.len() + rest.len()).await;
    assert_eq!(echoed, format!("{part}{rest}").as_bytes());
    h.stop().await;
}

/// Reads a chunked response body of `len` bytes in total, then its last chunk.
async fn read_chunked_body(raw: &mut Raw, len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < len {
        let size = raw.read_until(b"\r\n").await;
        let size = usize::from_str_radix(std::str::from_utf8(&size).unwrap().trim(), 16).unwrap();
        assert!(size > 0, "the body ended early: {body:?}");
        let chunk = raw.read_until(b"\r\n").await;
        // Chunk data may itself contain CRLF in general; here it does not.
        assert_eq!(chunk.len(), size + 2);
        body.extend_from_slice(&chunk[..size]);
    }
    raw.read_until(b"0\r\n\r\n").await;
    body
}
