//! Validation of agent-to-agent delivery: an agent's `inbound` (where deliveries go on its
//! own loopback ports, and who may send them) and services that *are* an agent
//! (`agent = "NAME"` instead of `upstreams`).

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::Checker;
use crate::mesh::diagnostic::{Diagnostic, did_you_mean};
use crate::mesh::model::{Agent, Inbound, Transport};
use crate::mesh::raw::{RawAgent, RawInbound, RawService};

/// Largest `max_streams` accepted: each open delivery holds buffers in the sidecar.
const MAX_STREAMS_CEILING: i64 = 10_000;

/// The services that name an agent, with the span of the name, for checking once the
/// agents are known.
pub(super) fn agent_refs(raws: &[RawService]) -> Vec<(String, Spanned<String>)> {
    raws.iter()
        .filter_map(|s| Some((s.name.get_ref().clone(), s.agent.clone()?)))
        .collect()
}

impl Checker {
    /// The agent a service is, checked against its other keys (not yet against the agents).
    pub(super) fn service_agent(&mut self, raw: &RawService, name: &str) -> Option<String> {
        let Some(agent) = &raw.agent else {
            if raw.upstreams.is_none() {
                self.error_hint(
                    raw.name.span(),
                    format!("service `{name}` has neither upstreams nor an agent"),
                    "add `upstreams = [\"http://127.0.0.1:9000\"]`, or `agent = \"NAME\"` for an agent of the mesh",
                );
            }
            return None;
        };
        if let Some(ups) = &raw.upstreams {
            self.error_hint(
                ups.span(),
                format!("service `{name}` is agent `{}` and also has upstreams", agent.get_ref()),
                "a service is either an agent of the mesh (`agent`) or a set of upstreams; remove one",
            );
        }
        if let Some(p) = &raw.protocol {
            self.error_hint(
                p.span(),
                format!("service `{name}` is an agent: `protocol` has no meaning for it"),
                "requests reach an agent in their envelopes over its sidecar's QUIC connection; remove `protocol`",
            );
        }
        self.name(agent, "agent")
    }

    /// Checks that every agent service names an agent that takes deliveries over QUIC.
    pub(super) fn agent_services(&mut self, refs: &[(String, Spanned<String>)], agents: &[Agent]) {
        for (service, agent) in refs {
            let name = agent.get_ref();
            let Some(found) = agents.iter().find(|a| &a.name == name) else {
                let mut d = Diagnostic::new(
                    agent.span(),
                    format!(
                        "service `{service}` is agent `{name}`, but there is no [[agent]] named `{name}`"
                    ),
                );
                if let Some(close) = did_you_mean(name, agents.iter().map(|a| a.name.as_str())) {
                    d = d.hint(format!("did you mean `{close}`?"));
                }
                self.diags.push(d);
                continue;
            };
            if found.inbound.is_none() {
                self.error_hint(
                    agent.span(),
                    format!("service `{service}` is agent `{name}`, which takes no deliveries"),
                    format!("give agent `{name}` an inbound: `inbound = {{ http = \"127.0.0.1:9100\", allow = [\"CALLER\"] }}`"),
                );
            }
            if found.transport != Transport::Quic {
                self.error_hint(
                    agent.span(),
                    format!("service `{service}` is agent `{name}`, whose sidecar uses the h2 transport"),
                    "deliveries travel on streams the gateway opens, which only QUIC allows; use transport = \"quic\" for that agent",
                );
            }
        }
    }

    /// An agent's `inbound`.
    pub(super) fn inbound(
        &mut self,
        raw: &Spanned<RawInbound>,
        agent: &str,
        transport: Transport,
        raw_agent: &RawAgent,
        listens: &mut HashMap<SocketAddr, String>,
    ) -> Option<Inbound> {
        let inbound = raw.get_ref();
        if transport != Transport::Quic {
            let at = raw_agent
                .transport
                .as_ref()
                .map_or(raw.span(), Spanned::span);
            self.error_hint(
                at,
                format!("agent `{agent}` takes deliveries (inbound) but uses the h2 transport"),
                "deliveries travel on streams the gateway opens, which only QUIC allows; use transport = \"quic\"",
            );
        }
        let mut addr = |checker: &mut Checker, value: &Option<Spanned<String>>, kind: &str| {
            let value = value.as_ref()?;
            let what = format!("inbound {kind} address of agent `{agent}`");
            let parsed = checker.loopback_addr(value, &what)?;
            checker.claim_port(listens, parsed, &what, value.span());
            Some(parsed)
        };
        let http = addr(self, &inbound.http, "http");
        let tcp = addr(self, &inbound.tcp, "tcp");
        if inbound.http.is_none() && inbound.tcp.is_none() {
            self.error_hint(
                raw.span(),
                format!("the inbound of agent `{agent}` has nowhere to deliver"),
                "add `http = \"127.0.0.1:9100\"` (the agent's HTTP server) and/or `tcp = \"127.0.0.1:9200\"`",
            );
        }
        let mut allow = Vec::new();
        for entry in inbound.allow.get_ref() {
            let text = entry.get_ref();
            if text.is_empty() || text.chars().any(char::is_whitespace) {
                self.error_hint(
                    entry.span(),
                    format!("`{text}` in the allow list of agent `{agent}` is not a name or SPIFFE ID"),
                    "use agent names (`alice`), SPIFFE IDs (`spiffe://DOMAIN/agent/alice`) or globs (`team-*`)",
                );
            } else {
                allow.push(text.clone());
            }
        }
        if inbound.allow.get_ref().is_empty() {
            self.error_hint(
                inbound.allow.span(),
                format!("agent `{agent}` takes deliveries but allows nobody"),
                "name the callers: `allow = [\"alice\"]` (or `[\"*\"]` to leave it to the gateway's access rules)",
            );
        }
        let max_streams = match &inbound.max_streams {
            None => aimux_sidecar::InboundConfig::DEFAULT_MAX_STREAMS,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 && i64::from(v) <= MAX_STREAMS_CEILING => v,
                _ => {
                    self.error_hint(
                        n.span(),
                        format!("max_streams = {} is out of range", n.get_ref()),
                        format!("use 1 to {MAX_STREAMS_CEILING}; the default is 256"),
                    );
                    return None;
                }
            },
        };
        Some(Inbound {
            http,
            tcp,
            allow,
            max_streams,
        })
    }
}
