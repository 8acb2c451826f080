//! `bench-server`: the same four routes served by bare axum, tidysession and tower-sessions,
//! each over a memory and an SQLite store, for `bench/run.sh` to load with wrk.
//!
//! ```text
//! bench-server --impl <name> --addr <host:port>
//! ```
//!
//! Impls: `axum`, `tidysession-memory`, `tidysession-sqlite`, `tower-sessions-memory`,
//! `tower-sessions-sqlite`.
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
//! SQLite impls use a fresh database file in the temp directory, migrated at start.

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
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

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench-server --impl <axum|tidysession-memory|tidysession-sqlite|\
         tower-sessions-memory|tower-sessions-sqlite> --addr <host:port>"
    );
    ExitCode::from(2)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    let mut imp = None;
    let mut addr = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--impl" => imp = args.next(),
            "--addr" => addr = args.next(),
            "-h" | "--help" => return usage(),
            other => {
                eprintln!("unknown argument: {other}");
                return usage();
            }
        }
    }
    let (Some(imp), Some(addr)) = (imp, addr) else {
        return usage();
    };
    match run(&imp, &addr).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(imp: &str, addr: &str) -> Result<(), BoxError> {
    let app = match imp {
        "axum" => bare::router(),
        "tidysession-memory" => tidy::router_memory(),
        "tidysession-sqlite" => tidy::router_sqlite(&fresh_db(imp)?).await?,
        "tower-sessions-memory" => tower::router_memory(),
        "tower-sessions-sqlite" => tower::router_sqlite(&fresh_db(imp)?).await?,
        other => return Err(format!("unknown impl {other:?}").into()),
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("bench-server: {imp} listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
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
    use tidysession::store::{MemoryStore, SqliteStore};
    use tidysession::{Session, SessionConfig, SessionError, SessionLayer, SessionStore};

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
        let config = SessionConfig::default()
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
        SessionStore::migrate(&store).await?;
        Ok(router(SessionLayer::new(store)))
    }
}

mod tower {
    use super::*;
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer, SessionStore};
    use tower_sessions_sqlx_store::SqliteStore;

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
}
