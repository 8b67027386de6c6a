//! Micro benchmarks: session validation vs JWT verification, and the other per-request and
//! per-login costs.
//!
//! ```text
//! cargo bench -p cloakroom-bench --bench micro                      # everything
//! cargo bench -p cloakroom-bench --bench micro -- session_validate  # one group
//! ```
//!
//! Groups (criterion ids are `group/function/parameter`):
//!
//! * `session_validate/<store>/{random,hot}` — `SessionManager::validate(Some(cookie))` (strict
//!   parse, SHA-256, store load, expiry) on the memory store holding 1,000,000 sessions, SQLite
//!   on a file (100,000 sessions, warm page cache), and Redis and PostgreSQL on loopback once
//!   their crates exist. `random` presents a different session each time; `hot` the same one.
//!   The manager's clock is pinned, so no validation is due a last-seen write: this is the read
//!   path (the HTTP harness measures writes).
//! * `jwt_verify/<alg>/{typical,fat}` — the baselines' verifier (`cloakroom_bench::jwt::Verifier`,
//!   AWS-LC): algorithm, signature, `exp`, `nbf`, `iss` and `aud` checks, over 1,000 distinct
//!   tokens with the same claims shape.
//! * `jwt_verify_jsonwebtoken/<alg>/typical` — the same tokens through `jsonwebtoken::decode` on
//!   its RustCrypto backend, the verifier the baselines used before: the reference that shows
//!   what choosing AWS-LC changes.
//! * `session_create/{memory,sqlite}` — `SessionManager::issue` (three CSPRNG draws, SHA-256,
//!   create-if-absent). SQLite waits for its fsync: one durable commit per session, sequentially.
//! * `service_jwt/mint_eddsa` — signing the short-lived EdDSA JWT the edge hands a service (the
//!   product's claims).
//! * `argon2id/{hash,verify}` — the server's password pool, m=19456 KiB, t=2, p=1.
//!
//! Sizes via `CLOAKROOM_BENCH_SESSIONS` (memory store, default 1,000,000) and
//! `CLOAKROOM_BENCH_SQLITE_SESSIONS` (default 100,000).

// A benchmark that cannot set up or whose operation fails must stop loudly, not measure the
// failure path.
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cloakroom_bench::fixtures::{BenchUser, Picker, issue_many, new_session};
use cloakroom_bench::jwt::{Alg, fat_claims, mint_service_token, service_claims, typical_claims};
use cloakroom_bench::stores::{self, Backend};
use cloakroom_bench::wire;
use cloakroom_core::{Clock, ManualClock, SessionManager, SessionStore, TOKEN_LEN};
use cloakroom_server::passwords::{ARGON2_M_KIB, ARGON2_P, ARGON2_T, Password, Passwords};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use tokio::runtime::Runtime;

/// Accounts the sessions are spread over (10 sessions each at 1M).
const USERS: usize = 100_000;
/// Distinct JWTs verified per algorithm.
const JWTS: usize = 1_000;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    // Current-thread: the memory and SQLite reads complete without yielding, and a
    // single-threaded executor adds the least of its own to what is measured.
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Sessions in a store, and the cookies that unlock them.
struct Fixture {
    manager: SessionManager,
    cookies: Cookies,
    users: Vec<BenchUser>,
}

/// Cookie values packed back to back: picking a random one costs one cache miss, not the two
/// (vector slot, then heap string) of a `Vec<String>` scattered among the sessions' own
/// allocations. A server reads the cookie from a request buffer that is already in cache, so
/// every miss here is the benchmark's, not the product's; `session_validate/control/pick`
/// measures what is left of it.
struct Cookies(Vec<u8>);

impl Cookies {
    fn new(values: &[String]) -> Self {
        let mut bytes = Vec::with_capacity(values.len() * TOKEN_LEN);
        for v in values {
            assert_eq!(v.len(), TOKEN_LEN);
            bytes.extend_from_slice(v.as_bytes());
        }
        Self(bytes)
    }

    fn len(&self) -> usize {
        self.0.len() / TOKEN_LEN
    }

    fn get(&self, i: usize) -> &str {
        std::str::from_utf8(&self.0[i * TOKEN_LEN..(i + 1) * TOKEN_LEN]).expect("base64url")
    }
}

fn session_count(backend: Backend) -> usize {
    match backend {
        Backend::Memory => env_count("CLOAKROOM_BENCH_SESSIONS", 1_000_000),
        _ => env_count("CLOAKROOM_BENCH_SQLITE_SESSIONS", 100_000),
    }
}

fn slot(backend: Backend) -> usize {
    Backend::ALL
        .iter()
        .position(|b| *b == backend)
        .expect("every backend is in ALL")
}

/// The opened store for `backend`, or `None` (said once) if it is not available here.
fn store(backend: Backend) -> Option<&'static Arc<dyn SessionStore>> {
    type Opened = Option<(Arc<dyn SessionStore>, tempfile::TempDir)>;
    static STORES: [OnceLock<Opened>; 4] = [const { OnceLock::new() }; 4];
    STORES[slot(backend)]
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            match runtime().block_on(backend.open(dir.path())) {
                Ok(Some(store)) => Some((store, dir)),
                Ok(None) => {
                    eprintln!("{}: not available in this build; skipped", backend.name());
                    None
                }
                Err(e) => {
                    eprintln!("{}: cannot open ({e:#}); skipped", backend.name());
                    None
                }
            }
        })
        .as_ref()
        .map(|(store, _)| store)
}

/// The seeded fixture for an available `backend`, built on first use (so filtering to one
/// group skips the others' seeding).
fn fixture(backend: Backend) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; 4] = [const { OnceLock::new() }; 4];
    FIXTURES[slot(backend)].get_or_init(|| {
        let store = store(backend).expect("only called for available backends");
        // Pinned at the real time (Redis TTLs compare against it) and never moved: no session
        // expires or becomes due a last-seen write during the measurement.
        let manager =
            SessionManager::from_arc(store.clone()).with_clock(ManualClock::starting_now());
        let count = session_count(backend);
        let users: Vec<BenchUser> = (0..USERS.min(count).max(1))
            .map(BenchUser::numbered)
            .collect();
        let started = Instant::now();
        let concurrency = if backend == Backend::Memory { 1 } else { 256 };
        let cookies = runtime()
            .block_on(issue_many(
                &manager,
                &users,
                count,
                concurrency,
                Duration::ZERO,
            ))
            .expect("issuing the benchmark sessions");
        eprintln!(
            "{}: issued {count} sessions in {:.1}s",
            backend.name(),
            started.elapsed().as_secs_f64()
        );
        Fixture {
            manager,
            cookies: Cookies::new(&cookies),
            users,
        }
    })
}

fn session_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_validate");
    for backend in Backend::ALL {
        if store(backend).is_none() {
            continue;
        }
        for (name, hot) in [("random", false), ("hot", true)] {
            group.bench_function(BenchmarkId::new(backend.name(), name), |b| {
                let fx = fixture(backend);
                let mut picker = Picker::new(0x5eed);
                let n = fx.cookies.len();
                b.iter_custom(|iters| {
                    runtime().block_on(async {
                        let started = Instant::now();
                        for _ in 0..iters {
                            let cookie = fx.cookies.get(if hot { 0 } else { picker.index(n) });
                            let session = fx.manager.validate(Some(cookie)).await;
                            assert!(black_box(session).is_ok(), "a seeded session failed");
                        }
                        started.elapsed()
                    })
                });
            });
        }
    }
    // What the benchmark itself spends per `random` iteration: drawing an index and reading a
    // cold cookie out of the packed array (no product code).
    // Shared servers keep what a benchmark wrote: take the sessions out again.
    for backend in [Backend::Redis, Backend::Postgres] {
        if store(backend).is_some() {
            remove_sessions(fixture(backend));
        }
    }
    group.bench_function(BenchmarkId::new("control", "pick"), |b| {
        let fx = fixture(Backend::Memory);
        let mut picker = Picker::new(0x5eed);
        let n = fx.cookies.len();
        b.iter(|| black_box(fx.cookies.get(picker.index(n))));
    });
    group.finish();
}

/// Ends every session of the fixture's users (the store contract's revoke-all).
fn remove_sessions(fx: &'static Fixture) {
    runtime().block_on(async {
        let mut in_flight = tokio::task::JoinSet::new();
        for user in &fx.users {
            if in_flight.len() >= 256 {
                in_flight.join_next().await;
            }
            let (manager, id) = (fx.manager.clone(), user.id.clone());
            in_flight.spawn(async move { manager.revoke_all_for_user(&id, None).await });
        }
        while let Some(done) = in_flight.join_next().await {
            done.expect("a cleanup task panicked")
                .expect("removing benchmark sessions");
        }
    });
}

fn jwt_verify(c: &mut Criterion) {
    let now = cloakroom_core::SystemClock.now();
    let mut group = c.benchmark_group("jwt_verify");
    for alg in Alg::ALL {
        let verifier = alg.verifier().expect("benchmark keys");
        for (kind, fat) in [("typical", false), ("fat", true)] {
            let tokens = jwt_tokens(alg, fat, now);
            let mut picker = Picker::new(0x5eed);
            group.bench_function(BenchmarkId::new(alg.name(), kind), |b| {
                b.iter(|| {
                    let claims = verifier.verify(&tokens[picker.index(JWTS)]);
                    assert!(black_box(claims).is_ok(), "a benchmark token failed");
                });
            });
        }
    }
    group.finish();
    let mut group = c.benchmark_group("jwt_verify_jsonwebtoken");
    for alg in Alg::ALL {
        let verifier = alg.jsonwebtoken_verifier().expect("benchmark keys");
        let tokens = jwt_tokens(alg, false, now);
        let mut picker = Picker::new(0x5eed);
        group.bench_function(BenchmarkId::new(alg.name(), "typical"), |b| {
            b.iter(|| {
                let claims = verifier.verify(&tokens[picker.index(JWTS)]);
                assert!(black_box(claims).is_ok(), "a benchmark token failed");
            });
        });
    }
    group.finish();
}

/// [`JWTS`] distinct tokens of `alg`, typical or fat.
fn jwt_tokens(alg: Alg, fat: bool, now: cloakroom_core::Timestamp) -> Vec<String> {
    let signer = alg.signer().expect("benchmark keys");
    (0..JWTS)
        .map(|n| {
            if fat {
                signer.sign(&fat_claims(n, now))
            } else {
                signer.sign(&typical_claims(n, now))
            }
            .expect("signing")
        })
        .collect()
}

fn session_create(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_create");
    let users: Vec<BenchUser> = (0..1_000).map(BenchUser::numbered).collect();
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            // A fresh store per sample, dropped untimed: a store that kept every session of
            // every sample would grow by millions of records and measure the allocator.
            let manager = SessionManager::new(cloakroom_core::MemoryStore::new());
            runtime().block_on(async {
                let started = Instant::now();
                for i in 0..iters as usize {
                    let new = new_session(&users[i % users.len()], i);
                    black_box(manager.issue(new, None).await.expect("issue"));
                }
                started.elapsed()
            })
        });
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = stores::sqlite(&dir.path().join("cloakroom.db")).expect("sqlite");
    let manager = SessionManager::from_arc(sqlite);
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.bench_function("sqlite", |b| {
        let mut i = 0;
        b.iter_custom(|iters| {
            runtime().block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let new = new_session(&users[i % users.len()], i);
                    i += 1;
                    black_box(manager.issue(new, None).await.expect("issue"));
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

fn service_jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("service_jwt");
    let signer = Alg::EdDsa.signer().expect("benchmark keys");
    let user = BenchUser::numbered(42);
    group.bench_function("mint_eddsa", |b| {
        b.iter(|| {
            let iat = cloakroom_core::SystemClock.now().as_unix_secs();
            let claims = service_claims(
                "https://cloakroom.example.com",
                "https://orders.example.com",
                &user,
                "Xq3v0cJ2m9tB1kW8pL5aZg",
                iat,
            );
            black_box(mint_service_token(&signer, &claims).expect("signing"));
        });
    });
    group.finish();
}

fn argon2id(c: &mut Criterion) {
    let mut group = c.benchmark_group("argon2id");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    let pool = Passwords::new(1);
    let password = Password::new("correct horse battery staple");
    let stored = runtime()
        .block_on(pool.hash(&password))
        .expect("hashing works");
    assert!(
        stored.expose().starts_with(&format!(
            "$argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}$"
        )),
        "the server's parameters"
    );
    group.bench_function("hash", |b| {
        b.iter(|| black_box(runtime().block_on(pool.hash(&password)).expect("hash")));
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            let v = runtime()
                .block_on(pool.verify(&password, &stored))
                .expect("verify");
            assert!(black_box(v).matches);
        });
    });
    group.finish();
}

fn print_wire_sizes() {
    eprintln!("bytes on the wire (HTTP/1.1 header field incl. CRLF):");
    for s in wire::sizes().expect("benchmark keys") {
        eprintln!(
            "  {:<20} credential {:>5} B   header {:>5} B",
            s.label, s.credential_bytes, s.header_bytes
        );
    }
}

fn sizes(_: &mut Criterion) {
    print_wire_sizes();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = sizes, session_validate, jwt_verify, session_create, service_jwt, argon2id
}
criterion_main!(benches);
