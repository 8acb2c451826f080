//! `tidysession clear`: delete expired sessions in small batches through the expiry index.
//!
//! Each batch is one short statement, so the table stays usable while it runs, and an
//! interrupted run loses nothing: run it again and it carries on.

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
    /// Rows deleted per batch (one short transaction each).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_store(&args.store).await?;
    // A fixed cutoff bounds the work: sessions that expire during the run wait for the next.
    let cutoff = OffsetDateTime::now_utc();
    let counts = store.count(cutoff).await.context("counting sessions")?;
    if store.removes_expired_itself() {
        println!(
            "nothing to clear: this store deletes expired sessions by itself (key expiry); {} live sessions",
            counts.live
        );
        return Ok(());
    }
    if args.dry_run {
        println!(
            "{} expired sessions would be deleted in batches of {}; {} live sessions kept",
            counts.expired, args.batch, counts.live
        );
        return Ok(());
    }
    let progress = Progress::new(counts.expired);
    let started = Instant::now();
    let mut deleted = 0u64;
    loop {
        let n = store
            .delete_expired(cutoff, args.batch)
            .await
            .with_context(|| format!("deleting a batch after {deleted} sessions"))?;
        deleted += n;
        progress.advance(n, deleted);
        if n < u64::from(args.batch) {
            break;
        }
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "deleted {deleted} expired sessions in {secs:.2}s ({:.0} sessions/s); {} live sessions kept",
        deleted as f64 / secs.max(1e-9),
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
