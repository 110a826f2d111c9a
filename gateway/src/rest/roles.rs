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
    let mut body = json!({
        "conversation_id": v.conversation_id,
        "type": v.kind,
        "title": v.title,
        "members": v.members,
        "creator": v.creator,
        "admins": v.admins,
        "full_history": v.full_history,
        "last_seq": v.last_seq,
    });
    if let (Some(ms), Some(since)) = (v.disappear_after_ms, v.disappear_since) {
        body["disappear_after_ms"] = json!(ms);
        body["disappear_since_seq"] = json!(since);
    }
    Ok(Json(body).into_response())
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

/// The longest `disappear_after_s`: a year.
pub const DISAPPEAR_AFTER_MAX_S: u64 = 366 * 24 * 3600;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// A group's: whether members added from now on read its history from its creation
    /// (`true`) or from their add on (`false`, the default of a new group). Unchanged
    /// when absent.
    #[serde(default)]
    full_history: Option<bool>,
    /// Disappearing messages: each message sent from now on disappears this many
    /// seconds after it was sent (its text gone from history, and, with sealed bodies,
    /// its data key erased from the log). `0` turns it off; unchanged when absent. 1 to
    /// 31,622,400 (a year). In a direct conversation either member sets it.
    #[serde(default)]
    #[schema(maximum = 31_622_400)]
    disappear_after_s: Option<u64>,
}

/// `PATCH /v1/conversations/{id}`: a conversation's settings. A group's are changed by
/// its creator or an admin; a direct conversation's (`disappear_after_s` only) by either
/// member.
pub async fn settings(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Result<Json<SettingsBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if body.full_history.is_none() && body.disappear_after_s.is_none() {
        return Err(ApiError::bad_request(
            "give full_history, disappear_after_s or both",
        ));
    }
    if body
        .disappear_after_s
        .is_some_and(|s| s > DISAPPEAR_AFTER_MAX_S)
    {
        return Err(ApiError::bad_request(format!(
            "disappear_after_s is at most {DISAPPEAR_AFTER_MAX_S} (a year)"
        )));
    }
    state.limits.check(crate::limits::Limit::Settings, &me)?;
    let view = view_for(&state, &id, &me).await?;
    match view.kind {
        ConversationKind::Direct if body.full_history.is_some() => {
            return Err(ApiError::bad_request(
                "a direct conversation has no full_history setting: both members read it \
                 from its creation",
            ))
        }
        ConversationKind::Group if rank(&view, &me) < Rank::Admin => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the group's creator and its admins change its settings",
            ))
        }
        _ => {}
    }
    let full_history = body.full_history.unwrap_or(view.full_history);
    let disappear_after_ms = match body.disappear_after_s {
        None => view.disappear_after_ms,
        Some(0) => None,
        Some(s) => Some(s as i64 * 1000),
    };
    let answer = |v: &ConversationView| {
        Json(json!({
            "conversation_id": id,
            "full_history": v.full_history,
            "disappear_after_s": v.disappear_after_ms.map(|ms| ms / 1000),
        }))
        .into_response()
    };
    if view.full_history == full_history && view.disappear_after_ms == disappear_after_ms {
        return Ok(answer(&view));
    }
    let record = GroupSettingsChanged {
        meta: Meta::new(me),
        conversation_id: id.clone(),
        full_history,
        disappear_after_ms,
    };
    let now = write(&state, &id, record.into())
        .await?
        .ok_or_else(not_confirmed)?;
    if now.full_history != full_history || now.disappear_after_ms != disappear_after_ms {
        return Err(refused_at_its_position());
    }
    Ok(answer(&now))
}

fn rank(view: &ConversationView, user: &str) -> Rank {
    match rules::rank(view, &view.conversation_id, user) {
        Ok(r) => r,
        Err(never) => match never {},
    }
}
