//! Push settings over REST: a user's devices (`/v1/devices`) and muted conversations
//! (`/v1/conversations/{id}/mute`). Each change is a record in the `devices` topic; each
//! answer waits until this gateway's [`parley_push::DeviceBook`] has read it back, so a
//! list right after a registration shows it.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parley_push::devices::{MAX_DEVICES, PLATFORMS};
use parley_schemas::frames::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::membership::ensure_member;
use crate::service::Shared;

const MAX_URL: usize = 2048;
const MAX_DEVICE_ID: usize = 64;
/// How long an answer waits for the book to read the change back.
const READ_BACK: Duration = Duration::from_secs(10);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    /// `webhook`.
    platform: String,
    /// Where notifications are POSTed (plain `http://`), at a public address or a host
    /// the operator allows: loopback, link-local, private and reserved addresses are
    /// refused.
    url: String,
    /// Optional; by default derived from the URL, so registering one URL twice is one
    /// device.
    #[serde(default)]
    device_id: Option<String>,
}

async fn check_url(state: &Shared, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("url is longer than {MAX_URL} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("url {url:?} is not a URL: {e}")))?;
    if parsed.scheme() == "https" {
        // Refused here rather than dead-lettered at every push.
        return Err(ApiError::bad_request(
            "https:// webhooks are not served by this build (it has no TLS): register an \
             http:// relay on your network",
        ));
    }
    if parsed.scheme() != "http" || parsed.host_str().is_none() {
        return Err(ApiError::bad_request(
            "url must be an http:// URL with a host",
        ));
    }
    // Not into the deployment's own network (the push role checks again as it
    // connects, against DNS rebinding).
    state
        .config
        .webhook_targets
        .check_url(&parsed)
        .await
        .map_err(|e| ApiError::bad_request(format!("url refused: {e}")))
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

async fn read_back(state: &Shared, pos: parley_sequencer::Position) -> Result<(), ApiError> {
    if state.devices.wait_for(pos, READ_BACK).await {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "the change is in the log but not read back yet; list again shortly",
        ))
    }
}

/// `POST /v1/devices`
pub async fn register(
    State(state): State<Shared>,
    Caller(me): Caller,
    body: Result<Json<RegisterBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    if !PLATFORMS.contains(&body.platform.as_str()) {
        return Err(ApiError::bad_request(format!(
            "platform {:?} is not served; one of {PLATFORMS:?}",
            body.platform
        )));
    }
    check_url(&state, &body.url).await?;
    let device_id = match body.device_id {
        Some(id) if valid_device_id(&id) => id,
        Some(id) => {
            return Err(ApiError::bad_request(format!(
                "device_id {id:?} must be 1 to {MAX_DEVICE_ID} of A-Z a-z 0-9 . _ : -"
            )))
        }
        None => uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, body.url.as_bytes())
            .simple()
            .to_string()[..16]
            .to_string(),
    };
    let known = state.devices.devices(&me);
    if known.len() >= MAX_DEVICES && !known.iter().any(|d| d.device_id == device_id) {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_DEVICES} devices per user; delete one first"),
        ));
    }
    let pos = state
        .devices
        .register(&me, &device_id, &body.platform, &body.url)
        .await?;
    read_back(&state, pos).await?;
    let device = state
        .devices
        .devices(&me)
        .into_iter()
        .find(|d| d.device_id == device_id);
    Ok((StatusCode::CREATED, Json(json!(device))).into_response())
}

/// `GET /v1/devices`
pub async fn list(State(state): State<Shared>, Caller(me): Caller) -> Json<serde_json::Value> {
    Json(json!({ "devices": state.devices.devices(&me) }))
}

/// `DELETE /v1/devices/{device_id}`
pub async fn remove(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(device_id): Path<String>,
) -> Result<Response, ApiError> {
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    if !state
        .devices
        .devices(&me)
        .iter()
        .any(|d| d.device_id == device_id)
    {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("you have no device {device_id:?}"),
        ));
    }
    let pos = state.devices.remove(&me, &device_id).await?;
    read_back(&state, pos).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteBody {
    #[serde(default = "yes")]
    muted: bool,
}

fn yes() -> bool {
    true
}

/// `POST /v1/conversations/{id}/mute` (`{"muted": false}` unmutes)
pub async fn mute(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
    body: Option<Json<MuteBody>>,
) -> Result<Response, ApiError> {
    let muted = body.map(|Json(b)| b.muted).unwrap_or(true);
    set_mute(state, me, conversation, muted).await
}

/// `DELETE /v1/conversations/{id}/mute`
pub async fn unmute(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
) -> Result<Response, ApiError> {
    set_mute(state, me, conversation, false).await
}

/// `POST /v1/conversations/{id}/opt-in`: in a large group, a push for every message
/// while away (by default only mentions are pushed there).
pub async fn opt_in(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
) -> Result<Response, ApiError> {
    set_opt_in(state, me, conversation, true).await
}

/// `DELETE /v1/conversations/{id}/opt-in`
pub async fn opt_out(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(conversation): Path<String>,
) -> Result<Response, ApiError> {
    set_opt_in(state, me, conversation, false).await
}

async fn set_opt_in(
    state: Shared,
    me: String,
    conversation: String,
    opted_in: bool,
) -> Result<Response, ApiError> {
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    ensure_member(&state, &conversation, &me).await?;
    let pos = state.devices.opt_in(&me, &conversation, opted_in).await?;
    read_back(&state, pos).await?;
    Ok(Json(json!({"conversation_id": conversation, "opted_in": opted_in})).into_response())
}

async fn set_mute(
    state: Shared,
    me: String,
    conversation: String,
    muted: bool,
) -> Result<Response, ApiError> {
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    ensure_member(&state, &conversation, &me).await?;
    let pos = state.devices.mute(&me, &conversation, muted).await?;
    read_back(&state, pos).await?;
    Ok(Json(json!({"conversation_id": conversation, "muted": muted})).into_response())
}
