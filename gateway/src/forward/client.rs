//! The pooled clients that carry requests upstream (HTTP/1.1 and h2c shared by every
//! service, one TLS client per service with `https://` upstreams), and how their failures
//! are reported to the sidecar.

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use aimux_wire::Outcome;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::RequestBody;
use super::tls::{self, TlsConnector};
use crate::config::{UpstreamProtocol, UpstreamTls};
use crate::error::{GatewayError, error_chain};
use crate::policy::Refusal;
use crate::tunnel::transport::RecvError;

/// How long an idle upstream connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// HTTP/2 PING interval on idle upstream connections (RFC 9113 §6.7).
const H2_KEEPALIVE: Duration = Duration::from_secs(30);
/// Idle connections kept per upstream.
const POOL_MAX_IDLE_PER_HOST: usize = 64;
/// TCP keep-alive on upstream connections, so dead peers are noticed on idle connections.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// Most response header fields accepted; the response envelope carries at most 128
/// (SPEC.md §8), so a larger head could not be passed on anyway.
const MAX_RESPONSE_HEADERS: usize = aimux_wire::Limits::DEFAULT.max_http_headers;

pub(crate) type UpstreamClient = Client<HttpConnector, RequestBody>;
/// The client of one service's `https://` upstreams: its own roots and server name.
pub(crate) type TlsClient = Client<TlsConnector, RequestBody>;

/// The clients of every upstream protocol, each with its own pool.
#[derive(Debug)]
pub(crate) struct UpstreamClients {
    pub(crate) http1: UpstreamClient,
    /// HTTP/2 with prior knowledge over cleartext TCP (RFC 9113 §3.3): requests to one
    /// upstream share one connection, as streams.
    pub(crate) h2c: UpstreamClient,
}

/// The clients, with connection pools and a connect timeout.
pub(crate) fn build_all(connect_timeout: Duration) -> UpstreamClients {
    UpstreamClients {
        http1: build(connect_timeout, false),
        h2c: build(connect_timeout, true),
    }
}

/// A client with a connection pool and a connect timeout; `h2` speaks HTTP/2 only.
fn build(connect_timeout: Duration, h2: bool) -> UpstreamClient {
    let mut connector = tcp_connector(connect_timeout);
    // Only `http://` upstreams use these clients; say so to the connector too.
    connector.enforce_http(true);
    builder(h2, h2)
        // The gateway sets `Host` itself (to the upstream's authority).
        .set_host(false)
        .build(connector)
}

/// The client of `service`'s `https://` upstreams, spoken to with `protocol`: ALPN
/// `http/1.1` (`http1`), `h2` only and HTTP/2 only (`http2`: one connection per upstream,
/// its requests as streams), or both, `h2` preferred (`auto`: HTTP/2 when the upstream
/// chooses it, else a pool of HTTP/1.1 connections).
pub(crate) fn build_tls(
    service: &str,
    tls: &UpstreamTls,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
) -> Result<TlsClient, GatewayError> {
    let connector = TlsConnector::new(service, tls, protocol, tcp_connector(connect_timeout))?;
    let h2_only = protocol == UpstreamProtocol::Http2;
    Ok(builder(h2_only, protocol != UpstreamProtocol::Http1)
        // The forwarder removes `Host` on TLS requests and hyper-util writes it from the
        // URI's authority on HTTP/1.1 connections only: an HTTP/2 request carries the
        // authority as `:authority` alone (RFC 9113 §8.3.1), whichever ALPN chose.
        .set_host(true)
        .build(connector))
}

/// TCP to upstreams: the connect timeout, no Nagle delay, keep-alive probes.
fn tcp_connector(connect_timeout: Duration) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.set_keepalive(Some(TCP_KEEPALIVE));
    connector
}

/// The pool settings every client shares; `h2_only` speaks HTTP/2 only, `may_h2` sends
/// HTTP/2 keep-alive PINGs on the connections that speak it.
fn builder(h2_only: bool, may_h2: bool) -> hyper_util::client::legacy::Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .http2_only(h2_only)
        .http2_keep_alive_interval(may_h2.then_some(H2_KEEPALIVE));
    builder
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http1_max_headers(MAX_RESPONSE_HEADERS);
    builder
}

/// What to tell the sidecar when the request did not get a response head.
pub(crate) fn refusal(
    error: &hyper_util::client::legacy::Error,
    upstream: &str,
    service: &str,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
) -> Refusal {
    let chain = client_error_chain(error);
    let who = format!("upstream {upstream} of service `{service}`");
    if let Some(what) = tls::describe_failure(error, protocol) {
        return Refusal::new(Outcome::UpstreamUnreachable, format!("{who} {what}"));
    }
    if error.is_connect() {
        let what = match find_io_kind(error) {
            Some(io::ErrorKind::ConnectionRefused) => "refused the connection".to_owned(),
            Some(io::ErrorKind::TimedOut) => format!(
                "did not accept a connection within {}s",
                connect_timeout.as_secs_f64()
            ),
            _ => "could not be reached".to_owned(),
        };
        return Refusal::new(
            Outcome::UpstreamUnreachable,
            format!("{who} {what}: {chain}"),
        );
    }
    Refusal::new(
        Outcome::UpstreamUnreachable,
        format!("{who} failed before sending a response head: {chain}"),
    )
}

/// True if the request failed because its body did (the sidecar reset or abandoned the
/// stream).
pub(crate) fn is_request_body_error(error: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<RecvError>() {
            return true;
        }
        next = e.source();
    }
    false
}

fn find_io_kind(error: &(dyn StdError + 'static)) -> Option<io::ErrorKind> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

/// [`error_chain`] without hyper-util's generic outer wrapper ("client error
/// (Connect)"), which says nothing its sources do not.
pub(crate) fn client_error_chain(error: &(dyn StdError + 'static)) -> String {
    error_chain(error.source().unwrap_or(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chains_skip_the_generic_wrapper_and_find_io_kinds() {
        let e = Outer(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(client_error_chain(&e), "refused");
        assert_eq!(find_io_kind(&e), Some(io::ErrorKind::ConnectionRefused));
        assert!(!is_request_body_error(&e));
    }

    #[test]
    fn a_failed_tunnel_body_is_the_sidecars_doing_on_either_transport() {
        #[derive(Debug)]
        struct Wrapper(RecvError);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("body error")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        // QUIC RESET_STREAM and the HTTP/2 reset trailer both read as `Reset`; an HTTP/2
        // RST_STREAM as `Aborted`.
        assert!(is_request_body_error(&Wrapper(RecvError::Reset(0x10))));
        assert!(is_request_body_error(&Wrapper(RecvError::Aborted(
            "stream error received".into()
        ))));
    }
}
