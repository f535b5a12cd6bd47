//! Attachments: streaming upload with size and content checks, metadata and
//! signed URLs for members of the conversation, and the signed download itself.

use std::collections::HashMap;
use std::sync::Arc;

use crate::http::extract::{ApiPath, ApiQuery};
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::attachments::blob::BlobError;
use crate::attachments::{BlobWriter, blob_path, kind, name, signed};
use crate::clock::{now_ms, rfc3339_ms};
use crate::http::envelope;
use crate::http::error::ApiError;
use crate::http::extract::Authed;
use crate::metrics::RefusalCounted;
use crate::model::{AttachmentMeta, ConversationStatus};
use crate::state::AppState;

/// Lifetime of a download URL.
pub const URL_TTL_MS: i64 = 15 * 60 * 1000;
/// The longest an upload may take in all (10 MB at ≈ 270 kbit/s); the body
/// timeout bounds each pause, this the whole.
const UPLOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);
/// Uploads one session may have under way at once.
const UPLOADS_PER_SESSION: usize = 2;

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("File too large (maximum {limit} bytes)"),
    )
}

fn multipart_error(e: axum::extract::multipart::MultipartError, limit: u64) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else if crate::http::error::is_body_timeout(&e) {
        ApiError::body_timeout()
    } else {
        invalid_multipart(e.body_text())
    }
}

/// 400 for a body that is not the multipart form expected, naming its field.
fn invalid_multipart(why: String) -> ApiError {
    ApiError::bad_request(format!("Invalid multipart body: {why}")).with_details(
        json!({ "field": "file", "reason": "not a multipart/form-data body with a file" }),
    )
}

/// # `POST /api/v1/attachments` — multipart, exactly one file part.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    mp: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    // A missing or unusable multipart content type is a 400 in the envelope too.
    let mut mp = mp.map_err(|e| invalid_multipart(e.body_text()))?;
    match state.store.conversation(&s.conversation_id)? {
        Some(c) if c.status == ConversationStatus::Active => {}
        Some(_) => return Err(ApiError::forbidden("Conversation is closed")),
        None => return Err(ApiError::not_found("Conversation not found")),
    }
    // The bytes go beside the store: they must not eat its disk headroom either.
    if let Err(e) = state.store.check_space() {
        return Ok(refused_unread(e.into()));
    }
    let quota = state.config.limits.attachment_bytes_per_conversation;
    if state.store.attachment_bytes(&s.conversation_id)? >= quota {
        return Ok(unread(over_quota(state.as_ref(), quota)));
    }
    let Some(_slot) = state
        .upload_slots
        .try_take(s.session_id.clone(), UPLOADS_PER_SESSION)
    else {
        state.metrics.refused.trip(
            "uploads_per_session",
            "upload refused: its session already has uploads under way",
        );
        let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many uploads at once")
            .with_details(json!({ "reason": "uploads_per_session", "max": UPLOADS_PER_SESSION }));
        return Ok(refused_unread(e));
    };
    // However slowly its bytes come, an upload ends within UPLOAD_DEADLINE.
    match tokio::time::timeout(UPLOAD_DEADLINE, receive(&state, &s, &mut mp)).await {
        Ok(res) => res,
        Err(_) => {
            state.metrics.refused.trip(
                "upload-deadline",
                "upload refused: not received within its deadline",
            );
            let mut res = refused_unread(
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "Upload not received in time")
                    .with_details(json!({ "reason": "upload_deadline", "maxSeconds": UPLOAD_DEADLINE.as_secs() })),
            );
            res.extensions_mut().insert(RefusalCounted);
            Ok(res)
        }
    }
}

/// Reads, checks and stores the one file of an upload.
async fn receive(
    state: &AppState,
    s: &crate::model::Session,
    mp: &mut Multipart,
) -> Result<Response, ApiError> {
    let limit = state.config.max_upload_bytes;
    let data_dir = &state.config.data_dir;
    let mut upload: Option<(BlobWriter, String, Option<String>)> = None;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let Some(filename) = field.file_name().map(str::to_string) else {
            continue; // plain form fields are ignored
        };
        if upload.is_some() {
            return Err(ApiError::field("file", "only one file per upload"));
        }
        let declared = field.content_type().map(str::to_string);
        let mut w = BlobWriter::create(data_dir, limit)
            .await
            .map_err(io_error)?;
        while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
            if let Err(e) = state.store.check_space() {
                return Ok(refused_unread(e.into()));
            }
            w.write(&chunk).await.map_err(|e| match e {
                BlobError::TooLarge(l) => too_large(l),
                other => io_error(other),
            })?;
        }
        upload = Some((w, filename, declared));
    }
    let (mut w, raw_name, declared) = upload.ok_or_else(|| {
        ApiError::bad_request("No file uploaded")
            .with_details(json!({ "field": "file", "reason": "is required" }))
    })?;
    if w.size() == 0 {
        return Err(ApiError::field("file", "is empty"));
    }
    let filename = name::sanitize_filename(&raw_name);
    let sniffed = match kind::sniff(&w.head) {
        Some(k) => Some(k),
        None if kind::is_zip(&w.head) && w.is_docx().await => Some(kind::Kind::Docx),
        None => None,
    };
    let k =
        kind::decide(sniffed, w.text.is_text(), &filename, declared.as_deref()).map_err(|e| {
            let message = match e {
                kind::KindError::TypeNotAllowed => "File type not allowed",
                _ => "Invalid file content (magic number mismatch)",
            };
            ApiError::bad_request(message)
                .with_details(json!({ "field": "file", "reason": e.to_string() }))
        })?;
    let id = uuid::Uuid::new_v4().to_string();
    let size = w.size();
    // Checked again now that the size is known, and recorded before the next
    // upload of the conversation is checked: uploads finishing at once are
    // counted one after another.
    let _commit = state.upload_commits.lock(&s.conversation_id).await;
    let quota = state.config.limits.attachment_bytes_per_conversation;
    if state
        .store
        .attachment_bytes(&s.conversation_id)?
        .saturating_add(size)
        > quota
    {
        return Ok(over_quota(state, quota));
    }
    w.commit(data_dir, &id).await.map_err(io_error)?;
    if let Some(c) = &state.cluster
        && let Err(e) = crate::cluster::files::put(c, &id, &blob_path(data_dir, &id)).await
    {
        let _ = tokio::fs::remove_file(blob_path(data_dir, &id)).await;
        return Err(e.into());
    }
    let meta = AttachmentMeta {
        attachment_id: id,
        conversation_id: s.conversation_id.clone(),
        uploader_user_id: s.user_id.clone(),
        original_filename: filename,
        mime_type: k.mime().to_string(),
        size_bytes: size,
        created_at: rfc3339_ms(now_ms()),
    };
    if let Err(e) = state.store.put_attachment(&meta).await {
        // Unrecorded bytes would never be served or cleaned up.
        let _ = tokio::fs::remove_file(blob_path(data_dir, &meta.attachment_id)).await;
        if let Some(c) = &state.cluster {
            crate::cluster::files::delete(c, &meta.attachment_id).await;
        }
        return Err(e.into());
    }
    Ok(envelope::ok(
        "Attachment uploaded",
        json!({
            "attachmentId": meta.attachment_id,
            "originalFilename": meta.original_filename,
            "mimeType": meta.mime_type,
            "sizeBytes": meta.size_bytes,
        }),
    ))
}

/// The conversation keeps as many bytes of attachments as it may (413,
/// counted as `conversation_quota`, not as a body over the size limit).
fn over_quota(state: &AppState, quota: u64) -> Response {
    state.metrics.refused.trip(
        "conversation_quota",
        "upload refused: its conversation keeps as many bytes of files as it may",
    );
    let mut res = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Conversation has no room for more files",
    )
    .with_details(json!({ "reason": "conversation_quota", "maxBytes": quota }))
    .into_response();
    res.extensions_mut().insert(RefusalCounted);
    res
}

/// A refusal answered before the body is read to its end: the connection
/// cannot carry another request, and `Connection: close` tells the client so.
fn refused_unread(e: ApiError) -> Response {
    unread(e.into_response())
}

/// `res`, telling the client the connection closes (its body was not read).
fn unread(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

fn io_error(e: BlobError) -> ApiError {
    if let BlobError::DiskFull(_) = e {
        return ApiError::disk_full();
    }
    tracing::error!(error = %e, "attachment write failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Could not store the file",
    )
}

/// The attachment if it belongs to `conv`; 404 otherwise (existence is not revealed).
pub fn member_attachment(
    state: &AppState,
    conv: &str,
    id: &str,
) -> Result<AttachmentMeta, ApiError> {
    let valid =
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    match valid
        .then(|| state.store.attachment(id))
        .transpose()?
        .flatten()
    {
        Some(a) if a.conversation_id == conv => Ok(a),
        _ => Err(ApiError::not_found("Attachment not found")),
    }
}

/// Base URL for links we hand out: `PUBLIC_URL` when set. Otherwise the
/// `Host` header is the client's to choose, so in production links are paths
/// on this server (empty base); only in development is `Host` used.
fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.config.public_url {
        return u.trim_end_matches('/').to_string();
    }
    if state.config.production {
        return String::new();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A 15-minute download URL: presigned S3 when the bytes are already in the
/// bucket, otherwise (or when presigning fails) signed by this server.
async fn signed_url(
    state: &AppState,
    a: &AttachmentMeta,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    if let Some(s3) = &state.s3
        && !state.store.attachment_pending(a)?
    {
        let key = crate::sync::attachment_key(&a.conversation_id, &a.attachment_id);
        match s3
            .presign_get(&key, std::time::Duration::from_millis(URL_TTL_MS as u64))
            .await
        {
            Ok(u) => return Ok(u),
            Err(e) => tracing::warn!(error = %e, "presigning failed; handing out a local URL"),
        }
    }
    let expires = now_ms() + URL_TTL_MS;
    Ok(format!(
        "{}{}",
        public_base(state, headers),
        signed::download_url(state.url_key.expose().as_bytes(), &a.attachment_id, expires)
    ))
}

/// # `GET /api/v1/attachments/{id}[?download=true]`
pub async fn metadata(
    State(state): State<Arc<AppState>>,
    Authed(s): Authed,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = member_attachment(&state, &s.conversation_id, &id)?;
    let url = signed_url(&state, &a, &headers).await?;
    if q.get("download").is_some_and(|v| v == "true" || v == "1") {
        let mut res = StatusCode::FOUND.into_response();
        let loc = HeaderValue::from_str(&url).map_err(|_| ApiError::bad_request("Invalid host"))?;
        res.headers_mut().insert(header::LOCATION, loc);
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(res);
    }
    Ok(envelope::ok(
        "Attachment retrieved",
        json!({ "metadata": a, "signedUrl": url }),
    ))
}

/// # `GET /api/v1/attachments/{id}/content?expires=…&signature=…` — the signed download.
pub async fn content(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let expires: i64 = q
        .get("expires")
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| ApiError::forbidden("Invalid download link"))?;
    let sig = q.get("signature").map(String::as_str).unwrap_or("");
    signed::verify(
        state.url_key.expose().as_bytes(),
        &id,
        expires,
        sig,
        now_ms(),
    )
    .map_err(|e| ApiError::forbidden(e.to_string()))?;
    let a = state
        .store
        .attachment(&id)?
        .ok_or_else(|| ApiError::not_found("Attachment not found"))?;
    let source = state
        .cluster
        .as_deref()
        .map(|c| c as &dyn crate::attachments::blob::BlobSource);
    crate::attachments::blob::ensure_local(&state.config.data_dir, &id, source)
        .await
        .map_err(io_error)?;
    let file = tokio::fs::File::open(blob_path(&state.config.data_dir, &id))
        .await
        .map_err(|_| ApiError::not_found("Attachment not found"))?;
    let inline = kind::Kind::from_mime(&a.mime_type).is_some_and(kind::Kind::is_image);
    let mut res = Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    // Text is accepted only as UTF-8 (`kind`): say so, rather than leave the
    // browser to guess the charset.
    let content_type = match a.mime_type.as_str() {
        "text/plain" => "text/plain; charset=utf-8",
        other => other,
    };
    set(h, header::CONTENT_TYPE, content_type);
    set(h, header::CONTENT_LENGTH, &a.size_bytes.to_string());
    set(
        h,
        header::CONTENT_DISPOSITION,
        &name::content_disposition(inline, &a.original_filename),
    );
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; img-src 'self'; sandbox",
    );
    set(h, header::CACHE_CONTROL, "private, max-age=900");
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    Ok(res)
}
