//! The real `tidysession` binary: migrate, clear and the demo over loopback HTTP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::json;
use tidysession::store::SessionStore;
use tidysession::store::{Record, SessionId};
use time::{Duration, OffsetDateTime};

mod common;
use common::*;
use tidysession::store::Maintenance as _;

/// Drops a per-test PostgreSQL schema or MySQL table when the test ends.
struct DropOnExit(&'static str, String);

impl Drop for DropOnExit {
    fn drop(&mut self) {
        use sqlx::Connection as _;
        let (kind, name) = (self.0, self.1.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if kind == "postgres" {
                    let mut c = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
                    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut c)
                        .await
                        .unwrap();
                } else {
                    let mut c = sqlx::MySqlConnection::connect(&mysql_url()).await.unwrap();
                    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {name}, {name}_schema"))
                        .execute(&mut c)
                        .await
                        .unwrap();
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// `migrate`, then `clear --dry-run` and `clear` on 2,300 expired and 200 live sessions; on a
/// server (`server`), with a batch time no batch of 1,000 rows can meet.
async fn migrate_then_clear(url: &str, server: bool) {
    let (ok, out, err) = run(&["migrate", "--store", url]);
    assert!(ok, "{err}");
    assert!(out.contains("schema is up to date"), "{out}");

    let store = seed(url, 2300, 200).await;

    let (ok, out, _) = run(&["clear", "--store", url, "--dry-run"]);
    assert!(ok);
    assert!(
        out.contains("2300 expired sessions would be deleted") && out.contains("200 live"),
        "{out}"
    );
    assert_eq!(
        store
            .maintenance()
            .unwrap()
            .count(OffsetDateTime::now_utc())
            .await
            .unwrap()
            .expired,
        2300
    );

    // No batch of 1,000 rows fits in a millisecond on a server: the batches shrink.
    let target = if server { "1" } else { "20" };
    let (ok, out, err) = run(&[
        "clear",
        "--store",
        url,
        "--batch",
        "1000",
        "--batch-ms",
        target,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 2300 expired sessions"), "{out}");
    // Most rows are expired: the servers' tables are swept in storage order; SQLite has no
    // sweep and walks the expiry index.
    let order = if server {
        "in storage order"
    } else {
        "in expiry order"
    };
    assert!(out.contains(order), "{out}");
    let summary = Summary::of(&out);
    if server {
        assert!(summary.smallest < 1000, "{out}");
    }
    // Each batch is followed by a pause as long as it took (the summary rounds to the ms).
    assert!(summary.paused_ms + 1.0 >= summary.longest_ms, "{out}");
    let counts = store
        .maintenance()
        .unwrap()
        .count(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!((counts.live, counts.expired), (200, 0));
}

/// A store at `url` holding `expired` sessions that expired a minute ago, then `live` ones
/// that live an hour.
async fn seed(url: &str, expired: usize, live: usize) -> Arc<dyn SessionStore> {
    let store = tidysession::store::open(url).await.unwrap();
    let now = OffsetDateTime::now_utc();
    for i in 0..expired + live {
        let expires_at = if i < expired {
            now - Duration::minutes(1)
        } else {
            now + Duration::hours(1)
        };
        let record = Record {
            data: json!({"i": i}).as_object().unwrap().clone(),
            created_at: now - Duration::hours(2),
            expires_at,
        };
        let key = SessionId::generate().unwrap().storage_key();
        store.create(&key, &record).await.unwrap();
    }
    store
}

/// A few expired sessions among many live ones: `clear` goes through the expiry index.
#[tokio::test]
async fn clear_walks_the_expiry_index_when_few_sessions_are_expired() {
    let guard = DropOnExit("postgres", unique_name("tidysession_cli"));
    let url = with_param(&postgres_url(), &format!("schema={}", guard.1));
    let (ok, _, err) = run(&["migrate", "--store", &url]);
    assert!(ok, "{err}");
    let store = seed(&url, 20, 100).await;
    let (ok, out, err) = run(&["clear", "--store", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 20 expired sessions"), "{out}");
    assert!(
        out.contains("in expiry order, through the expiry index"),
        "{out}"
    );
    let counts = store
        .maintenance()
        .unwrap()
        .count(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!((counts.live, counts.expired), (100, 0));
}

/// The figures of `clear`'s summary.
#[derive(Debug)]
struct Summary {
    longest_ms: f64,
    smallest: u32,
    paused_ms: f64,
}

impl Summary {
    fn of(out: &str) -> Self {
        let after = |marker: &str| -> &str {
            let at = out
                .find(marker)
                .unwrap_or_else(|| panic!("{marker:?} in {out}"));
            out[at + marker.len()..].split([' ', 's']).next().unwrap()
        };
        Self {
            longest_ms: after("longest batch ").parse().unwrap(),
            smallest: after("batches of ").parse().unwrap(),
            paused_ms: after("paused ").parse::<f64>().unwrap() * 1000.0,
        }
    }
}

#[tokio::test]
async fn migrate_then_clear_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    migrate_then_clear(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        false,
    )
    .await;
}

#[tokio::test]
async fn migrate_then_clear_on_postgres() {
    let guard = DropOnExit("postgres", unique_name("tidysession_cli"));
    migrate_then_clear(
        &with_param(&postgres_url(), &format!("schema={}", guard.1)),
        true,
    )
    .await;
}

#[tokio::test]
async fn migrate_then_clear_on_mysql() {
    let guard = DropOnExit("mysql", unique_name("tidysession_cli"));
    migrate_then_clear(
        &with_param(&mysql_url(), &format!("table={}", guard.1)),
        true,
    )
    .await;
}

#[tokio::test]
async fn clear_on_redis_says_redis_expires_sessions_itself() {
    let prefix = format!("{}:", unique_name("tidysession-cli"));
    let url = with_param(
        &redis_url(),
        &format!("prefix={}", prefix.replace(':', "%3A")),
    );
    let (ok, out, err) = run(&["migrate", "--store", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("schema is up to date"), "{out}");
    let (ok, out, err) = run(&["clear", "--store", &url]);
    assert!(ok, "{err}");
    assert!(out.contains("deletes expired sessions by itself"), "{out}");
}

#[test]
fn passwords_never_reach_the_output() {
    let url = postgres_url().replacen("://root@", "://root:hunter2@", 1);
    let (_, out, err) = run(&["migrate", "--store", &with_param(&url, "schema=a-b")]);
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    assert!(err.contains("invalid schema name"), "{err}");
}

#[test]
fn bad_store_urls_are_explained() {
    let (ok, _, err) = run(&["migrate", "--store", "mongodb://x"]);
    assert!(!ok);
    assert!(
        err.contains("unsupported store URL") && err.contains("sqlite://PATH"),
        "{err}"
    );
    let (ok, _, err) = run(&["clear", "--store", "memory://", "--batch", "0"]);
    assert!(!ok && err.contains("batch"), "{err}");
}

/// One HTTP/1.1 request over loopback; returns the status line, headers and body.
fn http(addr: &str, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req += &format!("Cookie: {c}\r\n");
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req += "Content-Type: application/x-www-form-urlencoded\r\n";
    }
    req += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn session_cookie(response: &str) -> Option<String> {
    response
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with("id=") && !c.starts_with("id=;"))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_serves_the_shop_on_an_embedded_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    demo_shop(&format!(
        "sqlite://{}",
        dir.path().join("demo.db").display()
    ));
}

#[test]
fn demo_serves_the_shop_on_postgres() {
    let guard = DropOnExit("postgres", unique_name("tidysession_demo"));
    demo_shop(&with_param(&postgres_url(), &format!("schema={}", guard.1)));
}

#[test]
fn demo_serves_the_shop_on_mysql() {
    let guard = DropOnExit("mysql", unique_name("tidysession_demo"));
    demo_shop(&with_param(&mysql_url(), &format!("table={}", guard.1)));
}

#[test]
fn demo_serves_the_shop_on_redis() {
    let prefix = format!("{}%3A", unique_name("tidysession-demo"));
    demo_shop(&with_param(&redis_url(), &format!("prefix={prefix}")));
}

/// The demo on the store at `url`: health check, cart, login, who am I.
fn demo_shop(url: &str) {
    let mut child = tidysession()
        .args([
            "demo",
            "--store",
            url,
            "--addr",
            "127.0.0.1:0",
            "--seed-users",
            "3",
        ])
        .env(
            "TIDYSESSION_KEYS",
            tidysession::KeyRing::generate(1).unwrap().to_config(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _demo = Demo(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(line.contains("user1…user3"), "{line}");

    let health = http(&addr, "GET", "/health", None, None);
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok"),
        "{health}"
    );
    assert!(
        !health.contains("set-cookie") && !health.contains("vary"),
        "{health}"
    );

    let added = http(&addr, "GET", "/cart/add?item=tea", None, None);
    let anon = session_cookie(&added).expect("cart cookie");
    let login = http(
        &addr,
        "POST",
        "/login",
        Some(&anon),
        Some("username=user3&password=password"),
    );
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    let user = session_cookie(&login).expect("new id at login");
    assert_ne!(user, anon);
    let who = http(&addr, "GET", "/whoami", Some(&user), None);
    assert!(who.ends_with(r#"{"user":"user3"}"#), "{who}");
    let home = http(&addr, "GET", "/", Some(&user), None);
    assert!(
        home.contains("Cart: 1 item(s)") && home.contains("user3"),
        "{home}"
    );

    // The metrics, in Prometheus text, after that traffic; scraping sets no cookie.
    let metrics = http(&addr, "GET", "/metrics", Some(&user), None);
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        !metrics.contains("set-cookie") && !metrics.contains("vary"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tidysession_promotions_total 1")),
        "{metrics}"
    );

    // Two clients of alice; "log out everywhere else" from one ends the other.
    let alice = |addr: &str| {
        let r = http(
            addr,
            "POST",
            "/login",
            None,
            Some("username=alice&password=password"),
        );
        session_cookie(&r).expect("alice logged in")
    };
    let (one, two) = (alice(&addr), alice(&addr));
    let page = http(&addr, "GET", "/account/sessions", Some(&one), None);
    assert_eq!(page.matches("name=id value=").count(), 3, "{page}");
    let out = http(
        &addr,
        "POST",
        "/account/sessions/revoke",
        Some(&one),
        Some("id=all"),
    );
    assert!(out.starts_with("HTTP/1.1 303"), "{out}");
    let who = http(&addr, "GET", "/whoami", Some(&two), None);
    assert!(who.ends_with(r#"{"user":null}"#), "{who}");
    let who = http(&addr, "GET", "/whoami", Some(&one), None);
    assert!(who.ends_with(r#"{"user":"alice"}"#), "{who}");
}

/// The value of the "tidysession default" column in a row of `simulate`'s table.
fn default_column(table: &str, row: &str) -> u64 {
    let line = table
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row:?} row in\n{table}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
}

fn logged_in_users(table: &str) -> u64 {
    let rest = table.split("logged-in users: ").nth(1).unwrap();
    rest.split(';').next().unwrap().parse().unwrap()
}

#[test]
fn simulate_prints_the_table_and_draws_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("rows.svg");
    let chart = chart.to_str().unwrap();
    let (ok, out, err) = run(&[
        "simulate",
        "--requests",
        "120",
        "--seed",
        "5",
        "--chart",
        chart,
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("a fresh file per policy"), "{out}");
    let header = out
        .lines()
        .find(|l| l.contains("server-side always"))
        .unwrap();
    assert!(header.contains("save every request") && header.contains("tidysession default"));
    // The default keeps a row per logged-in user and nothing else.
    assert_eq!(
        default_column(&out, "rows at the end"),
        logged_in_users(&out)
    );
    assert_eq!(default_column(&out, "creates"), logged_in_users(&out));
    for row in [
        "store ops: health",
        "store ops: bots",
        "store ops: browsers",
    ] {
        assert_eq!(default_column(&out, row), 0, "{row}\n{out}");
    }
    let svg = std::fs::read_to_string(chart).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
}

#[test]
fn simulate_explains_bad_flags() {
    for (args, says) in [
        (&["--mix", "health=50,bots=40"][..], "add up to 90"),
        (&["--mix", "health=50,spiders=50"], "unknown traffic"),
        (&["--requests", "0"], "requests"),
        (&["--requests", "many"], "requests"),
        (&["--store", "mongodb://x"], "unsupported store URL"),
        (&["--store", "memory://x"], "unsupported store URL"),
        (&["--seed=-1"], "--seed"),
    ] {
        let (ok, out, err) = run(&[&["simulate"], args].concat());
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sim-default.db"), b"").unwrap();
    let url = format!("sqlite://{}", dir.path().join("sim.db").display());
    let (ok, _, err) = run(&["simulate", "--requests", "10", "--store", &url]);
    assert!(!ok && err.contains("fresh database per policy"), "{err}");
}

/// `simulate` on a server store: a namespace per policy, which must start empty.
fn simulate_on_server(url: &str, kind: &'static str, param: &str) {
    let base = unique_name("sim");
    let _drop: Vec<DropOnExit> = ["server_always", "save_every", "default"]
        .iter()
        .map(|p| DropOnExit(kind, format!("{base}_{p}")))
        .collect();
    let url = with_param(url, &format!("{param}={base}"));
    let (ok, out, err) = run(&["simulate", "--requests", "100", "--store", &url]);
    assert!(ok, "{err}");
    assert_eq!(
        default_column(&out, "rows at the end"),
        logged_in_users(&out)
    );
    assert!(
        out.contains("n/a"),
        "bytes at rest are measured on SQLite only\n{out}"
    );
    // Run again: the namespaces are no longer empty.
    let (ok, _, err) = run(&["simulate", "--requests", "100", "--store", &url]);
    assert!(
        !ok && err.contains("needs an empty store per policy"),
        "{err}"
    );
}

#[test]
fn simulate_on_postgres() {
    simulate_on_server(&postgres_url(), "postgres", "schema");
}

#[test]
fn simulate_on_mysql() {
    simulate_on_server(&mysql_url(), "mysql", "table");
}

/// `migrate` and `clear` on Django's table: the secret comes from `DJANGO_SECRET_KEY`, and
/// its absence is an error naming it.
#[tokio::test]
async fn migrate_then_clear_on_a_django_table() {
    use tidysession::django::Secrets;
    use tidysession::store::DjangoStore;
    use tidysession::store::IdFormat;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("django+sqlite://{}", dir.path().join("django.db").display());
    let out = tidysession()
        .args(["migrate", "--store", &url])
        .env_remove("DJANGO_SECRET_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("DJANGO_SECRET_KEY"),
        "{err}"
    );

    let with_secret = |args: &[&str]| {
        let out = tidysession()
            .args(args)
            .env("DJANGO_SECRET_KEY", "cli-secret")
            .env("DJANGO_SECRET_KEY_FALLBACKS", "old-1,old-2")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(with_secret(&["migrate", "--store", &url]).contains("schema is up to date"));

    let store = DjangoStore::connect(&url, Secrets::new("cli-secret"))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    for i in 0..30 {
        let expires_at = match i < 25 {
            true => now - Duration::minutes(1),
            false => now + Duration::hours(1),
        };
        let record = Record {
            data: json!({"i": i}).as_object().unwrap().clone(),
            created_at: now - Duration::hours(2),
            expires_at,
        };
        let key = SessionId::generate_as(IdFormat::Django)
            .unwrap()
            .storage_key();
        store.create(&key, &record).await.unwrap();
    }
    let out = with_secret(&["clear", "--store", &url, "--batch", "10"]);
    assert!(out.contains("deleted 25 expired sessions"), "{out}");
    let counts = store.count(OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!((counts.live, counts.expired), (5, 0));
}
