//! From TOML text to a validated [`Mesh`], collecting every mistake instead of stopping at
//! the first: syntax errors (the parser recovers), unknown keys (each table is re-read
//! without the offending key), then meaning (addresses, names, references, certificates).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::diagnostic::{Diagnostic, did_you_mean, line_col};
use super::model::*;
use super::raw::*;

#[path = "validate_policy.rs"]
mod policy;
use policy::routed_names;
#[path = "validate_agents.rs"]
mod agents;
use agents::agent_refs;
#[path = "validate_service.rs"]
mod service;

const SECTIONS: [&str; 9] = [
    "mesh",
    "gateway",
    "agent",
    "service",
    "route",
    "access",
    "semantic",
    "rate_limit",
    "isolation",
];
const DEFAULT_CERTS_DIR: &str = ".aimux/certs";
const DEFAULT_MAX_STREAMS: u32 = 1024;
/// Ceiling for `max_streams_per_connection`: each open stream holds buffers in the gateway.
const MAX_STREAMS_CEILING: i64 = 100_000;

/// Parses and validates a mesh file. `base_dir` anchors relative paths.
pub(crate) fn parse(source: &str, base_dir: &Path) -> Result<Mesh, Vec<Diagnostic>> {
    let mut checker = Checker {
        diags: Vec::new(),
        source: source.to_owned(),
        base_dir: base_dir.to_path_buf(),
    };
    let mesh = checker.mesh(source);
    match mesh {
        Some(mesh) if checker.diags.is_empty() => Ok(mesh),
        _ => {
            checker
                .diags
                .sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
            Err(checker.diags)
        }
    }
}

struct Checker {
    diags: Vec<Diagnostic>,
    source: String,
    base_dir: PathBuf,
}

impl Checker {
    fn error(&mut self, span: impl Into<Option<Range<usize>>>, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(span, message));
    }

    fn error_hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diags.push(Diagnostic::new(span, message).hint(hint));
    }

    fn mesh(&mut self, source: &str) -> Option<Mesh> {
        let (root, syntax_errors) = DeTable::parse_recoverable(source);
        for e in syntax_errors {
            self.error(e.span(), format!("TOML syntax: {}", e.message().trim()));
        }
        let root = root.into_inner();
        for (key, _) in root.iter() {
            if !SECTIONS.contains(&key.get_ref().as_ref()) {
                let d = Diagnostic::new(key.span(), format!("unknown section `{}`", key.get_ref()));
                self.diags.push(hint_known(d, key.get_ref(), &SECTIONS));
            }
        }

        let raw_mesh: Option<RawMesh> = self.required_table(&root, "mesh", "[mesh]", source);
        let raw_gateway: Option<RawGateway> =
            self.required_table(&root, "gateway", "[gateway]", source);
        let raw_agents: Vec<RawAgent> = self.table_array(&root, "agent");
        let raw_services: Vec<RawService> = self.table_array(&root, "service");
        let raw_routes: Vec<RawRoute> = self.table_array(&root, "route");
        let raw_access: Vec<RawAccess> = self.table_array(&root, "access");
        let raw_semantic: Option<RawSemantic> = self.optional_table(&root, "semantic", source);
        let raw_rate_limits: Vec<RawRateLimit> = self.table_array(&root, "rate_limit");
        let raw_isolation: Option<RawIsolation> = self.optional_table(&root, "isolation", source);

        let (trust_domain, certs_dir, bootstrap_certs) = self.mesh_section(raw_mesh?)?;
        let agent_refs = agent_refs(&raw_services);
        let services = self.services(raw_services);
        let service_names: HashSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
        // Listeners may address a service, or a name only routes know (`match.service`),
        // such as a virtual `assistant` that semantic routes dispatch.
        let mut addressable = service_names.clone();
        addressable.extend(routed_names(&raw_routes));
        let mut listens = HashMap::new();
        let gateway = self.gateway(raw_gateway?, &certs_dir, bootstrap_certs, &mut listens);
        let gateway_has_h2 = gateway.as_ref().is_some_and(|g| g.h2.is_some());
        self.listener_kinds(&raw_agents, &services);
        let agents = self.agents(
            raw_agents,
            &addressable,
            &certs_dir,
            bootstrap_certs,
            gateway_has_h2,
            &mut listens,
        );
        self.agent_services(&agent_refs, &agents);
        let agent_names: HashSet<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        let routes = self.routes(raw_routes, &service_names);
        let access = self.access(raw_access, &agent_names, &service_names);
        let semantic = raw_semantic.map(|r| self.semantic(r)).unwrap_or_default();
        let rate_limits = self.rate_limits(raw_rate_limits, &agent_names);
        let isolation = raw_isolation.and_then(|r| self.isolation(r));
        if agents.is_empty() && !self.diags.iter().any(|d| d.message.contains("[[agent]]")) {
            self.diags.push(
                Diagnostic::new(None, "the mesh has no [[agent]]")
                    .hint("add an [[agent]] with a name and listeners; see the default mesh.toml"),
            );
        }
        Some(Mesh {
            trust_domain,
            certs_dir,
            bootstrap_certs,
            gateway: gateway?,
            agents,
            services,
            routes,
            access,
            semantic,
            rate_limits,
            isolation,
        })
    }

    // ----- reading tables, with every unknown key reported -----

    fn required_table<T: DeserializeOwned>(
        &mut self,
        root: &DeTable<'_>,
        key: &str,
        header: &str,
        source: &str,
    ) -> Option<T> {
        match root.get(key) {
            Some(value) => self.read(value.clone(), header),
            None => {
                let end = source.len();
                self.diags.push(
                    Diagnostic::new(end..end, format!("missing section {header}")).hint(format!(
                        "add {header}; see the default mesh.toml for an example"
                    )),
                );
                None
            }
        }
    }

    fn optional_table<T: DeserializeOwned>(
        &mut self,
        root: &DeTable<'_>,
        key: &str,
        _source: &str,
    ) -> Option<T> {
        let value = root.get(key)?;
        self.read(value.clone(), &format!("[{key}]"))
    }

    fn table_array<T: DeserializeOwned>(&mut self, root: &DeTable<'_>, key: &str) -> Vec<T> {
        let Some(value) = root.get(key) else {
            return Vec::new();
        };
        let header = format!("[[{key}]]");
        let Some(items) = value.get_ref().as_array() else {
            self.error_hint(
                value.span(),
                format!("`{key}` must be a list of tables"),
                format!("write each entry under its own {header} header"),
            );
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| self.read(item.clone(), &header))
            .collect()
    }

    /// Deserializes one table; on an unknown key, reports it, drops it and tries again,
    /// so that every unknown key of the table is reported in one run.
    fn read<T: DeserializeOwned>(
        &mut self,
        mut value: Spanned<DeValue<'_>>,
        where_: &str,
    ) -> Option<T> {
        loop {
            let error = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(parsed) => return Some(parsed),
                Err(error) => error,
            };
            let span = error.span();
            match (parse_unknown_field(error.message()), &span) {
                (Some((key, known)), Some(span)) => {
                    let d =
                        Diagnostic::new(span.clone(), format!("unknown key `{key}` in {where_}"));
                    self.diags.push(hint_known(d, &key, &known));
                    if !remove_key_at(value.get_mut(), span) {
                        return None;
                    }
                }
                _ => {
                    self.error(span, format!("in {where_}: {}", error.message().trim()));
                    return None;
                }
            }
        }
    }

    // ----- sections -----

    fn mesh_section(&mut self, raw: RawMesh) -> Option<(String, PathBuf, bool)> {
        let domain = raw.trust_domain.get_ref();
        if !valid_trust_domain(domain) {
            self.error_hint(
                raw.trust_domain.span(),
                format!("`{domain}` is not a valid SPIFFE trust domain"),
                "use lowercase letters, digits, dots, dashes and underscores, e.g. \"aimux.local\"",
            );
        }
        let certs = raw
            .certs
            .as_ref()
            .map_or(DEFAULT_CERTS_DIR, |c| c.get_ref().as_str());
        Some((
            domain.clone(),
            self.base_dir.join(certs),
            raw.bootstrap_certs.unwrap_or(false),
        ))
    }

    fn gateway(
        &mut self,
        raw: RawGateway,
        certs_dir: &Path,
        bootstrap: bool,
        listens: &mut HashMap<SocketAddr, String>,
    ) -> Option<Gateway> {
        let name = match &raw.name {
            Some(n) => self.name(n, "gateway").unwrap_or_default(),
            None => "gateway".to_owned(),
        };
        let quic = self.socket_addr(&raw.quic, "gateway `quic`");
        let connect = match (&raw.connect, quic) {
            (Some(c), _) => self.socket_addr(c, "gateway `connect`"),
            (None, Some(q)) if q.ip().is_unspecified() => {
                self.error_hint(
                    raw.quic.span(),
                    format!("gateway listens on the wildcard address {q}; sidecars need an address to dial"),
                    "add `connect = \"IP:PORT\"`, the address sidecars use to reach the gateway",
                );
                None
            }
            (None, q) => q,
        };
        let h2 = raw
            .h2
            .as_ref()
            .and_then(|a| self.socket_addr(a, "gateway `h2`"));
        let dev_http = raw
            .dev_http
            .as_ref()
            .and_then(|a| self.socket_addr(a, "gateway `dev_http`"));
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| self.socket_addr(a, "gateway `admin`"));
        for (addr, what, spanned) in [
            (h2, "gateway h2", &raw.h2),
            (dev_http, "gateway dev_http", &raw.dev_http),
            (admin, "gateway admin", &raw.admin),
        ] {
            if let (Some(addr), Some(spanned)) = (addr, spanned) {
                self.claim_port(listens, addr, what, spanned.span());
            }
        }
        let max_streams = match &raw.max_streams_per_connection {
            None => DEFAULT_MAX_STREAMS,
            Some(n) if (1..=MAX_STREAMS_CEILING).contains(n.get_ref()) => {
                u32::try_from(*n.get_ref()).unwrap_or(DEFAULT_MAX_STREAMS)
            }
            Some(n) => {
                self.error_hint(
                    n.span(),
                    format!(
                        "max_streams_per_connection = {} is out of range",
                        n.get_ref()
                    ),
                    format!("use a value from 1 to {MAX_STREAMS_CEILING}"),
                );
                DEFAULT_MAX_STREAMS
            }
        };
        let (cert, key) = self.cert_paths(&raw.cert, &raw.key, certs_dir, &name);
        let at = raw
            .cert
            .as_ref()
            .or(raw.name.as_ref())
            .unwrap_or(&raw.quic)
            .span();
        let owner = CertOwner {
            label: format!("gateway `{name}`"),
            name: &name,
            gateway: true,
            at,
        };
        self.require_certificate(owner, &cert, &key, bootstrap && raw.cert.is_none());
        let connect_addr = connect?;
        let server_name = match &raw.server_name {
            Some(s) => s.get_ref().clone(),
            None => connect_addr.ip().to_string(),
        };
        Some(Gateway {
            name,
            quic: quic?,
            h2,
            connect: connect_addr,
            server_name,
            dev_http,
            admin,
            cert,
            key,
            max_streams_per_connection: max_streams,
            audit: raw.audit.as_ref().map(|a| match a.get_ref().as_str() {
                "stdout" => Audit::Stdout,
                path => Audit::File(self.base_dir.join(path)),
            }),
        })
    }

    fn agents(
        &mut self,
        raws: Vec<RawAgent>,
        services: &HashSet<&str>,
        certs_dir: &Path,
        bootstrap: bool,
        gateway_has_h2: bool,
        listens: &mut HashMap<SocketAddr, String>,
    ) -> Vec<Agent> {
        let mut seen = HashMap::new();
        let mut agents = Vec::new();
        for raw in raws {
            let Some(name) = self.name(&raw.name, "agent") else {
                continue;
            };
            if !self.unique(&mut seen, &raw.name, "agent") {
                continue;
            }
            let mut listeners = Vec::new();
            for l in &raw.listeners {
                let l = l.get_ref();
                let what = format!("listener of agent `{name}`");
                let listen = self.loopback_addr(&l.listen, &what);
                if let Some(listen) = listen {
                    self.claim_port(listens, listen, &what, l.listen.span());
                }
                let service = self.service_ref(&l.service, services);
                let tcp = match &l.protocol {
                    None => false,
                    Some(p) => self
                        .one_of(p, "protocol", &[("http", false), ("tcp", true)])
                        .unwrap_or(false),
                };
                if let (Some(listen), Some(service)) = (listen, service) {
                    listeners.push(Listener {
                        listen,
                        service,
                        tcp,
                    });
                }
            }
            let proxy = raw.proxy.as_ref().and_then(|p| {
                let what = format!("proxy listener of agent `{name}`");
                let addr = self.loopback_addr(p, &what)?;
                self.claim_port(listens, addr, &what, p.span());
                Some(addr)
            });
            if raw.listeners.is_empty() && raw.proxy.is_none() && raw.inbound.is_none() {
                self.error_hint(
                    raw.name.span(),
                    format!("agent `{name}` has no listeners, so it cannot reach anything"),
                    "add `listeners = [{ listen = \"127.0.0.1:15001\", service = \"echo\" }]` or `proxy = \"127.0.0.1:15080\"`",
                );
            }
            let transport = match &raw.transport {
                None => Transport::Quic,
                Some(t) => {
                    let transport = self
                        .one_of(t, "transport", &Transport::ALL)
                        .unwrap_or(Transport::Quic);
                    if transport == Transport::H2 && !gateway_has_h2 {
                        self.error_hint(
                            t.span(),
                            format!("agent `{name}` uses the h2 transport, but the gateway has no `h2` listener"),
                            "add `h2 = \"127.0.0.1:4443\"` (a TCP address) to [gateway], or use transport = \"quic\"",
                        );
                    }
                    transport
                }
            };
            let (cert, key) = self.cert_paths(&raw.cert, &raw.key, certs_dir, &name);
            let at = raw.cert.as_ref().unwrap_or(&raw.name).span();
            let owner = CertOwner {
                label: format!("agent `{name}`"),
                name: &name,
                gateway: false,
                at,
            };
            self.require_certificate(owner, &cert, &key, bootstrap && raw.cert.is_none());
            let sniff_limit = raw.sniff_limit.as_ref().and_then(|n| {
                let max = aimux_sidecar::MAX_SNIFF_LIMIT;
                match usize::try_from(*n.get_ref()) {
                    Ok(v) if v <= max => Some(v),
                    _ => {
                        self.error_hint(
                            n.span(),
                            format!("sniff_limit = {} is out of range", n.get_ref()),
                            format!("use 0 (classify by method and path only) to {max} bytes; the default is 65536"),
                        );
                        None
                    }
                }
            });
            let inbound = raw
                .inbound
                .as_ref()
                .and_then(|i| self.inbound(i, &name, transport, &raw, listens));
            agents.push(Agent {
                name,
                listeners,
                proxy,
                transport,
                sniff_limit,
                inbound,
                cert,
                key,
            });
        }
        agents
    }

    fn services(&mut self, raws: Vec<RawService>) -> Vec<Service> {
        let mut seen = HashMap::new();
        let mut services = Vec::new();
        for raw in raws {
            let Some(name) = self.name(&raw.name, "service") else {
                continue;
            };
            if !self.unique(&mut seen, &raw.name, "service") {
                continue;
            }
            let agent = self.service_agent(&raw, &name);
            let upstreams = match &raw.upstreams {
                Some(ups) if ups.get_ref().is_empty() => {
                    self.error_hint(
                        ups.span(),
                        format!("service `{name}` has no upstreams"),
                        "add a URL such as \"http://127.0.0.1:9000\", or \"builtin:echo\"",
                    );
                    Vec::new()
                }
                Some(ups) => ups
                    .get_ref()
                    .iter()
                    .filter_map(|u| self.upstream(u))
                    .collect(),
                None => Vec::new(),
            };
            let protocol = match &raw.protocol {
                None => UpstreamProtocol::Http1,
                Some(p) => self
                    .one_of(p, "protocol", &UpstreamProtocol::ALL)
                    .unwrap_or(UpstreamProtocol::Http1),
            };
            if protocol == UpstreamProtocol::Http3
                && let Some(ups) = &raw.upstreams
            {
                self.http3_upstreams(&name, ups.get_ref());
            }
            let (balance, retries, breaker) = self.resilience(&raw);
            let (tls, max_requests) = self.service_upstreams(&raw, &name, &upstreams, protocol);
            services.push(Service {
                name,
                upstreams,
                agent,
                protocol,
                balance,
                retries,
                breaker,
                tls,
                max_requests,
            });
        }
        services
    }

    // ----- values -----

    fn name(&mut self, name: &Spanned<String>, what: &str) -> Option<String> {
        if valid_name(name.get_ref()) {
            return Some(name.get_ref().clone());
        }
        self.error_hint(
            name.span(),
            format!("`{}` is not a valid {what} name", name.get_ref()),
            "names are 1-63 characters: lowercase letters, digits, `-`, `_`, `.`, starting with a letter or digit",
        );
        None
    }

    fn unique(
        &mut self,
        seen: &mut HashMap<String, Range<usize>>,
        name: &Spanned<String>,
        what: &str,
    ) -> bool {
        if let Some(first) = seen.get(name.get_ref()) {
            let (line, _) = line_col(&self.source, first.start);
            self.error_hint(
                name.span(),
                format!("duplicate {what} name `{}`", name.get_ref()),
                format!(
                    "the first `{}` is on line {line}; {what} names must be unique",
                    name.get_ref()
                ),
            );
            return false;
        }
        seen.insert(name.get_ref().clone(), name.span());
        true
    }

    fn socket_addr(&mut self, addr: &Spanned<String>, what: &str) -> Option<SocketAddr> {
        match addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error_hint(
                    addr.span(),
                    format!("{what}: `{}` is not an IP:PORT address", addr.get_ref()),
                    "write an IP address and a port, e.g. \"127.0.0.1:4433\" or \"[::1]:4433\"; host names are not accepted here",
                );
                None
            }
        }
    }

    fn loopback_addr(&mut self, addr: &Spanned<String>, what: &str) -> Option<SocketAddr> {
        let parsed = self.socket_addr(addr, what)?;
        if parsed.ip().is_loopback() {
            return Some(parsed);
        }
        self.error_hint(
            addr.span(),
            format!("{what}: {parsed} is not a loopback address"),
            "sidecar listeners serve only their own agent: use 127.0.0.1 or [::1]",
        );
        None
    }

    fn claim_port(
        &mut self,
        listens: &mut HashMap<SocketAddr, String>,
        addr: SocketAddr,
        what: &str,
        span: Range<usize>,
    ) {
        if let Some(owner) = listens.get(&addr) {
            self.error_hint(
                span,
                format!("{what}: {addr} is already used by the {owner}"),
                "give each listener its own port",
            );
        } else {
            listens.insert(addr, what.to_owned());
        }
    }

    fn service_ref(
        &mut self,
        service: &Spanned<String>,
        services: &HashSet<&str>,
    ) -> Option<String> {
        let name = service.get_ref();
        if services.contains(name.as_str()) {
            return Some(name.clone());
        }
        let mut d = Diagnostic::new(service.span(), format!("no service named `{name}`"));
        d = match did_you_mean(name, services.iter().copied()) {
            Some(close) => d.hint(format!(
                "did you mean `{close}`? or define it with a [[service]]"
            )),
            None => d.hint(format!("define it with a [[service]] named \"{name}\"")),
        };
        self.diags.push(d);
        None
    }

    fn intent(&mut self, pattern: &Spanned<String>) -> Option<aimux_gateway::IntentPattern> {
        match pattern.get_ref().parse() {
            Ok(p) => Some(p),
            Err(e) => {
                self.error_hint(
                    pattern.span(),
                    format!("bad intent pattern: {e}"),
                    "e.g. \"mcp tools/call search_*\", \"openai chat gpt-4o*\", \"a2a\"",
                );
                None
            }
        }
    }

    fn one_of<T: Copy>(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, v)) = options.iter().find(|(n, _)| n == value.get_ref()) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let d = Diagnostic::new(value.span(), format!("unknown {key} `{}`", value.get_ref()));
        self.diags.push(hint_known(d, value.get_ref(), &names));
        None
    }

    fn upstream(&mut self, url: &Spanned<String>) -> Option<Upstream> {
        let text = url.get_ref();
        if let Some(builtin) = text.strip_prefix("builtin:") {
            if let Some((_, b)) = Builtin::ALL.iter().find(|(n, _)| *n == builtin) {
                return Some(Upstream::Builtin(*b));
            }
            let names: Vec<&str> = Builtin::ALL.iter().map(|(n, _)| *n).collect();
            let d = Diagnostic::new(url.span(), format!("unknown built-in service `{builtin}`"));
            self.diags.push(hint_known(d, builtin, &names));
            return None;
        }
        let parsed = text.parse::<http::Uri>().ok().filter(|u| {
            matches!(u.scheme_str(), Some("http" | "https" | "tcp"))
                && u.host().is_some_and(|h| !h.is_empty())
                && (u.scheme_str() != Some("tcp") || (u.port().is_some() && u.path() == "/"))
        });
        if parsed.is_some() {
            return Some(Upstream::Url(text.clone()));
        }
        self.error_hint(
            url.span(),
            format!("`{text}` is not an upstream URL"),
            "write http://HOST:PORT or https://HOST:PORT (optionally with a base path), tcp://HOST:PORT for raw TCP, or builtin:echo / builtin:mcp-tools",
        );
        None
    }

    /// HTTP/3 always runs over TLS (RFC 9114 §3.1): an `http3` service's upstreams are
    /// `https://` URLs. (Ones that are not URLs at all are reported by `upstream`.)
    fn http3_upstreams(&mut self, service: &str, urls: &[Spanned<String>]) {
        for url in urls {
            let text = url.get_ref();
            let scheme = text
                .parse::<http::Uri>()
                .ok()
                .map(|u| u.scheme_str().map(str::to_owned));
            let builtin = text.starts_with("builtin:");
            if builtin || scheme.is_some_and(|s| s.as_deref() != Some("https")) {
                self.error_hint(
                    url.span(),
                    format!("service `{service}` speaks HTTP/3, which always runs over TLS: `{text}` is not an https:// URL"),
                    "write https://HOST:PORT (the upstream's UDP port), or choose another protocol for this service",
                );
            }
        }
    }

    fn cert_paths(
        &mut self,
        cert: &Option<Spanned<String>>,
        key: &Option<Spanned<String>>,
        certs_dir: &Path,
        name: &str,
    ) -> (PathBuf, PathBuf) {
        let resolve = |s: &Option<Spanned<String>>, ext: &str| match s {
            Some(p) => self.base_dir.join(p.get_ref()),
            None => certs_dir.join(format!("{name}.{ext}")),
        };
        (resolve(cert, "crt"), resolve(key, "key"))
    }

    /// A certificate must exist unless `aimux up` will create it (`bootstrap_certs` and
    /// the default path).
    fn require_certificate(
        &mut self,
        owner: CertOwner<'_>,
        cert: &Path,
        key: &Path,
        bootstrapped: bool,
    ) {
        if bootstrapped {
            return;
        }
        let missing: Vec<String> = [cert, key]
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return;
        }
        let dir = cert.parent().unwrap_or(Path::new(".")).display();
        let flag = if owner.gateway {
            " --gateway --ip 127.0.0.1"
        } else {
            ""
        };
        let verb = if missing.len() == 1 { "does" } else { "do" };
        self.error_hint(
            owner.at,
            format!("{} has no certificate: {} {verb} not exist", owner.label, missing.join(" and ")),
            format!(
                "run `aimux certs issue --dir {dir} --name {}{flag}`, or set `bootstrap_certs = true` in [mesh] for development",
                owner.name
            ),
        );
    }
}

/// Whose certificate is checked, and where in the file to point.
struct CertOwner<'a> {
    label: String,
    name: &'a str,
    gateway: bool,
    at: Range<usize>,
}

/// Reads serde's "unknown field `x`, expected one of `a`, `b`" into `x` and `[a, b]`.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let known = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((key.to_owned(), known))
}

fn hint_known<S: AsRef<str>>(d: Diagnostic, word: &str, known: &[S]) -> Diagnostic {
    let names: Vec<&str> = known.iter().map(AsRef::as_ref).collect();
    let list = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match did_you_mean(word, names.iter().copied()) {
        Some(close) => d.hint(format!("did you mean `{close}`? (expected one of {list})")),
        None if names.is_empty() => d,
        None => d.hint(format!("expected one of {list}")),
    }
}

/// Removes, anywhere in `value`, the table entry whose key sits at `span`.
fn remove_key_at(value: &mut DeValue<'_>, span: &Range<usize>) -> bool {
    match value {
        DeValue::Table(table) => {
            let found = table
                .iter()
                .find(|(k, _)| k.span() == *span)
                .map(|(k, _)| k.get_ref().to_string());
            match found {
                Some(key) => table.remove(key.as_str()).is_some(),
                None => table
                    .iter_mut()
                    .any(|(_, v)| remove_key_at(v.get_mut(), span)),
            }
        }
        DeValue::Array(array) => array.iter_mut().any(|v| remove_key_at(v.get_mut(), span)),
        _ => false,
    }
}

/// SPIFFE trust domain: lowercase letters, digits, `.`, `-`, `_` (SPIFFE ID spec §2.1).
fn valid_trust_domain(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Names become SPIFFE path segments and file names, so they are kept to a safe alphabet.
pub(crate) fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
}
