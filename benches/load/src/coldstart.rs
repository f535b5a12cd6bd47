//! `coldstart`: start the server command, poll `GET /health` every
//! millisecond until it answers 200, report the time from spawn, then stop the
//! server with SIGTERM and wait for it. Repeats and reports each run and the median.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::Method;

use crate::client::{self, Target};

#[derive(clap::Args)]
pub struct Args {
    /// Runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// The server command and its arguments (after `--`); it inherits the environment.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

async fn healthy(t: &Target) -> bool {
    let Ok(mut conn) = t.connect(None).await else {
        return false;
    };
    let req = t.request(Method::GET, "/health", None, None);
    matches!(
        tokio::time::timeout(Duration::from_secs(1), client::call(&mut conn, req)).await,
        Ok(Ok((s, _))) if s.is_success()
    )
}

async fn once(t: &Target, a: &Args) -> anyhow::Result<Duration> {
    if healthy(t).await {
        bail!("something already answers on {}: stop it first", t.addr);
    }
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&a.command[0])
        .args(&a.command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", a.command[0]))?;
    let limit = started + Duration::from_secs(a.timeout);
    let took = loop {
        if healthy(t).await {
            break started.elapsed();
        }
        if let Some(status) = child.try_wait()? {
            bail!("the server exited before serving: {status}");
        }
        if Instant::now() > limit {
            bail!("no answer from /health within {} s", a.timeout);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let pid = child.id().context("server pid")?.to_string();
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await?;
    child.wait().await?;
    Ok(took)
}

pub async fn run(t: &Target, a: Args) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(a.runs);
    for i in 0..a.runs.max(1) {
        let d = once(t, &a).await?;
        println!("cold start {}: {:.1} ms", i + 1, d.as_secs_f64() * 1000.0);
        times.push(d);
    }
    times.sort();
    println!(
        "cold start: median {:.1} ms over {} runs",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.len()
    );
    Ok(())
}
