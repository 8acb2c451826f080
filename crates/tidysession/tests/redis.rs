//! What Redis holds, the cluster rename protocol, and Redis URLs.
//!
//! Needs a Redis server and a Redis Cluster (`scripts/services.sh` starts both); the tests
//! fail, not skip, when they are down. Every test uses a key prefix of its own.

use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::json;
use tidysession::store::{Change, ExpiryChange, USER_KEY};
use tidysession::store::{RedisStore, SessionStore};
use tidysession::{
    store::{SessionId, StorageKey},
    StoreError,
};
use time::{Duration, OffsetDateTime};

use crate::conformance::{data, fresh, key, load, now, record, set};
use crate::util::servers::{redis, redis_cluster, redis_cluster_url, redis_url, unique_name};
use tidysession::store::Maintenance as _;

/// The test's own connection to the single server.
async fn side() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The test's own connection to the cluster.
async fn side_cluster() -> redis::cluster_async::ClusterConnection {
    let url = redis_cluster_url();
    let hosts = url.strip_prefix("redis+cluster://").unwrap();
    let nodes: Vec<String> = hosts.split(',').map(|h| format!("redis://{h}")).collect();
    redis::cluster::ClusterClient::new(nodes)
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[tokio::test]
async fn keys_are_the_prefix_and_the_hex_hash_never_the_id() {
    let store = redis().await;
    let mut side = side().await;
    let id = SessionId::generate().unwrap();
    let k = id.storage_key();
    store
        .create(&k, &fresh(json!({"cart": [1], "": "empty key"})))
        .await
        .unwrap();
    let prefix = store
        .redis_key(&k)
        .strip_suffix(&k.to_hex())
        .unwrap()
        .to_owned();
    let keys: Vec<String> = side.keys(format!("{prefix}*")).await.unwrap();
    assert_eq!(keys, vec![format!("{prefix}{}", k.to_hex())]);
    let hash: Vec<(String, String)> = side.hgetall(&keys[0]).await.unwrap();
    let mut fields: Vec<&str> = hash.iter().map(|(f, _)| f.as_str()).collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["d:", "d:cart", "m:created", "m:expires", "m:version"]
    );
    for (f, v) in &hash {
        assert!(
            !f.contains(id.as_str()) && !v.contains(id.as_str()),
            "raw id at rest"
        );
    }
    assert_eq!(
        hash.iter().find(|(f, _)| f == "d:cart").unwrap().1,
        "[1]",
        "values are JSON"
    );
}

#[tokio::test]
async fn the_hash_expires_through_pexpireat_a_grace_after_the_record() {
    let store = redis().await;
    let mut side = side().await;
    let k = key();
    let r = fresh(json!({"a": 1}));
    store.create(&k, &r).await.unwrap();
    let redis_key = store.redis_key(&k);
    let expire_time = |side: &mut redis::aio::MultiplexedConnection| {
        let key = redis_key.clone();
        let mut side = side.clone();
        async move {
            redis::cmd("PEXPIRETIME")
                .arg(key)
                .query_async::<i64>(&mut side)
                .await
                .unwrap()
        }
    };
    let grace = RedisStore::EXPIRY_GRACE_MS;
    assert_eq!(expire_time(&mut side).await, millis(r.expires_at) + grace);
    let later = r.expires_at + Duration::hours(2);
    store.touch(&k, later, now()).await.unwrap();
    assert_eq!(expire_time(&mut side).await, millis(later) + grace);
    let sooner = r.expires_at - Duration::minutes(10);
    let change = Change {
        expiry: Some(ExpiryChange::Set(sooner)),
        ..Change::default()
    };
    store.update(&k, &change, now()).await.unwrap();
    assert_eq!(expire_time(&mut side).await, millis(sooner) + grace);
    // A record already expired (past the grace) is dropped by Redis at once.
    let gone = key();
    let t = now();
    store
        .create(
            &gone,
            &record(
                json!({"a": 1}),
                t - Duration::hours(2),
                t - Duration::hours(1),
            ),
        )
        .await
        .unwrap();
    let exists: bool = side.exists(store.redis_key(&gone)).await.unwrap();
    assert!(!exists);
}

/// Reads MONITOR lines until one contains `until`, returning those that mention `needle`.
fn monitor_lines(
    addr: String,
    needle: String,
    until: String,
) -> std::thread::JoinHandle<Vec<String>> {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"MONITOR\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut ok = String::new();
    reader.read_line(&mut ok).unwrap();
    assert_eq!(ok.trim_end(), "+OK");
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 || line.contains(&until) {
                return seen;
            }
            if line.contains(&needle) {
                seen.push(line.clone());
            }
        }
    })
}

#[tokio::test]
async fn a_one_key_update_sends_only_that_key() {
    let store = redis().await;
    let mut side = side().await;
    let k = key();
    let big = format!("BIG{}", "x".repeat(2048));
    store
        .create(&k, &fresh(json!({"big": big, "small": 1})))
        .await
        .unwrap();
    let addr = redis::Client::open(redis_url())
        .unwrap()
        .get_connection_info()
        .addr()
        .to_string();
    let end = format!("end-of-test-{}", k.to_hex());
    let monitor = monitor_lines(addr, k.to_hex(), end.clone());
    store
        .update(&k, &set(&[("small", json!(2))]), now())
        .await
        .unwrap();
    let _: String = redis::cmd("ECHO")
        .arg(&end)
        .query_async(&mut side)
        .await
        .unwrap();
    let lines = tokio::task::spawn_blocking(move || monitor.join().unwrap())
        .await
        .unwrap();
    assert!(
        lines.iter().all(|l| !l.contains("BIG")),
        "the untouched 2 KB value was read or written: {lines:?}"
    );
    // What the client sent (MONITOR shows commands run by scripts as from "lua").
    let sent: Vec<&String> = lines.iter().filter(|l| !l.contains(" lua]")).collect();
    assert!(!sent.is_empty(), "the update was seen");
    for line in sent {
        assert!(
            line.len() < 512,
            "{} bytes for a one-key update: {line}",
            line.len()
        );
    }
    let got = load(&Arc::new(store), &k).await.unwrap();
    assert_eq!(got.data, data(json!({"big": big, "small": 2})));
}

#[tokio::test]
async fn hashes_that_are_not_sessions_are_corrupt_and_left_in_place() {
    let store = redis().await;
    let mut side = side().await;
    let future = millis(now() + Duration::hours(1)).to_string();
    let created = millis(now()).to_string();
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "bad JSON",
            vec![
                ("m:created", &created),
                ("m:expires", &future),
                ("d:a", "{nope"),
            ],
        ),
        (
            "no creation time",
            vec![("m:expires", &future), ("d:a", "1")],
        ),
        (
            "bad expiry",
            vec![("m:created", &created), ("m:expires", "soon"), ("d:a", "1")],
        ),
        (
            "unknown field",
            vec![("m:created", &created), ("m:expires", &future), ("x", "1")],
        ),
    ];
    for (what, fields) in cases {
        let k = key();
        let redis_key = store.redis_key(&k);
        let _: () = side.hset_multiple(&redis_key, &fields).await.unwrap();
        let r = store.load(&k, now()).await;
        assert!(
            matches!(r, Err(StoreError::Corrupt { key, .. }) if key == k),
            "{what}: {r:?}"
        );
        let exists: bool = side.exists(&redis_key).await.unwrap();
        assert!(exists, "{what}: left in place");
    }
    // Not a hash at all.
    let k = key();
    let _: () = side.set(store.redis_key(&k), "a string").await.unwrap();
    let is_corrupt = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Corrupt { .. }));
    assert!(is_corrupt(store.load(&k, now()).await.map(drop)));
    assert!(is_corrupt(
        store
            .update(&k, &set(&[("a", json!(1))]), now())
            .await
            .map(drop)
    ));
    assert!(is_corrupt(
        store.touch(&k, now() + Duration::hours(1), now()).await
    ));
    assert!(is_corrupt(store.create(&k, &fresh(json!({"a": 1}))).await));
    let hash_without_expiry = key();
    let _: () = side
        .hset(store.redis_key(&hash_without_expiry), "d:a", "1")
        .await
        .unwrap();
    let r = store
        .update(&hash_without_expiry, &set(&[("b", json!(1))]), now())
        .await;
    assert!(matches!(r, Err(StoreError::Corrupt { .. })), "{r:?}");
    // Counting walks past them without failing.
    store.count(now()).await.unwrap();
}

/// Two keys whose Redis keys live in different hash slots.
async fn keys_in_different_slots(
    store: &RedisStore,
    side: &mut redis::cluster_async::ClusterConnection,
) -> (StorageKey, StorageKey) {
    loop {
        let (a, b) = (key(), key());
        let slot = |k: String| redis::cmd("CLUSTER").arg("KEYSLOT").arg(k).clone();
        let sa: i64 = slot(store.redis_key(&a)).query_async(side).await.unwrap();
        let sb: i64 = slot(store.redis_key(&b)).query_async(side).await.unwrap();
        if sa != sb {
            return (a, b);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_rename_across_slots_loses_no_concurrent_write() {
    let store = Arc::new(redis_cluster().await);
    let mut side = side_cluster().await;
    for round in 0..10 {
        let (from, to) = keys_in_different_slots(&store, &mut side).await;
        store.create(&from, &fresh(json!({"a": 1}))).await.unwrap();
        let readers: Vec<_> = (0..4)
            .map(|r| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..50 {
                        if r % 2 == 0 {
                            let new = load(&store, &to).await.is_some();
                            let old = load(&store, &from).await.is_some();
                            assert!(!(new && old), "both ids valid");
                        } else {
                            let old = load(&store, &from).await.is_some();
                            let new = load(&store, &to).await.is_some();
                            assert!(old || new, "neither id valid");
                        }
                    }
                })
            })
            .collect();
        // A writer on the old id until it is gone: its last successful write must arrive.
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut last = None;
                for i in 0..1000 {
                    match store.update(&from, &set(&[("w", json!(i))]), now()).await {
                        Ok(_) => last = Some(i),
                        Err(StoreError::Gone) => return last,
                        Err(e) => panic!("{e}"),
                    }
                }
                last
            })
        };
        tokio::task::yield_now().await;
        store
            .rename(&from, &to, &set(&[("user", json!("alice"))]), now())
            .await
            .unwrap();
        let last = writer.await.unwrap();
        for r in readers {
            r.await.unwrap();
        }
        assert_eq!(load(&store, &from).await, None, "round {round}");
        let got = load(&store, &to).await.unwrap().data;
        assert_eq!(got.get("user"), Some(&json!("alice")), "round {round}");
        assert_eq!(
            got.get("w"),
            last.map(|i| json!(i)).as_ref(),
            "round {round}: lost update"
        );
        let pending: bool = side
            .hexists(store.redis_key(&to), "m:pending")
            .await
            .unwrap();
        assert!(!pending, "round {round}: the mark is cleared");
    }
}

/// Writes what a cluster rename that stopped after its first step leaves behind: a copy of
/// the record under `from`, with `d:a` = 2, under `to`, pending on `from`.
async fn pending_copy(
    store: &RedisStore,
    side: &mut redis::cluster_async::ClusterConnection,
    from: &StorageKey,
    to: &StorageKey,
    r: &tidysession::store::Record,
) {
    let created = millis(r.created_at).to_string();
    let expires = millis(r.expires_at).to_string();
    let fields = [
        ("m:created", created.as_str()),
        ("m:expires", expires.as_str()),
        ("m:version", "0"),
        ("m:pending", &store.redis_key(from)),
        ("d:a", "2"),
    ];
    let _: () = side
        .hset_multiple(store.redis_key(to), &fields)
        .await
        .unwrap();
}

/// Replaces the record under `from` with a tombstone naming `to`, as step 2 of a cluster
/// rename does.
async fn tombstone(
    store: &RedisStore,
    side: &mut redis::cluster_async::ClusterConnection,
    from: &StorageKey,
    to: &StorageKey,
) {
    let old = store.redis_key(from);
    let _: () = side.del(&old).await.unwrap();
    let _: () = side
        .hset(&old, "m:moved_to", store.redis_key(to))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pending_copy_is_valid_only_once_a_tombstone_names_it() {
    let store = Arc::new(redis_cluster().await);
    let mut side = side_cluster().await;
    let (from, to) = keys_in_different_slots(&store, &mut side).await;
    let r = fresh(json!({"a": 1}));
    store.create(&from, &r).await.unwrap();
    pending_copy(&store, &mut side, &from, &to, &r).await;
    assert_eq!(load(&store, &to).await, None, "the old record still stands");
    assert!(load(&store, &from).await.is_some());
    assert!(matches!(
        store.update(&to, &set(&[("b", json!(1))]), now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.touch(&to, now() + Duration::hours(2), now()).await,
        Err(StoreError::Gone)
    ));
    assert_eq!(store.count(now()).await.unwrap().live, 1);
    // Step 2: the old record becomes a tombstone naming the copy, which is the record now.
    tombstone(&store, &mut side, &from, &to).await;
    assert_eq!(load(&store, &from).await, None);
    let got = load(&store, &to).await.unwrap();
    assert_eq!(got.data, data(json!({"a": 2})));
    let to_key = store.redis_key(&to);
    let pending: bool = side.hexists(&to_key, "m:pending").await.unwrap();
    assert!(!pending, "a load settles the copy");
    store
        .update(&to, &set(&[("b", json!(1))]), now())
        .await
        .unwrap();
    assert_eq!(store.count(now()).await.unwrap().live, 1);
}

#[tokio::test]
async fn a_rename_that_stopped_before_step_2_never_brings_the_session_back_after_logout() {
    let store = Arc::new(redis_cluster().await);
    let mut side = side_cluster().await;
    let (from, to) = keys_in_different_slots(&store, &mut side).await;
    let r = fresh(json!({"a": 1}));
    store.create(&from, &r).await.unwrap();
    pending_copy(&store, &mut side, &from, &to, &r).await;
    // The user logs out on the old id: its record is deleted, no tombstone is left.
    assert!(store.delete(&from).await.unwrap());
    assert_eq!(load(&store, &from).await, None);
    assert_eq!(load(&store, &to).await, None, "resurrected by the logout");
    assert!(matches!(
        store.update(&to, &set(&[("b", json!(1))]), now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.touch(&to, now() + Duration::hours(2), now()).await,
        Err(StoreError::Gone)
    ));
    let other = key();
    assert!(matches!(
        store.rename(&to, &other, &Change::default(), now()).await,
        Err(StoreError::Gone)
    ));
    assert_eq!(store.count(now()).await.unwrap().live, 0);
    // A tombstone naming another copy does not make this one valid either.
    tombstone(&store, &mut side, &from, &other).await;
    assert_eq!(load(&store, &to).await, None);
    assert_eq!(store.count(now()).await.unwrap().live, 0);
}

#[tokio::test]
async fn a_tombstone_is_no_session_and_outlives_no_copy() {
    let store = Arc::new(redis_cluster().await);
    let mut side = side_cluster().await;
    let (from, to) = keys_in_different_slots(&store, &mut side).await;
    store.create(&from, &fresh(json!({"a": 1}))).await.unwrap();
    let later = now() + Duration::hours(5);
    let change = Change {
        expiry: Some(ExpiryChange::Set(later)),
        ..set(&[("user", json!("alice"))])
    };
    store.rename(&from, &to, &change, now()).await.unwrap();
    // What the rename left under the old key: one field naming the copy, dropped by Redis
    // when the copy is.
    let old = store.redis_key(&from);
    let hash: Vec<(String, String)> = side.hgetall(&old).await.unwrap();
    assert_eq!(hash, vec![("m:moved_to".to_owned(), store.redis_key(&to))]);
    let drop_at = |k: String| redis::cmd("PEXPIRETIME").arg(k).clone();
    let old_at: i64 = drop_at(old.clone()).query_async(&mut side).await.unwrap();
    let new_at: i64 = drop_at(store.redis_key(&to))
        .query_async(&mut side)
        .await
        .unwrap();
    assert_eq!(old_at, millis(later) + RedisStore::EXPIRY_GRACE_MS);
    assert_eq!(old_at, new_at);
    // The old id: no session, not corrupt, not counted, and nothing recreates it.
    assert!(matches!(store.load(&from, now()).await, Ok(None)));
    assert!(matches!(
        store.update(&from, &set(&[("b", json!(1))]), now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.touch(&from, later, now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.rename(&from, &key(), &Change::default(), now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.create(&from, &fresh(json!({"a": 1}))).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(store.count(now()).await.unwrap().live, 1);
    // Logging out on the old id again finds nothing and leaves the tombstone.
    assert!(!store.delete(&from).await.unwrap());
    let hash: Vec<(String, String)> = side.hgetall(&old).await.unwrap();
    assert_eq!(hash.len(), 1);
    // Even for a copy not settled yet, which the tombstone alone makes valid.
    let (from, to) = keys_in_different_slots(&store, &mut side).await;
    let r = fresh(json!({"a": 1}));
    store.create(&from, &r).await.unwrap();
    pending_copy(&store, &mut side, &from, &to, &r).await;
    tombstone(&store, &mut side, &from, &to).await;
    assert!(!store.delete(&from).await.unwrap());
    assert_eq!(load(&store, &to).await.unwrap().data, data(json!({"a": 2})));
    assert_eq!(store.count(now()).await.unwrap().live, 2);
}

#[tokio::test]
async fn a_tombstone_is_no_session_on_a_single_server_either() {
    let store = Arc::new(redis().await);
    let mut side = side().await;
    let (k, other) = (key(), key());
    let _: () = side
        .hset(store.redis_key(&k), "m:moved_to", store.redis_key(&other))
        .await
        .unwrap();
    assert!(matches!(store.load(&k, now()).await, Ok(None)));
    assert!(matches!(
        store.update(&k, &set(&[("b", json!(1))]), now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.touch(&k, now() + Duration::hours(1), now()).await,
        Err(StoreError::Gone)
    ));
    assert!(matches!(
        store.rename(&k, &other, &Change::default(), now()).await,
        Err(StoreError::Gone)
    ));
    store.create(&other, &fresh(json!({"a": 1}))).await.unwrap();
    assert!(matches!(
        store.rename(&other, &k, &Change::default(), now()).await,
        Err(StoreError::DuplicateId)
    ));
    assert_eq!(store.count(now()).await.unwrap().live, 1);
    assert!(!store.delete(&k).await.unwrap());
    // Anything else under a session's key is still removed by a delete.
    let _: () = side.set(store.redis_key(&k), "a string").await.unwrap();
    assert!(store.delete(&k).await.unwrap());
}

#[tokio::test]
async fn cluster_count_sees_every_master() {
    let store = Arc::new(redis_cluster().await);
    let mut side = side_cluster().await;
    let mut slots = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let k = key();
        store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(store.redis_key(&k))
            .query_async(&mut side)
            .await
            .unwrap();
        slots.insert(slot / 5462); // three masters split the slots about evenly
    }
    assert_eq!(slots.len(), 3, "keys spread over the masters");
    assert_eq!(store.count(now()).await.unwrap().live, 40);
}

#[tokio::test]
async fn store_urls_open_redis_and_explain_bad_ones() {
    let mut side = side().await;
    let prefix = format!("{}:", unique_name("tidysession-test"));
    let url = format!("{}?prefix={}", redis_url(), prefix.replace(':', "%3A"));
    let store = tidysession::store::open(&url).await.unwrap();
    let shown = format!("{store:?}");
    assert!(
        shown.contains("RedisStore") && shown.contains("single"),
        "{shown}"
    );
    let k = key();
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    let exists: bool = side
        .exists(format!("{prefix}{}", k.to_hex()))
        .await
        .unwrap();
    assert!(exists, "the prefix parameter names the keys");

    let store = tidysession::store::open(&format!("{}?prefix={prefix}", redis_cluster_url()))
        .await
        .unwrap();
    assert!(format!("{store:?}").contains("cluster"));
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    assert_eq!(
        store
            .maintenance()
            .unwrap()
            .count(now())
            .await
            .unwrap()
            .live,
        1
    );

    // Credentials never show, neither in Debug nor in errors.
    let with_password = redis_url().replacen("redis://", "redis://default:sekrit@", 1);
    let store = RedisStore::connect(&with_password).await.unwrap();
    assert!(!format!("{store:?}").contains("sekrit"), "{store:?}");
    let err = tidysession::store::open("redis://someone:sekrit@127.0.0.1:1/0")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot open") && !err.contains("sekrit"),
        "{err}"
    );

    for bad in ["redis://", "redis+cluster://", "rediss+cluster://a:1"] {
        let err = tidysession::store::open(bad).await.unwrap_err().to_string();
        assert!(err.contains("redis+cluster://HOST:PORT"), "{bad}: {err}");
    }
    for bad in [
        "redis+cluster://127.0.0.1:7000,,127.0.0.1:7001",
        "redis+cluster://127.0.0.1:7000/0",
        "redis://127.0.0.1:6379?prefix=%zz",
        "redis://127.0.0.1:notaport",
    ] {
        let err = tidysession::store::open(bad).await.unwrap_err().to_string();
        assert!(err.contains("cannot open"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn the_database_in_the_url_holds_the_sessions() {
    // Database 9 of the test server; keys are under a prefix of this test's own.
    let base = redis_url();
    let base = base.split('?').next().unwrap().trim_end_matches('/');
    for url in [format!("{base}/9"), format!("{base}/9?protocol=resp3")] {
        let store = crate::util::servers::redis_at(&url).await;
        let k = key();
        store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
        let mut db9 = redis::Client::open(format!("{base}/9"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let in_9: bool = db9.exists(store.redis_key(&k)).await.unwrap();
        let in_0: bool = side().await.exists(store.redis_key(&k)).await.unwrap();
        assert!(in_9 && !in_0, "{url}: in db 9 {in_9}, in db 0 {in_0}");
        let got = store.load(&k, now()).await.unwrap().unwrap();
        assert_eq!(got.data, data(json!({"a": 1})));
        assert!(store.delete(&k).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_requests_at_once_each_get_their_own_reply() {
    // Replies come back in one stream; each must reach the request it answers, including
    // errors (a key that is not a hash) and pipelines (counting) in between.
    let store = Arc::new(redis().await);
    let mut side = side().await;
    let keys: Vec<StorageKey> = (0..64).map(|_| key()).collect();
    for (i, k) in keys.iter().enumerate() {
        store.create(k, &fresh(json!({"i": i}))).await.unwrap();
    }
    let not_a_hash = key();
    let _: () = side
        .set(store.redis_key(&not_a_hash), "plain string")
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..8 {
        for (i, k) in keys.iter().copied().enumerate() {
            let store = store.clone();
            tasks.spawn(async move {
                let got = store.load(&k, now()).await.unwrap().unwrap();
                assert_eq!(got.data, data(json!({"i": i})), "round {round}");
            });
        }
        let store = store.clone();
        let bad = not_a_hash;
        tasks.spawn(async move {
            assert!(
                store.load(&bad, now()).await.is_err(),
                "a string is no session"
            );
            assert_eq!(store.count(now()).await.unwrap().live, 64);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let _: () = side.del(store.redis_key(&not_a_hash)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_fails_requests_in_time_and_replies_stay_in_step() {
    use crate::util::proxy::Proxy;
    let (proxy, url) = Proxy::in_front_of(&redis_url(), 6379).await;
    let store = Arc::new(crate::util::servers::redis_at(&url).await);
    let (a, b) = (key(), key());
    store.create(&a, &fresh(json!({"k": "a"}))).await.unwrap();
    store.create(&b, &fresh(json!({"k": "b"}))).await.unwrap();

    proxy.stall();
    let started = std::time::Instant::now();
    let err = store.load(&a, now()).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "no hang"
    );
    assert!(err.contains("did not reply in time"), "{err}");
    // The reply to that load comes once the server answers again, after this load's
    // command: each must still reach its own request.
    let late = {
        let store = store.clone();
        tokio::spawn(async move { store.load(&b, now()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    proxy.restore();
    let got = late.await.unwrap().unwrap().unwrap();
    assert_eq!(got.data, data(json!({"k": "b"})));
    let got = store.load(&a, now()).await.unwrap().unwrap();
    assert_eq!(got.data, data(json!({"k": "a"})));
}

/// On both kinds of connection (the store's own, and RESP3 through the `redis` crate): a
/// reply a second late is no error, and a server that stops answering fails a request in
/// seconds, not never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reply_is_waited_for_and_a_stalled_server_fails_in_time() {
    use crate::util::proxy::Proxy;
    use crate::util::servers::with_param;
    use std::time::{Duration as StdDuration, Instant};
    for resp3 in [false, true] {
        let (proxy, url) = Proxy::in_front_of(&redis_url(), 6379).await;
        let url = if resp3 {
            with_param(&url, "protocol=resp3")
        } else {
            url
        };
        let store = Arc::new(crate::util::servers::redis_at(&url).await);
        let k = key();
        store.create(&k, &fresh(json!({"k": 1}))).await.unwrap();

        proxy.stall();
        let slow = {
            let store = store.clone();
            tokio::spawn(async move { store.load(&k, now()).await })
        };
        tokio::time::sleep(StdDuration::from_secs(1)).await;
        proxy.restore();
        let got = slow.await.unwrap();
        assert!(matches!(got, Ok(Some(_))), "resp3 {resp3}: {got:?}");

        proxy.stall();
        let started = Instant::now();
        let got = store.load(&k, now()).await;
        assert!(got.is_err(), "resp3 {resp3}: {got:?}");
        assert!(started.elapsed() < StdDuration::from_secs(5), "no hang");
        proxy.restore();
    }
}

#[tokio::test]
async fn rename_judges_the_new_key_at_the_renames_own_now() {
    for store in [redis().await, redis_cluster().await] {
        let store = Arc::new(store);
        let t = now();
        let (from, to) = (key(), key());
        store
            .create(&from, &record(json!({"a": 1}), t, t + Duration::hours(3)))
            .await
            .unwrap();
        store
            .create(&to, &record(json!({"b": 1}), t, t + Duration::hours(1)))
            .await
            .unwrap();
        // At the rename's `now` the record under `to` has expired, whatever the wall clock.
        let later = t + Duration::hours(2);
        store
            .rename(&from, &to, &Change::default(), later)
            .await
            .unwrap_or_else(|e| panic!("{store:?}: {e}"));
        let got = store.load(&to, later).await.unwrap().unwrap();
        assert_eq!(got.data, data(json!({"a": 1})), "{store:?}");
    }
}

/// The members of a user's index: session keys in hex.
async fn index_members<C: redis::aio::ConnectionLike + Send>(
    side: &mut C,
    index: &str,
) -> std::collections::BTreeSet<String> {
    redis::cmd("ZRANGE")
        .arg(index)
        .arg(0)
        .arg(-1)
        .query_async(side)
        .await
        .unwrap()
}

async fn index_expiry<C: redis::aio::ConnectionLike + Send>(
    side: &mut C,
    index: &str,
    k: &StorageKey,
) -> (i64, i64) {
    let score: f64 = redis::cmd("ZSCORE")
        .arg(index)
        .arg(k.to_hex())
        .query_async(side)
        .await
        .unwrap();
    let expire_time: i64 = redis::cmd("PEXPIRETIME")
        .arg(index)
        .query_async(side)
        .await
        .unwrap();
    (score as i64, expire_time)
}

/// The index key expires no earlier than the latest session in it, through touches and
/// updates that move a session's expiry.
async fn index_expires_with_its_sessions<C: redis::aio::ConnectionLike + Send>(
    store: RedisStore,
    mut side: C,
) {
    let grace = RedisStore::EXPIRY_GRACE_MS;
    let alice = unique_name("alice");
    let index = store.user_index_key(&alice);
    let k = key();
    let r = fresh(json!({USER_KEY: alice}));
    store.create(&k, &r).await.unwrap();
    let (score, expires) = index_expiry(&mut side, &index, &k).await;
    assert_eq!(
        score,
        millis(r.expires_at) + grace,
        "scored by when the hash drops"
    );
    assert!(expires >= score, "{expires} < {score}");
    let later = r.expires_at + Duration::hours(2);
    store.touch(&k, later, now()).await.unwrap();
    let (score, expires) = index_expiry(&mut side, &index, &k).await;
    assert_eq!(score, millis(later) + grace, "a touch extends the entry");
    assert!(expires >= score);
    let latest = later + Duration::hours(2);
    let change = Change {
        expiry: Some(ExpiryChange::Touch(latest)),
        ..set(&[("seen", json!(true))])
    };
    store.update(&k, &change, now()).await.unwrap();
    let (score, expires) = index_expiry(&mut side, &index, &k).await;
    assert_eq!(score, millis(latest) + grace, "so does an update");
    assert!(expires >= score);
    // An anonymous session has no index to extend.
    let anon = key();
    let r = fresh(json!({"a": 1}));
    store.create(&anon, &r).await.unwrap();
    store.touch(&anon, latest, now()).await.unwrap();
    let members = index_members(&mut side, &index).await;
    assert!(!members.contains(&anon.to_hex()), "{members:?}");
    // A login without an expiry change indexes the session up to the expiry it has.
    store
        .update(&anon, &set(&[(USER_KEY, json!(alice))]), now())
        .await
        .unwrap();
    let (score, expires) = index_expiry(&mut side, &index, &anon).await;
    assert_eq!(
        score,
        millis(latest) + grace,
        "a login files the expiry it finds"
    );
    assert!(expires >= score);
    // So does a rename carrying the user along, on either kind of server.
    let moved = key();
    store
        .rename(&anon, &moved, &Change::default(), now())
        .await
        .unwrap();
    let (score, expires) = index_expiry(&mut side, &index, &moved).await;
    assert_eq!(
        score,
        millis(latest) + grace,
        "a rename files the expiry it finds"
    );
    assert!(expires >= score);
}

#[tokio::test]
async fn the_user_index_expires_with_its_sessions() {
    index_expires_with_its_sessions(redis().await, side().await).await;
}

#[tokio::test]
async fn the_user_index_expires_with_its_sessions_on_a_cluster() {
    index_expires_with_its_sessions(redis_cluster().await, side_cluster().await).await;
}

/// Entries of deleted, expired, re-filed and renamed sessions are never listed, and go when
/// their score passes (a deleted session's at once); revocation deletes only the user's own.
async fn stale_entries_are_skipped_and_go_by_score<C: redis::aio::ConnectionLike + Send>(
    store: RedisStore,
    mut side: C,
) {
    let (alice, bob) = (unique_name("alice"), unique_name("bob"));
    let index = store.user_index_key(&alice);
    let as_alice = || fresh(json!({USER_KEY: alice}));
    let (live, deleted, expired, refiled, renamed) = (key(), key(), key(), key(), key());
    for k in [&live, &deleted, &refiled, &renamed] {
        store.create(k, &as_alice()).await.unwrap();
    }
    let t = now();
    let short = record(json!({USER_KEY: alice}), t, t + Duration::milliseconds(300));
    store.create(&expired, &short).await.unwrap();
    store.delete(&deleted).await.unwrap();
    store
        .update(&refiled, &set(&[(USER_KEY, json!(bob))]), now())
        .await
        .unwrap();
    let moved = key();
    store
        .rename(&renamed, &moved, &Change::default(), now())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let listed = |sessions: Vec<(StorageKey, tidysession::store::Record)>| {
        sessions
            .into_iter()
            .map(|(k, _)| k.to_hex())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let index_of = store.user_index().unwrap();
    let want: std::collections::BTreeSet<String> =
        [live.to_hex(), moved.to_hex()].into_iter().collect();
    assert_eq!(
        listed(index_of.sessions_of(&alice, now()).await.unwrap()),
        want
    );
    // A delete drops its entry; a listing removes nothing, since an entry may belong to a
    // write still on its way.
    let stale = [&expired, &refiled, &renamed];
    let members = index_members(&mut side, &index).await;
    assert!(!members.contains(&deleted.to_hex()), "{members:?}");
    for k in stale {
        assert!(members.contains(&k.to_hex()), "removed on sight");
    }
    // As if their hashes' time had passed: the next entry added drops them.
    for k in stale {
        let _: i64 = redis::cmd("ZADD")
            .arg(&index)
            .arg("XX")
            .arg(1)
            .arg(k.to_hex())
            .query_async(&mut side)
            .await
            .unwrap();
    }
    let another = key();
    store.create(&another, &as_alice()).await.unwrap();
    let mut want = want;
    want.insert(another.to_hex());
    assert_eq!(index_members(&mut side, &index).await, want);
    assert_eq!(
        listed(index_of.sessions_of(&alice, now()).await.unwrap()),
        want
    );
    // Revocation deletes what really is alice's, whatever her index holds.
    let _: i64 = redis::cmd("ZADD")
        .arg(&index)
        .arg(millis(now() + Duration::hours(2)))
        .arg(refiled.to_hex())
        .query_async(&mut side)
        .await
        .unwrap();
    assert_eq!(index_of.delete_sessions_of(&alice, None).await.unwrap(), 3);
    assert!(
        store.load(&refiled, now()).await.unwrap().is_some(),
        "bob's"
    );
    for k in [&live, &moved, &another] {
        assert!(store.load(k, now()).await.unwrap().is_none());
    }
    assert!(listed(index_of.sessions_of(&alice, now()).await.unwrap()).is_empty());
}

#[tokio::test]
async fn stale_user_index_entries_are_skipped_and_go_by_score() {
    stale_entries_are_skipped_and_go_by_score(redis().await, side().await).await;
}

#[tokio::test]
async fn stale_user_index_entries_are_skipped_and_go_by_score_on_a_cluster() {
    stale_entries_are_skipped_and_go_by_score(redis_cluster().await, side_cluster().await).await;
}
