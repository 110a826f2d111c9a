//! Changing one message over REST (for long-poll clients; WebSocket clients send
//! `edit`, `delete` and `react` frames): each answers with the `changed` frame of
//! [`crate::changes`], or an error.
//!
//! - `PATCH /v1/conversations/{id}/messages/{seq}` with `{"body"}`: edit one's own.
//! - `DELETE /v1/conversations/{id}/messages/{seq}`: delete for everyone.
//! - `PUT` / `DELETE /v1/conversations/{id}/messages/{seq}/reactions/{emoji}`: set or
//!   take back a reaction (the emoji percent-encoded in the path).

use axum::extract::{Path, State};
use axum::Json;
use parley_schemas::frames::ServerFrame;
use serde::Deserialize;

use crate::auth::Caller;
use crate::changes::{change, Request};
use crate::error::ApiError;
use crate::service::Shared;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    /// The new text (not empty; at most the gateway's body limit).
    #[schema(min_length = 1)]
    body: String,
}

/// `PATCH /v1/conversations/{id}/messages/{seq}`
pub async fn edit(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path((id, seq)): Path<(String, i64)>,
    body: Result<Json<EditBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ServerFrame>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(
        change(&state, &me, &id, seq, Request::Edit { body: b.body }).await?,
    ))
}

/// `DELETE /v1/conversations/{id}/messages/{seq}`
pub async fn delete(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path((id, seq)): Path<(String, i64)>,
) -> Result<Json<ServerFrame>, ApiError> {
    Ok(Json(change(&state, &me, &id, seq, Request::Delete).await?))
}

/// `PUT /v1/conversations/{id}/messages/{seq}/reactions/{emoji}`
pub async fn react(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path((id, seq, emoji)): Path<(String, i64, String)>,
) -> Result<Json<ServerFrame>, ApiError> {
    let on = Request::React { emoji, on: true };
    Ok(Json(change(&state, &me, &id, seq, on).await?))
}

/// `DELETE /v1/conversations/{id}/messages/{seq}/reactions/{emoji}`
pub async fn unreact(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path((id, seq, emoji)): Path<(String, i64, String)>,
) -> Result<Json<ServerFrame>, ApiError> {
    let off = Request::React { emoji, on: false };
    Ok(Json(change(&state, &me, &id, seq, off).await?))
}
