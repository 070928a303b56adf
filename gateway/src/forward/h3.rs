//! HTTP/3 upstreams (RFC 9114): the QUIC client the forwarder uses for services with
//! `protocol = "http3"`.
//!
//! Each upstream has one QUIC connection, opened by the first request that needs it and
//! shared by every later one as streams, one request per bidirectional stream (RFC 9114
//! §4.1); a connection that has closed, timed out or been told to go away is replaced by
//! the next request. Connections keep themselves alive with QUIC PINGs and end after an
//! idle timeout (RFC 9000 §10.1), so a dead upstream is noticed on an idle connection too.
//! The peer's stream limit (RFC 9000 §4.6) bounds the requests in flight on a connection;
//! a request that finds no stream credit waits at most the connect timeout.
//!
//! One client endpoint (UDP socket) per address family serves every HTTP/3 upstream. The
//! [`H3Client`] owns the endpoints and the h3 connection drivers (one task per connection,
//! on its `TaskTracker`); [`H3Client::shutdown`] closes them.

mod body;
mod connect;
mod error;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use h3::error::Code;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use quinn::{Endpoint, VarInt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub(crate) use self::body::H3Body;
pub(crate) use self::connect::client_config;
pub(crate) use self::error::H3Error;
use super::body::RequestBody;
use super::service::Upstream;
use crate::config::UpstreamTls;
use crate::error::GatewayError;

/// On shutdown, how long the connection drivers and endpoints get to close.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type RequestStream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// One HTTP/3 upstream of a service: where it is, the name its certificate must carry,
/// and its connection, if one is open.
pub(crate) struct H3Upstream {
    /// `https://host:port/base`, for messages.
    url: String,
    /// Where to connect: the URL's host and port (443 if it has none).
    authority: Authority,
    /// Sent as SNI and checked against the certificate (the URL's host, or `server_name`).
    server_name: String,
    config: quinn::ClientConfig,
    /// Held while connecting, so that concurrent first requests wait for one handshake
    /// instead of opening a connection each (RFC 9114 §3.3: one connection per server).
    conn: tokio::sync::Mutex<Option<Live>>,
}

impl std::fmt::Debug for H3Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H3Upstream")
            .field("url", &self.url)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl H3Upstream {
    /// `https://host:port/base`, as normalised from the configuration.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Parses an `https://host[:port][/base]` upstream URL of an `http3` service. The
    /// base-URL rules are those of every other upstream ([`Upstream::parse`]).
    pub(super) fn parse(
        service: &str,
        uri: &Uri,
        tls: &UpstreamTls,
        config: &quinn::ClientConfig,
    ) -> Result<(Upstream, H3Upstream), GatewayError> {
        let bad = |reason| GatewayError::BadUpstream {
            service: service.to_owned(),
            upstream: uri.to_string(),
            reason,
        };
        if uri.scheme() != Some(&Scheme::HTTPS) {
            return Err(bad(
                "an http3 service's upstreams are https://HOST:PORT URLs: HTTP/3 always runs \
                 over TLS (RFC 9114 §3.1)",
            ));
        }
        // The same checks as an http:// base URL (authority, no user information, no
        // query), then the scheme put back.
        let mut parts = uri.clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        let plain = Uri::from_parts(parts).map_err(|_| bad("it is not a valid URL"))?;
        let mut upstream = Upstream::parse(service, &plain).map_err(|e| match e {
            // Named as configured, not as the http:// stand-in.
            GatewayError::BadUpstream { reason, .. } => bad(reason),
            other => other,
        })?;
        let port = upstream.authority.port_u16().unwrap_or(443);
        let host = upstream.authority.host();
        upstream.url = format!("https://{}{}", upstream.authority, upstream.base_path);
        let server_name = match &tls.server_name {
            Some(name) => name.clone(),
            // An IPv6 literal is written in brackets in a URL, not in a certificate.
            None => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        };
        if let Err(e) = rustls_pki_types::ServerName::try_from(server_name.as_str()) {
            return Err(GatewayError::UpstreamTls {
                service: service.to_owned(),
                reason: format!(
                    "`{server_name}` cannot be checked against a certificate ({e}); set \
                     tls.server_name to the DNS name the upstream's certificate is issued for"
                ),
            });
        }
        let h3 = H3Upstream {
            url: upstream.url.clone(),
            authority: format!("{}:{port}", host)
                .parse()
                .map_err(|_| bad("its host and port do not form an authority"))?,
            server_name,
            config: config.clone(),
            conn: tokio::sync::Mutex::new(None),
        };
        Ok((upstream, h3))
    }
}

/// An open HTTP/3 connection: the QUIC connection and the h3 request sender.
#[derive(Clone)]
struct Live {
    quic: quinn::Connection,
    send: SendRequest,
    /// Set when the upstream said it is going away (GOAWAY, RFC 9114 §5.2): requests in
    /// flight finish on it, new ones go to a new connection.
    retired: Arc<AtomicBool>,
}

impl Live {
    fn usable(&self) -> bool {
        self.quic.close_reason().is_none() && !self.retired.load(Ordering::Relaxed)
    }
}

/// The client endpoints of every HTTP/3 upstream and the tasks of their connections.
#[derive(Debug)]
pub(crate) struct H3Client {
    endpoints: Mutex<Endpoints>,
    /// The h3 connection drivers.
    tasks: TaskTracker,
    stop: CancellationToken,
    /// Bounds the handshake and the wait for a request stream.
    connect_timeout: Duration,
}

/// Opened on first use: a gateway without HTTP/3 upstreams binds no UDP socket for them.
#[derive(Debug, Default)]
struct Endpoints {
    v4: Option<Endpoint>,
    v6: Option<Endpoint>,
    closed: bool,
}

impl H3Client {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        Self {
            endpoints: Mutex::new(Endpoints::default()),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            connect_timeout,
        }
    }

    /// Sends `request` to `upstream` and returns once the response head has arrived (or the
    /// request failed); the rest of the request body is sent as the response body is read.
    pub(crate) async fn request(
        &self,
        upstream: &H3Upstream,
        request: Request<RequestBody>,
    ) -> Result<Response<H3Body>, H3Error> {
        let (mut parts, body) = request.into_parts();
        // RFC 9114 §4.3.1: the target travels as `:scheme`, `:authority` and `:path`; the
        // upstream's authority replaces `Host` (which, if also sent, would have to match).
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(Scheme::HTTPS);
        parts.uri = Uri::from_parts(uri).map_err(|e| H3Error::Target(e.to_string()))?;
        parts.headers.remove(http::header::HOST);
        let head = Request::from_parts(parts, ());
        let (live, stream) = self.open(upstream, head).await?;
        body::exchange(live.send, stream, body).await
    }

    /// Closes every HTTP/3 connection (H3_NO_ERROR) and the endpoints, waiting at most
    /// about a second for the closes to be sent. Later requests are refused.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        let endpoints: Vec<Endpoint> = {
            let mut e = self
                .endpoints
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            e.closed = true;
            [e.v4.take(), e.v6.take()].into_iter().flatten().collect()
        };
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, self.tasks.wait()).await;
        for endpoint in &endpoints {
            endpoint.close(h3_code(Code::H3_NO_ERROR), b"gateway shutting down");
        }
        for endpoint in endpoints {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, endpoint.wait_idle()).await;
        }
    }

    /// Opens a request stream and sends the request head on it.
    async fn open(
        &self,
        upstream: &H3Upstream,
        head: Request<()>,
    ) -> Result<(Live, RequestStream), H3Error> {
        let (live, fresh) = self.connection(upstream).await?;
        let again = (!fresh).then(|| copy_head(&head));
        match (self.open_on(&live, head).await, again) {
            (Ok(stream), _) => Ok((live, stream)),
            // A connection that served earlier requests may have ended, or been told to go
            // away, without the gateway having noticed yet: the stream could not be opened,
            // so the request goes once more, on a new connection.
            (Err(e), Some(head)) if e.is_stale_connection() => {
                live.retired.store(true, Ordering::Relaxed);
                debug!(upstream = %upstream.url, error = %e,
                    "HTTP/3 connection no longer usable; reconnecting");
                let (live, _) = self.connection(upstream).await?;
                let stream = self.open_on(&live, head).await?;
                Ok((live, stream))
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Sends the request head on a new stream of `live`, waiting (bounded) for stream
    /// credit if the upstream's limit of concurrent requests is reached.
    async fn open_on(&self, live: &Live, head: Request<()>) -> Result<RequestStream, H3Error> {
        let mut send = live.send.clone();
        match tokio::time::timeout(self.connect_timeout, send.send_request(head)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(H3Error::Open(e)),
            Err(_) => Err(H3Error::NoStream(self.connect_timeout)),
        }
    }

    /// The upstream's connection, opened if there is none usable; `true` if it is new.
    async fn connection(&self, upstream: &H3Upstream) -> Result<(Live, bool), H3Error> {
        let get = async {
            let mut slot = upstream.conn.lock().await;
            if let Some(live) = slot.as_ref().filter(|l| l.usable()) {
                return Ok((live.clone(), false));
            }
            *slot = None;
            let live = self.connect(upstream).await?;
            *slot = Some(live.clone());
            Ok((live, true))
        };
        tokio::time::timeout(self.connect_timeout, get)
            .await
            .map_err(|_| H3Error::ConnectTimeout(self.connect_timeout))?
    }
}

/// A copy of a bodiless request head (method, target, headers), for sending it again.
fn copy_head(head: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = head.method().clone();
    *copy.uri_mut() = head.uri().clone();
    *copy.headers_mut() = head.headers().clone();
    copy
}

/// An HTTP/3 error code as a QUIC application error code.
fn h3_code(code: Code) -> VarInt {
    VarInt::from_u64(code.value()).unwrap_or(VarInt::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServiceConfig, UpstreamProtocol};
    use crate::forward::Service;

    fn tls(server_name: Option<&str>) -> UpstreamTls {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        UpstreamTls {
            roots: vec![ca.cert.der().clone()],
            server_name: server_name.map(Into::into),
        }
    }

    fn service(url: &str, tls: UpstreamTls) -> Result<Service, GatewayError> {
        Service::from_config(
            &ServiceConfig {
                name: "q".into(),
                upstreams: vec![url.parse().unwrap()],
                protocol: UpstreamProtocol::Http3,
                balance: Default::default(),
                breaker: Default::default(),
                retries: 2,
                tls,
                agent: None,
                max_requests: ServiceConfig::DEFAULT_MAX_REQUESTS,
            },
            std::time::Duration::from_secs(1),
        )
    }

    #[test]
    fn http3_upstreams_are_https_urls_with_a_default_port_of_443() {
        let s = service("https://127.0.0.1:8443/api/", tls(None)).unwrap();
        assert_eq!(s.upstreams[0].url, "https://127.0.0.1:8443/api");
        assert_eq!(s.upstreams[0].base_path, "/api");
        assert_eq!(s.h3[0].authority, "127.0.0.1:8443");
        assert_eq!(s.h3[0].server_name, "127.0.0.1");

        let s = service("https://[::1]", tls(None)).unwrap();
        assert_eq!(s.h3[0].authority, "[::1]:443");
        assert_eq!(s.h3[0].server_name, "::1", "no brackets in a certificate");

        let s = service("https://10.0.0.7:443", tls(Some("api.internal"))).unwrap();
        assert_eq!(s.h3[0].server_name, "api.internal");
    }

    #[test]
    fn anything_but_https_is_refused_with_the_reason() {
        for url in ["http://127.0.0.1:8443", "tcp://127.0.0.1:8443"] {
            let e = service(url, tls(None)).unwrap_err().to_string();
            assert!(e.contains("HTTP/3 always runs over TLS"), "{e}");
        }
        let e = service("https://a:1/?x=1", tls(None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`https://a:1/?x=1`") && e.contains("query"),
            "{e}"
        );
        let e = service("https://a:1", tls(Some("not a name!")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls.server_name"), "{e}");
    }
}
