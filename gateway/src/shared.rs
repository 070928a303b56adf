//! What every request handler shares: the current policy snapshot (hot-swappable), the
//! upstream client, metrics. The tunnel and the dev-mode paths differ only in how they learn
//! who is calling and how they answer; the decision and the forwarding are the same code.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aimux_certs::TrustDomain;
use aimux_wire::{Limits, Outcome};
use arc_swap::ArcSwap;

use crate::audit::{AuditEntry, AuditLog, Decision};
use crate::config::Timeouts;
use crate::forward::{Forwarder, Service, Services};
use crate::limits::isolation::{Isolation, RequestOutcome};
use crate::limits::rate::RateLimiter;
use crate::metrics::{Metrics, Status, UNKNOWN_SERVICE};
use crate::policy::route::Resolution;
use crate::policy::semantic::SemanticRouter;
use crate::policy::{Allowed, Caller, IntentDisplay, Policy, Refusal, Refused, RequestFacts};

/// The longest a request waits for a turn at the semantic matcher.
const SEMANTIC_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The part of the configuration a reload replaces as a whole: routes, access rules,
/// services and the semantic matcher (unchanged services are carried over, state and all).
/// Requests in flight keep the snapshot they started with (an `Arc`), so a reload never
/// changes a decision half-way.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) policy: Policy,
    pub(crate) services: Services,
    pub(crate) semantic: Option<Arc<SemanticRouter>>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    /// Per-identity rate limits; long-lived, reconfigured on reload (buckets survive).
    pub(crate) rate: RateLimiter,
    /// The reputation engine; long-lived, reconfigured on reload.
    pub(crate) isolation: Isolation,
    pub(crate) audit: Option<AuditLog>,
    /// Turns at the semantic matcher (one per core): bounds the threads running the model.
    pub(crate) semantic_slots: Arc<tokio::sync::Semaphore>,
    pub(crate) forwarder: Forwarder,
    pub(crate) metrics: Metrics,
    pub(crate) timeouts: Timeouts,
    pub(crate) limits: Limits,
}

/// A request the gateway will forward: where, and under which route settings.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) service: Arc<Service>,
    /// The route's response-head timeout, if it sets one.
    pub(crate) timeout: Option<Duration>,
}

/// A request refused by policy, with the metrics label of the service concerned.
#[derive(Debug)]
pub(crate) struct Denied {
    pub(crate) refusal: Refusal,
    pub(crate) service_label: String,
}

impl Shared {
    /// Routes the request (asking the semantic matcher off the async workers when only a
    /// semantic route can take it) and checks access.
    pub(crate) async fn admit(
        &self,
        caller: &Caller,
        facts: &RequestFacts<'_>,
        request_id: &str,
    ) -> Result<Admitted, Denied> {
        let audit = Audit {
            shared: self,
            caller,
            facts,
            request_id,
        };
        let now = Instant::now();
        // An isolated caller is refused before anything else, and does not spend tokens.
        if let Err(isolated) = self.isolation.check(caller.id_str(), now) {
            let mut refusal = Refusal::new(Outcome::Isolated, isolated.to_string());
            refusal.retry_after = Some(isolated.retry_in(now).as_secs().max(1));
            return Err(audit.refused(Decision::Isolated, None, None, refusal));
        }
        if let Err(limited) = self.rate.check(caller.id_str(), caller.agent_name(), now) {
            self.metrics.rate_limited(caller.id_str());
            let mut refusal = Refusal::new(Outcome::RateLimited, limited.to_string());
            refusal.retry_after = Some(limited.header_secs());
            return Err(audit.refused(Decision::RateLimited, None, None, refusal));
        }
        let snapshot = self.snapshot.load_full();
        let is_service = |name: &str| snapshot.services.get(name).is_some();
        let routed = match snapshot.policy.route(facts, is_service) {
            Resolution::Routed(routed) => routed,
            Resolution::NoRoute => {
                return Err(audit.policy(Policy::no_route(facts, None)));
            }
            Resolution::Semantic(candidates) => {
                let Some(semantic) = snapshot.semantic.clone() else {
                    let why = "semantic routes are configured but no matcher is loaded";
                    return Err(audit.policy(Policy::no_route(facts, Some(why))));
                };
                let text = semantic.text_of(facts.intent);
                // At most one model run per core at a time, and a bounded wait for a turn:
                // a flood of never-seen intents must not take every thread of the blocking
                // pool, nor queue forever.
                let permit = tokio::time::timeout(
                    SEMANTIC_QUEUE_WAIT,
                    Arc::clone(&self.semantic_slots).acquire_owned(),
                )
                .await;
                let Ok(Ok(permit)) = permit else {
                    let refusal = Refusal::new(
                        Outcome::Overloaded,
                        format!(
                            "semantic routing is saturated: no turn within {}s; retry later",
                            SEMANTIC_QUEUE_WAIT.as_secs()
                        ),
                    );
                    return Err(audit.refused(Decision::Error, None, None, refusal));
                };
                let choice = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    semantic.choose(&text, &candidates)
                })
                .await;
                match choice {
                    Ok(Ok(index)) => snapshot.policy.router.routed(index),
                    Ok(Err(why)) => {
                        return Err(audit.policy(Policy::no_route(facts, Some(&why))));
                    }
                    Err(e) => {
                        let why = format!("the matcher failed: {e}");
                        return Err(audit.policy(Policy::no_route(facts, Some(&why))));
                    }
                }
            }
        };
        let decision = snapshot.policy.authorize(caller, facts, routed, |name| {
            snapshot.services.get(name).map(|s| s.name())
        });
        match decision {
            Ok(allowed) => {
                audit.allowed(&allowed);
                tracing::debug!(
                    identity = %caller.id(),
                    destination = facts.destination,
                    intent = %IntentDisplay(facts.intent),
                    service = allowed.service,
                    route = %allowed.route.map(|r| r.to_string()).unwrap_or_default(),
                    rule = allowed.rule,
                    "request allowed"
                );
                let timeout = allowed.timeout;
                snapshot
                    .services
                    .get(allowed.service)
                    .cloned()
                    .map(|service| Admitted { service, timeout })
                    .ok_or_else(|| Denied {
                        refusal: Refusal::new(
                            Outcome::InternalError,
                            format!("service `{}` vanished", allowed.service),
                        ),
                        service_label: UNKNOWN_SERVICE.to_owned(),
                    })
            }
            Err(refused) => Err(audit.policy(refused)),
        }
    }

    /// The metrics label for a destination: its name if it is a service, else `unknown`.
    pub(crate) fn service_label(&self, destination: &str) -> String {
        self.snapshot.load().services.label(destination).to_owned()
    }

    /// Records what became of a request whose head arrived at `started`: metrics, and the
    /// caller's reputation (isolation).
    pub(crate) fn record(&self, identity: &str, service: &str, status: Status, started: Instant) {
        self.metrics
            .request(identity, service, status, started.elapsed());
        let outcome = match status {
            // The upstream's answer, or its failure, is not the caller's doing.
            Status::Http(_)
            | Status::Outcome(
                Outcome::Forwarded
                | Outcome::UpstreamUnreachable
                | Outcome::UpstreamTimeout
                | Outcome::Overloaded
                | Outcome::InternalError,
            ) => RequestOutcome::Ok,
            // Refusals the isolation itself caused must not prolong it.
            Status::Outcome(Outcome::Isolated) => return,
            Status::Outcome(Outcome::DeniedByPolicy | Outcome::NoRoute | Outcome::RateLimited) => {
                RequestOutcome::Denied
            }
            Status::Outcome(_) | Status::Cancelled => RequestOutcome::Error,
        };
        if let Some(event) = self.isolation.record(identity, outcome, Instant::now()) {
            self.metrics.isolated(&event.identity);
            tracing::warn!(
                identity = %event.identity,
                cooldown_secs = event.until.saturating_duration_since(Instant::now()).as_secs(),
                "caller isolated: {}", event.reason
            );
        }
    }

    /// The metrics in OpenMetrics text, with the gauges whose owners hold the truth
    /// (isolations, audit drops, upstream breakers) read now.
    pub(crate) fn encode_metrics(&self) -> String {
        let now = Instant::now();
        self.metrics
            .set_isolated_identities(self.isolation.isolated_count(now));
        if let Some(audit) = &self.audit {
            self.metrics.set_audit_dropped(audit.dropped());
        }
        let snapshot = self.snapshot.load();
        self.metrics
            .upstreams(snapshot.services.upstream_status(now));
        self.metrics.encode()
    }

    pub(crate) fn envelope_timeout(&self) -> Duration {
        self.timeouts.envelope
    }
}

/// Logs and audits the decisions on one request.
struct Audit<'a> {
    shared: &'a Shared,
    caller: &'a Caller,
    facts: &'a RequestFacts<'a>,
    request_id: &'a str,
}

impl Audit<'_> {
    fn entry(&self, decision: Decision) -> AuditEntry {
        AuditEntry {
            time: SystemTime::now(),
            identity: self.caller.id_str().to_owned(),
            intent: self.facts.intent.map(|i| {
                IntentDisplay(Some(i))
                    .to_string()
                    .trim_matches('`')
                    .to_owned()
            }),
            destination: self.facts.destination.to_owned(),
            route: None,
            service: None,
            decision,
            rule: None,
            reason: None,
            request_id: (!self.request_id.is_empty()).then(|| self.request_id.to_owned()),
            status: None,
        }
    }

    fn allowed(&self, allowed: &Allowed<'_>) {
        if let Some(audit) = &self.shared.audit {
            let mut e = self.entry(Decision::Allow);
            e.route = allowed
                .route
                .map(|r| r.to_string().trim_matches('`').to_owned());
            e.service = Some(allowed.service.to_owned());
            e.rule = Some(
                allowed
                    .rule_name
                    .map_or_else(|| format!("#{}", allowed.rule), str::to_owned),
            );
            audit.record(e);
        }
    }

    /// A refusal by routing or access rules.
    fn policy(&self, refused: Refused<'_>) -> Denied {
        let decision = match refused.refusal.outcome {
            Outcome::DeniedByPolicy => Decision::Deny,
            Outcome::NoRoute => Decision::NoRoute,
            _ => Decision::Error,
        };
        let route = refused
            .route
            .map(|r| r.to_string().trim_matches('`').to_owned());
        let mut denied = self.refused(decision, route, refused.rule, refused.refusal);
        if let Some(service) = refused.service {
            service.clone_into(&mut denied.service_label);
        }
        denied
    }

    fn refused(
        &self,
        decision: Decision,
        route: Option<String>,
        rule: Option<String>,
        refusal: Refusal,
    ) -> Denied {
        tracing::info!(
            identity = %self.caller.id(),
            destination = self.facts.destination,
            intent = %IntentDisplay(self.facts.intent),
            outcome = refusal.outcome.as_str(),
            reason = %refusal.reason,
            "request refused"
        );
        if let Some(audit) = &self.shared.audit {
            let mut e = self.entry(decision);
            e.route = route;
            e.rule = rule;
            e.reason = Some(refusal.reason.clone());
            e.status = Some(refusal.outcome.suggested_http_status());
            audit.record(e);
        }
        Denied {
            service_label: UNKNOWN_SERVICE.to_owned(),
            refusal,
        }
    }
}
