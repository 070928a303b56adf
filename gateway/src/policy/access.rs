//! Access control against the caller's proven (or, in dev mode, claimed) identity. Pure
//! logic, no I/O.
//!
//! Semantics: nothing is allowed unless some allow rule matches, and any matching deny rule
//! wins over every allow (so a deny cannot be undone by a rule written later). A rule
//! matches when each of its conditions holds: `from` lists globs over agent names (or, for
//! globs starting with `spiffe://`, over whole SPIFFE IDs), `to` lists service globs (the
//! service the request is *routed* to, so a route cannot be used to reach a service the
//! caller may not call), `intents` lists patterns of which one must match.

use std::fmt;

use aimux_wire::Intent;

use super::{Caller, IntentDisplay};
use crate::config::{AccessRuleConfig, Action};

/// The access rules, in file order.
#[derive(Debug, Default)]
pub(crate) struct AccessPolicy {
    rules: Vec<AccessRuleConfig>,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed by the rule at this 1-based position.
    Allowed { rule: usize },
    /// No allow rule matches.
    NoAllowRule,
    /// The deny rule at this 1-based position matches.
    DeniedByRule { rule: usize },
}

impl AccessPolicy {
    pub(crate) fn new(rules: Vec<AccessRuleConfig>) -> Self {
        Self { rules }
    }

    /// The rules, for validation at startup.
    pub(crate) fn rules(&self) -> &[AccessRuleConfig] {
        &self.rules
    }

    /// The name of the rule at a 1-based position, if it has one.
    pub(crate) fn rule_name(&self, rule: usize) -> Option<&str> {
        self.rules.get(rule.checked_sub(1)?)?.name.as_deref()
    }

    /// Decides whether `caller` may send a request with `intent` to `service`.
    pub(crate) fn check(&self, caller: &Caller, service: &str, intent: Option<&Intent>) -> Verdict {
        let mut allowed = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !matches(rule, caller, service, intent) {
                continue;
            }
            match rule.action {
                Action::Deny => return Verdict::DeniedByRule { rule: i + 1 },
                Action::Allow => {
                    allowed.get_or_insert(i + 1);
                }
            }
        }
        allowed.map_or(Verdict::NoAllowRule, |rule| Verdict::Allowed { rule })
    }
}

fn matches(
    rule: &AccessRuleConfig,
    caller: &Caller,
    service: &str,
    intent: Option<&Intent>,
) -> bool {
    // Only agents of the mesh trust domain have an agent name; anyone else matches only
    // rules open to every caller or naming its SPIFFE ID.
    let from_ok = rule.from.as_ref().is_none_or(|globs| {
        globs.iter().any(|g| {
            if g.as_str().starts_with("spiffe://") {
                g.matches(caller.id_str())
            } else {
                caller.agent_name().is_some_and(|agent| g.matches(agent))
            }
        })
    });
    from_ok
        && rule
            .to
            .as_ref()
            .is_none_or(|services| services.iter().any(|g| g.matches(service)))
        && (rule.intents.is_empty()
            || rule.intents.iter().any(|p| match rule.action {
                Action::Allow => p.matches_intent(intent),
                Action::Deny => p.matches_intent_failing_closed(intent),
            }))
}

/// The operator-facing reason of a refusal: who, what, where, and which rule (or none).
#[derive(Debug)]
pub(crate) struct DenialReason<'a> {
    pub(crate) caller: &'a Caller,
    pub(crate) service: &'a str,
    pub(crate) intent: Option<&'a Intent>,
    pub(crate) verdict: Verdict,
    /// The deciding rule's name, if it has one.
    pub(crate) rule_name: Option<&'a str>,
}

impl fmt::Display for DenialReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} may not call service `{}` with intent {}: ",
            self.caller.id(),
            self.service,
            IntentDisplay(self.intent)
        )?;
        match self.verdict {
            Verdict::DeniedByRule { rule } => match self.rule_name {
                Some(name) => write!(f, "denied by access rule `{name}` (#{rule})"),
                None => write!(f, "denied by access rule #{rule}"),
            },
            Verdict::NoAllowRule | Verdict::Allowed { .. } => {
                f.write_str("no access rule allows it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aimux_certs::{SpiffeId, TrustDomain};
    use aimux_wire::Protocol;

    use super::*;
    use crate::intent_pattern::{Glob, IntentPattern};

    fn td() -> TrustDomain {
        TrustDomain::new("example.org").unwrap()
    }

    fn caller(id: &str) -> Caller {
        Caller::new(SpiffeId::parse(id).unwrap(), &td())
    }

    fn rule(
        from: Option<&[&str]>,
        to: Option<&[&str]>,
        intents: &[&str],
        action: Action,
    ) -> AccessRuleConfig {
        let list = |l: &[&str]| l.iter().map(|s| Glob::new(s)).collect();
        AccessRuleConfig {
            name: None,
            from: from.map(list),
            to: to.map(list),
            intents: intents
                .iter()
                .map(|p| p.parse::<IntentPattern>().unwrap())
                .collect(),
            action,
        }
    }

    #[test]
    fn nothing_is_allowed_without_an_allow_rule() {
        let p = AccessPolicy::default();
        let alice = caller("spiffe://example.org/agent/alice");
        assert_eq!(p.check(&alice, "tools", None), Verdict::NoAllowRule);
    }

    #[test]
    fn allow_rules_match_on_agent_service_and_intent() {
        let p = AccessPolicy::new(vec![
            rule(
                Some(&["alice"]),
                Some(&["tools"]),
                &["mcp tools/*"],
                Action::Allow,
            ),
            rule(None, Some(&["echo"]), &[], Action::Allow),
        ]);
        let alice = caller("spiffe://example.org/agent/alice");
        let bob = caller("spiffe://example.org/agent/bob");
        let list = Intent::new(Protocol::Mcp, "tools/list", "");
        assert_eq!(
            p.check(&alice, "tools", Some(&list)),
            Verdict::Allowed { rule: 1 }
        );
        assert_eq!(p.check(&bob, "tools", Some(&list)), Verdict::NoAllowRule);
        assert_eq!(p.check(&alice, "tools", None), Verdict::NoAllowRule);
        assert_eq!(p.check(&bob, "echo", None), Verdict::Allowed { rule: 2 });
    }

    #[test]
    fn a_matching_deny_wins_over_any_allow() {
        let p = AccessPolicy::new(vec![
            rule(None, None, &[], Action::Allow),
            rule(Some(&["mallory"]), None, &[], Action::Deny),
            rule(
                None,
                Some(&["tools"]),
                &["mcp tools/call delete_*"],
                Action::Deny,
            ),
        ]);
        let alice = caller("spiffe://example.org/agent/alice");
        let mallory = caller("spiffe://example.org/agent/mallory");
        assert_eq!(p.check(&alice, "echo", None), Verdict::Allowed { rule: 1 });
        assert_eq!(
            p.check(&mallory, "echo", None),
            Verdict::DeniedByRule { rule: 2 }
        );
        let delete = Intent::new(Protocol::Mcp, "tools/call", "delete_all");
        assert_eq!(
            p.check(&alice, "tools", Some(&delete)),
            Verdict::DeniedByRule { rule: 3 }
        );
    }

    #[test]
    fn only_agents_of_the_trust_domain_have_agent_names() {
        let p = AccessPolicy::new(vec![rule(Some(&["alice"]), None, &[], Action::Allow)]);
        let foreign = caller("spiffe://other.org/agent/alice");
        let gateway = caller("spiffe://example.org/gateway/alice");
        let nested = caller("spiffe://example.org/agent/alice/extra");
        for c in [&foreign, &gateway, &nested] {
            assert_eq!(p.check(c, "x", None), Verdict::NoAllowRule, "{}", c.id());
        }
        let open = AccessPolicy::new(vec![rule(None, None, &[], Action::Allow)]);
        assert_eq!(
            open.check(&foreign, "x", None),
            Verdict::Allowed { rule: 1 }
        );
    }

    #[test]
    fn deny_rules_fail_closed_on_partial_targets() {
        let p = AccessPolicy::new(vec![
            rule(None, None, &["mcp tools/call"], Action::Allow),
            rule(None, None, &["mcp tools/call *_delete"], Action::Deny),
        ]);
        let alice = caller("spiffe://example.org/agent/alice");
        let mut cut = Intent::new(Protocol::Mcp, "tools/call", "x".repeat(256));
        assert_eq!(
            p.check(&alice, "t", Some(&cut)),
            Verdict::Allowed { rule: 1 }
        );
        cut.flags = aimux_wire::IntentFlags::PARTIAL;
        assert_eq!(
            p.check(&alice, "t", Some(&cut)),
            Verdict::DeniedByRule { rule: 2 }
        );
    }

    #[test]
    fn globs_over_agent_names_spiffe_ids_and_services() {
        let p = AccessPolicy::new(vec![
            rule(
                Some(&["research-*"]),
                Some(&["search-*"]),
                &[],
                Action::Allow,
            ),
            rule(
                Some(&["spiffe://partner.org/*"]),
                Some(&["public"]),
                &[],
                Action::Allow,
            ),
        ]);
        let r1 = caller("spiffe://example.org/agent/research-1");
        let partner = caller("spiffe://partner.org/agent/x");
        let other = caller("spiffe://example.org/agent/ops");
        assert_eq!(
            p.check(&r1, "search-web", None),
            Verdict::Allowed { rule: 1 }
        );
        assert_eq!(p.check(&r1, "public", None), Verdict::NoAllowRule);
        assert_eq!(
            p.check(&partner, "public", None),
            Verdict::Allowed { rule: 2 }
        );
        assert_eq!(p.check(&other, "search-web", None), Verdict::NoAllowRule);
    }

    #[test]
    fn reasons_name_identity_service_intent_and_rule() {
        let alice = caller("spiffe://example.org/agent/alice");
        let call = Intent::new(Protocol::Mcp, "tools/call", "search_web");
        let reason = DenialReason {
            caller: &alice,
            service: "tools",
            intent: Some(&call),
            verdict: Verdict::NoAllowRule,
            rule_name: None,
        };
        assert_eq!(
            reason.to_string(),
            "spiffe://example.org/agent/alice may not call service `tools` with intent \
             `mcp tools/call search_web`: no access rule allows it"
        );
        let reason = DenialReason {
            caller: &alice,
            service: "tools",
            intent: None,
            verdict: Verdict::DeniedByRule { rule: 2 },
            rule_name: None,
        };
        assert_eq!(
            reason.to_string(),
            "spiffe://example.org/agent/alice may not call service `tools` with intent (none): \
             denied by access rule #2"
        );
    }
}
