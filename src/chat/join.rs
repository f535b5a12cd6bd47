//! Join codes and the join decision, pure.
//!
//! Rules: display names are compared by [`name_key`] (case- and
//! confusable-folded). A name held by an *active* participant (one with a live
//! event stream) is refused with 409, as in the original service. A name held
//! by an embedded user (a session that came from an integrator's ticket) is
//! refused too, active or not: that identity belongs to the integrator and is
//! never handed to a join-code user. A name held only by inactive join-code
//! sessions is taken over (those sessions end and the user id is kept, as the
//! original did). A conversation with `max` active participants is full.

use rand::Rng;

use crate::chat::validate::name_key;
use crate::model::Session;

/// Unambiguous alphabet: no 0/O, 1/I/L.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
pub const JOIN_CODE_LEN: usize = 6;

pub fn new_join_code() -> String {
    let mut rng = rand::rng();
    (0..JOIN_CODE_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Join codes are compared case-insensitively and ignoring surrounding space.
pub fn join_code_matches(expected: &str, given: &str) -> bool {
    crate::auth::sign::ct_eq_str(
        &expected.to_ascii_uppercase(),
        &given.trim().to_ascii_uppercase(),
    )
}

#[derive(Debug, PartialEq, Eq)]
pub enum JoinDecision {
    /// A brand-new participant.
    New,
    /// Take over the name of inactive sessions: delete them, reuse `user_id`.
    Takeover {
        user_id: String,
        stale_sessions: Vec<String>,
    },
    NameTaken,
    /// The name belongs to an embedded (integrator-asserted) user.
    NameReserved,
    /// As many participants active as the conversation admits.
    Full,
    /// As many sessions kept as the conversation admits (a new name would add one).
    SessionsFull,
}

/// What a conversation admits.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Participants active at once.
    pub active: usize,
    /// Sessions kept, active or not.
    pub sessions: usize,
}

/// Decides a join given the conversation's sessions and who is active.
pub fn decide(
    name: &str,
    sessions: &[Session],
    is_active: impl Fn(&str) -> bool,
    active_count: usize,
    caps: Caps,
) -> JoinDecision {
    let key = name_key(name);
    let holders: Vec<&Session> = sessions
        .iter()
        .filter(|s| name_key(&s.display_name) == key)
        .collect();
    if holders.iter().any(|s| is_active(&s.user_id)) {
        return JoinDecision::NameTaken;
    }
    if holders.iter().any(|s| s.integrator_id.is_some()) {
        return JoinDecision::NameReserved;
    }
    if active_count >= caps.active {
        return JoinDecision::Full;
    }
    match holders.first() {
        None if sessions.len() >= caps.sessions => JoinDecision::SessionsFull,
        None => JoinDecision::New,
        Some(first) => JoinDecision::Takeover {
            user_id: first.user_id.clone(),
            stale_sessions: holders.iter().map(|s| s.session_id.clone()).collect(),
        },
    }
}

/// Sessions an embedded user may keep in one conversation (tabs, devices,
/// page loads within the session lifetime).
pub const SESSIONS_PER_EMBEDDED_USER: usize = 8;

/// The sessions of `user_id` to end so that a new one keeps them within
/// `keep`: the least recently active first.
pub fn to_replace<'a>(sessions: &'a [Session], user_id: &str, keep: usize) -> Vec<&'a Session> {
    let mut mine: Vec<&Session> = sessions.iter().filter(|s| s.user_id == user_id).collect();
    let excess = (mine.len() + 1).saturating_sub(keep.max(1));
    mine.sort_by_key(|s| s.last_active_at_ms);
    mine.truncate(excess);
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sid: &str, uid: &str, name: &str) -> Session {
        Session {
            session_id: sid.into(),
            user_id: uid.into(),
            display_name: name.into(),
            avatar_url: None,
            role: "participant".into(),
            conversation_id: "c".into(),
            created_at_ms: 0,
            last_active_at_ms: 0,
            integrator_id: None,
        }
    }

    #[test]
    fn join_codes_have_six_unambiguous_characters() {
        for _ in 0..100 {
            let c = new_join_code();
            assert_eq!(c.len(), 6);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)));
        }
        assert!(join_code_matches("ABC234", " abc234 "));
        assert!(!join_code_matches("ABC234", "ABC235"));
    }

    #[test]
    fn active_name_is_taken_case_insensitively() {
        let ss = [s("s1", "u1", "Ann")];
        assert_eq!(
            decide("ann", &ss, |u| u == "u1", 1, CAPS),
            JoinDecision::NameTaken
        );
    }

    #[test]
    fn inactive_name_is_taken_over() {
        let ss = [s("s1", "u1", "Ann"), s("s2", "u2", "Bob")];
        assert_eq!(
            decide("ANN", &ss, |u| u == "u2", 1, CAPS),
            JoinDecision::Takeover {
                user_id: "u1".into(),
                stale_sessions: vec!["s1".into()]
            }
        );
    }

    #[test]
    fn an_embedded_users_name_is_never_taken_over() {
        let mut embedded = s("s1", "cust-7", "Casey");
        embedded.integrator_id = Some("acme".into());
        let ss = [embedded];
        assert_eq!(
            decide("casey", &ss, |_| false, 0, CAPS),
            JoinDecision::NameReserved
        );
        assert_eq!(
            decide("Casey", &ss, |u| u == "cust-7", 1, CAPS),
            JoinDecision::NameTaken
        );
    }

    const CAPS: Caps = Caps {
        active: 50,
        sessions: 1000,
    };

    #[test]
    fn full_conversation_refuses_new_names() {
        let caps = Caps { active: 2, ..CAPS };
        assert_eq!(decide("Cy", &[], |_| true, 2, caps), JoinDecision::Full);
        assert_eq!(decide("Cy", &[], |_| true, 1, caps), JoinDecision::New);
    }

    #[test]
    fn a_conversation_keeps_at_most_its_sessions_but_a_name_can_still_come_back() {
        let ss = [s("s1", "u1", "Ann"), s("s2", "u2", "Bob")];
        let caps = Caps {
            sessions: 2,
            ..CAPS
        };
        assert_eq!(
            decide("Cy", &ss, |_| false, 0, caps),
            JoinDecision::SessionsFull
        );
        assert!(matches!(
            decide("Ann", &ss, |_| false, 0, caps),
            JoinDecision::Takeover { .. }
        ));
    }

    #[test]
    fn an_embedded_user_makes_room_by_ending_their_least_recently_active_sessions() {
        let mut ss: Vec<Session> = (0..5)
            .map(|i| {
                let mut x = s(&format!("s{i}"), "u1", "Ann");
                x.last_active_at_ms = [30, 10, 50, 20, 40][i];
                x
            })
            .collect();
        ss.push(s("other", "u2", "Bob"));
        let ids = |v: Vec<&Session>| v.iter().map(|s| s.session_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(to_replace(&ss, "u1", 3)), ["s1", "s3", "s0"]);
        assert_eq!(ids(to_replace(&ss, "u1", 6)), Vec::<String>::new());
        assert_eq!(ids(to_replace(&ss, "u2", 1)), ["other"]);
        assert_eq!(ids(to_replace(&ss, "u3", 1)), Vec::<String>::new());
    }
}
