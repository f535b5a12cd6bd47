//! The restore journal, kept in the store being restored (tree `restore`):
//! which bucket (and `--owner`) the restore reads, and each conversation it
//! has finished with what that gave. A conversation's entry is written only
//! after its records are flushed, so an entry always means "durable"; a
//! conversation without one is written again from scratch (its partial
//! records removed first). That makes an interrupted restore (Ctrl-C,
//! `kill -9`, power loss) resumable by running it again: finished
//! conversations are skipped, the rest are redone, nothing is duplicated.
//! When the restore completes, the entries are replaced by the final summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Skipped, Summary};
use crate::store::{NoListener, Store, StoreError};
use crate::sync::SyncError;

const STATE: &str = "state";
/// Prefix of the per-conversation entries.
const DONE: &str = "done/";

/// What the restore in a directory reads, and whether it is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub bucket: String,
    pub owner: Option<String>,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    #[serde(default)]
    pub summary: Option<Summary>,
}

/// Where a restored conversation's owner came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Owner {
    /// Its `meta.json` names one (buckets written by chats3).
    Bucket,
    /// `--owner`: the bucket names none.
    Given,
    /// Nobody: the bucket names none and no `--owner` was given.
    #[default]
    None,
}

/// What one conversation's restore gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub messages: usize,
    pub duplicates: usize,
    pub reactions: usize,
    pub attachments: usize,
    /// Created with defaults: no readable `meta.json`.
    pub without_meta: bool,
    pub owner: Owner,
    pub skipped: Vec<Skipped>,
    /// Objects and bytes listed for it (what a resumed run counts as done).
    pub objects: u64,
    pub bytes: u64,
}

/// Restored messages are not announced to anyone.
/// The store of a restore from `bucket` into `dir`, and the conversations
/// an interrupted run of the same restore finished. Starts a new restore in
/// an empty (or missing) directory; refuses any other directory, saying why.
pub async fn open(
    dir: &Path,
    bucket: &str,
    owner: Option<&str>,
) -> Result<(Arc<Store>, BTreeMap<String, Outcome>), SyncError> {
    let state = State {
        bucket: bucket.to_string(),
        owner: owner.map(str::to_owned),
        started_at: crate::clock::now_rfc3339(),
        finished_at: None,
        summary: None,
    };
    let entries = entries(dir)?;
    // What a restore writes; anything else is someone else's data.
    if entries
        .iter()
        .any(|e| !["store", "tmp", "attachments"].contains(&e.as_str()))
    {
        return Err(SyncError::NotEmpty(dir.to_path_buf()));
    }
    std::fs::create_dir_all(dir).map_err(|e| SyncError::io(dir, e))?;
    let store = Arc::new(open_store(dir).await?);
    let started = match check(&store, dir, &state) {
        Ok(Some(done)) => Ok(done),
        Ok(None) => match store.journal_put(STATE, &json(&state)) {
            Ok(()) => store
                .flush()
                .await
                .map(|_| BTreeMap::new())
                .map_err(Into::into),
            Err(e) => Err(e.into()),
        },
        Err(e) => Err(e),
    };
    match started.and_then(|done| remove_partial_downloads(dir).map(|_| done)) {
        Ok(done) => Ok((store, done)),
        Err(e) => {
            close(store).await;
            Err(e)
        }
    }
}

/// Opens the store of `dir`. One this process just closed can keep its file
/// lock a moment longer (sled's background threads let go of it last): a
/// refused lock is tried again for up to 2 s.
async fn open_store(dir: &Path) -> Result<Store, SyncError> {
    let mut tries = 0;
    loop {
        match Store::open(dir, Arc::new(NoListener), false) {
            Err(StoreError::Db(e)) if e.contains("could not acquire lock") && tries < 20 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            r => return Ok(r?),
        }
    }
}

/// `Some(finished conversations)` to resume, `None` to start afresh.
fn check(
    store: &Store,
    dir: &Path,
    wanted: &State,
) -> Result<Option<BTreeMap<String, Outcome>>, SyncError> {
    let Some(raw) = store.journal_get(STATE)? else {
        // A store without a journal: one a restore was killed in before it
        // wrote its first record (nothing else in it), or not a restore's.
        return match store.is_empty()? {
            true => Ok(None),
            false => Err(SyncError::NotEmpty(dir.to_path_buf())),
        };
    };
    let cannot = |reason: String| SyncError::CannotResume {
        dir: dir.to_path_buf(),
        reason,
    };
    let found: State = serde_json::from_slice(&raw).map_err(|e| {
        cannot(format!(
            "its journal is unreadable ({e}); remove the directory"
        ))
    })?;
    if let Some(finished_at) = found.finished_at {
        return Err(SyncError::AlreadyRestored {
            dir: dir.to_path_buf(),
            bucket: found.bucket,
            finished_at,
        });
    }
    if found.bucket != wanted.bucket {
        return Err(cannot(format!(
            "it restores bucket {:?}, not {:?}: run it with S3_BUCKET={:?}, or remove the directory",
            found.bucket, wanted.bucket, found.bucket
        )));
    }
    if found.owner != wanted.owner {
        let flag = |o: &Option<String>| match o {
            Some(o) => format!("--owner {o}"),
            None => "no --owner".into(),
        };
        return Err(cannot(format!(
            "it was started with {}, this run has {}: run it again with the same options, or remove the directory",
            flag(&found.owner),
            flag(&wanted.owner)
        )));
    }
    let mut done = BTreeMap::new();
    for (key, raw) in store.journal_scan(DONE)? {
        let outcome: Outcome = serde_json::from_slice(&raw)
            .map_err(|e| cannot(format!("journal entry {key} is unreadable ({e})")))?;
        done.insert(key[DONE.len()..].to_string(), outcome);
    }
    Ok(Some(done))
}

/// Records that `conv` is restored. Call only once its records are flushed;
/// the entry itself is durable with the next flush.
pub fn finished(store: &Store, conv: &str, outcome: &Outcome) -> Result<(), SyncError> {
    store.journal_put(&format!("{DONE}{conv}"), &json(outcome))?;
    Ok(())
}

/// Marks the restore complete with its summary, then drops the
/// per-conversation entries.
pub async fn complete(store: &Store, summary: &Summary) -> Result<(), SyncError> {
    let mut state: State = match store.journal_get(STATE)? {
        Some(raw) => serde_json::from_slice(&raw)
            .map_err(|_| SyncError::Store(StoreError::Corrupt("restore journal")))?,
        None => return Err(StoreError::Corrupt("restore journal").into()),
    };
    state.finished_at = Some(crate::clock::now_rfc3339());
    state.summary = Some(summary.clone());
    store.journal_put(STATE, &json(&state))?;
    store.flush().await?;
    store.journal_remove_prefix(DONE)?;
    store.flush().await?;
    Ok(())
}

/// Stops the store's writer and flushes (joining a thread: off the runtime).
pub async fn close(store: Arc<Store>) {
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings and numbers: serialization cannot fail.
    serde_json::to_vec(v).expect("journal record serializes")
}

/// Names in `dir` (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>, SyncError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(|e| SyncError::io(dir, e))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SyncError::io(dir, e)),
    }
}

/// Attachment downloads an interrupted run left in `tmp/`.
fn remove_partial_downloads(dir: &Path) -> Result<(), SyncError> {
    let tmp = dir.join("tmp");
    let Ok(rd) = std::fs::read_dir(&tmp) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with(super::read::PARTIAL)
        {
            std::fs::remove_file(e.path()).map_err(|err| SyncError::io(&e.path(), err))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_with_other_files_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("x"), b"").unwrap();
        let r = open(tmp.path(), "b", None).await;
        assert!(matches!(r, Err(SyncError::NotEmpty(_))), "{:?}", r.err());
    }

    #[tokio::test]
    async fn a_restore_resumes_only_with_the_same_bucket_and_owner() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let (store, done) = open(&dir, "b", Some("shop")).await.unwrap();
        assert!(done.is_empty());
        let outcome = Outcome {
            messages: 3,
            ..Outcome::default()
        };
        finished(&store, "c1", &outcome).unwrap();
        close(store).await;

        for (bucket, owner, want) in [
            (
                "other",
                Some("shop"),
                "it restores bucket \"b\", not \"other\"",
            ),
            (
                "b",
                None,
                "it was started with --owner shop, this run has no --owner",
            ),
        ] {
            let e = open(&dir, bucket, owner).await.err().unwrap();
            assert!(matches!(e, SyncError::CannotResume { .. }), "{e}");
            assert!(e.to_string().contains(want), "{e}");
        }
        let (store, done) = open(&dir, "b", Some("shop")).await.unwrap();
        assert_eq!(
            done.into_iter().collect::<Vec<_>>(),
            [("c1".into(), outcome)]
        );
        complete(&store, &Summary::default()).await.unwrap();
        assert!(store.journal_scan(DONE).unwrap().is_empty());
        close(store).await;

        let e = open(&dir, "b", Some("shop")).await.err().unwrap();
        assert!(matches!(e, SyncError::AlreadyRestored { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_store_killed_before_its_journal_starts_afresh() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        close(Arc::new(open_store(&dir).await.unwrap())).await;
        let (store, done) = open(&dir, "b", None).await.unwrap();
        assert!(done.is_empty());
        close(store).await;
    }
}
