//! The cache in front of a store: what it saves, and exactly how stale it may be.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidysession::store::{CachedStore, MemoryStore, SessionStore};
use tidysession::tooling::CountingStore;

use crate::conformance::{fresh, key, now, set};
use crate::util::Harness;

type Shared = Arc<CountingStore<MemoryStore>>;

/// Two app processes sharing one store, each with its own cache.
fn two_processes(ttl: Duration) -> (Shared, CachedStore<Shared>, CachedStore<Shared>) {
    let shared = Arc::new(CountingStore::new(MemoryStore::default()));
    let a = CachedStore::new(shared.clone()).with_ttl(ttl);
    let b = CachedStore::new(shared.clone()).with_ttl(ttl);
    (shared, a, b)
}

#[tokio::test]
async fn repeated_loads_are_served_from_memory() {
    let (shared, a, _) = two_processes(Duration::from_secs(60));
    let k = key();
    a.create(&k, &fresh(json!({"n": 1}))).await.unwrap();
    for _ in 0..10 {
        assert_eq!(a.load(&k, now()).await.unwrap().unwrap().data["n"], 1);
    }
    assert_eq!(shared.counts().loads, 1);
}

#[tokio::test]
async fn own_writes_are_seen_at_once() {
    let (_, a, _) = two_processes(Duration::from_secs(60));
    let k = key();
    a.create(&k, &fresh(json!({"n": 1}))).await.unwrap();
    a.load(&k, now()).await.unwrap();
    a.update(&k, &set(&[("n", json!(2))]), now()).await.unwrap();
    assert_eq!(a.load(&k, now()).await.unwrap().unwrap().data["n"], 2);
    assert!(a.delete(&k).await.unwrap());
    assert_eq!(a.load(&k, now()).await.unwrap(), None);
}

#[tokio::test]
async fn another_process_changes_are_seen_within_the_ttl() {
    // Long enough that the second load surely falls within it, on a busy machine too.
    let ttl = Duration::from_secs(2);
    let (_, a, b) = two_processes(ttl);
    let k = key();
    a.create(&k, &fresh(json!({"n": 1}))).await.unwrap();
    assert!(a.load(&k, now()).await.unwrap().is_some());
    // Logged out in process B: A may still accept the session, but only within the TTL.
    assert!(b.delete(&k).await.unwrap());
    assert!(
        a.load(&k, now()).await.unwrap().is_some(),
        "stale within the TTL"
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(a.load(&k, now()).await.unwrap(), None, "seen after the TTL");
    // And A's write to it is refused: nothing comes back to life.
    let r = a.update(&k, &set(&[("n", json!(3))]), now()).await;
    assert!(matches!(r, Err(tidysession::StoreError::Gone)), "{r:?}");
}

#[tokio::test]
async fn a_stale_entry_never_outlives_the_record_expiry() {
    let (_, a, _) = two_processes(Duration::from_secs(60));
    let k = key();
    let t = now();
    let r = crate::conformance::record(json!({"n": 1}), t, t + time::Duration::seconds(5));
    a.create(&k, &r).await.unwrap();
    assert!(a.load(&k, now()).await.unwrap().is_some());
    assert_eq!(
        a.load(&k, t + time::Duration::seconds(5)).await.unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_load_racing_a_logout_never_caches_the_old_record() {
    // Loads in flight while this process deletes: none may put the deleted record back.
    let (_, a, _) = two_processes(Duration::from_secs(60));
    let a = Arc::new(a);
    for _ in 0..50 {
        let k = key();
        a.create(&k, &fresh(json!({"n": 1}))).await.unwrap();
        let loads: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move { a.load(&k, now()).await.unwrap() })
            })
            .collect();
        a.delete(&k).await.unwrap();
        for l in loads {
            l.await.unwrap();
        }
        assert_eq!(
            a.load(&k, now()).await.unwrap(),
            None,
            "deleted stays deleted"
        );
    }
}

#[tokio::test]
async fn through_the_layer_a_read_heavy_session_costs_one_load() {
    let h = Harness::new(
        CachedStore::new(CountingStore::new(MemoryStore::default())),
        crate::util::server_tier(),
    );
    let cookie = h.get("/write?k=a&v=1", None).await.cookie();
    for _ in 0..20 {
        assert_eq!(h.get("/read?k=a", Some(&cookie)).await.body, "1");
    }
    assert_eq!(h.store.inner().inner().counts().loads, 1);
    assert_eq!(h.counts().loads, 20);
}
