//! `tidysession simulate`: one seeded traffic mix through the demo's routes, the real session
//! layer and a real store, once per policy, and what each policy left in the store.
//!
//! The traffic is planned first, from the seed alone, so every policy sees exactly the same
//! requests; only the cookies the responses set differ. The plan also counts what each policy
//! must leave behind (every anonymous writer under the server-side policies, only the
//! logged-in users under the default), which the tests check against the store.

mod chart;
mod jar;
mod mix;
mod plan;
mod policy;
mod report;
mod rng;
mod runner;
mod target;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;

use self::mix::Mix;
use self::plan::Plan;
use self::runner::simulate;
use self::target::Target;
use super::demo::Users;

/// Arguments of `simulate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Requests per policy.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    requests: u32,
    /// Traffic mix in percent of requests (names: health, bots, browsers, users, stale; they
    /// must add up to 100; a name left out is 0).
    #[arg(long, default_value = "health=40,bots=25,browsers=20,users=10,stale=5")]
    mix: Mix,
    /// Store URL: sqlite://PATH (one file per policy next to PATH, which must not exist yet),
    /// sqlite://:memory:, memory://, or a server store, where each policy gets its own
    /// schema=/table=/prefix= (the given one plus a suffix; it must be empty). Default: a
    /// fresh SQLite file per policy in a temporary directory.
    #[arg(long)]
    store: Option<String>,
    /// Seed of the traffic (the same seed gives the same requests).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also draw the rows over time for each policy into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::new(args.requests, &args.mix, args.seed);
    let target = Target::parse(args.store.as_deref())?;
    let users = tokio::task::spawn_blocking({
        let n = u32::try_from(plan.user_pool).unwrap_or(u32::MAX);
        move || Users::demo(n)
    })
    .await
    .context("hashing demo passwords")??;
    let started = Instant::now();
    let report = simulate(&plan, &target, &users).await?;
    print!("{}", report.table());
    println!("wall time: {:.1}s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.chart {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing the chart to {}", path.display()))?;
        println!("chart: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
