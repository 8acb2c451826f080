//! [`PostgresStore`]: sessions in PostgreSQL, shared by every app server that can reach it.
//!
//! # Layout
//!
//! One table, `tidysession_sessions`, in a schema of your choice (default `public`):
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | `bytea` primary key | SHA-256 of the session id (I6) |
//! | `data` | `jsonb` | the session's keys and values |
//! | `created_at`, `expires_at` | `bigint` | Unix milliseconds; `expires_at` is indexed |
//! | `user_id` | `text` | the record's [`USER_KEY`](crate::record::USER_KEY) string, `NULL` when none; indexed, for the [user index](UserIndex) |
//! | `version` | `bigint` | bumped by every change |
//!
//! # How a save stays small and atomic
//!
//! An update is one statement: `data = (data - removed_keys) || changed_pairs`. Only the changed
//! keys travel, PostgreSQL applies them to the row as it is at that moment, and two requests
//! writing different keys both survive (I5). A row that the change would leave without data is
//! deleted instead of written (I2), and an update that finds no live row changes nothing: the
//! session is [`Gone`](StoreError::Gone) and never re-created. Renaming (I7) is one `UPDATE` of
//! the primary key, so readers see the old id or the new one, never both or neither.
//!
//! `user_id` follows the data in the same statement: a create writes it from the record, and
//! an update or rename whose change sets or removes the user key writes it too (others leave
//! it alone, and a rename carries it along with the row).
//!
//! Expired rows are deleted in bounded batches with `FOR UPDATE SKIP LOCKED`, so several
//! processes can clean up at once without waiting on each other or on live traffic.

use std::fmt;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnection, PgQueryResult, PgRow};
use sqlx::{Postgres, Row as _};
use time::OffsetDateTime;

use super::sql::error::is_unique_violation;
use super::sql::migrate::Migrations;
use super::sql::row::{cursor_from_millis, listed_from, millis, record_from, to_json};
use super::sql::sweep::PgSweep;
use super::sql::{connect, lock, migrate, Connections};
use super::stats::{native_stats, random_start, sample_plan, ExpiryIndex};
use super::{
    ExclusiveGuard, ExpiredBatch, RecordCounts, SessionStore, Stats, StatsOptions, StoreError,
    Sweep, SweepPosition, SweptBatch, Updated, UserIndex,
};
use crate::id::StorageKey;
use crate::record::{Change, ExpiryChange, Record, RESERVED_PREFIX};

mod maintenance;

/// Schema versions, applied in order by [`Maintenance::migrate`](crate::store::Maintenance::migrate); `{t}` is the qualified
/// table name. Never edit a released step; append a new one.
const MIGRATIONS: &[&[&str]] = &[
    // 1: sessions keyed by SHA-256 of the id; times are Unix milliseconds.
    &[
        "CREATE TABLE {t} (
            id bytea PRIMARY KEY,
            data jsonb NOT NULL,
            created_at bigint NOT NULL,
            expires_at bigint NOT NULL,
            user_id text,
            version bigint NOT NULL DEFAULT 0
        )",
        "CREATE INDEX tidysession_sessions_expires_at ON {t} (expires_at)",
        "CREATE INDEX tidysession_sessions_user_id ON {t} (user_id) WHERE user_id IS NOT NULL",
    ],
];

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// How many times a save retries when a concurrent request changed the row between its two
/// statements (see [`PostgresStore::update`]); each retry means another request made progress.
const RACE_RETRIES: usize = 8;

/// Sessions in PostgreSQL.
///
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::store::{Maintenance, PostgresStore};
///
/// let store = PostgresStore::connect("postgres://app@db.internal/app")
///     .await?
///     .with_schema("sessions")?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
///
/// Needs the cargo feature `postgres`.
pub struct PostgresStore {
    connections: Connections<PgConnection>,
    schema: String,
    sql: Statements,
}

impl fmt::Debug for PostgresStore {
    // The connection options hold the password: show only where the store points.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options = self.connections.options();
        f.debug_struct("PostgresStore")
            .field("host", &options.get_host())
            .field("port", &options.get_port())
            .field("database", &options.get_database())
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names, keeping up to 16
    /// connections, and checks that it answers. Besides PostgreSQL's own URL parameters, a
    /// `schema=NAME` parameter chooses the [schema](Self::with_schema) (default `public`). Call
    /// [`Maintenance::migrate`](crate::store::Maintenance::migrate) before first use.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for a malformed URL or schema name, or a server that cannot be
    /// reached within five seconds.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, schema) = super::url::take_param(url, "schema").ok_or_else(|| {
            StoreError::backend(BadSchemaName("(not percent-encoded UTF-8)".to_owned()))
        })?;
        let store = Self {
            connections: connect::postgres(&url).await?,
            schema: "public".to_owned(),
            sql: Statements::new("public"),
        };
        match schema {
            Some(schema) => store.with_schema(&schema),
            None => Ok(store),
        }
    }

    /// Keeps the tables in `schema` (created by [`Maintenance::migrate`](crate::store::Maintenance::migrate) if missing), so
    /// several apps can share a database, or sessions can sit apart from the app's tables.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] unless the name is 1 to 63 ASCII letters, digits and
    /// underscores, not starting with a digit.
    pub fn with_schema(mut self, schema: &str) -> Result<Self, StoreError> {
        let valid = (1..=63).contains(&schema.len())
            && !schema.starts_with(|c: char| c.is_ascii_digit())
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(StoreError::backend(BadSchemaName(schema.to_owned())));
        }
        self.schema = schema.to_owned();
        self.sql = Statements::new(schema);
        Ok(self)
    }

    /// Runs one statement on a connection of the store's own.
    async fn execute(&self, query: PgQuery<'_>) -> Result<PgQueryResult, StoreError> {
        self.connections
            .with(async |conn| query.execute(conn).await.map_err(StoreError::backend))
            .await
    }

    /// Runs one query that returns at most one row.
    async fn fetch_optional(&self, query: PgQuery<'_>) -> Result<Option<PgRow>, StoreError> {
        self.connections
            .with(async |conn| {
                query
                    .fetch_optional(conn)
                    .await
                    .map_err(StoreError::backend)
            })
            .await
    }

    /// Deletes the live row under `key` if the change would leave it without data; the
    /// condition is re-checked against the row as it is when the delete runs.
    async fn delete_if_emptied(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.delete_if_emptied)
            .bind(key.as_bytes().as_slice())
            .bind(millis(now))
            .bind(removed_keys(change))
            .bind(set_pairs(change))
            .bind(RESERVED_PREFIX);
        let done = self.execute(query).await?;
        Ok(done.rows_affected() > 0)
    }

    async fn live_row_exists(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.exists)
            .bind(key.as_bytes().as_slice())
            .bind(millis(now));
        Ok(self.fetch_optional(query).await?.is_some())
    }
}

/// The statements, with the table name filled in once.
#[derive(Debug)]
struct Statements {
    schema_table: String,
    table: String,
    load: String,
    create: String,
    touch: String,
    delete: String,
    delete_expired: String,
    count: String,
    exists: String,
    delete_if_emptied: String,
    delete_expired_under: String,
    sessions_of: String,
    delete_sessions_of: String,
    sweep: PgSweep,
}

/// `data` after the change: `$3` removed keys (`text[]`), `$4` set pairs (a `jsonb` object).
const CHANGED_DATA: &str = "(data - $3::text[]) || $4::jsonb";

/// True when the `jsonb` object `d` holds a key outside tidysession's reserved prefix, bound
/// as `prefix`.
fn holds_data(d: &str, prefix: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM jsonb_object_keys({d}) AS k WHERE left(k, length({prefix})) <> {prefix})"
    )
}

/// `, expires_at = …` for an expiry change bound as `param`; nothing when expiry stays.
fn set_expiry(expiry: Option<ExpiryChange>, param: &str) -> String {
    match expiry {
        None => String::new(),
        Some(ExpiryChange::Touch(_)) => format!(", expires_at = GREATEST(expires_at, {param})"),
        Some(ExpiryChange::Set(_)) => format!(", expires_at = {param}"),
    }
}

impl Statements {
    fn new(schema: &str) -> Self {
        let t = format!("\"{schema}\".tidysession_sessions");
        Self {
            sweep: PgSweep::new(&t, "expires_at <= $3"),
            schema_table: format!("\"{schema}\".tidysession_schema"),
            load: format!(
                "SELECT data::text, created_at, expires_at FROM {t} WHERE id = $1 AND expires_at > $2"
            ),
            // An expired row under the same key may be replaced; a live one never.
            create: format!(
                "INSERT INTO {t} AS s (id, data, created_at, expires_at, user_id)
                 VALUES ($1, $2::jsonb, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET
                    data = excluded.data, created_at = excluded.created_at,
                    expires_at = excluded.expires_at, user_id = excluded.user_id, version = 0
                 WHERE s.expires_at <= $6"
            ),
            touch: format!(
                "UPDATE {t} SET expires_at = GREATEST(expires_at, $3)
                 WHERE id = $1 AND expires_at > $2"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            // From the cursor ($1) to now ($2). SKIP LOCKED: concurrent cleaners take
            // disjoint batches instead of queueing. Answers how many rows went and the latest
            // expiry among them, the next batch's cursor.
            delete_expired: format!(
                "WITH deleted AS (
                    DELETE FROM {t} WHERE id IN (
                        SELECT id FROM {t} WHERE expires_at >= $1 AND expires_at <= $2
                        ORDER BY expires_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                    RETURNING expires_at)
                 SELECT count(*), max(expires_at) FROM deleted"
            ),
            delete_expired_under: format!("DELETE FROM {t} WHERE id = $1 AND expires_at <= $2"),
            count: format!(
                "SELECT count(*), count(*) FILTER (WHERE expires_at <= $1) FROM {t}"
            ),
            exists: format!("SELECT 1 FROM {t} WHERE id = $1 AND expires_at > $2"),
            delete_if_emptied: format!(
                "DELETE FROM {t} WHERE id = $1 AND expires_at > $2 AND NOT {}",
                holds_data(CHANGED_DATA, "$5")
            ),
            // Through the partial user_id index: `user_id = $1` implies its `IS NOT NULL`.
            sessions_of: format!(
                "SELECT data::text, created_at, expires_at, id FROM {t}
                 WHERE user_id = $1 AND expires_at > $2"
            ),
            // IS DISTINCT FROM, not <>: with no key to keep (NULL) it spares nothing.
            delete_sessions_of: format!(
                "DELETE FROM {t} WHERE user_id = $1 AND id IS DISTINCT FROM $2"
            ),
            table: t,
        }
    }

    /// `UPDATE` applying a change: `$1` key, `$2` now, `$3`/`$4` the change, then the
    /// reserved prefix when `guard` (refuse to write a row the change leaves without data),
    /// then the expiry when it moves, then the user when the change files or unfiles the
    /// record ([`bind_expiry_and_user`]). Only parameters the statement uses may be bound.
    fn update(&self, change: &Change, guard: bool) -> String {
        let (guard, next) = match guard {
            true => (format!(" AND {}", holds_data(CHANGED_DATA, "$5")), 6),
            false => (String::new(), 5),
        };
        format!(
            "UPDATE {t} SET data = {CHANGED_DATA}{rest}, version = version + 1
             WHERE id = $1 AND expires_at > $2{guard}",
            t = self.table,
            rest = set_expiry_and_user(change, next),
        )
    }

    /// Like a guarded [`update`](Self::update) that also moves the row to key `$6`; the
    /// expiry and the user, when they change, follow from `$7`.
    fn rename(&self, change: &Change) -> String {
        format!(
            "UPDATE {t} SET id = $6, data = {CHANGED_DATA}{rest}, version = version + 1
             WHERE id = $1 AND expires_at > $2 AND {guard}",
            t = self.table,
            rest = set_expiry_and_user(change, 7),
            guard = holds_data(CHANGED_DATA, "$5"),
        )
    }
}

/// `, expires_at = …` and `, user_id = …` for the parts of `change` that move them, numbered
/// from `$next` in that order; nothing for parts that stay.
fn set_expiry_and_user(change: &Change, next: usize) -> String {
    let mut sql = set_expiry(change.expiry, &format!("${next}"));
    if change.user().is_some() {
        let n = next + usize::from(change.expiry.is_some());
        sql.push_str(&format!(", user_id = ${n}"));
    }
    sql
}

/// Binds the trailing parameters of [`Statements::update`] and [`Statements::rename`]: the
/// expiry when it moves, then the user when it changes.
fn bind_expiry_and_user<'q>(mut query: PgQuery<'q>, change: &'q Change) -> PgQuery<'q> {
    if let Some(at) = expiry_millis(change) {
        query = query.bind(at);
    }
    if let Some(user) = change.user() {
        query = query.bind(user);
    }
    query
}

fn removed_keys(change: &Change) -> Vec<&str> {
    change.removed.iter().map(String::as_str).collect()
}

fn set_pairs(change: &Change) -> String {
    to_json(
        &change
            .set
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn expiry_millis(change: &Change) -> Option<i64> {
    match change.expiry {
        Some(ExpiryChange::Touch(at) | ExpiryChange::Set(at)) => Some(millis(at)),
        None => None,
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let query = sqlx::query(&self.sql.load)
            .bind(key.as_bytes().as_slice())
            .bind(millis(now));
        let row = self.fetch_optional(query).await?;
        row.map(|row| record_from(key, &row)).transpose()
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let query = sqlx::query(&self.sql.create)
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

    /// One `UPDATE` in the common case. A change that may empty the record carries a guard
    /// that refuses to write an empty row; when the guard refuses, a conditional `DELETE`
    /// removes the row instead. A request that changes the row between the two makes both
    /// find nothing, and the pair runs again against the new row.
    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let guard = change.may_empty();
        let sql = self.sql.update(change, guard);
        for _ in 0..RACE_RETRIES {
            let mut query = sqlx::query(&sql)
                .bind(key.as_bytes().as_slice())
                .bind(millis(now))
                .bind(removed_keys(change))
                .bind(set_pairs(change));
            if guard {
                query = query.bind(RESERVED_PREFIX);
            }
            let done = self.execute(bind_expiry_and_user(query, change)).await?;
            if done.rows_affected() > 0 {
                return Ok(Updated::Kept);
            }
            if !guard {
                return Err(StoreError::Gone);
            }
            if self.delete_if_emptied(key, change, now).await? {
                return Ok(Updated::Deleted);
            }
            if !self.live_row_exists(key, now).await? {
                return Err(StoreError::Gone);
            }
        }
        Err(StoreError::backend(TooContended))
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(&self.sql.touch)
            .bind(key.as_bytes().as_slice())
            .bind(millis(now))
            .bind(millis(expires_at));
        let done = self.execute(query).await?;
        match done.rows_affected() {
            0 => Err(StoreError::Gone),
            _ => Ok(()),
        }
    }

    /// One `UPDATE` of the primary key moves the row and applies the change. A row left
    /// without data is deleted instead, and the rename is [`StoreError::Gone`].
    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let sql = self.sql.rename(change);
        for _ in 0..RACE_RETRIES {
            let query = sqlx::query(&sql)
                .bind(from.as_bytes().as_slice())
                .bind(millis(now))
                .bind(removed_keys(change))
                .bind(set_pairs(change))
                .bind(RESERVED_PREFIX)
                .bind(to.as_bytes().as_slice());
            let query = bind_expiry_and_user(query, change);
            match self.execute(query).await {
                Ok(done) if done.rows_affected() > 0 => return Ok(()),
                Ok(_) => {
                    if self.delete_if_emptied(from, change, now).await?
                        || !self.live_row_exists(from, now).await?
                    {
                        return Err(StoreError::Gone);
                    }
                }
                Err(e) if is_unique_violation(&e) => {
                    // The new key is taken: by an expired row, which may go, or a live one.
                    let query = sqlx::query(&self.sql.delete_expired_under)
                        .bind(to.as_bytes().as_slice())
                        .bind(millis(now));
                    let freed = self.execute(query).await?;
                    if freed.rows_affected() == 0 {
                        return Err(StoreError::DuplicateId);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::backend(TooContended))
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let query = sqlx::query(&self.sql.delete).bind(key.as_bytes().as_slice());
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
impl UserIndex for PostgresStore {
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError> {
        let query = sqlx::query(&self.sql.sessions_of)
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
        let query = sqlx::query(&self.sql.delete_sessions_of)
            .bind(user)
            .bind(keep.map(|k| k.as_bytes().as_slice()));
        let done = self.execute(query).await?;
        Ok(done.rows_affected())
    }
}

/// A schema name that cannot be used safely in SQL.
#[derive(Debug, thiserror::Error)]
#[error("invalid schema name {0:?}: use 1 to 63 ASCII letters, digits and underscores")]
struct BadSchemaName(String);

/// A save kept losing races with other requests on the same session.
#[derive(Debug, thiserror::Error)]
#[error("the session changed under {RACE_RETRIES} attempts in a row; giving up")]
struct TooContended;
