//! `ApiError`: every module's error folded into one type, mapped to a status
//! code and the JSON envelope in exactly one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::envelope;
use crate::auth::ticket::TicketError;
use crate::chat::validate::FieldError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: None,
        }
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 400 naming the offending field.
    pub fn field(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("Invalid {field}: {reason}"),
        )
        .with_details(json!({ "field": field, "reason": reason }))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn too_many() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests, please slow down",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        envelope::respond(self.status, false, &self.message, self.details)
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::field(e.field, e.reason)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down")
            }
            StoreError::Exists => ApiError::conflict("Already exists"),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
        }
    }
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        let reason = match &e {
            TicketError::Malformed => "malformed",
            TicketError::MissingField(_) | TicketError::BadField(_) => "invalid_field",
            TicketError::UnknownIntegrator => "unknown_integrator",
            TicketError::BadSignature => "bad_signature",
            TicketError::Expired => "expired",
            TicketError::Stale => "stale",
            TicketError::OriginNotAllowed => "origin_not_allowed",
            TicketError::Replayed => "replayed",
        };
        ApiError::forbidden(e.to_string()).with_details(json!({ "reason": reason }))
    }
}
