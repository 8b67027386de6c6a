//! The `cloakroom` command line: `cloakroom serve` runs the server; `cloakroom user …`,
//! `cloakroom sessions …` and `cloakroom keys …` administer the same data while it runs.
//! Configuration: `--config FILE` (TOML), `CLOAKROOM_*` environment variables, and the flags,
//! in increasing precedence.
//!
//! A new admin command goes into [`admin`] (the operation, testable without a process) and a
//! variant here (its spelling on the command line).

pub mod admin;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use crate::config::{AccountStoreKind, RawConfig, SameSiteSetting, SessionStoreKind};
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
    overrides: Overrides,
}

/// Settings given as flags; only those present override the file and environment.
#[derive(Debug, Args, Serialize)]
struct Overrides {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Directory for the database and keys [default: ./cloakroom-data].
    #[arg(long, global = true, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// The URL users reach the server at [default: http://localhost:8080].
    #[arg(long, global = true, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    public_url: Option<String>,
    /// Where sessions are kept [default: sqlite].
    #[arg(long, global = true, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    session_store: Option<SessionStoreKind>,
    /// Where accounts are kept [default: sqlite].
    #[arg(long, global = true, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    account_store: Option<AccountStoreKind>,
    /// Proxies whose X-Forwarded-For is believed (comma-separated CIDRs).
    #[arg(long, global = true, value_delimiter = ',', value_name = "CIDRS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    trusted_proxies: Option<Vec<String>>,
    /// Keep validated sessions in memory, noticing changes made elsewhere within this many
    /// milliseconds [default: off].
    #[arg(long, global = true, value_name = "MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    session_cache_ms: Option<u64>,
    /// SameSite attribute of the session cookie [default: lax].
    #[arg(long, global = true, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    same_site: Option<SameSiteSetting>,
    /// Log JSON lines instead of text.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    json_logs: bool,
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
    /// Create an account; the password is read from the first line of standard input.
    Add {
        /// The username.
        username: String,
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
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloakroom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let raw = RawConfig::load(cli.config.as_deref(), &cli.overrides)?;
    let settings = raw.settings()?;
    init_logging(settings.json_logs);
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
                        admin.user_add(&username, std::io::stdin().lock()).await?
                    }
                    UserCommand::List => admin.user_list().await?,
                    UserCommand::Disable { username } => admin.user_disable(&username).await?,
                    UserCommand::Enable { username } => admin.user_enable(&username).await?,
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

#[allow(clippy::print_stdout)] // The CLI's output is its purpose.
fn print(text: &str) {
    print!("{text}");
}

async fn serve(settings: crate::config::Settings) -> anyhow::Result<()> {
    let public = settings.public_origin.clone();
    let state = AppState::open(settings).await?;
    let server = Server::bind(state).await?;
    tracing::info!(listen = %server.local_addr(), public_url = %public, "cloakroom is serving on {public}");
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
