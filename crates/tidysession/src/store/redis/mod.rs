//! [`RedisStore`]: sessions in Redis or Redis Cluster, one hash per session.
//!
//! # Layout
//!
//! A session lives in one hash under `<prefix><hex of the storage key>` (the SHA-256 of the
//! id, I6; the default prefix is `tidysession:`). Its fields:
//!
//! | field | holds |
//! |---|---|
//! | `d:<key>` | one session data key, its value as JSON text |
//! | `m:created` | creation time, Unix milliseconds |
//! | `m:expires` | expiry time, Unix milliseconds |
//! | `m:version` | bumped by every change, so a cluster rename notices concurrent writes |
//! | `m:pending` | only during a cluster rename: the Redis key of the record being moved here |
//! | `m:moving` | only while a cluster rename holds the record: the Redis key it moves to |
//! | `m:moving_until` | with `m:moving`: when the hold lapses, Unix milliseconds of the server's clock |
//! | `m:moved_to` | only in a *tombstone*, the one field left under the old key by a cluster rename: the Redis key the record moved to |
//!
//! Each logged-in user also has an index under `<prefix>u:<user>`: see [User index](#user-index).
//!
//! Data fields all start with `d:` and metadata fields with `m:`, so any string is a valid
//! data key. An update sends only the changed fields to a Lua script that applies them to the
//! hash as it is (I5), so one request setting a key never overwrites another request's keys.
//!
//! The hash expires through `PEXPIREAT` a short grace ([`RedisStore::EXPIRY_GRACE_MS`]) after `m:expires`,
//! so the application's and Redis' clocks need not agree to the millisecond: every load and
//! write compares `m:expires` with the `now` it is given, and that decides. Expired records
//! are therefore never counted or cleaned up by tidysession; Redis drops them.
//!
//! # User index
//!
//! Each user with a session has a sorted set under `<prefix>u:<user>` (the user as
//! [`USER_KEY`](crate::record::USER_KEY) names it, see [`RedisStore::user_index_key`]). Its
//! members are the hex keys of the user's sessions, each scored by when Redis drops that
//! session's hash (its expiry plus the grace). The record itself needs no extra field: its
//! `d:_auth_user_id` field is the user.
//!
//! Every session script still touches one key (one hash slot), so the index is written by
//! separate commands, ordered so that a live record filed under a user is always in that
//! user's index:
//!
//! - a create, update or rename that files a record under a user adds the entry first, scored
//!   by the best expiry known before the write: the record's own for a create, else the one
//!   the change sets, and never less than now plus the grace. A script that leaves a record
//!   filed reports its user and expiry, and the store then raises the entry's score if it
//!   falls short (an update or rename without an expiry change, say);
//! - a single-server rename whose change does not set the user expects the record to have
//!   none; if it has one, the script changes nothing and names it, and the store indexes the
//!   new key under that user and runs the script again. A cluster rename indexes the new key
//!   under the held record's user and expiry, which cannot change while it is held;
//! - a touch or update that moves the expiry of a filed record reports the record's user,
//!   and the store then raises the entry's score. Only logged-in sessions pay this round
//!   trip, at most once per touch window;
//! - adding an entry drops members whose score has passed and sets the index key to expire
//!   with its latest member, so an index never outlives its sessions. Deleting a filed
//!   record drops its entry (one more round trip, logged-in sessions only).
//!
//! Entries can go stale (the session expired, was renamed away or re-filed under another
//! user, or the write that indexed it failed or has not filed it yet). They are harmless and
//! never removed on sight, since the write that added one may still be on its way: they go
//! when their score passes. [`sessions_of`](UserIndex::sessions_of) reads each member's hash
//! and lists it only if it is live and filed under the user.
//! [`delete_sessions_of`](UserIndex::delete_sessions_of) checks the user and deletes in one
//! script per session, then reads the index again and does the same for members it has not
//! seen yet, until a read finds none: a rename moving a session meanwhile indexes the new key
//! before the old one stops being the session, so a rename that beats the delete of the old
//! key shows up in the next read. It gives up with an error after
//! [a number of reads](index::REVOKE_PASSES) if the user keeps gaining sessions.
//!
//! What remains open is a process dying (or Redis failing) between two commands:
//!
//! - between a write that filed a session or moved its expiry and the entry's extension (a
//!   failed extension is logged): the entry and the index key may lapse before the session,
//!   which then goes unlisted and unrevoked until its next touch re-files it or it expires;
//! - before filing at all: a stale entry is left, gone by its score.
//!
//! # Rename on Redis Cluster (I7)
//!
//! On a single server, rename is one script over both keys. On a cluster the two keys live
//! in different hash slots, usually on different nodes, and no script can touch both. The
//! store then moves a record in steps that still never show both ids valid, or neither:
//!
//! 0. Hold the old record and read it (with its `m:version`). While held (`m:moving`, for
//!    [a short time](ops::HOLD_MS) on the server's clock), updates and touches of it wait
//!    instead of changing it, so a busy session cannot starve its rename; the hold lapses by
//!    itself if the renaming process dies.
//! 1. Apply the change and create the new record with `m:pending` naming the old Redis key.
//!    A live record there is [`StoreError::DuplicateId`].
//! 2. Replace the old record with a tombstone naming the new Redis key, only if this rename
//!    still holds it and its version is the one read. This is the moment the rename
//!    happens. If the old record changed anyway (the hold lapsed) or another rename holds it
//!    now, the new copy is deleted and the rename starts over, so that update is not lost;
//!    if the old record is gone (a concurrent logout) or is a tombstone naming another copy,
//!    the copy is deleted and the result is [`StoreError::Gone`].
//! 3. Clear `m:pending` on the new record.
//!
//! A record with `m:pending` is valid only once the old key holds a tombstone naming it: a
//! load checks that (and clears the mark), updates and touches report [`StoreError::Gone`]
//! until then. So readers see the old id valid until step 2 and the new one from step 2 on,
//! and a write waiting on the hold finds the old id gone afterwards, as it would after a
//! single-server rename. A rename that dies between steps 1 and 2 leaves an invisible copy
//! that expires with the session; it stays invisible when the old record is later deleted
//! or expires, since that leaves no tombstone.
//!
//! Every step may run twice: the cluster client re-sends a command when the connection
//! drops before its reply arrives. Step 2 run again finds its own tombstone and reports
//! success again; the others find their work done.
//!
//! A tombstone is no session to every operation: loads find nothing, updates, touches and
//! renames report [`StoreError::Gone`], counts skip it, and a delete leaves it in place and
//! returns `false` (the old id is already gone, and the copy may not be settled yet). A
//! create under its key is [`StoreError::DuplicateId`]. Redis drops it when the copy's hash
//! expires.
//!
//! # Durability
//!
//! The store is as durable as the Redis behind it. Holds, versions, pending marks and
//! tombstones are hash fields like the session data: a failover to a replica that had not
//! received the latest writes, or a restart that loses them (no persistence, or writes after
//! the last `fsync`), loses them as well. A session may then come back in an older state, a
//! logged-out session may come back, and since the two records of a cluster rename live on
//! different nodes, a failover of one of them may leave both ids valid, or neither.
//! Configure persistence and replication for the guarantees you need.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::millis::millis;
use super::{
    ExpiredBatch, RecordCounts, SessionStore, Stats, StatsOptions, StoreError, Updated, UserIndex,
};
use crate::id::StorageKey;
use crate::record::{Change, Record};

mod connection;
mod dispatch;
mod index;
mod maintenance;
mod ops;
mod rename;
mod reply;
mod scan;
mod scripts;
#[cfg(test)]
mod tests;

use dispatch::{cluster_nodes, Conn, InvalidUrl};
use index::provisional_expiry;
use ops::{change_args, create_args, grace};
use reply::Status;

/// The default key prefix.
const DEFAULT_PREFIX: &str = "tidysession:";

/// Sessions in Redis (a single server) or Redis Cluster.
///
/// Each session is one hash under `<prefix><hex SHA-256 of the id>` (only the hash of the
/// id reaches Redis, I6): a `d:<key>` field per data key holding its JSON value, and `m:*`
/// metadata fields (creation, expiry, a version). Small Lua scripts change a hash field by
/// field, so concurrent requests writing different keys both survive (I5), and Redis drops
/// the hash itself through `PEXPIREAT` shortly after the session expires
/// ([`EXPIRY_GRACE_MS`](Self::EXPIRY_GRACE_MS)).
///
/// On a single server a rename is one script. On a cluster the old and new keys lie in
/// different slots, so a rename holds the old record against writes, writes the new one
/// marked pending, and replaces the old one with a tombstone naming the new one; a pending
/// record counts only once such a tombstone names it, so no reader ever sees both ids valid,
/// or neither (I7). Every connection kind reconnects by itself when the server comes back.
///
/// A single server over plain TCP is reached through one connection of the store's own,
/// shared by every request of the process: commands that are ready at the same moment go
/// out in one write, and replies are parsed by a RESP2 parser much cheaper than the `redis`
/// crate's. TLS (`rediss://`), Unix sockets and RESP3 (`?protocol=resp3`) go through the
/// `redis` crate's reconnecting connection manager instead; a cluster through its cluster
/// client. On every kind a request waits up to 2 seconds for its reply, then fails with a
/// store error: a server that stops answering costs a request seconds, never a hang.
///
/// It keeps a [user index](UserIndex): a sorted set per user (see
/// [`user_index_key`](Self::user_index_key)), written before a record is filed under the
/// user, so a logged-in session is never missing from it; entries go when the session's hash
/// would. Anonymous sessions cost it nothing; a write that leaves a logged-in session
/// expiring later than its entry extends the entry right after, and a process dying between
/// the two may let the entry lapse before the session does, until the session's next touch.
///
/// ```no_run
/// # async fn run() -> Result<(), tidysession::StoreError> {
/// use tidysession::store::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/0")
///     .await?
///     .with_key_prefix("myapp:session:");
/// let cluster = RedisStore::connect_cluster(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .await?;
/// # Ok(()) }
/// ```
///
/// Needs the cargo feature `redis`.
pub struct RedisStore {
    conn: Conn,
    prefix: String,
    /// Where the store connects, without credentials, for `Debug`.
    target: String,
    #[cfg(test)]
    faults: tests::Faults,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("kind", &self.conn.kind())
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisStore {
    /// How long past its expiry a record's hash stays in Redis before Redis drops it, in
    /// milliseconds. Loads and writes already treat it as missing from its expiry on; the
    /// grace only absorbs clock skew between the application and Redis.
    pub const EXPIRY_GRACE_MS: i64 = 60_000;

    /// Connects to Redis as a URL says:
    ///
    /// - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`: one server;
    /// - `redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT,...`: a Redis Cluster,
    ///   through some of its nodes (see [`connect_cluster`](Self::connect_cluster)).
    ///
    /// An optional `prefix=` query parameter (percent-encoded) sets the
    /// [key prefix](Self::with_key_prefix); other query parameters go to the `redis` crate's
    /// URL parser, e.g. `redis://127.0.0.1/0?prefix=myapp:&protocol=resp3` (RESP3, which
    /// the store then speaks through that crate's connection manager rather than its own
    /// connection). The connection is re-established by itself after the server restarts: a
    /// request that finds it closed opens a new one (one attempt) before it sends anything,
    /// and a request whose reply takes longer than two seconds fails.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL is invalid or Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, prefix) =
            super::url::take_param(url, "prefix").ok_or_else(|| StoreError::backend(InvalidUrl))?;
        let store = match url.strip_prefix("redis+cluster://") {
            Some(rest) => {
                let nodes = cluster_nodes(rest).ok_or_else(|| StoreError::backend(InvalidUrl))?;
                Self::connect_cluster(&nodes).await?
            }
            None => Self::connect_single(&url).await?,
        };
        Ok(match prefix {
            Some(prefix) => store.with_key_prefix(prefix),
            None => store,
        })
    }

    async fn connect_single(url: &str) -> Result<Self, StoreError> {
        Ok(Self::with_conn(Conn::open(url).await?))
    }

    /// Connects to a Redis Cluster through some of its nodes, each a `redis://` URL
    /// (credentials, if any, in each). The rest of the cluster is discovered, and the
    /// connection follows topology changes and reconnects by itself.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when a URL is invalid or no node can be reached.
    pub async fn connect_cluster<S: AsRef<str>>(nodes: &[S]) -> Result<Self, StoreError> {
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        Ok(Self::with_conn(Conn::open_cluster(nodes).await?))
    }

    /// A store on `conn` (which reaches `target`), under the default prefix.
    fn with_conn((conn, target): (Conn, String)) -> Self {
        Self {
            conn,
            prefix: DEFAULT_PREFIX.to_owned(),
            target,
            #[cfg(test)]
            faults: tests::Faults::default(),
        }
    }

    /// Files sessions under keys starting with `prefix` instead of `tidysession:`, e.g. to
    /// share one Redis between applications. No I/O.
    #[must_use]
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The Redis key a session's hash lives under: the prefix and the storage key in hex.
    pub fn redis_key(&self, key: &StorageKey) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        key.push_hex(&mut name);
        name
    }

    /// The Redis key of `user`'s index, `<prefix>u:<user>`: a sorted set of the hex keys of
    /// the user's sessions, each scored by when Redis drops its hash. It expires with its
    /// latest member.
    pub fn user_index_key(&self, user: &str) -> String {
        format!("{}u:{user}", self.prefix)
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        let Some(stored) = self.read(key, now).await? else {
            return Ok(None);
        };
        if let Some(old) = &stored.pending {
            if !self.settle(key, old).await? {
                return Ok(None);
            }
        }
        Ok(Some(stored.record))
    }

    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        if let Some(user) = record.user() {
            self.index_add(user, key, millis(record.expires_at)).await?;
        }
        let mut invocation = scripts::CREATE.key(self.redis_key(key));
        create_args(&mut invocation, record, b"", OffsetDateTime::now_utc());
        match self.run(&invocation, key).await? {
            Status::Done => Ok(()),
            Status::Duplicate => Err(StoreError::DuplicateId),
            other => Err(other.unexpected(key)),
        }
    }

    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        // A change that files the record under a user indexes it first, up to the best
        // expiry known before the write; the script reports the one it leaves, and the entry
        // is extended to it afterwards if need be.
        let files = change.user().flatten();
        let indexed = files.map(|user| (user, provisional_expiry(change, now)));
        if let Some((user, until)) = indexed {
            self.index_add(user, key, until).await?;
        }
        let mut invocation = scripts::UPDATE.key(self.redis_key(key));
        let report: &[u8] = if files.is_some() { b"1" } else { b"" };
        change_args(&mut invocation, change, now, report);
        match self.run_settling(&invocation, key).await? {
            Status::Done => Ok(Updated::Kept),
            Status::Filed(filed) => {
                self.index_extend(key, filed, indexed).await;
                Ok(Updated::Kept)
            }
            Status::Emptied => Ok(Updated::Deleted),
            Status::Gone => Err(StoreError::Gone),
            other => Err(other.unexpected(key)),
        }
    }

    async fn touch(
        &self,
        key: &StorageKey,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut invocation = scripts::TOUCH.key(self.redis_key(key));
        invocation
            .arg(millis(now))
            .arg(millis(expires_at))
            .arg(grace(expires_at));
        match self.run_settling(&invocation, key).await? {
            Status::Done => Ok(()),
            Status::Filed(filed) => {
                self.index_extend(key, filed, None).await;
                Ok(())
            }
            Status::Gone => Err(StoreError::Gone),
            other => Err(other.unexpected(key)),
        }
    }

    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if self.is_cluster() {
            self.rename_cluster(from, to, change, now).await
        } else {
            self.rename_single(from, to, change, now).await
        }
    }

    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        // A tombstone is left alone: the old id is gone already, and the copy it names may
        // not be settled yet.
        match self
            .run(&scripts::DELETE.key(self.redis_key(key)), key)
            .await?
        {
            Status::Done => Ok(true),
            Status::Filed(filed) => {
                self.index_remove(key, filed).await;
                Ok(true)
            }
            Status::Gone => Ok(false),
            other => Err(other.unexpected(key)),
        }
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    fn maintenance(&self) -> Option<&dyn crate::store::Maintenance> {
        Some(self)
    }
}
