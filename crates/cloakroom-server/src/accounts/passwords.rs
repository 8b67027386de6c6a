//! Passwords: the rules a new one must meet, and Argon2id hashing on a bounded pool.
//!
//! Rules follow NIST SP 800-63B §5.1.1.2: at least 12 characters, any characters at all, no
//! composition rules, a generous maximum (1,024 bytes — checked before hashing, so a
//! megabyte "password" costs nothing), and a refusal of known-common passwords and of the
//! username itself.
//!
//! Hashing is Argon2id with at least the OWASP minimum (m = 19 MiB, t = 2, p = 1). It is
//! deliberately expensive, so it never runs on the async workers that validate sessions: it
//! runs on blocking threads, at most `workers` at a time, with a bounded queue. A flood of
//! logins therefore waits for (or is refused by) the pool, while session validation keeps its
//! CPU.
//!
//! The accounting is cancellation-safe: a place in the queue and a worker are RAII permits of
//! two semaphores, and both move into the blocking task. A request dropped while it waits
//! (the client hung up, a timeout fired) gives its place back as it is dropped; a request
//! dropped while its hash runs leaves the hash holding its worker until it ends, so no more
//! than `workers` hashes ever run at once.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::phc::PasswordHash as Phc;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use cloakroom_core::accounts::{PasswordHash, Username};
use tokio::sync::Semaphore;

/// Fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most bytes a password may have.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Argon2id memory cost in KiB (OWASP minimum: 19 MiB).
pub const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id iterations.
pub const ARGON2_T: u32 = 2;
/// Argon2id parallelism.
pub const ARGON2_P: u32 = 1;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
});

/// A password as received. `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone, serde::Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }

    /// Whether two submitted passwords are the same (a "repeat the password" field).
    pub fn same_as(&self, other: &Self) -> bool {
        self.0 == other.0
    }

    /// Whether it is short enough to be worth hashing at all.
    pub fn within_length_limit(&self) -> bool {
        self.0.len() <= MAX_PASSWORD_BYTES
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// Why a new password was refused; the message is shown to the user, as a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WeakPassword {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("The password must be at least {MIN_PASSWORD_CHARS} characters long.")]
    TooShort,
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    #[error("The password must be at most {MAX_PASSWORD_BYTES} bytes long.")]
    TooLong,
    /// On the list of commonly used passwords.
    #[error(
        "This password is one of the most common ones, which attackers try first. Choose another."
    )]
    Common,
    /// The same as the username.
    #[error("The password must not be the username.")]
    SameAsUsername,
    /// One character repeated.
    #[error("The password must not be one character repeated.")]
    Repetitive,
}

/// Checks a new password against the rules (never called for a login attempt: an existing
/// password is whatever it is).
pub fn check_new_password(password: &Password, username: &Username) -> Result<(), WeakPassword> {
    let p = password.expose();
    if p.len() > MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong);
    }
    if p.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    let folded = p.to_lowercase();
    if folded == username.key() {
        return Err(WeakPassword::SameAsUsername);
    }
    let mut chars = p.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err(WeakPassword::Repetitive);
    }
    if COMMON.contains(folded.as_str()) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

/// The hashing pool is saturated; the caller should answer 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("Too many passwords are being checked right now. Try again in a moment.")]
pub struct Busy;

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matches.
    pub matches: bool,
    /// A fresh hash with the current parameters, when the stored one is weaker (set only if
    /// the password matched).
    pub upgraded: Option<PasswordHash>,
}

/// Argon2id hashing and verification on a bounded pool of blocking threads.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    /// One permit per hash that may run at once.
    workers: Arc<Semaphore>,
    /// One permit per check in the pool, running or waiting for a worker.
    places: Arc<Semaphore>,
    dummy: PasswordHash,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Passwords")
            .field("available", &self.inner.workers.available_permits())
            .field("free_places", &self.inner.places.available_permits())
            .finish()
    }
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants known to be valid.
    #[allow(clippy::expect_used)]
    let params =
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> PasswordHash {
    // Hashing with valid parameters and a generated salt cannot fail; an empty hash would
    // then simply never verify.
    let phc = argon2()
        .hash_password(password.as_bytes())
        .map(|h: Phc| h.to_string())
        .unwrap_or_default();
    PasswordHash::new(phc)
}

fn verify_blocking(password: &str, stored: &PasswordHash) -> Verified {
    let Ok(parsed) = Phc::new(stored.expose()) else {
        tracing::error!("a stored password hash is not a PHC string; the login is refused");
        return Verified {
            matches: false,
            upgraded: None,
        };
    };
    let matches = argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    let current = Params::try_from(&parsed).ok();
    let outdated = parsed.algorithm.as_str() != "argon2id"
        || current.is_none_or(|p| {
            p.m_cost() < ARGON2_M_KIB || p.t_cost() < ARGON2_T || p.p_cost() < ARGON2_P
        });
    let upgraded = (matches && outdated).then(|| hash_blocking(password));
    Verified { matches, upgraded }
}

impl Passwords {
    /// A pool running at most `workers` hashes at once, with up to 64 per worker waiting.
    pub fn new(workers: usize) -> Self {
        let workers = workers.max(1);
        Self {
            inner: Arc::new(Inner {
                workers: Arc::new(Semaphore::new(workers)),
                places: Arc::new(Semaphore::new(workers + workers * 64)),
                dummy: hash_blocking("cloakroom dummy password for unknown users"),
            }),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        // Both permits are owned values: dropping this future at any await gives back what it
        // holds, and once the hash starts they belong to the blocking task, not to us.
        let place = self
            .inner
            .places
            .clone()
            .try_acquire_owned()
            .map_err(|_| Busy)?;
        let worker = self
            .inner
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _held = (place, worker);
            f()
        })
        .await
        .map_err(|_| Busy)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &Password) -> Result<PasswordHash, Busy> {
        let p = password.clone();
        self.run(move || hash_blocking(p.expose())).await
    }

    /// Checks `password` against `stored`.
    pub async fn verify(
        &self,
        password: &Password,
        stored: &PasswordHash,
    ) -> Result<Verified, Busy> {
        let (p, stored) = (password.clone(), stored.clone());
        self.run(move || verify_blocking(p.expose(), &stored)).await
    }

    /// Spends the same effort as [`verify`](Self::verify) and fails: for unknown usernames,
    /// so that "no such user" and "wrong password" cannot be told apart by timing.
    pub async fn verify_dummy(&self, password: &Password) -> Result<(), Busy> {
        let (p, dummy) = (password.clone(), self.inner.dummy.clone());
        self.run(move || verify_blocking(p.expose(), &dummy))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Username {
        Username::parse("alice").unwrap()
    }

    #[test]
    fn rules() {
        let ok = |p: &str| check_new_password(&Password::new(p), &user());
        assert_eq!(ok("short"), Err(WeakPassword::TooShort));
        assert_eq!(
            ok("ééééééééééé"),
            Err(WeakPassword::TooShort),
            "11 characters, 22 bytes"
        );
        assert_eq!(ok(&"x".repeat(1025)), Err(WeakPassword::TooLong));
        assert_eq!(ok("aaaaaaaaaaaaaa"), Err(WeakPassword::Repetitive));
        assert_eq!(ok("QWERTY123456"), Err(WeakPassword::Common));
        assert_eq!(ok("1qaz2wsx3edc"), Err(WeakPassword::Common));
        assert_eq!(
            check_new_password(
                &Password::new("AliceAliceAl"),
                &Username::parse("aliceALICEal").unwrap()
            ),
            Err(WeakPassword::SameAsUsername)
        );
        assert_eq!(ok("correct horse battery staple"), Ok(()));
        assert_eq!(ok("🔑🔑🔑🔑🔑🔑 spaces ok"), Ok(()));
        assert!(COMMON.len() > 300);
    }

    #[test]
    fn debug_never_shows_the_password() {
        assert_eq!(
            format!("{:?}", Password::new("hunter2hunter2")),
            "Password([redacted])"
        );
    }

    /// Finding 1: a check dropped while it waited for a worker never gave its queue slot
    /// back; enough of them made every later check `Busy` until restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finding_01_cancelled_checks_give_back_their_queue_slot() {
        let pw = Passwords::new(1);
        let p = Password::new("correct horse battery staple");
        // Two floods: each fills the queue (64 behind one worker) and is dropped.
        for _ in 0..2 {
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let (pw, p) = (pw.clone(), p.clone());
                    tokio::spawn(async move { pw.verify_dummy(&p).await })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            for t in &tasks {
                t.abort();
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        assert!(pw.verify_dummy(&p).await.is_ok(), "{pw:?}");
    }

    /// Finding 1: the worker permit was held by the request's future, not by the hash; a
    /// request dropped mid-hash freed it while the hash ran on, so more hashes than configured
    /// could run at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn finding_01_a_running_hash_keeps_its_worker_when_its_request_is_dropped() {
        let pw = Passwords::new(1);
        let p = Password::new("correct horse battery staple");
        let task = {
            let (pw, p) = (pw.clone(), p.clone());
            tokio::spawn(async move { pw.verify_dummy(&p).await })
        };
        while !format!("{pw:?}").contains("available: 0") {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        task.abort();
        let _ = task.await;
        assert!(
            format!("{pw:?}").contains("available: 0"),
            "the hash still runs, so its worker is still taken: {pw:?}"
        );
    }

    #[tokio::test]
    async fn hash_verify_and_upgrade() {
        let pw = Passwords::new(1);
        let p = Password::new("correct horse battery staple");
        let h = pw.hash(&p).await.unwrap();
        assert!(
            h.expose().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            h.expose()
        );
        let v = pw.verify(&p, &h).await.unwrap();
        assert_eq!(
            v,
            Verified {
                matches: true,
                upgraded: None
            }
        );
        assert!(
            !pw.verify(&Password::new("wrong password!!"), &h)
                .await
                .unwrap()
                .matches
        );
        // A hash with weaker parameters is upgraded on a successful login.
        let weak: Phc = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"correct horse battery staple")
        .unwrap();
        let weak = weak.to_string();
        let v = pw.verify(&p, &PasswordHash::new(weak)).await.unwrap();
        assert!(v.matches);
        assert!(v.upgraded.unwrap().expose().contains("m=19456,t=2,p=1"));
        assert!(pw.verify_dummy(&p).await.is_ok());
        assert!(
            !pw.verify(&p, &PasswordHash::new("not a phc".into()))
                .await
                .unwrap()
                .matches
        );
    }
}
