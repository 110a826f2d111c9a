//! Delivery and read receipts, whatever the transport: a member says it has received (or
//! read) everything of a conversation up to a seq. The receipt goes to `receipts`; the
//! projector's receipt view records it and clears the member's inbox up to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::Json;
use parley_projector::store::mailbox::InboxPage;
use parley_projector::store::Stream;
use parley_schemas::frames::ServerFrame;
use parley_schemas::{Meta, ReceiptKind, ReceiptRecorded};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::membership::{ensure_member, log_end};
use crate::service::Shared;

/// How many times a receipt is appended again to put the highest mark last.
const REPAIRS: usize = 3;
/// How long a repair waits for the views to apply a receipt.
const REPAIR_WAIT: Duration = Duration::from_secs(10);

/// This gateway's receipt keys (`conversation/user/kind`): one writer at a time per
/// key, and the highest mark it appended for each.
///
/// `receipts` is compacted per key, so the newest record of a key must carry the
/// highest mark, never a lower one: a replica built after compaction would otherwise
/// see a mark go down (unread counts jump, inbox entries come back). So:
/// - receipts of one key through this gateway are appended one after another, each
///   with the highest mark known (the views', this gateway's, the one asked for);
/// - after its append, a writer waits until the views have applied its record and, if
///   they hold a higher mark by then (a receipt through another gateway got in before
///   it), appends that mark again. The last record of a key is therefore written by a
///   writer that found nothing higher before it: the highest mark.
#[derive(Default)]
pub struct Marks {
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<i64>>>>>,
}

impl Marks {
    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<i64>>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= 100_000 {
            // Keep only keys in use; the views know the others' marks.
            keys.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        keys.entry(key.to_string()).or_default().clone()
    }
}

/// The mark the views hold for `user`'s `kind` in `conversation`.
async fn viewed_mark(
    state: &Shared,
    conversation: &str,
    user: &str,
    kind: ReceiptKind,
) -> Result<Option<i64>, ApiError> {
    Ok(state
        .views
        .receipts(conversation)
        .await?
        .into_iter()
        .find(|r| r.user_id == user)
        .and_then(|r| match kind {
            ReceiptKind::Delivered => r.delivered,
            ReceiptKind::Read => r.read,
        }))
}

/// Appends `mark` as `user`'s `kind` of `conversation`; its offset.
async fn append_mark(
    state: &Shared,
    key: &str,
    partition: i32,
    (user, conversation, kind): (&str, &str, ReceiptKind),
    mark: i64,
) -> Result<i64, ApiError> {
    let record = ReceiptRecorded {
        meta: Meta::new(user),
        conversation_id: conversation.to_string(),
        kind,
        up_to_seq: mark,
    };
    let value =
        parley_schemas::encode(&record).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let pos = state
        .log
        .append_to(
            &state.config.topics.receipts,
            partition,
            key.as_bytes(),
            Some(&value),
        )
        .await?;
    Ok(pos.offset)
}

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
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::Page), user)?;
    ensure_member(state, conversation, user).await?;
    let (partition, end) = log_end(state, conversation).await?;
    if seq >= end {
        return Err(ApiError::bad_request(format!(
            "seq {seq} is beyond the end of conversation {conversation}"
        )));
    }
    let key = format!("{conversation}/{user}/{}", kind_name(kind));
    let slot = state.receipt_marks.slot(&key);
    let (mark, offset) = {
        let mut high = slot.lock().await;
        let known = viewed_mark(state, conversation, user, kind).await?;
        let mark = [known, *high, Some(seq)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(seq);
        let who = (user, conversation, kind);
        let offset = append_mark(state, &key, partition, who, mark).await?;
        *high = Some(mark);
        (mark, offset)
    };
    let (state2, user2, conv2) = (state.clone(), user.to_string(), conversation.to_string());
    tokio::spawn(async move {
        repair(
            &state2,
            &key,
            partition,
            (&user2, &conv2, kind),
            mark,
            offset,
        )
        .await
    });
    Ok(ServerFrame::Receipt {
        conversation_id: conversation.to_string(),
        user_id: user.to_string(),
        kind,
        seq,
    })
}

/// Once the views hold the record at `offset` (`mark`), appends the higher mark they
/// hold, if any, so that the key's last record carries the highest (see [`Marks`]).
async fn repair(
    state: &Shared,
    key: &str,
    partition: i32,
    who: (&str, &str, ReceiptKind),
    mut mark: i64,
    mut offset: i64,
) {
    let (user, conversation, kind) = who;
    for _ in 0..REPAIRS {
        let applied = state
            .views
            .wait_stream_applied(Stream::Receipts, &[(partition, offset + 1)], REPAIR_WAIT)
            .await;
        if !matches!(applied, Ok(true)) {
            tracing::debug!(%key, "receipt not applied in time: its mark is not checked");
            return;
        }
        let slot = state.receipt_marks.slot(key);
        let mut high = slot.lock().await;
        let Ok(Some(known)) = viewed_mark(state, conversation, user, kind).await else {
            return;
        };
        if known <= mark {
            return;
        }
        tracing::debug!(%key, mark, known, "a higher mark got in before this receipt: appended again");
        match append_mark(state, key, partition, who, known).await {
            Ok(o) => {
                *high = Some(known.max(high.unwrap_or(known)));
                (mark, offset) = (known, o);
            }
            Err(e) => {
                tracing::warn!(%key, error = %e, "a receipt's mark could not be appended again");
                return;
            }
        }
    }
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
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::Page), &me)?;
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
    state
        .limits
        .check(crate::limits::Limit::Read(crate::limits::Read::Page), &me)?;
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(state.views.inbox(&me, limit).await?))
}
