//! [`BackoffCounters`]: failure counters with exponential backoff, shared by every instance on a
//! store — what makes a login throttle hold across a load balancer.
//!
//! One instance keeps its counters in memory (the server's own tables, which also bound their
//! size). Several instances keep them where their sessions are, so that N failures spread over
//! three instances count like N on one, and a restart forgets nothing. The policy a counter
//! follows is a [`Backoff`]; what a store must guarantee is written on each method, and
//! `cloakroom_testkit::counters_conformance_suite!` checks it on every backend.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::{StoreError, Timestamp};

/// A counter's policy: `free` failures, then a wait of `base` doubling per further failure up
/// to `max`; the count is forgotten `forget` after the last failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures allowed before an attempt has to wait.
    pub free: u32,
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How long after the last failure the count is forgotten.
    pub forget: Duration,
}

impl Backoff {
    /// The wait after `failures` counted failures, counted from the last one.
    pub fn delay_after(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free) {
            None => Duration::ZERO,
            Some(over) => self
                .base
                .saturating_mul(1_u32 << over.min(20))
                .min(self.max),
        }
    }

    /// How long an attempt at `now` must still wait, for a counter at `failures` whose last
    /// failure was at `last`; zero when it may go ahead (or the count is forgotten).
    pub fn wait(&self, failures: u32, last: Timestamp, now: Timestamp) -> Duration {
        if now.duration_since(last) >= self.forget {
            return Duration::ZERO;
        }
        let until = last.saturating_add(self.delay_after(failures));
        if until > now {
            until.duration_since(now)
        } else {
            Duration::ZERO
        }
    }
}

/// Backoff counters in a shared store, named by the caller.
#[async_trait]
pub trait BackoffCounters: Send + Sync + Debug {
    /// Counts an attempt on counter `name` at `now`, unless it must wait under `limits`:
    /// `Ok(None)` when counted, `Ok(Some(wait))` when refused, with nothing counted.
    ///
    /// Contract: check and count are one atomic step, so of parallel attempts (from any
    /// instance) no more than the free ones pass on the same count; a count whose last failure
    /// is `limits.forget` old or older starts again from zero; the wait is
    /// [`Backoff::wait`]'s. A store error counts nothing and the caller fails closed.
    async fn reserve(
        &self,
        name: &str,
        limits: &Backoff,
        now: Timestamp,
    ) -> Result<Option<Duration>, StoreError>;

    /// Takes back one counted attempt on `name` (a success, or another counter refused the
    /// attempt). Contract: a count of one or zero leaves no counter behind; an unknown name is
    /// not an error.
    async fn release(&self, name: &str) -> Result<(), StoreError>;

    /// Forgets counter `name`. Contract: the next reserve starts from zero.
    async fn reset(&self, name: &str) -> Result<(), StoreError>;

    /// Removes counters whose failures are forgotten by `now`, for a store that does not
    /// expire them itself; returns how many. Contract: never removes one that still counts.
    async fn purge_forgotten(&self, now: Timestamp) -> Result<u64, StoreError> {
        let _ = now;
        Ok(0)
    }
}
