//! The user index cases, for stores whose `user_index()` is `Some`. Each takes a fresh,
//! migrated store.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use tidysession::store::StorageKey;
use tidysession::store::{Change, ExpiryChange, USER_KEY};
use tidysession::store::{SessionStore, UserIndex};
use time::Duration;

use super::{fresh, key, load, now, record, removed, set};

/// Expands to one `#[tokio::test]` per user index case for the store `$make` builds.
#[macro_export]
macro_rules! user_index_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@cases $make;
                user_index_lists_the_records_filed_under_a_user,
                user_index_follows_updates_and_renames,
                user_index_never_lists_deleted_emptied_or_expired_records,
                user_index_follows_touches,
                user_index_follows_a_create_over_an_expired_record,
                delete_sessions_of_spares_the_kept_record_and_other_users,
                user_index_follows_changes_to_keys_of_any_shape,
                user_index_tells_apart_users_that_differ_in_case_or_spaces,
            );
        }
    };
}

fn index<S: SessionStore>(store: &Arc<S>) -> &dyn UserIndex {
    store.user_index().expect("this store keeps a user index")
}

/// The keys `user`'s listing shows now.
async fn listed<S: SessionStore>(store: &Arc<S>, user: &str) -> BTreeSet<StorageKey> {
    index(store)
        .sessions_of(user, now())
        .await
        .expect("sessions_of")
        .into_iter()
        .map(|(k, r)| {
            assert_eq!(r.user(), Some(user), "a listed record belongs to the user");
            k
        })
        .collect()
}

fn keys(ks: &[&StorageKey]) -> BTreeSet<StorageKey> {
    ks.iter().map(|k| **k).collect()
}

/// A unique user name, so stores shared between tests (one Redis) never mix users.
fn user(name: &str) -> String {
    format!("{name}-{}", key().short())
}

pub async fn user_index_lists_the_records_filed_under_a_user<S: SessionStore>(store: Arc<S>) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (a1, a2, b1, anon) = (key(), key(), key(), key());
    let r = fresh(json!({USER_KEY: alice, "cart": [1]}));
    store.create(&a1, &r).await.unwrap();
    store
        .create(&a2, &fresh(json!({USER_KEY: alice})))
        .await
        .unwrap();
    store
        .create(&b1, &fresh(json!({USER_KEY: bob})))
        .await
        .unwrap();
    store
        .create(&anon, &fresh(json!({"cart": [2]})))
        .await
        .unwrap();
    // A user id that is not a string is not filed anywhere.
    store
        .create(&key(), &fresh(json!({USER_KEY: 7})))
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[&a1, &a2]));
    assert_eq!(listed(&store, &bob).await, keys(&[&b1]));
    assert_eq!(listed(&store, &user("nobody")).await, keys(&[]));
    assert_eq!(listed(&store, "7").await, keys(&[]));
    let sessions = index(&store).sessions_of(&alice, now()).await.unwrap();
    let (_, got) = sessions.iter().find(|(k, _)| *k == a1).unwrap();
    assert_eq!(got, &r, "the listing carries the whole record");
}

pub async fn user_index_follows_updates_and_renames<S: SessionStore>(store: Arc<S>) {
    let (alice, bob) = (user("alice"), user("bob"));
    let k = key();
    store
        .create(&k, &fresh(json!({"cart": [1]})))
        .await
        .unwrap();
    // Logging in on an existing session files it.
    store
        .update(&k, &set(&[(USER_KEY, json!(alice))]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[&k]));
    // A rename (login's id cycle) moves the entry with the record.
    let k2 = key();
    store
        .rename(&k, &k2, &set(&[("x", json!(1))]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[&k2]));
    // A rename that changes the user re-files it.
    let k3 = key();
    store
        .rename(&k2, &k3, &set(&[(USER_KEY, json!(bob))]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[]));
    assert_eq!(listed(&store, &bob).await, keys(&[&k3]));
    // Changing other keys keeps it filed; removing the user key un-files it.
    store
        .update(&k3, &set(&[("y", json!(2))]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &bob).await, keys(&[&k3]));
    store
        .update(&k3, &removed(&[USER_KEY]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &bob).await, keys(&[]));
    assert!(load(&store, &k3).await.is_some(), "the cart is still there");
}

pub async fn user_index_never_lists_deleted_emptied_or_expired_records<S: SessionStore>(
    store: Arc<S>,
) {
    let alice = user("alice");
    let (deleted, emptied, expired, live) = (key(), key(), key(), key());
    for k in [&deleted, &emptied, &live] {
        store
            .create(k, &fresh(json!({USER_KEY: alice})))
            .await
            .unwrap();
    }
    let t = now();
    store
        .create(
            &expired,
            &record(json!({USER_KEY: alice}), t - Duration::hours(1), t),
        )
        .await
        .unwrap();
    store.delete(&deleted).await.unwrap();
    store
        .update(&emptied, &removed(&[USER_KEY]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[&live]));
    // A listing as of a later time leaves out what has expired by then.
    let later = index(&store)
        .sessions_of(&alice, now() + Duration::hours(2))
        .await
        .unwrap();
    assert!(later.is_empty(), "{later:?}");
}

pub async fn user_index_follows_touches<S: SessionStore>(store: Arc<S>) {
    let alice = user("alice");
    let (touched, updated) = (key(), key());
    let t = now();
    for k in [&touched, &updated] {
        store
            .create(
                k,
                &record(json!({USER_KEY: alice}), t, t + Duration::minutes(1)),
            )
            .await
            .unwrap();
    }
    let later = t + Duration::hours(2);
    store
        .touch(&touched, later + Duration::hours(1), t)
        .await
        .unwrap();
    let change = Change {
        expiry: Some(ExpiryChange::Touch(later + Duration::hours(1))),
        ..set(&[("seen", json!(true))])
    };
    store.update(&updated, &change, t).await.unwrap();
    // Past the records' first expiry, both are still live and still listed.
    let listed: BTreeSet<_> = index(&store)
        .sessions_of(&alice, later)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, keys(&[&touched, &updated]));
    let n = index(&store)
        .delete_sessions_of(&alice, None)
        .await
        .unwrap();
    assert_eq!(n, 2);
}

pub async fn user_index_follows_a_create_over_an_expired_record<S: SessionStore>(store: Arc<S>) {
    let (alice, bob) = (user("alice"), user("bob"));
    let k = key();
    let t = now();
    store
        .create(
            &k,
            &record(json!({USER_KEY: alice}), t - Duration::hours(1), t),
        )
        .await
        .unwrap();
    store
        .create(&k, &fresh(json!({USER_KEY: bob})))
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[]));
    assert_eq!(listed(&store, &bob).await, keys(&[&k]));
}

pub async fn delete_sessions_of_spares_the_kept_record_and_other_users<S: SessionStore>(
    store: Arc<S>,
) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (a1, a2, a3, b1) = (key(), key(), key(), key());
    for k in [&a1, &a2, &a3] {
        store
            .create(k, &fresh(json!({USER_KEY: alice})))
            .await
            .unwrap();
    }
    store
        .create(&b1, &fresh(json!({USER_KEY: bob})))
        .await
        .unwrap();
    let n = index(&store)
        .delete_sessions_of(&alice, Some(&a2))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(load(&store, &a1).await.is_none());
    assert!(load(&store, &a3).await.is_none());
    assert!(load(&store, &a2).await.is_some(), "the kept session stays");
    assert!(
        load(&store, &b1).await.is_some(),
        "other users are untouched"
    );
    assert_eq!(listed(&store, &alice).await, keys(&[&a2]));
    let n = index(&store)
        .delete_sessions_of(&alice, None)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(listed(&store, &alice).await, keys(&[]));
    assert_eq!(listed(&store, &bob).await, keys(&[&b1]));
}

/// Keys a JSON path cannot name take a store's read-modify-write path: the user moves there too.
pub async fn user_index_follows_changes_to_keys_of_any_shape<S: SessionStore>(store: Arc<S>) {
    let (alice, bob) = (user("alice"), user("bob"));
    let odd = "q\"x\\";
    let k = key();
    store
        .create(&k, &fresh(json!({"cart": [1]})))
        .await
        .unwrap();
    store
        .update(
            &k,
            &set(&[(USER_KEY, json!(alice)), (odd, json!(1))]),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[&k]));
    let k2 = key();
    store
        .rename(
            &k,
            &k2,
            &set(&[(USER_KEY, json!(bob)), ("", json!(2))]),
            now(),
        )
        .await
        .unwrap();
    assert_eq!(listed(&store, &alice).await, keys(&[]));
    assert_eq!(listed(&store, &bob).await, keys(&[&k2]));
    // Unchanged user, odd key: the record stays filed.
    store
        .update(&k2, &set(&[(odd, json!(3))]), now())
        .await
        .unwrap();
    assert_eq!(listed(&store, &bob).await, keys(&[&k2]));
    let change = Change {
        removed: [USER_KEY.to_owned(), odd.to_owned()].into(),
        ..Change::default()
    };
    store.update(&k2, &change, now()).await.unwrap();
    assert_eq!(listed(&store, &bob).await, keys(&[]));
    assert!(load(&store, &k2).await.is_some(), "the cart is still there");
}

/// User ids are compared exactly: no case folding, no trailing-space padding.
pub async fn user_index_tells_apart_users_that_differ_in_case_or_spaces<S: SessionStore>(
    store: Arc<S>,
) {
    let alice = user("alice");
    let variants = [
        alice.clone(),
        format!("{alice} "),
        alice.to_uppercase(),
        format!(" {alice}"),
    ];
    let ks: Vec<StorageKey> = variants.iter().map(|_| key()).collect();
    for (k, u) in ks.iter().zip(&variants) {
        store.create(k, &fresh(json!({USER_KEY: u}))).await.unwrap();
    }
    for (k, u) in ks.iter().zip(&variants) {
        assert_eq!(listed(&store, u).await, keys(&[k]), "{u:?}");
    }
    let n = index(&store)
        .delete_sessions_of(&variants[0], None)
        .await
        .unwrap();
    assert_eq!(n, 1, "only {alice:?}'s own session goes");
    for (k, u) in ks.iter().zip(&variants).skip(1) {
        assert_eq!(listed(&store, u).await, keys(&[k]), "{u:?}");
    }
}
