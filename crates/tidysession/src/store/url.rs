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
pub const SUPPORTED_URLS: &str = "sqlite://PATH, memory://";

/// Opens the store a URL names: `sqlite://PATH` (a file, created if missing; `sqlite://:memory:`
/// for a private in-memory database) or `memory://`.
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
        _ => Err(unsupported()),
    }
}
