//! HTML pages (rendered by `ui` from sailfish templates) and the static assets
//! embedded from `static/`, served with ETags.

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::extract::{ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::http::error::ApiError;
use crate::http::middleware::csp;
use crate::model::valid_conversation_id;
use crate::state::AppState;

#[derive(rust_embed::RustEmbed)]
#[folder = "static/"]
struct Assets;

pub(super) fn page(html: String, csp: String) -> Response {
    let mut res = Html(html).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    res
}

/// # `GET /` — 302 to the join page, as the original.
pub async fn index() -> Response {
    (StatusCode::FOUND, [(header::LOCATION, "/join")]).into_response()
}

/// The join form's prefill from a join link: `?c=ID` (ours) or the original's
/// `?conversationId=ID&joinCode=CODE`. Values that could not be valid are dropped.
pub fn join_prefill(q: &HashMap<String, String>) -> crate::ui::JoinPrefill<'_> {
    let conversation_id = ["conversationId", "c"]
        .iter()
        .filter_map(|k| q.get(*k))
        .map(|c| c.trim())
        .find(|c| valid_conversation_id(c));
    let join_code = q
        .get("joinCode")
        .map(|c| c.trim())
        .filter(|c| c.len() == 6 && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    crate::ui::JoinPrefill {
        conversation_id,
        join_code,
    }
}

/// # `GET /join[?c=ID | ?conversationId=ID&joinCode=CODE]`
pub async fn join_page(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Response {
    page(
        crate::ui::join_page(join_prefill(&q)),
        csp(&state.media_origins, &[]),
    )
}

/// # `GET /room/{id}[?i=<integratorId>]` — frameable only by the origins of
/// the integrator that owns the conversation (`i` must name it).
pub async fn room_page(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if !valid_conversation_id(&id) {
        return Err(ApiError::not_found("Conversation not found"));
    }
    let mut ancestors: Vec<String> = Vec::new();
    let owner = match q.get("i") {
        Some(_) => state
            .store
            .conversation_or_fetch(&id)
            .await?
            .and_then(|c| c.integrator_id),
        None => None,
    };
    let framer = q.get("i").filter(|i| owner.as_ref() == Some(*i));
    if let Some(integ) = framer.and_then(|i| state.config.integrator(i)) {
        ancestors.push("'self'".into());
        ancestors.extend(
            integ
                .allowed_origins
                .iter()
                .filter_map(|o| crate::auth::origin::OriginPattern::parse(o).ok())
                .map(|p| p.to_string()),
        );
    }
    Ok(page(
        crate::ui::room_page(&id),
        csp(&state.media_origins, &ancestors),
    ))
}

/// # `GET /admin`
pub async fn admin_page(State(state): State<Arc<AppState>>) -> Response {
    page(crate::ui::admin_page(), csp(&state.media_origins, &[]))
}

/// # `GET /static/{path}` — embedded assets with strong ETags; revalidated on every load.
pub async fn asset(ApiPath(path): ApiPath<String>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path) else {
        return ApiError::not_found("Not found").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, file.data.into_owned()).into_response()
    };
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn join_links_of_both_forms_prefill_the_form() {
        let q = query(&[("conversationId", "conv-1"), ("joinCode", "AB12CD")]);
        let p = join_prefill(&q);
        assert_eq!(
            (p.conversation_id, p.join_code),
            (Some("conv-1"), Some("AB12CD"))
        );
        let q = query(&[("c", "team-9")]);
        let p = join_prefill(&q);
        assert_eq!((p.conversation_id, p.join_code), (Some("team-9"), None));
    }

    #[test]
    fn impossible_values_are_not_prefilled() {
        let q = query(&[("conversationId", "a b"), ("joinCode", "<script>")]);
        let p = join_prefill(&q);
        assert_eq!((p.conversation_id, p.join_code), (None, None));
    }
}
