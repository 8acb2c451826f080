//! Concurrent requests on one session, through the layer, on every store: no lost updates,
//! no resurrection. (The conformance suite checks the same at the store's level.)

use std::sync::Arc;

use tidysession::store::SessionStore;

use crate::util::{Altered, Harness};
use tidysession::store::Maintenance as _;

/// Expands to the concurrency tests for the store `$make` builds, as `(store, guard)`.
macro_rules! concurrency_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::concurrency::concurrency_suite!(@cases $make;
                two_overlapping_requests_writing_different_keys_both_survive,
                thirty_two_concurrent_requests_keep_all_thirty_two_keys,
                writes_racing_a_logout_never_bring_the_session_back
            );
        }
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::concurrency::$case(store).await;
            }
        )*
    };
}
pub(crate) use concurrency_suite;

concurrency_suite!(sqlite, async {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = tidysession::store::SqliteStore::open(path.to_str().unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    (store, dir)
});
concurrency_suite!(memory, async {
    (tidysession::store::MemoryStore::default(), ())
});
#[cfg(feature = "postgres")]
concurrency_suite!(postgres, crate::util::servers::postgres());
#[cfg(feature = "mysql")]
concurrency_suite!(mysql, crate::util::servers::mysql());
#[cfg(feature = "redis")]
concurrency_suite!(redis, async { (crate::util::servers::redis().await, ()) });
#[cfg(feature = "redis")]
concurrency_suite!(redis_cluster, async {
    (crate::util::servers::redis_cluster().await, ())
});
#[cfg(all(feature = "django", feature = "postgres"))]
concurrency_suite!(django_postgres, crate::util::servers::django_postgres());
#[cfg(all(feature = "django", feature = "mysql"))]
concurrency_suite!(django_mysql, crate::util::servers::django_mysql());
#[cfg(all(feature = "django", feature = "sqlite"))]
concurrency_suite!(django_sqlite, crate::util::servers::django_sqlite());
#[cfg(all(feature = "cached", feature = "postgres"))]
concurrency_suite!(cached_postgres, async {
    let (store, guard) = crate::util::servers::postgres().await;
    (tidysession::store::CachedStore::new(store), guard)
});

/// The store behind the layer, and a session holding `seed = 0`.
async fn seeded<S: SessionStore>(store: S) -> (Arc<Harness<S>>, String) {
    let h = Harness::new(store, crate::util::server_tier());
    let cookie = h.get("/write?k=seed&v=0", None).await.cookie();
    (Arc::new(h), cookie)
}

pub async fn two_overlapping_requests_writing_different_keys_both_survive<S: SessionStore>(
    store: S,
) {
    let (h, cookie) = seeded(store).await;
    // Both load before either saves: a whole-record save would lose one of them.
    let a = {
        let (h, c) = (h.clone(), cookie.clone());
        tokio::spawn(async move { h.get("/write?k=a&v=1&sleep_ms=100", Some(&c)).await })
    };
    let b = {
        let (h, c) = (h.clone(), cookie.clone());
        tokio::spawn(async move { h.get("/write?k=b&v=2&sleep_ms=100", Some(&c)).await })
    };
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(b.await.unwrap().status, 200);
    assert_eq!(h.get("/read?k=a", Some(&cookie)).await.body, "1");
    assert_eq!(h.get("/read?k=b", Some(&cookie)).await.body, "2");
    assert_eq!(h.get("/read?k=seed", Some(&cookie)).await.body, "0");
}

pub async fn thirty_two_concurrent_requests_keep_all_thirty_two_keys<S: SessionStore>(store: S) {
    let (h, cookie) = seeded(store).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (h, c) = (h.clone(), cookie.clone());
            tokio::spawn(async move {
                h.get(&format!("/write?k=k{i}&v={i}&sleep_ms=20"), Some(&c))
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    for i in 0..32 {
        assert_eq!(
            h.get(&format!("/read?k=k{i}"), Some(&cookie)).await.body,
            i.to_string()
        );
    }
}

pub async fn writes_racing_a_logout_never_bring_the_session_back<S: SessionStore>(store: S) {
    let (h, cookie) = seeded(Altered::new(store)).await;
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (h, c) = (h.clone(), cookie.clone());
            tokio::spawn(async move {
                h.get(&format!("/write?k=w{i}&v=1&sleep_ms={}", i * 60), Some(&c))
                    .await
            })
        })
        .collect();
    // Every writer loads before the logout (one that loaded after it would rightly start a
    // new session); they save 0 to 420 ms after loading, so about half save before the
    // logout and half after.
    h.store.inner().loads_finished(8).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(h.get("/flush", Some(&cookie)).await.removes_session());
    for w in writers {
        w.await.unwrap();
    }
    let counts = h
        .store
        .maintenance()
        .unwrap()
        .count(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(counts.live, 0, "logged out stays logged out");
    assert!(h.get("/read?k=seed", Some(&cookie)).await.removes_session());
}

/// Saves of one session that overlap in one process reach the store as one update per
/// round trip, not one each, and every key is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_saves_of_one_session_are_sent_as_one_update() {
    let slow = crate::util::Altered::slow_updates(
        tidysession::store::MemoryStore::default(),
        std::time::Duration::from_millis(300),
    );
    let (h, cookie) = seeded(slow).await;
    let before = h.counts().updates;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (h, c) = (h.clone(), cookie.clone());
            tokio::spawn(async move { h.get(&format!("/write?k=k{i}&v={i}"), Some(&c)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().status, 200);
    }
    let updates = h.counts().updates - before;
    // The first save is in flight for 300 ms; the other 15 arrive meanwhile and go as one
    // (a third only if the machine is slow enough to spread their arrival past 300 ms).
    assert!((2..=3).contains(&updates), "{updates} updates for 16 saves");
    for i in 0..16 {
        let read = h.get(&format!("/read?k=k{i}"), Some(&cookie)).await;
        assert_eq!(read.body, i.to_string());
    }
}
