//! [`Reaper`]: a background task that deletes expired sessions in short, bounded batches.
//!
//! Expiry is enforced on every load (I9) whatever the reaper does; it only keeps the table
//! from filling up with dead records. Every run:
//!
//! 1. takes the store's exclusive lock ([`Maintenance::try_exclusive`]) without waiting, so
//!    that of all the processes sharing a store only one deletes at a time; the others skip
//!    the run (`skipped_because_locked`) and try again at their next one;
//! 2. runs the [cleanup engine](crate::cleanup) through the expiry index: batches of
//!    [`delete_expired`](Maintenance::delete_expired), each starting where the one before
//!    stopped (the cursor it returns), the first of [`with_batch_size`](Reaper::with_batch_size)
//!    records and each next one sized to take about [`with_batch_time`](Reaper::with_batch_time)
//!    (20 ms; never more than `batch_size`), with a pause as long as each batch took, until a
//!    batch reaches the end, or [`with_max_batches`](Reaper::with_max_batches) or
//!    [`with_max_duration`](Reaper::with_max_duration) is reached, checking before each batch that the
//!    lock is still held;
//! 3. releases the lock and reports what it did ([`ReaperReport`]: through
//!    [`ReaperHandle::reports`], an [`on_report`](Reaper::with_report_callback) callback, `tracing`
//!    and the [metrics]).
//!
//! A run always walks the index, never sweeps in storage order, and has no final pass. A
//! reaper that keeps up holds a small backlog (what expired since the last run), which the
//! index finds without reading the rest of the table; deciding to sweep would take a count of
//! the whole table every run, and a sweep must go through all of it to be worth anything,
//! which a bounded run does not. A run that stops at a limit leaves its cursor to the next run
//! of the same reaper, which goes on from there: starting over would step again over the index
//! entries of every record deleted so far (PostgreSQL keeps them until a vacuum, InnoDB until
//! its purge), a cost that grows with each run. A run that reaches the end (or fails) leaves
//! none, so the next starts from the beginning and finds what a cursor stepped past (a row
//! another transaction held, one written already expired behind it). A big backlog (a table
//! never cleaned, a long outage) is `tidysession clear`'s job: it sweeps in storage order.
//!
//! Runs start on a jittered interval (±[`with_jitter`](Reaper::with_jitter) of
//! [`with_interval`](Reaper::with_interval)), so that processes started together do not all wake at
//! once. A failed run (store down, a panicking store) is reported and retried after an
//! exponential backoff, capped; the task never ends on its own. Stores that expire records
//! themselves (Redis) need no reaper: it reports that once and idles.
//!
//! ```no_run
//! # async fn run() -> Result<(), tidysession::StoreError> {
//! use std::time::Duration;
//! use tidysession::{reaper::Reaper, store::{Maintenance, PostgresStore}};
//!
//! let store = std::sync::Arc::new(PostgresStore::connect("postgres://app@db/app").await?);
//! store.migrate().await?;
//! let reaper = Reaper::new(store.clone())
//!     .with_interval(Duration::from_secs(60))
//!     .with_batch_size(1000)
//!     .spawn()
//!     .expect("inside a tokio runtime");
//! // ... serve requests with `SessionLayer::from_arc(store)` ...
//! reaper.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cleanup::{Batch, Cleanup, CleanupReport, Hooks, Order, TimedOut, INDEX_BATCH_TIME};
use crate::metrics::{self, ReaperRun};
use crate::store::{ExclusiveGuard, Maintenance, SessionStore, StoreError};

/// The lock name reapers take unless told otherwise (see [`Reaper::with_lock_name`]).
pub const DEFAULT_LOCK_NAME: &str = "tidysession_reaper";

type Callback = Arc<dyn Fn(&ReaperReport) + Send + Sync>;

/// Deletes expired sessions in the background; see the [module docs](self).
#[derive(Clone)]
pub struct Reaper {
    store: Arc<dyn SessionStore>,
    interval: Duration,
    jitter: f64,
    first_run: Option<Duration>,
    batch_size: u32,
    batch_time: Duration,
    max_batches: u32,
    max_duration: Duration,
    call_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    shutdown_grace: Duration,
    lock_name: String,
    on_report: Option<Callback>,
    /// Where the last run's walk stopped short, for the next run to go on from.
    cursor: Arc<Mutex<Option<OffsetDateTime>>>,
}

impl fmt::Debug for Reaper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reaper")
            .field("store", &self.store)
            .field("interval", &self.interval)
            .field("jitter", &self.jitter)
            .field("batch_size", &self.batch_size)
            .field("batch_time", &self.batch_time)
            .field("max_batches", &self.max_batches)
            .field("max_duration", &self.max_duration)
            .field("lock_name", &self.lock_name)
            .finish_non_exhaustive()
    }
}

/// What one reaper run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaperReport {
    /// Expired records deleted.
    pub deleted: u64,
    /// `delete_expired` batches run.
    pub batches: u64,
    /// Another process held the lock, so this run did nothing.
    pub skipped_because_locked: bool,
    /// The store deletes expired records by itself; the reaper has nothing to do.
    pub store_expires_itself: bool,
    /// The run stopped at [`with_max_batches`](Reaper::with_max_batches) or
    /// [`with_max_duration`](Reaper::with_max_duration) with full batches: more expired records may
    /// remain for the next run.
    pub more_left: bool,
    /// Why the run failed, if it did (what was deleted before the failure is counted above).
    pub error: Option<String>,
    /// How long the run took.
    pub duration: Duration,
    /// The smallest batch, in records (0 without batches).
    pub smallest_batch: u32,
    /// The largest batch, in records.
    pub largest_batch: u32,
    /// How long the longest batch took.
    pub longest_batch: Duration,
    /// How long the run paused between batches, in all.
    pub paused: Duration,
}

impl Reaper {
    /// A reaper for `store` with the defaults: every 5 minutes ±10 %, batches of 1000, at most
    /// 100 batches or 30 seconds per run, backoff from 1 second to 5 minutes.
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A reaper for a shared store.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            interval: Duration::from_secs(300),
            jitter: 0.1,
            first_run: None,
            batch_size: 1000,
            batch_time: INDEX_BATCH_TIME,
            max_batches: 100,
            max_duration: Duration::from_secs(30),
            call_timeout: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(5),
            lock_name: DEFAULT_LOCK_NAME.to_owned(),
            on_report: None,
            cursor: Arc::default(),
        }
    }

    /// Time between runs (before jitter). At least 1 millisecond.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How far each wait may stray from [`with_interval`](Self::with_interval), as a fraction of it
    /// (0 to 1; default 0.1, i.e. ±10 %).
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// When the first run starts after [`spawn`](Self::spawn). Default: a random moment
    /// within the first [`with_jitter`](Self::with_jitter) × [`with_interval`](Self::with_interval).
    pub fn with_first_run_after(mut self, delay: Duration) -> Self {
        self.first_run = Some(delay);
        self
    }

    /// Records in a run's first batch, and the most a batch grows to (default 1000; at least
    /// 1). Each batch is one short statement; one that runs longer than
    /// [`with_batch_time`](Self::with_batch_time) shrinks the next to fit (down to
    /// [`MIN_BATCH`](crate::cleanup::MIN_BATCH), or this size if smaller), and full batches
    /// that run short grow back, up to this size.
    pub fn with_batch_size(mut self, size: u32) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// How long a batch should take (default [`INDEX_BATCH_TIME`], 20 ms): its locks and the
    /// write burst of its commit last about that long, whatever a record costs on this
    /// database, this table and this load. The run pauses as long as each batch took.
    pub fn with_batch_time(mut self, time: Duration) -> Self {
        self.batch_time = time;
        self
    }

    /// Batches per run at most (default 100). At least 1.
    pub fn with_max_batches(mut self, batches: u32) -> Self {
        self.max_batches = batches.max(1);
        self
    }

    /// Time per run at most; no batch starts after it (default 30 seconds).
    pub fn with_max_duration(mut self, duration: Duration) -> Self {
        self.max_duration = duration;
        self
    }

    /// How long one store call (taking the lock, one batch) may take before the run gives
    /// up with an error (default 30 seconds).
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The wait after a failed run, doubled after each further failure up to `max`
    /// (defaults 1 second and 5 minutes). Jittered like the interval.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial.max(Duration::from_millis(1));
        self.backoff_max = max.max(self.backoff_initial);
        self
    }

    /// How long [`ReaperHandle::shutdown`] lets a run in progress finish its current batch
    /// (default 5 seconds); after that the run is dropped mid-call, which closes its
    /// connection and frees the lock, and its report is lost.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The exclusive lock's name (default [`DEFAULT_LOCK_NAME`]). Reapers sharing a store and
    /// a name run one at a time. Server-backed stores qualify it with their schema or table.
    pub fn with_lock_name(mut self, name: impl Into<String>) -> Self {
        self.lock_name = name.into();
        self
    }

    /// Calls `f` with every run's report, from the reaper's task. Keep it short.
    pub fn with_report_callback(
        mut self,
        f: impl Fn(&ReaperReport) + Send + Sync + 'static,
    ) -> Self {
        self.on_report = Some(Arc::new(f));
        self
    }

    /// Runs once now: takes the lock, deletes batches, releases the lock. Never fails; a
    /// failure is in the report.
    pub async fn run_once(&self) -> ReaperReport {
        self.run_until(None).await
    }

    /// Runs once; stops after the current batch when `stop` turns true.
    async fn run_until(&self, stop: Option<watch::Receiver<bool>>) -> ReaperReport {
        let started = Instant::now();
        let mut report = ReaperReport::default();
        let outcome = self.run(&mut report, started, stop.as_ref()).await;
        report.duration = started.elapsed();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                report.error = Some(e.to_string());
                ReaperRun::Error
            }
        };
        metrics::reaper_run(outcome, report.batches, report.deleted);
        report
    }

    async fn run(
        &self,
        report: &mut ReaperReport,
        started: Instant,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<ReaperRun, StoreError> {
        let store = self
            .store
            .maintenance()
            .ok_or_else(|| StoreError::backend(NoMaintenance))?;
        if store.removes_expired_itself() {
            report.store_expires_itself = true;
            return Ok(ReaperRun::SelfExpiring);
        }
        let lock = self.within(store.try_exclusive(&self.lock_name)).await?;
        let Some(mut lock) = lock else {
            report.skipped_because_locked = true;
            return Ok(ReaperRun::Locked);
        };
        let result = self.batches(store, report, started, stop, &mut lock).await;
        // Released on every path; a release that fails is dropped, which frees it too.
        let _ = tokio::time::timeout(self.call_timeout, lock.release()).await;
        result.map(|()| ReaperRun::Done)
    }

    async fn batches(
        &self,
        store: &dyn Maintenance,
        report: &mut ReaperReport,
        started: Instant,
        stop: Option<&watch::Receiver<bool>>,
        lock: &mut ExclusiveGuard,
    ) -> Result<(), StoreError> {
        let mut plan = Cleanup::new()
            .with_first_batch(self.batch_size)
            .with_largest_batch(self.batch_size)
            .with_batch_time(self.batch_time)
            .with_order(Order::Index)
            // Where the last run stopped short: not again over the index entries of what it
            // deleted, which PostgreSQL keeps until a vacuum and InnoDB until its purge.
            .with_start_at(*self.cursor.lock().unwrap_or_else(PoisonError::into_inner))
            // What a cursor stepped past (a row another process held) is found by the first
            // run after one that reached the end, which starts from the beginning, without
            // reading the range twice in this one.
            .with_final_pass(false)
            .with_max_batches(u64::from(self.max_batches))
            .with_max_duration(self.max_duration.saturating_sub(started.elapsed()))
            .with_call_timeout(self.call_timeout);
        if let Some(stop) = stop {
            plan = plan.with_stop_signal(stop.clone());
        }
        let mut hooks = RunHooks {
            lock,
            so_far: CleanupReport::default(),
        };
        let result = plan
            .run_with(store, OffsetDateTime::now_utc(), &mut hooks)
            .await;
        let done = match &result {
            Ok(done) => done,
            Err(_) => &hooks.so_far,
        };
        // After a failure, from the beginning.
        *self.cursor.lock().unwrap_or_else(PoisonError::into_inner) =
            result.as_ref().ok().and_then(|done| done.cursor);
        report.deleted = done.deleted;
        report.batches = done.batches;
        report.more_left = done.more_left;
        report.smallest_batch = done.smallest;
        report.largest_batch = done.largest;
        report.longest_batch = done.longest;
        report.paused = done.paused;
        result.map(|_| ())
    }

    async fn within<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.call_timeout, call)
            .await
            .unwrap_or_else(|_| Err(StoreError::backend(TimedOut(self.call_timeout))))
    }

    /// Starts the reaper on the current tokio runtime. Dropping the handle stops it, as does
    /// [`ReaperHandle::shutdown`].
    ///
    /// # Errors
    ///
    /// [`NoRuntime`] when called outside a tokio runtime.
    pub fn spawn(self) -> Result<ReaperHandle, NoRuntime> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| NoRuntime)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (report_tx, report_rx) = watch::channel(ReaperReport::default());
        let task = runtime.spawn(self.run_forever(stop_rx, report_tx));
        Ok(ReaperHandle {
            stop: stop_tx,
            task,
            reports: report_rx,
        })
    }

    async fn run_forever(
        self,
        mut stop: watch::Receiver<bool>,
        reports: watch::Sender<ReaperReport>,
    ) {
        let this = Arc::new(self);
        let mut wait = this
            .first_run
            .unwrap_or_else(|| scale(this.interval, this.jitter * random_fraction()));
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            // Each run in a task of its own: a store that panics fails the run, not the reaper.
            let mut run = tokio::spawn({
                let (this, stop) = (this.clone(), stop.clone());
                async move { this.run_until(Some(stop)).await }
            });
            let (joined, stopping) = tokio::select! {
                joined = &mut run => (joined, false),
                _ = stop.changed() => {
                    // The run stops after its current batch; past the grace, it is dropped
                    // mid-call, which closes its connection and frees the lock.
                    match tokio::time::timeout(this.shutdown_grace, &mut run).await {
                        Ok(joined) => (joined, true),
                        Err(_) => {
                            run.abort();
                            tracing::warn!("session reaper run cut short by shutdown");
                            break;
                        }
                    }
                }
            };
            let report = joined.unwrap_or_else(|e| {
                metrics::reaper_run(ReaperRun::Error, 0, 0);
                ReaperReport {
                    error: Some(if e.is_panic() {
                        "the run panicked".to_owned()
                    } else {
                        "the run was cancelled".to_owned()
                    }),
                    ..ReaperReport::default()
                }
            });
            this.log(&report);
            if let Some(f) = &this.on_report {
                f(&report);
            }
            if stopping {
                reports.send_replace(report);
                break;
            }
            let idle = report.store_expires_itself;
            wait = if report.error.is_some() {
                failures = failures.saturating_add(1);
                this.backoff_after(failures)
            } else {
                failures = 0;
                this.jittered(this.interval)
            };
            reports.send_replace(report);
            if idle {
                // Nothing will ever be left to do: wait for the end.
                let _ = stop.wait_for(|stopped| *stopped).await;
                break;
            }
        }
        tracing::debug!("session reaper stopped");
    }

    fn log(&self, report: &ReaperReport) {
        if let Some(error) = &report.error {
            tracing::warn!(
                %error,
                deleted = report.deleted,
                batches = report.batches,
                "session reaper run failed; retrying after a backoff"
            );
        } else if report.store_expires_itself {
            tracing::info!("the session store expires records itself; the reaper idles");
        } else if report.skipped_because_locked {
            tracing::debug!("session reaper skipped a run: another process holds the lock");
        } else {
            tracing::info!(
                deleted = report.deleted,
                batches = report.batches,
                more_left = report.more_left,
                took_ms = report.duration.as_millis() as u64,
                "session reaper run"
            );
        }
    }

    fn backoff_after(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        let wait = self
            .backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max);
        self.jittered(wait)
    }

    fn jittered(&self, base: Duration) -> Duration {
        // Uniform in [base × (1 − jitter), base × (1 + jitter)].
        let spread = self.jitter * (2.0 * random_fraction() - 1.0);
        scale(base, 1.0 + spread)
    }
}

/// `d × factor`, saturating; never panics (unlike `Duration::mul_f64`) for any factor.
fn scale(d: Duration, factor: f64) -> Duration {
    let factor = if factor.is_finite() {
        factor.max(0.0)
    } else {
        1.0
    };
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

/// A random number in [0, 1); 0.5 if the system has no randomness to give.
fn random_fraction() -> f64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// A running [`Reaper`]. Dropping it stops the reaper (without waiting).
#[derive(Debug)]
#[must_use = "dropping the handle stops the reaper"]
pub struct ReaperHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    reports: watch::Receiver<ReaperReport>,
}

impl ReaperHandle {
    /// The latest run's report, updated after every run.
    pub fn reports(&self) -> watch::Receiver<ReaperReport> {
        self.reports.clone()
    }

    /// Stops the reaper and waits until it has: a run in progress ends after its current
    /// batch, or is dropped mid-call after the [grace](Reaper::with_shutdown_grace).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    /// Whether the reaper's task has ended (only after a shutdown).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// [`Reaper::spawn`] was called outside a tokio runtime.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("Reaper::spawn needs a tokio runtime")]
pub struct NoRuntime;

/// The lock a run worked under was lost (its connection went away).
#[derive(Debug, thiserror::Error)]
#[error("the reaper's lock was lost (its connection went away); stopping this run")]
struct LockLost;

/// What a run needs around each batch: the lock still held before it (but the first, just
/// taken), the batch's latency in the metrics after it, and the totals so far (the report of
/// a run that fails).
struct RunHooks<'a> {
    lock: &'a mut ExclusiveGuard,
    so_far: CleanupReport,
}

#[async_trait::async_trait]
impl Hooks for RunHooks<'_> {
    async fn before_batch(&mut self, so_far: &CleanupReport) -> Result<bool, StoreError> {
        if so_far.batches > 0 && !self.lock.still_held().await {
            return Err(StoreError::backend(LockLost));
        }
        Ok(true)
    }

    fn after_batch(&mut self, batch: &Batch, so_far: &CleanupReport) {
        metrics::reaper_batch(batch.took);
        self.so_far = so_far.clone();
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use std::time::Duration;

    use super::{random_fraction, Reaper};
    use crate::store::MemoryStore;

    #[test]
    fn spawning_outside_a_runtime_is_an_error_not_a_panic() {
        assert!(Reaper::new(MemoryStore::default()).spawn().is_err());
    }

    #[test]
    fn jitter_stays_within_its_bounds_and_backoff_is_capped() {
        let reaper = Reaper::new(MemoryStore::default())
            .with_interval(Duration::from_secs(100))
            .with_jitter(0.2)
            .with_backoff(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..1000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
            let wait = reaper.jittered(Duration::from_secs(100));
            assert!(wait >= Duration::from_secs(80) && wait <= Duration::from_secs(120));
        }
        let b1 = reaper.backoff_after(1);
        assert!(b1 >= Duration::from_millis(800) && b1 <= Duration::from_millis(1200));
        let b3 = reaper.backoff_after(3);
        assert!(b3 >= Duration::from_millis(3200) && b3 <= Duration::from_millis(4800));
        let huge = Reaper::new(MemoryStore::default())
            .with_interval(Duration::MAX)
            .with_jitter(1.0)
            .with_backoff(Duration::MAX, Duration::MAX);
        for _ in 0..100 {
            let _ = huge.jittered(Duration::MAX);
            let _ = huge.backoff_after(u32::MAX);
        }
        for failures in [7, 50, u32::MAX] {
            assert!(reaper.backoff_after(failures) <= Duration::from_secs(72));
        }
    }
}

/// The store offers no [`Maintenance`]: the reaper has nothing to run on it.
#[derive(Debug, thiserror::Error)]
#[error(
    "this session store offers no maintenance (SessionStore::maintenance is None): nothing to reap"
)]
struct NoMaintenance;
