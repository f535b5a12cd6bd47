//! Operator commands (`chats3 admin …`, `chats3 backup`) that talk to the
//! running server's admin API, so they work while it holds the store.
//!
//! TLS certificates are verified unless the operator asks for `insecure`. A
//! backup holds live session ids, so its file is created with mode 0600.

use std::path::Path;

use anyhow::{Context, bail};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::config::Config;

/// The admin password: configured, or the one generated into the data directory.
pub fn admin_password(config: &Config) -> anyhow::Result<String> {
    if let Some(p) = &config.admin_password {
        return Ok(p.expose().to_string());
    }
    let path = config.data_dir.join("admin-password");
    let p = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no ADMIN_PASSWORD configured and {} is unreadable",
            path.display()
        )
    })?;
    Ok(p.trim().to_string())
}

/// The server's base URL as seen from this machine.
pub fn default_base_url(config: &Config) -> String {
    let host = if config.host.is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.host.to_string()
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}:{}", config.port)
}

pub struct AdminClient {
    base: String,
    password: String,
    insecure: bool,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for the server at `base`; `insecure` skips TLS certificate verification.
    pub fn new(base: &str, password: String, insecure: bool) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(insecure)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            password,
            insecure,
            http,
        })
    }

    /// POSTs `body` with the admin password to `/api/v1/admin/{path}`.
    async fn send(&self, path: &str, mut body: Value) -> anyhow::Result<reqwest::Response> {
        body["adminPassword"] = json!(self.password);
        let url = format!("{}/api/v1/admin/{path}", self.base);
        self.http.post(&url).json(&body).send().await.map_err(|e| {
            let hint = self.tls_hint(&e);
            anyhow::Error::new(e).context(format!("while calling {url}{hint}"))
        })
    }

    /// What to try when a verified TLS connection could not be made.
    fn tls_hint(&self, e: &reqwest::Error) -> &'static str {
        if e.is_connect() && !self.insecure && self.base.starts_with("https:") {
            " (the server's certificate is verified: use --url with a name it is issued for, or --insecure)"
        } else {
            ""
        }
    }

    async fn call(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let res = self.send(path, body).await?;
        let status = res.status();
        let v: Value = res.json().await.context("the server did not answer JSON")?;
        if !status.is_success() {
            bail!(
                "{status}: {}",
                v["message"].as_str().unwrap_or("request failed")
            );
        }
        Ok(v["details"].clone())
    }

    pub async fn create(&self, id: Option<&str>) -> anyhow::Result<Value> {
        self.call("conversations", json!({ "conversationId": id }))
            .await
    }

    pub async fn close(&self, id: &str) -> anyhow::Result<Value> {
        self.call(&format!("conversations/{id}/close"), json!({}))
            .await
    }

    pub async fn list(&self) -> anyhow::Result<Value> {
        self.call("list-conversations", json!({})).await
    }

    /// Streams a consistent backup from the server into `dir/backup.ndjson`.
    pub async fn backup(&self, dir: &Path) -> anyhow::Result<u64> {
        let res = self.send("backup", json!({})).await?;
        if !res.status().is_success() {
            bail!("backup refused: {}", res.status());
        }
        write_backup(dir, res.bytes_stream()).await
    }
}

/// Writes a backup stream to `dir/backup.ndjson` (mode 0600, in a directory
/// created 0700): fsynced, and renamed into place only when it ends with the
/// `end` record. Returns the number of bytes.
pub async fn write_backup<E>(
    dir: &Path,
    mut stream: impl Stream<Item = Result<bytes::Bytes, E>> + Unpin,
) -> anyhow::Result<u64>
where
    E: std::error::Error + Send + Sync + 'static,
{
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await
        .with_context(|| format!("while creating {}", dir.display()))?;
    let tmp = dir.join("backup.ndjson.partial");
    let mut file = create_private(&tmp).await?;
    let mut n = 0u64;
    let mut tail = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("the backup stream broke off")?;
        n += chunk.len() as u64;
        tail.extend_from_slice(&chunk);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    if !ends_with_end_record(&tail) {
        bail!("the backup is incomplete (no end record)");
    }
    tokio::fs::rename(&tmp, dir.join("backup.ndjson")).await?;
    Ok(n)
}

/// Creates (or truncates) `path` readable by its owner only, also when a
/// previous attempt left it with a wider mode.
async fn create_private(path: &Path) -> anyhow::Result<tokio::fs::File> {
    use std::os::unix::fs::PermissionsExt;
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .with_context(|| format!("while creating {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .await?;
    Ok(file)
}

fn ends_with_end_record(tail: &[u8]) -> bool {
    String::from_utf8_lossy(tail)
        .trim_end()
        .rsplit('\n')
        .next()
        .is_some_and(|l| l.contains("\"kind\":\"end\""))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chunks(parts: &[&'static str]) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p.as_bytes()))),
        )
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_backup_is_written_readable_by_its_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        let body = [
            "{\"kind\":\"manifest\"}\n",
            "{\"kind\":\"end\",\"kv\":0,\"files\":0}\n",
        ];
        let n = write_backup(&dir, chunks(&body)).await.unwrap();
        assert_eq!(n, body.concat().len() as u64);
        assert_eq!(mode(&dir.join("backup.ndjson")), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }

    #[tokio::test]
    async fn a_stale_partial_file_is_narrowed_to_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("backup.ndjson.partial");
        std::fs::write(&partial, "old").unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = write_backup(tmp.path(), chunks(&["{\"kind\":\"kv\"}\n"]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("incomplete"), "{err}");
        assert_eq!(mode(&partial), 0o600);
    }
}
