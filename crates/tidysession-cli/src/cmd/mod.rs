//! One module per subcommand.

pub(crate) mod clear;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod migrate;
pub(crate) mod simulate;
pub(crate) mod stats;

use std::sync::Arc;

use anyhow::Context as _;
use tidysession::store::{Maintenance, SessionStore};
use tidysession::tooling::redact_url;

/// Help text for `--store`.
pub(crate) fn store_help() -> String {
    format!(
        "Store URL, one of: {}. django+ URLs use Django's django_session table, with the \
         secret from DJANGO_SECRET_KEY (fallbacks: DJANGO_SECRET_KEY_FALLBACKS, comma-separated)",
        tidysession::store::supported_urls()
    )
}

/// Opens the store a URL names. Its errors already quote the URL, without its password.
pub(crate) async fn open_store(url: &str) -> anyhow::Result<Arc<dyn SessionStore>> {
    Ok(tidysession::store::open(url).await?)
}

/// Opens the store a URL names and brings its schema up to date.
pub(crate) async fn open_migrated_store(url: &str) -> anyhow::Result<Arc<dyn SessionStore>> {
    let store = open_store(url).await?;
    maintenance(&*store)?
        .migrate()
        .await
        .with_context(|| format!("migrating {}", redact_url(url)))?;
    Ok(store)
}

/// The maintenance capability of a store the command opened (every store a URL opens has
/// one).
pub(crate) fn maintenance(store: &dyn SessionStore) -> anyhow::Result<&dyn Maintenance> {
    store
        .maintenance()
        .context("this store offers no maintenance (counting, cleanup, schema)")
}

/// Opens the store a URL names for statistics and cleanup: a Django URL opens without
/// `DJANGO_SECRET_KEY` if it is unset (payloads are then read unverified; nothing is
/// written but deletions of expired rows).
pub(crate) async fn open_maintenance_store(url: &str) -> anyhow::Result<Arc<dyn SessionStore>> {
    Ok(tidysession::tooling::open_for_maintenance(url).await?)
}
