//! The tunnel's life: connecting, failing, reconnecting, revocation, refusals and shutdown,
//! against a real test gateway, over QUIC and over HTTP/2 on TLS/TCP. States are asserted
//! through `stats()`, not timing.
// Test helpers outside `#[test]` functions may unwrap too (clippy.toml allows it in tests).
#![allow(clippy::unwrap_used)]

use crate::support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_sidecar::{ConnectionState, Sidecar, SidecarError, Transport};
use aimux_wire::{HttpResponseHead, ResponseEnvelope, codes};
use bytes::Bytes;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use support::http_client::{Client, fetch, get};
use support::{
    Closed, GatewayStream, Harness, Mesh, TestGateway, echo, handler, init_tracing, over_both,
};

over_both!(
    requests_get_a_503_within_the_bounded_wait_when_the_gateway_is_down,
    the_sidecar_reconnects_when_the_gateway_restarts_on_the_same_port,
    a_revoked_certificate_refused_in_the_handshake_is_reported,
    a_gateway_with_the_wrong_identity_is_refused,
    shutdown_lets_in_flight_requests_finish_then_closes_the_connection,
    a_request_without_stream_credit_gets_a_503_within_the_bounded_wait,
    a_connection_lost_before_the_answer_gives_a_503_that_says_so,
    a_gateway_that_never_answers_gives_a_504,
);

/// A loopback port of `transport`'s kind with nothing behind it.
fn dead_port(transport: Transport) -> SocketAddr {
    match transport {
        Transport::H2 => {
            // Bound but not listening, for the whole test binary: refused, and never handed
            // to a parallel test's listener.
            static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> =
                std::sync::Mutex::new(Vec::new());
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
            let addr = socket.local_addr().unwrap();
            HELD.lock().unwrap().push(socket);
            addr
        }
        _ => {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap()
        }
    }
}

fn any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn text(body: &Bytes) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

async fn wait_for(
    stats: &aimux_sidecar::StatsHandle,
    state: ConnectionState,
) -> aimux_sidecar::SidecarStats {
    tokio::time::timeout(
        Duration::from_secs(15),
        stats.wait_for_state(|s| s == state),
    )
    .await
    .unwrap_or_else(|_| panic!("never reached {state}: {:?}", stats.snapshot()))
}

async fn requests_get_a_503_within_the_bounded_wait_when_the_gateway_is_down(t: Transport) {
    init_tracing();
    let mesh = Mesh::new();
    let gateway = dead_port(t);
    let config = mesh.sidecar_config(t, gateway);
    let connect_wait = config.tunnel.connect_wait;
    let sidecar = Sidecar::bind(config).await.unwrap();
    let stats = sidecar.stats_handle();
    let addr = sidecar.listener_addrs()[0].0;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(sidecar.run(shutdown.clone()));

    let started = Instant::now();
    let (parts, body) = fetch(addr, get("echo", "/")).await;
    let waited = started.elapsed();
    assert_eq!(parts.status, 503);
    assert_eq!(parts.headers["x-aimux-outcome"], "no_connection");
    assert!(
        waited >= connect_wait - Duration::from_millis(100),
        "{waited:?}"
    );
    assert!(waited < connect_wait + Duration::from_secs(2), "{waited:?}");
    let body = text(&body);
    let cause = match t {
        Transport::H2 => format!(
            "cannot connect to gateway {gateway} over TCP: connection refused (is the gateway \
             running with its HTTP/2 tunnel listener on {gateway}?)"
        ),
        _ => format!(
            "no answer to the QUIC handshake within 1 s (is the gateway running, and is UDP \
             {gateway} reachable from here?)"
        ),
    };
    assert_eq!(
        body,
        format!(
            "aimux sidecar (agent/alice): no connection to the gateway {gateway} for 2 s: \
             {cause}; retrying\n"
        )
    );
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.state, ConnectionState::Reconnecting);
    assert!(snapshot.failed_attempts >= 1);
    assert_eq!((snapshot.requests, snapshot.failures), (1, 1));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(stats.snapshot().state, ConnectionState::Stopped);
}

async fn the_sidecar_reconnects_when_the_gateway_restarts_on_the_same_port(t: Transport) {
    let h = Harness::start_with(t, echo(), |c| {
        c.tunnel.connect_wait = Duration::from_secs(15);
    })
    .await;
    let addr = h.listener("echo");
    let (parts, _) = fetch(addr, get("echo", "/before")).await;
    assert_eq!(parts.status, 200);

    let Harness {
        mesh,
        gateway,
        stats,
        shutdown,
        run,
        listeners,
    } = h;
    let gateway_addr = gateway.addr;
    gateway.stop().await;
    // The cause is the SHUTDOWN close (QUIC) or GOAWAY (HTTP/2), or the refusal of an
    // immediate retry by the stopping gateway, or a handshake timeout: whichever came last.
    let down = wait_for(&stats, ConnectionState::Reconnecting).await;
    let cause = down.last_error.unwrap();
    assert!(cause.contains(&gateway_addr.to_string()), "{cause}");

    // A request made while the gateway is down waits for the connection...
    let waiting = tokio::spawn(fetch(addr, get("echo", "/during")));
    // ...which comes back when the gateway does, on the same port.
    let gateway = TestGateway::start(&mesh, t, gateway_addr, echo()).await;
    let up = wait_for(&stats, ConnectionState::Connected).await;
    assert_eq!(up.reconnects, 1);
    let (parts, _) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["x-echo-path"], "/during");

    let h = Harness {
        mesh,
        gateway,
        stats,
        shutdown,
        run,
        listeners,
    };
    h.stop().await;
}

#[tokio::test]
async fn a_revoked_close_is_reported_and_backed_off() {
    let h = Harness::start(Transport::Quic, echo()).await;
    h.gateway.close_all(codes::CLOSE_REVOKED, b"revoked");
    let revoked = h.wait_for(ConnectionState::Revoked).await;
    let cause = revoked.last_error.clone().unwrap();
    assert_eq!(
        cause,
        format!(
            "gateway {} closed the connection: certificate for agent/alice was revoked; \
             re-issue it with `aimux certs issue --name alice --force` and restart this sidecar",
            h.gateway.addr
        )
    );
    // The long backoff (revoked_backoff 20 s in these tests, with equal jitter), not the
    // ordinary one (at most 2 s).
    let retry_in = revoked.retry_in.unwrap();
    assert!(retry_in >= Duration::from_secs(10), "{retry_in:?}");

    // Requests fail at once and say why instead of waiting.
    let started = Instant::now();
    let (parts, body) = fetch(h.listener("echo"), get("echo", "/")).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(parts.status, 503);
    assert!(text(&body).contains("certificate for agent/alice was revoked"));
    h.stop().await;
}

/// HTTP/2 cannot carry the REVOKED close code (SPEC.md §12.1): the gateway drops the
/// connection, the sidecar reconnects at once, and the new handshake is refused with
/// `certificate_revoked`, which is reported and backed off exactly as over QUIC.
#[tokio::test]
async fn over_http2_a_revocation_is_learned_from_the_next_handshake() {
    let h = Harness::start(Transport::H2, echo()).await;
    h.mesh.revoke_alice();
    h.gateway.reload_crl(&h.mesh);
    h.gateway.close_all(codes::CLOSE_REVOKED, b"revoked");
    let revoked = h.wait_for(ConnectionState::Revoked).await;
    assert_eq!(
        revoked.last_error.as_deref(),
        Some(
            format!(
                "gateway {} refused the handshake: certificate for agent/alice is revoked; \
                 re-issue it with `aimux certs issue --name alice --force` and restart this \
                 sidecar",
                h.gateway.addr
            )
            .as_str()
        )
    );
    assert!(revoked.retry_in.unwrap() >= Duration::from_secs(10));
    let started = Instant::now();
    let (parts, body) = fetch(h.listener("echo"), get("echo", "/")).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(parts.status, 503);
    assert!(text(&body).contains("certificate for agent/alice is revoked"));
    h.stop().await;
}

async fn a_revoked_certificate_refused_in_the_handshake_is_reported(t: Transport) {
    init_tracing();
    let mesh = Mesh::new();
    mesh.revoke_alice();
    // The gateway's CRL lists alice: its verifier refuses her with certificate_revoked.
    let gateway = TestGateway::start(&mesh, t, any(), echo()).await;
    let sidecar = Sidecar::bind(mesh.sidecar_config(t, gateway.addr))
        .await
        .unwrap();
    let stats = sidecar.stats_handle();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(sidecar.run(shutdown.clone()));

    let revoked = wait_for(&stats, ConnectionState::Revoked).await;
    assert_eq!(
        revoked.last_error.as_deref(),
        Some(
            format!(
                "gateway {} refused the handshake: certificate for agent/alice is revoked; \
                 re-issue it with `aimux certs issue --name alice --force` and restart this \
                 sidecar",
                gateway.addr
            )
            .as_str()
        )
    );
    assert!(revoked.retry_in.unwrap() >= Duration::from_secs(10));
    // The connection was never trusted: the handshake was not confirmed.
    assert_eq!(revoked.connects, 0);
    assert_eq!(revoked.failed_attempts, 1);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn a_gateway_with_the_wrong_identity_is_refused(t: Transport) {
    init_tracing();
    let mesh = Mesh::new();
    let impostor = TestGateway::start_as(&mesh, &mesh.impostor, t, any(), echo()).await;
    let sidecar = Sidecar::bind(mesh.sidecar_config(t, impostor.addr))
        .await
        .unwrap();
    let stats = sidecar.stats_handle();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(sidecar.run(shutdown.clone()));

    let refused = wait_for(&stats, ConnectionState::Refused).await;
    let cause = refused.last_error.unwrap();
    assert_eq!(
        cause,
        format!(
            "refused the server at {}: it presented spiffe://example.org/gateway/impostor, but \
             this sidecar expects spiffe://example.org/gateway/edge; check the gateway address \
             and the gateway identity in the mesh file",
            impostor.addr
        )
    );
    assert_eq!(impostor.live_connections(), 0);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// QUIC closes with SHUTDOWN (SPEC.md §12); HTTP/2 with GOAWAY (RFC 9113 §6.8).
async fn shutdown_lets_in_flight_requests_finish_then_closes_the_connection(t: Transport) {
    // The gateway holds the response open until the test releases it.
    let (release_tx, release_rx) = mpsc::channel::<()>(1);
    let release_rx = Arc::new(Mutex::new(release_rx));
    let gateway = handler(move |mut s: GatewayStream| {
        let release = Arc::clone(&release_rx);
        async move {
            s.respond(&ResponseEnvelope::forwarded(HttpResponseHead::new(200)))
                .await;
            s.write(Bytes::from_static(b"first half, ")).await;
            release.lock().await.recv().await;
            s.write(Bytes::from_static(b"second half")).await;
            s.finish();
        }
    });
    let mut h = Harness::start(t, gateway).await;
    let addr = h.listener("tools");
    let mut client = Client::connect(addr).await;
    let response = client.send(get("tools", "/slow")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(h.stats.snapshot().in_flight, 1);

    h.shutdown.cancel();
    // New connections are no longer accepted...
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the listener still accepts after shutdown");
    // ...but the request in flight completes.
    release_tx.send(()).await.unwrap();
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        http_body_util::BodyExt::collect(response.into_body()),
    )
    .await
    .unwrap()
    .unwrap()
    .to_bytes();
    assert_eq!(&body[..], b"first half, second half");

    tokio::time::timeout(Duration::from_secs(10), &mut h.run)
        .await
        .expect("the sidecar did not stop")
        .unwrap()
        .unwrap();
    // The gateway learns at once.
    let closed = tokio::time::timeout(Duration::from_secs(5), h.gateway.closed.recv())
        .await
        .unwrap()
        .unwrap();
    match closed {
        Closed::Quic(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(
                close.error_code.into_inner(),
                u64::from(codes::CLOSE_SHUTDOWN)
            );
        }
        Closed::H2(reason) => assert_eq!(reason, "closed", "an orderly close"),
        other => panic!("expected an application close, got {other:?}"),
    }
    assert_eq!(h.stats.snapshot().state, ConnectionState::Stopped);
}

/// A handler that answers `/hold` only when released, and everything else at once.
fn hold_until_released() -> (support::Handler, mpsc::Sender<()>, mpsc::Receiver<()>) {
    let (release_tx, release_rx) = mpsc::channel::<()>(1);
    let (held_tx, held_rx) = mpsc::channel::<()>(8);
    let release_rx = Arc::new(Mutex::new(release_rx));
    let gateway = handler(move |mut s: GatewayStream| {
        let release = Arc::clone(&release_rx);
        let held = held_tx.clone();
        async move {
            if s.envelope.http.as_ref().unwrap().path == "/hold" {
                held.send(()).await.unwrap();
                release.lock().await.recv().await;
            }
            s.respond(&ResponseEnvelope::forwarded(HttpResponseHead::new(200)))
                .await;
            s.finish();
        }
    });
    (gateway, release_tx, held_rx)
}

async fn a_request_without_stream_credit_gets_a_503_within_the_bounded_wait(t: Transport) {
    init_tracing();
    let mesh = Mesh::new();
    let (gateway, release, mut held) = hold_until_released();
    // The gateway allows one request stream at a time.
    let gateway = TestGateway::start_with_streams(&mesh, t, any(), 1, gateway).await;
    let config = mesh.sidecar_config(t, gateway.addr);
    let connect_wait = config.tunnel.connect_wait;
    let sidecar = Sidecar::bind(config).await.unwrap();
    let stats = sidecar.stats_handle();
    let addr = sidecar.listener_addrs()[0].0;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(sidecar.run(shutdown.clone()));
    wait_for(&stats, ConnectionState::Connected).await;

    let first = tokio::spawn(fetch(addr, get("echo", "/hold")));
    held.recv().await.unwrap();
    let started = Instant::now();
    let (parts, body) = fetch(addr, get("echo", "/second")).await;
    assert_eq!(parts.status, 503);
    assert_eq!(parts.headers["x-aimux-outcome"], "no_stream_credit");
    assert!(started.elapsed() < connect_wait + Duration::from_secs(2));
    assert!(text(&body).contains("allowed no new request stream within 2 s"));

    // Once the first request is done, the credit is back.
    release.send(()).await.unwrap();
    assert_eq!(first.await.unwrap().0.status, 200);
    let (parts, _) = fetch(addr, get("echo", "/third")).await;
    assert_eq!(parts.status, 200);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn a_connection_lost_before_the_answer_gives_a_503_that_says_so(t: Transport) {
    let (gateway, _release, mut held) = hold_until_released();
    let h = Harness::start(t, gateway).await;
    let addr = h.listener("echo");
    let waiting = tokio::spawn(fetch(addr, get("echo", "/hold")));
    held.recv().await.unwrap();
    h.gateway.close_all(codes::CLOSE_SHUTDOWN, b"restarting");
    let (parts, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parts.status, 503);
    assert_eq!(parts.headers["x-aimux-outcome"], "connection_lost");
    let body = text(&body);
    let needle = match t {
        Transport::H2 => "was lost before it answered: the gateway closed the connection",
        _ => "was lost before it answered: closed by the gateway with code 0x0 (SHUTDOWN)",
    };
    assert!(body.contains(needle), "{body}");
    h.stop().await;
}

async fn a_gateway_that_never_answers_gives_a_504(t: Transport) {
    let (gateway, _release, mut held) = hold_until_released();
    let mut h = Harness::start_with(t, gateway, |c| {
        c.tunnel.response_head_timeout = Duration::from_secs(1);
    })
    .await;
    let started = Instant::now();
    let waiting = tokio::spawn(fetch(h.listener("echo"), get("echo", "/hold")));
    held.recv().await.unwrap();
    let (parts, body) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(parts.status, 504);
    assert_eq!(parts.headers["x-aimux-outcome"], "gateway_timeout");
    assert!(text(&body).contains("did not answer within 1 s of the end of the request"));
    assert_eq!(h.stats.snapshot().failures, 1);
    h.gateway_seen_path("/hold").await;
    h.stop().await;
}

#[tokio::test]
async fn bind_errors_name_the_address_and_the_problem() {
    init_tracing();
    let mesh = Mesh::new();
    let quic = Transport::Quic;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let mut config = mesh.sidecar_config(quic, dead_port(quic));
    config.listeners[1].listen = taken_addr;
    let err = Sidecar::bind(config).await.unwrap_err();
    assert!(matches!(err, SidecarError::Bind { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot listen on {taken_addr} (listener for service tools): "
        )),
        "{message}"
    );

    let mut config = mesh.sidecar_config(quic, dead_port(quic));
    config.proxy = Some("0.0.0.0:0".parse().unwrap());
    let err = Sidecar::bind(config).await.unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");

    let mut config = mesh.sidecar_config(quic, dead_port(quic));
    config.listeners[0].service = "two words".into();
    let err = Sidecar::bind(config).await.unwrap_err();
    assert!(matches!(err, SidecarError::InvalidService { .. }), "{err}");

    let mut config = mesh.sidecar_config(Transport::H2, dead_port(Transport::H2));
    config.listeners.clear();
    config.proxy = None;
    assert!(matches!(
        Sidecar::bind(config).await.unwrap_err(),
        SidecarError::NoListeners
    ));
}
