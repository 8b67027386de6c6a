//! Cloakroom's benchmarks: is a session lookup really cheaper than verifying a JWT, and is the
//! session cookie really smaller on the wire?
//!
//! This crate is measurement equipment, not product. It holds what the three measuring tools
//! share:
//!
//! * `benches/micro.rs` (criterion, `cargo bench -p cloakroom-bench`): session validation
//!   through the real [`SessionManager`](cloakroom_core::SessionManager) on each store, next to
//!   JWT verification of the same claims with HS256, RS256, EdDSA and ES256 (AWS-LC, with
//!   jsonwebtoken's RustCrypto backend as a reference); session creation, service-JWT minting and
//!   Argon2id.
//! * `bench-baseline`: a minimal axum server with a no-auth endpoint and JWT-verifying
//!   endpoints — plain, and answering the same forward-auth headers Cloakroom does — the
//!   yardstick the HTTP harness compares Cloakroom's forward auth against.
//! * `bench-seed`: issues thousands of real sessions into a server's data directory and writes
//!   their cookies (and matching JWTs for the baselines) to files for `wrk`.
//!
//! `bench/run` drives all of it and writes `bench/README.md`'s numbers.
//!
//! A key design decision: every session figure goes through the same code a request does —
//! [`SessionManager::validate`](cloakroom_core::SessionManager::validate) over a real store —
//! and every JWT figure through [`jwt::Verifier`], AWS-LC with the checks a real verifier makes
//! (algorithm bound to the key, signature, `exp`, `nbf`, `iss`, `aud`) — the fastest
//! verification a Rust service would pick, so the baseline is the strongest one. A benchmark
//! that shaved either path would answer a question nobody asked.

pub mod fixtures;
pub mod jwt;
pub mod stores;
pub mod wire;
