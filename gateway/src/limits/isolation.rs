//! Isolation (the "reputation engine"): a caller most of whose recent requests were denied
//! or failed is cut off for a while.
//!
//! Per identity, the outcomes of its requests over the last `window` are counted in a ring
//! of [`SLOTS`] buckets, each `window / SLOTS` wide (1 s for the default 10 s window), so the
//! window slides in tenths and costs the same few bytes whatever the traffic. When the
//! window holds at least `min_requests` requests and the share denied or failed reaches
//! `max_bad_ratio`, the identity is isolated until `now + cooldown`; after that it starts
//! again with an empty window. Requests refused *because* of an isolation are not counted
//! (the caller should not record them, and they are ignored if it does), so an isolation
//! never extends itself.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{IdleMap, LimitConfigError, MAX_TRACKED, Worth};

/// Buckets per window.
const SLOTS: usize = 10;
/// Longest window and cooldown accepted: a day is already far past any sensible setting.
const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);
/// Shortest window: below this the buckets would be narrower than timer jitter.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// When to isolate a caller. Isolation is off unless configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IsolationConfig {
    /// How far back outcomes are counted. Default 10 s.
    pub window: Duration,
    /// Fewer requests than this in the window never isolate (a single failure is not a
    /// pattern). Default 20.
    pub min_requests: u32,
    /// The share of denied or failed requests, 0 < ratio ≤ 1, that isolates. Default 0.5.
    pub max_bad_ratio: f64,
    /// How long an isolation lasts. Default 60 s.
    pub cooldown: Duration,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_requests: 20,
            max_bad_ratio: 0.5,
            cooldown: Duration::from_secs(60),
        }
    }
}

impl IsolationConfig {
    /// Checks the settings; the binary calls this when it loads the mesh file.
    pub fn validate(&self) -> Result<(), LimitConfigError> {
        let fail = |why| Err(LimitConfigError::Isolation(why));
        if self.window < MIN_WINDOW || self.window > MAX_SPAN {
            return fail("window must be between 100 ms and 24 h");
        }
        if self.cooldown.is_zero() || self.cooldown > MAX_SPAN {
            return fail("cooldown must be more than 0 and at most 24 h");
        }
        if self.min_requests == 0 {
            return fail("min_requests must be at least 1");
        }
        if !(self.max_bad_ratio > 0.0 && self.max_bad_ratio <= 1.0) {
            return fail("max_bad_ratio must be more than 0 and at most 1");
        }
        Ok(())
    }

    fn slot_width(&self) -> Duration {
        self.window / SLOTS as u32
    }
}

/// What became of a request, as isolation counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestOutcome {
    /// Forwarded and answered (whatever the status: the upstream's answer is not the
    /// caller's fault).
    Ok,
    /// Failed: a malformed request, or one the caller abandoned.
    Error,
    /// Refused by policy: denied, no route, rate limited.
    Denied,
}

/// An isolated caller: refused until `until`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("isolated: {reason}")]
pub(crate) struct Isolated {
    pub(crate) until: Instant,
    /// Why, with the counts: "12 of 20 requests in the last 10 s were denied or failed…".
    pub(crate) reason: Arc<str>,
}

impl Isolated {
    /// How long until the isolation ends, for `Retry-After`.
    pub(crate) fn retry_in(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }
}

/// An identity was just isolated: for a log line and a counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IsolationEvent {
    pub(crate) identity: String,
    pub(crate) until: Instant,
    pub(crate) reason: Arc<str>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    requests: u32,
    denied: u32,
    failed: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which bucket-width interval since the origin these counts belong to.
    tick: u64,
    counts: Counts,
}

#[derive(Debug, Clone, Default)]
struct Ring {
    slots: [Slot; SLOTS],
}

impl Ring {
    fn add(&mut self, tick: u64, outcome: RequestOutcome) {
        let slot = &mut self.slots[(tick % SLOTS as u64) as usize];
        if slot.tick != tick {
            *slot = Slot {
                tick,
                counts: Counts::default(),
            };
        }
        let c = &mut slot.counts;
        c.requests = c.requests.saturating_add(1);
        match outcome {
            RequestOutcome::Ok => {}
            RequestOutcome::Error => c.failed = c.failed.saturating_add(1),
            RequestOutcome::Denied => c.denied = c.denied.saturating_add(1),
        }
    }

    /// The counts of the window ending with `tick`.
    fn totals(&self, tick: u64) -> Counts {
        self.slots
            .iter()
            .filter(|s| tick.saturating_sub(s.tick) < SLOTS as u64)
            .fold(Counts::default(), |a, s| Counts {
                requests: a.requests.saturating_add(s.counts.requests),
                denied: a.denied.saturating_add(s.counts.denied),
                failed: a.failed.saturating_add(s.counts.failed),
            })
    }
}

// Nearly every record is `Watching`: boxing its ring would only add an allocation.
#[expect(clippy::large_enum_variant)]
#[derive(Debug)]
enum Record {
    Watching(Ring),
    Isolated(Isolated),
}

#[derive(Debug)]
struct Inner {
    config: Option<IsolationConfig>,
    /// Ticks count from here: the first time anything was recorded.
    origin: Option<Instant>,
    records: IdleMap<Record>,
}

impl Inner {
    fn tick(&self, config: &IsolationConfig, now: Instant) -> u64 {
        let since = self
            .origin
            .map_or(Duration::ZERO, |o| now.saturating_duration_since(o));
        let width = config.slot_width().as_nanos().max(1);
        u64::try_from(since.as_nanos() / width).unwrap_or(u64::MAX)
    }

    fn worth(record: &Record, now: Instant, tick: u64) -> Worth {
        match record {
            Record::Isolated(i) if now < i.until => Worth::Much,
            Record::Isolated(_) => Worth::Nothing,
            Record::Watching(ring) if ring.totals(tick).requests == 0 => Worth::Nothing,
            Record::Watching(_) => Worth::Some,
        }
    }
}

/// The isolation engine.
pub(crate) struct Isolation {
    inner: Mutex<Inner>,
}

impl fmt::Debug for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Isolation")
            .field("config", &inner.config)
            .field("tracked", &inner.records.len())
            .finish()
    }
}

impl Isolation {
    /// `None` disables isolation: nothing is tracked and nobody is cut off.
    pub(crate) fn new(config: Option<IsolationConfig>) -> Result<Self, LimitConfigError> {
        Self::with_max_tracked(config, MAX_TRACKED)
    }

    fn with_max_tracked(
        config: Option<IsolationConfig>,
        max: usize,
    ) -> Result<Self, LimitConfigError> {
        config.as_ref().map(IsolationConfig::validate).transpose()?;
        Ok(Self {
            inner: Mutex::new(Inner {
                config,
                origin: None,
                records: IdleMap::new(max),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the state consistent, so a panic elsewhere cannot corrupt it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Err` while `identity` is isolated.
    pub(crate) fn check(&self, identity: &str, now: Instant) -> Result<(), Isolated> {
        let mut inner = self.lock();
        if inner.config.is_none() {
            return Ok(());
        }
        let Some(record) = inner.records.get_mut(identity, now) else {
            return Ok(());
        };
        match record {
            Record::Isolated(i) if now < i.until => Err(i.clone()),
            Record::Isolated(_) => {
                *record = Record::Watching(Ring::default());
                Ok(())
            }
            Record::Watching(_) => Ok(()),
        }
    }

    /// Counts a request's outcome; returns the event if this isolates the identity.
    pub(crate) fn record(
        &self,
        identity: &str,
        outcome: RequestOutcome,
        now: Instant,
    ) -> Option<IsolationEvent> {
        let mut guard = self.lock();
        let config = guard.config?;
        guard.origin.get_or_insert(now);
        let tick = guard.tick(&config, now);
        let record = guard.records.get_or_insert(
            identity,
            now,
            || Record::Watching(Ring::default()),
            |r| Inner::worth(r, now, tick),
        )?;
        if let Record::Isolated(i) = record {
            if now < i.until {
                return None;
            }
            // The cooldown is over: a clean slate.
            *record = Record::Watching(Ring::default());
        }
        let Record::Watching(ring) = record else {
            return None;
        };
        ring.add(tick, outcome);
        let c = ring.totals(tick);
        let bad = c.denied.saturating_add(c.failed);
        let ratio = f64::from(bad) / f64::from(c.requests.max(1));
        if c.requests < config.min_requests || ratio < config.max_bad_ratio {
            return None;
        }
        let reason: Arc<str> = describe(&config, c, bad, ratio).into();
        // `validate` caps the cooldown at a day, so this cannot overflow in practice.
        let until = now.checked_add(config.cooldown).unwrap_or(now);
        *record = Record::Isolated(Isolated {
            until,
            reason: Arc::clone(&reason),
        });
        Some(IsolationEvent {
            identity: identity.to_owned(),
            until,
            reason,
        })
    }

    /// How many identities are isolated at `now`, for a gauge. O(tracked identities): meant
    /// for metrics scrapes, not the request path.
    pub(crate) fn isolated_count(&self, now: Instant) -> usize {
        self.lock()
            .records
            .values()
            .filter(|r| matches!(r, Record::Isolated(i) if now < i.until))
            .count()
    }

    /// Replaces the configuration (hot reload). Isolations in force keep their end; a new
    /// window length starts every window afresh (the buckets' width changed). `None`
    /// disables isolation and releases everyone. On an invalid configuration nothing
    /// changes.
    pub(crate) fn update(&self, config: Option<IsolationConfig>) -> Result<(), LimitConfigError> {
        config.as_ref().map(IsolationConfig::validate).transpose()?;
        let mut inner = self.lock();
        match config {
            None => inner.records.clear(),
            Some(new) if inner.config.is_some_and(|old| old.window != new.window) => {
                for record in inner.records.values_mut() {
                    if let Record::Watching(ring) = record {
                        *ring = Ring::default();
                    }
                }
            }
            Some(_) => {}
        }
        inner.config = config;
        Ok(())
    }
}

/// "12 of 20 requests in the last 10 s were denied or failed (60 %, threshold 50 %): 8
/// denied, 4 failed".
fn describe(config: &IsolationConfig, c: Counts, bad: u32, ratio: f64) -> String {
    format!(
        "{bad} of {} requests in the last {} s were denied or failed ({:.0} %, threshold \
         {:.0} %): {} denied, {} failed",
        c.requests,
        config.window.as_secs_f64(),
        ratio * 100.0,
        config.max_bad_ratio * 100.0,
        c.denied,
        c.failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "spiffe://mesh.local/agent/alice";

    fn engine() -> Isolation {
        Isolation::new(Some(IsolationConfig::default())).unwrap()
    }

    fn feed(
        e: &Isolation,
        id: &str,
        outcome: RequestOutcome,
        n: u32,
        now: Instant,
    ) -> Vec<IsolationEvent> {
        (0..n).filter_map(|_| e.record(id, outcome, now)).collect()
    }

    #[test]
    fn isolates_when_enough_requests_are_mostly_bad_and_says_why() {
        let e = engine();
        let t0 = Instant::now();
        assert!(feed(&e, ALICE, RequestOutcome::Ok, 8, t0).is_empty());
        assert!(feed(&e, ALICE, RequestOutcome::Denied, 8, t0).is_empty());
        let events = feed(
            &e,
            ALICE,
            RequestOutcome::Error,
            4,
            t0 + Duration::from_secs(3),
        );
        assert_eq!(events.len(), 1, "the 20th request crosses both thresholds");
        let event = &events[0];
        assert_eq!(event.identity, ALICE);
        assert_eq!(event.until, t0 + Duration::from_secs(63));
        assert_eq!(
            &*event.reason,
            "12 of 20 requests in the last 10 s were denied or failed (60 %, threshold 50 %): \
             8 denied, 4 failed"
        );
        let refused = e.check(ALICE, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(refused.reason, event.reason);
        assert_eq!(
            refused.retry_in(t0 + Duration::from_secs(10)),
            Duration::from_secs(53)
        );
        assert_eq!(e.isolated_count(t0 + Duration::from_secs(10)), 1);
        // Requests refused meanwhile do not extend the isolation.
        assert!(
            feed(
                &e,
                ALICE,
                RequestOutcome::Denied,
                50,
                t0 + Duration::from_secs(30)
            )
            .is_empty()
        );
        assert_eq!(
            e.check(ALICE, t0 + Duration::from_secs(62))
                .unwrap_err()
                .until,
            event.until
        );
    }

    #[test]
    fn recovers_with_a_fresh_window_after_the_cooldown() {
        let e = engine();
        let t0 = Instant::now();
        assert_eq!(feed(&e, ALICE, RequestOutcome::Denied, 20, t0).len(), 1);
        let after = t0 + Duration::from_secs(60);
        assert!(e.check(ALICE, after).is_ok());
        assert_eq!(e.isolated_count(after), 0);
        // The old bad requests are forgotten: 19 more bad ones are not enough.
        assert!(feed(&e, ALICE, RequestOutcome::Denied, 19, after).is_empty());
        assert_eq!(feed(&e, ALICE, RequestOutcome::Denied, 1, after).len(), 1);
    }

    #[test]
    fn few_requests_or_a_low_ratio_never_isolate() {
        let e = engine();
        let t0 = Instant::now();
        assert!(feed(&e, ALICE, RequestOutcome::Denied, 19, t0).is_empty());
        let bob = "spiffe://mesh.local/agent/bob";
        assert!(feed(&e, bob, RequestOutcome::Ok, 11, t0).is_empty());
        assert!(
            feed(&e, bob, RequestOutcome::Error, 10, t0).is_empty(),
            "10 of 21 < 50 %"
        );
        assert!(e.check(ALICE, t0).is_ok() && e.check(bob, t0).is_ok());
    }

    #[test]
    fn the_window_slides_and_old_outcomes_drop_out() {
        let e = engine();
        let t0 = Instant::now();
        // 15 bad requests, then 9.5 s of nothing: they slide out of the 10 s window by
        // t0 + 10 s (bucket granularity is 1 s).
        assert!(feed(&e, ALICE, RequestOutcome::Denied, 15, t0).is_empty());
        let later = t0 + Duration::from_secs(10);
        assert!(feed(&e, ALICE, RequestOutcome::Denied, 19, later).is_empty());
        // Within the window they still count.
        let bob = "spiffe://mesh.local/agent/bob";
        assert!(feed(&e, bob, RequestOutcome::Denied, 15, t0).is_empty());
        assert_eq!(
            feed(
                &e,
                bob,
                RequestOutcome::Denied,
                5,
                t0 + Duration::from_secs(8)
            )
            .len(),
            1
        );
    }

    #[test]
    fn disabled_tracks_nothing_and_a_reload_can_release_everyone() {
        let off = Isolation::new(None).unwrap();
        let now = Instant::now();
        assert!(feed(&off, ALICE, RequestOutcome::Denied, 100, now).is_empty());
        assert!(off.check(ALICE, now).is_ok());
        assert_eq!(off.lock().records.len(), 0);

        let e = engine();
        assert_eq!(feed(&e, ALICE, RequestOutcome::Denied, 20, now).len(), 1);
        // A stricter reload keeps the isolation in force...
        let strict = IsolationConfig {
            window: Duration::from_secs(30),
            min_requests: 5,
            ..IsolationConfig::default()
        };
        e.update(Some(strict)).unwrap();
        assert!(e.check(ALICE, now).is_err());
        // ...disabling releases it.
        e.update(None).unwrap();
        assert!(e.check(ALICE, now).is_ok());
        assert_eq!(e.isolated_count(now), 0);
        // And an invalid one changes nothing.
        let bad = IsolationConfig {
            max_bad_ratio: 1.5,
            ..IsolationConfig::default()
        };
        assert_eq!(
            e.update(Some(bad)).unwrap_err().to_string(),
            "isolation: max_bad_ratio must be more than 0 and at most 1"
        );
        assert!(
            feed(&e, ALICE, RequestOutcome::Denied, 20, now).is_empty(),
            "still off"
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        let cases = [
            IsolationConfig {
                window: Duration::from_millis(10),
                ..Default::default()
            },
            IsolationConfig {
                cooldown: Duration::ZERO,
                ..Default::default()
            },
            IsolationConfig {
                min_requests: 0,
                ..Default::default()
            },
            IsolationConfig {
                max_bad_ratio: 0.0,
                ..Default::default()
            },
            IsolationConfig {
                max_bad_ratio: f64::NAN,
                ..Default::default()
            },
        ];
        for c in cases {
            assert!(Isolation::new(Some(c)).is_err(), "{c:?}");
        }
        assert!(IsolationConfig::default().validate().is_ok());
    }

    #[test]
    fn tracked_identities_are_capped_and_isolated_ones_are_kept_longest() {
        let e = Isolation::with_max_tracked(Some(IsolationConfig::default()), 16).unwrap();
        let t0 = Instant::now();
        assert_eq!(feed(&e, ALICE, RequestOutcome::Denied, 20, t0).len(), 1);
        for i in 0..1000 {
            let id = format!("spiffe://mesh.local/agent/flood-{i}");
            let _ = e.record(&id, RequestOutcome::Error, t0 + Duration::from_millis(i));
            assert!(e.lock().records.len() <= 16);
        }
        assert!(
            e.check(ALICE, t0 + Duration::from_secs(2)).is_err(),
            "a flood does not free alice"
        );
        assert_eq!(e.isolated_count(t0 + Duration::from_secs(2)), 1);
    }
}
