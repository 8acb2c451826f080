//! Every store runs the conformance suite, one line each.

use tidysession::store::Maintenance as _;
use tidysession::store::{MemoryStore, SessionStore, SqliteStore};

crate::conformance_suite!(memory, async { (MemoryStore::default(), ()) });
crate::user_index_suite!(memory_user_index, async { (MemoryStore::default(), ()) });

crate::conformance_suite!(sqlite, async {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
});
crate::user_index_suite!(sqlite_user_index, async {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
});

// A fresh table per test, dropped when the test ends (see `mysql::fresh_store`).
#[cfg(feature = "mysql")]
crate::conformance_suite!(mysql, crate::util::servers::mysql());
#[cfg(feature = "mysql")]
crate::user_index_suite!(mysql_user_index, crate::util::servers::mysql());

crate::conformance_suite!(sqlite_in_memory, async {
    let store = SqliteStore::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    (store, ())
});
crate::user_index_suite!(sqlite_in_memory_user_index, async {
    let store = SqliteStore::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    (store, ())
});

#[cfg(feature = "cached")]
crate::conformance_suite!(cached_memory, async {
    (
        tidysession::store::CachedStore::new(MemoryStore::default()),
        (),
    )
});

#[cfg(feature = "cached")]
crate::user_index_suite!(cached_memory_user_index, async {
    (
        tidysession::store::CachedStore::new(MemoryStore::default()),
        (),
    )
});

#[cfg(all(feature = "cached", feature = "postgres"))]
crate::conformance_suite!(cached_postgres, async {
    let (store, guard) = crate::util::servers::postgres().await;
    (tidysession::store::CachedStore::new(store), guard)
});
#[cfg(all(feature = "cached", feature = "postgres"))]
crate::user_index_suite!(cached_postgres_user_index, async {
    let (store, guard) = crate::util::servers::postgres().await;
    (tidysession::store::CachedStore::new(store), guard)
});

#[cfg(feature = "postgres")]
crate::conformance_suite!(postgres, crate::util::servers::postgres());
#[cfg(feature = "postgres")]
crate::user_index_suite!(postgres_user_index, crate::util::servers::postgres());

// Each test files its keys under a prefix of its own, so counts see only its records.
#[cfg(feature = "redis")]
crate::conformance_suite!(redis, async { (crate::util::servers::redis().await, ()) });

#[cfg(feature = "redis")]
crate::conformance_suite!(redis_resp3, async {
    (crate::util::servers::redis_resp3().await, ())
});

#[cfg(feature = "redis")]
crate::conformance_suite!(redis_cluster, async {
    (crate::util::servers::redis_cluster().await, ())
});

#[cfg(feature = "redis")]
crate::user_index_suite!(redis_user_index, async {
    (crate::util::servers::redis().await, ())
});

#[cfg(feature = "redis")]
crate::user_index_suite!(redis_cluster_user_index, async {
    (crate::util::servers::redis_cluster().await, ())
});

// Django's own table (fresh per test, dropped after), with Django's keys.
#[cfg(all(feature = "django", feature = "postgres"))]
crate::conformance_suite!(django_postgres, crate::util::servers::django_postgres());
#[cfg(all(feature = "django", feature = "mysql"))]
crate::conformance_suite!(django_mysql, crate::util::servers::django_mysql());
#[cfg(all(feature = "django", feature = "sqlite"))]
crate::conformance_suite!(django_sqlite, crate::util::servers::django_sqlite());

#[tokio::test]
async fn memory_store_is_bounded_and_evicts_only_expired_records() {
    use crate::conformance::{fresh, key, now, record};
    use serde_json::json;
    use time::Duration;

    let store = MemoryStore::with_capacity(2);
    let t = now();
    store
        .create(
            &key(),
            &record(
                json!({"old": 1}),
                t - Duration::hours(2),
                t - Duration::hours(1),
            ),
        )
        .await
        .unwrap();
    store.create(&key(), &fresh(json!({"a": 1}))).await.unwrap();
    // Full, but one record is expired: it makes room.
    store.create(&key(), &fresh(json!({"b": 1}))).await.unwrap();
    // Full of live sessions: refuse rather than drop someone's session.
    let full = store.create(&key(), &fresh(json!({"c": 1}))).await;
    assert!(
        matches!(full, Err(tidysession::StoreError::Full { capacity: 2 })),
        "{full:?}"
    );
    assert_eq!(store.count(now()).await.unwrap().live, 2);
}

#[tokio::test]
async fn store_urls_open_the_named_store_or_explain() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let store = tidysession::store::open(&url).await.unwrap();
    store.maintenance().unwrap().migrate().await.unwrap();
    assert!(format!("{store:?}").contains("SqliteStore"));
    assert!(
        format!("{:?}", tidysession::store::open("memory://").await.unwrap())
            .contains("MemoryStore")
    );
    for bad in [
        "mongodb://localhost/x",
        "sqlite://",
        "nonsense",
        "memory://x",
    ] {
        let err = tidysession::store::open(bad).await.unwrap_err().to_string();
        assert!(err.contains("sqlite://PATH"), "{bad}: {err}");
    }
}
