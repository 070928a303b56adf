//! What every request handler shares: the current policy snapshot (hot-swappable), the
//! upstream client, metrics. The tunnel and the dev-mode paths differ only in how they learn
//! who is calling and how they answer; the decision and the forwarding are the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_certs::TrustDomain;
use aimux_wire::{Limits, Outcome};
use arc_swap::ArcSwap;

use crate::config::Timeouts;
use crate::forward::{Forwarder, Service, Services};
use crate::metrics::{Metrics, Status, UNKNOWN_SERVICE};
use crate::policy::route::Resolution;
use crate::policy::semantic::SemanticRouter;
use crate::policy::{Caller, IntentDisplay, Policy, Refusal, Refused, RequestFacts};

/// The part of the configuration a reload replaces as a whole: routes, access rules,
/// services and the semantic matcher. Requests in flight keep the snapshot they started
/// with (an `Arc`), so a reload never changes a decision half-way.
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
    ) -> Result<Admitted, Denied> {
        let snapshot = self.snapshot.load_full();
        let is_service = |name: &str| snapshot.services.get(name).is_some();
        let routed = match snapshot.policy.route(facts, is_service) {
            Resolution::Routed(routed) => routed,
            Resolution::NoRoute => {
                return Err(self.refused(caller, facts, Policy::no_route(facts, None)));
            }
            Resolution::Semantic(candidates) => {
                let Some(semantic) = snapshot.semantic.clone() else {
                    let why = "semantic routes are configured but no matcher is loaded";
                    return Err(self.refused(caller, facts, Policy::no_route(facts, Some(why))));
                };
                let text = semantic.text_of(facts.intent);
                let choice =
                    tokio::task::spawn_blocking(move || semantic.choose(&text, &candidates)).await;
                match choice {
                    Ok(Ok(index)) => snapshot.policy.router.routed(index),
                    Ok(Err(why)) => {
                        return Err(self.refused(
                            caller,
                            facts,
                            Policy::no_route(facts, Some(&why)),
                        ));
                    }
                    Err(e) => {
                        let why = format!("the matcher failed: {e}");
                        return Err(self.refused(
                            caller,
                            facts,
                            Policy::no_route(facts, Some(&why)),
                        ));
                    }
                }
            }
        };
        let decision = snapshot.policy.authorize(caller, facts, routed, |name| {
            snapshot.services.get(name).map(|s| s.name())
        });
        match decision {
            Ok(allowed) => {
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
            Err(refused) => Err(self.refused(caller, facts, refused)),
        }
    }

    fn refused(&self, caller: &Caller, facts: &RequestFacts<'_>, refused: Refused<'_>) -> Denied {
        tracing::info!(
            identity = %caller.id(),
            destination = facts.destination,
            intent = %IntentDisplay(facts.intent),
            outcome = refused.refusal.outcome.as_str(),
            reason = %refused.refusal.reason,
            "request refused"
        );
        Denied {
            service_label: refused.service.unwrap_or(UNKNOWN_SERVICE).to_owned(),
            refusal: refused.refusal,
        }
    }

    /// The metrics label for a destination: its name if it is a service, else `unknown`.
    pub(crate) fn service_label(&self, destination: &str) -> String {
        self.snapshot.load().services.label(destination).to_owned()
    }

    /// Records what became of a request whose head arrived at `started`.
    pub(crate) fn record(&self, identity: &str, service: &str, status: Status, started: Instant) {
        self.metrics
            .request(identity, service, status, started.elapsed());
    }

    pub(crate) fn envelope_timeout(&self) -> Duration {
        self.timeouts.envelope
    }
}
