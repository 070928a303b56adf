//! Rate limiting per caller identity: a token bucket per identity, refilled at the
//! `rate_per_sec` of the first rule that matches the caller and holding at most `burst`
//! tokens; each request takes one. A caller no rule matches is not limited.
//!
//! Rules match the caller's full SPIFFE ID or its agent name with globs (`*`, `?`), so
//! `"search-*"` and `"spiffe://mesh.local/agent/search-*"` mean the same agents. The rule an
//! identity falls under is looked up once and cached in its bucket; [`RateLimiter::update`]
//! (hot reload) invalidates those lookups, and a bucket whose identity is still covered
//! keeps its tokens (capped at the new burst), so a reload neither refills nor empties it.

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{IdleMap, LimitConfigError, MAX_TRACKED, Worth};
use crate::intent_pattern::Glob;

/// Rate limits: the first rule whose pattern matches a caller applies to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitConfig {
    /// In order; no rules means no rate limiting.
    pub rules: Vec<RateRule>,
}

/// One rate-limit rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRule {
    /// Globs over agent names or full SPIFFE IDs; the rule applies when any matches.
    pub identities: Vec<String>,
    /// Sustained requests per second allowed to each matching identity (each has its own
    /// bucket).
    pub rate_per_sec: f64,
    /// Requests an identity may send at once after being idle: the bucket's size.
    pub burst: u32,
}

impl RateLimitConfig {
    /// Checks every rule; the binary calls this when it loads the mesh file.
    pub fn validate(&self) -> Result<(), LimitConfigError> {
        for (i, r) in self.rules.iter().enumerate() {
            let rule = i + 1;
            if r.identities.is_empty() {
                return Err(LimitConfigError::NoIdentities { rule });
            }
            if !(r.rate_per_sec.is_finite() && r.rate_per_sec > 0.0) {
                return Err(LimitConfigError::BadRate {
                    rule,
                    rate: r.rate_per_sec,
                });
            }
            if r.burst == 0 {
                return Err(LimitConfigError::ZeroBurst { rule });
            }
        }
        Ok(())
    }
}

/// A refused request: how long until the caller's bucket has a token again, and the limit
/// it ran into (for the reason given to the agent).
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error(
    "rate limit of {rate_per_sec} requests/s (burst {burst}) exceeded; retry in {:.2} s",
    wait.as_secs_f64()
)]
pub(crate) struct RetryAfter {
    pub(crate) wait: Duration,
    pub(crate) rate_per_sec: f64,
    pub(crate) burst: u32,
}

impl RetryAfter {
    /// The wait in whole seconds, rounded up, for a `Retry-After` header (at least 1: a
    /// `Retry-After: 0` would invite an immediate retry that is refused again).
    pub(crate) fn header_secs(&self) -> u64 {
        let secs = self.wait.as_secs();
        let secs = if self.wait.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        };
        secs.max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Limit {
    rate: f64,
    burst: u32,
}

#[derive(Debug)]
struct Rule {
    patterns: Vec<Glob>,
    limit: Limit,
}

impl Rule {
    fn matches(&self, identity: &str, agent: Option<&str>) -> bool {
        self.patterns
            .iter()
            .any(|p| p.matches(identity) || agent.is_some_and(|a| p.matches(a)))
    }
}

/// The state of one identity.
#[derive(Debug)]
struct Bucket {
    /// The configuration generation `limit` was looked up in.
    generation: u64,
    /// `None`: no rule covers the identity (cached so the globs are not matched again).
    limit: Option<Limit>,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// The tokens at `now`, without taking any.
    fn level(&self, limit: Limit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * limit.rate).min(f64::from(limit.burst))
    }

    /// A full bucket (or an unlimited identity) would be recreated as it is.
    fn worth(&self, now: Instant) -> Worth {
        match self.limit {
            Some(limit) if self.level(limit, now) < f64::from(limit.burst) => Worth::Some,
            _ => Worth::Nothing,
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), RetryAfter> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        self.tokens = self.level(limit, now);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait =
            Duration::try_from_secs_f64((1.0 - self.tokens) / limit.rate).unwrap_or(Duration::MAX);
        Err(RetryAfter {
            wait,
            rate_per_sec: limit.rate,
            burst: limit.burst,
        })
    }
}

#[derive(Debug)]
struct Inner {
    rules: Vec<Rule>,
    generation: u64,
    buckets: IdleMap<Bucket>,
}

/// The rate limiter: one token bucket per caller identity.
pub(crate) struct RateLimiter {
    inner: Mutex<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("RateLimiter")
            .field("rules", &inner.rules.len())
            .field("tracked", &inner.buckets.len())
            .finish()
    }
}

fn compile(config: &RateLimitConfig) -> Result<Vec<Rule>, LimitConfigError> {
    config.validate()?;
    Ok(config
        .rules
        .iter()
        .map(|r| Rule {
            patterns: r.identities.iter().map(|p| Glob::new(p)).collect(),
            limit: Limit {
                rate: r.rate_per_sec,
                burst: r.burst,
            },
        })
        .collect())
}

impl RateLimiter {
    pub(crate) fn new(config: &RateLimitConfig) -> Result<Self, LimitConfigError> {
        Self::with_max_tracked(config, MAX_TRACKED)
    }

    fn with_max_tracked(config: &RateLimitConfig, max: usize) -> Result<Self, LimitConfigError> {
        Ok(Self {
            inner: Mutex::new(Inner {
                rules: compile(config)?,
                generation: 0,
                buckets: IdleMap::new(max),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a token from `identity`'s bucket, or says how long until there is one.
    /// `agent_name` is the `NAME` of `spiffe://DOMAIN/agent/NAME`, if the caller is an agent
    /// of the mesh.
    pub(crate) fn check(
        &self,
        identity: &str,
        agent_name: Option<&str>,
        now: Instant,
    ) -> Result<(), RetryAfter> {
        let mut guard = self.lock();
        let Inner {
            rules,
            generation,
            buckets,
        } = &mut *guard;
        if rules.is_empty() {
            return Ok(());
        }
        let generation = *generation;
        let limit = || {
            rules
                .iter()
                .find(|r| r.matches(identity, agent_name))
                .map(|r| r.limit)
        };
        let fresh = |limit: Option<Limit>| Bucket {
            generation,
            limit,
            tokens: limit.map_or(0.0, |l| f64::from(l.burst)),
            updated: now,
        };
        let bucket = match buckets.get_mut(identity, now) {
            Some(b) if b.generation == generation => b,
            Some(b) => {
                // Looked up under an older configuration: keep what the identity has used
                // if a rule still covers it.
                let new = limit();
                match (b.limit, new) {
                    (Some(old), Some(new)) => {
                        b.tokens = b.level(old, now).min(f64::from(new.burst));
                        b.updated = now;
                        b.limit = Some(new);
                        b.generation = generation;
                    }
                    _ => *b = fresh(new),
                }
                b
            }
            None => {
                let new = limit();
                match buckets.get_or_insert(identity, now, || fresh(new), |b| b.worth(now)) {
                    Some(b) => b,
                    // Unreachable (the map always has room for one); never refuse for it.
                    None => return Ok(()),
                }
            }
        };
        bucket.take(now)
    }

    /// Replaces the rules (hot reload). Buckets of identities that a rule still covers keep
    /// their tokens, capped at the new burst; on an invalid configuration nothing changes.
    pub(crate) fn update(&self, config: &RateLimitConfig) -> Result<(), LimitConfigError> {
        let rules = compile(config)?;
        let mut inner = self.lock();
        if rules.is_empty() {
            inner.buckets.clear();
        }
        inner.rules = rules;
        inner.generation = inner.generation.wrapping_add(1);
        Ok(())
    }

    /// How many identities are tracked now.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.lock().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "spiffe://mesh.local/agent/alice";

    fn rule(patterns: &[&str], rate: f64, burst: u32) -> RateRule {
        RateRule {
            identities: patterns.iter().map(|p| (*p).to_owned()).collect(),
            rate_per_sec: rate,
            burst,
        }
    }

    fn limiter(rules: Vec<RateRule>) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig { rules }).unwrap()
    }

    fn allowed(l: &RateLimiter, id: &str, agent: Option<&str>, n: usize, now: Instant) -> usize {
        (0..n).filter(|_| l.check(id, agent, now).is_ok()).count()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let l = limiter(vec![rule(&["alice"], 2.0, 5)]);
        let t0 = Instant::now();
        assert_eq!(allowed(&l, ALICE, Some("alice"), 10, t0), 5);
        let err = l.check(ALICE, Some("alice"), t0).unwrap_err();
        assert_eq!(err.wait, Duration::from_millis(500));
        assert_eq!(err.header_secs(), 1);
        assert_eq!(
            err.to_string(),
            "rate limit of 2 requests/s (burst 5) exceeded; retry in 0.50 s"
        );
        // Two tokens a second come back, never more than the burst.
        assert_eq!(
            allowed(&l, ALICE, Some("alice"), 10, t0 + Duration::from_secs(1)),
            2
        );
        assert_eq!(
            allowed(&l, ALICE, Some("alice"), 10, t0 + Duration::from_secs(60)),
            5
        );
    }

    #[test]
    fn the_first_matching_rule_applies_by_agent_name_or_spiffe_id() {
        let l = limiter(vec![
            rule(&["spiffe://mesh.local/agent/bulk-*"], 1.0, 1),
            rule(&["al?ce"], 1.0, 3),
            rule(&["*"], 1.0, 2),
        ]);
        let now = Instant::now();
        let bulk = "spiffe://mesh.local/agent/bulk-7";
        assert_eq!(allowed(&l, bulk, Some("bulk-7"), 5, now), 1);
        assert_eq!(allowed(&l, ALICE, Some("alice"), 5, now), 3);
        let other = "spiffe://other.org/workload/x";
        assert_eq!(
            allowed(&l, other, None, 5, now),
            2,
            "`*` matches the full ID"
        );
        // Without a catch-all, unmatched callers are not limited.
        let l = limiter(vec![rule(&["alice"], 1.0, 1)]);
        assert_eq!(allowed(&l, other, None, 50, now), 50);
        assert_eq!(allowed(&limiter(vec![]), ALICE, Some("alice"), 50, now), 50);
    }

    #[test]
    fn reloads_keep_the_buckets_of_identities_still_covered() {
        let l = limiter(vec![rule(&["alice", "bob"], 1.0, 10)]);
        let now = Instant::now();
        let bob = "spiffe://mesh.local/agent/bob";
        assert_eq!(allowed(&l, ALICE, Some("alice"), 8, now), 8);
        assert_eq!(allowed(&l, bob, Some("bob"), 2, now), 2);
        l.update(&RateLimitConfig {
            rules: vec![rule(&["alice"], 1.0, 4)],
        })
        .unwrap();
        // Alice had 2 tokens left: a reload does not refill her bucket.
        assert_eq!(allowed(&l, ALICE, Some("alice"), 5, now), 2);
        // Bob is no longer covered: unlimited.
        assert_eq!(allowed(&l, bob, Some("bob"), 50, now), 50);
        // Alice had 8 tokens, the new burst is 4: capped.
        let l = limiter(vec![rule(&["alice"], 1.0, 10)]);
        l.update(&RateLimitConfig {
            rules: vec![rule(&["alice"], 1.0, 4)],
        })
        .unwrap();
        assert_eq!(allowed(&l, ALICE, Some("alice"), 10, now), 4);
        // Removing every rule forgets every bucket.
        l.update(&RateLimitConfig::default()).unwrap();
        assert_eq!(l.tracked(), 0);
        assert_eq!(allowed(&l, ALICE, Some("alice"), 50, now), 50);
    }

    #[test]
    fn invalid_rules_are_refused_and_leave_the_limiter_as_it_was() {
        for (bad, message) in [
            (rule(&[], 1.0, 1), "rate-limit rule #1 names no identities"),
            (
                rule(&["a"], 0.0, 1),
                "rate_per_sec must be a positive number, not 0",
            ),
            (rule(&["a"], f64::NAN, 1), "not NaN"),
            (rule(&["a"], 1.0, 0), "burst must be at least 1"),
        ] {
            let config = RateLimitConfig { rules: vec![bad] };
            let err = RateLimiter::new(&config).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            let l = limiter(vec![rule(&["alice"], 1.0, 1)]);
            assert!(l.update(&config).is_err());
            assert_eq!(allowed(&l, ALICE, Some("alice"), 3, Instant::now()), 1);
        }
    }

    #[test]
    fn tracked_identities_are_capped_and_drained_buckets_outlive_full_ones() {
        let config = RateLimitConfig {
            rules: vec![rule(&["*"], 1.0, 2)],
        };
        let l = RateLimiter::with_max_tracked(&config, 16).unwrap();
        let now = Instant::now();
        // Alice drains her bucket; a flood of one-request identities follows, each of
        // which leaves a bucket that is not full either.
        assert_eq!(allowed(&l, ALICE, Some("alice"), 2, now), 2);
        for i in 0..1000 {
            let id = format!("spiffe://mesh.local/agent/flood-{i}");
            let _ = l.check(&id, None, now + Duration::from_millis(1));
            assert!(l.tracked() <= 16);
        }
        // Alice was the longest idle, so she went (and gets a fresh bucket).
        assert!(l.lock().buckets.get(ALICE).is_none());
        assert!(l.check(ALICE, Some("alice"), now).is_ok());
        // Later every one of those buckets has refilled: the next new identities push them
        // all out at once, rather than one at a time.
        let later = now + Duration::from_secs(5);
        for i in 0..16 {
            let _ = l.check(&format!("spiffe://mesh.local/agent/late-{i}"), None, later);
        }
        let inner = l.lock();
        assert_eq!(inner.buckets.len(), 16);
        assert!(inner.buckets.values().all(|b| b.updated == later));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let r = |ms| RetryAfter {
            wait: Duration::from_millis(ms),
            rate_per_sec: 1.0,
            burst: 1,
        };
        assert_eq!(r(0).header_secs(), 1);
        assert_eq!(r(1000).header_secs(), 1);
        assert_eq!(r(1001).header_secs(), 2);
        let l = limiter(vec![rule(&["alice"], 1e-300, 1)]);
        let now = Instant::now();
        assert!(l.check(ALICE, Some("alice"), now).is_ok());
        let err = l.check(ALICE, Some("alice"), now).unwrap_err();
        assert_eq!(err.wait, Duration::MAX, "a tiny rate does not overflow");
    }
}
