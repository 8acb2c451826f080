//! [`AuthSession`]: the per-request login state.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use super::hash::{Check, SessionAuthHash};
use super::{AuthBackend, AuthError, AuthUser, HASH_KEY};
use crate::client::ClientAddress;
use crate::id::StorageKey;
use crate::record::{Record, USER_KEY};
use crate::session::{expiry_of, Expiry, Session, EXPIRY_KEY};
use crate::store::UserIndex;

/// Where a logged-in session keeps its client metadata (when kept): a reserved key, so it
/// never makes a session worth storing by itself.
const CLIENT_KEY: &str = "_tidysession.client";
/// When the user logged in on this session (Unix microseconds): the cap evicts by it.
const LOGIN_KEY: &str = "_tidysession.login_at";

/// The login state of the current request, on top of its [`Session`].
///
/// Cheap to clone. The user is loaded on first use and kept for the rest of the request.
/// See the [module docs](crate::auth) for an example.
pub struct AuthSession<B: AuthBackend> {
    inner: Arc<Inner<B>>,
}

struct Inner<B: AuthBackend> {
    session: Session,
    auth: Arc<Auth<B>>,
    client: Option<ClientInfo>,
    /// `None` until asked; then the user, or `Some(None)` for nobody.
    user: Mutex<Option<Option<B::User>>>,
}

impl<B: AuthBackend> Clone for AuthSession<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<B: AuthBackend> std::fmt::Debug for AuthSession<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSession")
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

/// What every request's [`AuthSession`] shares.
pub(crate) struct Auth<B> {
    pub(crate) backend: Arc<B>,
    /// How session auth hashes are made and checked.
    pub(crate) hash: Arc<dyn SessionAuthHash>,
    pub(crate) max_sessions_per_user: Option<usize>,
    /// `Some` when client metadata is kept, with where the address comes from.
    pub(crate) client: Option<ClientAddress>,
}

impl<B> Clone for Auth<B> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            hash: self.hash.clone(),
            max_sessions_per_user: self.max_sessions_per_user,
            client: self.client.clone(),
        }
    }
}

/// The client a logged-in session was made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientInfo {
    #[serde(rename = "ua", skip_serializing_if = "Option::is_none")]
    pub(crate) user_agent: Option<String>,
    #[serde(rename = "ip", skip_serializing_if = "Option::is_none")]
    pub(crate) address: Option<String>,
}

/// One of a user's sessions, as [`AuthSession::sessions`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// An opaque name for this session, to pass to [`AuthSession::revoke`]. It is not the
    /// session id and cannot be turned into one.
    pub handle: String,
    /// Whether this is the session of the current request.
    pub current: bool,
    /// When the session was created (for a login, when the user logged in or, if they had
    /// an anonymous session before, when that began).
    pub created_at: OffsetDateTime,
    /// When the session was last used, as of its last expiry refresh (so to within the touch
    /// window). `None` for a session with a fixed expiry time.
    pub last_seen: Option<OffsetDateTime>,
    /// When the session expires unless used before then.
    pub expires_at: OffsetDateTime,
    /// The browser's user agent at login, when client metadata is kept.
    pub user_agent: Option<String>,
    /// The client's address at login, when client metadata is kept.
    pub address: Option<String>,
}

impl<B: AuthBackend> AuthSession<B> {
    pub(crate) fn new(session: Session, auth: Arc<Auth<B>>, client: Option<ClientInfo>) -> Self {
        Self {
            inner: Arc::new(Inner {
                session,
                auth,
                client,
                user: Mutex::new(None),
            }),
        }
    }

    /// The session underneath.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The backend the [`AuthLayer`](super::AuthLayer) was given.
    pub fn backend(&self) -> &B {
        &self.inner.auth.backend
    }

    /// The logged-in user, if any: loaded on the first call, then kept for the request.
    ///
    /// A session whose user no longer exists, whose stored id is not a valid id, or whose
    /// auth hash does not match the user's credentials (changed elsewhere, or tampered with)
    /// is flushed: the visitor is logged out. A hash made with an older key of the ring is
    /// re-made with the newest: the one time a read writes (one key), once per session per
    /// rotation.
    ///
    /// # Errors
    ///
    /// [`AuthError::Session`] if the session cannot be loaded, [`AuthError::Backend`] if the
    /// user cannot.
    pub async fn user(&self) -> Result<Option<B::User>, AuthError> {
        let mut cached = self.inner.user.lock().await;
        if let Some(user) = &*cached {
            return Ok(user.clone());
        }
        let user = self.load_user().await?;
        *cached = Some(user.clone());
        Ok(user)
    }

    async fn load_user(&self) -> Result<Option<B::User>, AuthError> {
        let session = &self.inner.session;
        let Some(stored) = self.stored_user_id().await? else {
            return Ok(None);
        };
        let Ok(id) = stored.parse::<<B::User as AuthUser>::Id>() else {
            tracing::warn!("session holds a user id the backend cannot parse; logging out");
            session.flush();
            return Ok(None);
        };
        let user = self
            .inner
            .auth
            .backend
            .user(&id)
            .await
            .map_err(|e| AuthError::Backend(Box::new(e)))?;
        let Some(user) = user else {
            tracing::info!("the session's user no longer exists; logging out");
            session.flush();
            return Ok(None);
        };
        let hash = &self.inner.auth.hash;
        let (uid, fingerprint) = (user.id().to_string(), user.credential_fingerprint());
        // A hash that is not even text is as wrong as a text that does not match.
        let stored_hash: Option<String> = session.get(HASH_KEY).await.unwrap_or(None);
        let check = stored_hash
            .as_deref()
            .map_or(Check::Invalid, |h| hash.check(&uid, fingerprint, h));
        match check {
            Check::Valid => {}
            Check::ValidOldKey => {
                session
                    .insert(HASH_KEY, hash.make(&uid, fingerprint))
                    .await?;
            }
            Check::Invalid => {
                tracing::info!(
                    "session auth hash does not match the user's credentials; logging out"
                );
                session.flush();
                return Ok(None);
            }
        }
        Ok(Some(user))
    }

    /// The user id the session holds, as text; a value of another type counts as none.
    async fn stored_user_id(&self) -> Result<Option<String>, AuthError> {
        match self.inner.session.get::<String>(USER_KEY).await {
            Ok(id) => Ok(id),
            Err(crate::SessionError::Deserialize { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Logs `user` in on this session (after the app has checked their credentials).
    ///
    /// If the session belongs to another user it is flushed first, so nothing of theirs
    /// carries over. Otherwise the session moves to a new id (against session fixation) and
    /// keeps its data: an anonymous cart survives login. The session is filed under the user
    /// in the store's user index; with a [cap](super::AuthLayer::with_max_sessions_per_user),
    /// the user's oldest sessions beyond it are revoked.
    ///
    /// # Errors
    ///
    /// [`AuthError::Session`] if the session cannot be loaded; [`AuthError::Store`] or
    /// [`AuthError::NoUserIndex`] if the cap cannot be applied.
    pub async fn login(&self, user: &B::User) -> Result<(), AuthError> {
        let session = &self.inner.session;
        let id = user.id().to_string();
        if self.inner.auth.max_sessions_per_user.is_some() {
            self.index()?; // fail before changing anything
        }
        let mut cached = self.inner.user.lock().await;
        match self.stored_user_id().await? {
            Some(other) if other != id => session.flush(),
            _ => session.cycle_id().await?,
        }
        if let Some(max) = self.inner.auth.max_sessions_per_user {
            self.evict_beyond(&id, max - 1).await?;
        }
        let hash = &self.inner.auth.hash;
        session.insert(USER_KEY, &id).await?;
        session
            .insert(HASH_KEY, hash.make(&id, user.credential_fingerprint()))
            .await?;
        for (key, value) in hash.login_entries() {
            session.insert(&key, value).await?;
        }
        let login_at = micros(OffsetDateTime::now_utc());
        session
            .insert_reserved(LOGIN_KEY, serde_json::Value::from(login_at))
            .await?;
        if let Some(client) = &self.inner.client {
            let value = serde_json::to_value(client).unwrap_or_default();
            session.insert_reserved(CLIENT_KEY, value).await?;
        }
        *cached = Some(Some(user.clone()));
        Ok(())
    }

    /// Revokes the oldest of the user's other sessions until at most `keep` remain. Best effort:
    /// two logins at the same moment may both find room.
    async fn evict_beyond(&self, user: &str, keep: usize) -> Result<(), AuthError> {
        let index = self.index()?;
        let current = self.inner.session.storage_key();
        let now = OffsetDateTime::now_utc();
        let absolute = self.inner.session.config().absolute_timeout;
        let mut others: Vec<(StorageKey, Record)> = index
            .sessions_of(user, now)
            .await?
            .into_iter()
            .filter(|(k, r)| Some(k) != current.as_ref() && r.is_live(now, absolute))
            .collect();
        if others.len() <= keep {
            return Ok(());
        }
        // Oldest login first (a session promoted from an old anonymous cart is as new as its
        // login); ties by key, so the order is the same on every store.
        others.sort_by_key(|(k, r)| (login_at(r), *k));
        let excess = others.len() - keep;
        for (key, _) in &others[..excess] {
            self.inner.session.store().delete(key).await?;
        }
        tracing::debug!(evicted = excess, "session cap reached at login");
        Ok(())
    }

    /// Logs out: the session is flushed (its record deleted, which also takes it out of the
    /// user index) and the cookie removed.
    pub async fn logout(&self) {
        let mut cached = self.inner.user.lock().await;
        self.inner.session.flush();
        *cached = Some(None);
    }

    /// Call after changing `user`'s credentials (e.g. their password). If this session is
    /// theirs it stays logged in, with a new auth hash; every other session of theirs is
    /// revoked, and any the index could not reach logs out on its next request anyway
    /// (its auth hash no longer matches). Returns how many sessions were revoked.
    ///
    /// # Errors
    ///
    /// [`AuthError::Session`] if the session cannot be loaded, [`AuthError::Store`] if
    /// revoking fails.
    pub async fn update_credentials(&self, user: &B::User) -> Result<u64, AuthError> {
        let session = &self.inner.session;
        let id = user.id().to_string();
        // Only a session that is really this user's (its hash checked) is kept: one already
        // logged out by a stale hash must not get a fresh one.
        let mine = self.user().await?.is_some_and(|u| u.id().to_string() == id);
        let mut cached = self.inner.user.lock().await;
        if mine {
            let hash = self
                .inner
                .auth
                .hash
                .make(&id, user.credential_fingerprint());
            session.insert(HASH_KEY, hash).await?;
            *cached = Some(Some(user.clone()));
        }
        let keep = if mine { session.storage_key() } else { None };
        match session.store().user_index() {
            Some(index) => Ok(index.delete_sessions_of(&id, keep.as_ref()).await?),
            None => Ok(0),
        }
    }

    /// The logged-in user's live sessions, newest first; empty when nobody is logged in.
    ///
    /// # Errors
    ///
    /// As [`user`](Self::user); [`AuthError::NoUserIndex`] or [`AuthError::Store`] if the
    /// store cannot list them.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, AuthError> {
        let Some(user) = self.user().await? else {
            return Ok(Vec::new());
        };
        let now = OffsetDateTime::now_utc();
        let config = self.inner.session.config();
        let current = self.inner.session.storage_key();
        let mut list: Vec<SessionInfo> = self
            .index()?
            .sessions_of(&user.id().to_string(), now)
            .await?
            .into_iter()
            .filter(|(_, r)| r.is_live(now, config.absolute_timeout))
            .map(|(key, record)| {
                let idle = match expiry_of(record.data.get(EXPIRY_KEY)) {
                    Some(Expiry::AtDateTime(_)) => None,
                    Some(Expiry::OnInactivity(idle)) => Some(idle),
                    _ => Some(config.idle_timeout),
                };
                let client: ClientInfo = record
                    .data
                    .get(CLIENT_KEY)
                    .and_then(|v| ClientInfo::deserialize(v).ok())
                    .unwrap_or_default();
                SessionInfo {
                    handle: handle_of(&key),
                    current: Some(key) == current,
                    created_at: record.created_at,
                    last_seen: idle.map(|idle| {
                        let seen = crate::record::minus(record.expires_at, idle);
                        seen.clamp(record.created_at, now.max(record.created_at))
                    }),
                    expires_at: record.expires_at,
                    user_agent: client.user_agent,
                    address: client.address,
                }
            })
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(list)
    }

    /// Revokes the logged-in user's session with this [handle](SessionInfo::handle); revoking
    /// the current session logs out. Returns whether there was such a session.
    ///
    /// # Errors
    ///
    /// As [`sessions`](Self::sessions).
    pub async fn revoke(&self, handle: &str) -> Result<bool, AuthError> {
        let Some(user) = self.user().await? else {
            return Ok(false);
        };
        let now = OffsetDateTime::now_utc();
        let sessions = self
            .index()?
            .sessions_of(&user.id().to_string(), now)
            .await?;
        let Some((key, _)) = sessions.iter().find(|(k, _)| handle_of(k) == handle) else {
            return Ok(false);
        };
        if Some(*key) == self.inner.session.storage_key() {
            self.logout().await;
            return Ok(true);
        }
        Ok(self.inner.session.store().delete(key).await?)
    }

    /// Revokes every other session of the logged-in user ("log out everywhere else");
    /// returns how many.
    ///
    /// # Errors
    ///
    /// As [`sessions`](Self::sessions).
    pub async fn revoke_others(&self) -> Result<u64, AuthError> {
        let Some(user) = self.user().await? else {
            return Ok(0);
        };
        let keep = self.inner.session.storage_key();
        Ok(self
            .index()?
            .delete_sessions_of(&user.id().to_string(), keep.as_ref())
            .await?)
    }

    fn index(&self) -> Result<&dyn UserIndex, AuthError> {
        self.inner
            .session
            .store()
            .user_index()
            .ok_or(AuthError::NoUserIndex)
    }
}

/// When the record's user logged in, or, for sessions from before that was kept, its creation.
fn login_at(record: &Record) -> OffsetDateTime {
    record
        .data
        .get(LOGIN_KEY)
        .and_then(serde_json::Value::as_i64)
        .and_then(|us| OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok())
        .unwrap_or(record.created_at)
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// A session's public name in listings: a truncated hash of its storage key, itself a hash
/// of the id, so it reveals nothing usable.
fn handle_of(key: &StorageKey) -> String {
    let digest = Sha256::new()
        .chain_update(b"tidysession handle/")
        .chain_update(key.as_bytes())
        .finalize();
    URL_SAFE_NO_PAD.encode(&digest[..12])
}

/// The rejection when a handler asks for an [`AuthSession`] but no [`AuthLayer`](super::AuthLayer)
/// (inside a [`SessionLayer`](crate::SessionLayer)) wraps the route.
///
/// Needs the cargo feature `axum`.
#[cfg(feature = "axum")]
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no auth session on this request: is `AuthLayer` installed inside `SessionLayer`?")]
pub struct MissingAuthLayer;

#[cfg(feature = "axum")]
impl MissingAuthLayer {
    /// The status sent: 500, since this is a wiring mistake in the app.
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::INTERNAL_SERVER_ERROR
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for MissingAuthLayer {
    fn into_response(self) -> axum_core::response::Response {
        tracing::error!(target: "tidysession::rejection", "{self}");
        (self.status(), self.to_string()).into_response()
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync, B: AuthBackend> axum_core::extract::FromRequestParts<S> for AuthSession<B> {
    type Rejection = MissingAuthLayer;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(MissingAuthLayer)
    }
}

/// `Option<AuthSession<B>>`: `None` on a route no [`AuthLayer`](super::AuthLayer) wraps,
/// instead of a 500, for handlers shared by routes with and without login.
#[cfg(feature = "axum")]
impl<S: Send + Sync, B: AuthBackend> axum_core::extract::OptionalFromRequestParts<S>
    for AuthSession<B>
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
