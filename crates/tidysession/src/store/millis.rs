//! Times as stores keep them: Unix milliseconds.

use time::OffsetDateTime;

use super::StoreError;
use crate::id::StorageKey;

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

/// An expiry read back as a cleanup cursor. Every stored expiry was written from an
/// `OffsetDateTime`, so one out of its range is a corrupt row, reported as a store error.
pub(crate) fn cursor_from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(StoreError::backend)
}
