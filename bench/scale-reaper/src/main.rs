//! The library's [`Reaper`] for `bench/scale.sh`: runs [`Reaper::run_once`] back to back (no
//! interval between runs: the most a reaper can take from the database) until a run reports
//! that nothing is left, then prints what it did in `tidysession clear`'s words:
//!
//! ```text
//! deleted N expired sessions in Xs (R sessions/s, longest batch L ms); …
//! ```
//!
//! ```text
//! scale-reaper --store URL [--batch-size N] [--batch-ms MS] [--max-batches N] [--max-seconds S]
//! ```
//!
//! Unset options keep the Reaper's defaults (batches of 1,000 at most aiming at 20 ms, 100
//! batches or 30 s per run). A Django URL opens without `DJANGO_SECRET_KEY`, as `clear` does.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tidysession::reaper::Reaper;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str) -> Result<Option<u64>, String> {
    arg(args, name)
        .map(|v| v.parse().map_err(|_| format!("{name}: not a number: {v}")))
        .transpose()
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale-reaper: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--store").ok_or("--store URL is required")?;
    let store = tidysession::tooling::open_for_maintenance(&url)
        .await
        .map_err(|e| e.to_string())?;
    let mut reaper = Reaper::from_arc(store).with_lock_name("tidysession_scale_reaper");
    if let Some(n) = number(&args, "--batch-size")? {
        reaper = reaper.with_batch_size(u32::try_from(n).map_err(|e| e.to_string())?);
    }
    if let Some(ms) = number(&args, "--batch-ms")? {
        reaper = reaper.with_batch_time(Duration::from_millis(ms));
    }
    if let Some(n) = number(&args, "--max-batches")? {
        reaper = reaper.with_max_batches(u32::try_from(n).map_err(|e| e.to_string())?);
    }
    if let Some(s) = number(&args, "--max-seconds")? {
        reaper = reaper.with_max_duration(Duration::from_secs(s));
    }
    let started = Instant::now();
    let (mut deleted, mut runs, mut batches) = (0u64, 0u64, 0u64);
    let (mut smallest, mut largest) = (u32::MAX, 0u32);
    let (mut longest, mut paused) = (Duration::ZERO, Duration::ZERO);
    let mut last_line = Instant::now();
    loop {
        let report = reaper.run_once().await;
        if let Some(error) = &report.error {
            return Err(format!("run {} failed after {deleted} deleted: {error}", runs + 1));
        }
        if report.skipped_because_locked {
            // Another reaper on the same lock name: wait for it, as a fleet would.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        runs += 1;
        deleted += report.deleted;
        batches += report.batches;
        if report.batches > 0 {
            smallest = smallest.min(report.smallest_batch);
            largest = largest.max(report.largest_batch);
        }
        longest = longest.max(report.longest_batch);
        paused += report.paused;
        if last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!("{deleted} deleted in {runs} runs, {:.0} s", started.elapsed().as_secs_f64());
        }
        if !report.more_left {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "deleted {deleted} expired sessions in {secs:.2}s ({:.0} sessions/s, longest batch \
         {:.1} ms); {runs} runs, {batches} batches of {} to {largest} rows, paused {:.3}s in all",
        deleted as f64 / secs.max(1e-9),
        longest.as_secs_f64() * 1000.0,
        smallest.min(largest),
        paused.as_secs_f64()
    );
    Ok(())
}
