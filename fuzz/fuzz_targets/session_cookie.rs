//! The session layer end to end on hostile `Cookie`, CSRF and origin headers: whatever
//! arrives, the answer is a deliberate refusal or the handler — never a server error.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use axum::routing::{get, post};
use axum::Router;
use cloakroom_axum::{Session, SessionLayer};
use cloakroom_core::origin::Origin;
use cloakroom_core::{MemoryStore, SessionManager};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn app() -> &'static (tokio::runtime::Runtime, Router) {
    static APP: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let layer = SessionLayer::new(SessionManager::new(MemoryStore::new()), Origin::parse("https://a.example").unwrap());
        let router = Router::new()
            .route("/", get(|s: Option<Session>| async move { s.is_some().to_string() }))
            .route("/w", post(|_s: Session| async { "ok" }))
            .layer(layer);
        (rt, router)
    })
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, bool)| {
    let (cookie, csrf, origin, body, unsafe_method) = input;
    let (rt, router) = app();
    let mut req = Request::builder().method(if unsafe_method { "POST" } else { "GET" }).uri(if unsafe_method { "/w" } else { "/" });
    for (name, value) in [("cookie", &cookie), ("x-csrf-token", &csrf), ("origin", &origin)] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            req = req.header(name, v);
        }
    }
    let req = req.header("content-type", "application/x-www-form-urlencoded").body(Body::from(body)).unwrap();
    let response = rt.block_on(router.clone().oneshot(req)).unwrap();
    assert!(!response.status().is_server_error(), "{}", response.status());
});
