//! The REST endpoints for conversations. Each change appends a record to the log (after
//! the membership pre-check); each read asks the projector's views.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parley_projector::views::HistoryQuery;
use parley_schemas::frames::ErrorCode;
use parley_schemas::rules::Effect;
use parley_schemas::{
    ids, AnyRecord, ConversationCreated, ConversationKind, MemberRemoved, MembersAdded, Meta,
};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{valid_user_id, Caller};
use crate::error::ApiError;
use crate::membership::{ensure_member, read_your_log};
use crate::service::Shared;

/// The most members one request may name.
const MAX_MEMBERS: usize = 10_000;
const MAX_TITLE_CHARS: usize = 200;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// `direct` or `group`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^(direct|group)$")]
    kind: String,
    /// User ids (1 to 64 of `A-Z a-z 0-9 . _ @ : -`): one for a direct conversation.
    #[serde(default)]
    #[schema(max_items = 10000)]
    members: Vec<String>,
    /// At most 200 characters.
    #[serde(default)]
    #[schema(max_length = 200)]
    title: Option<String>,
}

fn check_members(members: &[String]) -> Result<(), ApiError> {
    if members.len() > MAX_MEMBERS {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("at most {MAX_MEMBERS} members per request"),
        ));
    }
    if let Some(bad) = members.iter().find(|m| !valid_user_id(m)) {
        return Err(ApiError::bad_request(format!(
            "{bad:?} is not a valid user id (1 to 64 of A-Z a-z 0-9 . _ @ : -)"
        )));
    }
    Ok(())
}

fn group_full(cap: usize, now: usize) -> ApiError {
    ApiError::new(
        ErrorCode::GroupFull,
        format!("a group has at most {cap} members; this one has {now}"),
    )
}

async fn append(state: &Shared, conversation: &str, record: AnyRecord) -> Result<i64, ApiError> {
    Ok(state.append_event(conversation, &record).await?.offset)
}

/// `POST /v1/conversations`
pub async fn create(
    State(state): State<Shared>,
    Caller(me): Caller,
    body: Result<Json<CreateBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_members(&body.members)?;
    state.limits.check(crate::limits::Limit::Create, &me)?;
    let (kind, id, mut members) = match body.kind.as_str() {
        "direct" => {
            let others: Vec<&String> = body.members.iter().filter(|m| **m != me).collect();
            if others.len() != 1 || body.members.len() > 2 {
                return Err(ApiError::bad_request(
                    "a direct conversation has exactly one other member",
                ));
            }
            let other = others[0].clone();
            let id = ids::direct_conversation_id(&me, &other);
            (ConversationKind::Direct, id, vec![me.clone(), other])
        }
        "group" => (
            ConversationKind::Group,
            uuid::Uuid::new_v4().to_string(),
            body.members.clone(),
        ),
        other => {
            return Err(ApiError::bad_request(format!(
                "type must be \"direct\" or \"group\", not {other:?}"
            )))
        }
    };
    if let Some(t) = &body.title {
        if t.chars().count() > MAX_TITLE_CHARS {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("title is longer than {MAX_TITLE_CHARS} characters"),
            ));
        }
    }
    if !members.contains(&me) {
        members.insert(0, me.clone());
    }
    let mut seen = std::collections::HashSet::new();
    members.retain(|m| seen.insert(m.clone()));
    let cap = parley_schemas::rules::max_group_members();
    if members.len() > cap {
        return Err(group_full(cap, members.len()));
    }

    // A direct conversation's id is derived: it exists if the log holds its creation,
    // which the views show once they have applied its partition up to the end.
    if kind == ConversationKind::Direct && direct_exists(&state, &id).await? {
        // Creating it again brings back the caller, if they left. Never the other one:
        // who left stays out until they come back themselves (consent; the log's rules
        // add only the record's actor).
        let other = members
            .iter()
            .find(|m| **m != me)
            .cloned()
            .unwrap_or_default();
        // Who is in it now, as the log says (a leave just before counts).
        if !read_your_log(&state, &id).await? {
            return Err(ApiError::unavailable(
                "the views are behind the log; try again",
            ));
        }
        let rejoined = !state.views.is_member(&id, &me).await?;
        if rejoined {
            let record = MembersAdded {
                meta: Meta::new(me.clone()),
                conversation_id: id.clone(),
                members: members.clone(),
            };
            append(&state, &id, record.into()).await?;
            state.members.forget(&id);
        }
        let other_left = !state.views.is_member(&id, &other).await?;
        return Ok((
            StatusCode::OK,
            Json(json!({
                "conversation_id": id,
                "created": false,
                "rejoined": rejoined,
                "other_left": other_left,
            })),
        )
            .into_response());
    }
    let record = ConversationCreated {
        meta: Meta::new(me.clone()),
        conversation_id: id.clone(),
        kind,
        title: if kind == ConversationKind::Group {
            body.title
        } else {
            None
        },
        members,
    };
    let offset = append(&state, &id, record.into()).await?;
    tracing::info!(conversation = %id, creator = %me, offset, "conversation created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"conversation_id": id, "created": true})),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddBody {
    /// User ids (1 to 64 of `A-Z a-z 0-9 . _ @ : -`), at most 10,000.
    #[schema(min_items = 1, max_items = 10000)]
    members: Vec<String>,
}

/// `POST /v1/conversations/{id}/members`
pub async fn add_members(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Result<Json<AddBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_members(&body.members)?;
    state.limits.check(crate::limits::Limit::AddMembers, &me)?;
    if body.members.is_empty() {
        return Err(ApiError::bad_request("members is empty"));
    }
    ensure_member(&state, &id, &me).await?;
    let conv = state
        .views
        .conversation(&id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no conversation {id}")))?;
    if conv.kind == ConversationKind::Direct {
        return Err(ApiError::bad_request(
            "a direct conversation cannot gain members; create a group",
        ));
    }
    let mut new: Vec<&String> = body
        .members
        .iter()
        .filter(|m| !conv.members.contains(m))
        .collect();
    new.sort();
    new.dedup();
    let cap = parley_schemas::rules::max_group_members();
    if conv.members.len() + new.len() > cap {
        return Err(group_full(cap, conv.members.len()));
    }
    let me_id = me.clone();
    let record = MembersAdded {
        meta: Meta::new(me),
        conversation_id: id.clone(),
        members: body.members.clone(),
    };
    let offset = append(&state, &id, record.into()).await?;
    // The cap is decided at the add's log position: a race with other adds may still
    // refuse it there. Once the views have it, say so rather than claim success.
    if !new.is_empty() {
        let p = crate::membership::partition_of(&state, &id);
        let applied = state
            .views
            .wait_applied(&[(p, offset + 1)], Duration::from_secs(10))
            .await?;
        if applied {
            // The add applies whole or not at all: if none of the new members is in,
            // the log refused it (or they left again at once, which we cannot tell).
            let now = state.views.conversation(&id).await?;
            let members = now.as_ref().map(|c| c.members.as_slice()).unwrap_or(&[]);
            if !new.iter().any(|m| members.contains(m)) {
                if !members.contains(&me_id) {
                    return Err(ApiError::not_member(&id));
                }
                return Err(group_full(cap, members.len()));
            }
        }
    }
    Ok(Json(json!({"conversation_id": id, "members": body.members})).into_response())
}

/// `DELETE /v1/conversations/{id}/members/{user_id}`
pub async fn remove_member(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !valid_user_id(&user) {
        return Err(ApiError::bad_request(format!(
            "{user:?} is not a valid user id"
        )));
    }
    state.limits.check(crate::limits::Limit::AddMembers, &me)?;
    ensure_member(&state, &id, &me).await?;
    let record = MemberRemoved {
        meta: Meta::new(me.clone()),
        conversation_id: id.clone(),
        member: user.clone(),
    };
    if user != me {
        // Leaving is anyone's; removing others is for those who outrank them.
        let Some(view) = state.views.conversation(&id).await? else {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("no conversation {id}"),
            ));
        };
        if view.kind == ConversationKind::Direct {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "no one is removed from a direct conversation; you may leave it \
                 (DELETE your own membership)",
            ));
        }
        if !view.members.contains(&user) {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("{user} is not a member of {id}"),
            ));
        }
        let any = AnyRecord::from(record.clone());
        if parley_schemas::rules::effect(&view, &any).is_ok_and(|e| e == Effect::Nothing) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "the group's creator removes anyone and its admins remove other members; \
                 any member may leave",
            ));
        }
    }
    append(&state, &id, record.into()).await?;
    state.members.forget(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Whether the log already holds the creation of direct conversation `id`.
async fn direct_exists(state: &Shared, id: &str) -> Result<bool, ApiError> {
    if state.views.conversation(id).await?.is_some() {
        return Ok(true);
    }
    if !read_your_log(state, id).await? {
        return Err(ApiError::unavailable(
            "the views are behind the log; try again",
        ));
    }
    Ok(state.views.conversation(id).await?.is_some())
}

/// `GET /v1/conversations`: read-your-writes, behind the same barrier as a sync.
pub async fn list(State(state): State<Shared>, Caller(me): Caller) -> Result<Response, ApiError> {
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::List), &me)?;
    crate::sync::barrier(&state).await?;
    let conversations = state.views.user_conversations(&me, true).await?;
    Ok(Json(json!({"conversations": conversations})).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/conversations/{id}/messages?after=&before=&limit=`
pub async fn history(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = HistoryQuery {
        after: p.after,
        before: p.before,
        limit: p.limit.unwrap_or(50).clamp(1, 1000),
        viewer: None,
    };
    let page = crate::history::page(&state, &me, &id, q).await?;
    Ok(
        Json(json!({"conversation_id": id, "messages": page.messages, "has_more": page.has_more}))
            .into_response(),
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// 1 to 64 of `A-Z a-z 0-9 . _ @ : -`.
    #[schema(pattern = r"^[A-Za-z0-9._@:-]{1,64}$", min_length = 1, max_length = 64)]
    user_id: String,
    /// Seconds the token is valid (1 to 86,400; default 86,400).
    #[serde(default)]
    expires_in: Option<u64>,
}

/// `POST /v1/dev/token` (only with `--dev-auth`).
pub async fn dev_token(
    State(state): State<Shared>,
    body: Result<Json<TokenBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !valid_user_id(&body.user_id) {
        return Err(ApiError::bad_request(format!(
            "{:?} is not a valid user id",
            body.user_id
        )));
    }
    let seconds = body.expires_in.unwrap_or(86_400).clamp(1, 86_400);
    let token = state.auth.issue(&body.user_id, seconds)?;
    Ok(
        Json(json!({"token": token, "user_id": body.user_id, "expires_in": seconds}))
            .into_response(),
    )
}
