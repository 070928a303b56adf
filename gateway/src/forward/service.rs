//! The services table: each service's upstreams (parsed base URLs, or the QUIC side of
//! HTTP/3 ones), its balancer (a circuit breaker and a request limit per upstream), its
//! TLS client, or the agent it is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_wire::Outcome;
use http::Uri;
use http::header::HeaderValue;
use http::uri::{Authority, PathAndQuery, Scheme};

use super::MAX_RETRIES;
use super::balance::{Balancer, BreakerState, Lease, Unavailable};
use super::client;
use super::h3::{self, H3Upstream};
use crate::config::{ServiceConfig, UpstreamProtocol};
use crate::error::GatewayError;
use crate::metrics::UNKNOWN_SERVICE;
use crate::policy::Refusal;

/// One upstream base URL of a service.
#[derive(Debug)]
pub(super) struct Upstream {
    /// The URL as configured, for messages.
    pub(super) url: String,
    pub(super) authority: Authority,
    /// `Host` sent upstream: the upstream's authority (RFC 9110 §7.2).
    pub(super) host: HeaderValue,
    /// The base path without a trailing `/` (empty for `http://host:port`).
    pub(super) base_path: String,
    /// A raw TCP upstream (`tcp://host:port`): it takes raw streams, not HTTP requests.
    pub(super) tcp: bool,
    /// An `https://` upstream: reached through the service's TLS client.
    pub(super) tls: bool,
}

impl Upstream {
    pub(super) fn parse(service: &str, uri: &Uri) -> Result<Self, GatewayError> {
        let bad = |reason| GatewayError::BadUpstream {
            service: service.to_owned(),
            upstream: uri.to_string(),
            reason,
        };
        let tcp = uri.scheme_str() == Some("tcp");
        let tls = uri.scheme_str() == Some("https");
        match uri.scheme_str() {
            Some("http" | "https") => {}
            Some("tcp") if uri.port().is_some() && uri.path() == "/" => {}
            Some("tcp") => {
                return Err(bad(
                    "a raw TCP upstream is tcp://HOST:PORT, with a port and no path",
                ));
            }
            _ => {
                return Err(bad(
                    "it must be an absolute http://HOST[:PORT] or https://HOST[:PORT] URL",
                ));
            }
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user information in upstream URLs is not supported"));
        }
        if uri.query().is_some() {
            return Err(bad("a base URL cannot have a query"));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad("its host cannot be sent as a Host header"))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let scheme = uri.scheme_str().unwrap_or("http");
        Ok(Self {
            url: format!("{scheme}://{authority}{base_path}"),
            authority,
            host,
            base_path,
            tcp,
            tls,
        })
    }

    /// The upstream URL of a request target in origin form (`/mcp?x=1`): the target
    /// appended to the base path.
    pub(super) fn uri_for(&self, target: &str) -> Result<Uri, Refusal> {
        if !target.starts_with('/') {
            // Only `*` (asterisk-form, `OPTIONS *`) gets here: it addresses the server
            // itself, and a base path could not be joined with it.
            return Err(Refusal::new(
                Outcome::MalformedRequest,
                format!("request target `{target}` cannot be forwarded: only paths can"),
            ));
        }
        let pq: PathAndQuery = format!("{}{target}", self.base_path).parse().map_err(|_| {
            Refusal::new(
                Outcome::MalformedRequest,
                format!("request target `{target}` is not a valid URI path"),
            )
        })?;
        Uri::builder()
            .scheme(if self.tls {
                Scheme::HTTPS
            } else {
                Scheme::HTTP
            })
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|e| {
                Refusal::new(
                    Outcome::InternalError,
                    format!("cannot build the upstream URL from {}: {e}", self.url),
                )
            })
    }
}

/// A service: its name, upstreams and their balancer.
#[derive(Debug)]
pub(crate) struct Service {
    pub(super) name: String,
    pub(super) upstreams: Vec<Upstream>,
    pub(super) balancer: Balancer,
    pub(super) protocol: UpstreamProtocol,
    pub(super) retries: u32,
    /// Raw TCP upstreams: the service takes raw streams only.
    pub(super) tcp: bool,
    pub(super) tls_client: Option<client::TlsClient>,
    /// For an `http3` service, the QUIC side of each upstream (same order as `upstreams`).
    pub(super) h3: Vec<Arc<H3Upstream>>,
    /// The connect timeout its TLS client was built with.
    connect_timeout: Duration,
    /// An agent of the mesh: requests go over its sidecar's connection, not to upstreams.
    pub(super) agent: Option<aimux_certs::WorkloadName>,
}

impl Service {
    pub(super) fn from_config(
        cfg: &ServiceConfig,
        connect_timeout: Duration,
    ) -> Result<Self, GatewayError> {
        Self::after(cfg, connect_timeout, None)
    }

    /// The service `cfg` describes. When it replaces `previous` (its configuration and
    /// service before a reload), what the change does not touch carries over: each upstream
    /// still listed keeps its breaker and requests in flight if the breaker settings and
    /// request limit are the same; the TLS client (with its connection pool) and each
    /// HTTP/3 upstream's connection if TLS, protocol and connect timeout are.
    fn after(
        cfg: &ServiceConfig,
        connect_timeout: Duration,
        previous: Option<(&ServiceConfig, &Service)>,
    ) -> Result<Self, GatewayError> {
        if let Some(agent) = &cfg.agent {
            return Self::agent(cfg, agent);
        }
        if cfg.max_requests == 0 {
            return Err(GatewayError::InvalidService {
                service: cfg.name.clone(),
                reason: "max_requests = 0 would refuse every request; give each upstream a \
                         limit of at least 1 (default 1024)"
                    .to_owned(),
            });
        }
        if cfg.upstreams.is_empty() {
            return Err(GatewayError::NoUpstreams {
                service: cfg.name.clone(),
            });
        }
        // Same protocol and TLS settings: pools and connections to the same URLs still fit.
        let same_transport = previous.filter(|(old_cfg, old)| {
            old_cfg.protocol == cfg.protocol
                && old_cfg.tls == cfg.tls
                && old.connect_timeout == connect_timeout
        });
        let (upstreams, h3) = match cfg.protocol {
            UpstreamProtocol::Http3 => {
                let quic = h3::client_config(&cfg.name, &cfg.tls)?;
                let (upstreams, fresh): (Vec<_>, Vec<_>) = cfg
                    .upstreams
                    .iter()
                    .map(|u| H3Upstream::parse(&cfg.name, u, &cfg.tls, &quic))
                    .collect::<Result<_, GatewayError>>()?;
                let h3 = fresh
                    .into_iter()
                    .map(|new| {
                        same_transport
                            .and_then(|(_, old)| old.h3.iter().find(|o| o.url() == new.url()))
                            .map_or_else(|| Arc::new(new), Arc::clone)
                    })
                    .collect();
                (upstreams, h3)
            }
            _ => (
                cfg.upstreams
                    .iter()
                    .map(|u| Upstream::parse(&cfg.name, u))
                    .collect::<Result<_, _>>()?,
                Vec::new(),
            ),
        };
        let tcp = upstreams.iter().any(|u| u.tcp);
        if upstreams.iter().any(|u| u.tcp != tcp) {
            return Err(GatewayError::BadUpstream {
                service: cfg.name.clone(),
                upstream: cfg
                    .upstreams
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: "a service's upstreams are either all tcp:// (raw TCP) or all \
                         http:// and https://",
            });
        }
        check_schemes(&cfg.name, cfg.protocol, &upstreams)?;
        let tls_client =
            if cfg.protocol != UpstreamProtocol::Http3 && upstreams.iter().any(|u| u.tls) {
                match same_transport.and_then(|(_, old)| old.tls_client.clone()) {
                    Some(kept) => Some(kept),
                    None => Some(client::build_tls(
                        &cfg.name,
                        &cfg.tls,
                        cfg.protocol,
                        connect_timeout,
                    )?),
                }
            } else {
                None
            };
        let balancer = Balancer::reusing(
            &cfg.name,
            upstreams.iter().map(|u| u.url.as_str()),
            cfg.balance,
            cfg.breaker,
            cfg.max_requests,
            previous.map(|(_, old)| &old.balancer),
        );
        Ok(Self {
            name: cfg.name.clone(),
            upstreams,
            balancer,
            protocol: cfg.protocol,
            retries: cfg.retries.min(MAX_RETRIES),
            tcp,
            tls_client,
            h3,
            connect_timeout,
            agent: None,
        })
    }

    /// A service that is an agent of the mesh: no upstreams, no balancer to speak of.
    fn agent(cfg: &ServiceConfig, agent: &aimux_certs::WorkloadName) -> Result<Self, GatewayError> {
        if !cfg.upstreams.is_empty() {
            return Err(GatewayError::AgentWithUpstreams {
                service: cfg.name.clone(),
                agent: agent.to_string(),
            });
        }
        Ok(Self {
            name: cfg.name.clone(),
            upstreams: Vec::new(),
            balancer: Balancer::new(
                &cfg.name,
                std::iter::empty(),
                cfg.balance,
                cfg.breaker,
                cfg.max_requests,
            ),
            protocol: cfg.protocol,
            retries: 0,
            tcp: false,
            tls_client: None,
            h3: Vec::new(),
            connect_timeout: Duration::ZERO,
            agent: Some(agent.clone()),
        })
    }

    /// True if its TLS client was built with `connect_timeout` (or it has none), so a
    /// reload with that timeout may keep it whole.
    fn connect_timeout_fits(&self, connect_timeout: Duration) -> bool {
        self.tls_client.is_none() || self.connect_timeout == connect_timeout
    }

    /// The agent this service is, if it is one.
    pub(crate) fn agent_name(&self) -> Option<&aimux_certs::WorkloadName> {
        self.agent.as_ref()
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// True for a raw TCP service (`tcp://` upstreams).
    pub(crate) fn is_tcp(&self) -> bool {
        self.tcp
    }

    /// The upstream the balancer picks, with the lease that counts the request on it.
    pub(super) fn pick(&self, now: Instant) -> Result<(&Upstream, Lease), Unavailable> {
        let lease = self.balancer.pick(now)?;
        let upstream = self
            .upstreams
            .get(lease.index())
            .ok_or(Unavailable::NoUpstreams)?;
        Ok((upstream, lease))
    }
}

/// The URL schemes a protocol can be spoken over: `h2c` is HTTP/2 *without* TLS (RFC 9113
/// §3.3), `http2` HTTP/2 over TLS, which needs ALPN (RFC 9113 §3.2), so an `https://` URL.
fn check_schemes(
    service: &str,
    protocol: UpstreamProtocol,
    upstreams: &[Upstream],
) -> Result<(), GatewayError> {
    let mismatch = |u: &Upstream| match protocol {
        UpstreamProtocol::Http2 if !u.tls && !u.tcp => Some(
            "protocol http2 is HTTP/2 over TLS and needs an https:// URL; for HTTP/2 without \
             TLS use protocol = \"h2c\"",
        ),
        UpstreamProtocol::H2c if u.tls => Some(
            "protocol h2c is HTTP/2 without TLS; for an https:// upstream use protocol = \
             \"http2\" (or \"auto\")",
        ),
        _ => None,
    };
    match upstreams.iter().find_map(|u| mismatch(u).map(|r| (u, r))) {
        Some((u, reason)) => Err(GatewayError::BadUpstream {
            service: service.to_owned(),
            upstream: u.url.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The state of one upstream, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpstreamStatus<'a> {
    pub(crate) service: &'a str,
    /// The upstream's URL.
    pub(crate) upstream: &'a str,
    pub(crate) breaker: BreakerState,
    /// Requests in flight, response bodies included.
    pub(crate) outstanding: usize,
}

/// The configured services, by name.
#[derive(Debug, Default)]
pub(crate) struct Services {
    /// Each service with the configuration it was built from.
    by_name: HashMap<String, (ServiceConfig, Arc<Service>)>,
}

impl Services {
    /// The services of `configs` (connections to upstreams get `connect_timeout` to
    /// connect). A service whose configuration is exactly the one it had in `previous` (the
    /// table a reload replaces) is kept as it is, with its circuit breakers, requests in
    /// flight, connection pools and HTTP/3 connections; a changed one keeps what the change
    /// does not touch ([`Service::after`]).
    pub(crate) fn from_config(
        configs: &[ServiceConfig],
        connect_timeout: Duration,
        previous: Option<&Services>,
    ) -> Result<Self, GatewayError> {
        let mut by_name = HashMap::with_capacity(configs.len());
        for cfg in configs {
            let before = previous.and_then(|p| p.by_name.get(&cfg.name));
            let service = match before {
                Some((old, service))
                    if old == cfg && service.connect_timeout_fits(connect_timeout) =>
                {
                    Arc::clone(service)
                }
                Some((old, service)) => Arc::new(Service::after(
                    cfg,
                    connect_timeout,
                    Some((old, service.as_ref())),
                )?),
                None => Arc::new(Service::from_config(cfg, connect_timeout)?),
            };
            if by_name
                .insert(cfg.name.clone(), (cfg.clone(), service))
                .is_some()
            {
                return Err(GatewayError::DuplicateService {
                    service: cfg.name.clone(),
                });
            }
        }
        Ok(Self { by_name })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Service>> {
        self.by_name.get(name).map(|(_, service)| service)
    }

    /// The breaker state and requests in flight of every upstream of every service.
    pub(crate) fn upstream_status(&self, now: Instant) -> Vec<UpstreamStatus<'_>> {
        let mut all = Vec::new();
        for (_, service) in self.by_name.values() {
            let states = service.balancer.status(now);
            for (upstream, state) in service.upstreams.iter().zip(states) {
                all.push(UpstreamStatus {
                    service: &service.name,
                    upstream: &upstream.url,
                    breaker: state.breaker,
                    outstanding: state.outstanding,
                });
            }
        }
        all
    }

    /// The metrics label for a destination: its name if it is a service, else `unknown`.
    pub(crate) fn label<'a>(&'a self, name: &str) -> &'a str {
        self.by_name
            .get_key_value(name)
            .map_or(UNKNOWN_SERVICE, |(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, urls: &[&str], protocol: UpstreamProtocol) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            upstreams: urls.iter().map(|u| u.parse().unwrap()).collect(),
            protocol,
            balance: Default::default(),
            breaker: Default::default(),
            retries: 2,
            tls: Default::default(),
            agent: None,
            max_requests: ServiceConfig::DEFAULT_MAX_REQUESTS,
        }
    }

    const CONNECT: Duration = Duration::from_secs(5);

    fn service(urls: &[&str]) -> Result<Service, GatewayError> {
        Service::from_config(&config("echo", urls, UpstreamProtocol::Http1), CONNECT)
    }

    fn pick(s: &Service) -> &Upstream {
        s.pick(Instant::now()).unwrap().0
    }

    #[test]
    fn joins_the_target_onto_the_base_path() {
        let s = service(&["http://127.0.0.1:9000/api/"]).unwrap();
        let up = pick(&s);
        assert_eq!(
            up.uri_for("/mcp?x=1").unwrap().to_string(),
            "http://127.0.0.1:9000/api/mcp?x=1"
        );
        assert_eq!(up.host, "127.0.0.1:9000");
        let plain = service(&["http://localhost:8080"]).unwrap();
        assert_eq!(
            pick(&plain).uri_for("/").unwrap().to_string(),
            "http://localhost:8080/"
        );
        assert!(pick(&plain).uri_for("*").is_err());
    }

    #[test]
    fn picks_upstreams_round_robin() {
        let s = service(&["http://a:1", "http://b:2", "http://c:3"]).unwrap();
        let picked: Vec<_> = (0..6).map(|_| pick(&s).url.clone()).collect();
        assert_eq!(
            picked,
            [
                "http://a:1",
                "http://b:2",
                "http://c:3",
                "http://a:1",
                "http://b:2",
                "http://c:3"
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        assert!(matches!(
            service(&[]),
            Err(GatewayError::NoUpstreams { .. })
        ));
        let dup = config("x", &["http://a:1"], UpstreamProtocol::Http1);
        let err = Services::from_config(&[dup.clone(), dup], CONNECT, None).unwrap_err();
        assert!(matches!(err, GatewayError::DuplicateService { .. }));
        let mut zero = config("x", &["http://a:1"], UpstreamProtocol::Http1);
        zero.max_requests = 0;
        let err = Service::from_config(&zero, CONNECT)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_requests = 0"), "{err}");
    }

    #[test]
    fn protocols_must_match_the_url_schemes() {
        let h2 = Service::from_config(
            &config("x", &["http://a:1"], UpstreamProtocol::Http2),
            CONNECT,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            h2,
            "service `x`: upstream `http://a:1` cannot be used: protocol http2 is HTTP/2 over \
             TLS and needs an https:// URL; for HTTP/2 without TLS use protocol = \"h2c\""
        );
        let h2c = Service::from_config(
            &config("x", &["https://a:1"], UpstreamProtocol::H2c),
            CONNECT,
        )
        .unwrap_err()
        .to_string();
        assert!(h2c.contains("protocol h2c is HTTP/2 without TLS"), "{h2c}");
    }

    #[test]
    fn https_upstreams_get_the_services_tls_client_and_https_urls() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        for protocol in [
            UpstreamProtocol::Http1,
            UpstreamProtocol::Http2,
            UpstreamProtocol::Auto,
        ] {
            let mut cfg = config("x", &["https://api.test/v1/", "https://b:8443"], protocol);
            cfg.tls.roots = vec![ca.cert.der().clone()];
            let s = Service::from_config(&cfg, CONNECT).unwrap();
            assert!(s.tls_client.is_some());
            let up = pick(&s);
            assert_eq!(up.url, "https://api.test/v1");
            assert_eq!(
                up.uri_for("/mcp").unwrap().to_string(),
                "https://api.test/v1/mcp"
            );
            assert_eq!(pick(&s).url, "https://b:8443");
        }
        // http:// only: no TLS client, even for `auto`.
        let plain = Service::from_config(
            &config("x", &["http://a:1"], UpstreamProtocol::Auto),
            CONNECT,
        )
        .unwrap();
        assert!(plain.tls_client.is_none());
    }

    #[test]
    fn unknown_destinations_get_a_fixed_label() {
        let s = Services::from_config(
            &[config("echo", &["http://a:1"], UpstreamProtocol::Http1)],
            CONNECT,
            None,
        )
        .unwrap();
        assert_eq!(s.label("echo"), "echo");
        assert_eq!(s.label("attacker-chosen"), UNKNOWN_SERVICE);
    }

    #[test]
    fn upstream_status_lists_every_upstream_with_its_lease_count() {
        let s = Services::from_config(
            &[config(
                "echo",
                &["http://a:1", "http://b:2/api"],
                UpstreamProtocol::Http1,
            )],
            CONNECT,
            None,
        )
        .unwrap();
        let now = Instant::now();
        let (_, lease) = s.get("echo").unwrap().pick(now).unwrap();
        let status = s.upstream_status(now);
        assert_eq!(
            status,
            [
                UpstreamStatus {
                    service: "echo",
                    upstream: "http://a:1",
                    breaker: BreakerState::Closed,
                    outstanding: 1,
                },
                UpstreamStatus {
                    service: "echo",
                    upstream: "http://b:2/api",
                    breaker: BreakerState::Closed,
                    outstanding: 0,
                },
            ]
        );
        drop(lease);
    }

    #[test]
    fn a_reload_keeps_unchanged_services_with_their_state() {
        let echo = config("echo", &["http://a:1"], UpstreamProtocol::Http1);
        let tools = config("tools", &["http://b:2"], UpstreamProtocol::Http1);
        let before = Services::from_config(&[echo.clone(), tools.clone()], CONNECT, None).unwrap();
        // A request in flight on echo: the kept service still counts it after the reload.
        let (_, lease) = before.get("echo").unwrap().pick(Instant::now()).unwrap();
        let mut moved = tools.clone();
        moved.upstreams = vec!["http://c:3".parse().unwrap()];
        let after = Services::from_config(&[echo, moved], CONNECT, Some(&before)).unwrap();
        assert!(Arc::ptr_eq(
            before.get("echo").unwrap(),
            after.get("echo").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            before.get("tools").unwrap(),
            after.get("tools").unwrap()
        ));
        let echo_status: Vec<_> = after
            .upstream_status(Instant::now())
            .into_iter()
            .filter(|s| s.service == "echo")
            .collect();
        assert_eq!(echo_status[0].outstanding, 1);
        drop(lease);
    }

    /// Opens the breaker of `url` in service `name` (default: 5 failures in a row).
    fn break_upstream(services: &Services, name: &str, url: &str) {
        let service = services.get(name).unwrap();
        let now = Instant::now();
        let mut failures = 0;
        while failures < 5 {
            let (up, mut lease) = service.pick(now).unwrap();
            if up.url == url {
                lease.failed(now, "refused");
                failures += 1;
            }
        }
    }

    fn states(services: &Services, name: &str) -> Vec<(String, BreakerState, usize)> {
        services
            .upstream_status(Instant::now())
            .into_iter()
            .filter(|s| s.service == name)
            .map(|s| (s.upstream.to_owned(), s.breaker, s.outstanding))
            .collect()
    }

    #[test]
    fn a_changed_service_keeps_the_state_of_the_upstreams_it_still_lists() {
        let echo = config(
            "echo",
            &["http://a:1", "http://b:2"],
            UpstreamProtocol::Http1,
        );
        let before = Services::from_config(std::slice::from_ref(&echo), CONNECT, None).unwrap();
        break_upstream(&before, "echo", "http://a:1");
        let (up, lease) = before.get("echo").unwrap().pick(Instant::now()).unwrap();
        assert_eq!(up.url, "http://b:2");

        let mut grown = echo.clone();
        grown.upstreams.push("http://c:3".parse().unwrap());
        let after =
            Services::from_config(std::slice::from_ref(&grown), CONNECT, Some(&before)).unwrap();
        assert!(!Arc::ptr_eq(
            before.get("echo").unwrap(),
            after.get("echo").unwrap()
        ));
        let open = BreakerState::Open;
        let closed = BreakerState::Closed;
        assert_eq!(
            states(&after, "echo"),
            [
                ("http://a:1".to_owned(), open, 0),
                ("http://b:2".to_owned(), closed, 1),
                ("http://c:3".to_owned(), closed, 0),
            ]
        );
        drop(lease);
        assert_eq!(
            states(&after, "echo")[1].2,
            0,
            "the old lease settles on the kept upstream"
        );

        // Other breaker settings: every upstream starts afresh.
        let mut stricter = grown;
        stricter.breaker.consecutive_failures = 2;
        let fresh = Services::from_config(&[stricter], CONNECT, Some(&after)).unwrap();
        assert!(
            states(&fresh, "echo")
                .iter()
                .all(|(_, state, _)| *state == closed)
        );
    }

    #[test]
    fn http3_connections_carry_over_unless_tls_changes() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let mut cfg = config("llm", &["https://a.test:443"], UpstreamProtocol::Http3);
        cfg.tls.roots = vec![ca.cert.der().clone()];
        let before = Services::from_config(std::slice::from_ref(&cfg), CONNECT, None).unwrap();
        let mut grown = cfg.clone();
        grown.upstreams.push("https://b.test:443".parse().unwrap());
        let after =
            Services::from_config(std::slice::from_ref(&grown), CONNECT, Some(&before)).unwrap();
        let (old, new) = (before.get("llm").unwrap(), after.get("llm").unwrap());
        assert!(Arc::ptr_eq(&old.h3[0], &new.h3[0]));
        assert_eq!(new.h3[1].url(), "https://b.test:443");

        let mut renamed = grown;
        renamed.tls.server_name = Some("other.test".into());
        let again = Services::from_config(&[renamed], CONNECT, Some(&after)).unwrap();
        assert!(!Arc::ptr_eq(&new.h3[0], &again.get("llm").unwrap().h3[0]));
    }
}
