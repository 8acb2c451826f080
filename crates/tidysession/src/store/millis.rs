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
        reason: out_of_range(ms),
    })
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
/// An expiry read back as a cleanup cursor. Every stored expiry was written from an
/// `OffsetDateTime`, so one out of its range is a corrupt row, reported as a store error.
pub(crate) fn cursor_from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    time_at(ms).ok_or_else(|| StoreError::Backend(out_of_range(ms).into()))
}

fn out_of_range(ms: i64) -> String {
    format!("{ms} Unix milliseconds is out of range")
}
