//! Opening an HTTP/3 connection: the QUIC client configuration, name resolution, the
//! handshake (several addresses raced, RFC 8305 style), the ALPN check, HTTP/3 setup and
//! the connection's driver task; and the client endpoints they run on.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use h3::error::Code;
use quinn::crypto::rustls::{HandshakeData, QuicClientConfig};
use quinn::{Endpoint, IdleTimeout, TransportConfig, VarInt};
use tracing::debug;

use super::{H3Client, H3Error, H3Upstream, Live, h3_code};
use crate::config::UpstreamTls;
use crate::error::GatewayError;
use crate::forward::tls::{self, ALPN_H3};

/// QUIC PING interval on upstream connections: keeps NAT bindings and the idle timer alive
/// while a connection is unused (RFC 9000 §10.1.2).
const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// A connection that hears nothing for this long is dead (RFC 9000 §10.1; the smaller of
/// both peers' values applies). With PINGs every 2 s, only a dead or unreachable upstream
/// stays silent that long.
const IDLE_TIMEOUT_MS: u32 = 10_000;
/// Flow-control credit for all response streams of one connection together (RFC 9000
/// §4.1): bounds what an upstream can make the gateway buffer.
const CONNECTION_RECEIVE_WINDOW: u32 = 64 * 1024 * 1024;
/// Largest response head (QPACK field section, RFC 9114 §4.2.2) accepted, sent to the
/// upstream as SETTINGS_MAX_FIELD_SECTION_SIZE. The response envelope carries less anyway.
const MAX_FIELD_SECTION_SIZE: u64 = 64 * 1024;
/// With several addresses, the next handshake starts this long after the previous one
/// unless that one failed first (RFC 8305 §5 recommends 250 ms): QUIC gives no quick
/// refusal to move on from, an unanswered handshake just goes unanswered.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// Most addresses of one name tried.
const MAX_ADDRESSES: usize = 4;

/// The quinn client configuration of one service's HTTP/3 upstreams: its TLS settings with
/// ALPN `h3` (RFC 9114 §3.1), and the transport parameters.
pub(crate) fn client_config(
    service: &str,
    tls: &UpstreamTls,
) -> Result<quinn::ClientConfig, GatewayError> {
    let rustls = tls::client_config(service, tls, &[ALPN_H3])?;
    let quic =
        QuicClientConfig::try_from(Arc::new(rustls)).map_err(|e| GatewayError::UpstreamTls {
            service: service.to_owned(),
            reason: format!("the TLS configuration cannot be used for QUIC: {e}"),
        })?;
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(IDLE_TIMEOUT_MS))))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        // RFC 9114 §6.1: HTTP/3 servers open no bidirectional streams (a client treats
        // one as H3_STREAM_CREATION_ERROR); the control and QPACK streams are
        // unidirectional and quinn's default allows them.
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None);
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

impl H3Client {
    /// Resolves, handshakes, checks ALPN, sets up HTTP/3 and starts the connection driver.
    pub(super) async fn connect(&self, upstream: &H3Upstream) -> Result<Live, H3Error> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(upstream.authority.as_str())
            .await
            .map_err(H3Error::Resolve)?
            .take(MAX_ADDRESSES)
            .collect();
        let quic = self.handshake(upstream, addrs).await?;
        let alpn = quic
            .handshake_data()
            .and_then(|d| d.downcast::<HandshakeData>().ok())
            .and_then(|d| d.protocol);
        if alpn.as_deref() != Some(ALPN_H3) {
            quic.close(h3_code(Code::H3_NO_ERROR), b"no HTTP/3");
            return Err(H3Error::NoH3(alpn));
        }
        let (mut driver, send) = h3::client::builder()
            .max_field_section_size(MAX_FIELD_SECTION_SIZE)
            .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(H3Error::Setup)?;
        // The driver reads the control stream (SETTINGS, GOAWAY) for as long as the
        // connection lives; it ends with the connection, or on shutdown.
        let stop = self.stop.clone();
        let closing = quic.clone();
        let url = upstream.url.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {
                    closing.close(h3_code(Code::H3_NO_ERROR), b"gateway shutting down");
                }
                e = std::future::poll_fn(|cx| driver.poll_close(cx)) => {
                    if !e.is_h3_no_error() {
                        debug!(upstream = %url, error = %e, "HTTP/3 connection ended");
                    }
                    closing.close(h3_code(Code::H3_NO_ERROR), b"");
                }
            }
        });
        debug!(upstream = %upstream.url, addr = %quic.remote_address(), "HTTP/3 connection open");
        Ok(Live {
            quic,
            send,
            retired: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A completed QUIC handshake with one of `addrs`: the first is tried at once, each
    /// next one [`ATTEMPT_DELAY`] later or as soon as an attempt fails, and the first to
    /// complete wins (the others are dropped, which abandons them). With every attempt
    /// failed, the last failure.
    async fn handshake(
        &self,
        upstream: &H3Upstream,
        addrs: Vec<SocketAddr>,
    ) -> Result<quinn::Connection, H3Error> {
        let mut addrs = addrs.into_iter();
        let mut attempts = FuturesUnordered::new();
        let mut failure = None;
        // Each turn starts the next address: at first, after a failure, after a delay.
        loop {
            if let Some(addr) = addrs.next() {
                attempts.push(async move {
                    self.endpoint(addr)?
                        .connect_with(upstream.config.clone(), addr, &upstream.server_name)
                        .map_err(H3Error::Connect)?
                        .await
                        .map_err(H3Error::Handshake)
                });
            }
            let more = addrs.len() > 0;
            tokio::select! {
                Some(attempt) = attempts.next() => match attempt {
                    Ok(quic) => return Ok(quic),
                    Err(e) => failure = Some(e),
                },
                () = tokio::time::sleep(ATTEMPT_DELAY), if more => {}
                else => {
                    return Err(failure.unwrap_or_else(|| {
                        H3Error::Resolve(std::io::Error::other("the name has no address"))
                    }));
                }
            }
        }
    }

    /// The client endpoint of `remote`'s address family, bound on first use.
    fn endpoint(&self, remote: SocketAddr) -> Result<Endpoint, H3Error> {
        let mut e = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if e.closed {
            return Err(H3Error::ShuttingDown);
        }
        let (slot, local): (_, SocketAddr) = if remote.is_ipv6() {
            (&mut e.v6, (Ipv6Addr::UNSPECIFIED, 0).into())
        } else {
            (&mut e.v4, (Ipv4Addr::UNSPECIFIED, 0).into())
        };
        if let Some(endpoint) = slot {
            return Ok(endpoint.clone());
        }
        let endpoint = Endpoint::client(local).map_err(|e| H3Error::Bind(local, e))?;
        *slot = Some(endpoint.clone());
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use http::Uri;

    use super::*;

    #[tokio::test]
    async fn of_several_addresses_the_first_to_answer_wins() {
        // A QUIC server that completes handshakes (ALPN h3), and a UDP socket that never
        // answers, listed first.
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls_pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key.into())
        .unwrap();
        tls.alpn_protocols = vec![ALPN_H3.to_vec()];
        let server_config = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap(),
        ));
        let server = Endpoint::server(server_config, "127.0.0.1:0".parse().unwrap()).unwrap();
        let accepting = server.clone();
        let accept = tokio::spawn(async move { accepting.accept().await?.await.ok() });
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();

        let upstream_tls = UpstreamTls {
            roots: vec![cert.cert.der().clone()],
            server_name: Some("localhost".into()),
        };
        let config = client_config("s", &upstream_tls).unwrap();
        let url: Uri = "https://localhost:1".parse().unwrap();
        let (_, upstream) = H3Upstream::parse("s", &url, &upstream_tls, &config).unwrap();
        let client = H3Client::new(Duration::from_secs(5));
        let started = Instant::now();
        let addrs = vec![silent.local_addr().unwrap(), server.local_addr().unwrap()];
        let quic = client.handshake(&upstream, addrs).await.unwrap();
        assert_eq!(quic.remote_address(), server.local_addr().unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(accept.await.unwrap().is_some());
        client.shutdown().await;
        server.close(0u32.into(), b"");
    }
}
