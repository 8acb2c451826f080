//! Latency probe for `bench/scale.sh`.
//!
//! Reads, inserts and updates sessions in the table under test at a fixed rate, open loop
//! (each operation is started on schedule whatever the previous ones are doing, so a stall
//! shows up as latency rather than as fewer samples), and prints one line per operation:
//!
//! ```text
//! started_unix_ms,op,latency_us,ok
//! ```
//!
//! The statements are those an application issues on its hot path, in the shape the stores
//! use them: a read by key that checks the expiry, an insert of a new session, an update of
//! a live session's data and expiry by key. Keys are those `bench/scale.sh` generates: row
//! `i` has the native id `sha256(decimal i)` (32 bytes) or the Django key
//! `left(hex(sha256(decimal i)), 32)`, and every tenth row (`i % 10 = 0`) is live.
//!
//! ```text
//! scale-probe --db postgres|mysql --kind native|django --url URL --table QUALIFIED_TABLE \
//!             --rows N [--rate OPS_PER_SEC] [--max-seconds S]
//! ```
//!
//! Stops on SIGTERM or SIGINT (or after `--max-seconds`), waiting up to 10 s for the
//! operations in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Executor as _;

/// Server-side and client-side bound on one operation.
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Operations in flight at most; a tick beyond it is recorded as `skipped`.
const MAX_IN_FLIGHT: u64 = 64;
const DAY_MS: i64 = 86_400_000;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Native,
    Django,
}

enum Db {
    Pg(PgPool),
    My(MySqlPool),
}

struct Probe {
    db: Db,
    kind: Kind,
    table: String,
    live_rows: u64,
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn native_id(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

fn django_key(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    hex[..32].to_owned()
}

/// A JSON payload of a few hundred bytes, like the filled rows.
fn payload(n: u64) -> String {
    let h = django_key(&format!("probe-{n}"));
    format!(
        "{{\"csrf\":\"{h}\",\"cart\":[{n},{},{}],\"pad\":\"{}\"}}",
        n % 97,
        n % 13,
        h.repeat(8)
    )
}

/// Django's `session_data`: a signed, base64 payload of a few hundred characters.
fn django_data(n: u64) -> String {
    let h = django_key(&format!("probe-{n}"));
    format!(".eJx{}:1tprobe:{}", h.repeat(8), &h[..27])
}

/// xorshift64*: good enough to pick rows.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Probe {
    /// Decimal form of a random live row's number.
    fn live_row(&self, rng: &mut Rng) -> String {
        (10 * (1 + rng.next() % self.live_rows)).to_string()
    }

    async fn op(&self, op: &str, row: String, n: u64) -> Result<(), sqlx::Error> {
        let t = &self.table;
        let now = now_ms();
        match (&self.db, self.kind, op) {
            (Db::Pg(p), Kind::Native, "read") => {
                sqlx::query(&format!(
                    "SELECT data::text, created_at, expires_at FROM {t} WHERE id = $1 AND expires_at > $2"
                ))
                .bind(native_id(&row))
                .bind(now)
                .fetch_optional(p)
                .await?;
            }
            (Db::Pg(p), Kind::Native, "insert") => {
                sqlx::query(&format!(
                    "INSERT INTO {t} (id, data, created_at, expires_at) VALUES ($1, $2::jsonb, $3, $4)"
                ))
                .bind(native_id(&row))
                .bind(payload(n))
                .bind(now)
                .bind(now + 14 * DAY_MS)
                .execute(p)
                .await?;
            }
            (Db::Pg(p), Kind::Native, _) => {
                sqlx::query(&format!(
                    "UPDATE {t} SET data = $2::jsonb, expires_at = $3, version = version + 1 WHERE id = $1"
                ))
                .bind(native_id(&row))
                .bind(payload(n))
                .bind(now + 14 * DAY_MS)
                .execute(p)
                .await?;
            }
            (Db::Pg(p), Kind::Django, "read") => {
                sqlx::query(&format!(
                    "SELECT session_data, expire_date::text FROM {t} WHERE session_key = $1 AND expire_date > now()"
                ))
                .bind(django_key(&row))
                .fetch_optional(p)
                .await?;
            }
            (Db::Pg(p), Kind::Django, "insert") => {
                sqlx::query(&format!(
                    "INSERT INTO {t} (session_key, session_data, expire_date) VALUES ($1, $2, now() + interval '14 days')"
                ))
                .bind(django_key(&row))
                .bind(django_data(n))
                .execute(p)
                .await?;
            }
            (Db::Pg(p), Kind::Django, _) => {
                sqlx::query(&format!(
                    "UPDATE {t} SET session_data = $2, expire_date = now() + interval '14 days' WHERE session_key = $1"
                ))
                .bind(django_key(&row))
                .bind(django_data(n))
                .execute(p)
                .await?;
            }
            (Db::My(p), Kind::Native, "read") => {
                sqlx::query(&format!(
                    "SELECT CAST(data AS CHAR), created_at, expires_at FROM {t} WHERE id = ? AND expires_at > ?"
                ))
                .bind(native_id(&row))
                .bind(now)
                .fetch_optional(p)
                .await?;
            }
            (Db::My(p), Kind::Native, "insert") => {
                sqlx::query(&format!(
                    "INSERT INTO {t} (id, data, created_at, expires_at) VALUES (?, ?, ?, ?)"
                ))
                .bind(native_id(&row))
                .bind(payload(n))
                .bind(now)
                .bind(now + 14 * DAY_MS)
                .execute(p)
                .await?;
            }
            (Db::My(p), Kind::Native, _) => {
                sqlx::query(&format!(
                    "UPDATE {t} SET data = ?, expires_at = ?, version = version + 1 WHERE id = ?"
                ))
                .bind(payload(n))
                .bind(now + 14 * DAY_MS)
                .bind(native_id(&row))
                .execute(p)
                .await?;
            }
            (Db::My(p), Kind::Django, "read") => {
                sqlx::query(&format!(
                    "SELECT session_data, CAST(expire_date AS CHAR) FROM {t} WHERE session_key = ? AND expire_date > UTC_TIMESTAMP(6)"
                ))
                .bind(django_key(&row))
                .fetch_optional(p)
                .await?;
            }
            (Db::My(p), Kind::Django, "insert") => {
                sqlx::query(&format!(
                    "INSERT INTO {t} (session_key, session_data, expire_date) VALUES (?, ?, UTC_TIMESTAMP(6) + INTERVAL 14 DAY)"
                ))
                .bind(django_key(&row))
                .bind(django_data(n))
                .execute(p)
                .await?;
            }
            (Db::My(p), Kind::Django, _) => {
                sqlx::query(&format!(
                    "UPDATE {t} SET session_data = ?, expire_date = UTC_TIMESTAMP(6) + INTERVAL 14 DAY WHERE session_key = ?"
                ))
                .bind(django_data(n))
                .bind(django_key(&row))
                .execute(p)
                .await?;
            }
        }
        Ok(())
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let need = |name: &str| {
        arg(&args, name).unwrap_or_else(|| {
            eprintln!("scale-probe: missing {name}");
            std::process::exit(2)
        })
    };
    let url = need("--url");
    let table = need("--table");
    let rows: u64 = need("--rows").parse().expect("--rows");
    let rate: f64 = arg(&args, "--rate").map_or(20.0, |r| r.parse().expect("--rate"));
    let max_seconds: u64 = arg(&args, "--max-seconds").map_or(3600, |r| r.parse().expect("--max-seconds"));
    let kind = match need("--kind").as_str() {
        "native" => Kind::Native,
        "django" => Kind::Django,
        k => panic!("--kind {k}"),
    };
    let secs = OP_TIMEOUT.as_secs();
    let db = match need("--db").as_str() {
        "postgres" => Db::Pg(
            PgPoolOptions::new()
                .max_connections(16)
                .min_connections(4)
                .acquire_timeout(OP_TIMEOUT)
                .after_connect(move |c, _| {
                    Box::pin(async move {
                        c.execute(format!("SET statement_timeout = '{secs}s'").as_str()).await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
                .expect("connecting to PostgreSQL"),
        ),
        "mysql" => Db::My(
            MySqlPoolOptions::new()
                .max_connections(16)
                .min_connections(4)
                .acquire_timeout(OP_TIMEOUT)
                .after_connect(move |c, _| {
                    Box::pin(async move {
                        c.execute(format!("SET SESSION max_statement_time = {secs}").as_str()).await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await
                .expect("connecting to MariaDB/MySQL"),
        ),
        d => panic!("--db {d}"),
    };
    let probe = Arc::new(Probe {
        db,
        kind,
        table,
        live_rows: (rows / 10).max(1),
    });
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut rng = Rng(now_ms() as u64 | 1);
    let mut sigterm =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + Duration::from_secs(max_seconds);
    let pid = std::process::id();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = sigterm.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
        if Instant::now() >= deadline {
            break;
        }
        n += 1;
        let op = ["read", "insert", "update"][(n % 3) as usize];
        let row = if op == "insert" {
            format!("probe-{pid}-{n}")
        } else {
            probe.live_row(&mut rng)
        };
        let started_ms = now_ms();
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            println!("{started_ms},{op},0,skipped");
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let probe = probe.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(OP_TIMEOUT, probe.op(op, row, n)).await;
            let us = started.elapsed().as_micros();
            let ok = match result {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => {
                    eprintln!("scale-probe: {op}: {e}");
                    "error".to_owned()
                }
                Err(_) => "timeout".to_owned(),
            };
            println!("{started_ms},{op},{us},{ok}");
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}
