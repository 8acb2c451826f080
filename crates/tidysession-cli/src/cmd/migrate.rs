//! `tidysession migrate`: create or upgrade a store's schema.

use anyhow::Context as _;

/// Arguments of `migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::STORE_HELP)]
    store: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_store(&args.store).await?;
    store
        .migrate()
        .await
        .with_context(|| format!("migrating {}", args.store))?;
    println!("{}: schema is up to date", args.store);
    Ok(())
}
