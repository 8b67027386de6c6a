//! Whether another Cloakroom with keys of its own answers at this server's public URL.
//!
//! Behind a load balancer, one instance started with the embedded default (SQLite in its own
//! data directory) next to instances on the shared stores looks healthy to every probe, yet it
//! knows none of their sessions and signs with keys nobody else publishes: users are signed
//! out at random, and tokens it mints fail at every verifier that fetched the JWKS elsewhere.
//! Neither side can see the other through its stores. What they share is the public URL, so
//! each instance asks it for the JWKS now and then — a few times, each on a connection of its
//! own, so that a balancer reaches several instances — and compares the key ids with its own.
//! A set sharing *no* key with its own, even after re-reading its own keys, is a stranger and
//! is logged as a warning, once per set. Sets that merely differ are the cluster's own keys
//! seen a moment apart (a rotation picked up first elsewhere, a key retiring by a clock a few
//! seconds ahead): they always share the key that signed before. A public URL that this
//! instance cannot reach (an egress rule, split DNS) is only logged at debug level.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::state::AppState;

/// Requests per round: enough for a round-robin balancer to reach a few instances.
const PROBES_PER_ROUND: usize = 4;
/// The wait before the first round (the other instances are starting too) and between rounds.
const FIRST_ROUND_AFTER: Duration = Duration::from_secs(5);
const ROUND_EVERY: Duration = Duration::from_secs(60);
/// Distinct foreign key sets warned about, at most (each is warned about once).
const MAX_WARNED: usize = 16;

/// What one look at the public URL's JWKS found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Neighbour {
    /// The same key ids as this instance.
    Same,
    /// Key ids none of which this instance has: an instance with keys of its own is behind
    /// the public URL.
    Foreign {
        /// The key ids it serves.
        kids: BTreeSet<String>,
    },
    /// No JWKS could be read there (not reachable from here, or not a Cloakroom).
    Unknown,
}

fn kids(jwks: &serde_json::Value) -> Option<BTreeSet<String>> {
    jwks.get("keys")?
        .as_array()?
        .iter()
        .map(|k| k.get("kid")?.as_str().map(str::to_owned))
        .collect()
}

impl AppState {
    /// Fetches the JWKS at the public URL once and compares it with this instance's, after
    /// re-reading its own keys if they differ.
    pub async fn check_public_jwks(&self) -> Neighbour {
        let mut nonce = [0u8; 8];
        if getrandom::fill(&mut nonce).is_err() {
            return Neighbour::Unknown;
        }
        // A query of its own, so no cache between here and there answers for the instance.
        let url = format!(
            "{}/.well-known/jwks.json?instance-check={}",
            self.settings.public_origin,
            u64::from_be_bytes(nonce)
        );
        let Ok(url) = url::Url::parse(&url) else {
            return Neighbour::Unknown;
        };
        let answer = match self.oidc.http.get_on_new_connection(&url).await {
            Ok(a) if a.status() == http::StatusCode::OK => a,
            Ok(a) => {
                tracing::debug!(status = %a.status(), "the public URL's JWKS could not be read");
                return Neighbour::Unknown;
            }
            Err(e) => {
                tracing::debug!(error = %crate::error_chain::chain(&e), "the public URL is not reachable from this instance");
                return Neighbour::Unknown;
            }
        };
        let Some(theirs) = serde_json::from_slice(answer.body())
            .ok()
            .as_ref()
            .and_then(kids)
        else {
            return Neighbour::Unknown;
        };
        let shares_a_key = || {
            let ours = kids(&self.jwks()).unwrap_or_default();
            !theirs.is_disjoint(&ours)
        };
        if shares_a_key() {
            return Neighbour::Same;
        }
        // Perhaps a rotation made elsewhere that this instance has not read yet.
        if let Err(e) = self.reload_keys().await {
            tracing::debug!(error = %crate::error_chain::chain(&e), "re-reading the keys failed");
        }
        if shares_a_key() {
            Neighbour::Same
        } else {
            Neighbour::Foreign { kids: theirs }
        }
    }
}

/// Looks now and then, for the process's life, warning once per foreign key set.
pub(crate) async fn watch(state: AppState) {
    let mut warned: Vec<BTreeSet<String>> = Vec::new();
    tokio::time::sleep(FIRST_ROUND_AFTER).await;
    loop {
        for _ in 0..PROBES_PER_ROUND {
            if let Neighbour::Foreign { kids } = state.check_public_jwks().await
                && !warned.contains(&kids)
                && warned.len() < MAX_WARNED
            {
                let shown: Vec<&String> = kids.iter().take(4).collect();
                tracing::warn!(
                    public_url = %state.settings.public_origin,
                    their_keys = ?shown,
                    "another server answers at the public URL with signing keys this instance does not have: an instance with keys of its own (on the embedded store, or with another secret or database) is behind the same address. Users it serves are unknown to the others, and its tokens fail at verifiers that fetched the JWKS elsewhere"
                );
                warned.push(kids);
            }
        }
        tokio::time::sleep(ROUND_EVERY).await;
    }
}
