//! Building a policy snapshot from configuration, at startup and on every reload, and
//! swapping it in ([`Reloader`]). A snapshot is built and checked in full before it is
//! swapped in, so an invalid configuration never serves a single request.

use std::sync::Arc;

use tracing::{info, warn};

use crate::config::{PolicyConfig, Timeouts};
use crate::error::GatewayError;
use crate::forward::Services;
use crate::policy::Policy;
use crate::policy::access::AccessPolicy;
use crate::policy::route::{self, Router};
use crate::policy::semantic::SemanticRouter;
use crate::shared::{Shared, Snapshot};

/// Builds and checks a snapshot: every route targets a service, no two rule routes are
/// ambiguous, the semantic matcher loads. Services' TLS clients connect within
/// `timeouts.connect`.
pub(crate) fn build(
    config: PolicyConfig,
    timeouts: &Timeouts,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, GatewayError> {
    config.rate_limits.validate()?;
    if let Some(isolation) = &config.isolation {
        isolation.validate()?;
    }
    let services = Services::from_config(
        &config.services,
        timeouts.connect,
        previous.map(|p| &p.services),
    )?;
    let label = |i: usize| {
        config.routes[i]
            .name
            .as_ref()
            .map_or_else(|| format!("#{}", i + 1), |n| format!("`{n}`"))
    };
    if let Some(c) = route::conflicts(&config.routes).first() {
        return Err(GatewayError::AmbiguousRoutes {
            first: label(c.first),
            second: label(c.second),
        });
    }
    let router = Router::new(config.routes);
    for (label, route) in router.labelled() {
        if services.get(&route.to).is_none() {
            return Err(GatewayError::UnknownRouteTarget {
                route: label.to_string(),
                to: route.to.clone(),
            });
        }
    }
    let access = AccessPolicy::new(config.access);
    for (i, rule) in access.rules().iter().enumerate() {
        for service in rule.to.iter().flatten() {
            if service.is_literal() && services.get(service.as_str()).is_none() {
                warn!(
                    "access rule #{} names service `{service}`, which is not configured: \
                     that part of the rule can never match",
                    i + 1
                );
            }
        }
    }
    if access.rules().is_empty() {
        warn!("no access rules are configured: every request will be denied");
    }
    let semantic = SemanticRouter::new(&config.semantic, &router)
        .map_err(|e| GatewayError::Semantic(e.to_string()))?
        .map(Arc::new);
    if let Some(s) = &semantic {
        info!("semantic routing: {}", s.backend());
    }
    Ok(Snapshot {
        policy: Policy { router, access },
        services,
        semantic,
    })
}

/// Replaces the policy of a running gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Reloader {
    pub(crate) shared: Arc<Shared>,
}

impl Reloader {
    /// Builds a snapshot from `config` and, if it is valid, swaps it in: new requests use
    /// it at once, requests in flight finish under the old one, and no sidecar connection
    /// is touched; services whose configuration did not change keep their state. On error
    /// the running snapshot stays.
    pub fn reload(&self, config: PolicyConfig) -> Result<(), GatewayError> {
        let (services, routes, rules) = (
            config.services.len(),
            config.routes.len(),
            config.access.len(),
        );
        let (rate_limits, isolation) = (config.rate_limits.clone(), config.isolation);
        // Unchanged services carry over whole (breakers, pools, connections).
        let current = self.shared.snapshot.load();
        let snapshot = build(config, &self.shared.timeouts, Some(&current))?;
        // Validated by `build`: these cannot fail now, so the three change together.
        self.shared.rate.update(&rate_limits)?;
        self.shared.isolation.update(isolation)?;
        self.shared.snapshot.store(Arc::new(snapshot));
        info!(
            services,
            routes,
            access_rules = rules,
            "configuration reloaded"
        );
        Ok(())
    }
}
