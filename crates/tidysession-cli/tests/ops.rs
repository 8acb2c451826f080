//! `stats`, `doctor` and `clear` on small real tables of every store kind.

use std::time::Instant;

use serde_json::{json, Value};
use sqlx::Connection as _;
use tidysession::store::SessionStore;
use tidysession::store::{IdFormat, Record, SessionId};
use time::{Duration, OffsetDateTime};

mod common;
use common::*;
use tidysession::store::Maintenance as _;

/// Runs SQL on a server when the test ends (dropping its tables).
struct Cleanup(String, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, sql) = (self.0.clone(), self.1.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if url.starts_with("postgres") {
                    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
                } else {
                    let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
                    sqlx::raw_sql(&sql).execute(&mut c).await.unwrap();
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// A Django table name of this run's own on `server` (PostgreSQL or MySQL), its store URL, and
/// the guard that drops it when the test ends.
fn django_table(server: &str) -> (String, String, Cleanup) {
    let table = unique_name("django_ops");
    let url = format!("django+{}", with_param(server, &format!("table={table}")));
    let drop = Cleanup(server.to_owned(), format!("DROP TABLE IF EXISTS {table}"));
    (table, url, drop)
}

fn data(v: Value) -> tidysession::store::Data {
    v.as_object().unwrap().clone()
}

/// The seeded mix: 30 expired; live: alice ×3, bob ×1, 8 test-cookie-only, 2 carts.
async fn seed(
    store: &dyn SessionStore,
    format: IdFormat,
    expired: bool,
) -> Vec<tidysession::store::StorageKey> {
    let mut keys = Vec::new();
    let now = OffsetDateTime::now_utc();
    let mut rows: Vec<(Value, bool)> = Vec::new();
    if expired {
        rows.extend((0..30).map(|i| (json!({"i": i}), false)));
    }
    for user in ["alice", "alice", "alice", "bob"] {
        rows.push((json!({"_auth_user_id": user, "cart": [1]}), true));
    }
    rows.extend((0..8).map(|_| (json!({"testcookie": "worked"}), true)));
    rows.extend((0..2).map(|_| (json!({"cart": [2]}), true)));
    for (v, live) in rows {
        let record = Record {
            data: data(v),
            created_at: now - Duration::minutes(30),
            expires_at: match live {
                true => now + Duration::hours(1),
                false => now - Duration::minutes(1),
            },
        };
        let key = SessionId::generate_as(format).unwrap().storage_key();
        store.create(&key, &record).await.unwrap();
        keys.push(key);
    }
    keys
}

fn stats_json(url: &str, secret: Option<&str>) -> Value {
    let (ok, out, err) = run_with(&["stats", "--store", url, "--json"], secret);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// On MySQL/MariaDB, `stats` reports the table's size from the server's statistics beside
/// the server's own InnoDB settings; elsewhere nothing.
async fn check_innodb(url: &str, s: &Value) {
    let raw = url.strip_prefix("django+").unwrap_or(url);
    if !raw.starts_with("mysql") {
        assert!(s["innodb"].is_null(), "{s}");
        return;
    }
    let mut c = sqlx::MySqlConnection::connect(raw.split('?').next().unwrap())
        .await
        .unwrap();
    let (pool, log, io, lwm): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(@@innodb_buffer_pool_size AS SIGNED), CAST(@@innodb_log_file_size AS SIGNED),
                CAST(@@innodb_io_capacity AS SIGNED),
                CAST(CEIL(@@innodb_max_dirty_pages_pct_lwm) AS SIGNED)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let db = &s["innodb"];
    assert_eq!(db["buffer_pool_bytes"].as_i64(), Some(pool), "{s}");
    assert_eq!(db["redo_log_bytes"].as_i64(), Some(log), "{s}");
    assert_eq!(db["io_capacity"].as_i64(), Some(io), "{s}");
    assert_eq!(db["flush_from_dirty_pct"].as_i64(), Some(lwm), "{s}");
    // InnoDB allocates at least a page for the rows and one per secondary index.
    assert!(db["data_bytes"].as_u64().unwrap() >= 16 << 10, "{s}");
    assert!(db["index_bytes"].as_u64().unwrap() >= 16 << 10, "{s}");
}

fn exact(v: &Value, field: &str) -> u64 {
    assert_eq!(v[field]["exact"], true, "{field}: {v}");
    v[field]["value"].as_u64().unwrap()
}

/// Checks the figures of the seeded mix (with or without the expired rows).
fn check_mix(s: &Value, expired: u64) {
    assert_eq!(s["sample"]["complete"], true, "{s}");
    assert_eq!(exact(s, "total"), 14 + expired);
    assert_eq!(exact(s, "live"), 14);
    assert_eq!(exact(s, "expired"), expired);
    assert_eq!(exact(s, "authenticated"), 4);
    assert_eq!(exact(s, "anonymous"), 10);
    assert_eq!(exact(s, "test_cookie_only"), 8);
    assert_eq!(exact(s, "unreadable"), 0);
    assert_eq!(
        s["top_users"][0],
        json!(["alice", {"value": 3, "exact": true}])
    );
    assert_eq!(
        s["top_users"][1],
        json!(["bob", {"value": 1, "exact": true}])
    );
}

/// A sample smaller than the table: counts stay exact, every content figure is an estimate
/// from exactly `--sample` records.
fn check_partial_sample(url: &str, secret: Option<&str>, total: u64) {
    let (ok, out, err) = run_with(
        &["stats", "--store", url, "--json", "--sample", "10"],
        secret,
    );
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["sample"]["complete"], false, "{s}");
    assert_eq!(s["sample"]["size"], 10, "{s}");
    assert_eq!(exact(&s, "total"), total);
    assert_eq!(s["test_cookie_only"]["exact"], false, "{s}");
}

/// Stats, doctor, `clear --dry-run` and `clear --max-rate` on a native store.
async fn native(url: &str) {
    let (ok, _, err) = run(&["migrate", "--store", url]);
    assert!(ok, "{err}");
    let store = tidysession::store::open(url).await.unwrap();
    seed(&*store, IdFormat::Native, true).await;

    let s = stats_json(url, None);
    check_mix(&s, 30);
    check_partial_sample(url, None, 44);
    assert_eq!(s["expiry_index"]["present"], true, "{s}");
    assert_eq!(exact(&s, "empty"), 0);
    assert!(s["age_seconds"]["p50"].as_u64().unwrap() >= 1700, "{s}");
    assert_eq!(
        s["created"]["last_hour"],
        json!({"value": 44, "exact": true})
    );

    check_innodb(url, &s).await;

    let (ok, out, err) = run(&["stats", "--store", url]);
    assert!(ok, "{err}");
    assert!(
        out.contains("test cookie only") && out.contains("8 (57%)"),
        "{out}"
    );
    assert_eq!(
        out.contains("innodb_buffer_pool_size"),
        url.starts_with("mysql"),
        "{out}"
    );

    let (ok, out, err) = run(&["doctor", "--store", url]);
    assert!(ok, "{err}");
    assert!(out.contains("Most records are expired"), "{out}");
    assert!(out.contains("expired = 30 (68%)"), "{out}");
    assert!(out.contains("nothing but a test cookie"), "{out}");
    assert!(out.contains("Anonymous::InCookie"), "{out}");
    assert!(!out.contains("No index"), "{out}");

    let (ok, out, _) = run(&["clear", "--store", url, "--dry-run", "--max-rate", "10"]);
    assert!(ok);
    assert!(
        out.contains("30 expired sessions would be deleted"),
        "{out}"
    );
    assert!(out.contains("nothing was deleted"), "{out}");
    assert_eq!(
        store
            .maintenance()
            .unwrap()
            .count(OffsetDateTime::now_utc())
            .await
            .unwrap()
            .expired,
        30
    );

    // 30 rows at 15/s: batches of 15, the second waits a second.
    let started = Instant::now();
    let (ok, out, err) = run(&["clear", "--store", url, "--max-rate", "15"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 30 expired sessions"), "{out}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1900),
        "{out}"
    );
    let counts = store
        .maintenance()
        .unwrap()
        .count(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!((counts.live, counts.expired), (14, 0));

    let (ok, out, _) = run(&["doctor", "--store", url]);
    assert!(ok);
    assert!(!out.contains("Most records are expired"), "{out}");
}

#[tokio::test]
async fn stats_doctor_clear_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    native(&format!("sqlite://{}", dir.path().join("s.db").display())).await;
}

#[tokio::test]
async fn stats_doctor_clear_on_postgres() {
    let schema = unique_name("tidysession_ops");
    let _drop = Cleanup(
        postgres_url(),
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
    );
    native(&with_param(&postgres_url(), &format!("schema={schema}"))).await;
}

#[tokio::test]
async fn stats_doctor_clear_on_mysql() {
    let table = unique_name("tidysession_ops");
    let _drop = Cleanup(
        mysql_url(),
        format!("DROP TABLE IF EXISTS {table}, {table}_schema"),
    );
    native(&with_param(&mysql_url(), &format!("table={table}"))).await;
}

#[tokio::test]
async fn stats_doctor_clear_on_redis() {
    redis_ops(&redis_url()).await;
}

#[tokio::test]
async fn stats_doctor_clear_on_redis_cluster() {
    let url = env_or(
        "TIDYSESSION_TEST_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
    );
    redis_ops(&url).await;
}

async fn redis_ops(server: &str) {
    let prefix = format!("{}:", unique_name("tidysession-ops"));
    let url = with_param(server, &format!("prefix={}", prefix.replace(':', "%3A")));
    let store = tidysession::store::open(&url).await.unwrap();
    let keys = seed(&*store, IdFormat::Native, false).await;
    let s = stats_json(&url, None);
    check_mix(&s, 0);
    assert_eq!(s["removes_expired_itself"], true);
    let (ok, out, err) = run(&["doctor", "--store", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("nothing but a test cookie"), "{out}");
    assert!(!out.contains("Most records are expired"), "{out}");
    let (ok, out, err) = run(&["clear", "--store", &url, "--max-rate", "5"]);
    assert!(ok, "{err}");
    assert!(out.contains("PEXPIREAT"), "{out}");
    for key in keys {
        store.delete(&key).await.unwrap();
    }
}

#[test]
fn an_empty_memory_store_looks_healthy() {
    let (ok, out, err) = run(&["doctor", "--store", "memory://"]);
    assert!(ok, "{err}");
    assert!(out.contains("the table looks healthy"), "{out}");
    let (ok, out, err) = run(&["stats", "--store", "memory://", "--json"]);
    assert!(ok, "{err}");
    let s: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["total"], json!({"value": 0, "exact": true}));
}

/// A Django table made without its `expire_date` index, holding the seeded mix plus empty
/// rows (Django's save-every-request with stale cookies).
async fn django(url: &str, create_table: &[String]) {
    use tidysession::django::Secrets;
    use tidysession::store::DjangoStore;

    let store = DjangoStore::connect(url, Secrets::new("ops-secret"))
        .await
        .unwrap();
    let raw = url.strip_prefix("django+").unwrap();
    if raw.starts_with("sqlite") {
        let path = raw
            .strip_prefix("sqlite://")
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}?mode=rwc"))
            .await
            .unwrap();
        for sql in create_table {
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    } else {
        let base = raw.split('?').next().unwrap();
        let mut c = sqlx::PgConnection::connect(base).await.unwrap();
        for sql in create_table {
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }
    let keys = seed(&store, IdFormat::Django, true).await;
    // Empty rows as Django writes them: `{}` signed. The store never makes one, so write
    // them with the session format directly.
    let empty =
        tidysession::django::encode_session_data(&data(json!({})), &Secrets::new("ops-secret"))
            .unwrap();
    let t = OffsetDateTime::now_utc() + Duration::hours(1);
    let expire = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let table = url.split("table=").nth(1).unwrap();
    let inserts: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "INSERT INTO {table} (session_key, session_data, expire_date) VALUES \
                 ('emptyrow{i:024}', '{empty}', '{}')",
                if raw.starts_with("sqlite") {
                    expire.clone()
                } else {
                    format!("{expire}+00")
                }
            )
        })
        .collect();
    if raw.starts_with("sqlite") {
        let path = raw
            .strip_prefix("sqlite://")
            .unwrap()
            .split('?')
            .next()
            .unwrap();
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        for sql in &inserts {
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    } else {
        let mut c = sqlx::PgConnection::connect(raw.split('?').next().unwrap())
            .await
            .unwrap();
        for sql in &inserts {
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }

    // Without the secret: readable, unverified.
    let s = stats_json(url, None);
    assert_eq!(s["payloads"], "unverified", "{s}");
    assert_eq!(exact(&s, "live"), 20);
    assert_eq!(exact(&s, "expired"), 30);
    assert_eq!(exact(&s, "empty"), 6);
    assert_eq!(exact(&s, "test_cookie_only"), 8);
    assert_eq!(exact(&s, "authenticated"), 4);
    assert_eq!(s["expiry_index"]["present"], false, "{s}");
    check_partial_sample(url, None, 50);
    // With it: verified, same figures.
    let s = stats_json(url, Some("ops-secret"));
    assert_eq!(s["payloads"], "verified", "{s}");
    assert_eq!(exact(&s, "empty"), 6);
    assert_eq!(exact(&s, "unreadable"), 0);
    // With another secret nothing verifies.
    let s = stats_json(url, Some("wrong"));
    assert_eq!(exact(&s, "unreadable"), 20);

    let (ok, out, err) = run(&["doctor", "--store", url]);
    assert!(ok, "{err}");
    assert!(out.contains("No index on the expiry column"), "{out}");
    assert!(out.contains("CREATE INDEX"), "{out}");
    assert!(out.contains("expire_date"), "{out}");
    assert!(out.contains("Many live records are empty"), "{out}");
    assert!(out.contains("empty = 6 (30%)"), "{out}");
    assert!(out.contains("Most records are expired"), "{out}");
    assert!(out.contains("unverified"), "{out}");
    // Anonymous rows are Django's way: no cookie-tier finding on its table.
    assert!(!out.contains("stored server-side"), "{out}");

    let (ok, out, _) = run(&["clear", "--store", url, "--dry-run"]);
    assert!(ok);
    assert!(
        out.contains("30 expired sessions would be deleted"),
        "{out}"
    );
    // Cleared without the secret.
    let (ok, out, err) = run(&["clear", "--store", url, "--batch", "7"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 30 expired sessions"), "{out}");
    let counts = store.count(OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!((counts.live, counts.expired), (20, 0));
    // The maintenance-only store refuses to load sessions.
    let maint = DjangoStore::connect_without_secret(url).await.unwrap();
    let err = maint
        .load(&keys[30], OffsetDateTime::now_utc())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("without DJANGO_SECRET_KEY"),
        "{err}"
    );
}

#[tokio::test]
async fn stats_doctor_clear_on_a_django_sqlite_table_without_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let table = "django_session_noindex";
    let url = format!(
        "django+sqlite://{}?table={table}",
        dir.path().join("django.db").display()
    );
    let create = vec![format!(
        "CREATE TABLE {table} (session_key varchar(40) NOT NULL PRIMARY KEY, \
         session_data text NOT NULL, expire_date datetime NOT NULL)"
    )];
    django(&url, &create).await;
}

#[tokio::test]
async fn stats_doctor_clear_on_a_django_postgres_table_without_its_index() {
    let (table, url, _drop) = django_table(&postgres_url());
    let create = vec![format!(
        "CREATE TABLE {table} (session_key varchar(40) NOT NULL PRIMARY KEY, \
         session_data text NOT NULL, expire_date timestamp with time zone NOT NULL)"
    )];
    django(&url, &create).await;
}

#[tokio::test]
async fn stats_on_a_django_mysql_table_reads_its_innodb_figures() {
    let (_, url, _drop) = django_table(&mysql_url());
    let (ok, _, err) = run_with(&["migrate", "--store", &url], Some("ops-secret"));
    assert!(ok, "{err}");
    let s = stats_json(&url, None);
    assert_eq!(exact(&s, "total"), 0);
    check_innodb(&url, &s).await;
}
