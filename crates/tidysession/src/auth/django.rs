//! Logins shared with Django: [`DjangoAuthHash`], Django's session auth hash, and
//! [`DjangoUsers`], a backend over Django's `auth_user` table.

use std::fmt;

use subtle::ConstantTimeEq as _;

use super::hash::{HashCheck, SessionAuthHash};
use crate::django::{salted_hmac, Secrets};

/// The session key holding the dotted path of the backend that logged the user in.
pub const BACKEND_KEY: &str = "_auth_user_backend";

/// Django's default authentication backend, the default value of [`BACKEND_KEY`].
pub const MODEL_BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

/// The key salt of `AbstractBaseUser.get_session_auth_hash`.
const KEY_SALT: &str = "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash";

/// Django's session auth hash, so a Rust service and a Django app accept each other's logins:
/// `salted_hmac(KEY_SALT, password_hash, secret=SECRET_KEY, algorithm="sha256").hexdigest()`,
/// where the user's [credential fingerprint](super::AuthUser::credential_fingerprint) is the
/// stored password hash (`auth_user.password`).
///
/// Checking compares in constant time with the hash under `SECRET_KEY` and then under each of
/// `SECRET_KEY_FALLBACKS`; a match under a fallback is accepted once and the hash re-made with
/// `SECRET_KEY`, as Django does. A login also writes [`BACKEND_KEY`]
/// (`django.contrib.auth.backends.ModelBackend` unless [changed](Self::with_backend_path)):
/// Django ignores sessions whose backend is not in its `AUTHENTICATION_BACKENDS`.
///
/// ```
/// use tidysession::auth::{DjangoAuthHash, HashCheck, SessionAuthHash};
/// use tidysession::django::Secrets;
///
/// let hash = DjangoAuthHash::new(Secrets::new("new-secret").with_fallbacks(["old-secret"]));
/// let old = DjangoAuthHash::new(Secrets::new("old-secret"));
/// let password = b"pbkdf2_sha256$1000000$salt$hash";
/// let made = hash.make("1", password);
/// assert_eq!(made.len(), 64);
/// assert_eq!(hash.check("1", password, &made), HashCheck::Valid);
/// assert_eq!(hash.check("1", password, &old.make("1", password)), HashCheck::ValidOldKey);
/// assert_eq!(hash.check("1", b"another password", &made), HashCheck::Invalid);
/// ```
///
/// Needs the cargo feature `django`.
#[derive(Clone)]
pub struct DjangoAuthHash {
    secrets: Secrets,
    backend_path: String,
}

impl fmt::Debug for DjangoAuthHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DjangoAuthHash")
            .field("secrets", &self.secrets)
            .field("backend_path", &self.backend_path)
            .finish()
    }
}

impl DjangoAuthHash {
    /// Django's scheme with Django's `SECRET_KEY` and `SECRET_KEY_FALLBACKS`.
    pub fn new(secrets: Secrets) -> Self {
        Self {
            secrets,
            backend_path: MODEL_BACKEND.to_owned(),
        }
    }

    /// Writes `path` under [`BACKEND_KEY`] at login instead of
    /// `django.contrib.auth.backends.ModelBackend`: it must be one of the Django app's
    /// `AUTHENTICATION_BACKENDS`, one that loads users by primary key from the same table.
    pub fn with_backend_path(mut self, path: impl Into<String>) -> Self {
        self.backend_path = path.into();
        self
    }

    /// The path a login writes under [`BACKEND_KEY`].
    pub fn backend_path(&self) -> &str {
        &self.backend_path
    }

    fn hex_under(secret: &[u8], fingerprint: &[u8]) -> [u8; 64] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mac = salted_hmac(KEY_SALT.as_bytes(), fingerprint, secret);
        let mut out = [0u8; 64];
        for (i, b) in mac.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        out
    }
}

impl SessionAuthHash for DjangoAuthHash {
    fn make(&self, _user: &str, fingerprint: &[u8]) -> String {
        let hex = Self::hex_under(self.secrets.secret_key(), fingerprint);
        hex.iter().map(|&b| char::from(b)).collect()
    }

    fn check(&self, _user: &str, fingerprint: &[u8], stored: &str) -> HashCheck {
        // Every secret is tried, so the time taken does not tell which one matched.
        let mut found = None;
        for (i, secret) in self.secrets.all().enumerate() {
            let hex = Self::hex_under(secret, fingerprint);
            if bool::from(hex.as_slice().ct_eq(stored.as_bytes())) && found.is_none() {
                found = Some(i);
            }
        }
        match found {
            Some(0) => HashCheck::Valid,
            Some(_) => HashCheck::ValidOldKey,
            None => HashCheck::Invalid,
        }
    }

    fn login_entries(&self) -> Vec<(String, serde_json::Value)> {
        vec![(
            BACKEND_KEY.to_owned(),
            serde_json::Value::from(self.backend_path.clone()),
        )]
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
pub use users::{DjangoUser, DjangoUsers};

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
mod users {
    use super::*;

    use std::sync::Arc;

    use sqlx::Row as _;

    use crate::auth::{AuthBackend, AuthUser};
    use crate::django::{check_password, make_pbkdf2_password, PBKDF2_DEFAULT_ITERATIONS};
    use crate::store::sql::db::with_conn;
    use crate::store::sql::{Db, Dialect};
    use crate::store::{DjangoStore, StoreError};

    /// A row of Django's `auth_user` table (or a custom user table with its columns `id`,
    /// `username`, `password` and `is_active`).
    ///
    /// Needs the cargo features `django`, with `postgres`, `mysql` or `sqlite`.
    #[derive(Clone, PartialEq, Eq)]
    #[non_exhaustive]
    pub struct DjangoUser {
        /// The primary key (Django stores it in the session as text, `"42"`).
        pub id: i64,
        /// The user name.
        pub username: String,
        /// Whether the account may log in.
        pub is_active: bool,
        password: String,
    }

    impl DjangoUser {
        /// The stored password hash (`pbkdf2_sha256$…`), which is also the user's credential
        /// fingerprint, as in Django.
        pub fn password_hash(&self) -> &str {
            &self.password
        }
    }

    impl fmt::Debug for DjangoUser {
        // Never the password hash.
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("DjangoUser")
                .field("id", &self.id)
                .field("username", &self.username)
                .field("is_active", &self.is_active)
                .finish_non_exhaustive()
        }
    }

    impl AuthUser for DjangoUser {
        type Id = i64;

        fn id(&self) -> i64 {
            self.id
        }

        fn credential_fingerprint(&self) -> &[u8] {
            self.password.as_bytes()
        }
    }

    /// Users from Django's `auth_user` table, on PostgreSQL, MySQL/MariaDB or SQLite, with
    /// Django's session auth hash ([`DjangoAuthHash`]): install it with
    /// [`AuthLayer::new`](crate::auth::AuthLayer::new) (the key ring is then unused) or
    /// [`AuthLayer::with_hash`](crate::auth::AuthLayer::with_hash), inside a
    /// [`SessionLayer`](crate::SessionLayer) over a [`DjangoStore`] with
    /// [`SessionConfig::django`](crate::SessionConfig::django).
    ///
    /// - [`user`](AuthBackend::user) loads by primary key; an inactive user (`is_active`
    ///   false) is nobody, so their sessions log out, as with Django's `ModelBackend`.
    /// - [`authenticate`](Self::authenticate) checks a user name and password in Django's
    ///   `pbkdf2_sha256` and `argon2` formats ([`check_password`](crate::django::check_password)).
    ///
    /// Read-only: it never writes `auth_user` (no `last_login` update, no re-hashing of
    /// passwords with more iterations; Django does those at its next login).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), tidysession::StoreError> {
    /// use tidysession::auth::{AuthLayer, DjangoUsers};
    /// use tidysession::store::DjangoStore;
    /// use tidysession::{KeyRing, SessionConfig, SessionLayer};
    ///
    /// let secrets = DjangoStore::secrets_from_env()?;
    /// let store = DjangoStore::connect("postgres://app@db.internal/app", secrets).await?;
    /// let users = DjangoUsers::from_store(&store)?;
    /// let auth = AuthLayer::with_hash(users.clone(), users.auth_hash());
    /// let sessions = SessionLayer::new(store).with_config(SessionConfig::django());
    /// # Ok(()) }
    /// ```
    ///
    /// Needs the cargo features `django`, with `postgres`, `mysql` or `sqlite`.
    #[derive(Clone)]
    pub struct DjangoUsers {
        db: Arc<Db>,
        table: String,
        by_id: String,
        by_username: String,
        hash: Arc<DjangoAuthHash>,
    }

    impl fmt::Debug for DjangoUsers {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut d = f.debug_struct("DjangoUsers");
            self.db.describe(&mut d);
            d.field("table", &self.table)
                .field("hash", &self.hash)
                .finish_non_exhaustive()
        }
    }

    /// Django's user table.
    const DEFAULT_USER_TABLE: &str = "auth_user";

    impl DjangoUsers {
        /// Users in the database a URL names (the forms [`DjangoStore::connect`] takes; a
        /// `table=NAME` parameter names the user table), with Django's secrets for the
        /// session auth hash.
        ///
        /// # Errors
        ///
        /// As [`DjangoStore::connect`].
        pub async fn connect(url: &str, secrets: Secrets) -> Result<Self, StoreError> {
            let (db, table) = Db::connect(url).await?;
            let users = Self::new(Arc::new(db), secrets);
            match table {
                Some(name) => users.with_table(&name),
                None => Ok(users),
            }
        }

        /// Users in the database of `store`, over its connections, with its secrets.
        ///
        /// # Errors
        ///
        /// [`StoreError::Backend`] if the store was opened without the secret
        /// ([`DjangoStore::connect_without_secret`]): session auth hashes need it.
        pub fn from_store(store: &DjangoStore) -> Result<Self, StoreError> {
            let secrets = store.secrets().ok_or_else(|| {
                StoreError::backend(std::io::Error::other(
                    "the Django store was opened without DJANGO_SECRET_KEY",
                ))
            })?;
            Ok(Self::new(store.db().clone(), secrets.clone()))
        }

        fn new(db: Arc<Db>, secrets: Secrets) -> Self {
            let mut users = Self {
                db,
                table: String::new(),
                by_id: String::new(),
                by_username: String::new(),
                hash: Arc::new(DjangoAuthHash::new(secrets)),
            };
            users.set_table(DEFAULT_USER_TABLE);
            users
        }

        /// Reads users from table `name` instead of `auth_user` (a custom user model with
        /// the same columns).
        ///
        /// # Errors
        ///
        /// [`StoreError::Backend`] unless `name` is 1 to 63 ASCII letters, digits or
        /// underscores.
        pub fn with_table(mut self, name: &str) -> Result<Self, StoreError> {
            let valid = (1..=63).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(StoreError::backend(InvalidUserTable(name.to_owned())));
            }
            self.set_table(name);
            Ok(self)
        }

        /// Writes `path` under [`BACKEND_KEY`] at login; see
        /// [`DjangoAuthHash::with_backend_path`].
        pub fn with_backend_path(mut self, path: impl Into<String>) -> Self {
            let hash = (*self.hash).clone().with_backend_path(path);
            self.hash = Arc::new(hash);
            self
        }

        /// The session auth hash scheme, for [`AuthLayer::with_hash`](crate::auth::AuthLayer::with_hash).
        pub fn auth_hash(&self) -> Arc<dyn SessionAuthHash> {
            self.hash.clone()
        }

        fn set_table(&mut self, name: &str) {
            let dialect = self.db.dialect();
            let (quoted, id, placeholder) = match dialect {
                Dialect::Postgres => (format!("\"{name}\""), "CAST(id AS BIGINT)", "$1"),
                Dialect::MySql => (format!("`{name}`"), "CAST(id AS SIGNED)", "?"),
                Dialect::Sqlite => (format!("\"{name}\""), "id", "?"),
            };
            let select = format!("SELECT {id}, username, password, is_active FROM {quoted}");
            self.by_id = format!("{select} WHERE id = {placeholder}");
            self.by_username = format!("{select} WHERE username = {placeholder}");
            self.table = name.to_owned();
        }

        async fn fetch(&self, sql: &str, key: Key<'_>) -> Result<Option<DjangoUser>, StoreError> {
            with_conn!(&*self.db, conn => {
                let query = sqlx::query(sql);
                let query = match key {
                    Key::Id(id) => query.bind(id),
                    Key::Username(name) => query.bind(name),
                };
                let row = query
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                match row {
                    None => Ok(None),
                    Some(row) => {
                        let user = DjangoUser {
                            id: row.try_get(0).map_err(StoreError::backend)?,
                            username: row.try_get(1).map_err(StoreError::backend)?,
                            password: row.try_get(2).map_err(StoreError::backend)?,
                            is_active: row.try_get(3).map_err(StoreError::backend)?,
                        };
                        Ok(Some(user))
                    }
                }
            })
        }

        /// The user with this user name and password, if both match and the user is active
        /// (Django's `ModelBackend.authenticate`). An unknown user name costs a password
        /// check too, so the time taken does not tell which names exist. The check runs on
        /// a blocking thread.
        ///
        /// # Errors
        ///
        /// [`StoreError`] if the table cannot be read.
        pub async fn authenticate(
            &self,
            username: &str,
            password: &str,
        ) -> Result<Option<DjangoUser>, StoreError> {
            let user = self
                .fetch(&self.by_username, Key::Username(username))
                .await?;
            let encoded = user.as_ref().map(|u| u.password.clone());
            let password = password.to_owned();
            let matches = tokio::task::spawn_blocking(move || match encoded {
                Some(encoded) => check_password(&password, &encoded),
                None => {
                    // Django hashes the password once with its default hasher in this case.
                    let _ = make_pbkdf2_password(&password, "dummy", PBKDF2_DEFAULT_ITERATIONS);
                    false
                }
            })
            .await
            .unwrap_or(false);
            Ok(user.filter(|u| matches && u.is_active))
        }
    }

    enum Key<'a> {
        Id(i64),
        Username(&'a str),
    }

    impl AuthBackend for DjangoUsers {
        type User = DjangoUser;
        type Error = StoreError;

        async fn user(&self, id: &i64) -> Result<Option<DjangoUser>, StoreError> {
            let user = self.fetch(&self.by_id, Key::Id(*id)).await?;
            Ok(user.filter(|u| u.is_active))
        }

        fn session_auth_hash(&self) -> Option<Arc<dyn SessionAuthHash>> {
            Some(self.hash.clone())
        }
    }

    /// A user table name that cannot be used safely in SQL.
    #[derive(Debug, thiserror::Error)]
    #[error(
        "invalid Django user table name {0:?}: use 1 to 63 ASCII letters, digits or underscores"
    )]
    struct InvalidUserTable(String);
}
