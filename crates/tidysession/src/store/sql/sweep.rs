//! The statements of a [`Sweep`](crate::store::Sweep), shared by the native and the Django
//! tables.

#[cfg(feature = "postgres")]
pub(crate) use postgres::PgSweep;

#[cfg(feature = "mysql")]
pub(crate) use mysql::MySqlSweep;

/// A position another store made (or a text key that is not UTF-8).
#[derive(Debug, thiserror::Error)]
#[error("this sweep position belongs to another kind of store")]
struct ForeignPosition;

#[cfg(feature = "postgres")]
mod postgres {
    use sqlx::{PgConnection, Postgres};

    use super::ForeignPosition;
    use crate::store::{Place, StoreError, SweepPosition, SweptBatch};

    /// Rows per page assumed when the catalog has no figure yet (a table never analyzed):
    /// about what a page holds of small sessions.
    const DEFAULT_ROWS_PER_PAGE: f64 = 30.0;

    /// How much a sweep's own writes of evicted pages may pile up before the server asks
    /// the kernel to write them out (`backend_flush_after`, PostgreSQL's default for its
    /// checkpointer).
    const FLUSH_AFTER: &str = "256kB";

    /// A sweep by heap page: each batch deletes the expired rows of a `ctid` range of pages
    /// (a TID range scan reads just those pages). Rows another transaction holds are skipped
    /// (`SKIP LOCKED`) and counted.
    #[derive(Debug)]
    pub(crate) struct PgSweep {
        /// The table as `to_regclass` takes it.
        table: String,
        density: &'static str,
        delete: String,
    }

    impl PgSweep {
        /// For the quoted table `t`, where `expired` tests a row against the time in `$3`.
        pub(crate) fn new(t: &str, expired: &str) -> Self {
            let range = "ctid >= CAST($1 AS tid) AND ctid < CAST($2 AS tid)";
            Self {
                table: t.to_owned(),
                density: "SELECT reltuples::float8, relpages::float8 FROM pg_class
                          WHERE oid = to_regclass($1)",
                // The second count reads the range as the statement began, before its own
                // deletes: what it saw expired and did not delete was held by others. The
                // last column is the table's length now, so pages added meanwhile are swept
                // too.
                delete: format!(
                    "WITH deleted AS (
                        DELETE FROM {t} WHERE ctid = ANY(ARRAY(
                            SELECT ctid FROM {t} WHERE {range} AND {expired}
                            FOR UPDATE SKIP LOCKED))
                          AND {expired}
                        RETURNING 1)
                     SELECT (SELECT count(*) FROM deleted),
                            (SELECT count(*) FROM {t} WHERE {range} AND {expired}),
                            pg_relation_size(to_regclass($4))
                              / current_setting('block_size')::bigint"
                ),
            }
        }

        /// The first page, with the table's rows per page as the catalog has them.
        pub(crate) async fn start(
            &self,
            conn: &mut PgConnection,
        ) -> Result<SweepPosition, StoreError> {
            let (tuples, pages): (f64, f64) = sqlx::query_as(self.density)
                .bind(&self.table)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::backend)?
                .unwrap_or((-1.0, 0.0));
            let per_page = if tuples > 0.0 && pages > 0.0 {
                tuples / pages
            } else {
                DEFAULT_ROWS_PER_PAGE
            };
            Ok(SweepPosition(Place::Page {
                block: 0,
                rows_per_page: per_page.max(1.0),
            }))
        }

        /// One batch: about `span` rows' worth of pages from `from`.
        pub(crate) async fn run<T>(
            &self,
            conn: &mut PgConnection,
            from: &SweepPosition,
            now: T,
            span: u32,
        ) -> Result<SweptBatch, StoreError>
        where
            T: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + Send,
        {
            let SweepPosition(Place::Page {
                block,
                rows_per_page,
            }) = *from
            else {
                return Err(StoreError::backend(ForeignPosition));
            };
            let pages = (f64::from(span) / rows_per_page).ceil().max(1.0) as u64;
            // Block numbers are 32-bit; a range never needs to reach past the last.
            let end = block.saturating_add(pages).min(u64::from(u32::MAX));
            // A sweep dirties pages fast. Without this the server leaves the pages it evicts
            // to the kernel's write-back, which lets them pile up (hundreds of MB) until the
            // next checkpoint's fsync writes them all at once and every commit waits behind
            // it. Local to this transaction: nothing stays set on the connection.
            let mut tx = sqlx::Connection::begin(&mut *conn)
                .await
                .map_err(StoreError::backend)?;
            sqlx::query("SELECT set_config('backend_flush_after', $1, true)")
                .bind(FLUSH_AFTER)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
            let (deleted, seen, length): (i64, i64, i64) = sqlx::query_as(&self.delete)
                .bind(format!("({block},0)"))
                .bind(format!("({end},0)"))
                .bind(now)
                .bind(&self.table)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::backend)?;
            tx.commit().await.map_err(StoreError::backend)?;
            let next =
                (end < u64::try_from(length).unwrap_or(0)).then_some(SweepPosition(Place::Page {
                    block: end,
                    rows_per_page,
                }));
            Ok(SweptBatch {
                deleted: deleted.max(0) as u64,
                held: (seen - deleted).max(0) as u64,
                next,
            })
        }
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use sqlx::{MySql, MySqlConnection};

    use super::ForeignPosition;
    use crate::store::sql::error::is_retryable;
    use crate::store::sql::retry::RETRIES;
    use crate::store::{Place, StoreError, SweepPosition, SweptBatch};

    /// A sweep by primary key, the order InnoDB keeps rows in: each batch reads where it
    /// ends (the `span`-th key on), then deletes the expired rows up to there in one
    /// statement, which waits for an expired row a request is writing rather than skipping
    /// it (so nothing is ever held back: `held` is always 0).
    #[derive(Debug, Clone)]
    pub(crate) struct MySqlSweep {
        edge: String,
        delete_range: String,
        delete_rest: String,
        /// Keys are text (Django's `session_key`), compared in the column's collation, and
        /// not bytes.
        text_keys: bool,
    }

    impl MySqlSweep {
        /// For the quoted table `t` keyed by `key`, where `expired` tests a row against the
        /// time in the last `?`.
        pub(crate) fn new(t: &str, key: &str, expired: &str, text_keys: bool) -> Self {
            Self {
                edge: format!(
                    "SELECT {key} FROM {t} WHERE {key} > ? ORDER BY {key} LIMIT 1 OFFSET ?"
                ),
                delete_range: format!(
                    "DELETE FROM {t} WHERE {key} > ? AND {key} <= ? AND {expired}"
                ),
                delete_rest: format!("DELETE FROM {t} WHERE {key} > ? AND {expired}"),
                text_keys,
            }
        }

        /// The start of the table: before every key.
        pub(crate) fn start() -> SweepPosition {
            SweepPosition(Place::Key(Vec::new()))
        }

        /// One batch: the `span` keys after `from`.
        pub(crate) async fn run<T>(
            &self,
            conn: &mut MySqlConnection,
            from: &SweepPosition,
            now: T,
            span: u32,
        ) -> Result<SweptBatch, StoreError>
        where
            T: for<'q> sqlx::Encode<'q, MySql> + sqlx::Type<MySql> + Send + Sync + Clone,
        {
            let SweepPosition(Place::Key(from)) = from else {
                return Err(StoreError::backend(ForeignPosition));
            };
            let from = Key::of(from.clone(), self.text_keys)?;
            let offset = i64::from(span.max(1) - 1);
            let edge = match &from {
                Key::Bytes(k) => sqlx::query_scalar(&self.edge)
                    .bind(k)
                    .bind(offset)
                    .fetch_optional(&mut *conn)
                    .await
                    .map(|k: Option<Vec<u8>>| k.map(Key::Bytes)),
                Key::Text(k) => sqlx::query_scalar(&self.edge)
                    .bind(k)
                    .bind(offset)
                    .fetch_optional(&mut *conn)
                    .await
                    .map(|k: Option<String>| k.map(Key::Text)),
            }
            .map_err(StoreError::backend)?;
            let sql = if edge.is_some() {
                &self.delete_range
            } else {
                &self.delete_rest
            };
            let mut retries = 0;
            let deleted = loop {
                // READ COMMITTED for this statement only: InnoDB then locks just the rows it
                // deletes, not the live rows it reads past nor the gaps between them, so the
                // site's updates and inserts in the range do not wait for the batch.
                sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                let query = from.bind(sqlx::query(sql));
                let query = match &edge {
                    Some(edge) => edge.bind(query),
                    None => query,
                };
                match query.bind(now.clone()).execute(&mut *conn).await {
                    Ok(done) => break done.rows_affected(),
                    // A deadlock victim was rolled back: running it again is safe. Not
                    // through `retry`: each attempt needs this one connection.
                    Err(e) => {
                        let e = StoreError::backend(e);
                        if retries < RETRIES && is_retryable(&e) {
                            retries += 1;
                            continue;
                        }
                        return Err(e);
                    }
                }
            };
            Ok(SweptBatch {
                deleted,
                held: 0,
                next: edge.map(|k| SweepPosition(Place::Key(k.into_bytes()))),
            })
        }
    }

    /// A key as the column compares it.
    enum Key {
        Bytes(Vec<u8>),
        Text(String),
    }

    impl Key {
        fn of(bytes: Vec<u8>, text: bool) -> Result<Self, StoreError> {
            if text {
                String::from_utf8(bytes)
                    .map(Key::Text)
                    .map_err(|_| StoreError::backend(ForeignPosition))
            } else {
                Ok(Key::Bytes(bytes))
            }
        }

        fn bind<'q>(
            &self,
            query: sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments>,
        ) -> sqlx::query::Query<'q, MySql, sqlx::mysql::MySqlArguments> {
            match self {
                Key::Bytes(k) => query.bind(k.clone()),
                Key::Text(k) => query.bind(k.clone()),
            }
        }

        fn into_bytes(self) -> Vec<u8> {
            match self {
                Key::Bytes(k) => k,
                Key::Text(k) => k.into_bytes(),
            }
        }
    }
}
