//! The REST API as an OpenAPI 3.1 document, served at `GET /v1/openapi.json`: the
//! request bodies and query parameters are the handlers' own types; every operation
//! that takes a token also documents the error answers every endpoint may give.

use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::attachments::routes::{DownloadParams, UploadRequest, UploadSlot};
use crate::conversations::{AddBody, CreateBody, HistoryParams, TokenBody};
use crate::devices::{MuteBody, RegisterBody};
use crate::longpoll::{PollParams, SendBody};
use crate::messages::EditBody;
use crate::privacy::VisibilityBody;
use crate::receipts::{InboxParams, ReceiptBody};
use crate::roles::SettingsBody;
use crate::search::SearchParams;
use crate::service::PresenceParams;

/// Every error: `{"error": {"code", "message", "retry_after_ms"?}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `not_member`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `too_large`, `group_full`, `conflict`, `gone`, `rate_limited`, `unavailable`, `internal`.
    code: String,
    message: String,
    /// With `rate_limited`.
    retry_after_ms: Option<u64>,
}

/// The path of a member's routes (`…/members/{user_id}`, `…/admins/{user_id}`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct MemberPath {
    /// The conversation.
    id: String,
    // The rule of `auth::valid_user_id`.
    /// A user id: 1 to 64 of `A-Z a-z 0-9 . _ @ : -`.
    #[param(pattern = r"^[A-Za-z0-9._@:-]{1,64}$")]
    user_id: String,
}

/// A JSON object (its fields are described in `docs/protocol.md`).
#[derive(Serialize, ToSchema)]
pub struct Object {}

#[derive(Serialize, ToSchema)]
pub struct Created {
    conversation_id: String,
    created: bool,
    /// Creating a direct conversation again brought the caller back (they had left).
    rejoined: Option<bool>,
    /// The other member of a direct conversation has left it: they see nothing sent
    /// there until they come back themselves.
    other_left: Option<bool>,
}

/// The `changed` frame: the change is in the log at `seq`.
#[derive(Serialize, ToSchema)]
pub struct Changed {
    /// `changed`.
    #[serde(rename = "type")]
    kind: String,
    conversation_id: String,
    /// The change's own seq.
    seq: i64,
    /// The seq of the message it changes.
    target_seq: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Added {
    conversation_id: String,
    members: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Conversation {
    conversation_id: String,
    /// `direct` or `group`.
    #[serde(rename = "type")]
    kind: String,
    title: Option<String>,
    members: Vec<String>,
    creator: Option<String>,
    admins: Vec<String>,
    full_history: bool,
    last_seq: Option<i64>,
    /// Disappearing messages (ms), present only while they are on.
    #[serde(skip_serializing_if = "Option::is_none")]
    disappear_after_ms: Option<i64>,
    /// The seq of the change that set it: each message after it disappears
    /// `disappear_after_ms` after its `ts` (present with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    disappear_since_seq: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Settings {
    conversation_id: String,
    full_history: bool,
    /// Disappearing messages (s); null when off.
    disappear_after_s: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Conversations {
    conversations: Vec<Object>,
}

#[derive(Serialize, ToSchema)]
pub struct History {
    conversation_id: String,
    messages: Vec<Object>,
    has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Receipts {
    conversation_id: String,
    receipts: Vec<Object>,
}

#[derive(Serialize, ToSchema)]
pub struct Inbox {
    user_id: String,
    entries: Vec<Object>,
    has_more: bool,
}

/// A page of search results, newest first unless `sort=relevance`.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    results: Vec<SearchResult>,
    /// Give it as `cursor` for the next page; absent on the last one.
    next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    conversation_id: String,
    /// The message's seq: open history there.
    seq: i64,
    message_id: String,
    sender_id: String,
    /// When it was sent (ms since the epoch).
    ts: i64,
    /// A fragment of the text around the best match; `hit` marks the matched words.
    snippet: Vec<SnippetPart>,
    /// With `sort=relevance`: the match's score.
    score: Option<f32>,
}

#[derive(Serialize, ToSchema)]
pub struct SnippetPart {
    text: String,
    hit: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct Presence {
    users: Vec<Object>,
}

#[derive(Serialize, ToSchema)]
pub struct Devices {
    devices: Vec<Object>,
}

/// A user's content erased.
#[derive(Serialize, ToSchema)]
pub struct Erased {
    user_id: String,
    erased: bool,
    /// The partitions of `events` the erasure was appended to.
    partitions: i32,
}

/// Whether the caller's presence is shown.
#[derive(Serialize, ToSchema)]
pub struct Visibility {
    visible: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Muted {
    conversation_id: String,
    muted: bool,
}

#[derive(Serialize, ToSchema)]
pub struct OptedIn {
    conversation_id: String,
    opted_in: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Poll {
    frames: Vec<Object>,
    cursor: String,
    has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Ticket {
    ticket: String,
    expires_in_ms: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Token {
    token: String,
    user_id: String,
    expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct Healthy {
    ok: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    ready: bool,
    checks: Object,
}

/// One empty function per operation: utoipa reads the attribute.
#[allow(dead_code)]
mod operations {
    use super::*;

    #[utoipa::path(post, path = "/v1/conversations", request_body = CreateBody,
    responses((status = 201, body = Created), (status = 200, body = Created), (status = 409, body = ErrorBody)))]
    fn create_conversation() {}
    #[utoipa::path(get, path = "/v1/conversations", responses((status = 200, body = Conversations)))]
    fn list_conversations() {}
    #[utoipa::path(post, path = "/v1/conversations/{id}/members", request_body = AddBody,
    params(("id" = String, Path)),
    responses((status = 200, body = Added), (status = 409, body = ErrorBody)))]
    fn add_members() {}
    #[utoipa::path(delete, path = "/v1/conversations/{id}/members/{user_id}",
    params(MemberPath),
    responses((status = 204, description = "removed (or left)")))]
    fn remove_member() {}
    #[utoipa::path(get, path = "/v1/conversations/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Conversation)))]
    fn show_conversation() {}
    #[utoipa::path(patch, path = "/v1/conversations/{id}", request_body = SettingsBody,
    params(("id" = String, Path)), responses((status = 200, body = Settings)))]
    fn group_settings() {}
    #[utoipa::path(put, path = "/v1/conversations/{id}/admins/{user_id}",
    params(MemberPath),
    responses((status = 204, description = "the member is an admin")))]
    fn grant_admin() {}
    #[utoipa::path(delete, path = "/v1/conversations/{id}/admins/{user_id}",
    params(MemberPath),
    responses((status = 204, description = "the member is not an admin")))]
    fn revoke_admin() {}
    #[utoipa::path(get, path = "/v1/conversations/{id}/messages", params(("id" = String, Path), HistoryParams),
    responses((status = 200, body = History)))]
    fn history() {}
    #[utoipa::path(post, path = "/v1/conversations/{id}/messages", request_body = SendBody,
    params(("id" = String, Path)), responses((status = 200, body = Object, description = "the `sent` frame")))]
    fn post_message() {}
    #[utoipa::path(patch, path = "/v1/conversations/{id}/messages/{seq}", request_body = EditBody,
    params(("id" = String, Path), ("seq" = i64, Path, minimum = 0)),
    responses((status = 200, body = Changed), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
    fn edit_message() {}
    #[utoipa::path(delete, path = "/v1/conversations/{id}/messages/{seq}",
    params(("id" = String, Path), ("seq" = i64, Path, minimum = 0)),
    responses((status = 200, body = Changed), (status = 410, body = ErrorBody)))]
    fn delete_message() {}
    #[utoipa::path(put, path = "/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
    params(("id" = String, Path), ("seq" = i64, Path, minimum = 0), ("emoji" = String, Path, description = "1 to 32 bytes of UTF-8, percent-encoded")),
    responses((status = 200, body = Changed), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
    fn react() {}
    #[utoipa::path(post, path = "/v1/uploads", request_body = UploadRequest,
    responses((status = 201, body = UploadSlot, description = "an upload slot: PUT the bytes to `upload_url` with `headers`"),
        (status = 413, body = ErrorBody)))]
    fn create_upload() {}
    #[utoipa::path(put, path = "/v1/uploads/{id}",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file, with the slot's content type and length"),
    params(("id" = String, Path, description = "the slot's attachment_id")),
    responses((status = 201, description = "stored"), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
    fn upload() {}
    #[utoipa::path(get, path = "/v1/attachments/{id}",
    params(("id" = String, Path, description = "an attachment_id of a message"), DownloadParams),
    responses((status = 200, content_type = "application/octet-stream", description = "the file (filesystem store), with Content-Disposition"),
        (status = 302, description = "a redirect to a presigned GET of the object store, valid for minutes")))]
    fn download_attachment() {}
    #[utoipa::path(delete, path = "/v1/conversations/{id}/messages/{seq}/reactions/{emoji}",
    params(("id" = String, Path), ("seq" = i64, Path, minimum = 0), ("emoji" = String, Path, description = "1 to 32 bytes of UTF-8, percent-encoded")),
    responses((status = 200, body = Changed), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)))]
    fn unreact() {}
    #[utoipa::path(get, path = "/v1/conversations/{id}/receipts", params(("id" = String, Path)),
    responses((status = 200, body = Receipts)))]
    fn receipts() {}
    #[utoipa::path(post, path = "/v1/conversations/{id}/receipts", request_body = ReceiptBody,
    params(("id" = String, Path)), responses((status = 200, body = Object, description = "the `receipt` frame")))]
    fn post_receipt() {}
    #[utoipa::path(get, path = "/v1/inbox", params(InboxParams), responses((status = 200, body = Inbox)))]
    fn inbox() {}
    #[utoipa::path(get, path = "/v1/search", params(SearchParams),
    responses((status = 200, body = SearchResults), (status = 403, body = ErrorBody, description = "`conversation_id` names a conversation the caller may not read")))]
    fn search() {}
    #[utoipa::path(get, path = "/v1/presence", params(PresenceParams), responses((status = 200, body = Presence)))]
    fn presence() {}
    #[utoipa::path(post, path = "/v1/devices", request_body = RegisterBody,
    responses((status = 201, body = Object, description = "the device")))]
    fn register_device() {}
    #[utoipa::path(get, path = "/v1/devices", responses((status = 200, body = Devices)))]
    fn devices() {}
    #[utoipa::path(delete, path = "/v1/devices/{device_id}", params(("device_id" = String, Path)),
    responses((status = 204, description = "removed")))]
    fn remove_device() {}
    #[utoipa::path(post, path = "/v1/conversations/{id}/mute", request_body = MuteBody,
    params(("id" = String, Path)), responses((status = 200, body = Muted)))]
    fn mute() {}
    #[utoipa::path(delete, path = "/v1/conversations/{id}/mute", params(("id" = String, Path)),
    responses((status = 200, body = Muted)))]
    fn unmute() {}
    #[utoipa::path(post, path = "/v1/conversations/{id}/opt-in", params(("id" = String, Path)),
    responses((status = 200, body = OptedIn)))]
    fn opt_in() {}
    #[utoipa::path(delete, path = "/v1/conversations/{id}/opt-in", params(("id" = String, Path)),
    responses((status = 200, body = OptedIn)))]
    fn opt_out() {}
    #[utoipa::path(get, path = "/v1/me/presence", responses((status = 200, body = Visibility)))]
    fn my_presence() {}
    #[utoipa::path(delete, path = "/v1/users/{user_id}/content", params(("user_id" = String, Path)),
    responses((status = 200, body = Erased, description = "every message the user posted reads as deleted; their data keys are erased from the log"),
    (status = 403, body = ErrorBody, description = "neither the user themself nor an operator with the service token")))]
    fn erase_user() {}
    #[utoipa::path(put, path = "/v1/me/presence", request_body = VisibilityBody,
    responses((status = 200, body = Visibility)))]
    fn set_my_presence() {}
    #[utoipa::path(get, path = "/v1/events", params(PollParams), responses((status = 200, body = Poll)))]
    fn events() {}
    #[utoipa::path(post, path = "/v1/ws-ticket", responses((status = 200, body = Ticket)))]
    fn ws_ticket() {}
    #[utoipa::path(post, path = "/v1/dev/token", request_body = TokenBody, security(()),
    responses((status = 200, body = Token), (status = 400, body = ErrorBody)))]
    fn dev_token() {}
    #[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = Healthy)))]
    fn healthz() {}
    #[utoipa::path(get, path = "/readyz", security(()),
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
    fn readyz() {}
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley",
        version = "1",
        description = "The REST API of a Parley gateway. The WebSocket protocol (GET /v1/ws) is in docs/protocol.md.",
        license(name = "Apache-2.0"),
        contact(name = "Parley", url = "https://github.com/parley-chat/parley")
    ),
    paths(
        operations::create_conversation, operations::list_conversations, operations::add_members,
        operations::remove_member, operations::show_conversation, operations::group_settings,
        operations::grant_admin, operations::revoke_admin, operations::history, operations::post_message,
        operations::edit_message, operations::delete_message, operations::react, operations::unreact,
        operations::receipts, operations::create_upload, operations::upload, operations::download_attachment,
        operations::post_receipt, operations::inbox, operations::search, operations::presence, operations::register_device,
        operations::devices, operations::remove_device, operations::mute, operations::unmute, operations::opt_in,
        operations::opt_out, operations::my_presence, operations::set_my_presence, operations::erase_user, operations::events, operations::ws_ticket, operations::dev_token, operations::healthz,
        operations::readyz
    ),
    modifiers(&Bearer)
)]
struct Api;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The errors any authenticated operation may answer with.
const ERRORS: [(&str, &str); 7] = [
    ("400", "bad input: a malformed body, parameter or id"),
    ("401", "missing, invalid or expired token"),
    ("403", "not a member, or not allowed"),
    ("404", "no such conversation, message or device"),
    ("413", "over a size limit"),
    (
        "429",
        "rate limited: Retry-After and retry_after_ms say how long to wait",
    ),
    ("503", "the log or the views did not answer in time"),
];

/// The document, with `dev_token` only when the gateway serves it.
pub fn document(dev_auth: bool) -> utoipa::openapi::OpenApi {
    let mut doc = Api::openapi();
    if !dev_auth {
        doc.paths.paths.remove("/v1/dev/token");
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        if path == "/healthz" || path == "/readyz" {
            continue;
        }
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            for (status, description) in ERRORS {
                let error = ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                            .build(),
                    )
                    .build();
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert(RefOr::T(error));
            }
        }
    }
    doc
}

/// `GET /v1/openapi.json`.
pub async fn serve(
    axum::extract::State(state): axum::extract::State<crate::service::Shared>,
) -> axum::response::Response {
    axum::Json(document(state.config.dev_auth)).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented_with_its_errors() {
        let doc = serde_json::to_value(super::document(true)).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/conversations",
            "/v1/conversations/{id}/members/{user_id}",
            "/v1/ws-ticket",
            "/v1/events",
            "/v1/dev/token",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        let create = &doc["paths"]["/v1/conversations"]["post"];
        assert!(create["responses"]["429"].is_object());
        assert!(create["requestBody"].is_object());
        let without = serde_json::to_value(super::document(false)).unwrap();
        assert!(without["paths"].get("/v1/dev/token").is_none());
    }
}
