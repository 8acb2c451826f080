//! The request harness: a router of small handlers behind the real `SessionLayer`, over a
//! store wrapped in a `CountingStore` so tests can assert exactly how much I/O a request did.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use tidysession::store::Change;
use tidysession::store::{ExpiredBatch, RecordCounts, SessionStore, Updated};
use tidysession::tooling::{CountingStore, OpCounts};
use tidysession::{
    store::{Record, StorageKey},
    StoreError,
};
use tidysession::{Expiry, Session, SessionConfig, SessionError, SessionLayer};
use time::OffsetDateTime;
use tower::ServiceExt;

pub mod logs;
pub mod proxy;
pub mod servers;

type Q = Query<HashMap<String, String>>;

fn arg<'a>(q: &'a Q, name: &str) -> &'a str {
    q.get(name).map(String::as_str).unwrap_or("")
}

async fn read(session: Session, q: Q) -> Result<String, SessionError> {
    let v: Option<Value> = session.get(arg(&q, "k")).await?;
    Ok(v.map(|v| v.to_string()).unwrap_or_default())
}

/// Reads every way there is, several times: still one load.
async fn read_all(session: Session) -> Result<String, SessionError> {
    let a: Option<Value> = session.get("k").await?;
    let b: Option<Value> = session.get("k").await?;
    let keys = session.keys().await?;
    let empty = session.is_empty().await?;
    let expiry = session.expiry().await?;
    Ok(format!("{a:?} {b:?} {keys:?} {empty} {expiry:?}"))
}

/// A read whose error the handler ignores, then a logout and a fresh session.
async fn flush_after_failed_read(session: Session) -> Result<&'static str, SessionError> {
    let failed = session.get::<Value>("k").await.is_err();
    session.flush();
    session.insert("fresh", true).await?;
    Ok(if failed { "read failed" } else { "read worked" })
}

async fn write(session: Session, q: Q) -> Result<&'static str, SessionError> {
    let v: Value = serde_json::from_str(arg(&q, "v")).unwrap_or(Value::String(arg(&q, "v").into()));
    if let Some(ms) = q.get("sleep_ms") {
        session.get::<Value>(arg(&q, "k")).await?;
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
    }
    session.insert(arg(&q, "k"), v).await?;
    Ok("written")
}

async fn remove(session: Session, q: Q) -> Result<&'static str, SessionError> {
    session.remove::<Value>(arg(&q, "k")).await?;
    Ok("removed")
}

async fn clear(session: Session) -> Result<&'static str, SessionError> {
    session.clear().await?;
    Ok("cleared")
}

async fn flush(session: Session, q: Q) -> Result<&'static str, SessionError> {
    session.flush();
    if !arg(&q, "k").is_empty() {
        session.insert(arg(&q, "k"), arg(&q, "v")).await?;
    }
    Ok("flushed")
}

async fn cycle(session: Session, q: Q) -> Result<&'static str, SessionError> {
    if !arg(&q, "k").is_empty() {
        session.insert(arg(&q, "k"), arg(&q, "v")).await?;
    }
    session.cycle_id().await?;
    Ok("cycled")
}

async fn fail_after_write(session: Session) -> Result<StatusCode, SessionError> {
    session.insert("during_failure", true).await?;
    Ok(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn set_test_cookie(session: Session) -> &'static str {
    session.set_test_cookie();
    "set"
}

async fn check_test_cookie(session: Session) -> &'static str {
    if session.test_cookie_worked() {
        "worked"
    } else {
        "missing"
    }
}

async fn delete_test_cookie(session: Session) -> &'static str {
    session.delete_test_cookie();
    "deleted"
}

/// Sets the session's expiry: `kind=browser`, `kind=idle` for `s` seconds or `ms`
/// milliseconds, `kind=at` in `s` seconds from now or at Unix millisecond `ms`.
async fn expiry(session: Session, q: Q) -> Result<&'static str, SessionError> {
    let ms = q.get("ms").map(|ms| ms.parse::<i64>().unwrap());
    let span = || time::Duration::seconds(arg(&q, "s").parse().unwrap());
    let expiry = match (arg(&q, "kind"), ms) {
        ("browser", _) => Expiry::OnBrowserClose,
        ("idle", Some(ms)) => Expiry::OnInactivity(time::Duration::milliseconds(ms)),
        ("idle", None) => Expiry::OnInactivity(span()),
        (_, Some(ms)) => Expiry::AtDateTime(
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
        ),
        (_, None) => Expiry::AtDateTime(OffsetDateTime::now_utc() + span()),
    };
    session.set_expiry(expiry).await?;
    Ok("expiry set")
}

/// The configuration of tests about the store tier: every session, anonymous or not, in the
/// store (the cookie tier has tests of its own).
pub fn server_tier() -> SessionConfig {
    SessionConfig::default().with_anonymous(tidysession::Anonymous::OnServer)
}

/// The routes every layer test uses.
pub fn routes() -> Router {
    Router::new()
        .route("/untouched", get(|| async { "ok" }))
        .route("/read", get(read))
        .route("/read-all", get(read_all))
        .route("/flush-after-failed-read", get(flush_after_failed_read))
        .route("/write", get(write))
        .route("/remove", get(remove))
        .route("/clear", get(clear))
        .route("/flush", get(flush))
        .route("/cycle", get(cycle))
        .route("/fail-after-write", get(fail_after_write))
        .route("/test-cookie/set", get(set_test_cookie))
        .route("/test-cookie/check", get(check_test_cookie))
        .route("/test-cookie/delete", get(delete_test_cookie))
        .route("/expiry", get(expiry))
}

/// A router behind the layer, and the counting store under it.
pub struct Harness<S> {
    pub app: Router,
    pub store: Arc<CountingStore<S>>,
}

impl<S: SessionStore> Harness<S> {
    pub fn new(store: S, config: SessionConfig) -> Self {
        let store = Arc::new(CountingStore::new(store));
        let layer = SessionLayer::from_arc(store.clone()).with_config(config);
        Self {
            app: routes().layer(layer),
            store,
        }
    }

    pub fn counts(&self) -> OpCounts {
        self.store.counts()
    }

    /// Sends `GET path` with the given `Cookie` header value.
    pub async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut req = Request::get(path);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        let res = self
            .app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let set_cookies = res
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let vary = res
            .headers()
            .get_all(header::VARY)
            .iter()
            .any(|v| v.to_str().unwrap().eq_ignore_ascii_case("cookie"));
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Reply {
            status,
            set_cookies,
            vary,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }
}

/// What a response said, in the terms the tests check.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub vary: bool,
    pub body: String,
}

impl Reply {
    fn cookie_named(&self, name: &str) -> Option<&String> {
        let prefix = format!("{name}=");
        self.set_cookies.iter().find(|c| c.starts_with(&prefix))
    }

    /// The session id the response sets, if it sets one.
    pub fn session_id(&self) -> Option<String> {
        let c = self.cookie_named("id")?;
        let value = c["id=".len()..].split(';').next().unwrap();
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// A `Cookie` header carrying the session id this response set.
    pub fn cookie(&self) -> String {
        format!(
            "id={}",
            self.session_id().expect("response sets a session cookie")
        )
    }

    /// Whether the response removes the session cookie.
    pub fn removes_session(&self) -> bool {
        self.cookie_named("id")
            .is_some_and(|c| c.starts_with("id=;") && c.contains("Max-Age=0"))
    }

    /// The full `Set-Cookie` of the session cookie.
    pub fn session_set_cookie(&self) -> Option<&String> {
        self.cookie_named("id")
    }

    pub fn test_cookie(&self) -> Option<&String> {
        self.cookie_named("id_test")
    }

    pub fn sets_nothing(&self) -> bool {
        self.set_cookies.is_empty()
    }
}

/// A store that misbehaves the way a test needs; every operation otherwise goes through.
#[derive(Debug, Default)]
pub struct Altered<S> {
    pub inner: S,
    /// Loads fail, as when the database is briefly unreachable.
    pub failing_loads: bool,
    /// Each update takes this long before it reaches the store, as on a busy database.
    pub slow_updates: std::time::Duration,
    /// Loads that have finished, so a test can wait for them instead of guessing a time.
    pub loads_done: AtomicU64,
}

impl<S> Altered<S> {
    /// Nothing altered; loads are counted as they finish.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            failing_loads: false,
            slow_updates: Default::default(),
            loads_done: AtomicU64::new(0),
        }
    }
    pub fn failing_loads(inner: S) -> Self {
        Self {
            failing_loads: true,
            ..Self::new(inner)
        }
    }
    pub fn slow_updates(inner: S, by: std::time::Duration) -> Self {
        Self {
            slow_updates: by,
            ..Self::new(inner)
        }
    }

    /// Waits until `n` loads have finished; panics after 30 s.
    pub async fn loads_finished(&self, n: u64) {
        let started = std::time::Instant::now();
        while self.loads_done.load(Ordering::SeqCst) < n {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{n} loads never finished"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore> SessionStore for Altered<S> {
    async fn load(
        &self,
        key: &StorageKey,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, StoreError> {
        if self.failing_loads {
            return Err(StoreError::Backend("loads fail in this test".into()));
        }
        let loaded = self.inner.load(key, now).await;
        self.loads_done.fetch_add(1, Ordering::SeqCst);
        loaded
    }
    async fn create(&self, key: &StorageKey, record: &Record) -> Result<(), StoreError> {
        self.inner.create(key, record).await
    }
    async fn update(
        &self,
        key: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<Updated, StoreError> {
        tokio::time::sleep(self.slow_updates).await;
        self.inner.update(key, change, now).await
    }
    async fn touch(
        &self,
        key: &StorageKey,
        at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.touch(key, at, now).await
    }
    async fn rename(
        &self,
        from: &StorageKey,
        to: &StorageKey,
        change: &Change,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.rename(from, to, change, now).await
    }
    async fn delete(&self, key: &StorageKey) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }
    fn user_index(&self) -> Option<&dyn tidysession::store::UserIndex> {
        self.inner.user_index()
    }
    fn id_format(&self) -> tidysession::store::IdFormat {
        self.inner.id_format()
    }

    fn maintenance(&self) -> Option<&dyn tidysession::store::Maintenance> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl<S: SessionStore> tidysession::store::Maintenance for Altered<S> {
    async fn delete_expired(
        &self,
        from: Option<OffsetDateTime>,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<ExpiredBatch, StoreError> {
        self.inner
            .maintenance()
            .unwrap()
            .delete_expired(from, now, limit)
            .await
    }
    async fn count(&self, now: OffsetDateTime) -> Result<RecordCounts, StoreError> {
        self.inner.maintenance().unwrap().count(now).await
    }
    fn removes_expired_itself(&self) -> bool {
        self.inner.maintenance().unwrap().removes_expired_itself()
    }
}

/// Implements `SessionStore` for a test wrapper that watches or changes only its cleanup: the
/// request path goes to the store in its `inner` field, and its maintenance is the wrapper's
/// own `Maintenance` impl.
macro_rules! forward_request_path {
    ($ty:ty $(, $g:ident)?) => {
        #[async_trait::async_trait]
        impl$(<$g: tidysession::store::SessionStore>)? tidysession::store::SessionStore for $ty {
            async fn load(
                &self,
                k: &tidysession::store::StorageKey,
                n: time::OffsetDateTime,
            ) -> Result<Option<tidysession::store::Record>, tidysession::StoreError> {
                self.inner.load(k, n).await
            }
            async fn create(
                &self,
                k: &tidysession::store::StorageKey,
                r: &tidysession::store::Record,
            ) -> Result<(), tidysession::StoreError> {
                self.inner.create(k, r).await
            }
            async fn update(
                &self,
                k: &tidysession::store::StorageKey,
                c: &tidysession::store::Change,
                n: time::OffsetDateTime,
            ) -> Result<tidysession::store::Updated, tidysession::StoreError> {
                self.inner.update(k, c, n).await
            }
            async fn touch(
                &self,
                k: &tidysession::store::StorageKey,
                at: time::OffsetDateTime,
                n: time::OffsetDateTime,
            ) -> Result<(), tidysession::StoreError> {
                self.inner.touch(k, at, n).await
            }
            async fn rename(
                &self,
                f: &tidysession::store::StorageKey,
                t: &tidysession::store::StorageKey,
                c: &tidysession::store::Change,
                n: time::OffsetDateTime,
            ) -> Result<(), tidysession::StoreError> {
                self.inner.rename(f, t, c, n).await
            }
            async fn delete(
                &self,
                k: &tidysession::store::StorageKey,
            ) -> Result<bool, tidysession::StoreError> {
                self.inner.delete(k).await
            }
            fn maintenance(&self) -> Option<&dyn tidysession::store::Maintenance> {
                Some(self)
            }
        }
    };
}
pub(crate) use forward_request_path;
