//! A bounded LRU of intent text → embedding, so a repeated intent costs no model call.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

/// Shared between request threads; the lock is held for a lookup or an insert only, never
/// while the model runs (a few milliseconds that would serialise every request). Two
/// threads missing on the same text at once both embed it; the second insert is harmless.
#[derive(Debug)]
pub(crate) struct EmbeddingCache {
    /// `None` when the capacity is 0: caching off.
    lru: Option<Mutex<LruCache<String, Arc<[f32]>>>>,
}

impl EmbeddingCache {
    pub(crate) fn new(capacity: usize) -> Self {
        EmbeddingCache {
            lru: NonZeroUsize::new(capacity).map(|c| Mutex::new(LruCache::new(c))),
        }
    }

    /// The embedding of `text`: from the cache, else from `embed` (then cached).
    pub(crate) fn get_or_embed<E>(
        &self,
        text: &str,
        embed: impl FnOnce(&str) -> Result<Vec<f32>, E>,
    ) -> Result<Arc<[f32]>, E> {
        let Some(lru) = &self.lru else {
            return embed(text).map(Arc::from);
        };
        if let Some(hit) = lock(lru).get(text) {
            return Ok(hit.clone());
        }
        let fresh: Arc<[f32]> = embed(text)?.into();
        lock(lru).put(text.to_string(), fresh.clone());
        Ok(fresh)
    }

    /// How many embeddings are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lru.as_ref().map_or(0, |lru| lock(lru).len())
    }
}

/// A panic while the lock was held cannot leave the LRU half-updated in a way that matters
/// (every entry is a complete embedding), so a poisoned lock is simply taken over.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::convert::Infallible;

    use super::*;

    #[test]
    fn a_repeated_text_is_embedded_once() {
        let cache = EmbeddingCache::new(4);
        let calls = Cell::new(0);
        let embed = |t: &str| {
            calls.set(calls.get() + 1);
            Ok::<_, Infallible>(vec![t.len() as f32])
        };
        let a = cache.get_or_embed("abc", embed).unwrap();
        let b = cache.get_or_embed("abc", embed).unwrap();
        assert_eq!((&*a, &*b, calls.get()), (&[3.0][..], &[3.0][..], 1));
        cache.get_or_embed("de", embed).unwrap();
        assert_eq!((calls.get(), cache.len()), (2, 2));
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let cache = EmbeddingCache::new(2);
        let calls = Cell::new(0);
        let embed = |_: &str| {
            calls.set(calls.get() + 1);
            Ok::<_, Infallible>(vec![0.0])
        };
        for t in ["a", "b", "a", "c"] {
            cache.get_or_embed(t, embed).unwrap();
        }
        // "b" was evicted by "c"; "a" was used more recently and stays.
        assert_eq!(calls.get(), 3);
        cache.get_or_embed("a", embed).unwrap();
        assert_eq!(calls.get(), 3);
        cache.get_or_embed("b", embed).unwrap();
        assert_eq!((calls.get(), cache.len()), (4, 2));
    }

    #[test]
    fn capacity_zero_caches_nothing_and_errors_are_not_cached() {
        let cache = EmbeddingCache::new(0);
        let calls = Cell::new(0);
        let embed = |_: &str| {
            calls.set(calls.get() + 1);
            Ok::<_, Infallible>(vec![0.0])
        };
        cache.get_or_embed("a", embed).unwrap();
        cache.get_or_embed("a", embed).unwrap();
        assert_eq!((calls.get(), cache.len()), (2, 0));

        let cache = EmbeddingCache::new(2);
        assert!(cache.get_or_embed("x", |_| Err("boom")).is_err());
        assert_eq!(cache.len(), 0);
    }
}
