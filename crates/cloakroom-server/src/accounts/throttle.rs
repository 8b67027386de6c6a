//! Brute-force throttling of password attempts and of sign-ups.
//!
//! # The policy
//!
//! An attacker must stay slow; the owner must not be locked out by them. A client is known by
//! its *network*: its IPv4 address, or the /64 of its IPv6 address (one subscriber usually holds
//! a whole /64, so counting single IPv6 addresses would hand out 2⁶⁴ fresh budgets). Every
//! password attempt — a login or the current password of a password change — is checked
//! against three counters of failures:
//!
//! | counter | free failures | then each attempt waits | what it stops |
//! | --- | --- | --- | --- |
//! | (account, network) | 5 | 1 s, doubling, at most 15 min | guessing one account from one network |
//! | network | 20 | 1 s, doubling, at most 15 min | one network spraying many accounts |
//! | account, all networks | 100 | 1 min, doubling, at most 15 min | many networks guessing one account |
//!
//! - **An attempt counts the moment it starts.** It is reserved on all three counters before
//!   the password is looked at, so parallel requests cannot slip past the count, and a request
//!   the client cancels (a dropped connection) stays counted.
//! - **A correct password from a clean network is refused only at the global ceiling.** The
//!   per-(account, network) counter is the one that slows a guesser down; a network with no
//!   failures against the account passes it, and passes the per-network counter unless it has
//!   itself sprayed other accounts (then it is the attacker's network, or shares its address).
//!   Only the account-wide counter can refuse everyone, and only after 100 failures in a row:
//!   the limit of NIST SP 800-63B §5.2.2 ("no more than 100 consecutive failed attempts on a
//!   single account"). Past it the account takes one attempt per 15 minutes from anywhere until
//!   a success or a quiet day. Holding the owner out that way costs an attacker 100 guesses
//!   spread over at least 20 networks, then one more every 15 minutes.
//! - **A success** resets the (account, network) and account-wide counters and gives back its
//!   reservation on the network counter (the rest of the network's count stays: one valid
//!   account must not let a network keep guessing at others).
//! - **Waits are capped** at 15 minutes: a lockout that grows without bound would let an
//!   attacker lock the owner out forever (OWASP ASVS V6.3.1 asks for throttling, not permanent
//!   lockout). Failures are forgotten after a quiet day.
//! - **Sign-up** is counted per network, success or not: 10 free, then 1 s doubling to at most
//!   15 minutes; forgotten after a quiet hour. This also bounds how fast a client can probe
//!   which usernames are taken (see `SignupMode`).
//! - **Password-reset requests** are counted per network like sign-ups (the one refusal a
//!   requester sees, since it says nothing about any account), and reset *mails* per account:
//!   3 free, then 1 minute doubling to at most 15 minutes, forgotten after a quiet hour. That
//!   second limit is applied out of sight — a refused mail is simply not sent — because saying
//!   so would tell which accounts exist; it keeps anyone from filling a user's mailbox.
//! - **Unknown usernames are counted exactly like real ones**, so throttling reveals nothing
//!   about which accounts exist.
//!
//! # Memory
//!
//! A username is never stored: a counter is keyed by the first 128 bits of SHA-256 of its
//! case-folded form (or of the raw text, folded, when it is not even a valid username), so an
//! entry has a fixed size however long the typed name. Each table holds at most
//! [`MAX_ENTRIES`] entries. When a table is full, the tenth of its entries that weigh least —
//! fewest failures, then oldest — is dropped in one sweep. A flood of fresh keys (one failure
//! each) therefore evicts other one-failure entries, never the counter of an account under
//! attack: to push out a counter with *n* failures an attacker has to fill the table with
//! entries of *n* failures or more, about `MAX_ENTRIES × n` throttled attempts.
//!
//! # Several instances
//!
//! With the sessions in a shared store (the deployment with several instances behind a load
//! balancer), the counters live there too ([`cloakroom_core::throttle::BackoffCounters`]:
//! `cloakroom_redis::RedisCounters`, `cloakroom_postgres::PostgresCounters`): N failures spread
//! over three instances are throttled like N on one, and a restart forgets nothing. Each
//! check-and-count is one atomic step on one counter (a Lua script, an upsert); the table-size
//! bound above is then the store's expiry (Redis's TTL, the server's purge of PostgreSQL's
//! forgotten counters).
//!
//! When that store does not answer, a password attempt fails closed: the login is answered 503
//! and nothing is checked. Not a stricter local limit instead: the sessions are in the same
//! store, so a login that passed could not be recorded anyway, and a local fallback would hand
//! every instance a fresh budget exactly when an attacker can make the store slow.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::throttle::{Backoff, BackoffCounters};
use cloakroom_core::{Clock, StoreError, Timestamp};
use dashmap::DashMap;
use sha2::{Digest, Sha256};

/// The most entries one throttling table holds.
pub(crate) const MAX_ENTRIES: usize = 100_000;

/// The policy of each kind of counter (each a [`Backoff`]: free failures, then a doubling
/// wait up to a cap; forgotten after a quiet spell).
#[derive(Debug)]
pub(crate) struct Limits;

impl Limits {
    /// Per (account, network): 5 free failures, then 1 s doubling up to 15 minutes.
    pub(crate) const PAIR: Backoff = Backoff {
        free: 5,
        base: Duration::from_secs(1),
        max: Duration::from_secs(15 * 60),
        forget: Duration::from_secs(24 * 3600),
    };

    /// Per network: 20 free failures (a shared NAT has many users), then the same curve.
    pub(crate) const NETWORK: Backoff = Backoff {
        free: 20,
        ..Self::PAIR
    };

    /// Per account, across all networks: the NIST ceiling of 100 consecutive failures, then
    /// 1 minute doubling up to 15 minutes.
    pub(crate) const ACCOUNT: Backoff = Backoff {
        free: 100,
        base: Duration::from_secs(60),
        ..Self::PAIR
    };

    /// Sign-ups per network: 10 free, then 1 s doubling up to 15 minutes; forgotten after a
    /// quiet hour.
    pub(crate) const SIGNUP: Backoff = Backoff {
        free: 10,
        forget: Duration::from_secs(3600),
        ..Self::PAIR
    };

    /// Password-reset requests per network, whatever the account: 10 free, then 1 s doubling
    /// up to 15 minutes; forgotten after a quiet hour.
    pub(crate) const RESET_REQUEST: Backoff = Self::SIGNUP;

    /// Reset mails per account: 3 free (a lost mail, a retry), then 1 minute doubling up to
    /// 15 minutes; forgotten after a quiet hour. Stops anyone filling a user's mailbox.
    pub(crate) const RESET_MAIL: Backoff = Backoff {
        free: 3,
        base: Duration::from_secs(60),
        forget: Duration::from_secs(3600),
        ..Self::PAIR
    };
}

/// A typed username as the throttle knows it: a fixed-size digest, never the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct AccountKey([u8; 16]);

impl AccountKey {
    /// The key of a case-folded username (or of folded text that is not a valid username).
    pub(crate) fn of(folded: &str) -> Self {
        let digest = Sha256::digest(folded.as_bytes());
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }
}

/// The network a client address is counted under: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Network(IpAddr);

impl Network {
    /// The network of `ip` (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                Self(IpAddr::V6(prefix.into()))
            }
            v4 => Self(v4),
        }
    }
}

/// How a counter's key is named in the shared store.
trait CounterName {
    fn name(&self) -> String;
}

impl CounterName for AccountKey {
    fn name(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl CounterName for Option<Network> {
    fn name(&self) -> String {
        self.map_or_else(|| "-".to_owned(), |n| n.0.to_string())
    }
}

impl CounterName for Network {
    fn name(&self) -> String {
        self.0.to_string()
    }
}

impl CounterName for (AccountKey, Option<Network>) {
    fn name(&self) -> String {
        format!("{}/{}", self.0.name(), self.1.name())
    }
}

/// How much of a counter [`Throttle::give_back`] returns.
#[derive(Debug, Clone, Copy)]
enum GiveBack {
    /// One attempt.
    One,
    /// Every attempt: the counter starts over.
    All,
}

/// Why an attempt was not counted.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It must wait this long.
    Wait(Duration),
    /// The shared counters did not answer: fail closed.
    Unavailable(StoreError),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Timestamp,
}

#[derive(Debug)]
struct Table<K: Eq + Hash> {
    /// Its name in the shared store.
    name: &'static str,
    limits: Backoff,
    capacity: usize,
    entries: DashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone + CounterName> Table<K> {
    /// The name of `key`'s counter in the shared store.
    fn shared_name(&self, key: &K) -> String {
        format!("{}:{}", self.name, key.name())
    }
}

impl<K: Eq + Hash + Clone> Table<K> {
    fn new(name: &'static str, limits: Backoff, capacity: usize) -> Self {
        Self {
            name,
            limits,
            capacity: capacity.max(10),
            entries: DashMap::new(),
        }
    }

    /// How long an attempt must still wait after `e`, or zero.
    fn wait_after(&self, e: &Entry, now: Timestamp) -> Duration {
        self.limits.wait(e.failures, e.last_failure, now)
    }

    /// Counts an attempt as a failure now, unless it has to wait: then nothing is counted and
    /// the wait is returned. Check and count are one step, so parallel attempts cannot all
    /// pass on the same count.
    fn reserve(&self, key: K, now: Timestamp) -> Result<(), Duration> {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.evict_lightest(now);
        }
        let mut entry = self.entries.entry(key).or_insert(Entry {
            failures: 0,
            last_failure: now,
        });
        let e = entry.value_mut();
        if now.duration_since(e.last_failure) >= self.limits.forget {
            e.failures = 0;
        }
        let wait = self.wait_after(e, now);
        if !wait.is_zero() {
            return Err(wait);
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        Ok(())
    }

    /// Takes back one reservation (the attempt succeeded, or another counter refused it).
    fn release(&self, key: &K) {
        self.entries.remove_if_mut(key, |_, e| {
            e.failures = e.failures.saturating_sub(1);
            e.failures == 0
        });
    }

    fn reset(&self, key: &K) {
        self.entries.remove(key);
    }

    fn prune(&self, now: Timestamp) {
        let forget = self.limits.forget;
        self.entries
            .retain(|_, e| now.duration_since(e.last_failure) < forget);
    }

    /// Makes room: forgets stale entries, then, if the table is still at least nine tenths
    /// full, the tenth that weighs least (fewest failures, then oldest). One sweep frees room
    /// for a tenth of the capacity, so a flood pays for a sweep once per that many keys.
    fn evict_lightest(&self, now: Timestamp) {
        self.prune(now);
        let target = self.capacity - self.capacity / 10;
        let excess = self.entries.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        let mut weights: Vec<(u32, Timestamp, K)> = self
            .entries
            .iter()
            .map(|r| (r.failures, r.last_failure, r.key().clone()))
            .collect();
        let excess = excess.min(weights.len());
        if excess < weights.len() {
            weights.select_nth_unstable_by_key(excess, |(f, t, _)| (*f, *t));
        }
        for (_, _, key) in weights.into_iter().take(excess) {
            self.entries.remove(&key);
        }
    }
}

/// Throttling state: the counters of the policy in the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    clock: Arc<dyn Clock>,
    tables: Arc<Tables>,
    /// The counters in the shared store, when the sessions are there (Redis, PostgreSQL); the
    /// tables are then unused.
    shared: Option<Arc<dyn BackoffCounters>>,
}

#[derive(Debug)]
struct Tables {
    pairs: Table<(AccountKey, Option<Network>)>,
    networks: Table<Network>,
    accounts: Table<AccountKey>,
    signups: Table<Option<Network>>,
    reset_requests: Table<Option<Network>>,
    reset_mails: Table<AccountKey>,
}

/// A password attempt that has been counted. Dropped without [`succeeded`](Self::succeeded)
/// — a wrong password, an error, a cancelled request — it stays counted as a failure.
#[derive(Debug)]
#[must_use = "an attempt is a failure unless `succeeded` is called"]
pub(crate) struct Attempt {
    throttle: Throttle,
    account: AccountKey,
    network: Option<Network>,
}

impl Attempt {
    /// The password was right: the account's counters start over, and the network gets its
    /// reservation back.
    pub(crate) async fn succeeded(self) {
        let t = &self.throttle;
        // Independent counters: with a shared store, three round trips at once.
        let network = async {
            if let Some(network) = &self.network {
                t.give_back(|t| &t.networks, network, GiveBack::One).await;
            }
        };
        let pair = (self.account, self.network);
        tokio::join!(
            t.give_back(|t| &t.pairs, &pair, GiveBack::All),
            t.give_back(|t| &t.accounts, &self.account, GiveBack::All),
            network,
        );
    }
}

impl Throttle {
    /// Throttling with the limits of the policy.
    #[cfg(test)]
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_capacity(clock, MAX_ENTRIES)
    }

    /// Throttling with the limits of the policy, but `free` sign-ups per network before the
    /// next one waits (the `signup_limit_per_network` setting).
    pub(crate) fn with_signup_allowance(clock: Arc<dyn Clock>, free: u32) -> Self {
        Self::build(clock, MAX_ENTRIES, free)
    }

    /// Throttling with tables of at most `capacity` entries each.
    #[cfg(test)]
    pub(crate) fn with_capacity(clock: Arc<dyn Clock>, capacity: usize) -> Self {
        Self::build(clock, capacity, Limits::SIGNUP.free)
    }

    fn build(clock: Arc<dyn Clock>, capacity: usize, free_signups: u32) -> Self {
        let signup = Backoff {
            free: free_signups,
            ..Limits::SIGNUP
        };
        Self {
            clock,
            tables: Arc::new(Tables {
                pairs: Table::new("pair", Limits::PAIR, capacity),
                networks: Table::new("network", Limits::NETWORK, capacity),
                accounts: Table::new("account", Limits::ACCOUNT, capacity),
                signups: Table::new("signup", signup, capacity),
                reset_requests: Table::new("reset-request", Limits::RESET_REQUEST, capacity),
                reset_mails: Table::new("reset-mail", Limits::RESET_MAIL, capacity),
            }),
            shared: None,
        }
    }

    /// The same policy with its counters in a shared store, shared by every instance there.
    pub(crate) fn shared(mut self, counters: Arc<dyn BackoffCounters>) -> Self {
        self.shared = Some(counters);
        self
    }

    /// Counts an attempt on `key` in the table `table` picks, or says why not.
    async fn reserve<K: Eq + Hash + Clone + CounterName>(
        &self,
        table: impl Fn(&Tables) -> &Table<K>,
        key: K,
    ) -> Result<(), Refused> {
        let now = self.clock.now();
        let table = table(&self.tables);
        let Some(shared) = &self.shared else {
            return table.reserve(key, now).map_err(Refused::Wait);
        };
        match shared
            .reserve(&table.shared_name(&key), &table.limits, now)
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(Refused::Wait(wait)),
            Err(e) => Err(Refused::Unavailable(e)),
        }
    }

    /// Takes back one counted attempt on `key` (`GiveBack::One`: the attempt succeeded, or
    /// another counter refused it) or all of them (`GiveBack::All`). Best effort: a counter
    /// that stays is the safe side.
    async fn give_back<K: Eq + Hash + Clone + CounterName>(
        &self,
        table: impl Fn(&Tables) -> &Table<K>,
        key: &K,
        how: GiveBack,
    ) {
        let table = table(&self.tables);
        let Some(shared) = &self.shared else {
            return match how {
                GiveBack::One => table.release(key),
                GiveBack::All => table.reset(key),
            };
        };
        let name = table.shared_name(key);
        let done = match how {
            GiveBack::One => shared.release(&name).await,
            GiveBack::All => shared.reset(&name).await,
        };
        if let Err(e) = done {
            tracing::warn!(error = %crate::error_chain::chain(&e), counter = table.name, "a throttling counter kept attempts it should have given back");
        }
    }

    /// Starts a password attempt for `account` from `ip`: counted now, on every counter, or
    /// refused with how long to wait (or because the shared counters do not answer).
    pub(crate) async fn begin(
        &self,
        account: AccountKey,
        ip: Option<IpAddr>,
    ) -> Result<Attempt, Refused> {
        let network = ip.map(Network::of);
        if let Some(n) = network {
            self.reserve(|t| &t.networks, n).await?;
        }
        if let Err(refused) = self.reserve(|t| &t.pairs, (account, network)).await {
            if let Some(n) = &network {
                self.give_back(|t| &t.networks, n, GiveBack::One).await;
            }
            return Err(refused);
        }
        if let Err(refused) = self.reserve(|t| &t.accounts, account).await {
            self.give_back(|t| &t.pairs, &(account, network), GiveBack::One)
                .await;
            if let Some(n) = &network {
                self.give_back(|t| &t.networks, n, GiveBack::One).await;
            }
            return Err(refused);
        }
        Ok(Attempt {
            throttle: self.clone(),
            account,
            network,
        })
    }

    /// Counts a sign-up from `ip`, or refuses it.
    pub(crate) async fn signup(&self, ip: Option<IpAddr>) -> Result<(), Refused> {
        self.reserve(|t| &t.signups, ip.map(Network::of)).await
    }

    /// Counts a password-reset request from `ip`, or refuses it.
    pub(crate) async fn reset_request(&self, ip: Option<IpAddr>) -> Result<(), Refused> {
        self.reserve(|t| &t.reset_requests, ip.map(Network::of))
            .await
    }

    /// Counts a reset mail to `account`, or refuses it.
    pub(crate) async fn reset_mail(&self, account: AccountKey) -> Result<(), Refused> {
        self.reserve(|t| &t.reset_mails, account).await
    }

    /// Removes the shared store's counters whose failures are forgotten (for a store without
    /// its own expiry; Redis expires them itself).
    pub(crate) async fn purge_shared(&self) {
        if let Some(shared) = &self.shared
            && let Err(e) = shared.purge_forgotten(self.clock.now()).await
        {
            tracing::warn!(error = %crate::error_chain::chain(&e), "purging forgotten throttling counters failed");
        }
    }

    /// Forgets stale entries (run periodically so memory stays bounded).
    pub(crate) fn prune(&self) {
        let now = self.clock.now();
        let t = &self.tables;
        t.pairs.prune(now);
        t.networks.prune(now);
        t.accounts.prune(now);
        t.signups.prune(now);
        t.reset_requests.prune(now);
        t.reset_mails.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use cloakroom_core::ManualClock;

    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn wait(r: Refused) -> Duration {
        match r {
            Refused::Wait(d) => d,
            Refused::Unavailable(e) => panic!("{e}"),
        }
    }

    fn begin(t: &Throttle, k: AccountKey, from: Option<IpAddr>) -> Result<Attempt, Duration> {
        run(t.begin(k, from)).map_err(wait)
    }

    fn signup(t: &Throttle, from: Option<IpAddr>) -> Result<(), Duration> {
        run(t.signup(from)).map_err(wait)
    }

    fn succeed(a: Attempt) {
        run(a.succeeded());
    }

    fn setup() -> (ManualClock, Throttle) {
        let clock = ManualClock::new(Timestamp::from_unix_millis(0));
        let t = Throttle::new(Arc::new(clock.clone()));
        (clock, t)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn key(s: &str) -> AccountKey {
        AccountKey::of(s)
    }

    /// `n` failed attempts; panics if one is refused.
    fn fail(t: &Throttle, account: &str, from: Option<IpAddr>, n: usize) {
        for i in 0..n {
            let attempt = begin(t, key(account), from);
            assert!(attempt.is_ok(), "attempt {i} on {account} refused");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let l = Limits::PAIR;
        assert_eq!(l.delay_after(4), Duration::ZERO);
        assert_eq!(l.delay_after(5), Duration::from_secs(1));
        assert_eq!(l.delay_after(6), Duration::from_secs(2));
        assert_eq!(l.delay_after(8), Duration::from_secs(8));
        assert_eq!(l.delay_after(60), Duration::from_secs(15 * 60));
        assert_eq!(l.delay_after(u32::MAX), Duration::from_secs(15 * 60));
        assert_eq!(Limits::ACCOUNT.delay_after(100), Duration::from_secs(60));
    }

    #[test]
    fn throttles_per_account_and_network_and_resets_on_success() {
        let (clock, t) = setup();
        let home = ip("192.0.2.1");
        fail(&t, "alice", home, 5);
        assert_eq!(
            begin(&t, key("alice"), home).unwrap_err(),
            Duration::from_secs(1)
        );
        assert!(
            begin(&t, key("bob"), home).is_ok(),
            "other accounts are unaffected"
        );
        assert!(
            begin(&t, key("alice"), ip("192.0.2.2")).is_ok(),
            "other networks too"
        );
        clock.advance(Duration::from_secs(1));
        succeed(begin(&t, key("alice"), home).unwrap());
        fail(&t, "alice", home, 5);
    }

    #[test]
    fn an_attempt_counts_from_its_start() {
        let (_, t) = setup();
        let home = ip("192.0.2.1");
        // Five attempts still in flight: the sixth waits, whatever they will turn out to be.
        let in_flight: Vec<_> = (0..5)
            .map(|_| begin(&t, key("alice"), home).unwrap())
            .collect();
        assert!(begin(&t, key("alice"), home).is_err());
        drop(in_flight);
        assert!(
            begin(&t, key("alice"), home).is_err(),
            "dropped attempts stay counted"
        );
    }

    #[test]
    fn throttles_per_network_across_accounts_and_forgets() {
        let (clock, t) = setup();
        for i in 0..20 {
            fail(&t, &format!("user{i}"), ip(&format!("2001:db8::{i}")), 1);
        }
        assert!(
            begin(&t, key("fresh"), ip("2001:db8::ffff")).is_err(),
            "one /64"
        );
        assert!(
            begin(&t, key("fresh"), ip("2001:db8:0:1::1")).is_ok(),
            "the next /64"
        );
        assert!(begin(&t, key("fresh"), None).is_ok());
        clock.advance(Duration::from_secs(25 * 3600));
        assert!(begin(&t, key("fresh"), ip("2001:db8::1")).is_ok());
        clock.advance(Duration::from_secs(25 * 3600));
        t.prune();
        let tables = &t.tables;
        assert!(tables.networks.entries.is_empty() && tables.pairs.entries.is_empty());
        assert!(tables.accounts.entries.is_empty());
    }

    #[test]
    fn networks_are_ipv4_addresses_and_ipv6_64s() {
        let n = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(n("2001:db8:1:2:3:4:5:6"), n("2001:db8:1:2::"));
        assert_ne!(n("2001:db8:1:2::"), n("2001:db8:1:3::"));
        assert_eq!(n("::ffff:192.0.2.7"), n("192.0.2.7"));
        assert_ne!(n("192.0.2.7"), n("192.0.2.8"));
    }

    /// Finding 3: only the account-wide ceiling (NIST: at most 100 consecutive failures) can
    /// refuse a network with no failures against the account; a success starts it over.
    #[test]
    fn finding_03_only_the_global_ceiling_refuses_a_clean_network() {
        let (clock, t) = setup();
        // 99 failures from 20 networks, each staying within its own free budget.
        for n in 0..20 {
            fail(
                &t,
                "owner",
                ip(&format!("203.0.113.{n}")),
                if n == 19 { 4 } else { 5 },
            );
        }
        succeed(begin(&t, key("owner"), ip("192.0.2.1")).unwrap());
        for n in 0..20 {
            fail(&t, "owner", ip(&format!("198.51.100.{n}")), 5);
        }
        let wait = begin(&t, key("owner"), ip("192.0.2.1")).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60), "100 in a row: the ceiling");
        clock.advance(wait);
        succeed(begin(&t, key("owner"), ip("192.0.2.1")).unwrap());
        assert!(begin(&t, key("owner"), ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn signups_are_counted_per_network() {
        let (clock, t) = setup();
        for _ in 0..10 {
            signup(&t, ip("2001:db8::1")).unwrap();
        }
        assert_eq!(signup(&t, ip("2001:db8::2")), Err(Duration::from_secs(1)));
        assert!(signup(&t, ip("192.0.2.1")).is_ok());
        clock.advance(Duration::from_secs(3600));
        assert!(
            signup(&t, ip("2001:db8::2")).is_ok(),
            "forgotten after a quiet hour"
        );
    }

    /// Resident memory of this process, in bytes (Linux).
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// Finding 7: the table kept every typed username, raw (up to ~64 KiB each), for a day,
    /// without a cap. A flood of unique long names must not grow memory with their length.
    #[test]
    fn finding_07_throttle_table_stays_bounded() {
        let (_, t) = setup();
        let long = "x".repeat(1024);
        let before = resident_bytes();
        for i in 0..50_000 {
            let _ = begin(&t, AccountKey::of(&format!("{long}{i}")), None);
        }
        let grown = resident_bytes().saturating_sub(before);
        assert!(
            grown < 24 << 20,
            "50,000 one-KiB usernames grew resident memory by {} MiB",
            grown >> 20
        );
        assert!(size_of::<(AccountKey, Option<Network>)>() <= 40);
    }

    /// Finding 7: a full table makes room by dropping its lightest entries, so a flood of
    /// fresh keys cannot push out the counter of an account under attack.
    #[test]
    fn finding_07_a_full_table_evicts_the_flood_not_the_target() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(0));
        let t = Throttle::with_capacity(Arc::new(clock.clone()), 1000);
        let attacker = ip("203.0.113.1");
        fail(&t, "target", attacker, 5);
        for i in 0..50_000 {
            clock.advance(Duration::from_millis(1));
            let _ = begin(&t, key(&format!("flood{i}")), None);
        }
        let tables = &t.tables;
        assert!(tables.pairs.entries.len() <= 1000);
        assert!(tables.accounts.entries.len() <= 1000);
        let pair = (key("target"), attacker.map(Network::of));
        let survived = tables.pairs.entries.get(&pair).map(|e| e.failures);
        assert_eq!(survived, Some(5), "the target's counter survived the flood");
        let survived = tables
            .accounts
            .entries
            .get(&key("target"))
            .map(|e| e.failures);
        assert_eq!(survived, Some(5));
    }
}
