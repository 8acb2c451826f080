//! Exclusive locks on a shared server, each held by a connection of its own: the lock lives
//! as long as its connection, so a process that dies or loses the server frees it (see
//! [`Maintenance::try_exclusive`](crate::store::Maintenance::try_exclusive)).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::ConnectOptions as _;

use crate::store::{ExclusiveGuard, HeldLock, StoreError};

/// How long taking, checking or releasing an exclusive lock may take.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The server did not answer a lock request in time.
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer a lock request within {LOCK_WAIT:?}")]
struct LockTimedOut;

/// Opens the lock's own connection and asks `query` (binding `key`) whether it took the
/// lock, each within [`LOCK_WAIT`]. `None` (the connection closed) when it did not.
async fn take<C, T>(
    options: &C::Options,
    query: &str,
    key: &str,
    taken: impl Fn(&T) -> bool,
) -> Result<Option<C>, StoreError>
where
    C: sqlx::Connection,
    C::Database: sqlx::Database<Connection = C>,
    T: for<'r> sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database> + Send + Unpin,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
    (T,): for<'r> sqlx::FromRow<'r, <C::Database as sqlx::Database>::Row>,
{
    let mut conn = tokio::time::timeout(LOCK_WAIT, options.connect())
        .await
        .map_err(|_| StoreError::backend(LockTimedOut))?
        .map_err(StoreError::backend)?;
    let answer = sqlx::query_scalar::<_, T>(query)
        .bind(key)
        .fetch_one(&mut conn);
    let answer = tokio::time::timeout(LOCK_WAIT, answer)
        .await
        .map_err(|_| StoreError::backend(LockTimedOut))?
        .map_err(StoreError::backend)?;
    if !taken(&answer) {
        let _ = conn.close().await;
        return Ok(None);
    }
    Ok(Some(conn))
}

/// Runs `unlock` on the lock's connection, then closes it (which frees the lock too, should
/// the unlock have failed), each within [`LOCK_WAIT`].
async fn release<C>(mut conn: C, unlock: &str, key: &str)
where
    C: sqlx::Connection,
    for<'q> &'q str: sqlx::Encode<'q, C::Database> + sqlx::Type<C::Database>,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    for<'q> <C::Database as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, C::Database>,
{
    let done = sqlx::query(unlock).bind(key).execute(&mut conn);
    if let Ok(Err(e)) = tokio::time::timeout(LOCK_WAIT, done).await {
        tracing::debug!(error = %e, "unlock failed; closing its connection instead");
    }
    let _ = tokio::time::timeout(LOCK_WAIT, conn.close()).await;
}

#[cfg(feature = "postgres")]
pub(crate) use postgres::try_advisory_lock;

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::postgres::{PgConnectOptions, PgConnection};

    use super::*;

    /// The advisory lock key for the name bound as `$1`: the first 64 bits of its MD5.
    const PG_LOCK_KEY: &str = "('x' || left(md5($1), 16))::bit(64)::bigint";

    /// Takes the session-level advisory lock for `key` on a connection of its own. `None`
    /// if another session holds it.
    pub(crate) async fn try_advisory_lock(
        options: &PgConnectOptions,
        key: String,
    ) -> Result<Option<ExclusiveGuard>, StoreError> {
        let query = format!("SELECT pg_try_advisory_lock({PG_LOCK_KEY})");
        let conn = take::<PgConnection, bool>(options, &query, &key, |taken| *taken).await?;
        Ok(conn.map(|conn| ExclusiveGuard::new(PgLock { conn, key })))
    }

    /// A session-level advisory lock, held by its own connection.
    #[derive(Debug)]
    struct PgLock {
        conn: PgConnection,
        key: String,
    }

    #[async_trait]
    impl HeldLock for PgLock {
        async fn still_held(&mut self) -> bool {
            // The lock lives exactly as long as the connection's session, and only `release`
            // unlocks it: a connection that answers still holds it.
            let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut self.conn);
            matches!(tokio::time::timeout(LOCK_WAIT, ping).await, Ok(Ok(1)))
        }

        async fn release(self: Box<Self>) {
            let query = format!("SELECT pg_advisory_unlock({PG_LOCK_KEY})");
            super::release(self.conn, &query, &self.key).await;
        }
    }
}

#[cfg(feature = "mysql")]
pub(crate) use mysql::try_named_lock;

#[cfg(feature = "mysql")]
mod mysql {
    use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};

    use super::*;

    /// The named lock for the name bound as `?`, within 64 characters: named locks are
    /// server-wide, so the name includes the database.
    const MYSQL_LOCK_NAME: &str =
        "CONCAT('tidysession.x:', LEFT(SHA2(CONCAT(IFNULL(DATABASE(), ''), '.', ?), 256), 40))";

    /// Takes the named lock (`GET_LOCK`) for `key` in the connection's database, without
    /// waiting, on a connection of its own. `None` if another connection holds it.
    pub(crate) async fn try_named_lock(
        options: &MySqlConnectOptions,
        key: String,
    ) -> Result<Option<ExclusiveGuard>, StoreError> {
        let query = format!("SELECT GET_LOCK({MYSQL_LOCK_NAME}, 0)");
        let conn =
            take::<MySqlConnection, Option<i64>>(options, &query, &key, |taken| *taken == Some(1))
                .await?;
        Ok(conn.map(|conn| ExclusiveGuard::new(MySqlLock { conn, key })))
    }

    /// A named lock (`GET_LOCK`), held by its own connection.
    #[derive(Debug)]
    struct MySqlLock {
        conn: MySqlConnection,
        key: String,
    }

    #[async_trait]
    impl HeldLock for MySqlLock {
        async fn still_held(&mut self) -> bool {
            let query = format!("SELECT IS_USED_LOCK({MYSQL_LOCK_NAME}) = CONNECTION_ID()");
            let held = sqlx::query_scalar::<_, Option<i64>>(&query)
                .bind(&self.key)
                .fetch_one(&mut self.conn);
            matches!(tokio::time::timeout(LOCK_WAIT, held).await, Ok(Ok(Some(1))))
        }

        async fn release(self: Box<Self>) {
            let query = format!("SELECT RELEASE_LOCK({MYSQL_LOCK_NAME})");
            super::release(self.conn, &query, &self.key).await;
        }
    }
}
