//! The SQL stores' own connection set, used instead of sqlx's pool.
//!
//! sqlx's pool pings every connection when it is returned (a round trip to the server, or to
//! SQLite's thread) to catch connections left mid-query by a cancelled request. A session
//! store's operations are one or two short statements, so that ping costs about as much as
//! the work. The store tracks the same danger precisely instead: a connection goes back to
//! the idle list only when its operation finished; one whose operation failed in the backend,
//! or was cancelled half-way, is closed. Idle connections older than a limit are closed
//! rather than reused, before a server's idle timeout can cut them.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::error::leaves_connection_usable;
use crate::store::StoreError;

/// At most `size` connections made from `options`, opened on demand.
#[derive(Debug)]
pub(crate) struct Connections<C: Connection> {
    options: C::Options,
    idle: Mutex<Vec<(C, Instant)>>,
    permits: Semaphore,
    settings: Settings,
}

/// How a [`Connections`] behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// How many connections may exist at once.
    pub(crate) size: usize,
    /// How long an operation may wait for a connection, including opening one.
    pub(crate) wait: Duration,
    /// Idle connections older than this are closed instead of reused.
    pub(crate) max_idle: Duration,
    /// Keep connections even after errors (a private in-memory SQLite database lives only as
    /// long as its one connection).
    pub(crate) keep_on_error: bool,
}

/// Waiting for a connection took longer than [`Settings::wait`].
#[derive(Debug, thiserror::Error)]
#[error("no database connection within {0:?}")]
struct TimedOut(Duration);

/// The first connection to a server failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to {server}: {reason}")]
struct Unreachable {
    server: String,
    reason: String,
}

impl<C: Connection> Connections<C> {
    pub(crate) fn new(options: C::Options, settings: Settings) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::with_capacity(settings.size)),
            permits: Semaphore::new(settings.size),
            settings,
        }
    }

    /// The options new connections are made with.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "django"))]
    pub(crate) fn options(&self) -> &C::Options {
        &self.options
    }

    /// Opens one connection now, so that a wrong address or password fails at start-up, with
    /// an error naming `server` (never a password).
    pub(crate) async fn check(&self, server: String) -> Result<(), StoreError> {
        let mut lease = self.get().await.map_err(|e| {
            StoreError::backend(Unreachable {
                server,
                reason: e.to_string(),
            })
        })?;
        lease.checked(Ok(()))
    }

    /// A connection for one operation.
    async fn get(&self) -> Result<Lease<'_, C>, StoreError> {
        let wait = self.settings.wait;
        tokio::time::timeout(wait, self.lease())
            .await
            .unwrap_or_else(|_| Err(StoreError::backend(TimedOut(wait))))
    }

    /// Runs `op` on a connection for one operation, and ends the lease with its result
    /// ([`Lease::checked`]).
    pub(crate) async fn with<T>(
        &self,
        op: impl AsyncFnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.get().await?;
        let result = match lease.conn() {
            Ok(conn) => op(conn).await,
            Err(e) => Err(e),
        };
        lease.checked(result)
    }

    /// Runs `op` inside a transaction on a connection for one operation: commits when it
    /// returns `Ok`, rolls back at once otherwise (its row locks must not outlive the
    /// request, nor wait for the connection's next use), and ends the lease with the result.
    /// A failed `BEGIN` leaves the connection busy, so it is closed, not reused.
    pub(crate) async fn transaction<T>(
        &self,
        op: impl AsyncFnOnce(&mut C) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>
    where
        C::Database: sqlx::Database<Connection = C>,
    {
        let mut lease = self.get().await?;
        let result = async {
            let mut tx = lease.conn()?.begin().await.map_err(StoreError::backend)?;
            let result = op(&mut tx).await;
            commit_or_rollback(tx, result).await
        }
        .await;
        lease.checked(result)
    }

    async fn lease(&self) -> Result<Lease<'_, C>, StoreError> {
        let permit = self.permits.acquire().await.map_err(StoreError::backend)?;
        let conn = loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                Some((conn, since)) if since.elapsed() < self.settings.max_idle => break conn,
                // Too old: the server may have cut it. Dropping closes the socket.
                Some(_) => continue,
                None => break self.options.connect().await.map_err(StoreError::backend)?,
            }
        };
        Ok(Lease {
            conn: Some(conn),
            busy: false,
            connections: self,
            _permit: permit,
        })
    }
}

/// A connection on loan from [`Connections`]. It goes back when dropped, unless it is
/// [busy](Lease::conn): an operation took it and did not [finish](Lease::checked).
#[derive(Debug)]
pub(crate) struct Lease<'a, C: Connection> {
    /// # Internal invariant
    ///
    /// `Some` until dropped or discarded.
    conn: Option<C>,
    busy: bool,
    connections: &'a Connections<C>,
    _permit: SemaphorePermit<'a>,
}

impl<C: Connection> Lease<'_, C> {
    /// The connection, marked busy until [`checked`](Self::checked) sees the operation end:
    /// a request cancelled mid-query leaves it busy, and it is then closed, not reused.
    pub(crate) fn conn(&mut self) -> Result<&mut C, StoreError> {
        self.busy = true;
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Backend("connection dropped after an error".into()))
    }

    /// Ends an operation: passes `result` on, closing the connection first if it failed in
    /// a way that may have left it in any state (I/O, protocol). Other outcomes, including an
    /// error the server answered with (a constraint, a deadlock) and [`StoreError::Gone`],
    /// leave it fit for reuse.
    pub(crate) fn checked<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if leaves_connection_usable(&result) {
            self.busy = false;
        } else {
            self.discard();
        }
        result
    }

    fn discard(&mut self) {
        if !self.connections.settings.keep_on_error {
            self.conn = None;
        }
    }
}

/// Commits `tx` if `result` is a success; otherwise rolls it back now, not when the
/// connection is next used, so its locks do not outlive the operation.
pub(crate) async fn commit_or_rollback<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'_, DB>,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(value) => {
            tx.commit().await.map_err(StoreError::backend)?;
            Ok(value)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

impl<C: Connection> Drop for Lease<'_, C> {
    fn drop(&mut self) {
        if self.busy && !self.connections.settings.keep_on_error {
            return; // cancelled mid-operation: close it
        }
        if let Some(conn) = self.conn.take() {
            self.connections
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((conn, Instant::now()));
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::{Connections, Settings};
    use crate::store::StoreError;

    fn idle(set: &Connections<SqliteConnection>) -> usize {
        set.idle.lock().unwrap().len()
    }

    #[tokio::test]
    async fn only_connections_whose_operation_finished_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("c.db"))
            .create_if_missing(true);
        let settings = Settings {
            size: 2,
            wait: Duration::from_secs(5),
            max_idle: Duration::from_secs(60),
            keep_on_error: false,
        };
        let set = Connections::<SqliteConnection>::new(options, settings);

        // Taken for an operation that never finished (a cancelled request): closed.
        set.get().await.unwrap().conn().unwrap();
        assert_eq!(idle(&set), 0);

        // Finished, even with an outcome such as Gone: reused.
        let mut lease = set.get().await.unwrap();
        lease.conn().unwrap();
        assert!(lease.checked::<()>(Err(StoreError::Gone)).is_err());
        drop(lease);
        assert_eq!(idle(&set), 1);

        // Failed in the backend: closed.
        let mut lease = set.get().await.unwrap();
        lease.conn().unwrap();
        let io = sqlx::Error::Io(std::io::Error::other("cut"));
        assert!(lease.checked::<()>(Err(StoreError::backend(io))).is_err());
        drop(lease);
        assert_eq!(idle(&set), 0);
    }

    #[tokio::test]
    async fn idle_connections_past_their_age_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("c.db"))
            .create_if_missing(true);
        let settings = Settings {
            size: 1,
            wait: Duration::from_secs(5),
            max_idle: Duration::from_millis(50),
            keep_on_error: false,
        };
        let set = Connections::<SqliteConnection>::new(options, settings);
        let mut lease = set.get().await.unwrap();
        lease.checked(Ok(())).unwrap();
        drop(lease);
        assert_eq!(idle(&set), 1);
        tokio::time::sleep(Duration::from_millis(80)).await;
        let lease = set.get().await.unwrap();
        drop(lease);
        // The old one was closed on the way; the fresh one went back.
        assert_eq!(idle(&set), 1);
    }
}
