//! The gateway's error type. Every message names the address, file or service concerned and
//! says what the operator can do about it.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A listening socket could not be bound.
    #[error("cannot bind the {what} on {addr}: {}", describe_bind_error(source))]
    Bind {
        /// Which listener: "QUIC listener", "HTTP/2 tunnel listener", "dev-mode HTTP
        /// listener", "admin listener".
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The CRL could not be loaded or was refused.
    #[error(
        "cannot load the certificate revocation list {}: {source}; `aimux certs init` creates \
         one next to the CA, and `aimux certs revoke` keeps it current",
        path.display()
    )]
    Crl {
        /// The CRL file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<aimux_certs::Error>,
    },

    /// The TLS configuration could not be built from the gateway's certificate.
    #[error("cannot build the gateway's TLS configuration: {source}")]
    Tls {
        /// What went wrong.
        #[source]
        source: Box<aimux_certs::Error>,
    },

    /// The TLS configuration cannot be used for QUIC.
    #[error("cannot use the gateway's TLS configuration for QUIC: {reason}")]
    QuicCrypto {
        /// What quinn said.
        reason: String,
    },

    /// Two services share a name.
    #[error("service `{service}` is defined twice: give each service its own name")]
    DuplicateService {
        /// The repeated name.
        service: String,
    },

    /// A service has no upstream.
    #[error("service `{service}` has no upstream: give it at least one `http://host:port` URL")]
    NoUpstreams {
        /// The service.
        service: String,
    },

    /// A service names both an agent and upstream URLs.
    #[error(
        "service `{service}` is agent `{agent}` and also has upstream URLs; a service is either an agent of the mesh or a set of upstreams"
    )]
    AgentWithUpstreams {
        /// The service.
        service: String,
        /// The agent it names.
        agent: String,
    },

    /// A service setting is out of range.
    #[error("service `{service}`: {reason}")]
    InvalidService {
        /// The service.
        service: String,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// An upstream URL cannot be used.
    #[error("service `{service}`: upstream `{upstream}` cannot be used: {reason}")]
    BadUpstream {
        /// The service.
        service: String,
        /// The URL as configured.
        upstream: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The TLS settings of a service's upstreams cannot be used.
    #[error("service `{service}`: upstream TLS cannot be set up: {reason}")]
    UpstreamTls {
        /// The service.
        service: String,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// A route sends requests to a service that does not exist.
    #[error("route {route} sends requests to `{to}`, which is not a service of this gateway")]
    UnknownRouteTarget {
        /// The route's name, or its position (`#3`).
        route: String,
        /// The unknown service.
        to: String,
    },

    /// Neither a tunnel nor the dev-mode listener is configured.
    #[error(
        "the gateway has nothing to serve: configure a tunnel listener (QUIC or HTTP/2), or, \
         for experiments, the dev-mode HTTP listener"
    )]
    NothingToServe,

    /// Two rule routes could match one request and neither is more specific.
    #[error(
        "routes {first} and {second} can match the same request and are equally specific: \
         make one more specific (add a condition, or use an exact value instead of a glob) \
         or merge them"
    )]
    AmbiguousRoutes {
        /// The earlier route's name, or its position (`#3`).
        first: String,
        /// The later route's name, or position.
        second: String,
    },

    /// The semantic matcher could not be built (model files missing or unreadable).
    #[error("semantic routing: {0}")]
    Semantic(String),

    /// A rate-limit or isolation setting is invalid.
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitConfigError),

    /// The audit log cannot be opened.
    #[error("{0}")]
    Audit(String),

    /// The tunnel is configured without a listener.
    #[error(
        "the sidecar tunnel has no listener: give it a QUIC (UDP) address, an HTTP/2 (TCP) \
         address, or both"
    )]
    NoTunnelListener,

    /// A component of the running gateway failed.
    #[error("the gateway's {component} failed: {reason}")]
    ComponentFailed {
        /// Which component.
        component: &'static str,
        /// What happened.
        reason: String,
    },
}

/// `outer: inner: innermost`, each message once (wrappers often repeat their source's).
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in std::iter::successors(Some(error), |e| e.source()) {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The OS error in operator terms, with a hint for the usual causes.
fn describe_bind_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address in use; is another gateway running?".to_owned(),
        io::ErrorKind::PermissionDenied => {
            "permission denied; ports below 1024 need privileges".to_owned()
        }
        io::ErrorKind::AddrNotAvailable => {
            "address not available on this host; check the IP address".to_owned()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_explain_the_usual_causes() {
        let e = GatewayError::Bind {
            what: "QUIC listener",
            addr: "127.0.0.1:4433".parse().unwrap(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(
            e.to_string(),
            "cannot bind the QUIC listener on 127.0.0.1:4433: address in use; is another \
             gateway running?"
        );
    }
}
