//! Prometheus metrics, all prefixed `cloakroom_`.
//!
//! The `metrics` facade records into one process-wide Prometheus recorder, installed on first
//! use; `/metrics` renders it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cloakroom_core::{Session, ValidationError, ValidationObserver};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Session validations, by outcome (`valid`, `missing`, `unknown`, `idle_expired`, …).
pub const VALIDATIONS: &str = "cloakroom_session_validations_total";
/// Validation latency, seconds.
pub const VALIDATION_SECONDS: &str = "cloakroom_session_validation_seconds";
/// Login attempts, by outcome.
pub const LOGINS: &str = "cloakroom_logins_total";
/// Password attempts refused by throttling before any check.
pub const THROTTLED: &str = "cloakroom_login_throttled_total";
/// Sign-ups, by outcome.
pub const SIGNUPS: &str = "cloakroom_signups_total";
/// Sessions ended, by reason.
pub const REVOCATIONS: &str = "cloakroom_session_revocations_total";
/// Live sessions, where the store can count them.
pub const ACTIVE_SESSIONS: &str = "cloakroom_active_sessions";
/// Store failures, by store.
pub const STORE_ERRORS: &str = "cloakroom_store_errors_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle (installing the recorder on first call). `None` if another
/// recorder was installed first, in which case `/metrics` says so.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(VALIDATION_SECONDS.to_owned()), &buckets)
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::error!(error = %e, "cannot install the Prometheus recorder"))
                .ok()
        })
        .as_ref()
}

/// Records every validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Observer;

impl Observer {
    /// As the `Arc<dyn ValidationObserver>` the session manager takes.
    pub fn shared() -> Arc<dyn ValidationObserver> {
        Arc::new(Self)
    }
}

impl ValidationObserver for Observer {
    fn validated(&self, outcome: Result<&Session, &ValidationError>, elapsed: Duration) {
        let label = match outcome {
            Ok(_) => "valid",
            Err(e) => {
                if let ValidationError::Store(s) = e {
                    store_error(s.store());
                }
                e.label()
            }
        };
        counter!(VALIDATIONS, "outcome" => label).increment(1);
        if !elapsed.is_zero() {
            histogram!(VALIDATION_SECONDS).record(elapsed.as_secs_f64());
        }
    }
}

/// Counts a login attempt.
pub fn login(outcome: &'static str) {
    counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// Counts an attempt refused by throttling.
pub fn throttled() {
    counter!(THROTTLED).increment(1);
}

/// Counts a sign-up.
pub fn signup(outcome: &'static str) {
    counter!(SIGNUPS, "outcome" => outcome).increment(1);
}

/// Counts `n` ended sessions.
pub fn revoked(reason: &'static str, n: u64) {
    counter!(REVOCATIONS, "reason" => reason).increment(n);
}

/// Counts a store failure.
pub fn store_error(store: &'static str) {
    counter!(STORE_ERRORS, "store" => store).increment(1);
}

/// Sets the live-session gauge.
pub fn active_sessions(n: u64) {
    #[allow(clippy::cast_precision_loss)] // A gauge; 2^53 sessions is not a concern.
    gauge!(ACTIVE_SESSIONS).set(n as f64);
}
