//! SSE frame encoding. An event is serialized once into a [`Frame`] and shared
//! by reference (`Arc`) with every subscriber.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

/// One encoded SSE event plus the routing facts subscribers filter on.
#[derive(Debug)]
pub struct Frame {
    /// Store sequence number for persisted events (the SSE `id:`).
    pub seq: Option<u64>,
    /// Sender; broadcasts are not echoed to it.
    pub from: Option<String>,
    /// Target of a targeted event (also delivered back to the sender).
    pub to: Option<String>,
    pub bytes: Bytes,
    /// The room's published byte count after this frame (set by the hub).
    pub end: u64,
}

impl Frame {
    /// Should this frame go to `user`?
    pub fn is_for(&self, user: &str) -> bool {
        match (&self.to, &self.from) {
            (Some(to), from) => to == user || from.as_deref() == Some(user),
            (None, Some(from)) => from != user,
            (None, None) => true,
        }
    }
}

/// The original service's event fields (`id`, `type`, `fromUserId`, `toUserId`
/// — `null` for a broadcast —, `data`, `timestamp` in epoch ms), plus `eventId`
/// on client-relayed events (what `POST /api/v1/signaling` answered).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_user_id: Option<&'a str>,
    to_user_id: Option<&'a str>,
    data: &'a RawValue,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
}

/// An event to encode, said by name: `Event { kind: kind::PEER_JOIN, from:
/// Some(user), ..Event::default() }.value(&data)`. Encoded once into a
/// [`Frame`] shared by every subscriber.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
    /// The event type (`kind::…` for server events).
    pub kind: &'a str,
    /// Sender; broadcasts are not echoed to it.
    pub from: Option<&'a str>,
    /// Target of a targeted event (also delivered back to the sender).
    pub to: Option<&'a str>,
    /// Store sequence number of a persisted event (the SSE `id:` line).
    pub seq: Option<u64>,
    /// Stable event id (e.g. a message id, or what `POST /api/v1/signaling`
    /// answered); a fresh UUID otherwise.
    pub event_id: Option<&'a str>,
}

impl Event<'_> {
    /// Encodes a JSON-serializable value as the event's data.
    pub fn value<T: serde::Serialize>(self, data: &T) -> Frame {
        // Event payloads are plain data; serialization cannot fail.
        let json = serde_json::to_vec(data).expect("event data serializes");
        self.json(&json)
    }

    /// Encodes `data: {"id", "type", "fromUserId", "toUserId", "data",
    /// "timestamp", "eventId"}` with an `id:` line for a persisted event.
    /// `data` must be valid JSON (it is embedded verbatim).
    pub fn json(self, data: &[u8]) -> Frame {
        let Event {
            kind,
            from,
            to,
            seq,
            event_id,
        } = self;
        let raw: &RawValue = std::str::from_utf8(data)
            .ok()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_else(|| {
                // Callers pass serde_json output; fall back to null rather than emit a broken frame.
                serde_json::from_str("null").expect("null is JSON")
            });
        // A line break would end the `data:` line. In JSON text it can only be
        // whitespace (strings escape it), so it is dropped.
        let flat: Box<RawValue>;
        let raw = match raw.get().contains(['\n', '\r']) {
            true => {
                flat = RawValue::from_string(raw.get().replace(['\n', '\r'], ""))
                    .expect("JSON without whitespace line breaks is still JSON");
                &*flat
            }
            false => raw,
        };
        let fresh;
        let id = match event_id {
            Some(id) => id,
            None => {
                fresh = uuid::Uuid::new_v4().to_string();
                &fresh
            }
        };
        let env = Envelope {
            id,
            kind,
            from_user_id: from,
            to_user_id: to,
            data: raw,
            timestamp: crate::clock::now_ms(),
            event_id,
        };
        let mut buf = BytesMut::with_capacity(data.len() + 96);
        if let Some(seq) = seq {
            buf.put_slice(b"id: ");
            buf.put_slice(itoa_u64(seq).as_bytes());
            buf.put_u8(b'\n');
        }
        buf.put_slice(b"data: ");
        // Serializing borrowed strings and a RawValue cannot fail; compact JSON has no newlines.
        serde_json::to_writer((&mut buf).writer(), &env).expect("event serializes");
        buf.put_slice(b"\n\n");
        Frame {
            seq,
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            bytes: buf.freeze(),
            end: 0,
        }
    }
}

fn itoa_u64(n: u64) -> String {
    n.to_string()
}

pub const RETRY: &[u8] = b"retry: 3000\n\n";
pub const HEARTBEAT: &[u8] = b": heartbeat\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_event_has_id_line_and_single_data_line() {
        let f = Event {
            kind: "new-message",
            from: Some("u1"),
            seq: Some(42),
            event_id: Some("m-1"),
            ..Default::default()
        }
        .json(br#"{"body":"a\nb"}"#);
        let s = std::str::from_utf8(&f.bytes).unwrap();
        let (head, rest) = s.split_once(",\"timestamp\":").unwrap();
        assert_eq!(
            head,
            "id: 42\ndata: {\"id\":\"m-1\",\"type\":\"new-message\",\"fromUserId\":\"u1\",\"toUserId\":null,\"data\":{\"body\":\"a\\nb\"}"
        );
        assert!(rest.ends_with(",\"eventId\":\"m-1\"}\n\n"), "{rest}");
        assert_eq!(
            s.matches('\n').count(),
            3,
            "one id line, one data line, blank line"
        );
    }

    #[test]
    fn every_event_has_an_id_and_a_timestamp() {
        let f = Event {
            kind: "typing",
            from: Some("a"),
            ..Default::default()
        }
        .json(b"{}");
        let line = std::str::from_utf8(&f.bytes).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(line.strip_prefix("data: ").unwrap().trim_end()).unwrap();
        assert_eq!(v["id"].as_str().map(str::len), Some(36));
        assert!(v["timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(v["toUserId"].is_null() && v.get("eventId").is_none());
    }

    #[test]
    fn routing_rules() {
        let b = Event {
            kind: "typing",
            from: Some("a"),
            ..Default::default()
        }
        .json(b"{}");
        assert!(!b.is_for("a") && b.is_for("b"));
        let t = Event {
            kind: "offer",
            from: Some("a"),
            to: Some("b"),
            ..Default::default()
        }
        .json(b"{}");
        assert!(t.is_for("a") && t.is_for("b") && !t.is_for("c"));
        let s = Event {
            kind: "system",
            ..Default::default()
        }
        .json(b"\"x\"");
        assert!(s.is_for("a"));
    }

    #[test]
    fn json_with_line_breaks_still_makes_one_data_line() {
        // Found by `any_event_is_exactly_one_sse_event`: pretty-printed data
        // was embedded verbatim, and its line breaks split the event.
        let f = Event {
            kind: "x",
            seq: Some(3),
            event_id: Some("e"),
            ..Default::default()
        }
        .json(b"[\n  1,\r\n  \"a\\nb\"\n]");
        let s = std::str::from_utf8(&f.bytes).unwrap();
        assert!(s.contains("\"data\":[  1,  \"a\\nb\"]"), "{s}");
        assert_eq!(s.matches('\n').count(), 3, "{s}");
    }

    mod fuzz {
        use super::*;
        use crate::fuzzing::strategy::json_value;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            /// Whatever the names and the data, a frame is one SSE event: an
            /// optional `id:` line and one `data:` line holding one JSON object,
            /// with no line break a client could read as another field.
            #[test]
            fn any_event_is_exactly_one_sse_event(
                kind in any::<String>(),
                from in any::<Option<String>>(),
                to in any::<Option<String>>(),
                data in prop_oneof![
                    json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
                    json_value().prop_map(|v| serde_json::to_vec_pretty(&v).unwrap()),
                    any::<Vec<u8>>(),
                ],
                seq in any::<Option<u64>>(),
                event_id in any::<Option<String>>(),
            ) {
                let f = Event { kind: &kind, from: from.as_deref(), to: to.as_deref(), seq, event_id: event_id.as_deref() }.json(&data);
                let text = std::str::from_utf8(&f.bytes).unwrap();
                let body = text.strip_suffix("\n\n").unwrap();
                let data_line = match seq {
                    Some(s) => body.strip_prefix(&format!("id: {s}\n")).unwrap(),
                    None => body,
                };
                let json = data_line.strip_prefix("data: ").unwrap();
                prop_assert!(!json.contains(['\n', '\r']), "a line break in {:?}", json);
                let v: serde_json::Value = serde_json::from_str(json).unwrap();
                prop_assert_eq!(v["type"].as_str(), Some(kind.as_str()));
            }
        }
    }
}
