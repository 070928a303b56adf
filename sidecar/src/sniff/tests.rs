//! Unit tests of the decision order. The protocol rows themselves are covered by the fixture
//! table (`sidecar/tests/sniff.rs`, `sidecar/tests/fixtures/sniff/`).

use http::HeaderValue;

use super::*;

fn req<'a>(
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
) -> SniffRequest<'a> {
    SniffRequest {
        method,
        path,
        headers,
        body,
        complete: true,
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in pairs {
        m.append(*n, HeaderValue::from_static(v));
    }
    m
}

fn show(i: &Intent) -> String {
    format!(
        "{} {} {} {:#x}",
        i.protocol, i.operation, i.target, i.flags.0
    )
}

#[test]
fn plain_http_is_method_and_path_without_query() {
    let h = HeaderMap::new();
    let i = sniff(&req(&Method::GET, "/orders/42?x=1", &h, b""));
    assert_eq!(show(&i), "http GET /orders/42 0x0");
    let i = sniff(&req(&Method::OPTIONS, "*", &h, b""));
    assert_eq!(show(&i), "http OPTIONS * 0x0");
}

#[test]
fn json_rpc_without_version_is_not_recognised_by_the_body_alone() {
    let h = HeaderMap::new();
    let i = sniff(&req(
        &Method::POST,
        "/api",
        &h,
        br#"{"method":"ping","amount":3}"#,
    ));
    assert_eq!(show(&i), "http POST /api 0x0");
    let i = sniff(&req(
        &Method::POST,
        "/api",
        &h,
        br#"{"jsonrpc":"2.0","method":"ping"}"#,
    ));
    assert_eq!(show(&i), "mcp ping  0x0");
    // Cut before `jsonrpc` could be seen (a2a-sdk writes it last): taken, flagged.
    let mut r = req(
        &Method::POST,
        "/",
        &h,
        br#"{"method":"SendMessage","params":{"mes"#,
    );
    r.complete = false;
    assert_eq!(show(&sniff(&r)), "a2a SendMessage  0x8");
}

#[test]
fn tasks_get_is_mcp_only_with_an_mcp_header() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t"}}"#;
    let none = HeaderMap::new();
    assert_eq!(
        show(&sniff(&req(&Method::POST, "/", &none, body))),
        "a2a GetTask  0x0"
    );
    let mcp = headers(&[("mcp-protocol-version", "2025-11-25")]);
    assert_eq!(
        show(&sniff(&req(&Method::POST, "/mcp", &mcp, body))),
        "mcp tasks/get  0x0"
    );
}

#[test]
fn mcp_headers_on_a_plain_get_do_not_make_it_mcp() {
    // The TypeScript SDK's OAuth discovery carries MCP-Protocol-Version.
    let h = headers(&[("mcp-protocol-version", "2025-06-18")]);
    let i = sniff(&req(
        &Method::GET,
        "/.well-known/oauth-protected-resource",
        &h,
        b"",
    ));
    assert_eq!(
        show(&i),
        "http GET /.well-known/oauth-protected-resource 0x0"
    );
}

#[test]
fn an_empty_prefix_of_a_body_is_partial() {
    let h = HeaderMap::new();
    let mut r = req(&Method::POST, "/v1/chat/completions", &h, b"");
    r.complete = false;
    assert_eq!(show(&sniff(&r)), "openai chat  0x8");
    let r = req(&Method::POST, "/v1/chat/completions", &h, b"  \n");
    assert_eq!(show(&sniff(&r)), "openai chat  0x0");
}

#[test]
fn over_long_and_unprintable_values_are_flagged() {
    let h = HeaderMap::new();
    let long = format!(r#"{{"model":"{}"}}"#, "m".repeat(300));
    let i = sniff(&req(&Method::POST, "/v1/embeddings", &h, long.as_bytes()));
    assert_eq!(i.target.len(), MAX_TEXT);
    assert_eq!(i.flags, IntentFlags::PARTIAL);
    let i = sniff(&req(
        &Method::POST,
        "/v1/embeddings",
        &h,
        br#"{"model":"a\nb"}"#,
    ));
    assert_eq!(show(&i), "openai embeddings  0x8");
}

#[test]
fn the_fuzz_entry_runs_on_odd_input() {
    for data in [
        &b""[..],
        b"\x01/mcp\nmcp-method: tools/call\n\n{\"method\"",
        b"\x09/v1/chat/completions\n\n{\"model\":\"x\",\"stream\":true",
        b"\x00\xff\xfe\n\xff: \xff\n\n\xff",
    ] {
        fuzz::sniff_bytes(data);
    }
}
