//! `tidysession migrate`: create or upgrade a store's schema.

/// Arguments of `migrate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long, env = "TIDYSESSION_STORE", help = super::store_help())]
    store: String,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    super::open_migrated_store(&args.store).await?;
    println!(
        "{}: schema is up to date",
        tidysession::tooling::redact_url(&args.store)
    );
    Ok(())
}
