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

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to_user_id: Option<&'a str>,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
}

/// Encodes `data: {"type", "fromUserId", "toUserId", "data", "eventId"}` with an
/// optional `id:` line. `data` must be valid JSON (it is embedded verbatim).
pub fn encode(
    kind: &str,
    from: Option<&str>,
    to: Option<&str>,
    data: &[u8],
    seq: Option<u64>,
    event_id: Option<&str>,
) -> Frame {
    let raw: &RawValue = std::str::from_utf8(data)
        .ok()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_else(|| {
            // Callers pass serde_json output; fall back to null rather than emit a broken frame.
            serde_json::from_str("null").expect("null is JSON")
        });
    let env = Envelope {
        kind,
        from_user_id: from,
        to_user_id: to,
        data: raw,
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
    }
}

/// Encodes a JSON-serializable value as event data.
pub fn encode_value<T: serde::Serialize>(
    kind: &str,
    from: Option<&str>,
    to: Option<&str>,
    data: &T,
    event_id: Option<&str>,
) -> Frame {
    // Event payloads are plain data; serialization cannot fail.
    let json = serde_json::to_vec(data).expect("event data serializes");
    encode(kind, from, to, &json, None, event_id)
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
        let f = encode(
            "new-message",
            Some("u1"),
            None,
            br#"{"body":"a\nb"}"#,
            Some(42),
            None,
        );
        let s = std::str::from_utf8(&f.bytes).unwrap();
        assert_eq!(
            s,
            "id: 42\ndata: {\"type\":\"new-message\",\"fromUserId\":\"u1\",\"data\":{\"body\":\"a\\nb\"}}\n\n"
        );
    }

    #[test]
    fn routing_rules() {
        let b = encode("typing", Some("a"), None, b"{}", None, None);
        assert!(!b.is_for("a") && b.is_for("b"));
        let t = encode("offer", Some("a"), Some("b"), b"{}", None, None);
        assert!(t.is_for("a") && t.is_for("b") && !t.is_for("c"));
        let s = encode("system", None, None, b"\"x\"", None, None);
        assert!(s.is_for("a"));
    }
}
