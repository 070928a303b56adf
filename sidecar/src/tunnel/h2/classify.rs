//! Why an HTTP/2 tunnel connection attempt failed or a connection ended (SPEC.md §12.1).
//! Pure: an I/O error from tokio-rustls, or hyper's verdict and what the socket saw, goes in;
//! a [`Failure`] of `classify.rs` comes out, so both transports share severities and
//! operator-facing sentences. A revoked agent is recognised by the TLS alert
//! `certificate_revoked` (RFC 8446 §6.2), as over QUIC.

use std::io;
use std::time::Duration;

use aimux_certs::rustls;

use super::io::{IoEnd, rustls_error};
use crate::tunnel::classify::{Failure, Rejection};

/// Classifies a failed TCP connect.
pub(crate) fn tcp_failed(e: &io::Error) -> Failure {
    Failure::Unreachable {
        reason: match e.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => e.to_string(),
        },
    }
}

/// Classifies a TLS failure over TCP: during the handshake, or on the first read after it
/// (where TLS 1.3 delivers the gateway's verdict on our certificate, RFC 8446 §4.4.4).
/// `rejection` is what our verifier recorded during this attempt.
pub(crate) fn tls_failed(e: &io::Error, rejection: Option<Rejection>) -> Failure {
    match (rustls_error(e), rejection) {
        (Some(rustls::Error::AlertReceived(alert)), _) => Failure::RefusedByGateway {
            alert: u8::from(*alert),
        },
        (_, Some(rejection)) => Failure::GatewayRejected { rejection },
        (Some(tls @ rustls::Error::InvalidCertificate(_)), None) => Failure::GatewayRejected {
            rejection: Rejection::from_tls(tls),
        },
        (Some(tls), None) => Failure::Broken {
            reason: format!("TLS: {tls}"),
        },
        (None, None) => match IoEnd::from_io(e) {
            IoEnd::Eof => Failure::Broken {
                reason: "the gateway closed the connection during the TLS handshake".into(),
            },
            _ => Failure::Broken {
                reason: e.to_string(),
            },
        },
    }
}

/// Classifies the end of an HTTP/2 connection from hyper's verdict (`error`, if it failed),
/// the gateway's GOAWAY code if it sent one, and what the socket saw. A connection we
/// closed ourselves after `keep_alive_timeout` without a byte from the gateway died of the
/// keep-alive timeout.
pub(crate) fn h2_ended(
    error: Option<&hyper::Error>,
    goaway: Option<u32>,
    end: Option<IoEnd>,
    silent_for: Duration,
    keep_alive_timeout: Duration,
) -> Failure {
    if let Some(code) = goaway {
        return Failure::GoAway { code };
    }
    match end {
        Some(IoEnd::Alert(alert)) => Failure::RefusedByGateway { alert },
        Some(IoEnd::Eof) => Failure::ClosedByPeer,
        Some(IoEnd::Error(reason)) => Failure::Broken { reason },
        Some(IoEnd::Dropped) | None => {
            if silent_for >= keep_alive_timeout {
                Failure::IdleTimeout
            } else if let Some(e) = error {
                Failure::Broken {
                    reason: format!("HTTP/2: {e}"),
                }
            } else {
                // hyper ends cleanly after the gateway's GOAWAY.
                Failure::ClosedByPeer
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aimux_certs::rustls::CertificateError;

    use super::*;
    use crate::config::Transport;
    use crate::tunnel::classify::tests::{refused, subject};
    use crate::tunnel::classify::{Severity, Subject, classify};

    fn h2_subject() -> Subject {
        Subject {
            transport: Transport::H2,
            ..subject()
        }
    }

    #[test]
    fn over_tcp_a_revoked_alert_reads_as_over_quic() {
        // The gateway's verdict arrives as a TLS alert record after our Finished.
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked),
        );
        let failure = tls_failed(&alert, None);
        assert_eq!(failure, Failure::RefusedByGateway { alert: 44 });
        assert_eq!(failure.severity(), Severity::Revoked);
        assert_eq!(
            failure.describe(&h2_subject()),
            classify(&refused(44), None).describe(&subject())
        );
        // An unknown CA is a refusal too; ALPN names the transport's protocol.
        let unknown_ca = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert_eq!(tls_failed(&unknown_ca, None).severity(), Severity::Refused);
        let alpn = Failure::RefusedByGateway { alert: 120 };
        assert!(alpn.describe(&h2_subject()).contains("protocol `h2`"));
        assert_eq!(Failure::NoHttp2.severity(), Severity::Refused);
    }

    #[test]
    fn over_tcp_our_own_refusal_of_the_gateway_uses_the_recorded_reason() {
        let local = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let failure = tls_failed(&local, None);
        assert_eq!(failure.severity(), Severity::Refused);
        assert!(
            failure
                .describe(&h2_subject())
                .contains("not issued by this sidecar's mesh CA")
        );
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "connection reset");
        assert_eq!(tls_failed(&reset, None).severity(), Severity::Transient);
        let refused = tcp_failed(&io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(refused.severity(), Severity::Transient);
        let text = refused.describe(&h2_subject());
        assert!(
            text.contains("connection refused") && text.contains("HTTP/2 tunnel listener"),
            "{text}"
        );
        let timeout = Failure::HandshakeTimeout(Duration::from_secs(1));
        assert!(
            timeout
                .describe(&h2_subject())
                .contains("is TCP 127.0.0.1:4433")
        );
    }

    #[test]
    fn how_an_http2_connection_ended() {
        let limit = Duration::from_secs(8);
        let quiet = Duration::from_millis(10);
        assert_eq!(
            h2_ended(None, None, Some(IoEnd::Eof), quiet, limit),
            Failure::ClosedByPeer
        );
        assert_eq!(
            h2_ended(None, None, Some(IoEnd::Alert(44)), quiet, limit).severity(),
            Severity::Revoked
        );
        assert!(matches!(
            h2_ended(None, None, Some(IoEnd::Error("reset".into())), quiet, limit),
            Failure::Broken { .. }
        ));
        // Closed by us after a long silence: the keep-alive timeout.
        assert_eq!(
            h2_ended(None, None, Some(IoEnd::Dropped), limit, limit),
            Failure::IdleTimeout
        );
        // The gateway's GOAWAY comes first, whatever followed it.
        let goaway = h2_ended(None, Some(0), Some(IoEnd::Eof), quiet, limit);
        assert_eq!(goaway, Failure::GoAway { code: 0 });
        assert_eq!(goaway.severity(), Severity::Transient);
        assert!(goaway.describe(&h2_subject()).contains("shutting down"));
        assert_eq!(
            h2_ended(None, None, None, quiet, limit),
            Failure::ClosedByPeer
        );
        assert_eq!(Failure::ClosedByPeer.severity(), Severity::Transient);
        assert!(
            Failure::ClosedByPeer
                .describe(&h2_subject())
                .contains("closed the HTTP/2 connection")
        );
    }
}
