//! Integration tests of the SQLite store: the conformance suite on a file and in memory, crash
//! durability, schema handling, backups and restores.
// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test modules share helpers with `pub`; there is no API to keep tidy here.
#![allow(unreachable_pub)]

mod backup;
mod crash;
mod schema;

use std::sync::Arc;

use async_trait::async_trait;
use cloakroom_core::SessionStore;
use cloakroom_sqlite::{Database, SqliteStore};
use cloakroom_testkit::conformance::Harness;

struct Sqlite {
    store: SqliteStore,
    // Keeps the directory alive for the test's duration.
    dir: Option<tempfile::TempDir>,
}

#[async_trait]
impl Harness for Sqlite {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }

    async fn dump(&self) -> Vec<u8> {
        self.store.database().read(dump_rows).await.expect("dump")
    }

    async fn dump_raw(&self) -> Vec<u8> {
        // Every value in every table, plus every file on disk (database, WAL, shared memory).
        let mut out = self.dump().await;
        if let Some(dir) = &self.dir {
            for entry in std::fs::read_dir(dir.path()).expect("read dir") {
                out.extend(std::fs::read(entry.expect("entry").path()).expect("read file"));
            }
        }
        out
    }
}

fn dump_rows(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<u8>> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::new();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\""))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            for i in 0..columns {
                match row.get_ref(i)? {
                    ValueRef::Null => {}
                    ValueRef::Integer(n) => out.extend(n.to_le_bytes()),
                    ValueRef::Real(f) => out.extend(f.to_le_bytes()),
                    ValueRef::Text(b) | ValueRef::Blob(b) => out.extend(b),
                }
            }
        }
    }
    Ok(out)
}

async fn file() -> Option<Sqlite> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("sessions.db")).expect("open");
    Some(Sqlite {
        store: SqliteStore::new(db),
        dir: Some(dir),
    })
}

async fn memory() -> Option<Sqlite> {
    let db = Database::open_in_memory().expect("open");
    Some(Sqlite {
        store: SqliteStore::new(db),
        dir: None,
    })
}

cloakroom_testkit::conformance_suite!(conformance_sqlite_file, file());
cloakroom_testkit::conformance_suite!(conformance_sqlite_memory, memory());
// Through the exact cache the server puts in front of SQLite by default.
cloakroom_testkit::conformance_suite!(conformance_sqlite_file_exact_cache, async {
    file()
        .await
        .map(cloakroom_testkit::conformance::Cached::exact)
});

struct Accounts(cloakroom_sqlite::SqliteAccounts);

impl cloakroom_testkit::conformance::AccountHarness for Accounts {
    fn accounts(&self) -> Arc<dyn cloakroom_core::accounts::AccountStore> {
        Arc::new(self.0.clone())
    }

    fn second_factors(&self) -> Arc<dyn cloakroom_core::mfa::SecondFactorStore> {
        Arc::new(self.0.clone())
    }
}

async fn accounts() -> Option<Accounts> {
    Some(Accounts(cloakroom_sqlite::SqliteAccounts::new(
        Database::open_in_memory().expect("open"),
    )))
}

cloakroom_testkit::account_conformance_suite!(conformance_sqlite_accounts, accounts());

struct Outbox {
    db: Database,
    _dir: tempfile::TempDir,
}

#[async_trait]
impl cloakroom_testkit::conformance::OutboxHarness for Outbox {
    fn outbox(&self) -> Arc<dyn cloakroom_core::mail::MailOutbox> {
        Arc::new(cloakroom_sqlite::SqliteOutbox::new(self.db.clone()))
    }

    async fn dump(&self) -> Vec<u8> {
        self.db.read(dump_rows).await.expect("dump")
    }
}

async fn outbox() -> Option<Outbox> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Database::open(dir.path().join("cloakroom.db")).expect("open");
    Some(Outbox { db, _dir: dir })
}

cloakroom_testkit::outbox_conformance_suite!(conformance_sqlite_outbox, outbox());

/// The server and the admin CLI (or two servers) each open the file with a writer of their
/// own: claims made through both at once still hand every message to exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_worth_of_outboxes_never_share_a_message() {
    use cloakroom_core::Timestamp;
    use cloakroom_core::mail::{EmailAddress, MailOutbox, OutgoingMail};
    use cloakroom_sqlite::SqliteOutbox;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cloakroom.db");
    let a = SqliteOutbox::new(Database::open(&path).unwrap());
    let b = SqliteOutbox::new(Database::open(&path).unwrap());
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    let to = EmailAddress::parse("a@example.com").unwrap();
    for _ in 0..60 {
        let m = OutgoingMail::new("test", to.clone(), "Hello", "Hi".into(), None).unwrap();
        a.enqueue(&m, now).await.unwrap();
    }
    let lease = now.saturating_add(std::time::Duration::from_secs(60));
    let drain = |o: SqliteOutbox| async move {
        let mut ids = Vec::new();
        loop {
            let batch = o.claim_due(now, lease, 2).await.unwrap();
            if batch.is_empty() {
                return ids;
            }
            ids.extend(batch.into_iter().map(|c| c.id));
        }
    };
    let (x, y) = tokio::join!(tokio::spawn(drain(a)), tokio::spawn(drain(b)));
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut all: Vec<_> = x.iter().chain(&y).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60);
    assert_eq!(x.len() + y.len(), 60, "no message went to both");
}
