//! The SQLite store's own connection set.
//!
//! sqlx's pool pings a connection every time it is returned, a round trip to the
//! connection's thread that costs as much as a short query. SQLite connections to a local
//! file cannot go stale, so the store keeps its own: idle connections wait in a list, a
//! semaphore bounds how many exist, and a connection that saw an error is dropped rather than
//! reused.

use std::sync::{Mutex, PoisonError};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions as _;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::store::StoreError;

#[derive(Debug)]
pub(super) struct Connections {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: Semaphore,
    /// Keep connections even after errors (a private in-memory database lives only as long
    /// as its one connection).
    keep_on_error: bool,
}

impl Connections {
    /// At most `size` connections, opened on demand with `options`.
    pub(super) fn new(options: SqliteConnectOptions, size: usize, keep_on_error: bool) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            keep_on_error,
        }
    }

    /// A connection for one operation; it goes back to the idle list when dropped.
    pub(super) async fn get(&self) -> Result<Lease<'_>, StoreError> {
        let permit = self.permits.acquire().await.map_err(StoreError::backend)?;
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.options.connect().await.map_err(StoreError::backend)?,
        };
        Ok(Lease {
            conn: Some(conn),
            connections: self,
            _permit: permit,
        })
    }
}

/// A connection on loan from [`Connections`].
#[derive(Debug)]
pub(super) struct Lease<'a> {
    /// # Internal invariant
    ///
    /// `Some` until dropped or discarded.
    conn: Option<SqliteConnection>,
    connections: &'a Connections,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// The connection.
    pub(super) fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Backend("connection dropped after an error".into()))
    }

    /// Runs one statement on this connection.
    pub(super) async fn execute<'q>(
        &mut self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<sqlx::sqlite::SqliteQueryResult, StoreError> {
        let result = query.execute(self.conn()?).await;
        result.map_err(|e| self.fail(e))
    }

    /// Wraps an error from this connection, and drops the connection instead of reusing it:
    /// after an I/O error it may be in any state, and reconnecting is cheap.
    pub(super) fn fail(&mut self, err: sqlx::Error) -> StoreError {
        self.discard();
        StoreError::backend(err)
    }

    /// Passes `result` on, dropping the connection first if it failed in the backend.
    pub(super) fn checked<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Backend(_)) = &result {
            self.discard();
        }
        result
    }

    fn discard(&mut self) {
        if !self.connections.keep_on_error {
            self.conn = None;
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.connections
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}
