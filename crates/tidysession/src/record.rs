//! What stores keep ([`Record`]) and what a save sends them ([`Change`]).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Session data: a JSON object, one entry per key.
pub type Data = Map<String, Value>;

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
        now < self.expires_at && now < self.created_at + absolute
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
    pub expires_at: Option<OffsetDateTime>,
}

impl Change {
    /// The change that turns `before` into `after`: only keys whose value differs are sent,
    /// so setting a key to the value it already has is not a change.
    pub fn between(before: &Data, after: &Data) -> Self {
        let set = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect();
        Self {
            set,
            removed,
            expires_at: None,
        }
    }

    /// Whether the change touches no key (it may still move the expiry).
    pub fn has_no_keys(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }

    /// Applies the key changes to `data`, as every store must: removals, then sets.
    pub fn apply_to(&self, data: &mut Data) {
        for k in &self.removed {
            data.remove(k);
        }
        for (k, v) in &self.set {
            data.insert(k.clone(), v.clone());
        }
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
    fn change_holds_only_keys_that_differ() {
        let before = data(json!({"a": 1, "b": 2, "c": 3}));
        let after = data(json!({"a": 1, "b": 20, "d": 4}));
        let c = Change::between(&before, &after);
        assert_eq!(c.set.keys().collect::<Vec<_>>(), ["b", "d"]);
        assert_eq!(c.removed.iter().collect::<Vec<_>>(), ["c"]);
        let mut applied = before.clone();
        c.apply_to(&mut applied);
        assert_eq!(applied, after);
    }

    #[test]
    fn setting_the_same_value_is_not_a_change() {
        let d = data(json!({"a": {"x": [1, 2]}}));
        assert!(Change::between(&d, &d.clone()).has_no_keys());
    }

    #[test]
    fn change_applies_to_a_record_changed_meanwhile() {
        let mut current = data(json!({"a": 1, "other": true}));
        let c = Change::between(&data(json!({"a": 1})), &data(json!({"a": 2, "b": 3})));
        c.apply_to(&mut current);
        assert_eq!(current, data(json!({"a": 2, "b": 3, "other": true})));
    }
}
