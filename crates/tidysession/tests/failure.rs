//! Stores that go away: every server-backed store behind a loopback proxy that cuts its
//! connections and refuses new ones, then lets them through again.
//!
//! While the store is away, requests that never touch the session work with zero errors,
//! requests that do get the configured status (503 by default), nothing panics; when it is
//! back, sessions work again without restarting anything.

use std::time::Duration;

use axum::http::StatusCode;
use tidysession::store::SessionStore;

use crate::util::proxy::{server_of, via, Proxy};
use crate::util::{servers, Harness};

/// The whole story, on a store reached through `proxy`.
async fn store_goes_away_and_comes_back<S: SessionStore>(store: S, proxy: &Proxy) {
    crate::util::logs::captured();
    let config = crate::util::server_tier().with_store_error_status(StatusCode::BAD_GATEWAY);
    let h = Harness::new(store, config);
    let cookie = h.get("/write?k=cart&v=1", None).await.cookie();
    assert_eq!(h.get("/read?k=cart", Some(&cookie)).await.body, "1");

    proxy.cut();
    for _ in 0..3 {
        let r = h.get("/untouched", None).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
        let r = h.get("/untouched", Some(&cookie)).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "a cookie alone costs no store I/O"
        );
        // A handler whose load fails, and a save that fails: the configured status, and
        // the cookie left alone (the session may still be there when the store is back).
        let r = h.get("/read?k=cart", Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert!(r.sets_nothing(), "{:?}", r.set_cookies);
        let r = h.get("/write?k=x&v=1", None).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert!(
            r.sets_nothing(),
            "no cookie for a session that was not saved"
        );
    }

    let logs = crate::util::logs::captured();
    assert!(
        logs.contains("session load failed") && logs.contains("session save failed"),
        "an error line for each kind of failure: {logs}"
    );

    proxy.restore();
    // Connections the cut killed may fail once each as they are found dead; then it works.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut failed = 0;
    loop {
        let r = h.get("/read?k=cart", Some(&cookie)).await;
        if r.status == StatusCode::OK {
            assert_eq!(r.body, "1", "the session survived the outage");
            break;
        }
        failed += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "store never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed <= 1,
        "{failed} requests failed after the store came back"
    );
    for i in 0..5 {
        let r = h.get(&format!("/write?k=n&v={i}"), Some(&cookie)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(h.get("/read?k=n", Some(&cookie)).await.body, "4");
}

/// Expands to the outage tests for one store: `$url` is the server's URL, `$port` its default
/// port, `$make` builds an isolated store from a URL, as `(store, guard)`.
macro_rules! outage_suite {
    ($name:ident, $url:expr, $port:expr, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn goes_away_and_comes_back() {
                let url = $url;
                let proxy = Proxy::start(server_of(&url, $port)).await;
                let (store, _guard) = ($make)(via(&url, proxy.addr)).await;
                store_goes_away_and_comes_back(store, &proxy).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn that_never_answered_fails_clearly() {
                let proxy = Proxy::start(server_of(&$url, $port)).await;
                proxy.cut();
                let started = std::time::Instant::now();
                let err = tidysession::store::open(&via(&$url, proxy.addr))
                    .await
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("cannot open store"), "{err}");
                assert!(started.elapsed() < Duration::from_secs(15));
            }
        }
    };
}

#[cfg(feature = "postgres")]
outage_suite!(
    postgres,
    servers::postgres_url(),
    5432,
    |url: String| async move { servers::postgres_at(&url).await }
);
#[cfg(feature = "mysql")]
outage_suite!(
    mysql,
    servers::mysql_url(),
    3306,
    |url: String| async move { servers::mysql_at(&url).await }
);
#[cfg(feature = "redis")]
outage_suite!(
    redis,
    servers::redis_url(),
    6379,
    |url: String| async move { (servers::redis_at(&url).await, ()) }
);
#[cfg(feature = "redis")]
outage_suite!(
    redis_resp3,
    servers::with_param(&servers::redis_url(), "protocol=resp3"),
    6379,
    |url: String| async move { (servers::redis_at(&url).await, ()) }
);
