//! Run it: `CLOAKROOM_URL=http://localhost:8080 APP_ORIGIN=http://localhost:8080 cargo run -p example-downstream-service`,
//! then put it behind a proxy that asks Cloakroom (see `examples/nginx` or `examples/caddy`,
//! which expect the app on 127.0.0.1:3000).
//!
//! A service behind the proxy needs no session store and no call to Cloakroom per request:
//! the proxy forwards an `X-Cloakroom-Jwt` header, and [`ServiceIdentity`] verifies it against
//! Cloakroom's JWKS (cached), refusing anything not minted for this service's origin.
//!
//! `CLOAKROOM_URL` is Cloakroom's public URL (the token issuer); `APP_ORIGIN` is the origin
//! users reach this service at (the token audience); `LISTEN` defaults to `127.0.0.1:3000`.

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use cloakroom_verify::{ServiceIdentity, Verifier, VerifierConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let issuer = std::env::var("CLOAKROOM_URL").unwrap_or_else(|_| "http://localhost:8080".into());
    let audience = std::env::var("APP_ORIGIN").unwrap_or_else(|_| issuer.clone());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let jwks = format!("{issuer}/.well-known/jwks.json");
    let verifier = Arc::new(Verifier::new(VerifierConfig::new(
        &jwks, &issuer, &audience,
    )?));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app(verifier))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The service's routes; every one that takes [`ServiceIdentity`] is for signed-in users only.
fn app(verifier: Arc<Verifier>) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/whoami", get(whoami))
        .with_state(verifier)
}

async fn hello(ServiceIdentity(who): ServiceIdentity) -> String {
    format!(
        "Hello, {}! (user {}, session {})\n",
        who.preferred_username, who.sub, who.sid
    )
}

async fn whoami(
    ServiceIdentity(who): ServiceIdentity,
) -> axum::Json<cloakroom_verify::ServiceClaims> {
    axum::Json(who)
}
