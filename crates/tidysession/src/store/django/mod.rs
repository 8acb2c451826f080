//! [`DjangoStore`]: sessions in Django's own `django_session` table, shared with a running
//! Django app (features `django` plus `postgres`, `mysql` and/or `sqlite`).
//!
//! # Layout: Django's, untouched
//!
//! | column | type | holds |
//! |---|---|---|
//! | `session_key` | `varchar(40)` primary key | Django's 32-character session key, **as is** |
//! | `session_data` | `text` | the data, signed (and zlib-compressed when shorter) JSON with the session salt, as Django's database backends write it |
//! | `expire_date` | `timestamptz` / `datetime(6)` / `datetime`, indexed | when the session expires |
//!
//! The store keeps Django's raw session key ([`IdFormat::Django`]): Django looks rows up by
//! it, so the table cannot hold a SHA-256 of it. This is the one documented exception to I6
//! ("ids are secrets, stores keep only a hash"): a leaked `django_session` table leaks live
//! sessions, with this store as with Django itself.
//!
//! Data is signed with the newest secret (Django's `SECRET_KEY`) and verified with it and
//! every fallback (`SECRET_KEY_FALLBACKS`), through [`crate::django`]. A row that does not
//! verify or decode is [`StoreError::Corrupt`] and is left in place.
//!
//! # Creation time
//!
//! Django keeps no creation time, but the absolute timeout (I9) counts from it. The store
//! keeps it inside the signed data under the reserved key [`CREATED_KEY`]
//! (`_tidysession.created`, Unix milliseconds); Django ignores keys it does not know and keeps
//! them when it saves. A session Django made has no such key: its creation time is taken as
//! the last time Django saved it, `expire_date` minus the session's age (its integer
//! `_session_expiry`, else [`session_cookie_age`](DjangoStore::with_session_cookie_age)), and never
//! later than now. The first save from Rust pins that value in the data.
//!
//! # Django's per-session expiry
//!
//! Django keeps a per-session expiry in the data under `_session_expiry`: seconds after the
//! last save, `0` for "until the browser closes" (the row then lives
//! [`SESSION_COOKIE_AGE`](DjangoStore::with_session_cookie_age)), or an ISO-8601 datetime. A
//! refresh from Rust ([`touch`](SessionStore::touch), or an update's
//! [`ExpiryChange::Touch`]) never moves `expire_date` past what that allows: now + seconds,
//! now + the cookie age for `0`, or the datetime itself. An expiry the handler sets exactly
//! ([`ExpiryChange::Set`]) is written as asked.
//!
//! # Concurrency
//!
//! Django saves whole sessions, last writer wins. This store applies each [`Change`] by a
//! read-modify-write inside one transaction with the row locked (`SELECT … FOR UPDATE` on
//! PostgreSQL and MySQL/MariaDB; on SQLite a transaction whose first statement writes the row,
//! which takes the database's write lock before the read), so concurrent Rust requests
//! changing different keys never lose each other's work (I5). An update of a missing or
//! expired row is [`StoreError::Gone`], never an upsert. A rename inserts the new key and
//! deletes the old one in one transaction (I7). Deadlock victims are retried a few times.
//!
//! # No user index
//!
//! The user id is inside the signed data, so the store cannot find a user's sessions:
//! [`user_index`](SessionStore::user_index) is `None`, and listing or revoking a user's
//! sessions is unavailable. A password change still logs out the user's other sessions, through
//! Django's `_auth_user_hash` checked on their next request.
//!
//! # Schema
//!
//! [`migrate`](crate::store::Maintenance::migrate) creates the table with Django's DDL (and its
//! `expire_date` index) only if it does not exist: usually Django owns it. When Django's own
//! `migrate` runs later against a table made here, it finds the table and applies its initial
//! migration as already done (`--fake-initial`) only when asked to; run Django's migrations
//! first where you can.
//!
//! Cleanup ([`delete_expired`](crate::store::Maintenance::delete_expired)) deletes bounded batches through
//! the `expire_date` index (PostgreSQL: keys picked `FOR UPDATE SKIP LOCKED`; MySQL:
//! `DELETE … ORDER BY expire_date LIMIT n`), never Django's one unbounded `DELETE`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row as _;
use time::{Duration, OffsetDateTime};

use super::sql::db::{in_transaction, with_conn};
use super::sql::error::is_unique_violation;
use super::sql::retry::retry;
use super::sql::{Db, Dialect};
use super::{SessionStore, StoreError, Updated};
use crate::django::{decode_session_data, encode_session_data, Secrets};
use crate::id::{IdFormat, StorageKey};
use crate::record::{is_empty, minus, plus, Change, Data, ExpiryChange, Record};

mod datetime;
mod maintenance;
mod statements;

use datetime::{earliest, parse_datetime};
use statements::Statements;

/// The reserved data key holding the session's creation time (Unix milliseconds).
pub const CREATED_KEY: &str = "_tidysession.created";

/// Django's per-session expiry key.
pub const DJANGO_EXPIRY_KEY: &str = "_session_expiry";

/// Django's table name.
pub const DEFAULT_TABLE: &str = "django_session";

/// The environment variable holding Django's `SECRET_KEY` for [`DjangoStore::secrets_from_env`].
pub const SECRET_KEY_VAR: &str = "DJANGO_SECRET_KEY";
/// The environment variable holding Django's `SECRET_KEY_FALLBACKS`, comma-separated.
pub const SECRET_KEY_FALLBACKS_VAR: &str = "DJANGO_SECRET_KEY_FALLBACKS";

/// Django's default `SESSION_COOKIE_AGE`: two weeks.
const DEFAULT_AGE: Duration = Duration::seconds(1_209_600);

/// Sessions in Django's `django_session` table; see the [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::django::Secrets;
/// use tidysession::store::{DjangoStore, Maintenance};
/// use tidysession::{SessionConfig, SessionLayer};
///
/// let secrets = Secrets::new("django-insecure-…").with_fallbacks(["old-secret"]);
/// let store = DjangoStore::connect("postgres://app@db.internal/app", secrets).await?;
/// store.migrate().await?; // creates django_session only if Django has not
/// let layer = SessionLayer::new(store).with_config(SessionConfig::django());
/// # Ok(()) }
/// ```
///
/// Needs the cargo features `django`, with `postgres`, `mysql` or `sqlite` for the database.
pub struct DjangoStore {
    db: Arc<Db>,
    table: String,
    sql: Statements,
    /// `None` when opened for maintenance only ([`DjangoStore::connect_without_secret`]).
    secrets: Option<Secrets>,
    age: Duration,
}

impl fmt::Debug for DjangoStore {
    // Never the password or the secrets: only where the store points.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("DjangoStore");
        self.db.describe(&mut d);
        d.field("table", &self.table).finish_non_exhaustive()
    }
}

/// Locks the live row under `$key` in transaction `$tx` and returns its decoded record, or
/// `None` when there is no live row.
macro_rules! lock_live {
    ($self:ident, $tx:ident, $key:expr, $text:expr, $now:expr) => {{
        let now_text = $self.ts($now);
        let mut live = true;
        if let Some(pre) = &$self.sql.pre_lock {
            let done = sqlx::query(pre)
                .bind($text)
                .bind(&now_text)
                .execute(&mut *$tx)
                .await
                .map_err(StoreError::backend)?;
            live = done.rows_affected() > 0;
        }
        match live {
            false => None,
            true => {
                let row = sqlx::query(&$self.sql.lock)
                    .bind($text)
                    .bind(&now_text)
                    .fetch_optional(&mut *$tx)
                    .await
                    .map_err(StoreError::backend)?;
                match row {
                    None => None,
                    Some(row) => {
                        let data: String = row.try_get(0).map_err(|e| corrupt($key, e))?;
                        let exp: String = row.try_get(1).map_err(|e| corrupt($key, e))?;
                        Some($self.decode($key, &data, &exp, $now)?)
                    }
                }
            }
        }
    }};
}

impl DjangoStore {
    /// Connects to the database a URL names, with Django's secrets:
    /// `postgres://…` (or `postgresql://`), `mysql://…` (MySQL 8 or MariaDB), or
    /// `sqlite://PATH`, each optionally prefixed `django+` (the form [`open`](super::open)
    /// takes). A `table=NAME` query parameter chooses the table (default `django_session`,
    /// see [`table`](Self::with_table)). Call [`Maintenance::migrate`](crate::store::Maintenance::migrate) if Django has not created
    /// the table.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for a malformed URL or table name, a scheme this build has no
    /// feature for, or a database that cannot be reached.
    pub async fn connect(url: &str, secrets: Secrets) -> Result<Self, StoreError> {
        Self::connect_with(url, Some(secrets)).await
    }

    /// Connects as [`connect`](Self::connect) does, without Django's secret, for maintenance
    /// only: [`count`](crate::store::Maintenance::count), [`delete_expired`](crate::store::Maintenance::delete_expired)
    /// and [`stats`](crate::store::Maintenance::stats) (which then reads payloads *unverified*) work;
    /// loading or writing a session fails with an error saying the secret is missing.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_without_secret(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, None).await
    }

    async fn connect_with(url: &str, secrets: Option<Secrets>) -> Result<Self, StoreError> {
        let (db, table) = Db::connect(url).await?;
        let dialect = db.dialect();
        let store = Self {
            db: Arc::new(db),
            table: DEFAULT_TABLE.to_owned(),
            sql: Statements::new(dialect, DEFAULT_TABLE),
            secrets,
            age: DEFAULT_AGE,
        };
        match table {
            Some(name) => store.with_table(&name),
            None => Ok(store),
        }
    }

    /// The store's connections, to share with [`DjangoUsers`](crate::auth::DjangoUsers).
    pub(crate) fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The secrets the store signs and verifies with; `None` for a store opened for
    /// maintenance only.
    pub fn secrets(&self) -> Option<&Secrets> {
        self.secrets.as_ref()
    }

    /// Django's secrets from the environment: `SECRET_KEY` from `DJANGO_SECRET_KEY`, and
    /// `SECRET_KEY_FALLBACKS` from `DJANGO_SECRET_KEY_FALLBACKS` (comma-separated, optional).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the variable when `DJANGO_SECRET_KEY` is unset or empty.
    pub fn secrets_from_env() -> Result<Secrets, StoreError> {
        let secret = std::env::var(SECRET_KEY_VAR)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StoreError::backend(MissingSecret))?;
        let fallbacks = std::env::var(SECRET_KEY_FALLBACKS_VAR).unwrap_or_default();
        Ok(Secrets::new(secret).with_fallbacks(
            fallbacks
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>(),
        ))
    }

    /// Uses the table `name` instead of `django_session` (for a Django model with another
    /// `db_table`). No I/O.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] unless `name` is 1 to 63 ASCII letters, digits or underscores.
    pub fn with_table(mut self, name: &str) -> Result<Self, StoreError> {
        let valid = (1..=63).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(StoreError::backend(InvalidTableName(name.to_owned())));
        }
        self.sql = Statements::new(self.sql.dialect, name);
        self.table = name.to_owned();
        Ok(self)
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Django's `SESSION_COOKIE_AGE` (default two weeks): how long a row lives when its
    /// `_session_expiry` is `0`, and the age used to estimate when a Django-made session was
    /// last saved (see the [module docs](self#creation-time)).
    pub fn with_session_cookie_age(mut self, age: Duration) -> Self {
        self.age = age;
        self
    }

    /// A time as the database takes it: UTC text Django would write.
    fn ts(&self, t: OffsetDateTime) -> String {
        let t = t.to_offset(time::UtcOffset::UTC);
        let base = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let micros = t.microsecond();
        match self.sql.dialect {
            Dialect::Postgres => format!("{base}.{micros:06}+00:00"),
            Dialect::MySql => format!("{base}.{micros:06}"),
            // Django's text form (Python's str(datetime)): SQLite compares it as text.
            Dialect::Sqlite if micros == 0 => base,
            Dialect::Sqlite => format!("{base}.{micros:06}"),
        }
    }

    /// A row as a record: verified and decoded data, `expire_date`, and the creation time.
    fn decode(
        &self,
        key: &StorageKey,
        data: &str,
        expire: &str,
        now: OffsetDateTime,
    ) -> Result<Record, StoreError> {
        let secrets = self.signing_secrets()?;
        let mut data = decode_session_data(data, secrets).map_err(|e| StoreError::Corrupt {
            key: *key,
            reason: format!("session_data: {e}"),
        })?;
        let expires_at = parse_datetime(expire).ok_or_else(|| StoreError::Corrupt {
            key: *key,
            reason: format!("expire_date {expire:?} is not a date and time"),
        })?;
        let created_at = match data.remove(CREATED_KEY) {
            Some(v) => v
                .as_i64()
                .and_then(|ms| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                })
                .ok_or_else(|| StoreError::Corrupt {
                    key: *key,
                    reason: format!("{CREATED_KEY} is not a time in Unix milliseconds: {v}"),
                })?,
            None => {
                let age = match data.get(DJANGO_EXPIRY_KEY).and_then(seconds) {
                    Some(s) if s > 0 => Duration::seconds(s),
                    _ => self.age,
                };
                minus(expires_at, age).min(now)
            }
        };
        Ok(Record {
            data,
            created_at,
            expires_at,
        })
    }

    /// `session_data` for a record: its data plus [`CREATED_KEY`], signed as Django does.
    fn encode(&self, record: &Record) -> Result<String, StoreError> {
        let mut data: Data = record.data.clone();
        let created = record.created_at.unix_timestamp_nanos() / 1_000_000;
        data.insert(CREATED_KEY.to_owned(), Value::from(created as i64));
        encode_session_data(&data, self.signing_secrets()?).map_err(StoreError::backend)
    }

    /// The secrets, or the error of a store opened for maintenance only.
    fn signing_secrets(&self) -> Result<&Secrets, StoreError> {
        self.secrets
            .as_ref()
            .ok_or_else(|| StoreError::backend(MaintenanceOnly))
    }

    /// The latest expiry a refresh may give `data` at `now`: `None` when its
    /// `_session_expiry` sets no limit.
    fn refresh_limit(&self, data: &Data, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let value = data.get(DJANGO_EXPIRY_KEY)?;
        Some(match value {
            Value::Null => return None,
            Value::String(s) => parse_datetime(s).unwrap_or(now),
            v => match seconds(v) {
                Some(0) => plus(now, self.age),
                Some(s) => plus(now, Duration::seconds(s)),
                // Not something Django writes: allow no refresh at all.
                None => now,
            },
        })
    }

    /// The record's expiry after a refresh to `to`: later only, and never past the limit
    /// its `_session_expiry` sets.
    fn refreshed(
        &self,
        record: &Record,
        to: OffsetDateTime,
        now: OffsetDateTime,
    ) -> OffsetDateTime {
        let to = match self.refresh_limit(&record.data, now) {
            Some(limit) => to.min(limit),
            None => to,
        };
        record.expires_at.max(to)
    }

    /// Applies `change` to `record` as this store must: keys, then the expiry (a refresh
    /// bounded by `_session_expiry`, an exact time as asked).
    fn apply(&self, record: &mut Record, change: &Change, now: OffsetDateTime) {
        let expiry = change.expiry;
        let keys_only = Change {
            expiry: None,
            ..change.clone()
        };
        keys_only.apply(record);
        match expiry {
            None => {}
            Some(ExpiryChange::Set(t)) => record.expires_at = t,
            Some(ExpiryChange::Touch(t)) => record.expires_at = self.refreshed(record, t, now),
        }
    }
}

/// Whole seconds in a JSON number (Django writes integers).
fn seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

fn corrupt(key: &StorageKey, e: sqlx::Error) -> StoreError {
    StoreError::Corrupt {
        key: *key,
        reason: e.to_string(),
    }
}

/// The key's text: Django's key, 32 ASCII characters.
fn key_text(key: &StorageKey) -> Result<&str, StoreError> {
    std::str::from_utf8(key.as_bytes())
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or_else(|| StoreError::backend(NotADjangoKey))
}

/// What a rename did inside its transaction.
enum Renamed {
    Moved,
    Emptied,
}

#[async_trait]
impl SessionStore for DjangoStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let text = key_text(key)?;
        let now_text = self.ts(now);
        let row: Option<(String, String)> = with_conn!(&*self.db, conn => {
            sqlx::query_as(&self.sql.load)
                .bind(text)
                .bind(&now_text)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::backend)
        })?;
        row.map(|(data, exp)| self.decode(key, &data, &exp, now))
            .transpose()
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let text = key_text(key)?;
        let data = self.encode(record)?;
        let expires = self.ts(record.expires_at);
        let now = self.ts(OffsetDateTime::now_utc());
        with_conn!(&*self.db, conn => {
            // An expired row under the same key may be replaced; a live one never.
            sqlx::query(&self.sql.delete_expired_under)
                .bind(text)
                .bind(&now)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
            let inserted = sqlx::query(&self.sql.insert)
                .bind(text)
                .bind(&data)
                .bind(&expires)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::backend);
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateId),
                Err(e) => Err(e),
            }
        })
    }

    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let text = key_text(key)?;
        retry(|| async {
            in_transaction!(&*self.db, tx => {
                let mut record = lock_live!(self, tx, key, text, now).ok_or(StoreError::Gone)?;
                self.apply(&mut record, change, now);
                if is_empty(&record.data) {
                    sqlx::query(&self.sql.delete)
                        .bind(text)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                    return Ok(Updated::Deleted);
                }
                sqlx::query(&self.sql.write)
                    .bind(self.encode(&record)?)
                    .bind(self.ts(record.expires_at))
                    .bind(text)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?;
                Ok(Updated::Kept)
            })
        })
        .await
    }

    /// A refresh: moves `expire_date` later only, and never past what the session's
    /// `_session_expiry` allows (see the [module docs](self#djangos-per-session-expiry)).
    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let text = key_text(key)?;
        retry(|| async {
            in_transaction!(&*self.db, tx => {
                let record = lock_live!(self, tx, key, text, now).ok_or(StoreError::Gone)?;
                let to = self.refreshed(&record, expires_at, now);
                if to > record.expires_at {
                    sqlx::query(&self.sql.set_expiry)
                        .bind(self.ts(to))
                        .bind(text)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::backend)?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let from_text = key_text(from)?;
        let to_text = key_text(to)?;
        let done = retry(|| async {
            in_transaction!(&*self.db, tx => {
                let mut record =
                    lock_live!(self, tx, from, from_text, now).ok_or(StoreError::Gone)?;
                let taken: Option<String> = sqlx::query_scalar(&self.sql.lock_other)
                    .bind(to_text)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?;
                if let Some(exp) = taken {
                    match parse_datetime(&exp) {
                        Some(exp) if exp <= now => {
                            sqlx::query(&self.sql.delete)
                                .bind(to_text)
                                .execute(&mut *tx)
                                .await
                                .map_err(StoreError::backend)?;
                        }
                        _ => return Err(StoreError::DuplicateId),
                    }
                }
                self.apply(&mut record, change, now);
                sqlx::query(&self.sql.delete)
                    .bind(from_text)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend)?;
                if is_empty(&record.data) {
                    // Emptied by changes made meanwhile: nothing left to move (I2).
                    return Ok(Renamed::Emptied);
                }
                let inserted = sqlx::query(&self.sql.insert)
                    .bind(to_text)
                    .bind(self.encode(&record)?)
                    .bind(self.ts(record.expires_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::backend);
                match inserted {
                    Ok(_) => Ok(Renamed::Moved),
                    Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateId),
                    Err(e) => Err(e),
                }
            })
        })
        .await?;
        match done {
            Renamed::Moved => Ok(()),
            Renamed::Emptied => Err(StoreError::Gone),
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let text = key_text(key)?;
        with_conn!(&*self.db, conn => {
            let done = sqlx::query(&self.sql.delete)
                .bind(text)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn id_format(&self) -> IdFormat {
        IdFormat::Django
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        Some(self)
    }
}

/// `DJANGO_SECRET_KEY` is not set.
#[derive(Debug, thiserror::Error)]
#[error(
    "{SECRET_KEY_VAR} is not set: the Django session store signs and verifies session data \
     with Django's SECRET_KEY (fallbacks from {SECRET_KEY_FALLBACKS_VAR}, comma-separated)"
)]
struct MissingSecret;

/// The store was opened without the secret and a session was loaded or written.
#[derive(Debug, thiserror::Error)]
#[error(
    "this Django store was opened without {SECRET_KEY_VAR}: it counts, samples and deletes \
     expired rows, but cannot load or write sessions"
)]
struct MaintenanceOnly;

/// A key that is not Django's.
#[derive(Debug, thiserror::Error)]
#[error(
    "not a Django session key: the Django store files sessions under Django's 32-character \
     ASCII keys (is the layer generating native ids for it?)"
)]
struct NotADjangoKey;

/// A table name that cannot be used safely in SQL.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid Django session table name {0:?}: use 1 to 63 ASCII letters, digits or underscores"
)]
struct InvalidTableName(String);
