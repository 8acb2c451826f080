//! Opening a store from a URL, as the CLI and the demo take them.

use std::sync::Arc;

use super::{SessionStore, StoreError};

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreUrlError {
    /// The URL's scheme names no store this build knows.
    #[error("unsupported store URL {url:?}: expected one of {supported}")]
    Unsupported {
        /// The URL as given.
        url: String,
        /// The URL forms this build supports.
        supported: String,
    },
    /// The store exists but could not be opened.
    #[error("cannot open store {url:?}: {source}")]
    Open {
        /// The URL as given.
        url: String,
        /// What went wrong.
        #[source]
        source: StoreError,
    },
}

/// The URL forms [`open`] accepts in this build (each store needs its cargo feature), for
/// error messages and help text.
pub fn supported_urls() -> String {
    let forms: &[&str] = &[
        #[cfg(feature = "sqlite")]
        "sqlite://PATH",
        #[cfg(feature = "memory")]
        "memory://",
        #[cfg(feature = "postgres")]
        "postgres://USER@HOST/DB",
        #[cfg(feature = "mysql")]
        "mysql://USER@HOST/DB",
        #[cfg(feature = "redis")]
        "redis://HOST[:PORT][/DB]",
        #[cfg(feature = "redis")]
        "redis+cluster://HOST:PORT,HOST:PORT,...",
        #[cfg(all(feature = "django", feature = "postgres"))]
        "django+postgres://USER@HOST/DB",
        #[cfg(all(feature = "django", feature = "mysql"))]
        "django+mysql://USER@HOST/DB",
        #[cfg(all(feature = "django", feature = "sqlite"))]
        "django+sqlite://PATH",
    ];
    forms.join(", ")
}

/// Opens the store a URL names:
///
/// - `sqlite://PATH`: a file, created if missing; `sqlite://:memory:` for a private
///   in-memory database.
/// - `memory://`: in this process only.
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `postgresql://`), with any of
///   PostgreSQL's own URL parameters, plus `schema=NAME` for where the tables live (see
///   [`PostgresStore::with_schema`](super::PostgresStore::with_schema)).
/// - `mysql://USER[:PASSWORD]@HOST[:PORT]/DB`: MySQL 8 or MariaDB, plus `table=NAME` for the
///   sessions table (see [`MySqlStore::with_table`](super::MySqlStore::with_table)).
/// - `redis://[USER:PASSWORD@]HOST[:PORT][/DB]`: one Redis server.
/// - `redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT,...`: a Redis Cluster, through
///   some of its nodes.
///
/// - `django+postgres://…`, `django+mysql://…`, `django+sqlite://PATH`: Django's own
///   `django_session` table in that database, shared with a Django app (see
///   [`DjangoStore`](super::DjangoStore)); `table=NAME` names another table. Django's secret
///   comes from `DJANGO_SECRET_KEY`, its fallbacks from `DJANGO_SECRET_KEY_FALLBACKS`
///   (comma-separated); a missing secret is an error naming the variable.
///
/// Redis URLs take an optional `prefix=` query parameter for the key prefix (percent-encoded),
/// e.g. `redis://127.0.0.1/0?prefix=myapp:`.
///
/// The store is not migrated; call [`Maintenance::migrate`](crate::store::Maintenance::migrate) when the caller owns the schema.
///
/// ```
/// # async fn run() -> Result<(), tidysession::store::StoreUrlError> {
/// let store = tidysession::store::open("sqlite://sessions.db").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`StoreUrlError::Unsupported`] for an unknown scheme, [`StoreUrlError::Open`] when the
/// store cannot be opened.
pub async fn open(url: &str) -> Result<Arc<dyn SessionStore>, StoreUrlError> {
    open_with(url, true).await
}

/// Opens the store a URL names, as [`open`] does, for maintenance: statistics and cleanup.
/// The one difference: a Django URL opens without `DJANGO_SECRET_KEY` if it is not set. Such a
/// store counts, samples (reading payloads *unverified*) and deletes expired rows, none of
/// which needs the secret, and refuses to load or write sessions.
///
/// # Errors
///
/// As [`open`].
pub async fn open_for_maintenance(url: &str) -> Result<Arc<dyn SessionStore>, StoreUrlError> {
    open_with(url, false).await
}

async fn open_with(url: &str, need_secret: bool) -> Result<Arc<dyn SessionStore>, StoreUrlError> {
    let _ = need_secret;
    let unsupported = || StoreUrlError::Unsupported {
        url: redact_url(url),
        supported: supported_urls(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(unsupported)?;
    match scheme {
        #[cfg(feature = "memory")]
        "memory" if rest.is_empty() => Ok(Arc::new(super::MemoryStore::default())),
        #[cfg(feature = "sqlite")]
        "sqlite" if !rest.is_empty() => super::SqliteStore::open(rest)
            .await
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|source| StoreUrlError::Open {
                url: redact_url(url),
                source,
            }),
        #[cfg(feature = "redis")]
        "redis" | "redis+cluster" if !rest.is_empty() => super::RedisStore::connect(url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|source| StoreUrlError::Open {
                url: redact_url(url),
                source,
            }),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" if !rest.is_empty() => super::PostgresStore::connect(url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|source| StoreUrlError::Open {
                url: redact_url(url),
                source,
            }),
        #[cfg(feature = "mysql")]
        "mysql" if !rest.is_empty() => super::MySqlStore::connect(url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|source| StoreUrlError::Open {
                url: redact_url(url),
                source,
            }),
        #[cfg(all(
            feature = "django",
            any(feature = "sqlite", feature = "postgres", feature = "mysql")
        ))]
        "django+postgres" | "django+postgresql" | "django+mysql" | "django+sqlite"
            if !rest.is_empty() =>
        {
            let opened = async {
                match super::DjangoStore::secrets_from_env() {
                    Ok(secrets) => super::DjangoStore::connect(url, secrets).await,
                    Err(_) if !need_secret => super::DjangoStore::connect_without_secret(url).await,
                    Err(e) => Err(e),
                }
            };
            opened
                .await
                .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
                .map_err(|source| StoreUrlError::Open {
                    url: redact_url(url),
                    source,
                })
        }
        _ => Err(unsupported()),
    }
}

#[cfg(any(
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "django"
))]
/// Removes the query parameter `name` from `url`, returning the rest of the URL and the
/// parameter's percent-decoded value: tidysession's own options (`schema=`, `prefix=`) travel
/// in the URL but are not the driver's. `None` for a value that is not valid
/// percent-encoded UTF-8.
pub(crate) fn take_param(url: &str, name: &str) -> Option<(String, Option<String>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Some((url.to_owned(), None));
    };
    let mut value = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some((k, v)) if k == name => value = Some(percent_decode(v)?),
            _ => kept.push(pair),
        }
    }
    let url = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Some((url, value))
}

#[cfg(any(
    feature = "postgres",
    feature = "mysql",
    feature = "redis",
    feature = "django"
))]
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// `url` with every password in it replaced by `***`, so errors and logs can repeat it:
///
/// - the password of a `scheme://user:password@host` form, even one holding raw `@`, `/`, `?`
///   or `#` (the user-info ends at the last `@` whose user name holds none of those);
/// - a lone `secret@` (Redis's password-only form), hidden whole; other schemes' lone `user@`
///   is a user name and stays;
/// - the values of query parameters that carry secrets (`password=`, `sslpassword=`, `pass=`,
///   `pwd=`, `secret=`, `token=`, any case).
///
/// SQLite paths are left alone: a file name may hold `:`, `@` and `?`.
///
/// ```
/// use tidysession::tooling::redact_url;
///
/// assert_eq!(redact_url("postgres://app:s3cret@db/app"), "postgres://app:***@db/app");
/// assert_eq!(redact_url("postgres://app@db/app?password=s3cret"), "postgres://app@db/app?password=***");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    if scheme.ends_with("sqlite") {
        return url.to_owned();
    }
    let (userinfo, after) = match user_info(rest) {
        Some(at) => (Some(&rest[..at]), &rest[at..]),
        None => (None, rest),
    };
    let user = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None if scheme.starts_with("redis") => "***".to_owned(),
            None => info.to_owned(),
        },
        None => String::new(),
    };
    format!("{scheme}://{user}{}", redact_query(after))
}

/// Where the user-info of a URL's `rest` (after `://`) ends, at its `@`: the last `@` whose
/// user name (up to the first `:`, or the whole user-info without one) holds no `/`, `?` or
/// `#`, which would mean the `@` lies in a path or a query.
fn user_info(rest: &str) -> Option<usize> {
    rest.rmatch_indices('@').map(|(at, _)| at).find(|&at| {
        let info = &rest[..at];
        let user = info.split_once(':').map_or(info, |(user, _)| user);
        !user.contains(['/', '?', '#'])
    })
}

/// `tail` (what follows the user-info) with the values of secret query parameters hidden.
fn redact_query(tail: &str) -> String {
    let Some((base, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Query parameters the drivers take secrets in.
fn is_secret_param(key: &str) -> bool {
    const SECRET: [&str; 6] = ["password", "sslpassword", "pass", "pwd", "secret", "token"];
    SECRET.iter().any(|s| key.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[cfg(any(
        feature = "postgres",
        feature = "mysql",
        feature = "redis",
        feature = "django"
    ))]
    #[test]
    fn own_parameters_are_taken_out_of_the_url() {
        use super::take_param;
        let t = |url| take_param(url, "schema").unwrap();
        assert_eq!(t("postgres://h/db"), ("postgres://h/db".into(), None));
        assert_eq!(
            t("postgres://h/db?schema=s"),
            ("postgres://h/db".into(), Some("s".into()))
        );
        assert_eq!(
            t("postgres://h/db?sslmode=disable&schema=a%3Ab&x=1"),
            (
                "postgres://h/db?sslmode=disable&x=1".into(),
                Some("a:b".into())
            )
        );
        assert_eq!(take_param("redis://h?prefix=%zz", "prefix"), None);
    }

    #[test]
    fn redacted_urls_hide_passwords_only() {
        for (url, shown) in [
            ("redis://u:pw@h:1/0", "redis://u:***@h:1/0"),
            ("redis://:pw@h", "redis://:***@h"),
            ("redis://pw@h?x=1", "redis://***@h?x=1"),
            (
                "redis+cluster://u:p@a:1,b:2",
                "redis+cluster://u:***@a:1,b:2",
            ),
            ("redis://h:1/0", "redis://h:1/0"),
            ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
            ("nonsense", "nonsense"),
            ("mysql://app:s3cret@db:3306/x", "mysql://app:***@db:3306/x"),
            (
                "mysql://app:p@ss@db/x?table=t",
                "mysql://app:***@db/x?table=t",
            ),
            ("mysql://app@db/x", "mysql://app@db/x"),
            ("mysql://db/x?user=a@b", "mysql://db/x?user=a@b"),
            // Every form a password takes.
            (
                "postgres://root@127.0.0.1/test?password=s3cr3tpw",
                "postgres://root@127.0.0.1/test?password=***",
            ),
            (
                "postgres://h/db?sslmode=require&SSLPassword=k3y&application_name=a",
                "postgres://h/db?sslmode=require&SSLPassword=***&application_name=a",
            ),
            ("postgres://u:p#w/x?@host/db", "postgres://u:***@host/db"),
            (
                "postgres://u:a/b@host/db?x=1",
                "postgres://u:***@host/db?x=1",
            ),
            ("django+mysql://app:pw@db/x", "django+mysql://app:***@db/x"),
            ("redis://h/0?prefix=a@b", "redis://h/0?prefix=a@b"),
            ("redis://h?password=pw", "redis://h?password=***"),
            ("sqlite:///tmp/x?password=y", "sqlite:///tmp/x?password=y"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
