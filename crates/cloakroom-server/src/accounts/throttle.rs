//! Brute-force throttling of password attempts, per account and per client IP.
//!
//! After a few free failures, each further failure doubles the wait before the next attempt
//! is even looked at (1 s, 2 s, 4 s, … capped at 15 minutes). The cap matters: a lockout that
//! grows without bound lets an attacker lock the owner out forever (OWASP ASVS V6.3.1 asks for
//! throttling, not permanent lockout). A success resets the account's counter; counters
//! forget failures after a quiet day.
//!
//! Unknown usernames are counted exactly like real ones, so throttling reveals nothing about
//! which accounts exist.
//!
//! The counters live in this process. Several instances behind a load balancer each throttle
//! on their own, which multiplies an attacker's budget by the number of instances — still
//! exponential backoff, but worth knowing.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::{Clock, Timestamp};
use dashmap::DashMap;

/// Limits for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Failures allowed before the next attempt has to wait.
    pub(crate) free_failures: u32,
    /// The first delay; doubled for each further failure.
    pub(crate) base_delay: Duration,
    /// The longest delay.
    pub(crate) max_delay: Duration,
    /// Failures older than this are forgotten.
    pub(crate) forget_after: Duration,
}

impl Limits {
    /// Per account: 5 free failures, then 1 s doubling up to 15 minutes.
    pub(crate) const ACCOUNT: Self = Self {
        free_failures: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(24 * 3600),
    };

    /// Per client IP: 20 free failures (a shared NAT has many users), then the same curve.
    pub(crate) const IP: Self = Self {
        free_failures: 20,
        ..Self::ACCOUNT
    };

    fn delay_after(&self, failures: u32) -> Duration {
        match failures.checked_sub(self.free_failures) {
            None => Duration::ZERO,
            Some(over) => self
                .base_delay
                .saturating_mul(1_u32 << over.min(20))
                .min(self.max_delay),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Timestamp,
}

#[derive(Debug)]
struct Table<K: Eq + Hash> {
    limits: Limits,
    entries: DashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            entries: DashMap::new(),
        }
    }

    fn wait(&self, key: &K, now: Timestamp) -> Option<Duration> {
        let e = *self.entries.get(key)?;
        if now.duration_since(e.last_failure) >= self.limits.forget_after {
            return None;
        }
        let until = e
            .last_failure
            .saturating_add(self.limits.delay_after(e.failures));
        (until > now).then(|| until.duration_since(now))
    }

    fn fail(&self, key: K, now: Timestamp) {
        let forget = self.limits.forget_after;
        self.entries
            .entry(key)
            .and_modify(|e| {
                if now.duration_since(e.last_failure) >= forget {
                    e.failures = 0;
                }
                e.failures = e.failures.saturating_add(1);
                e.last_failure = now;
            })
            .or_insert(Entry {
                failures: 1,
                last_failure: now,
            });
    }

    fn reset(&self, key: &K) {
        self.entries.remove(key);
    }

    fn prune(&self, now: Timestamp) {
        let forget = self.limits.forget_after;
        self.entries
            .retain(|_, e| now.duration_since(e.last_failure) < forget);
    }
}

/// Login throttling state.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    clock: Arc<dyn Clock>,
    accounts: Arc<Table<String>>,
    ips: Arc<Table<IpAddr>>,
}

impl Throttle {
    /// Throttling with the default limits.
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_limits(clock, Limits::ACCOUNT, Limits::IP)
    }

    /// Throttling with custom limits.
    pub(crate) fn with_limits(clock: Arc<dyn Clock>, account: Limits, ip: Limits) -> Self {
        Self {
            clock,
            accounts: Arc::new(Table::new(account)),
            ips: Arc::new(Table::new(ip)),
        }
    }

    /// How long the caller must wait before an attempt for `account_key` from `ip` is looked
    /// at; `None` if it may proceed now.
    pub(crate) fn wait(&self, account_key: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let now = self.clock.now();
        let by_account = self.accounts.wait(&account_key.to_owned(), now);
        let by_ip = ip.and_then(|ip| self.ips.wait(&ip, now));
        by_account.max(by_ip)
    }

    /// Records a failed attempt.
    pub(crate) fn failed(&self, account_key: &str, ip: Option<IpAddr>) {
        let now = self.clock.now();
        self.accounts.fail(account_key.to_owned(), now);
        if let Some(ip) = ip {
            self.ips.fail(ip, now);
        }
    }

    /// Records a success: the account's counter starts over (the IP's does not, or one valid
    /// account would let an attacker keep guessing at others from the same address).
    pub(crate) fn succeeded(&self, account_key: &str) {
        self.accounts.reset(&account_key.to_owned());
    }

    /// Forgets stale entries (run periodically so memory stays bounded).
    pub(crate) fn prune(&self) {
        let now = self.clock.now();
        self.accounts.prune(now);
        self.ips.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use cloakroom_core::ManualClock;

    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let l = Limits::ACCOUNT;
        assert_eq!(l.delay_after(4), Duration::ZERO);
        assert_eq!(l.delay_after(5), Duration::from_secs(1));
        assert_eq!(l.delay_after(6), Duration::from_secs(2));
        assert_eq!(l.delay_after(8), Duration::from_secs(8));
        assert_eq!(l.delay_after(60), Duration::from_secs(15 * 60));
        assert_eq!(l.delay_after(u32::MAX), Duration::from_secs(15 * 60));
    }

    #[test]
    fn throttles_per_account_and_resets_on_success() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(0));
        let t = Throttle::new(Arc::new(clock.clone()));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(t.wait("alice", Some(ip)), None);
            t.failed("alice", Some(ip));
        }
        assert_eq!(t.wait("alice", Some(ip)), Some(Duration::from_secs(1)));
        assert_eq!(
            t.wait("bob", Some(ip)),
            None,
            "other accounts are unaffected"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.wait("alice", Some(ip)), None);
        t.succeeded("alice");
        t.failed("alice", Some(ip));
        assert_eq!(t.wait("alice", None), None);
    }

    #[test]
    fn throttles_per_ip_across_accounts_and_forgets() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(0));
        let t = Throttle::new(Arc::new(clock.clone()));
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        for i in 0..21 {
            t.failed(&format!("user{i}"), Some(ip));
        }
        assert!(t.wait("fresh-user", Some(ip)).is_some());
        assert!(t.wait("fresh-user", None).is_none());
        clock.advance(Duration::from_secs(25 * 3600));
        assert!(t.wait("fresh-user", Some(ip)).is_none());
        t.prune();
        assert!(t.ips.entries.is_empty() && t.accounts.entries.is_empty());
    }
}
