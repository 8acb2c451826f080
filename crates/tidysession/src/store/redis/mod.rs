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
//! [a number of reads](REVOKE_PASSES) if the user keeps gaining sessions.
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
//!    [a short time](HOLD_MS) on the server's clock), updates and touches of it wait instead
//!    of changing it, so a busy session cannot starve its rename; the hold lapses by itself
//!    if the renaming process dies.
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

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ScriptInvocation, Value};
use async_trait::async_trait;
use time::OffsetDateTime;

use super::millis::{from_millis, millis};
use super::stats::{Payloads, SampledRecord, StatsBuilder};
use super::{
    ExpiredBatch, RecordCounts, SessionStore, Stats, StatsOptions, StoreError, Updated, UserIndex,
};
use crate::id::StorageKey;
use crate::record::{Change, Data, ExpiryChange, Record, RESERVED_PREFIX};

mod connection;
mod scripts;
#[cfg(test)]
mod tests;

use connection::{Connection, RESPONSE_TIMEOUT};

/// The default key prefix.
const DEFAULT_PREFIX: &str = "tidysession:";

/// How long connecting may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a rename starts over after concurrent writes before it gives up: a cluster
/// rename whose old record changed, a single-server rename whose record changed user.
const RENAME_ATTEMPTS: usize = 32;

/// How long a cluster rename holds the old record against writes, in milliseconds of the
/// server's clock. A rename takes a few round trips; the hold only outlives it if the
/// renaming process dies.
const HOLD_MS: u64 = 2_000;

/// How long a write waits for a rename's hold before giving up (longer than any hold).
const WAIT_LIMIT: Duration = Duration::from_millis(2 * HOLD_MS);

/// The first pause before another look at a held record; each further pause doubles, up to
/// [`WAIT_MAX`].
const WAIT_FIRST: Duration = Duration::from_millis(2);

/// The longest pause between two looks at a held record.
const WAIT_MAX: Duration = Duration::from_millis(50);

/// Keys looked at per `SCAN` step when counting.
const SCAN_BATCH: usize = 500;

/// How many times revoking a user's sessions reads the user's index again to find sessions
/// renamed while it ran, before it gives up.
const REVOKE_PASSES: usize = 32;

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
///     .key_prefix("myapp:session:");
/// let cluster = RedisStore::connect_cluster(&["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .await?;
/// # Ok(()) }
/// ```
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

/// The connection: one server over plain TCP through the store's own [`Connection`], one
/// server otherwise (TLS, a Unix socket, RESP3) through the `redis` crate's reconnecting
/// manager, or a cluster.
#[derive(Clone)]
enum Conn {
    Single(Connection),
    Managed(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    fn kind(&self) -> &'static str {
        match self {
            Conn::Single(_) | Conn::Managed(_) => "single",
            Conn::Cluster(_) => "cluster",
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => Box::pin(async move {
                let mut replies = c.send(cmd.get_packed_command(), 0, 1).await?;
                Ok(replies.pop().unwrap_or(Value::Nil))
            }),
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => {
                Box::pin(async move { c.send(cmd.get_packed_pipeline(), offset, count).await })
            }
            Conn::Managed(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.db(),
            Conn::Managed(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
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
    /// [key prefix](Self::key_prefix); other query parameters go to the `redis` crate's
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
            Some(prefix) => store.key_prefix(prefix),
            None => store,
        })
    }

    async fn connect_single(url: &str) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(url).map_err(StoreError::backend)?;
        let info = client.get_connection_info();
        let target = format!("{}/{}", info.addr(), info.redis_settings().db());
        let conn = if Connection::supports(info) {
            Conn::Single(
                Connection::open(info, CONNECT_TIMEOUT)
                    .await
                    .map_err(StoreError::backend)?,
            )
        } else {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                // The crate's default, 500 ms, fails requests on a briefly busy server.
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                // One reconnect attempt per failure: while Redis is down, a request fails
                // within a few hundred milliseconds rather than stalling for seconds.
                .set_number_of_retries(1);
            Conn::Managed(
                ConnectionManager::new_with_config(client, config)
                    .await
                    .map_err(StoreError::backend)?,
            )
        };
        Ok(Self {
            conn,
            prefix: DEFAULT_PREFIX.to_owned(),
            target,
            #[cfg(test)]
            faults: tests::Faults::default(),
        })
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
        let mut target = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let client = ::redis::Client::open(*node).map_err(StoreError::backend)?;
            target.push(client.get_connection_info().addr().to_string());
        }
        // Without a response timeout (the crate's default) a hung node stalls requests.
        let client = ClusterClientBuilder::new(nodes)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(StoreError::backend)?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(StoreError::backend)?;
        Ok(Self {
            conn: Conn::Cluster(conn),
            prefix: DEFAULT_PREFIX.to_owned(),
            target: target.join(","),
            #[cfg(test)]
            faults: tests::Faults::default(),
        })
    }

    /// Files sessions under keys starting with `prefix` instead of `tidysession:`, e.g. to
    /// share one Redis between applications. No I/O.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
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

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Files `key`, expiring at `expires_ms`, in `user`'s index, before the operation that
    /// files the record itself (see the [module docs](self#user-index)). Never lowers an
    /// entry's score.
    async fn index_add(
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
    async fn index_extend(&self, key: &StorageKey, filed: Filed, indexed: Option<(&str, i64)>) {
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
    async fn index_remove(&self, key: &StorageKey, filed: Filed) {
        let Some(user) = user_of(&filed.user) else {
            return;
        };
        let result = ::redis::cmd("ZREM")
            .arg(self.user_index_key(&user))
            .arg(key.to_hex())
            .query_async::<Value>(&mut self.conn())
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "session deleted, but dropping its user index entry failed");
        }
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

    fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// Runs a script and reads its status reply.
    async fn run(
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
    async fn read(
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
    async fn moved_to(&self, old: &[u8], copy: &[u8]) -> Result<bool, StoreError> {
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
    async fn settle(&self, key: &StorageKey, old: &[u8]) -> Result<bool, StoreError> {
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
    async fn run_settling(
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

    /// Rename on a single server: one script over both keys.
    async fn rename_single(
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
    async fn rename_cluster(
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
            return Err(StoreError::backend(BadReply("SETTLE (a test's fault)")));
        }
        let mut invocation = scripts::SETTLE.key(&step.new_key);
        invocation.arg(&step.old_key);
        self.run(&invocation, step.to).await.map(drop)
    }

    /// Counts live records among `keys` (all on the node `route` names, if any).
    async fn count_batch(
        &self,
        keys: &[Vec<u8>],
        route: Option<&SingleNodeRoutingInfo>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut pipe = ::redis::pipe();
        // A key under the prefix that is not a hash is no session; it must not fail the count.
        pipe.ignore_errors();
        for k in keys {
            // A tombstone has neither field, so it never counts.
            pipe.cmd("HMGET").arg(k).arg("m:expires").arg("m:pending");
        }
        let replies = match (&self.conn, route) {
            (Conn::Cluster(c), Some(route)) => c
                .clone()
                .route_pipeline(pipe, 0, keys.len(), route.clone())
                .await
                .map_err(StoreError::backend)?,
            _ => pipe
                .query_async::<Vec<Value>>(&mut self.conn())
                .await
                .map_err(StoreError::backend)?,
        };
        let now = millis(now);
        let mut live = 0;
        for (key, reply) in keys.iter().zip(replies) {
            let fields = match reply {
                Value::Array(fields) => fields,
                // Not a hash (or gone between SCAN and HMGET): not a session.
                _ => continue,
            };
            let expires = fields.first().and_then(bytes).and_then(parse_i64);
            let pending = fields.get(1).and_then(bytes);
            if expires.is_none_or(|e| e <= now) {
                continue;
            }
            if let Some(old) = pending {
                if !self.moved_to(old, key).await? {
                    continue;
                }
            }
            live += 1;
        }
        Ok(live)
    }

    /// One `SCAN` step of keys matching `pattern` on one node (or the single server): the
    /// next cursor and the keys found.
    async fn scan_step(
        &self,
        route: Option<&SingleNodeRoutingInfo>,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut scan = ::redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_BATCH);
        let reply = match (&self.conn, route) {
            (Conn::Cluster(c), Some(route)) => c
                .clone()
                .route_command(scan, RoutingInfo::SingleNode(route.clone()))
                .await
                .map_err(StoreError::backend)?,
            _ => scan
                .query_async::<Value>(&mut self.conn())
                .await
                .map_err(StoreError::backend)?,
        };
        scan_reply(reply)
    }

    /// Scans the keys under the prefix on one node (or the single server) and counts the
    /// live ones.
    async fn count_node(
        &self,
        route: Option<SingleNodeRoutingInfo>,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor = 0u64;
        let mut live = 0;
        loop {
            let (next, keys) = self.scan_step(route.as_ref(), cursor, &pattern).await?;
            live += self.count_batch(&keys, route.as_ref(), now).await?;
            if next == 0 {
                return Ok(live);
            }
            cursor = next;
        }
    }

    /// Reads up to `want` session hashes under the prefix on one node (or the single server),
    /// in `SCAN` order; also says whether the scan saw every key.
    async fn sample_node(
        &self,
        route: Option<SingleNodeRoutingInfo>,
        want: usize,
    ) -> Result<(Vec<Stored>, bool), StoreError> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor = 0u64;
        let mut keys = Vec::new();
        let mut finished = false;
        while keys.len() < want {
            let (next, found) = self.scan_step(route.as_ref(), cursor, &pattern).await?;
            // Session hashes only: the prefix and 64 hex digits (not user indexes).
            keys.extend(found.into_iter().filter(|k| {
                k.len() == self.prefix.len() + 64
                    && k[self.prefix.len()..].iter().all(u8::is_ascii_hexdigit)
            }));
            if next == 0 {
                finished = true;
                break;
            }
            cursor = next;
        }
        if keys.len() > want {
            keys.truncate(want);
            finished = false;
        }
        let mut stored = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(SCAN_BATCH) {
            let mut pipe = ::redis::pipe();
            pipe.ignore_errors();
            for k in chunk {
                pipe.cmd("HGETALL").arg(k);
            }
            let replies = match (&self.conn, &route) {
                (Conn::Cluster(c), Some(route)) => c
                    .clone()
                    .route_pipeline(pipe, 0, chunk.len(), route.clone())
                    .await
                    .map_err(StoreError::backend)?,
                _ => pipe
                    .query_async::<Vec<Value>>(&mut self.conn())
                    .await
                    .map_err(StoreError::backend)?,
            };
            // The key only names a record in errors, which are skipped here.
            let key = StorageKey::from_bytes([0; 32]);
            stored.extend(
                replies
                    .into_iter()
                    .filter_map(|reply| Stored::decode(&key, reply).ok().flatten()),
            );
        }
        Ok((stored, finished))
    }

    /// The cluster's masters, as routes to each.
    async fn masters(
        &self,
        conn: &ClusterConnection,
    ) -> Result<Vec<SingleNodeRoutingInfo>, StoreError> {
        // A command sent to every master without a response policy answers with a map from
        // each node's address to its reply.
        let reply = conn
            .clone()
            .route_command(
                ::redis::cmd("PING"),
                RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
            )
            .await
            .map_err(StoreError::backend)?;
        let Value::Map(nodes) = reply else {
            return Err(StoreError::backend(BadReply("PING to every master")));
        };
        nodes
            .into_iter()
            .map(|(addr, _)| {
                let addr = bytes(&addr).and_then(|b| std::str::from_utf8(b).ok());
                let (host, port) = addr
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(h, p)| Some((h, p.parse().ok()?)))
                    .ok_or_else(|| StoreError::backend(BadReply("cluster node address")))?;
                Ok(SingleNodeRoutingInfo::ByAddress {
                    host: host.to_owned(),
                    port,
                })
            })
            .collect()
    }
}

/// Appends the arguments of an update or rename script: now, the reserved prefix, the
/// expiry change, `sixth` (the update's "report the user" flag, the user field a rename
/// expects) and the key changes.
fn change_args(
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
        Some(ExpiryChange::Extend(at)) => invocation.arg("extend").arg(millis(at)).arg(grace(at)),
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
fn create_args(
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

/// The node URLs of `redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT,...[/][?QUERY]`
/// (given without the scheme): `redis://[USER:PASSWORD@]HOST:PORT[?QUERY]` each.
fn cluster_nodes(rest: &str) -> Option<Vec<String>> {
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(|host| format!("redis://{userinfo}{host}{query}"))
        .collect();
    let valid = hosts.split(',').all(|h| !h.is_empty() && !h.contains('/'));
    valid.then_some(nodes)
}

/// A Redis URL that cannot be parsed (not echoed: it may hold a password).
#[derive(Debug, thiserror::Error)]
#[error("invalid Redis URL")]
struct InvalidUrl;

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

/// A write's wait for a held record: pauses that double from [`WAIT_FIRST`] up to
/// [`WAIT_MAX`], for at most [`WAIT_LIMIT`] in all.
struct Waiting {
    deadline: Instant,
    pause: Duration,
}

impl Waiting {
    fn new() -> Self {
        Self {
            deadline: Instant::now() + WAIT_LIMIT,
            pause: WAIT_FIRST,
        }
    }

    /// Waits a moment, or fails once the limit has passed.
    async fn wait(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(StoreError::backend(HeldTooLong));
        }
        tokio::time::sleep(self.pause.min(self.deadline - now)).await;
        self.pause = (self.pause * 2).min(WAIT_MAX);
        Ok(())
    }
}

/// What the hold script answered.
enum Held {
    Record(Stored),
    Status(Status),
}

/// Decodes the hold script's reply: `{1, field, value, ...}` or a status.
fn held_record(key: &StorageKey, reply: Value) -> Result<Held, StoreError> {
    match reply {
        Value::Array(mut items) if matches!(items.first(), Some(Value::Int(1))) => {
            items.remove(0);
            match Stored::decode(key, Value::Array(items))? {
                Some(stored) => Ok(Held::Record(stored)),
                None => Err(corrupt(key, "held record without fields")),
            }
        }
        reply => Status::from_reply(key, reply).map(Held::Status),
    }
}

/// What a script answered.
#[derive(Debug)]
enum Status {
    /// 1: done (created, kept, moved, deleted).
    Done,
    /// 0: missing or expired.
    Gone,
    /// 2: the update left no data, so the record was deleted.
    Emptied,
    /// 3: a pending copy of the record under this Redis key.
    Pending(Vec<u8>),
    /// 4: a live record is already there.
    Duplicate,
    /// 5: the record changed since it was read, or another rename holds it.
    Changed,
    /// 6: a cluster rename holds the record.
    Busy,
    /// -2: the second key does not hold a session hash.
    CorruptSecond,
    /// `{1, user, expiry}`: done, and the record is (or was, for a delete) filed under a user.
    Filed(Filed),
    /// 7: a rename found another user field than it expected; nothing was changed.
    OtherUser(Filed),
}

/// A record's user field (raw JSON, or empty for none) and its expiry, as a script reports
/// them.
#[derive(Debug)]
struct Filed {
    user: Vec<u8>,
    expires_ms: i64,
}

impl Status {
    fn from_reply(key: &StorageKey, reply: Value) -> Result<Self, StoreError> {
        let bad = || StoreError::backend(BadReply("script status"));
        let Value::Array(items) = reply else {
            return Err(bad());
        };
        let code = match items.first() {
            Some(Value::Int(code)) => *code,
            _ => return Err(bad()),
        };
        let filed = || -> Result<Filed, StoreError> {
            Ok(Filed {
                user: items.get(1).and_then(bytes).ok_or_else(bad)?.to_vec(),
                expires_ms: items
                    .get(2)
                    .and_then(bytes)
                    .and_then(parse_i64)
                    .ok_or_else(bad)?,
            })
        };
        Ok(match code {
            1 if items.len() > 1 => Status::Filed(filed()?),
            1 => Status::Done,
            0 => Status::Gone,
            2 => Status::Emptied,
            3 => Status::Pending(items.get(1).and_then(bytes).ok_or_else(bad)?.to_vec()),
            4 => Status::Duplicate,
            5 => Status::Changed,
            6 => Status::Busy,
            7 => Status::OtherUser(filed()?),
            -1 => return Err(corrupt(key, "not a session hash")),
            -2 => Status::CorruptSecond,
            _ => return Err(bad()),
        })
    }

    /// The error for a status the operation cannot produce.
    fn unexpected(self, key: &StorageKey) -> StoreError {
        match self {
            Status::CorruptSecond => corrupt(key, "not a session hash"),
            _ => StoreError::backend(BadReply("unexpected script status")),
        }
    }
}

/// A record's hash, decoded.
struct Stored {
    record: Record,
    expires_ms: i64,
    /// `m:version`, compared as the server stores it.
    version: Vec<u8>,
    /// `m:pending`: this is a copy made by an unfinished cluster rename from that Redis key.
    /// (A tombstone, `m:moved_to`, decodes as no record at all.)
    pending: Option<Vec<u8>>,
}

impl Stored {
    /// Decodes an `HGETALL` reply; `None` for a missing key.
    fn decode(key: &StorageKey, reply: Value) -> Result<Option<Self>, StoreError> {
        match &reply {
            Value::Map(pairs) => Self::decode_pairs(key, pairs.iter().map(|(f, v)| (f, v))),
            Value::Array(items) if items.len() % 2 == 0 => {
                Self::decode_pairs(key, items.chunks_exact(2).map(|p| (&p[0], &p[1])))
            }
            Value::Array(_) => Err(corrupt(key, "odd HGETALL reply")),
            Value::Nil => Ok(None),
            _ => Err(StoreError::backend(unexpected_value(reply))),
        }
    }

    /// Decodes the field-value pairs of a hash.
    fn decode_pairs<'v>(
        key: &StorageKey,
        pairs: impl Iterator<Item = (&'v Value, &'v Value)> + Clone,
    ) -> Result<Option<Self>, StoreError> {
        let mut fields = pairs.clone().map(|(f, _)| bytes(f)).peekable();
        if fields.peek().is_none() || fields.any(|f| f == Some(b"m:moved_to".as_slice())) {
            return Ok(None);
        }
        let mut data = Data::new();
        let (mut created, mut expires, mut version, mut pending) = (None, None, Vec::new(), None);
        for (f, v) in pairs {
            let (Some(f), Some(v)) = (bytes(f), bytes(v)) else {
                return Err(corrupt(key, "non-string hash field"));
            };
            if let Some(name) = f.strip_prefix(b"d:") {
                let name =
                    std::str::from_utf8(name).map_err(|_| corrupt(key, "data key is not UTF-8"))?;
                let value = serde_json::from_slice(v)
                    .map_err(|e| corrupt(key, &format!("value of {name:?} is not JSON: {e}")))?;
                data.insert(name.to_owned(), value);
                continue;
            }
            match f {
                b"m:created" => created = parse_i64(v),
                b"m:expires" => expires = parse_i64(v),
                b"m:version" => version = v.to_vec(),
                b"m:pending" => pending = Some(v.to_vec()),
                // Metadata a later version may add is not an error.
                f if f.starts_with(b"m:") => {}
                _ => return Err(corrupt(key, "unknown hash field")),
            }
        }
        let created = created.ok_or_else(|| corrupt(key, "no valid m:created"))?;
        let expires_ms = expires.ok_or_else(|| corrupt(key, "no valid m:expires"))?;
        Ok(Some(Stored {
            record: Record {
                data,
                created_at: from_millis(key, created)?,
                expires_at: from_millis(key, expires_ms)?,
            },
            expires_ms,
            version,
            pending,
        }))
    }
}

/// The hash field of a session data key.
fn field(key: &str) -> String {
    format!("d:{key}")
}

/// The time Redis drops the hash of a record expiring at `t`.
fn grace(t: OffsetDateTime) -> i64 {
    millis(t).saturating_add(RedisStore::EXPIRY_GRACE_MS)
}

/// The expiry an index entry gets before a write that files a record (Unix milliseconds):
/// the one the change names, and never earlier than now, so the entry outlives the write
/// that reports the record's real expiry.
fn provisional_expiry(change: &Change, now: OffsetDateTime) -> i64 {
    let now = millis(now).max(millis(OffsetDateTime::now_utc()));
    match change.expiry {
        Some(ExpiryChange::Extend(t) | ExpiryChange::Set(t)) => millis(t).max(now),
        None => now,
    }
}

/// A record's expiry after `change`, given its current one (Unix milliseconds).
fn expiry_after(change: &Change, current: i64) -> i64 {
    match change.expiry {
        None => current,
        Some(ExpiryChange::Extend(t)) => millis(t).max(current),
        Some(ExpiryChange::Set(t)) => millis(t),
    }
}

/// The user a raw user field names: a JSON string's value; `None` for anything else.
fn user_of(raw: &[u8]) -> Option<String> {
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

fn corrupt(key: &StorageKey, reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: *key,
        reason: reason.to_owned(),
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Escapes glob characters so `SCAN MATCH` takes the prefix literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Decodes a `SCAN` reply: the next cursor and the keys.
fn scan_reply(reply: Value) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
    let bad = || StoreError::backend(BadReply("SCAN"));
    let Value::Array(mut items) = reply else {
        return Err(bad());
    };
    if items.len() != 2 {
        return Err(bad());
    }
    let keys = match items.pop() {
        Some(Value::Array(keys)) => keys
            .iter()
            .map(|k| bytes(k).map(<[u8]>::to_vec).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad()),
    };
    let cursor = items
        .first()
        .and_then(bytes)
        .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
        .ok_or_else(bad)?;
    Ok((cursor, keys))
}

/// Maps a Redis error: a key holding something other than a hash is a corrupt record, the
/// rest are backend failures.
fn redis_error(key: &StorageKey, e: RedisError) -> StoreError {
    if is_wrong_type(&e) {
        return corrupt(key, "the key does not hold a hash");
    }
    StoreError::backend(e)
}

/// Whether Redis refused a command because the key holds another type.
fn is_wrong_type(e: &RedisError) -> bool {
    e.code() == Some("WRONGTYPE")
        || e.detail().is_some_and(|d| d.contains("WRONGTYPE"))
        || e.to_string().contains("WRONGTYPE")
}

fn unexpected_value(v: Value) -> RedisError {
    RedisError::from((
        ErrorKind::Parse,
        "unexpected reply",
        format!("{v:?}").chars().take(100).collect::<String>(),
    ))
}

/// Redis answered in a shape the store does not expect.
#[derive(Debug, thiserror::Error)]
#[error("unexpected Redis reply to {0}")]
struct BadReply(&'static str);

/// A write waited longer than any rename holds a record.
#[derive(Debug, thiserror::Error)]
#[error("the session stayed held by a rename for too long")]
struct HeldTooLong;

/// A rename kept losing to concurrent writes of the same session.
#[derive(Debug, thiserror::Error)]
#[error("rename gave up after {RENAME_ATTEMPTS} attempts: the session kept changing")]
struct RenameContended;

/// Revoking a user's sessions kept finding new ones in the user's index.
#[derive(Debug, thiserror::Error)]
#[error("revoking gave up after {REVOKE_PASSES} passes: the user's sessions kept changing")]
struct RevokeContended;

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
        let live = match &self.conn {
            Conn::Single(_) | Conn::Managed(_) => self.count_node(None, now).await?,
            Conn::Cluster(conn) => {
                let mut live = 0;
                for master in self.masters(conn).await? {
                    live += self.count_node(Some(master), now).await?;
                }
                live
            }
        };
        Ok(RecordCounts { live, expired: 0 })
    }

    fn removes_expired_itself(&self) -> bool {
        true
    }

    fn user_index(&self) -> Option<&dyn UserIndex> {
        Some(self)
    }

    /// The live count from a full `SCAN` ([`count`](SessionStore::count)); the rest from the
    /// first hashes `SCAN` returns (on a cluster, an equal share from each master). Expired
    /// hashes are dropped by Redis, so none are counted.
    async fn stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let counts = self.count(now).await?;
        let want = usize::try_from(options.sample_size.max(1)).unwrap_or(usize::MAX);
        let (stored, finished) = match &self.conn {
            Conn::Single(_) | Conn::Managed(_) => self.sample_node(None, want).await?,
            Conn::Cluster(conn) => {
                let masters = self.masters(conn).await?;
                let share = want.div_ceil(masters.len().max(1));
                let mut all = Vec::new();
                let mut finished = true;
                for master in masters {
                    let (stored, done) = self.sample_node(Some(master), share).await?;
                    all.extend(stored);
                    finished &= done;
                }
                (all, finished)
            }
        };
        let mut builder = StatsBuilder::new(now, counts, *options);
        // Copies of an unfinished cluster rename are not sessions.
        let sessions = stored.into_iter().filter(|s| s.pending.is_none());
        let mut sampled = 0u64;
        for s in sessions {
            // A hash past its expiry but inside the grace is no session either.
            if s.record.expires_at <= now {
                continue;
            }
            sampled += 1;
            let bytes = serde_json::to_string(&s.record.data).map_or(0, |j| j.len() as u64);
            builder.add(SampledRecord {
                bytes,
                data: Some(s.record.data),
                created_at: Some(s.record.created_at),
                expires_at: s.record.expires_at,
            });
        }
        let method = match finished {
            true => "every key (SCAN)".to_owned(),
            false => format!("the first {sampled} session hashes SCAN returned"),
        };
        Ok(Some(builder.finish(
            format!("Redis keys {}*", self.prefix),
            method,
            Payloads::Plain,
            true,
        )))
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
            let mut zrem = ::redis::cmd("ZREM");
            zrem.arg(self.user_index_key(user));
            for key in &settled {
                zrem.arg(key.to_hex());
            }
            zrem.query_async::<Value>(&mut self.conn())
                .await
                .map_err(StoreError::backend)?;
        }
        Ok(count)
    }
}
