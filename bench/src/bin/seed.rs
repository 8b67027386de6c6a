//! `bench-seed`: real sessions and JWTs for the HTTP load tests.
//!
//! Opens a Cloakroom data directory the way the server does (`<data-dir>/cloakroom.db`), creates
//! `--users` accounts, issues `--sessions` sessions spread over them through the real
//! `SessionManager` (with the session data the server's login records), and writes to `--out`:
//!
//! * `cookies.txt` — one cookie value per line, for `wrk` to pick from at random;
//! * `jwt-<alg>.txt` — `--jwts` distinct typical bearer tokens per algorithm, for the baselines;
//! * `sizes.json` — bytes on the wire of the session cookie and of typical and fat JWTs.
//!
//! Run it before `cloakroom serve` starts on the same directory: a running server holds an
//! exclusive lock on its data directory. `bench/run` copies the seeded directory for every
//! further server it starts, so all of them hold the same accounts (and, on SQLite, sessions).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use cloakroom_bench::fixtures::{BenchUser, issue_many};
use cloakroom_bench::jwt::{Alg, typical_claims};
use cloakroom_bench::stores::{self, Backend};
use cloakroom_bench::wire;
use cloakroom_core::accounts::{Account, AccountError, AccountStore, Username};
use cloakroom_core::{Clock, SessionManager, SessionStore, SystemClock};
use cloakroom_server::database_path;
use cloakroom_server::passwords::{Password, Passwords};
use cloakroom_sqlite::{Database, SqliteAccounts, SqliteStore};

#[derive(Debug, Parser)]
#[command(
    name = "bench-seed",
    about = "Seed sessions and tokens for the HTTP benchmarks"
)]
struct Cli {
    /// The server's data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write cookies.txt, `jwt-<alg>.txt` and sizes.json.
    #[arg(long)]
    out: PathBuf,
    /// Sessions to issue.
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    /// Accounts to spread them over.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Distinct JWTs per algorithm.
    #[arg(long, default_value_t = 1_000)]
    jwts: usize,
    /// Spread the sessions' last-seen times evenly over this many seconds before now, so the
    /// moments they become due a last-seen write are spread as on a server that has been busy
    /// for a while (the default is the server's default touch interval). 0 issues all now.
    #[arg(long, default_value_t = 60)]
    stagger_secs: u64,
    /// Session store: `sqlite` (the server's default) or, once it exists, `redis`.
    #[arg(long, default_value = "sqlite")]
    store: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&cli.data_dir)?;
    std::fs::create_dir_all(&cli.out)?;
    let path = database_path(&cli.data_dir);
    let db = Database::open(&path).with_context(|| format!("opening {}", path.display()))?;

    let users: Vec<BenchUser> = (0..cli.users.max(1)).map(BenchUser::numbered).collect();
    create_accounts(&SqliteAccounts::new(db.clone()), &users).await?;

    let store: Arc<dyn SessionStore> = match Backend::from_name(&cli.store) {
        Some(Backend::Sqlite) => Arc::new(SqliteStore::new(db)),
        Some(Backend::Redis) => stores::redis()
            .await?
            .context("Redis does not answer (see CLOAKROOM_BENCH_REDIS_URL)")?,
        _ => anyhow::bail!(
            "--store {:?}: the server can only share sqlite or redis sessions with this seeder",
            cli.store
        ),
    };
    let manager = SessionManager::from_arc(store);
    // 256 in flight: the SQLite writer commits up to 256 writes per fsync.
    let stagger = Duration::from_secs(cli.stagger_secs);
    let cookies = issue_many(&manager, &users, cli.sessions, 256, stagger).await?;
    write_lines(&cli.out.join("cookies.txt"), &cookies)?;

    let now = SystemClock.now();
    for alg in Alg::ALL {
        let signer = alg.signer()?;
        let tokens = (0..cli.jwts)
            .map(|n| signer.sign(&typical_claims(n, now)))
            .collect::<Result<Vec<_>, _>>()?;
        write_lines(&cli.out.join(format!("jwt-{}.txt", alg.name())), &tokens)?;
    }
    let sizes = wire::sizes()?;
    std::fs::write(
        cli.out.join("sizes.json"),
        serde_json::to_vec_pretty(&sizes)?,
    )?;
    report(&format!(
        "seeded {} sessions for {} users and {} JWTs per algorithm in {:.1}s",
        cookies.len(),
        users.len(),
        cli.jwts,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

async fn create_accounts(accounts: &SqliteAccounts, users: &[BenchUser]) -> anyhow::Result<()> {
    // One Argon2id hash shared by every account: nobody logs in as these users, and hashing
    // thousands of times would only slow the seeding down.
    let hash = Passwords::new(1)
        .hash(&Password::new("benchmark accounts never log in"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let now = SystemClock.now();
    for user in users {
        let account = Account {
            id: user.id.clone(),
            username: Username::parse(&user.username)
                .map_err(|e| anyhow::anyhow!("{}: {e}", user.username))?,
            password_hash: hash.clone(),
            disabled: false,
            created_at: now,
            password_changed_at: now,
            // Verified, so forward auth sends `Remote-Email` as a real deployment would.
            email: cloakroom_core::mail::EmailAddress::parse(&user.email()).ok(),
            email_verified: true,
            display_name: None,
        };
        match accounts.create(&account).await {
            Ok(()) | Err(AccountError::UsernameTaken) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn write_lines(path: &std::path::Path, lines: &[String]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        let _ = writeln!(text, "{line}");
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[allow(clippy::print_stdout)] // The harness shows this line.
fn report(line: &str) {
    println!("{line}");
}
