//! [`MySqlStore`]: sessions in MySQL 8 or MariaDB 10.11.
//!
//! # Layout
//!
//! One InnoDB table (default `tidysession_sessions`, see [`MySqlStore::with_table`]):
//!
//! | column | type | holds |
//! |---|---|---|
//! | `id` | `BINARY(32)` primary key | SHA-256 of the session id, never the id itself (I6) |
//! | `data` | `JSON` | the session data, one object |
//! | `created_at`, `expires_at` | `BIGINT` | Unix milliseconds; `expires_at` is indexed |
//! | `user_id` | `VARCHAR(255) NULL` | the record's [`USER_KEY`](crate::record::USER_KEY) string, `NULL` when none; indexed, for the [user index](UserIndex) |
//! | `version` | `BIGINT` | bumped by every data change |
//!
//! `JSON` is a real binary type on MySQL 8 and an alias of `LONGTEXT` with a `JSON_VALID`
//! check on MariaDB; the store only uses JSON functions both share. A second table,
//! `<table>_schema`, records which [migrations](crate::store::Maintenance::migrate) ran.
//!
//! # Per-key updates
//!
//! An [`update`](SessionStore::update) is one `UPDATE` that edits the JSON inside the server
//! (`JSON_REMOVE`, then `JSON_SET`), so only the changed keys travel and two requests that
//! change different keys never lose each other's work (I5). It matches only a live record,
//! so a deleted session is never re-created. Keys that a JSON path cannot name exactly (empty,
//! or holding `"`, `\`, `*` or control characters) are applied instead by reading the record
//! with `SELECT … FOR UPDATE`, changing it and writing it back in one transaction.
//!
//! When an update removes keys it may leave only [reserved](crate::store::RESERVED_PREFIX) keys: the
//! store then reads the remaining key names and deletes the record only if its `version` is
//! still the one it read, so a key set meanwhile by another request survives.
//!
//! # The user index
//!
//! `user_id` follows the data in the same statement or transaction: a create writes it from
//! the record, an in-place update writes it when the change sets or removes the user key,
//! and the read-modify-write paths (odd keys, rename) write it from the changed record.
//! Lookups compare it byte for byte: the `utf8mb4_bin` collation alone pads with spaces, so
//! `alice` would match `alice `. A user id longer than 255 characters does not fit: in
//! strict SQL mode (the default) its save fails.
//!
//! Statements that find a record by id force the primary key (`FORCE INDEX (PRIMARY)`): on a
//! small table the optimizer would otherwise scan the `expires_at` index and lock ranges of
//! it. InnoDB may still pick a statement or transaction as a deadlock victim (error 1213)
//! under concurrent writes; the store runs those again a few times, since the victim was
//! rolled back.
//!
//! # Migrations
//!
//! [`migrate`](crate::store::Maintenance::migrate) takes a named lock (`GET_LOCK`) for the table, so
//! processes starting together migrate one after the other, and applies the steps newer than
//! the version recorded; a schema newer than this build is refused.

use std::fmt;

use async_trait::async_trait;
use sqlx::mysql::{MySqlArguments, MySqlConnection, MySqlQueryResult, MySqlRow};
use sqlx::{MySql, Row as _};
use time::OffsetDateTime;

use super::sql::error::is_unique_violation;
use super::sql::innodb::innodb;
use super::sql::json::{bind_change, in_place_assignments, JsonDialect};
use super::sql::migrate::Migrations;
use super::sql::retry::retry;
use super::sql::row::{cursor_from_millis, listed_from, millis, record_from, to_json};
use super::sql::sweep::MySqlSweep;
use super::sql::{connect, lock, migrate, Connections};
use super::stats::{key_range_method, native_stats, random_start, sample_plan, ExpiryIndex};
use super::{
    ExclusiveGuard, ExpiredBatch, RecordCounts, SessionStore, Stats, StatsOptions, StoreError,
    Sweep, SweepPosition, SweptBatch, Updated, UserIndex,
};
use crate::id::StorageKey;
use crate::record::{is_empty, only_reserved, Change, Record};

mod maintenance;

/// The sessions table when [`MySqlStore::with_table`] names no other.
const DEFAULT_TABLE: &str = "tidysession_sessions";

/// Longest accepted table name: MySQL's 64-character identifier limit, minus `_schema`.
const MAX_TABLE_LEN: usize = 64 - "_schema".len();

/// Schema versions, applied in order by [`Maintenance::migrate`](crate::store::Maintenance::migrate); `{t}` is the quoted
/// sessions table. Never edit a released step; append a new one. Each step is idempotent
/// (`IF NOT EXISTS`), because MySQL commits DDL at once: a step interrupted before its
/// version is recorded runs again.
const MIGRATIONS: &[&[&str]] = &[
    // 1: sessions keyed by SHA-256 of the id; times are Unix milliseconds. utf8mb4_bin
    // compares user ids byte for byte.
    &["CREATE TABLE IF NOT EXISTS {t} (
            id BINARY(32) NOT NULL,
            data JSON NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            user_id VARCHAR(255) NULL,
            version BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (id),
            KEY expires_at (expires_at),
            KEY user_id (user_id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"],
];

/// "Expired at `?`", for a `DELETE` by id. Single-table `DELETE` takes no index hints on
/// either server, and a plain `expires_at <= ?` may lead the optimizer to lock a range of
/// the `expires_at` index (see `Table::by_id`); `+ 0` keeps that index out of the plan.
const EXPIRED: &str = "expires_at + 0 <= ?";

/// Sessions in a MySQL 8 or MariaDB 10.11 database.
///
/// One InnoDB table (see [`table`](Self::with_table)):
///
/// | column | type | holds |
/// |---|---|---|
/// | `id` | `BINARY(32)` primary key | SHA-256 of the session id, never the id itself (I6) |
/// | `data` | `JSON` | the session data, one object |
/// | `created_at`, `expires_at` | `BIGINT` | Unix milliseconds; `expires_at` is indexed |
/// | `user_id` | `VARCHAR(255) NULL` | the record's [`USER_KEY`](crate::record::USER_KEY) string, `NULL` when none; indexed, for the [user index](UserIndex) |
/// | `version` | `BIGINT` | bumped by every data change |
///
/// `JSON` is a binary type on MySQL 8 and `LONGTEXT` with a `JSON_VALID` check on MariaDB;
/// the store uses only JSON functions both have. `<table>_schema` records which
/// [migrations](crate::store::Maintenance::migrate) ran; `migrate` holds a named lock (`GET_LOCK`) while
/// it works, so processes starting together migrate one after the other.
///
/// A save is one `UPDATE` that edits the JSON inside the server (`JSON_REMOVE`, `JSON_SET`):
/// only the changed keys travel, and concurrent requests writing different keys never lose
/// each other's work (I5). Keys a JSON path cannot name exactly (empty, or holding `"`, `\`,
/// `*` or control characters) are applied by a locked read-modify-write transaction instead.
/// A removal that leaves only [reserved](crate::store::RESERVED_PREFIX) keys deletes the record,
/// unless another request changed it meanwhile.
///
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::store::{Maintenance, MySqlStore};
///
/// let store = MySqlStore::connect("mysql://app:secret@127.0.0.1/app")
///     .await?
///     .with_table("web_sessions")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Needs the cargo feature `mysql`.
pub struct MySqlStore {
    connections: Connections<MySqlConnection>,
    table: Table,
}

/// A validated table name and the quoted names built from it.
#[derive(Debug, Clone)]
struct Table {
    name: String,
    /// `` `name` ``
    sessions: String,
    /// `` `name_schema` ``
    schema: String,
    /// `` `name` FORCE INDEX (PRIMARY) ``, for statements that find a row by id and also test
    /// its expiry: on a small table the optimizer may otherwise scan the `expires_at` index
    /// and lock a range of it, which made concurrent updates and deletes deadlock.
    by_id: String,
    /// The sweep's statements, built once.
    sweep: MySqlSweep,
}

impl Default for Table {
    fn default() -> Self {
        Self::quoted(DEFAULT_TABLE)
    }
}

impl Table {
    fn new(name: &str) -> Result<Self, InvalidTableName> {
        let valid = !name.is_empty()
            && name.len() <= MAX_TABLE_LEN
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(InvalidTableName(name.to_owned()));
        }
        Ok(Self::quoted(name))
    }

    /// The names and statements for `name`, already checked.
    fn quoted(name: &str) -> Self {
        let sessions = format!("`{name}`");
        Self {
            name: name.to_owned(),
            schema: format!("`{name}_schema`"),
            by_id: format!("`{name}` FORCE INDEX (PRIMARY)"),
            sweep: MySqlSweep::new(&sessions, "id", EXPIRED, false),
            sessions,
        }
    }
}

/// A table name that is not 1 to 57 ASCII letters, digits or underscores.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid session table name {0:?}: use 1 to {MAX_TABLE_LEN} ASCII letters, digits or underscores"
)]
struct InvalidTableName(String);

impl fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password: only where the store points.
        let options = self.connections.options();
        f.debug_struct("MySqlStore")
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("database", &options.get_database())
            .field("user", &options.get_username())
            .field("table", &self.table.name)
            .finish_non_exhaustive()
    }
}

impl MySqlStore {
    /// Connects to the database a `mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` URL names
    /// (any option sqlx accepts, e.g. `?ssl-mode=required`). An extra `table=NAME` query
    /// parameter chooses the sessions table, like [`table`](Self::with_table). Call
    /// [`Maintenance::migrate`](crate::store::Maintenance::migrate) before first use.
    ///
    /// The store keeps up to 10 connections and gives up on an unreachable server after
    /// 5 seconds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for a malformed URL, an invalid table name, or a server that
    /// cannot be reached or refuses the login.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, table) = super::url::take_param(url, "table").ok_or_else(|| {
            StoreError::backend(InvalidTableName("(not percent-encoded UTF-8)".to_owned()))
        })?;
        let table = match table {
            Some(name) => Table::new(&name).map_err(StoreError::backend)?,
            None => Table::default(),
        };
        Ok(Self {
            connections: connect::mysql(&url).await?,
            table,
        })
    }

    /// Runs one statement on a connection of the store's own.
    async fn execute(&self, query: MySqlQuery<'_>) -> Result<MySqlQueryResult, StoreError> {
        self.connections
            .with(async |conn| query.execute(conn).await.map_err(StoreError::backend))
            .await
    }

    /// Runs one query that returns at most one row.
    async fn fetch_optional(&self, query: MySqlQuery<'_>) -> Result<Option<MySqlRow>, StoreError> {
        self.connections
            .with(async |conn| {
                query
                    .fetch_optional(conn)
                    .await
                    .map_err(StoreError::backend)
            })
            .await
    }

    /// Keeps sessions in the table `name` (default `tidysession_sessions`) and records its
    /// schema version in `name_schema`. No I/O.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] unless `name` is 1 to 57 ASCII letters, digits or
    /// underscores; the name is never sent to the server otherwise.
    pub fn with_table(mut self, name: &str) -> Result<Self, StoreError> {
        self.table = Table::new(name).map_err(StoreError::backend)?;
        Ok(self)
    }

    /// The sessions table's name.
    pub fn table_name(&self) -> &str {
        &self.table.name
    }

    /// Applies a change with one `UPDATE` that edits the JSON inside the server: only the
    /// changed keys travel, and no transaction is held across a read.
    async fn update_in_place(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        // The version bump also means a matched row always counts as changed, so Gone is
        // detected even on a server that reports changed rather than matched rows.
        let sql = format!(
            "UPDATE {} SET {}, version = version + 1 WHERE id = ? AND expires_at > ?",
            self.table.by_id,
            in_place_assignments(change, &JSON)
        );
        let query = || {
            bind_change(sqlx::query(&sql), change)
                .bind(key.as_bytes().as_slice())
                .bind(millis(now))
        };
        if !change.may_empty() {
            let done = retry(|| self.execute(query())).await?;
            return match done.rows_affected() {
                0 => Err(StoreError::Gone),
                _ => Ok(Updated::Kept),
            };
        }
        // Removals that may empty the record: the UPDATE, the look at what is left and the
        // DELETE share one transaction, so the row stays locked from the first to the last
        // and no reader ever sees it empty (I2).
        let keys = format!(
            "SELECT CAST(JSON_KEYS(data) AS CHAR) FROM {} WHERE id = ?",
            self.table.by_id
        );
        retry(|| async {
            self.connections
                .transaction(async |tx| {
                    let done = query()
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Gone);
                    }
                    let left: Option<String> = sqlx::query_scalar(&keys)
                        .bind(key.as_bytes().as_slice())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                    // JSON_KEYS is NULL when the data is not an object.
                    let left: Vec<String> = left
                        .and_then(|text| serde_json::from_str(&text).ok())
                        .ok_or_else(|| StoreError::Corrupt {
                            key: *key,
                            reason: "data is not a JSON object".to_owned(),
                        })?;
                    if !only_reserved(left.iter()) {
                        return Ok(Updated::Kept);
                    }
                    self.delete_in(tx, key).await?;
                    Ok(Updated::Deleted)
                })
                .await
        })
        .await
    }

    /// Applies a change by reading, changing and writing back the record, with the row locked
    /// (for keys a JSON path cannot name).
    async fn update_read_write(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        retry(|| async {
            self.connections
                .transaction(async |tx| {
                    let mut record = self
                        .read_locked(tx, key, now)
                        .await?
                        .ok_or(StoreError::Gone)?;
                    change.apply(&mut record);
                    let outcome = if is_empty(&record.data) {
                        self.delete_in(tx, key).await?;
                        Updated::Deleted
                    } else {
                        sqlx::query(&format!(
                        "UPDATE {} SET data = ?, expires_at = ?, user_id = ?, version = version + 1
                         WHERE id = ?",
                        self.table.sessions
                    ))
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
        })
        .await
    }

    /// Reads the live record under `key` and locks its row until the transaction ends.
    async fn read_locked(
        &self,
        tx: &mut sqlx::MySqlConnection,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT CAST(data AS CHAR), created_at, expires_at FROM {}
             WHERE id = ? AND expires_at > ? FOR UPDATE",
            self.table.by_id
        ))
        .bind(key.as_bytes().as_slice())
        .bind(millis(now))
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::backend)?;
        row.map(|row| record_from(key, &row)).transpose()
    }

    async fn delete_in(
        &self,
        tx: &mut sqlx::MySqlConnection,
        key: &StorageKey,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!("DELETE FROM {} WHERE id = ?", self.table.sessions))
            .bind(key.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::backend)?;
        Ok(done.rows_affected())
    }
}

type MySqlQuery<'q> = sqlx::query::Query<'q, MySql, MySqlArguments>;

/// MySQL's and MariaDB's JSON functions, for [`in_place_assignments`]. `JSON_EXTRACT(?, '$')`
/// turns the JSON text into a JSON value on both servers (a bare string argument would be
/// stored as a JSON string).
const JSON: JsonDialect = JsonDialect {
    remove: "JSON_REMOVE",
    set: "JSON_SET",
    value: "JSON_EXTRACT(?, '$')",
    max: "GREATEST",
    path_safe,
};

/// Whether a `$."key"` path names this key exactly on MySQL and MariaDB: a quoted label ends
/// at the next `"` and escapes are read differently by the two servers, so keys holding a
/// quote, a backslash or a control character (escaped in JSON) take the transactional path,
/// as do `*` (a wildcard in some path positions) and the empty key.
fn path_safe(key: &str) -> bool {
    !key.is_empty()
        && !key
            .chars()
            .any(|c| c == '"' || c == '\\' || c == '*' || c.is_control())
}

#[async_trait]
impl SessionStore for MySqlStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let sql = format!(
            "SELECT CAST(data AS CHAR), created_at, expires_at FROM {}
             WHERE id = ? AND expires_at > ?",
            self.table.by_id
        );
        let query = sqlx::query(&sql)
            .bind(key.as_bytes().as_slice())
            .bind(millis(now));
        let row = self.fetch_optional(query).await?;
        row.map(|row| record_from(key, &row)).transpose()
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let insert = format!(
            "INSERT INTO {} (id, data, created_at, expires_at, user_id) VALUES (?, ?, ?, ?, ?)",
            self.table.sessions
        );
        let data = to_json(&record.data);
        let try_insert = || async {
            let done = retry(|| {
                self.execute(
                    sqlx::query(&insert)
                        .bind(key.as_bytes().as_slice())
                        .bind(&data)
                        .bind(millis(record.created_at))
                        .bind(millis(record.expires_at))
                        .bind(record.user()),
                )
            })
            .await;
            match done {
                Ok(_) => Ok(true),
                Err(e) if is_unique_violation(&e) => Ok(false),
                Err(e) => Err(e),
            }
        };
        // The common case is one INSERT. On a duplicate, an expired record under the same
        // key may be replaced; a live one never.
        if try_insert().await? {
            return Ok(());
        }
        let delete_expired = format!(
            "DELETE FROM {} WHERE id = ? AND {EXPIRED}",
            self.table.sessions
        );
        let expired = retry(|| {
            self.execute(
                sqlx::query(&delete_expired)
                    .bind(key.as_bytes().as_slice())
                    .bind(millis(OffsetDateTime::now_utc())),
            )
        })
        .await?;
        if expired.rows_affected() > 0 && try_insert().await? {
            return Ok(());
        }
        Err(StoreError::DuplicateId)
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
        let sql = format!(
            "UPDATE {} SET expires_at = GREATEST(expires_at, ?) WHERE id = ? AND expires_at > ?",
            self.table.by_id
        );
        // sqlx connects with CLIENT_FOUND_ROWS, so a touch that does not move the expiry
        // still counts its matched row.
        let done = retry(|| {
            self.execute(
                sqlx::query(&sql)
                    .bind(millis(expires_at))
                    .bind(key.as_bytes().as_slice())
                    .bind(millis(now)),
            )
        })
        .await?;
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
        let t = &self.table.sessions;
        let moved = retry(|| async {
            self.connections
                .transaction(async |tx| {
                    let mut record = self
                        .read_locked(tx, from, now)
                        .await?
                        .ok_or(StoreError::Gone)?;
                    // A plain read, not a locking one: locking a missing `to` would take a gap lock,
                    // and two renames into the same gap would deadlock on their inserts. A `to`
                    // created meanwhile makes the move below fail as a duplicate instead.
                    let taken: Option<i64> =
                        sqlx::query_scalar(&format!("SELECT expires_at FROM {t} WHERE id = ?"))
                            .bind(to.as_bytes().as_slice())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(StoreError::backend)?;
                    match taken {
                        Some(exp) if exp > millis(now) => return Err(StoreError::DuplicateId),
                        Some(_) => {
                            sqlx::query(&format!("DELETE FROM {t} WHERE id = ? AND {EXPIRED}"))
                                .bind(to.as_bytes().as_slice())
                                .bind(millis(now))
                                .execute(&mut *tx)
                                .await
                                .map_err(StoreError::backend)?;
                        }
                        None => {}
                    }
                    change.apply(&mut record);
                    if is_empty(&record.data) {
                        // Emptied by changes made meanwhile: nothing left to move (I2).
                        self.delete_in(tx, from).await?;
                        return Ok(false);
                    }
                    // One statement moves the record: no moment where both ids or neither is valid.
                    let moved = sqlx::query(&format!(
                        "UPDATE {t} SET id = ?, data = ?, expires_at = ?, user_id = ?,
                        version = version + 1
                     WHERE id = ?"
                    ))
                    .bind(to.as_bytes().as_slice())
                    .bind(to_json(&record.data))
                    .bind(millis(record.expires_at))
                    .bind(record.user())
                    .bind(from.as_bytes().as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend);
                    match moved {
                        Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateId),
                        other => other?,
                    };
                    Ok(true)
                })
                .await
        })
        .await?;
        match moved {
            true => Ok(()),
            false => Err(StoreError::Gone),
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {} WHERE id = ?", self.table.sessions);
        let done =
            retry(|| self.execute(sqlx::query(&sql).bind(key.as_bytes().as_slice()))).await?;
        Ok(done.rows_affected() > 0)
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        Some(self)
    }
}

/// "Filed under `?`, byte for byte", for the user index (`s` is the sessions table). The
/// first comparison walks the index; the second refuses what `utf8mb4_bin`'s space padding
/// lets through (`alice` = `alice `). Binds the user twice.
const FILED_UNDER: &str = "s.user_id = ? AND s.user_id = CAST(? AS BINARY)";

#[async_trait]
impl UserIndex for MySqlStore {
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError> {
        let sql = format!(
            "SELECT CAST(s.data AS CHAR), s.created_at, s.expires_at, s.id
             FROM {} AS s FORCE INDEX (user_id) WHERE {FILED_UNDER} AND s.expires_at > ?",
            self.table.sessions
        );
        let query = sqlx::query(&sql).bind(user).bind(user).bind(millis(now));
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
        // The multi-table form, because only it takes an index hint: a scan of the whole
        // table would lock every row it reads. `<=>` is NULL-safe, so with no key to keep
        // nothing is spared.
        let sql = format!(
            "DELETE s FROM {} AS s FORCE INDEX (user_id) WHERE {FILED_UNDER} AND NOT (s.id <=> ?)",
            self.table.sessions
        );
        let keep = keep.map(|k| k.as_bytes().as_slice());
        let done =
            retry(|| self.execute(sqlx::query(&sql).bind(user).bind(user).bind(keep))).await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        for good in ["s", "tidysession_sessions", "App_2", &"x".repeat(57)] {
            assert!(Table::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a-b",
            "a b",
            "x`; DROP TABLE t; --",
            "db.t",
            "ünï",
            &"x".repeat(58),
        ] {
            assert!(Table::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_plain_keys_take_the_json_path() {
        for ok in ["a", "a.b", "with space", "[0]", "$", "ünï", "a'b"] {
            assert!(path_safe(ok), "{ok:?}");
        }
        for odd in ["", "q\"x", "back\\slash", "tab\there", "a*b"] {
            assert!(!path_safe(odd), "{odd:?}");
        }
    }
}
