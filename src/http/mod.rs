//! HTTP: the router, the envelope and error mapping, extractors, middleware
//! (CORS and the cross-site guard among them), and one file per route group.
//! Handlers validate input, call the chat rules, the store and the hub, and
//! shape the answer; nothing below this module knows about HTTP.

pub mod cors;
pub mod csrf;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod middleware;
mod reap;
mod routes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::AppState;
use routes::{admin, attachments, embed, health, join, messages, pages, relay, signaling};

pub fn router(state: Arc<AppState>) -> Router {
    // Multipart framing on top of the largest accepted file.
    let upload_limit = usize::try_from(state.config.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(64 * 1024);
    let api = Router::new()
        .route("/join", post(join::join))
        .route("/leave", post(join::leave))
        .route("/session", get(join::session))
        .route("/conversation", get(join::conversation))
        .route("/embed", post(embed::embed_api))
        .route("/embed/handoff", post(embed::handoff))
        .route("/messages", get(messages::history).post(messages::send))
        .route("/reactions", get(messages::reactions).post(messages::react))
        .route("/system-message", post(messages::system_message))
        .route("/signaling", get(signaling::stream).post(signaling::relay))
        .route("/signaling/token", post(signaling::token))
        .route("/client-config", get(signaling::client_config))
        .route("/relay/signal", post(relay::signal))
        .route(
            "/attachments",
            post(attachments::upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/attachments/{id}", get(attachments::metadata))
        .route("/attachments/{id}/content", get(attachments::content))
        .route("/admin/conversations", post(admin::create))
        .route("/admin/conversations/{id}", post(admin::details))
        .route("/admin/conversations/{id}/close", post(admin::close))
        .route("/admin/conversations/{id}/owner", post(admin::set_owner))
        .route("/admin/list-conversations", post(admin::list))
        .route("/admin/backup", post(admin::backup))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::api_not_found);

    Router::new()
        .nest("/api/v1", api)
        .route("/health", get(health::health))
        .route("/", get(pages::index))
        .route("/join", get(pages::join_page))
        .route("/room/{id}", get(pages::room_page))
        .route("/admin", get(pages::admin_page))
        .route("/embed", get(embed::embed_page))
        .route("/static/{*path}", get(pages::asset))
        .route("/metrics", get(routes::health::metrics))
        .method_not_allowed_fallback(routes::method_not_allowed)
        .fallback(routes::not_found)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::track,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            std::time::Duration::from_secs(state.config.limits.body_timeout_secs),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            csrf::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::rate_limit,
        ))
        // Outside the rate limit and the cross-site guard: preflights are answered here.
        .layer(cors::layer(&state.integrator_origins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            routes::panic_response,
        ))
        .layer(axum::middleware::from_fn(
            middleware::close_after_refused_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            reap::large_h2_bodies,
        ))
        // 503s are refusals (storage full, shutting down), logged where they are
        // decided, at most once a minute: only other 5xx are logged as failures.
        .layer(tower_http::trace::TraceLayer::new(
            tower_http::classify::StatusInRangeAsFailures::new(500..=502).into_make_classifier(),
        ))
        .with_state(state)
}

/// The router of the separate metrics listener (`METRICS_ADDR`): `/metrics` only, no token.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics_open))
        .with_state(state)
}
