//! One migration runner per dialect: each applies, in order, the steps of a store's schema
//! newer than the version its versions table records, and refuses a schema newer than this
//! build ([`SchemaTooNew`]). Processes starting together migrate one after the other.

use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Type};

use super::Dialect;
use crate::store::StoreError;

/// A store's schema: `steps[i]` takes it from version `i` to `i + 1`. Never edit a released
/// step; append a new one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migrations<'a> {
    pub(crate) steps: &'a [&'a [&'a str]],
    /// The quoted sessions table, which `{t}` in a step stands for.
    pub(crate) table: &'a str,
    /// The quoted table recording which versions ran.
    pub(crate) versions: &'a str,
}

/// The database was migrated by a newer tidysession than this one.
#[derive(Debug, thiserror::Error)]
#[error(
    "session schema version {found} is newer than this build knows ({known}); upgrade tidysession"
)]
pub(crate) struct SchemaTooNew {
    pub(crate) found: i64,
    pub(crate) known: usize,
}

/// Applies the steps newer than the recorded version on `conn`, which the runner has made
/// safe from other migrating processes, recording each version as it goes.
async fn apply_pending<C>(
    conn: &mut C,
    dialect: Dialect,
    m: &Migrations<'_>,
) -> Result<(), StoreError>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    for<'q> <C::Database as Database>::Arguments<'q>: IntoArguments<'q, C::Database>,
    i64: for<'q> Encode<'q, C::Database> + Type<C::Database> + for<'r> Decode<'r, C::Database>,
    (Option<i64>,): for<'r> FromRow<'r, <C::Database as Database>::Row>,
{
    let (current, record) = match dialect {
        Dialect::Postgres => (
            format!("SELECT max(version)::bigint FROM {}", m.versions),
            format!(
                "INSERT INTO {} (version) VALUES (CAST($1 AS integer))",
                m.versions
            ),
        ),
        Dialect::MySql | Dialect::Sqlite => (
            format!("SELECT MAX(version) FROM {}", m.versions),
            format!("INSERT INTO {} (version) VALUES (?)", m.versions),
        ),
    };
    let current: Option<i64> = sqlx::query_scalar(&current)
        .fetch_one(&mut *conn)
        .await
        .map_err(StoreError::backend)?;
    let current = current.unwrap_or(0);
    if current > m.steps.len() as i64 {
        return Err(StoreError::backend(SchemaTooNew {
            found: current,
            known: m.steps.len(),
        }));
    }
    for (i, step) in m.steps.iter().enumerate().skip(current.max(0) as usize) {
        for statement in *step {
            sqlx::query(&statement.replace("{t}", m.table))
                .execute(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
        }
        sqlx::query(&record)
            .bind(i as i64 + 1)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
    }
    Ok(())
}

/// Runs `statements` in order on `conn`.
async fn run_all<C>(conn: &mut C, statements: &[String]) -> Result<(), StoreError>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    for<'q> <C::Database as Database>::Arguments<'q>: IntoArguments<'q, C::Database>,
{
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
    }
    Ok(())
}

/// PostgreSQL: one transaction, under a transaction-level advisory lock for `schema`, that
/// also creates the schema and the versions table if missing.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres(
    set: &super::Connections<sqlx::postgres::PgConnection>,
    schema: &str,
    m: &Migrations<'_>,
) -> Result<(), StoreError> {
    set.transaction(async |tx| {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tidysession_migrate.' || $1))")
            .bind(schema)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        let setup = [
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            format!(
                "CREATE TABLE IF NOT EXISTS {} (version integer NOT NULL)",
                m.versions
            ),
        ];
        run_all(tx, &setup).await?;
        apply_pending(tx, Dialect::Postgres, m).await
    })
    .await
}

/// SQLite: one transaction, which also creates the versions table if missing.
#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite(
    set: &super::Connections<sqlx::sqlite::SqliteConnection>,
    m: &Migrations<'_>,
) -> Result<(), StoreError> {
    set.transaction(async |tx| {
        let setup = [format!(
            "CREATE TABLE IF NOT EXISTS {} (version INTEGER NOT NULL)",
            m.versions
        )];
        run_all(tx, &setup).await?;
        apply_pending(tx, Dialect::Sqlite, m).await
    })
    .await
}

/// MySQL/MariaDB: DDL commits at once there, so no transaction can make migrating atomic
/// (each step is written to be idempotent instead). A named lock per database and
/// `lock_name` keeps two processes from migrating together; it is taken on a connection of
/// its own, so if this future is dropped midway the connection closes and the server
/// releases the lock with it.
#[cfg(feature = "mysql")]
pub(crate) async fn mysql(
    options: &sqlx::mysql::MySqlConnectOptions,
    lock_name: &str,
    m: &Migrations<'_>,
) -> Result<(), StoreError> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let mut conn = options.connect().await.map_err(StoreError::backend)?;
    let lock =
        "CONCAT('tidysession:', LEFT(SHA2(CONCAT(IFNULL(DATABASE(), ''), '.', ?), 256), 40))";
    let locked: Option<i64> = sqlx::query_scalar(&format!("SELECT GET_LOCK({lock}, 60)"))
        .bind(lock_name)
        .fetch_one(&mut conn)
        .await
        .map_err(StoreError::backend)?;
    if locked != Some(1) {
        return Err(StoreError::backend(MigrationLockTimeout));
    }
    let setup = [format!(
        "CREATE TABLE IF NOT EXISTS {} (version BIGINT NOT NULL PRIMARY KEY) ENGINE=InnoDB",
        m.versions
    )];
    let result = match run_all(&mut conn, &setup).await {
        Ok(()) => apply_pending(&mut conn, Dialect::MySql, m).await,
        Err(e) => Err(e),
    };
    let released: Result<Option<i64>, _> =
        sqlx::query_scalar(&format!("SELECT RELEASE_LOCK({lock})"))
            .bind(lock_name)
            .fetch_one(&mut conn)
            .await;
    // Closing the connection releases the lock too, should RELEASE_LOCK have failed.
    let closed = conn.close().await;
    result?;
    released.map_err(StoreError::backend)?;
    closed.map_err(StoreError::backend)
}

/// Another process held the migration lock for a minute.
#[cfg(feature = "mysql")]
#[derive(Debug, thiserror::Error)]
#[error("timed out waiting for another process to finish migrating the session table")]
struct MigrationLockTimeout;
