//! [`Server`]: binding, background upkeep and graceful shutdown around [`crate::app`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::metrics;
use crate::state::{AppState, StartupError};

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Binds the configured address (port 0 picks a free one).
    pub async fn bind(state: AppState) -> Result<Self, StartupError> {
        let addr = state.settings.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.listen)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let upkeep = tokio::spawn(upkeep(self.state.clone()));
        let metrics_upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(metrics::UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics::run_upkeep();
            }
        });
        let app = crate::web::app(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        upkeep.abort();
        metrics_upkeep.abort();
        result
    }
}

/// Periodic housekeeping: pick up key rotations made by the CLI, drop stale cached tokens,
/// purge expired sessions, forget stale throttling counters.
async fn upkeep(state: AppState) {
    let mut keys = tokio::time::interval(Duration::from_secs(10));
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = keys.tick() => {
                let now = state.clock.now();
                if let Err(e) = state.minter.reload(&state.settings.data_dir, state.settings.jwt_algorithm, now) {
                    tracing::error!(error = %e, "reloading service-JWT keys failed; keeping the previous ones");
                }
                state.minter.prune(now);
                continue;
            }
            _ = tick.tick() => {}
        }
        match state.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired sessions purged"),
            Err(e) => {
                metrics::store_error(e.store());
                tracing::warn!(error = %e, "purging expired sessions failed");
            }
        }
        state.accounts.prune();
    }
}
