//! The worker's readiness: Postgres answered the last round trip and the worker is not draining, so
//! Kubernetes takes a draining or cut-off pod out of rotation without killing it. The binary's health
//! endpoint reads it.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// Shared health state.
#[derive(Debug, Default)]
pub struct Health {
    database_up: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Records whether the last round trip to Postgres succeeded.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::Relaxed);
        Metrics::get().database_up.set(if up { 1.0 } else { 0.0 });
    }

    /// Marks the worker as shutting down.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the worker should receive traffic / count as ready.
    pub fn ready(&self) -> bool {
        self.database_up.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}
