//! A connection set to whichever database a URL names, for the Django tables
//! ([`DjangoStore`](crate::store::DjangoStore) and [`DjangoUsers`](crate::auth::DjangoUsers)),
//! which follow Django to PostgreSQL, MySQL/MariaDB or SQLite.

use std::fmt;

#[cfg(feature = "mysql")]
use sqlx::mysql::MySqlConnection;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgConnection;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqliteConnection;

use super::connections::Connections;
use super::Dialect;
use crate::store::StoreError;

/// Connections to one of the databases Django supports.
pub(crate) enum Db {
    #[cfg(feature = "postgres")]
    Postgres(Connections<PgConnection>),
    #[cfg(feature = "mysql")]
    MySql(Connections<MySqlConnection>),
    #[cfg(feature = "sqlite")]
    Sqlite(Connections<SqliteConnection>),
}

impl Db {
    /// Connects to the database `url` names: `postgres://…` (or `postgresql://`),
    /// `mysql://…` or `sqlite://PATH`, each optionally prefixed `django+`. Also returns the
    /// URL's `table=` parameter, taken off before connecting.
    pub(crate) async fn connect(url: &str) -> Result<(Self, Option<String>), StoreError> {
        let url = url.strip_prefix("django+").unwrap_or(url);
        let (url, table) = crate::store::url::take_param(url, "table")
            .ok_or_else(|| StoreError::backend(UnencodedTable))?;
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| StoreError::backend(UnsupportedUrl))?;
        let db = match scheme {
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Db::Postgres(super::connect::postgres(&url).await?),
            #[cfg(feature = "mysql")]
            "mysql" => Db::MySql(super::connect::mysql(&url).await?),
            // A path, not a URL: `?` and `#` in file names stay part of the name (the
            // `table=` parameter, if any, was taken off above).
            #[cfg(feature = "sqlite")]
            "sqlite" if !rest.is_empty() => Db::Sqlite(super::connect::sqlite(rest).await?),
            _ => return Err(StoreError::backend(UnsupportedUrl)),
        };
        let _ = rest;
        Ok((db, table))
    }

    /// Where the connections point (never a password).
    pub(crate) fn describe(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        match self {
            #[cfg(feature = "postgres")]
            Db::Postgres(c) => {
                let o = c.options();
                d.field(
                    "postgres",
                    &format_args!("{}:{}", o.get_host(), o.get_port()),
                )
                .field("database", &o.get_database());
            }
            #[cfg(feature = "mysql")]
            Db::MySql(c) => {
                let o = c.options();
                d.field("mysql", &format_args!("{}:{}", o.get_host(), o.get_port()))
                    .field("database", &o.get_database());
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(c) => {
                d.field("sqlite", &c.options().get_filename());
            }
        }
    }

    /// The SQL dialect of the database.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => Dialect::Postgres,
            #[cfg(feature = "mysql")]
            Db::MySql(_) => Dialect::MySql,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

/// Runs `$body` with `$conn` bound to a `&mut` connection of whichever database `$db` (a
/// [`Db`]) holds, through `Connections::$how` (`with` or `transaction`): the same code
/// compiles once per database.
macro_rules! on_db {
    ($db:expr, $how:ident, $conn:ident => $body:expr) => {
        match $db {
            #[cfg(feature = "postgres")]
            $crate::store::sql::Db::Postgres(set) => set.$how(async |$conn| $body).await,
            #[cfg(feature = "mysql")]
            $crate::store::sql::Db::MySql(set) => set.$how(async |$conn| $body).await,
            #[cfg(feature = "sqlite")]
            $crate::store::sql::Db::Sqlite(set) => set.$how(async |$conn| $body).await,
        }
    };
}

/// Runs `$body` on a connection of the [`Db`] `$db` (see `Connections::with`).
macro_rules! with_conn {
    ($db:expr, $conn:ident => $body:expr) => {
        $crate::store::sql::db::on_db!($db, with, $conn => $body)
    };
}

/// Runs `$body` in a transaction on a connection of the [`Db`] `$db` (see
/// `Connections::transaction`): committed when it returns `Ok`, rolled back otherwise.
macro_rules! in_transaction {
    ($db:expr, $tx:ident => $body:expr) => {
        $crate::store::sql::db::on_db!($db, transaction, $tx => $body)
    };
}

pub(crate) use {in_transaction, on_db, with_conn};

/// The `table=` parameter is not percent-encoded UTF-8.
#[derive(Debug, thiserror::Error)]
#[error("invalid table parameter in the store URL: not percent-encoded UTF-8")]
struct UnencodedTable;

/// A URL naming no database this build supports.
#[derive(Debug, thiserror::Error)]
#[error("unsupported Django store URL: expected django+postgres://…, django+mysql://… or django+sqlite://PATH (each needs its cargo feature)")]
struct UnsupportedUrl;
