//! [`Server`]: binding, background upkeep and graceful shutdown around [`crate::app`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SessionStoreKind;
use crate::metrics;
use crate::state::{AppState, StartupError};

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
    /// Where admin commands announce their session writes, when the session cache relies on
    /// this process being SQLite's only writer (see [`crate::admin_socket`]).
    admin_socket: Option<tokio::net::UnixListener>,
    state: AppState,
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, StartupError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Listen {
            addr: addr.to_string(),
            source,
        })
}

impl Server {
    /// Binds the configured address (port 0 picks a free one), the metrics address if one is
    /// configured, and — with sessions in SQLite — the admin socket in the data
    /// directory. The caller holds the data directory's lock ([`crate::DataDirLock`]).
    pub async fn bind(state: AppState) -> Result<Self, StartupError> {
        let listener = bind(state.settings.listen).await?;
        let metrics_listener = match state.settings.metrics_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        // Admin commands beside this server announce their SQLite writes here whenever the
        // data directory holds its sessions (whatever the session cache's mode: a command
        // cannot know it), so the caches over them stay exact.
        let sqlite_sessions = state.settings.session_store == SessionStoreKind::Sqlite;
        let admin_socket = if sqlite_sessions {
            let dir = &state.settings.data_dir;
            Some(
                crate::admin_socket::bind(dir).map_err(|source| StartupError::AdminSocket {
                    path: crate::data_dir::shown(&crate::admin_socket::socket_path(dir)),
                    source,
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            listener,
            metrics_listener,
            admin_socket,
            state,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.listen)
    }

    /// The metrics address actually bound, if `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let upkeep = tokio::spawn(upkeep(self.state.clone()));
        let neighbours = tokio::spawn(crate::neighbours::watch(self.state.clone()));
        let admin = self.admin_socket.map(|listener| {
            let caches = crate::admin_socket::Caches {
                sessions: self.state.session_cache().cloned(),
                identities: self.state.identities.cache().cloned(),
            };
            tokio::spawn(crate::admin_socket::serve(listener, caches))
        });
        let (mail_stop, mail_stopped) = tokio::sync::watch::channel(false);
        let mail = self.state.mailer.start(mail_stopped);
        let metrics_upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(metrics::UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics::run_upkeep();
            }
        });
        let limits = Limits::of(&self.state.settings);
        // Both listeners stop accepting on the same signal.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let metrics = self.metrics_listener.map(|listener| {
            let router = crate::web::metrics_app(self.state.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(serve(listener, router, limits, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        let router = crate::web::app(self.state);
        let main = serve(self.listener, router, limits, async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        main.await;
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        // The sender finishes the attempt in hand (bounded by its deadline) and stops; a
        // message it had not begun stays in the outbox for the next start.
        let _ = mail_stop.send(true);
        let _ = mail.await;
        upkeep.abort();
        neighbours.abort();
        metrics_upkeep.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
        Ok(())
    }
}

/// How much of the machine one client may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Time to send a request's head, from the connection's start or the end of the previous
    /// response; hyper arms it while a kept-alive connection waits, so it also closes idle
    /// connections. Stops slowloris: a client trickling header bytes holds a connection for
    /// this long at most.
    header_read: Duration,
    /// Connections served at once; further ones wait in the kernel's backlog.
    max_connections: usize,
}

impl Limits {
    fn of(settings: &crate::config::Settings) -> Self {
        Self {
            header_read: settings.header_read_timeout,
            max_connections: settings.max_connections,
        }
    }
}

/// Accepts connections on `listener` and serves `router` on each, at most
/// `limits.max_connections` at once, until `shutdown` completes; then waits for in-flight
/// requests to finish.
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // closed: never, the semaphore lives in this function
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: back off a little
                    // instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that hangs up or sends garbage ends its own connection; nothing to do.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Periodic housekeeping: rotate keys when due, pick up rotations made by the CLI or another
/// instance, drop stale cached tokens, purge expired sessions, forget stale throttling
/// counters, drop old finished mail.
async fn upkeep(state: AppState) {
    // The keys were read when the state was built: the first re-read is one period later.
    let every = Duration::from_secs(10);
    let mut keys = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = keys.tick() => {
                let rotated = match state.rotate_keys_if_due().await {
                    Ok(kid) => kid.is_some(),
                    Err(e) => {
                        tracing::error!(error = %crate::error_chain::chain(&e), "the scheduled key rotation failed; trying again shortly");
                        false
                    }
                };
                // A rotation just made has re-read the keys already.
                if !rotated && let Err(e) = state.reload_keys().await {
                    tracing::error!(error = %crate::error_chain::chain(&e), "reloading service-JWT keys failed; keeping the previous ones");
                }
                state.minter.prune(state.clock.now());
                continue;
            }
            _ = tick.tick() => {}
        }
        match state.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired sessions purged"),
            Err(e) => {
                metrics::store_error(e.store());
                tracing::warn!(error = %crate::error_chain::chain(&e), "purging expired sessions failed");
            }
        }
        state.accounts.prune().await;
        purge_mail(&state).await;
    }
}

/// How long finished messages stay in the outbox for inspection.
const KEEP_SENT_MAIL: Duration = Duration::from_secs(7 * 86_400);
const KEEP_FAILED_MAIL: Duration = Duration::from_secs(30 * 86_400);

async fn purge_mail(state: &AppState) {
    let now = state.clock.now();
    let outbox = state.mailer.outbox();
    match outbox
        .purge(
            now.saturating_sub(KEEP_SENT_MAIL),
            now.saturating_sub(KEEP_FAILED_MAIL),
        )
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(purged = n, "finished mail removed from the outbox"),
        Err(e) => {
            metrics::store_error(e.store());
            tracing::warn!(error = %e, "purging the mail outbox failed");
        }
    }
}
