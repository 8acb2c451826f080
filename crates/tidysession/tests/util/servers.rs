//! Real servers for the tests: addresses from environment variables with loopback defaults
//! (`scripts/services.sh` starts them), and stores isolated per test, so that tests running
//! side by side (nextest runs each in its own process) never see each other's records.
//!
//! A server that is not running fails the test: nothing here skips.

#![allow(dead_code)] // each store's helpers are used only with its feature

use tidysession::store::Maintenance as _;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `TIDYSESSION_TEST_POSTGRES_URL`, default `postgres://root@127.0.0.1/test`.
pub fn postgres_url() -> String {
    env_or(
        "TIDYSESSION_TEST_POSTGRES_URL",
        "postgres://root@127.0.0.1/test",
    )
}

/// `TIDYSESSION_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1/test`.
pub fn mysql_url() -> String {
    env_or("TIDYSESSION_TEST_MYSQL_URL", "mysql://root@127.0.0.1/test")
}

/// `TIDYSESSION_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    env_or("TIDYSESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// `TIDYSESSION_TEST_REDIS_CLUSTER_URL`, default the first three nodes of the six-node
/// cluster on ports 7000-7005.
pub fn redis_cluster_url() -> String {
    env_or(
        "TIDYSESSION_TEST_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002",
    )
}

/// A short random name for a per-test schema, table or key prefix.
pub fn unique_name(prefix: &str) -> String {
    let id = tidysession::store::SessionId::generate()
        .unwrap()
        .storage_key();
    format!("{prefix}_{}", &id.to_hex()[..16])
}

/// A per-test schema or table, dropped when the test ends.
#[derive(Debug)]
pub struct DropOnExit {
    /// The schema's or table's name.
    pub name: String,
    url: String,
    statement: String,
}

impl DropOnExit {
    /// Drops the PostgreSQL schema `name` and everything in it.
    pub fn postgres_schema(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: postgres_url(),
            statement: format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"),
        }
    }

    /// Drops the PostgreSQL table `name` (in the default schema).
    pub fn postgres_table(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: postgres_url(),
            statement: format!("DROP TABLE IF EXISTS \"{name}\""),
        }
    }

    /// Drops the MySQL session table `name` and its schema-version table.
    pub fn mysql_table(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: mysql_url(),
            statement: format!("DROP TABLE IF EXISTS `{name}`, `{name}_schema`"),
        }
    }
}

impl Drop for DropOnExit {
    fn drop(&mut self) {
        // Drop cannot await, and may run after the test's runtime is gone: run the statement
        // from a thread with a runtime of its own, on a fresh connection.
        let (url, statement) = (self.url.clone(), std::mem::take(&mut self.statement));
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if url.starts_with("mysql") {
                    let mut c = sqlx::MySqlConnection::connect(&url).await?;
                    sqlx::raw_sql(&statement).execute(&mut c).await?;
                } else {
                    let mut c = sqlx::PgConnection::connect(&url).await?;
                    // A connection left holding a lock fails the test instead of hanging it.
                    sqlx::raw_sql("SET lock_timeout = '10s'")
                        .execute(&mut c)
                        .await?;
                    sqlx::raw_sql(&statement).execute(&mut c).await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !std::thread::panicking() {
            dropped
                .unwrap()
                .expect("dropping the test's schema or table");
        }
    }
}

/// A migrated [`PostgresStore`] at `url` in a schema of its own, dropped when the guard goes.
#[cfg(feature = "postgres")]
pub async fn postgres_at(url: &str) -> (tidysession::store::PostgresStore, DropOnExit) {
    use tidysession::store::PostgresStore;
    let schema = unique_name("tidysession_test");
    let guard = DropOnExit::postgres_schema(&schema);
    let store = PostgresStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"))
        .with_schema(&schema)
        .unwrap();
    store.migrate().await.unwrap();
    (store, guard)
}

/// A migrated [`PostgresStore`] on the test server, in a schema of its own.
#[cfg(feature = "postgres")]
pub async fn postgres() -> (tidysession::store::PostgresStore, DropOnExit) {
    postgres_at(&postgres_url()).await
}

/// A migrated [`MySqlStore`] at `url` over a table of its own, dropped when the guard goes.
#[cfg(feature = "mysql")]
pub async fn mysql_at(url: &str) -> (tidysession::store::MySqlStore, DropOnExit) {
    use tidysession::store::MySqlStore;
    let table = unique_name("tidysession_t");
    let guard = DropOnExit::mysql_table(&table);
    let store = MySqlStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("MySQL at {url}: {e}"))
        .with_table(&table)
        .unwrap();
    store.migrate().await.unwrap();
    (store, guard)
}

/// A migrated [`MySqlStore`] on the test server, over a table of its own.
#[cfg(feature = "mysql")]
pub async fn mysql() -> (tidysession::store::MySqlStore, DropOnExit) {
    mysql_at(&mysql_url()).await
}

/// A [`RedisStore`] at `url` under a key prefix of its own. Its records expire by
/// themselves, and Redis keeps nothing on disk.
#[cfg(feature = "redis")]
pub async fn redis_at(url: &str) -> tidysession::store::RedisStore {
    tidysession::store::RedisStore::connect(url)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} (run scripts/services.sh): {e}"))
        .with_key_prefix(format!("{}:", unique_name("tidysession-test")))
}

/// A [`RedisStore`] on the single test server, under a key prefix of its own.
#[cfg(feature = "redis")]
pub async fn redis() -> tidysession::store::RedisStore {
    redis_at(&redis_url()).await
}

/// `url` with a query parameter added.
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// A [`RedisStore`] on the single test server speaking RESP3, which goes through the `redis`
/// crate's connection manager rather than the store's own connection.
#[cfg(feature = "redis")]
pub async fn redis_resp3() -> tidysession::store::RedisStore {
    redis_at(&with_param(&redis_url(), "protocol=resp3")).await
}

/// A [`RedisStore`] on the test cluster, under a key prefix of its own.
#[cfg(feature = "redis")]
pub async fn redis_cluster() -> tidysession::store::RedisStore {
    redis_at(&redis_cluster_url()).await
}

/// The Django secret the Django store tests sign with, and an older one kept as a fallback.
pub const DJANGO_SECRET: &str = "django-insecure-ünï-§ecret-for-tests";
pub const DJANGO_OLD_SECRET: &str = "rotated-out-secret";

/// The secrets the Django store tests use.
#[cfg(feature = "django")]
pub fn django_secrets() -> tidysession::django::Secrets {
    tidysession::django::Secrets::new(DJANGO_SECRET).with_fallbacks([DJANGO_OLD_SECRET])
}

/// A migrated [`DjangoStore`] on the PostgreSQL test server over a table of its own,
/// dropped when the guard goes.
#[cfg(all(feature = "django", feature = "postgres"))]
pub async fn django_postgres() -> (tidysession::store::DjangoStore, DropOnExit) {
    use tidysession::store::DjangoStore;
    let table = unique_name("django_session_t");
    let guard = DropOnExit::postgres_table(&table);
    let url = postgres_url();
    let store = DjangoStore::connect(&url, django_secrets())
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"))
        .with_table(&table)
        .unwrap();
    store.migrate().await.unwrap();
    (store, guard)
}

/// A migrated [`DjangoStore`] on the MySQL/MariaDB test server over a table of its own,
/// dropped when the guard goes.
#[cfg(all(feature = "django", feature = "mysql"))]
pub async fn django_mysql() -> (tidysession::store::DjangoStore, DropOnExit) {
    use tidysession::store::DjangoStore;
    let table = unique_name("django_session_t");
    let guard = DropOnExit::mysql_table(&table);
    let url = mysql_url();
    let store = DjangoStore::connect(&url, django_secrets())
        .await
        .unwrap_or_else(|e| panic!("MySQL at {url}: {e}"))
        .with_table(&table)
        .unwrap();
    store.migrate().await.unwrap();
    (store, guard)
}

/// A migrated [`DjangoStore`] over `django_session` in a fresh SQLite file.
#[cfg(all(feature = "django", feature = "sqlite"))]
pub async fn django_sqlite() -> (tidysession::store::DjangoStore, tempfile::TempDir) {
    use tidysession::store::DjangoStore;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("django.db").display());
    let store = DjangoStore::connect(&url, django_secrets()).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}
