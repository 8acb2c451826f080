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
use crate::store::{SessionStore, StoreError, Updated, UserIndex};

/// A store whose concurrent updates of one record are sent as one (see the
/// [module docs](self)). Every other operation passes straight through.
#[derive(Debug)]
pub(crate) struct Coalescing {
    inner: Arc<dyn SessionStore>,
    in_flight: Arc<InFlightMap>,
}

/// Keys with an update in flight, and the saves waiting for it.
type InFlightMap = Mutex<HashMap<StorageKey, Option<Batch>>>;

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
    in_flight: Arc<InFlightMap>,
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
            // The sender went without a result: its task never ran (the runtime shut down)
            // or the store panicked.
            Ok(None) | Err(_) => Err(StoreError::backend(std::io::Error::other(
                "the save was not sent: the update it joined ended without a result",
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
    fn user_index(&self) -> Option<&dyn UserIndex> {
        (*self.inner).user_index()
    }
    fn id_format(&self) -> IdFormat {
        (*self.inner).id_format()
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        (*self.inner).maintenance()
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
        fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
            self.inner.maintenance()
        }
    }

    fn key() -> StorageKey {
        StorageKey::from_bytes([7; 32])
    }

    fn setting(name: &str) -> Change {
        let mut change = Change::default();
        change.set.insert(name.to_owned(), json!(name));
        change
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

    type Save = tokio::task::JoinHandle<Result<Updated, StoreError>>;

    fn save(c: &Arc<Coalescing>, now: OffsetDateTime, change: Change) -> Save {
        let c = c.clone();
        tokio::spawn(async move { c.update(&key(), &change, now).await })
    }

    /// A stored record, one save of it in flight (held at the store's gate), and `behind`
    /// more saves waiting for it.
    struct Fixture {
        gated: Arc<Gated>,
        c: Arc<Coalescing>,
        now: OffsetDateTime,
        first: Save,
        rest: Vec<Save>,
    }

    impl Fixture {
        async fn new(fail: bool, behind: usize) -> Self {
            let gated = Gated::new(fail);
            let now = OffsetDateTime::now_utc();
            let record = Record {
                data: json!({"start": true}).as_object().unwrap().clone(),
                created_at: now,
                expires_at: now + time::Duration::hours(1),
            };
            gated.inner.create(&key(), &record).await.unwrap();
            let c = Arc::new(Coalescing::new(gated.clone()));
            let mut f = Self {
                first: save(&c, now, setting("first")),
                c,
                gated,
                now,
                rest: Vec::new(),
            };
            until(|| f.updates() == 1).await;
            f.rest = (0..behind)
                .map(|i| f.save(setting(&format!("k{i}"))))
                .collect();
            until(|| f.waiting() == behind).await;
            f
        }

        fn save(&self, change: Change) -> Save {
            save(&self.c, self.now, change)
        }

        /// How many saves wait behind the update in flight.
        fn waiting(&self) -> usize {
            let map = self.c.in_flight.lock().unwrap();
            match map.get(&key()) {
                Some(Some(batch)) => batch.done.receiver_count(),
                _ => 0,
            }
        }

        fn open(&self) {
            self.gated.open.send_replace(true);
        }

        fn updates(&self) -> usize {
            self.gated.updates.load(Ordering::SeqCst)
        }

        async fn stored(&self) -> Option<Record> {
            self.gated.inner.load(&key(), self.now).await.unwrap()
        }

        fn idle(&self) -> bool {
            self.c.in_flight.lock().unwrap().is_empty()
        }
    }

    /// Saves that arrive while one is in flight go to the store as one update, and every key
    /// of every save is kept (I5).
    #[tokio::test]
    async fn saves_arriving_meanwhile_are_sent_as_one_update() {
        let f = Fixture::new(false, 31).await;
        f.open();
        assert_eq!(f.first.await.unwrap().unwrap(), Updated::Kept);
        for save in f.rest {
            assert_eq!(save.await.unwrap().unwrap(), Updated::Kept);
        }
        assert_eq!(
            f.gated.updates.load(Ordering::SeqCst),
            2,
            "one in flight, one folded"
        );
        let record = f.gated.inner.load(&key(), f.now).await.unwrap().unwrap();
        assert_eq!(
            record.data.len(),
            33,
            "every key of every save, and the one before"
        );
        assert!(
            f.c.in_flight.lock().unwrap().is_empty(),
            "nothing left in flight"
        );
    }

    /// A record deleted while saves wait: every one of them is Gone, nothing is re-created.
    #[tokio::test]
    async fn a_deleted_record_is_gone_for_every_folded_save() {
        let f = Fixture::new(false, 4).await;
        assert!(f.gated.inner.delete(&key()).await.unwrap());
        f.open();
        assert!(f.stored().await.is_none());
        assert!(matches!(f.first.await.unwrap(), Err(StoreError::Gone)));
        for save in f.rest {
            assert!(matches!(save.await.unwrap(), Err(StoreError::Gone)));
        }
        assert!(f.gated.inner.load(&key(), f.now).await.unwrap().is_none());
    }

    /// A save whose request is cancelled while in flight does not strand those behind it.
    #[tokio::test]
    async fn a_cancelled_save_does_not_strand_the_waiting_ones() {
        let mut f = Fixture::new(false, 1).await;
        f.first.abort();
        assert!((&mut f.first).await.unwrap_err().is_cancelled());
        f.open();
        let waiting = f.rest.pop().unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(
            result.expect("not stranded").unwrap().unwrap(),
            Updated::Kept
        );
        let record = f.stored().await.unwrap();
        assert_eq!(record.data.get("k0"), Some(&json!("k0")));
        assert!(f.idle());
    }

    /// A store failure reaches every save folded into the update, as an error of its own.
    #[tokio::test]
    async fn a_failed_update_fails_every_folded_save() {
        let f = Fixture::new(true, 3).await;
        f.open();
        assert!(matches!(
            f.first.await.unwrap(),
            Err(StoreError::Backend(_))
        ));
        for save in f.rest {
            match save.await.unwrap() {
                Err(StoreError::Backend(e)) => assert_eq!(e.to_string(), "store down"),
                other => panic!("expected the store's error, got {other:?}"),
            }
        }
        assert_eq!(f.gated.updates.load(Ordering::SeqCst), 2);
    }

    /// A change that may empty the record is sent on its own, so the deletion it causes is
    /// reported to it alone (I2).
    #[tokio::test]
    async fn a_change_that_may_empty_the_record_is_not_folded() {
        let mut f = Fixture::new(false, 0).await;
        let mut emptying = Change::default();
        emptying
            .removed
            .extend(["start".to_owned(), "first".to_owned()]);
        let alone = f.save(emptying);
        until(|| f.updates() == 2).await;
        assert_eq!(f.waiting(), 0, "not folded into a batch");
        f.open();
        // Whichever of the two the store applies first, the emptying change empties the
        // record, and reports the deletion itself.
        assert_eq!(alone.await.unwrap().unwrap(), Updated::Deleted);
        let first = (&mut f.first).await.unwrap();
        assert!(
            matches!(first, Ok(Updated::Kept) | Err(StoreError::Gone)),
            "{first:?}"
        );
        assert!(f.idle());
    }
}
