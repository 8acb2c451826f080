//! [`MemoryStore`]: sessions in this process's memory.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::stats::{Payloads, SampledRecord, StatsBuilder};
use super::{
    ExpiredBatch, RecordCounts, SessionStore, Stats, StatsOptions, StoreError, Updated, UserIndex,
};
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
///
/// Needs the cargo feature `memory`.
pub struct MemoryStore {
    records: Mutex<Records>,
    capacity: usize,
}

/// The records, and the keys of each user's records (the user index), changed together.
#[derive(Default)]
struct Records {
    map: HashMap<StorageKey, Record>,
    /// # Internal invariant
    ///
    /// `users[u]` holds exactly the keys of `map` whose record's [`Record::user`] is `u`, and
    /// no set is empty.
    users: HashMap<String, HashSet<StorageKey>>,
}

impl Records {
    fn get(&self, key: &StorageKey, now: OffsetDateTime) -> Option<&Record> {
        self.map.get(key).filter(|r| r.expires_at > now)
    }

    fn insert(&mut self, key: StorageKey, record: Record) {
        self.remove(&key);
        if let Some(user) = record.user() {
            self.users.entry(user.to_owned()).or_default().insert(key);
        }
        self.map.insert(key, record);
    }

    fn remove(&mut self, key: &StorageKey) -> Option<Record> {
        let record = self.map.remove(key)?;
        if let Some(user) = record.user() {
            if let Some(keys) = self.users.get_mut(user) {
                keys.remove(key);
                if keys.is_empty() {
                    self.users.remove(user);
                }
            }
        }
        Some(record)
    }

    /// Applies `change` to the live record under `key` (re-filing it if its user changes);
    /// deletes it if that leaves no data.
    fn update(
        &mut self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let mut record = self.get(key, now).ok_or(StoreError::Gone)?.clone();
        change.apply(&mut record);
        if is_empty(&record.data) {
            self.remove(key);
            return Ok(Updated::Deleted);
        }
        self.insert(*key, record);
        Ok(Updated::Kept)
    }
}

impl std::fmt::Debug for MemoryStore {
    /// Counts only: the records hold other people's session data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("records", &self.records().map.len())
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
            records: Mutex::new(Records::default()),
            capacity,
        }
    }

    /// The most records this store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn records(&self) -> std::sync::MutexGuard<'_, Records> {
        // A panic while holding the lock cannot leave a record half-written (every mutation is
        // a single map call), so a poisoned lock is safe to keep using.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        Ok(self.records().get(key, now).cloned())
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let now = OffsetDateTime::now_utc();
        let mut records = self.records();
        if records.get(key, now).is_some() {
            return Err(StoreError::DuplicateId);
        }
        if records.map.len() >= self.capacity && !records.map.contains_key(key) {
            let expired: Vec<StorageKey> = records
                .map
                .iter()
                .filter(|(_, r)| r.expires_at <= now)
                .map(|(k, _)| *k)
                .collect();
            for k in &expired {
                records.remove(k);
            }
            if records.map.len() >= self.capacity {
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
        self.records().update(key, change, now)
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut records = self.records();
        let record = records
            .map
            .get_mut(key)
            .filter(|r| r.expires_at > now)
            .ok_or(StoreError::Gone)?;
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
        if records.get(from, now).is_none() {
            return Err(StoreError::Gone);
        }
        if records.get(to, now).is_some() {
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

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        Some(self)
    }
}

#[async_trait]
impl crate::store::Maintenance for MemoryStore {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        let mut records = self.records();
        let mut expired: Vec<(OffsetDateTime, StorageKey)> = records
            .map
            .iter()
            .filter(|(_, r)| r.expires_at <= now && from.is_none_or(|from| r.expires_at >= from))
            .map(|(k, r)| (r.expires_at, *k))
            .collect();
        expired.sort_unstable();
        expired.truncate(limit as usize);
        for (_, k) in &expired {
            records.remove(k);
        }
        let latest = expired.last().map(|(at, _)| *at);
        Ok(ExpiredBatch::of(expired.len() as u64, latest, limit))
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let records = self.records();
        let live = records.map.values().filter(|r| r.expires_at > now).count() as u64;
        Ok(RecordCounts {
            live,
            expired: records.map.len() as u64 - live,
        })
    }

    /// Every record, so every figure is exact.
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let counts = self.count(now).await?;
        let mut builder = StatsBuilder::new(now, counts, *options);
        let records = self.records();
        for record in records.map.values() {
            builder.add(SampledRecord {
                bytes: to_json_len(&record.data),
                data: Some(record.data.clone()),
                created_at: Some(record.created_at),
                expires_at: record.expires_at,
            });
        }
        drop(records);
        Ok(Some(builder.finish(
            "memory store (this process)",
            "every record",
            Payloads::Plain,
            false,
        )))
    }
}

/// The size of data as JSON text.
fn to_json_len(data: &crate::record::Data) -> u64 {
    serde_json::to_string(data).map_or(0, |s| s.len() as u64)
}

#[async_trait]
impl UserIndex for MemoryStore {
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError> {
        let records = self.records();
        let keys = records.users.get(user).into_iter().flatten();
        Ok(keys
            .filter_map(|k| Some((*k, records.get(k, now)?.clone())))
            .collect())
    }

    async fn delete_sessions_of(
        &self,
        user: &str,
        keep: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let mut records = self.records();
        let doomed: Vec<StorageKey> = records
            .users
            .get(user)
            .into_iter()
            .flatten()
            .filter(|k| Some(*k) != keep)
            .copied()
            .collect();
        for k in &doomed {
            records.remove(k);
        }
        Ok(doomed.len() as u64)
    }
}
