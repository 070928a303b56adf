//! The whole data path with the real gateway: agent → sidecar → tunnel (QUIC, or HTTP/2 over
//! TLS/TCP) → `aimux-gateway` → a real HTTP/1.1 upstream, and back. Both crates' halves of
//! each transport meet here, so this is where the HTTP/2 framing (the `200` head, the
//! envelope bodies, the reset trailer, GOAWAY) is proven to interoperate.
// Test helpers outside `#[test]` functions may unwrap too (clippy.toml allows it in tests).
#![allow(clippy::unwrap_used)]

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_gateway::{
    AccessRuleConfig, Action, CancellationToken, Gateway, GatewayConfig, ServiceConfig, Timeouts,
    TunnelConfig, UpstreamProtocol,
};
use aimux_sidecar::{ConnectionState, Sidecar, SidecarError, StatsHandle, Transport};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use support::http_client::{Client, WAIT, fetch, get, post};
use support::{Mesh, init_tracing, over_both};

over_both!(
    bodies_identity_and_events_cross_the_real_gateway,
    a_revoked_agent_is_cut_off_and_refused_on_reconnect,
    a_request_in_flight_finishes_while_the_gateway_shuts_down,
    a_thousand_concurrent_requests_share_one_tunnel_connection,
    access_rules_see_the_intent_the_sidecar_sniffed,
);

type UpBody = BoxBody<Bytes, Infallible>;

/// A real HTTP/1.1 upstream: `/sse` streams the events the test sends, one by one;
/// anything else echoes the body. Every answer reports the `x-aimux-identity` it saw.
async fn upstream(events: mpsc::Receiver<Bytes>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Arc::new(Mutex::new(Some(events)));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let events = Arc::clone(&events);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let events = Arc::clone(&events);
                    async move { Ok::<_, Infallible>(answer(req, events).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(
    req: Request<Incoming>,
    events: Arc<Mutex<Option<mpsc::Receiver<Bytes>>>>,
) -> Response<UpBody> {
    let seen = req
        .headers()
        .get_all("x-aimux-identity")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(",");
    let body: UpBody = if req.uri().path().ends_with("/sse") {
        let mut rx = events.lock().await.take().expect("one SSE request");
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map_ok_frames();
        BodyExt::boxed(StreamBody::new(stream))
    } else {
        let collected = req.into_body().collect().await.unwrap().to_bytes();
        BodyExt::boxed(http_body_util::Full::new(collected))
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("x-seen-identity", seen.parse().unwrap());
    response
}

trait MapOkFrames: futures_util::Stream<Item = Bytes> + Sized {
    fn map_ok_frames(self) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
        futures_util::StreamExt::map(self, |b| Ok(Frame::data(b)))
    }
}
impl<S: futures_util::Stream<Item = Bytes>> MapOkFrames for S {}

/// A real gateway with both tunnel listeners, service `echo` on `upstream`, all allowed.
async fn gateway(mesh: &Mesh, upstream: SocketAddr) -> (Gateway, CancellationToken) {
    let allow_all = AccessRuleConfig {
        name: None,
        from: None,
        to: None,
        intents: vec![],
        action: Action::Allow,
    };
    gateway_with_access(mesh, upstream, vec![allow_all]).await
}

/// Like [`gateway`], with the given access rules.
async fn gateway_with_access(
    mesh: &Mesh,
    upstream: SocketAddr,
    access: Vec<AccessRuleConfig>,
) -> (Gateway, CancellationToken) {
    let mut tunnel = TunnelConfig::new(mesh.gateway.identity().unwrap(), mesh.crl_path());
    tunnel.quic = Some("127.0.0.1:0".parse().unwrap());
    tunnel.h2 = Some("127.0.0.1:0".parse().unwrap());
    let config = GatewayConfig {
        trust: mesh.trust(),
        tunnel: Some(tunnel),
        dev_http: None,
        admin: None,
        policy: aimux_gateway::PolicyConfig {
            services: vec![ServiceConfig {
                name: "echo".into(),
                upstreams: vec![format!("http://{upstream}").parse().unwrap()],
                protocol: UpstreamProtocol::Http1,
                balance: Default::default(),
                breaker: Default::default(),
                retries: 2,
                tls: Default::default(),
                agent: None,
                max_requests: ServiceConfig::DEFAULT_MAX_REQUESTS,
            }],
            access,
            ..Default::default()
        },
        audit: None,
        timeouts: Timeouts {
            shutdown_grace: Duration::from_secs(5),
            ..Timeouts::default()
        },
    };
    (
        Gateway::bind(config).await.unwrap(),
        CancellationToken::new(),
    )
}

struct Running {
    stats: StatsHandle,
    echo: SocketAddr,
    sidecar_stop: CancellationToken,
    sidecar: JoinHandle<Result<(), SidecarError>>,
    gateway_stop: CancellationToken,
    gateway: JoinHandle<Result<(), aimux_gateway::GatewayError>>,
}

async fn start(mesh: &Mesh, t: Transport, upstream: SocketAddr) -> Running {
    start_with(mesh, t, gateway(mesh, upstream).await).await
}

async fn start_with(
    mesh: &Mesh,
    t: Transport,
    (gw, gateway_stop): (Gateway, CancellationToken),
) -> Running {
    init_tracing();
    let addr = match t {
        Transport::H2 => gw.h2_addr().unwrap(),
        _ => gw.quic_addr().unwrap(),
    };
    let gateway = tokio::spawn(gw.run(gateway_stop.clone()));
    let mut config = mesh.sidecar_config(t, addr);
    config.tunnel.revoked_backoff = Duration::from_secs(20);
    let sidecar = Sidecar::bind(config).await.unwrap();
    let stats = sidecar.stats_handle();
    let echo = sidecar.listener_addrs()[0].0;
    let sidecar_stop = CancellationToken::new();
    let sidecar = tokio::spawn(sidecar.run(sidecar_stop.clone()));
    let running = Running {
        stats,
        echo,
        sidecar_stop,
        sidecar,
        gateway_stop,
        gateway,
    };
    running.wait_for(ConnectionState::Connected).await;
    running
}

impl Running {
    async fn wait_for(&self, state: ConnectionState) -> aimux_sidecar::SidecarStats {
        tokio::time::timeout(
            Duration::from_secs(15),
            self.stats.wait_for_state(|s| s == state),
        )
        .await
        .unwrap_or_else(|_| panic!("never reached {state}: {:?}", self.stats.snapshot()))
    }

    async fn stop(self) {
        self.sidecar_stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.sidecar)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        self.gateway_stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.gateway)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn bodies_identity_and_events_cross_the_real_gateway(t: Transport) {
    let mesh = Mesh::new();
    let (events_tx, events_rx) = mpsc::channel(1);
    let up = upstream(events_rx).await;
    let running = start(&mesh, t, up).await;

    // A multi-megabyte body, byte for byte through both halves of the tunnel, with a
    // forged identity header that the gateway replaces with the certificate's.
    let big: Vec<u8> = (0..(6 << 20) + 5)
        .map(|i: u32| (i * 31 + i / 7) as u8)
        .collect();
    let mut request = post("echo", "/upload", big.clone());
    request.headers_mut().insert(
        "x-aimux-identity",
        "spiffe://example.org/agent/mallory".parse().unwrap(),
    );
    let (parts, body) = fetch(running.echo, request).await;
    assert_eq!(parts.status, 200);
    assert_eq!(body.len(), big.len());
    assert_eq!(sha256(&body), sha256(&big));
    assert_eq!(
        parts.headers["x-seen-identity"],
        mesh.alice_id().to_string()
    );

    // Server-sent events, each released only once the agent has the previous one.
    let mut client = Client::connect(running.echo).await;
    let response = client.send(get("echo", "/sse")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    for i in 0..5 {
        let event = format!("data: {i}\n\n");
        events_tx.send(Bytes::from(event.clone())).await.unwrap();
        let mut got = Vec::new();
        while got.len() < event.len() {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .unwrap_or_else(|_| panic!("event {i} did not arrive"))
                .expect("the stream goes on")
                .unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(got, event.as_bytes());
    }
    drop(events_tx);
    let end = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert!(end.is_none(), "the event stream ends cleanly");
    running.stop().await;
}

/// The real gateway's CRL watcher closes the live connection; over QUIC it says REVOKED,
/// over HTTP/2 the reconnect is refused with `certificate_revoked`. Either way the sidecar
/// ends up in the revoked state, backing off, answering 503 at once.
async fn a_revoked_agent_is_cut_off_and_refused_on_reconnect(t: Transport) {
    let mesh = Mesh::new();
    let (_events_tx, events_rx) = mpsc::channel(1);
    let up = upstream(events_rx).await;
    let running = start(&mesh, t, up).await;
    let (parts, _) = fetch(running.echo, get("echo", "/before")).await;
    assert_eq!(parts.status, 200);

    let revoked_at = Instant::now();
    mesh.revoke_alice();
    let revoked = running.wait_for(ConnectionState::Revoked).await;
    assert!(
        revoked_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        revoked_at.elapsed()
    );
    let cause = revoked.last_error.unwrap();
    assert!(cause.contains("certificate for agent/alice"), "{cause}");
    assert!(revoked.retry_in.unwrap() >= Duration::from_secs(10));

    let started = Instant::now();
    let (parts, _) = fetch(running.echo, get("echo", "/after")).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(parts.status, 503);
    running.stop().await;
}

/// The gateway's shutdown lets requests in flight finish (QUIC: no new stream credit;
/// HTTP/2: GOAWAY, RFC 9113 §6.8): the sidecar keeps reading them to their clean end while
/// it already tries to reconnect for new requests.
async fn a_request_in_flight_finishes_while_the_gateway_shuts_down(t: Transport) {
    let mesh = Mesh::new();
    let (events_tx, events_rx) = mpsc::channel(1);
    let up = upstream(events_rx).await;
    let running = start(&mesh, t, up).await;
    let mut client = Client::connect(running.echo).await;
    let response = client.send(get("echo", "/sse")).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();

    running.gateway_stop.cancel();
    if t == Transport::H2 {
        // The GOAWAY arrived: no new requests on this connection.
        running.wait_for(ConnectionState::Reconnecting).await;
    }
    events_tx
        .send(Bytes::from_static(b"data: last\n\n"))
        .await
        .unwrap();
    let frame = tokio::time::timeout(WAIT, body.frame())
        .await
        .expect("the event arrives")
        .expect("the stream goes on")
        .unwrap();
    assert_eq!(&frame.into_data().unwrap()[..], b"data: last\n\n");
    drop(events_tx);
    let end = tokio::time::timeout(WAIT, body.frame()).await.unwrap();
    assert!(end.is_none(), "the response ends cleanly, not cut off");

    tokio::time::timeout(Duration::from_secs(10), running.gateway)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    running.sidecar_stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running.sidecar)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A thousand agent connections at once, each with a request in flight: the sidecar carries
/// them all on its one tunnel connection (within the gateway's 1024 concurrent streams).
async fn a_thousand_concurrent_requests_share_one_tunnel_connection(t: Transport) {
    let mesh = Mesh::new();
    let (_events_tx, events_rx) = mpsc::channel(1);
    let up = upstream(events_rx).await;
    let running = start(&mesh, t, up).await;
    let echo = running.echo;
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..1000 {
        requests.spawn(async move {
            let body = format!("request {i}");
            let (parts, got) = fetch(echo, post("echo", &format!("/n/{i}"), body.clone())).await;
            assert_eq!(parts.status, 200, "{i}");
            assert_eq!(got, body.as_bytes(), "{i}");
        });
    }
    let all = async {
        while let Some(done) = requests.join_next().await {
            done.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("1000 requests finish within the bound");
    let stats = running.stats.snapshot();
    assert_eq!((stats.connects, stats.forwarded), (1, 1000));
    running.stop().await;
}

/// The gateway's access rules match the intent the sidecar sniffed from the body: a rule
/// that allows only `mcp tools/call a` lets tool `a` through to the upstream and refuses
/// tool `b` (and every other request) with 403, whatever the path says.
async fn access_rules_see_the_intent_the_sidecar_sniffed(t: Transport) {
    let mesh = Mesh::new();
    let (_events_tx, events_rx) = mpsc::channel(1);
    let up = upstream(events_rx).await;
    let only_tool_a = AccessRuleConfig {
        name: None,
        from: None,
        to: None,
        intents: vec!["mcp tools/call a".parse().unwrap()],
        action: Action::Allow,
    };
    let running = start_with(
        &mesh,
        t,
        gateway_with_access(&mesh, up, vec![only_tool_a]).await,
    )
    .await;
    let call = |tool: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"arguments":{{}},"name":"{tool}"}}}}"#
        );
        let mut request = post("echo", "/mcp", body);
        request
            .headers_mut()
            .insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
        request
    };

    let request = call("a");
    let sent = request.body().clone();
    let (parts, body) = fetch(running.echo, request).await;
    assert_eq!(parts.status, 200, "{:?}", String::from_utf8_lossy(&body));
    // The upstream echoed the body, byte for byte.
    let sent = http_body_util::BodyExt::collect(sent)
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, sent);

    for request in [call("b"), post("echo", "/mcp", "tools/call a")] {
        let (parts, body) = fetch(running.echo, request).await;
        assert_eq!(parts.status, 403, "{:?}", String::from_utf8_lossy(&body));
        assert_eq!(parts.headers["x-aimux-outcome"], "denied_by_policy");
    }
    running.stop().await;
}
