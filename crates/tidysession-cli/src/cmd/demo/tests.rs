//! The demo's routes, in process, over a counting memory store.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tidysession::store::MemoryStore;
use tidysession::tooling::{CountingStore, OpCounts};
use tower::ServiceExt;

use tidysession::KeyRing;

use super::{router, Users};
use tidysession::store::Maintenance as _;

/// Fresh accounts for each test, hashed once for all of them (argon2 is slow).
fn users() -> Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| Users::demo(2).unwrap()).fork()
}

struct Demo {
    app: axum::Router,
    store: Arc<CountingStore<MemoryStore>>,
}

struct Reply {
    status: StatusCode,
    cookies: Vec<String>,
    location: Option<String>,
    body: String,
}

impl Reply {
    fn session(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.starts_with("id=") && !c.starts_with("id=;"))
            .map(|c| c.split(';').next().unwrap().to_owned())
    }
}

impl Demo {
    fn new() -> Self {
        let store = Arc::new(CountingStore::new(MemoryStore::default()));
        Self {
            app: router(store.clone(), users(), KeyRing::generate(1).unwrap()),
            store,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        form: Option<&str>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.to_owned())
            }
            None => Body::empty(),
        };
        let res = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let cookies = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let location = res
            .headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned());
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Reply {
            status,
            cookies,
            location,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn rows(&self) -> u64 {
        use tidysession::store::SessionStore;
        self.store
            .maintenance()
            .unwrap()
            .count(time::OffsetDateTime::now_utc())
            .await
            .unwrap()
            .live
    }
}

#[tokio::test]
async fn health_never_touches_the_session() {
    let d = Demo::new();
    for cookie in [
        None,
        Some("id=garbage-but-ignored-here"),
        Some("id=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    ] {
        let r = d.send("GET", "/health", cookie, None).await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "ok"));
    }
    assert_eq!(d.store.counts(), OpCounts::default());
}

#[tokio::test]
async fn anonymous_reads_cost_nothing_and_store_nothing() {
    let d = Demo::new();
    for path in ["/", "/whoami", "/cart", "/login"] {
        let r = d.send("GET", path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.session().is_none(), "{path}");
    }
    assert_eq!(
        d.send("GET", "/whoami", None, None).await.body,
        r#"{"user":null}"#
    );
    assert_eq!(d.store.counts(), OpCounts::default());
    assert_eq!(d.rows().await, 0);
}

#[tokio::test]
async fn login_page_sets_only_the_test_cookie() {
    let d = Demo::new();
    let r = d.send("GET", "/login", None, None).await;
    assert!(
        r.cookies.iter().any(|c| c.starts_with("id_test=1")),
        "{:?}",
        r.cookies
    );
    assert!(r.session().is_none());
    assert_eq!(d.rows().await, 0);
}

#[tokio::test]
async fn cart_add_by_link_and_by_form() {
    let d = Demo::new();
    let r = d.send("GET", "/cart/add?item=book", None, None).await;
    assert_eq!(r.body, r#"["book"]"#);
    let cookie = r.session().unwrap();
    let r = d
        .send("POST", "/cart/add", Some(&cookie), Some("item=pen"))
        .await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/"))
    );
    // The data travels in the cookie, so each write sends a new one.
    let cookie = r.session().expect("re-sealed cookie");
    assert_eq!(
        d.send("GET", "/cart", Some(&cookie), None).await.body,
        r#"["book","pen"]"#
    );
    assert!(d
        .send("GET", "/", Some(&cookie), None)
        .await
        .body
        .contains("Cart: 2 item(s)"));
    // The cart lives in the visitor's cookie: no record, no store I/O at all.
    assert_eq!(d.rows().await, 0);
    assert_eq!(d.store.counts(), OpCounts::default());
}

#[tokio::test]
async fn a_cookieless_bot_on_every_route_costs_nothing() {
    let d = Demo::new();
    for (method, path, form) in [
        ("GET", "/health", None),
        ("GET", "/", None),
        ("GET", "/whoami", None),
        ("GET", "/cart", None),
        ("GET", "/login", None),
        ("GET", "/cart/add?item=spam", None),
        ("POST", "/cart/add", Some("item=spam")),
        ("POST", "/login", Some("username=alice&password=wrong")),
        ("POST", "/logout", None),
        ("GET", "/account/sessions", None),
        ("POST", "/account/sessions/revoke", Some("id=all")),
        ("POST", "/account/password", Some("password=x")),
    ] {
        let r = d.send(method, path, None, form).await;
        assert!(r.status.as_u16() < 500, "{method} {path}: {}", r.status);
    }
    assert_eq!(d.rows().await, 0);
    assert_eq!(d.store.counts(), OpCounts::default());
}

#[tokio::test]
async fn bad_items_are_refused_and_store_nothing() {
    let d = Demo::new();
    let long = "x".repeat(65);
    for path in ["/cart/add?item=", &format!("/cart/add?item={long}")] {
        assert_eq!(
            d.send("GET", path, None, None).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(d.rows().await, 0);
}

#[tokio::test]
async fn login_cycles_the_id_keeps_the_cart_and_logout_flushes() {
    let d = Demo::new();
    let anon = d
        .send("GET", "/cart/add?item=book", None, None)
        .await
        .session()
        .unwrap();
    let bad = d
        .send(
            "POST",
            "/login",
            Some(&anon),
            Some("username=alice&password=nope"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let unknown = d
        .send(
            "POST",
            "/login",
            None,
            Some("username=mallory&password=password"),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);

    let r = d
        .send(
            "POST",
            "/login",
            Some(&anon),
            Some("username=alice&password=password"),
        )
        .await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/"))
    );
    let alice = r.session().unwrap();
    assert_ne!(alice, anon, "new id at login");
    // Login moved the sealed cart into the store: one create, one record.
    assert_eq!(d.store.counts().creates, 1);
    assert_eq!(d.rows().await, 1);
    assert_eq!(
        d.send("GET", "/whoami", Some(&alice), None).await.body,
        r#"{"user":"alice"}"#
    );
    assert_eq!(
        d.send("GET", "/cart", Some(&alice), None).await.body,
        r#"["book"]"#
    );
    assert_eq!(
        d.send("GET", "/whoami", Some(&anon), None).await.body,
        r#"{"user":null}"#
    );

    let out = d.send("POST", "/logout", Some(&alice), None).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.cookies.iter().any(|c| c.starts_with("id=;")));
    assert_eq!(
        d.send("GET", "/whoami", Some(&alice), None).await.body,
        r#"{"user":null}"#
    );
    assert_eq!(d.rows().await, 0);
}

#[tokio::test]
async fn logging_in_as_someone_else_keeps_nothing_of_the_first_user() {
    let d = Demo::new();
    let alice = d
        .send(
            "POST",
            "/login",
            None,
            Some("username=alice&password=password"),
        )
        .await
        .session()
        .unwrap();
    d.send("GET", "/cart/add?item=alices-secret", Some(&alice), None)
        .await;
    let bob = d
        .send(
            "POST",
            "/login",
            Some(&alice),
            Some("username=user2&password=password"),
        )
        .await
        .session()
        .unwrap();
    assert_eq!(
        d.send("GET", "/whoami", Some(&bob), None).await.body,
        r#"{"user":"user2"}"#
    );
    assert_eq!(d.send("GET", "/cart", Some(&bob), None).await.body, "[]");
    assert_eq!(d.rows().await, 1);
}

async fn log_in(d: &Demo, name: &str) -> String {
    d.send(
        "POST",
        "/login",
        None,
        Some(&format!("username={name}&password=password")),
    )
    .await
    .session()
    .expect("logged in")
}

async fn whoami(d: &Demo, cookie: &str) -> String {
    d.send("GET", "/whoami", Some(cookie), None).await.body
}

/// The revoke handles on a sessions page, in order.
fn handles(page: &str) -> Vec<String> {
    page.split("name=id value=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn log_out_everywhere_else_ends_the_other_clients() {
    let d = Demo::new();
    let (one, two) = (log_in(&d, "alice").await, log_in(&d, "alice").await);
    let bob = log_in(&d, "bob").await;
    let page = d
        .send("GET", "/account/sessions", Some(&one), None)
        .await
        .body;
    assert_eq!(handles(&page).len(), 2, "{page}");
    assert_eq!(page.matches("this session").count(), 1);
    for cookie in [&one, &two] {
        let id = cookie.trim_start_matches("id=");
        assert!(!page.contains(id), "the page never shows a session id");
    }
    let r = d
        .send(
            "POST",
            "/account/sessions/revoke",
            Some(&one),
            Some("id=all"),
        )
        .await;
    assert_eq!(
        (r.status, r.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/account/sessions"))
    );
    assert_eq!(whoami(&d, &two).await, r#"{"user":null}"#);
    assert_eq!(whoami(&d, &one).await, r#"{"user":"alice"}"#);
    assert_eq!(whoami(&d, &bob).await, r#"{"user":"bob"}"#);
    assert_eq!(d.rows().await, 2);
}

#[tokio::test]
async fn revoke_one_session_by_its_handle() {
    let d = Demo::new();
    let (one, two) = (log_in(&d, "alice").await, log_in(&d, "alice").await);
    let page = d
        .send("GET", "/account/sessions", Some(&two), None)
        .await
        .body;
    // The row marked as the current session is the one to keep; revoke the other.
    let rows: Vec<&str> = page.split("<tr>").skip(2).collect();
    let other = rows.iter().find(|r| !r.contains("this session")).unwrap();
    let handle = handles(other).remove(0);
    let r = d
        .send(
            "POST",
            "/account/sessions/revoke",
            Some(&two),
            Some(&format!("id={handle}")),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(whoami(&d, &one).await, r#"{"user":null}"#);
    assert_eq!(whoami(&d, &two).await, r#"{"user":"alice"}"#);
    // Unknown handles and anonymous visitors change nothing.
    d.send(
        "POST",
        "/account/sessions/revoke",
        Some(&two),
        Some("id=nope"),
    )
    .await;
    let anon = d
        .send("POST", "/account/sessions/revoke", None, Some("id=all"))
        .await;
    assert_eq!(anon.location.as_deref(), Some("/login"));
    assert_eq!(whoami(&d, &two).await, r#"{"user":"alice"}"#);
}

#[tokio::test]
async fn password_change_logs_out_the_other_sessions() {
    let d = Demo::new();
    let (one, two) = (log_in(&d, "alice").await, log_in(&d, "alice").await);
    let r = d
        .send(
            "POST",
            "/account/password",
            Some(&one),
            Some("password=s3cret"),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(whoami(&d, &one).await, r#"{"user":"alice"}"#);
    assert_eq!(whoami(&d, &two).await, r#"{"user":null}"#);
    let old = d
        .send(
            "POST",
            "/login",
            None,
            Some("username=alice&password=password"),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = d
        .send(
            "POST",
            "/login",
            None,
            Some("username=alice&password=s3cret"),
        )
        .await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
    let empty = d
        .send("POST", "/account/password", Some(&one), Some("password="))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
}

#[test]
fn the_key_ring_is_made_once_and_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let first = super::key_ring(&file).unwrap();
    let again = super::key_ring(&file).unwrap();
    assert_eq!(first.to_config(), again.to_config());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&file, "not a key ring").unwrap();
    let err = super::key_ring(&file).unwrap_err();
    assert!(format!("{err:#}").contains("key entry 1"), "{err:#}");
}

#[tokio::test]
async fn a_django_store_gets_djangos_cookie_defaults() {
    use tidysession::store::{DjangoStore, SessionStore};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("django.db").display());
    let secrets = tidysession::django::Secrets::new("demo-secret");
    let store = DjangoStore::connect(&url, secrets).await.unwrap();
    store.migrate().await.unwrap();
    let store: Arc<dyn SessionStore> = Arc::new(store);
    let app = router(store.clone(), users(), KeyRing::generate(1).unwrap());
    let res = app
        .oneshot(
            Request::builder()
                .uri("/cart/add?item=book")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let cookie = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sessionid="))
        .expect("a sessionid cookie");
    let key = cookie["sessionid=".len()..].split(';').next().unwrap();
    assert_eq!(key.len(), 32, "{cookie}");
    assert!(key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    // Anonymous data is on the server, in Django's table, as Django expects.
    let counts = store
        .maintenance()
        .unwrap()
        .count(time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(counts.live, 1);
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_and_never_touch_the_session() {
    let handle = super::install_metrics().unwrap();
    let Demo { app, store } = Demo::new();
    let d = Demo {
        app: app.merge(super::metrics_route(handle)),
        store,
    };
    // Some traffic: a sealed cart, a login that promotes it, a read.
    let cart = d.send("GET", "/cart/add?item=book", None, None).await;
    let cookie = cart.session().expect("a sealed cart");
    let login = d
        .send(
            "POST",
            "/login",
            Some(&cookie),
            Some("username=alice&password=password"),
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let cookie = login.session().expect("logged in");
    d.send("GET", "/whoami", Some(&cookie), None).await;

    let before = d.store.counts();
    let req = Request::get("/metrics")
        .header(header::COOKIE, &cookie)
        .body(Body::empty())
        .unwrap();
    let res = d.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()[header::CONTENT_TYPE].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert!(res.headers().get(header::SET_COOKIE).is_none());
    assert!(res.headers().get(header::VARY).is_none());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "tidysession_sealed_total ",
        "tidysession_promotions_total ",
        "tidysession_store_operations_total{op=\"create\",outcome=\"ok\"} ",
        "tidysession_store_operations_total{op=\"load\",outcome=\"ok\"} ",
        "tidysession_store_duration_seconds_bucket{op=\"create\",le=\"0.001\"} ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "no {line:?} in:\n{text}"
        );
    }
    assert_eq!(d.store.counts(), before, "scraping did no store I/O");
}
