//! Times as stores keep them: Unix milliseconds.

use time::OffsetDateTime;

use super::StoreError;
use crate::id::StorageKey;
pub(crate) use crate::record::millis;
use crate::record::time_at;

/// A stored time, read back: one out of range is a corrupt record.
pub(crate) fn from_millis(key: &StorageKey, ms: i64) -> Result<OffsetDateTime, StoreError> {
    time_at(ms).ok_or_else(|| StoreError::Corrupt {
        key: *key,
        reason: format!("{ms} Unix milliseconds is out of range"),
    })
}

/// An expiry read back as a cleanup cursor. Every stored expiry was written from an
/// `OffsetDateTime`, so one out of its range is a corrupt row, reported as a store error.
pub(crate) fn cursor_from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(StoreError::backend)
}
