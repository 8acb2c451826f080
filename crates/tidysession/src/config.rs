//! [`SessionConfig`]: cookie attributes, timeouts and save policy.

use cookie::SameSite;
use http::StatusCode;
use time::Duration;

use crate::client::ClientAddress;
use crate::keyring::KeyRing;

/// Where the data of visitors who are not logged in lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Anonymous {
    /// Sealed (encrypted and authenticated) in the session cookie itself: anonymous visitors
    /// cost no store records and no store I/O. Logging in moves the data to the store.
    InCookie,
    /// In the store, like every session (how most frameworks behave). Needed for stores
    /// shared with apps that expect every session server-side.
    OnServer,
}

/// What happens when an anonymous session outgrows the cookie budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverBudget {
    /// Move it to the store (one create), like a login would.
    Promote,
    /// Refuse the write: [`Session::insert`](crate::Session::insert) returns
    /// [`SessionError::TooLarge`](crate::SessionError::TooLarge).
    Fail,
}
/// The default cookie budget: the whole `Set-Cookie` header of a sealed session, in bytes.
/// Browsers keep cookies up to 4096 bytes of name, value and attributes; this leaves room for
/// a longer domain or path than the one measured.
pub const DEFAULT_COOKIE_BUDGET: usize = 4000;

/// How sessions behave. Every setting has a safe default; builder methods change one each.
///
/// ```
/// use tidysession::SessionConfig;
/// use time::Duration;
///
/// let config = SessionConfig::default()
///     .with_cookie_name("app_session")
///     .with_secure(false) // plain http://127.0.0.1 only
///     .with_idle_timeout(Duration::hours(2));
/// assert_eq!(config.touch_window(), Duration::hours(1));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    pub(crate) cookie_name: String,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) idle_timeout: Duration,
    pub(crate) absolute_timeout: Duration,
    pub(crate) browser_session: bool,
    pub(crate) touch_window: Option<Duration>,
    pub(crate) save_every_request: bool,
    pub(crate) save_on_server_error: bool,
    pub(crate) store_error_status: StatusCode,
    pub(crate) anonymous: Anonymous,
    pub(crate) keys: Option<KeyRing>,
    pub(crate) cookie_budget: usize,
    pub(crate) over_budget: OverBudget,
    pub(crate) promotion_limit: Option<PromotionLimit>,
}

/// At most `max` anonymous sessions promoted to the store per client per `per`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PromotionLimit {
    pub(crate) max: u32,
    pub(crate) per: Duration,
    pub(crate) client: ClientAddress,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            cookie_name: "id".to_owned(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            idle_timeout: Duration::days(14),
            absolute_timeout: Duration::days(30),
            browser_session: false,
            touch_window: None,
            save_every_request: false,
            save_on_server_error: false,
            store_error_status: StatusCode::SERVICE_UNAVAILABLE,
            anonymous: Anonymous::InCookie,
            keys: None,
            cookie_budget: DEFAULT_COOKIE_BUDGET,
            over_budget: OverBudget::Promote,
            promotion_limit: None,
        }
    }
}

impl SessionConfig {
    /// Django's session cookie defaults, for sharing sessions with a Django app (e.g. through
    /// the Django store): cookie `sessionid`, `HttpOnly`, `SameSite=Lax`, path `/`, an idle
    /// timeout of two weeks (Django's `SESSION_COOKIE_AGE`), and every session kept on the
    /// server ([`Anonymous::OnServer`]), where Django expects it.
    ///
    /// One difference stays: Django's `SESSION_COOKIE_SECURE` defaults to `False`, ours to
    /// `true` (the cookie travels over HTTPS only). Call `.with_secure(false)` for plain-HTTP
    /// development, as with Django's default. Django has no absolute timeout; ours (30 days
    /// from creation by default, see [`with_absolute_timeout`](Self::with_absolute_timeout))
    /// still applies.
    ///
    /// ```
    /// use tidysession::{Anonymous, SessionConfig};
    ///
    /// let config = SessionConfig::django();
    /// assert_eq!(config.cookie_name(), "sessionid");
    /// assert_eq!(config.idle_timeout(), time::Duration::weeks(2));
    /// assert_eq!(config.anonymous(), Anonymous::OnServer);
    /// ```
    pub fn django() -> Self {
        Self {
            cookie_name: "sessionid".to_owned(),
            http_only: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            idle_timeout: Duration::seconds(1_209_600),
            anonymous: Anonymous::OnServer,
            ..Self::default()
        }
    }

    /// Where anonymous visitors' data lives.
    pub fn anonymous(&self) -> Anonymous {
        self.anonymous
    }

    /// The session cookie's name.
    ///
    /// # Default
    ///
    /// `id`: short, and says nothing about the framework behind it.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// Whether the cookie carries `Secure` (sent over HTTPS only).
    ///
    /// # Default
    ///
    /// `true`. Turn it off only for plain-HTTP development on loopback.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Whether the cookie carries `HttpOnly` (hidden from scripts).
    ///
    /// # Default
    ///
    /// `true`.
    pub fn with_http_only(mut self, http_only: bool) -> Self {
        self.http_only = http_only;
        self
    }

    /// The cookie's `SameSite` attribute.
    ///
    /// # Default
    ///
    /// `Lax`: sent on top-level navigation from other sites, not on their sub-requests.
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The cookie's `Path`.
    ///
    /// # Default
    ///
    /// `/`.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The cookie's `Domain`.
    ///
    /// # Default
    ///
    /// None: the cookie goes back only to the host that set it.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// How long a session lives without being used.
    ///
    /// # Default
    ///
    /// 14 days.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// How long a session lives after creation, however often it is used.
    ///
    /// # Default
    ///
    /// 30 days.
    pub fn with_absolute_timeout(mut self, absolute: Duration) -> Self {
        self.absolute_timeout = absolute;
        self
    }

    /// Whether cookies end with the browser session (no `Max-Age`). Server-side expiry still
    /// follows the idle and absolute timeouts.
    ///
    /// # Default
    ///
    /// `false`.
    pub fn with_browser_session(mut self, browser_session: bool) -> Self {
        self.browser_session = browser_session;
        self
    }

    /// Refresh a session's expiry (one metadata-only *touch*) when a request reads it and less
    /// than `window` of its lifetime remains.
    ///
    /// # Default
    ///
    /// Half the idle timeout.
    ///
    /// # Performance impact
    ///
    /// A wider window touches more often. With the default an active session is touched at
    /// most about once per half idle timeout, instead of being rewritten on every request.
    pub fn with_touch_window(mut self, window: Duration) -> Self {
        self.touch_window = Some(window);
        self
    }

    /// The touch window in force (see [`with_touch_window`](Self::with_touch_window)).
    pub fn touch_window(&self) -> Duration {
        self.touch_window.unwrap_or(self.idle_timeout / 2)
    }

    /// Django's `SESSION_SAVE_EVERY_REQUEST`: every request that carries the cookie of an
    /// existing session refreshes its expiry, whether or not the handler used the session.
    /// Unlike Django, it still never creates a record for an unknown cookie and never stores an
    /// empty session.
    ///
    /// # Default
    ///
    /// `false`.
    ///
    /// # Performance impact
    ///
    /// One load and one touch per request that carries a session cookie.
    pub fn with_save_every_request(mut self, on: bool) -> Self {
        self.save_every_request = on;
        self
    }

    /// Whether changes are saved when the response is a server error (5xx).
    ///
    /// # Default
    ///
    /// `false`: a failed request leaves the session as it was (I8).
    pub fn with_save_on_server_error(mut self, on: bool) -> Self {
        self.save_on_server_error = on;
        self
    }

    /// The status sent when the store fails: while saving, and (with axum) when a handler
    /// returns the [`SessionError`](crate::SessionError) of a failed load.
    ///
    /// # Default
    ///
    /// `503 Service Unavailable`.
    pub fn with_store_error_status(mut self, status: StatusCode) -> Self {
        self.store_error_status = status;
        self
    }

    /// Where anonymous visitors' data lives (see [`Anonymous`]).
    ///
    /// # Default
    ///
    /// [`Anonymous::InCookie`]: bots, health checks and anonymous visitors cost no records.
    pub fn with_anonymous(mut self, anonymous: Anonymous) -> Self {
        self.anonymous = anonymous;
        self
    }

    /// The keys that seal anonymous sessions into cookies, newest first (see
    /// [`KeyRing`]). Cookies sealed under an older key still open, and are re-sealed under
    /// the newest when next written; cookies of a removed key are refused (a removal cookie,
    /// never an error).
    ///
    /// # Default
    ///
    /// A key generated when the layer is built, with a warning in the log: sealed sessions
    /// then end when the process restarts and are not shared between servers. Set keys in
    /// production.
    pub fn with_keys(mut self, keys: KeyRing) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The most bytes the whole `Set-Cookie` header of a sealed session may take.
    ///
    /// # Default
    ///
    /// [`DEFAULT_COOKIE_BUDGET`] (4000).
    pub fn with_cookie_budget(mut self, bytes: usize) -> Self {
        self.cookie_budget = bytes;
        self
    }

    /// What happens to an anonymous session that outgrows the cookie budget.
    ///
    /// # Default
    ///
    /// [`OverBudget::Promote`].
    pub fn with_over_budget(mut self, policy: OverBudget) -> Self {
        self.over_budget = policy;
        self
    }

    /// At most `max` anonymous sessions per client per `per` are promoted to the store for
    /// outgrowing the cookie, so one client cannot fill the store; beyond it the write fails
    /// with [`SessionError::PromotionLimited`](crate::SessionError::PromotionLimited). Clients
    /// are told apart by `client` (requests without an address share one limit). Logins are
    /// never limited.
    ///
    /// # Default
    ///
    /// No limit.
    pub fn with_promotion_limit(mut self, max: u32, per: Duration, client: ClientAddress) -> Self {
        self.promotion_limit = Some(PromotionLimit { max, per, client });
        self
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The absolute timeout.
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute_timeout
    }

    /// The name of the test cookie: the session cookie's name with `_test` appended.
    pub fn test_cookie_name(&self) -> String {
        format!("{}_test", self.cookie_name)
    }
}
