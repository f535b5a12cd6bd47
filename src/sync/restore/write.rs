//! The restore's writer: conversations as they are read go to the store a
//! group at a time — one flush per group — and only then into the journal;
//! and the list of what could not be restored, next to the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::read::Restored;
use super::{GROUP_MESSAGES, Summary, joined, journal, progress};
use crate::store::Store;
use crate::sync::SyncError;

/// Takes read conversations as they come, writes a group of
/// them, flushes once, then journals each as finished.
pub async fn write(
    store: Arc<Store>,
    mut rx: mpsc::Receiver<(Restored, OwnedSemaphorePermit)>,
    progress: progress::Progress,
    dir: PathBuf,
) -> Result<BTreeMap<String, journal::Outcome>, SyncError> {
    let mut outcomes = BTreeMap::new();
    let (mut groups, mut writing) = (0, std::time::Duration::ZERO);
    // Journal entries not flushed yet: flushed with the next group, or as
    // soon as no conversation is waiting (so a restore held up reading,
    // then killed, keeps them).
    let mut unflushed = false;
    loop {
        if unflushed && rx.is_empty() {
            store.flush().await?;
        }
        let Some(first) = rx.recv().await else { break };
        let started = std::time::Instant::now();
        groups += 1;
        let mut size = first.0.messages.len();
        let mut group = vec![first];
        while size < GROUP_MESSAGES {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.0.messages.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        // Their share of the memory budget is given back once they are written.
        let (group, _memory): (Vec<Restored>, Vec<_>) = group.into_iter().unzip();
        let s = Arc::clone(&store);
        let attachments = dir.join("attachments");
        let group = joined(
            tokio::task::spawn_blocking(move || -> Result<Vec<Restored>, SyncError> {
                for r in &group {
                    s.import_conversation(
                        &r.conversation,
                        &r.messages,
                        &r.reactions,
                        &r.attachments,
                    )?;
                }
                // The renames of this group's attachment files, before their records.
                if group.iter().any(|r| !r.attachments.is_empty()) {
                    std::fs::File::open(&attachments)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| SyncError::io(&attachments, e))?;
                }
                Ok(group)
            })
            .await,
        )?;
        store.flush().await?;
        for r in group {
            journal::finished(&store, &r.conversation.conversation_id, &r.outcome)?;
            progress.conversation_done();
            outcomes.insert(r.conversation.conversation_id, r.outcome);
        }
        unflushed = true;
        writing += started.elapsed();
    }
    store.flush().await?;
    tracing::debug!(groups, ?writing, "restore: writer done");
    Ok(outcomes)
}

/// `<dir>.restore-skipped.txt`, next to the data directory.
pub fn skipped_file(dir: &Path) -> PathBuf {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = dir
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!("{name}.restore-skipped.txt"))
}

/// Writes the skipped objects next to the data directory (removes a stale
/// list when nothing was skipped); where, if it wrote one.
pub fn skipped_list(dir: &Path, bucket: &str, summary: &Summary) -> Option<PathBuf> {
    let path = skipped_file(dir);
    if summary.skipped.is_empty() {
        let _ = std::fs::remove_file(&path);
        return None;
    }
    let mut text = format!(
        "# chats3 restore of bucket {bucket} into {}: {} objects (or lines) not restored\n# key\treason\n",
        dir.display(),
        summary.skipped.len()
    );
    for s in &summary.skipped {
        text.push_str(&format!(
            "{}\t{}\n",
            s.key,
            s.reason.replace(['\n', '\t'], " ")
        ));
    }
    match std::fs::write(&path, text) {
        Ok(()) => Some(path),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the list of skipped objects");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_skipped_list_goes_next_to_the_data_directory() {
        assert_eq!(
            skipped_file(Path::new("/var/lib/chats3")),
            Path::new("/var/lib/chats3.restore-skipped.txt")
        );
        assert_eq!(
            skipped_file(Path::new("/var/lib/chats3/")),
            Path::new("/var/lib/chats3.restore-skipped.txt")
        );
    }
}
