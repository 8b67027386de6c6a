//! `bench-baseline`: the yardstick for Cloakroom's forward auth.
//!
//! A minimal axum server, built like Cloakroom's (same axum, same multi-threaded tokio runtime),
//! answering:
//!
//! * `GET /noauth` — 200 at once: the cost of HTTP itself on this machine.
//! * `GET /jwt/{hs256,rs256,eddsa,es256}` — verifies the `Authorization: Bearer` JWT with
//!   AWS-LC (`cloakroom_bench::jwt::Verifier`: algorithm, signature, `exp`, `nbf`, `iss`, `aud`)
//!   and answers like a forward-auth endpoint: 200 with `Remote-User`/`Remote-Email` headers
//!   taken from the claims, or 401.
//! * `GET /jwt-forward/{hs256,rs256,eddsa,es256}` — the same verification, answering 200 with
//!   the header set Cloakroom's `/auth/verify` answers in the benchmark (`Remote-User`,
//!   `Remote-Name`, `Remote-Email`, `X-Auth-Request-User`, `X-Auth-Request-Preferred-Username`,
//!   `X-Auth-Request-Email`, `X-Cloakroom-Jwt`), values as long as Cloakroom's for a `bench-seed`
//!   user, so both sides write the same response bytes. The values, the service JWT included,
//!   are built once at start-up and cloned per response, as the fastest implementation would
//!   (Cloakroom caches its per session and audience, too).
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
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use cloakroom_axum::{Session, SessionLayer};
use cloakroom_bench::fixtures::BenchUser;
use cloakroom_bench::jwt::{self, Alg, Verifier};
use cloakroom_core::origin::Origin;
use cloakroom_core::{Clock, HANDLE_LEN, SessionManager, SystemClock};
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
    /// `iss` and `aud` of the service JWT `/jwt-forward` answers with: the public URL of the
    /// Cloakroom instance it stands beside, whose service JWTs carry it in both (default: this
    /// server's own URL, the same length for any loopback port above 9999).
    #[arg(long)]
    service_issuer: Option<String>,
}

struct Baseline {
    verifiers: Vec<(Alg, Verifier)>,
    forward: ForwardHeaders,
}

impl Baseline {
    fn verifier(&self, alg: Alg) -> Option<&Verifier> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, v)| v)
    }
}

/// What `/jwt-forward` adds to a 200, validated once.
struct ForwardHeaders {
    user: HeaderValue,
    name: HeaderValue,
    email: HeaderValue,
    jwt: HeaderValue,
}

impl ForwardHeaders {
    /// The headers Cloakroom answers for a `bench-seed` session: its users have a verified
    /// email address and no display name (so `Remote-Name` is the username), and its service
    /// JWT is EdDSA-signed (the server's default key) with the product's claims.
    fn new(issuer: &str) -> anyhow::Result<Self> {
        let user = BenchUser::numbered(0);
        // Any well-formed handle: only its length matters here.
        let sid = "S".repeat(HANDLE_LEN);
        let claims = jwt::service_claims(
            issuer,
            issuer,
            &user,
            &sid,
            SystemClock.now().as_unix_secs(),
        );
        let token = jwt::mint_service_token(&Alg::EdDsa.signer()?, &claims)?;
        Ok(Self {
            user: HeaderValue::from_str(&user.username)?,
            name: HeaderValue::from_str(&user.username)?,
            email: HeaderValue::from_str(&user.email())?,
            jwt: HeaderValue::from_str(&token)?,
        })
    }
}

const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
const X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
const X_AUTH_REQUEST_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
const X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
const X_CLOAKROOM_JWT: HeaderName =
    HeaderName::from_static(cloakroom_core::service_token::JWT_HEADER);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.listen.ip().is_loopback(),
        "benchmarks listen on loopback only"
    );
    let verifiers = Alg::ALL
        .into_iter()
        .map(|a| a.verifier().map(|v| (a, v)))
        .collect::<Result<_, _>>()
        .context("loading the benchmark keys")?;
    // The same runtime `cloakroom serve` builds: multi-threaded, one worker per CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen).await?;
        let addr = listener.local_addr()?;
        let issuer = cli
            .service_issuer
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let state = Arc::new(Baseline {
            verifiers,
            forward: ForwardHeaders::new(&issuer).context("minting the service JWT")?,
        });
        let mut app = Router::new().route("/noauth", get(noauth));
        // One static route per algorithm, as a service would have: no path parameter to
        // extract and decode per request. The request is taken whole, so its headers are read
        // in place rather than cloned by a `HeaderMap` extractor.
        for alg in Alg::ALL {
            app = app
                .route(
                    &format!("/jwt/{}", alg.name()),
                    get(
                        move |State(s): State<Arc<Baseline>>, r: Request| async move {
                            jwt_claims(&s, alg, r.headers())
                        },
                    ),
                )
                .route(
                    &format!("/jwt-forward/{}", alg.name()),
                    get(
                        move |State(s): State<Arc<Baseline>>, r: Request| async move {
                            jwt_forward(&s, alg, r.headers())
                        },
                    ),
                );
        }
        let mut app = app.with_state(state);
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
        announce(addr);
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
        response.headers_mut().insert(REMOTE_USER, v);
    }
    response
}

async fn noauth() -> StatusCode {
    StatusCode::OK
}

/// The bearer token's claims, if `alg`'s verifier accepts it.
fn verified(state: &Baseline, alg: Alg, headers: &HeaderMap) -> Option<jwt::Claims> {
    let token = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    state.verifier(alg)?.verify(token).ok()
}

fn jwt_claims(state: &Baseline, alg: Alg, headers: &HeaderMap) -> Response {
    let Some(claims) = verified(state, alg, headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&claims.sub) {
        h.insert(REMOTE_USER, v);
    }
    if let Ok(v) = HeaderValue::from_str(&claims.email) {
        h.insert(REMOTE_EMAIL, v);
    }
    response
}

fn jwt_forward(state: &Baseline, alg: Alg, headers: &HeaderMap) -> Response {
    if verified(state, alg, headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let f = &state.forward;
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    // Cloakroom's order and names (`web/forward.rs`, `allowed`).
    for name in [
        REMOTE_USER,
        X_AUTH_REQUEST_USER,
        X_AUTH_REQUEST_PREFERRED_USERNAME,
    ] {
        h.insert(name, f.user.clone());
    }
    h.insert(REMOTE_NAME, f.name.clone());
    h.insert(REMOTE_EMAIL, f.email.clone());
    h.insert(X_AUTH_REQUEST_EMAIL, f.email.clone());
    h.insert(X_CLOAKROOM_JWT, f.jwt.clone());
    response
}
