//! The conformance cases. Each takes a fresh, migrated store.

use std::sync::Arc;

use serde_json::json;
use tidysession::store::{Change, ExpiryChange};
use tidysession::store::{ExpiredBatch, SessionStore, Updated};
use tidysession::{store::RESERVED_PREFIX, StoreError};
use time::Duration;

use super::{data, fresh, is_gone, key_for, load, now, record, removed, set};

pub async fn create_then_load_round_trips<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let r = fresh(json!({"cart": ["a", "b"], "n": 1, "nested": {"x": null}}));
    store.create(&k, &r).await.unwrap();
    assert_eq!(load(&store, &k).await, Some(r));
    assert_eq!(
        load(&store, &key_for(&*store)).await,
        None,
        "other keys stay unknown"
    );
}

pub async fn create_on_a_live_key_is_a_duplicate<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    let again = store.create(&k, &fresh(json!({"b": 2}))).await;
    assert!(matches!(again, Err(StoreError::DuplicateId)), "{again:?}");
    assert_eq!(load(&store, &k).await.unwrap().data, data(json!({"a": 1})));
}

pub async fn create_replaces_an_expired_record<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let past = now() - Duration::hours(2);
    store
        .create(
            &k,
            &record(json!({"old": 1}), past, past + Duration::hours(1)),
        )
        .await
        .unwrap();
    let r = fresh(json!({"new": 1}));
    store.create(&k, &r).await.unwrap();
    assert_eq!(load(&store, &k).await, Some(r));
}

pub async fn load_ignores_expired_records<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let t = now();
    store
        .create(&k, &record(json!({"a": 1}), t - Duration::hours(1), t))
        .await
        .unwrap();
    assert_eq!(
        store.load(&k, t).await.unwrap(),
        None,
        "expiry is exclusive"
    );
    let before = store.load(&k, t - Duration::milliseconds(1)).await.unwrap();
    assert!(before.is_some());
}

pub async fn update_applies_only_the_changed_keys<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let r = fresh(json!({"a": 1, "b": 2, "c": 3}));
    store.create(&k, &r).await.unwrap();
    let mut change = set(&[("a", json!(10)), ("d", json!({"deep": [1]}))]);
    change.removed = removed(&["c"]).removed;
    store.update(&k, &change, now()).await.unwrap();
    let got = load(&store, &k).await.unwrap();
    assert_eq!(got.data, data(json!({"a": 10, "b": 2, "d": {"deep": [1]}})));
    assert_eq!(got.created_at, r.created_at, "creation time never changes");
    assert_eq!(
        got.expires_at, r.expires_at,
        "no expiry in the change: unchanged"
    );
}

pub async fn update_extends_expiry_but_never_shortens_it<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let r = fresh(json!({"a": 1}));
    store.create(&k, &r).await.unwrap();
    let later = r.expires_at + Duration::hours(5);
    let extend = |t| Change {
        expiry: Some(ExpiryChange::Touch(t)),
        ..Change::default()
    };
    store.update(&k, &extend(later), now()).await.unwrap();
    assert_eq!(load(&store, &k).await.unwrap().expires_at, later);
    // A slow request's refresh, computed before the one above, lands after it: no effect.
    store
        .update(&k, &extend(r.expires_at), now())
        .await
        .unwrap();
    assert_eq!(load(&store, &k).await.unwrap().expires_at, later, "I9");
}

pub async fn update_sets_expiry_exactly_when_told<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let r = fresh(json!({"a": 1}));
    store.create(&k, &r).await.unwrap();
    let sooner = r.expires_at - Duration::minutes(30);
    let change = Change {
        expiry: Some(ExpiryChange::Set(sooner)),
        ..Change::default()
    };
    store.update(&k, &change, now()).await.unwrap();
    assert_eq!(load(&store, &k).await.unwrap().expires_at, sooner);
}

pub async fn update_that_empties_the_data_reports_the_deletion<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store
        .create(&k, &fresh(json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    let done = store.update(&k, &removed(&["a"]), now()).await.unwrap();
    assert_eq!(done, Updated::Kept);
    let done = store.update(&k, &removed(&["b"]), now()).await.unwrap();
    assert_eq!(done, Updated::Deleted);
    assert_eq!(load(&store, &k).await, None);
}

pub async fn reserved_keys_alone_do_not_keep_a_record<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let expiry = format!("{RESERVED_PREFIX}expiry");
    store
        .create(
            &k,
            &fresh(json!({"a": 1, expiry.clone(): {"idle_ms": 60_000}})),
        )
        .await
        .unwrap();
    let done = store.update(&k, &removed(&["a"]), now()).await.unwrap();
    assert_eq!(
        done,
        Updated::Deleted,
        "only tidysession's own keys left (I2)"
    );
    assert_eq!(load(&store, &k).await, None);
}

pub async fn removal_of_a_key_another_request_did_not_touch_keeps_its_keys<S: SessionStore>(
    store: Arc<S>,
) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    // Request B sets a key; request A, which loaded {"a": 1}, then removes its last key.
    store
        .update(&k, &set(&[("b", json!(2))]), now())
        .await
        .unwrap();
    let done = store.update(&k, &removed(&["a"]), now()).await.unwrap();
    assert_eq!(done, Updated::Kept, "B's key keeps the record (I5)");
    assert_eq!(load(&store, &k).await.unwrap().data, data(json!({"b": 2})));
}

pub async fn rename_of_a_record_emptied_meanwhile_is_gone<S: SessionStore>(store: Arc<S>) {
    let (from, to) = (key_for(&*store), key_for(&*store));
    store.create(&from, &fresh(json!({"a": 1}))).await.unwrap();
    let r = store.rename(&from, &to, &removed(&["a"]), now()).await;
    assert!(is_gone(r), "nothing left to move");
    assert_eq!(load(&store, &from).await, None);
    assert_eq!(load(&store, &to).await, None);
}

pub async fn update_that_empties_the_data_deletes_the_record<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store
        .create(&k, &fresh(json!({"a": 1, "b": 2})))
        .await
        .unwrap();
    store
        .update(&k, &removed(&["a", "b"]), now())
        .await
        .unwrap();
    assert_eq!(load(&store, &k).await, None);
    let counts = store.maintenance().unwrap().count(now()).await.unwrap();
    assert_eq!(
        counts.live + counts.expired,
        0,
        "no empty record left behind (I2)"
    );
}

pub async fn update_after_delete_is_gone_and_recreates_nothing<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert!(is_gone(
        store.update(&k, &set(&[("b", json!(2))]), now()).await
    ));
    assert_eq!(load(&store, &k).await, None, "no resurrection (I5)");
    assert!(is_gone(
        store
            .update(&key_for(&*store), &set(&[("b", json!(2))]), now())
            .await
    ));
}

pub async fn update_of_an_expired_record_is_gone<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let t = now();
    store
        .create(&k, &record(json!({"a": 1}), t - Duration::hours(1), t))
        .await
        .unwrap();
    assert!(is_gone(store.update(&k, &set(&[("b", json!(2))]), t).await));
    assert!(is_gone(store.touch(&k, t + Duration::hours(1), t).await));
}

pub async fn touch_extends_expiry<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let r = fresh(json!({"a": 1}));
    store.create(&k, &r).await.unwrap();
    let later = r.expires_at + Duration::hours(3);
    store.touch(&k, later, now()).await.unwrap();
    let got = load(&store, &k).await.unwrap();
    assert_eq!(got.expires_at, later);
    assert_eq!(got.data, r.data, "a touch changes nothing but expiry");
}

pub async fn touch_never_touches_backwards<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    let r = fresh(json!({"a": 1}));
    store.create(&k, &r).await.unwrap();
    store
        .touch(&k, r.expires_at - Duration::minutes(30), now())
        .await
        .unwrap();
    assert_eq!(load(&store, &k).await.unwrap().expires_at, r.expires_at);
}

pub async fn touch_of_a_missing_record_is_gone<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    assert!(is_gone(
        store.touch(&k, now() + Duration::hours(1), now()).await
    ));
    assert_eq!(load(&store, &k).await, None, "a touch never creates");
}

pub async fn rename_moves_the_record_and_applies_the_change<S: SessionStore>(store: Arc<S>) {
    let (from, to) = (key_for(&*store), key_for(&*store));
    let r = fresh(json!({"cart": [1], "anon": true}));
    store.create(&from, &r).await.unwrap();
    let mut change = set(&[("user", json!("alice"))]);
    change.removed = removed(&["anon"]).removed;
    store.rename(&from, &to, &change, now()).await.unwrap();
    assert_eq!(
        load(&store, &from).await,
        None,
        "the old id no longer loads"
    );
    let got = load(&store, &to).await.unwrap();
    assert_eq!(got.data, data(json!({"cart": [1], "user": "alice"})));
    assert_eq!(got.created_at, r.created_at);
}

pub async fn rename_of_a_missing_record_is_gone<S: SessionStore>(store: Arc<S>) {
    let (from, to) = (key_for(&*store), key_for(&*store));
    assert!(is_gone(
        store.rename(&from, &to, &Change::default(), now()).await
    ));
    assert_eq!(load(&store, &to).await, None);
}

pub async fn rename_onto_a_live_record_is_a_duplicate<S: SessionStore>(store: Arc<S>) {
    let (from, to) = (key_for(&*store), key_for(&*store));
    store
        .create(&from, &fresh(json!({"from": 1})))
        .await
        .unwrap();
    store.create(&to, &fresh(json!({"to": 1}))).await.unwrap();
    let r = store.rename(&from, &to, &Change::default(), now()).await;
    assert!(matches!(r, Err(StoreError::DuplicateId)), "{r:?}");
    assert_eq!(
        load(&store, &from).await.unwrap().data,
        data(json!({"from": 1}))
    );
    assert_eq!(
        load(&store, &to).await.unwrap().data,
        data(json!({"to": 1}))
    );
}

pub async fn delete_reports_whether_there_was_a_record<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert!(!store.delete(&k).await.unwrap());
    assert_eq!(load(&store, &k).await, None);
}

pub async fn delete_expired_is_bounded_and_spares_live_records<S: SessionStore>(store: Arc<S>) {
    let t = now();
    let expiry = |i: i64| t - Duration::minutes(60 - i);
    for i in 0..25 {
        store
            .create(
                &key_for(&*store),
                &record(json!({"i": i}), expiry(i) - Duration::hours(1), expiry(i)),
            )
            .await
            .unwrap();
    }
    let live = key_for(&*store);
    store
        .create(&live, &fresh(json!({"live": true})))
        .await
        .unwrap();
    if store.maintenance().unwrap().removes_expired_itself() {
        // The expired records were never kept: nothing to count, nothing to delete.
        assert_eq!(
            store.maintenance().unwrap().count(t).await.unwrap().expired,
            0
        );
        let done = store
            .maintenance()
            .unwrap()
            .delete_expired(None, t, 10)
            .await
            .unwrap();
        assert_eq!(done, ExpiredBatch::default());
    } else {
        // Oldest first, each batch handing the next its cursor: the last expiry it deleted.
        let first = store
            .maintenance()
            .unwrap()
            .delete_expired(None, t, 10)
            .await
            .unwrap();
        assert_eq!(first, batch(10, Some(expiry(9))));
        assert_eq!(
            store.maintenance().unwrap().count(t).await.unwrap().expired,
            15
        );
        let second = store
            .maintenance()
            .unwrap()
            .delete_expired(first.next, t, 10)
            .await
            .unwrap();
        assert_eq!(second, batch(10, Some(expiry(19))));
        // Short of the limit: the end of the range, no cursor.
        let third = store
            .maintenance()
            .unwrap()
            .delete_expired(second.next, t, 10)
            .await
            .unwrap();
        assert_eq!(third, batch(5, None));
        assert_eq!(
            store
                .maintenance()
                .unwrap()
                .delete_expired(None, t, 10)
                .await
                .unwrap(),
            batch(0, None)
        );
    }
    assert!(load(&store, &live).await.is_some());
    assert_eq!(store.maintenance().unwrap().count(t).await.unwrap().live, 1);
}

pub async fn delete_expired_keeps_to_its_range<S: SessionStore>(store: Arc<S>) {
    if store.maintenance().unwrap().removes_expired_itself() {
        return;
    }
    let t = now();
    let expiry = |i: i64| t - Duration::minutes(60 - i);
    for i in 0..10 {
        store
            .create(
                &key_for(&*store),
                &record(json!({"i": i}), expiry(i) - Duration::hours(1), expiry(i)),
            )
            .await
            .unwrap();
    }
    // Both ends are inclusive: from the cursor's own expiry to `now` itself.
    let one = store
        .maintenance()
        .unwrap()
        .delete_expired(Some(expiry(5)), expiry(5), 100)
        .await
        .unwrap();
    assert_eq!(one, batch(1, None));
    let below = store
        .maintenance()
        .unwrap()
        .delete_expired(None, expiry(2), 100)
        .await
        .unwrap();
    assert_eq!(below, batch(3, None), "expiries 0, 1 and 2");
    assert_eq!(
        store.maintenance().unwrap().count(t).await.unwrap().expired,
        6
    );
    // A record written already expired behind a cursor is not seen from the cursor on, and
    // is found by a walk from the start.
    let first = store
        .maintenance()
        .unwrap()
        .delete_expired(None, t, 2)
        .await
        .unwrap();
    assert_eq!(first, batch(2, Some(expiry(4))));
    let behind = expiry(0) - Duration::hours(1);
    store
        .create(
            &key_for(&*store),
            &record(json!({"late": true}), behind - Duration::hours(1), behind),
        )
        .await
        .unwrap();
    let rest = store
        .maintenance()
        .unwrap()
        .delete_expired(first.next, t, 100)
        .await
        .unwrap();
    assert_eq!(rest, batch(4, None), "expiries 6 to 9");
    assert_eq!(
        store.maintenance().unwrap().count(t).await.unwrap().expired,
        1
    );
    let again = store
        .maintenance()
        .unwrap()
        .delete_expired(None, t, 100)
        .await
        .unwrap();
    assert_eq!(again, batch(1, None));
    assert_eq!(
        store.maintenance().unwrap().count(t).await.unwrap().expired,
        0
    );
}

fn batch(deleted: u64, next: Option<time::OffsetDateTime>) -> ExpiredBatch {
    ExpiredBatch { deleted, next }
}

pub async fn count_splits_live_and_expired<S: SessionStore>(store: Arc<S>) {
    let t = now();
    for _ in 0..3 {
        store
            .create(&key_for(&*store), &fresh(json!({"a": 1})))
            .await
            .unwrap();
    }
    store
        .create(
            &key_for(&*store),
            &record(
                json!({"a": 1}),
                t - Duration::hours(2),
                t - Duration::hours(1),
            ),
        )
        .await
        .unwrap();
    let counts = store.maintenance().unwrap().count(t).await.unwrap();
    let expired = u64::from(!store.maintenance().unwrap().removes_expired_itself());
    assert_eq!((counts.live, counts.expired), (3, expired));
}

pub async fn migrate_is_idempotent<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    store.maintenance().unwrap().migrate().await.unwrap();
    store.maintenance().unwrap().migrate().await.unwrap();
    assert!(
        load(&store, &k).await.is_some(),
        "migrating again keeps the data"
    );
}

pub async fn concurrent_writers_of_different_keys_all_survive<S: SessionStore>(store: Arc<S>) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"seed": 0}))).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let change = set(&[(&format!("k{i}"), json!(i))]);
                store.update(&k, &change, now()).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let got = load(&store, &k).await.unwrap();
    assert_eq!(
        got.data.len(),
        33,
        "every writer's key survives (I5): {:?}",
        got.data
    );
}

pub async fn update_racing_delete_never_resurrects<S: SessionStore>(store: Arc<S>) {
    for round in 0..20 {
        let k = key_for(&*store);
        store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let r = store.update(&k, &set(&[("w", json!(i))]), now()).await;
                    if is_gone(r) {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        if round % 2 == 0 {
            tokio::task::yield_now().await;
        }
        store.delete(&k).await.unwrap();
        writer.await.unwrap();
        assert_eq!(
            load(&store, &k).await,
            None,
            "round {round}: deleted stays deleted"
        );
    }
}

pub async fn rename_under_concurrent_loads_is_never_both_or_neither<S: SessionStore>(
    store: Arc<S>,
) {
    for _ in 0..10 {
        let (from, to) = (key_for(&*store), key_for(&*store));
        store.create(&from, &fresh(json!({"a": 1}))).await.unwrap();
        let readers: Vec<_> = (0..4)
            .map(|r| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        if r % 2 == 0 {
                            // New first: once the new id exists the old one must be gone.
                            let new = load(&store, &to).await.is_some();
                            let old = load(&store, &from).await.is_some();
                            assert!(!(new && old), "both ids valid");
                        } else {
                            // Old first: once the old id is gone the new one must exist.
                            let old = load(&store, &from).await.is_some();
                            let new = load(&store, &to).await.is_some();
                            assert!(old || new, "neither id valid");
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        store
            .rename(&from, &to, &Change::default(), now())
            .await
            .unwrap();
        for r in readers {
            r.await.unwrap();
        }
    }
}

pub async fn update_handles_keys_of_any_shape<S: SessionStore>(store: Arc<S>) {
    let odd = [
        "a.b",
        "with space",
        "quote\"inside",
        "[0]",
        "$",
        "ünï",
        "",
        "back\\slash",
        "a'b",
        "tab\there",
        "new\nline",
    ];
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"keep": 1}))).await.unwrap();
    let pairs: Vec<(&str, serde_json::Value)> =
        odd.iter().map(|name| (*name, json!({"v": name}))).collect();
    store.update(&k, &set(&pairs), now()).await.unwrap();
    let got = load(&store, &k).await.unwrap().data;
    for name in odd {
        assert_eq!(
            got.get(name),
            Some(&json!({"v": name})),
            "key {name:?}: {got:?}"
        );
    }
    // Each odd key on its own, so the keys a JSON path can name take the fast path where a
    // store has one.
    for name in odd {
        let change = set(&[(name, json!([name]))]);
        store.update(&k, &change, now()).await.unwrap();
        let got = load(&store, &k).await.unwrap().data;
        assert_eq!(got.get(name), Some(&json!([name])), "key {name:?}: {got:?}");
    }
    // Remove each odd key separately, taking the fast path where a store has one.
    for name in odd {
        store.update(&k, &removed(&[name]), now()).await.unwrap();
    }
    assert_eq!(
        load(&store, &k).await.unwrap().data,
        data(json!({"keep": 1}))
    );
}

pub async fn update_that_empties_by_removal_alone_deletes_the_record<S: SessionStore>(
    store: Arc<S>,
) {
    let k = key_for(&*store);
    store.create(&k, &fresh(json!({"only": 1}))).await.unwrap();
    store.update(&k, &removed(&["only"]), now()).await.unwrap();
    assert_eq!(load(&store, &k).await, None);
    assert!(is_gone(
        store.touch(&k, now() + Duration::hours(1), now()).await
    ));
}
