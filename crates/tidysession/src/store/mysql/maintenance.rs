//! The MySQL/MariaDB store's maintenance: counting, cleanup (through the expiry index or by primary key), statistics, schema and the cleaners' lock.

use super::*;
use crate::store::sql::row::sample_rows;
use crate::store::Maintenance;

#[async_trait]
impl Maintenance for MySqlStore {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        if limit == 0 {
            return Ok(ExpiredBatch::default());
        }
        let t = &self.table.sessions;
        let (from, now) = (from.map_or(i64::MIN, millis), millis(now));
        // MySQL has no DELETE … RETURNING, so the batch's last expiry is read first, through
        // the expires_at index alone: the batch deletes up to it and the next starts there.
        let edge = format!(
            "SELECT expires_at FROM {t} WHERE expires_at >= ? AND expires_at <= ?
             ORDER BY expires_at LIMIT 1 OFFSET ?"
        );
        let edge = self
            .fetch_optional(
                sqlx::query(&edge)
                    .bind(from)
                    .bind(now)
                    .bind(i64::from(limit - 1)),
            )
            .await?
            .map(|row| row.try_get::<i64, _>(0).map_err(StoreError::backend))
            .transpose()?;
        // Walks the expires_at index (id breaks ties, so the batch is deterministic); one
        // short statement per batch, safe to run from several processes at once.
        let sql = format!(
            "DELETE FROM {t} WHERE expires_at >= ? AND expires_at <= ?
             ORDER BY expires_at, id LIMIT ?"
        );
        let done = retry(|| {
            self.execute(
                sqlx::query(&sql)
                    .bind(from)
                    .bind(edge.unwrap_or(now))
                    .bind(i64::from(limit)),
            )
        })
        .await?;
        Ok(ExpiredBatch {
            deleted: done.rows_affected(),
            next: edge.map(cursor_from_millis).transpose()?,
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let t = &self.table.sessions;
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM {t} WHERE expires_at > ?),
                    (SELECT COUNT(*) FROM {t} WHERE expires_at <= ?)"
        );
        let query = sqlx::query_as::<_, (i64, i64)>(&sql)
            .bind(millis(now))
            .bind(millis(now));
        let (live, expired) = self
            .connections
            .with(async |conn| query.fetch_one(conn).await.map_err(StoreError::backend))
            .await?;
        Ok(RecordCounts {
            live: live as u64,
            expired: expired as u64,
        })
    }

    fn sweep(&self) -> Option<&dyn Sweep> {
        Some(self)
    }

    /// Exact counts; the rest from a random range of ids (SHA-256 hashes, so uniformly
    /// spread) read through the primary key. Also the expiry index from the catalog, and the
    /// table's size beside InnoDB's settings ([`Stats::innodb`]).
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let counts = self.count(now).await?;
        let (limit, complete) = sample_plan(counts.live + counts.expired, options.sample_size);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let t = &self.table.sessions;
        let columns = format!("SELECT CAST(data AS CHAR), created_at, expires_at FROM {t}");
        let start = random_start();
        let (rows, indexed, innodb) = self
            .connections
            .with(async |conn| {
                let rows: Vec<(String, i64, i64)> = sample_rows!(
                    conn,
                    complete,
                    &format!("{columns} LIMIT ?"),
                    &format!("{columns} WHERE id >= ? ORDER BY id LIMIT ?"),
                    &format!("{columns} WHERE id < ? ORDER BY id LIMIT ?"),
                    start.as_slice(),
                    limit
                );
                let indexed: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.statistics
                 WHERE table_schema = DATABASE() AND table_name = ?
                 AND column_name = 'expires_at' AND seq_in_index = 1",
                )
                .bind(&self.table.name)
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
                let innodb = innodb(conn, &self.table.name).await;
                Ok((rows, indexed, innodb))
            })
            .await?;
        let index = ExpiryIndex {
            table: self.table.name.clone(),
            column: "expires_at".to_owned(),
            present: indexed > 0,
            create_statement: format!(
                "CREATE INDEX expires_at ON {t} (expires_at) ALGORITHM=INPLACE LOCK=NONE;"
            ),
        };
        let mut stats = native_stats(
            now,
            counts,
            options,
            &rows,
            format!("MySQL/MariaDB table {}", self.table.name),
            key_range_method(complete, limit),
            index,
        );
        stats.innodb = innodb;
        Ok(Some(stats))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let m = Migrations {
            steps: MIGRATIONS,
            table: &self.table.sessions,
            versions: &self.table.schema,
        };
        migrate::mysql(self.connections.options(), &self.table.name, &m).await
    }

    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        // Named locks are server-wide: the name includes the database and the table.
        let key = format!("{}.{name}", self.table.name);
        lock::try_named_lock(self.connections.options(), key).await
    }
}

/// By primary key, the order InnoDB keeps rows in (see [`Sweep`]).
#[async_trait]
impl Sweep for MySqlStore {
    async fn start(&self) -> Result<SweepPosition, StoreError> {
        Ok(MySqlSweep::start())
    }

    async fn sweep_expired(
        &self,
        from: &SweepPosition,
        now: OffsetDateTime,
        span: u32,
    ) -> Result<SweptBatch, StoreError> {
        let sweep = &self.table.sweep;
        self.connections
            .with(async |conn| sweep.run(conn, from, millis(now), span).await)
            .await
    }
}
