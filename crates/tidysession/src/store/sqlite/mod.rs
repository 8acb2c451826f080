//! [`SqliteStore`]: sessions in an embedded SQLite database, the default store.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection as _, Row};
use time::OffsetDateTime;

use super::{RecordCounts, SessionStore, StoreError};
use crate::id::StorageKey;
use crate::record::{Change, Data, Record};

mod connections;
use connections::Connections;

/// Schema versions, applied in order by [`SessionStore::migrate`]. Never edit a released step;
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
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::store::{SessionStore, SqliteStore};
///
/// let store = SqliteStore::open("tidysession.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SqliteStore {
    connections: Connections,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`, or `:memory:` for a private
    /// in-memory database. Call [`SessionStore::migrate`] before first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the file cannot be opened.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        let in_memory = path == ":memory:";
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{path}"))
            .map_err(StoreError::backend)?
            .create_if_missing(true)
            .journal_mode(if in_memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        // A private in-memory database exists once per connection: keep exactly one.
        let size = if in_memory { 1 } else { 8 };
        let store = Self {
            connections: Connections::new(options, size),
        };
        // Open one connection now, so that a bad path fails here rather than on first use.
        store.connections.get().await?;
        Ok(store)
    }

    /// Applies a change with one `UPDATE` that edits the JSON inside SQLite (`json_remove`,
    /// `json_set`): only the changed keys travel, and no transaction is held across a read.
    async fn update_in_place(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut expr = String::from("data");
        if !change.removed.is_empty() {
            let paths = vec!["?"; change.removed.len()].join(", ");
            expr = format!("json_remove({expr}, {paths})");
        }
        if !change.set.is_empty() {
            let pairs = vec!["?, json(?)"; change.set.len()].join(", ");
            expr = format!("json_set({expr}, {pairs})");
        }
        // Leaving expires_at out when it does not move spares an index write.
        let expiry = if change.expires_at.is_some() {
            ", expires_at = ?"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE tidysession_sessions SET data = {expr}{expiry}, version = version + 1
             WHERE id = ? AND expires_at > ?"
        );
        let mut query = sqlx::query(&sql);
        for k in &change.removed {
            query = query.bind(json_path(k));
        }
        for (k, v) in &change.set {
            query = query.bind(json_path(k)).bind(v.to_string());
        }
        if let Some(at) = change.expires_at {
            query = query.bind(millis(at));
        }
        let mut lease = self.connections.get().await?;
        let done = query
            .bind(key.as_bytes().as_slice())
            .bind(millis(now))
            .execute(lease.conn()?)
            .await
            .map_err(|e| lease.fail(e))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Gone);
        }
        if !change.removed.is_empty() {
            // Removals may have emptied it (I2). Conditional, so a concurrent set survives.
            sqlx::query("DELETE FROM tidysession_sessions WHERE id = ? AND data = '{}'")
                .bind(key.as_bytes().as_slice())
                .execute(lease.conn()?)
                .await
                .map_err(|e| lease.fail(e))?;
        }
        Ok(())
    }
}

/// Starts a write transaction that takes the write lock up front. A deferred `BEGIN` that
/// reads and then writes can fail to upgrade when another writer committed in between;
/// `BEGIN IMMEDIATE` waits for the lock (busy timeout) instead. Dropped without commit (an
/// error, a cancelled request), the transaction is rolled back.
async fn begin_immediate(
    conn: &mut SqliteConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, StoreError> {
    conn.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(StoreError::backend)
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_millis(key: &StorageKey, ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|e| {
        StoreError::Corrupt {
            key: *key,
            reason: e.to_string(),
        }
    })
}

/// Whether SQLite's JSON path syntax names this key exactly: a quoted label ends at the next
/// `"` and is compared with the key as JSON text, so keys holding a quote, a backslash or a
/// control character (escaped in JSON) take the transactional path instead.
fn path_safe(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| c == '"' || c == '\\' || c.is_control())
}

fn json_path(key: &str) -> String {
    format!("$.\"{key}\"")
}

fn parse_data(key: &StorageKey, text: &str) -> Result<Data, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: *key,
        reason: format!("data is not a JSON object: {e}"),
    })
}

fn to_json(data: &Data) -> String {
    // Serializing a map of JSON values cannot fail.
    serde_json::Value::Object(data.clone()).to_string()
}

/// Reads the live record's data inside a write transaction.
async fn live_data(
    tx: &mut sqlx::SqliteConnection,
    key: &StorageKey,
    now: OffsetDateTime,
) -> Result<Data, StoreError> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT data FROM tidysession_sessions WHERE id = ? AND expires_at > ?")
            .bind(key.as_bytes().as_slice())
            .bind(millis(now))
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
    parse_data(key, &text.ok_or(StoreError::Gone)?)
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let mut lease = self.connections.get().await?;
        let row = sqlx::query(
            "SELECT data, created_at, expires_at FROM tidysession_sessions
             WHERE id = ? AND expires_at > ?",
        )
        .bind(key.as_bytes().as_slice())
        .bind(millis(now))
        .fetch_optional(lease.conn()?)
        .await
        .map_err(|e| lease.fail(e))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Record {
            data: parse_data(key, row.get::<&str, _>(0))?,
            created_at: from_millis(key, row.get(1))?,
            expires_at: from_millis(key, row.get(2))?,
        }))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let mut lease = self.connections.get().await?;
        // An expired record under the same key may be replaced; a live one never.
        let done = sqlx::query(
            "INSERT INTO tidysession_sessions (id, data, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET
                data = excluded.data, created_at = excluded.created_at,
                expires_at = excluded.expires_at, user_id = NULL, version = 0
             WHERE tidysession_sessions.expires_at <= ?5",
        )
        .bind(key.as_bytes().as_slice())
        .bind(to_json(&record.data))
        .bind(millis(record.created_at))
        .bind(millis(record.expires_at))
        .bind(millis(OffsetDateTime::now_utc()))
        .execute(lease.conn()?)
        .await
        .map_err(|e| lease.fail(e))?;
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
    ) -> Result<(), StoreError> {
        if change
            .set
            .keys()
            .chain(&change.removed)
            .all(|k| path_safe(k))
        {
            return self.update_in_place(key, change, now).await;
        }
        let mut lease = self.connections.get().await?;
        let mut tx = begin_immediate(lease.conn()?).await?;
        let mut data = live_data(&mut tx, key, now).await?;
        change.apply_to(&mut data);
        let query = if data.is_empty() {
            sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?1")
                .bind(key.as_bytes().as_slice())
        } else {
            sqlx::query(
                "UPDATE tidysession_sessions
                 SET data = ?2, expires_at = COALESCE(?3, expires_at), version = version + 1
                 WHERE id = ?1",
            )
            .bind(key.as_bytes().as_slice())
            .bind(to_json(&data))
            .bind(change.expires_at.map(millis))
        };
        query.execute(&mut *tx).await.map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut lease = self.connections.get().await?;
        let done = sqlx::query(
            "UPDATE tidysession_sessions SET expires_at = MAX(expires_at, ?1)
             WHERE id = ?2 AND expires_at > ?3",
        )
        .bind(millis(expires_at))
        .bind(key.as_bytes().as_slice())
        .bind(millis(now))
        .execute(lease.conn()?)
        .await
        .map_err(|e| lease.fail(e))?;
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
        let mut lease = self.connections.get().await?;
        let mut tx = begin_immediate(lease.conn()?).await?;
        let mut data = live_data(&mut tx, from, now).await?;
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
        change.apply_to(&mut data);
        let query = if data.is_empty() {
            sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?1")
                .bind(from.as_bytes().as_slice())
        } else {
            sqlx::query(
                "UPDATE tidysession_sessions
                 SET id = ?2, data = ?3, expires_at = COALESCE(?4, expires_at),
                     version = version + 1
                 WHERE id = ?1",
            )
            .bind(from.as_bytes().as_slice())
            .bind(to.as_bytes().as_slice())
            .bind(to_json(&data))
            .bind(change.expires_at.map(millis))
        };
        query.execute(&mut *tx).await.map_err(StoreError::backend)?;
        tx.commit().await.map_err(StoreError::backend)
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let mut lease = self.connections.get().await?;
        let done = sqlx::query("DELETE FROM tidysession_sessions WHERE id = ?")
            .bind(key.as_bytes().as_slice())
            .execute(lease.conn()?)
            .await
            .map_err(|e| lease.fail(e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired(&self, now: OffsetDateTime, limit: u32) -> Result<u64, StoreError> {
        let mut lease = self.connections.get().await?;
        // Walks the expires_at index; one short statement per batch.
        let done = sqlx::query(
            "DELETE FROM tidysession_sessions WHERE id IN (
                SELECT id FROM tidysession_sessions WHERE expires_at <= ?
                ORDER BY expires_at LIMIT ?)",
        )
        .bind(millis(now))
        .bind(i64::from(limit))
        .execute(lease.conn()?)
        .await
        .map_err(|e| lease.fail(e))?;
        Ok(done.rows_affected())
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let mut lease = self.connections.get().await?;
        let (total, expired): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE expires_at <= ?) FROM tidysession_sessions",
        )
        .bind(millis(now))
        .fetch_one(lease.conn()?)
        .await
        .map_err(|e| lease.fail(e))?;
        Ok(RecordCounts {
            live: (total - expired) as u64,
            expired: expired as u64,
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut lease = self.connections.get().await?;
        let mut tx = begin_immediate(lease.conn()?).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS tidysession_schema (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM tidysession_schema")
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        let current = current.unwrap_or(0);
        if current > MIGRATIONS.len() as i64 {
            return Err(StoreError::backend(SchemaTooNew {
                found: current,
                known: MIGRATIONS.len(),
            }));
        }
        for (i, step) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            for statement in *step {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?;
            }
            sqlx::query("INSERT INTO tidysession_schema (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
        }
        tx.commit().await.map_err(StoreError::backend)
    }
}

/// The database was migrated by a newer tidysession than this one.
#[derive(Debug, thiserror::Error)]
#[error(
    "session schema version {found} is newer than this build knows ({known}); upgrade tidysession"
)]
struct SchemaTooNew {
    found: i64,
    known: usize,
}
