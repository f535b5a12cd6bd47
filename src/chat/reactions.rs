//! The reaction rule, pure: one reaction per user per message, as in the
//! original service — a new emoji replaces the user's previous one. Works on
//! the `messageId → emoji → [userId]` map the store keeps and the API returns.

use serde_json::{Map, Value};

/// The emojis `user` must lose on `message_id` when reacting with `emoji`.
pub fn replaced(
    reactions: &Map<String, Value>,
    message_id: &str,
    user: &str,
    emoji: &str,
) -> Vec<String> {
    let Some(Value::Object(by_emoji)) = reactions.get(message_id) else {
        return Vec::new();
    };
    by_emoji
        .iter()
        .filter(|(e, users)| {
            e.as_str() != emoji
                && users
                    .as_array()
                    .is_some_and(|u| u.iter().any(|u| u.as_str() == Some(user)))
        })
        .map(|(e, _)| e.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_new_emoji_replaces_only_the_users_own_previous_one() {
        let r = map(json!({
            "m1": { "👍": ["ann", "bob"], "🎉": ["bob"], "😂": ["cat"] },
            "m2": { "❤️": ["ann"] },
        }));
        let mut bob = replaced(&r, "m1", "bob", "😂");
        bob.sort();
        assert_eq!(bob, vec!["🎉", "👍"]);
        assert_eq!(replaced(&r, "m1", "ann", "🎉"), vec!["👍"]);
        assert!(
            replaced(&r, "m1", "ann", "👍").is_empty(),
            "same emoji again"
        );
        assert!(
            replaced(&r, "m1", "dan", "👍").is_empty(),
            "no previous one"
        );
        assert!(
            replaced(&r, "m3", "ann", "👍").is_empty(),
            "no reactions yet"
        );
    }
}
