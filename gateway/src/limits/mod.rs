//! Limits per caller identity: rate limiting ([`rate`]) and isolating callers whose recent
//! requests were mostly denied or failed ([`isolation`]).
//!
//! Both keep a little state per identity in an [`IdleMap`]. Dev mode lets callers claim any
//! identity, so the number of identities tracked is capped; when the map is full, entries
//! that carry no information (a full token bucket, an empty window) go first, then the
//! longest idle of the least valuable (isolated identities last).

pub(crate) mod isolation;
pub(crate) mod rate;

use std::collections::HashMap;
use std::time::Instant;

/// Most identities each limiter tracks at once (a few hundred bytes each).
pub(crate) const MAX_TRACKED: usize = 10_000;

/// A limits configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitConfigError {
    /// A rate-limit rule names no identity pattern, so it could never apply.
    #[error(
        "rate-limit rule #{rule} names no identities; list agent names or SPIFFE IDs (globs allowed)"
    )]
    NoIdentities {
        /// The rule's position, from 1.
        rule: usize,
    },
    /// A rate must be a positive, finite number of requests per second.
    #[error(
        "rate-limit rule #{rule}: rate_per_sec must be a positive number, not {rate}; use an \
         access rule to deny callers outright"
    )]
    BadRate {
        /// The rule's position, from 1.
        rule: usize,
        /// The rate given.
        rate: f64,
    },
    /// A burst of 0 would refuse every request.
    #[error("rate-limit rule #{rule}: burst must be at least 1")]
    ZeroBurst {
        /// The rule's position, from 1.
        rule: usize,
    },
    /// An isolation setting is out of range.
    #[error("isolation: {0}")]
    Isolation(&'static str),
}

/// How much an entry is worth keeping when the map is full; the least goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Worth {
    /// Dropping it loses nothing: it would be recreated in the same state.
    Nothing,
    /// Ordinary state.
    Some,
    /// Dropping it would undo a sanction (an isolation): only when nothing else is left.
    Much,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    last_seen: Instant,
}

/// A map from identity to per-identity state with at most `cap` entries.
#[derive(Debug)]
pub(crate) struct IdleMap<V> {
    entries: HashMap<String, Slot<V>>,
    cap: usize,
}

impl<V> IdleMap<V> {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: HashMap::new(),
            cap: cap.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key).map(|s| &s.value)
    }

    /// The entry, marked as seen at `now`.
    pub(crate) fn get_mut(&mut self, key: &str, now: Instant) -> Option<&mut V> {
        self.entries.get_mut(key).map(|s| {
            s.last_seen = now;
            &mut s.value
        })
    }

    /// The entry, created with `make` if absent (evicting by `worth` first if the map is
    /// full). `None` only if the map cannot hold even one entry, which `new` rules out.
    pub(crate) fn get_or_insert(
        &mut self,
        key: &str,
        now: Instant,
        make: impl FnOnce() -> V,
        worth: impl Fn(&V) -> Worth,
    ) -> Option<&mut V> {
        if !self.entries.contains_key(key) {
            if self.entries.len() >= self.cap {
                self.evict(worth);
            }
            let slot = Slot {
                value: make(),
                last_seen: now,
            };
            self.entries.insert(key.to_owned(), slot);
        }
        self.get_mut(key, now)
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.values().map(|s| &s.value)
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.values_mut().map(|s| &mut s.value)
    }

    /// Makes room: every entry worth nothing goes; if that frees nothing, the least worth,
    /// longest idle eighth of the map goes. Evicting in batches keeps the O(n) pass rare
    /// (once per `cap / 8` new identities) when a flood of new identities fills the map.
    fn evict(&mut self, worth: impl Fn(&V) -> Worth) {
        self.entries
            .retain(|_, s| worth(&s.value) != Worth::Nothing);
        if self.entries.len() < self.cap {
            return;
        }
        let mut ranked: Vec<(Worth, Instant, &String)> = self
            .entries
            .iter()
            .map(|(key, s)| (worth(&s.value), s.last_seen, key))
            .collect();
        if ranked.is_empty() {
            return;
        }
        let batch = (self.cap / 8).clamp(1, ranked.len());
        // Exactly the `batch` least worth, longest idle entries (ties at the edge in any
        // order), whatever order the map iterates in.
        ranked.select_nth_unstable_by(batch - 1, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let victims: Vec<String> = ranked[..batch]
            .iter()
            .map(|(_, _, k)| (*k).clone())
            .collect();
        for key in victims {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_full_map_drops_worthless_entries_first_then_the_longest_idle() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Values are their worth.
        let mut map: IdleMap<Worth> = IdleMap::new(4);
        let worth = |w: &Worth| *w;
        map.get_or_insert("precious", at(0), || Worth::Much, worth);
        map.get_or_insert("old", at(1), || Worth::Some, worth);
        map.get_or_insert("empty", at(2), || Worth::Nothing, worth);
        map.get_or_insert("recent", at(3), || Worth::Some, worth);
        map.get_or_insert("new", at(4), || Worth::Some, worth);
        assert_eq!(map.len(), 4);
        assert!(map.get("empty").is_none(), "worth nothing: first to go");

        // Full of valuable entries: the least worth, longest idle goes (cap / 8 = 1 here),
        // and seeing an entry again makes it recent.
        map.get_mut("old", at(5));
        map.get_or_insert("newer", at(6), || Worth::Some, worth);
        assert!(map.get("recent").is_none());
        assert!(map.get("old").is_some() && map.get("precious").is_some());
    }

    #[test]
    fn the_map_never_grows_past_its_cap_under_a_flood_of_identities() {
        let now = Instant::now();
        let mut map: IdleMap<u32> = IdleMap::new(100);
        for i in 0..10_000u32 {
            let v = map.get_or_insert(&format!("id-{i}"), now, || i, |_| Worth::Some);
            assert_eq!(v.copied(), Some(i));
            assert!(map.len() <= 100);
        }
        map.clear();
        assert_eq!(map.len(), 0);
    }
}
