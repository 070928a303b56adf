//! `builtin:mcp-tools`: a small MCP server over the streamable HTTP transport (MCP
//! 2025-03-26 and later): JSON-RPC 2.0 in POST bodies, answered with a JSON body or, for
//! the streaming tool, a `text/event-stream` of JSON-RPC messages.
//!
//! Tools: `add` (two numbers), `word_count` (a text), `countdown` (streams one
//! `notifications/progress` event per step over SSE, then the result).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::DemoBody;

/// Largest JSON-RPC request body accepted.
const MAX_REQUEST_BYTES: usize = 1 << 20;
const LATEST_PROTOCOL: &str = "2025-11-25";
const MAX_COUNTDOWN_STEPS: u64 = 100;
const MAX_INTERVAL_MS: u64 = 5_000;

pub(super) async fn handle(req: Request<Incoming>) -> Response<DemoBody> {
    if req.method() != Method::POST {
        // MCP streamable HTTP: a server that offers no server-initiated stream answers GET
        // with 405 Method Not Allowed.
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST JSON-RPC requests to this endpoint\n",
        );
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body: {e}\n"),
            );
        }
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return rpc_error(Value::Null, -32700, &format!("parse error: {e}")),
    };
    let id = message.get("id").cloned();
    let method = message
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    let Some(id) = id else {
        // A notification (no id): accepted, nothing to answer (MCP: 202 Accepted).
        return text(StatusCode::ACCEPTED, "");
    };
    match method {
        "initialize" => initialize(id, &params),
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(id, json!({ "tools": tools() })),
        "tools/call" => call(id, &params),
        other => rpc_error(id, -32601, &format!("method not found: {other}")),
    }
}

fn initialize(id: Value, params: &Value) -> Response<DemoBody> {
    let version = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(LATEST_PROTOCOL);
    let mut response = rpc_result(
        id,
        json!({
            "protocolVersion": version,
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": { "name": "aimux-demo-tools", "version": env!("CARGO_PKG_VERSION") },
        }),
    );
    let session = format!("aimux-demo-{:016x}", rand::random::<u64>());
    if let Ok(value) = HeaderValue::from_str(&session) {
        response.headers_mut().insert("mcp-session-id", value);
    }
    response
}

fn tools() -> Value {
    json!([
        {
            "name": "add",
            "description": "Adds two numbers.",
            "inputSchema": { "type": "object", "required": ["a", "b"],
                "properties": { "a": { "type": "number" }, "b": { "type": "number" } } }
        },
        {
            "name": "word_count",
            "description": "Counts the words of a text.",
            "inputSchema": { "type": "object", "required": ["text"],
                "properties": { "text": { "type": "string" } } }
        },
        {
            "name": "countdown",
            "description": "Counts down from n, streaming one progress notification per step (SSE).",
            "inputSchema": { "type": "object", "required": ["n"],
                "properties": { "n": { "type": "integer", "maximum": MAX_COUNTDOWN_STEPS },
                                "interval_ms": { "type": "integer", "maximum": MAX_INTERVAL_MS } } }
        }
    ])
}

fn call(id: Value, params: &Value) -> Response<DemoBody> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let args = params.get("arguments").cloned().unwrap_or(Value::Null);
    let number = |key: &str| args.get(key).and_then(Value::as_f64);
    match name {
        "add" => match (number("a"), number("b")) {
            (Some(a), Some(b)) => rpc_result(id, tool_text(&format!("{}", a + b))),
            _ => rpc_error(id, -32602, "add needs numbers `a` and `b`"),
        },
        "word_count" => match args.get("text").and_then(Value::as_str) {
            Some(text) => rpc_result(id, tool_text(&text.split_whitespace().count().to_string())),
            None => rpc_error(id, -32602, "word_count needs a string `text`"),
        },
        "countdown" => {
            let n = args
                .get("n")
                .and_then(Value::as_u64)
                .unwrap_or(3)
                .min(MAX_COUNTDOWN_STEPS);
            let interval = args
                .get("interval_ms")
                .and_then(Value::as_u64)
                .unwrap_or(200);
            countdown(id, n, Duration::from_millis(interval.min(MAX_INTERVAL_MS)))
        }
        other => rpc_error(id, -32602, &format!("unknown tool: {other}")),
    }
}

/// Streams `n` progress notifications then the result, each as one SSE event written as
/// soon as it is produced.
fn countdown(id: Value, n: u64, interval: Duration) -> Response<DemoBody> {
    let token = id.clone();
    let events = futures_util::stream::unfold(n, move |left| {
        let (id, token) = (id.clone(), token.clone());
        async move {
            if left == u64::MAX {
                return None;
            }
            if left > 0 {
                tokio::time::sleep(interval).await;
                let progress = json!({ "jsonrpc": "2.0", "method": "notifications/progress",
                    "params": { "progressToken": token, "progress": n - left + 1, "total": n,
                                "message": format!("{left}") } });
                return Some((sse_event(&progress), left - 1));
            }
            let done = json!({ "jsonrpc": "2.0", "id": id, "result": tool_text("liftoff") });
            Some((sse_event(&done), u64::MAX))
        }
    });
    let body = StreamBody::new(events.map(|e| Ok::<_, hyper::Error>(Frame::data(e))));
    let mut response = Response::new(BodyExt::boxed(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

fn sse_event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

fn tool_text(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }], "isError": false })
}

fn rpc_result(id: Value, result: Value) -> Response<DemoBody> {
    json_response(&json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

fn rpc_error(id: Value, code: i64, message: &str) -> Response<DemoBody> {
    json_response(
        &json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }),
    )
}

fn json_response(value: &Value) -> Response<DemoBody> {
    let mut response = full(StatusCode::OK, Bytes::from(value.to_string()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &str) -> Response<DemoBody> {
    full(status, Bytes::from(body.to_owned()))
}

fn full(status: StatusCode, body: Bytes) -> Response<DemoBody> {
    let body = Full::new(body).map_err(|never| match never {});
    let mut response = Response::new(BodyExt::boxed(body));
    *response.status_mut() = status;
    response
}
