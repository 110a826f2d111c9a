//! The attachment routes:
//! - `POST /v1/uploads`: an upload slot for a member of a conversation: an
//!   `attachment_id` and where to `PUT` the bytes (a presigned URL of the S3 store, or
//!   this gateway's `PUT /v1/uploads/{id}` on the filesystem store);
//! - `PUT /v1/uploads/{id}`: the bytes, through the gateway (the uploader only, once);
//! - `GET /v1/attachments/{id}`: the file, to whoever may read its message under the
//!   rules of history: a redirect to a presigned `GET` of the S3 store, or the bytes.
//!   `?thumbnail=true` gives an image's thumbnail, `?via=gateway` the bytes through the
//!   gateway on either store. A missing id and one the caller may not read get the same
//!   403.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parley_schemas::frames::ErrorCode;
use parley_schemas::AttachmentRef;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::slots::{self, file_key, Slot};
use super::{media_type, Blobs, INLINE_IMAGES};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits::Limit;
use crate::membership::ensure_member;
use crate::service::Shared;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The conversation the file will be sent to (the caller must be a member).
    conversation_id: String,
    /// Its media type: one of the gateway's allowed types (`PARLEY_ATTACHMENT_TYPES`).
    content_type: String,
    /// Its length in bytes (1 to `PARLEY_MAX_ATTACHMENT_BYTES`, 25 MiB by default).
    size: u64,
    /// Its SHA-256, hex (optional; kept with the slot).
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadSlot {
    /// Name it in `attachments` of a `send` once the upload is done.
    attachment_id: String,
    /// Where to send the bytes: a presigned URL of the object store, or this gateway's
    /// `/v1/uploads/{id}` (relative: send the bearer token with it).
    upload_url: String,
    /// Always `PUT`.
    method: String,
    /// Headers the upload must carry, with these values.
    headers: BTreeMap<String, String>,
    /// Until when the upload URL works (ms since the Unix epoch).
    expires_at: i64,
}

/// `POST /v1/uploads`
pub async fn create(
    State(state): State<Shared>,
    Caller(me): Caller,
    body: Result<Json<UploadRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let blobs = super::store_of(&state)?;
    let limits = &state.config.attachment_limits;
    let content_type = media_type(&req.content_type);
    if !limits.types.contains(&content_type) {
        return Err(ApiError::bad_request(format!(
            "content_type {:?} is not accepted here; accepted: {}",
            req.content_type,
            limits.types.join(", ")
        )));
    }
    if req.size == 0 {
        return Err(ApiError::bad_request("size must be 1 byte or more"));
    }
    if req.size > limits.max_bytes {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "size {} is over the limit of {} bytes",
                req.size, limits.max_bytes
            ),
        ));
    }
    if let Some(h) = &req.sha256 {
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request("sha256 must be 64 hex digits"));
        }
    }
    state.limits.check(Limit::Upload, &me)?;
    ensure_member(&state, &req.conversation_id, &me).await?;
    let id = Uuid::new_v4();
    let now = parley_schemas::now_millis();
    super::quota::take(blobs, limits.quota, &me, &id, req.size, now).await?;
    let slot = Slot {
        uploader: me.clone(),
        conversation_id: req.conversation_id,
        content_type: content_type.clone(),
        size: req.size,
        sha256: req.sha256.map(|h| h.to_ascii_lowercase()),
        upload_by: now + limits.upload_expiry.as_millis() as i64,
        created_at: now,
    };
    slots::save_slot(blobs, &id, &slot).await?;
    let presigned = blobs
        .put_url(&file_key(&id), &content_type, limits.upload_expiry)
        .await?;
    let mut headers = BTreeMap::from([("content-type".to_string(), content_type)]);
    headers.insert("content-length".into(), req.size.to_string());
    let upload_url = match presigned {
        Some(url) => url.to_string(),
        None => format!("/v1/uploads/{id}"),
    };
    let answer = UploadSlot {
        attachment_id: id.to_string(),
        upload_url,
        method: "PUT".into(),
        headers,
        expires_at: slot.upload_by,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// `PUT /v1/uploads/{id}`: the bytes of the caller's slot, exactly as announced.
pub async fn upload(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let blobs = super::store_of(&state)?;
    let missing = || ApiError::new(ErrorCode::NotFound, "no upload slot of yours has this id");
    let id = slots::parse_id(&id).ok_or_else(missing)?;
    let slot = slots::slot(blobs, &id).await?.ok_or_else(missing)?;
    if slot.uploader != me {
        return Err(missing());
    }
    if slots::expired(&slot, parley_schemas::now_millis()) {
        return Err(ApiError::new(
            ErrorCode::Gone,
            "this upload slot has expired: ask for a new one",
        ));
    }
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
        .unwrap_or_default();
    if given != slot.content_type {
        return Err(ApiError::bad_request(format!(
            "content-type must be {} (the slot's), not {given:?}",
            slot.content_type
        )));
    }
    if body.len() as u64 != slot.size {
        return Err(ApiError::bad_request(format!(
            "the slot is for {} bytes; {} were sent",
            slot.size,
            body.len()
        )));
    }
    if !blobs.create(&file_key(&id), body).await? {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this slot has been uploaded already",
        ));
    }
    Ok(StatusCode::CREATED)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DownloadParams {
    /// An image's thumbnail (PNG, at most 320 px on its longer side) instead of the file.
    #[serde(default)]
    thumbnail: bool,
    /// `gateway`: the bytes through this gateway, never a redirect to the store (for a
    /// page whose content security policy connects only to its own origin).
    #[serde(default)]
    via: Option<String>,
}

/// `GET /v1/attachments/{id}`
pub async fn download(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    query: Result<Query<DownloadParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let redirect = match params.via.as_deref() {
        None => true,
        Some("gateway") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "via must be \"gateway\", not {other:?}"
            )))
        }
    };
    state
        .limits
        .check(Limit::Read(crate::limits::Read::Page), &me)?;
    let blobs = super::store_of(&state)?;
    let (id, file) = readable(&state, blobs, &me, &id).await?;
    let inline = INLINE_IMAGES.contains(&file.content_type.as_str());
    let expiry = state.config.attachment_limits.download_expiry;
    if params.thumbnail {
        if !inline {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "only images have thumbnails",
            ));
        }
        let key = super::thumbnail::ensure(blobs, &id).await?;
        return serve(blobs, &key, "image/png", "inline", expiry, redirect).await;
    }
    let disposition = disposition(inline, &file.name);
    serve(
        blobs,
        &file_key(&id),
        &file.content_type,
        &disposition,
        expiry,
        redirect,
    )
    .await
}

/// The attachment `id` as the message the caller may read holds it; the same 403 for
/// an id that does not exist and one they may not read.
async fn readable(
    state: &Shared,
    blobs: &Blobs,
    user: &str,
    id: &str,
) -> Result<(Uuid, AttachmentRef), ApiError> {
    let forbidden = || {
        ApiError::new(
            ErrorCode::Forbidden,
            "no attachment you may read has this id",
        )
    };
    let id = slots::parse_id(id).ok_or_else(forbidden)?;
    let claim = slots::claim_of(blobs, &id).await?.ok_or_else(forbidden)?;
    let conversation = &claim.conversation_id;
    // The rules of history: a member reads the messages after the record that made
    // them one (from the group's creation with full_history).
    let since = match crate::history::joined(state, conversation, user).await {
        Ok(since) => since,
        Err(e) if e.code == ErrorCode::NotMember => return Err(forbidden()),
        Err(e) => return Err(e),
    };
    let message = state
        .views
        .message_by_id(conversation, claim.message_id)
        .await?
        .ok_or_else(forbidden)?;
    if message.seq <= since {
        return Err(forbidden());
    }
    // A deleted message holds no attachments any more.
    let id_text = id.to_string();
    let file = message
        .attachments
        .into_iter()
        .find(|a| a.attachment_id == id_text)
        .ok_or_else(forbidden)?;
    Ok((id, file))
}

/// A redirect to a presigned URL of the store, or the bytes from this gateway with
/// headers that keep a browser from running them.
async fn serve(
    blobs: &Blobs,
    key: &str,
    content_type: &str,
    disposition: &str,
    expiry: std::time::Duration,
    redirect: bool,
) -> Result<Response, ApiError> {
    let presigned = match redirect {
        true => {
            blobs
                .get_url(key, content_type, disposition, expiry)
                .await?
        }
        false => None,
    };
    if let Some(url) = presigned {
        let mut r = StatusCode::FOUND.into_response();
        let location = HeaderValue::from_str(url.as_str())
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        r.headers_mut().insert(header::LOCATION, location);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return Ok(r);
    }
    let bytes = blobs.get(key).await?.ok_or_else(|| {
        ApiError::unavailable("the attachment's bytes are missing from the store")
    })?;
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    let value =
        |v: &str| HeaderValue::from_str(v).map_err(|e| ApiError::unavailable(e.to_string()));
    h.insert(header::CONTENT_TYPE, value(content_type)?);
    h.insert(header::CONTENT_DISPOSITION, value(disposition)?);
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    Ok(r)
}

/// `Content-Disposition` of a file: `inline` for an allowed image, else `attachment`,
/// with its name (RFC 6266: an ASCII fallback and the UTF-8 name).
pub fn disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 5987: every byte but the unreserved ones, percent-encoded.
    const ENCODED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(name, ENCODED);
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disposition_names_the_file_safely() {
        assert_eq!(
            disposition(false, "plan v2.pdf"),
            "attachment; filename=\"plan v2.pdf\"; filename*=UTF-8''plan%20v2.pdf"
        );
        assert_eq!(
            disposition(true, "é\"x.png"),
            "inline; filename=\"__x.png\"; filename*=UTF-8''%C3%A9%22x.png"
        );
    }
}
