//! Test support: a throwaway mesh CA, a small test gateway on real QUIC or real HTTP/2
//! over TLS/TCP with the mesh's TLS configuration (`gateway.rs`), and HTTP clients (hyper,
//! and raw TCP for pipelining).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod gateway;
pub mod http_client;

use std::net::SocketAddr;
use std::time::Duration;

use aimux_certs::time::OffsetDateTime;
use aimux_certs::tls::MeshTrust;
use aimux_certs::{
    Authority, InitParams, IssueParams, IssuedCert, SpiffeId, TrustDomain, Validity, WorkloadName,
};
use aimux_sidecar::{GatewayTarget, ListenerConfig, SidecarConfig, Transport, TunnelSettings};
use aimux_wire::{HttpResponseHead, ResponseEnvelope};
use tokio::task::JoinHandle;

#[allow(unused_imports)]
pub use gateway::{Closed, GatewayStream, Handler, ReadErr, Seen, TestGateway, handler};

pub const DOMAIN: &str = "example.org";

/// Logs go to the test output with `RUST_LOG=aimux_sidecar=debug cargo test`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A CA directory with a gateway `edge`, a second gateway `impostor` and an agent `alice`.
pub struct Mesh {
    dir: tempfile::TempDir,
    ca: Authority,
    pub gateway: IssuedCert,
    pub impostor: IssuedCert,
    pub alice: IssuedCert,
}

fn name(s: &str) -> WorkloadName {
    WorkloadName::new(s).unwrap()
}

impl Mesh {
    pub fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let params = InitParams::new(TrustDomain::new(DOMAIN).unwrap(), now).unwrap();
        let ca = Authority::init(dir.path(), &params, now).unwrap();
        let days = Validity::days_from(now, 30).unwrap();
        let gateway = ca
            .issue(&IssueParams::gateway(name("edge"), vec![], vec![], days))
            .unwrap();
        let impostor = ca
            .issue(&IssueParams::gateway(
                name("impostor"),
                vec![],
                vec![],
                days,
            ))
            .unwrap();
        let alice = ca.issue(&IssueParams::agent(name("alice"), days)).unwrap();
        Mesh {
            dir,
            ca,
            gateway,
            impostor,
            alice,
        }
    }

    pub fn trust(&self) -> MeshTrust {
        MeshTrust::load(&self.dir.path().join("ca.crt")).unwrap()
    }

    pub fn crl_path(&self) -> std::path::PathBuf {
        self.dir.path().join("crl.pem")
    }

    pub fn alice_id(&self) -> SpiffeId {
        self.alice.id.clone()
    }

    pub fn revoke_alice(&self) {
        self.ca
            .revoke(&name("alice"), OffsetDateTime::now_utc())
            .unwrap();
    }

    /// A sidecar configuration for alice: listeners for `echo` and `tools` and a proxy
    /// listener, all on OS-chosen loopback ports, with short waits so tests stay fast.
    pub fn sidecar_config(&self, transport: Transport, gateway: SocketAddr) -> SidecarConfig {
        let mut tunnel = TunnelSettings::default();
        tunnel.connect_wait = Duration::from_secs(2);
        tunnel.handshake_timeout = Duration::from_secs(1);
        tunnel.revoked_backoff = Duration::from_secs(20);
        tunnel.shutdown_grace = Duration::from_secs(2);
        let any = |service: &str| ListenerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            service: service.to_owned(),
            kind: Default::default(),
        };
        SidecarConfig {
            identity: self.alice.identity().unwrap(),
            trust: self.trust(),
            gateway: GatewayTarget {
                transport,
                addr: gateway,
                server_name: "gateway.test".into(),
                identity: self.gateway.id.clone(),
            },
            listeners: vec![any("echo"), any("tools")],
            proxy: Some("127.0.0.1:0".parse().unwrap()),
            tunnel,
            inbound: None,
        }
    }
}

/// Echoes the request body back, streaming, under a `forwarded` 200 whose headers report
/// what the envelope said. A request `content-length` is echoed too.
pub fn echo() -> Handler {
    handler(|mut s: GatewayStream| async move {
        let env = &s.envelope;
        let http = env.http.clone().expect("an HTTP request");
        let intent = env.intent.clone().expect("an intent");
        let names: Vec<&str> = http.headers.iter().map(|h| h.name.as_ref()).collect();
        let mut head = HttpResponseHead::new(200)
            .with_header("x-echo-destination", env.destination.clone())
            .with_header("x-echo-identity", env.identity.clone().unwrap_or_default())
            .with_header("x-echo-peer", s.peer.to_string())
            .with_header(
                "x-echo-intent",
                format!(
                    "{} {} {}",
                    intent.protocol.as_str(),
                    intent.operation,
                    intent.target
                ),
            )
            .with_header("x-echo-method", http.method.to_string())
            .with_header("x-echo-authority", http.authority.clone())
            .with_header("x-echo-path", http.path.clone())
            .with_header("x-echo-headers", names.join(","))
            .with_header(
                "x-echo-trace",
                env.trace
                    .as_ref()
                    .map(|t| t.traceparent())
                    .unwrap_or_default(),
            );
        if let Some(len) = http.header("content-length") {
            head = head.with_header("content-length", len.clone());
        }
        s.respond(&ResponseEnvelope::forwarded(head)).await;
        while let Some(chunk) = s.read_chunk().await.unwrap() {
            s.write(chunk).await;
        }
        s.finish();
    })
}

/// Answers every request with `outcome` and `reason`, without an HTTP head.
pub fn outcome(outcome: aimux_wire::Outcome, reason: &'static str) -> Handler {
    handler(move |mut s: GatewayStream| async move {
        s.respond(&ResponseEnvelope::new(outcome, reason)).await;
        s.finish();
    })
}

/// A running sidecar for alice, connected to a test gateway.
pub struct Harness {
    pub mesh: Mesh,
    pub gateway: TestGateway,
    pub stats: aimux_sidecar::StatsHandle,
    pub listeners: Vec<(SocketAddr, Option<String>)>,
    pub shutdown: tokio_util::sync::CancellationToken,
    pub run: JoinHandle<Result<(), aimux_sidecar::SidecarError>>,
}

impl Harness {
    /// Starts a test gateway on `transport` with `handler` and a sidecar connected to it.
    pub async fn start(transport: Transport, handler: Handler) -> Harness {
        Self::start_with(transport, handler, |_| {}).await
    }

    /// Like [`Harness::start`], letting the test adjust the sidecar configuration.
    pub async fn start_with(
        transport: Transport,
        handler: Handler,
        tweak: impl FnOnce(&mut SidecarConfig),
    ) -> Harness {
        init_tracing();
        let mesh = Mesh::new();
        let any = "127.0.0.1:0".parse().unwrap();
        let gateway = TestGateway::start(&mesh, transport, any, handler).await;
        let mut config = mesh.sidecar_config(transport, gateway.addr);
        tweak(&mut config);
        let sidecar = aimux_sidecar::Sidecar::bind(config).await.unwrap();
        let stats = sidecar.stats_handle();
        let listeners = sidecar.listener_addrs();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let run = tokio::spawn(sidecar.run(shutdown.clone()));
        let harness = Harness {
            mesh,
            gateway,
            stats,
            listeners,
            shutdown,
            run,
        };
        harness
            .wait_for(aimux_sidecar::ConnectionState::Connected)
            .await;
        harness
    }

    /// The listener standing in for `service`.
    pub fn listener(&self, service: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(_, s)| s.as_deref() == Some(service))
            .map(|(a, _)| *a)
            .expect("no such listener")
    }

    /// The generic proxy listener.
    pub fn proxy(&self) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(_, s)| s.is_none())
            .map(|(a, _)| *a)
            .expect("no proxy listener")
    }

    /// Waits (bounded) until the connection state is `state`.
    pub async fn wait_for(
        &self,
        state: aimux_sidecar::ConnectionState,
    ) -> aimux_sidecar::SidecarStats {
        tokio::time::timeout(
            Duration::from_secs(15),
            self.stats.wait_for_state(|s| s == state),
        )
        .await
        .unwrap_or_else(|_| panic!("never reached {state}: {:?}", self.stats.snapshot()))
    }

    /// Waits until the gateway has seen a request for `path` (skipping others).
    pub async fn gateway_seen_path(&mut self, path: &str) {
        loop {
            let seen = self.gateway.next_seen().await;
            if seen.envelope.http.as_ref().is_some_and(|h| h.path == path) {
                return;
            }
        }
    }

    /// Shuts the sidecar down and checks that it stops in bounded time.
    pub async fn stop(self) -> (Mesh, TestGateway) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.run)
            .await
            .expect("the sidecar did not stop in time")
            .unwrap()
            .unwrap();
        (self.mesh, self.gateway)
    }
}

/// Runs the async test function `$name(transport)` once per tunnel transport, as the tests
/// `$name::quic` and `$name::h2`.
macro_rules! over_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn quic() {
                super::$name(aimux_sidecar::Transport::Quic).await
            }
            #[tokio::test]
            async fn h2() {
                super::$name(aimux_sidecar::Transport::H2).await
            }
        }
    )+};
}
pub(crate) use over_both;
