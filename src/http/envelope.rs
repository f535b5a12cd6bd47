//! The JSON envelope of every API answer:
//! `{success, message, details?, meta: {requestId, timestamp}}`.
//! A successful call's payload is `details`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    success: bool,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<T>,
    meta: Meta<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    request_id: &'a str,
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<Value>,
}

/// The envelope's bytes and its request id.
fn encode<T: Serialize>(
    success: bool,
    message: &str,
    details: Option<T>,
    page: Option<Value>,
) -> (Vec<u8>, String) {
    let request_id = uuid::Uuid::new_v4().to_string();
    let env = Envelope {
        success,
        message,
        details,
        meta: Meta {
            request_id: &request_id,
            timestamp: crate::clock::now_rfc3339(),
            page,
        },
    };
    let body = match serde_json::to_vec(&env) {
        Ok(b) => b,
        Err(_) => br#"{"success":false,"message":"Internal server error"}"#.to_vec(),
    };
    (body, request_id)
}

fn build<T: Serialize>(
    status: StatusCode,
    success: bool,
    message: &str,
    details: Option<T>,
    page: Option<Value>,
) -> Response {
    let (body, request_id) = encode(success, message, details, page);
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    res
}

/// A whole HTTP/1.1 refusal in the envelope, closing the connection: for the
/// accept loop, which answers some requests before any router sees them.
pub fn raw_refusal(status: StatusCode, message: &str) -> Vec<u8> {
    let (body, request_id) = encode::<Value>(false, message, None, None);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nx-request-id: {request_id}\r\ncache-control: no-store\r\n\
         connection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// An envelope with an arbitrary status.
pub fn respond(
    status: StatusCode,
    success: bool,
    message: &str,
    details: Option<Value>,
) -> Response {
    build(status, success, message, details, None)
}

/// 200 with `details` = `payload`.
pub fn ok<T: Serialize>(message: &str, payload: T) -> Response {
    build(StatusCode::OK, true, message, Some(payload), None)
}

/// 200 with `details` = `payload` and `meta.page` = `page`.
pub fn ok_paged<T: Serialize>(message: &str, payload: T, page: Value) -> Response {
    build(StatusCode::OK, true, message, Some(payload), Some(page))
}
