//! The test app, driven by the testkit's HTTP client with cookies passed by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Form;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloakroom_axum::{Auth, CurrentUser, Rejection, Session, SessionLayer};
use cloakroom_core::origin::Origin;
use cloakroom_core::{AuthMethod, ManualClock, MemoryStore, SessionHandle, SessionManager, UserId};
use cloakroom_testkit::ObservedStore;
use cloakroom_testkit::http::{Client, Request};
use reqwest::StatusCode;
use serde_json::{Value, json};

pub use cloakroom_testkit::http::Reply;

pub const ORIGIN: &str = "https://app.example.com";

#[derive(serde::Deserialize)]
struct LoginBody {
    user: String,
    #[serde(default)]
    remember: bool,
}

async fn login(auth: Auth, Json(body): Json<LoginBody>) -> Result<Json<Value>, Rejection> {
    let user = UserId::new(body.user).map_err(|e| Rejection::InvalidData(Arc::new(e)))?;
    let session = auth
        .login(
            auth.new_session(user, AuthMethod::password())
                .remember(body.remember),
        )
        .await?;
    Ok(Json(
        json!({ "csrf_token": session.csrf_token(), "handle": session.handle() }),
    ))
}

async fn me(session: Session) -> Json<Value> {
    Json(json!({
        "user": session.user_id().as_str(),
        "handle": session.handle(),
        "csrf_token": session.csrf_token(),
        "ip": session.record().ip.map(|ip| ip.to_string()),
        "user_agent": session.record().user_agent,
        "data": session.record().data.as_map(),
    }))
}

async fn maybe(session: Option<Session>) -> String {
    session.map_or_else(|| "anonymous".to_owned(), |s| s.user_id().to_string())
}

async fn whoami(CurrentUser(user): CurrentUser) -> String {
    user.to_string()
}

async fn incr(mut session: Session) -> Result<String, Rejection> {
    let n = session
        .update(|data| {
            let n: u64 = data.get("counter").ok().flatten().unwrap_or(0) + 1;
            data.insert("counter", &n).map(|()| n)
        })
        .await?
        .map_err(|e| Rejection::InvalidData(Arc::new(e)))?;
    Ok(n.to_string())
}

async fn rotate(mut session: Session) -> Result<Json<Value>, Rejection> {
    session.rotate().await?;
    Ok(Json(json!({ "csrf_token": session.csrf_token() })))
}

async fn logout(session: Session) -> Result<&'static str, Rejection> {
    session.logout().await?;
    Ok("bye")
}

async fn logout_others(session: Session) -> Result<String, Rejection> {
    Ok(session.logout_other_devices().await?.to_string())
}

async fn devices(session: Session) -> Result<Json<Value>, Rejection> {
    let list = session.devices().await?;
    Ok(Json(json!(
        list.iter().map(|s| s.handle.as_str()).collect::<Vec<_>>()
    )))
}

async fn revoke(session: Session, Json(handle): Json<String>) -> Result<String, Rejection> {
    let handle = SessionHandle::parse(&handle).map_err(|_| Rejection::CsrfTokenInvalid)?;
    Ok(session.revoke_device(&handle).await?.to_string())
}

#[derive(serde::Deserialize)]
struct Note {
    note: String,
}

async fn note(session: Session, Form(form): Form<Note>) -> String {
    format!("{} wrote {}", session.user_id(), form.note)
}

async fn echo_json(Json(v): Json<Value>) -> Json<Value> {
    Json(v)
}

async fn public() -> &'static str {
    "hello"
}

/// A running test app.
#[derive(Clone)]
pub struct App {
    pub store: Arc<ObservedStore<MemoryStore>>,
    pub clock: ManualClock,
    pub client: Client,
}

pub fn router(layer: SessionLayer) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/whoami", get(whoami))
        .route("/incr", post(incr))
        .route("/rotate", post(rotate))
        .route("/logout", post(logout))
        .route("/logout-others", post(logout_others))
        .route("/devices", get(devices))
        .route("/revoke", post(revoke))
        .route("/note", post(note))
        .route("/echo", post(echo_json))
        .route("/public", get(public))
        .layer(layer)
}

pub async fn start() -> App {
    let store = Arc::new(ObservedStore::new(MemoryStore::new()));
    let clock = ManualClock::starting_now();
    let manager = SessionManager::from_arc(store.clone()).with_clock(clock.clone());
    let layer = SessionLayer::new(manager, Origin::parse(ORIGIN).unwrap());
    let app = router(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    App {
        store,
        clock,
        client: Client::new(&format!("http://{addr}"), ORIGIN).with_user_agent("it-tests/1.0"),
    }
}

impl App {
    /// A same-origin request from a page on [`ORIGIN`]; cookies are passed explicitly.
    pub fn get(&self, path: &str) -> Request<'_> {
        self.client.get(path)
    }

    pub fn post(&self, path: &str) -> Request<'_> {
        self.client.post(path)
    }

    /// Logs `user` in; returns (cookie, csrf token).
    pub async fn login(&self, user: &str) -> (String, String) {
        let r = self
            .post("/login")
            .json(&json!({ "user": user }))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (
            r.session_cookie().unwrap(),
            r.json()["csrf_token"].as_str().unwrap().to_owned(),
        )
    }
}
