//! The cookie tier (I10): anonymous sessions sealed in the cookie, zero store records and zero
//! store I/O for them; promotion at login or when they outgrow the budget; key rotation; bad
//! sealed cookies; cookie-only layers.

use std::sync::Arc;

use axum::http::StatusCode;
use tidysession::store::{MemoryStore, SessionStore, SqliteStore};
use tidysession::tooling::{CountingStore, OpCounts};
use tidysession::{ClientAddress, KeyRing, OverBudget, SessionConfig, SessionLayer};
use time::Duration;

use crate::auth::{harness_with, Users};
use crate::util::{routes, Harness};

fn ring(id: u8) -> KeyRing {
    KeyRing::generate(id).unwrap()
}

fn config(keys: &KeyRing) -> SessionConfig {
    SessionConfig::default().with_keys(keys.clone())
}

fn harness(config: SessionConfig) -> Harness<MemoryStore> {
    Harness::new(MemoryStore::default(), config)
}

async fn records<S: SessionStore>(h: &Harness<S>) -> u64 {
    h.store
        .maintenance()
        .unwrap()
        .count(time::OffsetDateTime::now_utc())
        .await
        .unwrap()
        .live
}

/// The sealed value a response sets, as a `Cookie` header; panics if it set an id instead.
fn sealed(r: &crate::util::Reply) -> String {
    let cookie = r.cookie();
    assert!(cookie.contains('.'), "a sealed value, not an id: {cookie}");
    cookie
}

#[tokio::test]
async fn anonymous_sessions_cost_no_records_and_no_store_io() {
    let h = harness(config(&ring(1)));
    // A visitor fills a cart over several requests.
    let c = sealed(&h.get("/write?k=cart&v=1", None).await);
    let r = h.get("/read?k=cart", Some(&c)).await;
    assert_eq!(r.body, "1");
    assert!(
        r.sets_nothing() && r.vary,
        "a read before the touch window re-seals nothing"
    );
    let c = sealed(&h.get("/write?k=cart&v=2", Some(&c)).await);
    let c = sealed(&h.get("/write?k=other&v=x", Some(&c)).await);
    assert_eq!(h.get("/read?k=cart", Some(&c)).await.body, "2");
    // The login page's test cookie, a bot without cookies, an untouched request.
    h.get("/test-cookie/set", None).await;
    for path in ["/read?k=cart", "/write?k=cart&v=9", "/untouched"] {
        h.get(path, None).await;
    }
    let r = h.get("/untouched", Some(&c)).await;
    assert!(
        r.sets_nothing() && !r.vary,
        "I1 holds for sealed cookies: {r:?}"
    );
    assert_eq!(h.counts(), OpCounts::default());
    assert_eq!(records(&h).await, 0);
    // Removing the last key removes the cookie, still without I/O.
    let c = sealed(&h.get("/remove?k=other", Some(&c)).await);
    let r = h.get("/clear", Some(&c)).await;
    assert!(r.removes_session(), "{r:?}");
    assert_eq!(h.counts(), OpCounts::default());
}

#[tokio::test]
async fn save_every_request_and_due_touches_re_seal_without_io() {
    let h = harness(
        config(&ring(1))
            .with_idle_timeout(Duration::hours(1))
            .with_touch_window(Duration::hours(1)),
    );
    let c = sealed(&h.get("/write?k=a&v=1", None).await);
    // Always due (once a refresh would add at least a second): a read re-seals with a fresh
    // expiry.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = h.get("/read?k=a", Some(&c)).await;
    let again = sealed(&r);
    assert_ne!(again, c);
    assert!(r.session_set_cookie().unwrap().contains("Max-Age=3600"));
    let h = harness(config(&ring(1)).with_save_every_request(true));
    let c = sealed(&h.get("/write?k=a&v=1", None).await);
    sealed(&h.get("/untouched", Some(&c)).await);
    assert_eq!(h.counts(), OpCounts::default());
}

#[tokio::test]
async fn key_rotation_opens_old_cookies_re_seals_on_write_and_drops_removed_keys() {
    let (k1, k2) = (ring(1), ring(2));
    let old = harness(config(&k1));
    let c1 = sealed(&old.get("/write?k=cart&v=1", None).await);
    assert!(c1.starts_with("id=1."), "{c1}");
    let both = harness(config(&k2.clone().with_older(&k1)));
    let r = both.get("/read?k=cart", Some(&c1)).await;
    assert_eq!(r.body, "1");
    assert!(r.sets_nothing(), "a read does not re-seal");
    let c2 = sealed(&both.get("/write?k=n&v=2", Some(&c1)).await);
    assert!(
        c2.starts_with("id=2."),
        "re-sealed under the newest key: {c2}"
    );
    let new_only = harness(config(&k2));
    assert_eq!(new_only.get("/read?k=cart", Some(&c2)).await.body, "1");
    let r = new_only.get("/read?k=cart", Some(&c1)).await;
    assert_eq!(r.body, "");
    assert!(r.removes_session(), "{r:?}");
}

#[tokio::test]
async fn tampered_truncated_or_expired_cookies_are_refused_with_a_removal_cookie() {
    let keys = ring(1);
    let h = harness(config(&keys));
    let c = sealed(&h.get("/write?k=secret&v=1", None).await);
    let value = &c["id=".len()..];
    for i in 0..value.len() {
        let mut bytes = value.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = format!("id={}", String::from_utf8(bytes).unwrap());
        let r = h.get("/read?k=secret", Some(&forged)).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, ""),
            "byte {i}"
        );
        assert!(r.removes_session(), "byte {i}: {r:?}");
    }
    for cut in [1, 3, value.len() / 2, value.len() - 1] {
        let r = h
            .get("/read?k=secret", Some(&format!("id={}", &value[..cut])))
            .await;
        assert_eq!(r.body, "", "cut at {cut}");
        assert!(r.removes_session(), "cut at {cut}");
    }
    // Another app's keys, and an oversize value.
    let other = harness(config(&ring(1)));
    assert!(other
        .get("/read?k=secret", Some(&c))
        .await
        .removes_session());
    let huge = format!("id=1.{}", "A".repeat(10_000));
    assert!(h.get("/read?k=secret", Some(&huge)).await.removes_session());
    // Expired: past the idle timeout.
    let short = harness(config(&keys).with_idle_timeout(Duration::seconds(1)));
    let c = sealed(&short.get("/write?k=a&v=1", None).await);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = short.get("/read?k=a", Some(&c)).await;
    assert_eq!(r.body, "");
    assert!(r.removes_session());
    // Writing after a refused cookie starts a new sealed session, never a record.
    sealed(&short.get("/write?k=a&v=2", Some(&c)).await);
    assert_eq!(h.counts(), OpCounts::default());
    assert_eq!(short.counts(), OpCounts::default());
}

#[tokio::test]
async fn over_budget_promotes_by_default_or_fails_when_configured() {
    let big = "x".repeat(600);
    let h = harness(config(&ring(1)).with_cookie_budget(500));
    let small = sealed(&h.get("/write?k=a&v=1", None).await);
    let r = h.get(&format!("/write?k=big&v={big}"), Some(&small)).await;
    let id = r.session_id().expect("promoted: a session id");
    assert!(!id.contains('.'));
    assert_eq!((h.counts().creates, records(&h).await), (1, 1));
    let cookie = format!("id={id}");
    assert_eq!(
        h.get("/read?k=a", Some(&cookie)).await.body,
        "1",
        "all data moved"
    );
    // Once stored, it stays in the store (an update, not a seal), even if it shrinks.
    h.get("/remove?k=big", Some(&cookie)).await;
    assert_eq!(h.counts().updates, 1);

    let strict = harness(
        config(&ring(1))
            .with_cookie_budget(500)
            .with_over_budget(OverBudget::Fail),
    );
    let small = sealed(&strict.get("/write?k=a&v=1", None).await);
    let r = strict
        .get(&format!("/write?k=big&v={big}"), Some(&small))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(strict.counts(), OpCounts::default());
    assert_eq!(strict.get("/read?k=a", Some(&small)).await.body, "1");
}

#[tokio::test]
async fn the_per_client_promotion_limit_holds() {
    let big = "x".repeat(600);
    let h = harness(
        config(&ring(1))
            .with_cookie_budget(500)
            .with_promotion_limit(
                2,
                Duration::minutes(1),
                ClientAddress::Header("x-real-ip".parse().unwrap()),
            ),
    );
    let write_big = |ip: &'static str| {
        let app = h.app.clone();
        let path = format!("/write?k=big&v={big}");
        async move {
            let req = axum::http::Request::get(path)
                .header("x-real-ip", ip)
                .body(axum::body::Body::empty())
                .unwrap();
            tower::ServiceExt::oneshot(app, req).await.unwrap().status()
        }
    };
    assert_eq!(write_big("192.0.2.1").await, StatusCode::OK);
    assert_eq!(write_big("192.0.2.1").await, StatusCode::OK);
    assert_eq!(write_big("192.0.2.1").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        write_big("192.0.2.2").await,
        StatusCode::OK,
        "other clients unaffected"
    );
    assert_eq!(records(&h).await, 3);
    // Small anonymous writes are never limited: they stay in the cookie.
    let r = h.get("/write?k=a&v=1", None).await;
    sealed(&r);
}

#[tokio::test]
async fn login_promotes_the_sealed_cart_into_one_record_and_logout_removes_it() {
    for store in [
        Arc::new(MemoryStore::default()) as Arc<dyn SessionStore>,
        Arc::new(SqliteStore::open(":memory:").await.unwrap()),
    ] {
        store.maintenance().unwrap().migrate().await.unwrap();
        let keys = ring(1);
        let users = Users::new();
        let h = harness_with(store, &users, |l| l, &keys, config(&keys));
        let cart = sealed(&h.get("/write?k=cart&v=%5B%22tea%22%5D", None).await);
        assert_eq!(h.counts(), OpCounts::default());
        let r = h.get("/login?name=alice", Some(&cart)).await;
        let id = r.session_id().unwrap();
        assert!(!id.contains('.'), "logged in: a session id");
        let alice = format!("id={id}");
        assert_eq!(h.counts().creates, 1);
        assert_eq!(h.counts().writes(), 1, "promotion is one create");
        assert_eq!(records(&h).await, 1);
        assert_eq!(h.get("/read?k=cart", Some(&alice)).await.body, "[\"tea\"]");
        assert_eq!(h.get("/whoami", Some(&alice)).await.body, "alice");
        // The old sealed cookie is the visitor's own anonymous data, never logged in.
        assert_eq!(h.get("/whoami", Some(&cart)).await.body, "null");
        let r = h.get("/logout", Some(&alice)).await;
        assert!(r.removes_session());
        assert_eq!(records(&h).await, 0);
        assert_eq!(h.get("/whoami", Some(&alice)).await.body, "null");
    }
}

#[tokio::test]
async fn cookie_only_layers_keep_logged_in_sessions_in_the_cookie() {
    let keys = ring(1);
    let cfg = config(&keys).with_cookie_budget(1000);
    let h = Harness {
        app: routes().layer(SessionLayer::cookie_only(cfg)),
        store: Arc::new(CountingStore::new(MemoryStore::default())),
    };
    let c = sealed(&h.get("/write?k=user&v=alice", None).await);
    let c = sealed(&h.get("/cycle?k=role&v=admin", Some(&c)).await);
    assert_eq!(h.get("/read?k=role", Some(&c)).await.body, "\"admin\"");
    let r = h
        .get(&format!("/write?k=big&v={}", "x".repeat(1200)), Some(&c))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = h.get("/flush", Some(&c)).await;
    assert!(r.removes_session());
    // An id-shaped cookie is just unknown: nothing to load, removal cookie.
    let id = format!(
        "id={}",
        tidysession::store::SessionId::generate().unwrap().as_str()
    );
    assert!(h.get("/read?k=a", Some(&id)).await.removes_session());
}

#[tokio::test]
async fn without_keys_one_generated_key_serves_every_route_and_warns_once() {
    crate::util::logs::captured();
    // Configured keys: no warning, even though `from_arc` starts from the default config.
    let _ = harness(config(&ring(1)));
    assert!(!crate::util::logs::captured().contains("no session keys"));
    // No keys: one key for the whole router (written on one route, read on another).
    let h = harness(SessionConfig::default());
    let c = sealed(&h.get("/write?k=a&v=1", None).await);
    assert_eq!(h.get("/read?k=a", Some(&c)).await.body, "1");
    assert_eq!(h.get("/read-all", Some(&c)).await.status, StatusCode::OK);
    assert_eq!(
        crate::util::logs::captured()
            .matches("no session keys")
            .count(),
        1
    );
}
