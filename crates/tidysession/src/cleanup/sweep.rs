//! The sweep in storage order, and its final pass over the ranges where rows were held.

use time::OffsetDateTime;

use super::run::{within, Runner};
use crate::store::{StoreError, Sweep};

/// Deletes every record that expired by `cutoff` in storage order: batch after batch from
/// the position the one before returned, then each range where another transaction held
/// expired rows once more.
pub(super) async fn by_sweep(
    run: &mut Runner<'_>,
    sweep: &dyn Sweep,
    cutoff: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut held = Vec::new();
    let mut from = within(run.call_timeout(), sweep.start()).await?;
    loop {
        if !run.proceed().await? {
            return Ok(());
        }
        let size = run.size;
        let batch = run
            .batch(size, sweep.sweep_expired(&from, cutoff, size), |b| {
                (b.deleted, b.next.is_some())
            })
            .await?;
        if batch.held > 0 {
            held.push((from.clone(), size));
        }
        match batch.next {
            Some(next) => from = next,
            None => break,
        }
    }
    if !run.start_final_pass() {
        return Ok(());
    }
    // The same position and span cover the same range again.
    for (from, size) in held {
        if !run.proceed().await? {
            return Ok(());
        }
        run.batch(size, sweep.sweep_expired(&from, cutoff, size), |b| {
            (b.deleted, b.next.is_some())
        })
        .await?;
    }
    Ok(())
}
