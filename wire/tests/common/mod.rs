//! Helpers shared by the integration tests: the `.hex` vector format (parse and annotate)
//! and the vector directory.
//!
//! `.hex` format: pairs of hex digits; whitespace is ignored; `#` starts a comment that runs
//! to the end of the line. The annotator writes one line per envelope element so that a
//! reader can follow SPEC.md byte by byte.
#![allow(dead_code)] // each test crate uses a different subset
#![allow(clippy::unwrap_used)] // test code

use std::fmt::Write as _;
use std::path::PathBuf;

use aimux_wire::{field_type as ty, table, varint};

/// `wire/tests/vectors`.
pub(crate) fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

/// Every vector: (name, bytes, json), sorted by name.
pub(crate) fn load_vectors() -> Vec<(String, Vec<u8>, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(vectors_dir()).expect("vectors dir") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("hex") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let bytes = parse_hex(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}.hex: {e}"));
        let json_path = path.with_extension("json");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap())
                .unwrap_or_else(|e| panic!("{name}.json: {e}"));
        out.push((name, bytes, json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Parses the `.hex` format.
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::new();
    for line in text.lines() {
        let data = line.split('#').next().unwrap_or_default();
        digits.extend(data.chars().filter(|c| !c.is_whitespace()));
    }
    hex::decode(&digits).map_err(|e| e.to_string())
}

/// A printable rendering of bytes for comments: ASCII as is, the rest as `\xNN`.
pub(crate) fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(b)),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    format!("\"{s}\"")
}

/// Writes annotated hex.
pub(crate) struct Annotator {
    out: String,
}

const COLUMN: usize = 47;
const PER_LINE: usize = 16;

impl Annotator {
    fn line(&mut self, bytes: &[u8], comment: &str) {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let hex = hex.join(" ");
        if comment.is_empty() {
            let _ = writeln!(self.out, "{hex}");
        } else {
            let _ = writeln!(self.out, "{hex:<COLUMN$} # {comment}");
        }
    }

    /// Bytes that may be long: chunks of PER_LINE, comment on the first, text on each.
    fn data(&mut self, bytes: &[u8], comment: &str) {
        if bytes.is_empty() {
            return;
        }
        for (i, chunk) in bytes.chunks(PER_LINE).enumerate() {
            let c = if i == 0 && !comment.trim().is_empty() {
                format!("{comment}: {}", show(chunk))
            } else {
                format!("  {}", show(chunk))
            };
            self.line(chunk, &c);
        }
    }

    fn raw(&mut self, bytes: &[u8], comment: &str) {
        for (i, chunk) in bytes.chunks(16).enumerate() {
            self.line(chunk, if i == 0 { comment } else { "" });
        }
    }
}

/// Reads a varint from the front of `b`, returning (value, its bytes, rest).
fn take_varint(b: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let (v, n) = varint::decode(b).ok()?;
    Some((v, &b[..n], &b[n..]))
}

fn field_name(response: bool, t: u64) -> &'static str {
    match (response, t) {
        (_, ty::HTTP_HEADER) => "http-header",
        (false, ty::IDENTITY) => "identity",
        (false, ty::INTENT) => "intent",
        (false, ty::DESTINATION) => "destination",
        (false, ty::TRACEPARENT) => "traceparent",
        (false, ty::TRACESTATE) => "tracestate",
        (false, ty::REQUEST_ID) => "request-id",
        (false, ty::TE_TRAILERS) => "te-trailers",
        (false, ty::HTTP_REQUEST_LINE) => "http-request-line",
        (true, ty::OUTCOME) => "outcome",
        (true, ty::REASON) => "reason",
        (true, ty::HTTP_STATUS) => "http-status",
        (true, ty::FRAMED_PAYLOAD) => "framed-payload",
        _ => "unknown (skipped)",
    }
}

/// Annotates an envelope (plus whatever follows it). Never fails: anything that does not
/// parse is dumped as plain hex with a note.
pub(crate) fn annotate(bytes: &[u8]) -> String {
    let mut a = Annotator { out: String::new() };
    let (rest, framed) = annotate_envelope(&mut a, bytes);
    if framed {
        a.out.push_str(&format!(
            "{:<COLUMN$} # framed payload (SPEC.md §6.3):\n",
            ""
        ));
        annotate_frames(&mut a, rest);
    } else if !rest.is_empty() {
        a.raw(
            rest,
            &format!("payload, {} bytes (not part of the envelope)", rest.len()),
        );
    }
    a.out
}

/// Annotates a framed payload (SPEC.md §6.3) on its own.
pub(crate) fn annotate_payload(bytes: &[u8]) -> String {
    let mut a = Annotator { out: String::new() };
    annotate_frames(&mut a, bytes);
    a.out
}

fn annotate_frames(a: &mut Annotator, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let Some((t, t_bytes, r)) = take_varint(bytes) else {
            break;
        };
        let Some((len, l_bytes, r)) = take_varint(r) else {
            break;
        };
        let name = match t {
            0x00 => "DATA",
            0x01 => "TRAILERS",
            _ => "unknown (skipped)",
        };
        let mut header = t_bytes.to_vec();
        header.extend_from_slice(l_bytes);
        let unit = if len == 1 { "byte" } else { "bytes" };
        let Some(value) = usize::try_from(len).ok().and_then(|l| r.get(..l)) else {
            a.line(
                &header,
                &format!(
                    "frame {t:#04x} {name}, {len} {unit} (only {} follow)",
                    r.len()
                ),
            );
            a.data(r, "  (cut off)");
            return;
        };
        a.line(&header, &format!("frame {t:#04x} {name}, {len} {unit}"));
        if t == 0x01 {
            annotate_trailer_block(a, value);
        } else {
            a.data(value, "  ");
        }
        bytes = &r[value.len()..];
    }
    if !bytes.is_empty() {
        a.raw(bytes, "rest of the payload (does not parse)");
    }
}

fn annotate_trailer_block(a: &mut Annotator, mut block: &[u8]) {
    while !block.is_empty() {
        let Some((t, t_bytes, r)) = take_varint(block) else {
            break;
        };
        let Some((len, l_bytes, r)) = take_varint(r) else {
            break;
        };
        let Some(value) = usize::try_from(len).ok().and_then(|l| r.get(..l)) else {
            break;
        };
        let name = if t == ty::HTTP_HEADER {
            "http-header"
        } else {
            "unknown (skipped)"
        };
        let mut header = t_bytes.to_vec();
        header.extend_from_slice(l_bytes);
        let unit = if len == 1 { "byte" } else { "bytes" };
        a.line(&header, &format!("  field {t:#04x} {name}, {len} {unit}"));
        if t == ty::HTTP_HEADER {
            if header_value(a, value).is_none() {
                a.data(value, "  (does not parse)");
            }
        } else {
            a.data(value, "  ");
        }
        block = &r[value.len()..];
    }
    if !block.is_empty() {
        a.raw(block, "  rest of the field block (does not parse)");
    }
}

/// Annotates the envelope; returns the bytes after it and whether it is a response with
/// `framed-payload`.
fn annotate_envelope<'a>(a: &mut Annotator, bytes: &'a [u8]) -> (&'a [u8], bool) {
    if bytes.len() < 4 || bytes[..3] != aimux_wire::MAGIC {
        a.raw(bytes, "not an envelope preface");
        return (&[], false);
    }
    a.line(
        &bytes[..4],
        &format!("magic a1 4d 58, version {}", bytes[3]),
    );
    let Some((kind, kind_bytes, rest)) = take_varint(&bytes[4..]) else {
        a.raw(&bytes[4..], "truncated kind");
        return (&[], false);
    };
    let kind_name = match kind {
        1 => "HTTP request",
        2 => "raw-stream request",
        3 => "response",
        _ => "unknown kind",
    };
    a.line(kind_bytes, &format!("kind {kind:#04x}: {kind_name}"));
    let Some((block_len, len_bytes, rest)) = take_varint(rest) else {
        a.raw(rest, "truncated header-block length");
        return (&[], false);
    };
    a.line(len_bytes, &format!("header block: {block_len} bytes"));
    let block_len = usize::try_from(block_len)
        .unwrap_or(usize::MAX)
        .min(rest.len());
    let (mut block, after) = rest.split_at(block_len);
    let response = kind == 3;
    let mut framed = false;
    while !block.is_empty() {
        let Some((t, t_bytes, r)) = take_varint(block) else {
            break;
        };
        let Some((len, l_bytes, r)) = take_varint(r) else {
            break;
        };
        let Some(value) = usize::try_from(len).ok().and_then(|l| r.get(..l)) else {
            break;
        };
        let name = field_name(response, t);
        framed |= response && t == ty::FRAMED_PAYLOAD;
        let mut header = t_bytes.to_vec();
        header.extend_from_slice(l_bytes);
        let unit = if len == 1 { "byte" } else { "bytes" };
        a.line(&header, &format!("field {t:#04x} {name}, {len} {unit}"));
        annotate_value(a, response, t, value);
        block = &r[value.len()..];
    }
    if !block.is_empty() {
        a.raw(block, "rest of the header block (does not parse)");
    }
    (after, framed)
}

fn annotate_value(a: &mut Annotator, response: bool, t: u64, v: &[u8]) {
    let parsed = match (response, t) {
        (_, ty::HTTP_HEADER) => header_value(a, v),
        (false, ty::INTENT) => intent_value(a, v),
        (false, ty::TRACEPARENT) if v.len() == 26 => {
            a.line(&v[..1], "  traceparent version");
            a.line(&v[1..17], "  trace-id");
            a.line(&v[17..25], "  parent-id");
            a.line(&v[25..], "  trace-flags");
            Some(())
        }
        (false, ty::HTTP_REQUEST_LINE) => request_line_value(a, v),
        (true, ty::OUTCOME) | (true, ty::HTTP_STATUS) => take_varint(v).map(|(n, b, rest)| {
            let what = if t == ty::OUTCOME {
                format!("  outcome {n} ({})", aimux_wire::Outcome::from_code(n))
            } else {
                format!("  status {n}")
            };
            a.line(b, &what);
            a.data(rest, "  trailing");
        }),
        (false, ty::REQUEST_ID) => {
            a.raw(v, "  request id");
            Some(())
        }
        _ => {
            a.data(v, "  ");
            Some(())
        }
    };
    if parsed.is_none() {
        a.data(v, "  (does not parse)");
    }
}

fn intent_value(a: &mut Annotator, v: &[u8]) -> Option<()> {
    let (p, p_bytes, r) = take_varint(v)?;
    let (f, f_bytes, r) = take_varint(r)?;
    let (op_len, op_bytes, r) = take_varint(r)?;
    let op = r.get(..usize::try_from(op_len).ok()?)?;
    let target = &r[op.len()..];
    let proto = aimux_wire::Protocol::from_code(p).map_or("?", |p| p.as_str());
    a.line(p_bytes, &format!("  protocol {p} ({proto})"));
    a.line(f_bytes, &format!("  flags {f:#x}"));
    a.line(op_bytes, &format!("  operation: {op_len} bytes"));
    a.data(op, "  ");
    if target.is_empty() {
        a.out.push_str(&format!(
            "{:<COLUMN$} # target: empty (rest of field)\n",
            ""
        ));
    } else {
        a.data(target, "  target (rest of field)");
    }
    Some(())
}

fn request_line_value(a: &mut Annotator, v: &[u8]) -> Option<()> {
    let (m, m_bytes, mut r) = take_varint(v)?;
    if m == 0 {
        let (len, l_bytes, r2) = take_varint(r)?;
        let lit = r2.get(..usize::try_from(len).ok()?)?;
        a.line(m_bytes, "  method index 0: literal");
        a.line(l_bytes, &format!("  method length {len}"));
        a.data(lit, "  ");
        r = &r2[lit.len()..];
    } else {
        let name = table::method(m).unwrap_or("?");
        a.line(m_bytes, &format!("  method index {m}: {name}"));
    }
    let (len, l_bytes, r) = take_varint(r)?;
    let auth = r.get(..usize::try_from(len).ok()?)?;
    a.line(l_bytes, &format!("  authority: {len} bytes"));
    a.data(auth, "  ");
    a.data(&r[auth.len()..], "  path (rest of field)");
    Some(())
}

fn header_value(a: &mut Annotator, v: &[u8]) -> Option<()> {
    let (i, i_bytes, r) = take_varint(v)?;
    if i == 0 {
        let (len, l_bytes, r2) = take_varint(r)?;
        let name = r2.get(..usize::try_from(len).ok()?)?;
        a.line(i_bytes, "  name index 0: literal name");
        a.line(l_bytes, &format!("  name length {len}"));
        a.data(name, "  ");
        a.data(&r2[name.len()..], "  value (rest of field)");
        return Some(());
    }
    match table::entry(i) {
        Some((name, Some(value))) => a.line(i_bytes, &format!("  static {i}: {name}: {value}")),
        Some((name, None)) => {
            a.line(i_bytes, &format!("  static {i}: {name}"));
            a.data(r, "  value (rest of field)");
            return Some(());
        }
        None => a.line(i_bytes, &format!("  static {i}: (no such entry)")),
    }
    a.data(r, "  trailing");
    Some(())
}

/// The worked example of SPEC.md §10: a typical MCP `tools/call` request envelope.
pub(crate) fn mcp_tools_call() -> aimux_wire::RequestEnvelope {
    use aimux_wire::{HttpRequestHead, Intent, Protocol, RequestEnvelope, RequestId, TraceContext};
    let head = HttpRequestHead::new("POST", "127.0.0.1:15002", "/mcp")
        .with_header("content-type", "application/json")
        .with_header("accept", "application/json, text/event-stream")
        .with_header("mcp-protocol-version", "2025-06-18")
        .with_header("mcp-session-id", "1f0e8d5c-7b2a-4c39-9e64-3a5b8c2d1e0f");
    RequestEnvelope {
        identity: Some("spiffe://aimux.local/agent/demo-agent".to_owned()),
        intent: Some(Intent::new(Protocol::Mcp, "tools/call", "search_web")),
        trace: TraceContext::parse_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        request_id: Some(RequestId::from([
            0x01, 0x93, 0x5e, 0x7a, 0x4c, 0x2b, 0x7d, 0x10, 0x8e, 0x3f, 0x6a, 0x21, 0x5b, 0x9c,
            0x0d, 0x44,
        ])),
        ..RequestEnvelope::http("tools", head)
    }
}

/// The JSON-RPC body that follows the worked example on the stream.
pub(crate) const MCP_BODY: &[u8] = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"search_web","arguments":{"query":"aimux"}}}"#;
