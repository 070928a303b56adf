//! `aimux up` on the embedded default mesh, as a new user runs it: in an empty directory,
//! with nothing else installed. It must create development certificates, serve the demo
//! services, and answer on the documented ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Proc, wait_tcp};

const ECHO: &str = "127.0.0.1:15001";
const TOOLS: &str = "127.0.0.1:15002";
const ADMIN: &str = "127.0.0.1:9901";

/// One HTTP/1.1 request on a fresh connection; returns the whole raw response.
fn http(addr: &str, request: &str) -> String {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn post(addr: &str, path: &str, body: &str, extra_headers: &str) -> String {
    http(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn up_runs_the_default_mesh_out_of_the_box() {
    let dir = tempfile::tempdir().unwrap();
    let up = Proc::spawn("up", &["up"], dir.path());
    // `aimux up` runs in `dir`, which has no mesh.toml: it uses the embedded default.
    let _ = &up;
    wait_tcp(ECHO.parse().unwrap(), "the demo-agent sidecar");
    wait_tcp(ADMIN.parse().unwrap(), "the gateway admin listener");

    // The echo service answers with the body and the verified identity.
    let deadline = Instant::now() + Duration::from_secs(30);
    let echo = loop {
        let response = post(ECHO, "/", "hello mesh", "");
        if response.starts_with("HTTP/1.1 200") || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(echo.starts_with("HTTP/1.1 200"), "{echo}");
    assert!(echo.ends_with("hello mesh"), "{echo}");
    assert!(
        echo.to_lowercase()
            .contains("x-aimux-identity: spiffe://aimux.local/agent/demo-agent"),
        "{echo}"
    );

    // The MCP tool service lists its tools and calls one.
    let list = post(
        TOOLS,
        "/mcp",
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        "",
    );
    assert!(list.contains("\"countdown\""), "{list}");
    let add = post(
        TOOLS,
        "/mcp",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":2,"b":3}}}"#,
        "",
    );
    assert!(add.contains(r#""text":"5""#), "{add}");

    // The streaming tool answers as server-sent events.
    let countdown = post(
        TOOLS,
        "/mcp",
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"countdown","arguments":{"n":3,"interval_ms":10}}}"#,
        "Accept: application/json, text/event-stream\r\n",
    );
    assert!(countdown.contains("text/event-stream"), "{countdown}");
    assert_eq!(
        countdown.matches("notifications/progress").count(),
        3,
        "{countdown}"
    );
    assert!(countdown.contains("liftoff"), "{countdown}");

    // Development certificates were created where the default file says.
    for file in [
        "ca.crt",
        "ca.key",
        "crl.pem",
        "gateway.crt",
        "demo-agent.crt",
        "demo-agent.key",
    ] {
        assert!(
            dir.path().join(".aimux/certs").join(file).is_file(),
            "{file} missing"
        );
    }

    // The admin endpoint reports the traffic.
    let metrics = http(
        ADMIN,
        "GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
    );
    assert!(
        metrics.contains("aimux_gateway_requests_total"),
        "{metrics}"
    );
    assert!(metrics.contains("demo-agent"), "{metrics}");
}

#[test]
fn help_lists_every_command() {
    let out = std::process::Command::new(support::aimux_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["certs", "check", "up", "gateway", "sidecar"] {
        assert!(
            help.contains(command),
            "`aimux --help` does not mention {command}:\n{help}"
        );
    }
}
