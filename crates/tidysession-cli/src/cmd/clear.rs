//! `tidysession clear`: delete expired sessions in small batches, through the expiry index or,
//! for a big backlog, in storage order.
//!
//! The library's cleanup engine ([`tidysession::cleanup`]) does the work: batches sized by
//! time (`--batch` rows first, then about `--batch-ms` each: 20 ms through the index, 2 ms in
//! storage order), a pause as long as each batch after it, `--max-rate` on top, one walk
//! through the expiry index and a final pass, or a sweep in storage order when at least a
//! quarter of the sessions are expired. This command keeps its arguments, a progress bar and
//! the summary. `docs/cleanup.md` has the measurements behind the defaults.
//!
//! - **Redis** expires sessions by itself (`PEXPIREAT`), so there is nothing to delete; user
//!   index entries are trimmed whenever the index is written and each index key expires with
//!   its last session, so nothing needs pruning either.
//! - **Django tables** need no secret to clear: without `DJANGO_SECRET_KEY` the store opens
//!   for maintenance only.

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;
use tokio::time::Instant;

use tidysession::cleanup::{
    Batch, Cleanup, CleanupReport, Hooks, Order, DEFAULT_FIRST_BATCH, MAX_BATCH,
};

/// Arguments of `clear`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
    /// Rows in the first batch; later batches grow or shrink so that each takes about
    /// --batch-ms.
    #[arg(long, default_value_t = DEFAULT_FIRST_BATCH, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BATCH)))]
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

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let opened = super::open_maintenance_store(&args.store).await?;
    let store = super::maintenance(&*opened)?;
    // A fixed cutoff bounds the work: sessions that expire during the run wait for the next.
    let cutoff = OffsetDateTime::now_utc();
    let counts = store.count(cutoff).await.context("counting sessions")?;
    if store.removes_expired_itself() {
        println!(
            "nothing to clear: this store deletes expired sessions by itself (each session's \
             key expires with it, through PEXPIREAT); {} live sessions",
            counts.live
        );
        return Ok(());
    }
    // A big backlog goes in storage order (see the engine's docs).
    let order = Order::for_backlog(store, counts);
    let mut plan = Cleanup::new()
        .with_first_batch(args.batch)
        .with_largest_batch(MAX_BATCH)
        .with_order(order);
    if let Some(ms) = args.batch_ms {
        plan = plan.with_batch_time(Duration::from_millis(u64::from(ms)));
    }
    if let Some(rate) = args.max_rate {
        plan = plan.with_max_rate(rate);
    }
    let batch_ms = plan.planned_batch_time(order).as_millis();
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
            describe(order),
            batch_ms,
            plan.planned_first_batch(),
            counts.live
        );
        return Ok(());
    }
    let mut progress = Progress::new(counts.expired);
    let started = Instant::now();
    let done = plan.run_with(store, cutoff, &mut progress).await;
    progress.finish();
    let done =
        done.with_context(|| format!("deleting a batch after {} sessions", progress.deleted))?;
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
        describe(done.order),
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

/// How a run goes through the table, in its output.
fn describe(order: Order) -> &'static str {
    match order {
        Order::Storage => "in storage order (at least a quarter of the sessions are expired)",
        _ => "in expiry order, through the expiry index",
    }
}

/// A progress bar on a terminal; a log line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: Instant,
    /// Sessions deleted so far (for the message of an error).
    deleted: u64,
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
            last_line: now,
            deleted: 0,
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Hooks for Progress {
    fn after_batch(&mut self, batch: &Batch, so_far: &CleanupReport) {
        let done = so_far.deleted;
        self.deleted = done;
        if let Some(bar) = &self.bar {
            bar.inc(batch.deleted);
        } else if self.last_line.elapsed() >= Duration::from_secs(2) {
            self.last_line = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let left = self.total.saturating_sub(done) as f64 / rate.max(1e-9);
            eprintln!(
                "{done}/{} sessions deleted, {rate:.0}/s, {left:.0}s left",
                self.total
            );
        }
    }
}
