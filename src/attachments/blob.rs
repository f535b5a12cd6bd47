//! Blob files: an upload streams into a temp file under `<data>/tmp/` (with a
//! size cap and the first bytes kept for sniffing), then is fsynced and
//! renamed into `<data>/attachments/<id>`. A dropped writer removes its temp file,
//! so a write that fails (a full disk included) leaves nothing behind; what a
//! crash left is removed at the next start ([`sweep_leftovers`]).

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::kind::TextCheck;

/// Bytes kept from the start of a file for magic-byte detection.
const HEAD_LEN: usize = 8192;

/// Removes what uploads cut off by a crash left behind, once at start: temp
/// files under `<data>/tmp/`, and files under `<data>/attachments/` that
/// `is_recorded` does not know (an upload whose record was never written).
/// Only files last written before `started` are touched, so uploads of the
/// running process are never taken for leftovers. Returns how many went.
pub fn sweep_leftovers(
    data_dir: &Path,
    started: std::time::SystemTime,
    is_recorded: impl Fn(&str) -> bool,
) -> std::io::Result<usize> {
    let mut removed = 0;
    for (dir, check_record) in [("tmp", false), ("attachments", true)] {
        let entries = match std::fs::read_dir(data_dir.join(dir)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let before_start = meta.modified().is_ok_and(|m| m < started);
            let name = entry.file_name();
            let leftover = meta.is_file()
                && before_start
                && (!check_record || name.to_str().is_none_or(|id| !is_recorded(id)));
            if leftover {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

pub fn blob_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("attachments").join(id)
}

/// Where an attachment's bytes come from when they are not on this node's
/// disk (cluster mode: the shared object store, `crate::cluster::files`).
pub trait BlobSource: Send + Sync {
    /// Copies the bytes of `id` to this node's disk (via a temp file, as an
    /// upload); false when the source has no such bytes.
    fn fetch<'a>(
        &'a self,
        data_dir: &'a Path,
        id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, BlobError>> + Send + 'a>>;
}

/// Whether the bytes of `id` are on this node's disk, fetching them from
/// `source` first when they are not.
pub async fn ensure_local(
    data_dir: &Path,
    id: &str,
    source: Option<&dyn BlobSource>,
) -> Result<bool, BlobError> {
    if tokio::fs::try_exists(blob_path(data_dir, id)).await? {
        return Ok(true);
    }
    match source {
        Some(s) => s.fetch(data_dir, id).await,
        None => Ok(false),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("file is larger than {0} bytes")]
    TooLarge(u64),
    /// The filesystem (or a quota) is full.
    #[error("disk full: {0}")]
    DiskFull(std::io::Error),
    #[error("i/o error: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        if crate::store::space::is_disk_full(&e) {
            BlobError::DiskFull(e)
        } else {
            BlobError::Io(e)
        }
    }
}

pub struct BlobWriter {
    file: tokio::fs::File,
    tmp: PathBuf,
    size: u64,
    limit: u64,
    pub head: Vec<u8>,
    pub text: TextCheck,
    done: bool,
}

impl BlobWriter {
    pub async fn create(data_dir: &Path, limit: u64) -> Result<Self, BlobError> {
        let dir = data_dir.join("tmp");
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = dir.join(format!("upload-{}", uuid::Uuid::new_v4()));
        let file = tokio::fs::File::create(&tmp).await?;
        Ok(Self {
            file,
            tmp,
            size: 0,
            limit,
            head: Vec::new(),
            text: TextCheck::default(),
            done: false,
        })
    }

    /// Appends a chunk; fails as soon as the total passes the limit.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(BlobError::TooLarge(self.limit));
        }
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.text.feed(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Is the (complete) upload a ZIP archive with a `word/` part, i.e. a DOCX?
    pub async fn is_docx(&mut self) -> bool {
        if self.file.flush().await.is_err() {
            return false;
        }
        let path = self.tmp.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(f) = std::fs::File::open(path) else {
                return false;
            };
            let Ok(z) = zip::ZipArchive::new(f) else {
                return false;
            };
            z.file_names().any(|n| n.starts_with("word/"))
        })
        .await
        .unwrap_or(false)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// fsyncs the data, moves it to its final place and fsyncs the directory.
    pub async fn commit(mut self, data_dir: &Path, id: &str) -> Result<(), BlobError> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        let dest = blob_path(data_dir, id);
        let parent = data_dir.join("attachments");
        tokio::fs::create_dir_all(&parent).await?;
        tokio::fs::rename(&self.tmp, &dest).await?;
        self.done = true;
        let synced = async { tokio::fs::File::open(&parent).await?.sync_all().await }.await;
        if let Err(e) = synced {
            // Not known to be durable and not recorded: no orphan file either.
            let _ = tokio::fs::remove_file(&dest).await;
            return Err(e.into());
        }
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn leftovers_of_a_crash_go_and_everything_else_stays() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["tmp", "attachments"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("tmp/upload-1"), b"cut off").unwrap();
        std::fs::write(blob_path(d, "recorded"), b"kept").unwrap();
        std::fs::write(blob_path(d, "unrecorded"), b"never recorded").unwrap();
        let recorded = |id: &str| id == "recorded";
        // Files written after the start belong to uploads under way.
        let earlier = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(sweep_leftovers(d, earlier, recorded).unwrap(), 0);
        let later = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(sweep_leftovers(d, later, recorded).unwrap(), 2);
        assert!(blob_path(d, "recorded").exists());
        assert!(!blob_path(d, "unrecorded").exists());
        assert!(!d.join("tmp/upload-1").exists());
    }
}
