//! `bench-baseline`: the yardstick for Cloakroom's forward auth.
//!
//! A minimal axum server, built like Cloakroom's (same axum, same multi-threaded tokio runtime),
//! answering:
//!
//! * `GET /noauth` — 200 at once: the cost of HTTP itself on this machine.
//! * `GET /jwt/{hs256,rs256,eddsa,es256}` — verifies the `Authorization: Bearer` JWT with
//!   `jsonwebtoken` (signature, algorithm, `exp`, `nbf`, `iss`, `aud`) and answers like a
//!   forward-auth endpoint: 200 with `Remote-User`/`Remote-Email` headers, or 401.
//! * `GET /session-model` (with `--data-dir`) — a *model* of forward auth built from
//!   Cloakroom's library crates alone: `cloakroom-axum`'s `SessionLayer` over the SQLite store
//!   in that data directory, answering 200 with `Remote-User` or 401. It shows what session
//!   validation costs at the HTTP level without the server's own stack (security headers,
//!   client-address resolution, …); it is not the product's endpoint, which `bench/run` measures
//!   separately.
//!
//! It prints `listening on ADDR` once bound (the harness reads it), and stops on SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use cloakroom_axum::{Session, SessionLayer};
use cloakroom_bench::jwt::{Alg, Verifier};
use cloakroom_core::SessionManager;
use cloakroom_core::origin::Origin;
use cloakroom_server::database_path;
use cloakroom_server::session_keys as keys;
use cloakroom_sqlite::{Database, SqliteStore};

#[derive(Debug, Parser)]
#[command(
    name = "bench-baseline",
    about = "Baseline server for the HTTP benchmarks"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free one). Loopback only.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A Cloakroom data directory: serve `/session-model` over its SQLite sessions.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

struct Verifiers(Vec<(Alg, Verifier)>);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.listen.ip().is_loopback(),
        "benchmarks listen on loopback only"
    );
    let verifiers = Arc::new(Verifiers(
        Alg::ALL
            .into_iter()
            .map(|a| a.verifier().map(|v| (a, v)))
            .collect::<Result<_, _>>()
            .context("loading the benchmark keys")?,
    ));
    // The same runtime `cloakroom serve` builds: multi-threaded, one worker per CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut app = Router::new()
            .route("/noauth", get(noauth))
            .route("/jwt/{alg}", get(jwt))
            .with_state(verifiers);
        if let Some(dir) = &cli.data_dir {
            let db = Database::open(database_path(dir)).context("opening the data directory")?;
            let manager = SessionManager::new(SqliteStore::new(db));
            let origin = Origin::parse("http://127.0.0.1").context("origin")?;
            app = app.merge(
                Router::new()
                    .route("/session-model", get(session_model))
                    .layer(SessionLayer::new(manager, origin)),
            );
        }
        let listener = tokio::net::TcpListener::bind(cli.listen).await?;
        announce(listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok(())
    })
}

#[allow(clippy::print_stdout)] // The harness reads the bound address from standard output.
fn announce(addr: SocketAddr) {
    println!("listening on {addr}");
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn session_model(session: Option<Session>) -> Response {
    let Some(session) = session else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut response = StatusCode::OK.into_response();
    let user = session
        .get::<String>(keys::USERNAME)
        .ok()
        .flatten()
        .and_then(|u| HeaderValue::try_from(u).ok());
    if let Some(v) = user {
        response.headers_mut().insert("remote-user", v);
    }
    response
}

async fn noauth() -> StatusCode {
    StatusCode::OK
}

async fn jwt(
    State(verifiers): State<Arc<Verifiers>>,
    Path(alg): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(verifier) = Alg::from_name(&alg)
        .and_then(|a| verifiers.0.iter().find(|(b, _)| *b == a))
        .map(|(_, v)| v)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(claims) = token.and_then(|t| verifier.verify(t).ok()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&claims.sub) {
        h.insert("remote-user", v);
    }
    if let Ok(v) = HeaderValue::from_str(&claims.email) {
        h.insert("remote-email", v);
    }
    response
}
