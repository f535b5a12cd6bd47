//! The `chats3` binary: parse the command line, load the configuration,
//! initialise logging, and run the chosen command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: allocation was ≈ 20 % of the server's CPU
/// under ingest (BENCHMARKS.md, issue 21).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print a new random secret (64 hex characters) for an integrator or COOKIE_SECRET.
    ///
    /// Needs no configuration, so it also works while a too-short secret keeps the server from starting.
    Secret,
    /// Write a development set of cluster trunk certificates (ca.pem, node.pem, node.key) to DIR.
    ///
    /// Every node of a test cluster may use the same set (cluster_ca, cluster_cert, cluster_key).
    /// Needs no configuration.
    ClusterCert { dir: PathBuf },
    /// Rebuild an empty data directory from S3 or from a backup.
    ///
    /// With --from-s3, running it again into the directory of an interrupted restore
    /// (Ctrl-C, kill, power loss) resumes it. Exit status 2: restored, but some objects
    /// could not be (see --allow-skips).
    Restore {
        /// Read the configured S3 bucket (ours or one written by the original service).
        #[arg(long, conflicts_with = "from")]
        from_s3: bool,
        /// Read a backup directory written by `chats3 backup --to`.
        #[arg(long)]
        from: Option<PathBuf>,
        /// With --from-s3: give conversations the bucket names no owner for (all of the
        /// original service's) to this configured integrator, so its tickets keep opening them.
        #[arg(long, requires = "from_s3")]
        owner: Option<String>,
        /// With --from-s3: S3 requests (listing and reading) in flight at once [default: 32].
        #[arg(long, requires = "from_s3", value_parser = clap::value_parser!(u16).range(1..=1024))]
        concurrency: Option<u16>,
        /// With --from-s3: exit with status 0 even when objects could not be restored (they are
        /// listed in the summary and next to the data directory either way).
        #[arg(long, requires = "from_s3")]
        allow_skips: bool,
    },
    /// Take a consistent backup from the running server into DIR (keep it secret: it holds live session ids).
    ///
    /// The backup contains live session ids: anyone holding it can act as those users until their
    /// sessions expire. It is written with mode 0600 (a directory it creates: 0700); store and move it
    /// like a secret.
    Backup {
        /// Directory to write backup.ndjson into (created if missing).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Operator commands against the running server.
    Admin {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Mint a signed embed ticket (as an integrator backend would) and print an /embed URL.
    Ticket {
        #[arg(long)]
        integrator: String,
        #[arg(long)]
        conversation: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        origin: String,
        #[arg(long, default_value = "participant")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 60)]
        ttl: i64,
        /// Base URL of this server for the printed link (default: PUBLIC_URL, else http://HOST:PORT
        /// with 127.0.0.1 for an unspecified HOST).
        #[arg(long)]
        base_url: Option<String>,
    },
}

/// How operator commands reach the running server.
#[derive(clap::Args)]
struct ServerArgs {
    /// Server URL (default: from the configuration).
    #[arg(long)]
    url: Option<String>,
    /// Do not verify the server's TLS certificate (e.g. a self-signed one).
    #[arg(long)]
    insecure: bool,
}

impl ServerArgs {
    fn client(self, config: &chats3::Config) -> anyhow::Result<chats3::cli::admin::AdminClient> {
        use chats3::cli::admin::{AdminClient, admin_password, default_base_url};
        if self.insecure {
            eprintln!("chats3: warning: --insecure: the server's TLS certificate is not verified");
        }
        let base = self.url.unwrap_or_else(|| default_base_url(config));
        AdminClient::new(&base, admin_password(config)?, self.insecure)
    }
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create a conversation and print its id and join code.
    CreateConversation {
        #[arg(long)]
        id: Option<String>,
    },
    /// Close a conversation.
    Close { id: String },
    /// List conversations.
    List,
}

/// 256 random bits as 64 hex characters.
fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // webrtc-rs logs every ICE and signaling state change of every relay
    // connection at info: keep its crates at warn (ICE at error) by default.
    const DEFAULT_LOG_FILTER: &str = "info,tower_http=warn,webrtc=warn,webrtc_ice=error,\
        webrtc_mdns=warn,webrtc_dtls=warn,webrtc_srtp=warn,webrtc_sctp=warn";
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
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

/// What `restore --from-s3` prints when it is done.
fn print_restore_summary(
    config: &chats3::Config,
    options: &chats3::sync::restore::Options,
    summary: &chats3::sync::restore::Summary,
    took: std::time::Duration,
) {
    println!(
        "restored into {} in {:.1} s: {summary}",
        config.data_dir.display(),
        took.as_secs_f64()
    );
    if summary.resumed > 0 {
        println!(
            "  {} of them had been restored by an interrupted run; this run did the rest",
            summary.resumed
        );
    }
    if let (Some(owner), n @ 1..) = (&options.owner, summary.given_to_owner) {
        println!(
            "  {n} conversations given to --owner {owner} (the bucket names no owner for them)"
        );
    }
    if summary.unowned > 0 {
        println!(
            "  {} conversations have no owner (the bucket names none): integrators' tickets cannot open \
             them until one is assigned (--owner, or POST /api/v1/admin/conversations/{{id}}/owner)",
            summary.unowned
        );
    }
    const SHOWN: usize = 20;
    if !summary.skipped.is_empty() {
        println!("  skipped (could not be restored):");
        for s in summary.skipped.iter().take(SHOWN) {
            println!("    {}: {}", s.key, s.reason);
        }
        if summary.skipped.len() > SHOWN {
            println!("    … and {} more", summary.skipped.len() - SHOWN);
        }
        if let Some(file) = &summary.skipped_file {
            println!("  all skipped objects are listed in {}", file.display());
        }
    }
}

fn cluster_cert(dir: &std::path::Path) -> anyhow::Result<()> {
    for path in chats3::cli::cluster_cert::write(dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::Secret)) {
        // Before the configuration: a secret that is too short must not keep you from making one.
        println!("{}", new_secret());
        return Ok(());
    }
    if let Some(Command::ClusterCert { dir }) = &cli.command {
        // Before the configuration, as `secret`.
        return cluster_cert(dir);
    }
    init_tracing();
    let config = chats3::Config::load(cli.config.as_deref()).context("invalid configuration")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Secret => {
            println!("{}", new_secret());
            Ok(())
        }
        Command::ClusterCert { dir } => cluster_cert(&dir),
        Command::CheckConfig => {
            println!(
                "configuration OK (data directory {}, port {})",
                config.data_dir.display(),
                config.port
            );
            Ok(())
        }
        Command::Restore {
            from_s3,
            from,
            owner,
            concurrency,
            allow_skips,
        } => {
            let rt = runtime()?;
            if let Some(dir) = from {
                let (kv, files) = rt
                    .block_on(chats3::cli::restore::run(&config, &dir))
                    .context("restore failed")?;
                println!(
                    "restored {kv} records and {files} attachments into {}",
                    config.data_dir.display()
                );
                return Ok(());
            }
            anyhow::ensure!(
                from_s3,
                "say where to restore from: --from-s3 or --from DIR"
            );
            if let Some(o) = &owner {
                anyhow::ensure!(
                    config.integrator(o).is_some(),
                    "--owner {o:?} is not a configured integrator (INTEGRATORS)"
                );
            }
            let options = chats3::sync::restore::Options {
                owner,
                concurrency: concurrency
                    .map_or(chats3::sync::restore::DEFAULT_CONCURRENCY, usize::from),
                report: chats3::sync::restore::Report::auto(),
            };
            let started = std::time::Instant::now();
            let summary = rt
                .block_on(async {
                    tokio::select! {
                        r = chats3::sync::restore::run_with(&config, &options) => r.map(Some),
                        _ = shutdown_signal() => Ok(None),
                    }
                })
                .context("restore failed")?;
            let Some(summary) = summary else {
                // What is restored so far is journaled: a rerun resumes from there.
                eprintln!("chats3: restore interrupted; run the same command again to resume it");
                std::process::exit(130);
            };
            print_restore_summary(&config, &options, &summary, started.elapsed());
            if !summary.skipped.is_empty() && !allow_skips {
                eprintln!(
                    "chats3: {} objects (or lines) could not be restored; everything else is. \
                     Pass --allow-skips to accept that (exit status 0).",
                    summary.skipped.len()
                );
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Backup { to, server } => {
            let client = server.client(&config)?;
            let n = runtime()?
                .block_on(client.backup(&to))
                .context("backup failed")?;
            println!(
                "backup written to {} ({n} bytes; it holds live session ids: keep it secret)",
                to.join("backup.ndjson").display()
            );
            Ok(())
        }
        Command::Admin { server, action } => {
            let client = server.client(&config)?;
            let rt = runtime()?;
            let out = match action {
                AdminAction::CreateConversation { id } => {
                    rt.block_on(client.create(id.as_deref()))?
                }
                AdminAction::Close { id } => rt.block_on(client.close(&id))?,
                AdminAction::List => rt.block_on(client.list())?,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Ticket {
            integrator,
            conversation,
            user,
            name,
            origin,
            role,
            ttl,
            base_url: base_url_arg,
        } => {
            use chats3::cli::ticket::{TicketRequest, base_url, embed_url, mint};
            let integ = config.integrator(&integrator).with_context(|| {
                format!("integrator {integrator:?} is not configured (INTEGRATORS)")
            })?;
            let req = TicketRequest {
                conversation_id: &conversation,
                user_id: &user,
                display_name: &name,
                origin: &origin,
                role: &role,
                ttl_secs: ttl,
            };
            let nonce = uuid::Uuid::new_v4().to_string();
            let m = mint(integ, &req, chats3::clock::now_ms(), &nonce);
            let (base, from) = base_url(base_url_arg, &config);
            eprintln!("chats3 at {base} (from {from})");
            println!("ticket:    {}", m.ticket);
            println!("signature: {}", m.signature);
            println!("url:       {}", embed_url(&base, &m));
            Ok(())
        }
        Command::Serve => runtime()?.block_on(async {
            let app = chats3::App::build(config).await?;
            let addr = app.local_addr();
            tracing::info!(%addr, "chats3 listening");
            println!("chats3 listening on {}://{addr}", app.scheme());
            app.run(shutdown_signal()).await
        }),
    }
}
