//! Intent-aware policy end to end, as a user runs it: `aimux gateway` and two `aimux
//! sidecar` processes from one mesh file, agents sending real MCP JSON-RPC requests that the
//! sidecars sniff, the gateway deciding on the certificate-proven identity and the intent,
//! and the mesh file edited while requests flow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::{Pki, Proc, free_tcp, free_udp, wait_tcp};

/// Gateway, sidecars of `alice` and `bob` (both addressing service `tools`), and an
/// upstream that echoes request bodies.
struct PolicyMesh {
    dir: tempfile::TempDir,
    config: PathBuf,
    template: String,
    gateway: Proc,
    _sidecars: Vec<Proc>,
    listeners: [SocketAddr; 2],
    client: Client<HttpConnector, Full<Bytes>>,
}

const ALICE: usize = 0;
const BOB: usize = 1;

impl PolicyMesh {
    /// `policy` is the mesh file's routes, access rules and limits (TOML).
    async fn start(policy: &str) -> PolicyMesh {
        let dir = tempfile::tempdir().unwrap();
        Pki::new(dir.path(), "policy.test", &["alice", "bob"]);
        let (upstream, _sse) = support::upstream::start().await;
        std::mem::forget(_sse);
        let (quic, admin) = (free_udp(), free_tcp());
        let listeners = [free_tcp(), free_tcp()];
        let template = format!(
            r#"
[mesh]
trust_domain = "policy.test"
certs = "pki"

[gateway]
quic = "{quic}"
admin = "{admin}"

[[agent]]
name = "alice"
listeners = [{{ listen = "{a}", service = "tools" }}]

[[agent]]
name = "bob"
listeners = [{{ listen = "{b}", service = "tools" }}]

[[service]]
name = "tools"
upstreams = ["http://{upstream}"]

[[service]]
name = "other"
upstreams = ["http://{upstream}/other"]
"#,
            a = listeners[ALICE],
            b = listeners[BOB],
        );
        let config = dir.path().join("mesh.toml");
        std::fs::write(&config, format!("{template}{policy}")).unwrap();
        let c = config.to_str().unwrap();
        let gateway = Proc::spawn("gateway", &["gateway", "--config", c], dir.path());
        wait_tcp(admin, "the gateway");
        let sidecars = ["alice", "bob"]
            .iter()
            .map(|agent| {
                Proc::spawn(
                    agent,
                    &["sidecar", "--config", c, "--agent", agent],
                    dir.path(),
                )
            })
            .collect();
        for l in listeners {
            wait_tcp(l, "a sidecar");
        }
        let mesh = PolicyMesh {
            config,
            template,
            gateway,
            _sidecars: sidecars,
            listeners,
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            dir,
        };
        mesh.wait_until_connected().await;
        mesh
    }

    /// An MCP `tools/call` (streamable HTTP, revision 2025-06-18) from `agent`.
    async fn call_tool(&self, agent: usize, tool: &str) -> (StatusCode, String) {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"q":"x"}}}}}}"#
        );
        let req = Request::post(format!("http://{}/mcp", self.listeners[agent]))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .header("mcp-session-id", "3f2a")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed");
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Until the sidecars are connected, they answer 503 themselves.
    async fn wait_until_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for agent in [ALICE, BOB] {
            loop {
                let (status, body) = self.call_tool(agent, "probe").await;
                if status != StatusCode::SERVICE_UNAVAILABLE {
                    break;
                }
                assert!(Instant::now() < deadline, "sidecar never connected: {body}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Replaces the policy part of the mesh file (write to a temporary file, then rename,
    /// as editors do).
    fn edit_policy(&self, policy: &str) {
        write_atomically(&self.config, &format!("{}{policy}", self.template));
    }
}

fn write_atomically(path: &Path, contents: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const TOOL_A_ONLY: &str = r#"
[[access]]
name = "alice-may-use-tool-a"
from = ["alice"]
to = ["tools"]
intents = ["mcp tools/call a"]

[[access]]
name = "bob-other-only"
from = ["bob"]
to = ["other"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identity_may_call_tool_a_not_b_and_another_is_denied_the_service() {
    let mesh = PolicyMesh::start(TOOL_A_ONLY).await;

    let (status, body) = mesh.call_tool(ALICE, "a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains(r#""name":"a""#),
        "the upstream echoes the request: {body}"
    );

    let (status, body) = mesh.call_tool(ALICE, "b").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("`mcp tools/call b`") && body.contains("no access rule allows it"),
        "{body}"
    );

    let (status, body) = mesh.call_tool(BOB, "a").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("spiffe://policy.test/agent/bob"), "{body}");

    // A deny rule is named in the answer.
    mesh.edit_policy(&format!(
        "{TOOL_A_ONLY}\n[[access]]\nname = \"no-tool-a-today\"\nfrom = [\"*\"]\nto = [\"tools\"]\nintents = [\"mcp tools/call a\"]\naction = \"deny\"\n"
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = mesh.call_tool(ALICE, "a").await;
        if status == StatusCode::FORBIDDEN {
            assert!(
                body.contains("denied by access rule `no-tool-a-today`"),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload never took effect: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = &mesh.dir;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_steady_load_fail_no_request() {
    let mesh = Arc::new(PolicyMesh::start(TOOL_A_ONLY).await);
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Instant::now() + Duration::from_secs(4);
    // Four clients, each a request at a time, bounded by time and count.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (mesh, failures, done) = (mesh.clone(), failures.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop && n < 5_000 {
                let (status, body) = mesh.call_tool(ALICE, "a").await;
                if status != StatusCode::OK {
                    eprintln!("failed: {status} {body}");
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    // Valid edits (a new route and service list order, a new rule), then an invalid one,
    // which must be rejected while the previous configuration keeps serving.
    let edits = [
        format!(
            "{TOOL_A_ONLY}\n[[route]]\nname = \"b-elsewhere\"\nmatch = {{ intent = \"mcp tools/call b\" }}\nto = \"other\"\n"
        ),
        format!(
            "{TOOL_A_ONLY}\n[[access]]\nfrom = [\"bob\"]\nto = [\"tools\"]\nintents = [\"mcp tools/list\"]\n"
        ),
        format!(
            "{TOOL_A_ONLY}\n[[route]]\nmatch = {{ intent = \"mcp tools/call b\" }}\nto = \"no-such-service\"\n"
        ),
        TOOL_A_ONLY.to_owned(),
    ];
    for edit in &edits {
        tokio::time::sleep(Duration::from_millis(700)).await;
        mesh.edit_policy(edit);
    }
    for c in clients {
        c.await.unwrap();
    }
    let (done, failures) = (
        done.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(done > 100, "only {done} requests ran");
    assert_eq!(
        failures, 0,
        "{failures} of {done} requests failed across reloads"
    );
    let log = mesh.gateway.log();
    assert!(
        log.matches("mesh file reloaded").count() >= 3,
        "expected three applied reloads:\n{log}"
    );
    assert!(
        log.contains("mesh file edit rejected") && log.contains("no-such-service"),
        "the invalid edit must be rejected with its error:\n{log}"
    );
}
