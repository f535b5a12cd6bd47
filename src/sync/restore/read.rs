//! Reads one conversation from the bucket — `meta.json`, every message
//! object, `reactions.json`, attachments — into what the store will hold.
//! Objects are read by tasks of their own (each holding a permit of the
//! restore's request semaphore), so reading and parsing spread over the
//! runtime's threads. An object that cannot be used is listed, never fatal;
//! a failure worth retrying (network, timeouts, 5xx) is retried, then fatal
//! (the restore stops and can be resumed).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::journal::{Outcome, Owner};
use super::list::ConvObjects;
use super::order::{Found, order, parse_message};
use super::progress::Progress;
use super::{Skipped, joined};
use crate::model::{AttachmentMeta, Conversation, ConversationStatus, Message};
use crate::sync::client::Fetched;
use crate::sync::{S3, SyncError, layout};

/// Prefix of attachment downloads in progress, in `<data>/tmp`.
pub const PARTIAL: &str = "restore-";

/// Tries per object for failures worth retrying, on top of the SDK's own attempts.
pub const TRIES: u32 = 3;

/// What every conversation's reading shares.
pub struct Ctx {
    pub s3: S3,
    pub requests: Arc<Semaphore>,
    pub progress: Progress,
    pub dir: PathBuf,
    /// The integrator given the conversations the bucket names no owner for.
    pub owner: Option<String>,
}

/// One conversation, ready for the store.
#[derive(Debug)]
pub struct Restored {
    pub conversation: Conversation,
    /// In `seq` order.
    pub messages: Vec<Message>,
    pub reactions: Vec<(String, String, String)>,
    pub attachments: Vec<AttachmentMeta>,
    pub outcome: Outcome,
}

/// What one reading task found.
enum Part {
    Meta(Result<Conversation, Skipped>),
    Reactions(Result<Vec<(String, String, String)>, Skipped>),
    Messages(Vec<Found>, Vec<Skipped>),
    Attachment(Result<AttachmentMeta, Skipped>),
}

fn skipped(key: &str, reason: impl Into<String>) -> Skipped {
    let s = Skipped {
        key: key.to_string(),
        reason: reason.into(),
    };
    tracing::warn!(key = %s.key, reason = %s.reason, "restore: skipped");
    s
}

/// What there is to read of a conversation, one task each.
enum Job {
    Meta,
    Reactions,
    Messages {
        object: usize,
        key: String,
    },
    Attachment {
        id: String,
        original: Option<u64>,
        has_meta: bool,
    },
}

impl Job {
    async fn run(self, ctx: &Ctx, conv: &str) -> Result<Part, SyncError> {
        Ok(match self {
            Job::Meta => Part::Meta(meta(ctx, conv).await?),
            Job::Reactions => Part::Reactions(reactions(ctx, conv).await?),
            Job::Messages { object, key } => match fetch(ctx, &key).await? {
                Ok(body) => messages(conv, &key, object, &body),
                Err(s) => Part::Messages(Vec::new(), vec![s]),
            },
            Job::Attachment {
                id,
                original,
                has_meta,
            } => Part::Attachment(attachment(ctx, conv, &id, original, has_meta).await?),
        })
    }
}

/// Reads `key` whole, retrying failures worth retrying; counts it as read.
/// The caller holds a request permit.
async fn fetch(ctx: &Ctx, key: &str) -> Result<Result<Bytes, Skipped>, SyncError> {
    let mut tries = 0;
    let got = loop {
        tries += 1;
        match ctx.s3.fetch(key).await {
            Ok(f) => break f,
            Err(e) if tries < TRIES => {
                tracing::warn!(key, error = %e, "restore: read failed; trying again");
                tokio::time::sleep(Duration::from_millis(500) * tries).await;
            }
            Err(e) => return Err(e),
        }
    };
    Ok(match got {
        Fetched::Found(body) => {
            ctx.progress.read(body.len() as u64);
            Ok(body)
        }
        Fetched::Missing => {
            ctx.progress.read(0);
            Err(skipped(key, "listed, but gone when read"))
        }
        Fetched::Refused(why) => {
            ctx.progress.read(0);
            Err(skipped(key, format!("S3 refused to serve it: {why}")))
        }
    })
}

/// What the parts of a conversation add up to.
#[derive(Default)]
struct Parts {
    record: Option<Conversation>,
    found: Vec<Found>,
    reactions: BTreeSet<(String, String, String)>,
    attachments: Vec<AttachmentMeta>,
    skipped: Vec<Skipped>,
}

impl Parts {
    fn add(&mut self, part: Part) {
        match part {
            Part::Meta(Ok(c)) => self.record = Some(c),
            Part::Reactions(Ok(r)) => self.reactions.extend(r),
            Part::Messages(f, s) => {
                self.found.extend(f);
                self.skipped.extend(s);
            }
            Part::Attachment(Ok(a)) => self.attachments.push(a),
            Part::Meta(Err(s)) | Part::Reactions(Err(s)) | Part::Attachment(Err(s)) => {
                self.skipped.push(s)
            }
        }
    }
}

/// Reads conversation `conv`. Each object's task is spawned only once it has
/// a request permit, so the tasks alive at once stay bounded.
pub async fn conversation(
    ctx: Arc<Ctx>,
    conv: String,
    objects: ConvObjects,
) -> Result<Restored, SyncError> {
    let conv: Arc<str> = conv.into();
    let jobs = objects
        .meta
        .map(|_| Job::Meta)
        .into_iter()
        .chain(objects.reactions.map(|_| Job::Reactions))
        .chain(
            objects
                .messages
                .iter()
                .enumerate()
                .map(|(object, (key, _))| Job::Messages {
                    object,
                    key: key.clone(),
                }),
        )
        .chain(
            objects
                .attachments
                .iter()
                .map(|(id, (original, has_meta))| Job::Attachment {
                    id: id.clone(),
                    original: *original,
                    has_meta: *has_meta,
                }),
        );
    let mut tasks: JoinSet<Result<Part, SyncError>> = JoinSet::new();
    let mut parts = Parts::default();
    for job in jobs {
        let permit: OwnedSemaphorePermit = Arc::clone(&ctx.requests)
            .acquire_owned()
            .await
            .expect("semaphore open"); // never closed
        let (ctx, conv) = (Arc::clone(&ctx), Arc::clone(&conv));
        tasks.spawn(async move {
            let _permit = permit;
            job.run(&ctx, &conv).await
        });
        while let Some(done) = tasks.try_join_next() {
            parts.add(joined(done)?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        parts.add(joined(done)?);
    }
    let Parts {
        record,
        found,
        reactions,
        mut attachments,
        mut skipped,
    } = parts;
    skipped.sort();
    attachments.sort_by(|a, b| a.attachment_id.cmp(&b.attachment_id));
    let mut outcome = Outcome {
        objects: objects.count(),
        bytes: objects.bytes(),
        skipped,
        ..Outcome::default()
    };

    let (messages, duplicates) = order(found);
    let mut conversation = match record {
        Some(c) => c,
        None => {
            outcome.without_meta = true;
            Conversation {
                conversation_id: conv.to_string(),
                join_code: crate::chat::join::new_join_code(),
                status: ConversationStatus::Active,
                created_at: created_at(&messages, &attachments, crate::clock::now_ms()),
                closed_at: None,
                integrator_id: None,
            }
        }
    };
    outcome.owner = match (&conversation.integrator_id, &ctx.owner) {
        (Some(_), _) => Owner::Bucket,
        (None, Some(owner)) => {
            conversation.integrator_id = Some(owner.clone());
            Owner::Given
        }
        (None, None) => Owner::None,
    };
    outcome.messages = messages.len();
    outcome.duplicates = duplicates;
    outcome.reactions = reactions.len();
    outcome.attachments = attachments.len();
    Ok(Restored {
        conversation,
        messages,
        reactions: reactions.into_iter().collect(),
        attachments,
        outcome,
    })
}

/// A conversation created from its messages: when its first message was
/// received (else its first attachment was uploaded, else `now_ms`).
pub fn created_at(messages: &[Message], attachments: &[AttachmentMeta], now_ms: i64) -> String {
    let first =
        |times: &mut dyn Iterator<Item = &str>| times.filter_map(layout::parse_rfc3339_ms).min();
    let ms = first(&mut messages.iter().map(|m| m.server_received_at.as_str()))
        .or_else(|| first(&mut attachments.iter().map(|a| a.created_at.as_str())))
        .unwrap_or(now_ms);
    crate::clock::rfc3339_ms(ms)
}

async fn meta(ctx: &Ctx, conv: &str) -> Result<Result<Conversation, Skipped>, SyncError> {
    let key = layout::meta_key(conv);
    Ok(fetch(ctx, &key).await?.and_then(|body| {
        match serde_json::from_slice::<Conversation>(&body) {
            Ok(c) if c.conversation_id == conv => Ok(c),
            Ok(_) => Err(skipped(
                &key,
                "conversationId differs from its folder; restored with defaults",
            )),
            Err(e) => Err(skipped(
                &key,
                format!("not a conversation record ({e}); restored with defaults"),
            )),
        }
    }))
}

async fn reactions(
    ctx: &Ctx,
    conv: &str,
) -> Result<Result<Vec<(String, String, String)>, Skipped>, SyncError> {
    let key = layout::reactions_key(conv);
    Ok(fetch(ctx, &key).await?.and_then(|body| {
        serde_json::from_slice::<
            std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>,
        >(&body)
        .map(|map| {
            map.into_iter()
                .flat_map(|(message, by_emoji)| {
                    by_emoji.into_iter().flat_map(move |(emoji, users)| {
                        let message = message.clone();
                        users
                            .into_iter()
                            .map(move |user| (message.clone(), emoji.clone(), user))
                    })
                })
                .collect()
        })
        .map_err(|e| skipped(&key, format!("not a reactions map ({e})")))
    }))
}

/// The messages of one NDJSON object (pure): every line that parses, and each
/// one that does not.
fn messages(conv: &str, key: &str, object: usize, body: &[u8]) -> Part {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    for (line, raw) in layout::ndjson_lines(body).enumerate() {
        match parse_message(raw) {
            Ok(m) if m.conversation_id == conv => found.push(Found {
                received_ms: layout::parse_rfc3339_ms(&m.server_received_at).unwrap_or(0),
                message: m,
                object,
                line,
            }),
            Ok(m) => bad.push(skipped(
                key,
                format!(
                    "line {}: a message of conversation {:?}",
                    line + 1,
                    m.conversation_id
                ),
            )),
            Err(_) if std::str::from_utf8(raw).is_err() => {
                bad.push(skipped(key, format!("line {}: not UTF-8 text", line + 1)))
            }
            Err(e) => bad.push(skipped(
                key,
                format!("line {}: not a message ({e})", line + 1),
            )),
        }
    }
    Part::Messages(found, bad)
}

async fn attachment(
    ctx: &Ctx,
    conv: &str,
    id: &str,
    original: Option<u64>,
    has_meta: bool,
) -> Result<Result<AttachmentMeta, Skipped>, SyncError> {
    let meta_key = layout::attachment_meta_key(conv, id);
    let original_key = layout::attachment_original_key(conv, id);
    let Some(size) = original else {
        ctx.progress.read(0);
        return Ok(Err(skipped(&meta_key, "attachment without its original")));
    };
    if !has_meta {
        ctx.progress.read(0);
        return Ok(Err(skipped(
            &original_key,
            "attachment without its meta.json",
        )));
    }
    let meta = match fetch(ctx, &meta_key).await? {
        Ok(body) => serde_json::from_slice::<AttachmentMeta>(&body)
            .ok()
            .filter(|m| m.attachment_id == id && m.conversation_id == conv),
        Err(s) => {
            ctx.progress.read(0);
            return Ok(Err(s));
        }
    };
    let Some(meta) = meta else {
        ctx.progress.read(0);
        return Ok(Err(skipped(&meta_key, "not this attachment's metadata")));
    };
    let tmp_dir = ctx.dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(|e| SyncError::io(&tmp_dir, e))?;
    let tmp = tmp_dir.join(format!("{PARTIAL}{id}"));
    let got = match ctx.s3.fetch_to_file(&original_key, &tmp).await? {
        Fetched::Found(n) => n,
        Fetched::Missing => {
            ctx.progress.read(0);
            return Ok(Err(skipped(&original_key, "listed, but gone when read")));
        }
        Fetched::Refused(why) => {
            ctx.progress.read(0);
            return Ok(Err(skipped(
                &original_key,
                format!("S3 refused to serve it: {why}"),
            )));
        }
    };
    ctx.progress.read(got);
    if got != meta.size_bytes || got != size {
        tracing::warn!(
            attachment = id,
            expected = meta.size_bytes,
            got,
            "restore: attachment size differs from its metadata"
        );
    }
    let dest = crate::attachments::blob_path(&ctx.dir, id);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| SyncError::io(parent, e))?;
    }
    tokio::fs::rename(&tmp, &dest)
        .await
        .map_err(|e| SyncError::io(&dest, e))?;
    Ok(Ok(meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(at: &str) -> Message {
        parse_message(
            serde_json::json!({
                "messageId": "m", "conversationId": "c", "senderUserId": "system",
                "senderDisplayName": "System", "type": "system", "body": "hi",
                "serverReceivedAt": at,
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn a_conversation_without_meta_starts_at_its_first_message() {
        let ms = [
            message("2024-03-02T10:00:00.000Z"),
            message("2024-03-01T09:30:00+01:00"),
            message("not a time"),
        ];
        assert_eq!(created_at(&ms, &[], 0), "2024-03-01T08:30:00.000Z");
        assert_eq!(
            created_at(&[], &[], 1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
    }

    #[test]
    fn unreadable_lines_are_named_and_the_rest_kept() {
        let body = b"{\"messageId\":\"a\",\"conversationId\":\"c\",\"senderUserId\":\"u\",\"senderDisplayName\":\"U\",\"type\":\"text\",\"body\":\"x\",\"serverReceivedAt\":\"2024-01-01T00:00:00Z\"}\n{not json\n\xff\xfe\n";
        let Part::Messages(found, bad) = messages("c", "k", 3, body) else {
            panic!("messages part");
        };
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].object, found[0].line), (3, 0));
        let reasons: Vec<_> = bad.iter().map(|s| s.reason.as_str()).collect();
        assert!(
            reasons[0].starts_with("line 2: not a message"),
            "{reasons:?}"
        );
        assert_eq!(reasons[1], "line 3: not UTF-8 text");
    }
}
