//! Concurrent saves of one session, sent to the store as one update.
//!
//! When several requests of one process save the same session at once (a page firing parallel
//! requests, a client retrying), each would send its own update, and the store would apply
//! them one after another: on SQL stores every one waits for the row lock held by the one
//! before, and the requests queue on the database. [`Coalescing`] keeps at most one update per
//! session in flight from this process. Saves arriving meanwhile are folded
//! ([`Change::absorb`]) into the next update, sent as soon as the one in flight returns, and
//! every save folded into it gets its result.
//!
//! Nothing about the store's contract changes (I5): the folded change leaves the record as
//! the saves applied one after another, in the order they arrived, would; a record deleted
//! meanwhile makes every one of them [`StoreError::Gone`]. A change that may empty the record
//! ([`Change::may_empty`]) is never folded, so a deletion it causes (I2) is its own.
//!
//! The next update runs as a task of its own, so a request that is cancelled while its save
//! is in flight does not strand the saves waiting behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::id::{IdFormat, StorageKey};
use crate::record::{Change, Record};
use crate::store::{
    ExclusiveGuard, RecordCounts, SessionStore, Stats, StatsOptions, StoreError, Updated, UserIndex,
};

/// A store whose concurrent updates of one record are sent as one (see the
/// [module docs](self)). Every other operation passes straight through.
#[derive(Debug)]
pub(crate) struct Coalescing {
    inner: Arc<dyn SessionStore>,
    /// Keys with an update in flight, and the saves waiting for it.
    in_flight: Arc<Mutex<HashMap<StorageKey, Option<Batch>>>>,
}

/// Saves waiting for the update in flight under their key, folded into one change.
#[derive(Debug)]
struct Batch {
    change: Change,
    now: OffsetDateTime,
    done: watch::Sender<Option<Shared>>,
}

/// The result of a folded update, for every save in it.
type Shared = Result<Updated, Arc<StoreError>>;

impl Coalescing {
    pub(crate) fn new(inner: Arc<dyn SessionStore>) -> Self {
        Self {
            inner,
            in_flight: Arc::default(),
        }
    }
}

/// Held while an update is in flight under `key`. When it goes (the update returned, or its
/// request was cancelled), the saves that arrived meanwhile are sent as the next update.
struct InFlight {
    inner: Arc<dyn SessionStore>,
    in_flight: Arc<Mutex<HashMap<StorageKey, Option<Batch>>>>,
    key: StorageKey,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let next = match map.get_mut(&self.key) {
            Some(waiting) => waiting.take(),
            None => None,
        };
        let Some(batch) = next else {
            map.remove(&self.key);
            return;
        };
        // Still in flight: the next update holds the key from here.
        drop(map);
        let next = InFlight {
            inner: self.inner.clone(),
            in_flight: self.in_flight.clone(),
            key: self.key,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(next.send(batch));
            }
            // No runtime to run it on (shutting down): the waiting saves fail, and the key is
            // freed when `next` drops with nothing waiting.
            Err(_) => drop(batch),
        }
    }
}

impl InFlight {
    /// Sends a folded batch and hands its result to every save in it.
    async fn send(self, batch: Batch) {
        let result = (*self.inner)
            .update(&self.key, &batch.change, batch.now)
            .await
            .map_err(Arc::new);
        batch.done.send_replace(Some(result));
        // Dropping `self` sends whatever arrived in the meantime.
    }
}

/// One waiting save's copy of a folded update's error.
fn unshare(err: &Arc<StoreError>) -> StoreError {
    match &**err {
        StoreError::Gone => StoreError::Gone,
        StoreError::DuplicateId => StoreError::DuplicateId,
        StoreError::Full { capacity } => StoreError::Full {
            capacity: *capacity,
        },
        StoreError::Corrupt { key, reason } => StoreError::Corrupt {
            key: *key,
            reason: reason.clone(),
        },
        StoreError::Backend(_) => StoreError::Backend(Box::new(SharedError(err.clone()))),
    }
}

/// A backend error shared by every save of a folded update.
#[derive(Debug)]
struct SharedError(Arc<StoreError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            StoreError::Backend(e) => e.fmt(f),
            other => other.fmt(f),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            StoreError::Backend(e) => e.source(),
            _ => None,
        }
    }
}

#[async_trait]
impl SessionStore for Coalescing {
    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        if change.may_empty() {
            return (*self.inner).update(key, change, now).await;
        }
        let waiting = {
            let mut map = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match map.get_mut(key) {
                None => {
                    map.insert(*key, None);
                    None
                }
                Some(Some(batch)) => {
                    batch.change.absorb(change.clone());
                    batch.now = batch.now.max(now);
                    Some(batch.done.subscribe())
                }
                Some(slot @ None) => {
                    let (done, waiting) = watch::channel(None);
                    *slot = Some(Batch {
                        change: change.clone(),
                        now,
                        done,
                    });
                    Some(waiting)
                }
            }
        };
        let Some(mut waiting) = waiting else {
            let _held = InFlight {
                inner: self.inner.clone(),
                in_flight: self.in_flight.clone(),
                key: *key,
            };
            return (*self.inner).update(key, change, now).await;
        };
        let result = waiting.wait_for(Option::is_some).await;
        match result.as_deref() {
            Ok(Some(Ok(updated))) => Ok(*updated),
            Ok(Some(Err(e))) => Err(unshare(e)),
            // The sender went without a result: its task never ran (the runtime shut down).
            Ok(None) | Err(_) => Err(StoreError::backend(std::io::Error::other(
                "the save was not sent: the runtime shut down",
            ))),
        }
    }

    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        (*self.inner).load(key, now).await
    }
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        (*self.inner).create(key, record).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        (*self.inner).touch(key, expires_at, now).await
    }
    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        (*self.inner).rename(from, to, change, now).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        (*self.inner).delete(key).await
    }
    async fn delete_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        (*self.inner).delete_expired(now, limit).await
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        (*self.inner).count(now).await
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        (*self.inner).migrate().await
    }
    fn removes_expired_itself(&self) -> bool {
        (*self.inner).removes_expired_itself()
    }
    fn user_index(&self) -> Option<&dyn UserIndex> {
        (*self.inner).user_index()
    }
    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        (*self.inner).try_exclusive(name).await
    }
    fn id_format(&self) -> IdFormat {
        (*self.inner).id_format()
    }
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        (*self.inner).stats(now, options).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::store::MemoryStore;

    /// A memory store whose updates wait for a gate and are counted.
    #[derive(Debug)]
    struct Gated {
        inner: MemoryStore,
        updates: AtomicUsize,
        open: watch::Sender<bool>,
        fail: bool,
    }

    impl Gated {
        fn new(fail: bool) -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryStore::default(),
                updates: AtomicUsize::new(0),
                open: watch::channel(false).0,
                fail,
            })
        }
    }

    #[async_trait]
    impl SessionStore for Gated {
        async fn load(
            &self,
            k: &StorageKey,
            n: OffsetDateTime,
        ) -> Result<Option<Record>, StoreError> {
            self.inner.load(k, n).await
        }
        async fn create(&self, k: &StorageKey, r: &Record) -> Result<(), StoreError> {
            self.inner.create(k, r).await
        }
        async fn update(
            &self,
            k: &StorageKey,
            c: &Change,
            n: OffsetDateTime,
        ) -> Result<Updated, StoreError> {
            self.updates.fetch_add(1, Ordering::SeqCst);
            let _ = self.open.subscribe().wait_for(|open| *open).await;
            if self.fail {
                return Err(StoreError::backend(std::io::Error::other("store down")));
            }
            self.inner.update(k, c, n).await
        }
        async fn touch(
            &self,
            k: &StorageKey,
            e: OffsetDateTime,
            n: OffsetDateTime,
        ) -> Result<(), StoreError> {
            self.inner.touch(k, e, n).await
        }
        async fn rename(
            &self,
            f: &StorageKey,
            t: &StorageKey,
            c: &Change,
            n: OffsetDateTime,
        ) -> Result<(), StoreError> {
            self.inner.rename(f, t, c, n).await
        }
        async fn delete(&self, k: &StorageKey) -> Result<bool, StoreError> {
            self.inner.delete(k).await
        }
        async fn delete_expired(&self, n: OffsetDateTime, l: u32) -> Result<u64, StoreError> {
            self.inner.delete_expired(n, l).await
        }
        async fn count(&self, n: OffsetDateTime) -> Result<RecordCounts, StoreError> {
            self.inner.count(n).await
        }
    }

    fn key() -> StorageKey {
        StorageKey::from_bytes([7; 32])
    }

    async fn stored(store: &Gated) {
        let now = OffsetDateTime::now_utc();
        let record = Record {
            data: json!({"start": true}).as_object().unwrap().clone(),
            created_at: now,
            expires_at: now + time::Duration::hours(1),
        };
        store.inner.create(&key(), &record).await.unwrap();
    }

    fn setting(name: &str) -> Change {
        let mut change = Change::default();
        change.set.insert(name.to_owned(), json!(name));
        change
    }

    /// How many saves wait behind the update in flight.
    fn waiting(c: &Coalescing) -> usize {
        let map = c.in_flight.lock().unwrap();
        match map.get(&key()) {
            Some(Some(batch)) => batch.done.receiver_count(),
            _ => 0,
        }
    }

    async fn until(mut check: impl FnMut() -> bool) {
        for _ in 0..2_000 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached in 2 s");
    }

    /// Saves that arrive while one is in flight go to the store as one update, and every key
    /// of every save is kept (I5).
    #[tokio::test]
    async fn saves_arriving_meanwhile_are_sent_as_one_update() {
        let gated = Gated::new(false);
        stored(&gated).await;
        let c = Arc::new(Coalescing::new(gated.clone()));
        let now = OffsetDateTime::now_utc();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &setting("k0"), now).await }
        });
        until(|| gated.updates.load(Ordering::SeqCst) == 1).await;
        let mut rest = Vec::new();
        for i in 1..32 {
            let c = c.clone();
            rest.push(tokio::spawn(async move {
                c.update(&key(), &setting(&format!("k{i}")), now).await
            }));
        }
        until(|| waiting(&c) == 31).await;
        gated.open.send_replace(true);
        assert_eq!(first.await.unwrap().unwrap(), Updated::Kept);
        for save in rest {
            assert_eq!(save.await.unwrap().unwrap(), Updated::Kept);
        }
        assert_eq!(
            gated.updates.load(Ordering::SeqCst),
            2,
            "one in flight, one folded"
        );
        let record = gated.inner.load(&key(), now).await.unwrap().unwrap();
        assert_eq!(
            record.data.len(),
            33,
            "every key of every save, and the one before"
        );
        assert!(
            c.in_flight.lock().unwrap().is_empty(),
            "nothing left in flight"
        );
    }

    /// A record deleted while saves wait: every one of them is Gone, nothing is re-created.
    #[tokio::test]
    async fn a_deleted_record_is_gone_for_every_folded_save() {
        let gated = Gated::new(false);
        stored(&gated).await;
        let c = Arc::new(Coalescing::new(gated.clone()));
        let now = OffsetDateTime::now_utc();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &setting("a"), now).await }
        });
        until(|| gated.updates.load(Ordering::SeqCst) == 1).await;
        let rest: Vec<_> = (0..4)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.update(&key(), &setting(&format!("b{i}")), now).await })
            })
            .collect();
        until(|| waiting(&c) == 4).await;
        assert!(gated.inner.delete(&key()).await.unwrap());
        gated.open.send_replace(true);
        assert!(matches!(first.await.unwrap(), Err(StoreError::Gone)));
        for save in rest {
            assert!(matches!(save.await.unwrap(), Err(StoreError::Gone)));
        }
        assert!(gated.inner.load(&key(), now).await.unwrap().is_none());
    }

    /// A save whose request is cancelled while in flight does not strand those behind it.
    #[tokio::test]
    async fn a_cancelled_save_does_not_strand_the_waiting_ones() {
        let gated = Gated::new(false);
        stored(&gated).await;
        let c = Arc::new(Coalescing::new(gated.clone()));
        let now = OffsetDateTime::now_utc();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &setting("cancelled"), now).await }
        });
        until(|| gated.updates.load(Ordering::SeqCst) == 1).await;
        let second = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &setting("kept"), now).await }
        });
        until(|| waiting(&c) == 1).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        gated.open.send_replace(true);
        assert_eq!(second.await.unwrap().unwrap(), Updated::Kept);
        let record = gated.inner.load(&key(), now).await.unwrap().unwrap();
        assert_eq!(record.data.get("kept"), Some(&json!("kept")));
        assert!(c.in_flight.lock().unwrap().is_empty());
    }

    /// A store failure reaches every save folded into the update, as an error of its own.
    #[tokio::test]
    async fn a_failed_update_fails_every_folded_save() {
        let gated = Gated::new(true);
        stored(&gated).await;
        let c = Arc::new(Coalescing::new(gated.clone()));
        let now = OffsetDateTime::now_utc();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &setting("a"), now).await }
        });
        until(|| gated.updates.load(Ordering::SeqCst) == 1).await;
        let rest: Vec<_> = (0..3)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { c.update(&key(), &setting(&format!("b{i}")), now).await })
            })
            .collect();
        until(|| waiting(&c) == 3).await;
        gated.open.send_replace(true);
        assert!(matches!(first.await.unwrap(), Err(StoreError::Backend(_))));
        for save in rest {
            match save.await.unwrap() {
                Err(StoreError::Backend(e)) => assert_eq!(e.to_string(), "store down"),
                other => panic!("expected the store's error, got {other:?}"),
            }
        }
        assert_eq!(gated.updates.load(Ordering::SeqCst), 2);
    }

    /// A change that may empty the record is sent on its own, so the deletion it causes is
    /// reported to it alone (I2).
    #[tokio::test]
    async fn a_change_that_may_empty_the_record_is_not_folded() {
        let gated = Gated::new(false);
        stored(&gated).await;
        let c = Arc::new(Coalescing::new(gated.clone()));
        let now = OffsetDateTime::now_utc();
        let first = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &setting("a"), now).await }
        });
        until(|| gated.updates.load(Ordering::SeqCst) == 1).await;
        let mut emptying = Change::default();
        emptying
            .removed
            .extend(["start".to_owned(), "a".to_owned()]);
        let alone = tokio::spawn({
            let c = c.clone();
            async move { c.update(&key(), &emptying, now).await }
        });
        until(|| gated.updates.load(Ordering::SeqCst) == 2).await;
        assert_eq!(waiting(&c), 0, "not folded into a batch");
        gated.open.send_replace(true);
        first.await.unwrap().unwrap();
        alone.await.unwrap().unwrap();
    }
}
