//! The decision table through the real layer: each row a test, a counting store proving the
//! I/O, on every store. Cases are generic functions; `layer_suite!` runs them per store.

use std::time::Duration as StdDuration;

use tidysession::store::{MemoryStore, SessionStore, SqliteStore};
use tidysession::tooling::OpCounts;
use tidysession::{store::SessionId, SessionConfig};
use time::Duration;

use crate::util::{Altered, Harness};
use tidysession::store::Maintenance as _;

macro_rules! layer_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            layer_suite!(@cases $make;
                untouched_request_without_cookie_does_no_io_and_sends_nothing,
                untouched_request_with_malformed_cookie_removes_it_without_io,
                untouched_request_with_valid_cookie_does_no_io_and_sends_nothing,
                read_without_cookie_does_no_io_and_varies,
                read_with_cookie_loads_once_and_writes_nothing,
                many_reads_in_one_request_load_once,
                read_touches_once_the_window_is_due,
                touch_happens_at_most_once_per_window,
                read_with_unknown_or_forged_cookie_removes_it_and_creates_nothing,
                save_every_request_touches_but_never_creates_or_stores_empty,
                write_without_cookie_creates_one_record,
                write_with_cookie_sends_only_the_changed_key,
                setting_the_same_value_is_not_a_write,
                write_that_empties_the_data_deletes_the_record,
                flush_deletes_and_removes_the_cookie,
                cycle_id_renames_atomically_and_the_old_id_stops_working,
                failed_responses_persist_nothing,
                write_to_a_session_deleted_meanwhile_is_gone_not_recreated,
                test_cookie_creates_no_record,
                malformed_cookie_then_write_gets_a_fresh_id,
                a_stray_cookie_of_the_same_name_does_not_shadow_the_session,
                idle_timeout_is_enforced_on_read,
                absolute_timeout_is_enforced_on_read,
                near_the_absolute_timeout_reads_do_not_touch,
                browser_session_cookies_have_no_max_age,
                per_session_expiry_is_kept_and_fixed_expiry_is_not_extended,
                per_session_expiry_keeps_its_milliseconds,
                cookie_carries_secure_httponly_samesite_and_path,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                super::$case(async || $make).await;
            }
        )*
    };
}

layer_suite!(memory, MemoryStore::default());
// The SQL is the same as on a file (tested in `stores`, `concurrency` and `sqlite`); a private
// in-memory database needs no directory to outlive the store.
layer_suite!(sqlite, {
    let store = SqliteStore::open(":memory:").await.unwrap();
    store.migrate().await.unwrap();
    store
});

fn config() -> SessionConfig {
    crate::util::server_tier()
}

fn zero() -> OpCounts {
    OpCounts::default()
}

fn ops(
    loads: u64,
    creates: u64,
    updates: u64,
    touches: u64,
    renames: u64,
    deletes: u64,
) -> OpCounts {
    OpCounts {
        loads,
        creates,
        updates,
        touches,
        renames,
        deletes,
    }
}

/// A harness with one stored session holding `k = "v"`; returns its cookie.
async fn with_session<S: SessionStore>(store: S, config: SessionConfig) -> (Harness<S>, String) {
    let h = Harness::new(store, config);
    let r = h.get("/write?k=k&v=v", None).await;
    assert_eq!(h.counts(), ops(0, 1, 0, 0, 0, 0));
    (h, r.cookie())
}

async fn assert_io<S: SessionStore>(h: &Harness<S>, before: OpCounts, expected: OpCounts) {
    let now = h.counts();
    let delta = OpCounts {
        loads: now.loads - before.loads,
        creates: now.creates - before.creates,
        updates: now.updates - before.updates,
        touches: now.touches - before.touches,
        renames: now.renames - before.renames,
        deletes: now.deletes - before.deletes,
    };
    assert_eq!(delta, expected);
}

async fn rows<S: SessionStore>(h: &Harness<S>) -> u64 {
    h.store
        .maintenance()
        .unwrap()
        .count(time::OffsetDateTime::now_utc())
        .await
        .unwrap()
        .live
}

pub async fn untouched_request_without_cookie_does_no_io_and_sends_nothing<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let h = Harness::new(make().await, config());
    let r = h.get("/untouched", None).await;
    assert_eq!(r.body, "ok");
    assert!(r.sets_nothing() && !r.vary, "{r:?}");
    assert_eq!(h.counts(), zero());
}

pub async fn untouched_request_with_malformed_cookie_removes_it_without_io<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let h = Harness::new(make().await, config());
    for bad in [
        "id=garbage",
        "id=",
        "id=%00%01",
        "id=\"quoted\"",
        &format!("id={}", "A".repeat(4000)),
    ] {
        let r = h.get("/untouched", Some(bad)).await;
        assert!(r.removes_session(), "{bad}: {r:?}");
        assert!(!r.vary);
    }
    assert_eq!(h.counts(), zero());
}

pub async fn untouched_request_with_valid_cookie_does_no_io_and_sends_nothing<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/untouched", Some(&cookie)).await;
    assert!(r.sets_nothing() && !r.vary, "{r:?}");
    assert_io(&h, before, zero()).await;
}

pub async fn read_without_cookie_does_no_io_and_varies<S: SessionStore>(make: impl AsyncFn() -> S) {
    let h = Harness::new(make().await, config());
    let r = h.get("/read?k=k", None).await;
    assert!(r.sets_nothing() && r.vary, "{r:?}");
    assert_eq!(h.counts(), zero());
}

pub async fn read_with_cookie_loads_once_and_writes_nothing<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/read?k=k", Some(&cookie)).await;
    assert_eq!(r.body, "\"v\"");
    assert!(r.sets_nothing() && r.vary, "{r:?}");
    assert_io(&h, before, ops(1, 0, 0, 0, 0, 0)).await;
}

pub async fn read_touches_once_the_window_is_due<S: SessionStore>(make: impl AsyncFn() -> S) {
    // Idle 3 s with a 10 s window: due as soon as a touch would add a second.
    let cfg = config()
        .with_idle_timeout(Duration::seconds(3))
        .with_touch_window(Duration::seconds(10));
    let (h, cookie) = with_session(make().await, cfg).await;
    let before = h.counts();
    assert!(
        h.get("/read?k=k", Some(&cookie)).await.sets_nothing(),
        "nothing to add yet"
    );
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let r = h.get("/read?k=k", Some(&cookie)).await;
    assert_io(&h, before, ops(2, 0, 0, 1, 0, 0)).await;
    let set = r.session_set_cookie().expect("refreshed cookie");
    assert!(set.contains("Max-Age=3;"), "{set}");
    assert_eq!(
        r.session_id().as_deref(),
        cookie.strip_prefix("id="),
        "same id"
    );

    // The default window (half the idle timeout): a fresh session is not due.
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    for _ in 0..5 {
        assert!(h.get("/read?k=k", Some(&cookie)).await.sets_nothing());
    }
    assert_io(&h, before, ops(5, 0, 0, 0, 0, 0)).await;
}

pub async fn read_with_unknown_or_forged_cookie_removes_it_and_creates_nothing<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let h = Harness::new(make().await, config());
    let forged = format!("id={}", SessionId::generate().unwrap().as_str());
    let r = h.get("/read?k=k", Some(&forged)).await;
    assert!(r.removes_session() && r.vary, "{r:?}");
    assert_eq!(h.counts(), ops(1, 0, 0, 0, 0, 0));
    assert_eq!(rows(&h).await, 0);
}

pub async fn save_every_request_touches_but_never_creates_or_stores_empty<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let cfg = config().with_save_every_request(true);
    let (h, cookie) = with_session(make().await, cfg).await;
    let before = h.counts();
    let r = h.get("/untouched", Some(&cookie)).await;
    assert!(r.session_set_cookie().is_some(), "refreshed: {r:?}");
    assert_io(&h, before, ops(1, 0, 0, 1, 0, 0)).await;

    // Stale and forged cookies: a removal cookie, never a new (empty) record.
    let before = h.counts();
    let forged = format!("id={}", SessionId::generate().unwrap().as_str());
    for path in ["/untouched", "/read?k=k"] {
        let r = h.get(path, Some(&forged)).await;
        assert!(r.removes_session(), "{path}: {r:?}");
    }
    assert_io(&h, before, ops(2, 0, 0, 0, 0, 0)).await;
    // No cookie at all: nothing.
    let r = h.get("/untouched", None).await;
    assert!(r.sets_nothing());
    assert_eq!(rows(&h).await, 1);
}

pub async fn write_without_cookie_creates_one_record<S: SessionStore>(make: impl AsyncFn() -> S) {
    let h = Harness::new(make().await, config());
    let r = h.get("/write?k=cart&v=[1]", None).await;
    assert!(r.vary);
    assert!(SessionId::parse(&r.session_id().unwrap()).is_some());
    assert_eq!(h.counts(), ops(0, 1, 0, 0, 0, 0));
    assert_eq!(rows(&h).await, 1);
    let back = h.get("/read?k=cart", Some(&r.cookie())).await;
    assert_eq!(back.body, "[1]");
}

pub async fn write_with_cookie_sends_only_the_changed_key<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let (h, cookie) = with_session(make().await, config()).await;
    let key = SessionId::parse(cookie.strip_prefix("id=").unwrap())
        .unwrap()
        .storage_key();
    let now = time::OffsetDateTime::now_utc;
    let expiry_before = h.store.load(&key, now()).await.unwrap().unwrap().expires_at;
    let before = h.counts();
    let r = h.get("/write?k=other&v=2", Some(&cookie)).await;
    assert_io(&h, before, ops(1, 0, 1, 0, 0, 0)).await;
    // Not due for a touch: the expiry stays, so the browser's cookie needs no refresh (I3).
    assert!(r.sets_nothing() && r.vary, "{r:?}");
    let after = h.store.load(&key, now()).await.unwrap().unwrap();
    assert_eq!(after.expires_at, expiry_before);
    assert_eq!(h.get("/read?k=k", Some(&cookie)).await.body, "\"v\"");
    assert_eq!(h.get("/read?k=other", Some(&cookie)).await.body, "2");

    // Due for a touch: the same update carries the new expiry, and the cookie follows it.
    let cfg = config()
        .with_idle_timeout(Duration::seconds(3))
        .with_touch_window(Duration::seconds(10));
    let (h, cookie) = with_session(make().await, cfg).await;
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let before = h.counts();
    let r = h.get("/write?k=other&v=2", Some(&cookie)).await;
    assert_io(&h, before, ops(1, 0, 1, 0, 0, 0)).await;
    assert_eq!(r.cookie(), cookie, "refreshed, same id");
    assert!(r.session_set_cookie().unwrap().contains("Max-Age=3;"));
}

pub async fn setting_the_same_value_is_not_a_write<S: SessionStore>(make: impl AsyncFn() -> S) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/write?k=k&v=v", Some(&cookie)).await;
    assert!(r.sets_nothing(), "{r:?}");
    assert_io(&h, before, ops(1, 0, 0, 0, 0, 0)).await;
}

pub async fn write_that_empties_the_data_deletes_the_record<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/remove?k=k", Some(&cookie)).await;
    assert!(r.removes_session(), "{r:?}");
    // The removal goes as an update; the store deletes the emptied record (I2) and says so.
    assert_io(&h, before, ops(1, 0, 1, 0, 0, 0)).await;
    assert_eq!(rows(&h).await, 0);

    let (h, cookie) = with_session(make().await, config()).await;
    assert!(h.get("/clear", Some(&cookie)).await.removes_session());
    assert_eq!(rows(&h).await, 0);
}

pub async fn flush_deletes_and_removes_the_cookie<S: SessionStore>(make: impl AsyncFn() -> S) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/flush", Some(&cookie)).await;
    assert!(r.removes_session() && r.vary, "{r:?}");
    assert_io(&h, before, ops(0, 0, 0, 0, 0, 1)).await;
    assert_eq!(rows(&h).await, 0);

    // Data written after a flush is a new session under a new id.
    let (h, cookie) = with_session(make().await, config()).await;
    let r = h.get("/flush?k=fresh&v=1", Some(&cookie)).await;
    assert_ne!(r.cookie(), cookie);
    assert_eq!(h.get("/read?k=k", Some(&r.cookie())).await.body, "");
    assert_eq!(
        h.get("/read?k=fresh", Some(&r.cookie())).await.body,
        "\"1\""
    );
    assert_eq!(rows(&h).await, 1);
}

pub async fn cycle_id_renames_atomically_and_the_old_id_stops_working<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/cycle?k=user&v=alice", Some(&cookie)).await;
    assert_io(&h, before, ops(1, 0, 0, 0, 1, 0)).await;
    let new = r.cookie();
    assert_ne!(new, cookie);
    assert_eq!(
        h.get("/read?k=k", Some(&new)).await.body,
        "\"v\"",
        "data kept"
    );
    assert_eq!(h.get("/read?k=user", Some(&new)).await.body, "\"alice\"");
    assert!(
        h.get("/read?k=k", Some(&cookie)).await.removes_session(),
        "old id dead"
    );
    assert_eq!(rows(&h).await, 1);
}

pub async fn failed_responses_persist_nothing<S: SessionStore>(make: impl AsyncFn() -> S) {
    let h = Harness::new(make().await, config());
    let r = h.get("/fail-after-write", None).await;
    assert_eq!(r.status, 500);
    assert!(r.sets_nothing(), "{r:?}");
    assert_eq!(h.counts(), zero());

    let (h, cookie) = with_session(make().await, config()).await;
    let r = h.get("/fail-after-write", Some(&cookie)).await;
    assert!(r.sets_nothing());
    assert_eq!(
        h.get("/read?k=during_failure", Some(&cookie)).await.body,
        ""
    );
}

pub async fn write_to_a_session_deleted_meanwhile_is_gone_not_recreated<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let (h, cookie) = with_session(Altered::new(make().await), config()).await;
    let slow = {
        let (app, cookie) = (h.app.clone(), cookie.clone());
        let h2 = Harness {
            app,
            store: h.store.clone(),
        };
        tokio::spawn(async move {
            h2.get("/write?k=late&v=1&sleep_ms=800", Some(&cookie))
                .await
        })
    };
    // The late write has loaded (and saves 800 ms later): log out meanwhile.
    h.store.inner().loads_finished(1).await;
    assert!(h.get("/flush", Some(&cookie)).await.removes_session());
    let r = slow.await.unwrap();
    assert!(
        r.removes_session(),
        "the late write learns the session is gone: {r:?}"
    );
    assert_eq!(rows(&h).await, 0, "nothing re-created (I5)");
}

pub async fn test_cookie_creates_no_record<S: SessionStore>(make: impl AsyncFn() -> S) {
    let h = Harness::new(make().await, config());
    let r = h.get("/test-cookie/set", None).await;
    let set = r.test_cookie().expect("test cookie set");
    assert!(set.starts_with("id_test=1"), "{set}");
    assert!(r.session_set_cookie().is_none());
    assert_eq!(
        h.get("/test-cookie/check", Some("id_test=1")).await.body,
        "worked"
    );
    assert_eq!(h.get("/test-cookie/check", None).await.body, "missing");
    let del = h.get("/test-cookie/delete", Some("id_test=1")).await;
    assert!(del.test_cookie().unwrap().contains("Max-Age=0"));
    assert_eq!(h.counts(), zero());
    assert_eq!(rows(&h).await, 0);
}

pub async fn malformed_cookie_then_write_gets_a_fresh_id<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let h = Harness::new(make().await, config());
    let r = h.get("/write?k=a&v=1", Some("id=not-a-session-id")).await;
    let id = r.session_id().unwrap();
    assert!(SessionId::parse(&id).is_some());
    assert_eq!(h.counts(), ops(0, 1, 0, 0, 0, 0));
}

pub async fn idle_timeout_is_enforced_on_read<S: SessionStore>(make: impl AsyncFn() -> S) {
    let cfg = config().with_idle_timeout(Duration::seconds(1));
    let (h, cookie) = with_session(make().await, cfg).await;
    assert_eq!(h.get("/read?k=k", Some(&cookie)).await.body, "\"v\"");
    tokio::time::sleep(StdDuration::from_millis(1200)).await;
    let r = h.get("/read?k=k", Some(&cookie)).await;
    assert_eq!(r.body, "");
    assert!(r.removes_session());
}

pub async fn absolute_timeout_is_enforced_on_read<S: SessionStore>(make: impl AsyncFn() -> S) {
    // A record created an hour ago that the store still holds as live (written under a longer
    // absolute timeout, say): with a 30-minute absolute timeout it is over, on read.
    let cfg = config().with_absolute_timeout(Duration::minutes(30));
    let h = Harness::new(make().await, cfg);
    let id = SessionId::generate().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let record = tidysession::store::Record {
        data: serde_json::json!({"k": "v"}).as_object().unwrap().clone(),
        created_at: now - Duration::hours(1),
        expires_at: now + Duration::hours(1),
    };
    h.store.create(&id.storage_key(), &record).await.unwrap();
    let before = h.counts();
    let r = h
        .get("/read?k=k", Some(&format!("id={}", id.as_str())))
        .await;
    assert_eq!(r.body, "", "past the absolute timeout");
    assert!(r.removes_session());
    assert_io(&h, before, ops(1, 0, 0, 0, 0, 0)).await;
}

pub async fn near_the_absolute_timeout_reads_do_not_touch<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    // Every read is inside the window, but the expiry already sits at the absolute timeout:
    // a touch could add nothing, so there is none (I3).
    let cfg = config()
        .with_idle_timeout(Duration::seconds(60))
        .with_absolute_timeout(Duration::seconds(2))
        .with_touch_window(Duration::seconds(120));
    let (h, cookie) = with_session(make().await, cfg).await;
    let before = h.counts();
    for _ in 0..3 {
        let r = h.get("/read?k=k", Some(&cookie)).await;
        assert_eq!(r.body, "\"v\"");
        assert!(r.sets_nothing(), "{r:?}");
    }
    assert_io(&h, before, ops(3, 0, 0, 0, 0, 0)).await;
    tokio::time::sleep(StdDuration::from_millis(2100)).await;
    assert!(h.get("/read?k=k", Some(&cookie)).await.removes_session());
}

pub async fn browser_session_cookies_have_no_max_age<S: SessionStore>(make: impl AsyncFn() -> S) {
    let h = Harness::new(make().await, config().with_browser_session(true));
    let r = h.get("/write?k=a&v=1", None).await;
    let set = r.session_set_cookie().unwrap();
    assert!(
        !set.contains("Max-Age") && !set.contains("Expires"),
        "{set}"
    );

    let h = Harness::new(make().await, config());
    let r = h.get("/expiry?kind=browser", None).await;
    assert!(r.sets_nothing(), "an expiry alone is not data: {r:?}");
    let r = h.get("/write?k=a&v=1", None).await;
    let r2 = h.get("/expiry?kind=browser", Some(&r.cookie())).await;
    assert!(
        !r2.session_set_cookie().unwrap().contains("Max-Age"),
        "{r2:?}"
    );
}

pub async fn per_session_expiry_is_kept_and_fixed_expiry_is_not_extended<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let cfg = config().with_touch_window(Duration::days(15));
    let (h, cookie) = with_session(make().await, cfg).await;
    let r = h.get("/expiry?kind=at&s=3600", Some(&cookie)).await;
    let set = r.session_set_cookie().unwrap();
    let max_age: i64 = set
        .split("Max-Age=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3590..=3600).contains(&max_age), "{set}");
    // A fixed expiry is never touched, even with a window that makes every read due.
    let before = h.counts();
    assert!(h.get("/read?k=k", Some(&cookie)).await.sets_nothing());
    assert_io(&h, before, ops(1, 0, 0, 0, 0, 0)).await;

    let r = h.get("/expiry?kind=idle&s=60", Some(&cookie)).await;
    assert!(r.session_set_cookie().unwrap().contains("Max-Age=60;"));
}

/// A per-session expiry is kept to the millisecond, as stores keep times: one cut to the
/// second ends a session up to a second early (and an idle timeout under a second at once).
pub async fn per_session_expiry_keeps_its_milliseconds<S: SessionStore>(make: impl AsyncFn() -> S) {
    let (h, cookie) = with_session(make().await, config()).await;
    let key = SessionId::parse(cookie.strip_prefix("id=").unwrap())
        .unwrap()
        .storage_key();
    let now = time::OffsetDateTime::now_utc;
    let at = (now() + Duration::hours(1))
        .replace_millisecond(999)
        .unwrap();
    let ms = at.unix_timestamp_nanos() / 1_000_000;
    let r = h
        .get(&format!("/expiry?kind=at&ms={ms}"), Some(&cookie))
        .await;
    assert!(r.status.is_success(), "{r:?}");
    let stored = h.store.load(&key, now()).await.unwrap().unwrap();
    assert_eq!(stored.expires_at, at);
    let read = h.get("/read-all", Some(&cookie)).await.body;
    assert!(
        read.ends_with(&format!("Some(AtDateTime({at:?}))")),
        "{read}"
    );

    let before = now();
    let r = h.get("/expiry?kind=idle&ms=61500", Some(&cookie)).await;
    let after = now();
    assert!(r.status.is_success(), "{r:?}");
    let stored = h.store.load(&key, now()).await.unwrap().unwrap();
    let idle = Duration::milliseconds(61_500);
    // The layer's clock reads between `before` and `after`; the store keeps milliseconds.
    let floor = before + idle - Duration::milliseconds(1);
    assert!(
        floor < stored.expires_at && stored.expires_at <= after + idle,
        "{before} {} {after}",
        stored.expires_at
    );
    let read = h.get("/read-all", Some(&cookie)).await.body;
    assert!(
        read.ends_with(&format!("Some(OnInactivity({idle:?}))")),
        "{read}"
    );
    // The cookie's whole seconds round up: with 1.7 s left it lasts 2 s, not 1; and with
    // under a second left, 1 s, never `Max-Age=0`, which would delete it at once.
    for (ms, max_age) in [(1700, 2), (900, 1)] {
        let at = now() + Duration::milliseconds(ms);
        let at = at.unix_timestamp_nanos() / 1_000_000;
        let r = h
            .get(&format!("/expiry?kind=at&ms={at}"), Some(&cookie))
            .await;
        let set = r.session_set_cookie().unwrap();
        assert!(set.contains(&format!("Max-Age={max_age};")), "{set}");
    }
}

pub async fn cookie_carries_secure_httponly_samesite_and_path<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    let h = Harness::new(make().await, config());
    let r = h.get("/write?k=a&v=1", None).await;
    let set = r.session_set_cookie().unwrap();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
        "Max-Age=1209600",
        "Expires=",
    ] {
        assert!(set.contains(attr), "{attr} missing in {set}");
    }
    let h = Harness::new(
        make().await,
        config()
            .with_secure(false)
            .with_domain("example.test")
            .with_path("/app"),
    );
    let set = h
        .get("/write?k=a&v=1", None)
        .await
        .session_set_cookie()
        .unwrap()
        .clone();
    assert!(
        !set.contains("Secure") && set.contains("Domain=example.test") && set.contains("Path=/app"),
        "{set}"
    );
}

pub async fn touch_happens_at_most_once_per_window<S: SessionStore>(make: impl AsyncFn() -> S) {
    // Idle 2 s, default window 1 s: due once less than 1 s remains.
    let cfg = config().with_idle_timeout(Duration::seconds(2));
    let (h, cookie) = with_session(make().await, cfg).await;
    let before = h.counts();
    assert!(
        h.get("/read?k=k", Some(&cookie)).await.sets_nothing(),
        "fresh: not due"
    );
    tokio::time::sleep(StdDuration::from_millis(1200)).await;
    let touched = h.get("/read?k=k", Some(&cookie)).await;
    assert!(
        touched.session_set_cookie().unwrap().contains("Max-Age=2;"),
        "{touched:?}"
    );
    for _ in 0..5 {
        assert!(
            h.get("/read?k=k", Some(&cookie)).await.sets_nothing(),
            "touched: not due again"
        );
    }
    assert_io(&h, before, ops(7, 0, 0, 1, 0, 0)).await;
    // The touch really moved expiry: alive past the original 2 s.
    tokio::time::sleep(StdDuration::from_millis(1000)).await;
    assert_eq!(h.get("/read?k=k", Some(&cookie)).await.body, "\"v\"");
}

pub async fn many_reads_in_one_request_load_once<S: SessionStore>(make: impl AsyncFn() -> S) {
    let (h, cookie) = with_session(make().await, config()).await;
    let before = h.counts();
    let r = h.get("/read-all", Some(&cookie)).await;
    assert_eq!(
        r.body,
        r#"Some(String("v")) Some(String("v")) ["k"] false None"#
    );
    assert!(r.sets_nothing() && r.vary);
    assert_io(&h, before, ops(1, 0, 0, 0, 0, 0)).await;
}

pub async fn a_stray_cookie_of_the_same_name_does_not_shadow_the_session<S: SessionStore>(
    make: impl AsyncFn() -> S,
) {
    // Another `id` cookie (set for a parent domain, say) comes first in the header.
    let (h, cookie) = with_session(make().await, config()).await;
    let both = format!("id=not-ours; {cookie}");
    let r = h.get("/read?k=k", Some(&both)).await;
    assert_eq!(r.body, "\"v\"");
    assert!(r.sets_nothing(), "{r:?}");
}

#[tokio::test]
async fn a_logout_after_a_failed_read_still_deletes_and_starts_afresh() {
    use tidysession::store::Record;
    let store = crate::util::Altered::failing_loads(MemoryStore::default());
    let id = SessionId::generate().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let record = Record {
        data: serde_json::json!({"k": "v"}).as_object().unwrap().clone(),
        created_at: now,
        expires_at: now + Duration::hours(1),
    };
    store.create(&id.storage_key(), &record).await.unwrap();
    let h = Harness::new(store, config());
    let r = h
        .get(
            "/flush-after-failed-read",
            Some(&format!("id={}", id.as_str())),
        )
        .await;
    assert_eq!(r.body, "read failed");
    // The old record is deleted (logout must not depend on reading it), the new one created.
    assert_io(&h, OpCounts::default(), ops(1, 1, 0, 0, 0, 1)).await;
    assert_ne!(r.session_id().as_deref(), Some(id.as_str()));
    assert_eq!(rows(&h).await, 1);
}

#[tokio::test]
async fn a_cookie_that_is_not_ascii_beside_the_session_cookie_hides_nothing() {
    for config in [config(), SessionConfig::default()] {
        let h = Harness::new(MemoryStore::default(), config);
        let cookie = h.get("/write?k=cart&v=1", None).await.cookie();
        // Another app on the same domain set `pref=café` (UTF-8, as browsers send it).
        for header in [
            format!("{cookie}; pref=café"),
            format!("pref=café; {cookie}"),
            format!("lang=ünï; {cookie}; theme=dark"),
        ] {
            let r = h.get("/read?k=cart", Some(&header)).await;
            assert_eq!(r.body, "1", "{header:?}");
            assert!(r.set_cookies.is_empty(), "{header:?}: {r:?}");
        }
    }
}
