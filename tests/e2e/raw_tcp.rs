//! Raw TCP through the mesh, as a user runs it: a sidecar listener with `protocol = "tcp"`,
//! a service with a `tcp://` upstream, real `aimux gateway` and `aimux sidecar` processes,
//! over both tunnels. Each connection is one opaque stream: bytes arrive unchanged, and a
//! half-close in either direction reaches the other end while the other direction flows on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::upstream::pattern;
use support::{Pki, Proc, free_tcp, free_udp, wait_tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the test's TCP server saw of one connection.
#[derive(Debug)]
struct Seen {
    received: Vec<u8>,
}

/// A TCP server. Mode `echo_after_eof`: read until the client's FIN, then answer with the
/// bytes reversed and close. Otherwise (`banner_first`): send a banner and half-close at
/// once, then read until the client's FIN. Either way, report what was received.
async fn tcp_server(echo_after_eof: bool) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                if !echo_after_eof {
                    tcp.write_all(b"banner from the server").await.unwrap();
                    tcp.shutdown().await.unwrap();
                }
                let mut received = Vec::new();
                tcp.read_to_end(&mut received).await.unwrap();
                if echo_after_eof {
                    let reversed: Vec<u8> = received.iter().rev().copied().collect();
                    tcp.write_all(&reversed).await.unwrap();
                    tcp.shutdown().await.unwrap();
                }
                let _ = tx.send(Seen { received }).await;
            });
        }
    });
    (addr, rx)
}

struct RawMesh {
    _dir: tempfile::TempDir,
    _gateway: Proc,
    _sidecars: Vec<Proc>,
    alice_echo: SocketAddr,
    alice_banner: SocketAddr,
    bob_echo: SocketAddr,
}

async fn start(transport: &str, echo: SocketAddr, banner: SocketAddr) -> RawMesh {
    let dir = tempfile::tempdir().unwrap();
    Pki::new(dir.path(), "raw.test", &["alice", "bob"]);
    let (quic, h2, admin) = (free_udp(), free_tcp(), free_tcp());
    let (alice_echo, alice_banner, bob_echo) = (free_tcp(), free_tcp(), free_tcp());
    let config = dir.path().join("mesh.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[mesh]
trust_domain = "raw.test"
certs = "pki"

[gateway]
quic = "{quic}"
h2 = "{h2}"
admin = "{admin}"

[[agent]]
name = "alice"
transport = "{transport}"
listeners = [
  {{ listen = "{alice_echo}", service = "echo-tcp", protocol = "tcp" }},
  {{ listen = "{alice_banner}", service = "banner-tcp", protocol = "tcp" }},
]

[[agent]]
name = "bob"
transport = "{transport}"
listeners = [{{ listen = "{bob_echo}", service = "echo-tcp", protocol = "tcp" }}]

[[service]]
name = "echo-tcp"
upstreams = ["tcp://{echo}"]

[[service]]
name = "banner-tcp"
upstreams = ["tcp://{banner}"]

[[access]]
from = ["alice"]
to = ["echo-tcp", "banner-tcp"]
intents = ["tcp"]
"#
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let gateway = Proc::spawn("gateway", &["gateway", "--config", c], dir.path());
    wait_tcp(admin, "the gateway");
    let sidecars = ["alice", "bob"]
        .iter()
        .map(|a| Proc::spawn(a, &["sidecar", "--config", c, "--agent", a], dir.path()))
        .collect();
    for l in [alice_echo, alice_banner, bob_echo] {
        wait_tcp(l, "a sidecar listener");
    }
    RawMesh {
        _dir: dir,
        _gateway: gateway,
        _sidecars: sidecars,
        alice_echo,
        alice_banner,
        bob_echo,
    }
}

/// The next connection the server saw that carried bytes: the readiness probes of
/// `wait_tcp` (connect, then close) reach it too, as empty connections.
async fn next_with_data(seen: &mut mpsc::Receiver<Seen>) -> Seen {
    loop {
        let s = tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .expect("the server saw no connection")
            .expect("server gone");
        if !s.received.is_empty() {
            return s;
        }
    }
}

/// Connects, sends `data`, half-closes, and reads until the far end closes. Retries while
/// the sidecar is not yet connected to the gateway (it resets connections until then).
async fn exchange(addr: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.write_all(data).await?;
    tcp.shutdown().await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut got))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(got)
}

async fn raw_tcp_carries_bytes_and_half_closes(transport: &str) {
    let (echo, mut echo_seen) = tcp_server(true).await;
    let (banner, mut banner_seen) = tcp_server(false).await;
    let mesh = start(transport, echo, banner).await;

    // Client FIN first: the server sees every byte and the FIN, then answers on the still
    // open direction, and its FIN ends the client's read. A megabyte, byte for byte.
    let data = pattern(1 << 20);
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match exchange(mesh.alice_echo, &data).await {
            Ok(got) if !got.is_empty() => break got,
            other => {
                assert!(Instant::now() < deadline, "never carried: {other:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let reversed: Vec<u8> = data.iter().rev().copied().collect();
    assert!(got == reversed, "the answer differs ({} bytes)", got.len());
    assert_eq!(
        next_with_data(&mut echo_seen).await.received.len(),
        data.len()
    );

    // Server FIN first: the client reads the banner to its end while its own direction is
    // still open, and what it sends afterwards still reaches the server.
    let mut tcp = TcpStream::connect(mesh.alice_banner).await.unwrap();
    let mut banner_text = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut banner_text))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(banner_text, b"banner from the server");
    tcp.write_all(b"sent after the server's FIN").await.unwrap();
    tcp.shutdown().await.unwrap();
    let seen = next_with_data(&mut banner_seen).await;
    assert_eq!(seen.received, b"sent after the server's FIN");

    // Bob has no access rule for the service: his connection is reset, and the server
    // never sees it.
    let refused = exchange(mesh.bob_echo, b"let me in").await;
    assert!(
        refused.as_ref().map_or(true, Vec::is_empty),
        "bob got an answer: {refused:?}"
    );
    while let Ok(seen) = echo_seen.try_recv() {
        assert!(seen.received.is_empty(), "bob's bytes reached the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tcp_over_quic() {
    raw_tcp_carries_bytes_and_half_closes("quic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tcp_over_h2() {
    raw_tcp_carries_bytes_and_half_closes("h2").await;
}
