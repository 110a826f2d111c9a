//! The projector's query API (internal: gateways and fanout-workers call it through
//! [`crate::HttpViews`]). JSON in and out; errors are `{"error":{"code","message"}}`.
//! Every request must carry the shared service token (`Authorization: Bearer …`); the
//! role binds to loopback unless told otherwise. A request may name the incarnation it
//! expects (`X-Parley-Incarnation`, from the replica's announcement): another one's
//! views (rebuilt from nothing under the same URL) answer 503, so a caller never takes
//! them for the views it knew.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::error::Error;
use crate::views::{HistoryQuery, Views};

type Shared = Arc<dyn Views>;

/// The header naming the incarnation a caller expects.
pub const INCARNATION_HEADER: &str = "x-parley-incarnation";

/// The query API; with `token`, a request without it is refused with 401; with
/// `incarnation`, a request that expects another one is refused with 503.
pub fn router(views: Shared, token: Option<String>, incarnation: Option<String>) -> Router {
    let api = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/checksum", get(checksum))
        .route("/v1/conversations/{id}", get(conversation))
        .route("/v1/conversations/{id}/members/{user}", get(member))
        .route("/v1/conversations/{id}/messages", get(history))
        .route("/v1/users/{user}/conversations", get(user_conversations))
        .route("/v1/conversations/{id}/messages/{message_id}", get(message))
        .route("/v1/partitions/{p}/snapshot", get(snapshot))
        .route("/v1/users/{user}/inbox", get(inbox))
        .route("/v1/conversations/{id}/receipts", get(receipts))
        .route("/v1/wait", post(wait))
        .route("/v1/search", post(search))
        .with_state(views);
    let api = match incarnation {
        Some(i) => api.layer(axum::middleware::from_fn_with_state(
            Arc::new(i),
            require_incarnation,
        )),
        None => api,
    };
    match token {
        Some(t) => api.layer(axum::middleware::from_fn_with_state(
            Arc::new(t),
            require_token,
        )),
        None => api,
    }
}

/// Refuses a request that expects another incarnation of these views.
async fn require_incarnation(
    State(ours): State<Arc<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let expected = req
        .headers()
        .get(INCARNATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !expected.is_empty() && expected != ours.as_str() {
        let body = json!({"error": {"code": "unavailable", "message": format!(
            "this replica's views are incarnation {ours}, not {expected}: they were rebuilt \
             from nothing; ask again once its new announcement is read"
        )}});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    next.run(req).await
}

/// Refuses a request without the service token.
async fn require_token(
    State(token): State<Arc<String>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // In time that does not depend on where a guess first differs.
    let same: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
    if !same {
        let body = json!({"error": {"code": "unauthorized", "message": "the projector API needs the service token (Authorization: Bearer $PARLEY_SERVICE_TOKEN)"}});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    next.run(req).await
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Error::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Unavailable(_) | Error::Log(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Error::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": self.to_string()}})),
        )
            .into_response()
    }
}

type Answer = Result<Response, Error>;

async fn status(State(v): State<Shared>) -> Answer {
    Ok(Json(v.status().await?).into_response())
}

async fn checksum(State(v): State<Shared>) -> Answer {
    let status = v.status().await?;
    let checksum = v.checksum().await?;
    Ok(Json(json!({"checksum": checksum, "applied": status.applied})).into_response())
}

async fn conversation(State(v): State<Shared>, Path(id): Path<String>) -> Answer {
    match v.conversation(&id).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(Error::NotFound(format!("conversation {id}"))),
    }
}

async fn member(State(v): State<Shared>, Path((id, user)): Path<(String, String)>) -> Answer {
    let since = v.history_from(&id, &user).await?;
    Ok(Json(json!({"member": since.is_some(), "since": since})).into_response())
}

#[derive(Deserialize)]
struct HistoryParams {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<u32>,
    viewer: Option<String>,
}

async fn history(
    State(v): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Answer {
    let q = HistoryQuery {
        after: p.after,
        before: p.before,
        limit: p.limit.unwrap_or(50),
        viewer: p.viewer,
    };
    Ok(Json(v.history(&id, q).await?).into_response())
}

#[derive(Deserialize)]
struct ConversationsParams {
    #[serde(default)]
    unread: bool,
}

async fn user_conversations(
    State(v): State<Shared>,
    Path(user): Path<String>,
    Query(p): Query<ConversationsParams>,
) -> Answer {
    let list = v.user_conversations(&user, p.unread).await?;
    Ok(Json(json!({ "conversations": list })).into_response())
}

async fn message(State(v): State<Shared>, Path((conv, id)): Path<(String, String)>) -> Answer {
    let id = Uuid::parse_str(&id).map_err(|e| Error::BadRequest(format!("message id: {e}")))?;
    match v.message_by_id(&conv, id).await? {
        Some(m) => Ok(Json(m).into_response()),
        None => Err(Error::NotFound(format!("message {id}"))),
    }
}

#[derive(Deserialize)]
struct InboxParams {
    limit: Option<u32>,
}

async fn inbox(
    State(v): State<Shared>,
    Path(user): Path<String>,
    Query(p): Query<InboxParams>,
) -> Answer {
    Ok(Json(v.inbox(&user, p.limit.unwrap_or(100)).await?).into_response())
}

async fn receipts(State(v): State<Shared>, Path(id): Path<String>) -> Answer {
    Ok(Json(json!({"receipts": v.receipts(&id).await?})).into_response())
}

async fn snapshot(State(v): State<Shared>, Path(p): Path<i32>) -> Answer {
    Ok(Json(v.partition_snapshot(p).await?).into_response())
}

#[derive(Deserialize)]
struct WaitBody {
    offsets: Vec<(i32, i64)>,
    #[serde(default = "default_wait")]
    timeout_ms: u64,
    /// `events` (the default), `inbox` or `receipts`.
    #[serde(default)]
    stream: Option<String>,
}

fn default_wait() -> u64 {
    5_000
}

async fn wait(State(v): State<Shared>, Json(b): Json<WaitBody>) -> Answer {
    let timeout = Duration::from_millis(b.timeout_ms.min(60_000));
    let stream = match b.stream.as_deref() {
        None => crate::store::Stream::Events,
        Some(name) => crate::store::Stream::named(name).ok_or_else(|| {
            Error::BadRequest(format!(
                "stream {name:?} is not one of events, inbox, receipts"
            ))
        })?,
    };
    let reached = v.wait_stream_applied(stream, &b.offsets, timeout).await?;
    Ok(Json(json!({ "reached": reached })).into_response())
}

/// One shard's answer to a search (the gateway merges the shards' answers).
async fn search(
    State(v): State<Shared>,
    body: Result<Json<crate::search::SearchQuery>, axum::extract::rejection::JsonRejection>,
) -> Answer {
    let Json(q) = body.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(v.search_shard(q).await?).into_response())
}
