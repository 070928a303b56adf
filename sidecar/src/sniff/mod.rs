//! The protocol sniffer: what a request is for, as an intent hint (wire/SPEC.md §5.2) in the
//! vocabulary of `sidecar/INTENTS.md`: MCP, A2A, OpenAI-compatible or plain HTTP, with an
//! operation, a target and flags.
//!
//! Pure and synchronous: it sees the method, the origin-form target, the headers, a bounded
//! prefix of the body and whether that prefix is the whole body (the look-ahead in
//! `lookahead.rs` reads it). Every input is the agent's and treated as hostile: nothing here
//! panics, the body is parsed once without building a tree (`json.rs`), and what ends up in
//! the envelope is bounded ([`MAX_TEXT`]) and free of control characters.
//!
//! Order of evidence (INTENTS.md "How the protocol is recognised"): protocol headers, then
//! paths, then a JSON-RPC body, then plain HTTP. Within a protocol the body decides over
//! headers; MCP 2026-07-28 headers stand in only where the body cannot be read.
//!
//! Public (hidden) so the table tests, the proptests and the fuzz target can reach it; the
//! sidecar's API is unaffected.

mod a2a;
mod fields;
pub mod fuzz;
mod headers;
mod json;
mod mcp;
mod openai;
mod path;
mod scan;
mod text;

use std::borrow::Cow;

use aimux_wire::{Intent, IntentFlags, Protocol};
use http::{HeaderMap, Method};

pub use self::scan::{Scan, ValueEnd};
pub use self::text::MAX_TEXT;

use self::headers::Hints;
use self::json::{Parsed, Probe};
use self::path::Path;

/// What the sniffer sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct SniffRequest<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The target in origin form (`/mcp?x=1`), or `*`.
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The body, or a prefix of it (empty for a bodyless request).
    pub body: &'a [u8],
    /// True if `body` is the whole body.
    pub complete: bool,
}

/// Classifies a request. Never fails: what cannot be recognised is `http METHOD PATH`.
#[must_use]
pub fn sniff(req: &SniffRequest<'_>) -> Intent {
    let hints = Hints::read(req.headers);
    let path = Path::new(req.path);
    let body = Body::read(req.body, req.complete, hints.encoded);
    let draft = classify(req, &path, &hints, &body);
    draft.finish(&body)
}

/// False if reading ahead in the body is pointless: it has a content coding (or a transfer
/// coding besides `chunked`) that the sniffer does not undo, so it would not be parsed.
#[must_use]
pub fn body_readable(headers: &HeaderMap) -> bool {
    !Hints::read(headers).encoded
}

fn classify<'a>(
    req: &SniffRequest<'a>,
    path: &Path<'_>,
    hints: &'a Hints<'a>,
    body: &'a Body<'a>,
) -> Draft<'a> {
    let method = req.method;
    // 1. Headers that name a protocol. MCP headers count on the requests MCP makes (POST,
    //    the GET of an event stream, DELETE of a session); the TypeScript SDK also sends
    //    `MCP-Protocol-Version` on OAuth metadata fetches, which are not MCP messages.
    let mcp_shaped = method == Method::POST
        || method == Method::DELETE
        || (method == Method::GET && hints.accepts_sse);
    if hints.mcp && mcp_shaped {
        return mcp::intent(method, hints, body);
    }
    if hints.a2a {
        return a2a::intent(method, path, body, true);
    }
    // 2. Paths.
    if method == Method::POST
        && let Some(endpoint) = openai::endpoint(path)
    {
        return openai::intent(endpoint, body);
    }
    if a2a::by_path(method, path) {
        return a2a::intent(method, path, body, false);
    }
    if mcp::by_path(method, path, hints) {
        return mcp::intent(method, hints, body);
    }
    // 3. A JSON-RPC body with a known method.
    if let Some(m) = body.rpc_method() {
        if mcp::is_method(m) && !mcp::is_shared_with_a2a(m) {
            return mcp::intent(method, hints, body);
        }
        if a2a::v1_name(m).is_some() {
            return a2a::intent(method, path, body, false);
        }
    }
    // 4. Plain HTTP: the path as sent, without the query.
    let mut d = Draft::new(Protocol::Http);
    d.operation = Cow::Borrowed(method.as_str());
    d.target = Cow::Borrowed(req.path.split_once('?').map_or(req.path, |(p, _)| p));
    d
}

/// The body, as far as the sniffer could read it.
// One lives on the stack per request; boxing the probe would cost an allocation instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Body<'a> {
    /// No body.
    None,
    /// Bytes the sniffer cannot read: compressed, or none arrived within the look-ahead.
    Unreadable,
    /// A body that is not a JSON object or array.
    Other,
    /// JSON, parsed as far as the prefix allowed.
    Json(Probe<'a>, Parsed),
}

impl<'a> Body<'a> {
    fn read(bytes: &'a [u8], complete: bool, encoded: bool) -> Body<'a> {
        if bytes.is_empty() && complete {
            return Body::None;
        }
        if encoded {
            // A compressed body is not parsed (decompressing would cost CPU and memory the
            // look-ahead does not budget for); headers and path give the best hint.
            return Body::Unreadable;
        }
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'[') => {
                let (probe, parsed) = json::parse(bytes, complete);
                Body::Json(probe, parsed)
            }
            Some(_) => Body::Other,
            None if complete => Body::Other,
            None => Body::Unreadable,
        }
    }

    fn probe(&self) -> Option<&Probe<'a>> {
        match self {
            Body::Json(p, _) => Some(p),
            _ => None,
        }
    }

    /// The look-ahead ended inside the JSON value.
    fn is_cut(&self) -> bool {
        matches!(self, Body::Json(_, Parsed::Cut))
    }

    /// The body could not tell what it is: unreadable, or cut before it said.
    fn unread(&self) -> bool {
        matches!(self, Body::Unreadable) || self.is_cut()
    }

    /// The hint may be missing something the body holds.
    fn partial(&self) -> bool {
        matches!(
            self,
            Body::Unreadable | Body::Json(_, Parsed::Cut | Parsed::Invalid)
        )
    }

    /// The `method` of a JSON-RPC 2.0 request, for recognising the protocol by the body
    /// alone: `"jsonrpc": "2.0"` is required (JSON-RPC 2.0 §4) unless the look-ahead ended
    /// before it could be seen (a2a-sdk writes it last), so that a REST body that happens to
    /// have a `method` field is not taken for one.
    fn rpc_method(&self) -> Option<&str> {
        let Body::Json(p, parsed) = self else {
            return None;
        };
        let method = p.method.as_deref()?;
        match p.jsonrpc.as_deref() {
            Some("2.0") => Some(method),
            None if *parsed != Parsed::Whole => Some(method),
            _ => None,
        }
    }
}

/// An intent before its text is checked.
#[derive(Debug)]
struct Draft<'a> {
    protocol: Protocol,
    operation: Cow<'a, str>,
    target: Cow<'a, str>,
    flags: IntentFlags,
}

impl<'a> Draft<'a> {
    fn new(protocol: Protocol) -> Self {
        Draft {
            protocol,
            operation: Cow::Borrowed(""),
            target: Cow::Borrowed(""),
            flags: IntentFlags::NONE,
        }
    }

    /// Adds the body's flags and bounds the text.
    fn finish(self, body: &Body<'_>) -> Intent {
        let mut flags = self.flags;
        if body.partial() {
            flags = flags.union(IntentFlags::PARTIAL);
        }
        if body.probe().is_some_and(|p| p.batch) {
            flags = flags.union(IntentFlags::BATCH);
        }
        let operation = text::clean(&self.operation);
        let target = text::clean(&self.target);
        if operation.degraded || target.degraded {
            flags = flags.union(IntentFlags::PARTIAL);
        }
        Intent {
            protocol: self.protocol,
            operation: operation.text,
            target: target.text,
            flags,
        }
    }
}

#[cfg(test)]
mod tests;
