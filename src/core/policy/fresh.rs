//! Whether cached policy results are still current, known in process: LISTEN/NOTIFY on the bundles',
//! feeds' and images' channels turns each committed change into a new [`Token`], so a cache hit costs no
//! database round trip.
//!
//! A result is cached with the token read *before* the reads it was computed from, and served only while
//! the token is unchanged: a change committed meanwhile has moved the token (or will, when its
//! notification arrives), so nothing read before a change outlives it. While the listening connection is
//! down there is no token at all and callers take their round trip; losing and regaining it moves every
//! token, since notifications sent meanwhile are gone. The connection is pinged every
//! [`fathom_queue::PING`], which bounds how long a silently cut connection goes unnoticed.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fathom_queue::{Event, Subscription};

/// `application_name` of the listening connection (to find it in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "fathom-policy-listener";

/// Images whose last change is remembered one by one; past this the map is emptied and everything
/// cached moves on with it (bounded memory, at worst a round of round trips).
const IMAGES_MAX: usize = 10_000;

/// The state a cached result was computed under: equal tokens, equal inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    everything: u64,
    image: u64,
}

/// The process's view of changes, shared by the policy engine's caches and the webhook's verdicts.
/// Cheap to clone.
#[derive(Clone)]
pub struct Freshness {
    inner: Arc<Inner>,
    _subscription: Option<Arc<Subscription>>,
}

#[derive(Default)]
struct Inner {
    live: AtomicBool,
    /// Counts every event; the value at an event is the epoch it gives what it changed.
    seq: AtomicU64,
    /// Epoch of the last change to everything (bundles, feeds, re-matches, connection changes).
    everything: AtomicU64,
    /// Epoch of each image's last change.
    images: Mutex<HashMap<String, u64>>,
}

impl Freshness {
    /// Listens on `database_url` for changes to bundles ([`fathom_policy::store::CHANNEL`]), matches
    /// and feeds ([`fathom_vulns::CHANNEL`]) and stored images
    /// ([`fathom_worker::store::IMAGES_CHANNEL`]). Tokens are given once the first LISTEN is in effect.
    pub fn listen(database_url: &str) -> anyhow::Result<Freshness> {
        let inner = Arc::new(Inner::default());
        let state = Arc::clone(&inner);
        let subscription = Subscription::start(
            database_url,
            APPLICATION_NAME,
            &[
                fathom_policy::store::CHANNEL,
                fathom_vulns::CHANNEL,
                fathom_worker::store::IMAGES_CHANNEL,
            ],
            move |event| state.apply(event),
        )?;
        Ok(Freshness {
            inner,
            _subscription: Some(Arc::new(subscription)),
        })
    }

    /// No listener (PgBouncer in transaction mode, or the caches off): never a token, every check takes
    /// its round trip.
    pub fn off() -> Freshness {
        Freshness {
            inner: Arc::new(Inner::default()),
            _subscription: None,
        }
    }

    /// The current token for results about `image` (`None`: results about no image, e.g. which bundle
    /// is active); `None` while the listener is down.
    pub fn token(&self, image: Option<&str>) -> Option<Token> {
        let token = match image {
            // `everything` is read under the images lock: a full map is cleared and `everything` moved
            // under that lock, so a reader never pairs the old `everything` with a cleared image's 0.
            Some(digest) => {
                let images = lock(&self.inner.images);
                Token {
                    everything: self.inner.everything.load(SeqCst),
                    image: images.get(digest).copied().unwrap_or(0),
                }
            }
            None => Token {
                everything: self.inner.everything.load(SeqCst),
                image: 0,
            },
        };
        self.inner.live.load(SeqCst).then_some(token)
    }

    /// Whether this follows changes at all (a listener was started; it may be reconnecting now).
    pub fn follows_changes(&self) -> bool {
        self._subscription.is_some()
    }

    /// Whether the listener is connected and listening.
    #[cfg(test)]
    pub fn is_live(&self) -> bool {
        self.inner.live.load(SeqCst)
    }

    /// Moves every token now: this process changed something (a bundle stored or activated) and must
    /// not answer from before it while its own notification is on the way.
    pub fn changed_here(&self) {
        let epoch = self.inner.seq.fetch_add(1, SeqCst) + 1;
        self.inner.everything.store(epoch, SeqCst);
    }

    /// Events handled so far (notifications and connection changes), for tests that wait for one.
    #[cfg(test)]
    pub fn events(&self) -> u64 {
        self.inner.seq.load(SeqCst)
    }
}

impl Inner {
    fn apply(&self, event: Event) {
        let epoch = self.seq.fetch_add(1, SeqCst) + 1;
        match event {
            Event::Lost => {
                self.live.store(false, SeqCst);
                self.everything.store(epoch, SeqCst);
            }
            Event::Listening => {
                // Anything may have changed unseen while nobody listened.
                self.everything.store(epoch, SeqCst);
                self.live.store(true, SeqCst);
            }
            Event::Notification { channel, payload } => {
                let digests: Vec<&str> = payload.split_whitespace().collect();
                if channel == fathom_policy::store::CHANNEL
                    || digests.is_empty()
                    || digests.contains(&"*")
                {
                    self.everything.store(epoch, SeqCst);
                    return;
                }
                let mut images = lock(&self.images);
                if images.len() + digests.len() > IMAGES_MAX {
                    images.clear();
                    self.everything.store(epoch, SeqCst);
                }
                for digest in digests {
                    images.insert(digest.to_string(), epoch);
                }
            }
        }
    }
}

/// Results cached under a [`Token`], served while it is current and younger than the TTL (evaluations
/// depend on the clock too: allowlist expiry, days since a fix).
pub struct FreshMap<K, V> {
    entries: Mutex<HashMap<K, (Token, Instant, V)>>,
    ttl: Duration,
    max_entries: usize,
}

impl<K: Eq + Hash, V: Clone> FreshMap<K, V> {
    /// A map of at most `max_entries` (emptied when full), entries living `ttl`.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        FreshMap {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max_entries: max_entries.max(1),
        }
    }

    /// The value cached under `key` if it was computed under `token` and is young enough.
    pub fn get(&self, token: Token, key: &K) -> Option<V> {
        match lock(&self.entries).get(key) {
            Some((t, at, v)) if *t == token && at.elapsed() < self.ttl => Some(v.clone()),
            _ => None,
        }
    }

    /// Caches `value`, computed at `at` from reads made under `token`.
    pub fn insert(&self, token: Token, key: K, at: Instant, value: V) {
        let mut entries = lock(&self.entries);
        if entries.len() >= self.max_entries {
            entries.clear();
        }
        entries.insert(key, (token, at, value));
    }
}

/// A poisoned lock only means another request panicked mid-update of a cache: the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(channel: &str, payload: &str) -> Event {
        Event::Notification {
            channel: channel.into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn tokens_move_with_what_they_depend_on_and_vanish_while_not_listening() {
        let fresh = Freshness::off();
        assert_eq!(fresh.token(None), None, "no token before the first LISTEN");
        fresh.inner.apply(Event::Listening);
        let (a, b) = (Some("sha256:a"), Some("sha256:b"));
        let (ta, tb, tn) = (fresh.token(a), fresh.token(b), fresh.token(None));
        assert!(ta.is_some());
        // Another image changed: a's token stands, b's moves.
        fresh.inner.apply(note(
            fathom_worker::store::IMAGES_CHANNEL,
            "sha256:b sha256:c",
        ));
        assert_eq!(fresh.token(a), ta);
        assert_ne!(fresh.token(b), tb);
        assert_eq!(fresh.token(None), tn);
        // A re-match of the fleet or a bundle change moves every token.
        for event in [
            note(fathom_vulns::CHANNEL, "*"),
            note(fathom_policy::store::CHANNEL, "*"),
        ] {
            let before = (fresh.token(a), fresh.token(None));
            fresh.inner.apply(event);
            assert_ne!(fresh.token(a), before.0);
            assert_ne!(fresh.token(None), before.1);
        }
        // Lost: no tokens; back: none of the old ones.
        let before = fresh.token(a);
        fresh.inner.apply(Event::Lost);
        assert_eq!(fresh.token(a), None);
        fresh.inner.apply(Event::Listening);
        assert!(fresh.token(a).is_some());
        assert_ne!(fresh.token(a), before);
    }

    #[test]
    fn a_map_serves_only_under_its_token_and_ttl() {
        let fresh = Freshness::off();
        fresh.inner.apply(Event::Listening);
        let token = fresh.token(Some("d")).unwrap();
        let map = FreshMap::new(Duration::from_secs(60), 8);
        map.insert(token, "k", Instant::now(), 1);
        assert_eq!(map.get(token, &"k"), Some(1));
        fresh.inner.apply(note(fathom_vulns::CHANNEL, "d"));
        assert_eq!(map.get(fresh.token(Some("d")).unwrap(), &"k"), None);
        let expired = FreshMap::new(Duration::ZERO, 8);
        expired.insert(token, "k", Instant::now(), 1);
        assert_eq!(expired.get(token, &"k"), None);
    }
}
