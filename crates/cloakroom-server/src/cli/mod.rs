//! The `cloakroom` command line: `cloakroom serve` runs the server; `cloakroom user …`,
//! `cloakroom sessions …`, `cloakroom keys …`, `cloakroom mail …` and `cloakroom links …`
//! administer the same data while it runs.
//! Configuration: `--config FILE` (TOML), `CLOAKROOM_*` environment variables, and the flags,
//! in increasing precedence.
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
use admin::Admin;

#[derive(Debug, Parser)]
#[command(
    name = "cloakroom",
    version,
    about = "Server-side sessions done right."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// A TOML configuration file.
    #[arg(long, global = true, env = "CLOAKROOM_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect and end sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Manage the keys that sign service JWTs.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check outgoing mail and inspect the outbox.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Make download links.
    #[command(subcommand)]
    Links(LinksCommand),
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
    },
    /// Set a new password for an account and end all its sessions (for a user who forgot
    /// theirs). The password is read as for `add`.
    SetPassword {
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
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloakroom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let raw = RawConfig::load(cli.config.as_deref(), &cli.flags)?;
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
            Command::Serve => serve(settings).await,
            Command::User(cmd) => {
                let admin = Admin::new(Stores::open(&settings).await?);
                let out = match cmd {
                    UserCommand::Add { username } => {
                        admin.user_add(&username, new_password()?).await?
                    }
                    UserCommand::SetPassword { username } => {
                        admin.user_set_password(&username, new_password()?).await?
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
                    UserCommand::Delete { username, yes } => {
                        admin
                            .user_delete(&username, |name| admin::confirm_deletion(name, yes))
                            .await?
                    }
                };
                print(&out);
                Ok(())
            }
            Command::Keys(cmd) => {
                use cloakroom_core::Clock as _;
                crate::state::ensure_data_dir(&settings.data_dir)?;
                let now = cloakroom_core::SystemClock.now();
                let out = match cmd {
                    KeysCommand::List => admin::keys_list(&settings.data_dir, now)?,
                    KeysCommand::Rotate { algorithm } => admin::keys_rotate(
                        &settings.data_dir,
                        algorithm.unwrap_or(settings.jwt_algorithm),
                        now,
                    )?,
                };
                print(&out);
                Ok(())
            }
            Command::Mail(cmd) => {
                let stores = Stores::open(&settings).await?;
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
            Command::Links(LinksCommand::Create {
                url,
                ttl,
                reusable,
                user,
            }) => {
                let stores = Stores::open(&settings).await?;
                let link = links::NewLink {
                    url: &url,
                    ttl,
                    single_use: !reusable,
                    user: &user,
                };
                print(&links::create(&stores, &settings, &link).await?);
                Ok(())
            }
            Command::Sessions(cmd) => {
                let admin = Admin::new(Stores::open(&settings).await?);
                let out = match cmd {
                    SessionsCommand::List { user } => admin.sessions_list(&user).await?,
                    SessionsCommand::Revoke { user } => admin.sessions_revoke(&user).await?,
                };
                print(&out);
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

/// The command line, each setting's help ending with its built-in default (taken from
/// [`RawConfig::default`], so it cannot drift).
fn command() -> clap::Command {
    let defaults = serde_json::to_value(RawConfig::default()).unwrap_or_default();
    let mut command = Cli::command();
    for (key, _) in SETTINGS {
        let pointer = format!("/{}", key.replace('.', "/"));
        let shown = match defaults
            .pointer(&pointer)
            .unwrap_or(&serde_json::Value::Null)
        {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) if a.is_empty() => continue,
            other => other.to_string(),
        };
        command = command.mut_arg(*key, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {shown}]"))
        });
    }
    command
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
    let proxies: Vec<String> = settings
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(trusted_proxies = ?proxies, "forwarding headers are believed only from these peers");
    let state = AppState::open(settings).await?;
    let server = Server::bind(state).await?;
    tracing::info!(listen = %server.local_addr(), public_url = %public, "cloakroom is serving on {public}");
    // Whether strangers can create accounts is the first thing an operator should know.
    tracing::info!(
        signup = %signup,
        "sign-up is {signup} (the `signup` setting: open, closed{})",
        if signup == "open" { "; anyone who reaches this server can create an account" } else { "" }
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
        // A table's fields are settings of their own (`branding.name`).
        let fields: BTreeSet<String> = serde_json::to_value(&defaults)
            .unwrap()
            .as_object()
            .unwrap()
            .iter()
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
                let cli =
                    Cli::try_parse_from(["cloakroom", &format!("{flag}={flag_value}"), "serve"])
                        .map_err(|e| format!("{flag} {flag_value}: {e}"))?;
                let from_flag = RawConfig::load(None, &cli.flags).unwrap();
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

    #[test]
    fn boolean_flags_need_no_value_and_help_shows_defaults() {
        let cli = Cli::try_parse_from(["cloakroom", "--json-logs", "serve"]).unwrap();
        assert_eq!(cli.flags.json_logs, Some(true));
        let cli = Cli::try_parse_from(["cloakroom", "serve", "--forward-auth-csrf=false"]).unwrap();
        assert_eq!(cli.flags.forward_auth_csrf, Some(false));
        let help = command().render_help().to_string();
        assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
    }
}
