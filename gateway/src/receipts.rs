//! Delivery and read receipts, whatever the transport: a member says it has received (or
//! read) everything of a conversation up to a seq. The receipt goes to `receipts`; the
//! projector's receipt view records it and clears the member's inbox up to it.

use axum::extract::{Path, Query, State};
use axum::Json;
use parley_projector::store::mailbox::InboxPage;
use parley_schemas::frames::ServerFrame;
use parley_schemas::{Meta, ReceiptKind, ReceiptRecorded};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::membership::{ensure_member, log_end};
use crate::service::Shared;

/// Records `user`'s receipt; answers with the `receipt` frame once the log has it.
pub async fn record(
    state: &Shared,
    user: &str,
    conversation: &str,
    kind: ReceiptKind,
    seq: i64,
) -> Result<ServerFrame, ApiError> {
    if seq < 0 {
        return Err(ApiError::bad_request("seq must be 0 or more"));
    }
    ensure_member(state, conversation, user).await?;
    let (partition, end) = log_end(state, conversation).await?;
    if seq >= end {
        return Err(ApiError::bad_request(format!(
            "seq {seq} is beyond the end of conversation {conversation}"
        )));
    }
    // `receipts` is compacted per (conversation, member, kind): the newest record of a
    // key is the one kept, so it carries the highest mark known, never a lower one.
    let known = state
        .views
        .receipts(conversation)
        .await?
        .into_iter()
        .find(|r| r.user_id == user)
        .and_then(|r| match kind {
            ReceiptKind::Delivered => r.delivered,
            ReceiptKind::Read => r.read,
        });
    let record = ReceiptRecorded {
        meta: Meta::new(user),
        conversation_id: conversation.to_string(),
        kind,
        up_to_seq: known.map_or(seq, |k| k.max(seq)),
    };
    let key = format!("{conversation}/{user}/{}", kind_name(kind));
    let value =
        parley_schemas::encode(&record).map_err(|e| ApiError::bad_request(e.to_string()))?;
    state
        .log
        .append_to(
            &state.config.topics.receipts,
            partition,
            key.as_bytes(),
            Some(&value),
        )
        .await?;
    Ok(ServerFrame::Receipt {
        conversation_id: conversation.to_string(),
        user_id: user.to_string(),
        kind,
        seq,
    })
}

fn kind_name(kind: ReceiptKind) -> &'static str {
    match kind {
        ReceiptKind::Delivered => "delivered",
        ReceiptKind::Read => "read",
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// `delivered` or `read`.
    #[schema(value_type = String, pattern = "^(delivered|read)$")]
    kind: ReceiptKind,
    seq: i64,
}

/// `POST /v1/conversations/{id}/receipts` `{"kind":"delivered"|"read","seq"}`:
/// answers with the `receipt` frame.
pub async fn post(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
    body: Result<Json<ReceiptBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ServerFrame>, ApiError> {
    let Json(b) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(record(&state, &me, &id, b.kind, b.seq).await?))
}

/// `GET /v1/conversations/{id}/receipts`: how far each member has received and read.
pub async fn list(
    State(state): State<Shared>,
    Caller(me): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ensure_member(&state, &id, &me).await?;
    let receipts = state.views.receipts(&id).await?;
    Ok(Json(json!({"conversation_id": id, "receipts": receipts})))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    limit: Option<u32>,
}

/// `GET /v1/inbox?limit=`: the caller's messages that arrived while it was offline and
/// that it has not acknowledged yet.
pub async fn inbox(
    State(state): State<Shared>,
    Caller(me): Caller,
    params: Result<Query<InboxParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InboxPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(state.views.inbox(&me, limit).await?))
}
