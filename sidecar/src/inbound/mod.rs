//! Deliveries to this sidecar's own agent (SPEC.md §12.2): the gateway opens a stream on
//! the sidecar's tunnel connection, writes the request envelope of another agent's request
//! (or TCP stream) and its payload; the sidecar checks the caller, calls its agent on
//! loopback and answers with a response envelope and the agent's payload.
//!
//! The agent's machine needs no inbound port: the stream arrives on the connection this
//! sidecar opened, to the gateway whose SPIFFE ID it verified in the handshake, so the
//! stream can only have come from that gateway. The caller's identity in the envelope is
//! the one the gateway proved from the caller's certificate (the gateway replaces the
//! caller's own claim); this sidecar checks it against its `allow` list.
//!
//! ```text
//! gateway ══stream══▶ accept loop ──▶ read envelope ──▶ allowed? ──▶ http.rs: hyper client ──▶ agent
//!                     (per connection)   (bounded)       (allow)      tcp.rs: TCP relay  ──▶ agent
//! ```

mod http;
mod tcp;

use std::sync::Arc;
use std::time::Duration;

use aimux_certs::{IdentityKind, SpiffeId, TrustDomain};
use aimux_wire::{
    DecodeError, Limits, Outcome, RequestEnvelope, RequestKind, ResponseEnvelope, codes,
    envelope_len,
};
use bytes::BytesMut;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::InboundConfig;
use crate::stats::Counters;
use crate::tunnel::transport::{QuicSend, RecvError, StreamRecv, StreamSend};

/// How long the gateway gets to send a complete envelope on a stream it opened.
const ENVELOPE_WAIT: Duration = Duration::from_secs(10);
/// How long connecting to the agent's own port may take (it is on loopback).
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long the agent may take to send a response head once it has the whole request.
/// Generous: an agent may be waiting on an LLM.
const RESPONSE_HEAD_WAIT: Duration = Duration::from_secs(300);

/// What every delivery shares.
#[derive(Debug)]
pub(crate) struct Inbound {
    config: InboundConfig,
    trust_domain: TrustDomain,
    /// `agent/NAME`, for messages.
    label: String,
    limits: Limits,
    client: http::AgentClient,
    counters: Arc<Counters>,
}

impl Inbound {
    pub(crate) fn new(
        config: InboundConfig,
        own_id: &SpiffeId,
        limits: Limits,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            config,
            trust_domain: own_id.trust_domain().clone(),
            label: own_id.path().trim_start_matches('/').to_owned(),
            limits,
            client: http::client(CONNECT_WAIT),
            counters,
        }
    }

    /// Whether `caller` may reach this agent. Only agents of this trust domain can call.
    fn allows(&self, caller: &str) -> Result<SpiffeId, String> {
        let id = SpiffeId::parse(caller)
            .map_err(|e| format!("the caller identity `{caller}` is not a SPIFFE ID: {e}"))?;
        if id.trust_domain() != &self.trust_domain || id.kind() != Some(IdentityKind::Agent) {
            return Err(format!(
                "{} accepts calls only from agents of trust domain {}, not from {id}",
                self.label,
                self.trust_domain.as_str()
            ));
        }
        let name = id.workload_name().unwrap_or_default();
        let allowed = self
            .config
            .allow
            .iter()
            .any(|pattern| glob_matches(pattern, name) || glob_matches(pattern, caller));
        if allowed {
            Ok(id)
        } else {
            Err(format!(
                "{} does not accept calls from {id}: it is not in the agent's inbound allow \
                 list; to admit it, add \"{name}\" to `inbound.allow` of this agent in \
                 mesh.toml",
                self.label
            ))
        }
    }
}

/// Accepts the streams the gateway opens on `conn` until the connection ends or `stop` is
/// cancelled; every delivery task is owned here and aborted when this returns.
pub(crate) async fn serve(conn: quinn::Connection, inbound: Arc<Inbound>, stop: CancellationToken) {
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = streams.join_next() => {
                if let Err(e) = done && e.is_panic() {
                    error!("a delivery task panicked: {e}");
                }
            }
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    let send = StreamSend::Quic(QuicSend::from(send));
                    streams.spawn(deliver(Arc::clone(&inbound), send, StreamRecv::Quic(recv)));
                }
                Err(e) => {
                    debug!(reason = %e, "no more deliveries on this connection");
                    break;
                }
            },
        }
    }
    streams.abort_all();
    while streams.join_next().await.is_some() {}
}

/// One delivery, from its envelope to the end of both directions.
async fn deliver(inbound: Arc<Inbound>, mut send: StreamSend, mut recv: StreamRecv) {
    let envelope =
        match tokio::time::timeout(ENVELOPE_WAIT, read_request(&mut recv, &inbound.limits)).await {
            Ok(Ok(envelope)) => envelope,
            Ok(Err(e)) => {
                warn!("the gateway delivered a stream without a valid request envelope: {e}");
                recv.stop(codes::STREAM_MALFORMED);
                send.reset(codes::STREAM_MALFORMED);
                return;
            }
            Err(_) => {
                warn!(
                    "the gateway sent no complete request envelope within {}s",
                    ENVELOPE_WAIT.as_secs()
                );
                recv.stop(codes::STREAM_TIMEOUT);
                send.reset(codes::STREAM_TIMEOUT);
                return;
            }
        };
    let request_id = envelope
        .request_id
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let caller = match envelope.identity.as_deref().map(|c| inbound.allows(c)) {
        Some(Ok(id)) => id,
        Some(Err(reason)) => {
            info!(%request_id, "delivery refused: {reason}");
            return refuse(&inbound, send, recv, Outcome::DeniedByPolicy, reason).await;
        }
        None => {
            let reason = "a delivered request must name its caller".to_owned();
            return refuse(&inbound, send, recv, Outcome::MalformedRequest, reason).await;
        }
    };
    Counters::incr(&inbound.counters.deliveries);
    let label = &inbound.label;
    match (envelope.kind, inbound.config.http, inbound.config.tcp) {
        (RequestKind::Http, Some(addr), _) => {
            http::deliver(&inbound, &envelope, &caller, addr, send, recv, &request_id).await;
        }
        (RequestKind::Stream, _, Some(addr)) => {
            tcp::deliver(&inbound, addr, send, recv, &request_id).await;
        }
        (RequestKind::Http, None, _) => {
            let reason =
                format!("{label} takes no HTTP requests (its inbound has no http address)");
            refuse(&inbound, send, recv, Outcome::NoRoute, reason).await;
        }
        (RequestKind::Stream, _, None) => {
            let reason = format!("{label} takes no TCP streams (its inbound has no tcp address)");
            refuse(&inbound, send, recv, Outcome::NoRoute, reason).await;
        }
    }
}

/// Answers with a refusal and ends both directions.
async fn refuse(
    inbound: &Inbound,
    mut send: StreamSend,
    mut recv: StreamRecv,
    outcome: Outcome,
    reason: String,
) {
    Counters::incr(&inbound.counters.deliveries_refused);
    recv.stop(codes::STREAM_CANCELLED);
    answer(inbound, &mut send, ResponseEnvelope::new(outcome, reason)).await;
}

/// Answers that the agent could not be called (it is down, or did not answer in time).
async fn agent_failed(
    inbound: &Inbound,
    mut send: StreamSend,
    outcome: Outcome,
    reason: String,
    request_id: &str,
) {
    warn!(request_id, "{reason}");
    Counters::incr(&inbound.counters.failures);
    answer(inbound, &mut send, ResponseEnvelope::new(outcome, reason)).await;
}

/// Writes a whole answer (an envelope, no payload) and finishes the stream.
async fn answer(inbound: &Inbound, send: &mut StreamSend, envelope: ResponseEnvelope) {
    let sent = match envelope.to_bytes(&inbound.limits) {
        Ok(bytes) => send.write(bytes).await.is_ok(),
        Err(_) => false,
    };
    if sent {
        send.finish();
    } else {
        send.reset(codes::INTERNAL);
    }
}

/// Why no envelope was read.
#[derive(Debug, thiserror::Error)]
enum EnvelopeError {
    #[error("{0}")]
    Decode(DecodeError),
    #[error("the stream ended inside the envelope")]
    Truncated,
    #[error("{0}")]
    Read(#[from] RecvError),
}

/// Reads the request envelope at the front of `recv`, and not one byte of payload: the
/// decoder says how many bytes are missing, and the header block is bounded by `limits`.
async fn read_request(
    recv: &mut StreamRecv,
    limits: &Limits,
) -> Result<RequestEnvelope, EnvelopeError> {
    let mut buf = BytesMut::with_capacity(aimux_wire::MAX_PREFACE_LEN);
    loop {
        let wanted = match envelope_len(&buf, limits) {
            Ok(total) if buf.len() >= total => break,
            Ok(total) => total - buf.len(),
            Err(DecodeError::Incomplete { needed, .. }) => needed.max(1),
            Err(e) => return Err(EnvelopeError::Decode(e)),
        };
        match recv.read_chunk(wanted).await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => return Err(EnvelopeError::Truncated),
        }
    }
    RequestEnvelope::decode_slice(&buf, limits)
        .map(|(envelope, _)| envelope)
        .map_err(EnvelopeError::Decode)
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut remaining) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(allow: &[&str]) -> Inbound {
        let own = SpiffeId::parse("spiffe://mesh.test/agent/bob").unwrap();
        let config = InboundConfig {
            http: None,
            tcp: None,
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            max_streams: 8,
        };
        Inbound::new(config, &own, Limits::DEFAULT, Arc::default())
    }

    #[test]
    fn globs_match_names_and_ids() {
        assert!(glob_matches("alice", "alice"));
        assert!(!glob_matches("alice", "alicia"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("team-*", "team-a"));
        assert!(glob_matches("*-bot", "x-bot"));
        assert!(!glob_matches("*-bot", "bot"));
        assert!(glob_matches("a*b*c", "aXbYc"));
        assert!(!glob_matches("a*b*c", "acb"));
        assert!(glob_matches(
            "spiffe://mesh.test/agent/*",
            "spiffe://mesh.test/agent/x"
        ));
    }

    #[test]
    fn only_allowed_agents_of_the_trust_domain_get_through() {
        let bob = inbound(&["alice", "spiffe://mesh.test/agent/ops-*"]);
        assert!(bob.allows("spiffe://mesh.test/agent/alice").is_ok());
        assert!(bob.allows("spiffe://mesh.test/agent/ops-1").is_ok());
        let eve = bob.allows("spiffe://mesh.test/agent/eve").unwrap_err();
        assert!(
            eve.contains("not in the agent's inbound allow list"),
            "{eve}"
        );
        let foreign = bob.allows("spiffe://other.test/agent/alice").unwrap_err();
        assert!(foreign.contains("trust domain mesh.test"), "{foreign}");
        let gateway = bob.allows("spiffe://mesh.test/gateway/alice").unwrap_err();
        assert!(gateway.contains("only from agents"), "{gateway}");
        assert!(bob.allows("not an id").is_err());
        let nobody = inbound(&[]);
        assert!(nobody.allows("spiffe://mesh.test/agent/alice").is_err());
    }
}
