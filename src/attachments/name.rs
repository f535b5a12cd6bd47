//! Filename sanitizing: the original name is kept for display, but without
//! path parts, control characters, quotes or anything that could break a
//! `Content-Disposition` header.

/// A safe display filename (never empty, at most 200 characters).
pub fn sanitize_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '|' | '?' | '*' | ';'))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let mut out: String = trimmed.chars().take(200).collect();
    if out.is_empty() {
        out = "file".into();
    }
    out
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
}
