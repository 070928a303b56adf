//! A human-readable account of a validated mesh: what `aimux check` prints, so the reader
//! sees how the file was understood (defaults filled in, paths resolved).

use std::fmt;

use super::model::*;

impl fmt::Display for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let certs = if self.bootstrap_certs {
            " (created on first `aimux up`)"
        } else {
            ""
        };
        writeln!(f, "trust domain  {}", self.trust_domain)?;
        writeln!(f, "certificates  {}{certs}", self.certs_dir.display())?;
        let g = &self.gateway;
        writeln!(
            f,
            "gateway       {} on {} (QUIC; sidecars dial {} as {}, ≤{} streams per connection)",
            g.name, g.quic, g.connect, g.server_name, g.max_streams_per_connection
        )?;
        if let Some(addr) = g.h2 {
            writeln!(f, "              HTTP/2 tunnel on {addr} (TCP, mutual TLS)")?;
        }
        if let Some(addr) = g.dev_http {
            writeln!(
                f,
                "              dev-mode HTTP on {addr} (claimed identities: not for production)"
            )?;
        }
        if let Some(addr) = g.admin {
            writeln!(f, "              admin on {addr}")?;
        }
        writeln!(
            f,
            "              certificate {} (key {})",
            g.cert.display(),
            g.key.display()
        )?;
        for a in &self.agents {
            let transport = match a.transport {
                Transport::Quic => "QUIC",
                Transport::H2 => "HTTP/2 over TLS",
            };
            writeln!(
                f,
                "agent         {} over {transport} (certificate {}, key {})",
                a.name,
                a.cert.display(),
                a.key.display()
            )?;
            for l in &a.listeners {
                writeln!(f, "              {} → {}", l.listen, l.service)?;
            }
            if let Some(inbound) = &a.inbound {
                let to: Vec<String> = [("http", inbound.http), ("tcp", inbound.tcp)]
                    .iter()
                    .filter_map(|(kind, addr)| addr.map(|a| format!("{kind} {a}")))
                    .collect();
                writeln!(
                    f,
                    "              deliveries from {} → {}",
                    inbound.allow.join(", "),
                    to.join(", ")
                )?;
            }
            if let Some(proxy) = a.proxy {
                writeln!(
                    f,
                    "              {proxy} → any service (proxy-style or Host-addressed)"
                )?;
            }
        }
        for s in &self.services {
            if let Some(agent) = &s.agent {
                writeln!(
                    f,
                    "service       {} → agent {agent}, over its sidecar's connection",
                    s.name
                )?;
                continue;
            }
            let ups: Vec<String> = s.upstreams.iter().map(ToString::to_string).collect();
            writeln!(
                f,
                "service       {} → {} over {}",
                s.name,
                ups.join(", "),
                s.protocol
            )?;
            let mut notes = Vec::new();
            if let Some(tls) = &s.tls {
                notes.push(match &tls.ca {
                    Some(ca) => format!("certificates checked against {}", ca.display()),
                    None => "certificates checked against the system's roots".to_owned(),
                });
                if let Some(name) = &tls.server_name {
                    notes.push(format!("for the name {name}"));
                }
            }
            if s.max_requests != aimux_gateway::ServiceConfig::DEFAULT_MAX_REQUESTS {
                notes.push(format!(
                    "≤{} requests in flight per upstream",
                    s.max_requests
                ));
            }
            if !notes.is_empty() {
                writeln!(f, "              {}", notes.join(", "))?;
            }
        }
        for r in &self.routes {
            let mut conditions = Vec::new();
            if let Some(s) = &r.service {
                conditions.push(format!("service {s}"));
            }
            if let Some(i) = &r.intent {
                conditions.push(format!("intent \"{i}\""));
            }
            if let Some(m) = &r.method {
                conditions.push(format!("method {m}"));
            }
            if let Some(p) = &r.path {
                conditions.push(format!("path {p}"));
            }
            if !r.examples.is_empty() {
                let e: Vec<String> = r.examples.iter().map(|e| format!("\"{e}\"")).collect();
                conditions.push(format!("nearest to {}", e.join(" / ")));
            }
            if let Some(t) = r.timeout {
                conditions.push(format!("(timeout {}s)", t.as_secs_f64()));
            }
            let name = r
                .name
                .as_deref()
                .map(|n| format!("{n}: "))
                .unwrap_or_default();
            writeln!(
                f,
                "route         {name}{} → {}",
                conditions.join(" and "),
                r.to
            )?;
        }
        for rule in &self.access {
            let list = |globs: &Option<Vec<aimux_gateway::Glob>>| match globs {
                None => "*".to_owned(),
                Some(g) => g.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", "),
            };
            let intents = if rule.intents.is_empty() {
                String::new()
            } else {
                let i: Vec<String> = rule.intents.iter().map(|i| format!("\"{i}\"")).collect();
                format!(" for {}", i.join(", "))
            };
            writeln!(
                f,
                "access        {:?} {} → {}{intents}",
                rule.action,
                list(&rule.from),
                list(&rule.to)
            )?;
        }
        write!(f, "access        anything else is denied")
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Upstream::Url(url) => f.write_str(url),
            Upstream::Builtin(b) => {
                let name = Builtin::ALL
                    .iter()
                    .find(|(_, x)| x == b)
                    .map_or("?", |(n, _)| n);
                write!(f, "builtin:{name}")
            }
        }
    }
}

impl fmt::Display for UpstreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = UpstreamProtocol::ALL
            .iter()
            .find(|(_, p)| p == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}
