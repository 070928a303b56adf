//! The dev-mode HTTP listener, the admin endpoints and shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use aimux_wire::{Outcome, codes};
use bytes::{Bytes, BytesMut};
use quinn::ConnectionError;
use support::upstream;
use support::{
    Closed, Mesh, Running, STEP, Transport, config, connect, exchange, http_get, over_both,
    read_at_least, request,
};

over_both!(shutdown_lets_requests_finish_then_closes_connections);

#[tokio::test]
async fn dev_mode_routes_and_checks_the_claimed_identity() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    cfg.policy.access = vec![aimux_gateway::AccessRuleConfig {
        name: None,
        from: Some(vec!["alice".into()]),
        to: None,
        intents: vec!["http POST /echo*".parse().unwrap()],
        action: aimux_gateway::Action::Allow,
    }];
    let gw = Running::start(cfg).await;
    let dev = gw.dev.unwrap();

    // A claimed agent name; the destination comes from Host (the port is ignored).
    let (status, headers, body) = http_get(
        dev,
        "/echo/x?y=1",
        &[("host", "echo:8080"), ("x-aimux-identity", "alice")],
        Some(Bytes::from_static(b"dev body")),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"dev body");
    assert_eq!(
        headers["x-seen-identity"],
        "spiffe://aimux.test/agent/alice"
    );
    assert_eq!(headers["x-seen-path"], "/svc/echo/echo/x?y=1");

    // The same rules as over QUIC: bob may not, and the intent is `http METHOD PATH`.
    let (status, headers, body) = http_get(
        dev,
        "/echo/x",
        &[
            ("host", "echo"),
            ("x-aimux-identity", "spiffe://aimux.test/agent/bob"),
        ],
        Some(Bytes::from_static(b"x")),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-aimux-outcome"], "denied_by_policy");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("intent `http POST /echo/x`"), "{text}");

    // No identity: 401 with an explanation.
    let (status, _, body) = http_get(dev, "/", &[("host", "echo")], None).await;
    assert_eq!(status, 401);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.starts_with("missing x-aimux-identity header"),
        "{text}"
    );

    // Unknown destination: no route (502).
    let (status, headers, _) = http_get(
        dev,
        "/",
        &[("host", "nowhere"), ("x-aimux-identity", "alice")],
        None,
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-aimux-outcome"], "no_route");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn admin_reports_health_readiness_and_metrics() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let admin = gw.admin.unwrap();

    let (status, _, body) = http_get(admin, "/healthz", &[], None).await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]));
    let (status, _, _) = http_get(admin, "/readyz", &[], None).await;
    assert_eq!(status, 200);
    let (status, _, _) = http_get(admin, "/nope", &[], None).await;
    assert_eq!(status, 404);

    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;
    let h2 = connect(&mesh, &mesh.alice, &gw, Transport::H2).await;
    for _ in 0..3 {
        let reply = exchange(
            &conn,
            &request(&mesh.alice, "echo", "GET", "/"),
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(reply.envelope.outcome, Outcome::Forwarded);
    }
    let mut env = request(&mesh.alice, "attacker-chosen-name", "GET", "/");
    env.identity = None;
    exchange(&conn, &env, Bytes::new()).await.unwrap();

    let (status, headers, body) = http_get(admin, "/metrics", &[], None).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let alice = mesh.alice.id.to_string();
    for needle in [
        format!(
            r#"aimux_gateway_requests_total{{identity="{alice}",service="echo",status="200"}} 3"#
        ),
        // Each `connect` (QUIC and HTTP/2) sends one probe to an unknown service, then the
        // request above: the unknown names never become labels.
        format!(
            r#"aimux_gateway_requests_total{{identity="{alice}",service="unknown",status="no_route"}} 3"#
        ),
        r#"aimux_gateway_request_duration_seconds_count{service="echo"} 3"#.to_owned(),
        r#"aimux_gateway_connections_open{transport="quic"} 1"#.to_owned(),
        r#"aimux_gateway_connections_open{transport="h2"} 1"#.to_owned(),
        r#"aimux_gateway_streams_open{transport="quic"} 0"#.to_owned(),
        r#"aimux_gateway_streams_open{transport="h2"} 0"#.to_owned(),
        "aimux_gateway_revocations_total 0".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains("attacker-chosen-name"));
    drop(h2);
    gw.stop().await.unwrap();
}

/// QUIC closes with SHUTDOWN; HTTP/2 sends GOAWAY (RFC 9113 §6.8) and closes the
/// connection once the grace period is over.
async fn shutdown_lets_requests_finish_then_closes_connections(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let gw = Running::start(config(&mesh, up.addr)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    // A request in flight when shutdown starts: an SSE stream the test controls.
    let (mut send, mut recv) = conn.open().await.unwrap();
    let env = request(&mesh.alice, "echo", "GET", "/sse");
    send.write_all(&env.to_bytes(&Default::default()).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    let (envelope, _) = tokio::time::timeout(STEP, support::read_envelope(&mut recv))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(envelope.outcome, Outcome::Forwarded);

    let admin = gw.admin.unwrap();
    let stopping = tokio::spawn(gw.stop());
    // While draining, /readyz turns 503; the admin listener is the last to stop.
    let ready = async {
        loop {
            let (status, _, _) = http_get(admin, "/readyz", &[], None).await;
            if status == 503 {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(STEP, ready).await.unwrap();
    // The in-flight response can still finish.
    up.sse_events
        .send(Bytes::from_static(b"data: last\n\n"))
        .await
        .unwrap();
    let chunk = read_at_least(&mut recv, BytesMut::new(), 12).await;
    assert_eq!(&chunk[..], b"data: last\n\n");
    // The grace period (2 s) then runs out and the connection is closed with SHUTDOWN.
    let closed = tokio::time::timeout(STEP, conn.closed()).await.unwrap();
    match closed {
        Closed::Quic(ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, codes::CLOSE_SHUTDOWN.into());
        }
        Closed::H2(_) => {}
        other => panic!("expected SHUTDOWN, got {other:?}"),
    }
    tokio::time::timeout(STEP, stopping)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
