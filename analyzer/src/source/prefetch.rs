//! Layer requests started ahead of the layer pipeline, so a layer's round trip overlaps the analysis of
//! the ones before it: `lookahead` requests stay under way beyond the layers being read.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::task::JoinHandle;

use super::http::HttpError;

/// A layer request under way (its response headers, the body still unread).
pub(crate) type Pending = JoinHandle<Result<reqwest::Response, HttpError>>;

struct State {
    /// Layers not yet requested, in manifest order.
    queue: VecDeque<String>,
    pending: HashMap<String, Pending>,
}

/// The prefetched layer requests of one resolved image.
pub(crate) struct Prefetch {
    state: Mutex<State>,
    lookahead: usize,
}

impl Prefetch {
    /// Nothing requested yet; `lookahead` 0 disables prefetching.
    pub(crate) fn new(layers: impl IntoIterator<Item = String>, lookahead: usize) -> Prefetch {
        let mut queue = VecDeque::new();
        if lookahead > 0 {
            for digest in layers {
                if !queue.contains(&digest) {
                    queue.push_back(digest);
                }
            }
        }
        Prefetch {
            state: Mutex::new(State {
                queue,
                pending: HashMap::new(),
            }),
            lookahead,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts requests until `lookahead` are under way.
    pub(crate) fn top_up(&self, start: impl Fn(&str) -> Pending) {
        let mut state = self.lock();
        while state.pending.len() < self.lookahead {
            let Some(digest) = state.queue.pop_front() else {
                break;
            };
            let task = start(&digest);
            state.pending.insert(digest, task);
        }
    }

    /// The request already under way for `digest`, if any; either way `digest` is no longer ahead, and
    /// the next layers are requested in its place.
    pub(crate) fn take(&self, digest: &str, start: impl Fn(&str) -> Pending) -> Option<Pending> {
        let taken = {
            let mut state = self.lock();
            state.queue.retain(|d| d != digest);
            state.pending.remove(digest)
        };
        self.top_up(start);
        taken
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // Layers never opened (cached, or the analysis failed): stop their requests.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, task) in state.pending.drain() {
            task.abort();
        }
    }
}
