//! The HTTP side: one HTTP/1.1 connection per worker (hyper's connection-level
//! client, no shared pool to contend on), requests of the public v1 API, and the
//! setup calls (create a conversation, join it) that every scenario needs.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpSocket;

/// A sender half of one HTTP/1.1 connection.
pub type Conn = SendRequest<Full<Bytes>>;

/// Where the server is and how to administer it.
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` for the `Host` header.
    pub authority: String,
    pub admin_password: String,
}

impl Target {
    /// Parses `http://host:port` (plain HTTP only) and resolves it once.
    pub async fn resolve(url: &str, admin_password: String) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad --target {url}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("--target must be an http:// URL (put TLS in front of the server, not here)");
        }
        let authority = uri
            .authority()
            .context("--target needs a host")?
            .to_string();
        let with_port = if uri.port().is_some() {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await?
            .next()
            .with_context(|| format!("cannot resolve {with_port}"))?;
        Ok(Self {
            addr,
            authority,
            admin_password,
        })
    }

    /// Opens a connection, bound to `source` when given (to spread many
    /// connections over several loopback addresses and their port ranges).
    pub async fn connect(&self, source: Option<IpAddr>) -> anyhow::Result<Conn> {
        self.connect_with(source, None).await
    }

    /// [`Target::connect`], with the socket's receive buffer set to
    /// `recv_buffer` bytes before connecting (the kernel doubles it), so a
    /// client that stops reading makes the server's writes stall sooner.
    pub async fn connect_with(
        &self,
        source: Option<IpAddr>,
        recv_buffer: Option<u32>,
    ) -> anyhow::Result<Conn> {
        let sock = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(bytes) = recv_buffer {
            sock.set_recv_buffer_size(bytes)?;
        }
        if let Some(ip) = source {
            sock.bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding source address {ip}"))?;
        }
        let stream = sock
            .connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // The connection ends when the server or the last sender closes it.
            let _ = conn.await;
        });
        Ok(tx)
    }

    /// A request with the `Host` header, an optional session and an optional JSON body.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        session: Option<&str>,
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(s) = session {
            b = b.header("x-session-id", s);
        }
        let body = match body {
            Some(json) => {
                b = b.header(hyper::header::CONTENT_TYPE, "application/json");
                json
            }
            None => Bytes::new(),
        };
        // Method, path and header values come from this program and are valid.
        b.body(Full::new(body)).expect("valid request")
    }
}

/// Sends a request once the connection is ready.
pub async fn send(
    conn: &mut Conn,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<Response<Incoming>> {
    conn.ready().await?;
    Ok(conn.send_request(req).await?)
}

/// Sends a request and reads the whole answer.
pub async fn call(
    conn: &mut Conn,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let res = send(conn, req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `details` of a successful envelope, or an error naming the call and the answer.
fn details(what: &str, status: StatusCode, body: &[u8]) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_slice(body)
        .with_context(|| format!("{what}: answer {status} is not JSON"))?;
    if !status.is_success() {
        bail!("{what}: {status} {}", v["message"]);
    }
    Ok(v["details"].clone())
}

fn string(v: &Value, key: &str, what: &str) -> anyhow::Result<String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{what}: answer has no {key}"))
}

/// A conversation the generator may join.
#[derive(Clone)]
pub struct Conversation {
    pub id: String,
    pub join_code: String,
}

/// Creates a conversation (a fresh id when `id` is `None`); an existing `id`
/// is reused through the admin details call.
pub async fn conversation(
    t: &Target,
    conn: &mut Conn,
    id: Option<&str>,
) -> anyhow::Result<Conversation> {
    let mut body = json!({ "adminPassword": t.admin_password });
    if let Some(id) = id {
        body["conversationId"] = json!(id);
    }
    let req = t.request(
        Method::POST,
        "/api/v1/admin/conversations",
        None,
        Some(body.to_string().into()),
    );
    let (status, raw) = call(conn, req).await?;
    let d = match (status, id) {
        (StatusCode::CONFLICT, Some(id)) => {
            let body = json!({ "adminPassword": t.admin_password }).to_string();
            let req = t.request(
                Method::POST,
                &format!("/api/v1/admin/conversations/{id}"),
                None,
                Some(body.into()),
            );
            let (status, raw) = call(conn, req).await?;
            details("admin conversation details", status, &raw)?
        }
        _ => details("create conversation", status, &raw)?,
    };
    Ok(Conversation {
        id: string(&d, "conversationId", "create conversation")?,
        join_code: string(&d, "joinCode", "create conversation")?,
    })
}

/// A joined participant.
#[derive(Clone)]
pub struct Session {
    pub session_id: String,
}

pub async fn join(
    t: &Target,
    conn: &mut Conn,
    c: &Conversation,
    name: &str,
) -> anyhow::Result<Session> {
    let body = json!({ "conversationId": c.id, "joinCode": c.join_code, "displayName": name });
    let req = t.request(
        Method::POST,
        "/api/v1/join",
        None,
        Some(body.to_string().into()),
    );
    let (status, raw) = call(conn, req).await?;
    let d = details("join", status, &raw)?;
    Ok(Session {
        session_id: string(&d, "sessionId", "join")?,
    })
}

/// Joins `names.len()` participants into `c` over `parallel` connections.
pub async fn join_many(
    t: &std::sync::Arc<Target>,
    c: &Conversation,
    names: Vec<String>,
    parallel: usize,
) -> anyhow::Result<Vec<Session>> {
    let n = names.len();
    let names = std::sync::Arc::new(names);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel.clamp(1, n.max(1)) {
        let (t, c, names, next) = (t.clone(), c.clone(), names.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = t.connect(None).await?;
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names.get(i) else {
                    return anyhow::Ok(out);
                };
                out.push((i, join(&t, &mut conn, &c, name).await?));
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, s)| s).collect())
}

/// A short run id so display names of different runs never collide.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    format!("{:x}", nanos ^ std::process::id())
}
