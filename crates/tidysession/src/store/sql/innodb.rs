//! InnoDB's figures for `stats` and `doctor`, on the native and the Django tables alike.

use sqlx::mysql::MySqlConnection;

use crate::store::stats::Innodb;

/// `table`'s size from the server's table statistics, and InnoDB's cache and write-back
/// settings.
///
/// `None` when the table is not InnoDB's, or the server will not say (a MySQL-compatible
/// server without InnoDB's variables): the figures only inform, so their absence is no error.
pub(crate) async fn innodb(conn: &mut MySqlConnection, table: &str) -> Option<Innodb> {
    // Rows, indexes, pool, log, I/O capacity, dirty-page low-water mark.
    type Figures = (i64, i64, i64, i64, i64, i64);
    let row: Result<Option<Figures>, sqlx::Error> = sqlx::query_as(
        "SELECT CAST(COALESCE(data_length, 0) AS SIGNED), CAST(COALESCE(index_length, 0) AS SIGNED),
                CAST(@@innodb_buffer_pool_size AS SIGNED), CAST(@@innodb_log_file_size AS SIGNED),
                CAST(@@innodb_io_capacity AS SIGNED),
                CAST(CEIL(@@innodb_max_dirty_pages_pct_lwm) AS SIGNED)
         FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_name = ? AND engine = 'InnoDB'",
    )
    .bind(table)
    .fetch_optional(conn)
    .await;
    let n = |n: i64| u64::try_from(n).unwrap_or(0);
    match row {
        Ok(row) => row.map(|(data, index, pool, log, io, lwm)| Innodb {
            data_bytes: n(data),
            index_bytes: n(index),
            buffer_pool_bytes: n(pool),
            redo_log_bytes: n(log),
            io_capacity: n(io),
            flush_from_dirty_pct: n(lwm),
        }),
        Err(e) => {
            tracing::debug!(error = %e, table, "no InnoDB figures");
            None
        }
    }
}
