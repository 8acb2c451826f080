//! One module per subcommand.

pub(crate) mod clear;
pub(crate) mod demo;
pub(crate) mod migrate;

use std::sync::Arc;

use anyhow::Context as _;
use tidysession::store::SessionStore;

/// Help text for `--store`.
pub(crate) const STORE_HELP: &str = "Store URL: sqlite://PATH or memory://";

/// Opens the store a URL names.
pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn SessionStore>> {
    tidysession::store::open(url)
        .await
        .with_context(|| format!("opening {url}"))
}

/// Opens the store a URL names and brings its schema up to date.
pub(crate) async fn open_migrated_store(url: &str) -> anyhow::Result<Arc<dyn SessionStore>> {
    let store = open_store(url).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {url}"))?;
    Ok(store)
}
