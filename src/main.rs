//! The `chats3` binary: parse the command line, load the configuration,
//! initialise logging, and run the chosen command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chats3",
    version,
    about = "Self-hosted, embeddable real-time chat"
)]
struct Cli {
    /// TOML configuration file (also CHATS3_CONFIG); environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Rebuild an empty data directory from a backup.
    Restore {
        /// Read the configured S3 bucket (the only source so far).
        #[arg(long)]
        from_s3: bool,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let config = chats3::Config::load(cli.config.as_deref()).context("invalid configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            println!(
                "configuration OK (data directory {}, port {})",
                config.data_dir.display(),
                config.port
            );
            Ok(())
        }
        Command::Restore { from_s3 } => {
            anyhow::ensure!(from_s3, "say where to restore from: --from-s3");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let summary = rt
                .block_on(chats3::sync::restore::run(&config))
                .context("restore failed")?;
            println!("restored into {}: {summary}", config.data_dir.display());
            Ok(())
        }
        Command::Serve => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let app = chats3::App::build(config).await?;
                let addr = app.local_addr();
                tracing::info!(%addr, "chats3 listening");
                println!("chats3 listening on {}://{addr}", app.scheme());
                app.run(shutdown_signal()).await
            })
        }
    }
}
