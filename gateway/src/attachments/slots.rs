//! An attachment's life in the store: an upload slot given to a member of a conversation
//! ([`Slot`]), the bytes uploaded into it, and the claim of the one message it was sent
//! with ([`Claim`]). Slots and claims are small JSON objects beside the bytes, so every
//! gateway sees the same ones; a claim is created only if absent (S3's conditional
//! `If-None-Match: *`, or an exclusive create on the filesystem), so two messages can
//! never both hold one upload.

use bytes::Bytes;
use parley_schemas::frames::{Attach, ErrorCode};
use parley_schemas::AttachmentRef;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{Blobs, StoreError};
use crate::error::ApiError;

/// Most attachments one message carries.
pub const MAX_PER_MESSAGE: usize = 10;
/// Longest file name, in characters.
const MAX_NAME_CHARS: usize = 255;

/// An upload slot: who may upload what, for which conversation, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub uploader: String,
    pub conversation_id: String,
    pub content_type: String,
    pub size: u64,
    /// Hex SHA-256 the client announced, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// When the upload URL stops working (ms since the Unix epoch).
    pub upload_by: i64,
    /// When the slot was given (ms).
    pub created_at: i64,
}

/// The message an attachment was sent with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub conversation_id: String,
    pub message_id: Uuid,
}

pub fn file_key(id: &Uuid) -> String {
    format!("files/{id}")
}

pub fn thumb_key(id: &Uuid) -> String {
    format!("thumbs/{id}")
}

pub fn slot_key(id: &Uuid) -> String {
    format!("uploads/{id}.json")
}

fn claim_key(id: &Uuid) -> String {
    format!("claims/{id}.json")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(e.to_string())
    }
}

pub async fn save_slot(blobs: &Blobs, id: &Uuid, slot: &Slot) -> Result<(), ApiError> {
    let json = serde_json::to_vec(slot).map_err(|e| ApiError::unavailable(e.to_string()))?;
    blobs.put(&slot_key(id), Bytes::from(json)).await?;
    Ok(())
}

pub async fn slot(blobs: &Blobs, id: &Uuid) -> Result<Option<Slot>, ApiError> {
    read_json(blobs, &slot_key(id)).await
}

pub async fn claim_of(blobs: &Blobs, id: &Uuid) -> Result<Option<Claim>, ApiError> {
    read_json(blobs, &claim_key(id)).await
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    blobs: &Blobs,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match blobs.get(key).await? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ApiError::unavailable(format!("{key} is unreadable: {e}"))),
    }
}

/// The id of an attachment, from a client (a UUID); a malformed one is refused like a
/// missing one.
pub fn parse_id(id: &str) -> Option<Uuid> {
    Uuid::parse_str(id).ok()
}

/// Takes the uploads a message names for it: each must be a slot the sender was given
/// for this conversation, uploaded whole, and not sent with another message (the same
/// message sent again keeps its claims). Answers the references the log carries. On a
/// refusal, the claims this call made are given back.
pub async fn claim(
    blobs: &Blobs,
    sender: &str,
    conversation: &str,
    message_id: Uuid,
    attach: &[Attach],
) -> Result<Vec<AttachmentRef>, ApiError> {
    if attach.len() > MAX_PER_MESSAGE {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_PER_MESSAGE} attachments per message"
        )));
    }
    let mut refs = Vec::with_capacity(attach.len());
    let mut ids = Vec::with_capacity(attach.len());
    // Every file's checks at once (each is a few requests to the store).
    let checks = attach
        .iter()
        .map(|a| check_one(blobs, sender, conversation, a));
    for (a, checked) in attach.iter().zip(futures::future::join_all(checks).await) {
        let checked = checked?;
        if ids.contains(&checked.0) {
            return Err(ApiError::bad_request(format!(
                "attachment {} is named twice",
                a.attachment_id
            )));
        }
        ids.push(checked.0);
        refs.push(checked.1);
    }
    let mine = Claim {
        conversation_id: conversation.to_string(),
        message_id,
    };
    let json = Bytes::from(serde_json::to_vec(&mine).unwrap_or_default());
    let mut made = Vec::new();
    for id in &ids {
        let taken = match blobs.create(&claim_key(id), json.clone()).await {
            Ok(true) => {
                made.push(*id);
                Ok(())
            }
            // Already claimed: by this very message (a retry), or by another.
            Ok(false) => match claim_of(blobs, id).await {
                Ok(Some(c)) if c == mine => Ok(()),
                Ok(_) => Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!("attachment {id} was already sent with another message"),
                )),
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        if let Err(e) = taken {
            for id in made {
                let _ = blobs.delete(&claim_key(&id)).await;
            }
            return Err(e);
        }
    }
    Ok(refs)
}

/// One attachment of a send, checked against its slot and the stored bytes.
async fn check_one(
    blobs: &Blobs,
    sender: &str,
    conversation: &str,
    a: &Attach,
) -> Result<(Uuid, AttachmentRef), ApiError> {
    let name = a.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(ApiError::bad_request(format!(
            "attachment name must be 1 to {MAX_NAME_CHARS} characters, without '/', '\\' or control characters"
        )));
    }
    if a.width.is_some_and(|w| w <= 0) || a.height.is_some_and(|h| h <= 0) {
        return Err(ApiError::bad_request(
            "attachment width and height are positive",
        ));
    }
    // A foreign id (another user's, another conversation's) is refused like a missing
    // one: nobody learns what others uploaded.
    let unknown = || {
        ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no upload {} of yours for this conversation",
                a.attachment_id
            ),
        )
    };
    let id = parse_id(&a.attachment_id).ok_or_else(unknown)?;
    // The slot and the stored length, asked at once.
    let key = file_key(&id);
    let (slot, stored) = futures::join!(slot(blobs, &id), blobs.size(&key));
    let slot = slot?.ok_or_else(unknown)?;
    if slot.uploader != sender || slot.conversation_id != conversation {
        return Err(unknown());
    }
    match stored? {
        Some(n) if n == slot.size => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "attachment {id} holds {n} bytes, not the {} its slot was given",
                slot.size
            )))
        }
        None => {
            return Err(ApiError::bad_request(format!(
                "attachment {id} has not been uploaded yet"
            )))
        }
    }
    Ok((
        id,
        AttachmentRef {
            attachment_id: id.to_string(),
            name: name.to_string(),
            content_type: slot.content_type,
            size: slot.size as i64,
            width: a.width,
            height: a.height,
        },
    ))
}

/// Whether `slot`'s upload window has passed at `now_ms`.
pub fn expired(slot: &Slot, now_ms: i64) -> bool {
    now_ms > slot.upload_by
}
