//! `chats3-load`: a load generator for any Chats3 v1 server. It speaks only
//! the public HTTP API (admin create, join, messages, history, the SSE event
//! stream, `/health`), so it can measure this server and the original alike.
//!
//! One tokio runtime; one HTTP/1.1 connection per worker (hyper's
//! connection-level client, so no pool lock is shared between workers);
//! per-worker histograms merged at the end; SSE bodies are scanned in place,
//! without parsing JSON or allocating per event.
//!
//! The server needs its rate limits off: `RATE_LIMIT_PER_MIN=0
//! ADMIN_RATE_LIMIT_PER_MIN=0`. See BENCHMARKS.md for the commands.

mod client;
mod coldstart;
mod connections;
mod fanout;
mod history;
mod ingest;
mod sse;
mod stats;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "chats3-load",
    version,
    about = "Load generator for Chats3 v1 servers"
)]
struct Cli {
    /// Base URL of the server (plain HTTP).
    #[arg(long, global = true, default_value = "http://127.0.0.1:3000")]
    target: String,
    /// The server's admin password (creates conversations).
    #[arg(long, global = true, default_value = "")]
    admin_password: String,
    /// Server process id: its CPU time and resident memory are reported.
    #[arg(long, global = true)]
    server_pid: Option<String>,
    /// Spread streams over this many loopback source addresses (127.0.0.1 …),
    /// each with its own ephemeral port range; 0 lets the kernel choose.
    #[arg(long, global = true, default_value_t = 0)]
    source_ips: u8,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Concurrent senders posting messages (and the `GET /health` rate).
    Ingest(ingest::Args),
    /// Conversations × subscribers holding event streams, paced senders.
    Fanout(fanout::Args),
    /// Many idle event streams held open.
    Connections(connections::Args),
    /// Fill a conversation, then page through its history.
    History(history::Args),
    /// Start the server command and time it until `/health` answers.
    Coldstart(coldstart::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let t = Arc::new(client::Target::resolve(&cli.target, cli.admin_password).await?);
        let sources: Vec<IpAddr> = match (cli.source_ips, t.addr.ip()) {
            (0, _) => Vec::new(),
            (n, IpAddr::V4(ip)) if ip.is_loopback() => (1..=n)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
            _ => anyhow::bail!("--source-ips needs an IPv4 loopback target"),
        };
        let pid = cli.server_pid;
        match cli.scenario {
            Scenario::Ingest(a) => ingest::run(t, a, pid).await,
            Scenario::Fanout(a) => fanout::run(t, a, pid, sources).await,
            Scenario::Connections(a) => connections::run(t, a, pid, sources).await,
            Scenario::History(a) => history::run(t, a, pid).await,
            Scenario::Coldstart(a) => coldstart::run(&t, a).await,
        }
    })
}
