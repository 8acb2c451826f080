//! Counting and sampling the store's records by `SCAN`, node by node on a cluster.

use ::redis::cluster_routing::SingleNodeRoutingInfo;
use ::redis::Value;
use time::OffsetDateTime;

use super::reply::{bytes, parse_i64, scan_reply, Stored};
use super::RedisStore;
use crate::id::StorageKey;
use crate::store::millis::millis;
use crate::store::stats::{Payloads, SampledRecord, StatsBuilder};
use crate::store::{RecordCounts, Stats, StatsOptions, StoreError};

/// Keys looked at per `SCAN` step when counting.
const SCAN_BATCH: usize = 500;

impl RedisStore {
    /// [`count`](crate::store::Maintenance::count): every key under the prefix, scanned.
    pub(super) async fn count_live(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        let mut live = 0;
        for route in self.conn.nodes().await? {
            live += self.count_node(route, now).await?;
        }
        Ok(RecordCounts { live, expired: 0 })
    }

    /// [`stats`](crate::store::Maintenance::stats): the live count and figures from the
    /// first hashes `SCAN` returns.
    pub(super) async fn sampled_stats(
        &self,
        now: OffsetDateTime,
        options: &StatsOptions,
    ) -> Result<Option<Stats>, StoreError> {
        let counts = self.count_live(now).await?;
        let want = usize::try_from(options.sample_size.max(1)).unwrap_or(usize::MAX);
        // On a cluster, an equal share from each master.
        let routes = self.conn.nodes().await?;
        let share = want.div_ceil(routes.len().max(1));
        let (mut stored, mut finished) = (Vec::new(), true);
        for route in routes {
            let (found, done) = self.sample_node(route, share).await?;
            stored.extend(found);
            finished &= done;
        }
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
        let replies = self.conn.pipeline_on(route, pipe, keys.len()).await?;
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
        scan_reply(self.conn.command_on(route, scan).await?)
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
            let replies = self
                .conn
                .pipeline_on(route.as_ref(), pipe, chunk.len())
                .await?;
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
