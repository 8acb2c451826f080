//! The store conformance suite: one set of tests every `SessionStore` must pass.
//!
//! A store plugs in with one line, e.g.
//! `conformance_suite!(memory, async { (MemoryStore::default(), ()) });`
//! where the expression yields a fresh, migrated store plus anything that must live as long
//! as it (a temporary directory, say).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use tidysession::store::SessionStore;
use tidysession::store::{Change, Data};
use tidysession::{
    store::{Record, SessionId, StorageKey},
    StoreError,
};
use time::{Duration, OffsetDateTime};

mod cases;
mod user_index;
pub use cases::*;
pub use user_index::*;

/// Expands to one `#[tokio::test]` per conformance case for the store `$make` builds.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@cases $make;
                create_then_load_round_trips,
                create_on_a_live_key_is_a_duplicate,
                create_replaces_an_expired_record,
                load_ignores_expired_records,
                update_applies_only_the_changed_keys,
                update_extends_expiry_but_never_shortens_it,
                update_sets_expiry_exactly_when_told,
                update_that_empties_the_data_reports_the_deletion,
                reserved_keys_alone_do_not_keep_a_record,
                removal_of_a_key_another_request_did_not_touch_keeps_its_keys,
                rename_of_a_record_emptied_meanwhile_is_gone,
                update_that_empties_the_data_deletes_the_record,
                update_that_empties_by_removal_alone_deletes_the_record,
                update_handles_keys_of_any_shape,
                update_after_delete_is_gone_and_recreates_nothing,
                update_of_an_expired_record_is_gone,
                touch_extends_expiry,
                touch_never_touches_backwards,
                touch_of_a_missing_record_is_gone,
                rename_moves_the_record_and_applies_the_change,
                rename_of_a_missing_record_is_gone,
                rename_onto_a_live_record_is_a_duplicate,
                delete_reports_whether_there_was_a_record,
                delete_expired_is_bounded_and_spares_live_records,
                delete_expired_keeps_to_its_range,
                count_splits_live_and_expired,
                migrate_is_idempotent,
                concurrent_writers_of_different_keys_all_survive,
                update_racing_delete_never_resurrects,
                rename_under_concurrent_loads_is_never_both_or_neither
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::conformance::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

/// Now, truncated to whole milliseconds: the finest precision every store keeps.
pub fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).unwrap()
}

/// A fresh native key (SHA-256 of a new id), for stores with native ids.
pub fn key() -> StorageKey {
    SessionId::generate().unwrap().storage_key()
}

/// A fresh key in the form `store` files sessions under ([`SessionStore::id_format`]): the
/// SHA-256 of a native id, or a Django key kept as is. The cases use it, so every store is
/// tested with the keys the layer would give it.
pub fn key_for<S: SessionStore + ?Sized>(store: &S) -> StorageKey {
    SessionId::generate_as(store.id_format())
        .unwrap()
        .storage_key()
}

pub fn data(v: Value) -> Data {
    v.as_object().expect("object").clone()
}

pub fn record(v: Value, created_at: OffsetDateTime, expires_at: OffsetDateTime) -> Record {
    Record {
        data: data(v),
        created_at,
        expires_at,
    }
}

/// A record created now that lives for an hour.
pub fn fresh(v: Value) -> Record {
    let now = now();
    record(v, now, now + Duration::hours(1))
}

pub fn set(pairs: &[(&str, Value)]) -> Change {
    Change {
        set: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..Change::default()
    }
}

pub fn removed(keys: &[&str]) -> Change {
    Change {
        removed: keys
            .iter()
            .map(|k| (*k).to_owned())
            .collect::<BTreeSet<_>>(),
        ..Change::default()
    }
}

pub async fn load<S: SessionStore>(store: &Arc<S>, key: &StorageKey) -> Option<Record> {
    store.load(key, now()).await.expect("load")
}

pub fn is_gone<T>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Gone))
}
