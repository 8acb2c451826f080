//! What stores keep ([`Record`]) and what a save sends them ([`Change`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Session data: a JSON object, one entry per key.
pub type Data = Map<String, Value>;

/// Keys starting with this prefix belong to tidysession itself (e.g. a per-session expiry).
/// They do not count as data: a session holding only them is empty, and is not stored.
pub const RESERVED_PREFIX: &str = "_tidysession.";

/// The key holding the logged-in user's id, as a JSON string (the name Django uses too). Stores
/// file a record under this user for the [user index](crate::store::UserIndex); the
/// [`auth`](crate::auth) module writes it at login.
pub const USER_KEY: &str = "_auth_user_id";

/// Whether `data` holds no session data: no keys, or only [`RESERVED_PREFIX`] keys. The one
/// rule the layer and every store use for "empty" (I2).
pub fn is_empty(data: &Data) -> bool {
    only_reserved(data.keys())
}

/// The emptiness rule over a set of keys: none but [`RESERVED_PREFIX`] keys.
pub(crate) fn only_reserved<'a>(mut keys: impl Iterator<Item = &'a String>) -> bool {
    keys.all(|k| k.starts_with(RESERVED_PREFIX))
}

/// One stored session.
///
/// # Internal invariant
///
/// A record held by a store is never empty (I2): the layer deletes instead of saving an empty
/// record, and stores delete a record whose update leaves it empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The session's data.
    pub data: Data,
    /// When the session was created; the absolute timeout counts from here.
    pub created_at: OffsetDateTime,
    /// When the session expires unless touched or updated before then.
    pub expires_at: OffsetDateTime,
}

impl Record {
    /// Whether the record is still valid at `now`: not past its expiry, and not older than
    /// `absolute` since creation (I9, checked on every load whatever cleanup has done).
    pub fn is_live(&self, now: OffsetDateTime, absolute: time::Duration) -> bool {
        now < self.expires_at && now < plus(self.created_at, absolute)
    }

    /// The user the record is filed under: its [`USER_KEY`] value, when that is a string.
    pub fn user(&self) -> Option<&str> {
        self.data.get(USER_KEY).and_then(Value::as_str)
    }
}

/// What one save changes: the keys set (with their new values), the keys removed, and the new
/// expiry. Stores apply it atomically to the record as it is *now*, so two requests that change
/// different keys both survive (I5).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// Keys set to a new value.
    pub set: BTreeMap<String, Value>,
    /// Keys removed.
    pub removed: BTreeSet<String>,
    /// The new expiry, when it changes.
    pub expiry: Option<ExpiryChange>,
}

/// How a [`Change`] moves a record's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryChange {
    /// A touch: move it to this time if that is later, never earlier (I9). A slow request
    /// that finishes after a faster one cannot shorten the session.
    Touch(OffsetDateTime),
    /// Set exactly this time, earlier or later: the handler asked for it
    /// ([`Session::set_expiry`](crate::Session::set_expiry)).
    Set(OffsetDateTime),
}

impl ExpiryChange {
    /// The record's expiry after the change, given its current one.
    pub fn apply_to(self, current: OffsetDateTime) -> OffsetDateTime {
        match self {
            ExpiryChange::Touch(t) => t.max(current),
            ExpiryChange::Set(t) => t,
        }
    }
}

/// `t + d`, saturating at the largest representable time instead of overflowing (a configured
/// timeout of `Duration::MAX` means "never").
pub(crate) fn plus(t: OffsetDateTime, d: time::Duration) -> OffsetDateTime {
    t.checked_add(d)
        .unwrap_or_else(|| time::PrimitiveDateTime::MAX.assume_offset(t.offset()))
}

/// Unix milliseconds, the precision every store and every per-session expiry keeps.
pub(crate) fn millis(t: OffsetDateTime) -> i64 {
    // Every `OffsetDateTime`, even with `large-dates`, fits in an i64 of milliseconds.
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The time `ms` Unix milliseconds stand for; `None` outside `OffsetDateTime`'s range.
pub(crate) fn time_at(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// `t - d`, saturating at the smallest representable time.
pub(crate) fn minus(t: OffsetDateTime, d: time::Duration) -> OffsetDateTime {
    t.checked_sub(d)
        .unwrap_or_else(|| time::PrimitiveDateTime::MIN.assume_offset(t.offset()))
}

impl Change {
    /// Whether the change touches no key (it may still move the expiry).
    pub fn has_no_keys(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }

    /// Whether applying the change could leave a stored record without data (I2): it removes
    /// keys and sets none outside the reserved prefix. Stores use it to skip the emptiness
    /// check on the common save.
    pub fn may_empty(&self) -> bool {
        !self.removed.is_empty() && !self.set.keys().any(|k| !k.starts_with(RESERVED_PREFIX))
    }

    /// How the change moves the record in the [user index](crate::store::UserIndex): `None` when
    /// it leaves [`USER_KEY`] alone, `Some(Some(user))` when it files the record under `user`,
    /// `Some(None)` when it removes the key (or sets it to something other than a string).
    pub fn user(&self) -> Option<Option<&str>> {
        match self.set.get(USER_KEY) {
            Some(v) => Some(v.as_str()),
            None if self.removed.contains(USER_KEY) => Some(None),
            None => None,
        }
    }

    /// Folds `later` into this change: the result, applied once, leaves a record as applying
    /// this change and then `later` would (keys `later` touches take its word; expiries
    /// compose). Concurrent saves of one session are sent to the store as one such change.
    pub fn absorb(&mut self, later: Change) {
        for k in &later.removed {
            self.set.remove(k);
        }
        for k in later.set.keys() {
            self.removed.remove(k);
        }
        self.removed.extend(later.removed);
        self.set.extend(later.set);
        self.expiry = match (self.expiry, later.expiry) {
            (first, None) => first,
            (None, then) => then,
            (Some(ExpiryChange::Touch(a)), Some(ExpiryChange::Touch(b))) => {
                Some(ExpiryChange::Touch(a.max(b)))
            }
            (Some(ExpiryChange::Set(a)), Some(ExpiryChange::Touch(b))) => {
                Some(ExpiryChange::Set(a.max(b)))
            }
            (Some(_), Some(set @ ExpiryChange::Set(_))) => Some(set),
        };
    }

    /// Applies the change to `record`, as every store must: removals, then sets, then expiry.
    pub fn apply(&self, record: &mut Record) {
        self.apply_to(&mut record.data);
        if let Some(expiry) = self.expiry {
            record.expires_at = expiry.apply_to(record.expires_at);
        }
    }

    /// Applies the key changes to `data`: removals, then sets.
    fn apply_to(&self, data: &mut Data) {
        for k in &self.removed {
            data.remove(k);
        }
        for (k, v) in &self.set {
            data.insert(k.clone(), v.clone());
        }
    }
}

/// A request's edits on top of the data as loaded: per key, the new value or a removal, and
/// whether everything loaded was cleared. Reading through it never copies the loaded data.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edits {
    /// `Some(value)`: set; `None`: removed.
    keys: BTreeMap<String, Option<Value>>,
    /// Every loaded key was removed (edits after the clear still apply).
    cleared: bool,
}

impl Edits {
    /// The value of `key` as the handler sees it.
    pub(crate) fn get<'a>(&'a self, original: &'a Data, key: &str) -> Option<&'a Value> {
        match self.keys.get(key) {
            Some(edit) => edit.as_ref(),
            None if self.cleared => None,
            None => original.get(key),
        }
    }

    /// Sets `key`; returns the edit it replaced, for [`restore`](Self::restore).
    pub(crate) fn set(&mut self, key: String, value: Value) -> Option<Option<Value>> {
        self.keys.insert(key, Some(value))
    }

    /// Puts back the edit of `key` that [`set`](Self::set) replaced.
    pub(crate) fn restore(&mut self, key: &str, before: Option<Option<Value>>) {
        match before {
            Some(edit) => self.keys.insert(key.to_owned(), edit),
            None => self.keys.remove(key),
        };
    }

    /// Removes `key`; returns the value it had.
    pub(crate) fn remove(&mut self, original: &Data, key: &str) -> Option<Value> {
        let before = match self.keys.remove(key) {
            Some(edit) => edit,
            None if self.cleared => None,
            None => original.get(key).cloned(),
        };
        if original.contains_key(key) && !self.cleared {
            self.keys.insert(key.to_owned(), None);
        }
        before
    }

    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.cleared = true;
    }

    /// The keys present, in order.
    pub(crate) fn keys<'a>(&'a self, original: &'a Data) -> impl Iterator<Item = &'a String> {
        let kept = original
            .keys()
            .filter(|k| !self.cleared && !self.keys.contains_key(*k));
        let set = self
            .keys
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k);
        kept.chain(set)
    }

    /// What the edits change compared with `original`: values equal to the loaded ones are
    /// not changes.
    pub(crate) fn change(&self, original: &Data) -> Change {
        let mut change = Change::default();
        if self.cleared {
            change.removed = original
                .keys()
                .filter(|k| !matches!(self.keys.get(*k), Some(Some(_))))
                .cloned()
                .collect();
        }
        for (k, edit) in &self.keys {
            match edit {
                Some(v) if original.get(k) != Some(v) => {
                    change.set.insert(k.clone(), v.clone());
                }
                Some(_) => {}
                None if original.contains_key(k) => {
                    change.removed.insert(k.clone());
                }
                None => {}
            }
        }
        change
    }

    /// The whole data after the edits.
    pub(crate) fn merged(&self, original: &Data) -> Data {
        self.keys(original)
            .filter_map(|k| Some((k.clone(), self.get(original, k)?.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Data {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn setting_the_same_value_is_not_a_change() {
        let original = data(json!({"a": {"x": [1, 2]}}));
        let mut e = Edits::default();
        e.set("a".into(), json!({"x": [1, 2]}));
        assert!(e.change(&original).has_no_keys());
    }

    #[test]
    fn edits_read_through_and_record_only_real_changes() {
        let original = data(json!({"a": 1, "b": 2}));
        let mut e = Edits::default();
        e.set("a".into(), json!(1)); // same value: not a change
        e.set("c".into(), json!(3));
        assert_eq!(e.remove(&original, "b"), Some(json!(2)));
        assert_eq!(e.remove(&original, "zz"), None);
        assert_eq!(e.get(&original, "a"), Some(&json!(1)));
        assert_eq!(e.get(&original, "b"), None);
        assert_eq!(e.keys(&original).collect::<Vec<_>>(), ["a", "c"]);
        let c = e.change(&original);
        assert_eq!(c.set.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(c.removed.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(e.merged(&original), data(json!({"a": 1, "c": 3})));
    }

    #[test]
    fn clear_then_set_removes_the_rest() {
        let original = data(json!({"a": 1, "b": 2}));
        let mut e = Edits::default();
        e.clear();
        e.set("a".into(), json!(1));
        assert_eq!(e.get(&original, "b"), None);
        let c = e.change(&original);
        assert!(c.set.is_empty(), "a keeps its value");
        assert_eq!(c.removed.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(e.merged(&original), data(json!({"a": 1})));
        // Setting then removing a key that was never loaded leaves no trace.
        let mut e = Edits::default();
        e.set("new".into(), json!(1));
        assert_eq!(e.remove(&original, "new"), Some(json!(1)));
        assert!(e.change(&original).has_no_keys());
    }

    /// Every pair of small changes over keys a, b: absorbing equals applying one after the
    /// other, for data and expiry alike.
    #[test]
    fn absorbed_change_applies_as_both_in_turn() {
        let t = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
        let mut changes = Vec::new();
        for a in 0..3 {
            for b in 0..3 {
                for e in 0..5 {
                    let mut c = Change::default();
                    for (key, op) in [("a", a), ("b", b)] {
                        match op {
                            1 => {
                                c.set.insert(key.into(), json!(format!("{key}{a}{b}{e}")));
                            }
                            2 => {
                                c.removed.insert(key.into());
                            }
                            _ => {}
                        }
                    }
                    c.expiry = match e {
                        1 => Some(ExpiryChange::Touch(t(50))),
                        2 => Some(ExpiryChange::Touch(t(150))),
                        3 => Some(ExpiryChange::Set(t(20))),
                        4 => Some(ExpiryChange::Set(t(200))),
                        _ => None,
                    };
                    changes.push(c);
                }
            }
        }
        let start = Record {
            data: data(json!({"a": 0, "c": 1})),
            created_at: t(0),
            expires_at: t(100),
        };
        for first in &changes {
            for then in &changes {
                let mut one_by_one = start.clone();
                first.apply(&mut one_by_one);
                then.apply(&mut one_by_one);
                let mut folded = first.clone();
                folded.absorb(then.clone());
                let mut at_once = start.clone();
                folded.apply(&mut at_once);
                assert_eq!(at_once, one_by_one, "{first:?} then {then:?}");
                assert!(folded.set.keys().all(|k| !folded.removed.contains(k)));
            }
        }
    }

    #[test]
    fn change_applies_to_a_record_changed_meanwhile() {
        let mut current = data(json!({"a": 1, "other": true}));
        let mut e = Edits::default();
        e.set("a".into(), json!(2));
        e.set("b".into(), json!(3));
        let c = e.change(&data(json!({"a": 1})));
        c.apply_to(&mut current);
        assert_eq!(current, data(json!({"a": 2, "b": 3, "other": true})));
    }
}
