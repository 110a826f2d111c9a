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

/// The largest body of the router's own refusal kept as the message.
const REFUSAL_TEXT_MAX: usize = 1024;

/// Gives the router's own refusals (405 for a method a path does not have, 400 for a
/// path segment that is not valid percent-encoding, …), which axum answers in plain
/// text, the JSON error body every other answer has. Other headers (`Allow`) stay, and
/// so does the status, except that a body of the wrong type or shape (axum's 415 and
/// 422) is bad input like any other: 400.
pub async fn json_errors(response: Response) -> Response {
    use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
    let status = match response.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
            StatusCode::BAD_REQUEST
        }
        s => s,
    };
    let json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (json && status == response.status())
        || !(status.is_client_error() || status.is_server_error())
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REFUSAL_TEXT_MAX)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        text
    };
    let code = ErrorCode::from_http_status(status.as_u16());
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(CONTENT_TYPE);
    let mut answer = Json(json!({"error": {"code": code, "message": message}})).into_response();
    *answer.status_mut() = status;
    answer.headers_mut().extend(parts.headers);
    answer
}

#[cfg(test)]
mod tests {
    use axum::http::header::{ALLOW, CONTENT_TYPE};
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    #[tokio::test]
    async fn the_routers_plain_refusals_become_json_errors() {
        let plain = (StatusCode::METHOD_NOT_ALLOWED, [(ALLOW, "GET,POST")], "").into_response();
        let r = super::json_errors(plain).await;
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET,POST");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");

        let bad = (StatusCode::BAD_REQUEST, "Invalid URL: bad %-encoding").into_response();
        let body = axum::body::to_bytes(super::json_errors(bad).await.into_body(), 4096)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "bad_request");
        assert_eq!(v["error"]["message"], "Invalid URL: bad %-encoding");

        // A body of the wrong shape is bad input: 400.
        let shape = (StatusCode::UNPROCESSABLE_ENTITY, "missing field `muted`").into_response();
        assert_eq!(
            super::json_errors(shape).await.status(),
            StatusCode::BAD_REQUEST
        );

        // Successes pass as they are.
        let ok = super::json_errors("fine".into_response()).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
}
