//! Validation of the policy sections: `[[route]]`, `[[access]]` and `[semantic]`. These are
//! also what a hot reload replaces, so every mistake here must be caught before a gateway
//! ever sees the configuration.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aimux_gateway::{Glob, IntentPattern};
use toml::Spanned;

use super::Checker;
use crate::mesh::diagnostic::{Diagnostic, did_you_mean};
use crate::mesh::model::{AccessRule, Action, RateLimit, Route, Semantic};
use crate::mesh::raw::{RawAccess, RawIsolation, RawRateLimit, RawRoute, RawSemantic, RawService};

/// Longest route timeout accepted: beyond an hour a request is better served by a job API.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Largest semantic cache accepted (entries of 384 floats, about 1.5 KiB each).
const MAX_CACHE: i64 = 1_000_000;

/// Literal `match.service` names of the routes: names an agent may address although no
/// service has them, because a route takes them somewhere.
pub(super) fn routed_names(raws: &[RawRoute]) -> Vec<&str> {
    raws.iter()
        .filter_map(|r| r.matches.as_ref()?.get_ref().service.as_ref())
        .map(|s| s.get_ref().as_str())
        .filter(|s| !s.contains(['*', '?']))
        .collect()
}

impl Checker {
    pub(super) fn routes(&mut self, raws: Vec<RawRoute>, services: &HashSet<&str>) -> Vec<Route> {
        let mut seen = HashMap::new();
        let mut routes = Vec::new();
        let mut spans = Vec::new();
        for raw in raws {
            let name = raw.name.as_ref().and_then(|n| {
                let name = self.name(n, "route")?;
                self.unique(&mut seen, n, "route").then_some(name)
            });
            let examples: Vec<String> = raw
                .examples
                .as_ref()
                .map(|e| {
                    e.get_ref()
                        .iter()
                        .map(|x| x.get_ref().trim().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(e) = &raw.examples
                && (examples.is_empty() || examples.iter().any(String::is_empty))
            {
                self.error_hint(
                    e.span(),
                    "route `examples` must list non-empty sentences",
                    "e.g. examples = [\"analyze budget\", \"forecast revenue\"]",
                );
            }
            let Some(conditions) = self.route_match(&raw, !examples.is_empty()) else {
                continue;
            };
            let timeout = raw
                .timeout
                .as_ref()
                .and_then(|t| self.duration(t, "timeout"));
            let Some(to) = self.service_ref(&raw.to, services) else {
                continue;
            };
            spans.push(raw.to.span());
            let (service, intent, method, path) = conditions;
            routes.push(Route {
                name,
                service,
                intent,
                method,
                path,
                examples,
                to,
                timeout,
            });
        }
        self.route_conflicts(&routes, &spans);
        routes
    }

    /// The conditions of a route's `match`.
    #[allow(clippy::type_complexity)]
    fn route_match(
        &mut self,
        raw: &RawRoute,
        semantic: bool,
    ) -> Option<(
        Option<Glob>,
        Option<IntentPattern>,
        Option<Glob>,
        Option<Glob>,
    )> {
        let Some(m) = &raw.matches else {
            if !semantic {
                self.error_hint(
                    raw.to.span(),
                    "route has neither `match` nor `examples`, so it would catch every request",
                    "add match = { service = ..., intent = ..., method = ..., path = ... }, or examples = [...] for a semantic route",
                );
                return None;
            }
            return Some((None, None, None, None));
        };
        let span = m.span();
        let m = m.get_ref();
        let parts = [&m.protocol, &m.operation, &m.target];
        let has_parts = parts.iter().any(|p| p.is_some());
        if m.service.is_none()
            && m.intent.is_none()
            && !has_parts
            && m.method.is_none()
            && m.path.is_none()
        {
            self.error_hint(
                span.clone(),
                "route `match` is empty, so it would catch every request",
                "match on `service`, `intent` (or `protocol`, `operation`, `target`), `method` or `path`; use `intent = \"*\"` to catch everything on purpose",
            );
        }
        let intent = match (&m.intent, has_parts) {
            (Some(i), true) => {
                self.error_hint(
                    i.span(),
                    "`intent` and `protocol`/`operation`/`target` say the same thing twice",
                    "use either intent = \"mcp tools/call search_*\" or protocol = \"mcp\", operation = ..., target = ...",
                );
                None
            }
            (Some(i), false) => self.intent(i),
            (None, true) => {
                fn text(p: &Option<Spanned<String>>) -> Option<&str> {
                    p.as_ref().map(|s| s.get_ref().as_str())
                }
                match IntentPattern::from_parts(
                    text(&m.protocol),
                    text(&m.operation),
                    text(&m.target),
                ) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        self.error_hint(
                            span.clone(),
                            format!("bad intent condition: {e}"),
                            "protocol is one of mcp, a2a, openai, http, tcp, unknown or *; operation and target are globs without spaces",
                        );
                        None
                    }
                }
            }
            (None, false) => None,
        };
        let service = m.service.as_ref().map(|s| Glob::new(s.get_ref()));
        let method = m.method.as_ref().and_then(|x| {
            let ok = !x.get_ref().is_empty()
                && x.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'*' || b == b'?');
            if !ok {
                self.error_hint(
                    x.span(),
                    format!(
                        "method pattern `{}` is not an upper-case HTTP method",
                        x.get_ref()
                    ),
                    "e.g. \"POST\" or \"GET\"",
                );
            }
            ok.then(|| Glob::new(x.get_ref()))
        });
        let path = m.path.as_ref().and_then(|p| {
            let ok = p.get_ref().starts_with('/') || p.get_ref().starts_with('*');
            if !ok {
                self.error_hint(
                    p.span(),
                    format!("path pattern `{}` must start with `/`", p.get_ref()),
                    "e.g. \"/v1/*\"",
                );
            }
            ok.then(|| Glob::new(p.get_ref()))
        });
        Some((service, intent, method, path))
    }

    /// Reports every pair of rule routes the gateway could not choose between.
    fn route_conflicts(&mut self, routes: &[Route], spans: &[std::ops::Range<usize>]) {
        let configs: Vec<aimux_gateway::RouteConfig> =
            routes.iter().map(Route::to_gateway).collect();
        for c in aimux_gateway::route_conflicts(&configs) {
            let label = |i: usize| {
                routes[i]
                    .name
                    .as_ref()
                    .map_or_else(|| format!("#{}", i + 1), |n| format!("`{n}`"))
            };
            let (line, _) = crate::mesh::diagnostic::line_col(&self.source, spans[c.first].start);
            self.error_hint(
                spans[c.second].clone(),
                format!(
                    "routes {} (line {line}) and {} can match the same request and are equally specific",
                    label(c.first),
                    label(c.second)
                ),
                "make one more specific (another condition, or an exact value instead of a glob), or merge them",
            );
        }
    }

    pub(super) fn access(
        &mut self,
        raws: Vec<RawAccess>,
        agents: &HashSet<&str>,
        services: &HashSet<&str>,
    ) -> Vec<AccessRule> {
        let mut seen = HashMap::new();
        let mut rules = Vec::new();
        for raw in raws {
            let name = raw.name.as_ref().and_then(|n| {
                let name = self.name(n, "access rule")?;
                self.unique(&mut seen, n, "access rule").then_some(name)
            });
            let from = self.glob_list(&raw.from, "from", "agent", agents);
            let to = self.glob_list(&raw.to, "to", "service", services);
            let intents = raw.intents.iter().filter_map(|i| self.intent(i)).collect();
            let action = match &raw.action {
                None => Action::Allow,
                Some(a) => self
                    .one_of(
                        a,
                        "action",
                        &[("allow", Action::Allow), ("deny", Action::Deny)],
                    )
                    .unwrap_or(Action::Allow),
            };
            if let (Some(from), Some(to)) = (from, to) {
                rules.push(AccessRule {
                    name,
                    from,
                    to,
                    intents,
                    action,
                });
            }
        }
        rules
    }

    /// An access rule's `from` or `to`: `"*"` for all, else names (checked against the
    /// defined ones, with a did-you-mean) or globs (`research-*`, `spiffe://partner.org/*`).
    fn glob_list(
        &mut self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        what: &str,
        defined: &HashSet<&str>,
    ) -> Option<Option<Vec<Glob>>> {
        if list.get_ref().is_empty() {
            self.error_hint(
                list.span(),
                format!("access `{key}` is empty, so the rule can never apply"),
                format!("list {what} names or globs, or \"*\" for all"),
            );
            return None;
        }
        if list.get_ref().iter().any(|n| n.get_ref() == "*") {
            return Some(None);
        }
        let mut globs = Vec::new();
        for n in list.get_ref() {
            let text = n.get_ref();
            let literal = !text.contains(['*', '?']) && !text.starts_with("spiffe://");
            if literal && !defined.contains(text.as_str()) {
                let d = Diagnostic::new(
                    n.span(),
                    format!("access `{key}` names `{text}`, which is not a defined {what}"),
                );
                self.diags
                    .push(match did_you_mean(text, defined.iter().copied()) {
                        Some(close) => d.hint(format!("did you mean `{close}`?")),
                        None => d.hint(format!(
                            "define the {what}, use a glob such as \"{text}*\", or \"*\" for every {what}"
                        )),
                    });
                continue;
            }
            globs.push(Glob::new(text));
        }
        Some(Some(globs))
    }

    pub(super) fn semantic(&mut self, raw: RawSemantic) -> Semantic {
        let model = raw.model.as_ref().map(|m| self.base_dir.join(m.get_ref()));
        let mut score = |v: &Option<Spanned<f64>>, key: &str| {
            let v = v.as_ref()?;
            if (0.0..=1.0).contains(v.get_ref()) {
                #[allow(clippy::cast_possible_truncation)]
                Some(*v.get_ref() as f32)
            } else {
                self.error_hint(
                    v.span(),
                    format!("semantic `{key}` must be between 0 and 1"),
                    "cosine similarities of sentence embeddings lie between 0 and 1 in practice",
                );
                None
            }
        };
        let min_score = score(&raw.min_score, "min_score");
        let margin = score(&raw.margin, "margin");
        let cache = raw.cache.as_ref().and_then(|c| {
            if (1..=MAX_CACHE).contains(c.get_ref()) {
                usize::try_from(*c.get_ref()).ok()
            } else {
                self.error(
                    c.span(),
                    format!("semantic `cache` must be between 1 and {MAX_CACHE}"),
                );
                None
            }
        });
        Semantic {
            model,
            min_score,
            margin,
            cache,
        }
    }

    pub(super) fn rate_limits(
        &mut self,
        raws: Vec<RawRateLimit>,
        agents: &HashSet<&str>,
    ) -> Vec<RateLimit> {
        let mut limits = Vec::new();
        for raw in raws {
            let from = match self.glob_list(&raw.from, "from", "agent", agents) {
                Some(None) => vec!["*".to_owned()],
                Some(Some(globs)) => globs.iter().map(|g| g.as_str().to_owned()).collect(),
                None => continue,
            };
            let rate = *raw.rate.get_ref();
            if !(rate.is_finite() && rate > 0.0 && rate <= 1e6) {
                self.error_hint(
                    raw.rate.span(),
                    format!("rate_limit `rate` = {rate} must be more than 0 requests per second"),
                    "e.g. rate = 10 (requests per second), burst = 20",
                );
                continue;
            }
            let burst = match &raw.burst {
                None => rate.ceil().max(1.0) as u32,
                Some(b) if (1..=1_000_000).contains(b.get_ref()) => {
                    u32::try_from(*b.get_ref()).unwrap_or(1)
                }
                Some(b) => {
                    self.error(b.span(), "rate_limit `burst` must be between 1 and 1000000");
                    continue;
                }
            };
            limits.push(RateLimit { from, rate, burst });
        }
        limits
    }

    pub(super) fn isolation(
        &mut self,
        raw: RawIsolation,
    ) -> Option<aimux_gateway::IsolationConfig> {
        let mut config = aimux_gateway::IsolationConfig::default();
        if let Some(w) = &raw.window {
            config.window = self.duration(w, "window")?;
        }
        if let Some(c) = &raw.cooldown {
            config.cooldown = self.duration(c, "cooldown")?;
        }
        if let Some(n) = &raw.min_requests {
            match u32::try_from(*n.get_ref()) {
                Ok(n) if n >= 1 => config.min_requests = n,
                _ => {
                    self.error(n.span(), "isolation `min_requests` must be at least 1");
                    return None;
                }
            }
        }
        if let Some(r) = &raw.max_bad_ratio {
            config.max_bad_ratio = *r.get_ref();
        }
        if let Err(e) = config.validate() {
            let span = raw.max_bad_ratio.as_ref().map(Spanned::span);
            self.error(span, format!("[isolation]: {e}"));
            return None;
        }
        Some(config)
    }

    /// A service's balancing, retries and circuit breaker.
    pub(super) fn resilience(
        &mut self,
        raw: &RawService,
    ) -> (aimux_gateway::Balance, u32, aimux_gateway::BreakerConfig) {
        use aimux_gateway::Balance;
        let balance = match &raw.balance {
            None => Balance::RoundRobin,
            Some(b) => self
                .one_of(
                    b,
                    "balance",
                    &[
                        ("round_robin", Balance::RoundRobin),
                        ("least_request", Balance::LeastRequest),
                    ],
                )
                .unwrap_or_default(),
        };
        let retries = match &raw.retries {
            None => aimux_gateway::ServiceConfig::DEFAULT_RETRIES,
            Some(r) if (0..=5).contains(r.get_ref()) => u32::try_from(*r.get_ref()).unwrap_or(0),
            Some(r) => {
                self.error_hint(
                    r.span(),
                    "service `retries` must be between 0 and 5",
                    "retries multiply the load on an upstream that is already failing",
                );
                0
            }
        };
        let mut breaker = aimux_gateway::BreakerConfig::default();
        if let Some(b) = &raw.breaker {
            let b = b.get_ref();
            if let Some(f) = &b.failures {
                match u32::try_from(*f.get_ref()) {
                    Ok(n) if n <= 1000 => breaker.consecutive_failures = n,
                    _ => self.error_hint(
                        f.span(),
                        "breaker `failures` must be between 0 and 1000",
                        "0 turns the breaker off",
                    ),
                }
            }
            if let Some(c) = &b.cooldown
                && let Some(d) = self.duration(c, "cooldown")
            {
                breaker.cooldown = d;
            }
        }
        (balance, retries, breaker)
    }

    /// `"250ms"`, `"30s"`, `"5m"`.
    fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match parse_duration(value.get_ref()) {
            Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Some(d),
            _ => {
                self.error_hint(
                    value.span(),
                    format!(
                        "`{key}` = \"{}\" is not a duration between 1ms and 1h",
                        value.get_ref()
                    ),
                    "write a whole number with ms, s or m, e.g. \"30s\" or \"500ms\"",
                );
                None
            }
        }
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        _ => None,
    }
}

impl Route {
    /// The gateway's form of this route.
    pub(crate) fn to_gateway(&self) -> aimux_gateway::RouteConfig {
        aimux_gateway::RouteConfig {
            name: self.name.clone(),
            service: self.service.clone(),
            intent: self.intent.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            examples: self.examples.clone(),
            to: self.to.clone(),
            timeout: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("2h"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("10"), None);
    }
}
