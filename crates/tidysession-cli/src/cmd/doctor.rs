//! `tidysession doctor`: a store's statistics turned into findings and advice, each naming
//! the figure it rests on.

use tidysession::store::stats::{ExpiryIndex, Innodb, Payloads, Stats};
use tidysession::tooling::redact_url;

use super::stats::{fig, share, size};

/// Arguments of `doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
    /// The most records read for the estimated figures.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sample: u32,
}

/// One finding: what is wrong, the figure that shows it, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) title: String,
    pub(crate) figure: String,
    pub(crate) advice: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let stats = super::stats::gather(&args.store, args.sample).await?;
    print!("{}", report(&stats, &redact_url(&args.store)));
    Ok(())
}

/// The findings in words.
pub(crate) fn report(stats: &Stats, url: &str) -> String {
    let mut out = format!(
        "{}: {} records, {} live, {} expired (sample: {} records, {})\n",
        stats.store,
        fig(stats.total),
        fig(stats.live),
        fig(stats.expired),
        stats.sample.size,
        stats.sample.method
    );
    if stats.payloads == Payloads::Unverified {
        out.push_str(
            "note: payloads were read without DJANGO_SECRET_KEY, unverified; set it to check them\n",
        );
    }
    let found = findings(stats, url);
    if found.is_empty() {
        out.push_str("\nNo findings: the table looks healthy.\n");
    }
    for (i, f) in found.iter().enumerate() {
        out.push_str(&format!(
            "\n{}. {}\n   figure: {}\n   advice: {}\n",
            i + 1,
            f.title,
            f.figure,
            f.advice
        ));
    }
    out
}

/// The findings `stats` supports, most urgent first.
pub(crate) fn findings(s: &Stats, url: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let total = s.total.value;
    let live = s.live.value;
    let native = s.payloads == Payloads::Plain;
    if let Some(ix) = s.expiry_index.as_ref().filter(|ix| !ix.present) {
        out.push(Finding {
            title: format!(
                "No index on the expiry column {}.{}: every cleanup (tidysession clear, the \
                 reaper, Django's clearsessions) scans the whole table",
                ix.table, ix.column
            ),
            figure: format!(
                "expiry index = missing (checked in the database catalog); {total} records"
            ),
            advice: format!("create it: {}", ix.create_statement),
        });
    }
    if !s.removes_expired_itself && total > 0 && s.expired.value * 2 > total {
        out.push(Finding {
            title: "Most records are expired: nothing is cleaning this table up".into(),
            figure: format!("expired = {}", share(s.expired, total)),
            advice: format!(
                "run `tidysession clear --store {url}` now (batched, safe on a live site), then \
                 keep it clean: run the library's Reaper in the app, or `tidysession clear` \
                 from cron every few minutes"
            ),
        });
    }
    if let Some(db) = s.innodb.filter(Innodb::indexes_overflow) {
        out.push(buffer_pool_finding(
            &db,
            live,
            total,
            s.expiry_index.as_ref(),
        ));
    }
    if let Some(db) = s
        .innodb
        .filter(|db| total >= BIG_TABLE && db.flushes_only_under_pressure())
    {
        out.push(write_back_finding(&db, total));
    }
    if live > 0 && s.test_cookie_only.value * 2 > live {
        out.push(Finding {
            title: "Most live records hold nothing but a test cookie: bots (or visitors without \
                    cookies) hitting the login page, each leaving a row"
                .into(),
            figure: format!(
                "test cookie only = {} of live",
                share(s.test_cookie_only, live)
            ),
            advice: "keep anonymous state out of the table: with tidysession's default \
                     Anonymous::InCookie policy the test cookie and all anonymous data live in \
                     an encrypted cookie and cost no row (in Django, call set_test_cookie() \
                     only on POST, or drop it)"
                .into(),
        });
    }
    if live > 0 && s.empty.value * 10 > live {
        out.push(Finding {
            title: "Many live records are empty: a stale or forged cookie on a site that saves \
                    every request gets a fresh, empty row per request"
                .into(),
            figure: format!("empty = {} of live", share(s.empty, live)),
            advice: "turn off save-every-request (Django: SESSION_SAVE_EVERY_REQUEST = False), or \
                     serve these routes with tidysession, which never stores an empty record \
                     and answers a bad cookie with a removal cookie instead of a row"
                .into(),
        });
    }
    if native && live > 0 && s.anonymous.value > 0 {
        out.push(Finding {
            title: "Anonymous sessions are stored server-side".into(),
            figure: format!("anonymous = {} of live", share(s.anonymous, live)),
            advice: "the cookie tier (SessionConfig with Anonymous::InCookie, the default) keeps \
                     visitors who are not logged in in an encrypted cookie: these rows would not \
                     exist"
                .into(),
        });
    }
    if live > 0 && s.unreadable.value > 0 {
        let why = match s.payloads {
            Payloads::Verified => {
                "rows signed with a secret not given (add the old one to \
                 DJANGO_SECRET_KEY_FALLBACKS), or corrupt"
            }
            _ => "corrupt rows, or rows another program wrote",
        };
        out.push(Finding {
            title: "Some live records cannot be read; they load as empty sessions".into(),
            figure: format!("unreadable = {} of live", share(s.unreadable, live)),
            advice: format!("look for {why}; they go away when they expire and are cleared"),
        });
    }
    if let Some((user, n)) = s.top_users.first().filter(|(_, n)| n.value >= 50) {
        out.push(Finding {
            title: format!("User {user} has many live sessions"),
            figure: format!("top user = {user} with {} sessions", fig(*n)),
            advice: "a script logging in without keeping its cookie, or a shared account: list \
                     and revoke them through the user index, and cap sessions per user"
                .into(),
        });
    }
    out
}

/// From this many records, a table's cleanup (or any burst of writes) outruns a redo log
/// that InnoDB empties only under pressure.
const BIG_TABLE: u64 = 1_000_000;

/// The secondary indexes do not fit InnoDB's buffer pool. The advice sizes the pool for the
/// indexes plus the live share of the rows, rounded up to 128 MiB.
fn buffer_pool_finding(db: &Innodb, live: u64, total: u64, index: Option<&ExpiryIndex>) -> Finding {
    const STEP: u64 = 128 << 20;
    let live_rows = match total {
        0 => 0,
        _ => (u128::from(db.data_bytes) * u128::from(live) / u128::from(total)) as u64,
    };
    let want = db
        .index_bytes
        .saturating_add(live_rows)
        .div_ceil(STEP)
        .saturating_mul(STEP);
    let optimize = match index {
        Some(ix) => format!(
            " After clearing a big backlog, `OPTIMIZE TABLE {}` (an online rebuild) shrinks the \
             indexes to what is left.",
            ix.table
        ),
        None => String::new(),
    };
    Finding {
        title: "The table's secondary indexes do not fit InnoDB's buffer pool: every session \
                write, and every delete that cleans up, waits on random disk reads"
            .into(),
        figure: format!(
            "secondary indexes = {}, rows = {}, innodb_buffer_pool_size = {} (the server's \
             table statistics)",
            size(db.index_bytes),
            size(db.data_bytes),
            size(db.buffer_pool_bytes)
        ),
        advice: format!(
            "give the pool room for the indexes and the live rows, about {}: \
             `SET GLOBAL innodb_buffer_pool_size = {want};` resizes it online, and the same \
             setting in the server's configuration keeps it. `tidysession clear` works either \
             way, but with the indexes on disk it deletes thousands of rows a second, not tens \
             of thousands.{optimize}",
            size(want)
        ),
    }
}

/// InnoDB writes dirty pages back only when its redo log runs short, so a big cleanup fills
/// the log and then every commit waits.
fn write_back_finding(db: &Innodb, total: u64) -> Finding {
    Finding {
        title: "InnoDB writes dirty pages back only when its redo log runs short: a big \
                cleanup (or any burst of writes) fills the log, and then every commit waits for \
                the disk"
            .into(),
        figure: format!(
            "innodb_max_dirty_pages_pct_lwm = 0, innodb_log_file_size = {}, innodb_io_capacity \
             = {} (server variables); {total} records",
            size(db.redo_log_bytes),
            db.io_capacity
        ),
        advice: "let it write back in the background and give it room: \
                 `SET GLOBAL innodb_max_dirty_pages_pct_lwm = 10;`, an `innodb_io_capacity` the \
                 disk sustains (200 is a spinning disk's; an SSD takes 2000, with \
                 `innodb_io_capacity_max` above it), and a redo log of about 1 GiB \
                 (`SET GLOBAL innodb_log_file_size = 1073741824;` resizes it online on MariaDB \
                 10.9 and later); the same settings in the server's configuration keep them. \
                 Until then a big cleanup keeps the log full: sweeping 9 million rows with a \
                 96 MiB log and no background flushing had the site's p99 latency at about 5× \
                 its usual"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use tidysession::store::stats::{Figure, Innodb};
    use tidysession::store::{Maintenance as _, MemoryStore, StatsOptions};
    use time::OffsetDateTime;

    use super::findings;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    /// MariaDB's defaults (a 128 MiB buffer pool, a 96 MiB redo log, no background flushing)
    /// under a table of `data` bytes of rows and `index` of secondary indexes.
    fn mariadb_defaults(data: u64, index: u64) -> Innodb {
        Innodb {
            data_bytes: data,
            index_bytes: index,
            buffer_pool_bytes: 128 * MIB,
            redo_log_bytes: 96 * MIB,
            io_capacity: 200,
            flush_from_dirty_pct: 0,
        }
    }

    /// Ten million records, a tenth live, on MySQL/MariaDB figures.
    async fn big_table(innodb: Innodb) -> tidysession::store::Stats {
        let mut s = MemoryStore::default()
            .stats(OffsetDateTime::now_utc(), &StatsOptions::default())
            .await
            .unwrap()
            .unwrap();
        s.total = Figure::exact(10_000_000);
        s.live = Figure::exact(1_000_000);
        s.expired = Figure::exact(9_000_000);
        s.innodb = Some(innodb);
        s
    }

    fn findings_on(s: &tidysession::store::Stats, about: &str) -> Vec<super::Finding> {
        findings(s, "mysql://root@127.0.0.1/test")
            .into_iter()
            .filter(|f| f.title.contains(about))
            .collect()
    }

    #[tokio::test]
    async fn indexes_bigger_than_the_buffer_pool_are_a_finding_that_sizes_the_pool() {
        let s = big_table(mariadb_defaults(4 * GIB, GIB)).await;
        let found = findings_on(&s, "buffer pool");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].figure,
            "secondary indexes = 1 GiB, rows = 4 GiB, innodb_buffer_pool_size = 128 MiB (the \
             server's table statistics)"
        );
        // 1 GiB of indexes + a tenth of 4 GiB of rows = 1,433.6 MiB, rounded up to 1.5 GiB.
        assert!(
            found[0]
                .advice
                .contains("about 1.5 GiB: `SET GLOBAL innodb_buffer_pool_size = 1610612736;`"),
            "{}",
            found[0].advice
        );
    }

    #[tokio::test]
    async fn indexes_that_fit_the_buffer_pool_are_no_finding() {
        let s = big_table(Innodb {
            buffer_pool_bytes: 2 * GIB,
            ..mariadb_defaults(4 * GIB, GIB)
        })
        .await;
        assert!(findings_on(&s, "buffer pool").is_empty());
    }

    #[tokio::test]
    async fn a_big_table_on_innodb_that_flushes_only_under_pressure_is_a_finding() {
        let mut s = big_table(mariadb_defaults(4 * GIB, GIB)).await;
        let found = findings_on(&s, "redo log runs short");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].figure,
            "innodb_max_dirty_pages_pct_lwm = 0, innodb_log_file_size = 96 MiB, \
             innodb_io_capacity = 200 (server variables); 10000000 records"
        );
        assert!(found[0]
            .advice
            .contains("SET GLOBAL innodb_max_dirty_pages_pct_lwm = 10;"));
        // Background flushing on: nothing to say.
        s.innodb = Some(Innodb {
            flush_from_dirty_pct: 10,
            ..mariadb_defaults(4 * GIB, GIB)
        });
        assert!(findings_on(&s, "redo log runs short").is_empty());
        // A small table never fills the log.
        s.innodb = Some(mariadb_defaults(4 * MIB, MIB));
        s.total = Figure::exact(20_000);
        assert!(findings_on(&s, "redo log runs short").is_empty());
    }
}
