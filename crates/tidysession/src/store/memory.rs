//! [`MemoryStore`]: sessions in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{RecordCounts, SessionStore, StoreError, Updated};
use crate::id::StorageKey;
use crate::record::{is_empty, Change, Record};

/// Sessions in process memory: for tests, demos and single-process apps that accept losing
/// sessions on restart.
///
/// It is bounded: when full, a create first evicts expired records, and if every record is
/// still live it fails with [`StoreError::Full`] rather than silently dropping someone's session.
///
/// ```
/// use tidysession::store::MemoryStore;
///
/// let store = MemoryStore::with_capacity(10_000);
/// assert_eq!(store.capacity(), 10_000);
/// ```
pub struct MemoryStore {
    records: Mutex<HashMap<StorageKey, Record>>,
    capacity: usize,
}

impl std::fmt::Debug for MemoryStore {
    /// Counts only: the records hold other people's session data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.records().len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for MemoryStore {
    /// A store for up to 100,000 sessions.
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl MemoryStore {
    /// A store holding at most `capacity` records.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The most records this store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<StorageKey, Record>> {
        // A panic while holding the lock cannot leave a record half-written (every mutation is
        // a single map call), so a poisoned lock is safe to keep using.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn live_mut<'a>(
    records: &'a mut HashMap<StorageKey, Record>,
    key: &StorageKey,
    now: OffsetDateTime,
) -> Result<&'a mut Record, StoreError> {
    records
        .get_mut(key)
        .filter(|r| r.expires_at > now)
        .ok_or(StoreError::Gone)
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        Ok(self
            .records()
            .get(key)
            .filter(|r| r.expires_at > now)
            .cloned())
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut records = self.records();
        if records.get(key).is_some_and(|r| r.expires_at > now) {
            return Err(StoreError::DuplicateId);
        }
        if records.len() >= self.capacity && !records.contains_key(key) {
            records.retain(|_, r| r.expires_at > now);
            if records.len() >= self.capacity {
                return Err(StoreError::Full {
                    capacity: self.capacity,
                });
            }
        }
        records.insert(*key, record.clone());
        Ok(())
    }

    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let mut records = self.records();
        let record = live_mut(&mut records, key, now)?;
        change.apply(record);
        if is_empty(&record.data) {
            records.remove(key);
            return Ok(Updated::Deleted);
        }
        Ok(Updated::Kept)
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut records = self.records();
        let record = live_mut(&mut records, key, now)?;
        record.expires_at = record.expires_at.max(expires_at);
        Ok(())
    }

    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut records = self.records();
        live_mut(&mut records, from, now)?;
        if records.get(to).is_some_and(|r| r.expires_at > now) {
            return Err(StoreError::DuplicateId);
        }
        let Some(mut record) = records.remove(from) else {
            return Err(StoreError::Gone);
        };
        change.apply(&mut record);
        if is_empty(&record.data) {
            // Emptied by changes made meanwhile: nothing left to move (I2).
            return Err(StoreError::Gone);
        }
        records.insert(*to, record);
        Ok(())
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        Ok(self.records().remove(key).is_some())
    }

    async fn delete_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        let mut records = self.records();
        let mut expired: Vec<(OffsetDateTime, StorageKey)> = records
            .iter()
            .filter(|(_, r)| r.expires_at <= now)
            .map(|(k, r)| (r.expires_at, *k))
            .collect();
        expired.sort_unstable();
        expired.truncate(limit as usize);
        for (_, k) in &expired {
            records.remove(k);
        }
        Ok(expired.len() as u64)
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let records = self.records();
        let live = records.values().filter(|r| r.expires_at > now).count() as u64;
        Ok(RecordCounts {
            live,
            expired: records.len() as u64 - live,
        })
    }
}
