//! The MySQL/MariaDB store against a real server: what the table holds at rest, corrupt rows,
//! migrations, and how much a per-key update sends.
//!
//! The server comes from `TIDYSESSION_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1/test`).
//! These tests fail, never skip, when it cannot be reached. Each test works in a table of its
//! own with a random name, dropped when the test ends, so tests may run in parallel.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::{Connection as _, MySqlConnection};
use tidysession::store::Change;
use tidysession::store::{MySqlStore, SessionStore, Updated};
use tidysession::{store::SessionId, StoreError};

use crate::conformance::{data, fresh, key, load, now, set};
use crate::util::proxy::Proxy;
use crate::util::servers::{mysql, mysql_at, mysql_url as url, unique_name, DropOnExit};
use crate::util::Harness;
use tidysession::store::Maintenance as _;

/// A connection of the test's own.
async fn side_connection() -> MySqlConnection {
    MySqlConnection::connect(&url()).await.unwrap()
}

#[tokio::test]
async fn no_raw_session_id_appears_anywhere_in_the_table() {
    let (store, guard) = mysql().await;
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
    let mut db = side_connection().await;
    let rows: Vec<(Vec<u8>, String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT id, CAST(data AS CHAR), user_id FROM `{}`",
        guard.name
    ))
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 20, "one row per live session");
    let live: Vec<_> = ids
        .iter()
        .map(|id| SessionId::parse(id).unwrap().storage_key())
        .collect();
    for (id, data, user_id) in &rows {
        assert_eq!(id.len(), 32, "only 32-byte hashes as keys");
        assert!(
            live.iter()
                .any(|k| k.as_bytes().as_slice() == id.as_slice()),
            "every key is the SHA-256 of an id handed out"
        );
        let text = format!("{}{data}{user_id:?}", String::from_utf8_lossy(id));
        for raw in &ids {
            assert!(!text.contains(raw.as_str()), "raw id found at rest");
        }
    }
}

#[tokio::test]
async fn a_corrupt_row_is_reported_and_left_in_place() {
    let (store, guard) = mysql().await;
    let mut db = side_connection().await;
    let k = key();
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    // MariaDB's JSON columns refuse invalid JSON, so corrupt it with valid JSON that is not
    // an object.
    sqlx::query(&format!("UPDATE `{}` SET data = '[1, 2]'", guard.name))
        .execute(&mut db)
        .await
        .unwrap();
    let loaded = store.load(&k, now()).await;
    assert!(
        matches!(loaded, Err(StoreError::Corrupt { .. })),
        "{loaded:?}"
    );
    let removal = Change {
        removed: ["a".to_owned()].into(),
        ..Change::default()
    };
    let updated = store.update(&k, &removal, now()).await;
    assert!(
        matches!(updated, Err(StoreError::Corrupt { .. })),
        "{updated:?}"
    );
    // An out-of-range time is corrupt too, not a panic.
    sqlx::query(&format!(
        "UPDATE `{}` SET data = '{{}}', created_at = {}",
        guard.name,
        i64::MIN
    ))
    .execute(&mut db)
    .await
    .unwrap();
    let loaded = store.load(&k, now()).await;
    assert!(
        matches!(loaded, Err(StoreError::Corrupt { .. })),
        "{loaded:?}"
    );
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{}`", guard.name))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(n, 1, "kept for an operator to inspect");
    // Through the layer, a corrupt session reads as no session.
    let h = Harness::new(store, crate::util::server_tier());
    let cookie = h.get("/write?k=a&v=1", None).await.cookie();
    sqlx::query(&format!("UPDATE `{}` SET data = '\"text\"'", guard.name))
        .execute(&mut db)
        .await
        .unwrap();
    let r = h.get("/read?k=a", Some(&cookie)).await;
    assert_eq!(r.status, 200);
    assert!(r.removes_session(), "{r:?}");
}

#[tokio::test]
async fn the_schema_version_is_recorded_and_migrating_concurrently_is_safe() {
    let name = unique_name("tidysession_t");
    let _guard = DropOnExit::mysql_table(&name);
    let connect = || async {
        MySqlStore::connect(&url())
            .await
            .unwrap()
            .with_table(&name)
            .unwrap()
    };
    // Four processes starting at once.
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(std::sync::Arc::new(connect().await));
    }
    let migrations: Vec<_> = stores
        .iter()
        .map(|s| {
            let s = s.clone();
            tokio::spawn(async move { s.migrate().await })
        })
        .collect();
    for done in migrations {
        done.await.unwrap().unwrap();
    }
    stores[0].migrate().await.unwrap();
    let mut db = side_connection().await;
    let versions: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM `{name}_schema` ORDER BY version"
    ))
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(versions, [1], "each step recorded once");
    let k = key();
    stores[1].create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    assert!(load(&stores[2], &k).await.is_some());

    // A schema from a newer tidysession is refused, not downgraded.
    sqlx::query(&format!(
        "INSERT INTO `{name}_schema` (version) VALUES (99)"
    ))
    .execute(&mut db)
    .await
    .unwrap();
    let err = stores[0].migrate().await.unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}

#[tokio::test]
async fn a_one_key_update_sends_only_that_key() {
    // Every byte the store sends goes through a counting proxy.
    let (proxy, through) = Proxy::in_front_of(&url(), 3306).await;
    let (store, _guard) = mysql_at(&through).await;
    let big = "x".repeat(2048);
    let k = key();
    store
        .create(&k, &fresh(json!({"big": big, "n": 0})))
        .await
        .unwrap();
    let sent = |before: u64, after: u64| after - before;

    // Warm up the prepared statement, so the measured update is a plain execution.
    store
        .update(&k, &set(&[("n", json!(1))]), now())
        .await
        .unwrap();
    let before = proxy.bytes_sent();
    store
        .update(&k, &set(&[("n", json!(2))]), now())
        .await
        .unwrap();
    let small = sent(before, proxy.bytes_sent());

    // The measurement does see a write of the big value.
    let before = proxy.bytes_sent();
    store
        .update(&k, &set(&[("big", json!("y".repeat(2048)))]), now())
        .await
        .unwrap();
    let large = sent(before, proxy.bytes_sent());

    assert!(small < 512, "a one-key update sent {small} bytes");
    assert!(large > 2048, "writing the big value sent {large} bytes");
    let got = store.load(&k, now()).await.unwrap().unwrap();
    assert_eq!(got.data.get("n"), Some(&json!(2)));
    assert_eq!(got.data["big"].as_str().unwrap().len(), 2048);
}

#[tokio::test]
async fn an_update_that_changes_nothing_is_not_gone() {
    let (store, _guard) = mysql().await;
    let k = key();
    store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
    // MySQL counts changed rows unless the client asks for matched rows: the same value
    // again must still find the record.
    for _ in 0..2 {
        let done = store
            .update(
                &k,
                &set(&[("a", json!(1)), ("e", json!("😀 \u{0} é"))]),
                now(),
            )
            .await;
        assert_eq!(done.unwrap(), Updated::Kept);
    }
    let r = fresh(json!({}));
    let same_expiry = Change {
        expiry: Some(tidysession::store::ExpiryChange::Touch(r.created_at)),
        ..Change::default()
    };
    let done = store.update(&k, &same_expiry, now()).await;
    assert_eq!(done.unwrap(), Updated::Kept, "an expiry that does not move");
    let store = std::sync::Arc::new(store);
    assert_eq!(
        load(&store, &k).await.unwrap().data,
        data(json!({"a": 1, "e": "😀 \u{0} é"}))
    );
}

#[tokio::test]
async fn removing_the_last_key_while_another_request_sets_one_keeps_the_record() {
    let (store, _guard) = mysql().await;
    let store = std::sync::Arc::new(store);
    for round in 0..20 {
        let k = key();
        store.create(&k, &fresh(json!({"a": 1}))).await.unwrap();
        let setter = {
            let store = store.clone();
            tokio::spawn(async move { store.update(&k, &set(&[("b", json!(round))]), now()).await })
        };
        let removal = Change {
            removed: ["a".to_owned()].into(),
            ..Change::default()
        };
        let removed = store.update(&k, &removal, now()).await;
        let set_result = setter.await.unwrap();
        match (removed.unwrap(), set_result) {
            // The removal ran last and saw b: kept. Or it ran first and deleted; then the set
            // found nothing.
            (Updated::Kept, Ok(_)) => {
                assert_eq!(
                    load(&store, &k).await.unwrap().data,
                    data(json!({"b": round}))
                );
            }
            (Updated::Deleted, Err(StoreError::Gone)) => {
                assert_eq!(load(&store, &k).await, None);
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn table_names_are_checked_before_any_io() {
    let store = MySqlStore::connect(&url()).await.unwrap();
    assert_eq!(store.table_name(), "tidysession_sessions");
    for bad in ["", "a-b", "x`; DROP TABLE t; --", "db.t", &"x".repeat(58)] {
        let store = MySqlStore::connect(&url()).await.unwrap();
        let err = store.with_table(bad).unwrap_err().to_string();
        assert!(err.contains("invalid session table name"), "{bad}: {err}");
    }
    let name = unique_name("tidysession_t");
    let store = MySqlStore::connect(&url())
        .await
        .unwrap()
        .with_table(&name)
        .unwrap();
    assert_eq!(store.table_name(), name);
    let debug = format!("{store:?}");
    assert!(debug.contains(&name), "{debug}");
}

#[tokio::test]
async fn store_urls_open_mysql_with_a_table_and_never_print_the_password() {
    let name = unique_name("tidysession_t");
    let _guard = DropOnExit::mysql_table(&name);
    let sep = if url().contains('?') { '&' } else { '?' };
    let store = tidysession::store::open(&format!("{}{sep}table={name}", url()))
        .await
        .unwrap();
    store.maintenance().unwrap().migrate().await.unwrap();
    assert!(format!("{store:?}").contains(&name));
    let mut db = side_connection().await;
    let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM `{name}`"))
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(n, 0, "the table the URL named exists");

    let bad_table = tidysession::store::open(&format!("{}{sep}table=a-b", url())).await;
    let err = bad_table.unwrap_err().to_string();
    assert!(err.contains("invalid session table name"), "{err}");

    // Wrong password: an error that does not repeat it.
    let started = Instant::now();
    let wrong = "mysql://nobody:hunter2-secret@127.0.0.1/test";
    let err = MySqlStore::connect(wrong).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("hunter2-secret"), "{text}");
    let err = tidysession::store::open(wrong).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains("nobody:***@127.0.0.1"), "{text}");
    assert!(!text.contains("hunter2-secret"), "{text}");
    // A closed port: an error within a few seconds, not a hang.
    let err = MySqlStore::connect("mysql://root@127.0.0.1:1/test")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
    for bad in ["mysql://", "mysql://root@127.0.0.1:notaport/test"] {
        let err = tidysession::store::open(bad).await.unwrap_err();
        assert!(!err.to_string().is_empty(), "{bad}");
    }
}

/// InnoDB picks deadlock victims when statements lock rows and index entries in different
/// orders (an update moving `expires_at` against a cleanup walking that index, renames against
/// creates). The store retries them: a mixed load sees no backend error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_concurrent_load_sees_no_backend_errors() {
    use time::Duration as Span;

    let (store, _guard) = mysql().await;
    let store = std::sync::Arc::new(store);
    let t = now();
    let mut keys = Vec::new();
    for i in 0..40 {
        let k = key();
        // Half expire around now, so the cleanup has work near the live records.
        let exp = if i % 2 == 0 {
            t - Span::milliseconds(i)
        } else {
            t + Span::hours(1)
        };
        store
            .create(&k, &crate::conformance::record(json!({"i": i}), t, exp))
            .await
            .unwrap();
        keys.push(k);
    }
    let keys = std::sync::Arc::new(keys);
    let workers: Vec<_> = (0..12u64)
        .map(|w| {
            let (store, keys) = (store.clone(), keys.clone());
            tokio::spawn(async move {
                let mut x = w * 2654435761 + 1;
                for n in 0..60 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = keys[(x % keys.len() as u64) as usize];
                    let later = now() + Span::hours(2);
                    let result = match (w + n) % 5 {
                        0 => store.delete_expired(None, now(), 5).await.map(drop),
                        1 => store.touch(&k, later, now()).await,
                        2 => {
                            let fresh_key = key();
                            store.create(&fresh_key, &fresh(json!({"w": w}))).await?;
                            store
                                .rename(&fresh_key, &key(), &set(&[("n", json!(n))]), now())
                                .await
                        }
                        _ => {
                            let mut change = set(&[(&format!("w{w}"), json!(n))]);
                            change.expiry = Some(tidysession::store::ExpiryChange::Touch(later));
                            store.update(&k, &change, now()).await.map(drop)
                        }
                    };
                    match result {
                        Ok(()) | Err(StoreError::Gone) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap().unwrap();
    }
}

/// A store operation InnoDB picks as a deadlock victim is run again and succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deadlock_victim_is_retried() {
    use time::Duration as Span;

    let (store, guard) = mysql().await;
    let store = std::sync::Arc::new(store);
    let (from, to) = (key(), key());
    let t = now();
    store.create(&from, &fresh(json!({"a": 1}))).await.unwrap();
    let expired = crate::conformance::record(json!({"old": 1}), t - Span::hours(2), t);
    store.create(&to, &expired).await.unwrap();

    // A side transaction that has written many rows (so InnoDB rolls back the store's
    // lighter transaction, not this one) locks `to`.
    let mut side = side_connection().await;
    let table = &guard.name;
    sqlx::query("BEGIN").execute(&mut side).await.unwrap();
    for i in 0..50 {
        sqlx::query(&format!(
            "INSERT INTO `{table}` (id, data, created_at, expires_at) VALUES (?, '{{}}', 0, ?)"
        ))
        .bind(key().as_bytes().as_slice())
        .bind(i64::MAX - i)
        .execute(&mut side)
        .await
        .unwrap();
    }
    let lock = format!("SELECT id FROM `{table}` WHERE id = ? FOR UPDATE");
    sqlx::query(&lock)
        .bind(to.as_bytes().as_slice())
        .execute(&mut side)
        .await
        .unwrap();
    // The rename locks `from`, then waits for `to` to delete the expired record there.
    let rename = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .rename(&from, &to, &set(&[("b", json!(2))]), now())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Now the side transaction wants `from`: a cycle, and the rename is the victim.
    sqlx::query(&lock)
        .bind(from.as_bytes().as_slice())
        .execute(&mut side)
        .await
        .expect("the store's transaction, not this one, was rolled back");
    sqlx::query("ROLLBACK").execute(&mut side).await.unwrap();
    rename
        .await
        .unwrap()
        .expect("the rename ran again and succeeded");
    assert_eq!(load(&store, &from).await, None);
    assert_eq!(
        load(&store, &to).await.unwrap().data,
        data(json!({"a": 1, "b": 2}))
    );
}

#[tokio::test]
async fn a_corrupt_row_is_left_out_of_its_users_listing_with_a_warning() {
    use tidysession::store::USER_KEY;

    crate::util::logs::captured();
    let (store, guard) = mysql().await;
    let (good, bad) = (key(), key());
    for k in [&good, &bad] {
        store
            .create(k, &fresh(json!({USER_KEY: "alice"})))
            .await
            .unwrap();
    }
    let mut db = side_connection().await;
    sqlx::query(&format!(
        "UPDATE `{}` SET data = '[1, 2]' WHERE id = ?",
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

#[tokio::test]
async fn a_user_id_longer_than_the_column_fails_the_save_rather_than_filing_it_wrongly() {
    use tidysession::store::USER_KEY;

    let (store, _guard) = mysql().await;
    let long = "u".repeat(256);
    let k = key();
    let created = store.create(&k, &fresh(json!({USER_KEY: long}))).await;
    assert!(
        matches!(created, Err(StoreError::Backend(_))),
        "{created:?}"
    );
    assert!(store.load(&k, now()).await.unwrap().is_none());
    let fits = "u".repeat(255);
    store
        .create(&k, &fresh(json!({USER_KEY: fits})))
        .await
        .unwrap();
    let listed = store
        .user_index()
        .unwrap()
        .sessions_of(&fits, now())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
}
