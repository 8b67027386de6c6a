//! How long a session lives.
//!
//! Two limits apply together, as NIST SP 800-63B §7.2 and OWASP ASVS V7.3 require: an *idle*
//! timeout that activity slides forward, and an *absolute* timeout that nothing extends. A stolen
//! cookie therefore dies at the absolute expiry even if the thief keeps it busy.

use std::time::Duration;

use crate::clock::Timestamp;

/// Idle and absolute timeouts for one kind of session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// How long a session may go unused before it expires.
    pub idle: Duration,
    /// How long a session may live at all, counted from its creation.
    pub absolute: Duration,
}

impl Lifetime {
    /// The NIST 800-63B AAL2 defaults: 30 minutes idle, 12 hours absolute.
    pub const STANDARD: Self = Self {
        idle: Duration::from_secs(30 * 60),
        absolute: Duration::from_secs(12 * 3600),
    };

    /// "Remember me" defaults: 30 days idle, 90 days absolute.
    pub const REMEMBER_ME: Self = Self {
        idle: Duration::from_secs(30 * 24 * 3600),
        absolute: Duration::from_secs(90 * 24 * 3600),
    };

    /// The idle expiry for activity at `now`, never past `absolute_expires_at`.
    pub fn idle_expiry(&self, now: Timestamp, absolute_expires_at: Timestamp) -> Timestamp {
        now.saturating_add(self.idle).min(absolute_expires_at)
    }
}

/// The session lifecycle policy used by the [`SessionManager`](crate::SessionManager).
///
/// ```
/// use std::time::Duration;
/// use cloakroom_core::{Lifetime, Policy};
///
/// let policy = Policy::default()
///     .with_standard(Lifetime { idle: Duration::from_secs(15 * 60), absolute: Duration::from_secs(8 * 3600) })
///     .with_touch_interval(Duration::from_secs(30));
/// assert_eq!(policy.remember_me, Lifetime::REMEMBER_ME);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Policy {
    /// Lifetime of an ordinary login. Default: [`Lifetime::STANDARD`].
    pub standard: Lifetime,
    /// Lifetime of a "remember me" login. Default: [`Lifetime::REMEMBER_ME`].
    pub remember_me: Lifetime,
    /// Minimum time between two last-seen writes for one session. Default: 60 s.
    ///
    /// Sliding the idle expiry on every request would turn every read into a store write; with
    /// this throttle a busy session costs one write a minute, and the idle expiry is at most
    /// this much earlier than exact.
    pub touch_interval: Duration,
    /// How many times [`SessionManager::update_data`](crate::SessionManager::update_data)
    /// retries after losing a compare-and-set race before giving up. Default: 256.
    ///
    /// Every lost race means another writer's update landed, so the system as a whole always
    /// makes progress; the bound only keeps one unlucky caller from spinning forever.
    pub max_update_attempts: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            standard: Lifetime::STANDARD,
            remember_me: Lifetime::REMEMBER_ME,
            touch_interval: Duration::from_secs(60),
            max_update_attempts: 256,
        }
    }
}

impl Policy {
    /// Sets the lifetime of ordinary sessions.
    #[must_use]
    pub fn with_standard(mut self, lifetime: Lifetime) -> Self {
        self.standard = lifetime;
        self
    }

    /// Sets the lifetime of "remember me" sessions.
    #[must_use]
    pub fn with_remember_me(mut self, lifetime: Lifetime) -> Self {
        self.remember_me = lifetime;
        self
    }

    /// Sets the minimum interval between last-seen writes.
    #[must_use]
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = interval;
        self
    }

    /// Sets the retry bound of optimistic data updates (at least 1).
    #[must_use]
    pub fn with_max_update_attempts(mut self, attempts: u32) -> Self {
        self.max_update_attempts = attempts.max(1);
        self
    }

    /// The lifetime for a session with or without "remember me".
    pub fn lifetime(&self, remember: bool) -> Lifetime {
        if remember {
            self.remember_me
        } else {
            self.standard
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_expiry_never_passes_absolute() {
        let now = Timestamp::from_unix_millis(0);
        let abs = Timestamp::from_unix_millis(10 * 60 * 1000);
        assert_eq!(Lifetime::STANDARD.idle_expiry(now, abs), abs);
        let abs_far = Timestamp::from_unix_millis(i64::MAX);
        assert_eq!(
            Lifetime::STANDARD.idle_expiry(now, abs_far),
            Timestamp::from_unix_millis(30 * 60 * 1000)
        );
    }
}
