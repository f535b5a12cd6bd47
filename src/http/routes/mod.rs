//! Route handlers, one file per group, plus the shared 404 and panic answers.

pub mod admin;
pub mod attachments;
pub mod embed;
pub mod health;
pub mod join;
pub mod messages;
pub mod pages;
pub mod relay;
pub mod signaling;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

pub async fn api_not_found() -> ApiError {
    ApiError::not_found("Route not found")
}

/// A known path asked with a method it does not take (axum adds `Allow`).
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

pub async fn not_found() -> Response {
    ApiError::not_found("Not found").into_response()
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error").into_response()
}
