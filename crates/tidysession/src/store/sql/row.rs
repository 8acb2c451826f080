//! Times and data as a row holds them: how they are written to a row and read back.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::id::StorageKey;
use crate::record::{Data, Record};
pub(crate) use crate::store::millis::{cursor_from_millis, from_millis, millis};
use crate::store::StoreError;

pub(crate) fn parse_data(key: &StorageKey, text: &str) -> Result<Data, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: *key,
        reason: format!("data is not a JSON object: {e}"),
    })
}

pub(crate) fn to_json(data: &Data) -> String {
    // A map of JSON values always serializes.
    serde_json::to_string(data).unwrap_or_default()
}

/// A record from a row whose first three columns are `data` (JSON text), `created_at` and
/// `expires_at` (Unix milliseconds).
pub(crate) fn record_from<R>(key: &StorageKey, row: &R) -> Result<Record, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let corrupt = |e: sqlx::Error| StoreError::Corrupt {
        key: *key,
        reason: e.to_string(),
    };
    Ok(Record {
        data: parse_data(key, row.try_get::<&str, _>(0).map_err(corrupt)?)?,
        created_at: from_millis(key, row.try_get(1).map_err(corrupt)?)?,
        expires_at: from_millis(key, row.try_get(2).map_err(corrupt)?)?,
    })
}

/// A listed record from a row whose columns are those [`record_from`] reads, then `id`.
/// A row that cannot be read is logged and skipped, so one corrupt record does not hide the
/// user's others (a load of it reports it as [`StoreError::Corrupt`] and leaves it in place).
pub(crate) fn listed_from<R>(row: &R) -> Option<(StorageKey, Record)>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let id = row.try_get::<&[u8], _>(3).ok();
    let Some(key) = id.and_then(|id| <[u8; 32]>::try_from(id).ok()) else {
        tracing::warn!("skipping a session record whose id is not 32 bytes in a user's listing");
        return None;
    };
    let key = StorageKey::from_bytes(key);
    match record_from(&key, row) {
        Ok(record) => Some((key, record)),
        Err(e) => {
            tracing::warn!(?key, error = %e, "skipping a corrupt session record in a user's listing");
            None
        }
    }
}

/// Up to `limit` rows for statistics from a random point in the key order: rows whose key is at
/// or after `start` (statement `from`), then, if those run short, rows before it (statement
/// `before`), so a start near the end still yields a full sample. Each statement binds the
/// start key and a row limit.
macro_rules! key_range_sample {
    ($conn:expr, $from:expr, $before:expr, $start:expr, $limit:expr) => {{
        let mut rows: Vec<_> = sqlx::query_as($from)
            .bind($start)
            .bind($limit)
            .fetch_all(&mut *$conn)
            .await
            .map_err(StoreError::backend)?;
        let short = $limit - rows.len() as i64;
        if short > 0 {
            let more: Vec<_> = sqlx::query_as($before)
                .bind($start)
                .bind(short)
                .fetch_all(&mut *$conn)
                .await
                .map_err(StoreError::backend)?;
            rows.extend(more);
        }
        rows
    }};
}
pub(crate) use key_range_sample;

/// Every row (statement `all`, binding the row limit) when `complete`, else
/// [`key_range_sample`]'s sample.
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "django"))]
macro_rules! sample_rows {
    ($conn:expr, $complete:expr, $all:expr, $from:expr, $before:expr, $start:expr, $limit:expr) => {{
        if $complete {
            sqlx::query_as($all)
                .bind($limit)
                .fetch_all(&mut *$conn)
                .await
                .map_err(StoreError::backend)?
        } else {
            $crate::store::sql::row::key_range_sample!($conn, $from, $before, $start, $limit)
        }
    }};
}
#[cfg(any(feature = "sqlite", feature = "mysql", feature = "django"))]
pub(crate) use sample_rows;
