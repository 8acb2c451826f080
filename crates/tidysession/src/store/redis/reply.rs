//! Decoding what Redis answers: script statuses, session hashes and `SCAN` replies, and
//! Redis errors as store errors.

use ::redis::{ErrorKind, RedisError, Value};

use crate::id::StorageKey;
use crate::record::{Data, Record};
use crate::store::millis::from_millis;
use crate::store::StoreError;

/// What the hold script answered.
pub(super) enum Held {
    Record(Stored),
    Status(Status),
}

/// Decodes the hold script's reply: `{1, field, value, ...}` or a status.
pub(super) fn held_record(key: &StorageKey, reply: Value) -> Result<Held, StoreError> {
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
pub(super) enum Status {
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
pub(super) struct Filed {
    pub(super) user: Vec<u8>,
    pub(super) expires_ms: i64,
}

impl Status {
    pub(super) fn from_reply(key: &StorageKey, reply: Value) -> Result<Self, StoreError> {
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
    pub(super) fn unexpected(self, key: &StorageKey) -> StoreError {
        match self {
            Status::CorruptSecond => corrupt(key, "not a session hash"),
            _ => StoreError::backend(BadReply("unexpected script status")),
        }
    }
}

/// A record's hash, decoded.
pub(super) struct Stored {
    pub(super) record: Record,
    pub(super) expires_ms: i64,
    /// `m:version`, compared as the server stores it.
    pub(super) version: Vec<u8>,
    /// `m:pending`: this is a copy made by an unfinished cluster rename from that Redis key.
    /// (A tombstone, `m:moved_to`, decodes as no record at all.)
    pub(super) pending: Option<Vec<u8>>,
}

impl Stored {
    /// Decodes an `HGETALL` reply; `None` for a missing key.
    pub(super) fn decode(key: &StorageKey, reply: Value) -> Result<Option<Self>, StoreError> {
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

pub(super) fn corrupt(key: &StorageKey, reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: *key,
        reason: reason.to_owned(),
    }
}

pub(super) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

pub(super) fn parse_i64(b: &[u8]) -> Option<i64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Decodes a `SCAN` reply: the next cursor and the keys.
pub(super) fn scan_reply(reply: Value) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
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
pub(super) fn redis_error(key: &StorageKey, e: RedisError) -> StoreError {
    if is_wrong_type(&e) {
        return corrupt(key, "the key does not hold a hash");
    }
    StoreError::backend(e)
}

/// Whether Redis refused a command because the key holds another type.
pub(super) fn is_wrong_type(e: &RedisError) -> bool {
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
pub(super) struct BadReply(pub(super) &'static str);
