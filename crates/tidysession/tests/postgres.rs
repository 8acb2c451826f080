//! What PostgreSQL holds, and what the PostgreSQL store does beyond the common contract.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection as _;
use tidysession::store::Change;
use tidysession::store::{PostgresStore, SessionStore};

use crate::conformance::{fresh, key, now, record, set};
use crate::util::proxy::Proxy;
use crate::util::servers::{postgres, postgres_at, postgres_url, unique_name, DropOnExit};
use crate::util::Harness;
use tidysession::store::Maintenance as _;

async fn side_connection() -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&postgres_url()).await.unwrap()
}

#[tokio::test]
async fn rows_hold_only_the_hash_of_the_id() {
    let (store, guard) = postgres().await;
    let schema = guard.name.clone();
    let h = Harness::new(store, crate::util::server_tier());
    let r = h.get("/write?k=cart&v=3", None).await;
    let id = r.session_id().unwrap();
    let r = h.get("/cycle", Some(&r.cookie())).await;
    let cycled = r.session_id().unwrap();
    let mut db = side_connection().await;
    let rows: Vec<(Vec<u8>, String)> = sqlx::query_as(&format!(
        "SELECT id, data::text FROM \"{schema}\".tidysession_sessions"
    ))
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "the old id's row moved, not copied");
    let key = tidysession::store::SessionId::parse(&cycled)
        .unwrap()
        .storage_key();
    assert_eq!(rows[0].0, key.as_bytes());
    assert_eq!(rows[0].1, r#"{"cart": 3}"#);
    for raw in [&id, &cycled] {
        let hits: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".tidysession_sessions
             WHERE position($1 in data::text) > 0 OR position(convert_to($1, 'UTF8') in id) > 0"
        ))
        .bind(raw)
        .fetch_one(&mut db)
        .await
        .unwrap();
        assert_eq!(hits, 0, "raw id at rest");
    }
}

#[tokio::test]
async fn a_one_key_save_of_a_large_session_sends_only_that_key() {
    let (proxy, through) = Proxy::in_front_of(&postgres_url(), 5432).await;
    let (store, _guard) = postgres_at(&through).await;
    let k = key();
    let pad = "x".repeat(2048);
    store
        .create(&k, &fresh(json!({"pad": pad, "n": 0})))
        .await
        .unwrap();
    // Warm up: the statement is prepared once per connection.
    store
        .update(&k, &set(&[("n", json!(1))]), now())
        .await
        .unwrap();
    let before = proxy.bytes_sent();
    store
        .update(&k, &set(&[("n", json!(2))]), now())
        .await
        .unwrap();
    let sent = proxy.bytes_sent() - before;
    assert!(sent < 400, "a one-key save sent {sent} bytes");
    let r = store.load(&k, now()).await.unwrap().unwrap();
    assert_eq!(
        (r.data["n"].clone(), r.data["pad"].as_str().unwrap().len()),
        (json!(2), 2048)
    );
}

#[tokio::test]
async fn schema_names_are_checked_and_urls_choose_the_schema() {
    let store = PostgresStore::connect(&postgres_url()).await.unwrap();
    for bad in ["", "a b", "x\"; DROP TABLE t; --", "1abc", &"s".repeat(64)] {
        let err = PostgresStore::connect(&postgres_url())
            .await
            .unwrap()
            .with_schema(bad)
            .unwrap_err();
        assert!(
            err.to_string().contains("invalid schema name"),
            "{bad}: {err}"
        );
    }
    drop(store);
    let schema = unique_name("tidysession_url");
    let _guard = DropOnExit::postgres_schema(&schema);
    let url = format!("{}?schema={schema}", postgres_url());
    let store = tidysession::store::open(&url).await.unwrap();
    store.maintenance().unwrap().migrate().await.unwrap();
    store.create(&key(), &fresh(json!({"a": 1}))).await.unwrap();
    let mut db = side_connection().await;
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {schema}.tidysession_sessions"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert!(!format!("{store:?}").contains("password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_migrating_at_once_migrate_once() {
    let schema = unique_name("tidysession_mig");
    let _guard = DropOnExit::postgres_schema(&schema);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let schema = schema.clone();
            tokio::spawn(async move {
                let store = PostgresStore::connect(&postgres_url()).await.unwrap();
                store.with_schema(&schema).unwrap().migrate().await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut db = side_connection().await;
    let versions: Vec<i32> =
        sqlx::query_scalar(&format!("SELECT version FROM {schema}.tidysession_schema"))
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(versions, vec![1]);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname",
    )
    .bind(&schema)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "tidysession_sessions_expires_at",
            "tidysession_sessions_pkey",
            "tidysession_sessions_user_id"
        ]
    );
}

#[tokio::test]
async fn a_schema_from_a_newer_version_is_refused() {
    let (store, guard) = postgres().await;
    let schema = guard.name.clone();
    let mut db = side_connection().await;
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".tidysession_schema VALUES (99)"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    let err = store.migrate().await.unwrap_err().to_string();
    assert!(err.contains("newer than this build"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_skips_rows_another_cleaner_holds_instead_of_waiting() {
    let (store, guard) = postgres().await;
    let schema = guard.name.clone();
    let t = now();
    for i in 0..10 {
        let exp = t - time::Duration::minutes(60 - i);
        store
            .create(
                &key(),
                &record(json!({"i": i}), exp - time::Duration::hours(1), exp),
            )
            .await
            .unwrap();
    }
    // Another process is in the middle of a batch: it holds the five oldest.
    let mut other = side_connection().await;
    let mut tx = other.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT id FROM \"{schema}\".tidysession_sessions ORDER BY expires_at LIMIT 5 FOR UPDATE"
    ))
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), store.delete_expired(None, t, 100))
        .await
        .expect("a cleaner never waits on another")
        .unwrap();
    assert_eq!(done.deleted, 5);
    tx.rollback().await.unwrap();
    assert_eq!(store.delete_expired(None, t, 100).await.unwrap().deleted, 5);
}

#[tokio::test]
async fn a_corrupt_row_reads_as_no_session_and_is_left_in_place() {
    let (store, guard) = postgres().await;
    let schema = guard.name.clone();
    let h = Harness::new(store, crate::util::server_tier());
    let cookie = h.get("/write?k=a&v=1", None).await.cookie();
    let mut db = side_connection().await;
    sqlx::query(&format!(
        "UPDATE \"{schema}\".tidysession_sessions SET data = '[1, 2]'::jsonb"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    let r = h.get("/read?k=a", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "", "a corrupt record reads as an empty session");
    let left: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".tidysession_sessions"
    ))
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(left, 1, "left in place for an operator to inspect");
    let _ = Change::default();
}

#[tokio::test]
async fn a_corrupt_row_is_left_out_of_its_users_listing_with_a_warning() {
    use tidysession::store::USER_KEY;

    crate::util::logs::captured();
    let (store, guard) = postgres().await;
    let (good, bad) = (key(), key());
    for k in [&good, &bad] {
        store
            .create(k, &fresh(json!({USER_KEY: "alice"})))
            .await
            .unwrap();
    }
    let mut db = side_connection().await;
    sqlx::query(&format!(
        "UPDATE \"{}\".tidysession_sessions SET data = '[1, 2]'::jsonb WHERE id = $1",
        guard.name
    ))
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
