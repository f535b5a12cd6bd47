//! The bucket layout of the original service (see `API.md`, "S3 layout") and
//! NDJSON message segments. Pure: no I/O, no clock.
//!
//! ```text
//! conversations/{c}/meta.json
//! conversations/{c}/messages/{YYYY-MM-DD}/{timestamp}-{uuid}.ndjson
//! conversations/{c}/attachments/{a}/original
//! conversations/{c}/attachments/{a}/meta.json
//! conversations/{c}/reactions.json
//! ```
//!
//! The original wrote one message per object; we write several per segment.
//! A segment's key is a pure function of (conversation, first sequence number
//! in it): the timestamp is the first message's `serverReceivedAt` and the
//! uuid is a v5 uuid of `"{c}/{first_seq}"`. A retried upload, even one that
//! now carries more messages, therefore overwrites the same object instead of
//! adding a second copy of its messages.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::clock::date_of_ms;
use crate::model::valid_conversation_id;

/// Prefix of every object we read or write.
pub const ROOT: &str = "conversations/";

/// Namespace of segment uuids (a fixed random value: the names are ours alone).
const SEGMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_52a4_9a0e_4d0b_8f3e_2b7d_1c55_e0a9);

pub fn meta_key(conv: &str) -> String {
    format!("{ROOT}{conv}/meta.json")
}

pub fn reactions_key(conv: &str) -> String {
    format!("{ROOT}{conv}/reactions.json")
}

pub fn messages_prefix(conv: &str) -> String {
    format!("{ROOT}{conv}/messages/")
}

pub fn attachment_original_key(conv: &str, attachment: &str) -> String {
    format!("{ROOT}{conv}/attachments/{attachment}/original")
}

pub fn attachment_meta_key(conv: &str, attachment: &str) -> String {
    format!("{ROOT}{conv}/attachments/{attachment}/meta.json")
}

/// Key of the segment whose first message has sequence number `first_seq`
/// and was received at `first_ms` (epoch milliseconds).
pub fn segment_key(conv: &str, first_seq: u64, first_ms: i64) -> String {
    let id = Uuid::new_v5(&SEGMENT_NAMESPACE, format!("{conv}/{first_seq}").as_bytes());
    format!(
        "{}{}/{first_ms}-{id}.ndjson",
        messages_prefix(conv),
        date_of_ms(first_ms)
    )
}

/// What an object of the layout holds, by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object<'a> {
    Meta {
        conv: &'a str,
    },
    Reactions {
        conv: &'a str,
    },
    /// An NDJSON file of messages (one per line; the original wrote one per file).
    Messages {
        conv: &'a str,
    },
    AttachmentOriginal {
        conv: &'a str,
        attachment: &'a str,
    },
    AttachmentMeta {
        conv: &'a str,
        attachment: &'a str,
    },
}

/// Attachment ids become file names in the data directory: accept only a
/// closed alphabet, so a hostile bucket cannot name a path.
pub fn valid_attachment_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Classifies a key; `None` for anything outside the layout (or with an
/// invalid conversation or attachment id).
pub fn classify(key: &str) -> Option<Object<'_>> {
    let rest = key.strip_prefix(ROOT)?;
    let (conv, rest) = rest.split_once('/')?;
    if !valid_conversation_id(conv) {
        return None;
    }
    match rest {
        "meta.json" => return Some(Object::Meta { conv }),
        "reactions.json" => return Some(Object::Reactions { conv }),
        _ => {}
    }
    if let Some(name) = rest.strip_prefix("messages/") {
        return name
            .ends_with(".ndjson")
            .then_some(Object::Messages { conv });
    }
    let (attachment, file) = rest.strip_prefix("attachments/")?.split_once('/')?;
    if !valid_attachment_id(attachment) {
        return None;
    }
    match file {
        "original" => Some(Object::AttachmentOriginal { conv, attachment }),
        "meta.json" => Some(Object::AttachmentMeta { conv, attachment }),
        _ => None,
    }
}

/// RFC 3339 → epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `serverReceivedAt` of a stored message, in epoch milliseconds.
fn received_ms(json: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Stamp<'a> {
        #[serde(rename = "serverReceivedAt", borrow)]
        at: std::borrow::Cow<'a, str>,
    }
    let s: Stamp = serde_json::from_slice(json).ok()?;
    parse_rfc3339_ms(&s.at)
}

/// One NDJSON object to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub key: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: usize,
    /// One stored message JSON per line, each line ending in `\n`.
    pub body: Vec<u8>,
}

/// Cuts consecutive stored messages `(seq, json)` (ascending `seq`) into
/// segments, a new one whenever the UTC date of `serverReceivedAt` changes.
/// A message whose time cannot be read counts as received with the one before
/// it (the epoch for the first), so the cut stays deterministic.
///
/// The cut depends only on the messages themselves, and a longer run of
/// messages from the same start cuts into the same segments (the last one
/// possibly longer): a retry reproduces the keys it wrote before.
pub fn segments(conv: &str, messages: &[(u64, bytes::Bytes)]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut current_date = String::new();
    let mut last_ms = 0i64;
    for (seq, json) in messages {
        let ms = received_ms(json).unwrap_or(last_ms);
        last_ms = ms;
        let date = date_of_ms(ms);
        let start_new = match out.last() {
            None => true,
            Some(_) => date != current_date,
        };
        if start_new {
            current_date = date;
            out.push(Segment {
                key: segment_key(conv, *seq, ms),
                first_seq: *seq,
                last_seq: *seq,
                count: 0,
                body: Vec::new(),
            });
        }
        // `out` has at least the segment pushed above.
        let Some(seg) = out.last_mut() else { continue };
        seg.last_seq = *seq;
        seg.count += 1;
        seg.body.extend_from_slice(json);
        seg.body.push(b'\n');
    }
    out
}

/// The non-empty lines of an NDJSON object (a trailing `\r` is dropped).
pub fn ndjson_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(seq: u64, at: &str) -> (u64, Bytes) {
        let json =
            serde_json::json!({"messageId": format!("m{seq}"), "serverReceivedAt": at, "seq": seq});
        (seq, Bytes::from(serde_json::to_vec(&json).unwrap()))
    }

    #[test]
    fn keys_follow_the_original_layout() {
        assert_eq!(meta_key("c1"), "conversations/c1/meta.json");
        assert_eq!(reactions_key("c1"), "conversations/c1/reactions.json");
        assert_eq!(
            attachment_original_key("c1", "a1"),
            "conversations/c1/attachments/a1/original"
        );
        assert_eq!(
            attachment_meta_key("c1", "a1"),
            "conversations/c1/attachments/a1/meta.json"
        );
        let k = segment_key("c1", 7, 1_700_000_000_123);
        let name = k
            .strip_prefix("conversations/c1/messages/2023-11-14/1700000000123-")
            .unwrap();
        let uuid = name.strip_suffix(".ndjson").unwrap();
        assert_eq!(Uuid::parse_str(uuid).unwrap().get_version_num(), 5);
    }

    #[test]
    fn segment_key_depends_only_on_conversation_and_first_seq() {
        assert_eq!(segment_key("c", 5, 1000), segment_key("c", 5, 1000));
        assert_ne!(segment_key("c", 5, 1000), segment_key("c", 6, 1000));
        assert_ne!(segment_key("c", 5, 1000), segment_key("d", 5, 1000));
    }

    #[test]
    fn a_retry_with_more_messages_rewrites_the_same_segment() {
        let first = [
            msg(3, "2024-05-01T10:00:00.000Z"),
            msg(4, "2024-05-01T10:00:01.000Z"),
        ];
        let retry = [
            first[0].clone(),
            first[1].clone(),
            msg(5, "2024-05-01T10:00:02.000Z"),
        ];
        let a = segments("c", &first);
        let b = segments("c", &retry);
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 1);
        assert_eq!(a[0].key, b[0].key);
        assert_eq!(b[0].count, 3);
        assert_eq!((b[0].first_seq, b[0].last_seq), (3, 5));
        assert!(b[0].body.starts_with(&a[0].body));
    }

    #[test]
    fn segments_split_at_utc_midnight() {
        let run = [
            msg(1, "2024-05-01T23:59:59.000Z"),
            msg(2, "2024-05-01T23:59:59.900Z"),
            msg(3, "2024-05-02T00:00:00.100Z"),
            msg(4, "2024-05-02T01:00:00+02:00"), // 2024-05-01T23:00Z: back to the 1st
        ];
        let segs = segments("c", &run);
        let spans: Vec<_> = segs.iter().map(|s| (s.first_seq, s.last_seq)).collect();
        assert_eq!(spans, vec![(1, 2), (3, 3), (4, 4)]);
        assert!(segs[0].key.contains("/messages/2024-05-01/"));
        assert!(segs[1].key.contains("/messages/2024-05-02/"));
        assert!(segs[2].key.contains("/messages/2024-05-01/"));
        let lines: Vec<_> = ndjson_lines(&segs[0].body).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], run[1].1.as_ref());
    }

    #[test]
    fn unreadable_times_join_the_previous_message() {
        let bad = (2, Bytes::from_static(br#"{"messageId":"x"}"#));
        let segs = segments("c", &[msg(1, "2024-05-01T10:00:00Z"), bad]);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].count, 2);
    }

    #[test]
    fn classify_reads_every_key_we_write_and_rejects_others() {
        assert_eq!(classify(&meta_key("c")), Some(Object::Meta { conv: "c" }));
        assert_eq!(
            classify(&reactions_key("c")),
            Some(Object::Reactions { conv: "c" })
        );
        assert_eq!(
            classify(&segment_key("c", 1, 0)),
            Some(Object::Messages { conv: "c" })
        );
        assert_eq!(
            classify(&attachment_original_key("c", "a-1")),
            Some(Object::AttachmentOriginal {
                conv: "c",
                attachment: "a-1"
            })
        );
        assert_eq!(
            classify(&attachment_meta_key("c", "a-1")),
            Some(Object::AttachmentMeta {
                conv: "c",
                attachment: "a-1"
            })
        );
        for bad in [
            "other/c/meta.json",
            "conversations/c/unknown.json",
            "conversations/c/messages/2024-01-01/x.json",
            "conversations/../meta.json",
            "conversations/c/attachments/../original",
            "conversations/c/attachments/a/b/original",
            "conversations/c/attachments/a/thumbnail",
        ] {
            assert_eq!(classify(bad), None, "{bad}");
        }
    }

    #[test]
    fn ndjson_lines_skip_blank_lines_and_carriage_returns() {
        let lines: Vec<_> = ndjson_lines(b"{\"a\":1}\r\n\n  \n{\"b\":2}").collect();
        assert_eq!(lines, vec![&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
    }

    #[test]
    fn a_message_stamped_before_year_zero_is_segmented() {
        // RFC 3339 allows "0000-01-01T00:00:00+01:00", an instant in year -1
        // whose date could not be formatted (a panic in the uploader).
        let at = "0000-01-01T00:00:00+01:00";
        assert!(parse_rfc3339_ms(at).is_some_and(|ms| ms < -62_167_219_200_000));
        let segs = segments("c", &[msg(1, at)]);
        assert_eq!(segs.len(), 1);
        assert!(
            segs[0].key.contains("/messages/1970-01-01/"),
            "{}",
            segs[0].key
        );
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::{json_value, rfc3339};
        use proptest::prelude::*;

        /// A stored message as the bucket could hold it: any JSON, usually
        /// with a `serverReceivedAt` (any RFC 3339 offset, any year).
        fn message() -> impl Strategy<Value = Bytes> {
            (
                json_value(),
                prop::option::of(prop_oneof![rfc3339(), any::<String>()]),
            )
                .prop_map(|(v, at)| {
                    let v = match (v, at) {
                        (serde_json::Value::Object(mut o), Some(at)) => {
                            o.insert("serverReceivedAt".into(), at.into());
                            serde_json::Value::Object(o)
                        }
                        (v, Some(at)) => serde_json::json!({"serverReceivedAt": at, "x": v}),
                        (v, None) => v,
                    };
                    Bytes::from(serde_json::to_vec(&v).unwrap())
                })
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            /// NDJSON write → read: segments hold every message once, in
            /// order, and read back line for line.
            #[test]
            fn segments_read_back_as_the_messages_written(
                conv in "[A-Za-z0-9_-]{1,64}",
                first in any::<u64>().prop_map(|s| s / 2),
                msgs in prop::collection::vec(message(), 0..12),
            ) {
                let run: Vec<(u64, Bytes)> =
                    msgs.into_iter().enumerate().map(|(i, m)| (first + i as u64, m)).collect();
                let segs = segments(&conv, &run);
                let mut read = Vec::new();
                for s in &segs {
                    prop_assert_eq!(classify(&s.key), Some(Object::Messages { conv: &conv }));
                    let lines: Vec<&[u8]> = ndjson_lines(&s.body).collect();
                    prop_assert_eq!(lines.len(), s.count);
                    read.extend(lines.into_iter().map(|l| l.to_vec()));
                }
                let written: Vec<Vec<u8>> = run.iter().map(|(_, j)| j.to_vec()).collect();
                prop_assert_eq!(read, written);
            }

            #[test]
            fn any_bucket_key_is_classified_without_panicking(key in prop_oneof![
                any::<String>(),
                "conversations/[a-z.]{0,4}/(meta.json|reactions.json|messages/[0-9-]{0,10}/[a-z0-9.-]{0,12}|attachments/[a-z.-]{0,5}/(original|meta.json|x))",
            ]) {
                match classify(&key) {
                    Some(Object::Meta { conv } | Object::Reactions { conv } | Object::Messages { conv }) => {
                        prop_assert!(valid_conversation_id(conv));
                    }
                    Some(Object::AttachmentOriginal { conv, attachment } | Object::AttachmentMeta { conv, attachment }) => {
                        prop_assert!(valid_conversation_id(conv) && valid_attachment_id(attachment));
                        prop_assert!(!attachment.contains(['.', '/']));
                    }
                    None => {}
                }
            }

            #[test]
            fn any_object_body_splits_into_bounded_lines(body in prop::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b' '), any::<u8>()], 0..200,
            )) {
                let mut total = 0;
                for l in ndjson_lines(&body) {
                    prop_assert!(!l.contains(&b'\n') && !l.is_empty());
                    total += l.len() + 1;
                }
                prop_assert!(total <= body.len() + 1);
            }

            #[test]
            fn any_time_text_parses_or_is_refused(s in prop_oneof![rfc3339(), any::<String>()]) {
                if let Some(ms) = parse_rfc3339_ms(&s) {
                    prop_assert_eq!(date_of_ms(ms).len(), 10);
                }
            }
        }
    }
}
