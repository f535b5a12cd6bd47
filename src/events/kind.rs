//! The event types the server itself emits. Every emitter names its event with
//! a constant from this file, and [`SERVER_OWNED`] lists them all: clients may
//! relay any other type through `POST /api/v1/signaling`, never one of these,
//! so a participant cannot speak for the server. A new server event is added
//! here, next to the list, and is reserved by that.

/// `connected` on open (and the original's generic system notices).
pub const SYSTEM: &str = "system";
/// Who is present, sent to each new stream.
pub const ROOM_STATE: &str = "room-state";
/// Presence: a user's first stream opened.
pub const PEER_JOIN: &str = "peer-join";
/// Presence: a user's last stream closed (after the grace period) or they left.
pub const PEER_LEAVE: &str = "peer-leave";
/// A committed message (persisted, with `id:`).
pub const NEW_MESSAGE: &str = "new-message";
/// A reaction saved through `POST /api/v1/reactions`.
pub const REACTION: &str = "reaction";
/// The admin closed the conversation.
pub const CONVERSATION_CLOSED: &str = "conversation-closed";
/// Mesh or relay, decided by the server's call topology.
pub const CALL_MODE: &str = "call-mode";
/// The relay's active speaker and last-N set.
pub const CALL_SPEAKER: &str = "call-speaker";
/// The relay's answer, offer or candidate for one participant.
pub const RELAY_SIGNAL: &str = "relay-signal";
/// The last event of a stream whose session ended (`{reason}`).
pub const SESSION_ENDED: &str = "session-ended";
/// The last event of a stream the server closed while its session lives on
/// (`{reason: "slow-consumer"}`); the client reconnects and catches up.
pub const STREAM_CLOSED: &str = "stream-closed";

/// Every type above: refused from clients.
pub const SERVER_OWNED: &[&str] = &[
    SYSTEM,
    ROOM_STATE,
    PEER_JOIN,
    PEER_LEAVE,
    NEW_MESSAGE,
    REACTION,
    CONVERSATION_CLOSED,
    CALL_MODE,
    CALL_SPEAKER,
    RELAY_SIGNAL,
    SESSION_ENDED,
    STREAM_CLOSED,
];

/// Whether a client may relay an event of type `t`: a lowercase name
/// (`a-z`, `0-9`, `-`, starting with a letter, ≤ 32 bytes) the server does not own.
pub fn client_may_send(t: &str) -> bool {
    (1..=32).contains(&t.len())
        && t.as_bytes()[0].is_ascii_lowercase()
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !SERVER_OWNED.contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_relay_their_own_types_only() {
        assert!(client_may_send("offer"));
        assert!(client_may_send("ice-candidate"));
        assert!(client_may_send("typing"));
        for t in SERVER_OWNED {
            assert!(!client_may_send(t), "{t}");
        }
        assert!(!client_may_send("Offer"));
        assert!(!client_may_send(""));
        assert!(!client_may_send("-x"));
        assert!(!client_may_send(&"a".repeat(33)));
    }

    /// Every event the server emits is named by a constant here, so none can be
    /// left out of [`SERVER_OWNED`]: no emitter outside this module passes a
    /// string literal as the event type.
    #[test]
    fn emitters_use_the_constants() {
        fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push((
                        p.display().to_string(),
                        std::fs::read_to_string(&p).unwrap(),
                    ));
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        for (path, text) in files {
            if path.ends_with("events/frame.rs") {
                continue;
            }
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect();
            assert!(
                !code.contains("Event{kind:\""),
                "{path} emits an event named by a literal; add a constant to events/kind.rs"
            );
        }
    }
}
