//! The WAN link emulator for real: two namespaces this test creates, TUN devices, and real
//! UDP and TCP sockets on each side. Needs root; without it the test says why and skips,
//! unless AIMUX_REQUIRE_PRIVILEGED_TESTS=1 (set by .ci/run) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use aimux_bench::netem::{ADDR_A, ADDR_B, LinkProfile, Loss, NetemError, WanLink};

fn start(tag: &str, profile: LinkProfile) -> Option<WanLink> {
    let prefix = format!("amxt{}{tag}", std::process::id());
    match WanLink::start(&prefix, profile) {
        Ok(link) => Some(link),
        Err(NetemError::NotPermitted)
            if std::env::var("AIMUX_REQUIRE_PRIVILEGED_TESTS").as_deref() != Ok("1") =>
        {
            eprintln!("SKIPPED: the WAN link test needs root (network namespaces, TUN devices)");
            None
        }
        Err(e) => panic!("cannot start the WAN link: {e}"),
    }
}

/// Sends `count` UDP probes A → B, echoed by B; returns the round-trip times of the replies.
/// A probe without a reply within `3 × RTT + 20 ms` counts as lost.
fn udp_probe(link: &WanLink, count: usize) -> Vec<Duration> {
    let wait = link.profile.rtt * 3 + Duration::from_millis(20);
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let echo = s.spawn(move || {
            link.b.enter_current_thread().unwrap();
            let socket = UdpSocket::bind((ADDR_B, 7007)).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 64];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                if &buf[..n] == b"stop" {
                    break;
                }
                socket.send_to(&buf[..n], from).unwrap();
            }
        });
        ready_rx.recv().unwrap();
        let rtts = s
            .spawn(move || {
                link.a.enter_current_thread().unwrap();
                let socket = UdpSocket::bind((ADDR_A, 0)).unwrap();
                socket.set_read_timeout(Some(wait)).unwrap();
                let peer = SocketAddr::from((ADDR_B, 7007));
                let mut rtts = Vec::new();
                let mut buf = [0u8; 64];
                for i in 0..count as u32 {
                    let sent = Instant::now();
                    socket.send_to(&i.to_be_bytes(), peer).unwrap();
                    // Wait for this probe's echo; stale echoes of earlier probes are skipped.
                    while let Ok((n, _)) = socket.recv_from(&mut buf) {
                        if buf[..n] == i.to_be_bytes() {
                            rtts.push(sent.elapsed());
                            break;
                        }
                    }
                }
                for _ in 0..3 {
                    let _ = socket.send_to(b"stop", peer);
                }
                rtts
            })
            .join()
            .unwrap();
        echo.join().unwrap();
        rtts
    })
}

#[test]
fn delay_is_applied_in_both_directions() {
    let Some(link) = start("d", LinkProfile::rtt(Duration::from_millis(40))) else {
        return;
    };
    let rtts = udp_probe(&link, 20);
    assert_eq!(rtts.len(), 20, "a clean link lost packets");
    let min = rtts.iter().min().unwrap();
    assert!(
        *min >= Duration::from_millis(40),
        "RTT {min:?} is below the emulated 40 ms"
    );
    assert!(link.stats.a_to_b.load(std::sync::atomic::Ordering::Relaxed) >= 20);
}

#[test]
fn random_loss_drops_about_the_configured_share() {
    let profile = LinkProfile::rtt(Duration::from_millis(2)).with_loss(Loss::Random(0.2));
    let Some(link) = start("l", profile) else {
        return;
    };
    let replies = udp_probe(&link, 400).len();
    // Each probe crosses twice: P(reply) = 0.8² = 0.64 → 256 of 400 expected; the seed is
    // fixed, so this is deterministic, and the bounds are wide.
    assert!((200..=310).contains(&replies), "{replies} of 400 replies");
}

#[test]
fn tcp_crosses_the_link_intact() {
    let profile = LinkProfile::rtt(Duration::from_millis(10)).with_loss(Loss::Random(0.01));
    let Some(link) = start("t", profile) else {
        return;
    };
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let (link, data) = (&link, &data);
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = s.spawn(move || {
            link.b.enter_current_thread().unwrap();
            let listener = TcpListener::bind((ADDR_B, 7008)).unwrap();
            ready_tx.send(()).unwrap();
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            received
        });
        ready_rx.recv().unwrap();
        s.spawn(move || {
            link.a.enter_current_thread().unwrap();
            let mut stream = TcpStream::connect((ADDR_B, 7008)).unwrap();
            stream.write_all(data).unwrap();
        })
        .join()
        .unwrap();
        assert!(server.join().unwrap() == *data, "TCP delivered other bytes");
    });
}
