//! `https://` upstreams: real hyper servers behind tokio-rustls (support/tls.rs) with
//! certificates from a test CA, reached by HTTP/1.1 clients through the dev-mode listener
//! and by a sidecar-side client over the tunnel. Each protocol offers its ALPN (RFC 7301):
//! `http2` only `h2` (RFC 9113 §3.2) and refuses a server that does not choose it, `auto`
//! takes HTTP/2 when the server chooses `h2`, `http1` only `http/1.1`. Certificates are
//! checked against the service's CA and name (`tls.server_name` overrides it), and each
//! refusal says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use aimux_gateway::{BreakerConfig, ServiceConfig, UpstreamProtocol, UpstreamTls};
use aimux_wire::Outcome;
use bytes::Bytes;
use support::tls::{self, TestCa};
use support::{Mesh, Running, Transport, config, connect, exchange, http_get, request, service};

const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";
const ALICE: (&str, &str) = ("x-aimux-identity", "alice");
const HOST: (&str, &str) = ("host", "secure");

/// Service `secure`: `url`, spoken to with `protocol`, trusting `ca`.
fn secure(url: String, protocol: UpstreamProtocol, ca: &TestCa) -> ServiceConfig {
    let mut svc = service("secure", url);
    svc.protocol = protocol;
    svc.tls = UpstreamTls {
        roots: vec![ca.der()],
        server_name: None,
    };
    svc
}

/// A gateway (with the test upstream of `config` behind its other services) that also has
/// service `secure`.
async fn gateway(mesh: &Mesh, svc: ServiceConfig) -> Running {
    let plain = support::upstream::start().await;
    let mut cfg = config(mesh, plain.addr);
    cfg.policy.services.push(svc);
    Running::start(cfg).await
}

/// POSTs `body` to service `secure` through the dev listener.
async fn post(gw: &Running, body: &'static [u8]) -> (u16, http::HeaderMap, Bytes) {
    http_get(
        gw.dev.unwrap(),
        "/call",
        &[HOST, ALICE],
        Some(Bytes::from_static(body)),
    )
    .await
}

fn url(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_carries_big_bodies_and_multiplexes_on_one_connection() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let server = tls::start(&ca, &["127.0.0.1"], &[H2, HTTP11]).await;
    let gw = gateway(
        &mesh,
        secure(url(server.addr), UpstreamProtocol::Http2, &ca),
    )
    .await;
    let dev = gw.dev.unwrap();

    let body = Bytes::from(support::upstream::pattern(256 * 1024));
    let (status, seen, echoed) = http_get(dev, "/upload", &[HOST, ALICE], Some(body.clone())).await;
    assert_eq!(status, 200, "{echoed:?}");
    assert_eq!(seen["x-seen-version"], "HTTP/2.0");
    assert_eq!(seen["x-seen-alpn"], "h2");
    assert_eq!(seen["x-seen-authority"], server.addr.to_string().as_str());
    assert_eq!(
        seen["x-seen-host"], "-",
        "HTTP/2 carries :authority, not Host"
    );
    assert_eq!(
        echoed, body,
        "256 KiB crossed HTTP/1.1 → HTTP/2 over TLS intact"
    );

    // The same from a sidecar over the QUIC tunnel.
    let conn = connect(&mesh, &mesh.alice, &gw, Transport::Quic).await;
    let env = request(&mesh.alice, "secure", "POST", "/upload");
    let reply = exchange(&conn, &env, body.clone()).await.unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::Forwarded, "{reply:?}");
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.header("x-seen-version"), "HTTP/2.0");
    assert_eq!(
        reply.body, body,
        "256 KiB crossed the tunnel and HTTP/2 over TLS intact"
    );

    let mut calls = Vec::new();
    for i in 0..20 {
        calls.push(tokio::spawn(async move {
            let payload = Bytes::from(format!("request {i}"));
            let (status, _, echoed) =
                http_get(dev, "/", &[HOST, ALICE], Some(payload.clone())).await;
            assert_eq!((status, echoed), (200, payload));
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "one TLS connection, many HTTP/2 streams"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn auto_speaks_http2_when_the_server_chooses_h2_and_http1_otherwise() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let h2 = tls::start(&ca, &["127.0.0.1"], &[H2, HTTP11]).await;
    let h1 = tls::start(&ca, &["127.0.0.1"], &[HTTP11]).await;
    let mut svc = secure(url(h2.addr), UpstreamProtocol::Auto, &ca);
    svc.name = "both".into();
    let gw = {
        let plain = support::upstream::start().await;
        let mut cfg = config(&mesh, plain.addr);
        cfg.policy.services.push(svc);
        cfg.policy
            .services
            .push(secure(url(h1.addr), UpstreamProtocol::Auto, &ca));
        Running::start(cfg).await
    };
    let dev = gw.dev.unwrap();

    let (status, seen, echoed) = http_get(
        dev,
        "/",
        &[("host", "both"), ALICE],
        Some(Bytes::from_static(b"hi")),
    )
    .await;
    assert_eq!((status, &echoed[..]), (200, &b"hi"[..]));
    assert_eq!(seen["x-seen-version"], "HTTP/2.0", "ALPN chose h2");
    assert_eq!(seen["x-seen-host"], "-");
    assert_eq!(seen["x-seen-authority"], h2.addr.to_string().as_str());

    let (status, seen, echoed) = post(&gw, b"hello").await;
    assert_eq!((status, &echoed[..]), (200, &b"hello"[..]));
    assert_eq!(seen["x-seen-version"], "HTTP/1.1", "ALPN chose http/1.1");
    assert_eq!(seen["x-seen-alpn"], "http/1.1");
    assert_eq!(seen["x-seen-host"], h1.addr.to_string().as_str());
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn http1_over_tls_offers_only_http11() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    // The server would prefer h2; the gateway does not offer it.
    let server = tls::start(&ca, &["127.0.0.1"], &[H2, HTTP11]).await;
    let gw = gateway(
        &mesh,
        secure(url(server.addr), UpstreamProtocol::Http1, &ca),
    )
    .await;
    for _ in 0..3 {
        let (status, seen, echoed) = post(&gw, b"ping").await;
        assert_eq!((status, &echoed[..]), (200, &b"ping"[..]));
        assert_eq!(seen["x-seen-version"], "HTTP/1.1");
        assert_eq!(seen["x-seen-alpn"], "http/1.1");
        assert_eq!(seen["x-seen-host"], server.addr.to_string().as_str());
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        1,
        "sequential requests reuse the pooled connection"
    );
    gw.stop().await.unwrap();
}

/// Over each tunnel: the refusal reaches the sidecar as an outcome with the reason.
async fn an_untrusted_certificate_is_refused_with_the_reason(t: Transport) {
    let mesh = Mesh::new();
    let trusted = TestCa::new("the CA the service names");
    let other = TestCa::new("some other CA");
    let server = tls::start(&other, &["127.0.0.1"], &[H2, HTTP11]).await;
    let gw = gateway(
        &mesh,
        secure(url(server.addr), UpstreamProtocol::Auto, &trusted),
    )
    .await;
    let conn = connect(&mesh, &mesh.alice, &gw, t).await;
    let env = request(&mesh.alice, "secure", "POST", "/");
    let reply = exchange(&conn, &env, Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(reply.envelope.outcome, Outcome::UpstreamUnreachable);
    let reason = reply.envelope.reason.clone();
    let expected = format!(
        "upstream https://{} of service `secure` sent a certificate that is not trusted: \
         UnknownIssuer; give the service its CA with tls.ca",
        server.addr
    );
    assert!(reason.starts_with(&expected), "{reason}");

    // The same through the dev listener: 502, the outcome named, the reason as the body.
    let (status, headers, body) = post(&gw, b"x").await;
    assert_eq!(status, 502);
    assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
    assert!(String::from_utf8_lossy(&body).starts_with(&expected));
    gw.stop().await.unwrap();
}

support::over_both!(an_untrusted_certificate_is_refused_with_the_reason);

/// A breaker opened by certificate failures does not hide them: its refusal names the last.
#[tokio::test]
async fn an_open_breaker_still_names_the_certificate_failure() {
    let mesh = Mesh::new();
    let trusted = TestCa::new("the CA the service names");
    let other = TestCa::new("some other CA");
    let server = tls::start(&other, &["127.0.0.1"], &[H2, HTTP11]).await;
    let mut svc = secure(url(server.addr), UpstreamProtocol::Auto, &trusted);
    svc.breaker = BreakerConfig {
        consecutive_failures: 2,
        cooldown: std::time::Duration::from_secs(60),
    };
    let gw = gateway(&mesh, svc).await;
    // POSTs are not retried: one handshake, one failure each.
    for _ in 0..2 {
        let (status, _, body) = post(&gw, b"x").await;
        assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    }
    let (status, headers, body) = post(&gw, b"x").await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{text}");
    assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
    assert!(text.contains("circuit breaker is open"), "{text}");
    assert!(
        text.contains("(the last: upstream https://")
            && text.contains("sent a certificate that is not trusted: UnknownIssuer"),
        "{text}"
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        2,
        "the open breaker sent nothing"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn server_name_overrides_the_name_checked_and_sent() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    let server = tls::start(&ca, &["api.test"], &[H2, HTTP11]).await;
    let mut named = secure(url(server.addr), UpstreamProtocol::Auto, &ca);
    named.tls.server_name = Some("api.test".into());
    let mut by_ip = secure(url(server.addr), UpstreamProtocol::Auto, &ca);
    by_ip.name = "by-ip".into();
    let plain = support::upstream::start().await;
    let mut cfg = config(&mesh, plain.addr);
    cfg.policy.services.extend([named, by_ip]);
    let gw = Running::start(cfg).await;

    let (status, seen, echoed) = post(&gw, b"named").await;
    assert_eq!((status, &echoed[..]), (200, &b"named"[..]));
    // The request still names the address it was sent to.
    assert_eq!(seen["x-seen-authority"], server.addr.to_string().as_str());

    let (status, headers, body) = http_get(
        gw.dev.unwrap(),
        "/",
        &[("host", "by-ip"), ALICE],
        Some(Bytes::from_static(b"x")),
    )
    .await;
    let reason = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{reason}");
    assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
    assert!(
        reason.contains("sent a certificate for another name")
            && reason.contains("127.0.0.1")
            && reason.contains("api.test")
            && reason.contains("set tls.server_name"),
        "{reason}"
    );
    gw.stop().await.unwrap();
}

#[tokio::test]
async fn http2_refuses_a_server_that_does_not_choose_h2() {
    let mesh = Mesh::new();
    let ca = TestCa::new("upstream CA");
    // One server answers the offer of h2 alone with no_application_protocol (RFC 7301
    // §3.2); the other ignores ALPN and would speak HTTP/1.1.
    let h1_only = tls::start(&ca, &["127.0.0.1"], &[HTTP11]).await;
    let no_alpn = tls::start(&ca, &["127.0.0.1"], &[]).await;
    for (server, detail) in [
        (&h1_only, "no_application_protocol alert"),
        (&no_alpn, "chose no application protocol"),
    ] {
        let gw = gateway(
            &mesh,
            secure(url(server.addr), UpstreamProtocol::Http2, &ca),
        )
        .await;
        let (status, headers, body) = post(&gw, b"x").await;
        let reason = String::from_utf8_lossy(&body);
        assert_eq!(status, 502, "{reason}");
        assert_eq!(headers["x-aimux-outcome"], "upstream_unreachable");
        let expected = format!(
            "upstream https://{} of service `secure` did not agree to HTTP/2 (ALPN h2",
            server.addr
        );
        assert!(reason.starts_with(&expected), "{reason}");
        assert!(reason.contains(detail), "{reason}");
        assert!(reason.contains("\"auto\""), "{reason}");
        gw.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_plain_http_server_at_an_https_url_is_told_apart() {
    let mesh = Mesh::new();
    let plain = support::upstream::start().await;
    let mut cfg = config(&mesh, plain.addr);
    let ca = TestCa::new("upstream CA");
    cfg.policy.services.push(secure(
        format!("https://{}", plain.addr),
        UpstreamProtocol::Auto,
        &ca,
    ));
    let gw = Running::start(cfg).await;
    let (status, _, body) = post(&gw, b"x").await;
    let reason = String::from_utf8_lossy(&body);
    assert_eq!(status, 502, "{reason}");
    assert!(
        reason.contains("did not complete a TLS handshake")
            && reason.contains("use an http:// URL"),
        "{reason}"
    );
    gw.stop().await.unwrap();
}
