//! An acknowledged create survives the process being killed mid-stream.
//!
//! The test re-runs its own binary as a child that creates sessions as fast as it can and
//! prints each id once `create` returned `Ok`; the parent kills it with SIGKILL partway, reopens
//! the database and checks that every printed session is there.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use cloakroom_core::{AuthMethod, NewSession, SessionId, SessionManager, SessionStore, UserId};
use cloakroom_sqlite::{Database, SqliteStore};

const CHILD_ENV: &str = "CLOAKROOM_SQLITE_CRASH_CHILD_DB";

/// The child half: does nothing unless started by `acknowledged_creates_survive_sigkill`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let manager = SessionManager::new(SqliteStore::new(Database::open(path).expect("open")));
    // Several concurrent writers, so kills land in the middle of group commits.
    for w in 0..8 {
        let manager = manager.clone();
        tokio::spawn(async move {
            let user = UserId::new(format!("user{w}")).expect("user id");
            loop {
                let issued = manager
                    .issue(NewSession::new(user.clone(), AuthMethod::password()), None)
                    .await
                    .expect("issue");
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {}", issued.session.id.to_hex()).expect("stdout");
                out.flush().expect("flush");
            }
        });
    }
    // Runs until the parent kills the process.
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    // Create the schema first so the child's start-up is not part of what gets killed.
    drop(Database::open(&path).expect("open"));

    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().expect("own binary"))
            .args([
                "crash::crash_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
        let mut acked = Vec::new();
        let mut line = String::new();
        let target = 300 + round * 200;
        while acked.len() < target {
            line.clear();
            if lines.read_line(&mut line).expect("read") == 0 {
                panic!("child exited early after {} acks", acked.len());
            }
            if let Some(hex) = line.trim().strip_prefix("ack ") {
                acked.push(SessionId::from_hex(hex).expect("hex id"));
            }
        }
        child.kill().expect("SIGKILL");
        // Whatever the child printed before dying was acknowledged too.
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut lines, &mut rest).expect("drain");
        acked.extend(
            rest.lines()
                .filter_map(|l| l.strip_prefix("ack "))
                .filter_map(|h| SessionId::from_hex(h).ok()),
        );
        child.wait().expect("reap");

        let store = SqliteStore::new(Database::open(&path).expect("reopen after crash"));
        let mut missing = 0;
        for id in &acked {
            if store.load(id).await.expect("load").is_none() {
                missing += 1;
            }
        }
        assert_eq!(
            missing,
            0,
            "round {round}: {missing} of {} acknowledged sessions lost",
            acked.len()
        );
    }
}
