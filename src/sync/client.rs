//! The S3 client: aws-sdk-s3 built from [`S3Config`] with explicit timeouts
//! (the SDK has no read or operation timeout by default, so a frozen server
//! would hang a call forever), path-style addressing for custom endpoints, and
//! static credentials when configured (the SDK's default chain otherwise).
//! The only file that knows the SDK; everything else sees [`S3`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::{SyncError, layout};
use crate::config::S3Config;

/// Connecting to S3 may take this long before an attempt fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One attempt of a small request (JSON, NDJSON segments, listing).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// One attempt of an attachment transfer (up to the upload limit, 10 MB by default).
pub const FILE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts per call, SDK retries included; the uploader adds its own backoff on top.
const MAX_ATTEMPTS: u32 = 3;

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// A handle on the configured bucket; cheap to clone (the SDK client is an `Arc` inside).
#[derive(Clone)]
pub struct S3 {
    client: aws_sdk_s3::Client,
    bucket: Arc<str>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3").field("bucket", &self.bucket).finish()
    }
}

/// `conversations/{c}/attachments/{a}/original`.
pub fn attachment_key(conv: &str, attachment: &str) -> String {
    layout::attachment_original_key(conv, attachment)
}

fn timeouts(attempt: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .build()
}

fn s3_error<E, R>(op: &'static str, key: &str, e: SdkError<E, R>) -> SyncError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    SyncError::S3 {
        op,
        key: key.to_string(),
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// Per-operation override for whole-file transfers: a longer attempt timeout.
fn file_transfer_override() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(timeouts(FILE_ATTEMPT_TIMEOUT))
}

impl S3 {
    /// Builds the client. Makes no request: an unreachable S3 shows up as
    /// failed uploads (and lag), never as a failed start.
    pub async fn new(cfg: &S3Config) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()));
        if let Some(endpoint) = &cfg.endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        match (&cfg.access_key, &cfg.secret_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.clone(),
                    secret.expose().to_string(),
                    None,
                    None,
                    "chats3-config",
                ));
            }
            (None, None) => {}
            _ => tracing::warn!(
                "only one of S3_ACCESS_KEY / S3_SECRET_KEY is set; using the default AWS credential chain"
            ),
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            // Custom endpoints (MinIO, s3s, localhost) rarely resolve bucket subdomains.
            .force_path_style(cfg.force_path_style || cfg.endpoint.is_some())
            .timeout_config(timeouts(ATTEMPT_TIMEOUT))
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .build();
        S3 {
            client: aws_sdk_s3::Client::from_conf(conf),
            bucket: cfg.bucket.as_str().into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Writes a small object (overwrites).
    pub async fn put(&self, key: &str, body: Bytes, content_type: &str) -> Result<(), SyncError> {
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("put", key, e))?;
        Ok(())
    }

    /// Writes a file as an object, streamed from disk (overwrites).
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        content_type: &str,
    ) -> Result<(), SyncError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| SyncError::io(path, std::io::Error::other(e)))?;
        self.client
            .put_object()
            .bucket(&*self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .customize()
            .config_override(file_transfer_override())
            .send()
            .await
            .map_err(|e| s3_error("put", key, e))?;
        Ok(())
    }

    /// Reads a small object whole; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, SyncError> {
        let resp = match self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("get", key, e)),
        };
        let body = resp.body.collect().await.map_err(|e| SyncError::S3 {
            op: "get",
            key: key.to_string(),
            message: e.to_string(),
        })?;
        Ok(Some(body.into_bytes()))
    }

    /// Streams an object into a new file at `path`; returns its size.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64, SyncError> {
        let resp = self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .customize()
            .config_override(file_transfer_override())
            .send()
            .await
            .map_err(|e| s3_error("get", key, e))?;
        let mut body = resp.body;
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| SyncError::io(path, e))?;
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|e| SyncError::S3 {
            op: "get",
            key: key.to_string(),
            message: e.to_string(),
        })? {
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| SyncError::io(path, e))?;
        }
        file.sync_all().await.map_err(|e| SyncError::io(path, e))?;
        Ok(size)
    }

    /// Every object under `prefix`, in key order (all pages).
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, SyncError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&*self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("list", prefix, e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.push(Listed {
                        key: key.to_string(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    });
                }
            }
        }
        Ok(out)
    }

    /// A presigned GET URL for `key`, valid for `ttl` (attachments use 15 min).
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String, SyncError> {
        let presign_error = |message: String| SyncError::Presign {
            key: key.to_string(),
            message,
        };
        let config = PresigningConfig::expires_in(ttl).map_err(|e| presign_error(e.to_string()))?;
        let req = self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| presign_error(DisplayErrorContext(&e).to_string()))?;
        Ok(req.uri().to_string())
    }
}
