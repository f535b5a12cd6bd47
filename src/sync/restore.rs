//! `chats3 restore --from-s3`: rebuilds an empty data directory from the
//! bucket — conversations (`meta.json`), the full message history in order,
//! reactions, and attachments.
//!
//! Reads both our NDJSON segments (several messages per object, each with its
//! `seq`) and the original service's objects (one message per object, no
//! `seq`). Messages are deduplicated by `messageId` (the original wrote a
//! retried message twice); a message keeps its `seq` when it has one, the
//! others get the lowest free numbers in (`serverReceivedAt`, key, line)
//! order. Sync cursors are set to the end of each restored history, so a
//! server started on the result with the same bucket uploads only new
//! messages. Refuses a directory that is not empty: restore never merges.
//! Conversations the bucket gives no owner (every one the original wrote) can
//! be given one (`--owner`), so that integrator's tickets keep opening them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::{S3, SyncError, layout};
use crate::config::Config;
use crate::model::{AttachmentMeta, Conversation, Message};
use crate::store::{CommitListener, Store};

/// Message objects downloaded at once.
const CONCURRENCY: usize = 16;
/// Messages written to the store per batch.
const IMPORT_CHUNK: usize = 10_000;

/// What a restore brought back, and what it had to leave out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub conversations: usize,
    pub messages: usize,
    /// Copies of an already restored `messageId` that were dropped.
    pub duplicates: usize,
    pub reactions: usize,
    pub attachments: usize,
    /// Objects or lines that could not be used (each one is logged).
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} conversations, {} messages ({} duplicate copies dropped), {} reactions, {} attachments, {} skipped",
            self.conversations,
            self.messages,
            self.duplicates,
            self.reactions,
            self.attachments,
            self.skipped
        )
    }
}

/// Restores the bucket of `config.s3` into `config.data_dir`, which must be
/// empty or missing.
pub async fn run(config: &Config) -> Result<Summary, SyncError> {
    run_for(config, None).await
}

/// [`run`], giving every conversation without an owner to the integrator `owner`.
pub async fn run_for(config: &Config, owner: Option<&str>) -> Result<Summary, SyncError> {
    let s3_config = config.s3.as_ref().ok_or(SyncError::NotConfigured)?;
    let dir = &config.data_dir;
    ensure_empty(dir)?;
    std::fs::create_dir_all(dir).map_err(|e| SyncError::io(dir, e))?;
    let s3 = S3::new(s3_config).await;
    let result = restore_into(&s3, dir, owner).await;
    if result.is_err() {
        tracing::error!(
            dir = %dir.display(),
            "restore stopped part way; remove the data directory before trying again"
        );
    }
    result
}

fn ensure_empty(dir: &Path) -> Result<(), SyncError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(SyncError::NotEmpty(dir.to_path_buf())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SyncError::io(dir, e)),
    }
}

/// Restored messages are not announced to anyone.
struct Silent;

impl CommitListener for Silent {
    fn committed(&self, _: &Arc<Message>, _: &Bytes) {}
}

/// Restores `s3`'s bucket into the (empty) data directory `dir`.
pub async fn restore_into(s3: &S3, dir: &Path, owner: Option<&str>) -> Result<Summary, SyncError> {
    let store = Arc::new(Store::open(dir, Arc::new(Silent), false)?);
    let result = Restore {
        s3,
        store: &store,
        dir,
        owner,
        summary: Summary::default(),
    }
    .all()
    .await;
    let closing = Arc::clone(&store);
    // Joining the writer thread blocks briefly: keep it off the runtime's threads.
    let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
    result
}

/// The objects of one conversation, by kind.
#[derive(Default)]
struct ConvObjects {
    meta: bool,
    reactions: bool,
    message_keys: Vec<String>,
    /// attachment id → (size of `original` if present, `meta.json` present)
    attachments: BTreeMap<String, (Option<u64>, bool)>,
}

/// A message read from the bucket, with what orders it.
struct Found {
    message: Message,
    received_ms: i64,
    object: usize,
    line: usize,
}

struct Restore<'a> {
    s3: &'a S3,
    store: &'a Store,
    dir: &'a Path,
    /// The integrator that gets the conversations the bucket gives no owner.
    owner: Option<&'a str>,
    summary: Summary,
}

fn bar(len: u64, prefix: &'static str, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_prefix(prefix)
}

impl Restore<'_> {
    async fn all(mut self) -> Result<Summary, SyncError> {
        let listing = ProgressBar::new_spinner().with_message("listing the bucket");
        listing.enable_steady_tick(std::time::Duration::from_millis(120));
        let objects = self.s3.list(layout::ROOT).await?;
        listing.finish_and_clear();

        let mut convs: BTreeMap<String, ConvObjects> = BTreeMap::new();
        for o in &objects {
            let Some(kind) = layout::classify(&o.key) else {
                tracing::warn!(key = %o.key, "restore: not part of the layout; ignored");
                self.summary.skipped += 1;
                continue;
            };
            use layout::Object;
            match kind {
                Object::Meta { conv } => convs.entry(conv.into()).or_default().meta = true,
                Object::Reactions { conv } => {
                    convs.entry(conv.into()).or_default().reactions = true
                }
                Object::Messages { conv } => convs
                    .entry(conv.into())
                    .or_default()
                    .message_keys
                    .push(o.key.clone()),
                Object::AttachmentOriginal { conv, attachment } => {
                    let c = convs.entry(conv.into()).or_default();
                    c.attachments.entry(attachment.into()).or_default().0 = Some(o.size);
                }
                Object::AttachmentMeta { conv, attachment } => {
                    let c = convs.entry(conv.into()).or_default();
                    c.attachments.entry(attachment.into()).or_default().1 = true;
                }
            }
        }
        let template = "{prefix:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}";
        let message_bar = bar(
            convs.values().map(|c| c.message_keys.len() as u64).sum(),
            "messages",
            template,
        );
        let attachment_bar = bar(
            convs
                .values()
                .flat_map(|c| c.attachments.values())
                .filter_map(|a| a.0)
                .sum(),
            "attachments",
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        );
        for (conv, objects) in &convs {
            self.conversation(conv, objects, &message_bar, &attachment_bar)
                .await?;
        }
        message_bar.finish();
        attachment_bar.finish();
        self.store.meta_put(
            super::uploader::BUCKET_META_KEY,
            self.s3.bucket().as_bytes(),
        )?;
        self.store.flush().await?;
        Ok(self.summary)
    }

    fn skip(&mut self, key: &str, reason: &str) {
        tracing::warn!(key, reason, "restore: skipped");
        self.summary.skipped += 1;
    }

    async fn conversation(
        &mut self,
        conv: &str,
        objects: &ConvObjects,
        message_bar: &ProgressBar,
        attachment_bar: &ProgressBar,
    ) -> Result<(), SyncError> {
        let meta_key = layout::meta_key(conv);
        let record = match objects.meta {
            true => self.s3.get(&meta_key).await?,
            false => None,
        };
        let Some(record) = record else {
            self.skip(&meta_key, "missing: the conversation is not restored");
            message_bar.inc(objects.message_keys.len() as u64);
            return Ok(());
        };
        let mut c: Conversation = match serde_json::from_slice(&record) {
            Ok(c) => c,
            Err(e) => {
                self.skip(&meta_key, &format!("not a conversation record: {e}"));
                message_bar.inc(objects.message_keys.len() as u64);
                return Ok(());
            }
        };
        if c.conversation_id != conv {
            self.skip(&meta_key, "conversationId differs from its folder");
            message_bar.inc(objects.message_keys.len() as u64);
            return Ok(());
        }
        if c.integrator_id.is_none() {
            c.integrator_id = self.owner.map(str::to_owned);
        }
        self.store.create_conversation(&c).await?;
        self.summary.conversations += 1;

        self.messages(conv, &objects.message_keys, message_bar)
            .await?;
        if objects.reactions {
            self.reactions(conv).await?;
        }
        for (id, (original, meta)) in &objects.attachments {
            self.attachment(conv, id, *original, *meta, attachment_bar)
                .await?;
        }
        Ok(())
    }

    async fn messages(
        &mut self,
        conv: &str,
        keys: &[String],
        progress: &ProgressBar,
    ) -> Result<(), SyncError> {
        // Key order is part of the ordering rule: `buffered` keeps it.
        let s3 = self.s3;
        let bodies: Vec<(String, Bytes)> = futures_util::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let body = s3.get(&key).await?;
                progress.inc(1);
                Ok::<_, SyncError>((key, body.unwrap_or_default()))
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;

        let mut found = Vec::new();
        for (object, (key, body)) in bodies.iter().enumerate() {
            for (line, raw) in layout::ndjson_lines(body).enumerate() {
                match parse_message(raw) {
                    Ok(m) if m.conversation_id == conv => {
                        let received_ms =
                            layout::parse_rfc3339_ms(&m.server_received_at).unwrap_or(0);
                        found.push(Found {
                            message: m,
                            received_ms,
                            object,
                            line,
                        });
                    }
                    Ok(_) => self.skip(key, "a message of another conversation"),
                    Err(e) => self.skip(key, &format!("line {}: {e}", line + 1)),
                }
            }
        }
        let (messages, duplicates) = order(found);
        self.summary.duplicates += duplicates;
        self.summary.messages += messages.len();
        for chunk in messages.chunks(IMPORT_CHUNK) {
            self.store.import_messages(conv, chunk).await?;
        }
        if let Some(last) = messages.last() {
            self.store.set_sync_cursor(conv, last.seq)?;
        }
        Ok(())
    }

    async fn reactions(&mut self, conv: &str) -> Result<(), SyncError> {
        let key = layout::reactions_key(conv);
        let Some(body) = self.s3.get(&key).await? else {
            return Ok(());
        };
        let map: BTreeMap<String, BTreeMap<String, Vec<String>>> =
            match serde_json::from_slice(&body) {
                Ok(m) => m,
                Err(e) => {
                    self.skip(&key, &format!("not a reactions map: {e}"));
                    return Ok(());
                }
            };
        for (message, by_emoji) in &map {
            for (emoji, users) in by_emoji {
                for user in users {
                    self.store
                        .set_reaction(conv, message, emoji, user, true)
                        .await?;
                    self.summary.reactions += 1;
                }
            }
        }
        Ok(())
    }

    async fn attachment(
        &mut self,
        conv: &str,
        id: &str,
        original: Option<u64>,
        has_meta: bool,
        progress: &ProgressBar,
    ) -> Result<(), SyncError> {
        let meta_key = layout::attachment_meta_key(conv, id);
        let (Some(size), true) = (original, has_meta) else {
            self.skip(&meta_key, "attachment without both original and meta.json");
            progress.inc(original.unwrap_or(0));
            return Ok(());
        };
        let meta: Option<AttachmentMeta> = match self.s3.get(&meta_key).await? {
            Some(body) => serde_json::from_slice(&body).ok(),
            None => None,
        };
        let Some(meta) = meta.filter(|m| m.attachment_id == id && m.conversation_id == conv) else {
            self.skip(&meta_key, "not this attachment's metadata");
            progress.inc(size);
            return Ok(());
        };
        let tmp_dir = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(|e| SyncError::io(&tmp_dir, e))?;
        let tmp = tmp_dir.join(format!("restore-{id}"));
        let got = self
            .s3
            .get_to_file(&layout::attachment_original_key(conv, id), &tmp)
            .await?;
        if got != meta.size_bytes {
            tracing::warn!(
                attachment = id,
                expected = meta.size_bytes,
                got,
                "restore: attachment size differs from its metadata"
            );
        }
        let dest = crate::attachments::blob_path(self.dir, id);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| SyncError::io(parent, e))?;
        }
        std::fs::rename(&tmp, &dest).map_err(|e| SyncError::io(&dest, e))?;
        self.store.put_attachment(&meta).await?;
        self.summary.attachments += 1;
        progress.inc(size);
        Ok(())
    }
}

/// Parses one NDJSON line, filling fields the original could leave out.
fn parse_message(raw: &[u8]) -> Result<Message, serde_json::Error> {
    // Ours (and most of the original's) parse directly; the rest get defaults.
    if let Ok(m) = serde_json::from_slice(raw) {
        return Ok(m);
    }
    let mut v: Value = serde_json::from_slice(raw)?;
    if let Value::Object(o) = &mut v {
        let system = o.get("type").and_then(Value::as_str) == Some("system");
        o.entry("senderRole")
            .or_insert_with(|| (if system { "system" } else { "participant" }).into());
        o.entry("clientTimestamp").or_insert(Value::Null);
        o.entry("body").or_insert_with(|| "".into());
    }
    serde_json::from_value(v)
}

/// The largest `seq` a restored message keeps: the largest integer a browser
/// reads exactly, and far from the end of `u64`, where the next append's
/// number would overflow. Larger ones are renumbered.
const MAX_SEQ: u64 = (1 << 53) - 1;

/// Deduplicates by `messageId` and decides every message's `seq`; returns the
/// messages in `seq` order and how many copies were dropped.
fn order(mut found: Vec<Found>) -> (Vec<Message>, usize) {
    // Reading order: bucket key order, then line order.
    found.sort_by_key(|f| (f.object, f.line));
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<Found> = Vec::with_capacity(found.len());
    let mut duplicates = 0;
    for f in found {
        match by_id.get(&f.message.message_id) {
            Some(&i) => {
                duplicates += 1;
                // A copy that carries a seq beats one that does not.
                if kept[i].message.seq == 0 && f.message.seq != 0 {
                    kept[i] = f;
                }
            }
            None => {
                by_id.insert(f.message.message_id.clone(), kept.len());
                kept.push(f);
            }
        }
    }
    // Explicit seqs stay (the first holder of a number wins); the rest are renumbered.
    let mut taken: HashSet<u64> = HashSet::new();
    let mut unnumbered: Vec<Found> = Vec::new();
    let mut numbered: Vec<Message> = Vec::with_capacity(kept.len());
    for f in kept {
        if (1..=MAX_SEQ).contains(&f.message.seq) && taken.insert(f.message.seq) {
            numbered.push(f.message);
        } else {
            unnumbered.push(f);
        }
    }
    unnumbered.sort_by_key(|f| (f.received_ms, f.object, f.line));
    let mut next = 1u64;
    for mut f in unnumbered {
        while taken.contains(&next) {
            next += 1;
        }
        f.message.seq = next;
        taken.insert(next);
        numbered.push(f.message);
    }
    numbered.sort_by_key(|m| m.seq);
    (numbered, duplicates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, seq: u64, received_ms: i64, object: usize, line: usize) -> Found {
        let raw = serde_json::json!({
            "messageId": id, "conversationId": "c", "senderUserId": "u",
            "senderDisplayName": "U", "type": "text", "body": id,
            "serverReceivedAt": "2024-01-01T00:00:00.000Z", "seq": seq,
        });
        Found {
            message: parse_message(raw.to_string().as_bytes()).unwrap(),
            received_ms,
            object,
            line,
        }
    }

    fn ids(ms: &[Message]) -> Vec<(&str, u64)> {
        ms.iter().map(|m| (m.message_id.as_str(), m.seq)).collect()
    }

    #[test]
    fn original_messages_are_numbered_by_receive_time_then_key() {
        let (ms, dups) = order(vec![
            found("late", 0, 300, 0, 0),
            found("early", 0, 100, 2, 0),
            found("tie-b", 0, 200, 3, 0),
            found("tie-a", 0, 200, 1, 0),
        ]);
        assert_eq!(dups, 0);
        assert_eq!(
            ids(&ms),
            vec![("early", 1), ("tie-a", 2), ("tie-b", 3), ("late", 4)]
        );
    }

    #[test]
    fn duplicates_are_dropped_and_explicit_seqs_kept() {
        let (ms, dups) = order(vec![
            found("a", 0, 100, 0, 0),
            found("a", 0, 100, 1, 0), // the original's retry wrote it twice
            found("b", 0, 200, 2, 0),
            found("c", 3, 300, 3, 0), // one of ours, after a restore of a and b
            found("c", 3, 300, 3, 1),
        ]);
        assert_eq!(dups, 2);
        assert_eq!(ids(&ms), vec![("a", 1), ("b", 2), ("c", 3)]);
    }

    #[test]
    fn unnumbered_messages_fill_the_free_numbers() {
        let (ms, _) = order(vec![
            found("x", 2, 500, 0, 0),
            found("y", 0, 100, 1, 0),
            found("z", 0, 900, 1, 1),
            found("w", 2, 600, 2, 0), // seq already taken: renumbered
        ]);
        assert_eq!(ids(&ms), vec![("y", 1), ("x", 2), ("w", 3), ("z", 4)]);
    }

    #[test]
    fn parse_fills_fields_the_original_could_omit() {
        let m = parse_message(
            br#"{"messageId":"m","conversationId":"c","senderUserId":"system","senderDisplayName":"System","type":"system","serverReceivedAt":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(m.sender_role, "system");
        assert_eq!(m.body, "");
        assert_eq!(m.seq, 0);
    }

    #[test]
    fn a_sequence_number_past_what_clients_read_is_renumbered() {
        // Found by `any_found_messages_get_unique_ascending_numbers`: a
        // bucket's `seq: u64::MAX` was kept, and the next append
        // (`last + 1`) overflowed.
        let (ms, _) = order(vec![
            found("a", u64::MAX, 100, 0, 0),
            found("b", MAX_SEQ, 200, 1, 0),
            found("c", MAX_SEQ + 1, 300, 2, 0),
        ]);
        assert_eq!(ids(&ms), vec![("a", 1), ("c", 2), ("b", MAX_SEQ)]);
    }

    #[test]
    fn a_non_empty_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ensure_empty(tmp.path()).is_ok());
        assert!(ensure_empty(&tmp.path().join("missing")).is_ok());
        std::fs::write(tmp.path().join("x"), b"").unwrap();
        assert!(matches!(
            ensure_empty(tmp.path()),
            Err(SyncError::NotEmpty(_))
        ));
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{json_value, mutated_object, rfc3339};
        use proptest::prelude::*;
        use serde_json::json;

        fn record(id: &str, seq: u64, body: &str, at: &str) -> Value {
            json!({
                "messageId": id, "conversationId": "c", "senderUserId": "u",
                "senderDisplayName": "U", "senderRole": "participant", "type": "text",
                "body": body, "clientTimestamp": null, "serverReceivedAt": at, "seq": seq,
            })
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_line_parses_or_is_skipped(raw in prop_oneof![
                any::<Vec<u8>>(),
                any::<String>().prop_map(String::into_bytes),
                mutated_object(record("m", 1, "hi", "2024-01-01T00:00:00Z"), json_value())
                    .prop_map(|v| v.to_string().into_bytes()),
            ]) {
                if let Ok(m) = parse_message(&raw) {
                    prop_assert!(m.message_id.len() <= raw.len());
                }
            }

            #[test]
            fn any_found_messages_get_unique_ascending_numbers(items in prop::collection::vec(
                (
                    0usize..8,
                    prop_oneof![Just(0u64), 1u64..20, Just(MAX_SEQ), any::<u64>()],
                    any::<i64>(),
                    0usize..4,
                    0usize..4,
                ),
                0..30,
            )) {
                let ids: HashSet<usize> = items.iter().map(|i| i.0).collect();
                let n = items.len();
                let (ms, dups) = order(
                    items
                        .into_iter()
                        .map(|(id, seq, at, object, line)| found(&format!("m{id}"), seq, at, object, line))
                        .collect(),
                );
                prop_assert_eq!(ms.len(), ids.len());
                prop_assert_eq!(dups + ms.len(), n);
                prop_assert!(ms.windows(2).all(|w| w[0].seq < w[1].seq));
                prop_assert!(ms.iter().all(|m| (1..=MAX_SEQ).contains(&m.seq)));
            }

            /// NDJSON write → read: what the uploader segments, restore reads
            /// back as the same messages under the same numbers.
            #[test]
            fn uploaded_segments_restore_to_the_same_messages(
                first in 1u64..1_000_000,
                msgs in prop::collection::vec((any::<String>(), rfc3339()), 0..10),
            ) {
                let written: Vec<(u64, Bytes)> = msgs
                    .iter()
                    .enumerate()
                    .map(|(i, (body, at))| {
                        let seq = first + i as u64;
                        let v = record(&format!("m{seq}"), seq, body, at);
                        (seq, Bytes::from(serde_json::to_vec(&v).unwrap()))
                    })
                    .collect();
                let mut found = Vec::new();
                for (object, seg) in layout::segments("c", &written).iter().enumerate() {
                    for (line, raw) in layout::ndjson_lines(&seg.body).enumerate() {
                        let message = parse_message(raw).unwrap();
                        let received_ms = layout::parse_rfc3339_ms(&message.server_received_at).unwrap_or(0);
                        found.push(Found { message, received_ms, object, line });
                    }
                }
                let (ms, dups) = order(found);
                prop_assert_eq!(dups, 0);
                let want: Vec<Message> =
                    written.iter().map(|(_, j)| serde_json::from_slice(j).unwrap()).collect();
                prop_assert_eq!(ms, want);
            }
        }
    }
}
