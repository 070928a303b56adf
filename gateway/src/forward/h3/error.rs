//! Why an HTTP/3 request failed, and what the operator is told: each refusal names the
//! upstream and the step that failed (name resolution, QUIC handshake, TLS certificate,
//! ALPN, stream limit, stream reset) and, where there is one, the usual fix.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use aimux_wire::Outcome;
use h3::error::{Code, StreamError};
use quinn::{ConnectionError, TransportErrorCode};

use crate::forward::body::BoxError;
use crate::policy::Refusal;

/// TLS alert 120, `no_application_protocol` (RFC 7301 §3.2), as a QUIC CRYPTO_ERROR
/// (RFC 9001 §4.8): the server offers no protocol the client asked for.
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// An HTTP/3 request that got no response head, or a response body that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum H3Error {
    /// The request target does not make an HTTP/3 request URI.
    #[error("cannot take the request target: {0}")]
    Target(String),
    /// The upstream's host name did not resolve.
    #[error("could not be resolved: {0}; check the host name in the URL and the gateway's DNS")]
    Resolve(#[source] io::Error),
    /// The client endpoint's UDP socket could not be bound.
    #[error("could not be reached: no UDP socket could be bound on {0} for HTTP/3: {1}")]
    Bind(SocketAddr, #[source] io::Error),
    /// The forwarder has been shut down.
    #[error("was not tried: the gateway is shutting down")]
    ShuttingDown,
    /// quinn refused to start the connection.
    #[error("could not be connected to: {0}")]
    Connect(#[source] quinn::ConnectError),
    /// No connection (handshake included) within the connect timeout.
    #[error("did not complete a QUIC handshake within {}s", .0.as_secs_f64())]
    ConnectTimeout(Duration),
    /// The QUIC or TLS handshake failed.
    #[error("failed the QUIC handshake: {0}")]
    Handshake(#[source] ConnectionError),
    /// The upstream completed a handshake without agreeing to HTTP/3.
    #[error("did not agree to ALPN h3")]
    NoH3(Option<Vec<u8>>),
    /// HTTP/3 could not be set up on the connection (control stream, SETTINGS).
    #[error("could not set up HTTP/3 on the connection: {0}")]
    Setup(#[source] h3::error::ConnectionError),
    /// No request stream became available within the connect timeout.
    #[error("granted no request stream within {}s", .0.as_secs_f64())]
    NoStream(Duration),
    /// The request stream could not be opened, or its head not sent.
    #[error("did not take the request: {}", describe_stream(.0))]
    Open(#[source] StreamError),
    /// The response head did not arrive.
    #[error("sent no response head: {}", describe_stream(.0))]
    Head(#[source] StreamError),
    /// Interim responses without end.
    #[error("sent more than {0} interim (1xx) responses without a final one")]
    Interim(usize),
    /// The response body failed.
    #[error("failed in the middle of the response: {}", describe_stream(.0))]
    Response(#[source] StreamError),
    /// The request body failed: the sidecar reset its stream, not the upstream's fault.
    #[error("{0}")]
    Body(#[source] BoxError),
}

impl H3Error {
    /// True if the request failed because its own body did.
    pub(crate) fn is_request_body_error(&self) -> bool {
        matches!(self, Self::Body(_))
    }

    /// True if opening a stream failed because the connection is gone or going away:
    /// nothing of the request reached the upstream, so it may go on a new connection.
    pub(super) fn is_stale_connection(&self) -> bool {
        matches!(
            self,
            Self::Open(StreamError::RemoteClosing { .. } | StreamError::ConnectionError { .. })
        )
    }

    /// The refusal the sidecar gets when the request got no response head.
    pub(crate) fn refusal(&self, upstream: &str, service: &str) -> Refusal {
        let who = format!("upstream {upstream} of service `{service}`");
        let (outcome, what) = match self {
            Self::Target(_) => (Outcome::MalformedRequest, self.to_string()),
            Self::ConnectTimeout(wait) => (
                Outcome::UpstreamUnreachable,
                format!(
                    "did not complete a QUIC handshake within {}s: check that an HTTP/3 \
                     server listens on that UDP port and that no firewall drops UDP",
                    wait.as_secs_f64()
                ),
            ),
            Self::Handshake(e) => (Outcome::UpstreamUnreachable, describe_handshake(e)),
            Self::NoH3(chosen) => (
                Outcome::UpstreamUnreachable,
                format!(
                    "does not speak HTTP/3: it completed the TLS handshake without agreeing \
                     to ALPN h3 ({})",
                    match chosen {
                        Some(p) => format!("it chose {:?}", String::from_utf8_lossy(p)),
                        None => "it chose no protocol".to_owned(),
                    }
                ),
            ),
            Self::NoStream(wait) => (
                Outcome::UpstreamTimeout,
                format!(
                    "granted no request stream within {}s: its HTTP/3 connection already \
                     carries as many requests as the upstream accepts at once (its QUIC \
                     stream limit); raise that limit or add upstreams",
                    wait.as_secs_f64()
                ),
            ),
            Self::Resolve(_)
            | Self::Bind(..)
            | Self::ShuttingDown
            | Self::Connect(_)
            | Self::Setup(_)
            | Self::Open(_)
            | Self::Head(_)
            | Self::Interim(_)
            | Self::Response(_)
            | Self::Body(_) => (Outcome::UpstreamUnreachable, self.to_string()),
        };
        Refusal::new(outcome, format!("{who} {what}"))
    }
}

fn is_crypto(code: TransportErrorCode) -> bool {
    (0x100..=0x1ff).contains(&u64::from(code))
}

/// A failed handshake in operator terms, certificate problems first.
fn describe_handshake(e: &ConnectionError) -> String {
    match e {
        // Raised locally: rustls refused the upstream's certificate (or something else in
        // its handshake); the reason is rustls's, e.g. "invalid peer certificate:
        // UnknownIssuer".
        ConnectionError::TransportError(t) if is_crypto(t.code) => {
            let hint = if t.reason.contains("certificate") {
                "; give the service the CA that issued the upstream's certificate (tls.ca), \
                 or the name the certificate is issued for (tls.server_name)"
            } else {
                ""
            };
            format!("failed the TLS handshake: {}{hint}", t.reason)
        }
        ConnectionError::ConnectionClosed(c)
            if u64::from(c.error_code) == NO_APPLICATION_PROTOCOL =>
        {
            "refused ALPN h3 (TLS alert no_application_protocol): the server on that port \
             does not speak HTTP/3"
                .to_owned()
        }
        ConnectionError::ConnectionClosed(c) if is_crypto(c.error_code) => format!(
            "refused the TLS handshake ({c}): check the upstream's TLS settings and that it \
             accepts the name the gateway asks for (SNI; tls.server_name)"
        ),
        ConnectionError::TimedOut => "did not answer the QUIC handshake (timed out): check \
                                      that an HTTP/3 server listens on that UDP port"
            .to_owned(),
        ConnectionError::VersionMismatch => {
            "speaks no QUIC version the gateway does (QUIC v1, RFC 9000)".to_owned()
        }
        other => format!("failed the QUIC handshake: {other}"),
    }
}

/// A stream error in operator terms.
fn describe_stream(e: &StreamError) -> String {
    match e {
        StreamError::RemoteTerminate { code, .. } if *code == Code::H3_REQUEST_REJECTED => {
            "the upstream rejected the request unprocessed (H3_REQUEST_REJECTED)".to_owned()
        }
        StreamError::RemoteTerminate { code, .. } => {
            format!("the upstream reset the request stream ({code})")
        }
        StreamError::RemoteClosing { .. } => {
            "the upstream is closing the connection (GOAWAY)".to_owned()
        }
        StreamError::ConnectionError { 0: c, .. } => format!("the HTTP/3 connection failed: {c}"),
        StreamError::HeaderTooBig {
            actual_size,
            max_size,
            ..
        } => format!(
            "a header section of {actual_size} bytes is over the {max_size}-byte limit \
             (SETTINGS_MAX_FIELD_SECTION_SIZE, RFC 9114 §4.2.2)"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_failures_say_what_to_configure() {
        // As quinn reports a certificate rustls refused: a locally raised CRYPTO_ERROR
        // carrying rustls's message.
        let ConnectionError::TransportError(mut refused) =
            ConnectionError::TransportError(TransportErrorCode::crypto(48).into())
        else {
            unreachable!()
        };
        refused.reason = "invalid peer certificate: UnknownIssuer".into();
        let e = H3Error::Handshake(ConnectionError::TransportError(refused));
        let r = e.refusal("https://a:1", "s");
        assert_eq!(r.outcome, Outcome::UpstreamUnreachable);
        assert!(r.reason.contains("UnknownIssuer"), "{}", r.reason);
        assert!(r.reason.contains("tls.ca"), "{}", r.reason);
    }

    #[test]
    fn waits_and_body_failures_are_classified() {
        let wait = H3Error::NoStream(Duration::from_secs(1));
        assert!(!wait.is_stale_connection());
        assert_eq!(wait.refusal("u", "s").outcome, Outcome::UpstreamTimeout);
        assert!(H3Error::Body("reset".into()).is_request_body_error());
        assert!(!H3Error::ShuttingDown.is_request_body_error());
    }
}
