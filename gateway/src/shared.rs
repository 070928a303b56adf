//! What every request handler shares: policy, services, the upstream client, metrics.
//! The QUIC and the dev-mode paths differ only in how they learn who is calling and how
//! they answer; the decision and the forwarding are the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aimux_certs::TrustDomain;
use aimux_wire::Limits;

use crate::config::Timeouts;
use crate::forward::{Forwarder, Service, Services};
use crate::metrics::{Metrics, Status, UNKNOWN_SERVICE};
use crate::policy::{Caller, Policy, Refusal, RequestFacts};

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) policy: Policy,
    pub(crate) services: Services,
    pub(crate) forwarder: Forwarder,
    pub(crate) metrics: Metrics,
    pub(crate) timeouts: Timeouts,
    pub(crate) limits: Limits,
}

/// A request refused by policy, with the metrics label of the service concerned.
#[derive(Debug)]
pub(crate) struct Denied {
    pub(crate) refusal: Refusal,
    pub(crate) service_label: String,
}

impl Shared {
    /// Routes the request and checks access. On success returns the service to forward to.
    pub(crate) fn admit(
        &self,
        caller: &Caller,
        facts: &RequestFacts<'_>,
    ) -> Result<Arc<Service>, Denied> {
        let decision = self.policy.decide(caller, facts, |name| {
            self.services.get(name).map(|s| s.name())
        });
        match decision {
            Ok(allowed) => {
                tracing::debug!(
                    identity = %caller.id(),
                    destination = facts.destination,
                    service = allowed.service,
                    route = %allowed.route.map(|r| r.to_string()).unwrap_or_default(),
                    rule = allowed.rule,
                    "request allowed"
                );
                self.services
                    .get(allowed.service)
                    .cloned()
                    .ok_or_else(|| Denied {
                        refusal: Refusal::new(
                            aimux_wire::Outcome::InternalError,
                            format!("service `{}` vanished", allowed.service),
                        ),
                        service_label: UNKNOWN_SERVICE.to_owned(),
                    })
            }
            Err(refused) => {
                tracing::info!(
                    identity = %caller.id(),
                    destination = facts.destination,
                    outcome = refused.refusal.outcome.as_str(),
                    reason = %refused.refusal.reason,
                    "request refused"
                );
                Err(Denied {
                    service_label: refused.service.unwrap_or(UNKNOWN_SERVICE).to_owned(),
                    refusal: refused.refusal,
                })
            }
        }
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
