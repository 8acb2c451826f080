//! The SQL core: what the SQLite, PostgreSQL, MySQL/MariaDB and Django stores (and
//! [`DjangoUsers`](crate::auth::DjangoUsers)) share, as sqlx's drivers share sqlx-core. The
//! drivers depend on this module and never on each other.
//!
//! - [`connections`]: the connection set; [`Connections::with`] runs one operation on a
//!   connection and [`Connections::transaction`] one transaction. Every store call goes
//!   through one of the two, so a connection is reused only when its operation finished.
//! - [`connect`]: each database's connection settings.
//! - [`db`]: a connection set to whichever of the three databases a URL names ([`Db`],
//!   [`Dialect`]), for the Django tables.
//! - [`error`]: one classification of database errors (unique violation, deadlock, a
//!   connection no longer fit for use); [`retry`]: one retry of a deadlock victim.
//! - [`lock`]: PostgreSQL's advisory and MySQL's named locks, each on a connection of its own.
//! - [`migrate`]: one migration runner per dialect.
//! - [`row`]: times and data as rows hold them; [`json`]: saves inside SQLite's and MySQL's
//!   JSON functions; [`sweep`]: the storage-order sweep's
//!   statements; [`innodb`]: InnoDB's figures for `stats`.

pub(crate) mod connect;
pub(crate) mod connections;
#[cfg(feature = "django")]
pub(crate) mod db;
pub(crate) mod error;
#[cfg(feature = "mysql")]
pub(crate) mod innodb;
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(crate) mod json;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod lock;
pub(crate) mod migrate;
#[cfg(any(feature = "mysql", feature = "django"))]
pub(crate) mod retry;
pub(crate) mod row;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) mod sweep;

pub(crate) use connections::Connections;
#[cfg(feature = "django")]
pub(crate) use db::Db;

/// The SQL dialect of a database: its placeholders, quoting, types and functions.
#[allow(dead_code)] // each variant exists with its database's feature
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// The database's name, for messages.
    #[cfg(feature = "django")]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
            Dialect::Sqlite => "SQLite",
        }
    }
}
