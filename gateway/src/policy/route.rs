//! Routing: which service a request goes to. Pure logic, no I/O.
//!
//! A request is resolved in four steps, the first that answers wins:
//!
//! 1. **Rule routes** (routes without examples): of those whose every condition holds, the
//!    most specific ([`Specificity`]). Two rule routes that could match the same request
//!    with equal specificity are a configuration error ([`conflicts`]), so the winner is
//!    never decided by file order.
//! 2. **The destination itself**, if it names a configured service: an agent that
//!    addresses a service explicitly is not second-guessed.
//! 3. **Semantic routes** (routes with examples) whose conditions hold: the caller asks the
//!    semantic matcher which one is nearest in meaning ([`Resolution::Semantic`]).
//! 4. Otherwise: no route.

use std::fmt;

use super::RequestFacts;
use crate::config::RouteConfig;
use crate::intent_pattern::Glob;

/// The routes of the gateway: rule routes by decreasing specificity, and semantic routes.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Vec<RouteConfig>,
    /// Indices of rule routes, most specific first (file order among equals).
    rules: Vec<usize>,
    /// Indices of semantic routes, in file order.
    semantic: Vec<usize>,
}

/// Where a request goes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed<'a> {
    /// The service to forward to.
    pub(crate) service: &'a str,
    /// The route that sent it there, or `None` for the destination itself.
    pub(crate) route: Option<RouteLabel<'a>>,
    /// The route's index, for its settings (timeout).
    pub(crate) index: Option<usize>,
}

/// What the router concluded without the semantic matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolution<'a> {
    Routed(Routed<'a>),
    /// Only a semantic route can take the request: these candidates (route indices).
    Semantic(Vec<usize>),
    /// Nothing can.
    NoRoute,
}

/// A route as named in logs: by its name, or by its 1-based position in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteLabel<'a> {
    Named(&'a str),
    Index(usize),
}

impl fmt::Display for RouteLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Named(name) => write!(f, "`{name}`"),
            Self::Index(i) => write!(f, "#{i}"),
        }
    }
}

impl Router {
    /// Orders the routes. Call [`conflicts`] first: with ambiguous routes the order among
    /// equals is file order.
    pub(crate) fn new(routes: Vec<RouteConfig>) -> Self {
        let mut rules: Vec<usize> = (0..routes.len())
            .filter(|&i| routes[i].examples.is_empty())
            .collect();
        // Stable: file order among equally specific (hence non-overlapping) routes.
        rules.sort_by_key(|&i| std::cmp::Reverse(Specificity::of(&routes[i])));
        let semantic = (0..routes.len())
            .filter(|&i| !routes[i].examples.is_empty())
            .collect();
        Self {
            routes,
            rules,
            semantic,
        }
    }

    /// The routes with their labels, for validation at startup.
    pub(crate) fn labelled(&self) -> impl Iterator<Item = (RouteLabel<'_>, &RouteConfig)> {
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| (label(i, r), r))
    }

    /// The route at `index`.
    pub(crate) fn route(&self, index: usize) -> Option<&RouteConfig> {
        self.routes.get(index)
    }

    /// The semantic routes' indices and examples, to build the matcher.
    pub(crate) fn semantic_routes(&self) -> impl Iterator<Item = (usize, &[String])> {
        self.semantic
            .iter()
            .map(|&i| (i, self.routes[i].examples.as_slice()))
    }

    /// Steps 1–3 of the module docs. `is_service` says whether a name is a configured
    /// service.
    pub(crate) fn resolve<'a>(
        &'a self,
        req: &RequestFacts<'a>,
        is_service: impl Fn(&str) -> bool,
    ) -> Resolution<'a> {
        let path = path_without_query(req.path);
        if let Some(&i) = self
            .rules
            .iter()
            .find(|&&i| matches(&self.routes[i], req, path))
        {
            return Resolution::Routed(self.routed(i));
        }
        if is_service(req.destination) {
            return Resolution::Routed(Routed {
                service: req.destination,
                route: None,
                index: None,
            });
        }
        let candidates: Vec<usize> = self
            .semantic
            .iter()
            .copied()
            .filter(|&i| matches(&self.routes[i], req, path))
            .collect();
        if candidates.is_empty() {
            Resolution::NoRoute
        } else {
            Resolution::Semantic(candidates)
        }
    }

    /// The answer for route `index` (a rule route, or the semantic matcher's choice).
    pub(crate) fn routed(&self, index: usize) -> Routed<'_> {
        let route = &self.routes[index];
        Routed {
            service: &route.to,
            route: Some(label(index, route)),
            index: Some(index),
        }
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
        .as_ref()
        .is_none_or(|g| g.matches(req.destination))
        && route
            .intent
            .as_ref()
            .is_none_or(|p| p.matches_intent(req.intent))
        && route.method.as_ref().is_none_or(|g| g.matches(req.method))
        && route.path.as_ref().is_none_or(|g| g.matches(path))
}

/// How much a rule route says about the requests it matches, compared field by field
/// (destination service, protocol, operation, target, method, path): more exact conditions
/// win; then more glob conditions; then more literal characters in the globs
/// (`search_web_*` beats `search_*`). A `*` glob is no condition at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    exact: u8,
    globs: u8,
    literal: usize,
}

impl Specificity {
    /// The specificity of a route's conditions.
    pub fn of(route: &RouteConfig) -> Self {
        let mut s = Specificity {
            exact: 0,
            globs: 0,
            literal: 0,
        };
        for glob in conditions(route).into_iter().flatten() {
            if glob.is_literal() {
                s.exact += 1;
            } else {
                s.globs += 1;
                s.literal += glob.literal_len();
            }
        }
        s
    }
}

/// The six conditions of a route as globs (the protocol as a literal), `None` where open.
fn conditions(route: &RouteConfig) -> [Option<Glob>; 6] {
    let open = |g: &Glob| (!g.is_star()).then(|| g.clone());
    let intent = route.intent.as_ref();
    [
        route.service.as_ref().and_then(open),
        intent.and_then(|p| p.protocol()).map(Glob::new),
        intent.and_then(|p| open(p.operation())),
        intent.and_then(|p| open(p.target())),
        route.method.as_ref().and_then(open),
        route.path.as_ref().and_then(open),
    ]
}

/// Two rule routes that can match one request and are equally specific.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConflict {
    /// 0-based index of the earlier route.
    pub first: usize,
    /// 0-based index of the later route.
    pub second: usize,
}

/// Every pair of rule routes that could both match some request with equal specificity:
/// the gateway would have no principled way to choose. Routes with examples are semantic
/// routes and never conflict (the matcher scores them).
pub fn conflicts(routes: &[RouteConfig]) -> Vec<RouteConflict> {
    let rules: Vec<(usize, Specificity, [Option<Glob>; 6])> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.examples.is_empty())
        .map(|(i, r)| (i, Specificity::of(r), conditions(r)))
        .collect();
    let mut found = Vec::new();
    for (n, (i, spec_a, a)) in rules.iter().enumerate() {
        for (j, spec_b, b) in &rules[n + 1..] {
            // A field constrained by only one route, or by neither, does not keep them
            // apart; a field both constrain does when no value fits both globs.
            let overlap = a.iter().zip(b).all(|pair| match pair {
                (Some(x), Some(y)) => x.intersects(y),
                _ => true,
            });
            if spec_a == spec_b && overlap {
                found.push(RouteConflict {
                    first: *i,
                    second: *j,
                });
            }
        }
    }
    found
}

/// The path of an origin-form request target, without its query (RFC 9110 §4.2.3 keeps
/// the query part of the target; routes match on the path only).
pub(crate) fn path_without_query(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
