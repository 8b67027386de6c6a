//! The admin CLI: `cloakroom user …`, `cloakroom sessions …`, `cloakroom keys …`,
//! `cloakroom backup` and `cloakroom restore`.
//!
//! It opens the same stores as the server (same configuration, same data directory), so it
//! works while the server runs: SQLite serialises writers across processes, and a revocation
//! here is a delete the server sees on its very next validation. Only `restore` needs the
//! server stopped, and makes sure it is (see [`restore`]).

use std::fmt::Write as _;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::accounts::{Account, AccountStore, GroupName, InviteCode, Username};
use cloakroom_core::origin::Origin;
use cloakroom_core::{SessionManager, SystemClock};

use crate::accounts::email::send_verification;
use crate::accounts::passwords::{Password, Passwords, check_new_password};
use crate::accounts::reset::reset_link;
use crate::accounts::{new_account, parse_optional_email};
use crate::config::Settings;
use crate::mail::Mailer;
use crate::metrics;
use crate::state::Stores;
use crate::tokens::links::Links;
use crate::web::device::{label, rfc3339};

/// An admin command failed; the message says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No account has the name given (the command exits with status 3).
    #[error("no user {0:?}")]
    NoSuchUser(String),
    /// Anything else: the failure itself, its causes kept as its sources.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

pub(crate) fn fail(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> AdminError {
    AdminError::Failed(e.into())
}

/// The server's link keys, signing for its public URL: those shared in PostgreSQL when the
/// stores opened them, else the files in `settings`' data directory.
pub(crate) fn open_links(
    settings: &Settings,
    stores: &Stores,
    now: cloakroom_core::Timestamp,
) -> Result<Links, AdminError> {
    match &stores.keys {
        Some(opened) => opened
            .links(settings.public_origin.clone(), settings.password_reset_ttl)
            .map_err(fail),
        None => Links::open(
            &settings.data_dir,
            settings.public_origin.clone(),
            settings.password_reset_ttl,
            now,
        )
        .map_err(fail),
    }
}

/// Group names as given on the command line, checked.
pub(crate) fn group_names(names: &[String]) -> Result<Vec<GroupName>, AdminError> {
    names
        .iter()
        .map(|n| GroupName::parse(n).map_err(|e| fail(format!("{n:?}: {e}"))))
        .collect()
}

/// Admin operations over opened stores.
#[derive(Debug)]
pub struct Admin {
    stores: Stores,
    sessions: SessionManager,
}

impl Admin {
    /// Admin over `stores`.
    pub fn new(stores: Stores) -> Self {
        let sessions = SessionManager::from_arc(stores.sessions.clone()).with_clock(SystemClock);
        Self { stores, sessions }
    }

    async fn account(&self, name: &str) -> Result<Account, AdminError> {
        account_named(self.stores.accounts.as_ref(), name).await
    }

    /// `user add NAME [--email ADDRESS]`: the password is the first line of
    /// `password_source`. With an address, a verification link is queued for it, signed with
    /// the server's link keys from `settings`' data directory.
    pub async fn user_add(
        &self,
        name: &str,
        email: Option<&str>,
        password_source: impl BufRead,
        settings: &Settings,
    ) -> Result<String, AdminError> {
        let username = Username::parse(name).map_err(fail)?;
        let email = parse_optional_email(email).map_err(fail)?;
        let password = first_line(password_source)?;
        check_new_password(&password, &username).map_err(fail)?;
        let hash = Passwords::new(1).hash(&password).await.map_err(fail)?;
        let now = self.sessions.now();
        let mut account = new_account(username, hash, now);
        account.email = email;
        self.stores.accounts.create(&account).await.map_err(fail)?;
        let mut out = format!("created user {} ({})\n", account.username, account.id);
        if let Some(address) = &account.email {
            let links = open_links(settings, &self.stores, now)?;
            let mailer = Mailer::open(
                &settings.mail,
                self.stores.outbox.clone(),
                Arc::new(SystemClock),
                &settings.public_origin,
            )
            .map_err(fail)?;
            let id = send_verification(&links, &mailer, &account, now)
                .await
                .map_err(fail)?;
            if let Some(id) = id {
                let _ = writeln!(
                    out,
                    "queued verification mail {id} to {address}; a running `cloakroom serve` delivers it"
                );
            }
        }
        Ok(out)
    }

    /// `user set-password NAME`: sets a new password (the first line of `password_source`)
    /// and ends every session of the user — first, so that a failure leaves the old password
    /// with the sessions ended, never the new one beside a thief's session.
    pub async fn user_set_password(
        &self,
        name: &str,
        password_source: impl BufRead,
    ) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        let password = first_line(password_source)?;
        check_new_password(&password, &account.username).map_err(fail)?;
        let hash = Passwords::new(1).hash(&password).await.map_err(fail)?;
        let ended = self
            .sessions
            .revoke_all_for_user(&account.id, None)
            .await
            .map_err(fail)?;
        metrics::revoked("password_change", ended);
        self.stores
            .accounts
            .set_password(&account.id, &hash, self.sessions.now())
            .await
            .map_err(fail)?;
        crate::events::password_changed(account.username.as_str(), None, ended);
        Ok(format!(
            "set the password of {}; ended {ended} session(s)\n",
            account.username
        ))
    }

    /// `user reset-link NAME`: prints a password-reset link for the account (the URL on the
    /// first line, for scripts), and when it expires.
    pub async fn user_reset_link(
        &self,
        name: &str,
        settings: &Settings,
    ) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        if account.disabled {
            return Err(fail(format!(
                "{} is disabled: the link would be refused",
                account.username
            )));
        }
        let now = self.sessions.now();
        let links = open_links(settings, &self.stores, now)?;
        let (url, minted) = reset_link(&links, &self.sessions, &account, now)
            .await
            .map_err(fail)?;
        tracing::info!(user = %account.username, "password-reset link printed by an administrator");
        Ok(format!(
            "{url}\nreset link for {}: works once, until {}\n",
            account.username,
            rfc3339(minted.expires_at)
        ))
    }

    /// `user invite`: mints a single-use code valid for `days` days and stores only its hash.
    /// The code is printed once, with the sign-up link on `public`.
    pub async fn user_invite(&self, days: u32, public: &Origin) -> Result<String, AdminError> {
        let code = InviteCode::generate();
        let now = self.sessions.now();
        let expires_at = now.saturating_add(Duration::from_secs(u64::from(days) * 86_400));
        self.stores
            .accounts
            .create_invite(&code.hash(), expires_at, now)
            .await
            .map_err(fail)?;
        let code = code.expose();
        Ok(format!(
            "invitation code: {code} (expires {})\nsign-up link: {}/signup?invite={code}\n",
            rfc3339(expires_at),
            public.as_str().trim_end_matches('/'),
        ))
    }

    /// `user list`.
    pub async fn user_list(&self) -> Result<String, AdminError> {
        let mut out = format!(
            "{:<32} {:<24} {:<9} {}\n",
            "USERNAME", "ID", "STATUS", "CREATED"
        );
        for a in self.stores.accounts.list().await.map_err(fail)? {
            let status = if a.disabled { "disabled" } else { "active" };
            let _ = writeln!(
                out,
                "{:<32} {:<24} {:<9} {}",
                a.username,
                a.id,
                status,
                rfc3339(a.created_at)
            );
        }
        Ok(out)
    }

    /// `user groups NAME [--add G]… [--remove G]…`: changes the account's groups in one
    /// write, then shows them. A running server reads them on the user's next request.
    pub async fn user_groups(
        &self,
        name: &str,
        add: &[GroupName],
        remove: &[GroupName],
    ) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        if !(add.is_empty() && remove.is_empty()) {
            let found = self
                .stores
                .accounts
                .update_groups(&account.id, add, remove)
                .await
                .map_err(fail)?;
            if !found {
                return Err(AdminError::NoSuchUser(name.to_owned()));
            }
            crate::events::groups_changed(account.username.as_str(), add, remove, "cli");
        }
        let groups = self
            .stores
            .accounts
            .groups(&account.id)
            .await
            .map_err(fail)?;
        let names: Vec<&str> = groups.iter().map(GroupName::as_str).collect();
        Ok(format!(
            "{}: {}\n",
            account.username,
            if names.is_empty() {
                "(no groups)".to_owned()
            } else {
                names.join(", ")
            }
        ))
    }

    /// `group list`: every group with members, and how many.
    pub async fn group_list(&self) -> Result<String, AdminError> {
        let mut out = format!("{:<40} {}\n", "GROUP", "MEMBERS");
        for (group, n) in self.stores.accounts.group_sizes().await.map_err(fail)? {
            let _ = writeln!(out, "{:<40} {n}", group.as_str());
        }
        Ok(out)
    }

    /// `rules test [--user NAME] --url URL [--method M]`: the rule that decides the request
    /// and its decision, as forward auth would reach it (the user's groups from the store).
    pub async fn rules_test(
        &self,
        settings: &Settings,
        user: Option<&str>,
        url: &str,
        method: &str,
    ) -> Result<String, AdminError> {
        use crate::access::{Outcome, RuleTarget, Who};
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| fail(format!("{url:?} is not an http(s) URL")))?;
        let method = method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(fail(format!("{method:?} is not an HTTP method")));
        }
        let account = match user {
            Some(name) => Some(self.account(name).await?),
            None => None,
        };
        let groups = match &account {
            Some(a) => self.stores.accounts.groups(&a.id).await.map_err(fail)?,
            None => Vec::new(),
        };
        // Every reading of the path an app may route by, as forward auth matches them.
        let raw = crate::web::forward::raw_target(url);
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let target = RuleTarget::new(host, parsed.path(), raw.as_deref());
        let who = account.as_ref().map(|a| Who {
            username: a.username.as_str(),
            groups: &groups,
        });
        let rules = &settings.access_rules;
        let decision = rules.decide_strictest(&target, &method, who.as_ref());
        let mut out = String::new();
        let group_list: Vec<&str> = groups.iter().map(GroupName::as_str).collect();
        let _ = writeln!(
            out,
            "request: {method} {url} (path as matched: {})",
            target.paths().join(" | ")
        );
        let _ = match &account {
            Some(a) if a.disabled => writeln!(
                out,
                "user:    {} (disabled: refused whatever the rules say)",
                a.username
            ),
            Some(a) => writeln!(
                out,
                "user:    {} (groups: {})",
                a.username,
                if group_list.is_empty() {
                    "none".to_owned()
                } else {
                    group_list.join(", ")
                }
            ),
            None => writeln!(out, "user:    anonymous"),
        };
        let _ = match decision.rule {
            Some(n) => writeln!(out, "rule:    {}", rules.describe(n)),
            None => writeln!(
                out,
                "rule:    none matched: default_policy = {}",
                match rules.default_policy() {
                    crate::access::DefaultPolicy::Allow => "allow",
                    crate::access::DefaultPolicy::Deny => "deny",
                }
            ),
        };
        let verdict = match decision.outcome {
            Outcome::Bypass => "bypass (let through without a session)",
            Outcome::Allow => "allow",
            Outcome::Deny if account.is_some() => "deny (403: signed in, but no access)",
            Outcome::Deny => "deny (403)",
            Outcome::SignIn => "sign in first (401: to the login page)",
            Outcome::TwoFactor => {
                "two factors (allow once the session gave a second factor; else 401: to the \
                 step-up page)"
            }
        };
        let _ = writeln!(out, "decision: {verdict}");
        Ok(out)
    }

    /// `user disable NAME`: refuses future logins and ends every session now.
    pub async fn user_disable(&self, name: &str) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        self.stores
            .accounts
            .set_disabled(&account.id, true)
            .await
            .map_err(fail)?;
        let ended = self
            .sessions
            .revoke_all_for_user(&account.id, None)
            .await
            .map_err(fail)?;
        metrics::revoked("disabled", ended);
        crate::events::account_disabled(account.username.as_str(), ended);
        Ok(format!(
            "disabled {}; ended {ended} session(s)\n",
            account.username
        ))
    }

    /// `user delete NAME`: ends every session of the user, then removes the account (in the
    /// order `accounts::remove` argues for). `confirm` is asked first, with the username as
    /// registered; nothing happens unless it says yes. The username can be registered again
    /// afterwards, under a new id.
    pub async fn user_delete(
        &self,
        name: &str,
        confirm: impl FnOnce(&str) -> Result<bool, AdminError>,
    ) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        if !confirm(account.username.as_str())? {
            return Err(fail(format!(
                "not confirmed; {} was not deleted",
                account.username
            )));
        }
        let ended = crate::accounts::remove(&*self.stores.accounts, &self.sessions, &account)
            .await
            .map_err(fail)?;
        crate::events::account_deleted(account.username.as_str(), "admin", None, ended);
        Ok(format!(
            "deleted user {}; ended {ended} session(s)\n",
            account.username
        ))
    }

    /// `user mfa NAME [--reset]`: the account's second factors; with `reset`, removes every
    /// one (the user lost the phone and the recovery codes) and ends every session, so the
    /// next sign-in is with the password alone and can set up a new authenticator.
    pub async fn user_mfa(&self, name: &str, reset: bool) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        let store = &self.stores.second_factors;
        if !reset {
            let f = store.factors(&account.id).await.map_err(fail)?;
            return Ok(format!(
                "user {}: authenticator app {}; {} recovery code(s) left; {} passkey(s)\n",
                account.username,
                if f.totp { "on" } else { "off" },
                f.recovery_codes,
                f.passkeys
            ));
        }
        let removed = store.reset(&account.id).await.map_err(fail)?;
        let ended = self
            .sessions
            .revoke_all_for_user(&account.id, None)
            .await
            .map_err(fail)?;
        metrics::revoked("factors_reset", ended);
        crate::events::factors_reset(account.username.as_str(), "cli", ended);
        Ok(if removed {
            format!(
                "removed every second factor of {}; ended {ended} session(s)\n",
                account.username
            )
        } else {
            format!(
                "{} had no second factor; ended {ended} session(s)\n",
                account.username
            )
        })
    }

    /// `user enable NAME`.
    pub async fn user_enable(&self, name: &str) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        self.stores
            .accounts
            .set_disabled(&account.id, false)
            .await
            .map_err(fail)?;
        Ok(format!("enabled {}\n", account.username))
    }

    /// `sessions list --user NAME`.
    pub async fn sessions_list(&self, name: &str) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        let mut out = format!(
            "{:<22} {:<20} {:<20} {:<39} {}\n",
            "ID", "CREATED", "LAST SEEN", "IP", "DEVICE"
        );
        for s in self
            .sessions
            .list_for_user(&account.id)
            .await
            .map_err(fail)?
        {
            let ip = s.ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
            let _ = writeln!(
                out,
                "{:<22} {:<20} {:<20} {:<39} {}",
                s.handle,
                rfc3339(s.created_at),
                rfc3339(s.last_seen_at),
                ip,
                label(s.user_agent.as_deref())
            );
        }
        Ok(out)
    }

    /// `sessions revoke --user NAME`: ends every session of the user.
    pub async fn sessions_revoke(&self, name: &str) -> Result<String, AdminError> {
        let account = self.account(name).await?;
        let ended = self
            .sessions
            .revoke_all_for_user(&account.id, None)
            .await
            .map_err(fail)?;
        metrics::revoked("admin", ended);
        crate::events::revoked(account.username.as_str(), "revoke_all", ended);
        Ok(format!(
            "ended {ended} session(s) of {}\n",
            account.username
        ))
    }
}

/// The go-ahead for `user delete`: given by `--yes`; otherwise asked for on the terminal,
/// where the operator types the username again. Without a terminal and without `--yes` it is
/// refused rather than assumed: a script must say what it means.
pub fn confirm_deletion(username: &str, yes: bool) -> Result<bool, AdminError> {
    use std::io::IsTerminal as _;
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(fail(
            "standard input is not a terminal, so nobody can confirm: pass --yes to delete without asking",
        ));
    }
    ask_to_delete(username, std::io::stdin().lock(), std::io::stderr())
}

/// Asks on `out` whether to delete `username` and reads the answer from `answer`: yes only if
/// it is the username again (case does not matter, as for logins).
pub fn ask_to_delete(
    username: &str,
    answer: impl BufRead,
    mut out: impl std::io::Write,
) -> Result<bool, AdminError> {
    write!(
        out,
        "Delete the account {username} and end all its sessions? This cannot be undone.\n\
         Type the username to confirm: "
    )
    .and_then(|()| out.flush())
    .map_err(fail)?;
    let line = answer.lines().next().transpose().map_err(fail)?;
    Ok(line.is_some_and(|l| l.trim().eq_ignore_ascii_case(username)))
}

/// The account called `name`, or an error that says there is none.
pub(crate) async fn account_named(
    accounts: &dyn AccountStore,
    name: &str,
) -> Result<Account, AdminError> {
    let username = Username::parse(name).map_err(fail)?;
    accounts
        .by_username(&username)
        .await
        .map_err(fail)?
        .ok_or_else(|| AdminError::NoSuchUser(name.to_owned()))
}

/// The first line of `source`, without its line ending.
fn first_line(source: impl BufRead) -> Result<Password, AdminError> {
    let line = source
        .lines()
        .next()
        .transpose()
        .map_err(fail)?
        .unwrap_or_default();
    Ok(Password::new(line.trim_end_matches(['\r', '\n'])))
}

/// `keys list`: every service-JWT key in `ring` and where it is in its life.
pub(crate) fn keys_list(
    ring: &crate::tokens::keys::KeyRing,
    now: cloakroom_core::Timestamp,
) -> String {
    let signer = ring.signer(now).map(|k| k.kid().to_owned());
    let mut out = format!(
        "{:<18} {:<6} {:<10} {:<20} {:<20} {}\n",
        "KID", "ALG", "STATUS", "PUBLISHED", "SIGNS FROM", "RETIRES"
    );
    for k in ring.keys() {
        let status = if signer.as_deref() == Some(k.kid()) {
            "signing"
        } else if k.retire_at().is_some_and(|r| r <= now) {
            "retired"
        } else if k.signs_from() > now {
            "next"
        } else {
            "verifying"
        };
        let retires = k.retire_at().map_or_else(|| "-".to_owned(), rfc3339);
        let _ = writeln!(
            out,
            "{:<18} {:<6} {:<10} {:<20} {:<20} {}",
            k.kid(),
            k.alg().as_str(),
            status,
            rfc3339(k.created_at()),
            rfc3339(k.signs_from()),
            retires
        );
    }
    out
}

/// `keys rotate`, with the keys in the data directory: publishes a new key now, which signs
/// after one JWKS cache lifetime; the current key retires once its last token has expired. A
/// running server picks the change up within seconds.
pub fn keys_rotate(
    data_dir: &std::path::Path,
    alg: crate::tokens::keys::KeyAlgorithm,
    now: cloakroom_core::Timestamp,
) -> Result<String, AdminError> {
    let (key, retire, removed) =
        crate::tokens::keys::KeyRing::rotate_files(data_dir, alg, now).map_err(fail)?;
    let mut out = rotated(&key, retire);
    if removed > 0 {
        let _ = writeln!(out, "removed {removed} retired key(s)");
    }
    Ok(out)
}

/// `keys rotate`, with the keys shared in PostgreSQL: the same, once for every instance (each
/// re-reads the keys within seconds).
pub async fn keys_rotate_shared(
    shared: &crate::tokens::vault::SharedKeys,
    alg: crate::tokens::keys::KeyAlgorithm,
    now: cloakroom_core::Timestamp,
) -> Result<String, AdminError> {
    let (key, retire) = shared
        .rotate(alg, now, None)
        .await
        .map_err(fail)?
        .ok_or_else(|| fail("the rotation was not applied; run the command again"))?;
    Ok(rotated(&key, Some(retire)))
}

/// The report of a rotation, which is also logged as a security event.
fn rotated(
    key: &crate::tokens::keys::SigningKey,
    retire: Option<cloakroom_core::Timestamp>,
) -> String {
    crate::events::key_rotated(key.kid(), key.alg().as_str(), &rfc3339(key.signs_from()));
    let mut out = format!(
        "new key {} ({}) is published now and signs from {}\n",
        key.kid(),
        key.alg().as_str(),
        rfc3339(key.signs_from())
    );
    if let Some(r) = retire {
        let _ = writeln!(out, "the previous key stays published until {}", rfc3339(r));
    }
    out
}

/// `backup FILE`: a consistent copy of the accounts (and invitations) while the server runs,
/// with SQLite's online backup; sessions are left out, so that a restore never revives one
/// that was revoked since (see `cloakroom_sqlite::backup`).
pub fn backup(
    settings: &crate::config::Settings,
    file: &std::path::Path,
    replace: bool,
) -> Result<String, AdminError> {
    sqlite_accounts(settings, "backup")?;
    crate::data_dir::require_existing(settings).map_err(fail)?;
    let source = crate::data_dir::database_path(&settings.data_dir);
    let copied = cloakroom_sqlite::backup(&source, file, replace).map_err(fail)?;
    Ok(format!(
        "backed up {} account(s) to {} (schema version {}; sessions are not included)\n",
        copied.accounts,
        crate::data_dir::shown(file),
        copied.schema_version
    ))
}

/// `restore FILE`: replaces the accounts with a backup's. It holds the data directory's lock
/// throughout, so it refuses to run beside a server (which holds it while it serves), and no
/// server can start on the directory until it is done. The file is checked before anything
/// is replaced; every session ends (the restored database holds none).
pub fn restore(
    settings: &crate::config::Settings,
    file: &std::path::Path,
) -> Result<String, AdminError> {
    sqlite_accounts(settings, "restore")?;
    crate::data_dir::ensure_data_dir(&settings.data_dir).map_err(fail)?;
    let _lock = crate::data_dir::DataDirLock::acquire(&settings.data_dir).map_err(fail)?;
    let target = crate::data_dir::database_path(&settings.data_dir);
    let copied = cloakroom_sqlite::restore(file, &target).map_err(fail)?;
    Ok(format!(
        "restored {} account(s) from {} into {}; no session survives a restore, so everyone signs in again\n",
        copied.accounts,
        crate::data_dir::shown(file),
        crate::data_dir::shown(&target),
    ))
}

/// Backups are of the embedded database: accounts kept in PostgreSQL are backed up with
/// PostgreSQL's own tools.
fn sqlite_accounts(settings: &crate::config::Settings, verb: &str) -> Result<(), AdminError> {
    if settings.account_store == crate::config::AccountStoreKind::Sqlite {
        Ok(())
    } else {
        Err(fail(format!(
            "`cloakroom {verb}` works on the embedded SQLite database, and the accounts are in \
             PostgreSQL here (account_store = \"postgres\"): use pg_dump and pg_restore on the \
             `{}` schema instead",
            settings
                .postgres
                .as_ref()
                .map_or(cloakroom_postgres::DEFAULT_SCHEMA, |p| p.schema())
        )))
    }
}
