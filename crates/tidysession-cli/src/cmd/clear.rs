//! `tidysession clear`: delete expired sessions in small batches, through the expiry index or,
//! for a big backlog, in storage order.
//!
//! Each batch is one short statement, so the table stays usable while it runs.
//!
//! - **Batches sized by time**: the first batch has `--batch` rows; after each one the size
//!   moves so that a batch takes about `--batch-ms` (20 ms by default through the index, 2 ms
//!   in storage order): at once down to
//!   what fits when a batch ran long, up by an eighth at most when a full batch ran short,
//!   between 10 rows (or `--batch`, if smaller) and 100,000. A batch's locks and the write
//!   burst of its commit last about that long, whatever the rows cost on this database, this
//!   table and this load; the longest batch is reported at the end.
//! - **Paced**: after each batch, `clear` pauses as long as the batch took, so it keeps the
//!   database busy at most about half the time and the site's own queries get the rest.
//!   `--max-rate` caps rows per second on top of that.
//! - **A big backlog in storage order**: when at least a quarter of the records are expired
//!   and the store can ([`Maintenance::sweep`]: PostgreSQL by page, MySQL/MariaDB by primary
//!   key), `clear` sweeps the table in the order its rows sit on disk instead of walking the
//!   expiry index. Each page is then written once, with all its expired rows, instead of once
//!   per row in an order that is random on disk; on PostgreSQL that is also one full-page image
//!   in the WAL per page instead of nearly one per row. The batches are sized and paced the same
//!   way, the size counting the records a batch looks at, but aim at 2 ms instead of 20: a
//!   sweep writes its log several times faster, and a commit of the site's that lands during a
//!   batch waits until the log the batch wrote so far reaches the disk. (2 million PostgreSQL
//!   rows: batches of 20 ms had the probe's p99 at 4.1× its p99 before the run, batches of 5 ms
//!   at 1.7×, for 129,000 rows/s instead of 168,000. 10 million MariaDB rows: the probe's p99
//!   during a run 6.4–9.4 ms with 5 ms batches, 4.9–5.0 ms with 2 ms, against 2.5–6.1 ms
//!   before; a whole run 393–550 s instead of 454–528 s.) Rows another transaction held are
//!   stepped past (PostgreSQL) and their ranges swept once more at the end. Rows written
//!   already expired behind the sweep wait for the next run (no store writes those).
//! - **One walk through the index** otherwise: each batch starts at the expiry where the one before
//!   stopped (the cursor [`Maintenance::delete_expired`] returns), instead of stepping again
//!   over the index entries of every row deleted so far, which PostgreSQL keeps until a
//!   vacuum and InnoDB until its purge.
//! - **Nothing left behind**: a cursor can step past a row another cleaner held, a batch
//!   that rolled back, or a row written already expired behind it. So a final pass walks the
//!   range again, in windows bounded by the cursors the walk took (each window spans what one
//!   batch did, so it stays as short), and deletes what it finds.
//! - **Resumable**: every batch is its own transaction that deletes only rows already
//!   expired, so an interrupted run loses nothing and leaves nothing half done: run it again
//!   and it carries on with what is left.
//! - **Safe from several hosts at once**: on PostgreSQL a batch picks its rows
//!   `FOR UPDATE SKIP LOCKED`, so concurrent runs take disjoint batches instead of waiting on
//!   each other; on MySQL/MariaDB each batch reads where it will end through the index, then
//!   one `DELETE … ORDER BY expires_at LIMIT n` up to there locks its own rows (a deadlock
//!   victim is retried); on SQLite the database serialises writers. Two runs
//!   never delete a live session and never fail each other; they only share the work.
//! - **Redis** expires sessions by itself (`PEXPIREAT`), so there is nothing to delete; user
//!   index entries are trimmed whenever the index is written and each index key expires with
//!   its last session, so nothing needs pruning either.
//! - **Django tables** need no secret to clear: without `DJANGO_SECRET_KEY` the store opens
//!   for maintenance only.
//!
//! # Why these defaults
//!
//! Measured with `bench/scale.sh` (2 million native PostgreSQL rows, 90% expired, a probe
//! reading, inserting and updating 20 sessions a second in the same table) on a 2-core
//! machine with one disk; `docs/design.md` ("How does `clear` stay out of the site's way?")
//! has the figures. Batches of 50, 20 and 10 ms: the longest transaction was 103, 57 (157
//! in a second run) and 137 ms, the probe's p99 during the run 14.7, 8.9 and 11.6 ms, and 10 ms batches were the
//! slowest (more commits); so 20 ms, which also leaves room under the 200 ms a transaction
//! should stay below for the batch that meets a checkpoint. Pausing three times as long as
//! each batch instead of once halved the rate and left the probe's p99 where it was (8.8
//! against 8.9 ms): much of what is left of the tail lines up with the server's checkpoints,
//! which come at the same count per row deleted at any pace, so the pause is once the batch
//! time.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;
use tokio::time::Instant;

use tidysession::store::{Maintenance, RecordCounts, Sweep, SweepPosition, SweptBatch};

/// Arguments of `clear`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
    /// Rows in the first batch; later batches grow or shrink so that each takes about
    /// --batch-ms.
    #[arg(long, default_value_t = DEFAULT_BATCH, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH)))]
    batch: u32,
    /// How long a batch should take, in milliseconds (each batch is one transaction);
    /// `clear` pauses as long again after each. Default: 20 through the expiry index, 2 in
    /// storage order.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_ms: Option<u32>,
    /// At most this many rows deleted per second (batches are spaced out to keep to it).
    #[arg(long, value_name = "ROWS_PER_SEC", value_parser = clap::value_parser!(u32).range(1..))]
    max_rate: Option<u32>,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The first batch: on the local PostgreSQL, 1,000 native rows took a few milliseconds.
const DEFAULT_BATCH: u32 = 1000;
/// What a batch aims to take, in milliseconds, walking the expiry index (see the module docs).
const DEFAULT_BATCH_MS: u32 = 20;
/// What a batch aims to take, in milliseconds, sweeping in storage order: less, because a
/// sweep batch writes far more log per millisecond, and every commit of the site's behind it
/// waits for that log to reach the disk (see the module docs).
const DEFAULT_SWEEP_BATCH_MS: u32 = 2;
/// The smallest batch the size shrinks to (unless `--batch` starts smaller).
const MIN_BATCH: u32 = 10;
/// The largest batch the size grows to.
const MAX_BATCH: u32 = 100_000;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let opened = super::open_maintenance_store(&args.store).await?;
    // A fixed cutoff bounds the work: sessions that expire during the run wait for the next.
    let cutoff = OffsetDateTime::now_utc();
    let store = super::maintenance(&*opened)?;
    let counts = store.count(cutoff).await.context("counting sessions")?;
    if store.removes_expired_itself() {
        println!(
            "nothing to clear: this store deletes expired sessions by itself (each session's \
             key expires with it, through PEXPIREAT); {} live sessions",
            counts.live
        );
        return Ok(());
    }
    // A big backlog goes in storage order (see the module docs).
    let sweep = store.sweep().filter(|_| worth_sweeping(counts));
    let batch_ms = args.batch_ms.unwrap_or(match sweep {
        Some(_) => DEFAULT_SWEEP_BATCH_MS,
        None => DEFAULT_BATCH_MS,
    });
    let plan = Plan {
        first: args.batch,
        batch_time: Duration::from_millis(u64::from(batch_ms)),
        max_rate: args.max_rate,
    };
    if args.dry_run {
        let pace = match args.max_rate {
            Some(rate) => format!(
                ", at most {rate}/s (at least {}s)",
                counts.expired / u64::from(rate)
            ),
            None => String::new(),
        };
        println!(
            "dry run: {} expired sessions would be deleted {}, in batches of about {} ms (the \
             first of {} rows), each followed by a pause as long{pace}; {} live sessions \
             kept; nothing was deleted",
            counts.expired,
            order(sweep.is_some()),
            batch_ms,
            plan.first_batch(),
            counts.live
        );
        return Ok(());
    }
    let progress = Progress::new(counts.expired);
    let started = Instant::now();
    let done = match sweep {
        Some(sweep) => clear_by_sweep(sweep, cutoff, &plan, &progress).await?,
        None => clear(store, cutoff, &plan, &progress).await?,
    };
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "deleted {} expired sessions in {secs:.2}s ({:.0} sessions/s, longest batch {:.1} ms); \
         {} live sessions kept",
        done.deleted,
        done.deleted as f64 / secs.max(1e-9),
        done.longest.as_secs_f64() * 1000.0,
        counts.live
    );
    println!(
        "{}: {} batches of {} to {} rows, aiming at {} ms each; paused {:.3}s in all; the \
         final pass ({} batches) deleted {}",
        order(sweep.is_some()),
        done.batches,
        done.smallest,
        done.largest,
        batch_ms,
        done.paused.as_secs_f64(),
        done.final_batches,
        done.final_deleted
    );
    Ok(())
}

/// Whether a sweep in storage order pays: when at least a quarter of the records are
/// expired, reading every page once costs less than visiting the expired rows one by one.
fn worth_sweeping(counts: RecordCounts) -> bool {
    counts.expired > 0 && counts.expired.saturating_mul(4) >= counts.expired + counts.live
}

/// How a run goes through the table, in its output.
fn order(sweep: bool) -> &'static str {
    if sweep {
        "in storage order (at least a quarter of the sessions are expired)"
    } else {
        "in expiry order, through the expiry index"
    }
}

/// How to clear: the first batch, the time a batch should take, the rate cap.
#[derive(Debug, Clone)]
struct Plan {
    first: u32,
    batch_time: Duration,
    max_rate: Option<u32>,
}

impl Plan {
    /// The largest batch: never more than a second's worth of the allowed rate.
    fn max_batch(&self) -> u32 {
        self.max_rate.map_or(MAX_BATCH, |rate| rate.min(MAX_BATCH))
    }

    fn min_batch(&self) -> u32 {
        MIN_BATCH.min(self.first_batch())
    }

    fn first_batch(&self) -> u32 {
        self.first.min(self.max_batch())
    }

    /// The next batch's size, after a batch of `size` rows that took `took`: down at once to
    /// what fits in the batch time when it ran long; up by an eighth at most (and no further
    /// than what would fit) when it was full and ran short.
    fn next_batch(&self, size: u32, took: Duration, full: bool) -> u32 {
        let fits = u128::from(size) * self.batch_time.as_nanos() / took.as_nanos().max(1);
        let next = if took > self.batch_time {
            fits
        } else if full {
            fits.min(u128::from(size.saturating_add(size.div_ceil(8))))
        } else {
            u128::from(size)
        };
        let next = u32::try_from(next).unwrap_or(u32::MAX);
        next.clamp(self.min_batch(), self.max_batch())
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
struct Done {
    deleted: u64,
    batches: u64,
    smallest: u32,
    largest: u32,
    longest: Duration,
    paused: Duration,
    /// Batches of the final pass, and what they deleted.
    final_batches: u64,
    final_deleted: u64,
}

/// Deletes every session that expired by `cutoff`: one walk through the expiry index, each
/// batch from the cursor the one before returned, then a final pass over the same range in
/// windows bounded by those cursors (see the module docs).
async fn clear(
    store: &dyn Maintenance,
    cutoff: OffsetDateTime,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Done> {
    let mut walk = Walk::new(plan, progress);
    let mut cursors = Vec::new();
    walk.range(store, None, cutoff, Some(&mut cursors)).await?;
    let main = walk.done.clone();
    let mut from = None;
    for upper in cursors.into_iter().chain([cutoff]) {
        walk.range(store, from, upper, None).await?;
        from = Some(upper);
    }
    Ok(walk.finish(&main))
}

/// Deletes every session that expired by `cutoff` in storage order: batch after batch from
/// the position the one before returned, then each range where another transaction held
/// expired rows once more.
async fn clear_by_sweep(
    sweep: &dyn Sweep,
    cutoff: OffsetDateTime,
    plan: &Plan,
    progress: &Progress,
) -> anyhow::Result<Done> {
    let mut walk = Walk::new(plan, progress);
    let mut held = Vec::new();
    let mut from = sweep.start().await.context("starting the sweep")?;
    loop {
        let size = walk.size;
        let batch = walk.sweep(sweep, &from, cutoff, size).await?;
        if batch.held > 0 {
            held.push((from.clone(), size));
        }
        match batch.next {
            Some(next) => from = next,
            None => break,
        }
    }
    let main = walk.done.clone();
    for (from, size) in held {
        walk.sweep(sweep, &from, cutoff, size).await?;
    }
    Ok(walk.finish(&main))
}

/// A run under way: the batch size, the pacing, and what it did so far.
struct Walk<'a> {
    plan: &'a Plan,
    progress: &'a Progress,
    size: u32,
    started: Instant,
    done: Done,
}

impl<'a> Walk<'a> {
    fn new(plan: &'a Plan, progress: &'a Progress) -> Self {
        Self {
            plan,
            progress,
            size: plan.first_batch(),
            started: Instant::now(),
            done: Done {
                smallest: u32::MAX,
                ..Done::default()
            },
        }
    }

    /// Clears expiries from `from` to `upper` (both included) through the expiry index,
    /// batch after batch; pushes each cursor it moves to onto `cursors`, when given.
    async fn range(
        &mut self,
        store: &dyn Maintenance,
        mut from: Option<OffsetDateTime>,
        upper: OffsetDateTime,
        mut cursors: Option<&mut Vec<OffsetDateTime>>,
    ) -> anyhow::Result<()> {
        loop {
            let size = self.size;
            let started = Instant::now();
            let batch = store
                .delete_expired(from, upper, size)
                .await
                .with_context(|| {
                    format!("deleting a batch after {} sessions", self.done.deleted)
                })?;
            self.record(size, started.elapsed(), batch.deleted, batch.next.is_some())
                .await;
            // Rows a stalled cursor stepped past are another cleaner's; the final pass looks
            // again.
            let Some(next) = batch.continue_from(from) else {
                return Ok(());
            };
            if let Some(cursors) = cursors.as_deref_mut() {
                if cursors.last() != Some(&next) {
                    cursors.push(next);
                }
            }
            from = Some(next);
        }
    }

    /// Sweeps `size` records' worth from `from`, timed, counted and paced like a walk's batch.
    async fn sweep(
        &mut self,
        sweep: &dyn Sweep,
        from: &SweepPosition,
        cutoff: OffsetDateTime,
        size: u32,
    ) -> anyhow::Result<SweptBatch> {
        let started = Instant::now();
        let batch = sweep
            .sweep_expired(from, cutoff, size)
            .await
            .with_context(|| format!("deleting a batch after {} sessions", self.done.deleted))?;
        self.record(size, started.elapsed(), batch.deleted, batch.next.is_some())
            .await;
        Ok(batch)
    }

    /// Counts a batch of `size` that deleted `deleted` in `took`, sizes the next (`full`: it
    /// may have stopped short of more), then pauses.
    async fn record(&mut self, size: u32, took: Duration, deleted: u64, full: bool) {
        let d = &mut self.done;
        d.deleted += deleted;
        d.batches += 1;
        d.smallest = d.smallest.min(size);
        d.largest = d.largest.max(size);
        d.longest = d.longest.max(took);
        self.progress.advance(deleted, d.deleted);
        self.size = self.plan.next_batch(size, took, full);
        self.pause(took).await;
    }

    /// What the run did, the final pass being what came after `main`.
    fn finish(self, main: &Done) -> Done {
        let mut done = self.done;
        done.final_batches = done.batches - main.batches;
        done.final_deleted = done.deleted - main.deleted;
        done.smallest = done.smallest.min(done.largest);
        done
    }

    /// Pauses after a batch that took `took`: as long again, or longer if the rate cap needs.
    async fn pause(&mut self, took: Duration) {
        let mut wait = took;
        if let Some(rate) = self.plan.max_rate {
            // Until the rows deleted so far are within the rate.
            let due = Duration::from_secs_f64(self.done.deleted as f64 / f64::from(rate));
            wait = wait.max(due.saturating_sub(self.started.elapsed()));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
            self.done.paused += wait;
        }
    }
}

/// A progress bar on a terminal; a log line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} sessions deleted, {per_sec}, {eta} left",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            total,
            started: now,
            last_line: std::cell::Cell::new(now),
        }
    }

    /// No output at all, for tests.
    #[cfg(test)]
    fn silent() -> Self {
        let mut progress = Self::new(0);
        progress.bar = None;
        progress.last_line = std::cell::Cell::new(Instant::now() + Duration::from_secs(86_400));
        progress
    }

    fn advance(&self, n: u64, done: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.last_line.get().elapsed() >= Duration::from_secs(2) {
            self.last_line.set(Instant::now());
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let left = self.total.saturating_sub(done) as f64 / rate.max(1e-9);
            eprintln!(
                "{done}/{} sessions deleted, {rate:.0}/s, {left:.0}s left",
                self.total
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests;
