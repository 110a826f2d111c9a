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
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
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
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (status, Json(body)).into_response()
    }
}
