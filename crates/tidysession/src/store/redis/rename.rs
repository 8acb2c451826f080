//! Rename: one script on a single server, the protocol of the
//! [module docs](super#rename-on-redis-cluster-i7) on a cluster.

use ::redis::Value;
use time::OffsetDateTime;

use super::index::{provisional_expiry, user_of};
use super::ops::{change_args, create_args, grace, Waiting, HOLD_MS};
use super::reply::{corrupt, held_record, redis_error, Filed, Held, Status, Stored};
use super::{scripts, RedisStore};
use crate::id::StorageKey;
use crate::record::{Change, ExpiryChange};
use crate::store::millis::millis;
use crate::store::StoreError;

/// How often a rename starts over after concurrent writes before it gives up: a cluster
/// rename whose old record changed, a single-server rename whose record changed user.
const RENAME_ATTEMPTS: usize = 32;

impl RedisStore {
    /// Rename on a single server: one script over both keys.
    pub(super) async fn rename_single(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // The new key is indexed under the user the record will carry before it exists: the
        // change's user, or the one `from` holds, which the script checks. The first attempt
        // guesses "no user"; a wrong guess changes nothing and the script names the user.
        let (sets_user, mut expect) = match change.user() {
            Some(user) => (user.map(str::to_owned), None),
            None => (None, Some(Vec::new())),
        };
        let mut until = provisional_expiry(change, now);
        for _ in 0..RENAME_ATTEMPTS {
            let files = match &expect {
                None => sets_user.clone(),
                Some(raw) => user_of(raw),
            };
            if let Some(user) = &files {
                self.index_add(user, to, until).await?;
            }
            let mut invocation = scripts::RENAME.key(self.redis_key(from));
            invocation.key(self.redis_key(to));
            // "-" is no JSON text, so it cannot be mistaken for a stored user.
            change_args(
                &mut invocation,
                change,
                now,
                expect.as_deref().unwrap_or(b"-"),
            );
            match self.run(&invocation, from).await? {
                Status::Done => return Ok(()),
                Status::Filed(filed) => {
                    let indexed = files.as_deref().map(|user| (user, until));
                    self.index_extend(to, filed, indexed).await;
                    return Ok(());
                }
                Status::Gone => return Err(StoreError::Gone),
                Status::Duplicate => return Err(StoreError::DuplicateId),
                Status::CorruptSecond => return Err(corrupt(to, "not a session hash")),
                Status::OtherUser(Filed { user, expires_ms }) => {
                    until = until.max(expiry_after(change, expires_ms));
                    expect = Some(user);
                }
                other => return Err(other.unexpected(from)),
            }
        }
        Err(StoreError::backend(RenameContended))
    }

    /// Rename on a cluster: the protocol of the module docs.
    pub(super) async fn rename_cluster(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let step = Move {
            from,
            to,
            old_key: self.redis_key(from),
            new_key: self.redis_key(to),
            change,
            now,
        };
        let mut waiting = Waiting::new();
        for _ in 0..RENAME_ATTEMPTS {
            // Step 0: hold the old record against writes and read it.
            let mut invocation = scripts::HOLD.key(&step.old_key);
            invocation.arg(millis(now)).arg(&step.new_key).arg(HOLD_MS);
            let reply: Value = invocation
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| redis_error(from, e))?;
            let stored = match held_record(from, reply)? {
                Held::Record(stored) => stored,
                Held::Status(Status::Gone) => return Err(StoreError::Gone),
                Held::Status(Status::Pending(old)) => {
                    if self.settle(from, &old).await? {
                        continue;
                    }
                    return Err(StoreError::Gone);
                }
                Held::Status(Status::Busy) => {
                    // Another rename of the same session: wait for it to finish or lapse.
                    waiting.wait().await?;
                    continue;
                }
                Held::Status(other) => return Err(other.unexpected(from)),
            };
            match self.move_held(stored, &step).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    self.release(&step).await;
                    return Err(e);
                }
            }
        }
        self.release(&step).await;
        Err(StoreError::backend(RenameContended))
    }

    /// Lets writers at the old record again after a rename gave up; if this fails, the hold
    /// lapses by itself.
    async fn release(&self, step: &Move<'_>) {
        let mut invocation = scripts::RELEASE.key(&step.old_key);
        invocation.arg(&step.new_key);
        let _ = self.run(&invocation, step.from).await;
    }

    /// Steps 1 to 3 of a cluster rename, for a held record. `Ok(false)`: the old record
    /// changed after all (the hold lapsed), start over.
    async fn move_held(&self, stored: Stored, step: &Move<'_>) -> Result<bool, StoreError> {
        let Move {
            from,
            to,
            ref old_key,
            ref new_key,
            change,
            now,
        } = *step;
        let mut record = stored.record;
        change.apply(&mut record);
        if crate::record::is_empty(&record.data) {
            // Emptied by the change: nothing to move (I2), the old record goes.
            let mut invocation = scripts::DELETE_IF_VERSION.key(old_key);
            invocation.arg(&stored.version).arg(new_key).arg("");
            return match self.run(&invocation, from).await? {
                Status::Done | Status::Gone => Err(StoreError::Gone),
                Status::Changed => Ok(false),
                other => Err(other.unexpected(from)),
            };
        }
        // The held record cannot change until step 2 (which checks its version), so its user
        // and expiry are final: index the new key under them before it can become valid.
        if let Some(user) = record.user() {
            self.index_add(user, to, millis(record.expires_at)).await?;
        }
        // Step 1: the pending copy.
        let mut invocation = scripts::CREATE.key(new_key);
        create_args(&mut invocation, &record, old_key.as_bytes(), now);
        match self.run(&invocation, to).await? {
            Status::Done => {}
            Status::Duplicate => return Err(StoreError::DuplicateId),
            other => return Err(other.unexpected(to)),
        }
        // Step 2: the old record becomes a tombstone naming the copy, if nobody changed it
        // since it was read. On an error it is unknown whether it did: the copy stays, valid
        // exactly if it did.
        let mut invocation = scripts::DELETE_IF_VERSION.key(old_key);
        invocation
            .arg(&stored.version)
            .arg(new_key)
            .arg(grace(record.expires_at));
        #[cfg(test)]
        if self.faults.replay_step_2 {
            // As when the connection drops after the script ran and the client re-sends it.
            self.run(&invocation, from).await?;
        }
        let outcome = match self.run(&invocation, from).await? {
            Status::Done => {
                // The rename has happened: the old id is gone, so the caller must learn of
                // the new one even if step 3 fails. Readers settle the copy themselves.
                if let Err(e) = self.settle_copy(step).await {
                    tracing::warn!(
                        error = %e,
                        "session renamed, but clearing its pending mark failed; \
                         the next load clears it"
                    );
                }
                return Ok(true);
            }
            Status::Gone => Err(StoreError::Gone),
            Status::Changed => Ok(false),
            other => Err(other.unexpected(from)),
        };
        // The attempt lost: the copy must not outlive it.
        let mut invocation = scripts::DROP_PENDING.key(new_key);
        invocation.arg(old_key);
        self.run(&invocation, to).await?;
        outcome
    }

    /// Step 3 of a cluster rename: clears the pending mark on the new record.
    async fn settle_copy(&self, step: &Move<'_>) -> Result<(), StoreError> {
        #[cfg(test)]
        if self.faults.fail_step_3 {
            return Err(StoreError::backend(super::reply::BadReply(
                "SETTLE (a test's fault)",
            )));
        }
        let mut invocation = scripts::SETTLE.key(&step.new_key);
        invocation.arg(&step.old_key);
        self.run(&invocation, step.to).await.map(drop)
    }
}

/// The arguments of one cluster rename.
struct Move<'a> {
    from: &'a StorageKey,
    to: &'a StorageKey,
    /// The Redis keys of `from` and `to`.
    old_key: String,
    new_key: String,
    change: &'a Change,
    now: OffsetDateTime,
}

/// A record's expiry after `change`, given its current one (Unix milliseconds).
fn expiry_after(change: &Change, current: i64) -> i64 {
    match change.expiry {
        None => current,
        Some(ExpiryChange::Touch(t)) => millis(t).max(current),
        Some(ExpiryChange::Set(t)) => millis(t),
    }
}

/// A rename kept losing to concurrent writes of the same session.
#[derive(Debug, thiserror::Error)]
#[error("rename gave up after {RENAME_ATTEMPTS} attempts: the session kept changing")]
struct RenameContended;
