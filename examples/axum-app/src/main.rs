//! Run it: `cargo run -p example-axum-app`, then open <http://localhost:3000>.
//!
//! A tiny app showing Cloakroom sessions in an axum application: a login form, a protected
//! page showing the session's data, a CSRF-protected form that changes it, and logout.
//! Sessions live in SQLite (`./example-sessions.db`), so they survive a restart.
//!
//! Any username works; the password is `cloakroom` — this example is about sessions, not
//! accounts (see the `cloakroom` server for real accounts with Argon2id).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::Form;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use cloakroom_axum::{Auth, Rejection, Session, SessionLayer};
use cloakroom_core::origin::Origin;
use cloakroom_core::{AuthMethod, SessionManager, UserId};
use cloakroom_sqlite::{Database, SqliteStore};

const DEMO_PASSWORD: &str = "cloakroom";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = Database::open("example-sessions.db")?;
    let sessions = SessionManager::new(SqliteStore::new(db));
    let app = app(sessions, Origin::parse("http://localhost:3000")?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    #[allow(clippy::print_stdout)] // The example's one line of output.
    {
        println!("listening on http://localhost:3000");
    }
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// The whole app, so it could be driven by tests.
fn app(sessions: SessionManager, origin: Origin) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_form).post(login))
        .route("/click", post(click))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(sessions, origin))
}

async fn home(session: Option<Session>) -> Response {
    let Some(session) = session else {
        return Redirect::to("/login").into_response();
    };
    let clicks: u64 = session.get("clicks").ok().flatten().unwrap_or(0);
    let csrf = session.csrf_token();
    page(&format!(
        r#"<h1>Hello, {user}</h1>
        <p>You have clicked {clicks} time(s). This count lives in your server-side session.</p>
        <form method="post" action="/click">
          <input type="hidden" name="csrf_token" value="{csrf}">
          <button>Click</button>
        </form>
        <form method="post" action="/logout">
          <input type="hidden" name="csrf_token" value="{csrf}">
          <button>Log out</button>
        </form>"#,
        user = escape(session.user_id().as_str()),
    ))
    .into_response()
}

async fn login_form() -> Html<String> {
    page(
        r#"<h1>Log in</h1>
        <form method="post" action="/login">
          <label>Username <input name="username" autocomplete="username" required></label>
          <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
          <button>Log in</button>
        </form>
        <p>Any username; the password is <code>cloakroom</code>.</p>"#,
    )
}

#[derive(serde::Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(auth: Auth, Form(form): Form<Credentials>) -> Result<Response, Rejection> {
    let user = UserId::new(form.username.trim().to_owned());
    match user {
        Ok(user) if form.password == DEMO_PASSWORD => {
            auth.login(auth.new_session(user, AuthMethod::password())).await?;
            Ok(Redirect::to("/").into_response())
        }
        _ => Ok(page("<h1>Log in</h1><p role=alert>Wrong username or password.</p><a href=/login>Try again</a>")
            .into_response()),
    }
}

async fn click(mut session: Session) -> Result<Redirect, Rejection> {
    session
        .update(|data| {
            let n: u64 = data.get("clicks").ok().flatten().unwrap_or(0);
            data.insert("clicks", &(n + 1))
        })
        .await?
        .map_err(|e| Rejection::InvalidData(e.into()))?;
    Ok(Redirect::to("/"))
}

async fn logout(session: Session) -> Result<Redirect, Rejection> {
    session.logout().await?;
    Ok(Redirect::to("/login"))
}

fn page(body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Cloakroom example</title>\
         <style>body{{font:16px system-ui;max-width:32rem;margin:3rem auto}}label{{display:block;margin:.5rem 0}}</style>\
         <body>{body}</body></html>"
    ))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
