//! Hiding one's presence: `GET` and `PUT /v1/me/presence` (`{"visible": false}`). While
//! hidden, nobody is told whether the user is online, nor when they were last seen:
//! contacts get an offline frame with no `last_seen`, and queries answer `unknown`.
//!
//! The setting is a record in the user's part of the `devices` topic (compacted), which
//! every gateway reads: it holds on every gateway, and after a restart.

use std::time::Duration;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::service::Shared;

/// How long an answer waits for this gateway to read the change back.
const READ_BACK: Duration = Duration::from_secs(10);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityBody {
    /// Whether others (your contacts, by the consent rules) see your presence.
    visible: bool,
}

/// `GET /v1/me/presence`
pub async fn show(State(state): State<Shared>, Caller(me): Caller) -> Json<Value> {
    Json(json!({ "visible": !state.devices.presence_hidden(&me) }))
}

/// `PUT /v1/me/presence`
pub async fn set(
    State(state): State<Shared>,
    Caller(me): Caller,
    body: Result<Json<VisibilityBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    if state.devices.presence_hidden(&me) != body.visible {
        return Ok(Json(json!({ "visible": body.visible })));
    }
    let pos = state
        .devices
        .set_presence_hidden(&me, !body.visible)
        .await?;
    if !state.devices.wait_for(pos, READ_BACK).await {
        return Err(ApiError::unavailable(
            "the change is in the log but not read back yet; ask again shortly",
        ));
    }
    Ok(Json(json!({ "visible": body.visible })))
}
