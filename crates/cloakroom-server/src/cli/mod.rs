//! The `cloakroom` command line: `cloakroom serve` runs the server; `cloakroom user …`,
//! `cloakroom sessions …`, `cloakroom keys …`, `cloakroom mail …`, `cloakroom links …` and
//! `cloakroom backup` administer the same data while it runs; `cloakroom restore` replaces it while it does not.
//! Configuration: `--config FILE` (TOML), `CLOAKROOM_*` environment variables, and the flags,
//! in increasing precedence. `serve` takes every setting as a flag; an admin command only those
//! that say where its data is (the rest it reads from the file and the environment), so each
//! `--help` lists what that command uses.
//!
//! A new admin command goes into [`admin`] (the operation, testable without a process) and a
//! variant here (its spelling on the command line).

pub mod admin;
pub mod links;
pub mod mail;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Flags, RawConfig, SETTINGS};
use crate::state::Stores;
use crate::{AppState, Server};
use admin::{Admin, AdminError};

/// What `cloakroom` exits with, for scripts. Shown by `cloakroom --help`; the README repeats it.
const EXIT_STATUS: &str = "\
Exit status:
  0  success
  1  failure; standard error says why, in one line
  2  the command line is wrong (an unknown flag, a missing argument, a bad value)
  3  the user named does not exist (user set-password, disable, enable; sessions …)";

/// Not found, for [`EXIT_STATUS`].
const EXIT_NOT_FOUND: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "cloakroom",
    version,
    about = "Server-side sessions done right.",
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A TOML configuration file (examples/cloakroom.toml has every setting).
    #[arg(long, global = true, env = "CLOAKROOM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Each command flattens every setting's flag; [`command`] then leaves visible only those
/// [`flags_taken_by`] the command, so `--help` shows what it uses.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. Every setting is a flag here.
    Serve(Flags),
    /// Manage accounts.
    User {
        #[command(subcommand)]
        cmd: UserCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Inspect and end sessions.
    Sessions {
        #[command(subcommand)]
        cmd: SessionsCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Manage the keys that sign service JWTs.
    Keys {
        #[command(subcommand)]
        cmd: KeysCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Copy the accounts and invitations to FILE, consistently, while the server runs. Sessions
    /// are left out: a restore must never bring back one that was revoked since.
    Backup {
        /// The copy to write: an SQLite database, readable by its owner only.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        flags: Flags,
    },
    /// Replace the accounts with those of a backup. Refuses to run while a server uses the data
    /// directory; checks FILE before it replaces anything. Every session ends.
    Restore {
        /// A file written by `cloakroom backup`.
        file: PathBuf,
        #[command(flatten)]
        flags: Flags,
    },
    /// Check outgoing mail and inspect the outbox.
    Mail {
        #[command(subcommand)]
        cmd: MailCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Make download links.
    Links {
        #[command(subcommand)]
        cmd: LinksCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Groups of accounts, for access rules and the admin API.
    Group {
        #[command(subcommand)]
        cmd: GroupCommand,
        #[command(flatten)]
        flags: Flags,
    },
    /// Check the access rules of the configuration.
    Rules {
        #[command(subcommand)]
        cmd: RulesCommand,
        #[command(flatten)]
        flags: Flags,
    },
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Every group with members, and how many.
    List,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Say which access rule decides a request and what it decides, as forward auth would.
    Test {
        /// Who asks (their account's groups are read from the store); without it, an
        /// anonymous request.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// The URL asked for.
        #[arg(long, value_name = "URL")]
        url: String,
        /// The method.
        #[arg(long, value_name = "METHOD", default_value = "GET")]
        method: String,
    },
}

impl Command {
    /// The settings given as flags.
    fn flags(&self) -> &Flags {
        match self {
            Self::Serve(flags)
            | Self::User { flags, .. }
            | Self::Sessions { flags, .. }
            | Self::Keys { flags, .. }
            | Self::Backup { flags, .. }
            | Self::Restore { flags, .. }
            | Self::Mail { flags, .. }
            | Self::Links { flags, .. }
            | Self::Group { flags, .. }
            | Self::Rules { flags, .. } => flags,
        }
    }
}

/// The settings the command at `path` (`["user", "invite"]`) takes as flags; `None`: all of
/// them, for `serve`. An admin command takes those that say where its data is and the few
/// others it uses (every one logs, some as security events, so `json_logs`); it reads the rest
/// from `--config` and the environment, as the server does. A group (`["user"]`) takes what
/// any of its commands takes, so a flag may also come before the command's name.
fn flags_taken_by(path: &[&str]) -> Option<Vec<&'static str>> {
    const STORES: [&str; 10] = [
        "data_dir",
        "session_store",
        "account_store",
        "redis_url",
        "redis_cluster_nodes",
        "redis_key_prefix",
        "postgres_url",
        "postgres_schema",
        "redis_ca_file",
        "postgres_ca_file",
    ];
    let mut taken = vec!["json_logs"];
    match path {
        ["serve", ..] => return None,
        ["user", rest @ ..] => {
            taken.extend(STORES);
            // The invitation's link is on the public URL; the signup mode is checked.
            if matches!(rest, [] | ["invite"]) {
                taken.extend(["public_url", "signup"]);
            }
        }
        // A link is signed for the public URL's Cloakroom and checked against app_origins.
        ["links", ..] => taken.extend(STORES.iter().chain(&["public_url", "app_origins"])),
        ["sessions" | "mail" | "group", ..] => taken.extend(STORES),
        // The rules come from the configuration; a user's groups from the store.
        ["rules", ..] => taken.extend(STORES.iter().chain(&["public_url", "default_policy"])),
        // With the accounts in PostgreSQL, the keys are there, opened with the secrets.
        ["keys", ..] => taken.extend(STORES.iter().chain(&["secrets_file"])),
        ["backup" | "restore", ..] => taken.extend(["data_dir", "account_store"]),
        _ => {}
    }
    Some(taken)
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// Queue a test message to ADDRESS and wait for the running server to deliver it; exits
    /// non-zero if it was not delivered.
    Test {
        /// Where to send it.
        address: String,
        /// Only queue it; do not wait for the outcome.
        #[arg(long)]
        no_wait: bool,
    },
    /// The most recent messages in the outbox, newest first, and what became of them.
    List {
        /// How many.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum LinksCommand {
    /// Make a link to URL that lets whoever holds it fetch exactly that URL, as USER, without
    /// a session: once (unless --reusable), until it expires. Prints the link.
    Create {
        /// The exact URL, on one of the protected apps (app_origins).
        url: String,
        /// How long it works: 600, 90s, 10m, 1h (at most an hour).
        #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = links::parse_ttl)]
        ttl: std::time::Duration,
        /// Let it be used any number of times until it expires.
        #[arg(long)]
        reusable: bool,
        /// Whose identity the app sees; the link dies with that user's sessions ("log out
        /// everywhere", a password change, a disabled account).
        #[arg(long, value_name = "USER", required = true)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List the keys and where each is in its life.
    List,
    /// Publish a new key (it signs after one JWKS cache lifetime; the current one retires
    /// once its tokens have expired).
    Rotate {
        /// Algorithm of the new key [default: the `jwt_algorithm` setting].
        #[arg(long, value_enum)]
        algorithm: Option<crate::tokens::keys::KeyAlgorithm>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create an account. The password is asked for twice, not echoed; when standard input
    /// is not a terminal, it is its first line.
    Add {
        /// The username.
        username: String,
        /// An email address for password resets. A verification link is mailed to it (a
        /// running `cloakroom serve` delivers it); it is used only once verified.
        #[arg(long, value_name = "ADDRESS")]
        email: Option<String>,
        /// A group to put the account in (repeat for several).
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
    },
    /// Show an account's groups, after adding and removing any given; the change takes
    /// effect on the user's next request, on every session.
    Groups {
        /// The username.
        username: String,
        /// A group to add the account to (repeat for several).
        #[arg(long, value_name = "GROUP")]
        add: Vec<String>,
        /// A group to remove the account from (repeat for several).
        #[arg(long, value_name = "GROUP")]
        remove: Vec<String>,
    },
    /// Set a new password for an account and end all its sessions (for a user who forgot
    /// theirs). The password is read as for `add`.
    SetPassword {
        /// The username.
        username: String,
    },
    /// Print a password-reset link for an account (for a user with no verified email address).
    /// It works once, for `password_reset_ttl_secs`, and dies when the password changes or
    /// the user logs out everywhere. Hand it over only to the account's owner.
    ResetLink {
        /// The username.
        username: String,
    },
    /// Mint a single-use sign-up invitation (for `signup = "invite"`) and print its code; only
    /// the code's hash is stored.
    Invite {
        /// Days until the code expires.
        #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=365))]
        expires_in_days: u32,
    },
    /// List accounts.
    List,
    /// Disable an account and end all its sessions.
    Disable {
        /// The username.
        username: String,
    },
    /// Show an account's second factors; `--reset` removes every one (authenticator app,
    /// recovery codes) and ends the account's sessions, for a user who lost them.
    Mfa {
        /// The username.
        username: String,
        /// Remove every second factor.
        #[arg(long)]
        reset: bool,
    },
    /// Enable a disabled account.
    Enable {
        /// The username.
        username: String,
    },
    /// Delete an account for good: every session ends first, then the account. Asks for the
    /// username again on a terminal; without one, refuses unless `--yes`.
    Delete {
        /// The username.
        username: String,
        /// Delete without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List a user's live sessions.
    List {
        /// The username.
        #[arg(long)]
        user: String,
    },
    /// End every session of a user.
    Revoke {
        /// The username.
        #[arg(long)]
        user: String,
    },
}

/// Runs the command line given to the process.
pub fn main() -> ExitCode {
    // The one TLS provider in the binary (rustls on ring, for SMTP). Chosen here explicitly so
    // that no dependency's default can ever make it two, which rustls would refuse.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloakroom: error: {}", crate::error_chain::join(e.chain()));
            let not_found = e
                .chain()
                .any(|c| matches!(c.downcast_ref(), Some(AdminError::NoSuchUser(_))));
            if not_found {
                ExitCode::from(EXIT_NOT_FOUND)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let raw = RawConfig::load(cli.config.as_deref(), cli.command.flags())?;
    let settings = raw.settings()?;
    init_logging(settings.json_logs);
    for name in crate::config::unknown_environment() {
        tracing::warn!(
            variable = %name,
            "{name} names no setting and is ignored (`cloakroom serve --help` lists them)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(_) => serve(settings).await,
            Command::User { cmd, .. } => {
                let admin = Admin::new(Stores::open_existing(&settings).await?);
                let out = match cmd {
                    UserCommand::Add {
                        username,
                        email,
                        groups,
                    } => {
                        let groups = admin::group_names(&groups)?;
                        let mut out = admin
                            .user_add(&username, email.as_deref(), new_password()?, &settings)
                            .await?;
                        if !groups.is_empty() {
                            out.push_str(&admin.user_groups(&username, &groups, &[]).await?);
                        }
                        out
                    }
                    UserCommand::Groups {
                        username,
                        add,
                        remove,
                    } => {
                        let (add, remove) = (admin::group_names(&add)?, admin::group_names(&remove)?);
                        admin.user_groups(&username, &add, &remove).await?
                    }
                    UserCommand::SetPassword { username } => {
                        admin.user_set_password(&username, new_password()?).await?
                    }
                    UserCommand::ResetLink { username } => {
                        admin.user_reset_link(&username, &settings).await?
                    }
                    UserCommand::Invite { expires_in_days } => {
                        if settings.signup != crate::config::SignupMode::Invite {
                            tracing::warn!(
                                "signup is not \"invite\" in this configuration: the server ignores invitations until it is"
                            );
                        }
                        admin
                            .user_invite(expires_in_days, &settings.public_origin)
                            .await?
                    }
                    UserCommand::List => admin.user_list().await?,
                    UserCommand::Disable { username } => admin.user_disable(&username).await?,
                    UserCommand::Enable { username } => admin.user_enable(&username).await?,
                    UserCommand::Mfa { username, reset } => {
                        admin.user_mfa(&username, reset).await?
                    }
                    UserCommand::Delete { username, yes } => {
                        admin
                            .user_delete(&username, |name| admin::confirm_deletion(name, yes))
                            .await?
                    }
                };
                print(&out);
                Ok(())
            }
            Command::Keys { cmd, .. } => {
                use cloakroom_core::Clock as _;
                let now = cloakroom_core::SystemClock.now();
                // With the accounts in PostgreSQL the keys are there, shared by every instance.
                let shared = if settings.account_store == crate::config::AccountStoreKind::Postgres
                {
                    Stores::open_existing_with_keys(&settings).await?.keys
                } else {
                    crate::data_dir::require_existing(&settings)?;
                    None
                };
                let alg = |a: Option<crate::tokens::keys::KeyAlgorithm>| {
                    a.unwrap_or(settings.jwt_algorithm)
                };
                let out = match (cmd, shared) {
                    (KeysCommand::List, Some(opened)) => admin::keys_list(
                        &opened.shared().service_jwt().await.map_err(admin::fail)?,
                        now,
                    ),
                    (KeysCommand::List, None) => admin::keys_list(
                        &crate::tokens::keys::KeyRing::load(&settings.data_dir)
                            .map_err(admin::fail)?,
                        now,
                    ),
                    (KeysCommand::Rotate { algorithm }, Some(opened)) => {
                        admin::keys_rotate_shared(opened.shared(), alg(algorithm), now).await?
                    }
                    (KeysCommand::Rotate { algorithm }, None) => {
                        admin::keys_rotate(&settings.data_dir, alg(algorithm), now)?
                    }
                };
                print(&out);
                Ok(())
            }
            Command::Mail { cmd, .. } => {
                let stores = Stores::open_existing(&settings).await?;
                let out = match cmd {
                    MailCommand::Test { address, no_wait } => {
                        let wait = (!no_wait).then(|| mail::default_wait(&settings));
                        mail::mail_test(&stores, &settings, &address, wait).await?
                    }
                    MailCommand::List { limit } => mail::mail_list(&stores, limit).await?,
                };
                print(&out);
                Ok(())
            }
            Command::Links {
                cmd:
                    LinksCommand::Create {
                        url,
                        ttl,
                        reusable,
                        user,
                    },
                ..
            } => {
                let stores = Stores::open_existing(&settings).await?;
                let link = links::NewLink {
                    url: &url,
                    ttl,
                    single_use: !reusable,
                    user: &user,
                };
                print(&links::create(&stores, &settings, &link).await?);
                Ok(())
            }
            Command::Group {
                cmd: GroupCommand::List,
                ..
            } => {
                let admin = Admin::new(Stores::open_existing(&settings).await?);
                print(&admin.group_list().await?);
                Ok(())
            }
            Command::Rules {
                cmd: RulesCommand::Test { user, url, method },
                ..
            } => {
                let admin = Admin::new(Stores::open_existing(&settings).await?);
                print(
                    &admin
                        .rules_test(&settings, user.as_deref(), &url, &method)
                        .await?,
                );
                Ok(())
            }
            Command::Sessions { cmd, .. } => {
                let admin = Admin::new(Stores::open_existing(&settings).await?);
                let out = match cmd {
                    SessionsCommand::List { user } => admin.sessions_list(&user).await?,
                    SessionsCommand::Revoke { user } => admin.sessions_revoke(&user).await?,
                };
                print(&out);
                Ok(())
            }
            Command::Backup { file, force, .. } => {
                print(&admin::backup(&settings, &file, force)?);
                Ok(())
            }
            Command::Restore { file, .. } => {
                print(&admin::restore(&settings, &file)?);
                Ok(())
            }
        }
    })
}

/// A new password for `user add` and `user set-password`: asked for twice with no echo on a
/// terminal, else the first line of standard input (for scripts). Handed on as a line, so the
/// admin operations read both the same way.
fn new_password() -> anyhow::Result<std::io::Cursor<String>> {
    use std::io::IsTerminal as _;
    if !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)
            .context("reading the password from standard input")?;
        return Ok(std::io::Cursor::new(line));
    }
    let first = rpassword::prompt_password("New password: ").context("reading the password")?;
    let again = rpassword::prompt_password("Repeat it: ").context("reading the password")?;
    if first != again {
        anyhow::bail!("the two passwords differ; nothing was changed");
    }
    Ok(std::io::Cursor::new(first))
}

/// The command line. Each command shows the settings [`flags_taken_by`] it, each help ending
/// with the built-in default (taken from [`RawConfig::default`], so it cannot drift); the
/// others are hidden and refused with a word on where they belong.
fn command() -> clap::Command {
    let defaults = serde_json::to_value(RawConfig::default()).unwrap_or_default();
    fit(Cli::command(), &[], &[], &defaults)
}

/// Fits the command at `path`, and those under it, to the setting flags each takes. A group's
/// setting flags are global: clap would copy them into its commands when it builds, but then
/// the copies could not be fitted to each command. So each command gets its own copies here
/// (clap skips an argument a command already has), and every level is fitted before clap
/// builds anything.
fn fit(
    mut command: clap::Command,
    path: &[&str],
    inherited: &[clap::Arg],
    defaults: &serde_json::Value,
) -> clap::Command {
    for arg in inherited {
        if !command.get_arguments().any(|a| a.get_id() == arg.get_id()) {
            command = command.arg(arg.clone());
        }
    }
    let is_setting = |id: &str| SETTINGS.iter().any(|(key, _)| *key == id);
    let settings: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| is_setting(a.get_id().as_str()))
        .cloned()
        .collect();
    let taken = flags_taken_by(path);
    let shown = path.join(" ");
    for arg in &settings {
        let key = arg.get_id().as_str();
        command = if taken.as_ref().is_none_or(|t| t.contains(&key)) {
            {
                // A table's entry (`branding.name`) nests in the defaults.
                let pointer = format!("/{}", key.replace('.', "/"));
                let default = defaults
                    .pointer(&pointer)
                    .unwrap_or(&serde_json::Value::Null);
                command.mut_arg(key, |arg| with_default(arg, default))
            }
        } else {
            let refusal = format!(
                "`cloakroom {shown}` does not take this flag (`cloakroom {shown} --help` lists \
                 those it does); it reads this setting from --config or CLOAKROOM_{}",
                key.to_ascii_uppercase()
            );
            command.mut_arg(key, |arg| {
                arg.hide(true)
                    .value_parser(move |_: &str| Err::<String, _>(refusal.clone()))
            })
        };
    }
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        let mut below = path.to_vec();
        below.push(&name);
        command = command.mut_subcommand(&name, |sub| fit(sub, &below, &settings, defaults));
    }
    command
}

/// `arg` with " [default: …]" after its help, unless the default is unset or empty.
fn with_default(arg: clap::Arg, default: &serde_json::Value) -> clap::Arg {
    let shown = match default {
        serde_json::Value::Null => return arg,
        serde_json::Value::Array(a) if a.is_empty() => return arg,
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {shown}]"))
}

#[allow(clippy::print_stdout)] // The CLI's output is its purpose.
fn print(text: &str) {
    print!("{text}");
}

async fn serve(settings: crate::config::Settings) -> anyhow::Result<()> {
    let public = settings.public_origin.clone();
    let signup = format!("{:?}", settings.signup).to_ascii_lowercase();
    if settings.app_origins.is_public_only() {
        tracing::warn!(
            "app_origins is not set: forward auth answers (and mints service JWTs) only for {public}; list the protected apps' origins in app_origins"
        );
    }
    for warning in settings.sharing_warnings() {
        tracing::warn!("{warning}");
    }
    let proxies: Vec<String> = settings
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(trusted_proxies = ?proxies, "forwarding headers are believed only from these peers");
    // Held until the process ends: `cloakroom restore` and a second server on this directory
    // are refused while it is.
    crate::data_dir::ensure_data_dir(&settings.data_dir)?;
    let _lock = crate::data_dir::DataDirLock::acquire_waiting(
        &settings.data_dir,
        std::time::Duration::from_secs(5),
    )?;
    let state = AppState::open(settings).await?;
    tracing::info!(
        session_cache = ?state.settings().session_cache,
        "session cache: {}",
        match state.settings().session_cache {
            crate::config::SessionCacheMode::Exact => "exact (this server is the store's only writer)",
            crate::config::SessionCacheMode::Push => "push (kept exact by the store's invalidation feed)",
            crate::config::SessionCacheMode::Off => "off (every check reads the store)",
        }
    );
    let server = Server::bind(state).await?;
    tracing::info!(listen = %server.local_addr(), public_url = %public, "cloakroom is serving on {public}");
    // Whether strangers can create accounts is the first thing an operator should know.
    tracing::info!(
        signup = %signup,
        "sign-up is {signup} (the `signup` setting: open, closed or invite){}",
        match signup.as_str() {
            "open" => ": anyone who reaches this server can create an account",
            "invite" => ": only with a code from `cloakroom user invite`",
            _ => ": administrators add users with `cloakroom user add`",
        }
    );
    server.run(shutdown_signal()).await.context("serving")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_env("CLOAKROOM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::LISTS;

    /// The value of `key` (`table.key` for a table's) in `raw`.
    fn value_of(raw: &RawConfig, key: &str) -> serde_json::Value {
        serde_json::to_value(raw)
            .unwrap()
            .pointer(&format!("/{}", key.replace('.', "/")))
            .cloned()
            .unwrap_or_default()
    }

    /// Issue 10: a setting spelled by hand in several places could be missing from one (the
    /// environment list once was): each must be settable by file, environment and flag alike.
    #[test]
    #[allow(clippy::result_large_err)] // figment's `Jail` fixes the closure's error type.
    fn every_setting_can_be_set_by_file_environment_and_flag() {
        let defaults = RawConfig::default();
        // A table's fields are settings of their own (`branding.name`). Arrays of tables
        // (`[[oidc]]`, `LISTS`) are file-only by design and have their own test in `config`.
        let fields: BTreeSet<String> = serde_json::to_value(&defaults)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, value)| {
                let list = LISTS.contains(&key.as_str());
                assert!(!list || value.is_array(), "{key} is an array of tables");
                !list
            })
            .flat_map(|(key, value)| match value.as_object() {
                Some(table) => table.keys().map(|k| format!("{key}.{k}")).collect(),
                None => vec![key.clone()],
            })
            .collect();
        let keys: BTreeSet<String> = SETTINGS.iter().map(|(k, _)| (*k).to_owned()).collect();
        assert_eq!(fields, keys, "every field is a setting");

        let dir = tempfile::tempdir().unwrap();
        for (key, sample) in SETTINGS {
            let file = dir.path().join(format!("{key}.toml"));
            std::fs::write(&file, format!("{key} = {sample}\n")).unwrap();
            let flag = format!("--{}", key.replace(['_', '.'], "-"));
            let flag_value = sample.trim_matches(['[', ']']).trim_matches('"');
            figment::Jail::expect_with(|jail| {
                jail.clear_env();
                let from_file = RawConfig::load(Some(&file), &Flags::default()).unwrap();
                // The flag belongs to `serve`, so it follows it.
                let cli = parse(&["cloakroom", "serve", &format!("{flag}={flag_value}")])
                    .map_err(|e| format!("{flag} {flag_value}: {e}"))?;
                let from_flag = RawConfig::load(None, cli.command.flags()).unwrap();
                let variable = key.replace('.', "_").to_ascii_uppercase();
                jail.set_env(format!("CLOAKROOM_{variable}"), sample);
                let from_env = RawConfig::load(None, &Flags::default()).unwrap();

                let wanted = value_of(&from_file, key);
                assert_ne!(wanted, value_of(&defaults, key), "{key}: set by the file");
                assert_eq!(
                    value_of(&from_env, key),
                    wanted,
                    "{key}: set by the environment"
                );
                assert_eq!(value_of(&from_flag, key), wanted, "{key}: set by {flag}");
                Ok(())
            });
        }
    }

    /// The command line as the process parses it (with [`command`]'s adjustments).
    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::from_arg_matches(&command().try_get_matches_from(args)?)
    }

    /// The `--help` of `cloakroom <path…>`.
    fn help(path: &[&str]) -> String {
        let mut command = command();
        command.build();
        let mut sub = &mut command;
        for name in path {
            sub = sub.find_subcommand_mut(name).unwrap();
        }
        sub.render_long_help().to_string()
    }

    #[test]
    fn boolean_flags_need_no_value_and_help_shows_defaults() {
        let flags = |args: &[&str]| parse(args).unwrap().command.flags().clone();
        assert_eq!(
            flags(&["cloakroom", "serve", "--json-logs"]).json_logs,
            Some(true)
        );
        assert_eq!(
            flags(&["cloakroom", "serve", "--forward-auth-csrf=false"]).forward_auth_csrf,
            Some(false)
        );
        let help = help(&["serve"]);
        assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    }

    /// Issue 18: every setting was a global flag, so each command's `--help` listed all of
    /// them. `serve --help` lists every setting; an admin command lists the ones that say
    /// where its data is, and refuses the others (exit status 2) saying where they belong.
    #[test]
    fn each_command_shows_and_takes_its_own_flags() {
        let serve = help(&["serve"]);
        for (key, _) in SETTINGS {
            let flag = format!("--{}", key.replace(['_', '.'], "-"));
            assert!(serve.contains(&flag), "serve --help lists {flag}");
        }
        for path in [
            &["user", "list"][..],
            &["user", "add"],
            &["user", "invite"],
            &["sessions", "revoke"],
            &["keys", "rotate"],
            &["backup"],
            &["restore"],
        ] {
            let text = help(path);
            let shown: Vec<&str> = SETTINGS
                .iter()
                .map(|(key, _)| *key)
                .filter(|key| {
                    let flag = format!("--{}", key.replace(['_', '.'], "-"));
                    [" ", "["]
                        .iter()
                        .any(|end| text.contains(&format!("{flag}{end}")))
                })
                .collect();
            let mut taken = flags_taken_by(path).unwrap();
            taken.sort_by_key(|t| SETTINGS.iter().position(|(k, _)| k == t));
            assert_eq!(
                shown, taken,
                "{path:?} --help shows exactly its flags:\n{text}"
            );
            assert!(text.contains("--config"), "{path:?}: {text}");
        }
        assert!(help(&["user", "list"]).contains("--postgres-url"));

        parse(&[
            "cloakroom",
            "user",
            "list",
            "--data-dir",
            "d",
            "--postgres-url",
            "x",
        ])
        .unwrap();
        parse(&["cloakroom", "user", "--data-dir", "d", "list"]).unwrap();
        let refused = parse(&["cloakroom", "user", "list", "--listen", "127.0.0.1:1"]).unwrap_err();
        assert_eq!(refused.exit_code(), 2);
        let message = refused.to_string();
        assert!(
            message.contains("`cloakroom user list` does not take this flag")
                && message.contains("CLOAKROOM_LISTEN"),
            "{message}"
        );
        parse(&[
            "cloakroom",
            "user",
            "invite",
            "--public-url",
            "https://a.example",
        ])
        .unwrap();
        assert!(
            parse(&[
                "cloakroom",
                "user",
                "list",
                "--public-url",
                "https://a.example"
            ])
            .is_err()
        );
        parse(&["cloakroom", "keys", "list", "--json-logs"]).unwrap();
        assert!(
            parse(&[
                "cloakroom",
                "keys",
                "list",
                "--public-url",
                "https://a.example"
            ])
            .is_err()
        );
        assert!(parse(&["cloakroom", "backup", "f", "--session-store", "memory"]).is_err());
    }

    #[test]
    fn top_level_help_documents_the_exit_status() {
        let help = command().render_long_help().to_string();
        assert!(help.contains("Exit status:"), "{help}");
        assert!(help.contains("3  the user named does not exist"), "{help}");
    }
}
