//! Upstream resilience through the dev-mode listener: retries of requests that are safe to
//! repeat, the circuit breaker taking a dead upstream out of rotation, and least-request
//! balancing, against a real upstream and a real closed port.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(unused_macros, unused_imports)] // the transport macro is for the tunnel tests
use crate::support;

use std::time::Duration;

use aimux_gateway::{Balance, BreakerConfig};
use bytes::Bytes;
use support::{Mesh, Running, closed_port, config, http_get, service, upstream};

const ALICE: (&str, &str) = ("x-aimux-identity", "alice");

#[tokio::test]
async fn retries_safe_requests_and_the_breaker_takes_a_dead_upstream_out() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    let mut flaky = service("flaky", format!("http://{}", closed_port()));
    flaky
        .upstreams
        .push(format!("http://{}/svc/flaky", up.addr).parse().unwrap());
    flaky.breaker = BreakerConfig {
        consecutive_failures: 3,
        cooldown: Duration::from_secs(60),
    };
    cfg.policy.services.push(flaky);
    let gw = Running::start(cfg).await;
    let dev = gw.dev.unwrap();
    let host = ("host", "flaky");

    // GETs are idempotent and bodyless: one that lands on the dead upstream is retried on
    // the live one, so every one succeeds.
    for i in 0..4 {
        let (status, headers, _) = http_get(dev, "/get", &[host, ALICE], None).await;
        assert_eq!(status, 200, "GET {i}");
        assert_eq!(headers["x-seen-path"], "/svc/flaky/get");
    }
    // The breaker has seen the dead upstream fail (twice, round robin) and a POST with a
    // body is never retried: until the breaker opens, a POST can fail; once it is open
    // (three failures), every POST goes to the live upstream.
    let mut failed_posts = 0;
    for _ in 0..6 {
        let (status, headers, _) = http_get(
            dev,
            "/post",
            &[host, ALICE],
            Some(Bytes::from_static(b"not replayable")),
        )
        .await;
        if status != 200 {
            assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
            failed_posts += 1;
        }
    }
    assert!(
        failed_posts <= 1,
        "{failed_posts} POSTs failed after the breaker should have opened"
    );
    for _ in 0..6 {
        let (status, _, _) =
            http_get(dev, "/post", &[host, ALICE], Some(Bytes::from_static(b"x"))).await;
        assert_eq!(
            status, 200,
            "the open breaker keeps requests off the dead upstream"
        );
    }
    let admin = gw.admin.unwrap();
    let (_, _, metrics) = http_get(admin, "/metrics", &[], None).await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("aimux_gateway_upstream_breaker_open{")
                && l.contains("service=\"flaky\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_whose_upstreams_are_all_down_answers_after_bounded_retries() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    let mut dead = service("gone", format!("http://{}", closed_port()));
    dead.balance = Balance::LeastRequest;
    dead.retries = 2;
    cfg.policy.services.push(dead);
    let gw = Running::start(cfg).await;
    let (status, headers, body) =
        http_get(gw.dev.unwrap(), "/", &[("host", "gone"), ALICE], None).await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("refused the connection"), "{text}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn a_route_timeout_replaces_the_default_response_head_timeout() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    cfg.policy.routes = vec![aimux_gateway::RouteConfig {
        name: Some("impatient".into()),
        service: Some("echo".into()),
        path: Some(aimux_gateway::Glob::new("/quick/*")),
        to: "echo".into(),
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    }];
    let gw = Running::start(cfg).await;
    let dev = gw.dev.unwrap();
    let (status, headers, body) =
        http_get(dev, "/quick/hang", &[("host", "echo"), ALICE], None).await;
    assert_eq!(status, 504);
    assert_eq!(headers["x-aimux-outcome"], "upstream_timeout");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("within 0.3s"), "{text}");
    // Outside the route, the gateway's default (2 s in these tests) applies.
    let (status, _, body) = http_get(dev, "/slow/hang", &[("host", "echo"), ALICE], None).await;
    assert_eq!(status, 504);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("within 2s"), "{text}");
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn an_upstream_at_its_request_limit_is_refused_at_once_as_overloaded() {
    let mesh = Mesh::new();
    let up = upstream::start().await;
    let mut cfg = config(&mesh, up.addr);
    let mut limited = service("limited", format!("http://{}/svc/limited", up.addr));
    limited.max_requests = 1;
    cfg.policy.services.push(limited);
    let gw = Running::start(cfg).await;
    let (dev, admin) = (gw.dev.unwrap(), gw.admin.unwrap());
    let host = ("host", "limited");

    // A request the upstream never answers holds the only slot (until the 2 s
    // response-head timeout of these tests).
    let held = tokio::spawn(async move {
        http_get(dev, "/hang", &[host, ALICE], Some(Bytes::from_static(b"x"))).await
    });
    let in_flight = "aimux_gateway_upstream_outstanding{";
    loop {
        let (_, _, metrics) = http_get(admin, "/metrics", &[], None).await;
        let metrics = String::from_utf8(metrics.to_vec()).unwrap();
        if metrics.lines().any(|l| {
            l.starts_with(in_flight) && l.contains("service=\"limited\"") && l.ends_with(" 1")
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = std::time::Instant::now();
    let (status, headers, body) =
        http_get(dev, "/", &[host, ALICE], Some(Bytes::from_static(b"y"))).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert_eq!(status, 503, "{text}");
    assert_eq!(headers["x-aimux-outcome"], "overloaded");
    assert!(
        text.starts_with(
            "service `limited`: its upstream is at its limit of 1 requests in flight \
             (max_requests)"
        ),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not queued"
    );

    let (status, _, _) = held.await.unwrap();
    assert_eq!(status, 504);
    // The slot is free again.
    let (status, _, body) =
        http_get(dev, "/", &[host, ALICE], Some(Bytes::from_static(b"z"))).await;
    assert_eq!((status, &body[..]), (200, &b"z"[..]));
    gw.stop().await.unwrap();
}
