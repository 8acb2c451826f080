//! Statistics about what a store holds, for `tidysession stats` and `tidysession doctor`.
//!
//! # Exact and estimated figures
//!
//! Counts of live and expired records come from [`Maintenance::count`](super::Maintenance::count)
//! (through the expiry index) and are exact. Everything that needs the records' data (who is
//! logged in, what is empty, sizes, ages, users, creation times) comes from a bounded sample
//! of at most [`StatsOptions::sample_size`] records:
//!
//! - PostgreSQL: `TABLESAMPLE SYSTEM` (random pages), with the percentage chosen from the
//!   total;
//! - SQLite, MySQL/MariaDB and Django tables: a random key range. Native keys are SHA-256
//!   hashes and Django keys are random, so the records after a random starting key are a
//!   uniform random sample, read through the primary key in one short query;
//! - Redis: the first keys `SCAN` returns under the prefix (the hash table's order, unrelated
//!   to age or content);
//! - memory: every record.
//!
//! When the sample covers every record, every figure is exact; otherwise each sampled figure
//! is scaled to the exact total and marked estimated ([`Figure::exact`]).
//!
//! # From the database's catalog
//!
//! SQL stores also report whether the expiry column is indexed ([`ExpiryIndex`]), and
//! MySQL/MariaDB stores the table's size beside InnoDB's cache and write-back settings
//! ([`Innodb`]), read from the catalog, the server's table statistics and its variables, not
//! counted.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::record::{Data, RESERVED_PREFIX, USER_KEY};

use super::RecordCounts;

/// The data key Django's `set_test_cookie` writes (value `"worked"`); tidysession itself keeps
/// its test cookie in a cookie, never in a record.
pub const TEST_COOKIE_KEY: &str = "testcookie";

/// Django's own metadata key inside session data; not data for the emptiness test.
const DJANGO_EXPIRY_KEY: &str = "_session_expiry";

/// How [`Maintenance::stats`](super::Maintenance::stats) gathers its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsOptions {
    /// The most records read for the sampled figures (default 10,000).
    pub sample_size: u32,
    /// How many users [`Stats::top_users`] lists (default 10).
    pub top_users: usize,
}

impl Default for StatsOptions {
    fn default() -> Self {
        Self {
            sample_size: 10_000,
            top_users: 10,
        }
    }
}

/// One number, and whether it is exact or estimated from a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Figure {
    /// The value (for an estimate, scaled to the whole store and rounded).
    pub value: u64,
    /// Whether it was counted, not estimated.
    pub exact: bool,
}

impl Figure {
    /// An exact figure.
    pub fn exact(value: u64) -> Self {
        Self { value, exact: true }
    }
}

/// Whether a store's payloads could be checked while sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payloads {
    /// Plain JSON the store writes itself: nothing to verify.
    Plain,
    /// Signed payloads, verified with the secret.
    Verified,
    /// Signed payloads read without checking the signature (no secret was given): fine for
    /// statistics, never for loading a session.
    Unverified,
}

/// What the sample was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Records read.
    pub size: u64,
    /// How they were picked, in words.
    pub method: String,
    /// Whether the sample is every record (then every figure is exact).
    pub complete: bool,
}

/// Percentiles and buckets of a quantity over the sampled live records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Distribution {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest seen.
    pub max: u64,
    /// `(label, records)` per bucket, scaled to the live total.
    pub buckets: Vec<(String, Figure)>,
    /// Whether computed from every live record.
    pub exact: bool,
}

/// Whether the expiry column is indexed, when the store can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryIndex {
    /// The table, as the database names it.
    pub table: String,
    /// The expiry column.
    pub column: String,
    /// Whether an index starts with that column.
    pub present: bool,
    /// The statement that creates one.
    pub create_statement: String,
}

/// A MySQL/MariaDB table's size, and the InnoDB settings that decide whether its writes and
/// a big cleanup wait on the disk.
///
/// InnoDB caches pages in its buffer pool; with `O_DIRECT` (MariaDB's default) nothing else
/// caches them. When the table's secondary indexes do not fit, every write, and every delete
/// that cleans up, waits on random disk reads: the expiry and user indexes are ordered
/// differently from the rows, so no order of deletes reads them in sequence. Dirty pages go
/// back to disk in the background only from `innodb_max_dirty_pages_pct_lwm` (MariaDB's
/// default, 0, means only when the redo log runs short), at up to `innodb_io_capacity` pages
/// a second; when the redo log between checkpoints fills, every commit waits for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Innodb {
    /// The rows (InnoDB's clustered primary key), in bytes, from the server's table statistics.
    pub data_bytes: u64,
    /// The secondary indexes, in bytes, from the same statistics.
    pub index_bytes: u64,
    /// `innodb_buffer_pool_size`, in bytes.
    pub buffer_pool_bytes: u64,
    /// `innodb_log_file_size`, in bytes: the redo log.
    pub redo_log_bytes: u64,
    /// `innodb_io_capacity`: the pages a second background flushing aims at.
    pub io_capacity: u64,
    /// `innodb_max_dirty_pages_pct_lwm`, rounded up: the share of dirty pages in the buffer
    /// pool from which InnoDB writes them back in the background; 0 for never.
    pub flush_from_dirty_pct: u64,
}

impl Innodb {
    /// Whether the secondary indexes are bigger than the whole buffer pool.
    pub fn indexes_overflow(&self) -> bool {
        self.index_bytes > self.buffer_pool_bytes
    }

    /// Whether InnoDB writes dirty pages back only when the redo log runs short.
    pub fn flushes_only_under_pressure(&self) -> bool {
        self.flush_from_dirty_pct == 0
    }
}

/// What a store holds; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Which store, in words (never a password).
    pub store: String,
    /// All records.
    pub total: Figure,
    /// Records not yet expired.
    pub live: Figure,
    /// Expired records waiting for cleanup.
    pub expired: Figure,
    /// Whether the store drops expired records by itself (Redis).
    pub removes_expired_itself: bool,
    /// The sample behind the estimated figures.
    pub sample: Sample,
    /// Whether payloads were verified.
    pub payloads: Payloads,
    /// Live records whose payload could not be read (corrupt, or signed with another secret).
    pub unreadable: Figure,
    /// Live records of a logged-in user (`_auth_user_id` set).
    pub authenticated: Figure,
    /// Live records without a user.
    pub anonymous: Figure,
    /// Live records holding no data at all.
    pub empty: Figure,
    /// Live records holding nothing but a test cookie (`testcookie`).
    pub test_cookie_only: Figure,
    /// Age of live records (seconds since creation), when the store records creation.
    pub age_seconds: Option<Distribution>,
    /// Size of live records' data (bytes as stored).
    pub size_bytes: Option<Distribution>,
    /// Users with the most live sessions, most first.
    pub top_users: Vec<(String, Figure)>,
    /// Records (live or expired) created in the last hour, day and week, when the store
    /// records creation.
    pub created: Option<Created>,
    /// The expiry index, when the store can check its catalog.
    pub expiry_index: Option<ExpiryIndex>,
    /// The table's size and InnoDB's cache and write-back settings, on MySQL/MariaDB.
    pub innodb: Option<Innodb>,
}

/// Creation counts over recent periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Created {
    /// In the last hour.
    pub last_hour: Figure,
    /// In the last 24 hours.
    pub last_day: Figure,
    /// In the last 7 days.
    pub last_week: Figure,
}

/// One sampled record, as a store read it.
#[derive(Debug, Clone)]
pub struct SampledRecord {
    /// Its data, or `None` when it could not be read.
    pub data: Option<Data>,
    /// The data's size as stored, in bytes.
    pub bytes: u64,
    /// When it was created, if the store knows.
    pub created_at: Option<OffsetDateTime>,
    /// When it expires.
    pub expires_at: OffsetDateTime,
}

/// Whether `data` holds nothing: no key but tidysession's reserved ones and Django's
/// `_session_expiry`.
fn data_keys(data: &Data) -> impl Iterator<Item = &String> {
    data.keys()
        .filter(|k| !k.starts_with(RESERVED_PREFIX) && k.as_str() != DJANGO_EXPIRY_KEY)
}

/// Builds [`Stats`] from exact counts and a sample. Stores call it from
/// [`Maintenance::stats`](super::Maintenance::stats).
#[derive(Debug)]
pub struct StatsBuilder {
    now: OffsetDateTime,
    counts: RecordCounts,
    options: StatsOptions,
    sampled: u64,
    live: u64,
    unreadable: u64,
    authenticated: u64,
    empty: u64,
    test_cookie_only: u64,
    ages: Vec<u64>,
    sizes: Vec<u64>,
    users: HashMap<String, u64>,
    created_known: u64,
    created: [u64; 3],
}

impl StatsBuilder {
    /// Starts from the exact counts at `now`.
    pub fn new(now: OffsetDateTime, counts: RecordCounts, options: StatsOptions) -> Self {
        Self {
            now,
            counts,
            options,
            sampled: 0,
            live: 0,
            unreadable: 0,
            authenticated: 0,
            empty: 0,
            test_cookie_only: 0,
            ages: Vec::new(),
            sizes: Vec::new(),
            users: HashMap::new(),
            created_known: 0,
            created: [0; 3],
        }
    }

    /// Adds one sampled record.
    pub fn add(&mut self, record: SampledRecord) {
        self.sampled += 1;
        if let Some(created) = record.created_at {
            self.created_known += 1;
            let age = self.now - created;
            for (i, hours) in [1, 24, 24 * 7].into_iter().enumerate() {
                if age < time::Duration::hours(hours) {
                    self.created[i] += 1;
                }
            }
        }
        if record.expires_at <= self.now {
            return;
        }
        self.live += 1;
        self.sizes.push(record.bytes);
        if let Some(created) = record.created_at {
            let age = (self.now - created).whole_seconds().max(0);
            self.ages.push(u64::try_from(age).unwrap_or(0));
        }
        let Some(data) = record.data else {
            self.unreadable += 1;
            return;
        };
        let user = data.get(USER_KEY).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        if let Some(user) = user {
            self.authenticated += 1;
            *self.users.entry(user).or_default() += 1;
        }
        let mut keys = data_keys(&data);
        match (keys.next(), keys.next()) {
            (None, _) => self.empty += 1,
            (Some(k), None) if k == TEST_COOKIE_KEY => self.test_cookie_only += 1,
            _ => {}
        }
    }

    /// The statistics: `store` names the store, `method` says how the sample was taken.
    pub fn finish(
        self,
        store: impl Into<String>,
        method: impl Into<String>,
        payloads: Payloads,
        removes_expired_itself: bool,
    ) -> Stats {
        let total = self.counts.live + self.counts.expired;
        let complete = self.sampled >= total;
        let live_total = self.counts.live;
        // Scales a count among sampled live records to all live records.
        let live_figure = |n: u64| scaled(n, self.live, live_total, complete);
        let readable = self.live - self.unreadable;
        let mut top: Vec<(String, u64)> = self.users.iter().map(|(u, n)| (u.clone(), *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(self.options.top_users);
        let created = (self.created_known > 0).then(|| {
            let f = |n| scaled(n, self.sampled, total, complete);
            Created {
                last_hour: f(self.created[0]),
                last_day: f(self.created[1]),
                last_week: f(self.created[2]),
            }
        });
        let hour = 3600;
        let age_seconds = distribution(
            self.ages,
            &[
                ("< 1 hour", hour),
                ("< 1 day", 24 * hour),
                ("< 1 week", 7 * 24 * hour),
                ("< 30 days", 30 * 24 * hour),
                (">= 30 days", u64::MAX),
            ],
            self.live,
            live_total,
            complete,
        );
        let size_bytes = distribution(
            self.sizes,
            &[
                ("< 100 B", 100),
                ("< 1 KB", 1_000),
                ("< 10 KB", 10_000),
                ("< 100 KB", 100_000),
                (">= 100 KB", u64::MAX),
            ],
            self.live,
            live_total,
            complete,
        );
        Stats {
            store: store.into(),
            total: Figure::exact(total),
            live: Figure::exact(self.counts.live),
            expired: Figure::exact(self.counts.expired),
            removes_expired_itself,
            sample: Sample {
                size: self.sampled,
                method: method.into(),
                complete,
            },
            payloads,
            unreadable: live_figure(self.unreadable),
            authenticated: live_figure(self.authenticated),
            anonymous: live_figure(readable - self.authenticated),
            empty: live_figure(self.empty),
            test_cookie_only: live_figure(self.test_cookie_only),
            age_seconds,
            size_bytes,
            top_users: top.into_iter().map(|(u, n)| (u, live_figure(n))).collect(),
            created,
            expiry_index: None,
            innodb: None,
        }
    }
}

/// `hits` out of `seen` sampled records, scaled to `population`.
fn scaled(hits: u64, seen: u64, population: u64, complete: bool) -> Figure {
    if complete {
        return Figure::exact(hits);
    }
    let value = match seen {
        0 => 0,
        _ => ((hits as f64) * (population as f64) / (seen as f64)).round() as u64,
    };
    Figure {
        value,
        exact: false,
    }
}

fn distribution(
    mut values: Vec<u64>,
    buckets: &[(&str, u64)],
    seen: u64,
    population: u64,
    complete: bool,
) -> Option<Distribution> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let at = |q: f64| {
        let i = ((values.len() - 1) as f64 * q).round() as usize;
        values[i.min(values.len() - 1)]
    };
    let mut lower = 0;
    let buckets = buckets
        .iter()
        .map(|(label, upper)| {
            let n = values
                .iter()
                .filter(|v| **v >= lower && **v < *upper)
                .count() as u64
                + match *upper {
                    u64::MAX => values.iter().filter(|v| **v == u64::MAX).count() as u64,
                    _ => 0,
                };
            lower = *upper;
            ((*label).to_owned(), scaled(n, seen, population, complete))
        })
        .collect();
    Some(Distribution {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: values[values.len() - 1],
        buckets,
        exact: complete,
    })
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
/// How many records of `total` a sample of `size` should read, and whether that is all.
pub(crate) fn sample_plan(total: u64, size: u32) -> (u64, bool) {
    let size = u64::from(size.max(1));
    (size.min(total), total <= size)
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
/// The statistics of a native SQL table from its sampled rows `(data, created_ms, expires_ms)`.
pub(crate) fn native_stats(
    now: OffsetDateTime,
    counts: RecordCounts,
    options: &StatsOptions,
    rows: &[(String, i64, i64)],
    label: String,
    method: String,
    index: ExpiryIndex,
) -> Stats {
    let mut builder = StatsBuilder::new(now, counts, *options);
    for (data, created, expires) in rows {
        builder.add(native_row(data, *created, *expires));
    }
    let mut stats = builder.finish(label, method, Payloads::Plain, false);
    stats.expiry_index = Some(index);
    stats
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
/// How a key-range sample was taken, in words.
pub(crate) fn key_range_method(complete: bool, limit: i64) -> String {
    match complete {
        true => "every row".to_owned(),
        false => format!("random id range of {limit} rows"),
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
/// A sampled row of a native SQL table: data as JSON text, times in Unix milliseconds.
pub(crate) fn native_row(data: &str, created_ms: i64, expires_ms: i64) -> SampledRecord {
    let at = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok();
    SampledRecord {
        data: serde_json::from_str(data).ok(),
        bytes: data.len() as u64,
        created_at: at(created_ms),
        expires_at: at(expires_ms).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
/// A random 32-byte starting key for a key-range sample.
pub(crate) fn random_start() -> [u8; 32] {
    let mut start = [0u8; 32];
    // Any start gives a valid (if less random) sample; a failing OS RNG is not worth an error.
    let _ = getrandom::fill(&mut start);
    start
}

/// A random starting key for Django's 32-character keys (`[a-z0-9]`).
#[cfg(all(
    feature = "django",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
pub(crate) fn random_django_start() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    random_start()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(data: Value, expires_in: i64, age_h: i64, now: OffsetDateTime) -> SampledRecord {
        let data: Data = serde_json::from_value(data).unwrap();
        SampledRecord {
            bytes: serde_json::to_string(&data).unwrap().len() as u64,
            data: Some(data),
            created_at: Some(now - time::Duration::hours(age_h)),
            expires_at: now + time::Duration::seconds(expires_in),
        }
    }

    #[test]
    fn complete_samples_give_exact_figures() {
        let now = OffsetDateTime::now_utc();
        let counts = RecordCounts {
            live: 4,
            expired: 1,
        };
        let mut b = StatsBuilder::new(now, counts, StatsOptions::default());
        b.add(record(json!({"_auth_user_id": "7", "x": 1}), 60, 2, now));
        b.add(record(json!({"_auth_user_id": "7"}), 60, 30, now));
        b.add(record(json!({"testcookie": "worked"}), 60, 0, now));
        b.add(record(json!({"_session_expiry": 0}), 60, 0, now));
        b.add(record(json!({"a": 1}), -60, 200, now));
        let s = b.finish("test", "all", Payloads::Plain, false);
        assert!(s.sample.complete);
        assert_eq!(s.authenticated, Figure::exact(2));
        assert_eq!(s.anonymous, Figure::exact(2));
        assert_eq!(s.empty, Figure::exact(1));
        assert_eq!(s.test_cookie_only, Figure::exact(1));
        assert_eq!(s.top_users, vec![("7".to_owned(), Figure::exact(2))]);
        let created = s.created.unwrap();
        assert_eq!(created.last_hour, Figure::exact(2));
        assert_eq!(created.last_day, Figure::exact(3));
        assert_eq!(created.last_week, Figure::exact(4));
        let age = s.age_seconds.unwrap();
        assert_eq!(age.buckets[0].1, Figure::exact(2));
        assert_eq!(age.buckets[2].1, Figure::exact(1));
    }

    #[test]
    fn partial_samples_are_scaled_and_marked_estimated() {
        let now = OffsetDateTime::now_utc();
        let counts = RecordCounts {
            live: 1000,
            expired: 0,
        };
        let mut b = StatsBuilder::new(now, counts, StatsOptions::default());
        b.add(record(json!({"testcookie": "worked"}), 60, 0, now));
        b.add(record(json!({"a": 1}), 60, 0, now));
        let s = b.finish("test", "range", Payloads::Plain, false);
        assert!(!s.sample.complete);
        assert_eq!(
            s.test_cookie_only,
            Figure {
                value: 500,
                exact: false
            }
        );
        assert!(s.live.exact);
    }

    #[test]
    fn nothing_sampled_gives_no_distributions() {
        let now = OffsetDateTime::now_utc();
        let s = StatsBuilder::new(now, RecordCounts::default(), StatsOptions::default()).finish(
            "t",
            "all",
            Payloads::Plain,
            false,
        );
        assert!(s.age_seconds.is_none() && s.size_bytes.is_none() && s.created.is_none());
        assert_eq!(s.anonymous, Figure::exact(0));
    }
}
