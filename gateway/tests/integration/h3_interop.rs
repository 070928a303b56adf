//! HTTP/3 interop: the gateway's HTTP/3 client against an independent implementation,
//! Python's aioquic (`interop-tests/h3/server.py`), run as a real process with a
//! certificate issued at test time.
//!
//! The Python comes from AIMUX_PYTHON (scripts/test.sh installs aioquic into .venv/ and
//! sets it), else `.venv/bin/python` if present. Without a Python that has aioquic the
//! tests say so and skip, unless AIMUX_REQUIRE_PRIVILEGED_TESTS=1 (set by CI) makes that a
//! failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_macros, unused_imports)] // the transport macro is for the tunnel tests
use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use aimux_gateway::{ServiceConfig, UpstreamProtocol};
use aimux_wire::Outcome;
use bytes::{Bytes, BytesMut};
use support::h3_server::TestCa;
use support::{
    Mesh, Running, STEP, Transport, config, connect, http_get, read_at_least, read_envelope,
    request, service, upstream,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const AS_ALICE: [(&str, &str); 2] = [("host", "py"), ("x-aimux-identity", "alice")];

/// The Python to run the server with, or `None` (after saying why) to skip.
fn python() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("AIMUX_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(repo.join(".venv/bin/python")).filter(|p| p.exists()));
    let why = match &python {
        None => "AIMUX_PYTHON is not set and there is no .venv/bin/python (scripts/test.sh \
                 installs aioquic into .venv/ and sets it)"
            .to_owned(),
        Some(p) => match std::process::Command::new(p)
            .args(["-c", "import aioquic"])
            .output()
        {
            Ok(out) if out.status.success() => return python,
            Ok(out) => format!(
                "{} cannot import aioquic ({}); scripts/test.sh installs it",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => format!("{} cannot be run: {e}", p.display()),
        },
    };
    if std::env::var("AIMUX_REQUIRE_PRIVILEGED_TESTS").as_deref() == Ok("1") {
        panic!("{why}; AIMUX_REQUIRE_PRIVILEGED_TESTS=1 forbids skipping");
    }
    eprintln!("skipped: {why}");
    None
}

/// The aioquic server process, killed when dropped.
struct PyServer {
    addr: SocketAddr,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// Starts `server.py` with a certificate from `ca`, offering `alpn`; waits (bounded) until
/// it says it listens.
async fn py_server(python: &Path, ca: &TestCa, alpn: &str) -> PyServer {
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.server_cert();
    std::fs::write(dir.path().join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &cert.key_pem).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop-tests/h3/server.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg("--cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--key")
        .arg(dir.path().join("key.pem"))
        .args(["--port", "0", "--alpn", alpn])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(STEP, lines.next_line())
        .await
        .expect("server.py says it listens within the bound")
        .unwrap();
    let ready = ready.expect("server.py exited before listening");
    // The server binds port 0 itself and names the port it got: no window for a race.
    let addr: SocketAddr = ready
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("server.py did not name its address: {ready}"));
    PyServer {
        addr,
        _child: child,
        _dir: dir,
    }
}

fn py_service(server: SocketAddr, ca: &TestCa) -> ServiceConfig {
    let mut svc = service("py", format!("https://localhost:{}", server.port()));
    svc.protocol = UpstreamProtocol::Http3;
    svc.tls.roots = vec![ca.der()];
    svc
}

async fn gateway(mesh: &Mesh, svc: ServiceConfig) -> Running {
    let up = upstream::start().await;
    let mut cfg = config(mesh, up.addr);
    cfg.policy.services.push(svc);
    Running::start(cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_streams_cross_to_an_aioquic_server() {
    let Some(python) = python() else { return };
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let py = py_server(&python, &ca, "h3").await;
    let gw = gateway(&mesh, py_service(py.addr, &ca)).await;
    let dev = gw.dev.unwrap();

    // 256 KiB each way, over HTTP/1.1 from the agent.
    let body = Bytes::from(support::upstream::pattern(256 * 1024));
    let (status, seen, echoed) = http_get(dev, "/echo?x=1", &AS_ALICE, Some(body.clone())).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&echoed));
    assert_eq!(seen["x-server"], "aioquic");
    assert_eq!(seen["x-seen-method"], "POST");
    assert_eq!(
        seen["x-seen-authority"],
        format!("localhost:{}", py.addr.port()).as_str()
    );
    assert_eq!(seen["x-seen-path"], "/echo?x=1");
    assert_eq!(seen["x-seen-host-header"], "no");
    assert_eq!(seen["x-seen-identity"], "spiffe://aimux.test/agent/alice");
    assert_eq!(seen["x-body-len"], "262144");
    assert_eq!(echoed, body);

    // Concurrent requests on the one connection.
    let mut calls = Vec::new();
    for i in 0..10 {
        calls.push(tokio::spawn(async move {
            let payload = Bytes::from(format!("request {i}"));
            let (status, _, echoed) =
                http_get(dev, "/echo", &AS_ALICE, Some(payload.clone())).await;
            assert_eq!((status, echoed), (200, payload));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }

    // A stream through the QUIC tunnel: each chunk after the first is sent only once the
    // previous one has reached the agent and it has asked for more (on another stream of
    // the same upstream connection).
    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;
    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "py", "GET", "/stream?n=3");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let (envelope, mut got) = tokio::time::timeout(STEP, read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(envelope.outcome, Outcome::Forwarded);
    for i in 0..3 {
        if i > 0 {
            let (status, _, _) = http_get(dev, "/release", &AS_ALICE, Some(Bytes::new())).await;
            assert_eq!(status, 204);
        }
        let chunk = format!("chunk {i}\n");
        got = read_at_least(&mut recv, got, chunk.len()).await;
        assert_eq!(got, chunk.as_bytes());
        got = BytesMut::new();
    }
    let end = tokio::time::timeout(STEP, recv.read_chunk()).await.unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    gw.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aioquic_server_without_h3_is_reported_as_such() {
    let Some(python) = python() else { return };
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let py = py_server(&python, &ca, "hq-interop").await;
    let gw = gateway(&mesh, py_service(py.addr, &ca)).await;

    let (status, _, body) = http_get(gw.dev.unwrap(), "/echo", &AS_ALICE, None).await;
    let reason = String::from_utf8_lossy(&body);
    println!("refused: {reason}");
    assert_eq!(status, 502, "{reason}");
    assert!(reason.contains("refused ALPN h3"), "{reason}");
    gw.stop().await.unwrap();
}
