//! Routing: which service a request goes to. Pure logic, no I/O.
//!
//! Routes are tried in file order and the first whose every present condition holds wins;
//! with no matching route a request goes to the service its envelope named. Whether that
//! service exists is the caller's question (an unknown one is `no_route`).

use super::RequestFacts;
use crate::config::RouteConfig;

/// The routes of the gateway, in file order.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Vec<RouteConfig>,
}

/// Where a request goes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed<'a> {
    /// The service to forward to.
    pub(crate) service: &'a str,
    /// The route that sent it there (its name or `#N`), or `None` for the destination itself.
    pub(crate) route: Option<RouteLabel<'a>>,
}

/// A route as named in logs: by its name, or by its 1-based position in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteLabel<'a> {
    Named(&'a str),
    Index(usize),
}

impl std::fmt::Display for RouteLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => write!(f, "`{name}`"),
            Self::Index(i) => write!(f, "#{i}"),
        }
    }
}

impl Router {
    pub(crate) fn new(routes: Vec<RouteConfig>) -> Self {
        Self { routes }
    }

    /// The routes with their labels, for validation at startup.
    pub(crate) fn labelled(&self) -> impl Iterator<Item = (RouteLabel<'_>, &RouteConfig)> {
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| (label(i, r), r))
    }

    /// Resolves the service a request goes to.
    pub(crate) fn resolve<'a>(&'a self, req: &RequestFacts<'a>) -> Routed<'a> {
        let path = path_without_query(req.path);
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| matches(r, req, path))
            .map_or(
                Routed {
                    service: req.destination,
                    route: None,
                },
                |(i, r)| Routed {
                    service: &r.to,
                    route: Some(label(i, r)),
                },
            )
    }
}

fn label(index: usize, route: &RouteConfig) -> RouteLabel<'_> {
    match &route.name {
        Some(name) => RouteLabel::Named(name),
        None => RouteLabel::Index(index + 1),
    }
}

fn matches(route: &RouteConfig, req: &RequestFacts<'_>, path: &str) -> bool {
    route
        .service
        .as_deref()
        .is_none_or(|s| s == req.destination)
        && route
            .intent
            .as_ref()
            .is_none_or(|p| p.matches_intent(req.intent))
        && route.path.as_ref().is_none_or(|g| g.matches(path))
}

/// The path of an origin-form request target, without its query (RFC 9110 §4.2.3 keeps
/// the query part of the target; routes match on the path only).
pub(crate) fn path_without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use aimux_wire::{Intent, Protocol};

    use super::*;
    use crate::intent_pattern::Glob;

    fn route(name: Option<&str>, to: &str) -> RouteConfig {
        RouteConfig {
            name: name.map(str::to_owned),
            service: None,
            intent: None,
            path: None,
            to: to.to_owned(),
        }
    }

    fn facts<'a>(dest: &'a str, intent: Option<&'a Intent>, path: &'a str) -> RequestFacts<'a> {
        RequestFacts {
            destination: dest,
            intent,
            path,
        }
    }

    #[test]
    fn without_routes_requests_go_to_their_destination() {
        let r = Router::default();
        let routed = r.resolve(&facts("tools", None, "/mcp"));
        assert_eq!(routed.service, "tools");
        assert_eq!(routed.route, None);
    }

    #[test]
    fn routes_match_on_every_present_condition_first_wins() {
        let mut by_intent = route(Some("echo-tool"), "echo");
        by_intent.intent = Some("mcp tools/call echo_*".parse().unwrap());
        let mut by_path = route(None, "files");
        by_path.service = Some("tools".into());
        by_path.path = Some(Glob::new("/files/*"));
        let catch_all = route(Some("everything-else"), "fallback");
        let r = Router::new(vec![by_intent, by_path, catch_all]);

        let echo = Intent::new(Protocol::Mcp, "tools/call", "echo_text");
        let routed = r.resolve(&facts("tools", Some(&echo), "/mcp"));
        assert_eq!(routed.service, "echo");
        assert_eq!(routed.route.unwrap().to_string(), "`echo-tool`");

        // The query is not part of the path a route matches.
        let routed = r.resolve(&facts("tools", None, "/files/a.txt?x=1"));
        assert_eq!(routed.service, "files");
        assert_eq!(routed.route.unwrap().to_string(), "#2");

        // Same path, other destination: the `service` condition fails, the catch-all wins.
        let routed = r.resolve(&facts("other", None, "/files/a.txt"));
        assert_eq!(routed.service, "fallback");
    }

    #[test]
    fn requests_without_intent_match_only_open_patterns() {
        let mut narrow = route(None, "narrow");
        narrow.intent = Some("mcp".parse().unwrap());
        let mut open = route(None, "open");
        open.intent = Some("*".parse().unwrap());
        let r = Router::new(vec![narrow, open]);
        assert_eq!(r.resolve(&facts("x", None, "/")).service, "open");
        let mcp = Intent::new(Protocol::Mcp, "", "");
        assert_eq!(r.resolve(&facts("x", Some(&mcp), "/")).service, "narrow");
    }

    #[test]
    fn strips_queries_only() {
        assert_eq!(path_without_query("/a/b?c=d?e"), "/a/b");
        assert_eq!(path_without_query("/a"), "/a");
        assert_eq!(path_without_query("*"), "*");
    }
}
