//! The S3 client: aws-sdk-s3 built from [`S3Config`] with explicit timeouts
//! (the SDK has no read or operation timeout by default, so a frozen server
//! would hang a call forever), path-style addressing for custom endpoints, and
//! static credentials when configured (the SDK's default chain otherwise).
//! The only file that knows the SDK; everything else sees [`S3`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
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

/// One level of a listing with delimiter `/`: the objects directly under the
/// prefix and the sub-prefixes (each ending in `/`), both in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    pub objects: Vec<Listed>,
    pub prefixes: Vec<String>,
}

/// What reading one object gave, for callers that go on past an object S3
/// refuses to serve (restore lists it and continues).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched<T> {
    Found(T),
    /// No such key (deleted since it was listed).
    Missing,
    /// S3 answered with a client error about this object (archived storage
    /// class, …): asking again will not help.
    Refused(String),
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

/// Is this error S3's answer about one object that asking again will not
/// change? A client error (4xx) — but not 408 or 429, which say "later", nor
/// 401 or 403 (access denied: credentials or a policy, fixed for the whole
/// bucket at once, so an error), except 403 `InvalidObjectState`: an archived
/// object (Glacier) that cannot be read without restoring it first.
fn refused_object<E>(e: &SdkError<E, HttpResponse>) -> Option<u16>
where
    E: ProvideErrorMetadata,
{
    let SdkError::ServiceError(ctx) = e else {
        return None;
    };
    let status = ctx.raw().status().as_u16();
    let archived = ctx.err().code() == Some("InvalidObjectState");
    let refused = match status {
        401 | 408 | 429 => false,
        403 => archived,
        _ => (400..500).contains(&status),
    };
    refused.then_some(status)
}

fn refusal_or_error<T, E>(key: &str, e: SdkError<E, HttpResponse>) -> Result<Fetched<T>, SyncError>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    match refused_object(&e) {
        Some(404) => Ok(Fetched::Missing),
        Some(_) => Ok(Fetched::Refused(DisplayErrorContext(&e).to_string())),
        None => Err(s3_error("get", key, e)),
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
        match self.fetch(key).await? {
            Fetched::Found(b) => Ok(Some(b)),
            Fetched::Missing => Ok(None),
            Fetched::Refused(message) => Err(SyncError::S3 {
                op: "get",
                key: key.to_string(),
                message,
            }),
        }
    }

    /// Streams an object into a new file at `path` (created or truncated);
    /// its size, or why there is none (as [`S3::fetch`]).
    pub async fn fetch_to_file(&self, key: &str, path: &Path) -> Result<Fetched<u64>, SyncError> {
        let resp = match self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .customize()
            .config_override(file_transfer_override())
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return refusal_or_error(key, e),
        };
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
        Ok(Fetched::Found(size))
    }

    /// Reads a small object whole, telling an object S3 refuses to serve (see
    /// [`Fetched::Refused`]) apart from failures, which are errors: network,
    /// timeouts, 5xx (worth retrying), access denied (worth fixing).
    pub async fn fetch(&self, key: &str) -> Result<Fetched<Bytes>, SyncError> {
        let resp = match self
            .client
            .get_object()
            .bucket(&*self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return refusal_or_error(key, e),
        };
        let body = resp.body.collect().await.map_err(|e| SyncError::S3 {
            op: "get",
            key: key.to_string(),
            message: e.to_string(),
        })?;
        Ok(Fetched::Found(body.into_bytes()))
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

    /// One level under `prefix` (delimiter `/`, all pages). Listing a tree
    /// level by level lets its branches be listed in parallel.
    pub async fn list_level(&self, prefix: &str) -> Result<Level, SyncError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&*self.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        let mut out = Level::default();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("list", prefix, e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.objects.push(Listed {
                        key: key.to_string(),
                        size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    });
                }
            }
            for p in page.common_prefixes() {
                if let Some(p) = p.prefix() {
                    out.prefixes.push(p.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    fn answer(status: u16, code: &str) -> SdkError<GetObjectError, HttpResponse> {
        let err = GetObjectError::generic(ErrorMetadata::builder().code(code).build());
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn only_answers_about_one_object_are_refusals() {
        assert_eq!(refused_object(&answer(404, "NoSuchKey")), Some(404));
        assert_eq!(
            refused_object(&answer(403, "InvalidObjectState")),
            Some(403)
        );
        assert_eq!(refused_object(&answer(400, "InvalidArgument")), Some(400));
        // Worth fixing or retrying: errors, not skipped objects.
        for (status, code) in [
            (403, "AccessDenied"),
            (401, "Unauthorized"),
            (429, "SlowDown"),
            (408, "RequestTimeout"),
            (503, "SlowDown"),
            (500, "InternalError"),
        ] {
            assert_eq!(
                refused_object(&answer(status, code)),
                None,
                "{status} {code}"
            );
        }
        assert!(matches!(
            refusal_or_error::<Bytes, _>("k", answer(404, "NoSuchKey")),
            Ok(Fetched::Missing)
        ));
        assert!(matches!(
            refusal_or_error::<Bytes, _>("k", answer(403, "AccessDenied")),
            Err(SyncError::S3 { .. })
        ));
    }
}
