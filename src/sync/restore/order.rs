//! Which messages a conversation keeps and under which numbers (pure).
//!
//! Messages are deduplicated by `messageId` (the original wrote a retried
//! message twice); a message keeps its `seq` when it has one, the others get
//! the lowest free numbers in (`serverReceivedAt`, key, line) order.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::model::Message;

/// A message read from the bucket, with what orders it.
#[derive(Debug)]
pub struct Found {
    pub message: Message,
    pub received_ms: i64,
    /// Position of its object in the conversation's key order.
    pub object: usize,
    pub line: usize,
}

/// Parses one NDJSON line, filling fields the original could leave out.
pub fn parse_message(raw: &[u8]) -> Result<Message, serde_json::Error> {
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
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Deduplicates by `messageId` and decides every message's `seq`; returns the
/// messages in `seq` order and how many copies were dropped.
pub fn order(mut found: Vec<Found>) -> (Vec<Message>, usize) {
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
    use crate::sync::layout;
    use bytes::Bytes;

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
