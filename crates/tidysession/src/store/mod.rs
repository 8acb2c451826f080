//! What a store author implements: the [`SessionStore`] trait, a few primitive, atomic
//! operations on the request path, and its [`Maintenance`] capability off it; with the types
//! they take ([`Record`], [`Change`], [`StorageKey`]) and the stores this crate ships.
//!
//! The layer decides *what* to do (see the [crate docs](crate#how-a-request-is-handled)); a
//! store only has to do each primitive atomically. Stores never see session ids, only their
//! [`StorageKey`] (I6): for native ids a SHA-256 of the id; for stores whose
//! [`id_format`](SessionStore::id_format) is [`IdFormat::Django`] (the Django store) Django's
//! key itself, the documented exception.
//!
//! # What every store guarantees
//!
//! | operation | on a live record | on a missing or expired record |
//! |---|---|---|
//! | [`load`](SessionStore::load) | the record | `None` |
//! | [`create`](SessionStore::create) | [`StoreError::DuplicateId`] | stores the record |
//! | [`update`](SessionStore::update) | applies the [`Change`] to the record as it is now; deletes it if that leaves it [empty](is_empty) and says so | [`StoreError::Gone`] (never re-creates) |
//! | [`touch`](SessionStore::touch) | moves expiry later, never earlier | [`StoreError::Gone`] |
//! | [`rename`](SessionStore::rename) | moves the record to the new key and applies the change, in one step; if that leaves it empty, deletes it and reports [`StoreError::Gone`] | [`StoreError::Gone`] |
//! | [`delete`](SessionStore::delete) | removes it, `true` | `false` |
//!
//! Off the request path, [`Maintenance::delete_expired`] removes at most `limit` expired
//! records per call, so cleanup runs as many short steps rather than one giant `DELETE` (the
//! [`cleanup`](crate::cleanup) engine drives them); each call says
//! where the next one should start ([`ExpiredBatch::next`]), so a run walks the expiry index
//! once instead of stepping again over the entries of the records it already deleted. Stores
//! whose records expire by themselves (Redis) say so through
//! [`Maintenance::removes_expired_itself`].
//!
//! The conformance suite in this crate's `tests/` runs every store against this table.
//!
//! # The user index
//!
//! Stores that can list a user's sessions say so through
//! [`user_index`](SessionStore::user_index). A record is filed under the user named by its
//! [`USER_KEY`] value, which stores read from the record on
//! [`create`](SessionStore::create) and from the change ([`Change::user`]) on
//! [`update`](SessionStore::update) and [`rename`](SessionStore::rename): the index follows the
//! data in the same atomic step, with no separate write to forget.

use std::error::Error as StdError;
use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

#[cfg(feature = "cached")]
mod cached;
pub(crate) mod counting;
#[cfg(all(
    feature = "django",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
pub mod django;
mod exclusive;
mod maintenance;
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
pub(crate) mod url;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub use crate::id::{IdError, IdFormat, SessionId, StorageKey};
pub use crate::record::{is_empty, Change, Data, ExpiryChange, Record, RESERVED_PREFIX, USER_KEY};
#[cfg(feature = "cached")]
pub use cached::CachedStore;
#[cfg(all(
    feature = "django",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
pub use django::DjangoStore;
pub use exclusive::{ExclusiveGuard, HeldLock};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use maintenance::Place;
pub use maintenance::{ExpiredBatch, Maintenance, RecordCounts, Sweep, SweepPosition, SweptBatch};
#[cfg(feature = "memory")]
pub use memory::MemoryStore;
#[cfg(feature = "mysql")]
pub use mysql::MySqlStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;
pub use stats::{Stats, StatsOptions};
pub use url::{open, supported_urls, StoreUrlError};

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

    /// The store's user index, if it keeps one.
    fn user_index(&self) -> Option<&dyn UserIndex> {
        None
    }

    /// The form of this store's session ids, and what it files sessions under.
    fn id_format(&self) -> IdFormat {
        IdFormat::Native
    }

    /// The store's maintenance capability (counting, deleting expired records, schema,
    /// statistics), if it offers one: what the [`Reaper`](crate::reaper::Reaper) and the
    /// `tidysession` command use. Off the request path.
    fn maintenance(&self) -> Option<&dyn Maintenance> {
        None
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
    fn user_index(&self) -> Option<&dyn UserIndex> {
        (**self).user_index()
    }
    fn id_format(&self) -> IdFormat {
        (**self).id_format()
    }
    fn maintenance(&self) -> Option<&dyn Maintenance> {
        (**self).maintenance()
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
}

/// What [`SessionStore::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// The record was changed and still holds data.
    Kept,
    /// The change left the record without data, so it was deleted.
    Deleted,
}
