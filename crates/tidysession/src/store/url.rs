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
pub const SUPPORTED_URLS: &str = "sqlite://PATH, memory://, postgres://USER@HOST/DB[?schema=NAME]";

/// Opens the store a URL names:
///
/// - `sqlite://PATH`: a file, created if missing; `sqlite://:memory:` for a private in-memory
///   database.
/// - `memory://`: in this process only.
/// - `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `postgresql://`), with any of
///   PostgreSQL's own URL parameters, plus `schema=NAME` for where the tables live.
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
        url: url.to_owned(),
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
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let (url_rest, schema) = take_param(url, "schema");
            let store = super::PostgresStore::connect(&url_rest).await;
            let store = match schema {
                Some(schema) => store.and_then(|s| s.schema(&schema)),
                None => store,
            };
            store
                .map(|s| Arc::new(s) as Arc<dyn SessionStore>)
                .map_err(|source| StoreUrlError::Open {
                    url: url.to_owned(),
                    source,
                })
        }
        _ => Err(unsupported()),
    }
}

/// Removes the query parameter `name` from `url`, returning the rest of the URL and the
/// parameter's value: tidysession's own options travel in the URL but are not the driver's.
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((k, v)) if k == name => {
                value = Some(v.to_owned());
                false
            }
            _ => true,
        })
        .collect();
    match kept.is_empty() {
        true => (base.to_owned(), value),
        false => (format!("{base}?{}", kept.join("&")), value),
    }
}

#[cfg(test)]
mod tests {
    use super::take_param;

    #[test]
    fn own_parameters_are_taken_out_of_the_url() {
        let t = |url| take_param(url, "schema");
        assert_eq!(t("postgres://h/db"), ("postgres://h/db".into(), None));
        assert_eq!(
            t("postgres://h/db?schema=s"),
            ("postgres://h/db".into(), Some("s".into()))
        );
        assert_eq!(
            t("postgres://h/db?sslmode=disable&schema=s&x=1"),
            (
                "postgres://h/db?sslmode=disable&x=1".into(),
                Some("s".into())
            )
        );
    }
}
