//! Real database servers for the tests: addresses from environment variables with loopback
//! defaults, and stores isolated per test so that tests running side by side (nextest runs
//! each in its own process) never see each other's rows.
//!
//! A server that is not running fails the test: nothing here skips.

use tidysession::store::{PostgresStore, SessionStore};

/// `TIDYSESSION_TEST_POSTGRES_URL`, default `postgres://root@127.0.0.1/test`.
pub fn postgres_url() -> String {
    std::env::var("TIDYSESSION_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1/test".to_owned())
}

/// A short random name for a per-test schema, table or key prefix.
pub fn unique_name(prefix: &str) -> String {
    let id = tidysession::SessionId::generate().unwrap().storage_key();
    format!("{prefix}_{}", &id.to_hex()[..16])
}

/// Runs a statement on a fresh connection from a plain thread: usable from `Drop`, where
/// the test's runtime may already be gone.
fn run_detached(url: String, statement: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            if url.starts_with("mysql") {
                let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(&statement).execute(&mut c).await.unwrap();
            } else {
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                // A connection left holding a lock fails the test instead of hanging it.
                sqlx::raw_sql("SET lock_timeout = '10s'")
                    .execute(&mut c)
                    .await
                    .unwrap();
                sqlx::raw_sql(&statement).execute(&mut c).await.unwrap();
            }
        });
    })
    .join()
    .expect("cleanup statement failed");
}

/// Drops a per-test schema or table when the test ends.
#[derive(Debug)]
pub struct DropOnExit {
    url: String,
    statement: String,
}

impl DropOnExit {
    pub fn new(url: &str, statement: String) -> Self {
        Self {
            url: url.to_owned(),
            statement,
        }
    }
}

impl Drop for DropOnExit {
    fn drop(&mut self) {
        run_detached(self.url.clone(), std::mem::take(&mut self.statement));
    }
}

/// A migrated [`PostgresStore`] at `url` in a schema of its own, dropped when the guard goes.
pub async fn postgres_at(url: &str) -> (PostgresStore, DropOnExit) {
    let schema = unique_name("tidysession_test");
    let store = PostgresStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"))
        .schema(&schema)
        .unwrap();
    store.migrate().await.unwrap();
    let guard = DropOnExit::new(
        &postgres_url(),
        format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
    );
    (store, guard)
}

/// A migrated [`PostgresStore`] on the test server, in a schema of its own.
pub async fn postgres() -> (PostgresStore, DropOnExit) {
    postgres_at(&postgres_url()).await
}
