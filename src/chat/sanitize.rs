//! HTML stripping with ammonia. Every tag is removed (the contents of
//! `script`/`style` with it); text is kept HTML-escaped, as the original's
//! `sanitize-html` with no allowed tags did, so integrators that insert bodies
//! as HTML stay safe. Our own UI decodes entities and renders text only.

use std::sync::OnceLock;

fn cleaner() -> &'static ammonia::Builder<'static> {
    static B: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    B.get_or_init(|| {
        let mut b = ammonia::Builder::empty();
        b.clean_content_tags(
            [
                "script", "style", "iframe", "object", "noscript", "template",
            ]
            .into(),
        );
        b
    })
}

/// Strips all HTML from `input`.
pub fn strip_html(input: &str) -> String {
    // Fast path: nothing that could be markup or an entity.
    if !input.contains(['<', '>', '&', '"', '\'']) {
        return input.to_string();
    }
    cleaner().clean(input).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_removed_and_script_content_dropped() {
        assert_eq!(strip_html("<b>hi</b> there"), "hi there");
        assert_eq!(strip_html("x<script>alert(1)</script>y"), "xy");
        assert_eq!(strip_html("<img src=x onerror=alert(1)>ok"), "ok");
        assert_eq!(strip_html("<a href='javascript:alert(1)'>link</a>"), "link");
    }

    #[test]
    fn text_is_escaped_not_lost() {
        assert_eq!(strip_html("a < b && c"), "a &lt; b &amp;&amp; c");
        assert_eq!(strip_html("&lt;script&gt;"), "&lt;script&gt;");
        assert_eq!(strip_html("plain text"), "plain text");
        assert_eq!(strip_html("émoji 🎉"), "émoji 🎉");
    }
}
