//! Validation of user input: display names, message drafts, emoji, URLs.
//! Errors name the offending field so the HTTP layer can report it.
//!
//! Display names are shown to other participants as the sender's identity, so
//! they are NFC-normalised and may not hide anything: no control, format,
//! private-use, unassigned or default-ignorable code points (bidi overrides,
//! zero-width characters, Hangul fillers, soft hyphens, …). [`name_key`] is the
//! form two names are compared in when they must not look alike. Message URLs
//! may only point at this server.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;

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

/// Whether `c` may render as nothing, change how the text around it renders
/// or have no agreed look: controls, format characters (bidi controls,
/// zero-width characters), line and paragraph separators, private-use,
/// surrogate and unassigned code points, and anything Unicode calls
/// default-ignorable (Hangul fillers, variation selectors, U+180E, U+00AD),
/// and symbols drawn as blank space (U+2800 BRAILLE PATTERN BLANK, U+FFFC,
/// U+1D159 MUSICAL SYMBOL NULL NOTEHEAD).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{2800}' | '\u{FFFC}' | '\u{1D159}')
        || matches!(
            c.general_category(),
            GeneralCategory::Control
                | GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
                | GeneralCategory::PrivateUse
                | GeneralCategory::Surrogate
                | GeneralCategory::Unassigned
        )
        || c.identifier_type() == Some(IdentifierType::Default_Ignorable)
}

/// Whether `s` has an invisible character other than a joiner that joins:
/// U+200C/U+200D between two visible characters that are not ASCII, as in
/// Persian "محمد‌رضا" or the emoji "👩‍💻". Between ASCII letters a joiner
/// changes nothing visible ("Al‍ice"), so there it counts as hiding.
fn hides_characters(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().any(|(i, &c)| {
        if !is_invisible(c) {
            return false;
        }
        let joins = |n: Option<&char>| {
            n.is_some_and(|&n| !n.is_ascii() && !n.is_whitespace() && !is_invisible(n))
        };
        let joiner = matches!(c, '\u{200C}' | '\u{200D}');
        !(joiner && joins(i.checked_sub(1).and_then(|p| chars.get(p))) && joins(chars.get(i + 1)))
    })
}

/// `s` trimmed, each run of whitespace (of any kind) one plain space.
fn one_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A display name: HTML stripped, trimmed, NFC-normalised, each whitespace run
/// one plain space, 1..=max characters,
/// nothing invisible (checked before and after stripping, which decodes
/// character references).
pub fn display_name(raw: &str, max: usize) -> Result<String, FieldError> {
    let stripped: String = strip_html(raw.trim()).nfc().collect();
    // Every run of whitespace is one plain space: a hair or thin space would
    // draw "B ob" as "Bob".
    let name = one_space(&stripped);
    if hides_characters(raw) || hides_characters(&name) {
        return Err(field(
            "displayName",
            "must not contain invisible, control or formatting characters",
        ));
    }
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

/// The form display names are compared in for uniqueness: joiners dropped,
/// then mapped to the UTS #39 confusable skeleton, lowercased and mapped
/// again, twice, with whitespace runs collapsed, and then `i` taken as `l`.
/// The skeleton before lowercasing folds capitals that look like Latin ones
/// ("Вob" with a Cyrillic В, "Τom" with a Greek Τ: lowercased first they
/// would be "в", "τ", which look like nothing Latin); the one after folds
/// small look-alikes ("Аlice" with Cyrillic А, "A1ice", "B0b"); the second
/// round settles prototypes that are capitals ("𝐁" → "B" → "b"); and since
/// the skeleton turns a capital I into "l" ("ALICE" → "ALlCE") while a small
/// i stays, `i` and `l` are one letter here ("AIice", "ALICE" and "Alice" are
/// one name). Some distinct names share a key ("Lia", "Ila"): the second waits
/// for the first to leave, which is the cheap side of the trade. Not for
/// display.
pub fn name_key(name: &str) -> String {
    let name: String = name
        .chars()
        .filter(|c| !matches!(c, '\u{200C}' | '\u{200D}'))
        .collect();
    let fold = |s: &str| -> String {
        let typed: String = unicode_security::skeleton(s).collect();
        let folded: String = unicode_security::skeleton(&typed.to_lowercase()).collect();
        one_space(&folded)
    };
    fold(&fold(&name)).replace('i', "l")
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

/// An optional message `url`: a path on this server (one leading `/`, so
/// not protocol-relative) or an absolute http(s) URL of `own_origin` (the
/// configured public URL), without credentials. Backslashes, whitespace,
/// controls, quotes and backticks are refused outright (browsers read `/\host`
/// as `//host` and drop tabs and newlines). The checks apply to the stored,
/// HTML-stripped form, in which character references are already decoded.
pub fn message_url(
    raw: Option<&str>,
    own_origin: Option<&str>,
) -> Result<Option<String>, FieldError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let refused = || {
        field(
            "url",
            "must be a path on this server or a URL of its public origin",
        )
    };
    if raw.chars().count() > 2048 {
        return Err(refused());
    }
    let url = strip_html(raw);
    let suspicious = |c: char| c.is_control() || c.is_whitespace() || "\\\"'`".contains(c);
    if url.chars().any(suspicious) || !(is_local_path(&url) || is_own_url(&url, own_origin)) {
        return Err(refused());
    }
    Ok(Some(url))
}

/// A path on the server the page came from: `/x`, never `//host`.
fn is_local_path(u: &str) -> bool {
    u.starts_with('/') && !u.starts_with("//")
}

/// An absolute http(s) URL, without credentials, on the origin of `own`.
fn is_own_url(u: &str, own: Option<&str>) -> bool {
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        return false;
    }
    let (Ok(parsed), Some(Ok(own))) = (url::Url::parse(u), own.map(url::Url::parse)) else {
        return false;
    };
    parsed.username().is_empty() && parsed.password().is_none() && parsed.origin() == own.origin()
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
        for thin in [
            "B\u{200A}ob",
            "B\u{2009}ob",
            "B\u{202F}ob",
            "B&#x200A;ob",
            "B  ob",
        ] {
            assert_eq!(display_name(thin, 50).unwrap(), "B ob", "{thin:?}");
        }
    }

    #[test]
    fn display_names_are_nfc_and_any_script() {
        assert_eq!(display_name("Zoe\u{308}", 50).unwrap(), "Zo\u{eb}");
        assert_eq!(display_name("Jose\u{301}", 50).unwrap(), "Jos\u{e9}");
        assert_eq!(display_name("李雷", 50).unwrap(), "李雷");
        assert_eq!(display_name("Ann Lee", 50).unwrap(), "Ann Lee");
        assert_eq!(display_name("Ann 👍", 50).unwrap(), "Ann 👍");
        assert_eq!(
            display_name("Ana-María O'Neil", 50).unwrap(),
            "Ana-María O'Neil"
        );
        assert_eq!(display_name("محمد", 50).unwrap(), "محمد");
    }

    #[test]
    fn display_names_cannot_hide_characters() {
        let hidden = [
            (
                "bidi",
                "\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}\u{2066}\u{2067}\u{2068}\u{2069}\u{200E}\u{200F}\u{061C}",
            ),
            ("zero-width", "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}"),
            (
                "default-ignorable",
                "\u{3164}\u{115F}\u{1160}\u{FFA0}\u{180E}\u{00AD}\u{034F}\u{FE0F}\u{E0041}",
            ),
            ("control or separator", "\u{7}\u{7F}\u{85}\u{2028}\u{2029}"),
            ("private-use or unassigned", "\u{E000}\u{0378}"),
        ];
        for (class, chars) in hidden {
            for c in chars.chars() {
                let e = display_name(&format!("Ann{c}Lee"), 50).unwrap_err();
                assert_eq!(e.field, "displayName", "{class} U+{:04X}", c as u32);
            }
        }
        assert!(
            display_name("\u{3164}", 50).is_err(),
            "a name of filler only"
        );
        // Joiners that join: Persian with ZWNJ, an emoji sequence with ZWJ.
        assert!(display_name("محمد\u{200C}رضا", 50).is_ok());
        assert!(display_name("\u{1F469}\u{200D}\u{1F4BB} Jane", 50).is_ok());
        for hiding in [
            "Al\u{200D}ice",
            "\u{200C}محمد",
            "محمد\u{200C}",
            "محمد\u{200C} رضا",
        ] {
            assert!(display_name(hiding, 50).is_err(), "{hiding:?}");
        }
        for blank in ["Alice\u{2800}", "\u{2800}", "Al\u{FFFC}ice", "\u{1D159}Bob"] {
            assert!(display_name(blank, 50).is_err(), "{blank:?}");
        }
        assert!(
            display_name("Ann&#x202E;eL", 50).is_err(),
            "hidden as a reference"
        );
    }

    #[test]
    fn name_keys_fold_case_and_look_alikes() {
        let same = |a: &str, b: &str| assert_eq!(name_key(a), name_key(b), "{a} vs {b}");
        same("Ann", "ANN");
        same("Ann", "\u{410}nn");
        same("Alice", "ALICE");
        same("Alice", "\u{410}lice");
        same("Alice", "A1ice");
        same("Alice", "A|ice");
        same("Bob", "B0b");
        same("Bob", "\u{1D401}\u{1D428}\u{1D41B}");
        same("Bob", "\u{FF22}\u{FF4F}\u{FF42}");
        same("paypal", "\u{3C1}aypal");
        same("Zoe\u{308}", "Zo\u{eb}");
        same("Ann Lee", "Ann  Lee");
        same("Ann Lee", "Ann\u{A0}Lee");
        same("Alice", "AIice");
        same("Mill", "MiII");
        same("ALICE", "AIice");
        same("Bob", "\u{412}ob");
        same("Bob", "\u{392}ob");
        same("Tom", "\u{3A4}om");
        same("Henry", "\u{41D}enry");
        same("Kate", "\u{41A}ate");
        same("Max", "\u{41C}ax");
        same("Bob", "\u{412}\u{43E}b");
        same("محمد\u{200C}رضا", "محمدرضا");
        assert_eq!(
            name_key(&name_key("B0b \u{2211}")),
            name_key("B0b \u{2211}")
        );
        let differ = |a: &str, b: &str| assert_ne!(name_key(a), name_key(b), "{a} vs {b}");
        differ("Ann", "Anna");
        differ("Zoe", "Zoë");
        differ("José", "Jose");
        differ("李雷", "李蕾");
        differ("Ann Lee", "AnnLee");
    }

    #[test]
    fn message_urls_stay_on_this_server() {
        let own = Some("https://chat.example.com");
        let ok = |u: &str, own| message_url(Some(u), own).unwrap().unwrap();
        assert_eq!(
            ok("/api/v1/attachments/x/content", None),
            "/api/v1/attachments/x/content"
        );
        assert_eq!(ok("/a?b=1&c=2", None), "/a?b=1&amp;c=2");
        assert_eq!(
            ok("https://chat.example.com/x", own),
            "https://chat.example.com/x"
        );
        assert_eq!(
            ok("https://chat.example.com:443/x", own),
            "https://chat.example.com:443/x"
        );
        assert_eq!(message_url(None, own).unwrap(), None);
        for bad in [
            "//evil.example/x.png",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " //evil.example",
            "/&#47;evil.example",
            "/&#92;evil.example",
            "/<b></b>/evil.example",
            "/a\"onmouseover=x",
            "https://evil.example/a.png",
            "https://chat.example.com.evil.example/",
            "https://chat.example.com@evil.example/",
            "https://user@chat.example.com/",
            "http://chat.example.com/x",
            "https://chat.example.com:8443/x",
            "javascript:alert(1)",
            "data:text/html,x",
            "chat.example.com/x",
            "",
        ] {
            let e = message_url(Some(bad), own).unwrap_err();
            assert_eq!(e.field, "url", "{bad:?}");
        }
        assert!(message_url(Some("https://chat.example.com/x"), None).is_err());
        assert!(message_url(Some(&format!("/{}", "a".repeat(2048))), None).is_err());
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

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Text with the characters validation cares about: markup, character
        /// references, invisible and bidi characters, combining marks, URL parts.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[a-zA-Z <>&;#x0-9\"'/\\\\:.@?=\u{200b}\u{202e}\u{00ad}\u{0301}\u{3164}\t\n é李👍-]{0,40}",
                "(https?:)?(//|/|\\\\)?[a-z.@:]{0,20}(/[a-z%0-9?#=&]{0,10})?",
            ]
        }

        const OWN: &str = "https://chat.example.com";

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn an_accepted_display_name_is_bounded_visible_and_stable(raw in text(), max in 1usize..60) {
                if let Ok(n) = display_name(&raw, max) {
                    let count = n.chars().count();
                    prop_assert!(count >= 1 && count <= max);
                    prop_assert!(!n.chars().any(is_invisible), "{:?}", n);
                    prop_assert!(!n.contains(['<', '>']));
                    prop_assert_eq!(n.trim(), n.as_str());
                    prop_assert_eq!(display_name(&n, max), Ok(n.clone()), "not stable under revalidation");
                }
            }

            #[test]
            fn any_name_has_a_bounded_key(raw in text()) {
                let k = name_key(&raw);
                prop_assert!(k.len() <= 32 * raw.len() + 4, "{} bytes from {}", k.len(), raw.len());
                // Of a name that passed validation, the key is its own key.
                if let Ok(n) = display_name(&raw, 64) {
                    let k = name_key(&n);
                    prop_assert_eq!(name_key(&k), k.clone());
                }
            }

            #[test]
            fn an_accepted_message_url_stays_on_this_server(raw in text(), own in prop::option::of(Just(OWN))) {
                if let Ok(Some(u)) = message_url(Some(&raw), own) {
                    prop_assert!(!u.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\'));
                    if u.starts_with('/') {
                        prop_assert!(!u.starts_with("//"));
                    } else {
                        let parsed = url::Url::parse(&u).unwrap();
                        prop_assert_eq!(parsed.origin(), url::Url::parse(OWN).unwrap().origin());
                    }
                }
            }

            #[test]
            fn other_fields_are_bounded_or_refused(raw in text(), max in 1usize..100) {
                if let Ok(Some(u)) = avatar_url(Some(&raw)) {
                    prop_assert!(u.len() <= 2048 && u.starts_with("http"));
                }
                if let Ok(id) = message_id(&raw) {
                    prop_assert!(id.len() <= 64);
                }
                if let Ok(e) = emoji(&raw) {
                    prop_assert!(e.len() <= 64);
                }
                for kind in [MessageType::Text, MessageType::File] {
                    if let Ok(b) = body(&raw, kind, max) {
                        prop_assert!(!b.contains('<'));
                        prop_assert!(b.len() <= 8 * raw.len());
                    }
                }
                if let Ok(Some(t)) = short_text("filename", Some(&raw), max) {
                    prop_assert!(t.len() <= 8 * raw.len());
                }
            }
        }
    }
}
