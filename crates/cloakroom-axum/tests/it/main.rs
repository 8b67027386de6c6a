//! The session layer over real HTTP: a small app served on 127.0.0.1:0, driven by a client
//! that handles cookies by hand so every attribute and replay is explicit.

// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test modules share helpers with `pub`; there is no API to keep tidy here.
#![allow(unreachable_pub)]

mod csrf;
mod hardening;
mod hostile;
mod lifecycle;
mod support;
