//! The schema, versioned with `PRAGMA user_version`.
//!
//! Migrations are append-only: entry `n` takes a database from version `n` to `n + 1`, each in
//! its own transaction, so a crash mid-upgrade leaves the previous version intact. A database
//! newer than this build is refused rather than guessed at.

use rusqlite::Connection;

use crate::db::DbError;

const MIGRATIONS: &[&str] = &[
    // 1: sessions. `id` is SHA-256 of the token — the token itself is never stored.
    // `expires_at` is derived so purge and listing use one index whatever the expiry kind.
    "CREATE TABLE sessions (
        id                  BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 32),
        user_id             TEXT NOT NULL,
        handle              TEXT NOT NULL UNIQUE,
        created_at          INTEGER NOT NULL,
        last_seen_at        INTEGER NOT NULL,
        idle_expires_at     INTEGER NOT NULL,
        absolute_expires_at INTEGER NOT NULL,
        auth_time           INTEGER NOT NULL,
        auth_method         TEXT NOT NULL,
        remember            INTEGER NOT NULL,
        user_agent          TEXT,
        ip                  TEXT,
        csrf_secret         BLOB NOT NULL CHECK (length(csrf_secret) = 32),
        data                TEXT NOT NULL,
        version             INTEGER NOT NULL,
        expires_at          INTEGER GENERATED ALWAYS AS (min(idle_expires_at, absolute_expires_at)) VIRTUAL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user_id, expires_at);
    CREATE INDEX sessions_by_expiry ON sessions (expires_at);",
    // 2: accounts. `username_key` is the case-folded username, unique; `username` keeps the
    // spelling the user chose.
    "CREATE TABLE accounts (
        id                  TEXT PRIMARY KEY NOT NULL,
        username            TEXT NOT NULL,
        username_key        TEXT NOT NULL UNIQUE,
        password_hash       TEXT NOT NULL,
        disabled            INTEGER NOT NULL DEFAULT 0,
        created_at          INTEGER NOT NULL,
        password_changed_at INTEGER NOT NULL,
        email               TEXT,
        display_name        TEXT
    ) WITHOUT ROWID;",
    // 3: the change generation the polling near-cache read (one row). Unused since the
    // session cache became exact (the server is SQLite's only writer); kept, as migrations
    // are never rewritten.
    "CREATE TABLE change_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        n  INTEGER NOT NULL
    );
    INSERT INTO change_generation (id, n) VALUES (1, 0);",
    // 4: sign-up invitations. `hash` is SHA-256 of the code — the code itself is never
    // stored. `used_at` is set once, when an account is created with it.
    "CREATE TABLE invites (
        hash       BLOB PRIMARY KEY NOT NULL CHECK (length(hash) = 32),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER,
        used_by    TEXT
    ) WITHOUT ROWID;",
    // 5: the mail outbox. AUTOINCREMENT so an id, once printed (`cloakroom mail test`), never
    // names another message after a purge. `next_attempt_at` is the due time of a pending
    // message, and while an attempt holds it, the end of that attempt's lease. The bodies are
    // deleted once a message is sent: they may hold a single-use link.
    "CREATE TABLE mail_outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        kind            TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        subject         TEXT NOT NULL,
        text_body       TEXT,
        html_body       TEXT,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        finished_at     INTEGER,
        last_error      TEXT,
        CHECK (state = 'sent' OR text_body IS NOT NULL)
    );
    CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX mail_outbox_finished ON mail_outbox (finished_at) WHERE state <> 'pending';",
    // 6: single-use links. `consumed_links` holds the id (`jti`, not a secret) of each used
    // single-use link until the link expires; the primary key makes the first use win.
    // `revocation_epochs` counts each user's "log out everywhere"; a user without a row is at 0.
    "CREATE TABLE consumed_links (
        id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX consumed_links_by_expiry ON consumed_links (expires_at);
    CREATE TABLE revocation_epochs (
        user_id TEXT PRIMARY KEY NOT NULL,
        epoch   INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 7 (issue 13, OpenID Connect): provider identities linked to accounts. `(issuer,
    // subject)` is the identity's only stable name; compared byte for byte (BINARY collation),
    // as OpenID Connect compares them. A step of its own, so that branches adding other
    // tables can be renumbered around it.
    "CREATE TABLE linked_identities (
        issuer     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        account_id TEXT NOT NULL,
        linked_at  INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject)
    ) WITHOUT ROWID;
    CREATE INDEX linked_identities_by_account ON linked_identities (account_id, linked_at);",
    // 8: email verification. `email` (present since 2, never written before) is stored in
    // its normalised form, so an index on it serves password-reset lookups by address.
    "ALTER TABLE accounts ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX accounts_by_email ON accounts (email) WHERE email IS NOT NULL;",
    // 9 (issue 15, access rules): group memberships. Names compare exactly (BINARY), as the
    // rules and the `Remote-Groups` header compare them.
    "CREATE TABLE account_groups (
        account_id TEXT NOT NULL,
        group_name TEXT NOT NULL,
        PRIMARY KEY (account_id, group_name)
    ) WITHOUT ROWID;
    CREATE INDEX account_groups_by_group ON account_groups (group_name);",
    // 10 (issue 17, second factors). `sealed` is the TOTP secret sealed by the server with its
    // secret (never readable here); `last_step` the last accepted time step, so a code is used
    // once. Recovery codes are kept as digests only. A passkey is public-key material.
    "CREATE TABLE totp_secrets (
        account_id   TEXT PRIMARY KEY NOT NULL,
        sealed       BLOB NOT NULL,
        created_at   INTEGER NOT NULL,
        confirmed_at INTEGER,
        last_step    INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE recovery_codes (
        account_id TEXT NOT NULL,
        hash       BLOB NOT NULL CHECK (length(hash) = 32),
        created_at INTEGER NOT NULL,
        used_at    INTEGER,
        PRIMARY KEY (account_id, hash)
    ) WITHOUT ROWID;
    CREATE TABLE passkeys (
        credential_id BLOB PRIMARY KEY NOT NULL,
        account_id    TEXT NOT NULL,
        name          TEXT NOT NULL,
        data          TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        last_used_at  INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX passkeys_by_account ON passkeys (account_id, created_at);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &Connection) -> Result<(), DbError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, sql) in (0_i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        // IMMEDIATE takes the write lock first, so two processes starting at once (server and
        // admin CLI) cannot both apply the same step.
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let step = (|| {
            let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if current == from {
                conn.execute_batch(sql)?;
                conn.pragma_update(None, "user_version", from + 1)?;
            }
            Ok::<_, rusqlite::Error>(())
        })();
        match step {
            Ok(()) => conn.execute_batch("COMMIT")?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        }
    }
    Ok(())
}
