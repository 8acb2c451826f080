//! The steps the store's operations are built of: running a script, reading a record,
//! settling a pending copy, waiting out a rename's hold, and the scripts' arguments.

use std::time::Duration;

use tokio::time::Instant;

use ::redis::{RedisError, ScriptInvocation, Value};
use time::OffsetDateTime;

use super::dispatch::Conn;
use super::reply::{is_wrong_type, redis_error, Status, Stored};
use super::{scripts, RedisStore};
use crate::id::StorageKey;
use crate::record::{Change, ExpiryChange, Record, RESERVED_PREFIX};
use crate::store::millis::millis;
use crate::store::StoreError;

/// How long a cluster rename holds the old record against writes, in milliseconds of the
/// server's clock. A rename takes a few round trips; the hold only outlives it if the
/// renaming process dies.
pub(super) const HOLD_MS: u64 = 2_000;

/// How long a write waits for a rename's hold before giving up (longer than any hold).
const WAIT_LIMIT: Duration = Duration::from_millis(2 * HOLD_MS);

/// The first pause before another look at a held record; each further pause doubles, up to
/// [`WAIT_MAX`].
const WAIT_FIRST: Duration = Duration::from_millis(2);

/// The longest pause between two looks at a held record.
const WAIT_MAX: Duration = Duration::from_millis(50);

impl RedisStore {
    pub(super) fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Runs a script and reads its status reply.
    pub(super) async fn run(
        &self,
        invocation: &ScriptInvocation<'_>,
        key: &StorageKey,
    ) -> Result<Status, StoreError> {
        let reply: Value = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(key, e))?;
        Status::from_reply(key, reply)
    }

    /// The record's hash, decoded; `None` when missing or expired at `now`. A pending copy is
    /// returned as it is (see [`Stored::pending`]).
    pub(super) async fn read(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Stored>, StoreError> {
        let reply: Value = ::redis::cmd("HGETALL")
            .arg(self.redis_key(key))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error(key, e))?;
        let stored = Stored::decode(key, reply)?;
        Ok(stored.filter(|s| millis(now) < s.expires_ms))
    }

    /// Whether the record under the Redis key `old` is a tombstone naming the Redis key `copy`.
    pub(super) async fn moved_to(&self, old: &[u8], copy: &[u8]) -> Result<bool, StoreError> {
        let moved_to: Result<Option<Vec<u8>>, RedisError> = ::redis::cmd("HGET")
            .arg(old)
            .arg("m:moved_to")
            .query_async(&mut self.conn())
            .await;
        match moved_to {
            Ok(moved_to) => Ok(moved_to.as_deref() == Some(copy)),
            // Not a hash, so no tombstone.
            Err(e) if is_wrong_type(&e) => Ok(false),
            Err(e) => Err(StoreError::backend(e)),
        }
    }

    /// Whether a pending copy is valid: the record it was copied from is now a tombstone
    /// naming it (step 2 of its rename ran). Clears the mark when it is, so later reads skip
    /// the check. An old record that is merely missing (logged out, expired) does not count.
    pub(super) async fn settle(&self, key: &StorageKey, old: &[u8]) -> Result<bool, StoreError> {
        if !self.moved_to(old, self.redis_key(key).as_bytes()).await? {
            return Ok(false);
        }
        let mut invocation = scripts::SETTLE.key(self.redis_key(key));
        invocation.arg(old);
        self.run(&invocation, key).await?;
        Ok(true)
    }

    /// Runs an update or touch script; a pending copy whose old record is gone is settled
    /// and the script runs again, one whose old record still exists is [`StoreError::Gone`].
    /// While a cluster rename holds the record, it waits.
    pub(super) async fn run_settling(
        &self,
        invocation: &ScriptInvocation<'_>,
        key: &StorageKey,
    ) -> Result<Status, StoreError> {
        let mut waiting = Waiting::new();
        loop {
            match self.run(invocation, key).await? {
                Status::Pending(old) => {
                    if !self.settle(key, &old).await? {
                        return Err(StoreError::Gone);
                    }
                }
                // A cluster rename holds the record: it is about to move (then this write
                // finds it gone) or the hold lapses.
                Status::Busy => waiting.wait().await?,
                other => return Ok(other),
            }
        }
    }
}

/// Appends the arguments of an update or rename script: now, the reserved prefix, the
/// expiry change, `sixth` (the update's "report the user" flag, the user field a rename
/// expects) and the key changes.
pub(super) fn change_args(
    invocation: &mut ScriptInvocation<'_>,
    change: &Change,
    now: OffsetDateTime,
    sixth: &[u8],
) {
    invocation
        .arg(millis(now))
        .arg(format!("d:{RESERVED_PREFIX}"));
    match change.expiry {
        None => invocation.arg("").arg(0).arg(0),
        Some(ExpiryChange::Touch(at)) => invocation.arg("extend").arg(millis(at)).arg(grace(at)),
        Some(ExpiryChange::Set(at)) => invocation.arg("set").arg(millis(at)).arg(grace(at)),
    };
    invocation.arg(sixth);
    invocation.arg(change.removed.len());
    for k in &change.removed {
        invocation.arg(field(k));
    }
    for (k, v) in &change.set {
        invocation.arg(field(k)).arg(v.to_string());
    }
}

/// Appends the arguments of the create script for `record`, pending on `pending` if not empty.
/// A record already under the key counts as live if it expires after `now`.
pub(super) fn create_args(
    invocation: &mut ScriptInvocation<'_>,
    record: &Record,
    pending: &[u8],
    now: OffsetDateTime,
) {
    invocation
        .arg(millis(now))
        .arg(grace(record.expires_at))
        .arg(millis(record.created_at))
        .arg(millis(record.expires_at))
        .arg(pending);
    for (k, v) in &record.data {
        invocation.arg(field(k)).arg(v.to_string());
    }
}

/// A write's wait for a held record: pauses that double from [`WAIT_FIRST`] up to
/// [`WAIT_MAX`], for at most [`WAIT_LIMIT`] in all.
pub(super) struct Waiting {
    deadline: Instant,
    pause: Duration,
}

impl Waiting {
    pub(super) fn new() -> Self {
        Self {
            deadline: Instant::now() + WAIT_LIMIT,
            pause: WAIT_FIRST,
        }
    }

    /// Waits a moment, or fails once the limit has passed.
    pub(super) async fn wait(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(StoreError::backend(HeldTooLong));
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(WAIT_MAX);
        Ok(())
    }
}

/// A write waited longer than any rename holds a record.
#[derive(Debug, thiserror::Error)]
#[error("the session stayed held by a rename for too long")]
struct HeldTooLong;

/// The hash field of a session data key.
fn field(key: &str) -> String {
    format!("d:{key}")
}

/// The time Redis drops the hash of a record expiring at `t`.
pub(super) fn grace(t: OffsetDateTime) -> i64 {
    millis(t).saturating_add(RedisStore::EXPIRY_GRACE_MS)
}
