//! The Lua scripts behind [`RedisStore`](super::RedisStore). Each runs atomically on the
//! server; all but [`RENAME`] touch exactly one key, so they work on Redis Cluster.
//!
//! Shared conventions: data fields are `d:<key>`, metadata fields `m:*` (see the module docs).
//! Times are Unix milliseconds passed as decimal strings; the caller also passes "time plus
//! the grace" for `PEXPIREAT`, so no session script formats a number. (The user index scripts
//! pass numbers to `redis.call`, which Redis formats exactly for integers below 2^53.)
//! Statuses are the first element of the reply array: see [`Status`](super::reply::Status).

use std::sync::LazyLock;

use redis::Script;

use crate::record::USER_KEY;

/// `filed_user(key)`: the record's user field (raw JSON) when it names a user, i.e. holds a
/// JSON string; otherwise nil.
fn filed_user() -> String {
    format!(
        r#"
local function filed_user(key)
  local u = redis.call('HGET', key, 'd:{USER_KEY}')
  if u and string.sub(u, 1, 1) == '"' then return u end
  return nil
end
"#
    )
}

/// For [`UPDATE`] and [`RENAME`]: whether the change moves the expiry (`moved`), from the
/// expiry mode `ARGV[3]` and the expiry `ARGV[4]`, given the stored expiry `exp`.
const MOVED: &str = r#"
local mode = ARGV[3]
local moved = mode == 'set' or (mode == 'extend' and tonumber(ARGV[4]) > exp)
"#;

/// Reads a record's metadata in one call and checks it is live. Sets `exp` (the stored expiry
/// as a number), `pending` (the old key of a pending copy, or false) and `held_until` (the end
/// of a cluster rename's hold, or nil), or returns early: `{0}` missing, expired or a
/// tombstone, `{-1}` corrupt (no expiry field). `KEYS[1]` is the record, `ARGV[1]` is now.
const PREAMBLE: &str = r#"
local k = KEYS[1]
local meta = redis.call('HMGET', k, 'm:expires', 'm:pending', 'm:moving_until')
local raw = meta[1]
if not raw then
  if redis.call('EXISTS', k) == 1 and redis.call('HEXISTS', k, 'm:moved_to') == 0 then
    return {-1}
  end
  return {0}
end
local exp = tonumber(raw)
if not exp then return {-1} end
if exp <= tonumber(ARGV[1]) then return {0} end
local pending = meta[2]
local held_until = tonumber(meta[3])
"#;

/// Answers `{6}` while a cluster rename holds the record (`m:moving_until`, on the server's
/// clock, not yet past): writes wait for it rather than make it start over.
const NOT_MOVING: &str = r#"
if held_until then
  local t = redis.call('TIME')
  if held_until > tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then return {6} end
end
"#;

/// Whether the hash at `key` holds a data field outside the reserved prefix (`ARGV[2]`).
const HAS_DATA: &str = r#"
local function has_data(key)
  local reserved = ARGV[2]
  for _, f in ipairs(redis.call('HKEYS', key)) do
    if string.sub(f, 1, 2) == 'd:' and string.sub(f, 1, #reserved) ~= reserved then
      return true
    end
  end
  return false
end
"#;

/// Applies removals and sets to `key`, reading `ARGV[first]` = number of removed fields,
/// then the removed fields, then field/value pairs to the end. Returns how many were removed.
const APPLY: &str = r#"
local function apply(key, first)
  local n = tonumber(ARGV[first])
  local i = first + 1
  for _ = 1, n do
    redis.call('HDEL', key, ARGV[i])
    i = i + 1
  end
  while i < #ARGV do
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
    i = i + 2
  end
  return n
end
"#;

/// Create-if-absent. `ARGV`: now, grace-adjusted expiry for `PEXPIREAT`, created, expires,
/// pending (old key name, or "" for none), then field/value pairs.
/// `{1}` created, `{4}` a live record or a tombstone is there (a tombstone's id is spent:
/// reusing it would void the copy it names), `{-1}` corrupt.
/// A live pending copy of the same old key is replaced, so that step 1 of a cluster rename
/// may run again when the client re-sends it (its reply lost on the way).
pub(super) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local k = KEYS[1]
local raw = redis.call('HGET', k, 'm:expires')
if raw then
  local exp = tonumber(raw)
  if not exp then return {-1} end
  if exp > tonumber(ARGV[1]) then
    local pending = redis.call('HGET', k, 'm:pending')
    if ARGV[5] == '' or pending ~= ARGV[5] then return {4} end
  end
elseif redis.call('EXISTS', k) == 1 then
  if redis.call('HEXISTS', k, 'm:moved_to') == 1 then return {4} end
  return {-1}
end
redis.call('DEL', k)
redis.call('HSET', k, 'm:created', ARGV[3], 'm:expires', ARGV[4], 'm:version', '0')
if ARGV[5] ~= '' then redis.call('HSET', k, 'm:pending', ARGV[5]) end
local i = 6
while i < #ARGV do
  redis.call('HSET', k, ARGV[i], ARGV[i + 1])
  i = i + 2
end
redis.call('PEXPIREAT', k, ARGV[2])
return {1}
"#,
    )
});

/// Update-if-exists. `ARGV`: now, reserved data prefix, expiry mode ("", "extend", "set"),
/// expiry, expiry plus grace, "1" when the change files the record under a user (else ""),
/// then the change (see `APPLY`).
/// `{1}` kept, `{1, user, expiry}` kept and filed under `user` (raw JSON) until `expiry`,
/// answered when the expiry moved or `ARGV[6]` is "1", so the caller extends the user's index;
/// `{2}` deleted because no data is left, `{0}` gone, `{3, old}` pending on `old`, `{6}` being
/// moved, `{-1}` corrupt. Never re-creates: a missing key returns before anything is written.
pub(super) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PREAMBLE}{HAS_DATA}{APPLY}{filed_user}
if pending then return {{3, pending}} end
{NOT_MOVING}{MOVED}
local removed = apply(k, 7)
redis.call('HINCRBY', k, 'm:version', 1)
if removed > 0 and not has_data(k) then
  redis.call('DEL', k)
  return {{2}}
end
-- Read the user before the expiry: PEXPIREAT deletes the key when the expiry plus the
-- grace is already past on the server's clock, and nothing may write to it after that.
local u = nil
if moved or ARGV[6] ~= '' then u = filed_user(k) end
if moved then
  raw = ARGV[4]
  redis.call('HSET', k, 'm:expires', raw)
  redis.call('PEXPIREAT', k, ARGV[5])
end
if u then return {{1, u, raw}} end
return {{1}}
"#,
        filed_user = filed_user()
    ))
});

/// Touch: moves the expiry later, never earlier. `ARGV`: now, expiry, expiry plus grace.
/// `{1}` done, `{1, user, expiry}` done and the expiry of a record filed under `user` (raw
/// JSON) moved to `expiry`, `{0}` gone, `{3, old}` pending, `{6}` being moved, `{-1}` corrupt.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PREAMBLE}{filed_user}
if pending then return {{3, pending}} end
{NOT_MOVING}
if tonumber(ARGV[2]) > exp then
  local u = filed_user(k)
  redis.call('HSET', k, 'm:expires', ARGV[2])
  redis.call('HINCRBY', k, 'm:version', 1)
  redis.call('PEXPIREAT', k, ARGV[3])
  if u then return {{1, u, ARGV[2]}} end
end
return {{1}}
"#,
        filed_user = filed_user()
    ))
});

/// Rename on a single server, both keys in one script. `KEYS`: from, to. `ARGV` as for
/// [`UPDATE`], except `ARGV[6]`: the user field (raw JSON, "" for none) the caller expects
/// `from` to hold and has indexed `to` under, or "-" when the change sets the user itself.
/// `{1}` moved, `{1, user, expiry}` moved and filed under `user` (raw JSON) until `expiry`,
/// `{0}` from is gone (or the change emptied it: then it is deleted), `{4}` a live record or
/// a tombstone is under `to`, `{7, user, expiry}` nothing done: `from` holds another user
/// field (`user`, "" for none) than expected, and expires at `expiry`; `{-1}`/`{-2}` from/to
/// corrupt.
pub(super) static RENAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PREAMBLE}{HAS_DATA}{APPLY}{filed_user}
local to = KEYS[2]
local to_raw = redis.call('HGET', to, 'm:expires')
if to_raw then
  local to_exp = tonumber(to_raw)
  if not to_exp then return {{-2}} end
  if to_exp > tonumber(ARGV[1]) then return {{4}} end
elseif redis.call('EXISTS', to) == 1 then
  if redis.call('HEXISTS', to, 'm:moved_to') == 1 then return {{4}} end
  return {{-2}}
end
if ARGV[6] ~= '-' then
  local user = redis.call('HGET', k, 'd:{USER_KEY}') or ''
  if user ~= ARGV[6] then return {{7, user, raw}} end
end
{MOVED}
local removed = apply(k, 7)
if removed > 0 and not has_data(k) then
  redis.call('DEL', k)
  return {{0}}
end
redis.call('HINCRBY', k, 'm:version', 1)
local u = filed_user(k)
if moved then
  raw = ARGV[4]
  redis.call('HSET', k, 'm:expires', raw)
end
-- RENAME carries the TTL along and replaces an expired record under `to`.
redis.call('RENAME', k, to)
if moved then redis.call('PEXPIREAT', to, ARGV[5]) end
if u then return {{1, u, raw}} end
return {{1}}
"#,
        filed_user = filed_user()
    ))
});

/// Cluster rename, step 0: holds the record for a rename (`ARGV[2]`, the new Redis key) for
/// `ARGV[3]` milliseconds of the server's clock and reads it. `ARGV[1]` is now.
/// `{1, field, value, ...}` held (the hash follows), `{0}` gone, `{3, old}` pending,
/// `{6}` held by another rename, `{-1}` corrupt.
pub(super) static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{PREAMBLE}
if pending then return {{3, pending}} end
if redis.call('HGET', k, 'm:moving') ~= ARGV[2] then
{NOT_MOVING}
end
local t = redis.call('TIME')
local held = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('HSET', k, 'm:moving', ARGV[2], 'm:moving_until', held)
local reply = redis.call('HGETALL', k)
table.insert(reply, 1, 1)
return reply
"#
    ))
});

/// Releases a hold taken by [`HOLD`] for `ARGV[1]`, if it is still that rename's. `{1}`/`{0}`.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'm:moving') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'm:moving', 'm:moving_until')
  return {1}
end
return {0}
"#,
    )
});

/// Cluster rename, step 2: replaces the old record with a tombstone naming the copy, only
/// if this rename still holds it (`m:moving` is `ARGV[2]`, the new Redis key) and its version
/// is still `ARGV[1]`. The tombstone is a hash with the one field `m:moved_to` = `ARGV[2]`,
/// dropped by Redis at `ARGV[3]` (the copy's expiry plus the grace), by when the copy has
/// expired too. With `ARGV[3]` = "" (the change emptied the record, there is no copy) the
/// record is only deleted.
///
/// `{1}` done, `{0}` missing or moved elsewhere, `{5}` changed since it was read or held by
/// another rename. Running it again after it succeeded (the client re-sends a command whose
/// reply was lost) finds its own tombstone and answers `{1}` again.
pub(super) static DELETE_IF_VERSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local k = KEYS[1]
local moved_to = redis.call('HGET', k, 'm:moved_to')
if moved_to then
  if moved_to == ARGV[2] then return {1} end
  return {0}
end
if redis.call('EXISTS', k) == 0 then return {0} end
if redis.call('HGET', k, 'm:moving') ~= ARGV[2] then return {5} end
local v = redis.call('HGET', k, 'm:version') or ''
if v ~= ARGV[1] then return {5} end
redis.call('DEL', k)
if ARGV[3] ~= '' then
  redis.call('HSET', k, 'm:moved_to', ARGV[2])
  redis.call('PEXPIREAT', k, ARGV[3])
end
return {1}
"#,
    )
});

/// Clears the pending mark if it still names `ARGV[1]`: the caller saw the old record's
/// tombstone name this copy, so the copy is the record now. `{1}` cleared, `{0}` nothing to do.
pub(super) static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'm:pending') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'm:pending')
  return {1}
end
return {0}
"#,
    )
});

/// Deletes a pending copy of `ARGV[1]` (a rename attempt that lost). `{1}` deleted, `{0}` not.
pub(super) static DROP_PENDING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], 'm:pending') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1}
end
return {0}
"#,
    )
});

/// Deletes a record (or anything else under the key) unless it is a tombstone: a tombstone
/// stands for no session, and the pending copy it names may still need it. `{1}` deleted,
/// `{1, user, expiry}` deleted a settled record filed under `user` (raw JSON), so the caller
/// may drop its index entry, `{0}` nothing deleted. (A pending copy's entry stays: its rename
/// may start over and file the key again.)
pub(super) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{filed_user}
local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'hash' then return {{redis.call('DEL', k)}} end
local meta = redis.call('HMGET', k, 'm:moved_to', 'm:pending', 'm:expires')
if meta[1] then return {{0}} end
local u = nil
if not meta[2] then u = filed_user(k) end
redis.call('DEL', k)
if u then return {{1, u, meta[3] or '0'}} end
return {{1}}
"#,
        filed_user = filed_user()
    ))
});

/// Adds a session to a user's index (`KEYS[1]`, a sorted set): `ARGV[1]` the session's key in
/// hex, scored by `ARGV[2]`, when Redis drops its hash (never lowered: `GT`). First drops
/// members whose score has passed on the server's clock: their hashes are gone. The index key
/// then expires with its latest member. `{1}`.
pub(super) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local k = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
redis.call('ZADD', k, 'GT', ARGV[2], ARGV[1])
local top = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', k, top[2])
return {1}
"#,
    )
});

/// Deletes the record under `KEYS[1]` if it is live at `ARGV[2]` and its user field is
/// exactly `ARGV[1]` (the user as JSON), pending copy or not: revoking a user's sessions
/// checks and deletes in one step. `{1}` deleted, `{3, old}` deleted a pending copy of `old`,
/// `{0}` nothing deleted (missing, expired, a tombstone, not a session hash, another user's).
pub(super) static DELETE_OF_USER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'hash' then return {{0}} end
local meta = redis.call('HMGET', k, 'm:expires', 'm:pending', 'd:{USER_KEY}')
local exp = tonumber(meta[1])
if not exp or exp <= tonumber(ARGV[2]) or meta[3] ~= ARGV[1] then return {{0}} end
redis.call('DEL', k)
if meta[2] then return {{3, meta[2]}} end
return {{1}}
"#
    ))
});
