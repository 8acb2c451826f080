//! [`SessionLayer`] and [`SessionService`]: the tower middleware around [`decide`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use cookie::Cookie;
use http::header::{COOKIE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderValue, Request, Response};
use time::OffsetDateTime;
use tower_layer::Layer;
use tower_service::Service;

use crate::config::SessionConfig;
use crate::decide::{decide, CookieOp, StoreOp};
use crate::id::{IdFormat, SessionId};
use crate::record::ExpiryChange;
use crate::seal::{CookieTier, Sealer};
use crate::session::{CookieIn, Outcome, Session};
use crate::store::{NoStore, SessionStore, StoreError, Updated};

/// How many fresh ids to try when a create or rename hits an existing id. With 192-bit ids a
/// second attempt is already astronomically unlikely; the bound keeps a broken store from
/// looping.
const ID_ATTEMPTS: usize = 3;

/// Adds a [`Session`] to every request and saves it afterwards.
///
/// ```
/// use axum::{routing::get, Router};
/// use tidysession::{store::MemoryStore, Session, SessionConfig, SessionLayer};
///
/// async fn visits(session: Session) -> Result<String, tidysession::SessionError> {
///     let n: u64 = session.get("visits").await?.unwrap_or(0) + 1;
///     session.insert("visits", n).await?;
///     Ok(format!("{n} visits"))
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(visits))
///     .layer(SessionLayer::new(MemoryStore::default()).with_config(SessionConfig::default()));
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    store: Arc<dyn SessionStore>,
    config: Arc<SessionConfig>,
    /// Cookie-only: no store at all.
    cookie_only: bool,
    /// Built on first use, for the final configuration, and shared by every clone (every
    /// route of a router): a generated key must be the same for all of them.
    tier: Arc<OnceLock<Option<Arc<CookieTier>>>>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("store", &self.store)
            .field("config", &self.config)
            .field("cookie_only", &self.cookie_only)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Sessions kept in `store`, with the default [`SessionConfig`]: anonymous visitors'
    /// data sealed in their cookie, logged-in sessions in the store.
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// Sessions kept in a shared store, e.g. one opened with [`store::open`](crate::store::open).
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        // Metrics count the store's real calls: coalesced saves count once.
        let measured = Arc::new(crate::metrics::Measured(store));
        let store = Arc::new(crate::coalesce::Coalescing::new(measured));
        Self::build(store, SessionConfig::default(), false)
    }

    /// Sessions with no server store at all: every session, logged in or not, lives sealed in
    /// its cookie (within the cookie budget; larger writes fail with
    /// [`SessionError::TooLarge`](crate::SessionError::TooLarge)).
    ///
    /// The price: a session cannot be ended on the server. Logging out removes the cookie
    /// from that browser, but a copy of the cookie taken earlier stays valid until it
    /// expires; there is no user index, so a user's sessions cannot be listed or revoked.
    /// A password change still ends every other session on its next request, through the
    /// auth hash. Use it only if that is acceptable.
    ///
    /// ```
    /// use tidysession::{KeyRing, SessionConfig, SessionLayer};
    ///
    /// let keys = KeyRing::generate(1)?; // in production: from configuration
    /// let layer = SessionLayer::cookie_only(SessionConfig::default().with_keys(keys));
    /// # Ok::<(), tidysession::KeyRingError>(())
    /// ```
    pub fn cookie_only(config: SessionConfig) -> Self {
        Self::build(Arc::new(NoStore), config, true)
    }

    fn build(store: Arc<dyn SessionStore>, config: SessionConfig, cookie_only: bool) -> Self {
        Self {
            store,
            config: Arc::new(config),
            cookie_only,
            tier: Arc::new(OnceLock::new()),
        }
    }

    fn tier(&self) -> Option<&Arc<CookieTier>> {
        self.tier
            .get_or_init(|| {
                let overhead = cookie_overhead(&self.config);
                CookieTier::new(&self.config, self.cookie_only, overhead).map(Arc::new)
            })
            .as_ref()
    }

    /// Replaces the configuration.
    pub fn with_config(self, config: SessionConfig) -> Self {
        Self::build(self.store, config, self.cookie_only)
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.tier(); // built now, not on the first request
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Clone, Debug)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let layer = &self.layer;
        let tier = layer.tier();
        let format = layer.store.id_format();
        let (cookie, test_cookie) =
            read_cookies(req.headers(), &layer.config, format, tier.is_some());
        let client = tier
            .and_then(|t| t.limiter.as_ref())
            .map(|(_, from)| from.of(&req).unwrap_or_default());
        let session = Session::new(
            layer.store.clone(),
            layer.config.clone(),
            tier.cloned(),
            cookie,
            test_cookie,
            client,
        );
        req.extensions_mut().insert(session.clone());
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            save_and_set_cookie(&session, &mut response).await;
            Ok(response)
        })
    }
}

/// The session cookie, if any, and whether the test cookie came back. When the browser sends
/// several cookies of that name (one set for a parent domain or another path, say), the first
/// well-formed id wins, then the first sealed value, so a stray cookie cannot shadow the real
/// session. Sealed values count only when the cookie tier is on.
fn read_cookies(
    headers: &HeaderMap,
    config: &SessionConfig,
    format: IdFormat,
    sealed: bool,
) -> (Option<CookieIn>, bool) {
    let mut session: Option<CookieIn> = None;
    let mut test = false;
    // Pair by pair, as bytes: a pair that is not ASCII (a cookie another app on the domain
    // set) is skipped on its own, instead of hiding the session cookie beside it.
    let pairs = headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|b| *b == b';'))
        .filter_map(|pair| std::str::from_utf8(pair).ok().filter(|p| p.is_ascii()))
        .filter_map(|pair| pair.trim().split_once('='));
    for (name, value) in pairs {
        if name == config.cookie_name {
            let value = value.trim_matches('"');
            let this = match SessionId::parse_as(format, value) {
                Some(id) => CookieIn::Id(id),
                None if sealed && Sealer::looks_sealed(value) => CookieIn::Sealed(value.to_owned()),
                None => CookieIn::Malformed,
            };
            let rank = |c: &CookieIn| match c {
                CookieIn::Id(_) => 2,
                CookieIn::Sealed(_) => 1,
                CookieIn::Malformed => 0,
            };
            if session.as_ref().is_none_or(|s| rank(&this) > rank(s)) {
                session = Some(this);
            }
        } else if name
            .strip_prefix(config.cookie_name.as_str())
            .is_some_and(|rest| rest == "_test")
        {
            test = true;
        }
    }
    (session, test)
}

/// At the end of a request: decides what to do with the session and does it (one store call
/// at most, one cookie at most).
async fn save_and_set_cookie<B: Default>(session: &Session, response: &mut Response<B>) {
    let config = session.config();
    let untouched = !session.accessed() && !config.save_every_request;
    if untouched && session.incoming() != crate::decide::Incoming::Malformed {
        return; // I1: the common case costs nothing.
    }
    // A handler answered with a failed load's error (untouched sessions load nothing).
    #[cfg(feature = "axum")]
    if response
        .extensions_mut()
        .remove::<crate::extract::StoreUnavailable>()
        .is_some()
    {
        *response.status_mut() = config.store_error_status;
    }
    let server_error = response.status().is_server_error();
    if session.wants_load_for_touch() && !server_error {
        session.load_for_layer().await;
    }
    let now = OffsetDateTime::now_utc();
    let mut outcome = session.outcome(now, server_error);
    let plan = decide(&outcome.facts, config);
    if plan.touches {
        let at = outcome.record.expires_at;
        outcome.change.expiry = Some(if outcome.facts.expiry_set {
            ExpiryChange::Set(at)
        } else {
            ExpiryChange::Touch(at)
        });
    }
    let headers = response.headers_mut();
    if plan.vary {
        headers.append(VARY, HeaderValue::from_static("Cookie"));
    }
    let cookie = match execute(session.store(), plan.store, &outcome, now).await {
        Ok(Done::NewId(new_id)) => {
            let facts = &outcome.facts;
            if plan.store == StoreOp::Create
                && facts.incoming == crate::decide::Incoming::Sealed
                && matches!(facts.loaded, crate::decide::Loaded::Found { .. })
            {
                crate::metrics::promoted();
            }
            session_cookie(config, new_id.as_str(), &outcome)
        }
        // The update left nothing, and the store deleted the record (I2).
        Ok(Done::Deleted) => removal(config, &config.cookie_name),
        Ok(Done::Kept) if plan.cookie == CookieOp::Set => outcome
            .old_id
            .as_ref()
            .and_then(|id| session_cookie(config, id.as_str(), &outcome)),
        Ok(Done::Kept) if plan.cookie == CookieOp::Remove => removal(config, &config.cookie_name),
        Ok(Done::Kept) if plan.cookie == CookieOp::Seal => {
            match sealed_cookie(session, &outcome, plan.touches, now) {
                Some(cookie) => Some(cookie),
                None => {
                    tracing::error!("cannot seal the session into its cookie");
                    *response = Response::new(B::default());
                    *response.status_mut() = config.store_error_status;
                    return;
                }
            }
        }
        Ok(Done::Kept) => None,
        Err(StoreError::Gone) => {
            // Deleted meanwhile (logout in another tab, revoked): nothing is re-created (I5).
            tracing::debug!("session gone before save; removing the cookie");
            removal(config, &config.cookie_name)
        }
        Err(e) => {
            tracing::error!(error = %e, op = ?plan.store, "session save failed");
            *response = Response::new(B::default());
            *response.status_mut() = config.store_error_status;
            return;
        }
    };
    let headers = response.headers_mut();
    headers.extend(cookie.map(|c| (SET_COOKIE, c)));
    let test = match plan.test_cookie {
        CookieOp::Set | CookieOp::Seal => plain_cookie(config, &config.test_cookie_name(), "1"),
        CookieOp::Remove => removal(config, &config.test_cookie_name()),
        CookieOp::Keep => None,
    };
    headers.extend(test.map(|c| (SET_COOKIE, c)));
}

/// What carrying out the store half of a plan did to the session's record.
enum Done {
    /// The record (if any) is still under the incoming id.
    Kept,
    /// The record now lives under this new id.
    NewId(SessionId),
    /// An update emptied the record and the store deleted it.
    Deleted,
}

/// Carries out the store half of a plan.
async fn execute(
    store: &dyn SessionStore,
    op: StoreOp,
    outcome: &Outcome,
    now: OffsetDateTime,
) -> Result<Done, StoreError> {
    let old_key = || outcome.old_id.as_ref().map(SessionId::storage_key);
    match op {
        StoreOp::None => Ok(Done::Kept),
        StoreOp::Create => create(store, outcome).await.map(Done::NewId),
        StoreOp::Update => {
            let key = old_key().ok_or(StoreError::Gone)?;
            match store.update(&key, &outcome.change, now).await? {
                Updated::Kept => Ok(Done::Kept),
                Updated::Deleted => Ok(Done::Deleted),
            }
        }
        StoreOp::Touch => {
            let key = old_key().ok_or(StoreError::Gone)?;
            let expires_at = outcome.record.expires_at;
            store
                .touch(&key, expires_at, now)
                .await
                .map(|()| Done::Kept)
        }
        StoreOp::Rename => {
            let from = old_key().ok_or(StoreError::Gone)?;
            for _ in 0..ID_ATTEMPTS {
                let id = SessionId::generate_as(store.id_format()).map_err(StoreError::backend)?;
                match store
                    .rename(&from, &id.storage_key(), &outcome.change, now)
                    .await
                {
                    Err(StoreError::DuplicateId) => continue,
                    other => return other.map(|()| Done::NewId(id)),
                }
            }
            Err(StoreError::DuplicateId)
        }
        StoreOp::Delete => {
            if let Some(key) = old_key() {
                store.delete(&key).await?;
            }
            Ok(Done::Kept)
        }
        StoreOp::DeleteThenCreate => {
            if let Some(key) = old_key() {
                store.delete(&key).await?;
            }
            create(store, outcome).await.map(Done::NewId)
        }
    }
}

async fn create(store: &dyn SessionStore, outcome: &Outcome) -> Result<SessionId, StoreError> {
    for _ in 0..ID_ATTEMPTS {
        let id = SessionId::generate_as(store.id_format()).map_err(StoreError::backend)?;
        match store.create(&id.storage_key(), &outcome.record).await {
            Err(StoreError::DuplicateId) => continue,
            other => return other.map(|()| id),
        }
    }
    Err(StoreError::DuplicateId)
}

fn base_cookie<'c>(config: &SessionConfig, name: &str, value: &str) -> Cookie<'c> {
    let mut cookie = Cookie::build((name.to_owned(), value.to_owned()))
        .http_only(config.http_only)
        .secure(config.secure)
        .same_site(config.same_site)
        .path(config.path.clone())
        .build();
    if let Some(domain) = &config.domain {
        cookie.set_domain(domain.clone());
    }
    cookie
}

fn to_header(cookie: &Cookie<'_>) -> Option<HeaderValue> {
    // Names and values are percent-encoded; only a configured path or domain holding control
    // characters can fail here, and then no cookie beats a broken header.
    HeaderValue::from_str(&cookie.encoded().to_string())
        .map_err(|e| tracing::error!(error = %e, "cookie configuration yields an invalid header"))
        .ok()
}

/// The session's data sealed into its cookie, with the new expiry if the plan moves it.
fn sealed_cookie(
    session: &Session,
    outcome: &Outcome,
    touches: bool,
    now: OffsetDateTime,
) -> Option<HeaderValue> {
    let tier = session.tier()?;
    let record = &outcome.record;
    let expires_at = if touches {
        record.expires_at
    } else {
        outcome.current_expiry
    };
    let payload = Sealer::payload(&record.data, record.created_at, expires_at);
    let value = tier.sealer.seal(&payload)?;
    crate::metrics::sealed();
    let config = session.config();
    let mut cookie = base_cookie(config, &config.cookie_name, &value);
    if outcome.max_age.is_some() {
        set_lifetime(&mut cookie, expires_at - now, expires_at);
    }
    to_header(&cookie)
}

/// Gives a cookie `left` to live, until `expires_at`. Both attributes count whole seconds, so
/// both round up: cut down, the cookie would end before its session, and with under a second
/// left it would say `Max-Age=0`, which deletes it at once.
fn set_lifetime(cookie: &mut Cookie<'_>, left: time::Duration, expires_at: OffsetDateTime) {
    let left = left.max(time::Duration::ZERO);
    let part = i64::from(left.subsec_nanoseconds() > 0);
    cookie.set_max_age(time::Duration::seconds(
        left.whole_seconds().saturating_add(part),
    ));
    let up = (expires_at.replace_nanosecond(0).ok())
        .filter(|whole| *whole != expires_at)
        .and_then(|whole| whole.checked_add(time::Duration::SECOND));
    cookie.set_expires(up.unwrap_or(expires_at));
}

/// The length of the session cookie's `Set-Cookie` header without its value, at its longest
/// (a ten-digit `Max-Age` and an `Expires` date).
fn cookie_overhead(config: &SessionConfig) -> usize {
    let mut cookie = base_cookie(config, &config.cookie_name, "");
    cookie.set_max_age(time::Duration::seconds(9_999_999_999));
    cookie.set_expires(OffsetDateTime::UNIX_EPOCH);
    cookie.encoded().to_string().len()
}

fn session_cookie(config: &SessionConfig, value: &str, outcome: &Outcome) -> Option<HeaderValue> {
    let mut cookie = base_cookie(config, &config.cookie_name, value);
    if let Some(left) = outcome.max_age {
        set_lifetime(&mut cookie, left, outcome.record.expires_at);
    }
    to_header(&cookie)
}

fn plain_cookie(config: &SessionConfig, name: &str, value: &str) -> Option<HeaderValue> {
    to_header(&base_cookie(config, name, value))
}

fn removal(config: &SessionConfig, name: &str) -> Option<HeaderValue> {
    let mut cookie = base_cookie(config, name, "");
    cookie.make_removal();
    to_header(&cookie)
}
