//! A group's roles and settings over REST: who its admins are, and whether members
//! added later read its history from its creation.
//!
//! Both live in the log (`MemberRoleSet`, `GroupSettingsChanged`) and every consumer
//! applies them by the shared rules ([`parley_schemas::rules`]). The gateway checks a
//! change against the same rules on the projector's view first, so that a caller who
//! may not make it gets a clear error and nothing is written; then, once the views have
//! the record, it says whether the log took it (a concurrent change may have come first).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parley_projector::views::ConversationView;
use parley_schemas::frames::ErrorCode;
use parley_schemas::rules::{self, Effect, Rank};
use parley_schemas::{AnyRecord, ConversationKind, GroupSettingsChanged, MemberRoleSet, Meta};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{valid_user_id, Caller};
use crate::error::ApiError;
use crate::membership::{ensure_member, partition_of};
use crate::service::Shared;

/// How long a change waits for the views to apply it before answering.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// The view of `id` for its member `me`.
async fn view_for(state: &Shared, id: &str, me: &str) -> Result<ConversationView, ApiError> {
    ensure_member(state, id, me).await?;
    state
        .views
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no conversation {id}")))
}

fn group_only(view: &ConversationView) -> Result<(), ApiError> {
    if view.kind == ConversationKind::Direct {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a direct conversation has no admins and no settings",
        ));
    }
    Ok(())
}

/// Appends `record` and waits for the views to apply it; the view after it, if they did
/// (None: not within [`APPLY_WAIT`]).
async fn write(
    state: &Shared,
    id: &str,
    record: AnyRecord,
) -> Result<Option<ConversationView>, ApiError> {
    let offset = state.append_event(id, &record).await?.offset;
    let p = partition_of(state, id);
    if !state
        .views
        .wait_applied(&[(p, offset + 1)], APPLY_WAIT)
        .await?
    {
        return Ok(None);
    }
    Ok(state.views.conversation(id).await?)
}

/// The record is in the log, but the views did not apply it in time: whether the log
/// took it at its position is not known yet.
fn not_confirmed() -> ApiError {
    ApiError::unavailable(
        "the change is in the log but the views have not applied it yet: look at the \
         conversation again shortly to see whether it took",
    )
}

fn refused_at_its_position() -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        "the log refused the change at its position: the group changed meanwhile",
    )
}

/// `GET /v1/conversations/{id}`: the conversation as its members see it.
pub async fn show(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::Page), &me)?;
    let v = view_for(&state, &id, &me).await?;
    Ok(Json(json!({
        "conversation_id": v.conversation_id,
        "type": v.kind,
        "title": v.title,
        "members": v.members,
        "creator": v.creator,
        "admins": v.admins,
        "full_history": v.full_history,
        "last_seq": v.last_seq,
    }))
    .into_response())
}

/// `PUT /v1/conversations/{id}/admins/{user_id}`: makes a member an admin.
pub async fn grant(
    state: State<Shared>,
    me: Caller,
    path: Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_role(state, me, path, true).await
}

/// `DELETE /v1/conversations/{id}/admins/{user_id}`: ends an admin's role.
pub async fn revoke(
    state: State<Shared>,
    me: Caller,
    path: Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_role(state, me, path, false).await
}

async fn set_role(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path((id, user)): Path<(String, String)>,
    admin: bool,
) -> Result<Response, ApiError> {
    if !valid_user_id(&user) {
        return Err(ApiError::bad_request(format!(
            "{user:?} is not a valid user id"
        )));
    }
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    let view = view_for(&state, &id, &me).await?;
    group_only(&view)?;
    let target = rank(&view, &user);
    match (admin, target) {
        (_, Rank::None) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{user} is not a member of {id}"),
            ))
        }
        (false, Rank::Creator) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the group's creator ranks above its admins, and stays there",
            ))
        }
        // Already so: nothing to write.
        (true, Rank::Admin | Rank::Creator) | (false, Rank::Member) => {
            return Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => {}
    }
    let record = MemberRoleSet {
        meta: Meta::new(me),
        conversation_id: id.clone(),
        member: user.clone(),
        admin,
    };
    let any = AnyRecord::from(record.clone());
    if rules::effect(&view, &any).is_ok_and(|e| e == Effect::Nothing) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            if admin {
                "only the group's creator and its admins make admins"
            } else {
                "only the group's creator ends another's admin role; an admin may step down"
            },
        ));
    }
    let now = write(&state, &id, record.into())
        .await?
        .ok_or_else(not_confirmed)?;
    if now.admins.contains(&user) != admin {
        return Err(refused_at_its_position());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Whether members added from now on read the group's history from its creation
    /// (`true`) or from their add on (`false`, the default of a new group).
    full_history: bool,
}

/// `PATCH /v1/conversations/{id}`: a group's settings, changed by its creator or an admin.
pub async fn settings(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Result<Json<SettingsBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    let view = view_for(&state, &id, &me).await?;
    group_only(&view)?;
    if rank(&view, &me) < Rank::Admin {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the group's creator and its admins change its settings",
        ));
    }
    let answer = |full_history: bool| {
        Json(json!({"conversation_id": id, "full_history": full_history})).into_response()
    };
    if view.full_history == body.full_history {
        return Ok(answer(view.full_history));
    }
    let record = GroupSettingsChanged {
        meta: Meta::new(me),
        conversation_id: id.clone(),
        full_history: body.full_history,
    };
    let now = write(&state, &id, record.into())
        .await?
        .ok_or_else(not_confirmed)?;
    if now.full_history != body.full_history {
        return Err(refused_at_its_position());
    }
    Ok(answer(body.full_history))
}

fn rank(view: &ConversationView, user: &str) -> Rank {
    match rules::rank(view, &view.conversation_id, user) {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
