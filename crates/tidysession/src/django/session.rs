//! Django's session data formats: the database backends' `session_data` column and the
//! `signed_cookies` backend's cookie value.

use std::time::Duration;

use serde_json::{Map, Value};

use super::signing::{Secrets, SigningError, TimestampSigner};

/// The salt of `SessionBase.encode`/`decode`, used by the `db`, `cached_db`, `cache` and
/// `file` backends: `"django.contrib.sessions." + SessionStore.__qualname__`.
pub const SESSION_SALT: &str = "django.contrib.sessions.SessionStore";

/// The salt of the `signed_cookies` backend (its module path).
pub const SIGNED_COOKIE_SALT: &str = "django.contrib.sessions.backends.signed_cookies";

/// Django's default `SESSION_COOKIE_AGE`: two weeks. The `signed_cookies` backend refuses
/// cookies signed longer ago than this.
pub const DEFAULT_SESSION_COOKIE_AGE: Duration = Duration::from_secs(1_209_600);

/// Encodes session data as Django's database backends store it in `session_data`:
/// `signing.dumps(data, salt=SESSION_SALT, compress=True)` with Django's JSON serializer.
///
/// ```
/// use tidysession::django::{decode_session_data, encode_session_data, Secrets};
///
/// let secrets = Secrets::new("django-insecure-example");
/// let mut data = serde_json::Map::new();
/// data.insert("_auth_user_id".into(), "1".into());
/// let encoded = encode_session_data(&data, &secrets)?;
/// assert_eq!(decode_session_data(&encoded, &secrets)?, data);
/// # Ok::<(), tidysession::django::SigningError>(())
/// ```
///
/// # Errors
///
/// [`SigningError::Encode`] only if compression fails, which it does not in practice.
pub fn encode_session_data(
    data: &Map<String, Value>,
    secrets: &Secrets,
) -> Result<String, SigningError> {
    session_signer(secrets, SESSION_SALT).sign_object(data, true)
}

/// Decodes a `session_data` value written by Django (or [`encode_session_data`]).
///
/// The signed timestamp is not checked, as in Django: the row's `expire_date` (and
/// `_session_expiry` in the data) decide expiry. Django treats any error here as an empty
/// session.
///
/// # Errors
///
/// [`SigningError::BadSignature`] or [`SigningError::Malformed`] for data not signed with
/// these secrets and [`SESSION_SALT`]; [`SigningError::BadPayload`] if the signed data is
/// not a JSON object.
pub fn decode_session_data(
    encoded: &str,
    secrets: &Secrets,
) -> Result<Map<String, Value>, SigningError> {
    session_signer(secrets, SESSION_SALT).unsign_object(encoded, None)
}

/// Decodes a `session_data` value **without verifying its signature**, for statistics over
/// a table whose secret is not at hand (`tidysession stats` without `DJANGO_SECRET_KEY`).
/// Anyone who can write the table can make it say anything: never trust the result. A
/// compressed payload is decompressed to at most 1 MiB.
///
/// # Errors
///
/// [`SigningError::BadPayload`] if it is not a signed value holding a JSON object.
pub fn decode_session_data_unverified(encoded: &str) -> Result<Map<String, Value>, SigningError> {
    super::signing::decode_object_unverified(encoded, 1 << 20)
}

/// Encodes session data as the cookie value of Django's `signed_cookies` backend:
/// `signing.dumps(data, salt=SIGNED_COOKIE_SALT, compress=True)`.
///
/// # Errors
///
/// [`SigningError::Encode`] only if compression fails, which it does not in practice.
pub fn encode_signed_cookie(
    data: &Map<String, Value>,
    secrets: &Secrets,
) -> Result<String, SigningError> {
    session_signer(secrets, SIGNED_COOKIE_SALT).sign_object(data, true)
}

/// Decodes the cookie value of Django's `signed_cookies` backend, refusing values signed
/// more than `max_age` ago (Django passes its `SESSION_COOKIE_AGE`, by default
/// [`DEFAULT_SESSION_COOKIE_AGE`]). Django treats any error here as an empty session.
///
/// ```
/// use tidysession::django::{
///     decode_signed_cookie, encode_signed_cookie, Secrets, DEFAULT_SESSION_COOKIE_AGE,
/// };
///
/// let secrets = Secrets::new("django-insecure-example");
/// let data = serde_json::json!({"cart": ["book"]}).as_object().cloned().unwrap_or_default();
/// let cookie = encode_signed_cookie(&data, &secrets)?;
/// assert_eq!(decode_signed_cookie(&cookie, &secrets, DEFAULT_SESSION_COOKIE_AGE)?, data);
/// # Ok::<(), tidysession::django::SigningError>(())
/// ```
///
/// # Errors
///
/// As [`decode_session_data`], and [`SigningError::Expired`].
pub fn decode_signed_cookie(
    value: &str,
    secrets: &Secrets,
    max_age: Duration,
) -> Result<Map<String, Value>, SigningError> {
    session_signer(secrets, SIGNED_COOKIE_SALT).unsign_object(value, Some(max_age))
}

fn session_signer(secrets: &Secrets, salt: &str) -> TimestampSigner {
    TimestampSigner::new(secrets.clone()).with_salt(salt)
}
