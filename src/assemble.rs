//! From the validated mesh file to the typed configurations of the gateway and sidecar
//! libraries: certificates loaded, built-in demo upstreams started and given addresses.

use std::collections::HashMap;

use aimux_certs::tls::MeshTrust;
use aimux_certs::{Identity, SpiffeId, WorkloadName};
use aimux_gateway as gw;
use aimux_sidecar as sc;
use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::demo;
use crate::mesh::{self, Mesh, Upstream};

fn trust(mesh: &Mesh) -> anyhow::Result<MeshTrust> {
    let ca = mesh.certs_dir.join("ca.crt");
    let trust =
        MeshTrust::load(&ca).with_context(|| format!("loading the mesh CA {}", ca.display()))?;
    if trust.trust_domain().as_str() != mesh.trust_domain {
        anyhow::bail!(
            "{} is the CA of trust domain {}, but the mesh file says {}",
            ca.display(),
            trust.trust_domain(),
            mesh.trust_domain
        );
    }
    Ok(trust)
}

/// The built-in demo upstreams started so far, by kind: started on first use, kept across
/// reloads (a reload that still names `builtin:echo` keeps the same server).
#[derive(Debug)]
pub(crate) struct Builtins {
    running: tokio::sync::Mutex<HashMap<mesh::Builtin, std::net::SocketAddr>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Builtins {
    /// Builtins that stop with `shutdown` and run on `tasks`.
    pub(crate) fn new(shutdown: &CancellationToken, tasks: &TaskTracker) -> Self {
        Self {
            running: tokio::sync::Mutex::default(),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        }
    }

    async fn addr(&self, builtin: mesh::Builtin) -> anyhow::Result<std::net::SocketAddr> {
        let mut running = self.running.lock().await;
        if let Some(addr) = running.get(&builtin) {
            return Ok(*addr);
        }
        let started = demo::start(builtin, self.shutdown.clone(), &self.tasks).await?;
        running.insert(builtin, started.addr);
        Ok(started.addr)
    }
}

/// The gateway's configuration. Built-in upstreams are started through `builtins`.
pub(crate) async fn gateway(mesh: &Mesh, builtins: &Builtins) -> anyhow::Result<gw::GatewayConfig> {
    let g = &mesh.gateway;
    let identity = Identity::load(&g.cert, &g.key)
        .with_context(|| format!("loading the gateway certificate {}", g.cert.display()))?;
    let policy = policy(mesh, builtins).await?;
    Ok(gw::GatewayConfig {
        trust: trust(mesh)?,
        tunnel: Some(gw::TunnelConfig {
            identity,
            crl_path: mesh.certs_dir.join("crl.pem"),
            max_streams_per_connection: g.max_streams_per_connection,
            quic: Some(g.quic),
            h2: g.h2,
        }),
        dev_http: g.dev_http,
        admin: g.admin,
        policy,
        audit: g.audit.as_ref().map(|a| gw::AuditConfig {
            sink: match a {
                mesh::Audit::Stdout => gw::AuditSink::Stdout,
                mesh::Audit::File(path) => gw::AuditSink::File(path.clone()),
            },
        }),
        timeouts: gw::Timeouts::default(),
    })
}

/// The hot-reloadable part of the gateway's configuration: services, routes, access rules.
pub(crate) async fn policy(mesh: &Mesh, builtins: &Builtins) -> anyhow::Result<gw::PolicyConfig> {
    let mut services = Vec::new();
    for service in &mesh.services {
        let mut upstreams = Vec::new();
        for upstream in &service.upstreams {
            let url = match upstream {
                Upstream::Url(url) => url.clone(),
                Upstream::Builtin(b) => format!("http://{}", builtins.addr(*b).await?),
            };
            upstreams.push(
                url.parse::<http::Uri>()
                    .with_context(|| format!("upstream {url}"))?,
            );
        }
        services.push(gw::ServiceConfig {
            name: service.name.clone(),
            upstreams,
            protocol: match service.protocol {
                mesh::UpstreamProtocol::Http1 => gw::UpstreamProtocol::Http1,
                mesh::UpstreamProtocol::H2c => gw::UpstreamProtocol::H2c,
                mesh::UpstreamProtocol::Http2 => gw::UpstreamProtocol::Http2,
                mesh::UpstreamProtocol::Http3 => gw::UpstreamProtocol::Http3,
                mesh::UpstreamProtocol::Auto => gw::UpstreamProtocol::Auto,
            },
            balance: service.balance,
            breaker: service.breaker,
            retries: service.retries,
            tls: upstream_tls(service)?,
            max_requests: service.max_requests,
            agent: match &service.agent {
                Some(name) => Some(
                    WorkloadName::new(name)
                        .with_context(|| format!("service `{}`: agent name", service.name))?,
                ),
                None => None,
            },
        });
    }
    Ok(gw::PolicyConfig {
        services,
        routes: mesh.routes.iter().map(mesh::Route::to_gateway).collect(),
        access: access_rules(mesh),
        rate_limits: gw::RateLimitConfig {
            rules: mesh
                .rate_limits
                .iter()
                .map(|r| gw::RateRule {
                    identities: r.from.clone(),
                    rate_per_sec: r.rate,
                    burst: r.burst,
                })
                .collect(),
        },
        isolation: mesh.isolation,
        semantic: gw::semantic::SemanticConfig {
            model_dir: mesh.semantic.model.clone(),
            cache_capacity: mesh
                .semantic
                .cache
                .unwrap_or(gw::semantic::SemanticConfig::DEFAULT_CACHE_CAPACITY),
            min_score: mesh.semantic.min_score,
            margin: mesh.semantic.margin,
        },
    })
}

/// How the gateway checks the certificates of a service's `https://` upstreams: the CA of
/// `tls.ca`, read now (so a reload picks up a renewed file), or the system's roots.
fn upstream_tls(service: &mesh::Service) -> anyhow::Result<gw::UpstreamTls> {
    let Some(tls) = &service.tls else {
        return Ok(gw::UpstreamTls::default());
    };
    let roots = match &tls.ca {
        Some(path) => aimux_certs::load_certs(path).with_context(|| {
            format!(
                "service `{}`: cannot use tls.ca {}; it must be a PEM file holding the CA \
                 certificate(s) that issued the upstream's certificate",
                service.name,
                path.display()
            )
        })?,
        None => Vec::new(),
    };
    Ok(gw::UpstreamTls {
        roots,
        server_name: tls.server_name.clone(),
    })
}

/// The gateway's access rules.
pub(crate) fn access_rules(mesh: &Mesh) -> Vec<gw::AccessRuleConfig> {
    mesh.access
        .iter()
        .map(|a| gw::AccessRuleConfig {
            name: a.name.clone(),
            from: a.from.clone(),
            to: a.to.clone(),
            intents: a.intents.clone(),
            action: match a.action {
                mesh::Action::Allow => gw::Action::Allow,
                mesh::Action::Deny => gw::Action::Deny,
            },
        })
        .collect()
}

/// The sidecar configuration of agent `name`.
pub(crate) fn sidecar(mesh: &Mesh, name: &str) -> anyhow::Result<sc::SidecarConfig> {
    let Some(agent) = mesh.agents.iter().find(|a| a.name == name) else {
        let names: Vec<&str> = mesh.agents.iter().map(|a| a.name.as_str()).collect();
        anyhow::bail!(
            "the mesh file has no agent `{name}`; its agents are: {}",
            names.join(", ")
        );
    };
    let identity = Identity::load(&agent.cert, &agent.key).with_context(|| {
        format!(
            "loading the certificate of agent `{name}` ({})",
            agent.cert.display()
        )
    })?;
    let trust = trust(mesh)?;
    let gateway_name = WorkloadName::new(&mesh.gateway.name)?;
    let (transport, addr) = match agent.transport {
        mesh::Transport::Quic => (sc::Transport::Quic, mesh.gateway.connect),
        mesh::Transport::H2 => {
            let Some(addr) = mesh.gateway.h2_connect() else {
                anyhow::bail!(
                    "agent `{name}` uses the h2 transport, but the gateway has no `h2` listener"
                );
            };
            (sc::Transport::H2, addr)
        }
    };
    Ok(sc::SidecarConfig {
        identity,
        gateway: sc::GatewayTarget {
            transport,
            addr,
            server_name: mesh.gateway.server_name.clone(),
            identity: SpiffeId::gateway(trust.trust_domain(), &gateway_name),
        },
        trust,
        listeners: agent
            .listeners
            .iter()
            .map(|l| sc::ListenerConfig {
                listen: l.listen,
                service: l.service.clone(),
                kind: if l.tcp {
                    sc::ListenerKind::Tcp
                } else {
                    sc::ListenerKind::Http
                },
            })
            .collect(),
        proxy: agent.proxy,
        inbound: agent.inbound.as_ref().map(|i| sc::InboundConfig {
            http: i.http,
            tcp: i.tcp,
            allow: i.allow.clone(),
            max_streams: i.max_streams,
        }),
        tunnel: {
            let mut t = sc::TunnelSettings::default();
            if let Some(limit) = agent.sniff_limit {
                t.sniff_limit = limit;
            }
            t
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(tls: Option<mesh::ServiceTls>) -> mesh::Service {
        mesh::Service {
            name: "secure".into(),
            upstreams: vec![Upstream::Url("https://127.0.0.1:9443".into())],
            agent: None,
            protocol: mesh::UpstreamProtocol::Auto,
            balance: gw::Balance::default(),
            retries: 2,
            breaker: gw::BreakerConfig::default(),
            tls,
            max_requests: 8,
        }
    }

    #[test]
    fn tls_ca_fills_the_roots_and_a_bad_file_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let now = aimux_certs::time::OffsetDateTime::now_utc();
        let params =
            aimux_certs::InitParams::new(aimux_certs::TrustDomain::new("up.test").unwrap(), now)
                .unwrap();
        aimux_certs::Authority::init(dir.path(), &params, now).unwrap();
        let tls = |ca: &str| {
            Some(mesh::ServiceTls {
                ca: Some(dir.path().join(ca)),
                server_name: Some("api.test".into()),
            })
        };
        let got = upstream_tls(&service(tls("ca.crt"))).unwrap();
        assert_eq!(got.roots.len(), 1);
        assert_eq!(got.server_name.as_deref(), Some("api.test"));
        assert!(upstream_tls(&service(None)).unwrap().roots.is_empty());

        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        for file in ["missing.pem", "empty.pem"] {
            let e = format!("{:#}", upstream_tls(&service(tls(file))).unwrap_err());
            assert!(
                e.starts_with("service `secure`: cannot use tls.ca ") && e.contains(file),
                "{e}"
            );
        }
    }
}
