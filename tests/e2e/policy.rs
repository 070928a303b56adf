//! Intent-aware policy end to end, as a user runs it: `aimux gateway` and two `aimux
//! sidecar` processes from one mesh file, agents sending real MCP JSON-RPC requests that the
//! sidecars sniff, the gateway deciding on the certificate-proven identity and the intent,
//! and the mesh file edited while requests flow.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

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
audit = "audit.log"

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

    /// The gateway's audit log so far, one JSON object per line.
    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad audit line {l:?}: {e}"))
            })
            .collect()
    }

    /// The status, the `retry-after` header and the body of a tool call.
    async fn call_tool_full(
        &self,
        agent: usize,
        tool: &str,
    ) -> (StatusCode, Option<String>, String) {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}"}}}}"#
        );
        let req = Request::post(format!("http://{}/mcp", self.listeners[agent]))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.client.request(req).await.unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, retry, String::from_utf8_lossy(&body).into_owned())
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
    eprintln!("{done} requests, {failures} failed, across four edits of the mesh file");
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

const LIMITED: &str = r#"
[[access]]
from = ["alice"]
to = ["tools"]
intents = ["mcp tools/call a"]

[[access]]
from = ["bob"]
to = ["tools"]

[[rate_limit]]
from = ["bob"]
rate = 2
burst = 3

[isolation]
window = "3s"
min_requests = 8
max_bad_ratio = 0.5
cooldown = "2s"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_isolation_trigger_and_recover() {
    let mesh = PolicyMesh::start(LIMITED).await;
    // The connection probes spent some of bob's tokens: let the bucket fill again.
    tokio::time::sleep(Duration::from_millis(1600)).await;

    // Rate limit: a burst of three, then 429 with a Retry-After, then tokens again. The
    // bucket refills 2 tokens/s while the calls run, so how many more pass depends on how
    // long they took: at most one per 500 ms elapsed (and one for the edge).
    let mut statuses = Vec::new();
    let mut retry = None;
    let burst = Instant::now();
    while retry.is_none() && statuses.len() < 20 {
        let (status, r, body) = mesh.call_tool_full(BOB, "a").await;
        statuses.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(
                body.contains("rate limit of 2 requests/s (burst 3)"),
                "{body}"
            );
            retry = Some(r);
        }
    }
    let refilled = (burst.elapsed().as_secs_f64() * 2.0).floor() as usize;
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    let passed = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        passed <= 3 + refilled + 1,
        "{statuses:?} in {:?}",
        burst.elapsed()
    );
    assert_eq!(retry, Some(Some("1".to_owned())), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(mesh.call_tool_full(BOB, "a").await.0, StatusCode::OK);

    // Isolation: alice keeps calling a tool she may not; past eight requests with at
    // least half denied she is cut off, even for the tool she may call...
    for _ in 0..8 {
        assert_eq!(
            mesh.call_tool_full(ALICE, "b").await.0,
            StatusCode::FORBIDDEN
        );
    }
    let (status, retry, body) = mesh.call_tool_full(ALICE, "a").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("were denied or failed"), "{body}");
    assert!(retry.is_some(), "an isolation says when it ends");
    // ...and bob is not.
    assert_eq!(mesh.call_tool_full(BOB, "a").await.0, StatusCode::OK);
    // After the cool-down she is back.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, _, body) = mesh.call_tool_full(ALICE, "a").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(mesh.gateway.log().contains("caller isolated"));

    // Every decision is in the audit log, with the rule, intent and identity.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let audit = mesh.audit();
        let decisions: Vec<&str> = audit
            .iter()
            .filter_map(|e| e["decision"].as_str())
            .collect();
        let has = |d: &str| decisions.contains(&d);
        if has("allow") && has("deny") && has("rate_limited") && has("isolated") {
            let denied = audit
                .iter()
                .find(|e| e["decision"] == "deny" && e["intent"] == "mcp tools/call b")
                .unwrap();
            assert_eq!(denied["identity"], "spiffe://policy.test/agent/alice");
            assert_eq!(denied["destination"], "tools");
            assert_eq!(denied["status"], 403);
            let allowed = audit.iter().find(|e| e["decision"] == "allow").unwrap();
            assert!(
                allowed["rule"].as_str().unwrap().starts_with('#'),
                "{allowed}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "audit log incomplete: {decisions:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
