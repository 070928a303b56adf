//! Why the connection to the gateway failed or ended, and what that means for reconnecting.
//! Pure: a `quinn::ConnectionError`, or over TCP an I/O error and what the socket saw (plus
//! what our own certificate check recorded) goes in, a [`Failure`] with a severity and an
//! operator-facing sentence comes out.
//!
//! Where the reasons come from:
//! - a TLS alert ends a QUIC handshake as a CONNECTION_CLOSE with the *crypto error* code
//!   `0x100 + alert` (RFC 9001 §4.8). Sent by the gateway, it arrives here as
//!   `ConnectionClosed`; raised by our own verifier, as a local `TransportError`. Over TCP
//!   it is a TLS alert record, which rustls reports as `AlertReceived`. The alert numbers
//!   are TLS 1.3's (RFC 8446 §6.2): a revoked agent sees `certificate_revoked` either way.
//! - a gateway closing a live QUIC connection uses an application code of SPEC.md §12
//!   (`aimux_wire::codes`), which arrives as `ApplicationClosed`. HTTP/2 cannot carry it
//!   (SPEC.md §12.1): a closed HTTP/2 connection is transient, and a revoked agent learns
//!   why from the alert that refuses its next handshake.
//!
//! With TLS 1.3 client authentication the client finishes its handshake before the server
//! has checked the client certificate, so a revoked agent may see its connection "established"
//! and then closed with `certificate_revoked`; the supervisor waits for HANDSHAKE_DONE before
//! trusting a connection (see `supervisor.rs`), and this module treats both paths alike.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use aimux_certs::IdentityError;
use aimux_certs::rustls::{self, CertificateError};
use aimux_wire::codes;
use quinn::ConnectionError;

use crate::config::Transport;
use crate::fmt::{Secs, app_code_name};

/// QUIC crypto error codes are `0x100 + TLS alert` (RFC 9001 §4.8).
const CRYPTO_ERROR_BASE: u64 = 0x100;

/// TLS alert numbers (RFC 8446 §6.2) that name a certificate or protocol problem.
mod alert {
    pub(super) const HANDSHAKE_FAILURE: u8 = 40;
    pub(super) const BAD_CERTIFICATE: u8 = 42;
    pub(super) const UNSUPPORTED_CERTIFICATE: u8 = 43;
    pub(super) const CERTIFICATE_REVOKED: u8 = 44;
    pub(super) const CERTIFICATE_EXPIRED: u8 = 45;
    pub(super) const CERTIFICATE_UNKNOWN: u8 = 46;
    pub(super) const UNKNOWN_CA: u8 = 48;
    pub(super) const ACCESS_DENIED: u8 = 49;
    pub(super) const DECRYPT_ERROR: u8 = 51;
    pub(super) const PROTOCOL_VERSION: u8 = 70;
    pub(super) const CERTIFICATE_REQUIRED: u8 = 116;
    pub(super) const NO_APPLICATION_PROTOCOL: u8 = 120;
}

fn alert_name(alert: u8) -> &'static str {
    match alert {
        alert::HANDSHAKE_FAILURE => "handshake_failure",
        alert::BAD_CERTIFICATE => "bad_certificate",
        alert::UNSUPPORTED_CERTIFICATE => "unsupported_certificate",
        alert::CERTIFICATE_REVOKED => "certificate_revoked",
        alert::CERTIFICATE_EXPIRED => "certificate_expired",
        alert::CERTIFICATE_UNKNOWN => "certificate_unknown",
        alert::UNKNOWN_CA => "unknown_ca",
        alert::ACCESS_DENIED => "access_denied",
        alert::DECRYPT_ERROR => "decrypt_error",
        alert::PROTOCOL_VERSION => "protocol_version",
        alert::CERTIFICATE_REQUIRED => "certificate_required",
        alert::NO_APPLICATION_PROTOCOL => "no_application_protocol",
        _ => "other",
    }
}

/// Names of QUIC transport error codes (RFC 9000 §20.1).
fn transport_code_name(code: u64) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "INTERNAL_ERROR",
        0x2 => "CONNECTION_REFUSED",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "STREAM_LIMIT_ERROR",
        0x5 => "STREAM_STATE_ERROR",
        0x6 => "FINAL_SIZE_ERROR",
        0x7 => "FRAME_ENCODING_ERROR",
        0x8 => "TRANSPORT_PARAMETER_ERROR",
        0x9 => "CONNECTION_ID_LIMIT_ERROR",
        0xa => "PROTOCOL_VIOLATION",
        0xb => "INVALID_TOKEN",
        0xc => "APPLICATION_ERROR",
        0xd => "CRYPTO_BUFFER_EXCEEDED",
        0xe => "KEY_UPDATE_ERROR",
        0xf => "AEAD_LIMIT_REACHED",
        0x10 => "NO_VIABLE_PATH",
        _ => "unknown",
    }
}

/// RFC 9000 §20.1: the server refuses to accept a new connection.
const CONNECTION_REFUSED: u64 = 0x2;

/// The TLS alert carried by a QUIC transport error code, if it is a crypto error.
fn crypto_alert(code: u64) -> Option<u8> {
    code.checked_sub(CRYPTO_ERROR_BASE)
        .and_then(|alert| u8::try_from(alert).ok())
}

/// How a failure affects reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Network trouble, a restarting gateway: retry with ordinary backoff.
    Transient,
    /// The gateway refused this agent, or we refused the gateway, for a reason a retry cannot
    /// fix (wrong CA, wrong gateway identity, expired certificate): long backoff.
    Refused,
    /// This agent's certificate is revoked (SPEC.md §12 `REVOKED`, or TLS
    /// `certificate_revoked`): long backoff, the sidecar MUST NOT reconnect at its normal pace.
    Revoked,
}

/// Why a connection attempt failed or a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The gateway refused our certificate during the handshake with this TLS alert.
    RefusedByGateway { alert: u8 },
    /// Our verifier refused the gateway's certificate.
    GatewayRejected { rejection: Rejection },
    /// The gateway closed the connection with an application error code (SPEC.md §12).
    ClosedByGateway { code: u64, reason: String },
    /// The gateway's QUIC stack aborted the connection with a (non-TLS) transport error.
    AbortedByGateway { code: u64, reason: String },
    /// Our QUIC stack aborted the connection: the gateway broke the transport protocol.
    TransportError { code: u64, reason: String },
    /// No handshake completed within the handshake timeout.
    HandshakeTimeout(Duration),
    /// Nothing was heard from the gateway for the idle timeout (RFC 9000 §10.1).
    IdleTimeout,
    /// The gateway answered with a stateless reset (RFC 9000 §10.3): it lost the connection's
    /// state, typically because it restarted.
    StatelessReset,
    /// The gateway does not speak QUIC version 1.
    VersionMismatch,
    /// Something on our side: the endpoint is closing, or it ran out of connection IDs.
    Local(String),
    /// TCP: no connection could be made to the gateway's address.
    Unreachable { reason: String },
    /// HTTP/2: the gateway ended the connection in order (GOAWAY, TLS close_notify or TCP
    /// FIN). HTTP/2 cannot say why (SPEC.md §12.1).
    ClosedByPeer,
    /// HTTP/2: the connection broke (reset, TLS or HTTP/2 error).
    Broken { reason: String },
    /// HTTP/2: the gateway did not agree on ALPN `h2`.
    NoHttp2,
    /// HTTP/2: the gateway sent GOAWAY with this error code (RFC 9113 §6.8, §7): it takes
    /// no new streams; those in flight may finish.
    GoAway { code: u32 },
}

/// What our verifier said about the gateway's certificate, when it refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// It is a mesh certificate, but not the expected gateway's.
    UnexpectedPeer { presented: String, expected: String },
    /// It does not chain to the mesh CA.
    UnknownIssuer,
    /// It has expired or is not valid yet.
    Expired,
    /// It lacks the serverAuth usage (e.g. an agent certificate).
    NotAServerCertificate,
    /// Anything else, as rustls or aimux-certs describes it.
    Other(String),
}

impl Rejection {
    /// Reads the error our verifier returned.
    pub(crate) fn from_tls(error: &rustls::Error) -> Rejection {
        let rustls::Error::InvalidCertificate(cert) = error else {
            return Rejection::Other(error.to_string());
        };
        match cert {
            CertificateError::UnknownIssuer => Rejection::UnknownIssuer,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Rejection::Expired,
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                Rejection::NotAServerCertificate
            }
            CertificateError::Other(other) => match other.0.downcast_ref::<IdentityError>() {
                Some(IdentityError::UnexpectedPeer {
                    presented,
                    expected,
                }) => Rejection::UnexpectedPeer {
                    presented: presented.to_string(),
                    expected: expected.to_string(),
                },
                Some(identity) => Rejection::Other(identity.to_string()),
                None => Rejection::Other(other.to_string()),
            },
            other => Rejection::Other(format!("{other:?}")),
        }
    }
}

/// Classifies how a connection failed. `rejection` is what our certificate verifier recorded
/// during this attempt, if it refused the gateway.
pub(crate) fn classify(error: &ConnectionError, rejection: Option<Rejection>) -> Failure {
    match error {
        ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            match crypto_alert(code) {
                Some(alert) => Failure::RefusedByGateway { alert },
                None => Failure::AbortedByGateway {
                    code,
                    reason: lossy(&close.reason),
                },
            }
        }
        ConnectionError::ApplicationClosed(close) => Failure::ClosedByGateway {
            code: close.error_code.into_inner(),
            reason: lossy(&close.reason),
        },
        ConnectionError::TransportError(e) => {
            let code = u64::from(e.code);
            match (crypto_alert(code), rejection) {
                (Some(_), Some(rejection)) => Failure::GatewayRejected { rejection },
                _ => Failure::TransportError {
                    code,
                    reason: e.reason.clone(),
                },
            }
        }
        ConnectionError::TimedOut => Failure::IdleTimeout,
        ConnectionError::Reset => Failure::StatelessReset,
        ConnectionError::VersionMismatch => Failure::VersionMismatch,
        ConnectionError::LocallyClosed => {
            Failure::Local("the connection was closed locally".into())
        }
        ConnectionError::CidsExhausted => {
            Failure::Local("the QUIC endpoint ran out of connection IDs".into())
        }
    }
}

fn lossy(reason: &[u8]) -> String {
    // Bounded: a CONNECTION_CLOSE reason fits in one packet.
    String::from_utf8_lossy(reason).into_owned()
}

/// Who the sentences are about.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    /// How the sidecar reaches the gateway.
    pub(crate) transport: Transport,
    /// The gateway's address.
    pub(crate) gateway: SocketAddr,
    /// The agent's SPIFFE ID path without the leading `/`, e.g. `agent/alice`.
    pub(crate) agent_label: String,
    /// The agent's name, e.g. `alice`, for `aimux certs issue --name`.
    pub(crate) agent_name: String,
}

impl Failure {
    pub(crate) fn severity(&self) -> Severity {
        match self {
            Failure::RefusedByGateway {
                alert: alert::CERTIFICATE_REVOKED,
            } => Severity::Revoked,
            Failure::ClosedByGateway { code, .. } if *code == u64::from(codes::CLOSE_REVOKED) => {
                Severity::Revoked
            }
            Failure::RefusedByGateway {
                alert:
                    alert::BAD_CERTIFICATE
                    | alert::UNSUPPORTED_CERTIFICATE
                    | alert::CERTIFICATE_EXPIRED
                    | alert::CERTIFICATE_UNKNOWN
                    | alert::UNKNOWN_CA
                    | alert::ACCESS_DENIED
                    | alert::CERTIFICATE_REQUIRED
                    | alert::NO_APPLICATION_PROTOCOL,
            }
            | Failure::GatewayRejected { .. }
            | Failure::NoHttp2 => Severity::Refused,
            Failure::ClosedByGateway { code, .. }
                if *code == u64::from(codes::CLOSE_UNAUTHORIZED) =>
            {
                Severity::Refused
            }
            _ => Severity::Transient,
        }
    }

    /// Whether two failures are "the same" for logging: a repeat is counted, not logged again.
    pub(crate) fn same_kind(&self, other: &Failure) -> bool {
        use Failure as F;
        match (self, other) {
            (F::RefusedByGateway { alert: a }, F::RefusedByGateway { alert: b }) => a == b,
            (F::GatewayRejected { rejection: a }, F::GatewayRejected { rejection: b }) => a == b,
            (F::ClosedByGateway { code: a, .. }, F::ClosedByGateway { code: b, .. })
            | (F::AbortedByGateway { code: a, .. }, F::AbortedByGateway { code: b, .. })
            | (F::TransportError { code: a, .. }, F::TransportError { code: b, .. }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    /// One operator-facing sentence: what happened, the cause, and what to do about it.
    pub(crate) fn describe(&self, s: &Subject) -> String {
        let gw = s.gateway;
        let label = &s.agent_label;
        let name = &s.agent_name;
        let reissue = format!(
            "re-issue it with `aimux certs issue --name {name} --force` and restart this sidecar"
        );
        match self {
            Failure::RefusedByGateway { alert } => {
                let head = format!("gateway {gw} refused the handshake");
                match *alert {
                    alert::CERTIFICATE_REVOKED => {
                        format!("{head}: certificate for {label} is revoked; {reissue}")
                    }
                    alert::CERTIFICATE_EXPIRED => format!(
                        "{head}: certificate for {label} has expired or is not valid yet (TLS \
                         alert certificate_expired); check this machine's clock, or {reissue}"
                    ),
                    alert::UNKNOWN_CA => format!(
                        "{head}: it does not trust the CA that issued the certificate for \
                         {label}, or its revocation list cannot vouch for it (TLS alert \
                         unknown_ca); issue the agent certificate from the gateway's mesh CA \
                         (`aimux certs issue --name {name}`)"
                    ),
                    alert::CERTIFICATE_UNKNOWN => format!(
                        "{head}: it does not accept the identity {label} (TLS alert \
                         certificate_unknown): the gateway admits only `agent/...` identities \
                         of its own trust domain; give this sidecar an agent certificate of \
                         this mesh"
                    ),
                    alert::UNSUPPORTED_CERTIFICATE => format!(
                        "{head}: the certificate for {label} is not valid for client \
                         authentication (TLS alert unsupported_certificate); issue an agent \
                         certificate (`aimux certs issue --name {name}`), not a gateway one"
                    ),
                    alert::BAD_CERTIFICATE | alert::CERTIFICATE_REQUIRED => format!(
                        "{head}: it could not use the certificate for {label} (TLS alert {}); \
                         {reissue}",
                        alert_name(*alert)
                    ),
                    alert::ACCESS_DENIED => format!(
                        "{head}: access denied for {label} (TLS alert access_denied); check \
                         the gateway's logs"
                    ),
                    alert::NO_APPLICATION_PROTOCOL => format!(
                        "{head}: it does not speak the AIMux tunnel protocol `{}` (TLS alert \
                         no_application_protocol); check that {gw} is an AIMux gateway's {} \
                         address and that both run compatible versions",
                        match s.transport {
                            Transport::Quic => "aimux/1",
                            Transport::H2 => "h2",
                        },
                        tunnel_name(s.transport),
                    ),
                    other => format!(
                        "{head} (TLS alert {} ({other})); check the gateway's logs",
                        alert_name(other)
                    ),
                }
            }
            Failure::GatewayRejected { rejection } => {
                let head = format!("refused the server at {gw}");
                match rejection {
                    Rejection::UnexpectedPeer {
                        presented,
                        expected,
                    } => format!(
                        "{head}: it presented {presented}, but this sidecar expects \
                         {expected}; check the gateway address and the gateway identity in \
                         the mesh file"
                    ),
                    Rejection::UnknownIssuer => format!(
                        "{head}: its certificate was not issued by this sidecar's mesh CA; \
                         check that the sidecar's ca.crt is the CA the gateway's certificate \
                         comes from"
                    ),
                    Rejection::Expired => format!(
                        "{head}: the gateway's certificate has expired or is not valid yet; \
                         re-issue it with `aimux certs issue --gateway --name NAME --force` \
                         (and check both clocks)"
                    ),
                    Rejection::NotAServerCertificate => format!(
                        "{head}: its certificate is not valid for server authentication (is it \
                         an agent certificate?); give the gateway a certificate issued with \
                         `aimux certs issue --gateway`"
                    ),
                    Rejection::Other(detail) => format!("{head}: {detail}"),
                }
            }
            Failure::ClosedByGateway { code, reason } => {
                let mut out = format!("gateway {gw} closed the connection");
                let code32 = u32::try_from(*code).ok();
                match code32 {
                    Some(codes::CLOSE_REVOKED) => {
                        let _ = write!(out, ": certificate for {label} was revoked; {reissue}");
                    }
                    Some(codes::CLOSE_SHUTDOWN) => out.push_str(": it is shutting down"),
                    Some(codes::CLOSE_UNAUTHORIZED) => {
                        let _ = write!(
                            out,
                            ": the certificate for {label} no longer satisfies the mesh policy \
                             ({}); {reissue}",
                            if reason.is_empty() {
                                "no reason given"
                            } else {
                                reason
                            }
                        );
                        return out;
                    }
                    Some(codes::CLOSE_PROTOCOL_VIOLATION) => out.push_str(
                        ": it says this sidecar broke the tunnel protocol (a bug in the sidecar \
                         or the gateway; please report it)",
                    ),
                    _ => {
                        let _ = write!(out, " with code {code:#x} ({})", app_code_name(*code));
                    }
                }
                if !reason.is_empty() && code32 != Some(codes::CLOSE_REVOKED) {
                    let _ = write!(out, ": {reason}");
                }
                out
            }
            Failure::AbortedByGateway { code, reason } => {
                let detail = if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                };
                if *code == CONNECTION_REFUSED {
                    format!(
                        "gateway {gw} is not accepting connections (QUIC CONNECTION_REFUSED{detail}; \
                         it is probably shutting down or overloaded)"
                    )
                } else {
                    format!(
                        "gateway {gw} aborted the connection (QUIC {} ({code:#x}){detail})",
                        transport_code_name(*code)
                    )
                }
            }
            Failure::TransportError { code, reason } => match crypto_alert(*code) {
                Some(a) => format!(
                    "the TLS handshake with {gw} failed (TLS alert {} ({a})): {reason}",
                    alert_name(a)
                ),
                None => format!(
                    "the connection to {gw} failed with QUIC {} ({code:#x}): {reason}",
                    transport_code_name(*code)
                ),
            },
            Failure::HandshakeTimeout(limit) => match s.transport {
                Transport::Quic => format!(
                    "no answer to the QUIC handshake within {} (is the gateway running, and is \
                     UDP {gw} reachable from here?)",
                    Secs(*limit)
                ),
                Transport::H2 => format!(
                    "no TCP connection and TLS handshake within {} (is the gateway running, \
                     and is TCP {gw} reachable from here?)",
                    Secs(*limit)
                ),
            },
            Failure::IdleTimeout => format!(
                "the connection to {gw} went silent past the idle timeout (network path lost, \
                 or the gateway stopped)"
            ),
            Failure::StatelessReset => {
                format!("gateway {gw} no longer knows this connection (it probably restarted)")
            }
            Failure::VersionMismatch => {
                format!("gateway {gw} does not support QUIC version 1 (is it an AIMux gateway?)")
            }
            Failure::Local(what) => what.clone(),
            Failure::Unreachable { reason } => format!(
                "cannot connect to gateway {gw} over TCP: {reason} (is the gateway running with \
                 its HTTP/2 tunnel listener on {gw}?)"
            ),
            Failure::ClosedByPeer => format!(
                "gateway {gw} closed the HTTP/2 connection (it may be restarting, or no longer \
                 accept this agent: the next handshake will tell)"
            ),
            Failure::Broken { reason } => {
                format!("the connection to gateway {gw} failed: {reason}")
            }
            Failure::NoHttp2 => format!(
                "the server at {gw} did not agree to speak HTTP/2 (ALPN h2); check that {gw} is \
                 an AIMux gateway's HTTP/2 tunnel address"
            ),
            Failure::GoAway { code: 0 } => format!(
                "gateway {gw} is closing the HTTP/2 connection (GOAWAY): it is shutting down or \
                 restarting"
            ),
            Failure::GoAway { code } => format!(
                "gateway {gw} closed the HTTP/2 connection with GOAWAY, error code {code:#x} \
                 (RFC 9113 §7)"
            ),
        }
    }
}

/// What the gateway's tunnel listener is called for `transport`.
fn tunnel_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Quic => "QUIC",
        Transport::H2 => "HTTP/2 tunnel",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use aimux_certs::SpiffeId;
    use aimux_certs::rustls::OtherError;
    use bytes::Bytes;
    use quinn::{ApplicationClose, ConnectionClose, TransportErrorCode, VarInt};

    use super::*;

    pub(crate) fn subject() -> Subject {
        Subject {
            transport: Transport::Quic,
            gateway: "127.0.0.1:4433".parse().unwrap(),
            agent_label: "agent/alice".into(),
            agent_name: "alice".into(),
        }
    }

    pub(crate) fn refused(alert: u8) -> ConnectionError {
        ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: TransportErrorCode::crypto(alert),
            frame_type: None,
            reason: Bytes::new(),
        })
    }

    fn app_close(code: u32, reason: &'static str) -> ConnectionError {
        ConnectionError::ApplicationClosed(ApplicationClose {
            error_code: VarInt::from_u32(code),
            reason: Bytes::from_static(reason.as_bytes()),
        })
    }

    #[test]
    fn revoked_by_tls_alert_or_by_close_code() {
        // RFC 9001 §4.8: certificate_revoked (44) travels as crypto error 0x100 + 44.
        let tls = classify(&refused(44), None);
        assert_eq!(tls, Failure::RefusedByGateway { alert: 44 });
        assert_eq!(tls.severity(), Severity::Revoked);
        assert_eq!(
            tls.describe(&subject()),
            "gateway 127.0.0.1:4433 refused the handshake: certificate for agent/alice is \
             revoked; re-issue it with `aimux certs issue --name alice --force` and restart \
             this sidecar"
        );

        let close = classify(&app_close(codes::CLOSE_REVOKED, "revoked"), None);
        assert_eq!(close.severity(), Severity::Revoked);
        let text = close.describe(&subject());
        assert!(text.starts_with("gateway 127.0.0.1:4433 closed the connection: certificate for agent/alice was revoked; re-issue"), "{text}");
        assert!(!text.ends_with(": revoked"), "reason not repeated: {text}");
    }

    #[test]
    fn other_refusals_name_the_cause() {
        let unknown_ca = classify(&refused(48), None);
        assert_eq!(unknown_ca.severity(), Severity::Refused);
        assert!(
            unknown_ca
                .describe(&subject())
                .contains("does not trust the CA")
        );

        let expired = classify(&refused(45), None);
        assert_eq!(expired.severity(), Severity::Refused);
        assert!(expired.describe(&subject()).contains("has expired"));

        let alpn = classify(&refused(120), None);
        assert!(alpn.describe(&subject()).contains("aimux/1"));

        let unauthorized = classify(
            &app_close(codes::CLOSE_UNAUTHORIZED, "left the domain"),
            None,
        );
        assert_eq!(unauthorized.severity(), Severity::Refused);
        assert!(
            unauthorized
                .describe(&subject())
                .contains("left the domain")
        );

        // An alert with no certificate meaning is transient.
        assert_eq!(classify(&refused(80), None).severity(), Severity::Transient);
    }

    #[test]
    fn our_own_refusal_of_the_gateway_uses_the_recorded_reason() {
        let td = aimux_certs::TrustDomain::new("example.org").unwrap();
        let expected = SpiffeId::new(td.clone(), "/gateway/edge").unwrap();
        let presented = SpiffeId::new(td, "/gateway/other").unwrap();
        let tls = rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            IdentityError::UnexpectedPeer {
                presented,
                expected,
            },
        ))));
        let rejection = Rejection::from_tls(&tls);
        let local = ConnectionError::TransportError(TransportErrorCode::crypto(46).into());
        let failure = classify(&local, Some(rejection));
        assert_eq!(failure.severity(), Severity::Refused);
        let text = failure.describe(&subject());
        assert!(
            text.contains("presented spiffe://example.org/gateway/other")
                && text.contains("expects spiffe://example.org/gateway/edge"),
            "{text}"
        );

        let unknown = Rejection::from_tls(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        let text = classify(&local, Some(unknown)).describe(&subject());
        assert!(
            text.contains("not issued by this sidecar's mesh CA"),
            "{text}"
        );

        // Without a recorded reason the QUIC error is reported as is.
        let bare = classify(&local, None);
        assert_eq!(bare.severity(), Severity::Transient);
        assert!(bare.describe(&subject()).contains("certificate_unknown"));
    }

    #[test]
    fn transient_failures() {
        for (err, needle) in [
            (ConnectionError::TimedOut, "idle timeout"),
            (ConnectionError::Reset, "restarted"),
            (
                app_close(codes::CLOSE_SHUTDOWN, "bye"),
                "shutting down: bye",
            ),
            (app_close(0x77, ""), "code 0x77"),
        ] {
            let f = classify(&err, None);
            assert_eq!(f.severity(), Severity::Transient, "{err}");
            let text = f.describe(&subject());
            assert!(text.contains(needle), "{text}");
        }
        let refused = classify(
            &ConnectionError::ConnectionClosed(ConnectionClose {
                error_code: TransportErrorCode::CONNECTION_REFUSED,
                frame_type: None,
                reason: Bytes::new(),
            }),
            None,
        );
        assert_eq!(refused.severity(), Severity::Transient);
        assert!(
            refused
                .describe(&subject())
                .contains("not accepting connections")
        );
        let timeout = Failure::HandshakeTimeout(Duration::from_secs(3));
        assert!(timeout.describe(&subject()).contains("within 3 s"));
    }

    #[test]
    fn repeats_are_recognised() {
        let a = classify(&refused(44), None);
        assert!(a.same_kind(&classify(&refused(44), None)));
        assert!(!a.same_kind(&classify(&refused(48), None)));
        assert!(
            Failure::HandshakeTimeout(Duration::from_secs(1))
                .same_kind(&Failure::HandshakeTimeout(Duration::from_secs(2)))
        );
        assert!(!Failure::IdleTimeout.same_kind(&Failure::StatelessReset));
    }
}
