//! The REST resources.
//!
//! - [`conversations`]: conversations, members and messages (`/v1/conversations…`).
//! - [`history`]: history pages (with a read-your-log barrier).
//! - [`erasure`]: forgetting a user's content (`DELETE /v1/users/{id}/content`).
//! - [`messages`]: one message's edits, deletion and reactions.
//! - [`receipts`]: delivery and read receipts, and the inbox endpoints.
//! - [`roles`]: a group's admins and settings.
//! - [`search`]: full-text search over what the caller may read (`/v1/search`).
//! - [`devices`]: push devices and muted conversations (`/v1/devices`, `/mute`).
//! - [`privacy`]: hiding one's presence (`/v1/me/presence`).
//! - [`openapi`]: the REST API as an OpenAPI document (`GET /v1/openapi.json`).
//! - [`web`]: the web client, served at `/`.

pub mod conversations;
pub mod devices;
pub mod erasure;
pub mod history;
pub mod messages;
pub mod openapi;
pub mod privacy;
pub mod receipts;
pub mod roles;
pub mod search;
pub mod web;
