//! Filename sanitizing: the original name is kept for display, but without
//! path parts, control or invisible formatting characters, quotes or anything
//! that could break a `Content-Disposition` header.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A safe display filename (never empty, at most 200 characters).
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !is_format(*c))
        .filter(|c| !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*' | ';'))
        .collect();
    // No leading dots or spaces in any mix (". ." is not a name either).
    let trimmed = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    let mut out: String = trimmed.chars().take(200).collect();
    if out.is_empty() {
        out = "file".into();
    }
    out
}

/// Characters that change how the name around them renders without being
/// seen: bidi overrides ("evil\u{202e}gnp.exe" reads as "evilexe.png"),
/// zero-width characters, line and paragraph separators.
fn is_format(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// `Content-Disposition` value with an ASCII fallback and an RFC 5987 `filename*`.
pub fn content_disposition(inline: bool, filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .filter(|c| *c != '"' && *c != '\\')
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let kind = if inline { "inline" } else { "attachment" };
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parts_and_header_breakers_are_removed() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(
            sanitize_filename("a\r\nSet-Cookie: x=1.txt"),
            "aSet-Cookie x=1.txt"
        );
        assert_eq!(sanitize_filename("\"quoted\".png"), "quoted.png");
        assert_eq!(sanitize_filename("..."), "file");
        assert_eq!(sanitize_filename(""), "file");
        assert_eq!(sanitize_filename(".hidden.txt"), "hidden.txt");
    }

    #[test]
    fn disposition_is_header_safe() {
        let d = content_disposition(false, "résumé \"v2\".pdf");
        assert!(d.starts_with("attachment; filename=\"r_sum_ v2.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"), "{d}");
        assert!(content_disposition(true, "a.png").starts_with("inline;"));
    }

    #[test]
    fn invisible_characters_cannot_disguise_a_name() {
        // Found by `any_multipart_upload_is_stored_safely_or_refused`: a
        // right-to-left override was kept, so "evil\u{202e}gnp.exe" showed as
        // "evilexe.png" to the other participants.
        assert_eq!(sanitize_filename("evil\u{202e}gnp.exe"), "evilgnp.exe");
        assert_eq!(sanitize_filename("a\u{200b}b\u{2028}c.txt"), "abc.txt");
        assert_eq!(sanitize_filename("\u{feff}.png"), "png");
    }

    #[test]
    fn dots_and_spaces_mixed_at_the_start_are_all_removed() {
        // Found by `any_name_becomes_a_safe_bounded_file_name` (20,000 cases):
        // ". ." was trimmed once each way and came out as ".".
        assert_eq!(sanitize_filename(". ."), "file");
        assert_eq!(sanitize_filename(" . .hidden "), "hidden");
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn filename() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[./\\\\]{0,4}[a-zA-Z0-9 ._\"';:<>|?*%\r\n\t\u{0}\u{202e}\u{200b}é€😀-]{0,40}",
                "\\PC{150,260}",
            ]
        }

        /// Percent-decoding of RFC 5987 `value-chars`.
        fn pct_decode(s: &str) -> Option<Vec<u8>> {
            let mut out = Vec::new();
            let b = s.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'%' {
                    out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
                    i += 3;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            Some(out)
        }

        proptest! {
            #![proptest_config(crate::fuzzing::config())]

            #[test]
            fn any_name_becomes_a_safe_bounded_file_name(raw in filename()) {
                let n = sanitize_filename(&raw);
                prop_assert!(!n.is_empty());
                prop_assert!(n.chars().count() <= 200);
                prop_assert!(n.len() <= raw.len().max(4), "longer than its input");
                prop_assert!(!n.starts_with('.') && !n.starts_with(char::is_whitespace));
                prop_assert!(!n.chars().any(|c| c.is_control() || is_format(c) || "/\\\"<>:|?*;".contains(c)), "{:?}", n);
            }

            #[test]
            fn any_name_makes_a_header_that_decodes_back(raw in filename(), inline in any::<bool>()) {
                let name = sanitize_filename(&raw);
                for n in [&name, &raw] {
                    let d = content_disposition(inline, n);
                    prop_assert!(http::HeaderValue::from_str(&d).is_ok(), "{:?}", d);
                    let (head, star) = d.rsplit_once("; filename*=UTF-8''").unwrap();
                    prop_assert_eq!(head.matches('"').count(), 2, "quotes in {:?}", head);
                    let decoded = pct_decode(star);
                    prop_assert_eq!(decoded.as_deref(), Some(n.as_bytes()));
                }
            }
        }
    }
}
