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
    Full,
}

/// Decides a join given the conversation's sessions and who is active.
pub fn decide(
    name: &str,
    sessions: &[Session],
    is_active: impl Fn(&str) -> bool,
    active_count: usize,
    max: usize,
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
    if active_count >= max {
        return JoinDecision::Full;
    }
    match holders.first() {
        None => JoinDecision::New,
        Some(first) => JoinDecision::Takeover {
            user_id: first.user_id.clone(),
            stale_sessions: holders.iter().map(|s| s.session_id.clone()).collect(),
        },
    }
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
            decide("ann", &ss, |u| u == "u1", 1, 50),
            JoinDecision::NameTaken
        );
    }

    #[test]
    fn inactive_name_is_taken_over() {
        let ss = [s("s1", "u1", "Ann"), s("s2", "u2", "Bob")];
        assert_eq!(
            decide("ANN", &ss, |u| u == "u2", 1, 50),
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
            decide("casey", &ss, |_| false, 0, 50),
            JoinDecision::NameReserved
        );
        assert_eq!(
            decide("Casey", &ss, |u| u == "cust-7", 1, 50),
            JoinDecision::NameTaken
        );
    }

    #[test]
    fn full_conversation_refuses_new_names() {
        assert_eq!(decide("Cy", &[], |_| true, 2, 2), JoinDecision::Full);
        assert_eq!(decide("Cy", &[], |_| true, 1, 2), JoinDecision::New);
    }
}
