//! Routing and access control end to end: the decision is made on the certificate's
//! identity and the envelope's destination, intent and path, and reported as an outcome.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use aimux_gateway::{AccessRuleConfig, Action, GatewayConfig, Glob, RouteConfig};
use aimux_wire::{Intent, Outcome, Protocol};
use bytes::Bytes;
use support::upstream;
use support::{Mesh, Running, Transport, config, connect, exchange, over_both, request};

over_both!(
    access_rules_allow_deny_and_deny_wins,
    routes_by_intent_and_by_path_and_unknown_services_have_no_route,
);

fn rule(
    from: Option<&[&str]>,
    to: Option<&[&str]>,
    intents: &[&str],
    action: Action,
) -> AccessRuleConfig {
    let list = |l: &[&str]| l.iter().map(|s| Glob::new(s)).collect();
    AccessRuleConfig {
        name: None,
        from: from.map(list),
        to: to.map(list),
        intents: intents.iter().map(|p| p.parse().unwrap()).collect(),
        action,
    }
}

fn with(
    mut cfg: GatewayConfig,
    routes: Vec<RouteConfig>,
    access: Vec<AccessRuleConfig>,
) -> GatewayConfig {
    cfg.policy.routes = routes;
    cfg.policy.access = access;
    cfg
}

async fn access_rules_allow_deny_and_deny_wins(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let access = vec![
        rule(
            Some(&["alice"]),
            Some(&["echo", "tools"]),
            &[],
            Action::Allow,
        ),
        rule(Some(&["bob"]), Some(&["echo"]), &[], Action::Allow),
        rule(
            None,
            Some(&["tools"]),
            &["mcp tools/call delete_*"],
            Action::Deny,
        ),
    ];
    let gw = Running::start(with(config(&mesh, up.addr), vec![], access)).await;
    let alice = connect(&mesh, &mesh.alice, &gw, t).await;
    let bob = connect(&mesh, &mesh.bob, &gw, t).await;

    // Allowed.
    let reply = exchange(
        &alice,
        &request(&mesh.alice, "tools", "POST", "/mcp"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);
    let reply = exchange(&bob, &request(&mesh.bob, "echo", "GET", "/"), Bytes::new())
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);

    // No allow rule for bob → tools: denied, and the reason says who, what and why.
    let mut env = request(&mesh.bob, "tools", "POST", "/mcp");
    env.intent = Some(Intent::new(Protocol::Mcp, "tools/list", ""));
    let reply = exchange(&bob, &env, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::DeniedByPolicy);
    assert_eq!(
        reply.envelope.reason,
        format!(
            "{} may not call service `tools` with intent `mcp tools/list`: no access rule \
             allows it",
            mesh.bob.id
        )
    );

    // Alice is allowed to call tools, but the deny rule for deletions wins.
    let mut env = request(&mesh.alice, "tools", "POST", "/mcp");
    env.intent = Some(Intent::new(
        Protocol::Mcp,
        "tools/call",
        "delete_everything",
    ));
    let reply = exchange(&alice, &env, Bytes::from_static(b"{}"))
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::DeniedByPolicy);
    assert!(
        reply.envelope.reason.ends_with("denied by access rule #3"),
        "{}",
        reply.envelope.reason
    );
    gw.stop().await.unwrap();
}

async fn routes_by_intent_and_by_path_and_unknown_services_have_no_route(t: Transport) {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let routes = vec![
        RouteConfig {
            name: Some("echo-tools".into()),
            service: Some("tools".into()),
            intent: Some("mcp tools/call echo_*".parse().unwrap()),
            to: "echo".into(),
            ..RouteConfig::default()
        },
        RouteConfig {
            path: Some(Glob::new("/static/*")),
            to: "echo".into(),
            ..RouteConfig::default()
        },
    ];
    let access = vec![rule(None, Some(&["echo", "tools"]), &[], Action::Allow)];
    let gw = Running::start(with(config(&mesh, up.addr), routes, access)).await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;

    // By intent: a tools/call of echo_* addressed to `tools` goes to `echo`.
    let mut env = request(&mesh.alice, "tools", "POST", "/mcp");
    env.intent = Some(Intent::new(Protocol::Mcp, "tools/call", "echo_text"));
    let reply = exchange(&conn, &env, Bytes::from_static(b"hi"))
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);
    assert_eq!(reply.header("x-seen-path"), "/svc/echo/mcp");
    // Other intents, or none, stay with `tools`.
    let mut env = request(&mesh.alice, "tools", "POST", "/mcp");
    env.intent = Some(Intent::new(Protocol::Mcp, "tools/call", "search_web"));
    let reply = exchange(&conn, &env, Bytes::new()).await.unwrap();
    assert_eq!(reply.header("x-seen-path"), "/svc/tools/mcp");
    let reply = exchange(
        &conn,
        &request(&mesh.alice, "tools", "GET", "/x"),
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(reply.header("x-seen-path"), "/svc/tools/x");

    // By path (the query is not part of it): even a destination that is not a service.
    let env = request(&mesh.alice, "assets", "GET", "/static/app.js?v=3");
    let reply = exchange(&conn, &env, Bytes::new()).await.unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded);
    assert_eq!(reply.header("x-seen-path"), "/svc/echo/static/app.js?v=3");

    // No route and no such service.
    let env = request(&mesh.alice, "nowhere", "GET", "/api");
    let reply = exchange(&conn, &env, Bytes::new()).await.unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::NoRoute);
    assert!(
        reply.envelope.reason.contains("`nowhere`"),
        "{}",
        reply.envelope.reason
    );

    // Access is checked against the routed service: `dead` is not allowed here.
    let env = request(&mesh.alice, "dead", "GET", "/");
    let reply = exchange(&conn, &env, Bytes::new()).await.unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::DeniedByPolicy);
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn bind_refuses_unsupported_and_inconsistent_configuration() {
    let mesh = Mesh::new();
    let up = upstream::start().await;

    let mut cfg = config(&mesh, up.addr);
    cfg.policy.services[0].protocol = aimux_gateway::UpstreamProtocol::Http2;
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "service `echo`: upstream `http://{}/svc/echo` cannot be used: protocol http2 is \
             HTTP/2 over TLS and needs an https:// URL; for HTTP/2 without TLS use protocol = \
             \"h2c\"",
            up.addr
        )
    );

    let mut cfg = config(&mesh, up.addr);
    cfg.policy.services[0].upstreams = vec!["https://127.0.0.1:9443".parse().unwrap()];
    cfg.policy.services[0].protocol = aimux_gateway::UpstreamProtocol::H2c;
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("protocol h2c is HTTP/2 without TLS"),
        "{err}"
    );

    let mut cfg = config(&mesh, up.addr);
    cfg.policy.services[0].max_requests = 0;
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert!(err.to_string().contains("max_requests = 0"), "{err}");

    let mut cfg = config(&mesh, up.addr);
    cfg.policy.routes = vec![RouteConfig {
        name: Some("typo".into()),
        to: "ecoh".into(),
        ..RouteConfig::default()
    }];
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "route `typo` sends requests to `ecoh`, which is not a service of this gateway"
    );

    // Ports that are taken, UDP and TCP.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(&mesh, up.addr);
    cfg.tunnel.as_mut().unwrap().quic = Some(taken.local_addr().unwrap());
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot bind the QUIC listener on {}: address in use; is another gateway running?",
            taken.local_addr().unwrap()
        )
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(&mesh, up.addr);
    cfg.tunnel.as_mut().unwrap().h2 = Some(taken.local_addr().unwrap());
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot bind the HTTP/2 tunnel listener on {}: address in use; is another gateway \
             running?",
            taken.local_addr().unwrap()
        )
    );

    // A tunnel without a listener.
    let mut cfg = config(&mesh, up.addr);
    let tunnel = cfg.tunnel.as_mut().unwrap();
    (tunnel.quic, tunnel.h2) = (None, None);
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert!(
        matches!(err, aimux_gateway::GatewayError::NoTunnelListener),
        "{err}"
    );

    // A missing CRL.
    let mut cfg = config(&mesh, up.addr);
    cfg.tunnel.as_mut().unwrap().crl_path = mesh.dir.path().join("missing.pem");
    let err = aimux_gateway::Gateway::bind(cfg).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot load the certificate revocation list"),
        "{err}"
    );
}
