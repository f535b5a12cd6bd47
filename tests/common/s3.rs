//! An in-process S3 server (s3s-fs 0.14.1 over real HTTP on 127.0.0.1, SigV4
//! checked against one key pair) that can be stopped and rebound on the same
//! port and root, plus helpers to read what chats3 wrote to it.
//! Included by the S3 test binaries with `#[path = "common/s3.rs"] mod s3;`.
#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use s3s_fs::FileSystem;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::common::Client;

pub const ACCESS_KEY: &str = "test";
pub const SECRET_KEY: &str = "testtesttest";

pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    /// Holds requests past a limit (see [`Gate::hold_after`]).
    pub gate: Arc<Gate>,
    _tmp: tempfile::TempDir,
    task: Option<JoinHandle<()>>,
}

/// Lets requests through up to a limit, then holds them until released: a
/// client (a restore) can be caught part way, its requests hanging.
pub struct Gate {
    passed: AtomicUsize,
    limit: AtomicUsize,
    opened: Notify,
}

impl Gate {
    fn new() -> Self {
        Gate {
            passed: AtomicUsize::new(0),
            limit: AtomicUsize::new(usize::MAX),
            opened: Notify::new(),
        }
    }

    /// Counts requests from now on and holds every one after the first `n`.
    pub fn hold_after(&self, n: usize) {
        self.passed.store(0, SeqCst);
        self.limit.store(n, SeqCst);
    }

    /// Lets every request through again, held ones too.
    pub fn release(&self) {
        self.limit.store(usize::MAX, SeqCst);
        self.opened.notify_waiters();
    }

    /// Requests counted since [`Gate::hold_after`], held ones included.
    pub fn passed(&self) -> usize {
        self.passed.load(SeqCst)
    }

    async fn pass(&self) {
        let n = self.passed.fetch_add(1, SeqCst) + 1;
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if n <= self.limit.load(SeqCst) {
                return;
            }
            opened.await;
        }
    }
}

async fn serve(root: &Path, port: u16, gate: Arc<Gate>) -> (u16, JoinHandle<()>) {
    let mut b = S3ServiceBuilder::new(FileSystem::new(root).unwrap());
    b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let s3 = b.build();
    let service = hyper::service::service_fn(move |req| {
        let (s3, gate) = (s3.clone(), Arc::clone(&gate));
        async move {
            gate.pass().await;
            hyper::service::Service::call(&s3, req).await
        }
    });
    // Rebinding right after an abort can race the old socket's close: retry briefly.
    let mut tries = 0;
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(e) if tries < 50 => {
                tries += 1;
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot bind S3 port {port}: {e}"),
        }
    };
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        // Dropping the set on abort closes every connection.
        let mut conns = JoinSet::new();
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            // As S3 front ends do: without it, a response whose body follows
            // its head in a second write waits for the client's delayed ACK
            // (Nagle), up to 40 ms per small object. `S3_TEST_NAGLE=1` leaves
            // it off, as this server had it before (BENCHMARKS.md, restore).
            if std::env::var_os("S3_TEST_NAGLE").is_none() {
                let _ = sock.set_nodelay(true);
            }
            let conn = http
                .serve_connection(TokioIo::new(sock), service.clone())
                .into_owned();
            conns.spawn(async move {
                let _ = conn.await;
            });
            while conns.try_join_next().is_some() {}
        }
    });
    (port, task)
}

impl S3Server {
    /// Starts on a free port with a fresh root holding `buckets`.
    pub async fn start(buckets: &[&str]) -> S3Server {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for b in buckets {
            std::fs::create_dir(root.join(b)).unwrap();
        }
        let gate = Arc::new(Gate::new());
        let (port, task) = serve(&root, 0, Arc::clone(&gate)).await;
        S3Server {
            port,
            root,
            gate,
            _tmp: tmp,
            task: Some(task),
        }
    }

    /// Outage: stops accepting and drops every open connection.
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Back on the same port with the same data.
    pub async fn restart(&mut self) {
        self.stop();
        tokio::task::yield_now().await;
        let (_, task) = serve(&self.root, self.port, Arc::clone(&self.gate)).await;
        self.task = Some(task);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn config(&self, bucket: &str) -> chats3::config::S3Config {
        chats3::config::S3Config {
            bucket: bucket.into(),
            region: "us-east-1".into(),
            endpoint: Some(self.endpoint()),
            access_key: Some(ACCESS_KEY.into()),
            secret_key: Some(chats3::config::Secret::new(SECRET_KEY)),
            force_path_style: true,
        }
    }

    /// Environment for the `chats3` binary.
    pub fn env(&self, bucket: &str) -> Vec<(String, String)> {
        vec![
            ("S3_BUCKET".into(), bucket.into()),
            ("S3_ENDPOINT".into(), self.endpoint()),
            ("S3_REGION".into(), "us-east-1".into()),
            ("S3_ACCESS_KEY".into(), ACCESS_KEY.into()),
            ("S3_SECRET_KEY".into(), SECRET_KEY.into()),
            ("S3_FORCE_PATH_STYLE".into(), "true".into()),
        ]
    }

    pub async fn client(&self, bucket: &str) -> chats3::sync::S3 {
        chats3::sync::S3::new(&self.config(bucket)).await
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every message NDJSON object of `conv`: (key, one JSON value per line).
pub async fn segments(s3: &chats3::sync::S3, conv: &str) -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    for o in s3
        .list(&format!("conversations/{conv}/messages/"))
        .await
        .unwrap()
    {
        let body = s3.get(&o.key).await.unwrap().unwrap();
        let lines = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        out.push((o.key, lines));
    }
    out
}

/// The messageIds across all segments, in bucket order (duplicates kept).
pub fn ids_in(segments: &[(String, Vec<Value>)]) -> Vec<String> {
    segments
        .iter()
        .flat_map(|(_, lines)| lines.iter())
        .map(|m| m["messageId"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `/health` reports an empty S3 outbox.
pub async fn wait_synced(server: &Client, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let h = server.get("/health").await;
        let pending = h.body["details"]["s3"]["pendingItems"].as_u64();
        if pending == Some(0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "S3 sync did not catch up: {}",
            h.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every message of the session's conversation through the API, oldest first.
pub async fn history(c: &Client) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut before = String::new();
    loop {
        let r = c
            .get(&format!("/api/v1/messages?limit=500&before={before}"))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.details().as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        before = page[0]["seq"].to_string();
        let mut page = page;
        page.extend(all);
        all = page;
    }
    all
}
