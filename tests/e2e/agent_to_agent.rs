//! Agent-to-agent delivery, as a user runs it: `aimux gateway` and three `aimux sidecar`
//! processes from one mesh file. Service `bob` is agent bob (`agent = "bob"`): requests
//! for it travel, still in their envelopes, over bob's own sidecar connection on a stream
//! the gateway opens, and bob's sidecar calls bob on loopback.
//!
//! Bob is an A2A agent (JSON-RPC `message/send` and `message/stream`, A2A 0.3 §7) and a TCP
//! service. Alice calls him; eve passes the gateway's access rules but not bob's own allow
//! list. Two settings:
//!
//! - on loopback (no privileges needed);
//! - with bob and his sidecar in a network namespace of their own, bob listening only on
//!   that namespace's loopback and an nftables rule dropping every inbound connection: the
//!   sidecar's outbound QUIC connection is the only way in. Needs root (and `nft`); skipped
//!   with a reason otherwise, unless AIMUX_REQUIRE_PRIVILEGED_TESTS=1 (set by CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use aimux_bench::netem::NetNs;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::a2a::{self, A2aAgent, STREAM_EVENTS};
use support::upstream::pattern;
use support::{Pki, Proc, free_tcp, free_udp, wait_tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TRUST_DOMAIN: &str = "a2a.test";

/// The agent's own ports: where bob's sidecar delivers.
struct BobPorts {
    http: SocketAddr,
    tcp: SocketAddr,
}

struct Mesh {
    _dir: tempfile::TempDir,
    _gateway: Proc,
    _callers: Vec<Proc>,
    bob_sidecar: Proc,
    alice_http: SocketAddr,
    alice_tcp: SocketAddr,
    eve_http: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Starts the gateway (QUIC on `gateway`), the callers' sidecars on loopback, and bob's
/// sidecar (inside `netns` if given).
fn start(gateway: SocketAddr, bob: &BobPorts, netns: Option<&str>) -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    Pki::new(dir.path(), TRUST_DOMAIN, &["alice", "eve", "bob"]);
    let admin = free_tcp();
    let (alice_http, alice_tcp, eve_http) = (free_tcp(), free_tcp(), free_tcp());
    let config = dir.path().join("mesh.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mesh]
trust_domain = "{TRUST_DOMAIN}"
certs = "pki"

[gateway]
quic = "{gateway}"
admin = "{admin}"

[[agent]]
name = "alice"
listeners = [
  {{ listen = "{alice_http}", service = "bob" }},
  {{ listen = "{alice_tcp}", service = "bob-tcp", protocol = "tcp" }},
]

[[agent]]
name = "eve"
listeners = [{{ listen = "{eve_http}", service = "bob" }}]

[[agent]]
name = "bob"
inbound = {{ http = "{bob_http}", tcp = "{bob_tcp}", allow = ["alice"] }}

[[service]]
name = "bob"
agent = "bob"

[[service]]
name = "bob-tcp"
agent = "bob"

# The gateway lets both callers through; bob's own allow list admits only alice.
[[access]]
from = ["alice", "eve"]
to = ["bob", "bob-tcp"]
"#,
            bob_http = bob.http,
            bob_tcp = bob.tcp,
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let gateway = Proc::spawn("gateway", &["gateway", "--config", c], dir.path());
    wait_tcp(admin, "the gateway");
    let bob_args = ["sidecar", "--config", c, "--agent", "bob"];
    let bob_sidecar = match netns {
        Some(ns) => Proc::spawn_in_netns("bob", ns, &bob_args, dir.path()),
        None => Proc::spawn("bob", &bob_args, dir.path()),
    };
    let callers = ["alice", "eve"]
        .iter()
        .map(|a| Proc::spawn(a, &["sidecar", "--config", c, "--agent", a], dir.path()))
        .collect();
    for l in [alice_http, alice_tcp, eve_http] {
        wait_tcp(l, "a sidecar listener");
    }
    Mesh {
        _dir: dir,
        _gateway: gateway,
        _callers: callers,
        bob_sidecar,
        alice_http,
        alice_tcp,
        eve_http,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

fn send_message(id: u32, text: &str) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "message/send",
        "params": {"message": {
            "kind": "message", "role": "user", "messageId": format!("m-{id}"),
            "parts": [{"kind": "text", "text": text}],
        }},
    })
    .to_string()
}

fn post(addr: SocketAddr, body: String) -> Request<Full<Bytes>> {
    Request::post(format!("http://{addr}/"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// Sends `message/send` until bob answers (the sidecars connect in the background), and
/// returns the answer.
async fn first_answer(mesh: &Mesh, body: &str) -> (StatusCode, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = mesh
            .client
            .request(post(mesh.alice_http, body.to_owned()))
            .await;
        if let Ok(response) = response {
            let status = response.status();
            let text = response.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&text).into_owned();
            if status == StatusCode::OK || Instant::now() > deadline {
                return (status, text);
            }
        }
        assert!(Instant::now() < deadline, "bob never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything both settings must show.
async fn agents_talk(
    mesh: &Mesh,
    bob: &mut A2aAgent,
    bob_tcp_seen: &mut tokio::sync::mpsc::Receiver<usize>,
) {
    let alice = format!("spiffe://{TRUST_DOMAIN}/agent/alice");

    // message/send: bob gets alice's bytes unchanged and her certificate-proven identity.
    let body = send_message(1, "hello bob");
    let (status, answer) = first_answer(mesh, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["id"], 1);
    assert_eq!(
        answer["result"]["parts"][0]["text"],
        format!("{alice} said: hello bob")
    );
    let received = loop {
        let r = bob.received.recv().await.unwrap();
        if r.body == body.as_bytes() {
            break r;
        }
    };
    assert_eq!(received.identity.as_deref(), Some(alice.as_str()));

    // message/stream: each event reaches alice before bob has written the next one.
    let stream = serde_json::json!({
        "jsonrpc": "2.0", "id": 2, "method": "message/stream",
        "params": {"message": {"kind": "message", "role": "user", "messageId": "m-2",
            "parts": [{"kind": "text", "text": "count to three"}]}},
    });
    let response = mesh
        .client
        .request(post(mesh.alice_http, stream.to_string()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let mut pending = String::new();
    for n in 0..STREAM_EVENTS {
        bob.release.send(()).await.unwrap();
        let event = loop {
            if let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                break event;
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .unwrap_or_else(|_| panic!("event {n} did not arrive"))
                .unwrap()
                .unwrap();
            if let Ok(data) = frame.into_data() {
                pending.push_str(std::str::from_utf8(&data).unwrap());
            }
        };
        let json: serde_json::Value =
            serde_json::from_str(event.trim().strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(json["result"]["metadata"]["n"], n, "{event}");
        assert_eq!(json["result"]["final"], n + 1 == STREAM_EVENTS);
        assert!(pending.is_empty(), "more than one event before its release");
    }
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest.is_empty());
    let streamed = bob.received.recv().await.unwrap();
    assert_eq!(streamed.body, stream.to_string().as_bytes());

    // Eve passes the gateway, but bob's sidecar refuses her: bob never sees the request.
    let refused = mesh
        .client
        .request(post(mesh.eve_http, send_message(3, "let me in")))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(refused.headers()["x-aimux-outcome"], "denied_by_policy");
    let text = refused.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains(&format!(
            "does not accept calls from spiffe://{TRUST_DOMAIN}/agent/eve"
        )),
        "{text}"
    );
    assert!(bob.received.try_recv().is_err(), "bob saw eve's request");

    // Raw TCP to bob: 256 KiB byte for byte, alice's FIN first, bob's answer after it.
    let data = pattern(256 * 1024);
    let mut tcp = TcpStream::connect(mesh.alice_tcp).await.unwrap();
    tcp.write_all(&data).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    let reversed: Vec<u8> = data.iter().rev().copied().collect();
    assert!(got == reversed, "the answer differs ({} bytes)", got.len());
    assert_eq!(bob_tcp_seen.recv().await, Some(data.len()));
}

/// Bob's TCP service: reads to the client's FIN, then answers with the bytes reversed and
/// closes; reports how many bytes it got.
fn tcp_reverser(listener: TcpListener) -> tokio::sync::mpsc::Receiver<usize> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut received = Vec::new();
                if tcp.read_to_end(&mut received).await.is_err() || received.is_empty() {
                    return;
                }
                received.reverse();
                let _ = tcp.write_all(&received).await;
                let _ = tcp.shutdown().await;
                let _ = tx.send(received.len()).await;
            });
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_call_each_other_through_their_sidecars_on_loopback() {
    let mut bob = a2a::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ports = BobPorts {
        http: bob.addr,
        tcp: tcp.local_addr().unwrap(),
    };
    let mut tcp_seen = tcp_reverser(tcp);
    let mut mesh = start(free_udp(), &ports, None);
    agents_talk(&mesh, &mut bob, &mut tcp_seen).await;

    // Bob's sidecar stops (SIGTERM: it closes its connection): alice is told bob is not
    // connected, at once.
    let pid = mesh.bob_sidecar.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let _ = mesh.bob_sidecar.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let response = mesh
            .client
            .request(post(mesh.alice_http, send_message(4, "are you there?")))
            .await
            .unwrap();
        let status = response.status();
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text).into_owned();
        if status == StatusCode::BAD_GATEWAY {
            break text;
        }
        assert!(Instant::now() < deadline, "still answered: {status} {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text.contains("agent `bob`"), "{text}");
    assert!(text.contains("is not connected to this gateway"), "{text}");
}

/// Skips (with the reason) unless the test may and must run.
fn privileged(why_not: Option<String>) -> bool {
    let Some(why) = why_not else { return true };
    assert!(
        std::env::var("AIMUX_REQUIRE_PRIVILEGED_TESTS").as_deref() != Ok("1"),
        "{why}; AIMUX_REQUIRE_PRIVILEGED_TESTS=1 forbids skipping"
    );
    eprintln!("skipped: {why}");
    false
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Host side 10.79.x.1, namespace side 10.79.x.2, on a veth pair.
const HOST_ADDR: &str = "10.79.0.1";
const NS_ADDR: &str = "10.79.0.2";

/// Drops every connection into the namespace that it did not start itself (loopback
/// excepted): bob's machine accepts nothing from outside.
const NO_INBOUND: &str = "table inet aimux_no_inbound {
  chain input {
    type filter hook input priority 0; policy drop;
    iif \"lo\" accept
    ct state established,related accept
  }
}
";

#[test]
fn agents_call_an_agent_whose_network_accepts_no_inbound_connections() {
    let tag = std::process::id() % 100_000;
    let ns = match NetNs::create(&format!("aimux-a2a-{tag}")) {
        Ok(ns) => ns,
        Err(e) => {
            privileged(Some(format!("cannot create a network namespace: {e}")));
            return;
        }
    };
    if Command::new("nft").arg("--version").output().is_err() {
        let why = "needs nft (Debian package nftables) for the no-inbound rule";
        privileged(Some(why.to_owned()));
        return;
    }
    let (host_if, ns_if) = (format!("a2a{tag}h"), format!("a2a{tag}n"));
    run(
        "ip",
        &[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ],
    );
    let _veth = VethGuard(host_if.clone());
    run("ip", &["link", "set", &ns_if, "netns", ns.name()]);
    run(
        "ip",
        &["addr", "add", &format!("{HOST_ADDR}/30"), "dev", &host_if],
    );
    run("ip", &["link", "set", &host_if, "up"]);
    let ns_addr = format!("{NS_ADDR}/30");
    run(
        "ip",
        &["-n", ns.name(), "addr", "add", &ns_addr, "dev", &ns_if],
    );
    run("ip", &["-n", ns.name(), "link", "set", &ns_if, "up"]);
    nft_in(ns.name(), NO_INBOUND);

    std::thread::scope(|scope| {
        // Bob and his TCP service live in the namespace, on its loopback only, on a
        // runtime whose thread entered it.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ns = &ns;
        let bob_thread = scope.spawn(move || {
            ns.enter_current_thread().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let bob = a2a::serve(TcpListener::bind("127.0.0.1:0").await.unwrap());
                let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let tcp_addr = tcp.local_addr().unwrap();
                let seen = tcp_reverser(tcp);
                ready_tx.send((bob, tcp_addr, seen)).unwrap();
                let _ = stop_rx.await;
            });
        });
        let (mut bob, tcp_addr, mut tcp_seen) =
            ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let ports = BobPorts {
            http: bob.addr,
            tcp: tcp_addr,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Nothing outside reaches into bob's namespace, whatever the port.
            let from_outside = tokio::time::timeout(
                Duration::from_millis(500),
                TcpStream::connect(format!("{NS_ADDR}:{}", bob.addr.port())),
            )
            .await;
            assert!(
                !matches!(from_outside, Ok(Ok(_))),
                "a connection into bob's namespace succeeded"
            );
            let gateway = std::net::UdpSocket::bind(format!("{HOST_ADDR}:0"))
                .unwrap()
                .local_addr()
                .unwrap();
            let mesh = start(gateway, &ports, Some(ns.name()));
            agents_talk(&mesh, &mut bob, &mut tcp_seen).await;
            let log = mesh.bob_sidecar.log();
            assert!(!log.contains("panicked"), "{log}");
        });
        let _ = stop_tx.send(());
        bob_thread.join().unwrap();
    });
}

fn nft_in(ns: &str, ruleset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.nft");
    std::fs::write(&file, ruleset).unwrap();
    run(
        "ip",
        &["netns", "exec", ns, "nft", "-f", file.to_str().unwrap()],
    );
}

/// Deletes the host end of the veth pair (which deletes both ends).
struct VethGuard(String);

impl Drop for VethGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}
