//! What a refused embed ticket looks like to each who sees it: the user (a page
//! in the host's frame with a fixed sentence), the host page (an `error` event
//! with a reason code) and the operator (a `warn` line with the integrator and
//! the reason). Nothing from the ticket is shown, posted or logged.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::auth::ticket;
use crate::http::error::ApiError;
use crate::http::middleware::csp;
use crate::http::routes::pages;
use crate::state::AppState;

/// A refused ticket as the user and the host page see it: a reason code and a
/// sentence, both from [`REFUSALS`]. Nothing of the request is ever part of either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: &'static str,
    /// The ticket field at fault, for `invalid_field` (one of [`TICKET_FIELDS`]).
    pub field: Option<&'static str>,
}

/// The fields of a ticket (and its signature): the only field names a refusal repeats.
const TICKET_FIELDS: [&str; 11] = [
    "signature",
    "integratorId",
    "conversationId",
    "userId",
    "displayName",
    "avatarUrl",
    "role",
    "origin",
    "issuedAt",
    "expiresAt",
    "nonce",
];

const INVALID: &str = "The link to this chat is not valid. Reload the page; if that does not help, \
                       please contact the site's support.";
const FIELD: &str = "The link to this chat is not valid. Please contact the site's support.";
const EXPIRED: &str = "The link to this chat has expired. Reload the page to open the chat again.";
const USED: &str = "This chat link was already used. Reload the page to open the chat again.";
const NOT_HERE: &str = "This conversation cannot be opened here.";

/// Every reason a refusal may name (the API's `details.reason`) and what the user reads.
const REFUSALS: [(&str, &str); 13] = [
    ("bad_signature", INVALID),
    ("malformed", INVALID),
    ("invalid_field", FIELD),
    ("unknown_integrator", INVALID),
    ("origin_not_allowed", INVALID),
    ("expired", EXPIRED),
    ("stale", EXPIRED),
    ("replayed", USED),
    ("closed", "This conversation has been closed."),
    ("full", "This conversation is full. Please try again later."),
    ("foreign_conversation", NOT_HERE),
    ("not_assigned", NOT_HERE),
    (
        "unavailable",
        "The chat is unavailable right now. Please try again in a moment.",
    ),
];

/// The refusal for a failed handshake: its `details.reason` when that is a known
/// code, else by status (a field the server could not accept, a server that could
/// not answer, or a plain refusal).
pub fn refusal(e: &ApiError) -> Refusal {
    let named = e
        .details
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(|r| r.as_str());
    let fallback = if e.status.is_server_error() {
        "unavailable"
    } else if e.status == StatusCode::BAD_REQUEST {
        "invalid_field"
    } else {
        "refused"
    };
    let find = |code: &str| REFUSALS.into_iter().find(|(r, _)| *r == code);
    let (reason, message) = named
        .and_then(find)
        .or_else(|| find(fallback))
        .unwrap_or(("refused", "The chat could not be opened."));
    let field = e
        .details
        .as_ref()
        .and_then(|d| d.get("field"))
        .and_then(|f| f.as_str())
        .and_then(|f| TICKET_FIELDS.into_iter().find(|t| *t == f))
        .filter(|_| reason == "invalid_field");
    Refusal {
        reason,
        message,
        field,
    }
}

/// Logs a refused ticket at `warn` for the integrator's operator: the integrator
/// (only a configured id, never what an unknown ticket claims) and the reason;
/// never the ticket or its signature.
pub(super) fn log_refusal(state: &AppState, claims: &ticket::Claims, route: &str, e: &ApiError) {
    let integrator = claims
        .integrator_id
        .as_deref()
        .and_then(|id| state.config.integrator(id))
        .map_or("(unknown)", |i| i.id.as_str());
    let r = refusal(e);
    tracing::warn!(
        integrator,
        reason = r.reason,
        field = r.field.unwrap_or("-"),
        status = e.status.as_u16(),
        route,
        "embed ticket refused"
    );
}

/// The answer of `GET /embed` to a refused ticket. When the ticket names an
/// origin allowed for its integrator, a small page that only that origin may
/// frame: a fixed sentence and reason code, which `static/js/embed-refused.js`
/// also posts to that origin as an `error` event (`code: 'ticket'`), so the host
/// page and its user see what happened instead of a blank frame. The ticket need
/// not be genuine (anyone can name any integrator and origin), which is why the
/// page reflects nothing from it. Otherwise the JSON refusal, not frameable.
pub(super) fn refused(state: &AppState, ticket_str: &str, e: ApiError) -> Response {
    let claims = ticket::claims(ticket_str);
    log_refusal(state, &claims, "GET /embed", &e);
    let integ = claims
        .integrator_id
        .as_deref()
        .and_then(|id| state.config.integrator(id));
    let Some(origin) = integ
        .zip(claims.origin.as_deref())
        .and_then(|(i, o)| ticket::refusal_origin(i, o))
    else {
        return e.into_response();
    };
    let r = refusal(&e);
    let mut res = pages::page(
        crate::ui::embed_refused_page(r.reason, r.message, r.field.unwrap_or(""), &origin),
        csp(&state.media_origins, std::slice::from_ref(&origin)),
    );
    *res.status_mut() = e.status;
    // The URL holds the ticket: keep the page out of every cache.
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_name_a_known_reason_and_never_the_input() {
        let e = |status, details: Option<serde_json::Value>| ApiError {
            status,
            message: "x".into(),
            details,
        };
        let forbidden = StatusCode::FORBIDDEN;
        assert_eq!(
            refusal(&e(forbidden, Some(json!({"reason": "expired"})))).reason,
            "expired"
        );
        assert_eq!(
            refusal(&e(forbidden, Some(json!({"reason": "closed"})))).message,
            "This conversation has been closed."
        );
        let field = ApiError::field("displayName", "<script>alert(1)</script>");
        assert_eq!(refusal(&field).reason, "invalid_field");
        assert_eq!(refusal(&field).field, Some("displayName"));
        let missing = ApiError::from(crate::auth::ticket::TicketError::MissingField("role"));
        assert_eq!(refusal(&missing).field, Some("role"));
        let made_up = e(
            StatusCode::BAD_REQUEST,
            Some(json!({"reason": "invalid_field", "field": "<img>"})),
        );
        assert_eq!(
            refusal(&made_up).field,
            None,
            "only a ticket's own field names"
        );
        let odd = e(forbidden, Some(json!({"reason": "<b>made up</b>"})));
        assert_eq!(refusal(&odd).reason, "refused");
        let full_disk = e(StatusCode::SERVICE_UNAVAILABLE, None);
        assert_eq!(refusal(&full_disk).reason, "unavailable");
        for (reason, _) in REFUSALS {
            assert!(reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
