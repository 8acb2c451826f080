//! The cluster rename protocol against failures the integration tests cannot cause from
//! outside (a step sent twice, a rename that lost its hold), and interleavings of the user
//! index with concurrent writes. Needs the Redis server and Cluster that `scripts/services.sh`
//! starts (`TIDYSESSION_TEST_REDIS_URL` and `TIDYSESSION_TEST_REDIS_CLUSTER_URL` override where).

use std::sync::Arc;

use ::redis::Value;
use serde_json::json;
use time::Duration;

use super::ops::HOLD_MS;
use super::reply::{held_record, Filed, Held};
use super::*;
use crate::id::SessionId;
use crate::record::USER_KEY;
use crate::store::Maintenance as _;

/// Failures a test makes the store go through.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// Step 2 of a cluster rename runs twice, and the store sees only the second reply: what
    /// happens when the connection drops after the script ran and the client re-sends it.
    pub(super) replay_step_2: bool,
    /// Step 3 of a cluster rename fails without running.
    pub(super) fail_step_3: bool,
    /// Revoking a user's sessions waits at this barrier twice after its first read of the
    /// index, before deleting anything: a test runs other writes between the two waits.
    pub(super) pause_revoke: Option<Arc<tokio::sync::Barrier>>,
}

fn key() -> StorageKey {
    SessionId::generate().unwrap().storage_key()
}

fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).unwrap()
}

/// A store on the test cluster, under a key prefix of its own.
async fn cluster(faults: Faults) -> RedisStore {
    let url = std::env::var("TIDYSESSION_TEST_REDIS_CLUSTER_URL").unwrap_or_else(|_| {
        "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002".to_owned()
    });
    let mut store = RedisStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis Cluster at {url} (run scripts/services.sh): {e}"))
        .with_key_prefix(format!("tidysession-unit-{}:", &key().to_hex()[..12]));
    store.faults = faults;
    store
}

/// Two keys whose Redis keys live in different hash slots.
async fn keys_in_different_slots(store: &RedisStore) -> (StorageKey, StorageKey) {
    loop {
        let (a, b) = (key(), key());
        let slot = |k: &StorageKey| {
            let mut cmd = ::redis::cmd("CLUSTER");
            cmd.arg("KEYSLOT").arg(store.redis_key(k));
            cmd
        };
        let sa: i64 = slot(&a).query_async(&mut store.conn()).await.unwrap();
        let sb: i64 = slot(&b).query_async(&mut store.conn()).await.unwrap();
        if sa != sb {
            return (a, b);
        }
    }
}

fn record(data: serde_json::Value) -> Record {
    let t = now();
    Record {
        data: serde_json::from_value(data).unwrap(),
        created_at: t,
        expires_at: t + Duration::hours(1),
    }
}

fn set(k: &str, v: serde_json::Value) -> Change {
    let mut change = Change::default();
    change.set.insert(k.to_owned(), v);
    change
}

async fn hgetall(store: &RedisStore, key: &StorageKey) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = ::redis::cmd("HGETALL")
        .arg(store.redis_key(key))
        .query_async(&mut store.conn())
        .await
        .unwrap();
    fields.sort();
    fields
}

/// Step 0 by hand: holds `from` for a rename to `to` and returns the version it read.
async fn hold(store: &RedisStore, from: &StorageKey, to: &StorageKey) -> Vec<u8> {
    let mut invocation = scripts::HOLD.key(store.redis_key(from));
    invocation
        .arg(millis(now()))
        .arg(store.redis_key(to))
        .arg(HOLD_MS);
    let reply: Value = invocation.invoke_async(&mut store.conn()).await.unwrap();
    match held_record(from, reply).unwrap() {
        Held::Record(stored) => stored.version,
        Held::Status(status) => panic!("not held: {status:?}"),
    }
}

/// Step 1 by hand: the pending copy of `from` under `to`.
async fn copy(store: &RedisStore, from: &StorageKey, to: &StorageKey, r: &Record) {
    let mut invocation = scripts::CREATE.key(store.redis_key(to));
    create_args(&mut invocation, r, store.redis_key(from).as_bytes(), now());
    assert!(matches!(store.run(&invocation, to).await, Ok(Status::Done)));
}

/// Step 2 by hand, for the rename from `from` to `to`.
async fn step_2(
    store: &RedisStore,
    from: &StorageKey,
    to: &StorageKey,
    version: &[u8],
    r: &Record,
) -> Status {
    let mut invocation = scripts::DELETE_IF_VERSION.key(store.redis_key(from));
    invocation
        .arg(version)
        .arg(store.redis_key(to))
        .arg(grace(r.expires_at));
    store.run(&invocation, from).await.unwrap()
}

#[tokio::test]
async fn a_rename_whose_step_2_is_sent_twice_still_moves_the_session() {
    let store = cluster(Faults {
        replay_step_2: true,
        ..Faults::default()
    })
    .await;
    for _ in 0..3 {
        let (from, to) = keys_in_different_slots(&store).await;
        store.create(&from, &record(json!({"a": 1}))).await.unwrap();
        store
            .rename(&from, &to, &set("user", json!("alice")), now())
            .await
            .unwrap();
        assert!(store.load(&from, now()).await.unwrap().is_none());
        let got = store.load(&to, now()).await.unwrap().unwrap();
        assert_eq!(got.data.get("user"), Some(&json!("alice")));
        assert_eq!(got.data.get("a"), Some(&json!(1)));
        let fields = hgetall(&store, &to).await;
        assert!(fields.iter().all(|(f, _)| f != "m:pending"), "{fields:?}");
    }
}

#[tokio::test]
async fn only_the_rename_holding_the_record_can_finish() {
    let store = cluster(Faults::default()).await;
    let from = key();
    let (a, b) = (key(), key());
    let r = record(json!({"a": 1}));
    store.create(&from, &r).await.unwrap();
    // Rename A holds the record and makes its copy, then stalls until its hold lapses.
    let version = hold(&store, &from, &a).await;
    copy(&store, &from, &a, &r).await;
    let _: () = ::redis::cmd("HSET")
        .arg(store.redis_key(&from))
        .arg("m:moving_until")
        .arg(0)
        .query_async(&mut store.conn())
        .await
        .unwrap();
    // Rename B holds it now: A's step 2 must not take the record away from B.
    let version_b = hold(&store, &from, &b).await;
    assert_eq!(version_b, version, "holding is no change");
    assert!(matches!(
        step_2(&store, &from, &a, &version, &r).await,
        Status::Changed
    ));
    assert!(store.load(&from, now()).await.unwrap().is_some());
    assert!(store.load(&a, now()).await.unwrap().is_none());
    // B finishes; A's step 2, late, finds the record moved elsewhere.
    store
        .rename(&from, &b, &Change::default(), now())
        .await
        .unwrap();
    assert!(matches!(
        step_2(&store, &from, &a, &version, &r).await,
        Status::Gone
    ));
    assert!(store.load(&from, now()).await.unwrap().is_none());
    assert!(
        store.load(&a, now()).await.unwrap().is_none(),
        "A's copy never counts: the tombstone names B's"
    );
    assert!(store.load(&b, now()).await.unwrap().is_some());
    assert_eq!(store.count(now()).await.unwrap().live, 1);
}

#[tokio::test]
async fn a_rename_whose_step_3_fails_still_succeeds_and_readers_settle_the_copy() {
    let store = cluster(Faults {
        fail_step_3: true,
        ..Faults::default()
    })
    .await;
    let (from, to) = keys_in_different_slots(&store).await;
    store.create(&from, &record(json!({"a": 1}))).await.unwrap();
    store
        .rename(&from, &to, &set("user", json!("alice")), now())
        .await
        .unwrap();
    let pending = |fields: Vec<(String, String)>| fields.iter().any(|(f, _)| f == "m:pending");
    assert!(pending(hgetall(&store, &to).await), "step 3 did not run");
    assert!(store.load(&from, now()).await.unwrap().is_none());
    let got = store.load(&to, now()).await.unwrap().unwrap();
    assert_eq!(got.data.get("user"), Some(&json!("alice")));
    assert!(!pending(hgetall(&store, &to).await), "the load settled it");
}

/// A store on the single test server, under a key prefix of its own.
async fn single() -> RedisStore {
    let url = std::env::var("TIDYSESSION_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    RedisStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("Redis at {url} (run scripts/services.sh): {e}"))
        .with_key_prefix(format!("tidysession-unit-{}:", &key().to_hex()[..12]))
}

/// Revoking alice's sessions reads her index, then a login's id cycle moves her session to a
/// new key (indexing it first), then the revocation deletes what it read: the old key, gone
/// by now. The session must not survive under its new key.
async fn revoke_reaches_a_session_renamed_after_its_read(mut store: RedisStore) {
    let pause = Arc::new(tokio::sync::Barrier::new(2));
    store.faults.pause_revoke = Some(pause.clone());
    let store = Arc::new(store);
    let alice = format!("alice-{}", key().short());
    let (from, to) = if store.is_cluster() {
        keys_in_different_slots(&store).await
    } else {
        (key(), key())
    };
    store
        .create(&from, &record(json!({USER_KEY: alice, "a": 1})))
        .await
        .unwrap();
    let revoke = tokio::spawn({
        let (store, alice) = (store.clone(), alice.clone());
        async move { store.delete_sessions_of(&alice, None).await }
    });
    pause.wait().await;
    // The revocation has read the index, which holds only `from`.
    store
        .rename(&from, &to, &set("x", json!(1)), now())
        .await
        .unwrap();
    assert!(store.load(&to, now()).await.unwrap().is_some());
    pause.wait().await;
    let count = revoke.await.unwrap().unwrap();
    assert_eq!(count, 1, "the session, under its new key");
    assert!(store.load(&from, now()).await.unwrap().is_none());
    assert!(
        store.load(&to, now()).await.unwrap().is_none(),
        "the renamed session survived revocation"
    );
    assert!(store.sessions_of(&alice, now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn revoking_reaches_a_session_renamed_after_the_index_was_read() {
    revoke_reaches_a_session_renamed_after_its_read(single().await).await;
}

#[tokio::test]
async fn revoking_reaches_a_session_renamed_after_the_index_was_read_on_a_cluster() {
    revoke_reaches_a_session_renamed_after_its_read(cluster(Faults::default()).await).await;
}

/// The single-server rename script by hand, expecting `expect` as the record's user field.
async fn rename_script(
    store: &RedisStore,
    from: &StorageKey,
    to: &StorageKey,
    expect: &[u8],
) -> Status {
    let mut invocation = scripts::RENAME.key(store.redis_key(from));
    invocation.key(store.redis_key(to));
    change_args(&mut invocation, &Change::default(), now(), expect);
    store.run(&invocation, from).await.unwrap()
}

#[tokio::test]
async fn a_single_server_rename_carries_only_the_user_it_indexed() {
    let store = single().await;
    let (from, to) = (key(), key());
    let r = record(json!({"a": 1}));
    store.create(&from, &r).await.unwrap();
    // The rename expects "no user", but a login filed the record under bob meanwhile.
    store
        .update(&from, &set(USER_KEY, json!("bob")), now())
        .await
        .unwrap();
    match rename_script(&store, &from, &to, b"").await {
        Status::OtherUser(Filed { user, expires_ms }) => {
            assert_eq!(user, b"\"bob\"");
            assert_eq!(expires_ms, millis(r.expires_at));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        store.load(&to, now()).await.unwrap().is_none(),
        "nothing moved"
    );
    assert!(store.load(&from, now()).await.unwrap().is_some());
    // The store's own rename learns the user from that answer and indexes the new key
    // under bob, up to the record's expiry, before moving it.
    store
        .rename(&from, &to, &Change::default(), now())
        .await
        .unwrap();
    let listed = store.sessions_of("bob", now()).await.unwrap();
    assert_eq!(listed.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [to]);
    let score: f64 = ::redis::cmd("ZSCORE")
        .arg(store.user_index_key("bob"))
        .arg(to.to_hex())
        .query_async(&mut store.conn())
        .await
        .unwrap();
    assert_eq!(score as i64, grace(r.expires_at));
}
