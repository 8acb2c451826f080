//! [`AuthLayer`]: gives every request an [`AuthSession`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::USER_AGENT;
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::hash::{NativeAuthHash, SessionAuthHash};
use super::session::{Auth, AuthSession, ClientInfo};
use super::AuthBackend;
use crate::client::ClientAddress;
use crate::keyring::KeyRing;
use crate::session::Session;

/// The longest user agent kept with a session; longer ones are cut.
const MAX_USER_AGENT: usize = 256;

/// Adds an [`AuthSession`] to every request. Install it *inside*
/// [`SessionLayer`](crate::SessionLayer): with axum's `Router::layer`, call it before the
/// session layer's `.layer(…)`.
///
/// Building the [`AuthSession`] does no I/O; the user is loaded when a handler asks.
pub struct AuthLayer<B> {
    auth: Auth<B>,
}

impl<B> Clone for AuthLayer<B> {
    fn clone(&self) -> Self {
        Self {
            auth: self.auth.clone(),
        }
    }
}

impl<B> std::fmt::Debug for AuthLayer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("hash", &self.auth.hash)
            .field("max_sessions_per_user", &self.auth.max_sessions_per_user)
            .field("client_metadata", &self.auth.client)
            .finish_non_exhaustive()
    }
}

impl<B: AuthBackend> AuthLayer<B> {
    /// Users from `backend`; session auth hashes made the backend's way
    /// ([`AuthBackend::session_auth_hash`]), by default the native scheme keyed by `keys`.
    pub fn new(backend: B, keys: KeyRing) -> Self {
        let hash = backend
            .session_auth_hash()
            .unwrap_or_else(|| Arc::new(NativeAuthHash::new(keys)));
        Self::with_hash(backend, hash)
    }

    /// Users from `backend`; session auth hashes made and checked by `hash`, whatever the
    /// backend prefers. Needs no [`KeyRing`] when the scheme has keys of its own (Django's
    /// secret, for [`DjangoAuthHash`](super::DjangoAuthHash)).
    pub fn with_hash(backend: B, hash: Arc<dyn SessionAuthHash>) -> Self {
        Self {
            auth: Auth {
                backend: Arc::new(backend),
                hash,
                max_sessions_per_user: None,
                client: None,
            },
        }
    }

    /// At most `n` sessions per user: logging in evicts the user's oldest sessions beyond it.
    /// Needs a store with a [user index](crate::store::UserIndex). Unlimited by default.
    pub fn with_max_sessions_per_user(mut self, n: usize) -> Self {
        self.auth.max_sessions_per_user = Some(n.max(1));
        self
    }

    /// Keep each logged-in session's user agent and, from `address`, the client's address,
    /// for [`AuthSession::sessions`]. Off by default: it is personal data kept for as long
    /// as the session lives.
    pub fn with_client_metadata(mut self, address: ClientAddress) -> Self {
        self.auth.client = Some(address);
        self
    }
}

impl<S, B> Layer<S> for AuthLayer<B> {
    type Service = AuthService<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: Arc::new(self.auth.clone()),
        }
    }
}

/// The service [`AuthLayer`] wraps around an inner service.
pub struct AuthService<S, B> {
    inner: S,
    auth: Arc<Auth<B>>,
}

impl<S: Clone, B> Clone for AuthService<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            auth: self.auth.clone(),
        }
    }
}

impl<S: std::fmt::Debug, B> std::fmt::Debug for AuthService<S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B, ReqBody> Service<Request<ReqBody>> for AuthService<S, B>
where
    S: Service<Request<ReqBody>>,
    B: AuthBackend,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Without a session there is nothing to log in to; the extractor then names the
        // wiring mistake.
        if let Some(session) = req.extensions().get::<Session>().cloned() {
            let client = self
                .auth
                .client
                .as_ref()
                .map(|from| client_info(&req, from));
            let auth = AuthSession::new(session, self.auth.clone(), client);
            req.extensions_mut().insert(auth);
        }
        self.inner.call(req)
    }
}

fn client_info<T>(req: &Request<T>, from: &ClientAddress) -> ClientInfo {
    let user_agent = req
        .headers()
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(MAX_USER_AGENT).collect());
    ClientInfo {
        user_agent,
        address: from.of(req),
    }
}
