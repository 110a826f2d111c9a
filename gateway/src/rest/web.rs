//! The web client (`gateway/web/`), served at `/` from the files embedded at build time
//! (`build.rs`). It is a client like any other: it speaks the public protocol only.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// What `/` shows when the binary was built without the web client.
const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>Parley</title>\
<h1>Parley</h1><p>This gateway was built without its web client. Build it with \
<code>npm ci &amp;&amp; npm run build</code> in <code>gateway/web</code> (or run \
<code>scripts/run.sh</code>), then build Parley again.</p>\
<p>The API is at <a href=\"/v1/openapi.json\">/v1/openapi.json</a>.</p>";

/// The page's policy: scripts, styles and connections to this origin only (images also
/// from `blob:`: attachments the page fetched with its token).
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn file(name: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn answer(name: &str, bytes: &'static [u8]) -> Response {
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if name.ends_with(".html") {
        h.insert("content-security-policy", HeaderValue::from_static(CSP));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    r
}

/// `GET /`: the web client's page.
pub async fn index() -> Response {
    match file("index.html") {
        Some(b) => answer("index.html", b),
        None => (
            StatusCode::OK,
            [(CONTENT_TYPE, "text/html; charset=utf-8")],
            NOT_BUILT,
        )
            .into_response(),
    }
}

/// `GET /{file}`: one of the web client's files.
pub async fn asset(Path(name): Path<String>) -> Response {
    match file(&name) {
        Some(b) if name != "index.html" => answer(&name, b),
        _ => ApiError::new(
            parley_schemas::frames::ErrorCode::NotFound,
            "no such endpoint",
        )
        .into_response(),
    }
}
