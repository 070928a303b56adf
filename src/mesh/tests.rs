//! Validation tests: each kind of mistake is found, located on the right line, and hinted;
//! every mistake of a file is reported in one run.

use std::path::Path;

use super::diagnostic::line_col;
use super::validate;
use super::*;

/// `(line, message, hint)` of every mistake.
pub(super) fn mistakes(source: &str) -> Vec<(usize, String, String)> {
    mistakes_in(source, Path::new("/nonexistent"))
}

pub(super) fn mistakes_in(source: &str, dir: &Path) -> Vec<(usize, String, String)> {
    match validate::parse(source, dir) {
        Ok(_) => Vec::new(),
        Err(diags) => diags
            .into_iter()
            .map(|d| {
                let line = d.span.map_or(0, |s| line_col(source, s.start).0);
                (line, d.message, d.hint.unwrap_or_default())
            })
            .collect(),
    }
}

/// 1-based line of the first line of `source` containing `needle`.
pub(super) fn line_of(source: &str, needle: &str) -> usize {
    source
        .lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in source"))
}

pub(super) fn assert_mistake(
    found: &[(usize, String, String)],
    line: usize,
    message: &str,
    hint: &str,
) {
    assert!(
        found
            .iter()
            .any(|(l, m, h)| *l == line && m.contains(message) && h.contains(hint)),
        "expected a mistake on line {line} containing {message:?} (hint {hint:?}); found:\n{found:#?}"
    );
}

pub(super) const MINIMAL: &str = r#"
[mesh]
trust_domain = "example.org"
bootstrap_certs = true

[gateway]
quic = "127.0.0.1:4433"

[[agent]]
name = "alice"
listeners = [{ listen = "127.0.0.1:15001", service = "echo" }]

[[service]]
name = "echo"
upstreams = ["http://127.0.0.1:9000"]
"#;

#[test]
fn embedded_default_is_valid_and_uses_the_documented_ports() {
    let mesh = parse(Origin::Embedded, EMBEDDED_DEFAULT.to_owned()).unwrap();
    assert_eq!(mesh.gateway.quic.to_string(), "127.0.0.1:4433");
    assert_eq!(
        mesh.gateway.dev_http.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:8080")
    );
    assert_eq!(
        mesh.gateway.admin.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9901")
    );
    let agent = &mesh.agents[0];
    assert_eq!(agent.name, "demo-agent");
    let listeners: Vec<(String, &str)> = agent
        .listeners
        .iter()
        .map(|l| (l.listen.to_string(), l.service.as_str()))
        .collect();
    assert_eq!(
        listeners,
        [
            ("127.0.0.1:15001".to_owned(), "echo"),
            ("127.0.0.1:15002".to_owned(), "tools")
        ]
    );
    assert!(mesh.bootstrap_certs);
}

#[test]
fn minimal_file_gets_defaults() {
    let mesh = validate::parse(MINIMAL, Path::new("/etc/aimux")).unwrap();
    assert_eq!(mesh.gateway.name, "gateway");
    assert_eq!(mesh.gateway.connect, mesh.gateway.quic);
    assert_eq!(mesh.gateway.max_streams_per_connection, 1024);
    assert_eq!(mesh.certs_dir, Path::new("/etc/aimux/.aimux/certs"));
    assert_eq!(
        mesh.agents[0].cert,
        Path::new("/etc/aimux/.aimux/certs/alice.crt")
    );
    assert_eq!(mesh.services[0].protocol, UpstreamProtocol::Http1);
    assert!(mesh.access.is_empty());
}

#[test]
fn every_unknown_key_is_reported_with_a_suggestion() {
    let src = MINIMAL
        .replace(
            "quic = ",
            "dev_htp = \"127.0.0.1:8080\"\nqiuc_x = 1\nquic = ",
        )
        .replace("name = \"alice\"", "name = \"alice\"\nlistners = []");
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "dev_htp"),
        "unknown key `dev_htp` in [gateway]",
        "did you mean `dev_http`?",
    );
    assert_mistake(
        &found,
        line_of(&src, "qiuc_x"),
        "unknown key `qiuc_x` in [gateway]",
        "expected one of",
    );
    assert_mistake(
        &found,
        line_of(&src, "listners"),
        "unknown key `listners` in [[agent]]",
        "did you mean `listeners`?",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
}

#[test]
fn unknown_sections_and_nested_keys_are_reported() {
    let src = format!("{MINIMAL}\n[agents]\n")
        .replace("service = \"echo\" }", "service = \"echo\", port = 1 }");
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "port = 1"),
        "unknown key `port`",
        "`listen`, `service`",
    );
    assert_mistake(
        &found,
        line_of(&src, "[agents]"),
        "unknown section `agents`",
        "did you mean `agent`?",
    );
}

#[test]
fn syntax_errors_are_located() {
    let found = mistakes(&MINIMAL.replace("quic = \"127.0.0.1:4433\"", "quic = \"127.0.0.1:4433"));
    assert!(
        found
            .iter()
            .any(|(l, m, _)| *l == 7 && m.starts_with("TOML syntax")),
        "{found:#?}"
    );
    assert_eq!(line_of(MINIMAL, "quic"), 7);
}

#[test]
fn bad_and_clashing_addresses() {
    let src = MINIMAL
        .replace("quic = \"127.0.0.1:4433\"", "quic = \"gateway:4433\"\nadmin = \"127.0.0.1:15001\"")
        .replace(
            "listeners = [{ listen = \"127.0.0.1:15001\", service = \"echo\" }]",
            "listeners = [{ listen = \"127.0.0.1:15001\", service = \"echo\" }]\nproxy = \"0.0.0.0:15080\"",
        );
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "gateway:4433"),
        "`gateway:4433` is not an IP:PORT address",
        "host names are not accepted",
    );
    assert_mistake(
        &found,
        line_of(&src, "listen = \"127.0.0.1:15001"),
        "127.0.0.1:15001 is already used by the gateway admin",
        "own port",
    );
    assert_mistake(
        &found,
        line_of(&src, "proxy ="),
        "0.0.0.0:15080 is not a loopback address",
        "127.0.0.1",
    );
}

#[test]
fn wildcard_gateway_needs_a_connect_address() {
    let src = MINIMAL.replace("127.0.0.1:4433", "0.0.0.0:4433");
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "quic"),
        "wildcard address 0.0.0.0:4433",
        "connect = ",
    );
    let fixed = MINIMAL.replace(
        "quic = \"127.0.0.1:4433\"",
        "quic = \"0.0.0.0:4433\"\nconnect = \"192.0.2.1:4433\"",
    );
    let mesh = validate::parse(&fixed, Path::new(".")).unwrap();
    assert_eq!(mesh.gateway.connect.to_string(), "192.0.2.1:4433");
    assert_eq!(mesh.gateway.server_name, "192.0.2.1");
}

#[test]
fn references_must_resolve() {
    let src = format!(
        "{MINIMAL}\n[[route]]\nmatch = {{ intent = \"mcp tools/call *\" }}\nto = \"ecoh\"\n\n\
         [[access]]\nfrom = [\"bob\"]\nto = [\"echo\"]\nintents = [\"grpc\"]\n"
    );
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "to = \"ecoh\""),
        "no service named `ecoh`",
        "did you mean `echo`?",
    );
    assert_mistake(
        &found,
        line_of(&src, "[\"bob\"]"),
        "names `bob`, which is not a defined agent",
        "\"*\"",
    );
    assert_mistake(
        &found,
        line_of(&src, "grpc"),
        "unknown protocol `grpc`",
        "mcp tools/call",
    );
}

#[test]
fn duplicate_names_point_at_the_first() {
    let src = format!("{MINIMAL}\n[[service]]\nname = \"echo\"\nupstreams = [\"builtin:echo\"]\n");
    let found = mistakes(&src);
    assert_mistake(
        &found,
        src.lines().count() - 1,
        "duplicate service name `echo`",
        &format!(
            "first `echo` is on line {}",
            line_of(&src, "name = \"echo\"")
        ),
    );
}

#[test]
fn http3_services_take_https_upstreams_only() {
    let ok = MINIMAL.replace(
        "[\"http://127.0.0.1:9000\"]",
        "[\"https://127.0.0.1:8443/api\", \"https://[::1]\"]\nprotocol = \"http3\"",
    );
    assert_eq!(mistakes(&ok), []);
    let src = MINIMAL.replace(
        "[\"http://127.0.0.1:9000\"]",
        "[\n  \"https://127.0.0.1:8443\",\n  \"http://127.0.0.1:9000\",\n  \"builtin:echo\",\n]\nprotocol = \"http3\"",
    );
    let found = mistakes(&src);
    assert_eq!(found.len(), 2, "{found:#?}");
    for needle in ["http://127.0.0.1:9000", "builtin:echo"] {
        assert_mistake(
            &found,
            line_of(&src, needle),
            "speaks HTTP/3, which always runs over TLS",
            "https://HOST:PORT",
        );
    }
}

#[test]
fn bad_values_are_named() {
    let src = MINIMAL
        .replace("\"example.org\"", "\"Example.org\"")
        .replace(
            "[\"http://127.0.0.1:9000\"]",
            "[\"ftp://x\", \"builtin:ech\"]\nprotocol = \"http4\"",
        )
        .replace("name = \"alice\"", "name = \"../alice\"");
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "Example.org"),
        "not a valid SPIFFE trust domain",
        "lowercase",
    );
    assert_mistake(
        &found,
        line_of(&src, "../alice"),
        "`../alice` is not a valid agent name",
        "1-63 characters",
    );
    assert_mistake(
        &found,
        line_of(&src, "ftp://"),
        "`ftp://x` is not an upstream URL",
        "http://HOST:PORT",
    );
    assert_mistake(
        &found,
        line_of(&src, "ftp://"),
        "unknown built-in service `ech`",
        "did you mean `echo`?",
    );
    assert_mistake(
        &found,
        line_of(&src, "http4"),
        "unknown protocol `http4`",
        "did you mean `http1`?",
    );
}

#[test]
fn missing_sections_and_empty_mesh() {
    let found = mistakes("");
    assert!(
        found.iter().any(|(_, m, _)| m == "missing section [mesh]"),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|(_, m, _)| m == "missing section [gateway]"),
        "{found:#?}"
    );
}

#[test]
fn certificates_must_exist_unless_bootstrapped() {
    let dir = tempfile::tempdir().unwrap();
    let src = MINIMAL.replace("bootstrap_certs = true", "certs = \"pki\"");
    let found = mistakes_in(&src, dir.path());
    assert_mistake(
        &found,
        line_of(&src, "name = \"alice\""),
        "agent `alice` has no certificate",
        "aimux certs issue --dir",
    );
    assert!(
        found
            .iter()
            .any(|(_, m, _)| m.contains("gateway `gateway` has no certificate"))
    );

    let pki = dir.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    for file in ["alice.crt", "alice.key", "gateway.crt", "gateway.key"] {
        std::fs::write(pki.join(file), "x").unwrap();
    }
    assert_eq!(mistakes_in(&src, dir.path()), Vec::new());
}

#[test]
fn h2_transport_needs_a_gateway_h2_listener() {
    let src = MINIMAL.replace("name = \"alice\"", "name = \"alice\"\ntransport = \"h2\"");
    let found = mistakes(&src);
    assert_mistake(
        &found,
        line_of(&src, "transport"),
        "uses the h2 transport",
        "h2 = ",
    );

    let fixed = src.replace(
        "quic = \"127.0.0.1:4433\"",
        "quic = \"0.0.0.0:4433\"\nh2 = \"0.0.0.0:4443\"\nconnect = \"192.0.2.1:4433\"",
    );
    let mesh = validate::parse(&fixed, Path::new(".")).unwrap();
    assert_eq!(mesh.agents[0].transport, Transport::H2);
    // A wildcard h2 listener is dialled at the connect IP.
    assert_eq!(
        mesh.gateway.h2_connect().unwrap().to_string(),
        "192.0.2.1:4443"
    );

    let bad = MINIMAL.replace("name = \"alice\"", "name = \"alice\"\ntransport = \"tcp\"");
    assert_mistake(
        &mistakes(&bad),
        line_of(&bad, "transport"),
        "unknown transport `tcp`",
        "`quic`, `h2`",
    );
}

#[test]
fn ambiguous_routes_are_reported_at_the_later_one() {
    let source = format!(
        r#"{MINIMAL}
[[route]]
name = "by-protocol"
match = {{ protocol = "mcp" }}
to = "echo"

[[route]]
name = "by-service"
match = {{ service = "echo" }}
to = "echo"

[[route]]
name = "more-specific"
match = {{ protocol = "mcp", operation = "tools/call" }}
to = "echo"

[[route]]
name = "search"
match = {{ intent = "mcp tools/call search_*", method = "POST" }}
to = "echo"
"#
    );
    let found = mistakes(&source);
    assert_eq!(found.len(), 1, "{found:#?}");
    let first = line_of(&source, "name = \"by-protocol\"");
    assert_mistake(
        &found,
        line_of(&source, "match = { service = \"echo\" }") + 1,
        &format!("routes `by-protocol` (line {}) and `by-service`", first + 2),
        "make one more specific",
    );
}

#[test]
fn route_conditions_examples_and_timeouts_are_checked() {
    let source = format!(
        r#"{MINIMAL}
[[route]]
match = {{ intent = "mcp", protocol = "a2a" }}
to = "echo"

[[route]]
match = {{ method = "post" }}
to = "echo"

[[route]]
examples = []
to = "echo"

[[route]]
to = "echo"

[[route]]
examples = ["forecast revenue"]
to = "echo"
timeout = "5 parsecs"

[semantic]
min_score = 1.5
"#
    );
    let found = mistakes(&source);
    assert_mistake(
        &found,
        line_of(&source, "protocol = \"a2a\""),
        "say the same thing twice",
        "",
    );
    assert_mistake(
        &found,
        line_of(&source, "method = \"post\""),
        "not an upper-case HTTP method",
        "POST",
    );
    assert_mistake(
        &found,
        line_of(&source, "examples = []"),
        "non-empty sentences",
        "",
    );
    assert_mistake(
        &found,
        line_of(&source, "timeout ="),
        "is not a duration",
        "30s",
    );
    assert_mistake(&found, line_of(&source, "min_score"), "between 0 and 1", "");
    assert!(
        found
            .iter()
            .any(|(_, m, _)| m.contains("neither `match` nor `examples`")),
        "{found:#?}"
    );
}

#[test]
fn access_rules_take_globs_and_names_and_routes_take_virtual_destinations() {
    let source = r#"
[mesh]
trust_domain = "example.org"
bootstrap_certs = true

[gateway]
quic = "127.0.0.1:4433"

[[agent]]
name = "research-1"
listeners = [{ listen = "127.0.0.1:15001", service = "assistant" }]

[[service]]
name = "finance"
upstreams = ["http://127.0.0.1:9000"]

[[route]]
name = "finance"
match = { service = "assistant" }
examples = ["analyze budget", "forecast revenue"]
to = "finance"
timeout = "30s"

[[access]]
name = "research"
from = ["research-*", "spiffe://partner.org/*"]
to = ["fin*"]

[[access]]
from = ["reserch-1"]
to = ["finance"]
"#;
    let found = mistakes(source);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_mistake(
        &found,
        line_of(source, "reserch-1"),
        "not a defined agent",
        "did you mean `research-1`?",
    );
    let fixed = source.replace("reserch-1", "research-1");
    let mesh = validate::parse(&fixed, Path::new("/nonexistent")).unwrap();
    assert_eq!(mesh.routes[0].examples.len(), 2);
    assert_eq!(
        mesh.routes[0].timeout,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(mesh.access[0].name.as_deref(), Some("research"));
    assert_eq!(mesh.access[0].from.as_ref().unwrap().len(), 2);
}
