//! Issue 16: several instances on the same shared stores behave as one. Signing keys live in
//! PostgreSQL sealed with the operator's secret, so every instance serves one JWKS and accepts
//! what another minted; a wrong secret stops start-up without making a key; the secret itself
//! can rotate; a scheduled key rotation happens once for the cluster; clock skew between
//! instances stays inside the verifier's documented leeway. (`scale/run` shows the same with
//! three processes behind nginx, under load and through failovers.)

use std::time::Duration;

use cloakroom_core::Clock as _;
use cloakroom_server::Stores;
use cloakroom_server::config::{AccountStoreKind, RawConfig, SessionStoreKind};
use cloakroom_testkit::postgres::{SchemaGuard, postgres_url, unique_schema};
use cloakroom_testkit::redis::{PrefixGuard, redis_url, unique_prefix};
use cloakroom_verify::{Verifier, VerifierConfig, VerifyError};

use crate::forward::nginx_style;
use crate::support::{Browser, ORIGIN, TestServer, start_with};

const APP: &str = "https://app.example.com";
const OLD_SECRET: &str = "the first secret, thirty-two characters or more";
const NEW_SECRET: &str = "the second secret, also thirty-two characters long";

/// Shared Redis and PostgreSQL, or a skip (a failure under `CLOAKROOM_REQUIRE_SERVICES=1`).
async fn services() -> Option<()> {
    for url in [postgres_url(), redis_url()] {
        let parsed = url::Url::parse(&url).unwrap();
        let addr = format!(
            "{}:{}",
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port_or_known_default().unwrap_or(0)
        );
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return cloakroom_testkit::skip(format!("nothing answers at {addr} ({url})"));
        }
    }
    Some(())
}

/// One deployment's shared stores: the settings every instance of it gets.
struct Cluster {
    prefix: String,
    schema: String,
    secrets: tempfile::TempDir,
    _guards: (PrefixGuard, SchemaGuard),
}

impl Cluster {
    fn new() -> Self {
        let prefix = unique_prefix();
        let schema = unique_schema();
        Self {
            _guards: (PrefixGuard(prefix.clone()), SchemaGuard(schema.clone())),
            prefix,
            schema,
            secrets: tempfile::tempdir().unwrap(),
        }
    }

    /// Points `raw` at this deployment's stores, with `secrets` (newest first) in a file.
    fn configure(&self, raw: &mut RawConfig, secrets: &[&str]) {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = self.secrets.path().join(format!("secrets-{n}"));
        std::fs::write(&file, secrets.join("\n")).unwrap();
        raw.session_store = SessionStoreKind::Redis;
        raw.redis_url = Some(redis_url());
        raw.redis_key_prefix = self.prefix.clone();
        raw.account_store = AccountStoreKind::Postgres;
        raw.postgres_url = Some(postgres_url());
        raw.postgres_schema = self.schema.clone();
        raw.session_cache = None;
        raw.secrets_file = Some(file);
    }

    async fn instance(&self, secrets: &[&str]) -> TestServer {
        start_with(|raw| self.configure(raw, secrets)).await
    }

    async fn key_rows(&self) -> i64 {
        cloakroom_testkit::postgres::admin()
            .await
            .query_one(
                &format!("SELECT count(*) FROM \"{}\".signing_keys", self.schema),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }
}

/// An instance on the embedded store (SQLite in its own data directory), whatever stores the
/// suite runs on.
async fn start_embedded() -> TestServer {
    start_with(|raw| {
        raw.session_store = SessionStoreKind::Sqlite;
        raw.account_store = AccountStoreKind::Sqlite;
        raw.session_cache = None;
    })
    .await
}

/// The service JWT that `s` answers a forward-auth check of `browser`'s session with.
async fn token_at(browser: &mut Browser, s: &TestServer) -> String {
    browser.set_base(&s.base, ORIGIN);
    let r = nginx_style(browser, "GET", &format!("{APP}/")).send().await;
    r.header("x-cloakroom-jwt")
        .unwrap_or_else(|| panic!("no token: {} {}", r.status, r.body))
}

fn verifier_of(s: &TestServer) -> Verifier {
    Verifier::new(
        VerifierConfig::new(&format!("{}/.well-known/jwks.json", s.base), ORIGIN, APP)
            .unwrap()
            .with_min_refresh_interval(Duration::ZERO),
    )
}

async fn jwks(s: &TestServer) -> serde_json::Value {
    let mut b = s.browser();
    let r = b.req("GET", "/.well-known/jwks.json").send().await;
    r.assert(200);
    r.json()
}

#[tokio::test]
async fn instances_on_one_database_serve_one_jwks_and_accept_each_others_tokens() {
    let Some(()) = services().await else { return };
    let cluster = Cluster::new();
    let a = cluster.instance(&[OLD_SECRET]).await;
    let b = cluster.instance(&[OLD_SECRET]).await;
    assert_eq!(jwks(&a).await, jwks(&b).await, "one JWKS for the cluster");
    assert_eq!(
        cluster.key_rows().await,
        3,
        "one service-JWT key, one link key, one pre-login key, made once"
    );

    // Signed in through A; the check (and the token) comes from B, and verifies against A's
    // JWKS, and the other way round.
    let mut browser = a.signed_up("ada").await;
    browser.set_base(&b.base, ORIGIN);
    let from_b = nginx_style(&mut browser, "GET", &format!("{APP}/"))
        .send()
        .await
        .header("x-cloakroom-jwt")
        .expect("B knows A's session and mints a token");
    assert_eq!(
        verifier_of(&a)
            .verify(&from_b)
            .await
            .unwrap()
            .preferred_username,
        "ada"
    );
    browser.set_base(&a.base, ORIGIN);
    let from_a = nginx_style(&mut browser, "GET", &format!("{APP}/"))
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    verifier_of(&b).verify(&from_a).await.unwrap();

    // One rotation, from either instance, for both: the other picks it up at its next read.
    let shared = a.state.shared_keys().expect("keys in PostgreSQL");
    let alg = a.state.settings().jwt_algorithm;
    cloakroom_server::cli::admin::keys_rotate_shared(shared, alg, a.clock.now())
        .await
        .unwrap();
    b.state.reload_keys().await.unwrap();
    a.state.reload_keys().await.unwrap();
    let after = jwks(&a).await;
    assert_eq!(after["keys"].as_array().unwrap().len(), 2);
    assert_eq!(after, jwks(&b).await);

    // Nothing signing-related is left in either data directory.
    for s in [&a, &b] {
        for name in ["keys", "link-keys", "oidc-prelogin.key"] {
            assert!(!s.dir.path().join(name).exists(), "{name} on local disk");
        }
    }
}

#[tokio::test]
async fn a_wrong_secret_stops_start_up_and_makes_no_key() {
    let Some(()) = services().await else { return };
    let cluster = Cluster::new();
    let _a = cluster.instance(&[OLD_SECRET]).await;
    let before = cluster.key_rows().await;

    let dir = tempfile::tempdir().unwrap();
    let mut raw = crate::support::raw_config(dir.path());
    cluster.configure(&mut raw, &[NEW_SECRET]);
    let err = Stores::open(&raw.settings().unwrap()).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("does not open with the 1 secret(s) given"),
        "{message}"
    );
    assert!(!message.contains(NEW_SECRET) && !message.contains(OLD_SECRET));
    assert_eq!(
        cluster.key_rows().await,
        before,
        "no divergent key was made"
    );

    // Without any secret, start-up says what is missing.
    raw.secrets_file = None;
    let err = Stores::open(&raw.settings().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("secrets_file"), "{err}");
}

/// The secret changes in three rolling restarts, as the README says, and no instance loses
/// its keys on the way.
#[tokio::test]
async fn the_secret_itself_rotates_in_three_steps() {
    let Some(()) = services().await else { return };
    let cluster = Cluster::new();
    let first = jwks(&cluster.instance(&[OLD_SECRET]).await).await;
    // 1. The new secret added second: the same keys, nothing sealed again.
    let step1 = cluster.instance(&[OLD_SECRET, NEW_SECRET]).await;
    assert_eq!(jwks(&step1).await, first, "the same keys, not new ones");
    // 2. Moved first: this instance seals the keys again as it starts; one still at step 1
    //    (both secrets) reads them as before.
    let step2 = cluster.instance(&[NEW_SECRET, OLD_SECRET]).await;
    assert_eq!(jwks(&step2).await, first);
    step1.state.reload_keys().await.unwrap();
    // 3. The old one dropped.
    let step3 = cluster.instance(&[NEW_SECRET]).await;
    assert_eq!(jwks(&step3).await, first);
    // And the old one alone no longer opens them.
    let dir = tempfile::tempdir().unwrap();
    let mut raw = crate::support::raw_config(dir.path());
    cluster.configure(&mut raw, &[OLD_SECRET]);
    assert!(Stores::open(&raw.settings().unwrap()).await.is_err());
}

#[tokio::test]
async fn a_scheduled_rotation_happens_once_for_the_cluster() {
    let Some(()) = services().await else { return };
    let cluster = Cluster::new();
    let with_schedule = |raw: &mut RawConfig| {
        cluster.configure(raw, &[OLD_SECRET]);
        raw.key_rotation_days = Some(30);
    };
    let a = start_with(with_schedule).await;
    let b = start_with(with_schedule).await;
    assert_eq!(a.state.rotate_keys_if_due().await.unwrap(), None, "not due");
    for s in [&a, &b] {
        s.clock.advance(Duration::from_secs(31 * 86_400));
    }
    // Both see it due at the same moment; one rotates, the other finds the new key.
    let (ra, rb) = tokio::join!(a.state.rotate_keys_if_due(), b.state.rotate_keys_if_due());
    let rotated: Vec<_> = [ra.unwrap(), rb.unwrap()].into_iter().flatten().collect();
    assert_eq!(rotated.len(), 1, "rotated once: {rotated:?}");
    a.state.reload_keys().await.unwrap();
    b.state.reload_keys().await.unwrap();
    assert_eq!(jwks(&a).await["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks(&a).await, jwks(&b).await);
    // And not again until the next period.
    assert_eq!(b.state.rotate_keys_if_due().await.unwrap(), None);
}

/// Instances whose clocks are 30 s apart (the most the verifier's default leeway absorbs) mint
/// tokens every verifier accepts; a clock further off is refused, not absorbed.
#[tokio::test]
async fn clock_skew_up_to_the_leeway_is_absorbed_and_no_more() {
    let Some(()) = services().await else { return };
    let cluster = Cluster::new();
    let ahead = cluster.instance(&[OLD_SECRET]).await;
    let behind = cluster.instance(&[OLD_SECRET]).await;
    let too_far = cluster.instance(&[OLD_SECRET]).await;
    ahead.clock.advance(Duration::from_secs(30));
    behind
        .clock
        .set(behind.clock.now().saturating_sub(Duration::from_secs(30)));
    too_far.clock.advance(Duration::from_secs(45));
    let mut browser = ahead.signed_up("sam").await;
    let t_ahead = token_at(&mut browser, &ahead).await;
    let t_behind = token_at(&mut browser, &behind).await;
    let t_too_far = token_at(&mut browser, &too_far).await;
    // The verifier runs on the real clock, between the two.
    let v = verifier_of(&behind);
    v.verify(&t_ahead).await.unwrap();
    v.verify(&t_behind).await.unwrap();
    assert!(
        matches!(v.verify(&t_too_far).await, Err(VerifyError::NotYetValid)),
        "45 s ahead is beyond the leeway"
    );
}

/// Wrong passwords for one account from one client, spread round-robin over three instances,
/// are throttled as if they had all hit one: the counters are in the shared Redis.
#[tokio::test]
async fn failures_spread_over_instances_are_throttled_like_on_one() {
    let Some(()) = services().await else { return };
    throttled_across_instances(SessionStoreKind::Redis).await;
}

/// The same with the sessions in PostgreSQL: the counters are there.
#[tokio::test]
async fn with_sessions_in_postgres_failures_are_throttled_across_instances_too() {
    let Some(()) = services().await else { return };
    throttled_across_instances(SessionStoreKind::Postgres).await;
}

async fn throttled_across_instances(sessions: SessionStoreKind) {
    let cluster = Cluster::new();
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(
            start_with(|raw| {
                cluster.configure(raw, &[OLD_SECRET]);
                raw.session_store = sessions;
            })
            .await,
        );
    }
    drop(instances[0].signed_up("tom").await);
    let mut attacker = instances[0].browser();
    let wrong = serde_json::json!({"username": "tom", "password": "not the password"});
    // Five failures are free per (account, network), wherever they land.
    for i in 0..5 {
        let s = &instances[i % 3];
        attacker.set_base(&s.base, ORIGIN);
        attacker.post_json("/api/login", &wrong).await.assert(401);
    }
    // The sixth waits on every instance, though none of them saw more than two.
    for s in &instances {
        attacker.set_base(&s.base, ORIGIN);
        let r = attacker.post_json("/api/login", &wrong).await;
        assert_eq!(r.status, 429, "{}: {}", s.base, r.body);
    }
    // A success through one instance clears the account's counters for all of them.
    for s in &instances {
        s.clock.advance(Duration::from_secs(2));
    }
    let right = serde_json::json!({"username": "tom", "password": crate::support::PASSWORD});
    attacker.set_base(&instances[1].base, ORIGIN);
    attacker.post_json("/api/login", &right).await.assert(200);
    attacker.set_base(&instances[2].base, ORIGIN);
    attacker.post_json("/api/login", &wrong).await.assert(401);
}

/// With the throttle's Redis gone, a login fails closed: 503, and no password is checked. A
/// wrong password shows it: the accounts are in PostgreSQL, so without the throttle's refusal
/// it would be checked and answered 401.
#[tokio::test]
async fn logins_fail_closed_when_the_shared_throttle_is_unreachable() {
    if !cloakroom_testkit::redis::redis_server_available() {
        return cloakroom_testkit::skip("redis-server is not installed").unwrap_or(());
    }
    let Some(()) = services().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let redis = cloakroom_testkit::redis::Server::start(
        dir.path(),
        cloakroom_testkit::redis::free_port(),
        false,
    );
    let cluster = Cluster::new();
    let s = start_with(|raw| {
        cluster.configure(raw, &[OLD_SECRET]);
        raw.redis_url = Some(redis.url());
    })
    .await;
    drop(s.signed_up("una").await);
    redis.kill();
    let mut b = s.browser();
    let r = b
        .post_json(
            "/api/login",
            &serde_json::json!({"username": "una", "password": "not the password"}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.session_cookie().is_none());
}

/// An instance on the embedded store behind the same public URL as instances on the shared
/// stores is found by them: the JWKS at the public URL is not theirs.
#[tokio::test]
async fn an_embedded_instance_behind_the_same_address_is_detected() {
    let Some(()) = services().await else { return };
    // The "load balancer" here sends everything to the embedded instance.
    let embedded = start_embedded().await;
    let cluster = Cluster::new();
    let shared = start_with(|raw| {
        cluster.configure(raw, &[OLD_SECRET]);
        raw.public_url = Some(embedded.base.clone());
    })
    .await;
    assert!(
        matches!(
            shared.state.check_public_jwks().await,
            cloakroom_server::Neighbour::Foreign { .. }
        ),
        "the embedded instance's keys are not the cluster's"
    );
    // An instance of the same cluster behind that address is recognised as one of its own.
    let sibling = start_with(|raw| cluster.configure(raw, &[OLD_SECRET])).await;
    let same = start_with(|raw| {
        cluster.configure(raw, &[OLD_SECRET]);
        raw.public_url = Some(sibling.base.clone());
    })
    .await;
    assert_eq!(
        same.state.check_public_jwks().await,
        cloakroom_server::Neighbour::Same
    );
    // Nor is a rotation that the instance behind the address has read first: its key set
    // differs, but shares the key that signed before.
    let shared = sibling.state.shared_keys().unwrap();
    let alg = sibling.state.settings().jwt_algorithm;
    cloakroom_server::cli::admin::keys_rotate_shared(shared, alg, sibling.clock.now())
        .await
        .unwrap();
    sibling.state.reload_keys().await.unwrap();
    assert_ne!(jwks(&sibling).await, jwks(&same).await);
    assert_eq!(
        same.state.check_public_jwks().await,
        cloakroom_server::Neighbour::Same
    );
}

/// An instance that had its own keys (SQLite accounts) and moves to the shared stores takes
/// its keys along: what it signed before still verifies, and the first instance's keys become
/// the cluster's.
#[tokio::test]
async fn moving_to_shared_stores_keeps_the_keys_an_instance_had() {
    let Some(()) = services().await else { return };
    let alone = start_embedded().await;
    let before = jwks(&alone).await;
    // Its key files, as they are in its data directory.
    let moved = tempfile::tempdir().unwrap();
    for name in ["keys", "link-keys"] {
        let target = moved.path().join(name);
        std::fs::create_dir(&target).unwrap();
        for f in std::fs::read_dir(alone.dir.path().join(name)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, target.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        alone.dir.path().join("oidc-prelogin.key"),
        moved.path().join("oidc-prelogin.key"),
    )
    .unwrap();
    drop(alone);
    let cluster = Cluster::new();
    let first = start_with(|raw| {
        cluster.configure(raw, &[OLD_SECRET]);
        raw.data_dir = moved.path().to_owned();
    })
    .await;
    assert_eq!(
        jwks(&first).await,
        before,
        "the instance's own keys, now shared"
    );
    // Sealed in the database now, they are no longer lying about in plain text.
    for name in ["keys", "link-keys"] {
        let left = std::fs::read_dir(moved.path().join(name)).unwrap().count();
        assert_eq!(left, 0, "{name}: imported files removed");
    }
    assert!(!moved.path().join("oidc-prelogin.key").exists());
    // A second instance, with no files of its own, gets the same keys.
    let second = cluster.instance(&[OLD_SECRET]).await;
    assert_eq!(jwks(&second).await, before);
    assert_eq!(cluster.key_rows().await, 3);
}

/// Two instances started at the same moment on an empty database with different secrets (a
/// deployment mistake): one makes every key, the other stops with "wrong secret". Never a
/// mixture of keys under two secrets, which no instance could start on again.
#[tokio::test]
async fn two_first_starts_with_different_secrets_never_mix_keys() {
    let Some(()) = services().await else { return };
    for _ in 0..5 {
        let cluster = Cluster::new();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let settings = |dir: &tempfile::TempDir, secret: &str| {
            let mut raw = crate::support::raw_config(dir.path());
            cluster.configure(&mut raw, &[secret]);
            raw.settings().unwrap()
        };
        let (a, b) = (settings(&dir_a, OLD_SECRET), settings(&dir_b, NEW_SECRET));
        let (ra, rb) = tokio::join!(Stores::open(&a), Stores::open(&b));
        let winner = match (&ra, &rb) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => {
                assert!(e.to_string().contains("does not open"), "{e}");
                if ra.is_ok() { &a } else { &b }
            }
            (Ok(_), Ok(_)) => panic!("both started, with different secrets"),
            (Err(ea), Err(eb)) => panic!("neither started: {ea} / {eb}"),
        };
        // Every key opens with the winner's secret: it starts again.
        Stores::open(winner).await.unwrap();
        assert_eq!(cluster.key_rows().await, 3);
    }
}

/// An admin command reads the shared keys; it never makes, imports or re-seals them (a
/// workstation's stale data directory must not become the cluster's keys).
#[tokio::test]
async fn admin_commands_never_write_the_shared_keys() {
    let Some(()) = services().await else { return };
    let alone = start_embedded().await;
    let cluster = Cluster::new();
    // An empty cluster, and a data directory with key files of its own.
    drop(cluster.instance(&[OLD_SECRET]).await);
    cloakroom_testkit::postgres::admin()
        .await
        .batch_execute(&format!("DELETE FROM \"{}\".signing_keys", cluster.schema))
        .await
        .unwrap();
    let mut raw = crate::support::raw_config(alone.dir.path());
    cluster.configure(&mut raw, &[OLD_SECRET]);
    let err = Stores::open_existing(&raw.settings().unwrap())
        .await
        .expect_err("no keys to read yet");
    assert!(err.to_string().contains("start the server"), "{err}");
    assert_eq!(cluster.key_rows().await, 0, "nothing imported or made");
    assert!(alone.dir.path().join("link-keys").is_dir(), "nothing moved");
}
