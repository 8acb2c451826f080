//! What the SQLite file holds at rest.

use tidysession::store::{SessionStore, SqliteStore};

use crate::util::Harness;
use tidysession::store::Maintenance as _;

/// A connection of the test's own to the store's database file.
async fn side_connection(path: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::Connection as _;
    sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn no_raw_session_id_appears_anywhere_in_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rest.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    let h = Harness::new(store, crate::util::server_tier());
    let mut ids = Vec::new();
    for i in 0..20 {
        let r = h.get(&format!("/write?k=n&v={i}"), None).await;
        let id = r.session_id().unwrap();
        if i % 2 == 0 {
            // Cycled ids must not leave the old one behind either.
            let r = h.get("/cycle", Some(&r.cookie())).await;
            ids.push(r.session_id().unwrap());
        }
        ids.push(id);
    }
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(bytes.len() > 4096, "read the database files");
    let text = String::from_utf8_lossy(&bytes);
    for id in &ids {
        assert!(!text.contains(id.as_str()), "raw id found at rest");
    }
    // What is there instead: the SHA-256 of the live id.
    let key = tidysession::store::SessionId::parse(&ids[0])
        .unwrap()
        .storage_key();
    assert!(
        bytes.windows(32).any(|w| w == key.as_bytes()),
        "hash of the id is the key"
    );
}

#[tokio::test]
async fn a_corrupt_row_reads_as_no_session_and_is_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    let mut db = side_connection(&path).await;
    let h = Harness::new(store, crate::util::server_tier());
    let cookie = h.get("/write?k=a&v=1", None).await.cookie();
    sqlx::query("UPDATE tidysession_sessions SET data = 'not json'")
        .execute(&mut db)
        .await
        .unwrap();
    let r = h.get("/read?k=a", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert!(r.removes_session(), "{r:?}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tidysession_sessions")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(n, 1, "kept for an operator to inspect");
}

#[tokio::test]
async fn a_store_that_fails_gives_a_503_and_untouched_requests_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    let mut db = side_connection(&path).await;
    let h = Harness::new(store, crate::util::server_tier());
    let cookie = h.get("/write?k=a&v=1", None).await.cookie();
    sqlx::query("DROP TABLE tidysession_sessions")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(h.get("/untouched", Some(&cookie)).await.status, 200);
    let read = h.get("/read?k=a", Some(&cookie)).await;
    assert_eq!(read.status, 503, "{read:?}");
    assert!(read.sets_nothing());
    let write = h.get("/write?k=b&v=1", None).await;
    assert_eq!(write.status, 503, "save failure is not a 200: {write:?}");
    assert!(write.sets_nothing());
}

#[tokio::test]
async fn a_corrupt_row_is_left_out_of_its_users_listing_with_a_warning() {
    use crate::conformance::{fresh, key, now};
    use serde_json::json;
    use tidysession::store::USER_KEY;

    crate::util::logs::captured();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    let (good, bad) = (key(), key());
    for k in [&good, &bad] {
        store
            .create(k, &fresh(json!({USER_KEY: "alice"})))
            .await
            .unwrap();
    }
    let mut db = side_connection(&path).await;
    sqlx::query("UPDATE tidysession_sessions SET data = 'not json' WHERE id = ?")
        .bind(bad.as_bytes().as_slice())
        .execute(&mut db)
        .await
        .unwrap();
    let index = store.user_index().unwrap();
    let listed = index.sessions_of("alice", now()).await.unwrap();
    assert_eq!(
        listed.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [good],
        "the corrupt record hides nothing"
    );
    assert!(
        crate::util::logs::captured().contains("corrupt"),
        "skipping it is logged"
    );
    // Revoking the user's sessions takes the corrupt one too.
    assert_eq!(index.delete_sessions_of("alice", None).await.unwrap(), 2);
}
