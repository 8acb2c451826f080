//! Batch sizing: the first batch, the bounds, and the next size after each batch.

use std::time::Duration;

use super::{Cleanup, MIN_BATCH};

/// The sizes a run's batches may take, and the time each should take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizing {
    first: u32,
    min: u32,
    max: u32,
    batch_time: Duration,
}

impl Sizing {
    pub(super) fn new(plan: &Cleanup, batch_time: Duration) -> Self {
        // Never more than a second's worth of the allowed rate.
        let max = plan
            .max_rate
            .map_or(plan.largest_batch, |rate| rate.min(plan.largest_batch));
        let first = plan.first_batch.min(max);
        Self {
            first,
            min: MIN_BATCH.min(first),
            max,
            batch_time,
        }
    }

    pub(super) fn first(&self) -> u32 {
        self.first
    }

    /// The next batch's size, after a batch of `size` records that took `took`: down at once
    /// to what fits in the batch time when it ran long; up by an eighth at most (and no
    /// further than what would fit) when it was full and ran short.
    pub(super) fn next(&self, size: u32, took: Duration, full: bool) -> u32 {
        let fits = u128::from(size) * self.batch_time.as_nanos() / took.as_nanos().max(1);
        let next = if took > self.batch_time {
            fits
        } else if full {
            fits.min(u128::from(size.saturating_add(size.div_ceil(8))))
        } else {
            u128::from(size)
        };
        let next = u32::try_from(next).unwrap_or(u32::MAX);
        next.clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Sizing;
    use crate::cleanup::{Cleanup, MAX_BATCH};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_long_batch_shrinks_at_once_and_a_short_full_one_grows_by_an_eighth() {
        let s = Sizing::new(&Cleanup::new(), ms(20));
        assert_eq!(s.first(), 1000);
        assert_eq!(s.next(1000, ms(1000), true), 20);
        assert_eq!(s.next(1000, ms(1), true), 1125);
        assert_eq!(
            s.next(1000, ms(1), false),
            1000,
            "a short batch says nothing"
        );
        assert_eq!(
            s.next(1000, Duration::MAX, true),
            10,
            "never below the minimum"
        );
        assert_eq!(s.next(u32::MAX, Duration::ZERO, true), MAX_BATCH);
    }

    #[test]
    fn the_first_and_largest_batch_bound_the_sizes() {
        let plan = Cleanup::new().with_first_batch(10).with_largest_batch(10);
        let s = Sizing::new(&plan, ms(20));
        assert_eq!(s.next(10, ms(200), true), 10);
        assert_eq!(s.next(10, ms(1), true), 10);
        let tiny = Sizing::new(&Cleanup::new().with_first_batch(3), ms(20));
        assert_eq!(
            tiny.next(3, ms(1000), true),
            3,
            "the minimum is the first batch"
        );
        let capped = Sizing::new(&Cleanup::new().with_max_rate(100), ms(20));
        assert_eq!(capped.first(), 100, "a second's worth of the rate at most");
        let zero = Sizing::new(&Cleanup::new(), Duration::ZERO);
        assert_eq!(zero.next(1000, Duration::ZERO, true), 10);
    }
}
