//! Validation of user input: display names, message drafts, emoji, URLs.
//! Errors name the offending field so the HTTP layer can report it.

use super::sanitize::strip_html;
use crate::model::MessageType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

pub fn field(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// A display name: HTML stripped, trimmed, 1..=max characters, no control characters.
pub fn display_name(raw: &str, max: usize) -> Result<String, FieldError> {
    if raw.chars().any(char::is_control) {
        return Err(field("displayName", "must not contain control characters"));
    }
    let name = strip_html(raw.trim()).trim().to_string();
    let n = name.chars().count();
    if n == 0 {
        return Err(field("displayName", "is required"));
    }
    if n > max {
        return Err(field(
            "displayName",
            format!("must be at most {max} characters"),
        ));
    }
    Ok(name)
}

/// An optional avatar URL: http(s) only, bounded length.
pub fn avatar_url(raw: Option<&str>) -> Result<Option<String>, FieldError> {
    let Some(u) = raw.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if u.len() > 2048
        || !(u.starts_with("https://") || u.starts_with("http://"))
        || u.contains(char::is_whitespace)
        || u.contains(['<', '>', '"'])
    {
        return Err(field("avatarUrl", "must be an http(s) URL"));
    }
    Ok(Some(u.to_string()))
}

/// A client-supplied message id: 1..=64 of `[A-Za-z0-9_-]`.
pub fn message_id(raw: &str) -> Result<String, FieldError> {
    if (1..=64).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(raw.to_string())
    } else {
        Err(field(
            "messageId",
            "must be 1-64 characters of A-Z a-z 0-9 - _",
        ))
    }
}

/// A message body: length checked on the raw input, then HTML stripped.
/// Text and system messages need a non-empty result; file messages may be empty.
pub fn body(raw: &str, kind: MessageType, max_chars: usize) -> Result<String, FieldError> {
    if raw.chars().count() > max_chars {
        return Err(field(
            "body",
            format!("must be at most {max_chars} characters"),
        ));
    }
    let clean = strip_html(raw);
    if clean.trim().is_empty() && kind != MessageType::File {
        return Err(field("body", "must not be empty"));
    }
    Ok(clean)
}

/// A reaction emoji: 1..=16 characters, no control characters or markup.
pub fn emoji(raw: &str) -> Result<String, FieldError> {
    let n = raw.chars().count();
    if n == 0
        || n > 16
        || raw.len() > 64
        || raw
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || "<>&\"'".contains(c))
    {
        return Err(field(
            "emoji",
            "must be 1-16 characters without spaces or markup",
        ));
    }
    Ok(raw.to_string())
}

/// Optional short text attribute of a file message (filename, mimetype, url).
pub fn short_text(
    name: &'static str,
    raw: Option<&str>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match raw {
        None => Ok(None),
        Some(s) if s.chars().count() > max || s.chars().any(char::is_control) => Err(field(
            name,
            format!("must be at most {max} characters without control characters"),
        )),
        Some(s) => Ok(Some(strip_html(s))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_cleaned_and_bounded() {
        assert_eq!(display_name("  <b>Ann</b> ", 50).unwrap(), "Ann");
        assert_eq!(display_name("", 50).unwrap_err().field, "displayName");
        assert!(display_name("<script>x</script>", 50).is_err());
        assert!(display_name(&"a".repeat(51), 50).is_err());
        assert!(display_name("a\u{7}b", 50).is_err());
    }

    #[test]
    fn bodies_are_limited_and_stripped() {
        assert_eq!(body("<i>hi</i>", MessageType::Text, 10).unwrap(), "hi");
        assert!(body(&"x".repeat(11), MessageType::Text, 10).is_err());
        assert!(body("<b></b>", MessageType::Text, 10).is_err());
        assert_eq!(body("", MessageType::File, 10).unwrap(), "");
    }

    #[test]
    fn ids_emoji_and_urls() {
        assert!(message_id("abc-123_X").is_ok());
        assert!(message_id("a/b").is_err());
        assert!(emoji("👍").is_ok());
        assert!(emoji("<b>").is_err());
        assert!(avatar_url(Some("javascript:alert(1)")).is_err());
        assert_eq!(avatar_url(Some("")).unwrap(), None);
    }
}
