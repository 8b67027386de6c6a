//! The schema and its migrations.
//!
//! Migrations are append-only: entry `n` takes the schema from version `n` to `n + 1`. Each
//! step runs in its own transaction that first takes a transaction-scoped advisory lock
//! derived from the schema name, so two instances starting at once apply each step exactly
//! once (the second waits, then finds it recorded in `schema_migrations`). A schema newer than
//! this build is refused rather than guessed at.

use sha2::{Digest, Sha256};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// `{s}` stands for the quoted schema name.
const MIGRATIONS: &[&str] = &[
    // 1: sessions. `id` is SHA-256 of the token — the token itself is never stored.
    // `expires_at` is derived so that listing and purging use one index whatever the expiry.
    "CREATE TABLE {s}.sessions (
        id                  bytea PRIMARY KEY CHECK (length(id) = 32),
        user_id             text NOT NULL,
        handle              text NOT NULL UNIQUE,
        created_at          bigint NOT NULL,
        last_seen_at        bigint NOT NULL,
        idle_expires_at     bigint NOT NULL,
        absolute_expires_at bigint NOT NULL,
        auth_time           bigint NOT NULL,
        auth_method         text NOT NULL,
        remember            boolean NOT NULL,
        user_agent          text,
        ip                  inet,
        csrf_secret         bytea NOT NULL CHECK (length(csrf_secret) = 32),
        data                text NOT NULL,
        version             bigint NOT NULL,
        expires_at          bigint GENERATED ALWAYS AS (LEAST(idle_expires_at, absolute_expires_at)) STORED
    );
    CREATE INDEX sessions_by_user ON {s}.sessions (user_id, expires_at);
    CREATE INDEX sessions_by_expiry ON {s}.sessions (expires_at);",
    // 2: accounts (for the Cloakroom server). `username_key` is the case-folded username and
    // decides uniqueness; `username` keeps the spelling the user chose.
    "CREATE TABLE {s}.accounts (
        id                  text PRIMARY KEY,
        username            text NOT NULL,
        username_key        text NOT NULL UNIQUE,
        password_hash       text NOT NULL,
        disabled            boolean NOT NULL DEFAULT false,
        created_at          bigint NOT NULL,
        password_changed_at bigint NOT NULL,
        email               text,
        display_name        text
    );",
    // 3: the change generation the polling near-cache read (one row); unused since push
    // caches replaced polling (see 9), kept: migrations are never rewritten.
    "CREATE TABLE {s}.change_generation (
        id integer PRIMARY KEY CHECK (id = 1),
        n  bigint NOT NULL
    );
    INSERT INTO {s}.change_generation (id, n) VALUES (1, 0);",
    // 4: sign-up invitations. `hash` is SHA-256 of the code — the code itself is never
    // stored. `used_at` is set once, when an account is created with it.
    "CREATE TABLE {s}.invites (
        hash       bytea PRIMARY KEY CHECK (length(hash) = 32),
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        used_at    bigint,
        used_by    text
    );",
    // 5: the mail outbox. `next_attempt_at` is the due time of a pending message, and while
    // an attempt holds it, the end of that attempt's lease. The bodies are deleted once a
    // message is sent: they may hold a single-use link.
    "CREATE TABLE {s}.mail_outbox (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind            text NOT NULL,
        recipient       text NOT NULL,
        subject         text NOT NULL,
        text_body       text,
        html_body       text,
        state           text NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
        attempts        integer NOT NULL DEFAULT 0,
        created_at      bigint NOT NULL,
        next_attempt_at bigint NOT NULL,
        finished_at     bigint,
        last_error      text,
        CHECK (state = 'sent' OR text_body IS NOT NULL)
    );
    CREATE INDEX mail_outbox_due ON {s}.mail_outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX mail_outbox_finished ON {s}.mail_outbox (finished_at) WHERE state <> 'pending';",
    // 6: single-use links. `consumed_links` holds the id (`jti`, not a secret) of each used
    // single-use link until the link expires; the primary key makes the first use win.
    // `revocation_epochs` counts each user's "log out everywhere"; a user without a row is at 0.
    "CREATE TABLE {s}.consumed_links (
        id         bytea PRIMARY KEY CHECK (length(id) = 16),
        expires_at bigint NOT NULL
    );
    CREATE INDEX consumed_links_by_expiry ON {s}.consumed_links (expires_at);
    CREATE TABLE {s}.revocation_epochs (
        user_id text PRIMARY KEY,
        epoch   bigint NOT NULL
    );",
    // 7 (issue 13, OpenID Connect): provider identities linked to accounts. `(issuer,
    // subject)` is the identity's only stable name, compared byte for byte. A step of its
    // own, so that branches adding other tables can be renumbered around it.
    "CREATE TABLE {s}.linked_identities (
        issuer     text NOT NULL,
        subject    text NOT NULL,
        account_id text NOT NULL,
        linked_at  bigint NOT NULL,
        PRIMARY KEY (issuer, subject)
    );
    CREATE INDEX linked_identities_by_account ON {s}.linked_identities (account_id, linked_at);",
    // 8: email verification. `email` (present since 2, never written before) is stored in
    // its normalised form, so an index on it serves password-reset lookups by address.
    "ALTER TABLE {s}.accounts ADD COLUMN email_verified boolean NOT NULL DEFAULT false;
    CREATE INDEX accounts_by_email ON {s}.accounts (email) WHERE email IS NOT NULL;",
    // 9: the invalidation feed of push-mode session caches. Every change to a session row
    // (a save, a touch) and every removal (a delete, a revoke-all, a rotation, a purge) sends
    // `s <id in hex>` on the schema's channel ({c}), in the writing transaction: PostgreSQL
    // delivers it when, and only if, that transaction commits, in commit order.
    "CREATE FUNCTION {s}.announce_session_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify(TG_ARGV[0], 's ' || encode(OLD.id, 'hex'));
        RETURN NULL;
    END $$;
    CREATE TRIGGER sessions_announce AFTER UPDATE OR DELETE ON {s}.sessions
        FOR EACH ROW EXECUTE FUNCTION {s}.announce_session_change('{c}');",
    // 10 (issue 15, access rules): group memberships. Names compare exactly (C collation), as
    // the rules and the `Remote-Groups` header compare them. They go with their account by
    // the foreign key, so no membership added while the account is being deleted outlives it.
    "CREATE TABLE {s}.account_groups (
        account_id text NOT NULL REFERENCES {s}.accounts (id) ON DELETE CASCADE,
        group_name text COLLATE \"C\" NOT NULL,
        PRIMARY KEY (account_id, group_name)
    );
    CREATE INDEX account_groups_by_group ON {s}.account_groups (group_name);",
    // 11 (issue 16, scale-out): signing keys shared by every instance, private parts sealed by
    // the server with the operator's secret (see `PostgresKeys`). Times in Unix milliseconds.
    "CREATE TABLE {s}.signing_keys (
        purpose    text NOT NULL,
        kid        text NOT NULL,
        alg        text NOT NULL,
        created_at bigint NOT NULL,
        signs_from bigint NOT NULL,
        retire_at  bigint,
        sealed     bytea NOT NULL,
        PRIMARY KEY (purpose, kid)
    );",
    // 12 (issue 16): login-throttle counters shared by the instances, with the sessions here
    // (see `PostgresCounters`). Times in Unix milliseconds; `forget_at` lets a purge drop the
    // counters whose failures are forgotten.
    "CREATE TABLE {s}.throttle_counters (
        name         text PRIMARY KEY,
        failures     integer NOT NULL,
        last_failure bigint NOT NULL,
        forget_at    bigint NOT NULL
    );
    CREATE INDEX throttle_counters_by_forget_at ON {s}.throttle_counters (forget_at);",
    // 13 (issue 17, second factors). `sealed` is the TOTP secret sealed by the server with
    // its secret; `last_step` the last accepted time step, so a code is used once. Recovery
    // codes are digests. A passkey is public-key material. Each goes with its account.
    "CREATE TABLE {s}.totp_secrets (
        account_id   text PRIMARY KEY REFERENCES {s}.accounts (id) ON DELETE CASCADE,
        sealed       bytea NOT NULL,
        created_at   bigint NOT NULL,
        confirmed_at bigint,
        last_step    bigint
    );
    CREATE TABLE {s}.recovery_codes (
        account_id text NOT NULL REFERENCES {s}.accounts (id) ON DELETE CASCADE,
        hash       bytea NOT NULL CHECK (length(hash) = 32),
        created_at bigint NOT NULL,
        used_at    bigint,
        PRIMARY KEY (account_id, hash)
    );
    CREATE TABLE {s}.passkeys (
        credential_id bytea PRIMARY KEY,
        account_id    text NOT NULL REFERENCES {s}.accounts (id) ON DELETE CASCADE,
        name          text NOT NULL,
        data          text NOT NULL,
        created_at    bigint NOT NULL,
        last_used_at  bigint
    );
    CREATE INDEX passkeys_by_account ON {s}.passkeys (account_id, created_at);",
];

/// A schema that a newer build migrated.
#[derive(Debug, thiserror::Error)]
#[error("schema {schema:?} is at version {found}; this build supports up to {supported}")]
pub(crate) struct TooNew {
    pub(crate) schema: String,
    pub(crate) found: i32,
    pub(crate) supported: i32,
}

pub(crate) fn quoted(schema: &str) -> String {
    // The configuration allows only [a-z0-9_], so quoting cannot be escaped from.
    format!("\"{schema}\"")
}

/// The `NOTIFY` channel of `schema`'s session changes: a channel name is an identifier of at
/// most 63 bytes, which `cloakroom_sessions_` and a schema name of up to 63 would overflow, so
/// the schema is represented by a digest.
pub(crate) fn channel(schema: &str) -> String {
    let digest = Sha256::digest(schema.as_bytes());
    let mut out = String::from("cloakroom_sessions_");
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The advisory lock key for migrating `schema`: stable across processes and builds.
fn lock_key(schema: &str) -> i64 {
    advisory_key("migrate", schema)
}

/// A transaction-level advisory lock key for `what` in `schema`, the same in every process.
pub(crate) fn advisory_key(what: &str, schema: &str) -> i64 {
    let digest = Sha256::digest(format!("cloakroom-postgres {what} {schema}"));
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(key)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum MigrateError {
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    TooNew(#[from] TooNew),
}

pub(crate) async fn migrate(
    client: &mut tokio_postgres::Client,
    schema: &str,
) -> Result<(), MigrateError> {
    let s = quoted(schema);
    let bootstrap = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version    integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
         );"
    );
    for (from, sql) in (0_i32..).zip(MIGRATIONS) {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
            .await?;
        tx.batch_execute(&bootstrap).await?;
        let found: Option<i32> = tx
            .query_one(
                &format!("SELECT max(version) FROM {s}.schema_migrations"),
                &[],
            )
            .await?
            .get(0);
        let found = found.unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(TooNew {
                schema: schema.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            }
            .into());
        }
        if found == from {
            tx.batch_execute(&sql.replace("{s}", &s).replace("{c}", &channel(schema)))
                .await?;
            tx.execute(
                &format!("INSERT INTO {s}.schema_migrations (version) VALUES ($1)"),
                &[&(from + 1)],
            )
            .await?;
        }
        tx.commit().await?;
    }
    Ok(())
}
