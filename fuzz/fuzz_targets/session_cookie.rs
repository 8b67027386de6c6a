//! The session layer end to end on hostile `Cookie`, CSRF and origin headers: whatever
//! arrives, the answer is a deliberate refusal or the handler — never a server error. And
//! whatever other cookies arrive next to a live session's cookie, the session is still found
//! (issue 11, finding 11: one non-ASCII byte elsewhere in the header used to hide it).
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use axum::routing::{get, post};
use axum::Router;
use cloakroom_axum::{Auth, Session, SessionLayer, DEFAULT_COOKIE_NAME};
use cloakroom_core::origin::Origin;
use cloakroom_core::{AuthMethod, MemoryStore, SessionManager, UserId};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct Fixture {
    rt: tokio::runtime::Runtime,
    router: Router,
    /// `__Host-cloakroom=…` of a session signed in through the app's own login route.
    session: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let layer = SessionLayer::new(SessionManager::new(MemoryStore::new()), Origin::parse("https://a.example").unwrap());
        let router = Router::new()
            .route("/", get(|s: Option<Session>| async move { s.is_some().to_string() }))
            .route("/w", post(|_s: Session| async { "ok" }))
            .route(
                "/login",
                post(|auth: Auth| async move {
                    let user = UserId::new("fuzz".to_owned()).unwrap();
                    auth.login(auth.new_session(user, AuthMethod::password())).await.map(|_| "in")
                }),
            )
            .layer(layer);
        let login = Request::post("/login")
            .header("sec-fetch-site", "same-origin")
            .header("origin", "https://a.example")
            .body(Body::empty())
            .unwrap();
        let response = rt.block_on(router.clone().oneshot(login)).unwrap();
        let set_cookie = response.headers()["set-cookie"].as_bytes();
        let session = set_cookie.split(|&b| b == b';').next().unwrap().to_vec();
        Fixture { rt, router, session }
    })
}

fuzz_target!(|input: (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>, bool)| {
    let (cookie, csrf, origin, body, unsafe_method) = input;
    let Fixture { rt, router, session } = fixture();
    let mut req = Request::builder().method(if unsafe_method { "POST" } else { "GET" }).uri(if unsafe_method { "/w" } else { "/" });
    for (name, value) in [("cookie", &cookie), ("x-csrf-token", &csrf), ("origin", &origin)] {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            req = req.header(name, v);
        }
    }
    let req = req.header("content-type", "application/x-www-form-urlencoded").body(Body::from(body)).unwrap();
    let response = rt.block_on(router.clone().oneshot(req)).unwrap();
    assert!(!response.status().is_server_error(), "{}", response.status());

    // The fuzzed bytes as other sites' cookies around ours (unless they spell our name).
    let ours = DEFAULT_COOKIE_NAME.as_bytes();
    if !cookie.windows(ours.len()).any(|w| w == ours) {
        for header in [[&cookie[..], b"; ", session].concat(), [&session[..], b"; ", &cookie].concat()] {
            let Ok(value) = HeaderValue::from_bytes(&header) else { continue };
            let req = Request::get("/").header("cookie", value).body(Body::empty()).unwrap();
            let response = rt.block_on(router.clone().oneshot(req)).unwrap();
            let seen = rt.block_on(axum::body::to_bytes(response.into_body(), 64)).unwrap();
            assert_eq!(&seen[..], b"true", "other cookies hid the session");
        }
    }
});
