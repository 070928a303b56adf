//! The sidecar's typed configuration. The binary builds it from `mesh.toml`; this crate
//! reads no files and no environment.

use std::net::SocketAddr;
use std::time::Duration;

use aimux_certs::tls::MeshTrust;
use aimux_certs::{Identity, SpiffeId};
use aimux_wire::Limits;

use crate::error::SidecarError;

/// Everything one sidecar needs: who the agent is, whom to trust, where the gateway is, and
/// which loopback addresses stand in for which services.
#[derive(Debug)]
pub struct SidecarConfig {
    /// The agent's certificate chain and key. Its SPIFFE ID (`spiffe://DOMAIN/agent/NAME`) is
    /// the identity every request envelope claims.
    pub identity: Identity,
    /// The mesh CA the gateway's certificate must chain to.
    pub trust: MeshTrust,
    /// The gateway to keep the tunnel connection to.
    pub gateway: GatewayTarget,
    /// One HTTP/1.1 listener per service the agent may call.
    pub listeners: Vec<ListenerConfig>,
    /// An optional generic proxy listener: the destination of each request is taken from its
    /// absolute-form URI (`HTTP_PROXY`) or its `Host` header.
    pub proxy: Option<SocketAddr>,
    /// Timeouts, keep-alives, backoff, envelope limits and the body look-ahead of the
    /// tunnel's requests.
    pub tunnel: TunnelSettings,
    /// Requests and TCP streams other agents send to this one, delivered by the gateway
    /// over this sidecar's own connection (SPEC.md §12.2). `None`: the gateway may open no
    /// stream towards this sidecar. QUIC only.
    pub inbound: Option<InboundConfig>,
}

/// Where deliveries to this agent go, and who may send them. The agent listens on
/// loopback only; the sidecar's outbound tunnel connection is the only way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundConfig {
    /// The agent's HTTP server (loopback), for delivered HTTP requests.
    pub http: Option<SocketAddr>,
    /// The agent's TCP port (loopback), for delivered raw TCP streams.
    pub tcp: Option<SocketAddr>,
    /// Who may reach this agent: agent names or SPIFFE IDs of this trust domain, `*`
    /// matching any run of characters. The gateway's access rules apply first; this is the
    /// agent's own check, against the identity the gateway vouches for.
    pub allow: Vec<String>,
    /// Streams the gateway may have open towards this sidecar at once (QUIC stream credit,
    /// RFC 9000 §4.6). Default 256.
    pub max_streams: u32,
}

impl InboundConfig {
    /// The default limit of concurrent deliveries.
    pub const DEFAULT_MAX_STREAMS: u32 = 256;
}

/// The gateway a sidecar connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTarget {
    /// How to reach it.
    pub transport: Transport,
    /// Its tunnel address for `transport`: UDP for [`Transport::Quic`], TCP for
    /// [`Transport::H2`].
    pub addr: SocketAddr,
    /// The TLS server name sent as SNI. It is not checked against the certificate: the
    /// gateway is identified by `identity` (see `aimux_certs::tls::MeshServerVerifier`).
    pub server_name: String,
    /// The gateway's exact SPIFFE ID (`spiffe://DOMAIN/gateway/NAME`); any other is refused.
    pub identity: SpiffeId,
}

/// The tunnel transport between sidecar and gateway (SPEC.md §12). Both carry the same
/// envelopes with the same certificates; requests, policy and answers are identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Transport {
    /// One QUIC connection over UDP (ALPN `aimux/1`), one bidirectional stream per request.
    #[default]
    Quic,
    /// One TLS 1.3 connection over TCP with HTTP/2 (ALPN `h2`), one HTTP/2 stream per
    /// request (SPEC.md §12.1): for networks where UDP is blocked.
    H2,
}

impl Transport {
    /// `quic` or `h2`, for logs and configuration.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::H2 => "h2",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One loopback listener standing in for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Where the agent connects, e.g. `127.0.0.1:15002`. Must be a loopback address.
    pub listen: SocketAddr,
    /// The destination service of every request on this listener, e.g. `tools`.
    pub service: String,
    /// What the agent speaks to it: HTTP (sniffed, one stream per request) or raw TCP (one
    /// opaque stream per connection).
    pub kind: ListenerKind,
}

/// What a listener carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerKind {
    /// HTTP/1.1 requests, each classified and carried as its own stream.
    #[default]
    Http,
    /// Any bytes: each TCP connection is one opaque stream with intent `tcp SERVICE`, its
    /// half-closes carried both ways.
    Tcp,
}

/// How the tunnel behaves. Start from [`TunnelSettings::default()`] and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelSettings {
    /// The longest a request waits for the tunnel before it is answered with 503: first for a
    /// connection to the gateway, then for stream credit (QUIC stream limit, HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS). Default 5 s.
    pub connect_wait: Duration,
    /// Keep-alive (PING) interval, so that idle NAT and firewall bindings stay open: QUIC
    /// PING frames (RFC 9000 §10.1.2), or HTTP/2 PING frames (RFC 9113 §6.7). Must be below
    /// `idle_timeout`. Default 2 s.
    pub keep_alive: Duration,
    /// Idle timeout: a connection silent this long is dead. QUIC: the idle timeout of RFC
    /// 9000 §10.1 (the peers use the smaller of their two values). HTTP/2: a PING left
    /// unanswered for `idle_timeout - keep_alive` ends the connection. Default 10 s: a
    /// gateway that vanished without a word (killed, or its host lost) is noticed within
    /// 10 s, while a lossy WAN path would have to lose five keep-alives in a row to trip it.
    pub idle_timeout: Duration,
    /// The longest one connection attempt may take: the QUIC handshake, or the TCP
    /// connection and TLS handshake. Default 3 s, so a gateway that does not answer is
    /// reported within `connect_wait`.
    pub handshake_timeout: Duration,
    /// First reconnect delay ceiling (full jitter). Default 50 ms.
    pub backoff_initial: Duration,
    /// Largest reconnect delay after ordinary failures. Default 2 s.
    pub backoff_max: Duration,
    /// Delay (with jitter, between half and all of it) after the gateway said this agent's
    /// certificate is revoked or otherwise refused it: reconnecting sooner cannot help.
    /// Default 30 s.
    pub revoked_backoff: Duration,
    /// The longest a request waits for the gateway's response envelope after its body was
    /// sent (or after the upload last made progress). A backstop only: the gateway enforces
    /// upstream timeouts itself (outcome `upstream_timeout`), and a dead connection is noticed
    /// through `idle_timeout`. It is long because a non-streaming LLM call can take minutes
    /// before its response head. Default 300 s.
    pub response_head_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish before they are cut off.
    /// Default 10 s.
    pub shutdown_grace: Duration,
    /// Envelope limits (SPEC.md §8), for what the sidecar sends and accepts.
    pub limits: Limits,
    /// The look-ahead: how many bytes of a request body the sidecar reads before it opens the
    /// stream, to classify the request (its intent hint: protocol, operation, target; see
    /// `sidecar/INTENTS.md`). With a declared `Content-Length` it waits for
    /// `min(length, sniff_limit)` bytes; a body of unknown length (chunked) is read up to the
    /// end of its first JSON value, its end, this limit or [`sniff_wait`], whichever comes
    /// first; a body that does not start like JSON is not waited for. The bytes read are sent
    /// first, unchanged, followed by the rest of the body. A field beyond the limit is not
    /// seen (the hint is flagged `partial`). Memory: up to this much per request in flight
    /// (plus the chunk that crossed it). At most [`MAX_SNIFF_LIMIT`]; 0 classifies by method,
    /// path and headers alone. Default 64 KiB.
    ///
    /// [`sniff_wait`]: TunnelSettings::sniff_wait
    pub sniff_limit: usize,
    /// The longest the look-ahead waits for body bytes that have not arrived. Bodies arrive
    /// with their head in practice, so this matters only for an agent that streams an upload
    /// (of unknown length, or pausing mid-body) and waits for an answer before sending more:
    /// such a request is delayed by at most this much, and then classified from what arrived
    /// (flag `partial`). Zero reads only what has already arrived. Default 50 ms.
    pub sniff_wait: Duration,
}

/// The largest [`TunnelSettings::sniff_limit`]: the look-ahead is held in memory for every
/// request in flight.
pub const MAX_SNIFF_LIMIT: usize = 16 << 20;

impl Default for TunnelSettings {
    fn default() -> Self {
        TunnelSettings {
            connect_wait: Duration::from_secs(5),
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            revoked_backoff: Duration::from_secs(30),
            response_head_timeout: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
            limits: Limits::default(),
            sniff_limit: 64 * 1024,
            sniff_wait: Duration::from_millis(50),
        }
    }
}

impl TunnelSettings {
    /// Checks the settings against each other; the message names the setting.
    pub(crate) fn validate(&self) -> Result<(), SidecarError> {
        let positive = [
            ("connect_wait", self.connect_wait),
            ("keep_alive", self.keep_alive),
            ("idle_timeout", self.idle_timeout),
            ("handshake_timeout", self.handshake_timeout),
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("revoked_backoff", self.revoked_backoff),
            ("response_head_timeout", self.response_head_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(invalid(name, "must be greater than zero".into()));
            }
        }
        if self.keep_alive >= self.idle_timeout {
            return Err(invalid(
                "keep_alive",
                format!(
                    "({:?}) must be shorter than idle_timeout ({:?}), or the connection times \
                     out between keep-alives",
                    self.keep_alive, self.idle_timeout
                ),
            ));
        }
        if self.backoff_initial > self.backoff_max {
            return Err(invalid(
                "backoff_initial",
                format!(
                    "({:?}) must not exceed backoff_max ({:?})",
                    self.backoff_initial, self.backoff_max
                ),
            ));
        }
        if self.sniff_limit > MAX_SNIFF_LIMIT {
            return Err(invalid(
                "sniff_limit",
                format!(
                    "({} bytes) must not exceed {MAX_SNIFF_LIMIT} bytes: the look-ahead is held \
                     in memory for every request in flight",
                    self.sniff_limit
                ),
            ));
        }
        if quinn::IdleTimeout::try_from(self.idle_timeout).is_err() {
            return Err(invalid("idle_timeout", "is too large for QUIC".into()));
        }
        Ok(())
    }
}

fn invalid(setting: &'static str, problem: String) -> SidecarError {
    SidecarError::InvalidSetting { setting, problem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let s = TunnelSettings::default();
        s.validate().unwrap();
        assert_eq!(s.connect_wait, Duration::from_secs(5));
        assert_eq!(s.keep_alive, Duration::from_secs(2));
        assert_eq!(s.idle_timeout, Duration::from_secs(10));
        assert_eq!(s.backoff_initial, Duration::from_millis(50));
        assert_eq!(s.backoff_max, Duration::from_secs(2));
        assert_eq!(s.revoked_backoff, Duration::from_secs(30));
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.sniff_limit, 64 * 1024);
        assert_eq!(s.sniff_wait, Duration::from_millis(50));
    }

    #[test]
    fn inconsistent_settings_are_named() {
        let s = TunnelSettings {
            keep_alive: Duration::from_secs(30),
            ..TunnelSettings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("keep_alive"), "{err}");

        let s = TunnelSettings {
            backoff_initial: Duration::from_secs(3),
            ..TunnelSettings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("backoff_initial")
        );

        let s = TunnelSettings {
            sniff_limit: MAX_SNIFF_LIMIT + 1,
            ..TunnelSettings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("sniff_limit")
        );
        let s = TunnelSettings {
            sniff_limit: 0,
            sniff_wait: Duration::ZERO,
            ..TunnelSettings::default()
        };
        s.validate().unwrap();

        let s = TunnelSettings {
            connect_wait: Duration::ZERO,
            ..TunnelSettings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("connect_wait")
        );
    }
}
