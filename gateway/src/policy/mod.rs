//! The gateway's decisions, as pure functions of configuration and request facts: where a
//! request goes ([`route`]) and whether its caller may send it there ([`access`]).

pub(crate) mod access;
pub(crate) mod route;
pub(crate) mod semantic;

use std::fmt;
use std::time::Duration;

use aimux_certs::{IdentityKind, SpiffeId, TrustDomain};
use aimux_wire::{Intent, Outcome};

use self::access::{AccessPolicy, DenialReason, Verdict};
use self::route::{Resolution, RouteLabel, Routed, Router};

/// Who is calling: the SPIFFE ID from the peer certificate (or, in dev mode, the claimed
/// one) and, if it is an agent of the mesh trust domain, its agent name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    id: SpiffeId,
    id_text: String,
    agent: Option<String>,
}

impl Caller {
    pub(crate) fn new(id: SpiffeId, trust_domain: &TrustDomain) -> Self {
        let agent = (id.trust_domain() == trust_domain && id.kind() == Some(IdentityKind::Agent))
            .then(|| id.workload_name().map(str::to_owned))
            .flatten();
        Self {
            id_text: id.to_string(),
            id,
            agent,
        }
    }

    /// The SPIFFE ID.
    pub(crate) fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The SPIFFE ID as text (what `x-aimux-identity` carries upstream).
    pub(crate) fn id_str(&self) -> &str {
        &self.id_text
    }

    /// `NAME` of `spiffe://<mesh trust domain>/agent/NAME`, for anyone else `None`.
    pub(crate) fn agent_name(&self) -> Option<&str> {
        self.agent.as_deref()
    }
}

/// What policy looks at in a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestFacts<'a> {
    /// The service the request names (the envelope's destination, or the dev-mode Host).
    pub(crate) destination: &'a str,
    /// The intent hint, if the sidecar found one.
    pub(crate) intent: Option<&'a Intent>,
    /// The HTTP method.
    pub(crate) method: &'a str,
    /// The request target in origin form, possibly with a query.
    pub(crate) path: &'a str,
}

/// A request the gateway will not forward: the outcome to report and a reason for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) outcome: Outcome,
    pub(crate) reason: String,
    /// Seconds after which a retry may succeed (`Retry-After`, RFC 9110 §10.2.3), for
    /// `rate_limited` and `isolated`.
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(outcome: Outcome, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// The HTTP head a refusal carries, if any: the suggested status and `retry-after`
    /// (SPEC.md §6.2), so the sidecar can pass the hint on to the agent.
    pub(crate) fn http_head(&self) -> Option<aimux_wire::HttpResponseHead> {
        let secs = self.retry_after?;
        Some(
            aimux_wire::HttpResponseHead::new(self.outcome.suggested_http_status())
                .with_header("retry-after", secs.to_string()),
        )
    }
}

/// Routes and access rules together.
#[derive(Debug, Default)]
pub(crate) struct Policy {
    pub(crate) router: Router,
    pub(crate) access: AccessPolicy,
}

/// An allowed request: the service it goes to and how it got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allowed<'a> {
    pub(crate) service: &'a str,
    pub(crate) route: Option<RouteLabel<'a>>,
    /// The route's response-head timeout, if it sets one.
    pub(crate) timeout: Option<Duration>,
    /// The 1-based position of the allowing access rule.
    pub(crate) rule: usize,
    /// Its name, if it has one.
    pub(crate) rule_name: Option<&'a str>,
}

/// A refused request, with the service it was routed to if that service exists (for the
/// metrics label: never a name taken from the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused<'a> {
    pub(crate) service: Option<&'a str>,
    pub(crate) route: Option<RouteLabel<'a>>,
    /// The deciding access rule (`name` or `#N`), for the audit log.
    pub(crate) rule: Option<String>,
    pub(crate) refusal: Refusal,
}

impl Policy {
    /// Routing without the semantic matcher (route.rs, steps 1–3).
    pub(crate) fn route<'a>(
        &'a self,
        req: &RequestFacts<'a>,
        is_service: impl Fn(&str) -> bool,
    ) -> Resolution<'a> {
        self.router.resolve(req, is_service)
    }

    /// The refusal for a request nothing routes; `semantic` says why the semantic matcher
    /// found nothing, if it was asked.
    pub(crate) fn no_route(req: &RequestFacts<'_>, semantic: Option<&str>) -> Refused<'static> {
        let mut reason = format!(
            "no route for `{}` with intent {}: no rule route matches and no service has that name",
            req.destination,
            IntentDisplay(req.intent)
        );
        if let Some(why) = semantic {
            reason.push_str("; semantic routing: ");
            reason.push_str(why);
        }
        Refused {
            service: None,
            route: None,
            rule: None,
            refusal: Refusal::new(Outcome::NoRoute, reason),
        }
    }

    /// Checks that the routed service exists (`is_service` returns its configured name),
    /// then the access rules against it.
    pub(crate) fn authorize<'a>(
        &'a self,
        caller: &Caller,
        req: &RequestFacts<'a>,
        routed: Routed<'a>,
        is_service: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Allowed<'a>, Refused<'a>> {
        let Some(service) = is_service(routed.service) else {
            // Startup validation makes this unreachable; say so clearly if it happens.
            let reason = format!(
                "route {} sends `{}` to `{}`, which is not a service of this gateway",
                routed
                    .route
                    .map_or_else(|| "(none)".to_owned(), |r| r.to_string()),
                req.destination,
                routed.service
            );
            return Err(Refused {
                service: None,
                route: routed.route,
                rule: None,
                refusal: Refusal::new(Outcome::NoRoute, reason),
            });
        };
        let timeout = routed
            .index
            .and_then(|i| self.router.route(i))
            .and_then(|r| r.timeout);
        match self.access.check(caller, service, req.intent) {
            Verdict::Allowed { rule } => Ok(Allowed {
                service,
                route: routed.route,
                timeout,
                rule,
                rule_name: self.access.rule_name(rule),
            }),
            verdict => {
                let rule = match verdict {
                    Verdict::DeniedByRule { rule } => Some(rule),
                    _ => None,
                };
                let rule_name = rule.and_then(|r| self.access.rule_name(r));
                Err(Refused {
                    service: Some(service),
                    route: routed.route,
                    rule: rule.map(|r| rule_name.map_or_else(|| format!("#{r}"), str::to_owned)),
                    refusal: Refusal::new(
                        Outcome::DeniedByPolicy,
                        DenialReason {
                            caller,
                            service,
                            intent: req.intent,
                            verdict,
                            rule_name,
                        }
                        .to_string(),
                    ),
                })
            }
        }
    }
}

/// An intent as operators read it: `` `mcp tools/call search_web` ``, or `(none)`.
pub(crate) struct IntentDisplay<'a>(pub(crate) Option<&'a Intent>);

impl fmt::Display for IntentDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(intent) = self.0 else {
            return f.write_str("(none)");
        };
        write!(f, "`{}", intent.protocol)?;
        for part in [&intent.operation, &intent.target] {
            if !part.is_empty() {
                write!(f, " {part}")?;
            }
        }
        f.write_str("`")
    }
}

#[cfg(test)]
mod tests {
    use aimux_wire::Protocol;

    use super::*;
    use crate::config::{AccessRuleConfig, Action, RouteConfig};

    fn policy() -> Policy {
        Policy {
            router: Router::new(vec![RouteConfig {
                name: Some("to-echo".into()),
                service: Some("alias".into()),
                to: "echo".into(),
                timeout: Some(Duration::from_secs(3)),
                ..RouteConfig::default()
            }]),
            access: AccessPolicy::new(vec![AccessRuleConfig {
                name: Some("alice-echo".into()),
                from: Some(vec!["alice".into()]),
                to: Some(vec!["echo".into()]),
                intents: vec![],
                action: Action::Allow,
            }]),
        }
    }

    fn known<'a>(name: &str) -> Option<&'a str> {
        ["echo", "tools"].into_iter().find(|s| *s == name)
    }

    fn alice() -> Caller {
        Caller::new(
            SpiffeId::parse("spiffe://example.org/agent/alice").unwrap(),
            &TrustDomain::new("example.org").unwrap(),
        )
    }

    fn facts(destination: &str) -> RequestFacts<'_> {
        RequestFacts {
            destination,
            intent: None,
            method: "GET",
            path: "/",
        }
    }

    fn decide<'a>(p: &'a Policy, req: &RequestFacts<'a>) -> Result<Allowed<'a>, Refused<'a>> {
        match p.route(req, |n| known(n).is_some()) {
            Resolution::Routed(routed) => p.authorize(&alice(), req, routed, known),
            _ => Err(Policy::no_route(req, None)),
        }
    }

    #[test]
    fn routed_and_allowed() {
        let p = policy();
        let req = facts("alias");
        let ok = decide(&p, &req).unwrap();
        assert_eq!(ok.service, "echo");
        assert_eq!(ok.route, Some(RouteLabel::Named("to-echo")));
        assert_eq!(ok.timeout, Some(Duration::from_secs(3)));
        assert_eq!((ok.rule, ok.rule_name), (1, Some("alice-echo")));
    }

    #[test]
    fn unknown_services_are_no_route_without_a_label() {
        let p = policy();
        let req = facts("nowhere");
        let err = decide(&p, &req).unwrap_err();
        assert_eq!(err.service, None);
        assert_eq!(err.refusal.outcome, Outcome::NoRoute);
        assert!(err.refusal.reason.contains("`nowhere`"), "{err:?}");
    }

    #[test]
    fn access_is_checked_against_the_routed_service() {
        let p = policy();
        let req = facts("tools");
        let err = decide(&p, &req).unwrap_err();
        assert_eq!(err.service, Some("tools"));
        assert_eq!(err.refusal.outcome, Outcome::DeniedByPolicy);
    }

    #[test]
    fn intents_display_without_empty_parts() {
        let i = Intent::new(Protocol::Http, "GET", "");
        assert_eq!(IntentDisplay(Some(&i)).to_string(), "`http GET`");
        assert_eq!(IntentDisplay(None).to_string(), "(none)");
    }
}
