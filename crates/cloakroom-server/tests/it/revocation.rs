//! Issue 14: a session revoked while an instance serves it under load, from its session cache.
//! Every answer to a check *sent* after the revocation returned is recorded: the exact cache
//! (SQLite, the default) must answer none of them 200, whether the revocation came through the
//! server or from the admin CLI in another process; a push cache (Redis) none later than the
//! delivery bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cloakroom_server::config::{SessionCacheMode, SessionStoreKind};
use serde_json::json;

use cloakroom_testkit::http::SESSION_COOKIE;

use crate::support::{TestServer, start, start_with};

/// Checks sent one after another by each of several clients until told to stop: when each was
/// sent, and what came back.
struct Load {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<Vec<(Instant, u16)>>>,
}

impl Load {
    fn start(base: &str, cookie_name: &str, cookie: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..clients)
            .map(|_| {
                let (stop, url) = (stop.clone(), format!("{base}/auth/verify"));
                let header = format!("{cookie_name}={cookie}");
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let status = http
                            .get(&url)
                            .header("cookie", &header)
                            .send()
                            .await
                            .map_or(0, |r| r.status().as_u16());
                        seen.push((sent, status));
                    }
                    seen
                })
            })
            .collect();
        Self { stop, clients }
    }

    async fn finish(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for c in self.clients {
            all.extend(c.await.unwrap());
        }
        all
    }
}

/// How many checks were answered 200 though sent later than `slack` after `revoked`, and how
/// late the last 200 was sent (negative: before the revocation returned).
fn late_allowed(seen: &[(Instant, u16)], revoked: Instant, slack: Duration) -> (usize, f64) {
    let late = seen
        .iter()
        .filter(|(sent, status)| *status == 200 && *sent >= revoked + slack)
        .count();
    let last = seen
        .iter()
        .filter(|(_, status)| *status == 200)
        .map(|(sent, _)| {
            if *sent >= revoked {
                sent.duration_since(revoked).as_secs_f64()
            } else {
                -revoked.duration_since(*sent).as_secs_f64()
            }
        })
        .fold(f64::NEG_INFINITY, f64::max);
    (late, last * 1000.0)
}

fn assert_served_then_refused(seen: &[(Instant, u16)], revoked: Instant) {
    let before = seen
        .iter()
        .filter(|(t, s)| *s == 200 && *t < revoked)
        .count();
    let after = seen
        .iter()
        .filter(|(t, s)| *s == 401 && *t >= revoked)
        .count();
    assert!(
        before > 50,
        "the session was not served under load ({before} checks)"
    );
    assert!(after > 10, "too few checks after the revocation ({after})");
    assert!(
        seen.iter().all(|(_, s)| matches!(s, 200 | 401)),
        "a check failed otherwise"
    );
}

async fn cookie_of(s: &TestServer, name: &str) -> (crate::support::Browser, String) {
    let b = s.signed_up(name).await;
    let cookie = b.cookie.clone().expect("signed in");
    (b, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_the_server_is_refused_on_the_next_check_under_load() {
    let s = start().await;
    let (mut b, cookie) = cookie_of(&s, "lena").await;
    let load = Load::start(&s.base, SESSION_COOKIE, &cookie, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.post_json("/api/logout", &json!({})).await.assert(204);
    let revoked = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;
    assert_served_then_refused(&seen, revoked);
    let (late, last_ms) = late_allowed(&seen, revoked, Duration::ZERO);
    assert_eq!(
        late, 0,
        "checks allowed after the revocation (last 200 sent at {last_ms:+.3} ms)"
    );
    if let Some(cache) = s.state.session_cache() {
        assert!(
            cache.stats().hits > 50,
            "not served from the cache: {:?}",
            cache.stats()
        );
    }
}

/// The same through the admin CLI, another process writing to the same SQLite database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_by_the_admin_cli_is_refused_on_the_next_check_under_load() {
    let s = start().await;
    let (_b, cookie) = cookie_of(&s, "mira").await;
    let load = Load::start(&s.base, SESSION_COOKIE, &cookie, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        crate::cli::cloakroom(&dir, &env, &["sessions", "revoke", "--user", "mira"], "")
    })
    .await
    .unwrap();
    let revoked = Instant::now();
    assert!(ok, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = load.finish().await;
    assert_served_then_refused(&seen, revoked);
    // Exact (SQLite): the command told the server before it returned. Push (the suite on
    // Redis): the command is another writer, heard of through the feed.
    let slack = match s.state.settings().session_cache {
        SessionCacheMode::Push => PUSH_SLACK,
        _ => Duration::ZERO,
    };
    let (late, last_ms) = late_allowed(&seen, revoked, slack);
    assert_eq!(
        late, 0,
        "checks allowed after the revocation (last 200 sent at {last_ms:+.3} ms)"
    );
}

/// How late a push cache may still serve a session revoked on another instance, here: far
/// above the delivery time `bench/run --store redis` measures on loopback (milliseconds), to
/// absorb a loaded CI machine; what the test proves is that delivery happens and nothing is
/// served after it.
const PUSH_SLACK: Duration = Duration::from_millis(250);

/// Two instances over one Redis: B, with a push cache, serves a session under load while A
/// (without a cache) revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_another_instance_reaches_a_push_cache_under_load() {
    let url = cloakroom_testkit::redis::redis_url();
    let reachable = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.socket_addrs(|| Some(6379)).ok())
        .and_then(|addrs| addrs.first().copied())
        .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok());
    if !reachable {
        cloakroom_testkit::skip::<()>(format!("Redis is not reachable at {url}"));
        return;
    }
    let prefix = cloakroom_testkit::redis::unique_prefix();
    let _cleanup = cloakroom_testkit::redis::PrefixGuard(prefix.clone());
    let on_redis = |cache: SessionCacheMode| {
        let (url, prefix) = (url.clone(), prefix.clone());
        move |raw: &mut cloakroom_server::config::RawConfig| {
            raw.session_store = SessionStoreKind::Redis;
            raw.redis_url = Some(url);
            raw.redis_key_prefix = prefix;
            raw.session_cache = Some(cache);
        }
    };
    let a = start_with(on_redis(SessionCacheMode::Off)).await;
    let b = start_with(on_redis(SessionCacheMode::Push)).await;
    let cache = b.state.session_cache().expect("push");
    let started = Instant::now();
    while !cache.is_active() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the feed did not connect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut browser, cookie) = cookie_of(&a, "nora").await;
    // Instances share their accounts (PostgreSQL, in a deployment); here each has its own
    // SQLite, so B gets A's account, id and all: forward auth reads who the user is per check.
    let nora = a
        .state
        .account_store()
        .by_username(&cloakroom_core::accounts::Username::parse("nora").unwrap())
        .await
        .unwrap()
        .unwrap();
    b.state.account_store().create(&nora).await.unwrap();
    let load = Load::start(&b.base, SESSION_COOKIE, &cookie, 3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser
        .post_json("/api/logout", &json!({}))
        .await
        .assert(204);
    let revoked = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = load.finish().await;
    assert_served_then_refused(&seen, revoked);
    assert!(
        cache.stats().hits > 50,
        "not served from the cache: {:?}",
        cache.stats()
    );
    let (late, last_ms) = late_allowed(&seen, revoked, PUSH_SLACK);
    assert_eq!(
        late, 0,
        "checks allowed after the delivery bound (last 200 sent at {last_ms:+.3} ms)"
    );
    eprintln!("push cache: last check allowed after the revocation was sent at {last_ms:+.3} ms");
}
