//! [`ObservedStore`]: a store wrapper for tests of what sits on top of a store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use cloakroom_core::link::LinkId;
use cloakroom_core::{
    DeleteScope, MemoryStore, SaveOutcome, Session, SessionId, SessionStore, StoreError, Timestamp,
    UserId,
};

/// A store wrapper for tests of what sits *on top of* a store: it counts reads and writes
/// (to prove a code path does not write), can be switched to fail every call or only the
/// writes as unavailable (faults no real backend produces on cue in-process), and can hold a
/// load or a create open to put another operation in the middle of it.
#[derive(Debug)]
pub struct ObservedStore<S = MemoryStore> {
    inner: S,
    loads: AtomicU64,
    writes: AtomicU64,
    live_counts: AtomicU64,
    unavailable: AtomicBool,
    writes_unavailable: AtomicBool,
    hold: Hold,
    hold_create: Hold,
    hold_touch: Hold,
}

/// One call a test can hold open: armed by `hold_next_…`, passed by the call it holds.
#[derive(Debug, Default)]
struct Hold(std::sync::Mutex<Option<HeldLoad>>);

impl Hold {
    fn arm(&self) -> LoadHold {
        let (entered_tx, entered) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel();
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((entered_tx, release_rx));
        LoadHold { entered, release }
    }

    /// Says the call got here and waits for the release, if the hold is armed (once).
    async fn pass(&self) {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((entered, release)) = held {
            let _ = entered.send(());
            let _ = release.await;
        }
    }
}

type HeldLoad = (
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Receiver<()>,
);

/// A `load` (or `create`, or `touch`) held open by [`ObservedStore::hold_next_load`] (or
/// [`hold_next_create`](ObservedStore::hold_next_create),
/// [`hold_next_touch`](ObservedStore::hold_next_touch)), to put another operation in the
/// middle of it.
#[derive(Debug)]
pub struct LoadHold {
    entered: tokio::sync::oneshot::Receiver<()>,
    release: tokio::sync::oneshot::Sender<()>,
}

impl LoadHold {
    /// Waits until the held load has read the store (and is waiting to return).
    pub async fn entered(&mut self) {
        let _ = (&mut self.entered).await;
    }

    /// Lets the held load return what it read.
    pub fn release(self) {
        let _ = self.release.send(());
    }
}

impl<S: SessionStore> ObservedStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            loads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            live_counts: AtomicU64::new(0),
            unavailable: AtomicBool::new(false),
            writes_unavailable: AtomicBool::new(false),
            hold: Hold::default(),
            hold_create: Hold::default(),
            hold_touch: Hold::default(),
        }
    }

    /// Holds the next `create` open before it reaches the store, until released.
    pub fn hold_next_create(&self) -> LoadHold {
        self.hold_create.arm()
    }

    /// Holds the next `touch` open after it has written, until released.
    pub fn hold_next_touch(&self) -> LoadHold {
        self.hold_touch.arm()
    }

    /// How many times the live sessions were counted.
    pub fn live_counts(&self) -> u64 {
        self.live_counts.load(Ordering::SeqCst)
    }

    /// Makes every write fail with [`StoreError::Unavailable`] while reads still work (or
    /// makes writes work again): a store that lost its primary, say.
    pub fn set_writes_unavailable(&self, down: bool) {
        self.writes_unavailable.store(down, Ordering::SeqCst);
    }

    /// Holds the next `load` open after it has read the store, until released.
    pub fn hold_next_load(&self) -> LoadHold {
        self.hold.arm()
    }

    /// How many `load`s reached the store.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::SeqCst)
    }

    /// How many writes (create, touch, save, delete, rotate, delete-for-user, purge, consumed
    /// link) reached the store.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Makes every call fail with [`StoreError::Unavailable`] (or work again).
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: "observed",
                source: "switched off by the test".into(),
            });
        }
        Ok(())
    }

    fn write(&self) -> Result<(), StoreError> {
        self.check()?;
        if self.writes_unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                store: "observed",
                source: "writes switched off by the test".into(),
            });
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for ObservedStore<S> {
    fn name(&self) -> &'static str {
        "observed"
    }
    async fn create(&self, s: &Session) -> Result<(), StoreError> {
        self.hold_create.pass().await;
        self.write()?;
        self.inner.create(s).await
    }
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        self.check()?;
        self.loads.fetch_add(1, Ordering::SeqCst);
        let found = self.inner.load(id).await;
        self.hold.pass().await;
        found
    }
    async fn touch(
        &self,
        id: &SessionId,
        seen: Timestamp,
        idle: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write()?;
        let touched = self.inner.touch(id, seen, idle).await;
        self.hold_touch.pass().await;
        touched
    }
    async fn save(&self, s: &Session) -> Result<SaveOutcome, StoreError> {
        self.write()?;
        self.inner.save(s).await
    }
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.delete(id).await
    }
    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        self.write()?;
        self.inner.rotate(old, new).await
    }
    async fn list_for_user(&self, u: &UserId, now: Timestamp) -> Result<Vec<Session>, StoreError> {
        self.check()?;
        self.inner.list_for_user(u, now).await
    }
    async fn delete_for_user(&self, u: &UserId, scope: DeleteScope<'_>) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.delete_for_user(u, scope).await
    }
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.write()?;
        self.inner.purge_expired(now).await
    }
    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        self.write()?;
        self.inner.consume_link(id, expires_at).await
    }
    async fn revocation_epoch(&self, u: &UserId) -> Result<u64, StoreError> {
        self.check()?;
        self.inner.revocation_epoch(u).await
    }
    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.check()?;
        self.live_counts.fetch_add(1, Ordering::SeqCst);
        self.inner.count_live(now).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}
