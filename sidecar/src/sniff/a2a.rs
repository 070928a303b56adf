//! A2A 1.0 (JSON-RPC, HTTP+JSON/REST and gRPC bindings) and 0.3 (JSON-RPC, REST, gRPC), all named with the
//! 1.0 method names so one rule covers every binding and version. The target is the skill
//! the caller names under the metadata key `aimux.skill` (sidecar/INTENTS.md).

use std::borrow::Cow;

use aimux_wire::{IntentFlags, Protocol};
use http::Method;

use super::path::Path;
use super::{Body, Draft};

/// The A2A 1.0 methods (`a2a.proto` service `A2AService`; the JSON-RPC method is the RPC
/// name, A2A 1.0 §9.1).
const V1: [&str; 11] = [
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

/// Other names and their 1.0 equivalents: the A2A 0.3 JSON-RPC methods, and the singular
/// `ListTaskPushNotificationConfig` of the 1.0 release candidates.
const ALIASES: [(&str, &str); 11] = [
    ("message/send", "SendMessage"),
    ("message/stream", "SendStreamingMessage"),
    ("tasks/get", "GetTask"),
    ("tasks/cancel", "CancelTask"),
    ("tasks/resubscribe", "SubscribeToTask"),
    (
        "tasks/pushNotificationConfig/set",
        "CreateTaskPushNotificationConfig",
    ),
    (
        "tasks/pushNotificationConfig/get",
        "GetTaskPushNotificationConfig",
    ),
    (
        "tasks/pushNotificationConfig/list",
        "ListTaskPushNotificationConfigs",
    ),
    (
        "tasks/pushNotificationConfig/delete",
        "DeleteTaskPushNotificationConfig",
    ),
    ("agent/getAuthenticatedExtendedCard", "GetExtendedAgentCard"),
    (
        "ListTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
    ),
];

/// The 1.0 name of a JSON-RPC method, if it is an A2A method of any version.
pub(super) fn v1_name(method: &str) -> Option<&'static str> {
    V1.iter().find(|&&m| m == method).copied().or_else(|| {
        ALIASES
            .iter()
            .find(|(old, _)| *old == method)
            .map(|(_, new)| *new)
    })
}

/// The operation a REST path names (A2A 1.0 §11, `a2a.proto` HTTP bindings), under any
/// interface URL prefix and optional `/{tenant}` segment, so matched from the end of the
/// path.
///
/// `GET .../tasks`, `GET .../tasks/{id}` and 0.3's `GET .../card` look like any REST API's;
/// they count only when an A2A header says this is A2A (`signalled`). The other routes are
/// distinctive (`:send`, `:cancel`, `pushNotificationConfigs`, `extendedAgentCard`).
fn rest_operation(method: &Method, path: &Path<'_>, signalled: bool) -> Option<&'static str> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    let last = path.last();
    match last {
        "message:send" if post => return Some("SendMessage"),
        "message:stream" if post => return Some("SendStreamingMessage"),
        "extendedAgentCard" if get => return Some("GetExtendedAgentCard"),
        _ => {}
    }
    if let Some(["tasks", id]) = path.tail::<2>() {
        // protocols.md: the SDKs subscribe with GET (a2a.proto) or POST.
        if id.ends_with(":subscribe") && (get || post) {
            return Some("SubscribeToTask");
        }
        if id.ends_with(":cancel") && post {
            return Some("CancelTask");
        }
        if get && signalled && !id.contains(':') {
            return Some("GetTask");
        }
    }
    if let Some(["tasks", _, "pushNotificationConfigs"]) = path.tail::<3>() {
        if post {
            return Some("CreateTaskPushNotificationConfig");
        }
        if get {
            return Some("ListTaskPushNotificationConfigs");
        }
    }
    if let Some(["tasks", _, "pushNotificationConfigs", _]) = path.tail::<4>() {
        if get {
            return Some("GetTaskPushNotificationConfig");
        }
        if method == Method::DELETE {
            return Some("DeleteTaskPushNotificationConfig");
        }
    }
    if last == "tasks" && get && signalled {
        return Some("ListTasks");
    }
    // A2A 0.3 REST: `GET /v1/card` is the authenticated extended card (captured from
    // a2a-sdk's 0.3 compat transport). Generic, so only with an A2A header.
    if last == "card" && get && signalled {
        return Some("GetExtendedAgentCard");
    }
    None
}

/// The gRPC services of A2A: 1.0's package `lf.a2a.v1` (A2A 1.0 §10) and 0.3's `a2a.v1`.
const GRPC_SERVICES: [&str; 2] = ["lf.a2a.v1.A2AService", "a2a.v1.A2AService"];

/// A2A 0.3's gRPC names that differ from 1.0's (`a2a.proto` 0.3).
const GRPC_03_ALIASES: [(&str, &str); 2] = [
    ("TaskSubscription", "SubscribeToTask"),
    // 0.3's `GetAgentCard` RPC is the authenticated card (REST `GET /v1/card`).
    ("GetAgentCard", "GetExtendedAgentCard"),
];

/// The RPC a gRPC call names, if it is a call to an A2A service: gRPC puts
/// `/{package}.{Service}/{Method}` in `:path` (gRPC PROTOCOL-HTTP2.md, "Path") and always
/// POSTs. The 1.0 name when the RPC is known, else the RPC as sent (a newer A2A method
/// needs no code change). Matched from the end of the path, like the REST routes, for
/// gateways that mount gRPC under a prefix.
fn grpc_operation<'p>(method: &Method, path: &'p Path<'_>) -> Option<Cow<'p, str>> {
    if method != Method::POST {
        return None;
    }
    let [service, rpc] = path.tail::<2>()?;
    if !GRPC_SERVICES.contains(&service) || rpc.is_empty() {
        return None;
    }
    let known = v1_name(rpc).or_else(|| {
        GRPC_03_ALIASES
            .iter()
            .find(|(old, _)| *old == rpc)
            .map(|(_, new)| *new)
    });
    Some(known.map_or(Cow::Borrowed(rpc), Cow::Borrowed))
}

/// The agent card fetch (A2A 1.0 §8.2 well-known URI; `agent.json` before 0.3), under any
/// prefix: agents are often served below a path of their own.
fn is_card(method: &Method, path: &Path<'_>) -> bool {
    method == Method::GET
        && matches!(
            path.tail::<2>(),
            Some([".well-known", "agent-card.json" | "agent.json"])
        )
}

/// A2A by its path alone: a gRPC call to an A2A service, a distinctive REST route or the
/// agent card.
pub(super) fn by_path(method: &Method, path: &Path<'_>) -> bool {
    grpc_operation(method, path).is_some()
        || rest_operation(method, path, false).is_some()
        || is_card(method, path)
}

/// The intent of a request known to be A2A; `signalled` if an A2A header said so.
pub(super) fn intent<'a>(
    method: &Method,
    path: &Path<'_>,
    body: &'a Body<'a>,
    signalled: bool,
) -> Draft<'a> {
    let mut d = Draft::new(Protocol::A2a);
    let probe = body.probe();
    if let Some(op) = grpc_operation(method, path) {
        // gRPC: the body is length-prefixed protobuf, which the sniffer does not decode,
        // so the skill is not read (INTENTS.md).
        d.operation = Cow::Owned(op.into_owned());
    } else if let Some(m) = probe.and_then(|p| p.method.as_deref()) {
        // JSON-RPC: `params` is the request (`SendMessageRequest` has `message` and
        // `metadata`); an unknown method is carried as sent.
        d.operation = v1_name(m).map_or(Cow::Borrowed(m), Cow::Borrowed);
        d.target = probe
            .and_then(|p| {
                p.params_message_skill
                    .as_deref()
                    .or(p.params_skill.as_deref())
            })
            .map_or(Cow::Borrowed(""), Cow::Borrowed);
    } else if let Some(op) = rest_operation(method, path, signalled) {
        // REST: the body is the request itself.
        d.operation = Cow::Borrowed(op);
        d.target = probe
            .and_then(|p| p.message_skill.as_deref().or(p.skill.as_deref()))
            .map_or(Cow::Borrowed(""), Cow::Borrowed);
    } else if is_card(method, path) {
        d.operation = Cow::Borrowed("GetAgentCard");
    }
    if matches!(&*d.operation, "SendStreamingMessage" | "SubscribeToTask") {
        d.flags = d.flags.union(IntentFlags::STREAMING);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_1_0() {
        assert_eq!(v1_name("SendMessage"), Some("SendMessage"));
        assert_eq!(v1_name("message/stream"), Some("SendStreamingMessage"));
        assert_eq!(
            v1_name("ListTaskPushNotificationConfig"),
            Some("ListTaskPushNotificationConfigs")
        );
        assert_eq!(v1_name("tools/call"), None);
        assert_eq!(v1_name("sendmessage"), None);
    }

    #[test]
    fn grpc_paths_name_the_rpc_in_1_0_terms() {
        let op = |m: Method, p: &str| grpc_operation(&m, &Path::new(p)).map(Cow::into_owned);
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            op(Method::POST, "/lf.a2a.v1.A2AService/SendMessage"),
            some("SendMessage")
        );
        assert_eq!(
            op(Method::POST, "/a2a.v1.A2AService/TaskSubscription"),
            some("SubscribeToTask")
        );
        assert_eq!(
            op(Method::POST, "/a2a.v1.A2AService/GetAgentCard"),
            some("GetExtendedAgentCard")
        );
        assert_eq!(
            op(
                Method::POST,
                "/a2a.v1.A2AService/ListTaskPushNotificationConfig"
            ),
            some("ListTaskPushNotificationConfigs")
        );
        assert_eq!(
            op(Method::POST, "/mesh/lf.a2a.v1.A2AService/FutureRpc"),
            some("FutureRpc")
        );
        assert_eq!(op(Method::GET, "/lf.a2a.v1.A2AService/SendMessage"), None);
        assert_eq!(op(Method::POST, "/lf.a2a.v1.A2AService"), None);
        assert_eq!(op(Method::POST, "/acme.v1.Orders/SendMessage"), None);
        assert_eq!(op(Method::POST, "/lf.a2a.v1.a2aservice/SendMessage"), None);
    }

    #[test]
    fn rest_routes_under_prefixes_and_tenants() {
        let op = |m: Method, p: &str, s: bool| rest_operation(&m, &Path::new(p), s);
        assert_eq!(
            op(Method::POST, "/message:send", false),
            Some("SendMessage")
        );
        assert_eq!(
            op(Method::POST, "/a2a/v1/acme/message:stream", false),
            Some("SendStreamingMessage")
        );
        assert_eq!(op(Method::GET, "/message:send", false), None);
        assert_eq!(
            op(Method::POST, "/acme/tasks/t-1:cancel", false),
            Some("CancelTask")
        );
        assert_eq!(
            op(Method::GET, "/tasks/t-1:subscribe", false),
            Some("SubscribeToTask")
        );
        assert_eq!(op(Method::GET, "/tasks/t-1", false), None);
        assert_eq!(op(Method::GET, "/tasks/t-1", true), Some("GetTask"));
        assert_eq!(
            op(Method::GET, "/acme/tasks?pageSize=5", true),
            Some("ListTasks")
        );
        assert_eq!(op(Method::GET, "/tasks", false), None);
        assert_eq!(
            op(Method::POST, "/tasks/t/pushNotificationConfigs", false),
            Some("CreateTaskPushNotificationConfig")
        );
        assert_eq!(
            op(
                Method::DELETE,
                "/x/tasks/t/pushNotificationConfigs/c",
                false
            ),
            Some("DeleteTaskPushNotificationConfig")
        );
        assert_eq!(
            op(Method::GET, "/extendedAgentCard", false),
            Some("GetExtendedAgentCard")
        );
        assert!(is_card(
            &Method::GET,
            &Path::new("/agents/x/.well-known/agent-card.json")
        ));
        assert!(!is_card(
            &Method::POST,
            &Path::new("/.well-known/agent.json")
        ));
    }
}
