//! Concurrent requests on one session, through the layer, on SQLite: no lost updates, no
//! resurrection.

use std::sync::Arc;

use tidysession::store::SqliteStore;
use tidysession::SessionConfig;

use crate::util::Harness;

async fn sqlite() -> (Arc<Harness<SqliteStore>>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db").to_str().unwrap())
        .await
        .unwrap();
    tidysession::SessionStore::migrate(&store).await.unwrap();
    let h = Harness::new(store, SessionConfig::default());
    let cookie = h.get("/write?k=seed&v=0", None).await.cookie();
    (Arc::new(h), cookie, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_overlapping_requests_writing_different_keys_both_survive() {
    let (h, cookie, _dir) = sqlite().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_requests_keep_all_thirty_two_keys() {
    let (h, cookie, _dir) = sqlite().await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_a_logout_never_bring_the_session_back() {
    let (h, cookie, _dir) = sqlite().await;
    let writers: Vec<_> = (0..8)
        .map(|i| {
            let (h, c) = (h.clone(), cookie.clone());
            tokio::spawn(async move {
                h.get(&format!("/write?k=w{i}&v=1&sleep_ms={}", i * 60), Some(&c))
                    .await
            })
        })
        .collect();
    // Every writer has loaded long before this (margins for a loaded CI machine); about half
    // of them save before the logout and half after.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(h.get("/flush", Some(&cookie)).await.removes_session());
    for w in writers {
        w.await.unwrap();
    }
    let counts = tidysession::SessionStore::count(&*h.store, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(counts.live, 0, "logged out stays logged out");
    assert!(h.get("/read?k=seed", Some(&cookie)).await.removes_session());
}
