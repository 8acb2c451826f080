//! Sweeps: deleting expired records in storage order ([`Sweep`]), on the stores that have
//! one (PostgreSQL by page, MySQL/MariaDB by primary key, native and Django tables alike).

use std::sync::Arc;

use serde_json::json;
use tidysession::store::{SessionStore, SweptBatch};
use time::Duration;

use crate::conformance::{fresh, key_for, load, now, record};
use tidysession::store::Maintenance as _;

/// 300 records in creation order, every third live: the sweep deletes the 200 expired ones
/// over several batches and keeps the live ones; a second sweep finds nothing.
async fn sweep_deletes_every_expired_record_and_nothing_else<S: SessionStore>(store: Arc<S>) {
    let t = now();
    let mut live = Vec::new();
    for i in 0..300 {
        let key = key_for(&*store);
        if i % 3 == 0 {
            store.create(&key, &fresh(json!({"i": i}))).await.unwrap();
            live.push(key);
        } else {
            let expired = t - Duration::minutes(i);
            let r = record(json!({"i": i}), expired - Duration::hours(1), expired);
            store.create(&key, &r).await.unwrap();
        }
    }
    let sweep = store
        .maintenance()
        .unwrap()
        .sweep()
        .expect("this store sweeps");
    let sweep_all = || async {
        let (mut from, mut batches, mut deleted) = (sweep.start().await.unwrap(), 0, 0);
        loop {
            let SweptBatch {
                deleted: d,
                held,
                next,
            } = sweep.sweep_expired(&from, t, 50).await.unwrap();
            assert_eq!(held, 0, "nobody else holds a row");
            deleted += d;
            batches += 1;
            assert!(batches < 1000, "the sweep ends");
            match next {
                Some(next) => from = next,
                None => return (batches, deleted),
            }
        }
    };
    let (batches, deleted) = sweep_all().await;
    assert_eq!(deleted, 200);
    assert!(
        batches > 1,
        "a span of 50 records takes several batches ({batches})"
    );
    let counts = store.maintenance().unwrap().count(t).await.unwrap();
    assert_eq!((counts.live, counts.expired), (100, 0));
    for key in &live {
        assert!(
            load(&store, key).await.is_some(),
            "a live record was deleted"
        );
    }
    assert_eq!(sweep_all().await.1, 0);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_sweeps_by_page() {
    let (store, _guard) = crate::util::servers::postgres().await;
    sweep_deletes_every_expired_record_and_nothing_else(Arc::new(store)).await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_sweeps_by_primary_key() {
    let (store, _guard) = crate::util::servers::mysql().await;
    sweep_deletes_every_expired_record_and_nothing_else(Arc::new(store)).await;
}

#[cfg(all(feature = "django", feature = "postgres"))]
#[tokio::test]
async fn django_tables_on_postgres_sweep_by_page() {
    let (store, _guard) = crate::util::servers::django_postgres().await;
    sweep_deletes_every_expired_record_and_nothing_else(Arc::new(store)).await;
}

#[cfg(all(feature = "django", feature = "mysql"))]
#[tokio::test]
async fn django_tables_on_mysql_sweep_by_session_key() {
    let (store, _guard) = crate::util::servers::django_mysql().await;
    sweep_deletes_every_expired_record_and_nothing_else(Arc::new(store)).await;
}

#[cfg(feature = "cached")]
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_cached_store_sweeps_through_the_store_it_wraps() {
    let (store, _guard) = crate::util::servers::postgres().await;
    let cached = tidysession::store::CachedStore::new(store);
    sweep_deletes_every_expired_record_and_nothing_else(Arc::new(cached)).await;
}

/// Stores where a walk of the expiry index costs nothing more say they have no sweep, and
/// `clear` walks the index there.
#[cfg(all(feature = "memory", feature = "sqlite"))]
#[tokio::test]
async fn memory_and_sqlite_have_no_sweep() {
    assert!(tidysession::store::MemoryStore::default().sweep().is_none());
    let sqlite = tidysession::store::SqliteStore::open(":memory:")
        .await
        .unwrap();
    assert!(sqlite.sweep().is_none());
}

#[cfg(all(feature = "django", feature = "sqlite"))]
#[tokio::test]
async fn django_tables_on_sqlite_have_no_sweep() {
    let (store, _dir) = crate::util::servers::django_sqlite().await;
    assert!(store.sweep().is_none());
}

/// An expired row another transaction holds is stepped past and counted as held, not
/// waited for; sweeping the same range again once it is free deletes it.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_steps_past_held_rows_and_a_second_sweep_of_the_range_takes_them() {
    use sqlx::Connection as _;
    let (store, guard) = crate::util::servers::postgres().await;
    let t = now();
    let mut keys = Vec::new();
    for i in 0..20 {
        let key = key_for(&store);
        let expired = t - Duration::minutes(i + 1);
        let r = record(json!({"i": i}), expired - Duration::hours(1), expired);
        store.create(&key, &r).await.unwrap();
        keys.push(key);
    }
    let mut other = sqlx::PgConnection::connect(&crate::util::servers::postgres_url())
        .await
        .unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query(&format!(
        "SELECT 1 FROM \"{}\".tidysession_sessions WHERE id = $1 FOR UPDATE",
        guard.name
    ))
    .bind(keys[7].as_bytes().as_slice())
    .execute(&mut *tx)
    .await
    .unwrap();
    let sweep = store.sweep().unwrap();
    // One small table: one batch covers it.
    let start = sweep.start().await.unwrap();
    let first = sweep.sweep_expired(&start, t, 1000).await.unwrap();
    assert_eq!(
        (first.deleted, first.held, first.next.is_none()),
        (19, 1, true)
    );
    tx.rollback().await.unwrap();
    let again = sweep.sweep_expired(&start, t, 1000).await.unwrap();
    assert_eq!((again.deleted, again.held), (1, 0));
    assert_eq!(store.count(t).await.unwrap().expired, 0);
}
