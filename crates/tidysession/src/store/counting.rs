//! [`CountingStore`]: a wrapper that counts the operations sent to a store.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{SessionStore, StoreError, Updated, UserIndex};
use crate::id::StorageKey;
use crate::record::{Change, Record};

/// Wraps a store and counts every operation sent to it, whatever its outcome.
///
/// Tests use it to prove how much I/O a request did; `simulate` uses it to report what each
/// policy costs.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use tidysession::store::MemoryStore;
/// use tidysession::tooling::CountingStore;
///
/// let store = CountingStore::new(MemoryStore::default());
/// assert_eq!(store.counts().total(), 0);
/// # }
/// ```
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    loads: AtomicU64,
    creates: AtomicU64,
    updates: AtomicU64,
    touches: AtomicU64,
    renames: AtomicU64,
    deletes: AtomicU64,
}

/// A snapshot of a [`CountingStore`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// [`SessionStore::load`] calls.
    pub loads: u64,
    /// [`SessionStore::create`] calls.
    pub creates: u64,
    /// [`SessionStore::update`] calls.
    pub updates: u64,
    /// [`SessionStore::touch`] calls.
    pub touches: u64,
    /// [`SessionStore::rename`] calls.
    pub renames: u64,
    /// [`SessionStore::delete`] calls.
    pub deletes: u64,
}

impl OpCounts {
    /// All per-session operations together.
    pub fn total(&self) -> u64 {
        self.loads + self.creates + self.updates + self.touches + self.renames + self.deletes
    }

    /// Operations that write.
    pub fn writes(&self) -> u64 {
        self.total() - self.loads
    }
}

impl<S> CountingStore<S> {
    /// Wraps `inner` with all counters at zero.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            loads: AtomicU64::new(0),
            creates: AtomicU64::new(0),
            updates: AtomicU64::new(0),
            touches: AtomicU64::new(0),
            renames: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The counters as they are now.
    pub fn counts(&self) -> OpCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OpCounts {
            loads: get(&self.loads),
            creates: get(&self.creates),
            updates: get(&self.updates),
            touches: get(&self.touches),
            renames: get(&self.renames),
            deletes: get(&self.deletes),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[async_trait]
impl<S: SessionStore> SessionStore for CountingStore<S> {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        bump(&self.loads);
        self.inner.load(key, now).await
    }
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        bump(&self.creates);
        self.inner.create(key, record).await
    }
    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        bump(&self.updates);
        self.inner.update(key, change, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        bump(&self.touches);
        self.inner.touch(key, expires_at, now).await
    }
    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        bump(&self.renames);
        self.inner.rename(from, to, change, now).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        bump(&self.deletes);
        self.inner.delete(key).await
    }
    fn user_index(&self) -> Option<&dyn UserIndex> {
        self.inner.user_index()
    }
    fn id_format(&self) -> crate::id::IdFormat {
        self.inner.id_format()
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        self.inner.maintenance()
    }
}
