//! What clients may put in the events they relay (`POST /api/v1/signaling`),
//! checked before anything is fanned out: a size cap for every event (SDP with
//! many candidates fits in 64 KiB) and a shape for the small, frequent ones
//! (typing, read receipts), so one member cannot make every stream in the room
//! carry large or arbitrary payloads. Pure.

use serde::Deserialize;
use serde_json::value::RawValue;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientEventError {
    #[error("data is {size} bytes; the limit for {kind} is {max}")]
    TooLarge {
        kind: &'static str,
        size: usize,
        max: usize,
    },
    #[error("data {0}")]
    Shape(&'static str),
}

/// Small events: their own cap, far below the general one.
const SMALL_MAX: usize = 512;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Typing {
    #[serde(rename = "isTyping")]
    _is_typing: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReadReceipt {
    message_id: String,
}

/// Checks `data` of an event of type `kind` (already known not to be server-owned).
pub fn check(kind: &str, data: &RawValue, max: usize) -> Result<(), ClientEventError> {
    let size = data.get().len();
    let (cap, cap_kind) = match kind {
        "typing" | "read-receipt" => (SMALL_MAX, "typing and read-receipt events"),
        _ => (max, "relayed events"),
    };
    if size > cap {
        return Err(ClientEventError::TooLarge {
            kind: cap_kind,
            size,
            max: cap,
        });
    }
    match kind {
        "typing" => serde_json::from_str::<Typing>(data.get())
            .map(drop)
            .map_err(|_| ClientEventError::Shape("must be {\"isTyping\": true|false}")),
        "read-receipt" => match serde_json::from_str::<ReadReceipt>(data.get()) {
            Ok(r) if (1..=128).contains(&r.message_id.len()) => Ok(()),
            _ => Err(ClientEventError::Shape(
                "must be {\"messageId\": \"<id of a message>\"}",
            )),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn every_event_is_capped() {
        let sdp = format!("{{\"sdp\":\"{}\"}}", "a".repeat(60_000));
        assert_eq!(check("offer", &raw(&sdp), 64 * 1024), Ok(()));
        let huge = format!("{{\"sdp\":\"{}\"}}", "a".repeat(70_000));
        assert!(matches!(
            check("offer", &raw(&huge), 64 * 1024),
            Err(ClientEventError::TooLarge { .. })
        ));
    }

    #[test]
    fn small_events_have_a_shape() {
        assert_eq!(check("typing", &raw(r#"{"isTyping":true}"#), 65536), Ok(()));
        assert!(check("typing", &raw(r#"{"isTyping":"yes"}"#), 65536).is_err());
        assert!(
            check(
                "typing",
                &raw(&format!(r#"{{"isTyping":true,"x":"{}"}}"#, "a".repeat(600))),
                65536
            )
            .is_err()
        );
        assert_eq!(
            check("read-receipt", &raw(r#"{"messageId":"m1"}"#), 65536),
            Ok(())
        );
        assert!(check("read-receipt", &raw(r#"{"messageId":""}"#), 65536).is_err());
        assert!(check("read-receipt", &raw("null"), 65536).is_err());
        // Nothing but the fixed fields is relayed.
        let extra = r#"{"isTyping":true,"html":"<img src=x onerror=alert(1)>"}"#;
        assert!(check("typing", &raw(extra), 65536).is_err());
        let nested = r#"{"messageId":"m1","nested":{"a":[1]}}"#;
        assert!(check("read-receipt", &raw(nested), 65536).is_err());
    }
}
