//! The user index: a sorted set of session keys per user (see the
//! [module docs](super#user-index)), and [`UserIndex`] on top of it.

use std::collections::HashSet;

use ::redis::{RedisError, Value};
use async_trait::async_trait;
use time::OffsetDateTime;

use super::reply::{Filed, Status};
use super::{scripts, RedisStore};
use crate::id::StorageKey;
use crate::record::{Change, ExpiryChange, Record};
use crate::store::millis::millis;
use crate::store::{StoreError, UserIndex};

/// How many times revoking a user's sessions reads the user's index again to find sessions
/// renamed while it ran, before it gives up.
pub(super) const REVOKE_PASSES: usize = 32;

impl RedisStore {
    /// Files `key`, expiring at `expires_ms`, in `user`'s index, before the operation that
    /// files the record itself (see the [module docs](super#user-index)). Never lowers an
    /// entry's score.
    pub(super) async fn index_add(
        &self,
        user: &str,
        key: &StorageKey,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let mut invocation = scripts::INDEX_ADD.key(self.user_index_key(user));
        invocation
            .arg(key.to_hex())
            .arg(expires_ms.saturating_add(Self::EXPIRY_GRACE_MS));
        invocation
            .invoke_async::<Value>(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        Ok(())
    }

    /// After a write left the record under `key` filed under `filed.user` until
    /// `filed.expires_ms`: keeps the entry and the index key alive as long as the record,
    /// unless the entry added before the write (`indexed`: user and expiry) covers that
    /// already. The write has happened by now, so a failure is logged rather than reported;
    /// see the module docs' window.
    pub(super) async fn index_extend(
        &self,
        key: &StorageKey,
        filed: Filed,
        indexed: Option<(&str, i64)>,
    ) {
        let Some(user) = user_of(&filed.user) else {
            return;
        };
        if indexed.is_some_and(|(u, until)| u == user && filed.expires_ms <= until) {
            return;
        }
        if let Err(e) = self.index_add(&user, key, filed.expires_ms).await {
            tracing::warn!(
                error = %e,
                key = %key.short(),
                "session filed under a user, but extending its user index entry failed"
            );
        }
    }

    /// After a record filed under a user was deleted: drops its entry, which nothing can
    /// file again (ids are random). A failure leaves a stale entry, gone by its score.
    pub(super) async fn index_remove(&self, key: &StorageKey, filed: Filed) {
        let Some(user) = user_of(&filed.user) else {
            return;
        };
        if let Err(e) = self.unindex(&user, [key]).await {
            tracing::warn!(error = %e, "session deleted, but dropping its user index entry failed");
        }
    }

    /// Drops the entries of `keys` from `user`'s index.
    async fn unindex(
        &self,
        user: &str,
        keys: impl IntoIterator<Item = &StorageKey>,
    ) -> Result<(), RedisError> {
        let mut zrem = ::redis::cmd("ZREM");
        zrem.arg(self.user_index_key(user));
        for key in keys {
            zrem.arg(key.to_hex());
        }
        zrem.query_async::<Value>(&mut self.conn()).await?;
        Ok(())
    }

    /// The keys in `user`'s index.
    async fn indexed(&self, user: &str) -> Result<Vec<StorageKey>, StoreError> {
        let members: Vec<Vec<u8>> = ::redis::cmd("ZRANGE")
            .arg(self.user_index_key(user))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
            .map_err(StoreError::backend)?;
        Ok(members.iter().filter_map(|m| key_from_hex(m)).collect())
    }
}

#[async_trait]
impl UserIndex for RedisStore {
    async fn sessions_of(
        &self,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(StorageKey, Record)>, StoreError> {
        // Entries whose record is gone, expired or filed elsewhere are skipped, never removed
        // here: the write that added one may not have filed its record yet. They go by score.
        let mut live = Vec::new();
        for key in self.indexed(user).await? {
            let stored = match self.read(&key, now).await {
                Ok(Some(stored)) => stored,
                Ok(None) => continue,
                Err(e @ StoreError::Corrupt { .. }) => {
                    // Left in place, and not listed: a corrupt record is no one's session.
                    tracing::warn!(error = %e, "skipping a corrupt session in a user index");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if stored.record.user() != Some(user) {
                continue;
            }
            if let Some(old) = &stored.pending {
                if !self.settle(&key, old).await? {
                    continue;
                }
            }
            live.push((key, stored.record));
        }
        Ok(live)
    }

    async fn delete_sessions_of(
        &self,
        user: &str,
        keep: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        // One pass reads the index and deletes each session in it. A rename running meanwhile
        // may move a session to a key the pass did not read; it indexes that key before the
        // old one stops being the session, so any rename that beats this pass's delete of the
        // old key shows up in the next read. Passes go on until one finds nothing new.
        let user_json = serde_json::Value::from(user).to_string();
        let mut seen: HashSet<StorageKey> = keep.into_iter().copied().collect();
        let mut count = 0;
        for pass in 0..REVOKE_PASSES {
            let fresh: Vec<StorageKey> = self
                .indexed(user)
                .await?
                .into_iter()
                .filter(|key| seen.insert(*key))
                .collect();
            if fresh.is_empty() {
                return Ok(count);
            }
            self.revoke_hook(pass).await;
            count += self.delete_listed(user, &user_json, &fresh).await?;
        }
        Err(StoreError::backend(RevokeContended))
    }
}

impl RedisStore {
    /// A test's pause between the first read of a revocation and its deletes.
    #[cfg(test)]
    async fn revoke_hook(&self, pass: usize) {
        if let (0, Some(pause)) = (pass, &self.faults.pause_revoke) {
            pause.wait().await;
            pause.wait().await;
        }
    }

    #[cfg(not(test))]
    async fn revoke_hook(&self, _pass: usize) {}

    /// One pass of [`delete_sessions_of`](UserIndex::delete_sessions_of): deletes the records
    /// under `keys` that are live and filed under `user` (`user_json`, as JSON), each checked
    /// and deleted in one script, and drops the entries of settled records it deleted.
    async fn delete_listed(
        &self,
        user: &str,
        user_json: &str,
        keys: &[StorageKey],
    ) -> Result<u64, StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        let (mut settled, mut count) = (Vec::new(), 0);
        for key in keys {
            let mut invocation = scripts::DELETE_OF_USER.key(self.redis_key(key));
            invocation.arg(user_json).arg(now);
            match self.run(&invocation, key).await? {
                Status::Done => {
                    count += 1;
                    settled.push(key);
                }
                // A pending copy counted as the session only if its rename had happened. Its
                // entry stays: a rename that started over may file the key again.
                Status::Pending(old) => {
                    if self.moved_to(&old, self.redis_key(key).as_bytes()).await? {
                        count += 1;
                    }
                }
                Status::Gone => {}
                other => return Err(other.unexpected(key)),
            }
        }
        // A deleted key never comes back (ids are random), so its entry can go at once.
        if !settled.is_empty() {
            self.unindex(user, settled)
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(count)
    }
}

/// The expiry an index entry gets before a write that files a record (Unix milliseconds):
/// the one the change names, and never earlier than now, so the entry outlives the write
/// that reports the record's real expiry.
pub(super) fn provisional_expiry(change: &Change, now: OffsetDateTime) -> i64 {
    let now = millis(now).max(millis(OffsetDateTime::now_utc()));
    match change.expiry {
        Some(ExpiryChange::Touch(t) | ExpiryChange::Set(t)) => millis(t).max(now),
        None => now,
    }
}

/// The user a raw user field names: a JSON string's value; `None` for anything else.
pub(super) fn user_of(raw: &[u8]) -> Option<String> {
    match serde_json::from_slice(raw) {
        Ok(serde_json::Value::String(user)) => Some(user),
        _ => None,
    }
}

/// A storage key from the 64 lowercase hex digits of an index member; `None` for anything
/// else.
fn key_from_hex(hex: &[u8]) -> Option<StorageKey> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (b, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
        *b = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(StorageKey::from_bytes(bytes))
}

/// Revoking a user's sessions kept finding new ones in the user's index.
#[derive(Debug, thiserror::Error)]
#[error("revoking gave up after {REVOKE_PASSES} passes: the user's sessions kept changing")]
struct RevokeContended;
