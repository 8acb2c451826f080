//! The walk through the expiry index, and its final pass.

use time::OffsetDateTime;

use super::run::Runner;
use crate::store::{Maintenance, StoreError};

/// Deletes every record that expired by `cutoff`: one walk through the expiry index, each
/// batch from the cursor the one before returned, then a final pass over the same range in
/// windows bounded by those cursors.
pub(super) async fn by_index(
    run: &mut Runner<'_>,
    store: &dyn Maintenance,
    cutoff: OffsetDateTime,
    start: Option<OffsetDateTime>,
) -> Result<(), StoreError> {
    let mut cursors = Vec::new();
    if let Stopped(at) = range(run, store, start, cutoff, Some(&mut cursors)).await? {
        run.stopped_at(at);
        return Ok(());
    }
    if !run.start_final_pass() {
        return Ok(());
    }
    let mut from = start;
    for upper in cursors.into_iter().chain([cutoff]) {
        if let Stopped(_) = range(run, store, from, upper, None).await? {
            return Ok(());
        }
        from = Some(upper);
    }
    Ok(())
}

/// How a range ended.
enum Ended {
    Done,
    /// Stopped before a batch that would have started at this cursor.
    Stopped(Option<OffsetDateTime>),
}
use Ended::{Done, Stopped};

/// Clears expiries from `from` to `upper` (both included), batch after batch; pushes each
/// cursor it moves to onto `cursors`, when given.
async fn range(
    run: &mut Runner<'_>,
    store: &dyn Maintenance,
    mut from: Option<OffsetDateTime>,
    upper: OffsetDateTime,
    mut cursors: Option<&mut Vec<OffsetDateTime>>,
) -> Result<Ended, StoreError> {
    loop {
        if !run.proceed().await? {
            return Ok(Stopped(from));
        }
        let size = run.size;
        let batch = run
            .batch(size, store.delete_expired(from, upper, size), |b| {
                (b.deleted, b.next.is_some())
            })
            .await?;
        // Rows a stalled cursor stepped past are another cleaner's; the final pass looks
        // again.
        let Some(next) = batch.continue_from(from) else {
            return Ok(Done);
        };
        if let Some(cursors) = cursors.as_deref_mut() {
            if cursors.last() != Some(&next) {
                cursors.push(next);
            }
        }
        from = Some(next);
    }
}
