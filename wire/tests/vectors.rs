//! Golden byte vectors: `wire/tests/vectors/NAME.hex` + `NAME.json` (SPEC.md §11).
//!
//! The committed files are the truth. [`committed_vectors_hold`] decodes every `.hex` file and
//! compares the result with its `.json`; valid, canonical vectors must also re-encode to the
//! exact bytes. The files are *produced* by the code in [`definitions`] (never by hand):
//! `AIMUX_REGEN_VECTORS=1 cargo test -p aimux-wire --test vectors` rewrites them, and
//! [`files_match_definitions`] fails when the two drift apart.
//!
//! Besides envelopes, vectors of direction `payload` are framed response payloads on their
//! own (SPEC.md §6.3), and a valid response vector with `framed-payload` states what its
//! payload decodes to.
#![allow(clippy::unwrap_used)] // test code: clippy.toml allows unwrap in tests

mod common;

use aimux_wire::{
    DataFrames, DecodeError, Header, HttpRequestHead, HttpResponseHead, Intent, IntentFlags,
    Limits, Outcome, PayloadDecoder, PayloadFrame, Protocol, RequestEnvelope, RequestId,
    RequestKind, ResponseEnvelope, TraceContext, encode_trailers, envelope_len, field_type as ty,
    frame_type, peek_preface, varint,
};
use bytes::Bytes;
use serde_json::{Value, json};

use common::{annotate, annotate_payload, load_vectors, mcp_tools_call, vectors_dir};

const L: Limits = Limits::DEFAULT;

// ---------------------------------------------------------------------------------------
// JSON rendering of envelopes (the format of the `envelope` member, SPEC.md §11)
// ---------------------------------------------------------------------------------------

fn headers_json(headers: &[Header]) -> Value {
    headers
        .iter()
        .map(|h| match std::str::from_utf8(&h.value) {
            Ok(v) => json!({ "name": h.name, "value": v }),
            Err(_) => json!({ "name": h.name, "value_hex": hex::encode(&h.value) }),
        })
        .collect()
}

fn request_json(e: &RequestEnvelope) -> Value {
    let mut j = json!({
        "kind": match e.kind { RequestKind::Http => "http", RequestKind::Stream => "stream" },
        "identity": e.identity,
        "intent": e.intent.as_ref().map(|i| json!({
            "protocol": i.protocol.as_str(),
            "operation": i.operation,
            "target": i.target,
            "flags": i.flags.0,
        })),
        "destination": e.destination,
        "trace": e.trace.as_ref().map(|t| json!({
            "version": t.version,
            "trace_id": hex::encode(t.trace_id),
            "parent_id": hex::encode(t.parent_id),
            "flags": t.flags,
            "tracestate": t.tracestate,
        })),
        "request_id": e.request_id.as_ref().map(|r| hex::encode(r.as_bytes())),
        "http": e.http.as_ref().map(|h| json!({
            "method": h.method,
            "authority": h.authority,
            "path": h.path,
            "headers": headers_json(&h.headers),
        })),
    });
    // Present only when set, so vectors from before the field are unchanged.
    if e.te_trailers {
        j.as_object_mut()
            .unwrap()
            .insert("te_trailers".into(), json!(true));
    }
    j
}

fn response_json(e: &ResponseEnvelope) -> Value {
    let mut j = json!({
        "outcome": e.outcome.as_str(),
        "outcome_code": e.outcome.code(),
        "reason": e.reason,
        "http": e.http.as_ref().map(|h| json!({
            "status": h.status,
            "headers": headers_json(&h.headers),
        })),
    });
    if e.framed_payload {
        j.as_object_mut()
            .unwrap()
            .insert("framed_payload".into(), json!(true));
    }
    j
}

/// A decoded framed payload (SPEC.md §6.3): the body and the trailers, if any.
#[derive(Debug, Clone, PartialEq)]
struct Framed {
    body: Vec<u8>,
    trailers: Option<Vec<Header>>,
}

impl Framed {
    fn json(&self) -> Value {
        let mut j = match std::str::from_utf8(&self.body) {
            Ok(text) => json!({ "body": text }),
            Err(_) => json!({ "body_hex": hex::encode(&self.body) }),
        };
        j.as_object_mut().unwrap().insert(
            "trailers".into(),
            self.trailers.as_deref().map_or(Value::Null, headers_json),
        );
        j
    }

    /// The canonical encoding: one DATA frame for the body (if any), then the trailers.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (header, data) in DataFrames::new(Bytes::from(self.body.clone()), &L).unwrap() {
            out.extend_from_slice(header.as_slice());
            out.extend_from_slice(&data);
        }
        if let Some(t) = &self.trailers {
            encode_trailers(&mut out, t, &L).unwrap();
        }
        out
    }
}

/// Decodes a whole framed payload: what it holds, or the malformation (truncation
/// included) that ends it.
fn decode_framed(bytes: &[u8]) -> Result<Framed, aimux_wire::Malformed> {
    let mut d = PayloadDecoder::new(&L);
    d.push(Bytes::copy_from_slice(bytes));
    let mut framed = Framed {
        body: Vec::new(),
        trailers: None,
    };
    while let Some(frame) = d.next_frame()? {
        match frame {
            PayloadFrame::Data(b) => framed.body.extend_from_slice(&b),
            PayloadFrame::Trailers(t) => framed.trailers = Some(t),
        }
    }
    d.finish()?;
    Ok(framed)
}

// ---------------------------------------------------------------------------------------
// Vector definitions
// ---------------------------------------------------------------------------------------

enum Env {
    Req(Box<RequestEnvelope>),
    Resp(ResponseEnvelope),
    /// A response with `framed-payload`, and what its payload decodes to.
    FramedResp(ResponseEnvelope, Framed),
    /// A framed payload on its own (direction `payload`).
    Payload(Framed),
}

impl Env {
    fn direction(&self) -> &'static str {
        match self {
            Env::Req(_) => "request",
            Env::Resp(_) | Env::FramedResp(..) => "response",
            Env::Payload(_) => "payload",
        }
    }
    fn encode(&self) -> Vec<u8> {
        match self {
            Env::Req(e) => e.to_bytes(&L).unwrap().to_vec(),
            Env::Resp(e) | Env::FramedResp(e, _) => e.to_bytes(&L).unwrap().to_vec(),
            Env::Payload(_) => Vec::new(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Env::Req(e) => request_json(e),
            Env::Resp(e) | Env::FramedResp(e, _) => response_json(e),
            Env::Payload(_) => Value::Null,
        }
    }
    fn framed(&self) -> Option<&Framed> {
        match self {
            Env::FramedResp(_, f) | Env::Payload(f) => Some(f),
            _ => None,
        }
    }
}

enum Expect {
    /// Decodes to this envelope. `canonical`: re-encoding reproduces the envelope bytes.
    Valid {
        env: Env,
        canonical: bool,
    },
    Incomplete,
    Malformed(&'static str),
}

struct Vector {
    name: &'static str,
    description: &'static str,
    direction: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

impl Vector {
    fn json(&self) -> Value {
        let mut j = json!({
            "description": self.description,
            "direction": self.direction,
        });
        let o = j.as_object_mut().unwrap();
        match &self.expect {
            Expect::Valid {
                env: Env::Payload(framed),
                canonical,
            } => {
                o.insert("valid".into(), json!(true));
                o.insert("canonical".into(), json!(canonical));
                o.insert("payload".into(), framed.json());
            }
            Expect::Valid { env, canonical } => {
                let len = envelope_len(&self.bytes, &L).unwrap();
                o.insert("valid".into(), json!(true));
                o.insert("canonical".into(), json!(canonical));
                o.insert("envelope_len".into(), json!(len));
                o.insert("payload_len".into(), json!(self.bytes.len() - len));
                o.insert("envelope".into(), env.json());
                if let Some(framed) = env.framed() {
                    o.insert("payload".into(), framed.json());
                }
            }
            Expect::Incomplete => {
                o.insert("valid".into(), json!(false));
                o.insert("error".into(), json!("incomplete"));
                if self.direction != "payload"
                    && let Ok(len) = envelope_len(&self.bytes, &L)
                {
                    o.insert("envelope_len".into(), json!(len));
                }
            }
            Expect::Malformed(label) => {
                o.insert("valid".into(), json!(false));
                o.insert("error".into(), json!("malformed"));
                o.insert("reason".into(), json!(label));
            }
        }
        j
    }

    fn hex_file(&self) -> String {
        let annotated = if self.direction == "payload" {
            annotate_payload(&self.bytes)
        } else {
            annotate(&self.bytes)
        };
        format!(
            "# {}: {}\n# Direction: {}. Expected result: {}.json. Generated by wire/tests/vectors.rs.\n{}",
            self.name, self.description, self.direction, self.name, annotated
        )
    }
}

fn valid(name: &'static str, description: &'static str, env: Env, payload: &[u8]) -> Vector {
    let mut bytes = env.encode();
    match env.framed() {
        Some(framed) => {
            assert!(
                payload.is_empty(),
                "{name}: a framed payload is encoded from Framed"
            );
            bytes.extend_from_slice(&framed.encode());
        }
        None => bytes.extend_from_slice(payload),
    }
    Vector {
        name,
        description,
        direction: env.direction(),
        bytes,
        expect: Expect::Valid {
            env,
            canonical: true,
        },
    }
}

fn invalid(
    name: &'static str,
    description: &'static str,
    direction: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
) -> Vector {
    Vector {
        name,
        description,
        direction,
        bytes,
        expect,
    }
}

/// An envelope from raw (type, value) fields, so invalid vectors can break any rule.
fn raw(kind: u64, fields: &[(u64, &[u8])]) -> Vec<u8> {
    let mut block = Vec::new();
    for (t, v) in fields {
        varint::encode(&mut block, *t).unwrap();
        varint::encode(&mut block, v.len() as u64).unwrap();
        block.extend_from_slice(v);
    }
    let mut out = aimux_wire::MAGIC.to_vec();
    out.push(aimux_wire::VERSION);
    varint::encode(&mut out, kind).unwrap();
    varint::encode(&mut out, block.len() as u64).unwrap();
    out.extend_from_slice(&block);
    out
}

/// Re-frames `bytes` (a valid envelope) with `extra` raw field bytes inserted at the start of
/// the header block.
fn with_leading_fields(bytes: &[u8], extra: &[u8]) -> Vec<u8> {
    let p = peek_preface(bytes, &L).unwrap();
    let mut block = extra.to_vec();
    block.extend_from_slice(&bytes[p.preface_len..p.total_len()]);
    let mut out = bytes[..4].to_vec();
    varint::encode(&mut out, p.kind.code()).unwrap();
    varint::encode(&mut out, block.len() as u64).unwrap();
    out.extend_from_slice(&block);
    out.extend_from_slice(&bytes[p.total_len()..]);
    out
}

fn trace(tracestate: Option<&str>) -> Option<TraceContext> {
    let mut t = TraceContext::parse_traceparent(
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )?;
    t.tracestate = tracestate.map(str::to_owned);
    Some(t)
}

fn definitions() -> Vec<Vector> {
    let mut v = Vec::new();
    let mcp = mcp_tools_call();
    let mcp_bytes = mcp.to_bytes(&L).unwrap().to_vec();

    // --- valid requests ---------------------------------------------------------------
    v.push(valid(
        "request_mcp_tools_call",
        "the SPEC.md worked example: MCP tools/call with identity, intent, trace, request id, head, then the JSON-RPC body",
        Env::Req(Box::new(mcp.clone())),
        common::MCP_BODY,
    ));
    let mut a2a = RequestEnvelope::http(
        "research-agent",
        HttpRequestHead::new("POST", "research-agent.aimux.local:8080", "/")
            .with_header("a2a-version", "1.0")
            .with_header("content-type", "application/json")
            .with_header("accept", "application/json"),
    );
    a2a.identity = Some("spiffe://aimux.local/agent/planner".into());
    a2a.intent = Some(Intent::new(Protocol::A2a, "SendMessage", ""));
    a2a.trace = trace(None);
    a2a.request_id = RequestId::new(&b"req-42"[..]);
    v.push(valid(
        "request_a2a_send_message",
        "A2A 1.0 JSON-RPC SendMessage (no target: A2A names no skill), 6-byte request id",
        Env::Req(Box::new(a2a)),
        br#"{"jsonrpc":"2.0","id":"1","method":"SendMessage","params":{"message":{"messageId":"m1","role":"ROLE_USER","parts":[{"text":"hello"}]}}}"#,
    ));
    let mut openai = RequestEnvelope::http(
        "llm",
        HttpRequestHead::new("POST", "llm.aimux.local", "/v1/chat/completions")
            .with_header("content-type", "application/json")
            .with_header("accept", "application/json")
            .with_header("authorization", "Bearer sk-test-0000")
            .with_header("user-agent", "OpenAI/Python 1.99.0")
            .with_header("x-stainless-lang", "python")
            .with_header("x-stainless-package-version", "1.99.0")
            .with_header("x-stainless-async", "false")
            .with_header("content-length", "87"),
    );
    openai.identity = Some("spiffe://aimux.local/agent/writer".into());
    openai.intent = Some(Intent {
        flags: IntentFlags::STREAMING,
        ..Intent::new(Protocol::OpenAi, "chat.completions", "gpt-4o-mini")
    });
    openai.trace = trace(Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    openai.request_id = Some(RequestId::from([0x5a; 16]));
    v.push(valid(
        "request_openai_chat",
        "OpenAI chat completion: streaming flag, tracestate, bearer token, Stainless SDK headers (pair, name-only and literal)",
        Env::Req(Box::new(openai)),
        br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    ));
    let mut tcp = RequestEnvelope::stream("postgres:5432");
    tcp.identity = Some("spiffe://aimux.local/agent/analyst".into());
    tcp.intent = Some(Intent::new(Protocol::Tcp, "", ""));
    tcp.request_id = Some(RequestId::from([0x11; 16]));
    v.push(valid(
        "request_tcp_stream",
        "raw byte stream (TCP) to postgres: no HTTP fields; the payload is the stream",
        Env::Req(Box::new(tcp)),
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
    ));
    v.push(valid(
        "request_minimal",
        "the smallest valid request: raw stream with only a destination",
        Env::Req(Box::new(RequestEnvelope::stream("x"))),
        b"",
    ));
    v.push(valid(
        "request_minimal_http",
        "the smallest valid HTTP request: GET, empty authority, path /, no headers",
        Env::Req(Box::new(RequestEnvelope::http(
            "x",
            HttpRequestHead::new("GET", "", "/"),
        ))),
        b"",
    ));
    let literal = RequestEnvelope::http(
        "files",
        HttpRequestHead::new("PROPFIND", "files.local", "/dav/?depth=1")
            .with_header("x-binary", &b"\xff\xfe\x80 ok"[..])
            .with_header("cookie", "a=1")
            .with_header("cookie", "b=2")
            .with_header("x-empty", "")
            .with_header("accept", "text/html")
            .with_header("mcp-method", "tools/call"),
    );
    v.push(valid(
        "request_literal_headers",
        "literal method, literal header names, non-UTF-8 value bytes, repeated and empty headers, name-only and pair static entries",
        Env::Req(Box::new(literal)),
        b"",
    ));
    let unknown_fields = [
        &[0x3f, 0x03, b'n', b'e', b'w'][..], // type 0x3f, 3 bytes
        &[0x41, 0x23, 0x00][..],             // type 0x123 (2-byte varint), empty
        &[0x80, 0x01, 0x00, 0x00, 0x02, 0xde, 0xad][..], // type 0x10000 (4-byte), 2 bytes
    ]
    .concat();
    v.push(Vector {
        name: "request_unknown_fields",
        description: "the worked example with three unknown fields (types 0x3f, 0x123, 0x10000) in front: they must be skipped",
        direction: "request",
        bytes: with_leading_fields(&mcp_bytes, &unknown_fields),
        expect: Expect::Valid {
            env: Env::Req(Box::new(mcp.clone())),
            canonical: false,
        },
    });
    v.push(Vector {
        name: "request_non_minimal_varints",
        description: "kind, block length, field type and field length in longer-than-needed varints: accepted (RFC 9000 §16)",
        direction: "request",
        bytes: vec![
            0xa1, 0x4d, 0x58, 0x01, 0x40, 0x02, 0x80, 0x00, 0x00, 0x06, 0x40, 0x03, 0x40, 0x02,
            b'd', b'b',
        ],
        expect: Expect::Valid {
            env: Env::Req(Box::new(RequestEnvelope::stream("db"))),
            canonical: false,
        },
    });

    // --- valid responses --------------------------------------------------------------
    v.push(valid(
        "response_forwarded_200",
        "forwarded: upstream 200 with an SSE reply; the body follows",
        Env::Resp(ResponseEnvelope::forwarded(
            HttpResponseHead::new(200)
                .with_header("content-type", "text/event-stream")
                .with_header("cache-control", "no-cache")
                .with_header("mcp-session-id", "1f0e8d5c-7b2a-4c39-9e64-3a5b8c2d1e0f"),
        )),
        b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n\n",
    ));
    v.push(valid(
        "response_denied",
        "denied by policy, with a reason and a synthesized 403 head",
        Env::Resp(ResponseEnvelope {
            http: Some(HttpResponseHead::new(403).with_header("content-type", "application/json")),
            ..ResponseEnvelope::new(
                Outcome::DeniedByPolicy,
                "policy agents-readonly denies tools/call exec_shell",
            )
        }),
        br#"{"error":"denied"}"#,
    ));
    v.push(valid(
        "response_revoked",
        "revoked identity: no HTTP head, the stream ends after the envelope",
        Env::Resp(ResponseEnvelope::new(
            Outcome::Revoked,
            "certificate serial 4f:2a revoked at 2026-11-20T10:00:00Z",
        )),
        b"",
    ));
    v.push(valid(
        "response_unknown_outcome",
        "outcome code 42 is not defined in version 1: decodes as Unknown(42), not an error",
        Env::Resp(ResponseEnvelope::new(
            Outcome::Unknown(42),
            "from the future",
        )),
        b"",
    ));
    v.push(valid(
        "response_minimal",
        "the smallest valid response: outcome no_route, nothing else",
        Env::Resp(ResponseEnvelope::new(Outcome::NoRoute, "")),
        b"",
    ));

    // --- trailers (SPEC.md §5.9, §6.3) --------------------------------------------------
    // A gRPC unary call: a 5-byte length prefix, then the protobuf message (RFC-less but
    // stable: gRPC over HTTP/2, "Length-Prefixed-Message").
    let grpc_request = b"\x00\x00\x00\x00\x07\x0a\x05world";
    let mut grpc = RequestEnvelope::http(
        "greeter",
        HttpRequestHead::new(
            "POST",
            "greeter.aimux.local",
            "/helloworld.Greeter/SayHello",
        )
        .with_header("content-type", "application/grpc")
        .with_header("grpc-timeout", "1S"),
    );
    grpc.te_trailers = true;
    v.push(valid(
        "request_grpc_te_trailers",
        "a gRPC call whose agent sent `te: trailers`: the te-trailers field (0x07, empty) asks for a framed response",
        Env::Req(Box::new(grpc)),
        grpc_request,
    ));
    let mut framed_reply = ResponseEnvelope::forwarded(
        HttpResponseHead::new(200).with_header("content-type", "application/grpc"),
    );
    framed_reply.framed_payload = true;
    let grpc_trailers = vec![
        Header::new("grpc-status", "0"),
        Header::new("grpc-message", "ok"),
    ];
    v.push(valid(
        "response_framed_grpc",
        "forwarded with framed-payload (0x14): one DATA frame with the gRPC reply, then a TRAILERS frame with grpc-status and grpc-message",
        Env::FramedResp(
            framed_reply,
            Framed {
                body: b"\x00\x00\x00\x00\x0d\x0a\x0bhello world".to_vec(),
                trailers: Some(grpc_trailers.clone()),
            },
        ),
        b"",
    ));
    v.push(valid(
        "payload_data_only",
        "a framed payload of one DATA frame and no trailers (the upstream sent none); FIN ends it",
        Env::Payload(Framed {
            body: b"event: message\ndata: {}\n\n".to_vec(),
            trailers: None,
        }),
        b"",
    ));
    // Two DATA frames (the canonical encoding would use one), an empty DATA frame, and an
    // unknown frame type 0x21 that must be skipped.
    let mut skipped = vec![0x00, 0x04];
    skipped.extend_from_slice(b"he");
    skipped.extend_from_slice(b"ll");
    skipped.extend_from_slice(&[0x00, 0x00, 0x21, 0x03, 0xaa, 0xbb, 0xcc, 0x00, 0x01]);
    skipped.push(b'o');
    encode_trailers(&mut skipped, &grpc_trailers, &L).unwrap();
    v.push(Vector {
        name: "payload_unknown_frame",
        description: "DATA \"hell\", an empty DATA frame, an unknown frame type 0x21 (skipped), DATA \"o\", TRAILERS",
        direction: "payload",
        bytes: skipped,
        expect: Expect::Valid {
            env: Env::Payload(Framed {
                body: b"hello".to_vec(),
                trailers: Some(grpc_trailers.clone()),
            }),
            canonical: false,
        },
    });

    // --- invalid ----------------------------------------------------------------------
    use Expect::{Incomplete, Malformed};
    v.push(invalid(
        "invalid_payload_truncated",
        "a DATA frame declaring 16 bytes, of which 5 arrived: incomplete; if the stream ends here the response is truncated",
        "payload",
        [&[frame_type::DATA as u8, 0x10][..], b"hello"].concat(),
        Incomplete,
    ));
    let mut after = Vec::new();
    encode_trailers(&mut after, &grpc_trailers, &L).unwrap();
    after.extend_from_slice(&[0x00, 0x01, b'x']);
    v.push(invalid(
        "invalid_payload_frame_after_trailers",
        "a DATA frame after the TRAILERS frame, which must be the last",
        "payload",
        after,
        Malformed("frame_after_trailers"),
    ));
    v.push(invalid(
        "invalid_payload_frame_too_large",
        "a DATA frame declaring 1048577 bytes (limit 1048576): rejected from its header alone",
        "payload",
        vec![0x00, 0x80, 0x10, 0x00, 0x01],
        Malformed("payload_frame_too_large"),
    ));
    v.push(invalid(
        "invalid_payload_trailer_crlf",
        "a trailer value with CR LF: the TRAILERS frame's field block is malformed",
        "payload",
        vec![
            0x01, 0x0b, 0x13, 0x09, 0x00, 0x01, b'x', b'a', b'\r', b'\n', b'b', b':', b'c',
        ],
        Malformed("invalid_trailers"),
    ));
    v.push(invalid(
        "invalid_bad_magic",
        "an HTTP/1.1 request line where an envelope belongs",
        "request",
        b"POST /mcp HTTP/1.1\r\n".to_vec(),
        Malformed("bad_magic"),
    ));
    let mut v2 = mcp_bytes.clone();
    v2[3] = 0x02;
    v.push(invalid(
        "invalid_unsupported_version",
        "the worked example with version byte 2",
        "request",
        v2,
        Malformed("unsupported_version"),
    ));
    v.push(invalid(
        "invalid_unknown_kind",
        "kind 0x07 is not defined",
        "request",
        vec![0xa1, 0x4d, 0x58, 0x01, 0x07, 0x00],
        Malformed("unknown_kind"),
    ));
    v.push(invalid(
        "invalid_wrong_kind",
        "a valid response envelope given to the request decoder",
        "request",
        ResponseEnvelope::new(Outcome::Forwarded, "")
            .to_bytes(&L)
            .unwrap()
            .to_vec(),
        Malformed("wrong_kind"),
    ));
    v.push(invalid(
        "invalid_truncated",
        "the worked example cut off after 100 bytes: incomplete, not malformed",
        "request",
        mcp_bytes[..100].to_vec(),
        Incomplete,
    ));
    v.push(invalid(
        "invalid_truncated_preface",
        "only the magic and version: incomplete",
        "request",
        vec![0xa1, 0x4d, 0x58, 0x01],
        Incomplete,
    ));
    v.push(invalid(
        "invalid_header_block_too_large",
        "the preface declares a 16385-byte header block (limit 16384): rejected from the preface alone",
        "request",
        vec![0xa1, 0x4d, 0x58, 0x01, 0x01, 0x80, 0x00, 0x40, 0x01],
        Malformed("header_block_too_large"),
    ));
    v.push(invalid(
        "invalid_field_too_large",
        "a 9000-byte destination (field limit 8192) in a 9003-byte block",
        "request",
        raw(0x02, &[(ty::DESTINATION, &[b'd'; 9000])]),
        Malformed("field_too_large"),
    ));
    let many: Vec<(u64, &[u8])> = (0..65).map(|i| (0x100 + i, &b""[..])).collect();
    v.push(invalid(
        "invalid_too_many_fields",
        "65 empty unknown fields (limit 64)",
        "request",
        raw(0x02, &many),
        Malformed("too_many_fields"),
    ));
    let mut overrun = raw(0x02, &[(ty::DESTINATION, b"db")]);
    overrun[7] = 0x05; // destination claims 5 bytes, 2 remain in the block
    v.push(invalid(
        "invalid_field_overrun",
        "a field length that runs past the end of the header block",
        "request",
        overrun,
        Malformed("field_overrun"),
    ));
    v.push(invalid(
        "invalid_bad_utf8",
        "destination is not UTF-8",
        "request",
        raw(0x02, &[(ty::DESTINATION, b"t\xc3\x28ls")]),
        Malformed("invalid_utf8"),
    ));
    v.push(invalid(
        "invalid_duplicate_field",
        "two destination fields",
        "request",
        raw(0x02, &[(ty::DESTINATION, b"a"), (ty::DESTINATION, b"b")]),
        Malformed("duplicate_field"),
    ));
    v.push(invalid(
        "invalid_missing_destination",
        "a request without its required destination",
        "request",
        raw(0x02, &[(ty::IDENTITY, b"spiffe://aimux.local/agent/a")]),
        Malformed("missing_field"),
    ));
    v.push(invalid(
        "invalid_http_without_request_line",
        "an HTTP-kind request without the http-request-line field",
        "request",
        raw(0x01, &[(ty::DESTINATION, b"tools")]),
        Malformed("missing_field"),
    ));
    let mut tp = vec![0x00];
    tp.extend_from_slice(&[0x4b; 16]);
    tp.extend_from_slice(&[0x01; 8]);
    tp.extend_from_slice(&[0x01, 0x00]);
    v.push(invalid(
        "invalid_trailing_bytes",
        "a 27-byte traceparent (one byte after trace-flags)",
        "request",
        raw(0x02, &[(ty::DESTINATION, b"x"), (ty::TRACEPARENT, &tp)]),
        Malformed("trailing_bytes"),
    ));
    v.push(invalid(
        "invalid_header_crlf",
        "a header value with CR LF (request smuggling attempt)",
        "request",
        raw(
            0x01,
            &[
                (ty::DESTINATION, b"x"),
                (ty::HTTP_REQUEST_LINE, b"\x01\x00/"),
                (ty::HTTP_HEADER, b"\x01a\r\nhost: evil"),
            ],
        ),
        Malformed("invalid_value"),
    ));
    v.push(invalid(
        "invalid_unknown_protocol",
        "intent protocol code 9",
        "request",
        raw(
            0x02,
            &[(ty::DESTINATION, b"x"), (ty::INTENT, b"\x09\x00\x00")],
        ),
        Malformed("unknown_protocol"),
    ));
    v.push(invalid(
        "invalid_response_missing_outcome",
        "a response without its required outcome",
        "response",
        raw(0x03, &[(ty::REASON, b"why")]),
        Malformed("missing_field"),
    ));
    v.push(invalid(
        "invalid_response_bad_status",
        "an HTTP status of 600",
        "response",
        raw(
            0x03,
            &[(ty::OUTCOME, b"\x00"), (ty::HTTP_STATUS, b"\x42\x58")],
        ),
        Malformed("invalid_status"),
    ));
    v
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

fn regenerate() {
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let defs = definitions();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if !defs.iter().any(|d| d.name == stem) {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for d in &defs {
        std::fs::write(dir.join(format!("{}.hex", d.name)), d.hex_file()).unwrap();
        let json = serde_json::to_string_pretty(&d.json()).unwrap() + "\n";
        std::fs::write(dir.join(format!("{}.json", d.name)), json).unwrap();
    }
}

/// Checks a committed framed-payload vector (direction `payload`) against its JSON.
fn check_payload_vector(name: &str, bytes: &[u8], j: &Value) {
    let decoded = decode_framed(bytes);
    if j["valid"] == json!(true) {
        let framed = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            framed.json(),
            j["payload"],
            "{name}: decoded payload differs"
        );
        let reencoded = framed.encode();
        if j["canonical"] == json!(true) {
            assert_eq!(
                reencoded, bytes,
                "{name}: re-encoding differs from the vector"
            );
        } else {
            assert!(
                reencoded.len() < bytes.len(),
                "{name}: non-canonical vector"
            );
        }
        return;
    }
    let err = match decoded {
        Ok(f) => panic!("{name}: decoded but should fail: {f:?}"),
        Err(e) => e,
    };
    match j["error"].as_str().unwrap() {
        "incomplete" => assert_eq!(err.label(), "truncated_payload", "{name}: {err}"),
        "malformed" => assert_eq!(json!(err.label()), j["reason"], "{name}: {err}"),
        other => panic!("{name}: unknown error class {other}"),
    }
}

/// Checks one committed vector against its JSON, using only the public decoder.
fn check_vector(name: &str, bytes: &[u8], j: &Value) {
    let direction = j["direction"].as_str().unwrap();
    if direction == "payload" {
        return check_payload_vector(name, bytes, j);
    }
    let decoded: Result<(Value, usize, Vec<u8>), DecodeError> = match direction {
        "request" => RequestEnvelope::decode_slice(bytes, &L)
            .map(|(e, n)| (request_json(&e), n, e.to_bytes(&L).unwrap().to_vec())),
        "response" => ResponseEnvelope::decode_slice(bytes, &L)
            .map(|(e, n)| (response_json(&e), n, e.to_bytes(&L).unwrap().to_vec())),
        other => panic!("{name}: unknown direction {other}"),
    };
    if j["valid"] == json!(true) {
        let (env, n, reencoded) = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            env, j["envelope"],
            "{name}: decoded envelope differs from the JSON"
        );
        assert_eq!(json!(n), j["envelope_len"], "{name}: envelope length");
        assert_eq!(
            envelope_len(bytes, &L).unwrap(),
            n,
            "{name}: framing length"
        );
        assert_eq!(
            json!(bytes.len() - n),
            j["payload_len"],
            "{name}: payload length"
        );
        // Decoding from a Buf leaves the payload untouched.
        let mut buf = bytes::BytesMut::from(bytes);
        let ok = match direction {
            "request" => RequestEnvelope::decode(&mut buf, &L).is_ok(),
            _ => ResponseEnvelope::decode(&mut buf, &L).is_ok(),
        };
        assert!(ok, "{name}: Buf decoder failed");
        assert_eq!(&buf[..], &bytes[n..], "{name}: payload was touched");
        if j["envelope"]["framed_payload"] == json!(true) {
            let framed = decode_framed(&bytes[n..]).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                framed.json(),
                j["payload"],
                "{name}: decoded payload differs"
            );
        }
        if j["canonical"] == json!(true) {
            assert_eq!(
                reencoded,
                &bytes[..n],
                "{name}: re-encoding differs from the vector"
            );
        } else {
            assert!(
                reencoded.len() < n,
                "{name}: non-canonical vector re-encodes shorter"
            );
        }
        return;
    }
    let err = match decoded {
        Ok(_) => panic!("{name}: decoded but should fail"),
        Err(e) => e,
    };
    match j["error"].as_str().unwrap() {
        "incomplete" => {
            assert!(
                err.is_incomplete(),
                "{name}: expected incomplete, got {err}"
            );
            if let Some(len) = j.get("envelope_len") {
                assert_eq!(json!(envelope_len(bytes, &L).unwrap()), *len, "{name}");
            }
        }
        "malformed" => {
            let m = err
                .malformed()
                .unwrap_or_else(|| panic!("{name}: got {err}"));
            assert_eq!(json!(m.label()), j["reason"], "{name}: {m}");
        }
        other => panic!("{name}: unknown error class {other}"),
    }
}

#[test]
fn committed_vectors_hold() {
    if std::env::var_os("AIMUX_REGEN_VECTORS").is_some() {
        regenerate();
    }
    let vectors = load_vectors();
    assert!(vectors.len() >= 30, "only {} vectors found", vectors.len());
    for (name, bytes, json) in &vectors {
        check_vector(name, bytes, json);
    }
}

#[test]
fn files_match_definitions() {
    if std::env::var_os("AIMUX_REGEN_VECTORS").is_some() {
        return; // committed_vectors_hold regenerates
    }
    let files = load_vectors();
    let defs = definitions();
    let file_names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    let mut def_names: Vec<&str> = defs.iter().map(|d| d.name).collect();
    def_names.sort_unstable();
    assert_eq!(
        file_names, def_names,
        "vector files and definitions differ; run AIMUX_REGEN_VECTORS=1 cargo test -p aimux-wire --test vectors"
    );
    for d in &defs {
        let (_, bytes, json) = files.iter().find(|f| f.0 == d.name).unwrap();
        assert_eq!(
            bytes, &d.bytes,
            "{}: bytes differ from the definition (regenerate?)",
            d.name
        );
        assert_eq!(
            json,
            &d.json(),
            "{}: JSON differs from the definition (regenerate?)",
            d.name
        );
    }
}

#[test]
fn every_vector_class_is_covered() {
    let defs = definitions();
    let labels: Vec<&str> = defs
        .iter()
        .filter_map(|d| match d.expect {
            Expect::Malformed(l) => Some(l),
            _ => None,
        })
        .collect();
    for needed in [
        "bad_magic",
        "unsupported_version",
        "header_block_too_large",
        "field_too_large",
        "invalid_utf8",
        "duplicate_field",
        "missing_field",
        "trailing_bytes",
        "payload_frame_too_large",
        "frame_after_trailers",
        "invalid_trailers",
    ] {
        assert!(labels.contains(&needed), "no vector for {needed}");
    }
    assert!(defs.iter().any(|d| matches!(d.expect, Expect::Incomplete)));
}
