//! [`ApiError`]: every failure a client can see, with its [`ErrorCode`]. REST answers it
//! as an HTTP status with `{"error":{"code","message"}}`; WebSocket as an `error` frame.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parley_schemas::frames::{ErrorCode, ServerFrame};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: how long to wait (REST: `Retry-After`, in whole seconds).
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// Refused by a rate limit: try again after `wait`.
    pub fn rate_limited(what: &str, wait: std::time::Duration) -> Self {
        let ms = (wait.as_millis() as u64).max(1);
        ApiError {
            code: ErrorCode::RateLimited,
            message: format!("{what}: rate limited; retry after {ms} ms"),
            retry_after_ms: Some(ms),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_member(conversation: &str) -> Self {
        Self::new(
            ErrorCode::NotMember,
            format!("you are not a member of conversation {conversation}"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn frame(&self, client_msg_id: Option<String>, request_id: Option<String>) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message.clone(),
            client_msg_id,
            request_id,
            retry_after_ms: self.retry_after_ms,
        }
    }
}

impl From<parley_sequencer::Error> for ApiError {
    fn from(e: parley_sequencer::Error) -> Self {
        match e {
            parley_sequencer::Error::Rejected(m) => ApiError::bad_request(m),
            other => ApiError::unavailable(format!("the log could not take it: {other}")),
        }
    }
}

impl From<parley_projector::Error> for ApiError {
    fn from(e: parley_projector::Error) -> Self {
        match e {
            parley_projector::Error::BadRequest(m) => ApiError::bad_request(m),
            parley_projector::Error::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            other => ApiError::unavailable(format!("views unavailable: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        let Some(ms) = self.retry_after_ms else {
            return (status, Json(body)).into_response();
        };
        body["error"]["retry_after_ms"] = ms.into();
        let seconds = ms.div_ceil(1000).to_string();
        (
            status,
            [(axum::http::header::RETRY_AFTER, seconds)],
            Json(body),
        )
            .into_response()
    }
}
