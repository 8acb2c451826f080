//! axum integration: [`Session`] as an extractor, [`SessionError`] as a response.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::session::{Session, SessionError};

/// The rejection when a handler asks for a [`Session`] but no [`SessionLayer`](crate::SessionLayer)
/// wraps the route.
///
/// Needs the cargo feature `axum`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no session on this request: is `SessionLayer` installed around this route?")]
pub struct MissingSessionLayer;

impl MissingSessionLayer {
    /// The status sent: 500, since this is a wiring mistake in the app.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> Response {
        tracing::error!(target: "tidysession::rejection", "{self}");
        (self.status(), self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Session>().cloned())
    }
}

impl SessionError {
    /// The status a handler that fails with this error should send: 503 when the store is
    /// unavailable, 413 for a session too large for its cookie, 429 when the client has had
    /// too many anonymous sessions promoted, 500 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            SessionError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            SessionError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            SessionError::PromotionLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "session error");
        // The body stays generic: details can name keys or store addresses.
        let body = match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => "session store unavailable",
            StatusCode::PAYLOAD_TOO_LARGE => "session data too large",
            StatusCode::TOO_MANY_REQUESTS => "too many new sessions from this client",
            _ => "session error",
        };
        let mut response = (self.status(), body).into_response();
        if matches!(self, SessionError::Store(_)) {
            // The layer gives it the status the app configured.
            response.extensions_mut().insert(StoreUnavailable);
        }
        response
    }
}

/// Marks a response made from a store failure, so the layer can apply
/// [`SessionConfig::with_store_error_status`](crate::SessionConfig::with_store_error_status).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreUnavailable;
