//! Realistic sessions, issued through the real [`SessionManager`], in bulk.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cloakroom_core::{
    AuthMethod, ManualClock, NewSession, SessionData, SessionManager, StoreError, UserId,
};
use cloakroom_server::session_keys as keys;
use tokio::task::JoinSet;

/// The user agent recorded on benchmark sessions: a current desktop Chrome, so records are the
/// size they are in production.
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
     Chrome/142.0.0.0 Safari/537.36";

/// A user the benchmark issues sessions for.
#[derive(Debug, Clone)]
pub struct BenchUser {
    /// The account id sessions belong to.
    pub id: UserId,
    /// The username, kept in session data as the server does (for forward-auth headers).
    pub username: String,
}

impl BenchUser {
    /// User number `n` (`bench-user-000042`, id `bench-id-000042`).
    pub fn numbered(n: usize) -> Self {
        #[allow(clippy::expect_used)] // ASCII letters, digits and '-': always a valid user id.
        let id = UserId::new(format!("bench-id-{n:06}")).expect("a valid user id");
        Self {
            id,
            username: format!("bench-user-{n:06}"),
        }
    }

    /// The account's email address (`bench-seed` creates it verified).
    pub fn email(&self) -> String {
        format!("{}@example.com", self.username)
    }
}

/// What the server records for a password login of `user`, from client number `n`: the
/// session data of an account with a verified email address and no display name, which is
/// what `bench-seed` creates (forward auth then answers every identity header from it).
pub fn new_session(user: &BenchUser, n: usize) -> NewSession {
    let mut data = SessionData::default();
    // Short strings under known keys: cannot exceed the data limit.
    let _ = data.insert(keys::USERNAME, &user.username);
    let _ = data.insert(keys::EMAIL, &user.email());
    #[allow(clippy::cast_possible_truncation)] // Spreads clients over 10.x.y.z; wrapping is fine.
    let ip = IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8));
    NewSession::new(user.id.clone(), AuthMethod::password())
        .user_agent(USER_AGENT)
        .ip(ip)
        .data(data)
}

/// Issues `count` sessions spread round-robin over `users` and returns their cookie values in
/// issue order.
///
/// With `concurrency` above 1, up to that many issues are in flight at once — which is what
/// lets a store with group commit (SQLite) make one fsync for many sessions instead of one
/// each. Stores that answer synchronously (memory) gain nothing from it.
///
/// With a non-zero `stagger`, session `i` is issued `stagger × i / count` before the manager's
/// current time, so their last-seen times — and the moments each becomes due a last-seen write
/// — are spread evenly over that span, as on a server that has been busy for a while. With
/// zero, every session is issued now.
pub async fn issue_many(
    manager: &SessionManager,
    users: &[BenchUser],
    count: usize,
    concurrency: usize,
    stagger: Duration,
) -> Result<Vec<String>, StoreError> {
    let mut cookies = vec![String::new(); count];
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let now = manager.now();
    let manager_for = |i: usize| {
        if stagger.is_zero() {
            return manager.clone();
        }
        #[allow(clippy::cast_precision_loss)] // Fractions of a minute; precision is plenty.
        let back = stagger.mul_f64(i as f64 / count as f64);
        manager
            .clone()
            .with_clock(ManualClock::new(now.saturating_sub(back)))
    };
    if concurrency <= 1 {
        for (i, slot) in cookies.iter_mut().enumerate() {
            let issued = manager_for(i)
                .issue(new_session(&users[i % users.len()], i), None)
                .await?;
            *slot = issued.token.expose_cookie_value();
        }
        return Ok(cookies);
    }
    let mut in_flight = JoinSet::new();
    let mut next = 0;
    while next < count || !in_flight.is_empty() {
        while next < count && in_flight.len() < concurrency {
            let manager = manager_for(next);
            let new = new_session(&users[next % users.len()], next);
            let i = next;
            in_flight.spawn(async move { (i, manager.issue(new, None).await) });
            next += 1;
        }
        if let Some(joined) = in_flight.join_next().await {
            #[allow(clippy::expect_used)] // `issue` does not panic; if it did, so should we.
            let (i, issued) = joined.expect("an issuing task panicked");
            cookies[i] = issued?.token.expose_cookie_value();
        }
    }
    Ok(cookies)
}

/// A tiny deterministic generator (SplitMix64) for picking which session a benchmark iteration
/// presents. Deterministic so runs are comparable; a few instructions so it does not show up in
/// what is measured.
#[derive(Debug, Clone)]
pub struct Picker(u64);

impl Picker {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A pseudo-random index below `n` (which must not be zero).
    pub fn index(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // Multiply-shift instead of `%`: unbiased enough and no division on the hot path.
        #[allow(clippy::cast_possible_truncation)] // The product's high half is below `n`.
        let i = ((u128::from(z) * n as u128) >> 64) as usize;
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom_core::MemoryStore;

    #[tokio::test]
    async fn issued_cookies_validate_and_carry_the_username() {
        let manager = SessionManager::new(MemoryStore::new());
        let users: Vec<_> = (0..3).map(BenchUser::numbered).collect();
        for concurrency in [1, 8] {
            let cookies = issue_many(&manager, &users, 10, concurrency, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(cookies.len(), 10);
            for (i, c) in cookies.iter().enumerate() {
                let s = manager.validate(Some(c)).await.unwrap();
                assert_eq!(s.user_id, users[i % 3].id);
                assert_eq!(
                    s.data.get::<String>(keys::USERNAME).unwrap().as_deref(),
                    Some(users[i % 3].username.as_str())
                );
            }
        }
    }

    #[tokio::test]
    async fn stagger_spreads_last_seen_evenly_into_the_past() {
        let clock = ManualClock::new(cloakroom_core::Timestamp::from_unix_millis(1_000_000));
        let manager = SessionManager::new(MemoryStore::new()).with_clock(clock.clone());
        let users = [BenchUser::numbered(0)];
        let stagger = Duration::from_secs(60);
        let cookies = issue_many(&manager, &users, 4, 2, stagger).await.unwrap();
        let mut seen = Vec::new();
        for c in &cookies {
            seen.push(manager.validate(Some(c)).await.unwrap().last_seen_at);
        }
        let ms = |t: cloakroom_core::Timestamp| 1_000_000 - t.as_unix_millis();
        assert_eq!(
            seen.into_iter().map(ms).collect::<Vec<_>>(),
            [0, 15_000, 30_000, 45_000]
        );
    }

    #[test]
    fn picker_stays_in_range_and_spreads() {
        let mut p = Picker::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[p.index(10)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
