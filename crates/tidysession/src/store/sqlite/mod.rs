//! [`SqliteStore`]: sessions in an embedded SQLite database, the default store.

use async_trait::async_trait;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqliteQueryResult};
use sqlx::Sqlite;
use time::OffsetDateTime;

use super::sql::json::{bind_change, in_place_assignments, JsonDialect};
use super::sql::migrate::Migrations;
use super::sql::row::{cursor_from_millis, listed_from, millis, record_from, to_json};
use super::sql::{connect, migrate, Connections};
use super::stats::{key_range_method, native_stats, random_start, sample_plan, ExpiryIndex};
use super::{
    ExpiredBatch, RecordCounts, SessionStore, Stats, StatsOptions, StoreError, Updated, UserIndex,
};
use crate::id::StorageKey;
use crate::record::{is_empty, Change, Record, RESERVED_PREFIX};

mod maintenance;

/// Schema versions, applied in order by [`Maintenance::migrate`](crate::store::Maintenance::migrate). Never edit a released step;
/// append a new one.
const MIGRATIONS: &[&[&str]] = &[
    // 1: sessions keyed by SHA-256 of the id; times are Unix milliseconds. A rowid table, not
    // WITHOUT ROWID: rows of a few KB make WITHOUT ROWID b-trees two to three times slower.
    &[
        "CREATE TABLE tidysession_sessions (
            id BLOB PRIMARY KEY NOT NULL,
            data TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            user_id TEXT,
            version INTEGER NOT NULL DEFAULT 0
        )",
        "CREATE INDEX tidysession_sessions_expires_at ON tidysession_sessions (expires_at)",
        "CREATE INDEX tidysession_sessions_user_id ON tidysession_sessions (user_id)
            WHERE user_id IS NOT NULL",
    ],
];

/// Sessions in an embedded SQLite database file.
///
/// The database runs in WAL mode with a busy timeout, so readers never block the writer and
/// concurrent writers wait instead of failing. Only the SHA-256 of each session id is stored
/// (I6); data is a JSON object updated key by key inside short `BEGIN IMMEDIATE`
/// transactions, so concurrent requests writing different keys never lose each other's work.
///
/// It keeps a [user index](UserIndex): the indexed `user_id` column holds the record's
/// [`USER_KEY`](crate::record::USER_KEY) string (`NULL` when there is none), written by the
/// same statement or transaction that writes the data.
///
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::store::{Maintenance, SqliteStore};
///
/// let store = SqliteStore::open("tidysession.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Needs the cargo feature `sqlite`.
#[derive(Debug)]
pub struct SqliteStore {
    connections: Connections<SqliteConnection>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, or `:memory:` for a private
    /// in-memory database. Call [`Maintenance::migrate`](crate::store::Maintenance::migrate) before first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the file cannot be opened.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        Ok(Self {
            connections: connect::sqlite(path).await?,
        })
    }

    /// Runs one statement on a connection of the store's own.
    async fn execute(&self, query: SqliteQuery<'_>) -> Result<SqliteQueryResult, StoreError> {
        self.connections
            .with(async |conn| query.execute(conn).await.map_err(StoreError::backend))
            .await
    }

    /// Applies a change with one `UPDATE` that edits the JSON inside SQLite (`json_remove`,
    /// `json_set`): only the changed keys travel, and no transaction is held across a read.
    async fn update_in_place(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let sql = format!(
            "UPDATE tidysession_sessions SET {}, version = version + 1
             WHERE id = ? AND expires_at > ?",
            in_place_assignments(change, &JSON)
        );
        let query = bind_change(sqlx::query(&sql), change)
            .bind(key.as_bytes().as_slice())
            .bind(millis(now));
        let done = self.execute(query).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Gone);
        }
        if change.removed.is_empty() {
            return Ok(Updated::Kept);
        }
        // Removals may have emptied it (I2): delete it if no key outside tidysession's own
        // is left. Conditional, so a key set meanwhile by another request survives.
        let query = sqlx::query(
            "DELETE FROM tidysession_sessions WHERE id = ? AND NOT EXISTS (
                SELECT 1 FROM json_each(data) WHERE substr(key, 1, ?) != ?)",
        )
        .bind(key.as_bytes().as_slice())
        .bind(RESERVED_PREFIX.len() as i64)
        .bind(RESERVED_PREFIX);
        let deleted = self.execute(query).await?;
        Ok(match deleted.rows_affected() {
            0 => Updated::Kept,
            _ => Updated::Deleted,
        })
    }

    /// Applies a change by reading, changing and writing back the record, in a transaction
    /// that holds the write lock before it reads (for keys SQLite's JSON paths cannot name).
    async fn update_read_write(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        self.connections
            .transaction(async |tx| {
                take_write_lock(tx, key, now).await?;
                let mut record = read_locked(tx, key).await?;
                change.apply(&mut record);
                let outcome = if is_empty(&record.data) {
                    sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?")
                        .bind(key.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                    Updated::Deleted
                } else {
                    sqlx::query(
                        "UPDATE tidysession_sessions SET data = ?, expires_at = ?, user_id = ?
                     WHERE id = ?",
                    )
                    .bind(to_json(&record.data))
                    .bind(millis(record.expires_at))
                    .bind(record.user())
                    .bind(key.as_bytes().as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?;
                    Updated::Kept
                };
                Ok(outcome)
            })
            .await
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// The first statement of a transaction that reads, then writes: it bumps the live record's
/// version, which takes SQLite's write lock before anything is read, so a read-then-write
/// cannot be overtaken by another writer (a deferred transaction that reads first could not
/// upgrade). sqlx's own `BEGIN` is used because sqlx rolls it back cleanly if the request is
/// cancelled. A missing or expired record is [`StoreError::Gone`].
async fn take_write_lock(
    tx: &mut SqliteConnection,
    key: &StorageKey,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let locked = sqlx::query(
        "UPDATE tidysession_sessions SET version = version + 1 WHERE id = ? AND expires_at > ?",
    )
    .bind(key.as_bytes().as_slice())
    .bind(millis(now))
    .execute(&mut *tx)
    .await
    .map_err(StoreError::backend)?;
    match locked.rows_affected() {
        0 => Err(StoreError::Gone),
        _ => Ok(()),
    }
}

/// Reads a record inside a transaction that holds the write lock.
async fn read_locked(tx: &mut SqliteConnection, key: &StorageKey) -> Result<Record, StoreError> {
    let row =
        sqlx::query("SELECT data, created_at, expires_at FROM tidysession_sessions WHERE id = ?")
            .bind(key.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
    record_from(key, &row.ok_or(StoreError::Gone)?)
}

/// SQLite's JSON functions, for [`in_place_assignments`].
const JSON: JsonDialect = JsonDialect {
    remove: "json_remove",
    set: "json_set",
    value: "json(?)",
    max: "MAX",
    path_safe,
};

/// Whether SQLite's JSON path syntax names this key exactly: a quoted label ends at the next
/// `"` and is compared with the key as JSON text, so keys holding a quote, a backslash or a
/// control character (escaped in JSON) take the transactional path instead.
fn path_safe(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let query = sqlx::query(
            "SELECT data, created_at, expires_at FROM tidysession_sessions
             WHERE id = ? AND expires_at > ?",
        )
        .bind(key.as_bytes().as_slice())
        .bind(millis(now));
        let row = self
            .connections
            .with(async |conn| {
                query
                    .fetch_optional(conn)
                    .await
                    .map_err(StoreError::backend)
            })
            .await?;
        row.map(|row| record_from(key, &row)).transpose()
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        // An expired record under the same key may be replaced; a live one never.
        let query = sqlx::query(
            "INSERT INTO tidysession_sessions (id, data, created_at, expires_at, user_id)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET
                data = excluded.data, created_at = excluded.created_at,
                expires_at = excluded.expires_at, user_id = excluded.user_id, version = 0
             WHERE tidysession_sessions.expires_at <= ?6",
        )
        .bind(key.as_bytes().as_slice())
        .bind(to_json(&record.data))
        .bind(millis(record.created_at))
        .bind(millis(record.expires_at))
        .bind(record.user())
        .bind(millis(OffsetDateTime::now_utc()));
        let done = self.execute(query).await?;
        match done.rows_affected() {
            0 => Err(StoreError::DuplicateId),
            _ => Ok(()),
        }
    }

    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        if JSON.names_every_key(change) {
            self.update_in_place(key, change, now).await
        } else {
            self.update_read_write(key, change, now).await
        }
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE tidysession_sessions SET expires_at = MAX(expires_at, ?1)
             WHERE id = ?2 AND expires_at > ?3",
        )
        .bind(millis(expires_at))
        .bind(key.as_bytes().as_slice())
        .bind(millis(now));
        let done = self.execute(query).await?;
        match done.rows_affected() {
            0 => Err(StoreError::Gone),
            _ => Ok(()),
        }
    }

    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let moved = self
            .connections
            .transaction(async |tx| {
                take_write_lock(tx, from, now).await?;
                let taken: Option<i64> =
                    sqlx::query_scalar("SELECT expires_at FROM tidysession_sessions WHERE id = ?")
                        .bind(to.as_bytes().as_slice())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                match taken {
                    Some(exp) if exp > millis(now) => return Err(StoreError::DuplicateId),
                    Some(_) => {
                        sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?")
                            .bind(to.as_bytes().as_slice())
                            .execute(&mut *tx)
                            .await
                            .map_err(StoreError::backend)?;
                    }
                    None => {}
                }
                let mut record = read_locked(tx, from).await?;
                change.apply(&mut record);
                if is_empty(&record.data) {
                    // Emptied by changes made meanwhile: nothing left to move (I2).
                    sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?")
                        .bind(from.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                    return Ok(false);
                }
                // One statement moves the record: no moment where both ids or neither is valid.
                sqlx::query(
                    "UPDATE tidysession_sessions SET id = ?, data = ?, expires_at = ?, user_id = ?
                 WHERE id = ?",
                )
                .bind(to.as_bytes().as_slice())
                .bind(to_json(&record.data))
                .bind(millis(record.expires_at))
                .bind(record.user())
                .bind(from.as_bytes().as_slice())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
                Ok(true)
            })
            .await?;
        match moved {
            true => Ok(()),
            false => Err(StoreError::Gone),
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let query = sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?")
            .bind(key.as_bytes().as_slice());
        let done = self.execute(query).await?;
        Ok(done.rows_affected() > 0)
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        Some(self)
    }
}

#[async_trait]
impl UserIndex for SqliteStore {
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError> {
        // Through the partial user_id index: `user_id = ?` implies its `IS NOT NULL`.
        let query = sqlx::query(
            "SELECT data, created_at, expires_at, id FROM tidysession_sessions
             WHERE user_id = ? AND expires_at > ?",
        )
        .bind(user)
        .bind(millis(now));
        let rows = self
            .connections
            .with(async |conn| query.fetch_all(conn).await.map_err(StoreError::backend))
            .await?;
        Ok(rows.iter().filter_map(listed_from).collect())
    }

    async fn delete_sessions_of(
        &self,
        user: &str,
        keep: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        // `IS NOT`, not `<>`: with no key to keep (NULL) it spares nothing, where `<>` would
        // match nothing.
        let query =
            sqlx::query("DELETE FROM tidysession_sessions WHERE user_id = ? AND id IS NOT ?")
                .bind(user)
                .bind(keep.map(|k| k.as_bytes().as_slice()));
        let done = self.execute(query).await?;
        Ok(done.rows_affected())
    }
}
