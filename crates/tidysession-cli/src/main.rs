//! The `tidysession` command: a demo site, schema migration, batched cleanup and a
//! traffic simulation that compares session policies.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Sessions that never grow a huge session table.
#[derive(Debug, Parser)]
#[command(name = "tidysession", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the demo site.
    Demo(cmd::demo::Args),
    /// Create or upgrade a store's schema.
    Migrate(cmd::migrate::Args),
    /// Delete expired sessions in small batches.
    Clear(cmd::clear::Args),
    /// Show what a store holds: counts, kinds, ages, sizes, users (exact or estimated).
    Stats(cmd::stats::Args),
    /// Turn a store's statistics into findings and concrete advice.
    Doctor(cmd::doctor::Args),
    /// Drive a traffic mix through the demo under each session policy and compare the stores.
    Simulate(cmd::simulate::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Migrate(args) => cmd::migrate::run(args).await,
            Command::Clear(args) => cmd::clear::run(args).await,
            Command::Stats(args) => cmd::stats::run(args).await,
            Command::Doctor(args) => cmd::doctor::run(args).await,
            Command::Simulate(args) => cmd::simulate::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
