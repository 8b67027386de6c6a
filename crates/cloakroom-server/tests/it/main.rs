//! The Cloakroom server end to end: a real server on port 0 over a temporary SQLite data
//! directory, driven over HTTP and (in `e2e`) by a real browser; the admin CLI and start-up as
//! real processes.

// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test modules share helpers with `pub`; there is no API to keep tidy here.
#![allow(unreachable_pub)]

mod access_rules;
mod accounts_hardening;
mod api;
mod backup;
mod branding;
mod cli;
mod cli_errors;
mod e2e;
mod email;
mod forward;
mod hardening;
mod input;
mod leaving;
mod links;
mod mail;
mod messages;
mod mfa;
mod native;
mod oidc;
mod oidc_faults;
mod openapi;
mod ops;
mod packaging;
mod pages;
mod procs;
mod proxies;
mod reset;
mod revocation;
mod scale;
mod store_tls;
mod subdomains;
mod support;
mod verify_email;
