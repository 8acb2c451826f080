//! The [`SessionStore`] trait: a few primitive, atomic operations every store implements.
//!
//! The layer decides *what* to do (see [`decide`](crate::decide)); a store only has to do each
//! primitive atomically. Stores never see session ids, only their [`StorageKey`] (I6): for
//! native ids a SHA-256 of the id; for stores whose [`id_format`](SessionStore::id_format) is
//! [`IdFormat::Django`] (the Django store) Django's key itself, the documented exception.
//!
//! # What every store guarantees
//!
//! | operation | on a live record | on a missing or expired record |
//! |---|---|---|
//! | [`load`](SessionStore::load) | the record | `None` |
//! | [`create`](SessionStore::create) | [`StoreError::DuplicateId`] | stores the record |
//! | [`update`](SessionStore::update) | applies the [`Change`] to the record as it is now; deletes it if that leaves it [empty](crate::record::is_empty) and says so | [`StoreError::Gone`] (never re-creates) |
//! | [`touch`](SessionStore::touch) | moves expiry later, never earlier | [`StoreError::Gone`] |
//! | [`rename`](SessionStore::rename) | moves the record to the new key and applies the change, in one step; if that leaves it empty, deletes it and reports [`StoreError::Gone`] | [`StoreError::Gone`] |
//! | [`delete`](SessionStore::delete) | removes it, `true` | `false` |
//!
//! [`delete_expired`](SessionStore::delete_expired) removes at most `limit` expired records per
//! call, so cleanup runs as many short steps rather than one giant `DELETE`; each call says
//! where the next one should start ([`ExpiredBatch::next`]), so a run walks the expiry index
//! once instead of stepping again over the entries of the records it already deleted. Stores
//! whose records expire by themselves (Redis) say so through
//! [`removes_expired_itself`](SessionStore::removes_expired_itself).
//!
//! The conformance suite in this crate's `tests/` runs every store against this table.
//!
//! # The user index
//!
//! Stores that can list a user's sessions say so through
//! [`user_index`](SessionStore::user_index). A record is filed under the user named by its
//! [`USER_KEY`](crate::record::USER_KEY) value, which stores read from the record on
//! [`create`](SessionStore::create) and from the change ([`Change::user`]) on
//! [`update`](SessionStore::update) and [`rename`](SessionStore::rename): the index follows the
//! data in the same atomic step, with no separate write to forget.

use std::error::Error as StdError;
use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::id::{IdFormat, StorageKey};
use crate::record::{Change, Record};

#[cfg(feature = "cached")]
mod cached;
mod counting;
#[cfg(all(
    feature = "django",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
pub mod django;
mod exclusive;
#[cfg(feature = "memory")]
mod memory;
#[cfg(any(
    feature = "sqlite",
    feature = "postgres",
    feature = "mysql",
    feature = "redis"
))]
mod millis;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub(crate) mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
pub mod stats;
mod url;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
#[cfg(feature = "cached")]
pub use cached::CachedStore;
pub use counting::{CountingStore, OpCounts};
#[cfg(all(
    feature = "django",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
pub use django::DjangoStore;
pub use exclusive::{ExclusiveGuard, HeldLock};
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use stats::{Stats, StatsOptions};
pub use url::{open, open_for_maintenance, redact_url, supported_urls, StoreUrlError};

/// A place sessions live. See the [module docs](self) for the contract.
///
/// Every operation is atomic on its own; the layer never needs a transaction spanning two.
#[async_trait]
pub trait SessionStore: Send + Sync + fmt::Debug + 'static {
    /// Loads the record filed under `key`, if it exists and has not expired at `now`.
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError>;

    /// Stores a new record. Fails with [`StoreError::DuplicateId`] if a live record already has
    /// this key; an expired one may be replaced.
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError>;

    /// Applies `change` to the live record under `key`: removed keys, set keys and the new
    /// expiry, atomically, against the record as it is now (see [`Change::apply`]). When the
    /// result holds no data the record is deleted (I2) and the result is [`Updated::Deleted`].
    /// A missing or expired record is [`StoreError::Gone`] and is never re-created (I5).
    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError>;

    /// Moves the live record's expiry to `expires_at` if that is later than its current
    /// expiry; never moves it earlier. Touches nothing else. Missing or expired: [`StoreError::Gone`].
    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Moves the live record under `from` to `to` and applies `change`, in one atomic step
    /// (I7): no reader ever sees both keys valid, or neither. Missing or expired `from`:
    /// [`StoreError::Gone`]; a live record under `to`: [`StoreError::DuplicateId`].
    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Deletes the record under `key`; returns whether there was one.
    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError>;

    /// Deletes at most `limit` records whose expiry is at or after `from` (no lower bound when
    /// `None`) and at or before `now`, oldest expiry first, as one short operation.
    ///
    /// The result says how many it deleted and where the next call should start
    /// ([`ExpiredBatch::next`], a cursor on expiry): call again with `from` set to it until it
    /// is `None` to clear the whole range. Starting at the cursor spares the next call the
    /// index entries of the records this one deleted, which some databases keep until a later
    /// vacuum or purge. The cursor may step past a record another process held or was still
    /// writing during the call (a concurrent cleaner, a transaction that then rolled back, a
    /// record written already expired behind it): a walk from `None` finds those again.
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError>;

    /// Counts live and expired records at `now`.
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError>;

    /// Creates or upgrades the store's schema. Idempotent; stores without a schema do nothing.
    async fn migrate(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether the store deletes expired records by itself (Redis does, through key expiry).
    /// Such a store never holds an expired record: [`count`](Self::count) reports none and
    /// [`delete_expired`](Self::delete_expired) has nothing to do.
    fn removes_expired_itself(&self) -> bool {
        false
    }

    /// The store's user index, if it keeps one.
    fn user_index(&self) -> Option<&dyn UserIndex> {
        None
    }

    /// The store's way of deleting expired records in storage order, if it has one (see
    /// [`Sweep`]).
    fn sweep(&self) -> Option<&dyn Sweep> {
        None
    }

    /// Takes the exclusive lock `name` if nobody holds it, without waiting: `Ok(None)` when
    /// another holder has it. Used by the [`Reaper`](crate::reaper::Reaper) so that one
    /// process at a time cleans up.
    ///
    /// Stores on a shared server lock there, for every process using the same sessions
    /// (PostgreSQL: a session-level advisory lock; MySQL/MariaDB: `GET_LOCK`), each on a
    /// connection of its own that lives as long as the guard. The default locks within this
    /// process only ([`ExclusiveGuard::in_process`]), which is enough for SQLite and memory
    /// stores.
    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        Ok(ExclusiveGuard::in_process(name))
    }

    /// The form of this store's session ids, and what it files sessions under.
    fn id_format(&self) -> IdFormat {
        IdFormat::Native
    }

    /// Statistics about what the store holds at `now` (see [`stats`](self::stats)): exact
    /// counts, and figures estimated from a bounded sample of records. `None` for a store
    /// that cannot tell.
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let _ = (now, options);
        Ok(None)
    }
}

/// A store capability: find and delete the sessions of one user (see the
/// [module docs](self#the-user-index)).
///
/// The listing never includes a deleted or expired record. Every record listed belongs to the
/// user at the time of the call; an entry made stale by a later change is never reported.
#[async_trait]
pub trait UserIndex: Send + Sync {
    /// The live records filed under `user` at `now`, with their keys, in no particular order.
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError>;

    /// Deletes every record filed under `user` except the one under `keep`; returns how many
    /// it deleted.
    async fn delete_sessions_of(
        &self,
        user: &str,
        keep: Option<&StorageKey>,
    ) -> Result<u64, StoreError>;
}

/// A store capability: delete expired records in the order the database keeps rows on disk,
/// for a backlog that is a large share of the table.
///
/// Walking the expiry index visits rows in expiry order, which on a table filled over months
/// is close to random on disk: every page holding expired rows is written once per row, and
/// on PostgreSQL each first write of a page after a checkpoint logs the whole page. A sweep
/// visits each page once and deletes all its expired rows together, so a big backlog costs a
/// fraction of the writes (`tidysession clear` sweeps when at least a quarter of the records
/// are expired). PostgreSQL sweeps by page (`ctid` ranges), MySQL/MariaDB by primary key (the
/// order InnoDB keeps rows in).
#[async_trait]
pub trait Sweep: Send + Sync {
    /// Where a sweep begins: the start of the table.
    async fn start(&self) -> Result<SweepPosition, StoreError>;

    /// Deletes the records expired at `now` among about `span` records in storage order,
    /// starting at `from` ([`start`](Self::start), or a batch's [`next`](SweptBatch::next)),
    /// as one short operation.
    ///
    /// The same `from` and `span` cover the same range again (or, where the range is a count
    /// of keys, a range that holds it), so a range whose [`held`](SweptBatch::held) records
    /// were skipped can be swept once more later.
    async fn sweep_expired(
        &self,
        from: &SweepPosition,
        now: OffsetDateTime,
        span: u32,
    ) -> Result<SweptBatch, StoreError>;
}

/// Where a [`Sweep`] goes on: a place in the store's storage order, opaque outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPosition(pub(crate) Place);

#[derive(Debug, Clone, PartialEq)]
#[allow(dead_code)] // each variant exists with its database's feature
pub(crate) enum Place {
    /// A PostgreSQL heap page, and the table's rows per page (which turns a span of records
    /// into pages) as the catalog gave it when the sweep began: carried along, so a range
    /// swept again covers the same pages.
    Page { block: u64, rows_per_page: f64 },
    /// A primary key: the range goes on after it.
    Key(Vec<u8>),
}

/// What one [`Sweep::sweep_expired`] call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweptBatch {
    /// How many records it deleted.
    pub deleted: u64,
    /// Expired records in the range it could not delete because another transaction held
    /// them (another cleaner, or a request writing the row); sweeping the range again later
    /// finds those that are left.
    pub held: u64,
    /// Where the next call starts; `None` once the call reached the end of the table.
    pub next: Option<SweepPosition>,
}

/// What [`SessionStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// The record was changed and still holds data.
    Kept,
    /// The change left the record without data, so it was deleted.
    Deleted,
}

/// What one [`SessionStore::delete_expired`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpiredBatch {
    /// How many records it deleted.
    pub deleted: u64,
    /// Where the next call should start (its `from`): the latest expiry this call reached,
    /// when more expired records may follow; `None` once the call reached the end of its
    /// range. Every expired record in the range before this expiry that the call could lock
    /// is gone; records at exactly this expiry may remain, which is why the next call's
    /// range includes it.
    pub next: Option<OffsetDateTime>,
}

impl ExpiredBatch {
    /// Where a walk that made this call from `from` goes on: [`next`](Self::next), unless the
    /// range is done or the call neither deleted anything nor moved (the rows there are
    /// another process's, held; a later walk from `None` finds what they leave).
    pub fn continue_from(&self, from: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
        self.next
            .filter(|next| self.deleted > 0 || from.is_none_or(|from| *next > from))
    }

    /// A batch that deleted `deleted` of at most `limit` records, the latest expiring at
    /// `latest`: only a full batch can have more after it.
    #[cfg(any(feature = "memory", feature = "sqlite", feature = "postgres"))]
    pub(crate) fn of(deleted: u64, latest: Option<OffsetDateTime>, limit: u32) -> Self {
        Self {
            deleted,
            next: latest.filter(|_| deleted >= u64::from(limit)),
        }
    }
}

/// How many records a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records that are still valid.
    pub live: u64,
    /// Records past their expiry, waiting for cleanup.
    pub expired: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record is missing or expired; it was not re-created.
    #[error("the session no longer exists")]
    Gone,
    /// A live record already has this key.
    #[error("a session with this id already exists")]
    DuplicateId,
    /// A bounded store is full of live sessions.
    #[error("the session store is full ({capacity} live sessions)")]
    Full {
        /// The store's capacity.
        capacity: usize,
    },
    /// A stored record could not be read back. It is left in place, untouched.
    #[error("corrupt session record {key:?}: {reason}")]
    Corrupt {
        /// The record's key.
        key: StorageKey,
        /// What was wrong with it.
        reason: String,
    },
    /// The store failed or could not be reached.
    #[error("session store error: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(err: impl StdError + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(err))
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for std::sync::Arc<S> {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        (**self).load(key, now).await
    }
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        (**self).create(key, record).await
    }
    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        (**self).update(key, change, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        (**self).touch(key, expires_at, now).await
    }
    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        (**self).rename(from, to, change, now).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        (**self).delete(key).await
    }
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        (**self).delete_expired(from, now, limit).await
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        (**self).count(now).await
    }
    async fn migrate(&self) -> Result<(), StoreError> {
        (**self).migrate().await
    }
    fn removes_expired_itself(&self) -> bool {
        (**self).removes_expired_itself()
    }
    fn user_index(&self) -> Option<&dyn UserIndex> {
        (**self).user_index()
    }
    fn sweep(&self) -> Option<&dyn Sweep> {
        (**self).sweep()
    }
    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        (**self).try_exclusive(name).await
    }
    fn id_format(&self) -> IdFormat {
        (**self).id_format()
    }
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        (**self).stats(now, options).await
    }
}

/// The store behind a [cookie-only](crate::SessionLayer::cookie_only) layer: it holds nothing.
/// An id cookie is simply unknown; the layer never needs to create a record, and if it tried
/// (data over the cookie budget) the error says why.
#[derive(Debug)]
pub(crate) struct NoStore;

#[async_trait]
impl SessionStore for NoStore {
    async fn load(&self, _: &StorageKey, _: OffsetDateTime) -> Result<Option<Record>, StoreError> {
        Ok(None)
    }
    async fn create(&self, _: &StorageKey, _: &Record) -> Result<(), StoreError> {
        Err(StoreError::backend(std::io::Error::other(
            "cookie-only sessions have no store: the session does not fit its cookie",
        )))
    }
    async fn update(
        &self,
        _: &StorageKey,
        _: &Change,
        _: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        Err(StoreError::Gone)
    }
    async fn touch(
        &self,
        _: &StorageKey,
        _: OffsetDateTime,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Err(StoreError::Gone)
    }
    async fn rename(
        &self,
        _: &StorageKey,
        _: &StorageKey,
        _: &Change,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        Err(StoreError::Gone)
    }
    async fn delete(&self, _: &StorageKey) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn delete_expired(
        &self,
        _: Option<OffsetDateTime>,
        _: OffsetDateTime,
        _: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        Ok(ExpiredBatch::default())
    }
    async fn count(&self, _: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        Ok(RecordCounts::default())
    }
    fn removes_expired_itself(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_goes_on_while_batches_delete_or_move() {
        let t = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        let batch = |deleted, next| ExpiredBatch { deleted, next };
        // The range is done.
        assert_eq!(batch(3, None).continue_from(Some(t(1))), None);
        // Deleted something: on from the cursor, even where it did not move.
        assert_eq!(batch(5, Some(t(1))).continue_from(Some(t(1))), Some(t(1)));
        // Deleted nothing but moved on (past rows another process holds): on.
        assert_eq!(batch(0, Some(t(2))).continue_from(Some(t(1))), Some(t(2)));
        assert_eq!(batch(0, Some(t(2))).continue_from(None), Some(t(2)));
        // Deleted nothing and stayed put: the walk would spin on held rows; it stops.
        assert_eq!(batch(0, Some(t(1))).continue_from(Some(t(1))), None);
    }
}
