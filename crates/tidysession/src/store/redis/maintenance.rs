//! The Redis store's maintenance: counting and statistics by `SCAN`; expired sessions need no
//! cleanup, since each key expires with its session (`PEXPIREAT`).

use super::*;
use crate::store::Maintenance;

#[async_trait]
impl Maintenance for RedisStore {
    async fn delete_expired(
        &self,
        _from: Option<OffsetDateTime>,
        _now: OffsetDateTime,
        _limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        // Redis drops expired hashes itself (PEXPIREAT).
        Ok(ExpiredBatch::default())
    }

    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        self.count_live(now).await
    }

    fn removes_expired_itself(&self) -> bool {
        true
    }

    /// The live count from a full `SCAN` ([`count`](crate::store::Maintenance::count)); the rest from the
    /// first hashes `SCAN` returns (on a cluster, an equal share from each master). Expired
    /// hashes are dropped by Redis, so none are counted.
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        self.sampled_stats(now, options).await
    }
}
