//! Validation of what a service's upstreams need beyond their URLs: the protocol that fits
//! their scheme, the `tls` table, `max_requests`; and whether each sidecar listener carries
//! what its service takes (HTTP or raw TCP). The gateway refuses the same mistakes at
//! startup; finding them here points at the line.

use toml::Spanned;

use super::Checker;
use crate::mesh::model::{Service, ServiceTls, Upstream, UpstreamProtocol};
use crate::mesh::raw::{RawAgent, RawListener, RawService, RawTls};

/// Most requests in flight per upstream that `max_requests` accepts: each holds buffers
/// and a connection or stream in the gateway.
const MAX_REQUESTS_CEILING: i64 = 1_000_000;

/// How an upstream is reached, by its URL's scheme (`builtin:` demo upstreams are HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
    Tcp,
}

fn scheme(upstream: &Upstream) -> Scheme {
    match upstream {
        Upstream::Url(url) if url.starts_with("https://") => Scheme::Https,
        Upstream::Url(url) if url.starts_with("tcp://") => Scheme::Tcp,
        Upstream::Url(_) | Upstream::Builtin(_) => Scheme::Http,
    }
}

/// What a service takes: HTTP requests or raw TCP streams; `None` when it has no
/// upstreams (or mixes the two, reported on the service itself).
fn takes_tcp(service: &Service) -> Option<bool> {
    let first = scheme(service.upstreams.first()?) == Scheme::Tcp;
    service
        .upstreams
        .iter()
        .all(|u| (scheme(u) == Scheme::Tcp) == first)
        .then_some(first)
}

impl Checker {
    /// The checks that need a service's upstreams, protocol and raw table together; returns
    /// its `tls` settings and `max_requests`.
    pub(super) fn service_upstreams(
        &mut self,
        raw: &RawService,
        name: &str,
        upstreams: &[Upstream],
        protocol: UpstreamProtocol,
    ) -> (Option<ServiceTls>, u32) {
        let schemes: Vec<Scheme> = upstreams.iter().map(scheme).collect();
        let tcp = schemes.iter().filter(|s| **s == Scheme::Tcp).count();
        if tcp > 0 && tcp < schemes.len() {
            self.error_hint(
                raw.upstreams.as_ref().map_or(raw.name.span(), toml::Spanned::span),
                format!("service `{name}` mixes tcp:// upstreams with HTTP ones"),
                "a service takes either raw TCP streams (all tcp://) or HTTP requests (http://, https://, builtin:); split it in two",
            );
        }
        if let Some(p) = &raw.protocol {
            self.protocol_fits_schemes(p, upstreams, protocol);
        }
        let tls = raw
            .tls
            .as_ref()
            .and_then(|t| self.service_tls(t, name, &schemes, protocol));
        let max_requests = match &raw.max_requests {
            None => aimux_gateway::ServiceConfig::DEFAULT_MAX_REQUESTS,
            Some(n) => match u32::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 && i64::from(v) <= MAX_REQUESTS_CEILING => v,
                _ => {
                    self.error_hint(
                        n.span(),
                        format!("max_requests = {} is out of range", n.get_ref()),
                        format!(
                            "requests in flight at once per upstream: 1 to {MAX_REQUESTS_CEILING} (default 1024); more are refused as overloaded"
                        ),
                    );
                    aimux_gateway::ServiceConfig::DEFAULT_MAX_REQUESTS
                }
            },
        };
        (tls, max_requests)
    }

    /// `h2c` is HTTP/2 without TLS (RFC 9113 §3.3), `http2` HTTP/2 over TLS, which is
    /// agreed by ALPN in the TLS handshake (RFC 9113 §3.2): each needs its own scheme.
    fn protocol_fits_schemes(
        &mut self,
        at: &Spanned<String>,
        upstreams: &[Upstream],
        protocol: UpstreamProtocol,
    ) {
        let (wrong, message, hint) = match protocol {
            UpstreamProtocol::Http2 => (
                Scheme::Http,
                "protocol http2 is HTTP/2 over TLS, but upstream `{}` is not an https:// URL",
                "use protocol = \"h2c\" for HTTP/2 without TLS, or an https:// URL",
            ),
            UpstreamProtocol::H2c => (
                Scheme::Https,
                "protocol h2c is HTTP/2 without TLS, but upstream `{}` is an https:// URL",
                "use protocol = \"http2\" (or \"auto\") for https:// upstreams, or an http:// URL",
            ),
            _ => return,
        };
        if let Some(u) = upstreams.iter().find(|u| scheme(u) == wrong) {
            self.error_hint(at.span(), message.replace("{}", &u.to_string()), hint);
        }
    }

    fn service_tls(
        &mut self,
        raw: &Spanned<RawTls>,
        name: &str,
        schemes: &[Scheme],
        protocol: UpstreamProtocol,
    ) -> Option<ServiceTls> {
        // An error rather than a warning: `aimux check` has no warnings, and settings that
        // are silently ignored are how a file ends up saying "TLS" about traffic that is
        // sent in the clear. (HTTP/3 upstreams always use TLS.)
        if !schemes.contains(&Scheme::Https) && protocol != UpstreamProtocol::Http3 {
            self.error_hint(
                raw.span(),
                format!("service `{name}` has `tls` settings but no https:// upstream, so they would not be used"),
                "write its upstreams as https://HOST[:PORT], or remove `tls`",
            );
        }
        let t = raw.get_ref();
        let ca = t.ca.as_ref().and_then(|ca| {
            let path = self.base_dir.join(ca.get_ref());
            match aimux_certs::load_certs(&path) {
                Ok(_) => Some(path),
                Err(e) => {
                    self.error_hint(
                        ca.span(),
                        format!("tls.ca of service `{name}` cannot be used: {e}"),
                        "name a PEM file (relative to the mesh file) holding the CA certificate(s) that issued the upstream's certificate",
                    );
                    None
                }
            }
        });
        let server_name = t.server_name.as_ref().and_then(|n| {
            let text = n.get_ref();
            if aimux_certs::pki_types::ServerName::try_from(text.as_str()).is_ok() {
                Some(text.clone())
            } else {
                self.error_hint(
                    n.span(),
                    format!("tls.server_name `{text}` is neither a DNS name nor an IP address"),
                    "the name the upstream's certificate carries, e.g. \"api.internal\"",
                );
                None
            }
        });
        Some(ServiceTls { ca, server_name })
    }

    /// A raw TCP listener (`protocol = "tcp"`) must address a service with `tcp://`
    /// upstreams, and an HTTP listener one with HTTP upstreams; a listener addressing an
    /// agent must carry what the agent's inbound takes. Listeners of names that only routes
    /// know are not checked.
    pub(super) fn listener_kinds(&mut self, agents: &[RawAgent], services: &[Service]) {
        for agent in agents {
            for listener in &agent.listeners {
                let l = listener.get_ref();
                let Some(service) = services.iter().find(|s| &s.name == l.service.get_ref()) else {
                    continue;
                };
                let listener_tcp = match l.protocol.as_ref().map(|p| p.get_ref().as_str()) {
                    None | Some("http") => false,
                    Some("tcp") => true,
                    // An unknown protocol is reported where listeners are read.
                    Some(_) => continue,
                };
                if let Some(target) = &service.agent {
                    self.listener_fits_agent(agents, agent, l, target, listener_tcp);
                    continue;
                }
                let Some(service_tcp) = takes_tcp(service) else {
                    continue;
                };
                if listener_tcp == service_tcp {
                    continue;
                }
                let listen = l.listen.get_ref();
                let agent_name = agent.name.get_ref();
                let first = service
                    .upstreams
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if listener_tcp {
                    let at = l.protocol.as_ref().map_or(l.service.span(), Spanned::span);
                    self.error_hint(
                        at,
                        format!(
                            "listener {listen} of agent `{agent_name}` is raw TCP (protocol = \"tcp\"), but service `{}` takes HTTP requests ({first})",
                            service.name
                        ),
                        "a raw TCP listener needs a service with tcp://HOST:PORT upstreams; remove protocol = \"tcp\" to carry HTTP",
                    );
                } else {
                    self.error_hint(
                        l.service.span(),
                        format!(
                            "listener {listen} of agent `{agent_name}` carries HTTP, but service `{}` takes raw TCP streams ({first})",
                            service.name
                        ),
                        "add protocol = \"tcp\" to the listener, or point it at an HTTP service",
                    );
                }
            }
        }
    }

    /// A listener addressing an agent service must carry what that agent's inbound takes
    /// (`http` for an HTTP listener, `tcp` for a raw TCP one).
    fn listener_fits_agent(
        &mut self,
        agents: &[RawAgent],
        caller: &RawAgent,
        listener: &RawListener,
        target: &str,
        listener_tcp: bool,
    ) {
        let Some(inbound) = agents
            .iter()
            .find(|a| a.name.get_ref() == target)
            .and_then(|a| a.inbound.as_ref())
        else {
            // A missing agent or inbound is reported on the service.
            return;
        };
        let inbound = inbound.get_ref();
        let (takes, kind, key) = if listener_tcp {
            (inbound.tcp.is_some(), "raw TCP", "tcp")
        } else {
            (inbound.http.is_some(), "HTTP", "http")
        };
        if takes {
            return;
        }
        let at = listener
            .protocol
            .as_ref()
            .map_or(listener.service.span(), Spanned::span);
        self.error_hint(
            at,
            format!(
                "listener {} of agent `{}` carries {kind} to agent `{target}`, whose inbound takes no {kind}",
                listener.listen.get_ref(),
                caller.name.get_ref(),
            ),
            format!("add `{key} = \"127.0.0.1:PORT\"` to the inbound of agent `{target}`"),
        );
    }
}
