//! `DELETE /v1/users/{user_id}/content`: forget a user's content (GDPR Art. 17), by the
//! user themself, or by an operator with the service token.
//!
//! It appends `UserErased` to every partition of `events` and answers once the views
//! have applied them all: the user's messages then read as deleted everywhere, and a
//! rebuild from the log reads them so too. The projectors write the tombstones of their
//! data keys (`parley_projector::eraser`), and compaction removes the keys from the
//! broker (docs/ARCHITECTURE.md, *Erasure*). The user's push devices, presence setting
//! and the push role's record of their notifications are removed too. Memberships and seqs stay: nobody else's history gets holes.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::Json;
use parley_schemas::{Meta, UserErased};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::service::Shared;

/// How long the answer waits for the views to apply the erasure.
const APPLY_WAIT: Duration = Duration::from_secs(20);

/// Who asks: the user, or an operator.
pub struct Eraser(String);

impl axum::extract::FromRequestParts<Shared> for Eraser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        if let (Some(given), Some(token)) = (
            crate::auth::token_of(parts),
            state.config.service_token.as_deref(),
        ) {
            if bool::from(subtle::ConstantTimeEq::ct_eq(
                given.as_bytes(),
                token.as_bytes(),
            )) {
                return Ok(Eraser("operator".into()));
            }
        }
        let crate::auth::Caller(me) = crate::auth::Caller::from_request_parts(parts, state).await?;
        Ok(Eraser(me))
    }
}

/// `DELETE /v1/users/{user_id}/content`
pub async fn erase(
    State(state): State<Shared>,
    Eraser(actor): Eraser,
    Path(user): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if user.is_empty() || user.len() > 128 {
        return Err(ApiError::bad_request("user_id must be 1 to 128 characters"));
    }
    if actor != user && actor != "operator" {
        return Err(ApiError::new(
            parley_schemas::frames::ErrorCode::Forbidden,
            "only the user themself, or an operator with the service token, erases a \
             user's content",
        ));
    }
    state.limits.check(crate::limits::Limit::Settings, &actor)?;
    let record = parley_schemas::encode(&UserErased {
        meta: Meta::new(actor.clone()),
        user_id: user.clone(),
    })
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let topic = &state.config.topics.events;
    let appends = (0..state.events_partitions).map(|p| {
        let (log, record, user) = (state.log.clone(), record.clone(), user.clone());
        async move {
            log.append_to(topic, p, user.as_bytes(), Some(&record))
                .await
        }
    });
    let mut at = Vec::new();
    for r in futures::future::join_all(appends).await {
        let pos = r?;
        at.push((pos.partition, pos.offset + 1));
    }
    // Their devices and presence setting go too.
    for device in state.devices.devices(&user) {
        state.devices.remove(&user, &device.device_id).await?;
    }
    if state.devices.presence_hidden(&user) {
        state.devices.set_presence_hidden(&user, false).await?;
    }
    // And the push role's record of what it notified them (it holds previews).
    let conversations: Vec<String> = state
        .views
        .user_conversations(&user, false)
        .await?
        .into_iter()
        .map(|c| c.conversation_id)
        .collect();
    parley_push::state::forget(
        &*state.log,
        &state.config.topics.push_state,
        &user,
        &conversations,
    )
    .await?;
    tracing::info!(user = %user, by = %actor, "user content erased");
    if !state.views.wait_applied(&at, APPLY_WAIT).await? {
        return Err(ApiError::unavailable(
            "the erasure is in the log but the views have not applied it yet: it takes \
             effect shortly; asking again is harmless",
        ));
    }
    Ok(Json(json!({
        "user_id": user,
        "erased": true,
        "partitions": at.len(),
    })))
}
