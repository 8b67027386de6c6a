//! Cluster behaviour: a user's sessions on every master, and a failover.

use std::time::{Duration, Instant};

use cloakroom_core::{
    AuthMethod, IssuedSession, NewSession, SessionManager, UserId, ValidationError,
};
use cloakroom_redis::{RedisConfig, RedisStore};

use crate::support::{self, Cluster};

async fn connect(cluster: &Cluster, prefix: &str) -> RedisStore {
    let config = RedisConfig::cluster(cluster.seeds())
        .unwrap()
        .with_key_prefix(prefix)
        .unwrap();
    RedisStore::connect(config).await.unwrap()
}

/// Issues sessions for `user` until their records sit on all three masters.
async fn spread_over_three_masters(
    cluster: &Cluster,
    manager: &SessionManager,
    prefix: &str,
    user: &UserId,
) -> Vec<(IssuedSession, u16)> {
    let via = cluster.servers[0].port;
    let mut sessions: Vec<(IssuedSession, u16)> = Vec::new();
    let masters = |s: &[(IssuedSession, u16)]| {
        let mut ports: Vec<u16> = s.iter().map(|(_, p)| *p).collect();
        ports.sort_unstable();
        ports.dedup();
        ports.len()
    };
    while masters(&sessions) < 3 || sessions.len() < 6 {
        assert!(
            sessions.len() < 64,
            "64 sessions did not reach three masters"
        );
        let issued = manager
            .issue(NewSession::new(user.clone(), AuthMethod::password()), None)
            .await
            .unwrap();
        let key = format!("{prefix}s:{}", issued.session.id.to_hex());
        let port = cluster.master_port_for(via, &key);
        sessions.push((issued, port));
    }
    sessions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_on_three_masters_are_listed_and_revoked() {
    let Some(cluster) = support::shared_cluster() else {
        support::skip::<()>("redis-server is not installed");
        return;
    };
    let prefix = support::unique_prefix();
    let manager = SessionManager::new(connect(cluster, &prefix).await);
    let alice = UserId::new("alice").unwrap();
    let sessions = spread_over_three_masters(cluster, &manager, &prefix, &alice).await;

    let listed = manager.list_for_user(&alice).await.unwrap();
    assert_eq!(listed.len(), sessions.len());
    for (s, _) in &sessions {
        assert!(listed.iter().any(|l| l.id == s.session.id));
    }

    let keep = &sessions[sessions.len() - 1].0;
    let removed = manager
        .revoke_all_for_user(&alice, Some(&keep.session.id))
        .await
        .unwrap();
    assert_eq!(removed, sessions.len() as u64 - 1);
    let listed = manager.list_for_user(&alice).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, keep.session.id);
    for (s, _) in &sessions[..sessions.len() - 1] {
        let err = manager
            .validate(Some(&s.token.expose_cookie_value()))
            .await
            .expect_err("revoked on whichever master held it");
        assert!(matches!(err, ValidationError::Unknown), "{err:?}");
    }
    manager
        .validate(Some(&keep.token.expose_cookie_value()))
        .await
        .expect("the current session survives");

    assert_eq!(manager.revoke_all_for_user(&alice, None).await.unwrap(), 1);
    assert!(manager.list_for_user(&alice).await.unwrap().is_empty());
    // Only the user's revocation epoch remains: no record, no index.
    let dump =
        String::from_utf8_lossy(&support::dump(&cluster.seeds(), &prefix).await).into_owned();
    assert!(
        !dump.contains(":idx"),
        "an index outlived every session: {dump}"
    );
    for (s, _) in &sessions {
        assert!(
            !dump.contains(&s.session.id.to_hex()),
            "a revoked record is left"
        );
    }
}

/// Waits until the master on `port` has shipped everything it holds to its replica. Only
/// the test does this: the store does not `WAIT` (see the crate docs on failover).
fn wait_for_replication(port: u16) {
    let synced = support::wait_bool(Duration::from_secs(10), || {
        let Some(info) = support::cli(port, &["INFO", "replication"]) else {
            return false;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let master_offset = field("master_repl_offset:");
        let replica_offset = field("slave0:").and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("offset=").map(str::to_owned))
        });
        master_offset.is_some() && master_offset == replica_offset
    });
    assert!(synced, "the replica of {port} did not catch up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_serving() {
    if !support::redis_server_available() {
        support::skip::<()>("redis-server is not installed");
        return;
    }
    // Its own Cluster: killing a master of the shared one would disturb the other tests.
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap();
    let prefix = support::unique_prefix();
    let manager = SessionManager::new(connect(&cluster, &prefix).await);
    let alice = UserId::new("alice").unwrap();
    let sessions = spread_over_three_masters(&cluster, &manager, &prefix, &alice).await;

    let (victim_session, victim_port) = (&sessions[0].0, sessions[0].1);
    let survivor = cluster
        .servers
        .iter()
        .map(|s| s.port)
        .find(|&p| p != victim_port)
        .unwrap();
    let nodes = cluster.nodes_seen_by(survivor);
    let victim_id = nodes
        .iter()
        .find(|n| n.port == victim_port)
        .unwrap()
        .id
        .clone();
    let replica_port = nodes
        .iter()
        .find(|n| n.master_id.as_deref() == Some(victim_id.as_str()))
        .expect("every master has a replica")
        .port;
    wait_for_replication(victim_port);

    cluster.server(victim_port).kill();
    let started = Instant::now();
    let promoted = support::wait_bool(Duration::from_secs(30), || {
        let nodes = cluster.nodes_seen_by(survivor);
        nodes
            .iter()
            .any(|n| n.port == replica_port && n.master && !n.failed)
            && support::cli(survivor, &["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
    });
    assert!(
        promoted,
        "the replica of the killed master was not promoted"
    );
    eprintln!("failover: replica promoted after {:?}", started.elapsed());

    // The store may report `Unavailable` until its client has learnt the new topology; it
    // must serve again within a bounded window.
    let cookie = victim_session.token.expose_cookie_value();
    let window = Instant::now();
    loop {
        match manager.validate(Some(&cookie)).await {
            Ok(s) => {
                assert_eq!(s.id, victim_session.session.id);
                break;
            }
            Err(ValidationError::Store(e)) if e.is_unavailable() => {
                assert!(
                    window.elapsed() < Duration::from_secs(15),
                    "still unavailable 15 s after the promotion: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("after failover: {e:?}"),
        }
    }
    eprintln!(
        "failover: serving again {:?} after promotion",
        window.elapsed()
    );

    for (s, _) in &sessions {
        manager
            .validate(Some(&s.token.expose_cookie_value()))
            .await
            .expect("replicated sessions survive the failover");
    }
    let fresh = manager
        .issue(NewSession::new(alice.clone(), AuthMethod::password()), None)
        .await
        .expect("create after failover");
    manager
        .validate(Some(&fresh.token.expose_cookie_value()))
        .await
        .unwrap();
    assert_eq!(
        manager.list_for_user(&alice).await.unwrap().len(),
        sessions.len() + 1
    );
    assert_eq!(
        manager.revoke_all_for_user(&alice, None).await.unwrap(),
        sessions.len() as u64 + 1
    );
    assert!(
        manager
            .validate(Some(&cookie))
            .await
            .is_err_and(|e| matches!(e, ValidationError::Unknown))
    );
    // Stop the nodes now rather than at process exit.
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}
