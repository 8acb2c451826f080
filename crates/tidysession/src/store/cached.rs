//! [`CachedStore`]: an in-process cache in front of any store, for read-heavy sites.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use moka::sync::Cache;
use time::OffsetDateTime;

use super::{SessionStore, StoreError, Updated, UserIndex};
use crate::id::StorageKey;
use crate::record::{Change, Record};

/// Locks that order a load's cache fill against writes of the same key (see
/// [`CachedStore::load`]); keys share one of this many by their first byte.
const STRIPES: usize = 64;

/// Writes of a stripe's keys: a count bumped when one starts and when one ends, and how
/// many are running.
#[derive(Debug, Default)]
struct Stripe {
    events: u64,
    running: u32,
}

/// Keeps recently loaded sessions in this process's memory, in front of another store.
///
/// Loads are served from memory while an entry is fresh; everything else goes to the store
/// behind, so every write keeps that store's guarantees (per-key saves, no lost updates, no
/// resurrection). This process's own writes, renames and deletes drop the entry at once.
///
/// # The staleness you accept
///
/// Changes made **by other processes** (other app servers, or the CLI) reach this process
/// only when its entry expires: at most [`with_ttl`](Self::with_ttl) after the change
/// (default one second). Within that window, this process may:
///
/// - still accept a session that was logged out or revoked elsewhere;
/// - read a key's old value after another process changed it. A handler that computes a new
///   value from an old one (a counter, say) can then overwrite the other process's change to
///   that key. Keys written without reading them first are never affected.
///
/// It never re-creates a deleted session (its writes go to the store, which reports
/// [`StoreError::Gone`]), never shows its own writes late, and never serves a record past its
/// expiry. Sites whose logouts must take effect everywhere at once should not use it, or use a
/// short TTL.
///
/// ```
/// # #[cfg(feature = "memory")] {
/// use std::time::Duration;
/// use tidysession::store::{CachedStore, MemoryStore};
///
/// let store = CachedStore::new(MemoryStore::default())
///     .with_ttl(Duration::from_millis(500))
///     .with_capacity(50_000);
/// # }
/// ```
///
/// Needs the cargo feature `cached`.
pub struct CachedStore<S> {
    inner: S,
    cache: Cache<StorageKey, Arc<Record>>,
    ttl: Duration,
    capacity: u64,
    /// A load fills the cache only if no write of its stripe started or was running while it
    /// read the store.
    stripes: [Mutex<Stripe>; STRIPES],
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl<S> CachedStore<S> {
    /// Caches up to 10,000 sessions for one second each, in front of `inner`.
    pub fn new(inner: S) -> Self {
        Self::build(inner, Duration::from_secs(1), 10_000)
    }

    fn build(inner: S, ttl: Duration, capacity: u64) -> Self {
        Self {
            inner,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            ttl,
            capacity,
            stripes: std::array::from_fn(|_| Mutex::default()),
        }
    }

    /// How long an entry is served before the store is asked again: the longest time a change
    /// made by another process goes unseen here.
    ///
    /// # Default
    ///
    /// One second.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        Self::build(self.inner, ttl, self.capacity)
    }

    /// How many sessions the cache holds at most; the least useful go first.
    ///
    /// # Default
    ///
    /// 10,000.
    pub fn with_capacity(self, capacity: u64) -> Self {
        Self::build(self.inner, self.ttl, capacity)
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn stripe(&self, key: &StorageKey) -> std::sync::MutexGuard<'_, Stripe> {
        self.stripes[usize::from(key.as_bytes()[0]) % STRIPES]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `key`'s entry and keeps loads from putting one back until the returned guard is
    /// dropped, after the write: a reader then never gets an entry older than the write from
    /// memory while the store already shows the write (for a rename: both ids valid).
    fn writing(&self, keys: &[&StorageKey]) -> Writing<'_, S> {
        for key in keys {
            let mut stripe = self.stripe(key);
            stripe.events += 1;
            stripe.running += 1;
            self.cache.invalidate(*key);
        }
        Writing {
            store: self,
            keys: keys.iter().map(|k| **k).collect(),
        }
    }
}

impl<S> CachedStore<S> {
    /// Keeps every load from filling the cache until the returned guard is dropped.
    fn writing_everywhere(&self) -> WritingEverywhere<'_, S> {
        for stripe in &self.stripes {
            let mut stripe = stripe.lock().unwrap_or_else(PoisonError::into_inner);
            stripe.events += 1;
            stripe.running += 1;
        }
        WritingEverywhere { store: self }
    }
}

/// A write that may touch any key; dropping it ends it.
struct WritingEverywhere<'a, S> {
    store: &'a CachedStore<S>,
}

impl<S> Drop for WritingEverywhere<'_, S> {
    fn drop(&mut self) {
        for stripe in &self.store.stripes {
            let mut stripe = stripe.lock().unwrap_or_else(PoisonError::into_inner);
            stripe.events += 1;
            stripe.running -= 1;
        }
    }
}

/// A write in progress; dropping it (also when the request is cancelled) ends it.
struct Writing<'a, S> {
    store: &'a CachedStore<S>,
    keys: Vec<StorageKey>,
}

impl<S> Drop for Writing<'_, S> {
    fn drop(&mut self) {
        for key in &self.keys {
            let mut stripe = self.store.stripe(key);
            stripe.events += 1;
            stripe.running -= 1;
            self.store.cache.invalidate(key);
        }
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for CachedStore<S> {
    /// Serves a fresh entry from memory; otherwise loads from the store and keeps the result,
    /// unless this process wrote the key meanwhile (the result may then be older than the
    /// write). Missing records are not cached: a session created elsewhere is seen at once.
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        if let Some(record) = self.cache.get(key) {
            if record.expires_at > now {
                return Ok(Some(Record::clone(&record)));
            }
        }
        let before = self.stripe(key).events;
        let loaded = self.inner.load(key, now).await?;
        if let Some(record) = &loaded {
            let stripe = self.stripe(key);
            if stripe.events == before && stripe.running == 0 {
                self.cache.insert(*key, Arc::new(record.clone()));
            }
        }
        Ok(loaded)
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let _writing = self.writing(&[key]);
        self.inner.create(key, record).await
    }

    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        // The store applies the change to the record as it is there, which may differ from
        // any copy here: drop the copy rather than patch it (also on error: the write may
        // have happened before the connection failed).
        let _writing = self.writing(&[key]);
        self.inner.update(key, change, now).await
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _writing = self.writing(&[key]);
        self.inner.touch(key, expires_at, now).await
    }

    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _writing = self.writing(&[from, to]);
        self.inner.rename(from, to, change, now).await
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let _writing = self.writing(&[key]);
        self.inner.delete(key).await
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        self.inner.user_index().map(|_| self as &dyn UserIndex)
    }

    fn id_format(&self) -> crate::id::IdFormat {
        self.inner.id_format()
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        self.inner.maintenance()
    }
}

/// The store behind's index; revoking drops this process's entries of the revoked sessions
/// at once. Other processes keep theirs for at most the TTL, as for any other change.
#[async_trait]
impl<S: SessionStore> UserIndex for CachedStore<S> {
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError> {
        self.index()?.sessions_of(user, now).await
    }

    async fn delete_sessions_of(
        &self,
        user: &str,
        keep: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let index = self.index()?;
        // No load may fill the cache while this runs (a session filed meanwhile could be
        // cached and then deleted); entries from before are of sessions the listing finds.
        let _all = self.writing_everywhere();
        let listed = index
            .sessions_of(user, OffsetDateTime::now_utc())
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| Some(key) != keep)
            .collect::<Vec<_>>();
        let _writing = self.writing(&listed.iter().collect::<Vec<_>>());
        index.delete_sessions_of(user, keep).await
    }
}

impl<S: SessionStore> CachedStore<S> {
    fn index(&self) -> Result<&dyn UserIndex, StoreError> {
        self.inner.user_index().ok_or_else(|| {
            StoreError::backend(std::io::Error::other(
                "the store behind the cache keeps no user index",
            ))
        })
    }
}
