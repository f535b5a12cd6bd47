//! Page templates (sailfish) for the browser app: the join, room and admin pages,
//! and the refusal `GET /embed` shows in a host's frame.
//!
//! This module only turns a few strings into HTML; it owns no state, does no I/O and
//! knows nothing about sessions. The pages are shells: everything dynamic is done by the
//! ES modules under `static/js/`, which receive their inputs through `data-` attributes
//! (the CSP forbids inline scripts and styles). Values are HTML-escaped by `<%= %>`.

use sailfish::TemplateSimple;

#[derive(TemplateSimple)]
#[template(path = "join.stpl")]
struct JoinPage<'a> {
    conversation_id: &'a str,
    join_code: &'a str,
}

/// What a join link fills in (each value already checked by the caller).
#[derive(Debug, Default, Clone, Copy)]
pub struct JoinPrefill<'a> {
    pub conversation_id: Option<&'a str>,
    pub join_code: Option<&'a str>,
}

#[derive(TemplateSimple)]
#[template(path = "room.stpl")]
struct RoomPage<'a> {
    conversation_id: &'a str,
}

#[derive(TemplateSimple)]
#[template(path = "admin.stpl")]
struct AdminPage {}

#[derive(TemplateSimple)]
#[template(path = "embed-refused.stpl")]
struct EmbedRefusedPage<'a> {
    reason: &'a str,
    message: &'a str,
    field: &'a str,
    host_origin: &'a str,
}

/// Renders a template; these templates only print escaped `&str`s, whose rendering
/// cannot fail, so the error branch is unreachable in practice. It still answers with a
/// minimal page instead of panicking.
fn render(result: sailfish::RenderResult) -> String {
    result.unwrap_or_else(|err| {
        tracing::error!(error = %err, "page template failed to render");
        String::from("<!doctype html><title>chats3</title><p>Page unavailable.</p>")
    })
}

/// `GET /join` — the join form, prefilled from a join link.
pub fn join_page(prefill: JoinPrefill<'_>) -> String {
    render(
        JoinPage {
            conversation_id: prefill.conversation_id.unwrap_or(""),
            join_code: prefill.join_code.unwrap_or(""),
        }
        .render_once(),
    )
}

/// `GET /room/:conversationId` — the chat and call page.
pub fn room_page(conversation_id: &str) -> String {
    render(RoomPage { conversation_id }.render_once())
}

/// `GET /admin` — create, inspect and close conversations.
pub fn admin_page() -> String {
    render(AdminPage {}.render_once())
}

/// `GET /embed` with a refused ticket, inside the host's frame: a fixed sentence
/// and reason code; `host_origin` is where `embed-refused.js` posts the `error` event.
pub fn embed_refused_page(reason: &str, message: &str, field: &str, host_origin: &str) -> String {
    render(
        EmbedRefusedPage {
            reason,
            message,
            field,
            host_origin,
        }
        .render_once(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_page_prefills_and_escapes_the_conversation_id() {
        let html = join_page(JoinPrefill {
            conversation_id: Some("a\"><script>x</script>"),
            join_code: Some("AB12CD"),
        });
        assert!(html.contains("value=\"AB12CD\""));
        assert!(html.contains("value=\"a&quot;&gt;&lt;script&gt;x&lt;/script&gt;\""));
        assert!(!html.contains("<script>x"));
    }

    #[test]
    fn room_page_passes_the_id_as_a_data_attribute() {
        let html = room_page("team-42");
        assert!(html.contains("data-conversation-id=\"team-42\""));
        assert!(html.contains("/static/js/room.js"));
    }

    #[test]
    fn pages_have_no_inline_scripts_or_styles() {
        for html in [
            join_page(JoinPrefill::default()),
            room_page("x"),
            admin_page(),
            embed_refused_page("expired", "Reload.", "", "https://shop.example.com"),
        ] {
            assert!(!html.contains("style="), "style attribute in page");
            assert!(!html.contains("<style"), "style element in page");
            for (i, _) in html.match_indices("<script") {
                let tag_end = html[i..].find('>').map(|e| i + e).unwrap_or(html.len());
                assert!(html[i..tag_end].contains("src="), "inline script in page");
            }
        }
    }
}
