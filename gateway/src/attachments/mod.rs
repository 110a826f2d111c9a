//! Attachments: files sent with messages. The log carries references
//! ([`parley_schemas::AttachmentRef`] on `MessagePosted`), never bytes; the bytes are in
//! an object store.
//!
//! - [`store`]: the store ([`Blobs`]): S3-compatible, or a directory for `parley dev`.
//! - [`slots`]: upload slots, the claim of the one message an upload is sent with, and
//!   the checks a send's attachments pass.
//! - [`routes`]: `POST /v1/uploads`, `PUT /v1/uploads/{id}`, `GET /v1/attachments/{id}`.
//! - [`quota`]: what a user may upload per day (files and bytes), counted in the store.
//!
//! `tests/store_conformance.rs` runs one contract against both stores.
//! - [`thumbnail`]: an image's thumbnail, made on first request and kept beside it.
//! - [`sweeper`]: removes uploads never sent and the files of deleted messages.

pub mod quota;
pub mod routes;
pub mod slots;
pub mod store;
pub mod sweeper;
pub mod thumbnail;

use std::time::Duration;

pub use store::{Blobs, S3Settings};

/// Media types accepted by default. Nothing a browser would run as a page (HTML, SVG,
/// XML, JavaScript) is on it.
pub const DEFAULT_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/zip",
    "application/octet-stream",
    "audio/mpeg",
    "audio/ogg",
    "video/mp4",
    "video/webm",
];

/// Images shown inline (and given thumbnails); every other type downloads as a file.
pub const INLINE_IMAGES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// Limits of attachments.
#[derive(Clone, Debug)]
pub struct AttachmentLimits {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Media types accepted (lower case, without parameters).
    pub types: Vec<String>,
    /// How long an upload slot's URL works.
    pub upload_expiry: Duration,
    /// How long a download URL works.
    pub download_expiry: Duration,
    /// An upload never sent is removed this long after its slot was given.
    pub unsent_ttl: Duration,
    /// What a user may upload per UTC day.
    pub quota: quota::Quota,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        AttachmentLimits {
            max_bytes: 25 * 1024 * 1024,
            types: DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            upload_expiry: Duration::from_secs(15 * 60),
            download_expiry: Duration::from_secs(5 * 60),
            unsent_ttl: Duration::from_secs(24 * 3600),
            quota: quota::Quota::default(),
        }
    }
}

/// The gateway's attachment store, or `unavailable` if it has none.
pub fn store_of(state: &crate::service::Shared) -> Result<&Blobs, crate::error::ApiError> {
    state.config.attachments.as_ref().ok_or_else(|| {
        crate::error::ApiError::unavailable(
            "attachments are not configured on this gateway (PARLEY_ATTACHMENTS)",
        )
    })
}

/// `content_type` as compared: lower case, without parameters (`; charset=…`).
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_compare_without_case_or_parameters() {
        assert_eq!(media_type("Text/Plain; charset=utf-8"), "text/plain");
        assert_eq!(media_type(" image/PNG "), "image/png");
        assert_eq!(media_type(""), "");
    }

    #[test]
    fn nothing_a_browser_runs_is_accepted_by_default() {
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
        ] {
            assert!(!DEFAULT_TYPES.contains(&t), "{t}");
        }
    }
}
