//! A small TTL cache for tag → digest resolutions, namespace labels and the verdicts kept for
//! `services.webhook.stale_if_error`, shared by all requests.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept at most; past it, expired entries go, and if none had expired, everything does (a
/// bounded memory footprint matters more than the hit rate of a cluster with this many tags).
const MAX_ENTRIES: usize = 10_000;

/// Values valid for `ttl` after insertion; `ttl` zero caches nothing.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// An empty cache.
    pub fn new(ttl: Duration) -> Self {
        TtlCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value, if inserted less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_aged(key).map(|(v, _)| v)
    }

    /// The value and how long ago it was inserted, if less than `ttl` ago.
    pub fn get_aged(&self, key: &K) -> Option<(V, Duration)> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .map(|(v, at)| (v, at.elapsed()))
            .filter(|(_, age)| *age < self.ttl)
            .map(|(v, age)| (v.clone(), age))
    }

    /// Forgets `key`.
    pub fn remove(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(key);
    }

    /// Stores `value` for `ttl`.
    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_ttl_caches_nothing_and_entries_are_bounded() {
        let off: TtlCache<u32, u32> = TtlCache::new(Duration::ZERO);
        off.insert(1, 1);
        assert_eq!(off.get(&1), None);
        let on = TtlCache::new(Duration::from_secs(3600));
        for i in 0..(MAX_ENTRIES as u32 + 5) {
            on.insert(i, i);
        }
        assert!(on.entries.lock().unwrap().len() <= MAX_ENTRIES);
        assert_eq!(
            on.get(&(MAX_ENTRIES as u32 + 4)),
            Some(MAX_ENTRIES as u32 + 4)
        );
    }
}
