//! Test harness: start the real server (in-process on a free loopback port, or
//! as the `chats3` binary), a small JSON client, and an SSE reader.
#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

pub const ADMIN: &str = "test-admin-password";

pub struct Server {
    pub base: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn test_config(dir: &Path) -> chats3::Config {
    chats3::Config {
        host: "127.0.0.1".parse().unwrap(),
        port: 0,
        data_dir: dir.to_path_buf(),
        admin_password: Some(chats3::config::Secret::new(ADMIN)),
        rate_limit_per_min: 0,
        admin_rate_limit_per_min: 0,
        ..Default::default()
    }
}

impl Server {
    /// Starts an in-process server with a fresh data directory.
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut chats3::Config)) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Self::start_in(tmp.path(), tweak).await;
        s._tmp = Some(tmp);
        s
    }

    /// Starts an in-process server on an existing data directory.
    pub async fn start_in(dir: &Path, tweak: impl FnOnce(&mut chats3::Config)) -> Server {
        let mut cfg = test_config(dir);
        tweak(&mut cfg);
        let app = chats3::App::build(cfg).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Server {
            base,
            dir: dir.to_path_buf(),
            _tmp: None,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Graceful shutdown; waits until the store is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.base)
    }
}

/// The `chats3` binary serving `dir` on a free loopback port, with the test
/// admin password, no rate limits and nothing else from the environment.
pub fn server_command(dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chats3"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("CHATS3_DATA_DIR", dir)
        .env("ADMIN_PASSWORD", ADMIN)
        .env("RATE_LIMIT_PER_MIN", "0")
        .env("ADMIN_RATE_LIMIT_PER_MIN", "0")
        .env("RUST_LOG", "warn");
    cmd
}

/// The `chats3` binary running as a child process.
pub struct Proc {
    pub child: tokio::process::Child,
    pub base: String,
    /// Its log (standard error) so far, also passed on to the test's standard error.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    pub async fn spawn(dir: &Path, env: &[(&str, &str)]) -> Proc {
        let mut cmd = server_command(dir);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = std::sync::Arc::<std::sync::Mutex<String>>::default();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = stderr.next_line().await {
                eprintln!("{l}");
                let mut kept = kept.lock().unwrap();
                kept.push_str(&l);
                kept.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(l) = lines.next_line().await.unwrap() {
                if let Some(url) = l.strip_prefix("chats3 listening on ") {
                    return url.to_string();
                }
            }
            panic!("server exited before listening");
        })
        .await
        .expect("server did not start in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Proc { child, base, log }
    }

    /// Waits until the server has logged a line containing `needle`.
    pub async fn logged(&self, needle: &str, within: Duration) {
        until(
            within,
            &format!("the server to log {needle:?}"),
            async || self.log.lock().unwrap().contains(needle).then_some(()),
        )
        .await
    }

    pub fn pid(&self) -> i32 {
        self.child.id().unwrap() as i32
    }

    pub async fn kill9(mut self) {
        send_signal(self.pid(), 9);
        let _ = self.child.wait().await;
    }

    pub async fn sigterm(mut self) -> std::process::ExitStatus {
        send_signal(self.pid(), 15);
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap()
            .unwrap()
    }
}

fn send_signal(pid: i32, sig: i32) {
    let st = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub session: Option<String>,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn details(&self) -> &Value {
        &self.body["details"]
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Client {
            base: base.to_string(),
            http,
            session: None,
        }
    }

    pub fn with_session(&self, sid: &str) -> Client {
        Client {
            session: Some(sid.to_string()),
            ..self.clone()
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(s) = &self.session {
            r = r.header("x-session-id", s);
        }
        r
    }

    pub async fn send(&self, r: reqwest::RequestBuilder) -> Resp {
        let res = r.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(reqwest::Method::GET, path)).await
    }

    /// GET with `Authorization: Bearer <token>` (e.g. `/metrics`).
    pub async fn get_with_bearer(&self, path: &str, token: &str) -> Resp {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .bearer_auth(token);
        self.send(r).await
    }

    /// GET authenticated by the `sessionId` cookie instead of the header.
    pub async fn get_with_cookie(&self, path: &str, session_id: &str) -> Resp {
        let r = self
            .http
            .get(format!("{}{}", self.base, path))
            .header("cookie", format!("sessionId={session_id}"));
        self.send(r).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.req(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        self.send(
            self.req(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    pub async fn create_conversation(&self, id: &str) -> Value {
        let r = self
            .post(
                "/api/v1/admin/conversations",
                json!({"adminPassword": ADMIN, "conversationId": id}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.details().clone()
    }

    /// Joins `conv` as `name`; returns a client carrying the session and the user id.
    pub async fn join(&self, conv: &Value, name: &str) -> (Client, String) {
        let r = self
            .post(
                "/api/v1/join",
                json!({"conversationId": conv["conversationId"], "joinCode": conv["joinCode"], "displayName": name}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let d = r.details();
        (
            self.with_session(d["sessionId"].as_str().unwrap()),
            d["userId"].as_str().unwrap().to_string(),
        )
    }

    pub async fn say(&self, body: &str) -> Value {
        let r = self
            .post(
                "/api/v1/messages",
                json!({"type": "text", "body": body, "clientTimestamp": "2026-01-01T00:00:00Z"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.details().clone()
    }

    /// The whole history, oldest first, paging back with `before`.
    pub async fn all_messages(&self) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        let mut before = String::new();
        loop {
            let r = self
                .get(&format!("/api/v1/messages?limit=500{before}"))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let mut page = r.details().as_array().unwrap().clone();
            let more = r.body["meta"]["page"]["hasMore"].as_bool().unwrap();
            if let Some(first) = page.first() {
                before = format!("&before={}", first["seq"]);
            }
            page.append(&mut all);
            all = page;
            if !more {
                return all;
            }
        }
    }

    /// Opens the SSE stream with optional extra headers / query.
    pub async fn sse(&self, query: &str, headers: &[(&str, &str)]) -> Sse {
        let mut r = self.req(reqwest::Method::GET, &format!("/api/v1/signaling{query}"));
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        let res = r.send().await.unwrap();
        assert_eq!(res.status(), 200, "SSE refused");
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        Sse {
            stream: Box::pin(res.bytes_stream()),
            buf: String::new(),
            raw: String::new(),
            ended: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub id: Option<u64>,
    pub data: Value,
}

impl Event {
    pub fn kind(&self) -> &str {
        self.data["type"].as_str().unwrap_or("")
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

pub struct Sse {
    stream: ByteStream,
    buf: String,
    /// Everything received, for assertions on comments and `retry:`.
    pub raw: String,
    /// The server closed the stream.
    pub ended: bool,
}

impl Sse {
    /// Next event with a `data:` line, or `None` on timeout / end of stream.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("event data is JSON"));
                    }
                }
                if let Some(data) = data {
                    return Some(Event { id, data });
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    let s = String::from_utf8(chunk.to_vec()).unwrap();
                    self.raw.push_str(&s);
                    self.buf.push_str(&s);
                }
                Ok(_) => {
                    self.ended = true;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// Next event of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str, within: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next(left).await?;
            if e.kind() == kind {
                return Some(e);
            }
        }
    }

    /// All events arriving within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Event> {
        let mut v = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => v.push(e),
                None => return v,
            }
        }
    }
}

pub const SEC: Duration = Duration::from_secs(1);

/// Polls `check` every 50 ms until it gives `Some`, and returns that; panics
/// naming `what` once `within` has passed. For waiting on something the test
/// can observe instead of sleeping for a guessed time.
pub async fn until<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// base64url HMAC-SHA256 of `msg`, as integrators sign tickets and system messages.
pub fn hmac_b64url(secret: &str, msg: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Wall-clock epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A multipart form with one file part, `file`.
pub fn file_form(bytes: Vec<u8>, name: &str, mime: &str) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap();
    reqwest::multipart::Form::new().part("file", part)
}

impl Client {
    /// `POST /api/v1/attachments` with `form`, as this client's session.
    pub async fn upload(&self, form: reqwest::multipart::Form) -> Resp {
        let r = self
            .http
            .post(format!("{}/api/v1/attachments", self.base))
            .header("x-session-id", self.session.as_deref().unwrap())
            .multipart(form);
        self.send(r).await
    }

    /// One sample of `/metrics` (scraped with `token`), 0 when absent.
    pub async fn metric(&self, token: &str, name: &str) -> f64 {
        let r = self.get_with_bearer("/metrics", token).await;
        let text = r.body.as_str().unwrap_or_default().to_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}
