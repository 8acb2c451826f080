//! The Django store's cleanup and statistics.

use async_trait::async_trait;
use time::OffsetDateTime;

use serde_json::Value;

use super::datetime::parse_datetime;
use super::{DjangoStore, CREATED_KEY};
use crate::django::{decode_session_data, decode_session_data_unverified};
use crate::store::sql::db::with_conn;
#[cfg(feature = "mysql")]
use crate::store::sql::sweep::MySqlSweep;
use crate::store::sql::Db;
use crate::store::stats::{
    random_django_start, sample_plan, ExpiryIndex, Payloads, SampledRecord, StatsBuilder,
};
use crate::store::{
    Maintenance as _, Stats, StatsOptions, StoreError, Sweep, SweepPosition, SweptBatch,
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
            let rows: Vec<(String, String)> = if complete {
                sqlx::query_as(&self.sql.sample_all)
                    .bind(limit)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?
            } else {
                crate::store::sql::row::key_range_sample!(
                    conn,
                    &self.sql.sample_from,
                    &self.sql.sample_before,
                    &start,
                    limit
                )
            };
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
