//! The SQLite store's maintenance: counting, cleanup through the expiry index, statistics and schema.

use super::*;
use crate::store::sql::row::sample_rows;
use crate::store::Maintenance;

#[async_trait]
impl Maintenance for SqliteStore {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        // Walks the expires_at index from the cursor; one short statement per batch.
        let query = sqlx::query_scalar(
            "DELETE FROM tidysession_sessions WHERE id IN (
                SELECT id FROM tidysession_sessions WHERE expires_at >= ? AND expires_at <= ?
                ORDER BY expires_at LIMIT ?)
             RETURNING expires_at",
        )
        .bind(from.map_or(i64::MIN, millis))
        .bind(millis(now))
        .bind(i64::from(limit));
        let expiries: Vec<i64> = self
            .connections
            .with(async |conn| query.fetch_all(conn).await.map_err(StoreError::backend))
            .await?;
        let latest = expiries.iter().max().copied().map(cursor_from_millis);
        Ok(ExpiredBatch::of(
            expiries.len() as u64,
            latest.transpose()?,
            limit,
        ))
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let query = sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE expires_at <= ?) FROM tidysession_sessions",
        )
        .bind(millis(now));
        let (total, expired) = self
            .connections
            .with(async |conn| query.fetch_one(conn).await.map_err(StoreError::backend))
            .await?;
        Ok(RecordCounts::of_total(total, expired))
    }

    /// Exact counts; the rest from a random range of ids (SHA-256 hashes, so uniformly
    /// spread) read through the primary key.
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let counts = self.count(now).await?;
        let (limit, complete) = sample_plan(counts.live + counts.expired, options.sample_size);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let start = random_start();
        let (rows, indexed) = self
            .connections
            .with(async |conn| {
                const COLUMNS: &str =
                    "SELECT data, created_at, expires_at FROM tidysession_sessions";
                let rows: Vec<(String, i64, i64)> = sample_rows!(
                    conn,
                    complete,
                    &format!("{COLUMNS} LIMIT ?"),
                    &format!("{COLUMNS} WHERE id >= ? ORDER BY id LIMIT ?"),
                    &format!("{COLUMNS} WHERE id < ? ORDER BY id LIMIT ?"),
                    start.as_slice(),
                    limit
                );
                let indexed: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master m, pragma_index_info(m.name) i
                 WHERE m.type = 'index' AND m.tbl_name = 'tidysession_sessions'
                 AND i.seqno = 0 AND i.name = 'expires_at'",
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
                Ok((rows, indexed))
            })
            .await?;
        let index = ExpiryIndex {
            table: "tidysession_sessions".to_owned(),
            column: "expires_at".to_owned(),
            present: indexed > 0,
            create_statement: "CREATE INDEX tidysession_sessions_expires_at \
                               ON tidysession_sessions (expires_at);"
                .to_owned(),
        };
        Ok(Some(native_stats(
            now,
            counts,
            options,
            &rows,
            "SQLite table tidysession_sessions".to_owned(),
            key_range_method(complete, limit),
            index,
        )))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let m = Migrations {
            steps: MIGRATIONS,
            table: "tidysession_sessions",
            versions: "tidysession_schema",
        };
        migrate::sqlite(&self.connections, &m).await
    }
}
