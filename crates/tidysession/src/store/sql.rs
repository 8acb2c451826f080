//! What the SQL stores share: how times and data are written to a row and read back.

use time::OffsetDateTime;

use super::StoreError;
use crate::id::StorageKey;
use crate::record::Data;

/// Unix milliseconds, the precision every store keeps.
pub(crate) fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_millis(key: &StorageKey, ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|e| {
        StoreError::Corrupt {
            key: *key,
            reason: e.to_string(),
        }
    })
}

pub(crate) fn parse_data(key: &StorageKey, text: &str) -> Result<Data, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        key: *key,
        reason: format!("data is not a JSON object: {e}"),
    })
}

pub(crate) fn to_json(data: &Data) -> String {
    // Serializing a map of JSON values cannot fail.
    serde_json::Value::Object(data.clone()).to_string()
}

/// The database was migrated by a newer tidysession than this one.
#[derive(Debug, thiserror::Error)]
#[error(
    "session schema version {found} is newer than this build knows ({known}); upgrade tidysession"
)]
pub(crate) struct SchemaTooNew {
    pub(crate) found: i64,
    pub(crate) known: usize,
}
