//! `GET /v1/search`: the messages the caller may read now that match a query, from the
//! projectors' search indexes (one replica of every shard, merged by the projector's
//! [`parley_projector::search::merge`]).
//!
//! Read-your-log: the search carries the log's end as it is now, and each replica
//! answers once its views, and its index for the caller's conversations, reflect it: a
//! message sent (and acknowledged) before the search is found.

use axum::extract::{Query, State};
use axum::Json;
use parley_projector::search::{SearchPage, SearchQuery, Sort};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits::{Limit, Read};
use crate::service::Shared;

/// The results a page holds unless told.
pub const DEFAULT_LIMIT: u32 = 20;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query: words (all must be there), "a phrase", `from:USER`, `in:CONVERSATION`
    /// (docs/protocol.md, *Search*). At most 500 characters.
    #[param(min_length = 1, max_length = 500)]
    q: String,
    /// Only this conversation (the caller must be a member).
    conversation_id: Option<String>,
    /// Only messages by this user.
    from: Option<String>,
    /// `newest` (the default) or `relevance`.
    #[param(pattern = "^(newest|relevance)$")]
    sort: Option<String>,
    /// 1 to 100; 20 unless given.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /v1/search?q=&conversation_id=&from=&sort=&limit=&cursor=`
pub async fn search(
    State(state): State<Shared>,
    Caller(me): Caller,
    params: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchPage>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    state.limits.check(Limit::Read(Read::Search), &me)?;
    let sort = match p.sort.as_deref() {
        None | Some("newest") => Sort::Newest,
        Some("relevance") => Sort::Relevance,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sort {other:?} is not newest or relevance"
            )))
        }
    };
    let mut q = SearchQuery {
        user: me.clone(),
        q: p.q,
        conversation_id: p.conversation_id,
        from: p.from,
        sort,
        limit: p.limit.unwrap_or(DEFAULT_LIMIT),
        cursor: p.cursor,
        until: Vec::new(),
    };
    q.check().map_err(ApiError::bad_request)?;
    if let Some(c) = &q.conversation_id {
        // The same answer as history's for a conversation they may not read.
        crate::history::joined(&state, c, &me).await?;
    }
    let ends = state.log.end_offsets(&state.config.topics.events).await?;
    q.until = ends
        .iter()
        .enumerate()
        .map(|(p, o)| (p as i32, *o))
        .collect();
    Ok(Json(state.views.search(q).await?))
}
