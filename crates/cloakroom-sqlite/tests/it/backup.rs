//! Backups and restores: what a copy holds (accounts, no trace of a session), and a restore
//! that checks its file before it touches anything.

use std::path::Path;

use cloakroom_core::accounts::{Account, AccountStore, PasswordHash, Username};
use cloakroom_core::{AuthMethod, NewSession, SessionManager, Timestamp, UserId};
use cloakroom_sqlite::{Database, DbError, SCHEMA_VERSION, SqliteAccounts, SqliteStore};

const AGENT: &str = "Marker/1.0 (a session's user agent)";

async fn add_account(db: &Database, name: &str) {
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    SqliteAccounts::new(db.clone())
        .create(&Account {
            id: UserId::new(format!("id-{name}")).unwrap(),
            username: Username::parse(name).unwrap(),
            password_hash: PasswordHash::new(format!("hash-of-{name}")),
            disabled: false,
            created_at: now,
            password_changed_at: now,
            email: None,
            email_verified: false,
            display_name: None,
        })
        .await
        .unwrap();
}

/// Read with a plain connection, closed on return (a `Database`'s writer thread closes its
/// connection a moment after the last clone is dropped).
fn has_account(path: &Path, name: &str) -> bool {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM accounts WHERE username = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

/// A database with the account `name` and one live session of it.
async fn live_database(path: &Path, name: &str) -> Database {
    let db = Database::open(path).unwrap();
    add_account(&db, name).await;
    SessionManager::new(SqliteStore::new(db.clone()))
        .issue(
            NewSession::new(
                UserId::new(format!("id-{name}")).unwrap(),
                AuthMethod::password(),
            )
            .user_agent(AGENT),
            None,
        )
        .await
        .unwrap();
    db
}

/// A backup taken while the database is open holds its accounts and nothing of its sessions
/// (not even in free pages), stands alone without a write-ahead log, and is not overwritten
/// unless asked.
#[tokio::test]
async fn a_backup_keeps_the_accounts_and_no_trace_of_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let _open = live_database(&live, "alice").await;
    let holds_marker = |file: &str| {
        std::fs::read(dir.path().join(file))
            .unwrap_or_default()
            .windows(AGENT.len())
            .any(|w| w == AGENT.as_bytes())
    };
    assert!(
        holds_marker("live.db") || holds_marker("live.db-wal"),
        "the marker is findable where it is stored"
    );

    let copy = dir.path().join("copy.db");
    let copied = cloakroom_sqlite::backup(&live, &copy, false).unwrap();
    assert_eq!(
        (copied.accounts, copied.schema_version),
        (1, SCHEMA_VERSION)
    );
    assert!(!holds_marker("copy.db"));
    assert!(!dir.path().join("copy.db-wal").exists());
    assert_eq!(cloakroom_sqlite::verify(&copy).unwrap(), SCHEMA_VERSION);
    assert!(has_account(&copy, "alice"));

    assert!(matches!(
        cloakroom_sqlite::backup(&live, &copy, false),
        Err(DbError::Exists { .. })
    ));
    cloakroom_sqlite::backup(&live, &copy, true).unwrap();
}

/// A file that is not a Cloakroom database this build can use — missing, not SQLite, another
/// program's SQLite, a newer schema — is refused before anything is written; a backup then
/// replaces the database whole, with no session.
#[tokio::test]
async fn a_restore_checks_its_file_before_it_replaces_anything() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("cloakroom.db");
    drop(live_database(&target, "current").await);

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "not a database, but long enough to look like one\n".repeat(100),
    )
    .unwrap();
    let foreign = dir.path().join("foreign.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); PRAGMA user_version = 3;")
        .unwrap();
    drop(conn);
    let newer = dir.path().join("newer.db");
    drop(Database::open(&newer).unwrap());
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    for bad in [dir.path().join("missing.db"), text, foreign] {
        match cloakroom_sqlite::restore(&bad, &target) {
            Err(DbError::NotCloakroom { path, .. }) => assert_eq!(path, bad),
            other => panic!("{}: {other:?}", bad.display()),
        }
    }
    assert!(matches!(
        cloakroom_sqlite::restore(&newer, &target),
        Err(DbError::TooNew { .. })
    ));
    assert!(has_account(&target, "current"), "untouched");

    let source = dir.path().join("source.db");
    drop(live_database(&source, "alice").await);
    let backup = dir.path().join("backup.db");
    cloakroom_sqlite::backup(&source, &backup, false).unwrap();
    let copied = cloakroom_sqlite::restore(&backup, &target).unwrap();
    assert_eq!(copied.accounts, 1);
    assert!(has_account(&target, "alice"));
    assert!(!has_account(&target, "current"));
    let sessions: i64 = rusqlite::Connection::open(&target)
        .unwrap()
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sessions, 0);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
