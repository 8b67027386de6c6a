//! The Cloakroom server: a session server any app can sit behind.
//!
//! `cloakroom serve` runs accounts (Argon2id passwords, throttled logins), server-rendered
//! pages, a JSON API described by OpenAPI, forward auth for reverse proxies with short-lived
//! service JWTs, and operations endpoints — all on [`cloakroom_core`]'s sessions through
//! [`cloakroom_axum`]'s layer, so every rule (cookie policy, CSRF, fixation defence, expiry,
//! fail-closed) is the library's, not re-implemented here. With no configuration it runs on
//! SQLite in `./cloakroom-data/`.
//!
//! # Where things live
//!
//! * `web/` — the HTTP edge: the router ([`app`]), middleware, and one module per route group
//!   (pages, API, forward auth, operations); `web/error.rs` is the one place errors become
//!   responses. A new route goes here.
//! * `accounts/` — sign-up, login, password change, deletion: password rules, Argon2id hashing,
//!   throttling. No HTTP in it. A new account rule goes here.
//! * [`tokens`] — the service-JWT signing keys, the JWKS, the minter, and the single-use link
//!   keys; the home of every token kind Cloakroom issues. A new token kind goes here.
//! * [`mail`] — outgoing mail: templates, the outbox's sender, SMTP or the log.
//! * [`cli`] — the `cloakroom` command and its admin operations.
//! * [`config`] — settings from defaults, a TOML file, `CLOAKROOM_*` variables and flags.
//! * `oidc/` — OpenID providers (`[[oidc]]`): their configuration, checked at start-up. The
//!   sign-in flow that will use them is not built yet.
//! * `state.rs` — [`AppState`], opened from the settings; `server.rs` — [`Server`];
//!   `data_dir.rs` — the data directory: its database, its lock ([`DataDirLock`]).
//!
//! [`app`] builds the whole router from an [`AppState`], so tests drive the real thing on
//! port 0; [`Server`] adds binding, background upkeep and graceful shutdown.
//!
//! What it deliberately does not do (yet): federate logins (OIDC: providers are
//! configured and checked, the flow is not built), or share
//! throttling counters across instances.

pub mod access;
mod accounts;
mod admin_socket;
pub mod cli;
pub mod config;
mod data_dir;
mod error_chain;
mod events;
mod identity;
pub mod mail;
mod metrics;
mod mfa;
mod neighbours;
mod oidc;
pub mod secrets;
mod server;
mod state;
pub mod tokens;
mod web;

pub use accounts::{passwords, session_keys};
pub use data_dir::{DataDirLock, database_path, ensure_data_dir};
pub use neighbours::Neighbour;
pub use server::Server;
pub use state::{AppState, Inner, StartupError, Stores};
pub use web::app;
pub use web::forward::{Flavor, ForwardedRequest, MalformedForward};
