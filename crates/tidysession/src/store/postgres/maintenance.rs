//! The PostgreSQL store's maintenance: counting, cleanup (through the expiry index or by heap page), statistics, schema and the cleaners' lock.

use super::*;
use crate::store::sql::row::key_range_sample;
use crate::store::Maintenance;

#[async_trait]
impl Maintenance for PostgresStore {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        let query = sqlx::query(&self.sql.delete_expired)
            .bind(from.map_or(i64::MIN, millis))
            .bind(millis(now))
            .bind(i64::from(limit));
        let row = self.fetch_optional(query).await?;
        let (deleted, latest): (i64, Option<i64>) = match row {
            Some(row) => (
                row.try_get(0).map_err(StoreError::backend)?,
                row.try_get(1).map_err(StoreError::backend)?,
            ),
            None => (0, None),
        };
        let latest = latest.map(cursor_from_millis).transpose()?;
        Ok(ExpiredBatch::of(deleted.max(0) as u64, latest, limit))
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let query = sqlx::query(&self.sql.count).bind(millis(now));
        let row = self.fetch_optional(query).await?;
        let counts = row.map(|row| Ok::<_, sqlx::Error>((row.try_get(0)?, row.try_get(1)?)));
        let (total, expired): (i64, i64) = counts
            .transpose()
            .map_err(StoreError::backend)?
            .unwrap_or_default();
        Ok(RecordCounts::of_total(total, expired))
    }

    fn sweep(&self) -> Option<&dyn Sweep> {
        Some(self)
    }

    /// Exact counts; the rest from `TABLESAMPLE SYSTEM` (random pages), with the percentage
    /// chosen from the total. When that finds too few rows (a small table has few pages to
    /// pick from), a random id range instead.
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let counts = self.count(now).await?;
        let total = counts.live + counts.expired;
        let (limit, complete) = sample_plan(total, options.sample_size);
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
        let t = &self.sql.table;
        let columns = format!("SELECT data::text, created_at, expires_at FROM {t}");
        // A little over the share wanted, since whole pages are picked at random.
        let percent = ((limit as f64) * 120.0 / (total.max(1) as f64)).clamp(0.000_1, 100.0);
        let start = random_start();
        let (rows, indexed, method) = self
            .connections
            .with(async |conn| {
                let mut method = "every row".to_owned();
                let rows: Vec<(String, i64, i64)> = if complete {
                    sqlx::query_as(&format!("{columns} LIMIT $1"))
                        .bind(limit_i)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?
                } else {
                    let sampled: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
                        "{columns} TABLESAMPLE SYSTEM (CAST($1 AS real)) LIMIT $2"
                    ))
                    .bind(percent as f32)
                    .bind(limit_i)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                    if sampled.len() as i64 * 2 >= limit_i {
                        method =
                            format!("TABLESAMPLE SYSTEM ({percent:.4}%), at most {limit} rows");
                        sampled
                    } else {
                        method = format!("random id range of {limit} rows");
                        key_range_sample!(
                            conn,
                            &format!("{columns} WHERE id >= $1 ORDER BY id LIMIT $2"),
                            &format!("{columns} WHERE id < $1 ORDER BY id LIMIT $2"),
                            start.as_slice(),
                            limit_i
                        )
                    }
                };
                let indexed: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM pg_index i JOIN pg_attribute a
                 ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = to_regclass($1) AND a.attname = 'expires_at'",
                )
                .bind(t)
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
                Ok((rows, indexed, method))
            })
            .await?;
        let index = ExpiryIndex {
            table: t.clone(),
            column: "expires_at".to_owned(),
            present: indexed > 0,
            create_statement: format!(
                "CREATE INDEX CONCURRENTLY tidysession_sessions_expires_at ON {t} (expires_at);"
            ),
        };
        Ok(Some(native_stats(
            now,
            counts,
            options,
            &rows,
            format!("PostgreSQL table {t}"),
            method,
            index,
        )))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let versions = &self.sql.schema_table;
        let m = Migrations {
            steps: MIGRATIONS,
            table: &self.sql.table,
            versions,
        };
        migrate::postgres(&self.connections, &self.schema, &m).await
    }

    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        // The lock's 64-bit key: from the schema and the name, so that two schemas on one
        // server lock apart.
        let key = format!("tidysession.{}.{name}", self.schema);
        lock::try_advisory_lock(self.connections.options(), key).await
    }
}

/// By heap page (see [`Sweep`]).
#[async_trait]
impl Sweep for PostgresStore {
    async fn start(&self) -> Result<SweepPosition, StoreError> {
        let sweep = &self.sql.sweep;
        self.connections
            .with(async |conn| sweep.start(conn).await)
            .await
    }

    async fn sweep_expired(
        &self,
        from: &SweepPosition,
        now: OffsetDateTime,
        span: u32,
    ) -> Result<SweptBatch, StoreError> {
        let sweep = &self.sql.sweep;
        self.connections
            .with(async |conn| sweep.run(conn, from, millis(now), span).await)
            .await
    }
}
