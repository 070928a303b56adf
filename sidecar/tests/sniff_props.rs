//! Properties of the sniffer on generated input: it never panics and always respects its
//! caps (checked by `sniff::fuzz`), whatever the bytes, headers or cut; and on valid bodies
//! it finds the fields wherever they are, in any key order, among any other fields.
#![allow(clippy::unwrap_used)]

use aimux_sidecar::sniff::{MAX_TEXT, SniffRequest, fuzz, sniff};
use aimux_wire::{IntentFlags, Protocol};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Header names the sniffer reads, and a few it does not.
const NAMES: [&str; 14] = [
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "a2a-version",
    "a2a-extensions",
    "x-a2a-extensions",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "accept",
    "last-event-id",
    "authorization",
    "x-other",
];

const PATHS: [&str; 12] = [
    "/mcp",
    "/sse",
    "/messages/?session_id=1",
    "/v1/chat/completions",
    "/api/v1/responses",
    "/v1/embeddings",
    "/acme/message:send",
    "/tasks/t1:subscribe",
    "/tasks/t1/pushNotificationConfigs/c",
    "/.well-known/agent-card.json",
    "/v1/card",
    "*",
];

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::DELETE,
        Method::PUT,
        Method::OPTIONS,
    ])
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PATHS.to_vec()).prop_map(str::to_owned),
        "(/[a-zA-Z0-9:%._?=&-]{0,12}){0,5}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "2026-07-28",
            "2025-06-18",
            "tools/call",
            "=?base64?bcOpdMOpbw==?=",
            "=?base64?!!?=",
            "gzip",
            "identity",
            "chunked",
            "application/a2a+json",
            "text/event-stream",
            "1.0",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((prop::sample::select(NAMES.to_vec()), header_value()), 0..8).prop_map(
        |pairs| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                if let Ok(v) = HeaderValue::from_bytes(&value) {
                    map.append(HeaderName::from_static(name), v);
                }
            }
            map
        },
    )
}

/// A JSON value of bounded size and depth, strings with any characters.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Extra members whose keys cannot collide with the ones the sniffer reads, as raw JSON.
fn extras() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        ("x_[a-z]{0,6}", json_value().prop_map(|v| v.to_string())),
        0..4,
    )
}

/// `fixed` and `extra` members in a random order.
fn shuffled(
    mut fixed: Vec<(String, String)>,
    extra: Vec<(String, String)>,
) -> impl Strategy<Value = Vec<(String, String)>> {
    fixed.extend(extra);
    Just(fixed).prop_shuffle()
}

/// An object with its members in the given order (raw JSON values).
fn object(members: &[(String, String)]) -> String {
    let inner: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn member(key: &str, value: Value) -> (String, String) {
    (key.to_owned(), value.to_string())
}

/// A `tools/call` request with `name` among random params, in random key order at both
/// levels, with decoy `name`/`uri` keys inside `arguments`.
fn tools_call() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![".{0,30}", ".{250,300}", "[a-z_]{1,20}"],
        extras(),
        extras(),
    )
        .prop_flat_map(|(name, params, top)| {
            let p = vec![
                member("name", Value::from(name.as_str())),
                member("arguments", json!({"name": "decoy", "uri": "decoy"})),
            ];
            (Just(name), shuffled(p, params), Just(top))
        })
        .prop_flat_map(|(name, params, top)| {
            let fixed = vec![
                member("jsonrpc", Value::from("2.0")),
                member("id", Value::from(1)),
                member("method", Value::from("tools/call")),
                ("params".to_owned(), object(&params)),
            ];
            (Just(name), shuffled(fixed, top).prop_map(|m| object(&m)))
        })
}

/// What the sniffer should make of a name: carried if printable and short, cut if long,
/// dropped if it has control characters (both flagged).
fn expected(name: &str) -> (String, bool) {
    if name.chars().any(char::is_control) {
        return (String::new(), true);
    }
    let mut end = name.len().min(MAX_TEXT);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    (name[..end].to_owned(), end < name.len())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzz::sniff_bytes(&data);
    }

    #[test]
    fn arbitrary_requests_respect_the_caps(
        method in method(),
        path in path(),
        headers in headers(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
        complete in any::<bool>(),
    ) {
        fuzz::sniff_checked(&SniffRequest {
            method: &method,
            path: &path,
            headers: &headers,
            body: &body,
            complete,
        });
    }

    #[test]
    fn tools_call_is_found_in_any_key_order((name, body) in tools_call()) {
        let headers = HeaderMap::new();
        let req = SniffRequest {
            method: &Method::POST,
            path: "/rpc",
            headers: &headers,
            body: body.as_bytes(),
            complete: true,
        };
        let intent = fuzz::sniff_checked(&req);
        let (target, degraded) = expected(&name);
        prop_assert_eq!(intent.protocol, Protocol::Mcp, "{}", body);
        prop_assert_eq!(&intent.operation, "tools/call");
        prop_assert_eq!(&intent.target, &target);
        prop_assert_eq!(intent.flags.contains(IntentFlags::PARTIAL), degraded);
        // Every prefix: no panic, within the caps, and never another operation.
        for cut in 0..body.len() {
            let prefix = SniffRequest { body: &body.as_bytes()[..cut], complete: false, ..req };
            let i = sniff(&prefix);
            fuzz::check(&i);
            prop_assert!(i.operation == "tools/call" || i.operation == "POST", "{:?}", i);
        }
    }

    #[test]
    fn openai_model_and_stream_are_found_in_any_order(
        (model, stream, body) in ("[a-zA-Z0-9.:/-]{1,40}", proptest::option::of(any::<bool>()), extras())
            .prop_flat_map(|(model, stream, extra)| {
                let mut fixed = vec![
                    member("messages", json!([{"role": "user", "content": "{\"model\":\"x\"}"}])),
                    member("model", Value::from(model.as_str())),
                ];
                if let Some(s) = stream {
                    fixed.push(member("stream", Value::from(s)));
                }
                (Just(model), Just(stream), shuffled(fixed, extra).prop_map(|m| object(&m)))
            }),
    ) {
        let headers = HeaderMap::new();
        let intent = fuzz::sniff_checked(&SniffRequest {
            method: &Method::POST,
            path: "/v1/chat/completions",
            headers: &headers,
            body: body.as_bytes(),
            complete: true,
        });
        prop_assert_eq!(intent.protocol, Protocol::OpenAi);
        prop_assert_eq!(&intent.target, &model);
        prop_assert_eq!(intent.flags.contains(IntentFlags::STREAMING), stream == Some(true));
    }
}
