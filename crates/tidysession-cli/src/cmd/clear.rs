//! `tidysession clear`: delete expired sessions in small batches through the expiry index.
//!
//! Each batch is one short statement, so the table stays usable while it runs.
//!
//! - **Resumable**: every batch is its own transaction that deletes only rows already
//!   expired, so an interrupted run loses nothing and leaves nothing half done: run it again
//!   and it carries on with what is left.
//! - **Safe from several hosts at once**: on PostgreSQL a batch picks its rows
//!   `FOR UPDATE SKIP LOCKED`, so concurrent runs take disjoint batches instead of waiting on
//!   each other; on MySQL/MariaDB each `DELETE … ORDER BY expires_at LIMIT n` locks its own
//!   rows (a deadlock victim is retried); on SQLite the database serialises writers. Two runs
//!   never delete a live session and never fail each other; they only share the work.
//! - **Paced**: `--max-rate` caps rows per second, sleeping between batches.
//! - **Redis** expires sessions by itself (`PEXPIREAT`), so there is nothing to delete; user
//!   index entries are trimmed whenever the index is written and each index key expires with
//!   its last session, so nothing needs pruning either.
//! - **Django tables** need no secret to clear: without `DJANGO_SECRET_KEY` the store opens
//!   for maintenance only.

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use time::OffsetDateTime;

/// Arguments of `clear`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
    /// Rows deleted per batch (one short transaction each; the default takes a few
    /// milliseconds on PostgreSQL).
    #[arg(long, default_value_t = DEFAULT_BATCH, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// At most this many rows deleted per second (batches are spaced out to keep to it).
    #[arg(long, value_name = "ROWS_PER_SEC", value_parser = clap::value_parser!(u32).range(1..))]
    max_rate: Option<u32>,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The default batch, measured on the local PostgreSQL with 200,000 expired native rows
/// (about 400 bytes of data each): batches of 1,000 took 4.4 ms on average and 19 ms at the
/// longest, well under the 100 ms a batch should stay below (5,000 already reached 134 ms).
const DEFAULT_BATCH: u32 = 1000;

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_maintenance_store(&args.store).await?;
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
    // A batch never holds more than a second's worth of the allowed rate.
    let batch = match args.max_rate {
        Some(rate) => args.batch.min(rate),
        None => args.batch,
    };
    if args.dry_run {
        let pace = match args.max_rate {
            Some(rate) => format!(
                ", at most {rate}/s (about {}s)",
                counts.expired / u64::from(rate)
            ),
            None => String::new(),
        };
        println!(
            "dry run: {} expired sessions would be deleted in batches of {batch}{pace}; {} live \
             sessions kept; nothing was deleted",
            counts.expired, counts.live
        );
        return Ok(());
    }
    let progress = Progress::new(counts.expired);
    let started = Instant::now();
    let mut deleted = 0u64;
    let mut longest = Duration::ZERO;
    loop {
        let batch_started = Instant::now();
        let n = store
            .delete_expired(cutoff, batch)
            .await
            .with_context(|| format!("deleting a batch after {deleted} sessions"))?;
        longest = longest.max(batch_started.elapsed());
        deleted += n;
        progress.advance(n, deleted);
        if n < u64::from(batch) {
            break;
        }
        if let Some(rate) = args.max_rate {
            // Wait until the rows deleted so far are within the rate.
            let due = Duration::from_secs_f64(deleted as f64 / f64::from(rate));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "deleted {deleted} expired sessions in {secs:.2}s ({:.0} sessions/s, longest batch \
         {:.1} ms); {} live sessions kept",
        deleted as f64 / secs.max(1e-9),
        longest.as_secs_f64() * 1000.0,
        counts.live
    );
    Ok(())
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
