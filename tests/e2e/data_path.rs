//! The data path end to end, as a user runs it: `aimux gateway` and `aimux sidecar` as real
//! processes from one mesh file, certificates from `aimux certs`, a real HTTP/1.1 upstream,
//! and a real HTTP client talking to the sidecar's loopback listener. Every check runs over
//! both tunnels: mutual-TLS QUIC and HTTP/2 over mutual TLS over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use support::upstream::{self, SseGate, pattern, sha256_hex};
use support::{Pki, Proc, free_tcp, free_udp, wait_tcp};

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// A mesh of one gateway and one sidecar (agent `alice`), in processes of their own.
struct Mesh {
    dir: tempfile::TempDir,
    pki: Pki,
    config: String,
    gateway: Option<Proc>,
    sidecar: Proc,
    listener: SocketAddr,
    admin: SocketAddr,
    sse: Option<SseGate>,
    client: Client<HttpConnector, Body>,
}

impl Mesh {
    /// `transport` is the agent's tunnel: "quic" or "h2".
    async fn start(transport: &str) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path(), "e2e.test", &["alice"]);
        let (upstream, sse) = upstream::start().await;
        let (quic, h2, admin, listener) = (free_udp(), free_tcp(), free_tcp(), free_tcp());
        let config = dir.path().join("mesh.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[mesh]
trust_domain = "e2e.test"
certs = "pki"

[gateway]
quic = "{quic}"
h2 = "{h2}"
admin = "{admin}"

[[agent]]
name = "alice"
transport = "{transport}"
listeners = [{{ listen = "{listener}", service = "upstream" }}]

[[service]]
name = "upstream"
upstreams = ["http://{upstream}"]

[[access]]
from = ["alice"]
to = ["upstream"]
"#
            ),
        )
        .unwrap();
        let config = config.to_str().unwrap().to_owned();
        let gateway = start_gateway(&config, dir.path(), admin);
        let sidecar = Proc::spawn(
            "sidecar",
            &["sidecar", "--config", &config, "--agent", "alice"],
            dir.path(),
        );
        wait_tcp(listener, "the sidecar");
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        let mesh = Mesh {
            dir,
            pki,
            config,
            gateway: Some(gateway),
            sidecar,
            listener,
            admin,
            sse: Some(sse),
            client,
        };
        mesh.wait_until_forwarding().await;
        mesh
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    async fn send(&self, req: Request<Body>) -> Response<hyper::body::Incoming> {
        tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .expect("request timed out")
            .expect("request failed")
    }

    async fn get(&self, path: &str) -> (StatusCode, Bytes) {
        let req = Request::get(self.url(path)).body(empty()).unwrap();
        let resp = self.send(req).await;
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    }

    /// The sidecar connects in the background; wait until a request goes through.
    async fn wait_until_forwarding(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get("/ready-probe").await;
            if status == StatusCode::OK {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mesh never forwarded: {status} {body:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn start_gateway(config: &str, dir: &Path, admin: SocketAddr) -> Proc {
    let gateway = Proc::spawn("gateway", &["gateway", "--config", config], dir);
    wait_tcp(admin, "the gateway");
    gateway
}

fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

fn full(data: Vec<u8>) -> Body {
    Full::new(Bytes::from(data)).boxed()
}

/// A body with no declared length (HTTP/1.1 chunked), sent in 64 KiB pieces.
fn chunked(data: Vec<u8>) -> Body {
    let data = Bytes::from(data);
    let pieces: Vec<Bytes> = data.chunks(64 * 1024).map(|c| data.slice_ref(c)).collect();
    BodyExt::boxed(StreamBody::new(
        futures_util::stream::iter(pieces).map(|b| Ok(Frame::data(b))),
    ))
}

async fn bodies_arrive_byte_identical_in_both_directions(transport: &str) {
    let mesh = Mesh::start(transport).await;
    type MakeBody = fn(Vec<u8>) -> Body;
    let cases: [(&str, usize, MakeBody); 4] = [
        ("empty", 0, full),
        ("small", 1234, full),
        ("chunked", 3 * 1024 * 1024 + 17, chunked),
        ("100 MB", 100 * 1024 * 1024, chunked),
    ];
    for (name, len, make) in cases {
        let data = pattern(len);
        let expected = format!("{len} {}", sha256_hex(&data));
        let req = Request::post(mesh.url("/sink")).body(make(data)).unwrap();
        let resp = mesh.send(req).await;
        assert_eq!(resp.status(), StatusCode::OK, "{name} upload");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            expected,
            "{name}: upstream received other bytes"
        );

        let (status, body) = mesh.get(&format!("/source?len={len}")).await;
        assert_eq!(status, StatusCode::OK, "{name} download");
        assert_eq!(body.len(), len, "{name} download length");
        assert_eq!(
            sha256_hex(&body),
            sha256_hex(&pattern(len)),
            "{name}: agent received other bytes"
        );
    }
}

async fn upstream_learns_the_verified_identity_not_the_claimed_one(transport: &str) {
    let mesh = Mesh::start(transport).await;
    let req = Request::post(mesh.url("/anything"))
        .header("x-aimux-identity", "spiffe://e2e.test/agent/mallory")
        .body(full(b"hi".to_vec()))
        .unwrap();
    let resp = mesh.send(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["x-aimux-identity"],
        "spiffe://e2e.test/agent/alice"
    );
}

async fn a_thousand_concurrent_requests_over_one_sidecar_connection(transport: &str) {
    let mesh = Mesh::start(transport).await;
    let requests = (0..1000).map(|i| {
        let body = format!("request {i}").into_bytes();
        let req = Request::post(mesh.url("/echo"))
            .body(full(body.clone()))
            .unwrap();
        let client = mesh.client.clone();
        async move {
            let resp = client.request(req).await.expect("request failed");
            assert_eq!(resp.status(), StatusCode::OK, "request {i}");
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(got, body, "request {i}");
        }
    });
    let all = futures_util::future::join_all(requests);
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("1,000 requests did not finish in 120 s");
}

async fn sse_events_reach_the_agent_before_the_next_is_written(transport: &str) {
    let mut mesh = Mesh::start(transport).await;
    let mut gate = mesh.sse.take().unwrap();
    let req = Request::get(mesh.url("/sse")).body(empty()).unwrap();
    let resp = mesh.send(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut received = String::new();
    for i in 0..5 {
        // The upstream writes event i only now; event i+1 only after we have seen event i.
        gate.release().await;
        assert_eq!(gate.written.recv().await, Some(i));
        let want = format!("data: event {i}\n\n");
        while !received.contains(&want) {
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .unwrap_or_else(|_| {
                    panic!("event {i} was written upstream but never reached the agent")
                })
                .expect("stream ended early")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                received.push_str(&String::from_utf8_lossy(&data));
            }
        }
        assert!(!received.contains(&format!("event {}", i + 1)));
    }
}

async fn revoked_agent_is_cut_off_and_stays_out(transport: &str) {
    let mesh = Mesh::start(transport).await;
    mesh.pki.revoke("alice");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = mesh.get("/after-revoke").await;
        if status != StatusCode::OK {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked agent could still reach the upstream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It cannot come back: later requests fail too.
    let (status, _) = mesh.get("/still-revoked").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let gateway_log = mesh.gateway.as_ref().unwrap().log();
    assert!(
        gateway_log.contains("revoked"),
        "gateway log:\n{gateway_log}"
    );
    let sidecar_log = mesh.sidecar.log();
    assert!(
        sidecar_log.contains("revoked"),
        "sidecar log:\n{sidecar_log}"
    );
}

async fn sidecar_survives_a_gateway_restart(transport: &str) {
    let mut mesh = Mesh::start(transport).await;
    mesh.gateway.take().unwrap().kill();

    // During the outage: a clear 503, and no request hangs.
    let started = Instant::now();
    let (status, body) = mesh.get("/during-outage").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("gateway"), "503 should say why: {body}");
    assert!(started.elapsed() < Duration::from_secs(30));

    mesh.gateway = Some(start_gateway(&mesh.config, mesh.dir.path(), mesh.admin));
    mesh.wait_until_forwarding().await;
    let (status, _) = mesh.get("/after-restart").await;
    assert_eq!(status, StatusCode::OK);
}

/// Each check, once per tunnel.
macro_rules! over_both_tunnels {
    ($($check:ident),* $(,)?) => {
        mod quic {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check("quic").await
                }
            )*
        }
        mod h2 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check("h2").await
                }
            )*
        }
    };
}

over_both_tunnels!(
    bodies_arrive_byte_identical_in_both_directions,
    upstream_learns_the_verified_identity_not_the_claimed_one,
    a_thousand_concurrent_requests_over_one_sidecar_connection,
    sse_events_reach_the_agent_before_the_next_is_written,
    revoked_agent_is_cut_off_and_stays_out,
    sidecar_survives_a_gateway_restart,
);
