//! Each database's connection set: its options and [`Settings`], made once here for the
//! native stores and the Django tables alike.

use std::time::Duration;

use super::connections::{Connections, Settings};
use crate::store::StoreError;

/// Up to 16 connections to the PostgreSQL server a `postgres://` URL names, one of them
/// opened now so a wrong address or password fails at start-up.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres(
    url: &str,
) -> Result<Connections<sqlx::postgres::PgConnection>, StoreError> {
    use sqlx::ConnectOptions as _;
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(StoreError::backend)?;
    let options = options
        .log_statements(tracing::log::LevelFilter::Trace)
        .application_name("tidysession");
    let server = format!(
        "PostgreSQL at {}:{}",
        options.get_host(),
        options.get_port()
    );
    let settings = Settings {
        size: 16,
        wait: Duration::from_secs(5),
        // Well inside the idle limits servers and proxies put on connections.
        max_idle: Duration::from_secs(300),
        keep_on_error: false,
    };
    let set = Connections::new(options, settings);
    set.check(server).await?;
    Ok(set)
}

/// Up to 10 connections to the MySQL or MariaDB server a `mysql://` URL names, one of them
/// opened now.
#[cfg(feature = "mysql")]
pub(crate) async fn mysql(
    url: &str,
) -> Result<Connections<sqlx::mysql::MySqlConnection>, StoreError> {
    use std::str::FromStr as _;
    let options = sqlx::mysql::MySqlConnectOptions::from_str(url).map_err(StoreError::backend)?;
    let server = format!(
        "the MySQL server at {}:{}",
        options.get_host(),
        options.get_port()
    );
    let settings = Settings {
        size: 10,
        wait: Duration::from_secs(5),
        // Long before a server's wait_timeout (8 hours by default) can cut one.
        max_idle: Duration::from_secs(60),
        keep_on_error: false,
    };
    let set = Connections::new(options, settings);
    set.check(server).await?;
    Ok(set)
}

/// Connections to the SQLite database file at `path` (created if missing), or to a private
/// in-memory database for `:memory:`; one of them opened now, so a bad path fails here.
///
/// WAL mode with a busy timeout: readers never block the writer, and concurrent writers
/// wait instead of failing.
#[cfg(feature = "sqlite")]
pub(crate) async fn sqlite(
    path: &str,
) -> Result<Connections<sqlx::sqlite::SqliteConnection>, StoreError> {
    use std::str::FromStr as _;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let in_memory = path == ":memory:";
    let options = if in_memory {
        SqliteConnectOptions::from_str("sqlite::memory:").map_err(StoreError::backend)?
    } else {
        // A path, not a URL: `?` and `#` in file names stay part of the name.
        SqliteConnectOptions::new().filename(path)
    }
    .create_if_missing(true)
    .journal_mode(if in_memory {
        SqliteJournalMode::Memory
    } else {
        SqliteJournalMode::Wal
    })
    .synchronous(SqliteSynchronous::Normal)
    .busy_timeout(Duration::from_secs(5));
    // A private in-memory database exists once per connection: keep exactly one, and keep
    // it even after an error, or the database goes with it.
    let settings = Settings {
        size: if in_memory { 1 } else { 8 },
        wait: Duration::from_secs(30),
        // A local file does not cut idle connections.
        max_idle: Duration::MAX,
        keep_on_error: in_memory,
    };
    let set = Connections::new(options, settings);
    set.check(format!("SQLite database {path}")).await?;
    Ok(set)
}
