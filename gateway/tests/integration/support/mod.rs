//! Shared by the gateway's integration tests: a real mesh CA in a tempdir, a running
//! gateway on ephemeral ports (both tunnel transports), real HTTP/1.1 and HTTP/3
//! upstreams, and a small tunnel client (QUIC or HTTP/2 over TLS) that speaks the envelope
//! protocol the way a sidecar does.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

pub mod h3_server;
pub mod tls;
pub mod tunnel;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aimux_certs::rustls;
use aimux_certs::time::{Duration as TimeDuration, OffsetDateTime};
use aimux_certs::tls::{MeshServerVerifier, MeshTrust, client_config};
use aimux_certs::{
    Authority, Identity, InitParams, IssueParams, IssuedCert, TrustDomain, Validity, WorkloadName,
};
use aimux_gateway::{
    AccessRuleConfig, Action, CancellationToken, Gateway, GatewayConfig, GatewayError,
    PolicyConfig, ServiceConfig, Timeouts, TunnelConfig, UpstreamProtocol,
};
use aimux_wire::{HttpRequestHead, Limits, RequestEnvelope, ResponseEnvelope, envelope_len};
use bytes::{Bytes, BytesMut};

#[allow(unused_imports)]
pub use tunnel::{BOTH, Closed, Conn, ConnectError, ReadErr, Recv, Send, Transport};

pub const DOMAIN: &str = "aimux.test";
/// Every test step that waits on the network is bounded by this, so nothing can hang.
pub const STEP: Duration = Duration::from_secs(20);

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn name(s: &str) -> WorkloadName {
    WorkloadName::new(s).unwrap()
}

/// A mesh CA with a gateway `edge` and agents `alice` and `bob`.
pub struct Mesh {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    pub gateway: IssuedCert,
    pub alice: IssuedCert,
    pub bob: IssuedCert,
}

impl Mesh {
    pub fn new() -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let days = Validity::days_from(now(), 30).unwrap();
        let gateway = ca
            .issue(&IssueParams::gateway(
                name("edge"),
                vec!["localhost".into()],
                vec![],
                days,
            ))
            .unwrap();
        let alice = ca.issue(&IssueParams::agent(name("alice"), days)).unwrap();
        let bob = ca.issue(&IssueParams::agent(name("bob"), days)).unwrap();
        Mesh {
            dir,
            ca,
            gateway,
            alice,
            bob,
        }
    }

    pub fn trust(&self) -> MeshTrust {
        MeshTrust::load(&self.dir.path().join("ca.crt")).unwrap()
    }

    pub fn crl_path(&self) -> std::path::PathBuf {
        self.dir.path().join("crl.pem")
    }

    /// An agent certificate that expired yesterday.
    pub fn expired_agent(&self, agent: &str) -> IssuedCert {
        let validity = Validity::new(
            now() - TimeDuration::days(10),
            now() - TimeDuration::days(1),
        )
        .unwrap();
        self.ca
            .issue(&IssueParams::agent(name(agent), validity))
            .unwrap()
    }

    /// The TLS client configuration a sidecar presenting `agent` would use (ALPN is set
    /// per transport when dialing).
    pub fn client_config(&self, agent: &Identity) -> rustls::ClientConfig {
        client_config(agent, self.server_verifier()).unwrap()
    }

    pub fn server_verifier(&self) -> Arc<MeshServerVerifier> {
        Arc::new(MeshServerVerifier::new(self.trust(), self.gateway.id.clone(), vec![]).unwrap())
    }
}

pub fn new_ca(dir: &std::path::Path) -> Authority {
    let params = InitParams::new(TrustDomain::new(DOMAIN).unwrap(), now()).unwrap();
    Authority::init(dir, &params, now()).unwrap()
}

/// A loopback port on which nothing listens, and nothing will while the test binary runs:
/// the port stays bound (not listening), so a parallel test's listener cannot be given it,
/// and connections to it are refused.
pub fn closed_port() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

pub fn service(name: &str, url: String) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        upstreams: vec![url.parse().unwrap()],
        protocol: UpstreamProtocol::Http1,
        balance: Default::default(),
        breaker: Default::default(),
        retries: 2,
        tls: Default::default(),
        agent: None,
        max_requests: ServiceConfig::DEFAULT_MAX_REQUESTS,
    }
}

pub fn allow_all() -> AccessRuleConfig {
    AccessRuleConfig {
        name: None,
        from: None,
        to: None,
        intents: vec![],
        action: Action::Allow,
    }
}

/// The default test configuration: both tunnel listeners; services `echo` and `tools` on
/// the test upstream (base paths `/svc/echo` and `/svc/tools`), `dead` on a closed port;
/// everything allowed.
pub fn config(mesh: &Mesh, upstream: SocketAddr) -> GatewayConfig {
    let identity = mesh.gateway.identity().unwrap();
    let mut tunnel = TunnelConfig::new(identity, mesh.crl_path());
    tunnel.max_streams_per_connection = 1024;
    tunnel.quic = Some("127.0.0.1:0".parse().unwrap());
    tunnel.h2 = Some("127.0.0.1:0".parse().unwrap());
    GatewayConfig {
        trust: mesh.trust(),
        tunnel: Some(tunnel),
        dev_http: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        policy: PolicyConfig {
            services: vec![
                service("echo", format!("http://{upstream}/svc/echo")),
                service("tools", format!("http://{upstream}/svc/tools/")),
                service("dead", format!("http://{}", closed_port())),
            ],
            access: vec![allow_all()],
            ..PolicyConfig::default()
        },
        audit: None,
        timeouts: Timeouts {
            response_head: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(2),
            ..Timeouts::default()
        },
    }
}

/// A gateway running on the current runtime.
pub struct Running {
    pub quic: SocketAddr,
    pub h2: SocketAddr,
    pub dev: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    token: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), GatewayError>>,
}

impl Running {
    pub async fn start(config: GatewayConfig) -> Running {
        let gateway = Gateway::bind(config).await.unwrap();
        let token = CancellationToken::new();
        Running {
            quic: gateway.quic_addr().unwrap(),
            h2: gateway.h2_addr().unwrap(),
            dev: gateway.dev_http_addr(),
            admin: gateway.admin_addr(),
            token: token.clone(),
            task: tokio::spawn(gateway.run(token)),
        }
    }

    /// The tunnel listener of `transport`.
    pub fn addr(&self, transport: Transport) -> SocketAddr {
        match transport {
            Transport::Quic => self.quic,
            Transport::H2 => self.h2,
        }
    }

    /// Cancels the gateway and waits (bounded) for `run` to return.
    pub async fn stop(self) -> Result<(), GatewayError> {
        self.token.cancel();
        tokio::time::timeout(STEP, self.task)
            .await
            .expect("gateway stops within the bound")
            .unwrap()
    }
}

/// Connects to the gateway's `transport` listener as a sidecar presenting `agent` would.
pub async fn connect(mesh: &Mesh, agent: &IssuedCert, gw: &Running, transport: Transport) -> Conn {
    let tls = mesh.client_config(&agent.identity().unwrap());
    try_connect(tls, gw.addr(transport), transport)
        .await
        .expect("the gateway accepts the agent")
}

/// A handshake attempt; the connection is returned only if the gateway kept it open.
///
/// With TLS 1.3 the client finishes its side of the handshake before the server has
/// checked the client certificate, so a refusal may show up as the connection being closed
/// right after it "succeeded". To tell the two apart without sleeping, a request is sent:
/// a connection the gateway accepted answers it, a refused one fails. (Over TCP the dialer
/// also waits for the gateway's first bytes: its SETTINGS or its alert.)
pub async fn try_connect(
    tls: rustls::ClientConfig,
    gateway: SocketAddr,
    transport: Transport,
) -> Result<Conn, ConnectError> {
    let conn = tunnel::dial(tls, gateway, transport).await?;
    // Probe: an envelope the gateway answers (no route) without any upstream.
    let probe = RequestEnvelope::http("no-such-service", HttpRequestHead::new("GET", "x", "/"));
    match tokio::time::timeout(STEP, exchange(&conn, &probe, Bytes::new())).await {
        Ok(Ok(_)) => Ok(conn),
        Ok(Err(e)) => match &conn {
            Conn::Quic(c) => Err(ConnectError::Quic(
                c.close_reason()
                    .unwrap_or(quinn::ConnectionError::LocallyClosed),
            )),
            Conn::H2 { .. } => Err(ConnectError::Other(e)),
        },
        Err(_) => panic!("probe request did not finish within the bound"),
    }
}

/// A reply read from a stream.
#[derive(Debug)]
pub struct Reply {
    pub envelope: ResponseEnvelope,
    pub body: Vec<u8>,
    /// How the response direction ended: `Ok` for FIN, else the reset or connection error.
    pub end: Result<(), ReadErr>,
}

impl Reply {
    pub fn header(&self, name: &str) -> String {
        let head = self.envelope.http.as_ref().expect("an HTTP response head");
        head.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    pub fn status(&self) -> u16 {
        self.envelope.http.as_ref().map_or(0, |h| h.status)
    }
}

/// Writes `envelope` and `body` (then FIN) on a new stream while reading the reply, as a
/// sidecar does (both directions at once, so large bodies cannot deadlock on flow control).
pub async fn exchange(
    conn: &Conn,
    envelope: &RequestEnvelope,
    body: Bytes,
) -> Result<Reply, String> {
    let (send, recv) = conn.open().await?;
    let bytes = envelope.to_bytes(&Limits::default()).unwrap();
    let writer = write_all(send, bytes, body);
    let reader = read_reply(recv);
    let (written, reply) = tokio::join!(writer, reader);
    let reply = reply?;
    // A refusal may stop our sending early (STOP_SENDING): that is not a failure.
    if let Err(e) = written
        && reply.envelope.outcome == aimux_wire::Outcome::Forwarded
        && reply.end.is_ok()
    {
        return Err(format!("writing the request failed: {e}"));
    }
    Ok(reply)
}

async fn write_all(mut send: Send, envelope: Bytes, body: Bytes) -> Result<(), String> {
    send.write_chunk(envelope).await?;
    // In pieces, as an agent's body would arrive.
    for chunk in body.chunks(256 * 1024) {
        send.write_all(chunk).await?;
    }
    send.finish()
}

/// Reads a response envelope, then the body to its end.
pub async fn read_reply(mut recv: Recv) -> Result<Reply, String> {
    let (envelope, mut body) = read_envelope(&mut recv).await?;
    let end = loop {
        match recv.read_chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    Ok(Reply {
        envelope,
        body: body.to_vec(),
        end,
    })
}

/// Reads just the response envelope; returns it and any payload bytes read with it.
pub async fn read_envelope(recv: &mut Recv) -> Result<(ResponseEnvelope, BytesMut), String> {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    loop {
        if let Ok(total) = envelope_len(&buf, &limits)
            && buf.len() >= total
        {
            let envelope =
                ResponseEnvelope::decode(&mut buf, &limits).map_err(|e| e.to_string())?;
            return Ok((envelope, buf));
        }
        match recv.read_chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => return Err(format!("stream ended after {} bytes", buf.len())),
            Err(ReadErr::Reset(code)) => return Err(format!("stream reset by peer: error {code}")),
            Err(ReadErr::Other(e)) => return Err(e),
        }
    }
}

/// Reads at least `len` payload bytes (bounded by [`STEP`]).
pub async fn read_at_least(recv: &mut Recv, mut got: BytesMut, len: usize) -> BytesMut {
    while got.len() < len {
        let chunk = tokio::time::timeout(STEP, recv.read_chunk())
            .await
            .expect("data forwarded without waiting for more")
            .unwrap()
            .expect("the stream did not end");
        got.extend_from_slice(&chunk);
    }
    got
}

/// An HTTP request envelope from `agent` to `destination`.
pub fn request(
    agent: &IssuedCert,
    destination: &str,
    method: &'static str,
    path: &str,
) -> RequestEnvelope {
    let mut env =
        RequestEnvelope::http(destination, HttpRequestHead::new(method, destination, path));
    env.identity = Some(agent.id.to_string());
    env
}

/// A GET to the gateway's admin or dev listener with plain hyper; returns status,
/// headers and body.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(if body.is_some() { "POST" } else { "GET" })
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body.unwrap_or_default())).unwrap();
    let response = tokio::time::timeout(STEP, client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(STEP, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, headers, body)
}

/// Runs the async test function `$name(transport)` once per tunnel transport, as the tests
/// `$name::quic` and `$name::h2`.
macro_rules! over_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn quic() {
                super::$name(super::support::Transport::Quic).await
            }
            #[tokio::test]
            async fn h2() {
                super::$name(super::support::Transport::H2).await
            }
        }
    )+};
}
pub(crate) use over_both;
