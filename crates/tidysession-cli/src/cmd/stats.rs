//! `tidysession stats`: what a store holds, exact where counting is cheap, estimated from a
//! bounded sample otherwise (see `tidysession::store::stats`).

use anyhow::Context as _;
use tidysession::store::stats::{Distribution, Figure, Payloads, Stats};
use tidysession::store::StatsOptions;
use tidysession::tooling::redact_url;
use time::OffsetDateTime;

/// Arguments of `stats`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The most records read for the estimated figures.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sample: u32,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let stats = gather(&args.store, args.sample).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print!("{}", table(&stats));
    }
    Ok(())
}

/// Opens the store for maintenance and gathers its statistics.
pub(crate) async fn gather(url: &str, sample: u32) -> anyhow::Result<Stats> {
    let store = super::open_maintenance_store(url).await?;
    let options = StatsOptions {
        sample_size: sample,
        ..StatsOptions::default()
    };
    super::maintenance(&*store)?
        .stats(OffsetDateTime::now_utc(), &options)
        .await
        .with_context(|| format!("gathering statistics from {}", redact_url(url)))?
        .with_context(|| format!("{} keeps no statistics", redact_url(url)))
}

/// `1234` or `~1234` for an estimate.
pub(crate) fn fig(f: Figure) -> String {
    match f.exact {
        true => f.value.to_string(),
        false => format!("~{}", f.value),
    }
}

/// `n (p%)` of a whole.
pub(crate) fn share(f: Figure, of: u64) -> String {
    match of {
        0 => fig(f),
        _ => format!("{} ({:.0}%)", fig(f), f.value as f64 * 100.0 / of as f64),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 10_000 => format!("{n} B"),
        n => format!("{} KB", n / 1000),
    }
}

/// A size in binary units, as InnoDB's settings are given: `512 KiB`, `128 MiB`, `1.5 GiB`.
pub(crate) fn size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match v < 10.0 && v.fract() >= 0.05 {
        true => format!("{v:.1} {}", UNITS[unit]),
        false => format!("{v:.0} {}", UNITS[unit]),
    }
}

fn dist(name: &str, d: &Distribution, unit: fn(u64) -> String, out: &mut String) {
    let mark = if d.exact { "" } else { "~" };
    out.push_str(&format!(
        "{name:<22} p50 {mark}{}  p90 {mark}{}  p99 {mark}{}  max {mark}{}\n",
        unit(d.p50),
        unit(d.p90),
        unit(d.p99),
        unit(d.max)
    ));
    let buckets: Vec<String> = d
        .buckets
        .iter()
        .map(|(label, f)| format!("{label}: {}", fig(*f)))
        .collect();
    out.push_str(&format!("{:<22} {}\n", "", buckets.join(", ")));
}

/// The human form: one figure a line, `~` marking estimates.
pub(crate) fn table(s: &Stats) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line(&mut out, "store", s.store.clone());
    line(&mut out, "records", fig(s.total));
    line(&mut out, "live", share(s.live, s.total.value));
    match s.removes_expired_itself {
        true => line(
            &mut out,
            "expired",
            "0 (the store drops them itself)".into(),
        ),
        false => line(&mut out, "expired", share(s.expired, s.total.value)),
    }
    let complete = if s.sample.complete {
        "every record: all figures exact"
    } else {
        "figures marked ~ are estimated from it"
    };
    line(
        &mut out,
        "sample",
        format!(
            "{} records, {} ({complete})",
            s.sample.size, s.sample.method
        ),
    );
    match s.payloads {
        Payloads::Plain => {}
        Payloads::Verified => line(&mut out, "payloads", "verified with the secret".into()),
        Payloads::Unverified => line(
            &mut out,
            "payloads",
            "UNVERIFIED (read without DJANGO_SECRET_KEY; fine for statistics)".into(),
        ),
    }
    let live = s.live.value;
    out.push_str("of the live records:\n");
    line(&mut out, "  authenticated", share(s.authenticated, live));
    line(&mut out, "  anonymous", share(s.anonymous, live));
    line(&mut out, "  empty", share(s.empty, live));
    line(
        &mut out,
        "  test cookie only",
        share(s.test_cookie_only, live),
    );
    if s.unreadable.value > 0 {
        line(&mut out, "  unreadable", share(s.unreadable, live));
    }
    match &s.age_seconds {
        Some(d) => dist("  age", d, duration, &mut out),
        None => line(
            &mut out,
            "  age",
            "unknown (no creation time recorded)".into(),
        ),
    }
    if let Some(d) = &s.size_bytes {
        dist("  size", d, bytes, &mut out);
    }
    if !s.top_users.is_empty() {
        let users: Vec<String> = s
            .top_users
            .iter()
            .map(|(u, f)| format!("{u} ({})", fig(*f)))
            .collect();
        line(&mut out, "  top users", users.join(", "));
    }
    match &s.created {
        Some(c) => line(
            &mut out,
            "created",
            format!(
                "last hour {}, last day {}, last week {} (~{:.1}/hour over the week)",
                fig(c.last_hour),
                fig(c.last_day),
                fig(c.last_week),
                c.last_week.value as f64 / (7.0 * 24.0)
            ),
        ),
        None => line(
            &mut out,
            "created",
            "unknown (no creation time recorded)".into(),
        ),
    }
    if let Some(ix) = &s.expiry_index {
        let state = match ix.present {
            true => format!("{}.{}: indexed", ix.table, ix.column),
            false => format!("{}.{}: NOT INDEXED", ix.table, ix.column),
        };
        line(&mut out, "expiry index", state);
    }
    if let Some(db) = &s.innodb {
        line(
            &mut out,
            "table size",
            format!(
                "rows {}, secondary indexes {}",
                size(db.data_bytes),
                size(db.index_bytes)
            ),
        );
        line(
            &mut out,
            "innodb",
            format!(
                "innodb_buffer_pool_size {}{}, innodb_log_file_size {}, innodb_io_capacity {}, \
                 innodb_max_dirty_pages_pct_lwm {}{}",
                size(db.buffer_pool_bytes),
                match db.indexes_overflow() {
                    true => " (the indexes do NOT FIT)",
                    false => "",
                },
                size(db.redo_log_bytes),
                db.io_capacity,
                db.flush_from_dirty_pct,
                match db.flushes_only_under_pressure() {
                    true => " (flushes only under pressure)",
                    false => "",
                },
            ),
        );
    }
    out
}
