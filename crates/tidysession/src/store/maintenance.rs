//! [`Maintenance`]: what a store offers off the request path, to the
//! [`Reaper`](crate::reaper::Reaper) and the `tidysession` command.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{ExclusiveGuard, Stats, StatsOptions, StoreError};

/// A store capability: counting, deleting expired records, the schema, statistics and an
/// exclusive lock for cleaners, reached through
/// [`SessionStore::maintenance`](super::SessionStore::maintenance). Every store in this crate
/// offers it; the layer never calls it.
///
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::store::{Maintenance, SqliteStore};
///
/// let store = SqliteStore::open("sessions.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Maintenance: Send + Sync + fmt::Debug {
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

    /// Statistics about what the store holds at `now` (see [`stats`](super::stats)): exact
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

#[async_trait]
impl<M: Maintenance + ?Sized> Maintenance for std::sync::Arc<M> {
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
    fn sweep(&self) -> Option<&dyn Sweep> {
        (**self).sweep()
    }
    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        (**self).try_exclusive(name).await
    }
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        (**self).stats(now, options).await
    }
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

/// What one [`Maintenance::delete_expired`](crate::store::Maintenance::delete_expired) call did.
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

impl RecordCounts {
    /// From a database's two counts: every record, and the expired among them.
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "django"))]
    pub(crate) fn of_total(total: i64, expired: i64) -> Self {
        let expired = expired.max(0);
        Self {
            live: total.saturating_sub(expired).max(0) as u64,
            expired: expired as u64,
        }
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
