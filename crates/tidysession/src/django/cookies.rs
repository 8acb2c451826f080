//! [`DjangoSignedCookies`]: sessions kept entirely in the cookie, as Django's `signed_cookies`
//! session backend keeps them.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::header::{HeaderMap, COOKIE};
use serde_json::{Map, Value};

use super::session::{decode_signed_cookie, encode_signed_cookie, DEFAULT_SESSION_COOKIE_AGE};
use super::signing::{Secrets, SigningError};

/// Reads and writes the session cookie of a Django app whose `SESSION_ENGINE` is
/// `django.contrib.sessions.backends.signed_cookies`: the whole session, signed (not
/// encrypted: the browser can read it) with Django's `SECRET_KEY`, in the `sessionid` cookie.
///
/// There is no store and no [`SessionLayer`](crate::SessionLayer) here: with this backend the
/// cookie *is* the session. A handler reads the data from the request's headers with
/// [`read`](Self::read), and, after changing it, sends [`cookie`](Self::cookie) back in a
/// `Set-Cookie` header; Django then sees the change on the next request. As with Django,
/// a logout cannot revoke a copy of the cookie kept elsewhere until it expires
/// ([`with_max_age`](Self::with_max_age), Django's `SESSION_COOKIE_AGE`).
///
/// ```
/// use http::header::{HeaderMap, HeaderValue, COOKIE};
/// use tidysession::django::{DjangoSignedCookies, Secrets};
///
/// let cookies = DjangoSignedCookies::new(Secrets::new("django-insecure-example"));
/// let mut data = serde_json::Map::new();
/// data.insert("cart".into(), serde_json::json!(["book"]));
/// let set_cookie = cookies.cookie(&data)?; // send as Set-Cookie
/// assert_eq!(set_cookie.name(), "sessionid");
///
/// let mut request = HeaderMap::new();
/// let header = format!("sessionid={}", set_cookie.value());
/// request.insert(COOKIE, HeaderValue::from_str(&header).unwrap());
/// assert_eq!(cookies.read(&request), data);
/// # Ok::<(), tidysession::django::SigningError>(())
/// ```
#[derive(Debug, Clone)]
pub struct DjangoSignedCookies {
    secrets: Secrets,
    name: String,
    max_age: Duration,
    secure: bool,
}

impl DjangoSignedCookies {
    /// Django's defaults: cookie `sessionid`, two weeks, `HttpOnly`, `SameSite=Lax`, path `/`,
    /// and (unlike Django's default) `Secure`.
    pub fn new(secrets: Secrets) -> Self {
        Self {
            secrets,
            name: "sessionid".to_owned(),
            max_age: DEFAULT_SESSION_COOKIE_AGE,
            secure: true,
        }
    }

    /// Django's `SESSION_COOKIE_NAME`.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Django's `SESSION_COOKIE_AGE`: cookies signed longer ago are refused, and new ones
    /// say so in `Max-Age`.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Django's `SESSION_COOKIE_SECURE` (`false` only for plain-HTTP development).
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The session in the request's cookie, verified with the secret and every fallback;
    /// empty when there is none or it is forged, malformed or too old (as Django does).
    pub fn read(&self, headers: &HeaderMap) -> Map<String, Value> {
        self.try_read(headers).ok().flatten().unwrap_or_default()
    }

    /// As [`read`](Self::read), telling a missing cookie (`Ok(None)`) from a bad one.
    ///
    /// # Errors
    ///
    /// Why the cookie does not decode: [`SigningError`].
    pub fn try_read(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Map<String, Value>>, SigningError> {
        let value = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .flat_map(|h| Cookie::split_parse(h.to_owned()))
            .filter_map(Result::ok)
            .find(|c| c.name() == self.name)
            .map(|c| c.value().to_owned());
        match value {
            None => Ok(None),
            Some(value) => decode_signed_cookie(&value, &self.secrets, self.max_age).map(Some),
        }
    }

    /// The `Set-Cookie` for `data`, signed with the newest secret; for empty data, the
    /// cookie that removes the session (Django deletes the cookie of an emptied session).
    ///
    /// # Errors
    ///
    /// [`SigningError::Encode`] only if compression fails, which it does not in practice.
    pub fn cookie(&self, data: &Map<String, Value>) -> Result<Cookie<'static>, SigningError> {
        if data.is_empty() {
            return Ok(self.removal());
        }
        let value = encode_signed_cookie(data, &self.secrets)?;
        let max_age = i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX);
        Ok(self
            .base(value)
            .max_age(time::Duration::seconds(max_age))
            .build())
    }

    /// The `Set-Cookie` that logs out: removes the session cookie.
    pub fn removal(&self) -> Cookie<'static> {
        self.base(String::new())
            .max_age(time::Duration::ZERO)
            .expires(time::OffsetDateTime::UNIX_EPOCH)
            .build()
    }

    fn base(&self, value: String) -> cookie::CookieBuilder<'static> {
        Cookie::build((self.name.clone(), value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
    }
}
