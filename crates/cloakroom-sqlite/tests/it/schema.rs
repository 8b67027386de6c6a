//! Schema versioning and failure behaviour.

use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId};
use cloakroom_sqlite::{Database, DbError, SCHEMA_VERSION, SqliteStore};

#[tokio::test]
async fn reopening_keeps_sessions_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let cookie = {
        let m = SessionManager::new(SqliteStore::new(Database::open(&path).unwrap()));
        let issued = m
            .issue(
                NewSession::new(UserId::new("alice").unwrap(), AuthMethod::password()),
                None,
            )
            .await
            .unwrap();
        issued.token.expose_cookie_value()
    };
    let m = SessionManager::new(SqliteStore::new(Database::open(&path).unwrap()));
    assert_eq!(
        m.validate(Some(&cookie)).await.unwrap().user_id.as_str(),
        "alice"
    );
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

fn user_version(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Database::open(&path).unwrap());
    // What a newer build would leave behind.
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    match Database::open(&path) {
        Err(DbError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
}

#[test]
fn an_unwritable_location_is_a_clear_error() {
    let err = Database::open("/proc/definitely/not/here.db").unwrap_err();
    assert!(err.is_unavailable(), "{err}");
}
