//! A run under way: limits and hooks before each batch, timing and sizing after it, and the
//! pause that follows.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::size::Sizing;
use super::{Batch, Cleanup, CleanupReport, Hooks, Order};
use crate::store::StoreError;

/// A store call took longer than its timeout.
#[derive(Debug, thiserror::Error)]
#[error("the store did not answer within {0:?}")]
pub(crate) struct TimedOut(pub(crate) Duration);

pub(super) struct Runner<'a> {
    plan: &'a Cleanup,
    hooks: &'a mut dyn Hooks,
    sizing: Sizing,
    /// The next batch's size.
    pub(super) size: u32,
    started: Instant,
    in_final_pass: bool,
    report: CleanupReport,
}

impl<'a> Runner<'a> {
    pub(super) fn new(plan: &'a Cleanup, order: Order, hooks: &'a mut dyn Hooks) -> Self {
        let sizing = Sizing::new(plan, plan.planned_batch_time(order));
        Self {
            plan,
            hooks,
            sizing,
            size: sizing.first(),
            started: Instant::now(),
            in_final_pass: false,
            report: CleanupReport {
                order,
                smallest: u32::MAX,
                ..CleanupReport::default()
            },
        }
    }

    /// Whether the final pass should run; from here on, batches count as its own.
    pub(super) fn start_final_pass(&mut self) -> bool {
        self.in_final_pass = true;
        self.plan.final_pass
    }

    /// A walk through the index stopped before a batch from `cursor`.
    pub(super) fn stopped_at(&mut self, cursor: Option<OffsetDateTime>) {
        self.report.cursor = cursor;
    }

    /// Whether the next batch may start: no limit reached, no stop asked for, and the hooks
    /// agree. When not, the report says more may be left.
    pub(super) async fn proceed(&mut self) -> Result<bool, StoreError> {
        let plan = self.plan;
        let stopped = plan.stop.as_ref().is_some_and(|stop| *stop.borrow());
        let go = !stopped
            && plan.max_batches.is_none_or(|max| self.report.batches < max)
            && plan
                .max_duration
                .is_none_or(|max| self.started.elapsed() < max)
            && self.hooks.before_batch(&self.report).await?;
        if !go {
            self.report.more_left = true;
        }
        Ok(go)
    }

    /// Runs `call` (one batch) within the call timeout, then counts it, sizes the next batch
    /// and pauses. `outcome` tells what the call deleted and whether more may follow it.
    pub(super) async fn batch<T>(
        &mut self,
        size: u32,
        call: impl Future<Output = Result<T, StoreError>>,
        outcome: impl FnOnce(&T) -> (u64, bool),
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let done = within(self.plan.call_timeout, call).await?;
        let took = started.elapsed();
        let (deleted, full) = outcome(&done);
        self.record(size, took, deleted, full);
        self.pause(took).await;
        Ok(done)
    }

    /// The bound on one store call, if any.
    pub(super) fn call_timeout(&self) -> Option<Duration> {
        self.plan.call_timeout
    }

    /// Counts a batch of `size` that deleted `deleted` in `took` and sizes the next (`full`:
    /// it may have stopped short of more).
    fn record(&mut self, size: u32, took: Duration, deleted: u64, full: bool) {
        let r = &mut self.report;
        r.deleted += deleted;
        r.batches += 1;
        r.smallest = r.smallest.min(size);
        r.largest = r.largest.max(size);
        r.longest = r.longest.max(took);
        if self.in_final_pass {
            r.final_batches += 1;
            r.final_deleted += deleted;
        }
        let batch = Batch {
            size,
            deleted,
            took,
            final_pass: self.in_final_pass,
        };
        self.hooks.after_batch(&batch, r);
        self.size = self.sizing.next(size, took, full);
    }

    /// Pauses after a batch that took `took`: as long again, or longer if the rate cap needs;
    /// never past the run's time, and not at all once a stop is asked for.
    async fn pause(&mut self, took: Duration) {
        let mut wait = took;
        if let Some(rate) = self.plan.max_rate {
            // Until the records deleted so far are within the rate.
            let due = Duration::try_from_secs_f64(self.report.deleted as f64 / f64::from(rate))
                .unwrap_or(Duration::MAX);
            wait = wait.max(due.saturating_sub(self.started.elapsed()));
        }
        if let Some(max) = self.plan.max_duration {
            wait = wait.min(max.saturating_sub(self.started.elapsed()));
        }
        if wait.is_zero() {
            return;
        }
        let started = Instant::now();
        match self.plan.stop.clone() {
            Some(mut stop) => {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    // A stop signal whose sender is gone never fires.
                    Ok(_) = stop.wait_for(|stopped| *stopped) => {}
                }
            }
            None => tokio::time::sleep(wait).await,
        }
        // The full wait when the sleep ran out (exact under a paused test clock).
        self.report.paused += wait.min(started.elapsed());
    }

    /// What the run did.
    pub(super) fn finish(self) -> CleanupReport {
        let mut report = self.report;
        report.smallest = report.smallest.min(report.largest);
        report
    }
}

/// Runs a store call within `limit`, if any. (A free function: a runner holds its hooks, which
/// need not be `Sync`, so a future borrowing it could not be sent to another thread.)
pub(super) async fn within<T>(
    limit: Option<Duration>,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .unwrap_or_else(|_| Err(StoreError::backend(TimedOut(limit)))),
        None => call.await,
    }
}
