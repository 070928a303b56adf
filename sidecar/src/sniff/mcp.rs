//! MCP, every revision: 2024-11-05 (HTTP+SSE), 2025-03-26 … 2025-11-25 (streamable HTTP
//! with `Mcp-Session-Id` and, from 2025-06-18, `MCP-Protocol-Version`) and 2026-07-28
//! (stateless POSTs with `Mcp-Method`/`Mcp-Name`). The operation is the JSON-RPC `method`.

use std::borrow::Cow;

use aimux_wire::{IntentFlags, Protocol};
use http::Method;

use super::headers::Hints;
use super::json::{Parsed, Probe};
use super::path::Path;
use super::{Body, Draft};

/// Methods of every revision (schema.ts of 2024-11-05 … 2026-07-28), client and server
/// side: a server's requests (`sampling/createMessage`, `roots/list`, ...) travel as POSTs
/// too when the client answers or a proxy relays them. `notifications/*` are matched by
/// prefix.
const METHODS: [&str; 22] = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    // Tasks, 2025-11-25. `tasks/get` and `tasks/cancel` are A2A 0.3 names too (see
    // `is_shared_with_a2a`).
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    // 2026-07-28.
    "server/discover",
    "subscriptions/listen",
];

/// True for an MCP method name.
pub(super) fn is_method(m: &str) -> bool {
    METHODS.contains(&m) || m.starts_with("notifications/")
}

/// Names both MCP (2025-11-25 tasks) and A2A 0.3 use. Only MCP sends a protocol header with
/// them (every MCP request after `initialize` carries `MCP-Protocol-Version` since
/// 2025-06-18, and tasks arrived later), so without one they are A2A.
pub(super) fn is_shared_with_a2a(m: &str) -> bool {
    matches!(m, "tasks/get" | "tasks/cancel")
}

/// Requests that are MCP by their path alone, without any MCP header:
/// - 2024-11-05 HTTP+SSE: `GET .../sse` asking for an event stream, and the POST to the
///   messages endpoint the server announced (`/messages/?session_id=` from the Python SDK,
///   `/messages?sessionId=` from the TypeScript SDK);
/// - streamable HTTP: a `GET .../mcp` asking for an event stream (a 2025-03-26 client
///   without a session sends no MCP header on it).
pub(super) fn by_path(method: &Method, path: &Path<'_>, hints: &Hints<'_>) -> bool {
    let last = path.last();
    if method == Method::GET {
        hints.accepts_sse && (last == "sse" || last == "mcp")
    } else if method == Method::POST {
        last == "messages"
            && (path.has_query_param("session_id") || path.has_query_param("sessionId"))
    } else {
        false
    }
}

/// The intent of a request known to be MCP.
pub(super) fn intent<'a>(method: &Method, hints: &'a Hints<'a>, body: &'a Body<'a>) -> Draft<'a> {
    let mut d = Draft::new(Protocol::Mcp);
    let probe = body.probe();
    match probe.and_then(|p| p.method.as_deref()) {
        Some(m) => {
            let target = probe.and_then(|p| target(m, p));
            check_headers(&mut d, hints, body, m, target);
            d.operation = Cow::Borrowed(m);
            d.target = target.map_or(Cow::Borrowed(""), Cow::Borrowed);
            // MCP 2026-07-28: when the look-ahead ended before the name, a header the
            // server validates is the best remaining source.
            if target.is_none()
                && body.is_cut()
                && hints.validated_mcp_headers()
                && let (Some(hm), Some(hn)) = (hints.mcp_method.value(), hints.mcp_name.value())
                && hm == m
                && names_target(m)
            {
                d.target = Cow::Borrowed(hn);
            }
        }
        // The body cannot tell (compressed, or cut before `method`).
        None if body.unread() && hints.validated_mcp_headers() => {
            if let Some(hm) = hints.mcp_method.value() {
                d.operation = Cow::Borrowed(hm);
                if names_target(hm) {
                    d.target = Cow::Borrowed(hints.mcp_name.value().unwrap_or(""));
                }
            }
        }
        // Streamable HTTP: GET opens the server-to-client stream (or resumes it with
        // `Last-Event-ID`), DELETE ends the session (MCP 2025-03-26 §Transports). Legacy
        // `GET /sse` is the 2024-11-05 stream.
        None if method == Method::GET && matches!(body, Body::None) => {
            d.operation = Cow::Borrowed("stream/open");
        }
        None if method == Method::DELETE => d.operation = Cow::Borrowed("session/delete"),
        // A JSON-RPC response or error the client sends back, or nothing readable.
        None => {}
    }
    if matches!(&*d.operation, "stream/open" | "subscriptions/listen") {
        d.flags = d.flags.union(IntentFlags::STREAMING);
    }
    d
}

/// The target of a method: what it names (MCP schema: `CallToolRequest.params.name`,
/// `GetPromptRequest.params.name`, `ReadResourceRequest.params.uri`, the subscribe requests'
/// `params.uri`, `CompleteRequest.params.ref`).
fn target<'p>(method: &str, p: &'p Probe<'_>) -> Option<&'p str> {
    match method {
        "tools/call" | "prompts/get" => p.name.as_deref(),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => p.uri.as_deref(),
        "completion/complete" => p.ref_name.as_deref().or(p.ref_uri.as_deref()),
        _ => None,
    }
}

fn names_target(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
    )
}

/// MCP 2026-07-28 copies `method` into `Mcp-Method` and the name or URI into `Mcp-Name`; the
/// body decides, and any disagreement the body can show is flagged (`mismatch`). A repeated
/// or undecodable header disagrees by definition. Older revisions send neither header, so
/// their absence says nothing.
fn check_headers(
    d: &mut Draft<'_>,
    hints: &Hints<'_>,
    body: &Body<'_>,
    method: &str,
    target: Option<&str>,
) {
    use super::headers::One;
    let method_differs = match &hints.mcp_method {
        One::Absent => false,
        One::Value(h) => h != method,
        One::Bad => true,
    };
    let whole = matches!(body, Body::Json(_, Parsed::Whole));
    let name_differs = match (&hints.mcp_name, target) {
        (One::Absent, _) => false,
        (One::Bad, _) => true,
        (One::Value(h), Some(t)) => h != t,
        // The header names something the whole body does not.
        (One::Value(_), None) => whole,
    };
    if method_differs || name_differs {
        d.flags = d.flags.union(IntentFlags::HEADER_BODY_MISMATCH);
    }
}
