//! Login state on top of sessions: who is this, log in, log out, password changes, and a
//! user's list of sessions.
//!
//! The app supplies an [`AuthBackend`] that loads users by id; [`AuthLayer`], installed inside
//! [`SessionLayer`](crate::SessionLayer), gives every request an [`AuthSession`]. Asking
//! [`AuthSession::user`] loads the user once per request, and costs nothing beyond the session
//! itself: no cookie, no I/O at all.
//!
//! ```
//! use std::convert::Infallible;
//! use axum::{routing::get, Router};
//! use tidysession::auth::{AuthBackend, AuthLayer, AuthSession, AuthUser};
//! use tidysession::{store::MemoryStore, KeyRing, SessionLayer};
//!
//! #[derive(Clone)]
//! struct User { id: u64, name: String, password_hash: String }
//!
//! impl AuthUser for User {
//!     type Id = u64;
//!     fn id(&self) -> u64 { self.id }
//!     // Changes when the password does: every other session then logs out.
//!     fn credential_fingerprint(&self) -> &[u8] { self.password_hash.as_bytes() }
//! }
//!
//! #[derive(Clone)]
//! struct Users;
//!
//! impl AuthBackend for Users {
//!     type User = User;
//!     type Error = Infallible;
//!     async fn user(&self, id: &u64) -> Result<Option<User>, Infallible> {
//!         Ok((*id == 1).then(|| User { id: 1, name: "alice".into(), password_hash: "…".into() }))
//!     }
//! }
//!
//! async fn whoami(auth: AuthSession<Users>) -> Result<String, tidysession::auth::AuthError> {
//!     Ok(match auth.user().await? {
//!         Some(user) => user.name,
//!         None => "anonymous".into(),
//!     })
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeyRing::generate(1)?; // in production: parsed from configuration
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(AuthLayer::new(Users, keys))
//!     .layer(SessionLayer::new(MemoryStore::default())); // the outer layer
//! # Ok(()) }
//! ```
//!
//! # What is stored
//!
//! At login the session gets the user's id under [`USER_KEY`] and a keyed HMAC of the user's
//! credential fingerprint under [`HASH_KEY`]; the store files the session under the user (the
//! [user index](crate::store::UserIndex)). Each load checks the hash in constant time: a
//! mismatch (the password changed, or the value was tampered with) flushes the session. A hash
//! made with an older key of the [`KeyRing`] is accepted and re-made with the newest.
//!
//! That hash is [`NativeAuthHash`], the default [`SessionAuthHash`] scheme. A backend may bring
//! its own ([`AuthBackend::session_auth_hash`]): with the `django` feature, `DjangoUsers` uses
//! `DjangoAuthHash`, Django's own, so a Django app and a Rust service accept
//! each other's logins (see the README's "Running a Rust service beside a Django app").
//!
//! # Client metadata
//!
//! Off by default: a session list can show each session's browser and address, but those are
//! personal data the site then keeps for as long as the session lives.
//! [`AuthLayer::with_client_metadata`] turns it on.

#[cfg(feature = "django")]
mod django;
mod hash;
mod layer;
mod session;

#[cfg(feature = "django")]
pub use django::{DjangoAuthHash, BACKEND_KEY, MODEL_BACKEND};
#[cfg(all(
    feature = "django",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]
pub use django::{DjangoUser, DjangoUsers};
pub use hash::{HashCheck, NativeAuthHash, SessionAuthHash};
pub use layer::{AuthLayer, AuthService};
pub use session::{AuthSession, SessionInfo};

#[cfg(feature = "axum")]
pub use session::MissingAuthLayer;

pub use crate::client::ClientAddress;
pub use crate::keyring::KeyRing;
pub use crate::record::USER_KEY;

use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;

use std::future::Future;
use std::sync::Arc;

use crate::session::SessionError;
use crate::store::StoreError;

/// The session key holding the session auth hash (the name Django uses too).
pub const HASH_KEY: &str = "_auth_user_hash";

/// A user as the auth layer needs to know them.
pub trait AuthUser: Clone + Send + Sync + 'static {
    /// The user's id, stored in the session as text.
    type Id: fmt::Display + FromStr + PartialEq + Send + Sync + 'static;

    /// The user's id.
    fn id(&self) -> Self::Id;

    /// Bytes that change whenever the user's credentials do, such as the stored password
    /// hash. Sessions remember a keyed hash of them: when they change, every session made
    /// before the change logs out on its next request.
    fn credential_fingerprint(&self) -> &[u8];
}

/// Where users come from: the app's user table, a directory service…
///
/// Implement `user` as a plain `async fn`; its future must be `Send`.
pub trait AuthBackend: Send + Sync + 'static {
    /// The user type.
    type User: AuthUser;
    /// Why loading failed.
    type Error: StdError + Send + Sync + 'static;

    /// The user with this id, or `None` if there is none (any more): the session then logs out.
    fn user(
        &self,
        id: &<Self::User as AuthUser>::Id,
    ) -> impl Future<Output = Result<Option<Self::User>, Self::Error>> + Send;

    /// The session auth hash scheme this backend's users need, if it has one of its own
    /// (`DjangoUsers` returns Django's, so Django accepts the sessions).
    /// [`AuthLayer::new`] uses it; `None`, the default, means tidysession's
    /// [`NativeAuthHash`] keyed by the layer's [`KeyRing`].
    fn session_auth_hash(&self) -> Option<Arc<dyn SessionAuthHash>> {
        None
    }
}

/// Why an auth operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The session failed (its store, usually).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The session store failed while listing or revoking sessions.
    #[error("session store error: {0}")]
    Store(#[from] StoreError),
    /// The backend failed to load the user.
    #[error("cannot load the user: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
    /// The store keeps no user index, so a user's sessions cannot be listed or revoked.
    #[error("this session store keeps no user index")]
    NoUserIndex,
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for AuthError {
    fn into_response(self) -> axum_core::response::Response {
        match self {
            AuthError::Session(e) => e.into_response(),
            // Same status and marker as a failed load: the layer applies the configured status.
            AuthError::Store(e) => SessionError::Store(std::sync::Arc::new(e)).into_response(),
            other => {
                tracing::error!(error = %other, "auth error");
                (http::StatusCode::INTERNAL_SERVER_ERROR, "auth error").into_response()
            }
        }
    }
}
