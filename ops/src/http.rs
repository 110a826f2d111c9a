//! `/metrics`, `/healthz` and `/readyz`, for a role to merge into its router (or serve
//! on a listener of its own).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::Health;

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { Json(json!({"ok": true})) }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
        .into_response()
}

/// 200 when every check passes, else 503; the body names each check either way.
async fn readyz(State(health): State<Health>) -> Response {
    let status = if health.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health.report())).into_response()
}

/// Serves [`router`] on `listener` until `shutdown` (roles with no other HTTP API).
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Health,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
