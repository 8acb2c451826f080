//! `bench-server`: the same four routes served by bare axum, tidysession and tower-sessions,
//! each over a memory, SQLite, PostgreSQL, MySQL/MariaDB and Redis store, for `bench/run.sh` to
//! load with wrk.
//!
//! ```text
//! bench-server --impl <name> --addr <host:port> [--count-store-bytes]
//! bench-server --check <postgres|mysql|redis>
//! ```
//!
//! Impls: `axum`, and `tidysession-<store>` and `tower-sessions-<store>` for each store of
//! `memory`, `sqlite`, `postgres`, `mysql`, `redis`.
//!
//! Routes (identical for every impl):
//! - `GET /untouched`: "ok"; the handler never touches the session.
//! - `GET /read`: the integer under "n" (default 0).
//! - `GET /write`: reads "n", stores n+1, returns it.
//! - `GET /pad`: stores a ~2 KB string under "pad", so that the session has a realistic size.
//!
//! Bare axum has no session: /read and /write return a constant and /pad returns "ok".
//!
//! Cookies are named `id` and are not `Secure` (the benchmark is plain http on loopback).
//!
//! Stores:
//! - SQLite impls use a fresh database file in the temp directory, migrated at start.
//! - Server stores are reached at `BENCH_POSTGRES_URL` (default `postgres://root@127.0.0.1/test`),
//!   `BENCH_MYSQL_URL` (`mysql://root@127.0.0.1/test`) and `BENCH_REDIS_URL`
//!   (`redis://127.0.0.1:6379`). Every server start gets a namespace of its own, named after
//!   its process id: a PostgreSQL schema `tsbench_<pid>_<lib>`, MySQL tables
//!   `tsbench_<pid>_<lib>[...]`, a Redis key prefix `tsbench:<pid>:` for tidysession and, since
//!   tower-sessions' Redis store has no key prefix, a Redis database of its own for
//!   tower-sessions (`BENCH_REDIS_TOWER_DB`, default 15, claimed through a `tsbench:owner`
//!   key and refused if it holds other keys). The namespace is removed when the server stops
//!   on SIGTERM or SIGINT; a start (and `--check`) first removes the namespaces of
//!   bench-servers that are no longer running.
//!
//! `--count-store-bytes` puts a counting TCP proxy on 127.0.0.1 between the store and its
//! server, and adds `GET /__store_bytes`, answering "<sent> <received>": the bytes the app
//! has sent to and received from the store's server so far. Memory and SQLite stores have no
//! connection to count (the route answers "0 0").
//!
//! `--check <store>` connects to the store's server, removes stale namespaces, prints the
//! server's version and exits: 0 if the server answered.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

const COOKIE_NAME: &str = "id";
const PAD_LEN: usize = 2048;

fn pad_value() -> String {
    "x".repeat(PAD_LEN)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const IMPLS: &[&str] = &[
    "axum",
    "tidysession-memory",
    "tidysession-sqlite",
    "tidysession-postgres",
    "tidysession-mysql",
    "tidysession-redis",
    "tower-sessions-memory",
    "tower-sessions-sqlite",
    "tower-sessions-postgres",
    "tower-sessions-mysql",
    "tower-sessions-redis",
];

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench-server --impl <name> --addr <host:port> [--count-store-bytes]\n       \
         bench-server --check <postgres|mysql|redis>\nimpls: {}",
        IMPLS.join(", ")
    );
    ExitCode::from(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    let mut imp = None;
    let mut addr = None;
    let mut check = None;
    let mut count_bytes = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--impl" => imp = args.next(),
            "--addr" => addr = args.next(),
            "--check" => check = args.next(),
            "--count-store-bytes" => count_bytes = true,
            "-h" | "--help" => return usage(),
            other => {
                eprintln!("unknown argument: {other}");
                return usage();
            }
        }
    }
    let result = match (check, imp, addr) {
        (Some(store), None, None) => check_store(&store).await,
        (None, Some(imp), Some(addr)) => run(&imp, &addr, count_bytes).await,
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(imp: &str, addr: &str, count_bytes: bool) -> Result<(), BoxError> {
    let (lib, store) = match imp {
        "axum" => ("axum", ""),
        _ => imp
            .strip_prefix("tidysession-")
            .map(|s| ("tidysession", s))
            .or_else(|| imp.strip_prefix("tower-sessions-").map(|s| ("tower-sessions", s)))
            .ok_or_else(|| format!("unknown impl {imp:?}"))?,
    };
    let counter = Arc::new(Counter::default());
    let proxy = count_bytes.then_some(&counter);
    // Bind first, so that a taken port fails before any namespace is created.
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (app, namespace) = match (lib, store) {
        ("axum", _) => (bare::router(), Namespace::None),
        ("tidysession", "memory") => (tidy::router_memory(), Namespace::None),
        ("tower-sessions", "memory") => (tower::router_memory(), Namespace::None),
        ("tidysession", "sqlite") => (tidy::router_sqlite(&fresh_db(imp)?).await?, Namespace::None),
        ("tower-sessions", "sqlite") => {
            (tower::router_sqlite(&fresh_db(imp)?).await?, Namespace::None)
        }
        (lib, "postgres" | "mysql" | "redis") => {
            let namespace = Namespace::fresh(lib, store).await?;
            let url = match proxy {
                Some(counter) => counting_proxy(&namespace.url()?, counter.clone()).await?,
                None => namespace.url()?,
            };
            let app = match (lib, store) {
                ("tidysession", "postgres") => {
                    tidy::router_postgres(url.as_str(), namespace.name()).await
                }
                ("tidysession", "mysql") => tidy::router_mysql(url.as_str(), namespace.name()).await,
                ("tidysession", "redis") => tidy::router_redis(url.as_str(), namespace.name()).await,
                ("tower-sessions", "postgres") => {
                    tower::router_postgres(url.as_str(), namespace.name()).await
                }
                ("tower-sessions", "mysql") => {
                    tower::router_mysql(url.as_str(), namespace.name()).await
                }
                _ => tower::router_redis(url.as_str()).await,
            };
            match app {
                Ok(app) => (app, namespace),
                Err(e) => {
                    namespace.remove().await;
                    return Err(e);
                }
            }
        }
        _ => return Err(format!("unknown impl {imp:?}").into()),
    };
    let app = if count_bytes {
        let counter = counter.clone();
        app.route(
            "/__store_bytes",
            get(move || async move {
                format!(
                    "{} {}",
                    counter.sent.load(Ordering::Relaxed),
                    counter.received.load(Ordering::Relaxed)
                )
            }),
        )
    } else {
        app
    };
    println!("bench-server: {imp} listening on {}", listener.local_addr()?);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    namespace.remove().await;
    served?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A database path unique to this process, with any leftover file (and WAL/SHM) removed.
fn fresh_db(imp: &str) -> Result<String, BoxError> {
    let path: PathBuf =
        std::env::temp_dir().join(format!("tidysession-bench-{imp}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let path = path.to_str().ok_or("temp dir is not UTF-8")?.to_owned();
    println!("bench-server: database {path}");
    Ok(path)
}

// --- server stores: addresses, namespaces, cleanup ------------------------------------------

fn env_url(var: &str, default: &str) -> Result<url::Url, BoxError> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    url::Url::parse(&raw).map_err(|e| format!("{var}={raw:?}: {e}").into())
}

/// The URL without the query parameter `name` (the bench chooses schemas, tables and
/// prefixes itself).
fn without_param(url: &url::Url, name: &str) -> url::Url {
    let mut url = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url
}

fn postgres_url() -> Result<url::Url, BoxError> {
    Ok(without_param(
        &env_url("BENCH_POSTGRES_URL", "postgres://root@127.0.0.1/test")?,
        "schema",
    ))
}

fn mysql_url() -> Result<url::Url, BoxError> {
    Ok(without_param(&env_url("BENCH_MYSQL_URL", "mysql://root@127.0.0.1/test")?, "table"))
}

fn redis_url() -> Result<url::Url, BoxError> {
    Ok(without_param(&env_url("BENCH_REDIS_URL", "redis://127.0.0.1:6379")?, "prefix"))
}

/// The Redis database tower-sessions' store runs in: its keys are bare session ids, so the
/// only namespace it can have is a database of its own.
fn redis_tower_db() -> Result<u8, BoxError> {
    match std::env::var("BENCH_REDIS_TOWER_DB") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("BENCH_REDIS_TOWER_DB={v:?} is not a database number").into()),
        Err(_) => Ok(15),
    }
}

const PREFIX: &str = "tsbench";
const REDIS_OWNER_KEY: &str = "tsbench:owner";

/// Whether `pid` is a running bench-server (other than this one).
fn other_bench_server_alive(pid: u32) -> bool {
    pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "bench-server")
}

/// Whether the namespace `name` (`tsbench_<pid>_...` or `tsbench:<pid>:...`) is stale: its
/// server is gone, or it is this process's own (a new start begins empty).
fn is_stale(name: &str) -> bool {
    let mut parts = name.split(['_', ':']);
    if parts.next() != Some(PREFIX) {
        return false;
    }
    match parts.next().and_then(|p| p.parse::<u32>().ok()) {
        Some(pid) => !other_bench_server_alive(pid),
        None => false,
    }
}

/// What one server start created in a store's server, removed when it stops.
enum Namespace {
    None,
    Postgres { url: url::Url, schema: String },
    MySql { url: url::Url, table: String },
    RedisPrefix { url: url::Url, prefix: String },
    RedisDb { url: url::Url, db: u8 },
}

impl Namespace {
    /// Sweeps stale namespaces of `store`'s server and returns a fresh one for `lib`.
    async fn fresh(lib: &str, store: &str) -> Result<Self, BoxError> {
        let pid = std::process::id();
        let tag = if lib == "tidysession" { "tidy" } else { "tower" };
        sweep(store).await?;
        Ok(match (store, lib) {
            ("postgres", _) => Namespace::Postgres {
                url: postgres_url()?,
                schema: format!("{PREFIX}_{pid}_{tag}"),
            },
            ("mysql", _) => Namespace::MySql {
                url: mysql_url()?,
                table: format!("{PREFIX}_{pid}_{tag}"),
            },
            ("redis", "tidysession") => Namespace::RedisPrefix {
                url: redis_url()?,
                prefix: format!("{PREFIX}:{pid}:"),
            },
            ("redis", _) => {
                let db = redis_tower_db()?;
                claim_redis_db(&redis_url()?, db).await?;
                let mut url = redis_url()?;
                url.set_path(&format!("/{db}"));
                Namespace::RedisDb { url, db }
            }
            _ => return Err(format!("no namespace for {store}").into()),
        })
    }

    /// The URL the store connects to.
    fn url(&self) -> Result<url::Url, BoxError> {
        match self {
            Namespace::None => Err("no store server".into()),
            Namespace::Postgres { url, .. }
            | Namespace::MySql { url, .. }
            | Namespace::RedisPrefix { url, .. }
            | Namespace::RedisDb { url, .. } => Ok(url.clone()),
        }
    }

    /// The schema, table or key prefix.
    fn name(&self) -> &str {
        match self {
            Namespace::Postgres { schema: n, .. }
            | Namespace::MySql { table: n, .. }
            | Namespace::RedisPrefix { prefix: n, .. } => n,
            Namespace::None | Namespace::RedisDb { .. } => "",
        }
    }

    /// Removes the namespace and everything in it; failures are reported, not fatal (the next
    /// start sweeps what is left).
    async fn remove(self) {
        let result: Result<(), BoxError> = async {
            match &self {
                Namespace::None => {}
                Namespace::Postgres { url, schema } => {
                    drop_postgres_schema(&mut pg_admin(url).await?, schema).await?;
                }
                Namespace::MySql { url, table } => {
                    let mut conn = mysql_admin(url).await?;
                    for t in mysql_tables(&mut conn).await? {
                        if t.strip_prefix(table.as_str())
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
                        {
                            drop_mysql_table(&mut conn, &t).await?;
                        }
                    }
                }
                Namespace::RedisPrefix { url, prefix } => {
                    let mut conn = redis_admin(url).await?;
                    unlink_matching(&mut conn, &format!("{prefix}*"), |_| true).await?;
                }
                Namespace::RedisDb { url, db } => {
                    let mut conn = redis_admin(url).await?;
                    release_redis_db(&mut conn, *db).await?;
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                if !matches!(self, Namespace::None) {
                    println!("bench-server: removed the bench's namespace");
                }
            }
            Err(e) => eprintln!("bench-server: could not remove the bench's namespace: {e}"),
        }
    }
}

/// Removes the namespaces of bench-servers that are not running any more.
async fn sweep(store: &str) -> Result<(), BoxError> {
    match store {
        "postgres" => {
            let mut conn = pg_admin(&postgres_url()?).await?;
            let schemas: Vec<String> = sqlx::query_scalar(
                "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'tsbench\\_%'",
            )
            .fetch_all(&mut conn)
            .await?;
            for schema in schemas.iter().filter(|s| is_stale(s)) {
                drop_postgres_schema(&mut conn, schema).await?;
            }
        }
        "mysql" => {
            let mut conn = mysql_admin(&mysql_url()?).await?;
            for table in mysql_tables(&mut conn).await?.iter().filter(|t| is_stale(t)) {
                drop_mysql_table(&mut conn, table).await?;
            }
        }
        "redis" => {
            let url = redis_url()?;
            let mut conn = redis_admin(&url).await?;
            unlink_matching(&mut conn, &format!("{PREFIX}:*"), |key| {
                key != REDIS_OWNER_KEY && is_stale(key)
            })
            .await?;
            // tower-sessions' database: released if its owner is gone.
            let db = redis_tower_db()?;
            let mut url = url;
            url.set_path(&format!("/{db}"));
            let mut conn = redis_admin(&url).await?;
            let owner: Option<u32> = redis::cmd("GET")
                .arg(REDIS_OWNER_KEY)
                .query_async(&mut conn)
                .await?;
            if owner.is_some_and(|pid| !other_bench_server_alive(pid)) {
                release_redis_db(&mut conn, db).await?;
            }
        }
        other => return Err(format!("unknown store {other:?} (postgres, mysql, redis)").into()),
    }
    Ok(())
}

/// `--check`: the store's server answers, and stale namespaces are gone.
async fn check_store(store: &str) -> Result<(), BoxError> {
    let (var, url) = match store {
        "postgres" => ("BENCH_POSTGRES_URL", postgres_url()?),
        "mysql" => ("BENCH_MYSQL_URL", mysql_url()?),
        "redis" => ("BENCH_REDIS_URL", redis_url()?),
        other => return Err(format!("unknown store {other:?} (postgres, mysql, redis)").into()),
    };
    let shown = {
        let mut u = url.clone();
        let _ = u.set_password(None);
        u
    };
    let checked = async {
        sweep(store).await?;
        server_version(store, &url).await
    };
    match tokio::time::timeout(Duration::from_secs(10), checked).await {
        Ok(Ok(version)) => {
            println!("bench-server: {store} at {shown} answers: {version}");
            Ok(())
        }
        Ok(Err(e)) => Err(format!("{store} at {shown} ({var}): {e}").into()),
        Err(_) => Err(format!("{store} at {shown} ({var}): no answer within 10 s").into()),
    }
}

/// The server's name and version, e.g. "PostgreSQL 16.4".
async fn server_version(store: &str, url: &url::Url) -> Result<String, BoxError> {
    Ok(match store {
        "postgres" => {
            let v: String = sqlx::query_scalar("SELECT current_setting('server_version')")
                .fetch_one(&mut pg_admin(url).await?)
                .await?;
            format!("PostgreSQL {}", v.split_whitespace().next().unwrap_or(&v))
        }
        "mysql" => {
            let v: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
                .fetch_one(&mut mysql_admin(url).await?)
                .await?;
            // MariaDB says so in its version ("10.11.6-MariaDB-0+deb12u1"); MySQL does not.
            match v.split_once("-MariaDB") {
                Some((number, _)) => format!("MariaDB {number}"),
                None => format!("MySQL {v}"),
            }
        }
        _ => {
            let info: String = redis::cmd("INFO")
                .arg("server")
                .query_async(&mut redis_admin(url).await?)
                .await?;
            let v = info
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .unwrap_or("?");
            format!("Redis {}", v.trim())
        }
    })
}

async fn pg_admin(url: &url::Url) -> Result<sqlx::PgConnection, BoxError> {
    use sqlx::Connection;
    Ok(sqlx::PgConnection::connect(url.as_str()).await?)
}

async fn drop_postgres_schema(conn: &mut sqlx::PgConnection, schema: &str) -> Result<(), BoxError> {
    // Names are the bench's own: ASCII letters, digits and underscores.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(conn)
        .await?;
    Ok(())
}

async fn mysql_admin(url: &url::Url) -> Result<sqlx::MySqlConnection, BoxError> {
    use sqlx::Connection;
    Ok(sqlx::MySqlConnection::connect(url.as_str()).await?)
}

/// The bench's tables (`tsbench_...`) in the URL's database.
async fn mysql_tables(conn: &mut sqlx::MySqlConnection) -> Result<Vec<String>, BoxError> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(table_name AS CHAR) FROM information_schema.tables \
         WHERE table_schema = DATABASE() AND table_name LIKE 'tsbench\\_%'",
    )
    .fetch_all(conn)
    .await?)
}

async fn drop_mysql_table(conn: &mut sqlx::MySqlConnection, table: &str) -> Result<(), BoxError> {
    sqlx::query(&format!("DROP TABLE IF EXISTS `{table}`"))
        .execute(conn)
        .await?;
    Ok(())
}

async fn redis_admin(url: &url::Url) -> Result<redis::aio::MultiplexedConnection, BoxError> {
    let client = redis::Client::open(url.as_str())?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// Unlinks the keys matching `pattern` that `select` picks, a batch at a time.
async fn unlink_matching(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
    select: impl Fn(&str) -> bool,
) -> Result<(), BoxError> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(conn)
            .await?;
        let keys: Vec<&String> = keys.iter().filter(|k| select(k)).collect();
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(keys).exec_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Takes the Redis database `db` for tower-sessions' store: empty, or left by a bench-server
/// that is gone. Anything else there is not the bench's, and is left alone.
async fn claim_redis_db(url: &url::Url, db: u8) -> Result<(), BoxError> {
    let mut url = url.clone();
    url.set_path(&format!("/{db}"));
    let mut conn = redis_admin(&url).await?;
    let owner: Option<u32> = redis::cmd("GET")
        .arg(REDIS_OWNER_KEY)
        .query_async(&mut conn)
        .await?;
    match owner {
        Some(pid) if other_bench_server_alive(pid) => {
            return Err(format!(
                "Redis database {db} is in use by bench-server {pid}; set BENCH_REDIS_TOWER_DB"
            )
            .into())
        }
        Some(_) => {}
        None => {
            let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
            if size > 0 {
                return Err(format!(
                    "Redis database {db} holds {size} keys that are not the bench's; \
                     choose an empty one with BENCH_REDIS_TOWER_DB"
                )
                .into());
            }
        }
    }
    redis::cmd("FLUSHDB").exec_async(&mut conn).await?;
    redis::cmd("SET")
        .arg(REDIS_OWNER_KEY)
        .arg(std::process::id())
        .exec_async(&mut conn)
        .await?;
    Ok(())
}

/// Empties the bench's Redis database (the connection is on it) if it still holds the
/// bench's owner key.
async fn release_redis_db(
    conn: &mut redis::aio::MultiplexedConnection,
    db: u8,
) -> Result<(), BoxError> {
    let owner: Option<u32> = redis::cmd("GET")
        .arg(REDIS_OWNER_KEY)
        .query_async(conn)
        .await?;
    if owner.is_none() {
        return Err(format!("Redis database {db} is no longer the bench's; left alone").into());
    }
    redis::cmd("FLUSHDB").arg("ASYNC").exec_async(conn).await?;
    Ok(())
}

// --- bytes sent to the store ----------------------------------------------------------------

/// Bytes through the counting proxy.
#[derive(Default)]
struct Counter {
    /// From the app to the store's server.
    sent: AtomicU64,
    /// From the store's server to the app.
    received: AtomicU64,
}

/// Starts a TCP proxy on 127.0.0.1 to the server `url` names, counting the bytes each way,
/// and returns `url` pointed at the proxy.
async fn counting_proxy(url: &url::Url, counter: Arc<Counter>) -> Result<url::Url, BoxError> {
    let host = url.host_str().ok_or("store URL without a host")?.to_owned();
    let port = url.port().unwrap_or(match url.scheme() {
        "postgres" | "postgresql" => 5432,
        "mysql" | "mariadb" => 3306,
        "redis" => 6379,
        other => return Err(format!("no default port for {other}://").into()),
    });
    let upstream = tokio::net::lookup_host((host.as_str(), port))
        .await?
        .next()
        .ok_or_else(|| format!("{host} does not resolve"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_rx, client_tx) = client.into_split();
                let (server_rx, server_tx) = server.into_split();
                let up = pump(client_rx, server_tx, counter.clone(), true);
                let down = pump(server_rx, client_tx, counter, false);
                let _ = tokio::join!(up, down);
            });
        }
    });
    let mut proxied = url.clone();
    proxied
        .set_host(Some("127.0.0.1"))
        .map_err(|e| format!("store URL: {e}"))?;
    proxied
        .set_port(Some(local.port()))
        .map_err(|()| "store URL cannot take a port")?;
    println!("bench-server: counting store bytes through {local} to {upstream}");
    Ok(proxied)
}

/// Copies one direction of a proxied connection, counting; closes the write side at EOF.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Arc<Counter>,
    to_store: bool,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let total = if to_store { &counter.sent } else { &counter.received };
        total.fetch_add(n as u64, Ordering::Relaxed);
        to.write_all(&buf[..n]).await?;
    }
}

/// No session layer at all: the ceiling.
mod bare {
    use super::*;

    pub(super) fn router() -> Router {
        Router::new()
            .route("/untouched", get(|| async { "ok" }))
            .route("/read", get(|| async { "0" }))
            .route("/write", get(|| async { "1" }))
            .route("/pad", get(|| async { "ok" }))
    }
}

mod tidy {
    use super::*;
    use tidysession::store::{MemoryStore, MySqlStore, PostgresStore, RedisStore, SqliteStore};
    use tidysession::{Session, SessionConfig, SessionError, SessionLayer, store::Maintenance};

    async fn untouched() -> &'static str {
        "ok"
    }

    async fn read(session: Session) -> Result<String, SessionError> {
        let n: u64 = session.get("n").await?.unwrap_or(0);
        Ok(n.to_string())
    }

    async fn write(session: Session) -> Result<String, SessionError> {
        let n: u64 = session.get("n").await?.unwrap_or(0) + 1;
        session.insert("n", n).await?;
        Ok(n.to_string())
    }

    async fn pad(session: Session) -> Result<&'static str, SessionError> {
        session.insert("pad", pad_value()).await?;
        Ok("ok")
    }

    fn router(layer: SessionLayer) -> Router {
        // Every session in the store, as tower-sessions keeps them: the benchmark measures the
        // stores. (With the default cookie tier, anonymous sessions never reach the store.)
        let config = SessionConfig::default()
            .with_anonymous(tidysession::Anonymous::OnServer)
            .with_secure(false)
            .with_cookie_name(COOKIE_NAME);
        Router::new()
            .route("/untouched", get(untouched))
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/pad", get(pad))
            .layer(layer.with_config(config))
    }

    pub(super) fn router_memory() -> Router {
        // The default capacity (100,000 live sessions) would be exhausted by the
        // "write without cookie" run (a new session per request), which would then measure
        // StoreError::Full responses; tower-sessions' MemoryStore is unbounded. Use a bound
        // the benchmark cannot reach.
        router(SessionLayer::new(MemoryStore::with_capacity(100_000_000)))
    }

    pub(super) async fn router_sqlite(path: &str) -> Result<Router, BoxError> {
        let store = SqliteStore::open(path).await?;
        Maintenance::migrate(&store).await?;
        Ok(router(SessionLayer::new(store)))
    }

    /// `PostgresStore::connect` (a pool of up to 16 connections), tables in `schema`.
    pub(super) async fn router_postgres(url: &str, schema: &str) -> Result<Router, BoxError> {
        let store = PostgresStore::connect(url).await?.with_schema(schema)?;
        Maintenance::migrate(&store).await?;
        Ok(router(SessionLayer::new(store)))
    }

    /// `MySqlStore::connect` (a pool of up to 10 connections), sessions in `table` (and its
    /// migrations in `table_schema`).
    pub(super) async fn router_mysql(url: &str, table: &str) -> Result<Router, BoxError> {
        let store = MySqlStore::connect(url).await?.with_table(table)?;
        Maintenance::migrate(&store).await?;
        Ok(router(SessionLayer::new(store)))
    }

    /// `RedisStore::connect` (one multiplexed connection), keys under `prefix`.
    pub(super) async fn router_redis(url: &str, prefix: &str) -> Result<Router, BoxError> {
        let store = RedisStore::connect(url).await?.with_key_prefix(prefix);
        Ok(router(SessionLayer::new(store)))
    }
}

mod tower {
    use super::*;
    use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer, SessionStore};
    use tower_sessions_redis_store::fred::prelude::{Builder, ClientLike, Config};
    use tower_sessions_redis_store::RedisStore;
    use tower_sessions_sqlx_store::{MySqlStore, PostgresStore, SqliteStore};

    type Error = (StatusCode, String);

    fn fail(e: tower_sessions::session::Error) -> Error {
        (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }

    async fn untouched() -> &'static str {
        "ok"
    }

    async fn read(session: Session) -> Result<String, Error> {
        let n: u64 = session.get("n").await.map_err(fail)?.unwrap_or(0);
        Ok(n.to_string())
    }

    async fn write(session: Session) -> Result<String, Error> {
        let n: u64 = session.get("n").await.map_err(fail)?.unwrap_or(0) + 1;
        session.insert("n", n).await.map_err(fail)?;
        Ok(n.to_string())
    }

    async fn pad(session: Session) -> Result<&'static str, Error> {
        session.insert("pad", pad_value()).await.map_err(fail)?;
        Ok("ok")
    }

    fn router<S: SessionStore + Clone>(store: S) -> Router {
        let layer = SessionManagerLayer::new(store)
            .with_secure(false)
            .with_name(COOKIE_NAME);
        Router::new()
            .route("/untouched", get(untouched))
            .route("/read", get(read))
            .route("/write", get(write))
            .route("/pad", get(pad))
            .layer(layer)
    }

    pub(super) fn router_memory() -> Router {
        router(MemoryStore::default())
    }

    pub(super) async fn router_sqlite(path: &str) -> Result<Router, BoxError> {
        // The connection settings tidysession's SqliteStore::open uses (WAL,
        // synchronous=NORMAL, 5 s busy timeout, at most 8 connections, no ping before each
        // use), so that both libraries run on an identically configured database.
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(0)
            .idle_timeout(Some(Duration::from_secs(600)))
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let store = SqliteStore::new(pool);
        store.migrate().await?;
        Ok(router(store))
    }

    /// The pool settings of tidysession's `PostgresStore::connect`: at most 16 connections,
    /// 5 s acquire timeout, no ping before each use. Table `session` in `schema`.
    pub(super) async fn router_postgres(url: &str, schema: &str) -> Result<Router, BoxError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let store = PostgresStore::new(pool).with_schema_name(schema)?;
        store.migrate().await?;
        Ok(router(store))
    }

    /// The pool settings of tidysession's `MySqlStore::connect`: at most 10 connections, 5 s
    /// acquire timeout, no ping before each use, idle connections closed after a minute.
    /// Table `table` in the URL's database.
    pub(super) async fn router_mysql(url: &str, table: &str) -> Result<Router, BoxError> {
        let options = MySqlConnectOptions::from_str(url)?;
        let database = options
            .get_database()
            .ok_or("BENCH_MYSQL_URL names no database")?
            .to_owned();
        let pool = MySqlPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .idle_timeout(Duration::from_secs(60))
            .connect_with(options)
            .await?;
        let store = MySqlStore::new(pool)
            .with_schema_name(database)?
            .with_table_name(table)?;
        store.migrate().await?;
        Ok(router(store))
    }

    /// One fred client (one pipelined connection, as tidysession's one multiplexed
    /// connection), in the database the URL names.
    pub(super) async fn router_redis(url: &str) -> Result<Router, BoxError> {
        let client = Builder::from_config(Config::from_url(url)?).build()?;
        client.init().await?;
        Ok(router(RedisStore::new(client)))
    }
}
