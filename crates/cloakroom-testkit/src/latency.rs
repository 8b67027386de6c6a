//! A latency probe: how long [`SessionManager::validate`] takes on a real store.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::{SessionManager, SessionStore};

use crate::conformance::{issue, user};

/// Measures `SessionManager::validate` on `store`: one session, 2,000 warm-up validations, then
/// `runs` timed ones; prints and returns the p50, p99 and p99.9 latencies. For the store crates'
/// ignored latency probes (run them with `--release`); the session is revoked afterwards.
///
/// # Panics
/// If the store fails: it is a measurement on a working backend.
pub async fn validate_latency(
    label: &str,
    store: Arc<dyn SessionStore>,
    runs: usize,
) -> [Duration; 3] {
    let manager = SessionManager::from_arc(store);
    let issued = issue(&manager, &user("latency-probe")).await;
    let cookie = issued.token.expose_cookie_value();
    for _ in 0..2_000 {
        manager.validate(Some(&cookie)).await.expect("validate");
    }
    let mut samples = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t = std::time::Instant::now();
        manager.validate(Some(&cookie)).await.expect("validate");
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    let at = |p: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = (samples.len() as f64 * p) as usize;
        samples[i.min(samples.len() - 1)]
    };
    let out = [at(0.50), at(0.99), at(0.999)];
    eprintln!(
        "{label}: {} validates, p50 {:?}, p99 {:?}, p99.9 {:?}",
        samples.len(),
        out[0],
        out[1],
        out[2]
    );
    manager.revoke(&issued.session.id).await.expect("revoke");
    out
}
