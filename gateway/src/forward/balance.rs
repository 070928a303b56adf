//! Spreading a service's requests over its upstreams (round-robin or least-request) and a
//! circuit breaker per upstream that takes a failing upstream out of rotation for a while.
//!
//! The logic is pure: the time is passed in and nothing sleeps or needs a runtime.
//!
//! **Breaker.** Closed: requests flow; `consecutive_failures` failures in a row open it.
//! Open: no request goes to the upstream for `cooldown`. Then half-open: exactly one trial
//! request at a time is let through; its success closes the breaker, its failure opens it
//! for another cooldown. What counts as a failure is the forwarder's call (see
//! [`Lease::failed`]): a connection failure, a response-head timeout, or a 502/503/504 from
//! the upstream, the answers of an upstream that is down, overloaded or restarting. Any other
//! status is a success: a 500 or a 404 is the application speaking, not a dead upstream.
//! A request that ends without a verdict (the caller gave up, its body failed) changes
//! nothing, but gives a half-open trial slot back.
//!
//! **Outstanding requests.** Every pick returns a [`Lease`] that counts one request in flight
//! on that upstream until it is dropped; the forwarder keeps it in the response body, so a
//! streamed response counts until its last byte.
//!
//! **Request limit.** An upstream with `max_requests` requests in flight is skipped, like one
//! whose breaker is open; when every upstream is full the pick fails at once with
//! [`Unavailable::AtLimit`] (Envoy's `max_requests` circuit breaker). Queueing instead would
//! only move the overload into the gateway's memory and the caller's latency.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{Balance, BreakerConfig};

/// Least-request scans services with at most this many upstreams whole; above it, it
/// compares two random ones (power of two choices), which is O(1) and, unlike "always the
/// global minimum", does not send a burst of concurrent picks all to the same upstream.
const FULL_SCAN_MAX: usize = 4;

/// Far enough for any cooldown that would overflow `Instant`.
const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The longest failure cause an upstream keeps (bytes); longer ones are cut at a character
/// boundary. Causes quote upstreams' answers, so they are bounded like everything else.
const MAX_CAUSE: usize = 512;

/// The state of an upstream's circuit breaker, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    /// Requests flow.
    Closed,
    /// No requests until the cooldown ends.
    Open,
    /// The cooldown is over: one trial request at a time.
    HalfOpen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_out: bool },
}

/// A change of breaker state worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Opened,
    Reopened,
    Closed,
}

impl Breaker {
    /// Lets a request through if the state allows it: `Some(true)` if it is the half-open
    /// trial.
    fn admit(&mut self, now: Instant) -> Option<bool> {
        match *self {
            Self::Closed { .. } => Some(false),
            Self::Open { until } if now < until => None,
            Self::Open { .. } | Self::HalfOpen { trial_out: false } => {
                *self = Self::HalfOpen { trial_out: true };
                Some(true)
            }
            Self::HalfOpen { trial_out: true } => None,
        }
    }

    /// Whether [`Breaker::admit`] would let a request through, without changing anything.
    fn available(&self, now: Instant) -> bool {
        match *self {
            Self::Closed { .. } => true,
            Self::Open { until } => now >= until,
            Self::HalfOpen { trial_out } => !trial_out,
        }
    }

    fn state(&self, now: Instant) -> BreakerState {
        match *self {
            Self::Closed { .. } => BreakerState::Closed,
            Self::Open { until } if now < until => BreakerState::Open,
            Self::Open { .. } | Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    fn success(&mut self, trial: bool) -> Option<Transition> {
        match self {
            Self::Closed { failures } => {
                *failures = 0;
                None
            }
            Self::HalfOpen { .. } if trial => {
                *self = Self::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            // Requests admitted before the breaker opened say nothing about now.
            Self::HalfOpen { .. } | Self::Open { .. } => None,
        }
    }

    fn failure(&mut self, trial: bool, now: Instant, config: &BreakerConfig) -> Option<Transition> {
        let until = now
            .checked_add(config.cooldown)
            .or_else(|| now.checked_add(FAR_FUTURE))
            .unwrap_or(now);
        match self {
            Self::Closed { failures } => {
                *failures = failures.saturating_add(1);
                (*failures >= config.consecutive_failures).then(|| {
                    *self = Self::Open { until };
                    Transition::Opened
                })
            }
            Self::HalfOpen { .. } if trial => {
                *self = Self::Open { until };
                Some(Transition::Reopened)
            }
            Self::HalfOpen { .. } | Self::Open { .. } => None,
        }
    }

    /// A trial that ended without a verdict frees the slot for the next request.
    fn abandon(&mut self, trial: bool) {
        if trial && matches!(self, Self::HalfOpen { .. }) {
            *self = Self::HalfOpen { trial_out: false };
        }
    }
}

/// The shared state of one upstream.
#[derive(Debug)]
struct Endpoint {
    outstanding: AtomicUsize,
    /// Most requests in flight at once (at least 1).
    max_requests: usize,
    breaker: Mutex<Breaker>,
    config: BreakerConfig,
    /// "upstream URL of service `NAME`", for logs.
    label: String,
    /// When and why it last failed, so that a refusal because its breaker is open can say
    /// what opened it.
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl Endpoint {
    fn enabled(&self) -> bool {
        self.config.consecutive_failures > 0
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        // The breaker is a plain enum: a panic elsewhere cannot leave it half-written.
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn available(&self, now: Instant) -> bool {
        !self.enabled() || self.breaker().available(now)
    }

    fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    fn full(&self) -> bool {
        self.outstanding() >= self.max_requests
    }

    /// Counts one more request in flight unless the upstream is at its limit. A
    /// compare-and-swap, so concurrent picks can never push it past the limit.
    fn reserve(&self) -> bool {
        self.outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_requests).then_some(n + 1)
            })
            .is_ok()
    }

    fn last_failure(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, transition: Transition, cause: &str) {
        let cooldown = self.config.cooldown.as_secs_f64();
        match transition {
            Transition::Opened => tracing::warn!(
                "{}: circuit breaker opened after {} consecutive failures (the last: {cause}); \
                 no requests for {cooldown} s",
                self.label,
                self.config.consecutive_failures
            ),
            Transition::Reopened => tracing::warn!(
                "{}: the trial request failed ({cause}); circuit breaker open for another \
                 {cooldown} s",
                self.label
            ),
            Transition::Closed => {
                tracing::info!(
                    "{}: the trial request succeeded; circuit breaker closed",
                    self.label
                );
            }
        }
    }
}

/// One request in flight on an upstream: counted as outstanding until dropped. Report how
/// it went with [`Lease::succeeded`] or [`Lease::failed`] once the response head (or the
/// failure) is known; the first report counts, later ones are ignored.
#[derive(Debug)]
pub(crate) struct Lease {
    endpoint: Arc<Endpoint>,
    index: usize,
    trial: bool,
    settled: bool,
}

impl Lease {
    /// The upstream's position in the service's list.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// The upstream answered.
    pub(crate) fn succeeded(&mut self) {
        self.settle(|b, trial| b.success(trial), "");
    }

    /// The upstream failed: connection failure, timeout, or a 502/503/504. `cause` says
    /// what happened; it is kept for the refusals and logs of an open breaker.
    pub(crate) fn failed(&mut self, now: Instant, cause: &str) {
        let config = self.endpoint.config;
        if self.endpoint.enabled() && !self.settled {
            *self.endpoint.last_failure() = Some((now, bounded(cause).to_owned()));
        }
        self.settle(|b, trial| b.failure(trial, now, &config), cause);
    }

    fn settle(
        &mut self,
        report: impl FnOnce(&mut Breaker, bool) -> Option<Transition>,
        cause: &str,
    ) {
        if std::mem::replace(&mut self.settled, true) || !self.endpoint.enabled() {
            return;
        }
        let transition = report(&mut self.endpoint.breaker(), self.trial);
        if let Some(t) = transition {
            self.endpoint.log(t, bounded(cause));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
        if !self.settled && self.trial {
            self.endpoint.breaker().abandon(true);
        }
    }
}

/// `cause` cut to [`MAX_CAUSE`] bytes at a character boundary.
fn bounded(cause: &str) -> &str {
    if cause.len() <= MAX_CAUSE {
        return cause;
    }
    let end = (0..=MAX_CAUSE)
        .rev()
        .find(|&i| cause.is_char_boundary(i))
        .unwrap_or(0);
    cause.get(..end).unwrap_or_default()
}

/// Why no upstream could be picked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unavailable {
    /// The service has no upstream at all (configuration refuses this).
    #[error("it has no upstream")]
    NoUpstreams,
    /// Every breaker is open, or half-open with its trial under way.
    #[error(
        "{} after repeated failures{}; {}",
        if *.upstreams == 1 { "its upstream's circuit breaker is open".to_owned() }
        else { format!("the circuit breakers of all {upstreams} of its upstreams are open") },
        match .last_failure {
            Some(cause) => format!(" (the last: {cause})"),
            None => String::new(),
        },
        match .retry_in {
            Some(d) => format!("the first is tried again in {:.1} s", d.as_secs_f64()),
            None => "trial requests are under way".to_owned(),
        }
    )]
    AllOpen {
        upstreams: usize,
        /// When the first open breaker half-opens; `None` if all are half-open with a trial
        /// in flight.
        retry_in: Option<Duration>,
        /// The most recent failure among them, as the forwarder described it.
        last_failure: Option<String>,
    },
    /// Every upstream that would take a request has `limit` requests in flight already.
    #[error(
        "{} at {} limit of {limit} requests in flight (max_requests); retry later, or raise \
         max_requests if the upstreams can take more",
        match (.full, .total) {
            (_, 1) => "its upstream is".to_owned(),
            (f, t) if f == t => format!("all {t} of its upstreams are"),
            (f, t) => format!("each of its upstreams whose circuit breaker lets requests \
                               through ({f} of {t}) is"),
        },
        if *.full > 1 && .full == .total { "their" } else { "its" }
    )]
    AtLimit {
        /// Upstreams at their limit (the others' breakers are open).
        full: usize,
        /// Upstreams of the service.
        total: usize,
        limit: usize,
    },
}

/// What the metrics show of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointStatus {
    pub(crate) breaker: BreakerState,
    pub(crate) outstanding: usize,
}

/// The balancer of one service: picks an upstream for each request.
#[derive(Debug)]
pub(crate) struct Balancer {
    balance: Balance,
    endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
    /// splitmix64 state: cheap, lock-free randomness for the two choices.
    rng: AtomicU64,
}

impl Balancer {
    /// A balancer over `upstreams` (their URLs, for logs), all breakers closed, each
    /// upstream taking at most `max_requests` requests at once (0 counts as 1).
    pub(crate) fn new<'a>(
        service: &str,
        upstreams: impl IntoIterator<Item = &'a str>,
        balance: Balance,
        breaker: BreakerConfig,
        max_requests: u32,
    ) -> Self {
        Self::reusing(service, upstreams, balance, breaker, max_requests, None)
    }

    /// Like [`Balancer::new`], but an upstream that `previous` (this service's balancer
    /// before a reload) also had, with the same breaker settings and request limit, keeps
    /// its state: breaker, requests in flight (whose leases still point at it) and last
    /// failure. Adding an upstream to a list then does not forget that another is down.
    pub(crate) fn reusing<'a>(
        service: &str,
        upstreams: impl IntoIterator<Item = &'a str>,
        balance: Balance,
        breaker: BreakerConfig,
        max_requests: u32,
        previous: Option<&Balancer>,
    ) -> Self {
        let max_requests = usize::try_from(max_requests).unwrap_or(usize::MAX).max(1);
        let endpoints = upstreams
            .into_iter()
            .map(|url| {
                let label = format!("upstream {url} of service `{service}`");
                let kept = previous.and_then(|p| {
                    p.endpoints.iter().find(|e| {
                        e.label == label && e.config == breaker && e.max_requests == max_requests
                    })
                });
                match kept {
                    Some(endpoint) => Arc::clone(endpoint),
                    None => Arc::new(Endpoint {
                        outstanding: AtomicUsize::new(0),
                        max_requests,
                        breaker: Mutex::new(Breaker::Closed { failures: 0 }),
                        config: breaker,
                        label,
                        last_failure: Mutex::new(None),
                    }),
                }
            })
            .collect();
        Self {
            balance,
            endpoints,
            next: AtomicUsize::new(0),
            rng: AtomicU64::new(RandomState::new().hash_one(service)),
        }
    }

    /// Picks an upstream whose breaker lets a request through and that is below its
    /// request limit.
    pub(crate) fn pick(&self, now: Instant) -> Result<Lease, Unavailable> {
        let n = self.endpoints.len();
        if n == 0 {
            return Err(Unavailable::NoUpstreams);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let preferred = match self.balance {
            Balance::RoundRobin => None,
            Balance::LeastRequest => self.least_loaded(start, now),
        };
        if let Some(lease) = preferred.and_then(|i| self.admit(i, now)) {
            return Ok(lease);
        }
        // Round robin skipping unavailable upstreams; also where least-request lands when
        // another request took its choice's half-open trial in between.
        (0..n)
            .find_map(|k| self.admit((start + k) % n, now))
            .ok_or_else(|| self.unavailable(now))
    }

    /// The breaker state and requests in flight of each upstream, in configuration order.
    pub(crate) fn status(&self, now: Instant) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|e| EndpointStatus {
                breaker: e.breaker().state(now),
                outstanding: e.outstanding(),
            })
            .collect()
    }

    fn least_loaded(&self, start: usize, now: Instant) -> Option<usize> {
        let n = self.endpoints.len();
        let available = |i: usize| {
            let e = &self.endpoints[i];
            !e.full() && e.available(now)
        };
        let load = |i: usize| self.endpoints[i].outstanding();
        // The first minimum from `start` on: ties go round robin.
        let scan = || {
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| available(i))
                .min_by_key(|&i| load(i))
        };
        if n <= FULL_SCAN_MAX {
            return scan();
        }
        let r = self.random();
        // Two distinct indices: `b` skips over `a`. `n` is small, so the casts are exact.
        let a = (r % n as u64) as usize;
        let b = ((r >> 32) % (n as u64 - 1)) as usize;
        let b = if b >= a { b + 1 } else { b };
        match (available(a), available(b)) {
            (true, true) => Some(if load(b) < load(a) { b } else { a }),
            (true, false) => Some(a),
            (false, true) => Some(b),
            (false, false) => scan(),
        }
    }

    fn admit(&self, index: usize, now: Instant) -> Option<Lease> {
        let endpoint = self.endpoints.get(index)?;
        // The slot first: a half-open breaker must not hand its one trial to a request
        // that then finds the upstream full.
        if !endpoint.reserve() {
            return None;
        }
        let trial = if endpoint.enabled() {
            let Some(trial) = endpoint.breaker().admit(now) else {
                endpoint.outstanding.fetch_sub(1, Ordering::Relaxed);
                return None;
            };
            trial
        } else {
            false
        };
        if trial {
            tracing::info!("{}: cooldown over; sending a trial request", endpoint.label);
        }
        Some(Lease {
            endpoint: Arc::clone(endpoint),
            index,
            trial,
            settled: false,
        })
    }

    fn unavailable(&self, now: Instant) -> Unavailable {
        // An upstream that is up but full makes this an overload, not an outage.
        let full_but_up = self
            .endpoints
            .iter()
            .filter(|e| e.full() && e.available(now))
            .count();
        if full_but_up > 0 {
            return Unavailable::AtLimit {
                full: full_but_up,
                total: self.endpoints.len(),
                limit: self.endpoints.first().map_or(0, |e| e.max_requests),
            };
        }
        let retry_in = self
            .endpoints
            .iter()
            .filter_map(|e| match *e.breaker() {
                Breaker::Open { until } => Some(until.saturating_duration_since(now)),
                _ => None,
            })
            .min();
        let last_failure = self
            .endpoints
            .iter()
            .filter_map(|e| e.last_failure().clone())
            .max_by_key(|(at, _)| *at)
            .map(|(_, cause)| cause);
        Unavailable::AllOpen {
            upstreams: self.endpoints.len(),
            retry_in,
            last_failure,
        }
    }

    fn random(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .rng
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "balance_tests.rs"]
mod tests;
