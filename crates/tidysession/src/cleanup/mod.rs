//! The cleanup engine: deletes expired sessions in short batches, sized by time and paced,
//! through the expiry index or, for a big backlog, in storage order. Both
//! [`Reaper`](crate::reaper::Reaper) and `tidysession clear` run it.
//!
//! Each batch is one short statement, so the table stays usable while a run goes on.
//!
//! - **Batches sized by time**: the first batch has [`with_first_batch`](Cleanup::with_first_batch)
//!   records; after each one the size moves so that a batch takes about
//!   [`with_batch_time`](Cleanup::with_batch_time) ([`INDEX_BATCH_TIME`] through the index,
//!   [`STORAGE_BATCH_TIME`] in storage order): at once down to what fits when a batch ran
//!   long, up by an eighth at most when a full batch ran short, between [`MIN_BATCH`] (or the
//!   first batch, if smaller) and [`with_largest_batch`](Cleanup::with_largest_batch). A batch's locks
//!   and the write burst of its commit last about that long, whatever the records cost on
//!   this database, this table and this load.
//! - **Paced**: after each batch the run pauses as long as the batch took, so it keeps the
//!   database busy at most about half the time. [`with_max_rate`](Cleanup::with_max_rate) caps records
//!   per second on top of that.
//! - **One walk through the index** ([`Order::Index`]): each batch starts at the expiry where
//!   the one before stopped (the cursor [`Maintenance::delete_expired`] returns), instead of
//!   stepping again over the index entries of every record deleted so far, which PostgreSQL
//!   keeps until a vacuum and InnoDB until its purge.
//! - **A big backlog in storage order** ([`Order::Storage`], on stores with a
//!   [`Sweep`](crate::store::Sweep)): each page is written once with all its expired rows, instead of once per row
//!   in an order that is random on disk. [`Order::for_backlog`] picks it when at least a
//!   quarter of the records are expired. Batches are sized and paced the same way, the size
//!   counting the records a batch looks at.
//! - **Nothing left behind**: a cursor can step past a row another cleaner held, a batch
//!   that rolled back, or a row written already expired behind it. So a
//!   [final pass](Cleanup::with_final_pass) walks the range again, in windows bounded by the
//!   cursors the walk took (each as short as one batch), and a sweep sweeps the ranges where
//!   rows were held once more.
//! - **Resumable and safe side by side**: every batch is its own transaction that deletes
//!   only expired records, so an interrupted run loses nothing, and two runs at once only
//!   share the work.
//! - **Bounded on request**: [`with_max_batches`](Cleanup::with_max_batches),
//!   [`with_max_duration`](Cleanup::with_max_duration), a [stop signal](Cleanup::with_stop_signal) (which also
//!   cuts a pause short), a [timeout per store call](Cleanup::with_call_timeout), and
//!   [`Hooks::before_batch`] (the reaper checks there that its lock is still held).
//!
//! `docs/cleanup.md` in the repository has the measurements behind the defaults.
//!
//! ```no_run
//! # async fn run(store: &dyn tidysession::store::Maintenance) -> Result<(), tidysession::StoreError> {
//! use tidysession::cleanup::{Cleanup, Order};
//! use time::OffsetDateTime;
//!
//! let cutoff = OffsetDateTime::now_utc();
//! let order = Order::for_backlog(store, store.count(cutoff).await?);
//! let report = Cleanup::new()
//!     .with_order(order)
//!     .with_max_rate(5_000)
//!     .run(store, cutoff)
//!     .await?;
//! println!(
//!     "deleted {} in {} batches of {} to {} records",
//!     report.deleted, report.batches, report.smallest, report.largest
//! );
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::store::{Maintenance, RecordCounts, StoreError};

mod run;
mod size;
mod sweep;
mod walk;

pub(crate) use run::TimedOut;

/// The first batch unless told otherwise: on a local PostgreSQL, 1,000 native rows took a few
/// milliseconds.
pub const DEFAULT_FIRST_BATCH: u32 = 1000;
/// The smallest batch the size shrinks to (unless the first batch is smaller).
pub const MIN_BATCH: u32 = 10;
/// The largest batch the size grows to unless told otherwise.
pub const MAX_BATCH: u32 = 100_000;
/// What a batch aims to take walking the expiry index, unless told otherwise.
pub const INDEX_BATCH_TIME: Duration = Duration::from_millis(20);
/// What a batch aims to take sweeping in storage order, unless told otherwise: less than
/// through the index, because a sweep batch writes far more log per millisecond, and every
/// commit of the site's behind it waits for that log to reach the disk.
pub const STORAGE_BATCH_TIME: Duration = Duration::from_millis(2);

/// How a run goes through the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Order {
    /// In expiry order, through the expiry index: what a small backlog wants.
    #[default]
    Index,
    /// In the order rows sit on disk ([`Maintenance::sweep`]), for a big backlog. A store
    /// without a sweep is walked through the index instead.
    Storage,
}

impl Order {
    /// [`Storage`](Self::Storage) when `store` can sweep and [`worth_sweeping`] says so for
    /// `counts`; [`Index`](Self::Index) otherwise.
    pub fn for_backlog(store: &dyn Maintenance, counts: RecordCounts) -> Self {
        if store.sweep().is_some() && worth_sweeping(counts) {
            Self::Storage
        } else {
            Self::Index
        }
    }
}

/// Whether a sweep in storage order pays: when at least a quarter of the records are
/// expired, reading every page once costs less than visiting the expired rows one by one.
pub fn worth_sweeping(counts: RecordCounts) -> bool {
    counts.expired > 0 && counts.expired.saturating_mul(4) >= counts.expired + counts.live
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// The order it went in (a store without a sweep is walked through the index).
    pub order: Order,
    /// Expired records deleted.
    pub deleted: u64,
    /// Batches run, the final pass's included.
    pub batches: u64,
    /// The smallest batch, in records (0 without batches).
    pub smallest: u32,
    /// The largest batch, in records.
    pub largest: u32,
    /// How long the longest batch took.
    pub longest: Duration,
    /// How long the run paused between batches, in all.
    pub paused: Duration,
    /// Batches of the final pass.
    pub final_batches: u64,
    /// Records the final pass deleted (counted in `deleted` too).
    pub final_deleted: u64,
    /// The run stopped at a limit, a stop signal or [`Hooks::before_batch`] before it was
    /// done: more expired records may remain.
    pub more_left: bool,
    /// Where a walk through the index stopped short (with [`more_left`](Self::more_left)):
    /// a next run given it ([`Cleanup::with_start_at`]) goes on from there instead of stepping
    /// again over what this one deleted. `None` after a sweep or a finished walk.
    pub cursor: Option<OffsetDateTime>,
}

/// One batch, as [`Hooks::after_batch`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Batch {
    /// Records it was allowed (through the index) or looked at (in storage order).
    pub size: u32,
    /// Records it deleted.
    pub deleted: u64,
    /// How long it took.
    pub took: Duration,
    /// Whether it was part of the final pass.
    pub final_pass: bool,
}

/// What a caller sees and decides while a run goes on; every method has a default, and `()`
/// takes them all.
#[async_trait]
pub trait Hooks: Send {
    /// Before each batch, with what the run did so far: `Ok(true)` runs it, `Ok(false)` ends
    /// the run ([`more_left`](CleanupReport::more_left)), an error fails it.
    async fn before_batch(&mut self, so_far: &CleanupReport) -> Result<bool, StoreError> {
        let _ = so_far;
        Ok(true)
    }

    /// After each batch (before the pause that follows it), with the run's totals so far:
    /// for a progress bar, metrics, or what was done before an error.
    fn after_batch(&mut self, batch: &Batch, so_far: &CleanupReport) {
        let _ = (batch, so_far);
    }
}

impl Hooks for () {}

/// A cleanup run's plan: batch sizes and time, pacing, order and limits; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct Cleanup {
    first_batch: u32,
    largest_batch: u32,
    batch_time: Option<Duration>,
    max_rate: Option<u32>,
    order: Order,
    start_at: Option<OffsetDateTime>,
    final_pass: bool,
    max_batches: Option<u64>,
    max_duration: Option<Duration>,
    call_timeout: Option<Duration>,
    stop: Option<watch::Receiver<bool>>,
}

impl Default for Cleanup {
    fn default() -> Self {
        Self::new()
    }
}

impl Cleanup {
    /// The defaults: a first batch of [`DEFAULT_FIRST_BATCH`] records, growing to
    /// [`MAX_BATCH`] at most, each aiming at [`INDEX_BATCH_TIME`] (or [`STORAGE_BATCH_TIME`]),
    /// through the index, with a final pass, no rate cap and no limits.
    pub fn new() -> Self {
        Self {
            first_batch: DEFAULT_FIRST_BATCH,
            largest_batch: MAX_BATCH,
            batch_time: None,
            max_rate: None,
            order: Order::Index,
            start_at: None,
            final_pass: true,
            max_batches: None,
            max_duration: None,
            call_timeout: None,
            stop: None,
        }
    }

    /// Records in the first batch (at least 1); later ones grow or shrink to take about
    /// [`with_batch_time`](Self::with_batch_time).
    pub fn with_first_batch(mut self, records: u32) -> Self {
        self.first_batch = records.max(1);
        self
    }

    /// Records a batch grows to at most (at least 1; default [`MAX_BATCH`]).
    pub fn with_largest_batch(mut self, records: u32) -> Self {
        self.largest_batch = records.max(1);
        self
    }

    /// How long a batch should take (each batch is one transaction). Default
    /// [`INDEX_BATCH_TIME`] through the index, [`STORAGE_BATCH_TIME`] in storage order.
    pub fn with_batch_time(mut self, time: Duration) -> Self {
        self.batch_time = Some(time);
        self
    }

    /// At most this many records deleted per second (at least 1): batches are spaced out,
    /// and none holds more than a second's worth.
    pub fn with_max_rate(mut self, records_per_second: u32) -> Self {
        self.max_rate = Some(records_per_second.max(1));
        self
    }

    /// Through the index or in storage order (default [`Order::Index`]; see
    /// [`Order::for_backlog`]).
    pub fn with_order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Starts a walk through the index at this expiry (a [`CleanupReport::cursor`]) instead
    /// of the beginning; its final pass starts there too. Records that expired before it are
    /// left to a later walk from the beginning. A sweep ignores it.
    pub fn with_start_at(mut self, cursor: Option<OffsetDateTime>) -> Self {
        self.start_at = cursor;
        self
    }

    /// Whether the run ends with a final pass over what it went through (default yes). Without
    /// one, records its cursor stepped past are left for the next run from the start.
    pub fn with_final_pass(mut self, on: bool) -> Self {
        self.final_pass = on;
        self
    }

    /// Batches per run at most (at least 1); the run then stops with
    /// [`more_left`](CleanupReport::more_left).
    pub fn with_max_batches(mut self, batches: u64) -> Self {
        self.max_batches = Some(batches.max(1));
        self
    }

    /// Time per run at most: no batch starts after it, and no pause lasts past it.
    pub fn with_max_duration(mut self, duration: Duration) -> Self {
        self.max_duration = Some(duration);
        self
    }

    /// How long one store call may take before the run fails with an error (default: no
    /// bound beyond the store's own).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// Stops the run once `stop` turns true: after the batch under way, cutting its pause
    /// short.
    pub fn with_stop_signal(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// The first batch's size as the run will use it (a rate cap can lower it).
    pub fn planned_first_batch(&self) -> u32 {
        size::Sizing::new(self, Duration::ZERO).first()
    }

    /// What a batch will aim to take in `order`.
    pub fn planned_batch_time(&self, order: Order) -> Duration {
        self.batch_time.unwrap_or(match order {
            Order::Index => INDEX_BATCH_TIME,
            Order::Storage => STORAGE_BATCH_TIME,
        })
    }

    /// Deletes the records of `store` that expired by `cutoff` (a fixed cutoff bounds the
    /// work: records that expire during the run wait for the next).
    ///
    /// # Errors
    ///
    /// The first store error (or a call past the [timeout](Self::with_call_timeout)) ends the
    /// run. Every batch is its own transaction, so a failed run leaves nothing half done.
    pub async fn run(
        &self,
        store: &dyn Maintenance,
        cutoff: OffsetDateTime,
    ) -> Result<CleanupReport, StoreError> {
        self.run_with(store, cutoff, &mut ()).await
    }

    /// [`run`](Self::run), calling `hooks` around each batch.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), and an error of [`Hooks::before_batch`]; what the run did before
    /// is what [`Hooks::after_batch`] last saw.
    pub async fn run_with(
        &self,
        store: &dyn Maintenance,
        cutoff: OffsetDateTime,
        hooks: &mut dyn Hooks,
    ) -> Result<CleanupReport, StoreError> {
        let sweep = match self.order {
            Order::Storage => store.sweep(),
            Order::Index => None,
        };
        let order = if sweep.is_some() {
            Order::Storage
        } else {
            Order::Index
        };
        let mut run = run::Runner::new(self, order, hooks);
        match sweep {
            Some(sweep) => sweep::by_sweep(&mut run, sweep, cutoff).await?,
            None => walk::by_index(&mut run, store, cutoff, self.start_at).await?,
        }
        Ok(run.finish())
    }
}
