//! `chats3 restore --from DIR`: rebuilds an empty data directory from a
//! backup written by `chats3 backup --to DIR`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;

use crate::config::Config;
use crate::store::backup::Record;
use crate::store::{FORMAT_VERSION, NoListener, Store};

/// Restores; returns `(records, attachment files)`.
pub async fn run(config: &Config, dir: &Path) -> anyhow::Result<(u64, u64)> {
    let path = dir.join("backup.ndjson");
    let f =
        std::fs::File::open(&path).with_context(|| format!("while opening {}", path.display()))?;
    std::fs::create_dir_all(&config.data_dir)?;
    let store = Store::open(&config.data_dir, Arc::new(NoListener), config.s3.is_some())
        .with_context(|| format!("while opening the store in {}", config.data_dir.display()))?;
    if !store.is_empty()? {
        bail!(
            "{} already holds data; restore only into an empty data directory",
            config.data_dir.display()
        );
    }
    let att_dir = config.data_dir.join("attachments");
    std::fs::create_dir_all(&att_dir)?;
    let (mut kv, mut files, mut ended) = (0u64, 0u64, None);
    let mut open: Option<(String, std::fs::File)> = None;
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        let rec: Record = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not a backup record", i + 1))?;
        match rec {
            Record::Manifest { format, .. } if format > FORMAT_VERSION => {
                bail!(
                    "the backup has store format {format}, newer than this binary's {FORMAT_VERSION}"
                )
            }
            Record::Manifest { .. } => {}
            Record::Kv { tree, k, v } => {
                store.import_record(&tree, &k, &v)?;
                kv += 1;
            }
            Record::File { name, data } => {
                let id = name
                    .strip_prefix("attachments/")
                    .filter(|id| !id.contains(['/', '\\', '.']))
                    .context("bad file name in backup")?;
                if open.as_ref().is_none_or(|(n, _)| n != id) {
                    if let Some((_, f)) = open.take() {
                        f.sync_all()?;
                    }
                    open = Some((id.to_string(), std::fs::File::create(att_dir.join(id))?));
                    files += 1;
                }
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .context("bad file data in backup")?;
                if let Some((_, f)) = open.as_mut() {
                    f.write_all(&bytes)?;
                }
            }
            Record::End { kv: k, files: f } => ended = Some((k, f)),
        }
    }
    if let Some((_, f)) = open.take() {
        f.sync_all()?;
    }
    match ended {
        Some((k, f)) if k == kv && f == files => {}
        Some(_) => bail!("the backup's counts do not match its records"),
        None => bail!("the backup is incomplete (no end record)"),
    }
    store.flush().await?;
    store.shutdown();
    Ok((kv, files))
}
