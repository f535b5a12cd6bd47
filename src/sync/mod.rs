//! S3 sync: the background uploader that drains the store's outbox into the
//! original service's bucket layout, and `chats3 restore --from-s3`, which
//! rebuilds an empty data directory from such a bucket.
//!
//! - [`client`]: the aws-sdk-s3 client with explicit timeouts; put / get /
//!   list (flat or by level) / presigned GET. The only file that talks to the SDK.
//! - [`layout`]: object keys and NDJSON segments (pure).
//! - [`backoff`]: retry delays with jitter (pure).
//! - [`uploader`]: the background task (outbox → bucket), lag figures.
//! - [`restore`]: bucket → empty data directory (parallel, resumable).
//!
//! This module reads the store and writes the bucket; it never touches HTTP
//! and never blocks a request: users are served from the store alone.

pub mod backoff;
pub mod client;
pub mod layout;
pub mod restore;
pub mod uploader;

use std::path::{Path, PathBuf};

pub use client::{S3, attachment_key};

use crate::store::StoreError;

/// Everything that can go wrong while syncing or restoring.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("S3 {op} of {key}: {message}")]
    S3 {
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("cannot presign {key}: {message}")]
    Presign { key: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object {key} is not valid: {reason}")]
    BadObject { key: String, reason: String },
    #[error("S3 is not configured (set S3_BUCKET or [s3] bucket)")]
    NotConfigured,
    #[error(
        "data directory {0} is not empty; restore only fills an empty (or missing) directory, or resumes its own interrupted restore"
    )]
    NotEmpty(PathBuf),
    #[error(
        "data directory {dir} already holds a complete restore of bucket {bucket} (finished {finished_at}); restore never merges: remove the directory to restore again"
    )]
    AlreadyRestored {
        dir: PathBuf,
        bucket: String,
        finished_at: String,
    },
    #[error("cannot resume the interrupted restore in {dir}: {reason}")]
    CannotResume { dir: PathBuf, reason: String },
}

impl SyncError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        SyncError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
