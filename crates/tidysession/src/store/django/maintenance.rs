//! The Django store's maintenance: counting, cleanup (through the `expire_date` index, or in
//! storage order on PostgreSQL and MySQL/MariaDB), statistics, the table and the cleaners'
//! lock.

use super::*;
use crate::django::decode_session_data_unverified;
#[cfg(feature = "mysql")]
use crate::store::sql::sweep::MySqlSweep;
use crate::store::stats::{
    random_django_start, sample_plan, ExpiryIndex, Payloads, SampledRecord, StatsBuilder,
};
use crate::store::{
    ExclusiveGuard, ExpiredBatch, Maintenance, RecordCounts, Stats, StatsOptions, Sweep,
    SweepPosition, SweptBatch,
};

/// By heap page on PostgreSQL, by `session_key` on MySQL/MariaDB (see [`Sweep`]).
#[async_trait]
impl Sweep for DjangoStore {
    async fn start(&self) -> Result<SweepPosition, StoreError> {
        match &*self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(set) => {
                let sweep = &self.sql.pg_sweep;
                set.with(async |conn| sweep.start(conn).await).await
            }
            #[cfg(feature = "mysql")]
            Db::MySql(_) => Ok(MySqlSweep::start()),
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => Err(StoreError::backend(NoSweep)),
        }
    }

    async fn sweep_expired(
        &self,
        from: &SweepPosition,
        now: OffsetDateTime,
        span: u32,
    ) -> Result<SweptBatch, StoreError> {
        let now = self.ts(now);
        match &*self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(set) => {
                let sweep = &self.sql.pg_sweep;
                set.with(async |conn| sweep.run(conn, from, now, span).await)
                    .await
            }
            #[cfg(feature = "mysql")]
            Db::MySql(set) => {
                let sweep = &self.sql.my_sweep;
                set.with(async |conn| sweep.run(conn, from, now, span).await)
                    .await
            }
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => {
                let _ = (from, now, span);
                Err(StoreError::backend(NoSweep))
            }
        }
    }
}

/// [`DjangoStore::sweep`] offers no sweep on SQLite; a caller that kept one anyway is told so.
#[cfg(feature = "sqlite")]
#[derive(Debug, thiserror::Error)]
#[error("a Django table on SQLite has no sweep: clear it through the expiry index")]
struct NoSweep;

impl DjangoStore {
    /// Exact counts; the rest from a random key range of `session_key`. Without the secret,
    /// payloads are read unverified ([`Payloads::Unverified`]); with it, a row that does not
    /// verify counts as unreadable. Creation times are known only for sessions tidysession
    /// wrote ([`CREATED_KEY`]). Also checks the catalog for an index on `expire_date` and, on
    /// MySQL/MariaDB, the table's size beside InnoDB's settings ([`Stats::innodb`]).
    pub(super) async fn sample_stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Stats, StoreError> {
        let counts = self.count(now).await?;
        let (limit, complete) = sample_plan(counts.live + counts.expired, options.sample_size);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let start = random_django_start();
        let (rows, indexed): (Vec<(String, String)>, i64) = with_conn!(&*self.db, conn => {
            let rows: Vec<(String, String)> = crate::store::sql::row::sample_rows!(
                conn,
                complete,
                &self.sql.sample_all,
                &self.sql.sample_from,
                &self.sql.sample_before,
                &start,
                limit
            );
            let indexed: i64 = sqlx::query_scalar(&self.sql.index_check)
                .bind(&self.sql.index_target)
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
            Ok((rows, indexed))
        })?;
        let mut builder = StatsBuilder::new(now, counts, *options);
        for (data, exp) in rows {
            let decoded = match &self.secrets {
                Some(secrets) => decode_session_data(&data, secrets).ok(),
                None => decode_session_data_unverified(&data).ok(),
            };
            let created_at = decoded
                .as_ref()
                .and_then(|d| d.get(CREATED_KEY))
                .and_then(Value::as_i64)
                .and_then(|ms| {
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                });
            builder.add(SampledRecord {
                bytes: data.len() as u64,
                data: decoded,
                created_at,
                // A date that does not parse cannot be live.
                expires_at: parse_datetime(&exp).unwrap_or(OffsetDateTime::UNIX_EPOCH),
            });
        }
        let dialect = self.sql.dialect.name();
        let method = match complete {
            true => "every row".to_owned(),
            false => format!("random session_key range of {limit} rows"),
        };
        let payloads = match self.secrets {
            Some(_) => Payloads::Verified,
            None => Payloads::Unverified,
        };
        let mut stats = builder.finish(
            format!("Django table {} ({dialect})", self.table),
            method,
            payloads,
            false,
        );
        stats.expiry_index = Some(ExpiryIndex {
            table: self.table.clone(),
            column: "expire_date".to_owned(),
            present: indexed > 0,
            create_statement: self.sql.index_create.clone(),
        });
        #[cfg(feature = "mysql")]
        #[allow(irrefutable_let_patterns)] // with MySQL the only database built in
        if let Db::MySql(set) = &*self.db {
            let table = &self.sql.index_target;
            stats.innodb = set
                .with(async |conn| Ok(crate::store::sql::innodb::innodb(conn, table).await))
                .await?;
        }
        Ok(stats)
    }
}

#[async_trait]
impl Maintenance for DjangoStore {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        if limit == 0 {
            return Ok(ExpiredBatch::default());
        }
        let from_text = self.ts(from.unwrap_or_else(earliest));
        let now_text = self.ts(now);
        // How many rows went, the latest expiry reached, and whether more may follow.
        let (deleted, latest, more): (u64, Option<String>, bool) = with_conn!(&*self.db, conn => {
            if let Some(edge) = &self.sql.expired_edge {
                let edge: Option<String> = sqlx::query_scalar(edge)
                    .bind(&from_text)
                    .bind(&now_text)
                    .bind(i64::from(limit - 1))
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                let until = edge.as_deref().and_then(parse_datetime).map(|t| self.ts(t));
                let done = sqlx::query(&self.sql.delete_expired)
                    .bind(&from_text)
                    .bind(until.as_ref().unwrap_or(&now_text))
                    .bind(i64::from(limit))
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                let more = edge.is_some();
                Ok((done.rows_affected(), edge, more))
            } else {
                let expiries: Vec<String> = sqlx::query_scalar(&self.sql.delete_expired)
                    .bind(&from_text)
                    .bind(&now_text)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                let deleted = expiries.len() as u64;
                // The same order as the database's: text on SQLite, fixed-width text from
                // PostgreSQL.
                Ok((deleted, expiries.into_iter().max(), deleted >= u64::from(limit)))
            }
        })?;
        Ok(ExpiredBatch {
            deleted,
            next: latest.filter(|_| more).map(|text| {
                // A form the parser does not know keeps the cursor where it was: no skipping.
                parse_datetime(&text).unwrap_or(from.unwrap_or_else(earliest))
            }),
        })
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let now = self.ts(now);
        let (total, expired): (i64, i64) = with_conn!(&*self.db, conn => {
            sqlx::query_as(&self.sql.count)
                .bind(&now)
                .fetch_one(&mut *conn)
                .await
                .map_err(StoreError::backend)
        })?;
        Ok(RecordCounts::of_total(total, expired))
    }

    /// Creates the table with Django's DDL and its `expire_date` index, only if missing.
    async fn migrate(&self) -> Result<(), StoreError> {
        with_conn!(&*self.db, conn => {
            for statement in &self.sql.create_table {
                sqlx::query(statement)
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
            }
            Ok(())
        })
    }

    /// On PostgreSQL and MySQL/MariaDB; SQLite has no use for one.
    fn sweep(&self) -> Option<&dyn Sweep> {
        (self.sql.dialect != Dialect::Sqlite).then_some(self as &dyn Sweep)
    }

    /// Exact counts; the rest from a random key range of `session_key` (see `sample_stats`).
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        self.sample_stats(now, options).await.map(Some)
    }

    /// PostgreSQL: a session-level advisory lock; MySQL/MariaDB: a named lock (`GET_LOCK`),
    /// each on a connection of its own and named after the table; SQLite: within this process.
    async fn try_exclusive(&self, name: &str) -> Result<Option<ExclusiveGuard>, StoreError> {
        let key = format!("tidysession.django.{}.{name}", self.table);
        match &*self.db {
            #[cfg(feature = "postgres")]
            Db::Postgres(set) => {
                crate::store::sql::lock::try_advisory_lock(set.options(), key).await
            }
            #[cfg(feature = "mysql")]
            Db::MySql(set) => crate::store::sql::lock::try_named_lock(set.options(), key).await,
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => Ok(ExclusiveGuard::in_process(&key)),
        }
    }
}
