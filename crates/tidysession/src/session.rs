//! [`Session`]: the per-request handle handlers use.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokio::sync::OnceCell;

use crate::config::SessionConfig;
use crate::decide::{Facts, Incoming, Loaded, TestCookie};
use crate::id::SessionId;
use crate::record::{
    millis, only_reserved, plus, time_at, Change, Data, Edits, Record, RESERVED_PREFIX, USER_KEY,
};
use crate::seal::{CookieTier, Sealer};
use crate::store::{SessionStore, StoreError};

pub(crate) const EXPIRY_KEY: &str = "_tidysession.expiry";
/// The least a touch must add to a session's expiry to be worth a write.
const MIN_EXTENSION: Duration = Duration::seconds(1);

/// The session of the current request.
///
/// Cheap to clone (one `Arc`). Nothing is loaded until a method needs the stored data, and the
/// store is asked at most once per request. Changes are recorded per key and sent to the store
/// by [`SessionLayer`](crate::SessionLayer) after the handler returns: only the keys whose
/// value changed, and nothing at all if nothing did.
///
/// ```
/// # async fn handler(session: tidysession::Session) -> Result<(), tidysession::SessionError> {
/// let visits: u64 = session.get("visits").await?.unwrap_or(0);
/// session.insert("visits", visits + 1).await?;
/// # Ok(()) }
/// ```
///
/// `Debug` never prints the session id or data.
#[derive(Clone)]
pub struct Session(Arc<Inner>);

struct Inner {
    store: Arc<dyn SessionStore>,
    config: Arc<SessionConfig>,
    /// `Some` when data may live in the cookie.
    tier: Option<Arc<CookieTier>>,
    incoming: Incoming,
    /// # Internal invariant
    ///
    /// `Some` exactly when `incoming` is [`Incoming::Valid`].
    id: Option<SessionId>,
    /// # Internal invariant
    ///
    /// `Some` exactly when `incoming` is [`Incoming::Sealed`].
    sealed: Option<String>,
    /// The client's address, when promotions are limited per client.
    client: Option<String>,
    test_cookie_present: bool,
    load: OnceCell<Result<Option<Record>, Arc<StoreError>>>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    loaded: LoadState,
    /// The handler's edits on top of the loaded data, which is never copied.
    edits: Edits,
    accessed: bool,
    flushed: bool,
    cycled: bool,
    test_cookie: TestCookie,
    /// The promotion limit already let this session's data move to the store.
    promotion_granted: bool,
}

/// The session cookie a request carried.
#[derive(Debug, Clone)]
pub(crate) enum CookieIn {
    /// A well-formed session id.
    Id(SessionId),
    /// A value of the sealed form (it may still not open).
    Sealed(String),
    /// Neither.
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoadState {
    NotLoaded,
    Failed,
    Missing,
    Found {
        created_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    },
}

/// When one session expires, overriding the configured idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// After this long without use (a custom idle timeout for this session).
    OnInactivity(Duration),
    /// At a fixed time; using the session does not extend it.
    AtDateTime(OffsetDateTime),
    /// When the browser closes: the cookie has no `Max-Age`. The server still applies the
    /// configured idle timeout.
    OnBrowserClose,
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The store failed while loading the session.
    #[error("cannot load the session: {0}")]
    Store(#[source] Arc<StoreError>),
    /// A stored value does not have the type asked for.
    #[error("session value {key:?} has an unexpected type: {source}")]
    Deserialize {
        /// The key.
        key: String,
        /// The type mismatch.
        #[source]
        source: serde_json::Error,
    },
    /// A value could not be turned into JSON.
    #[error("session value {key:?} cannot be stored: {source}")]
    Serialize {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The key is reserved for tidysession itself.
    #[error("session key {0:?} is reserved (keys starting with {RESERVED_PREFIX:?})")]
    ReservedKey(String),
    /// The write would make an anonymous session's sealed cookie larger than the budget, and
    /// the configuration says not to move it to the store (or there is no store). The write
    /// was not applied.
    #[error("the session would take {size} bytes of cookie, over the budget of {budget}")]
    TooLarge {
        /// The `Set-Cookie` header it would need.
        size: usize,
        /// The configured budget.
        budget: usize,
    },
    /// The write would move an anonymous session to the store, but this client has had as
    /// many promotions as the limit allows for now. The write was not applied.
    #[error("too many anonymous sessions from this client; try again later")]
    PromotionLimited,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("incoming", &self.0.incoming)
            .field("id", &"**redacted**")
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A handle for one request. `cookie` is the session cookie the request carried, if any:
    /// `Some(None)` when it was not a well-formed id.
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        config: Arc<SessionConfig>,
        tier: Option<Arc<CookieTier>>,
        cookie: Option<CookieIn>,
        test_cookie_present: bool,
        client: Option<String>,
    ) -> Self {
        let (incoming, id, sealed) = match cookie {
            None => (Incoming::Absent, None, None),
            Some(CookieIn::Malformed) => (Incoming::Malformed, None, None),
            Some(CookieIn::Id(id)) => (Incoming::Valid, Some(id), None),
            Some(CookieIn::Sealed(v)) => (Incoming::Sealed, None, Some(v)),
        };
        let loaded = if id.is_some() || sealed.is_some() {
            LoadState::NotLoaded
        } else {
            // Nothing to load: a missing or malformed cookie is an empty session, known
            // without asking the store (I4).
            LoadState::Missing
        };
        Self(Arc::new(Inner {
            store,
            config,
            tier,
            incoming,
            id,
            sealed,
            client,
            test_cookie_present,
            load: OnceCell::new(),
            state: Mutex::new(State {
                loaded,
                edits: Edits::default(),
                accessed: false,
                flushed: false,
                cycled: false,
                test_cookie: TestCookie::Unchanged,
                promotion_granted: false,
            }),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section is a few field writes with no await; a panic inside one
        // leaves the state usable.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads the stored data on first use; later calls cost nothing.
    async fn loaded(&self) -> Result<MutexGuard<'_, State>, SessionError> {
        {
            let mut state = self.state();
            state.accessed = true;
            // After a flush the data is a new, empty session: nothing to load.
            if state.loaded != LoadState::NotLoaded || state.flushed {
                return match (state.loaded, self.0.load.get()) {
                    // The error the first load of this request met; after a flush the old
                    // data no longer matters, so writes to the new session go ahead.
                    (LoadState::Failed, Some(Err(e))) if !state.flushed => {
                        Err(SessionError::Store(e.clone()))
                    }
                    _ => Ok(state),
                };
            }
        }
        let inner = &*self.0;
        let result = inner
            .load
            .get_or_init(|| async {
                let now = OffsetDateTime::now_utc();
                if let (Some(value), Some(tier)) = (&inner.sealed, &inner.tier) {
                    // Opening costs no I/O; a cookie that does not open is an unknown one.
                    let absolute = inner.config.absolute_timeout;
                    return Ok(tier
                        .sealer
                        .open(value, now, absolute)
                        .map_err(|why| {
                            tracing::debug!(?why, "sealed session cookie refused");
                            crate::metrics::rejected(why);
                        })
                        .ok());
                }
                let Some(id) = &inner.id else { return Ok(None) };
                match (*inner.store).load(&id.storage_key(), now).await {
                    Ok(record) => {
                        Ok(record.filter(|r| r.is_live(now, inner.config.absolute_timeout)))
                    }
                    Err(StoreError::Corrupt { key, reason }) => {
                        // Left in place for an operator to inspect; this visitor starts afresh.
                        tracing::warn!(?key, %reason, "ignoring corrupt session record");
                        Ok(None)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "session load failed");
                        Err(Arc::new(e))
                    }
                }
            })
            .await;
        let mut state = self.state();
        if state.loaded == LoadState::NotLoaded && !state.flushed {
            state.loaded = match result {
                Err(_) => LoadState::Failed,
                Ok(None) => LoadState::Missing,
                Ok(Some(record)) => LoadState::Found {
                    created_at: record.created_at,
                    expires_at: record.expires_at,
                },
            };
        }
        match result {
            Err(e) if state.loaded == LoadState::Failed => Err(SessionError::Store(e.clone())),
            _ => Ok(state),
        }
    }

    /// The data as loaded: empty when nothing was found, before loading, or after a flush.
    fn original<'a>(&'a self, state: &State) -> &'a Data {
        static EMPTY: std::sync::LazyLock<Data> = std::sync::LazyLock::new(Data::new);
        match (state.flushed, self.0.load.get()) {
            (false, Some(Ok(Some(record)))) => &record.data,
            _ => &EMPTY,
        }
    }

    /// The value stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed, [`SessionError::Deserialize`] if the stored
    /// value is not a `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.loaded().await?;
        state
            .edits
            .get(self.original(&state), key)
            .map(|v| T::deserialize(v))
            .transpose()
            .map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// Stores `value` under `key`. Setting a key to the value it already has changes nothing.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed, [`SessionError::Serialize`] if `value` cannot
    /// be JSON, [`SessionError::ReservedKey`] for keys starting with [`RESERVED_PREFIX`].
    pub async fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        if key.starts_with(RESERVED_PREFIX) {
            return Err(SessionError::ReservedKey(key.to_owned()));
        }
        let value = serde_json::to_value(value).map_err(|source| SessionError::Serialize {
            key: key.to_owned(),
            source,
        })?;
        let mut state = self.loaded().await?;
        let before = state.edits.set(key.to_owned(), value);
        if let Err(e) = self.check_cookie_budget(&mut state) {
            state.edits.restore(key, before);
            return Err(e);
        }
        Ok(())
    }

    /// Whether the session's data may stay where it is going after a write: an anonymous
    /// session that outgrows the cookie is refused here (the handler gets a clear error at
    /// the write), unless it may move to the store.
    fn check_cookie_budget(&self, state: &mut State) -> Result<(), SessionError> {
        let Some(tier) = &self.0.tier else {
            return Ok(());
        };
        if self.server_found(state) {
            return Ok(());
        }
        let original = self.original(state);
        let data = state.edits.merged(original);
        if !tier.only && user_of(&data) {
            return Ok(()); // logged in: it goes to the store anyway
        }
        let now = OffsetDateTime::now_utc();
        let expires = plus(now, self.0.config.idle_timeout);
        let Err(size) = tier.fits(Sealer::payload(&data, now, expires).len()) else {
            return Ok(());
        };
        match (&tier.over_budget, &tier.limiter) {
            (crate::config::OverBudget::Fail, _) => Err(SessionError::TooLarge {
                size,
                budget: tier.budget(),
            }),
            (_, None) => Ok(()),
            (_, Some(_)) if state.promotion_granted => Ok(()),
            (_, Some((limiter, _))) => {
                let client = self.0.client.as_deref().unwrap_or("");
                if limiter.allow(client, now) {
                    state.promotion_granted = true;
                    Ok(())
                } else {
                    tracing::info!("anonymous session promotion refused by the per-client limit");
                    Err(SessionError::PromotionLimited)
                }
            }
        }
    }

    /// Whether the data came from a live record in the store (and was not flushed since).
    fn server_found(&self, state: &State) -> bool {
        self.0.incoming == Incoming::Valid
            && matches!(state.loaded, LoadState::Found { .. })
            && !state.flushed
    }

    /// Stores a value under a [`RESERVED_PREFIX`] key: tidysession's own bookkeeping, which
    /// does not count as data.
    pub(crate) async fn insert_reserved(
        &self,
        key: &str,
        value: Value,
    ) -> Result<(), SessionError> {
        debug_assert!(key.starts_with(RESERVED_PREFIX));
        self.loaded().await?.edits.set(key.to_owned(), value);
        Ok(())
    }

    /// The key the session's record is stored under now, if it may have one: the incoming
    /// id's, unless the session was flushed in this request.
    pub(crate) fn storage_key(&self) -> Option<crate::id::StorageKey> {
        if self.state().flushed {
            return None;
        }
        self.0.id.as_ref().map(SessionId::storage_key)
    }

    /// Removes `key`, returning its value if there was one.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get). The key is removed even when its value is not a `T`.
    pub async fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let mut state = self.loaded().await?;
        let original = self.original(&state);
        let removed = state.edits.remove(original, key);
        drop(state);
        removed
            .map(T::deserialize)
            .transpose()
            .map_err(|source| SessionError::Deserialize {
                key: key.to_owned(),
                source,
            })
    }

    /// Removes every key. The stored record is deleted at the end of the request (I2); the
    /// cookie goes with it.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn clear(&self) -> Result<(), SessionError> {
        self.loaded().await?.edits.clear();
        Ok(())
    }

    /// Whether the session holds no data.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn is_empty(&self) -> Result<bool, SessionError> {
        let state = self.loaded().await?;
        Ok(only_reserved(state.edits.keys(self.original(&state))))
    }

    /// The keys the session holds.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn keys(&self) -> Result<Vec<String>, SessionError> {
        let state = self.loaded().await?;
        Ok(state
            .edits
            .keys(self.original(&state))
            .filter(|k| !k.starts_with(RESERVED_PREFIX))
            .cloned()
            .collect())
    }

    /// Ends the session: the stored record is deleted and the cookie removed, without loading
    /// anything. Data inserted afterwards starts a new session under a new id.
    pub fn flush(&self) {
        let mut state = self.state();
        state.accessed = true;
        state.flushed = true;
        state.cycled = false;
        state.edits = Edits::default();
    }

    /// Moves the session to a new id, keeping its data (call it at login and on any privilege
    /// change, against session fixation). The store does it in one atomic step (I7).
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn cycle_id(&self) -> Result<(), SessionError> {
        self.loaded().await?.cycled = true;
        Ok(())
    }

    /// Sets when this session expires, overriding the configured idle timeout. Stored with the
    /// session, to the millisecond as stores keep times; it does not by itself make an empty
    /// session worth storing.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn set_expiry(&self, expiry: Expiry) -> Result<(), SessionError> {
        let value = match expiry {
            Expiry::OnInactivity(d) => {
                let ms = d.whole_milliseconds();
                let ms = ms.clamp(i64::MIN.into(), i64::MAX.into()) as i64;
                serde_json::json!({ "idle_ms": ms })
            }
            Expiry::AtDateTime(t) => serde_json::json!({ "at_ms": millis(t) }),
            Expiry::OnBrowserClose => serde_json::json!({ "browser": true }),
        };
        self.loaded().await?.edits.set(EXPIRY_KEY.to_owned(), value);
        Ok(())
    }

    /// This session's own expiry, if [`set_expiry`](Self::set_expiry) gave it one.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] if loading failed.
    pub async fn expiry(&self) -> Result<Option<Expiry>, SessionError> {
        let state = self.loaded().await?;
        Ok(expiry_of(
            state.edits.get(self.original(&state), EXPIRY_KEY),
        ))
    }

    /// Asks the browser to store a test cookie, to check on a later request that cookies
    /// work (e.g. on a login page). It is a plain cookie: no session record is created.
    pub fn set_test_cookie(&self) {
        let mut state = self.state();
        state.accessed = true;
        state.test_cookie = TestCookie::Set;
    }

    /// Whether this request came back with the test cookie.
    pub fn test_cookie_worked(&self) -> bool {
        self.state().accessed = true;
        self.0.test_cookie_present
    }

    /// Removes the test cookie from the browser.
    pub fn delete_test_cookie(&self) {
        let mut state = self.state();
        state.accessed = true;
        state.test_cookie = TestCookie::Delete;
    }

    /// Whether the handler used this session at all.
    pub(crate) fn accessed(&self) -> bool {
        self.state().accessed
    }

    pub(crate) fn incoming(&self) -> Incoming {
        self.0.incoming
    }

    /// The store itself, not its `Arc`: calls through the `Arc`'s own `SessionStore` impl
    /// would box each future once more.
    pub(crate) fn store(&self) -> &dyn SessionStore {
        &*self.0.store
    }

    pub(crate) fn config(&self) -> &SessionConfig {
        &self.0.config
    }

    /// Whether the layer must load the session before deciding, because the handler did not
    /// but save-every-request wants a touch.
    pub(crate) fn wants_load_for_touch(&self) -> bool {
        let state = self.state();
        self.0.config.save_every_request && state.loaded == LoadState::NotLoaded && !state.flushed
    }

    /// Loads the session for the layer (save-every-request).
    pub(crate) async fn load_for_layer(&self) {
        // Errors were logged and leave the state `Failed`, which decides to do nothing.
        let accessed = self.state().accessed;
        drop(self.loaded().await);
        // Loading for the layer is not the handler using the session: no `Vary` for it.
        self.state().accessed = accessed;
    }

    /// What the request did, for [`decide`](crate::decide), plus what carrying out the plan
    /// needs.
    pub(crate) fn outcome(&self, now: OffsetDateTime, server_error: bool) -> Outcome {
        let state = self.state();
        let config = &*self.0.config;
        let original = self.original(&state);
        let expiry = expiry_of(state.edits.get(original, EXPIRY_KEY));
        let change = state.edits.change(original);
        let keys_changed = !change.has_no_keys();
        let created_at = match state.loaded {
            LoadState::Found { created_at, .. } if !state.flushed => created_at,
            _ => now,
        };
        // The expiry a refresh would give: a fresh idle period, never past the absolute
        // timeout.
        let expires_at = match expiry {
            Some(Expiry::AtDateTime(t)) => t,
            Some(Expiry::OnInactivity(idle)) => plus(now, idle),
            _ => plus(now, config.idle_timeout),
        }
        .min(plus(created_at, config.absolute_timeout));
        let loaded = match state.loaded {
            LoadState::Found {
                expires_at: current,
                ..
            } if !state.flushed => {
                let window = match expiry {
                    Some(Expiry::OnInactivity(idle)) => config.touch_window().min(idle / 2),
                    _ => config.touch_window(),
                };
                // Due when little time is left and a refresh would actually add some (near
                // the absolute timeout it cannot, and touching would be a write for nothing).
                let due = !matches!(expiry, Some(Expiry::AtDateTime(_)))
                    && current - now < window
                    && expires_at - current >= MIN_EXTENSION;
                Loaded::Found { touch_due: due }
            }
            LoadState::Found { .. } => Loaded::Found { touch_due: false },
            LoadState::NotLoaded => Loaded::Never,
            LoadState::Failed => Loaded::Failed,
            LoadState::Missing => Loaded::Missing,
        };
        let server_found = self.server_found(&state);
        // Everything but an update of a stored record needs the whole data: a create, or a
        // seal into the cookie.
        let data = if server_found {
            Data::new()
        } else {
            state.edits.merged(original)
        };
        let current_expiry = match state.loaded {
            LoadState::Found { expires_at, .. } => expires_at,
            _ => expires_at,
        };
        let sealable = match &self.0.tier {
            Some(tier) if !server_found && (tier.only || !user_of(&data)) => tier
                .fits(Sealer::payload(&data, created_at, expires_at.max(current_expiry)).len())
                .is_ok(),
            _ => false,
        };
        let facts = Facts {
            incoming: self.0.incoming,
            loaded,
            accessed: state.accessed,
            keys_changed,
            expiry_set: change.set.contains_key(EXPIRY_KEY) || change.removed.contains(EXPIRY_KEY),
            empty: only_reserved(state.edits.keys(original)),
            flushed: state.flushed,
            cycled: state.cycled,
            sealable,
            test_cookie: state.test_cookie,
            server_error,
        };
        Outcome {
            facts,
            old_id: self.0.id.clone(),
            change,
            record: Record {
                data,
                created_at,
                expires_at,
            },
            current_expiry,
            max_age: match expiry {
                Some(Expiry::OnBrowserClose) => None,
                _ if config.browser_session => None,
                _ => Some(expires_at - now),
            },
        }
    }

    /// The cookie tier, when data may live in the cookie.
    pub(crate) fn tier(&self) -> Option<&CookieTier> {
        self.0.tier.as_deref()
    }
}

/// Whether `data` belongs to a logged-in user.
fn user_of(data: &Data) -> bool {
    data.contains_key(USER_KEY)
}

/// Everything the layer needs at the end of a request.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) facts: Facts,
    /// The incoming id, when well-formed.
    pub(crate) old_id: Option<SessionId>,
    /// Changed keys since load; the layer adds the new expiry when the plan moves it.
    pub(crate) change: Change,
    /// The whole data (for a create or a seal; empty for an update of a stored record), the
    /// creation time, and as `expires_at` the new expiry for anything that moves it.
    pub(crate) record: Record,
    /// The expiry the session has now (for a re-seal that does not move it).
    pub(crate) current_expiry: OffsetDateTime,
    /// The cookie's `Max-Age` for the new expiry; `None` for a browser-session cookie.
    pub(crate) max_age: Option<Duration>,
}

pub(crate) fn expiry_of(v: Option<&Value>) -> Option<Expiry> {
    let v = v?;
    if let Some(ms) = v.get("idle_ms").and_then(Value::as_i64) {
        return Some(Expiry::OnInactivity(Duration::milliseconds(ms)));
    }
    if let Some(ms) = v.get("at_ms").and_then(Value::as_i64) {
        return time_at(ms).map(Expiry::AtDateTime);
    }
    v.get("browser").map(|_| Expiry::OnBrowserClose)
}
