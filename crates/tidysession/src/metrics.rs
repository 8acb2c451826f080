//! What tidysession reports through the [`metrics`](https://docs.rs/metrics) facade.
//!
//! The library only emits; the application chooses a recorder (for instance
//! `metrics-exporter-prometheus`, as the `tidysession demo` does for `GET /metrics`). Without
//! a recorder every emission is a no-op: the names and labels are static, so nothing is
//! formatted or allocated per request. Call [`describe`] once after installing a recorder to
//! give it the descriptions and units below.
//!
//! | name | type | labels | what it counts |
//! |---|---|---|---|
//! | `tidysession_store_operations_total` | counter | `op`, `outcome` | store calls made by [`SessionLayer`](crate::SessionLayer) and [`Session`](crate::Session): `op` is `load`, `create`, `update`, `touch`, `rename` or `delete`; `outcome` is `ok`, `gone` (load: no live record; update, touch, rename: [`StoreError::Gone`]; delete: nothing to delete) or `error` |
//! | `tidysession_store_duration_seconds` | histogram | `op` | how long those calls took, and the reaper's `delete_expired` batches |
//! | `tidysession_sealed_total` | counter | | cookie-tier sessions sealed into a `Set-Cookie` |
//! | `tidysession_sealed_rejected_total` | counter | `reason` | sealed cookies that did not open: `malformed`, `unknown_key`, `forged` or `expired` |
//! | `tidysession_promotions_total` | counter | | sealed sessions moved to the store (login, or outgrowing the cookie) |
//! | `tidysession_reaper_runs_total` | counter | `outcome` | [`Reaper`](crate::reaper::Reaper) runs: `done`, `locked` (another process held the lock), `error`, or `self_expiring` (the store expires records itself) |
//! | `tidysession_reaper_batches_total` | counter | | `delete_expired` batches the reaper ran |
//! | `tidysession_reaper_deleted_total` | counter | | expired records the reaper deleted |

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::id::{IdFormat, StorageKey};
use crate::record::{Change, Record};
use crate::seal::Rejected;
use crate::store::{SessionStore, StoreError, Updated, UserIndex};

/// Registers the descriptions and units of every metric in the [table](self) with the
/// installed recorder. Optional; without it the metrics are still emitted.
pub fn describe() {
    use ::metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        "tidysession_store_operations_total",
        "Session store calls by operation and outcome (ok, gone, error)"
    );
    describe_histogram!(
        "tidysession_store_duration_seconds",
        Unit::Seconds,
        "Session store call latency by operation"
    );
    describe_counter!(
        "tidysession_sealed_total",
        "Cookie-tier sessions sealed into a cookie"
    );
    describe_counter!(
        "tidysession_sealed_rejected_total",
        "Sealed session cookies that did not open, by reason"
    );
    describe_counter!(
        "tidysession_promotions_total",
        "Sealed sessions moved to the store"
    );
    describe_counter!(
        "tidysession_reaper_runs_total",
        "Reaper runs by outcome (done, locked, error, self_expiring)"
    );
    describe_counter!(
        "tidysession_reaper_batches_total",
        "delete_expired batches run by the reaper"
    );
    describe_counter!(
        "tidysession_reaper_deleted_total",
        "Expired sessions deleted by the reaper"
    );
}

/// How a store call ended, for `tidysession_store_operations_total`.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Gone,
    Error,
}

impl Outcome {
    fn of<T>(result: &Result<T, StoreError>, found: impl FnOnce(&T) -> bool) -> Self {
        match result {
            Ok(value) if found(value) => Self::Ok,
            Ok(_) | Err(StoreError::Gone) => Self::Gone,
            Err(_) => Self::Error,
        }
    }
}

/// Emits one store call. Every name and label is a literal, so the keys are statics.
macro_rules! store_call {
    ($op:literal, $outcome:expr, $elapsed:expr) => {{
        match $outcome {
            Outcome::Ok => ::metrics::counter!(
                "tidysession_store_operations_total", "op" => $op, "outcome" => "ok"
            ),
            Outcome::Gone => ::metrics::counter!(
                "tidysession_store_operations_total", "op" => $op, "outcome" => "gone"
            ),
            Outcome::Error => ::metrics::counter!(
                "tidysession_store_operations_total", "op" => $op, "outcome" => "error"
            ),
        }
        .increment(1);
        ::metrics::histogram!("tidysession_store_duration_seconds", "op" => $op)
            .record($elapsed.as_secs_f64());
    }};
}

/// A cookie-tier session was sealed into its cookie.
pub(crate) fn sealed() {
    ::metrics::counter!("tidysession_sealed_total").increment(1);
}

/// A sealed cookie did not open.
pub(crate) fn rejected(why: Rejected) {
    match why {
        Rejected::Malformed => {
            ::metrics::counter!("tidysession_sealed_rejected_total", "reason" => "malformed")
        }
        Rejected::UnknownKey => {
            ::metrics::counter!("tidysession_sealed_rejected_total", "reason" => "unknown_key")
        }
        Rejected::Forged => {
            ::metrics::counter!("tidysession_sealed_rejected_total", "reason" => "forged")
        }
        Rejected::Expired => {
            ::metrics::counter!("tidysession_sealed_rejected_total", "reason" => "expired")
        }
    }
    .increment(1);
}

/// A sealed session moved to the store.
pub(crate) fn promoted() {
    ::metrics::counter!("tidysession_promotions_total").increment(1);
}

/// How a reaper run ended, for `tidysession_reaper_runs_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ReaperRun {
    Done,
    Locked,
    Error,
    SelfExpiring,
}

/// One reaper run.
pub(crate) fn reaper_run(outcome: ReaperRun, batches: u64, deleted: u64) {
    match outcome {
        ReaperRun::Done => {
            ::metrics::counter!("tidysession_reaper_runs_total", "outcome" => "done")
        }
        ReaperRun::Locked => {
            ::metrics::counter!("tidysession_reaper_runs_total", "outcome" => "locked")
        }
        ReaperRun::Error => {
            ::metrics::counter!("tidysession_reaper_runs_total", "outcome" => "error")
        }
        ReaperRun::SelfExpiring => {
            ::metrics::counter!("tidysession_reaper_runs_total", "outcome" => "self_expiring")
        }
    }
    .increment(1);
    ::metrics::counter!("tidysession_reaper_batches_total").increment(batches);
    ::metrics::counter!("tidysession_reaper_deleted_total").increment(deleted);
}

/// One reaper batch's latency.
pub(crate) fn reaper_batch(elapsed: Duration) {
    ::metrics::histogram!("tidysession_store_duration_seconds", "op" => "delete_expired")
        .record(elapsed.as_secs_f64());
}

/// The store behind a [`SessionLayer`](crate::SessionLayer), measured.
pub(crate) struct Measured(pub(crate) Arc<dyn SessionStore>);

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

#[async_trait]
impl SessionStore for Measured {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let start = Instant::now();
        let result = (*self.0).load(key, now).await;
        store_call!(
            "load",
            Outcome::of(&result, Option::is_some),
            start.elapsed()
        );
        result
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = (*self.0).create(key, record).await;
        store_call!("create", Outcome::of(&result, |_| true), start.elapsed());
        result
    }

    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        let start = Instant::now();
        let result = (*self.0).update(key, change, now).await;
        store_call!("update", Outcome::of(&result, |_| true), start.elapsed());
        result
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = (*self.0).touch(key, expires_at, now).await;
        store_call!("touch", Outcome::of(&result, |_| true), start.elapsed());
        result
    }

    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let start = Instant::now();
        let result = (*self.0).rename(from, to, change, now).await;
        store_call!("rename", Outcome::of(&result, |_| true), start.elapsed());
        result
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        let start = Instant::now();
        let result = (*self.0).delete(key).await;
        store_call!(
            "delete",
            Outcome::of(&result, |found| *found),
            start.elapsed()
        );
        result
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        (*self.0).user_index()
    }

    fn id_format(&self) -> IdFormat {
        (*self.0).id_format()
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        (*self.0).maintenance()
    }
}
