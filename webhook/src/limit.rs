//! `services.webhook.max_enqueues_per_minute`: a token bucket per namespace, so one namespace cannot
//! flood the queue (admission analyses run at high priority, against any registry host a spec names).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::check::{ImageVerdict, Reason};
use crate::oracle::ImageId;

/// Namespaces tracked at most; past it, buckets that have refilled completely are forgotten (a full
/// bucket carries no state), and if none has, all are (bounded memory over a perfect limit).
const MAX_NAMESPACES: usize = 10_000;

/// Per-namespace buckets of `per_minute` tokens, refilled continuously.
#[derive(Debug)]
pub(crate) struct EnqueueLimit {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl EnqueueLimit {
    /// A limit of `per_minute` enqueues per namespace (0: unlimited).
    pub(crate) fn new(per_minute: u32) -> Self {
        EnqueueLimit {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The configured limit (0: none).
    pub(crate) fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one token of `namespace`'s bucket; false when it is empty (nothing may be queued).
    pub(crate) fn try_take(&self, namespace: &str) -> bool {
        self.try_take_at(namespace, Instant::now())
    }

    fn try_take_at(&self, namespace: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let capacity = f64::from(self.per_minute);
        let refill = |b: &Bucket| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            (b.tokens + elapsed * capacity / 60.0).min(capacity)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_NAMESPACES && !buckets.contains_key(namespace) {
            buckets.retain(|_, b| refill(b) < capacity);
            if buckets.len() >= MAX_NAMESPACES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(namespace.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let tokens = refill(bucket);
        if tokens < 1.0 {
            *bucket = Bucket { tokens, at: now };
            return false;
        }
        *bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        true
    }
}

/// How long until `per_minute` gives one more token: for the denial message.
pub(crate) fn one_token(per_minute: u32) -> Duration {
    Duration::from_secs(60) / per_minute.max(1)
}

/// The denial for an unanalyzed image whose namespace used up its enqueues: nothing was queued.
pub(crate) fn denial(id: &ImageId, namespace: &str, per_minute: u32) -> ImageVerdict {
    ImageVerdict::Deny {
        reason: Reason::Unanalyzed,
        message: format!(
            "has not been analyzed by fathom yet, and namespace {namespace:?} reached its enqueue limit \
             (services.webhook.max_enqueues_per_minute: {per_minute}): nothing was queued; retry in {}, or \
             submit it with `fathom submit {}`",
            humantime::format_duration(one_token(per_minute)),
            id.pinned()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_namespace_has_its_own_bucket_that_refills() {
        let limit = EnqueueLimit::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limit.try_take_at("a", t0)));
        assert!(
            !limit.try_take_at("a", t0),
            "the fourth in the same instant"
        );
        assert!(
            limit.try_take_at("b", t0),
            "another namespace is not charged"
        );
        // 3 per minute: one more token after 20 s, not before.
        assert!(!limit.try_take_at("a", t0 + Duration::from_secs(19)));
        assert!(limit.try_take_at("a", t0 + Duration::from_secs(21)));
        assert!(!limit.try_take_at("a", t0 + Duration::from_secs(22)));
        // A long pause refills to the capacity, never beyond it.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| limit.try_take_at("a", later)));
        assert!(!limit.try_take_at("a", later));
        assert_eq!(one_token(3), Duration::from_secs(20));
    }

    #[test]
    fn zero_is_unlimited_and_memory_is_bounded() {
        let off = EnqueueLimit::new(0);
        assert!((0..1000).all(|_| off.try_take("a")));
        let on = EnqueueLimit::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_NAMESPACES + 10) {
            assert!(on.try_take_at(&format!("ns{i}"), t0));
        }
        assert!(on.buckets.lock().unwrap().len() <= MAX_NAMESPACES);
    }
}
