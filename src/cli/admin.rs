//! Operator commands (`chats3 admin …`, `chats3 backup`) that talk to the
//! running server's admin API, so they work while it holds the store.

use std::path::Path;

use anyhow::{Context, bail};
use futures_util::StreamExt;
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
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(base: &str, password: String) -> anyhow::Result<Self> {
        // Operators talk to their own server, often by IP with a self-signed certificate.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            password,
            http,
        })
    }

    async fn call(&self, path: &str, mut body: Value) -> anyhow::Result<Value> {
        body["adminPassword"] = json!(self.password);
        let url = format!("{}/api/v1/admin/{path}", self.base);
        let res = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("while calling {url}"))?;
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
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("while creating {}", dir.display()))?;
        let url = format!("{}/api/v1/admin/backup", self.base);
        let res = self
            .http
            .post(&url)
            .json(&json!({ "adminPassword": self.password }))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("backup refused: {}", res.status());
        }
        let tmp = dir.join("backup.ndjson.partial");
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut stream = res.bytes_stream();
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
        let last = String::from_utf8_lossy(&tail);
        if !last
            .trim_end()
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.contains("\"kind\":\"end\""))
        {
            bail!("the backup is incomplete (no end record)");
        }
        tokio::fs::rename(&tmp, dir.join("backup.ndjson")).await?;
        Ok(n)
    }
}
