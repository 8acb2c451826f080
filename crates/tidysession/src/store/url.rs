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
        /// The schemes this build supports.
        supported: &'static str,
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

/// The URL forms this build accepts, for error messages and help text.
pub const SUPPORTED_URLS: &str =
    "sqlite://PATH, memory://, mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?table=NAME]";

/// Opens the store a URL names: `sqlite://PATH` (a file, created if missing; `sqlite://:memory:`
/// for a private in-memory database), `memory://`, or
/// `mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?table=NAME]` (MySQL 8 or MariaDB, with the
/// `mysql` feature; `table` chooses the sessions table, see
/// [`MySqlStore::table`](super::MySqlStore::table)).
///
/// The store is not migrated; call [`SessionStore::migrate`] when the caller owns the schema.
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
    let unsupported = || StoreUrlError::Unsupported {
        url: without_password(url),
        supported: SUPPORTED_URLS,
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
                url: url.to_owned(),
                source,
            }),
        #[cfg(feature = "mysql")]
        "mysql" if !rest.is_empty() => super::MySqlStore::connect(url)
            .await
            .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
            .map_err(|source| StoreUrlError::Open {
                url: without_password(url),
                source,
            }),
        _ => Err(unsupported()),
    }
}

/// `url` with the password of a `scheme://user:password@host` form replaced by `***`, so
/// errors can repeat the URL. Only for network URLs: a file path may hold `:` and `@`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[userinfo.len()..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn passwords_are_left_out_of_urls_in_errors() {
        for (url, shown) in [
            ("mysql://app:s3cret@db:3306/x", "mysql://app:***@db:3306/x"),
            (
                "mysql://app:p@ss@db/x?table=t",
                "mysql://app:***@db/x?table=t",
            ),
            ("mysql://app@db/x", "mysql://app@db/x"),
            ("mysql://db/x?user=a@b", "mysql://db/x?user=a@b"),
            ("nonsense", "nonsense"),
        ] {
            assert_eq!(without_password(url), shown, "{url}");
        }
    }
}
