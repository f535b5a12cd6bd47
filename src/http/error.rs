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
    /// The original's text (clients match on it); `Retry-After` says the same.
    pub fn too_many() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit exceeded, retry in 1 minute",
        )
    }
    /// 401: the request carries no session (no `x-session-id`, no cookie).
    pub fn no_session() -> Self {
        Self::unauthorized("No session found").with_details(json!({ "reason": "no_session" }))
    }
    /// 401: the session is unknown, deleted, or idle past its TTL (`reason`).
    pub fn invalid_session(reason: &str) -> Self {
        Self::unauthorized("Invalid session").with_details(json!({ "reason": reason }))
    }
}

/// The original service's message for a refused ticket (integrators match on
/// these texts) and our machine-readable reason.
fn ticket_refusal(e: &TicketError) -> (String, &'static str) {
    let (message, reason) = match e {
        TicketError::Malformed => (
            "Validation error: the ticket is not valid JSON",
            "malformed",
        ),
        TicketError::MissingField(_) => ("Missing required fields", "invalid_field"),
        TicketError::BadField(_) => return (e.to_string(), "invalid_field"),
        TicketError::UnknownIntegrator => ("Unknown integrator", "unknown_integrator"),
        TicketError::BadSignature => ("Invalid signature", "bad_signature"),
        TicketError::Expired => ("Ticket expired", "expired"),
        TicketError::Stale => ("Ticket too old", "stale"),
        TicketError::OriginNotAllowed => ("Origin not allowed", "origin_not_allowed"),
        TicketError::Replayed => ("Nonce already used (replay attack)", "replayed"),
    };
    (message.to_string(), reason)
}

/// Whether a body read failed because the client paused past the body
/// timeout (`limits.body_timeout_secs`): answered 408, not 400.
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

impl ApiError {
    /// 408: the request body stalled.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request body was not received in time",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 503 is a refusal (shutting down, storage full) whose cause is logged,
        // at most once a minute, where it is detected: not an error per request.
        if self.status.is_server_error() && self.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = %self.status, message = %self.message, "request failed");
        }
        envelope::respond(self.status, false, &self.message, self.details)
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("Invalid path").with_details(json!({ "reason": e.body_text() }))
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("Invalid query string")
            .with_details(json!({ "reason": e.body_text() }))
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::field(e.field, e.reason)
    }
}

impl ApiError {
    /// 503: the data directory's disk is full (or below `min_free_bytes`);
    /// nothing was written, and the same request succeeds once space returns.
    pub fn disk_full() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Storage is full; try again later",
        )
        .with_details(json!({ "reason": "disk_full" }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service is shutting down")
            }
            StoreError::DiskFull => ApiError::disk_full(),
            StoreError::Exists => ApiError::conflict("Already exists"),
            // Cluster mode without NATS: nothing was written; the same request succeeds later.
            StoreError::Unavailable(what) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Cluster storage is unavailable; try again later",
            )
            .with_details(json!({ "reason": "cluster_unavailable", "detail": what })),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
        }
    }
}

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        let (message, reason) = ticket_refusal(&e);
        let details = match e {
            TicketError::MissingField(f) | TicketError::BadField(f) => {
                json!({ "reason": reason, "field": f })
            }
            _ => json!({ "reason": reason }),
        };
        ApiError::forbidden(message).with_details(details)
    }
}

impl From<chats3_media::RelayError> for ApiError {
    fn from(e: chats3_media::RelayError) -> Self {
        use chats3_media::RelayError as E;
        match e {
            E::UnknownParticipant { .. } => {
                ApiError::conflict("Not in the relay yet: send an offer first")
            }
            E::WebRtc(e) => ApiError::bad_request(format!("Rejected by the relay: {e}")),
            E::ServerOnlySignal(_) | E::TooManyEarlyCandidates(_) | E::AlreadyJoined { .. } => {
                ApiError::bad_request(e.to_string())
            }
            E::Io(_) | E::UnspecifiedBind(_) | E::Trunk(_) | E::TrunksEnabled => {
                tracing::warn!(error = %e, "relay failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Relay error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_tickets_carry_the_original_texts_and_a_reason() {
        let e = ApiError::from(TicketError::Replayed);
        assert_eq!(e.status, StatusCode::FORBIDDEN);
        assert_eq!(e.message, "Nonce already used (replay attack)");
        assert_eq!(e.details, Some(json!({ "reason": "replayed" })));
        let e = ApiError::from(TicketError::MissingField("nonce"));
        assert_eq!(e.message, "Missing required fields");
        assert_eq!(
            e.details,
            Some(json!({ "reason": "invalid_field", "field": "nonce" }))
        );
        assert_eq!(ApiError::from(TicketError::Stale).message, "Ticket too old");
    }

    #[test]
    fn a_full_disk_is_a_503_with_a_reason() {
        let e = ApiError::from(StoreError::DiskFull);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.message, "Storage is full; try again later");
        assert_eq!(e.details, Some(json!({ "reason": "disk_full" })));
    }
}
