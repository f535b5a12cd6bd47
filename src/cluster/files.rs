//! Attachment bytes in the JetStream object store `chats3_files`: an upload
//! is stored there before it is acknowledged, and a node asked for bytes it
//! does not hold (a download, the S3 sync on the lease holder) copies them to
//! its disk first. Objects are named by attachment id.

use std::path::Path;

use async_nats::jetstream::object_store::GetErrorKind;
use tokio::io::AsyncReadExt;

use super::Cluster;
use crate::attachments::blob::{BlobError, BlobSource, BlobWriter};
use crate::store::StoreError;

/// Stores the committed upload at `path` as object `id`.
pub async fn put(c: &Cluster, id: &str, path: &Path) -> Result<(), StoreError> {
    let files = &c.resources().await?.files;
    c.connected()?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?;
    files
        .put(id, &mut file)
        .await
        .map(drop)
        .map_err(|e| c.unavailable("NATS did not take the attachment", e))
}

/// Removes object `id` (best effort: an upload whose record was refused).
pub async fn delete(c: &Cluster, id: &str) {
    if let Ok(r) = c.resources().await
        && let Err(e) = r.files.delete(id).await
    {
        tracing::warn!(attachment = id, error = %e, "cluster: an unrecorded attachment stays in chats3_files");
    }
}

async fn fetch(c: &Cluster, data_dir: &Path, id: &str) -> Result<bool, BlobError> {
    let unavailable =
        |e: &dyn std::fmt::Display| BlobError::Io(std::io::Error::other(e.to_string()));
    let files = &c.resources().await.map_err(|e| unavailable(&e))?.files;
    let mut object = match files.get(id).await {
        Ok(o) => o,
        Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unavailable(&e)),
    };
    let mut w = BlobWriter::create(data_dir, u64::MAX).await?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = object.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n]).await?;
    }
    w.commit(data_dir, id).await?;
    Ok(true)
}

impl BlobSource for Cluster {
    fn fetch<'a>(
        &'a self,
        data_dir: &'a Path,
        id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, BlobError>> + Send + 'a>>
    {
        Box::pin(fetch(self, data_dir, id))
    }
}
