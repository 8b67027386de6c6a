//! Prometheus metrics, all prefixed `cloakroom_`.
//!
//! The `metrics` facade records into one process-wide Prometheus recorder, installed on first
//! use; `/metrics` renders it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::link::LinkId;
use cloakroom_core::{
    DeleteScope, SaveOutcome, Session, SessionId, SessionStore, StoreError, Timestamp, UserId,
    ValidationError, ValidationObserver,
};
use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Session validations, by outcome (`valid`, `missing`, `unknown`, `idle_expired`, …).
pub(crate) const VALIDATIONS: &str = "cloakroom_session_validations_total";
/// Validation latency, seconds.
pub(crate) const VALIDATION_SECONDS: &str = "cloakroom_session_validation_seconds";
/// Login attempts, by outcome.
pub(crate) const LOGINS: &str = "cloakroom_logins_total";
/// Password attempts refused by throttling before any check.
pub(crate) const THROTTLED: &str = "cloakroom_login_throttled_total";
/// Sign-ups, by outcome.
pub(crate) const SIGNUPS: &str = "cloakroom_signups_total";
/// Sessions ended, by reason.
pub(crate) const REVOCATIONS: &str = "cloakroom_session_revocations_total";
/// Live sessions, where the store can count them.
pub(crate) const ACTIVE_SESSIONS: &str = "cloakroom_active_sessions";
/// Store failures, by store.
pub(crate) const STORE_ERRORS: &str = "cloakroom_store_errors_total";
/// Forward-auth decisions, by outcome (`allowed`, `unauthenticated`, `csrf`).
pub(crate) const FORWARD_AUTH: &str = "cloakroom_forward_auth_total";
/// Session store writes, by operation (`touch`, `create`, …).
pub(crate) const STORE_WRITES: &str = "cloakroom_session_store_writes_total";
/// Mail delivery attempts, by outcome (`sent`, `retry`, `failed`).
pub(crate) const MAIL: &str = "cloakroom_mail_total";
/// Session cache lookups, by result: `hit` (answered from process memory), `miss` (read the
/// store, then cached), `bypass` (read the store because a push cache's feed was down).
pub(crate) const SESSION_CACHE: &str = "cloakroom_session_cache_total";
/// Sessions in the session cache.
pub(crate) const SESSION_CACHE_ENTRIES: &str = "cloakroom_session_cache_entries";
/// Their estimated bytes (what `session_cache_max_bytes` bounds).
pub(crate) const SESSION_CACHE_BYTES: &str = "cloakroom_session_cache_bytes";
/// Whether the session cache is in use (1), or bypassed because its feed is down (0).
pub(crate) const SESSION_CACHE_ACTIVE: &str = "cloakroom_session_cache_active";
/// Download links, by outcome: `created`, `opened`, or the refusal's code (`link_used`, …).
pub(crate) const DOWNLOAD_LINKS: &str = "cloakroom_download_links_total";

/// How often recorded histogram samples are folded into their buckets.
///
/// The exporter keeps every raw sample until then, and `install_recorder` starts no upkeep task
/// of its own: without one, a server that nobody scrapes grows by every validation's latency
/// sample — about 18 bytes a request, measured with `bench/run` (+2.6 MB per 140,000
/// validations, flat again after a scrape of `/metrics`), i.e. gigabytes a day on a busy
/// instance.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How long an expensive gauge (a count over the whole store) is reused between scrapes.
pub(crate) const GAUGE_REFRESH: Duration = Duration::from_secs(30);

/// When the expensive gauges were last computed.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    last: std::sync::Mutex<Option<Timestamp>>,
}

impl Gauges {
    /// Whether the expensive gauges should be computed now; if so, records that they were.
    pub(crate) fn due(&self, now: Timestamp) -> bool {
        // A poisoned lock still holds a complete timestamp.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|t| now.duration_since(t) >= GAUGE_REFRESH);
        if due {
            *last = Some(now);
        }
        due
    }
}

/// The process's Prometheus handle (installing the recorder on first call). `None` if another
/// recorder was installed first, in which case `/metrics` says so.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
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

/// Folds the samples recorded since the last call into their histograms (see
/// [`UPKEEP_INTERVAL`]); [`Server`](crate::Server) runs it on that interval.
pub(crate) fn run_upkeep() {
    if let Some(h) = handle() {
        h.run_upkeep();
    }
}

/// Handles of the metrics on the forward-auth hot path, registered once. `counter!` with a
/// label looks its key up in the registry on every call (a few thousand instructions per
/// request, measured with callgrind in `bench/`); a handle is one atomic add. The two counts
/// every successful check adds to are [`cloakroom_core::Counter`]s instead, one slot per thread, published
/// into their handles at scrape time ([`publish_hot`]): one shared atomic that both cores add
/// to on every request moves its cache line back and forth each time (issue 14's profile).
struct HotPath {
    valid_count: cloakroom_core::Counter,
    allowed_count: cloakroom_core::Counter,
    valid: Counter,
    missing: Counter,
    malformed: Counter,
    unknown: Counter,
    idle_expired: Counter,
    absolute_expired: Counter,
    store_error: Counter,
    validation_seconds: Histogram,
    forward_allowed: Counter,
    forward_unauthenticated: Counter,
    forward_csrf: Counter,
    forward_denied: Counter,
}

fn hot() -> &'static HotPath {
    static HOT: OnceLock<HotPath> = OnceLock::new();
    HOT.get_or_init(|| {
        // Handles taken before the recorder exists would record nowhere.
        let _ = handle();
        let v = |outcome: &'static str| counter!(VALIDATIONS, "outcome" => outcome);
        let f = |outcome: &'static str| counter!(FORWARD_AUTH, "outcome" => outcome);
        HotPath {
            valid_count: cloakroom_core::Counter::default(),
            allowed_count: cloakroom_core::Counter::default(),
            valid: v("valid"),
            missing: v("missing"),
            malformed: v("malformed"),
            unknown: v("unknown"),
            idle_expired: v("idle_expired"),
            absolute_expired: v("absolute_expired"),
            store_error: v("store_error"),
            validation_seconds: histogram!(VALIDATION_SECONDS),
            forward_allowed: f("allowed"),
            forward_unauthenticated: f("unauthenticated"),
            forward_csrf: f("csrf"),
            forward_denied: f("denied"),
        }
    })
}

/// Records every validation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observer;

impl Observer {
    /// As the `Arc<dyn ValidationObserver>` the session manager takes.
    pub(crate) fn shared() -> Arc<dyn ValidationObserver> {
        let _ = hot();
        Arc::new(Self)
    }
}

impl ValidationObserver for Observer {
    fn validated(&self, outcome: Result<&Session, &ValidationError>, elapsed: Duration) {
        let h = hot();
        let counter = match outcome {
            Ok(_) => {
                h.valid_count.add(1);
                if !elapsed.is_zero() {
                    h.validation_seconds.record(elapsed.as_secs_f64());
                }
                return;
            }
            Err(ValidationError::Missing) => &h.missing,
            Err(ValidationError::Malformed(_)) => &h.malformed,
            Err(ValidationError::Unknown) => &h.unknown,
            Err(ValidationError::IdleExpired) => &h.idle_expired,
            Err(ValidationError::AbsoluteExpired) => &h.absolute_expired,
            Err(e) => {
                if let ValidationError::Store(s) = e {
                    store_error(s.store());
                }
                &h.store_error
            }
        };
        counter.increment(1);
        if !elapsed.is_zero() {
            h.validation_seconds.record(elapsed.as_secs_f64());
        }
    }
}

/// A forward-auth decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForwardOutcome {
    /// A valid session: the request goes through.
    Allowed,
    /// No valid session.
    Unauthenticated,
    /// Refused as a cross-site state change.
    Csrf,
    /// Refused by an access rule.
    Denied,
}

/// Counts a login attempt.
pub(crate) fn login(outcome: &'static str) {
    counter!(LOGINS, "outcome" => outcome).increment(1);
}

/// Counts an attempt refused by throttling.
pub(crate) fn throttled() {
    counter!(THROTTLED).increment(1);
}

/// Counts a sign-up.
pub(crate) fn signup(outcome: &'static str) {
    counter!(SIGNUPS, "outcome" => outcome).increment(1);
}

/// Counts `n` ended sessions.
pub(crate) fn revoked(reason: &'static str, n: u64) {
    counter!(REVOCATIONS, "reason" => reason).increment(n);
}

/// Counts a forward-auth decision.
pub(crate) fn forward_auth(outcome: ForwardOutcome) {
    let h = hot();
    match outcome {
        ForwardOutcome::Allowed => return h.allowed_count.add(1),
        ForwardOutcome::Unauthenticated => &h.forward_unauthenticated,
        ForwardOutcome::Csrf => &h.forward_csrf,
        ForwardOutcome::Denied => &h.forward_denied,
    }
    .increment(1);
}

/// Copies the hot path's own counts into the registry, before a scrape renders it.
pub(crate) fn publish_hot() {
    let h = hot();
    h.valid.absolute(h.valid_count.get());
    h.forward_allowed.absolute(h.allowed_count.get());
}

/// Counts a mail delivery attempt.
pub(crate) fn mail(outcome: &'static str) {
    counter!(MAIL, "outcome" => outcome).increment(1);
}

/// Counts a download link made, opened or refused.
pub(crate) fn download_link(outcome: &'static str) {
    counter!(DOWNLOAD_LINKS, "outcome" => outcome).increment(1);
}

/// Counts a store failure.
pub(crate) fn store_error(store: &'static str) {
    counter!(STORE_ERRORS, "store" => store).increment(1);
}

/// Publishes the session cache's counts. The cache keeps them in its own atomics, so the hot
/// path pays one relaxed add per lookup; the registry is only touched here, at scrape time.
pub(crate) fn session_cache(cache: &cloakroom_core::CachedStore) {
    let stats = cache.stats();
    counter!(SESSION_CACHE, "result" => "hit").absolute(stats.hits);
    counter!(SESSION_CACHE, "result" => "miss").absolute(stats.misses);
    counter!(SESSION_CACHE, "result" => "bypass").absolute(stats.bypassed);
    #[allow(clippy::cast_precision_loss)] // Gauges; far below 2^53.
    {
        gauge!(SESSION_CACHE_ENTRIES).set(stats.entries as f64);
        gauge!(SESSION_CACHE_BYTES).set(stats.bytes as f64);
    }
    gauge!(SESSION_CACHE_ACTIVE).set(if cache.is_active() { 1.0 } else { 0.0 });
}

/// Sets the live-session gauge.
pub(crate) fn active_sessions(n: u64) {
    #[allow(clippy::cast_precision_loss)] // A gauge; 2^53 sessions is not a concern.
    gauge!(ACTIVE_SESSIONS).set(n as f64);
}

/// A session store that counts its writes (`cloakroom_session_store_writes_total{op}`), so the
/// effect of the touch throttle is visible in production, not only in a benchmark.
#[derive(Debug)]
pub(crate) struct CountingStore {
    inner: Arc<dyn SessionStore>,
}

impl CountingStore {
    /// Counts the writes of `inner`.
    pub(crate) fn wrap(inner: Arc<dyn SessionStore>) -> Arc<dyn SessionStore> {
        Arc::new(Self { inner })
    }
}

fn wrote(op: &'static str) {
    counter!(STORE_WRITES, "op" => op).increment(1);
}

#[async_trait]
impl SessionStore for CountingStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        wrote("create");
        self.inner.create(s).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        self.inner.load(id).await
    }
    async fn touch(
        &self,
        id: &SessionId,
        seen: Timestamp,
        idle: Timestamp,
    ) -> Result<bool, StoreError> {
        wrote("touch");
        self.inner.touch(id, seen, idle).await
    }
    async fn save(&self, s: &Session) -> Result<SaveOutcome, StoreError> {
        wrote("save");
        self.inner.save(s).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        wrote("delete");
        self.inner.delete(id).await
    }
    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        wrote("rotate");
        self.inner.rotate(old, new).await
    }
    async fn list_for_user(&self, u: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        self.inner.list_for_user(u, now).await
    }
    async fn delete_for_user(&self, u: &UserId, scope: DeleteScope<'_>) -> Result<u64, StoreError> {
        wrote("delete_for_user");
        self.inner.delete_for_user(u, scope).await
    }
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        wrote("purge");
        self.inner.purge_expired(now).await
    }
    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        wrote("consume_link");
        self.inner.consume_link(id, expires_at).await
    }
    async fn revocation_epoch(&self, u: &UserId) -> Result<u64, StoreError> {
        self.inner.revocation_epoch(u).await
    }
    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.inner.count_live(now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
