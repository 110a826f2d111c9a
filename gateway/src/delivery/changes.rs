//! Changing a message after it was posted, whatever the transport: an edit, a deletion
//! for everyone, a reaction. Each is checked against the rules the log applies
//! (`parley_schemas::rules::changes`) with the views' copy of the message, then
//! appended to `events` as its own record, and answered with its own seq once the
//! broker has it (`changed`). The log's rules decide again at its position: a change
//! that raced another (an edit and a deletion at once) is kept by neither the views
//! nor the clients if the one before it makes it void.
//!
//! The views must hold the target before it can be checked: the check waits until
//! they have applied the conversation's partition as far as the log held it
//! ([`read_your_log`]), so a message just sent can be changed at once.

use parley_projector::views::{ConversationView, HistoryQuery};
use parley_schemas::frames::{ErrorCode, MessageView, ServerFrame};
use parley_schemas::rules::changes::{self, Change, MessageFacts, Refusal};
use parley_schemas::rules::LogState;
use parley_schemas::{
    AnyRecord, ConversationKind, MessageDeleted, MessageEdited, Meta, ReactionSet,
};
use uuid::Uuid;

use crate::error::ApiError;
use crate::membership::{ensure_member, read_your_log};
use crate::service::Shared;

/// A change a client asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Edit { body: String },
    Delete,
    React { emoji: String, on: bool },
}

/// Checks and appends `user`'s change to the message at `target` of `conversation`;
/// the `changed` answer (without a request id).
pub async fn change(
    state: &Shared,
    user: &str,
    conversation: &str,
    target: i64,
    request: Request,
) -> Result<ServerFrame, ApiError> {
    if target < 0 {
        return Err(ApiError::bad_request("seq must be 0 or more"));
    }
    match &request {
        Request::Edit { body } => crate::send::validate_body(state, body)?,
        Request::React { emoji, .. } if !changes::valid_emoji(emoji) => {
            return Err(refused(Refusal::BadEmoji));
        }
        _ => {}
    }
    state.limits.check(crate::limits::Limit::Send, user)?;
    ensure_member(state, conversation, user).await?;
    if !read_your_log(state, conversation).await? {
        return Err(ApiError::unavailable(
            "the views are behind the log; try again in a moment",
        ));
    }
    let view = state
        .views
        .conversation(conversation)
        .await?
        .ok_or_else(|| ApiError::not_member(conversation))?;
    let message = held(state, user, conversation, target).await?;
    let known = Known {
        view: &view,
        message: message.as_ref(),
        user,
    };
    // Each record is checked as the change it is, then appended as a record of the log.
    let allowed = |change: Change<'_>| {
        let Ok(verdict) = changes::check(&known, change);
        verdict.map_err(refused)
    };
    let meta = Meta::new(user);
    let conversation_id = conversation.to_string();
    let record: AnyRecord = match request {
        Request::Edit { body } => {
            let mut e = MessageEdited {
                meta,
                conversation_id,
                target_seq: target,
                body,
                sealed: None,
            };
            allowed(Change::Edit(&e))?;
            // A sealed edit's key is in the log before the edit is.
            if let Some(sealer) = &state.sealer {
                let key = sealer.seal_edit(&mut e).await.map_err(|e| {
                    ApiError::unavailable(format!("the edit could not be sealed: {e}"))
                })?;
                sealer.append(&key).await?;
            }
            e.into()
        }
        Request::Delete => {
            let d = MessageDeleted {
                meta,
                conversation_id,
                target_seq: target,
            };
            allowed(Change::Delete(&d))?;
            d.into()
        }
        Request::React { emoji, on } => {
            let r = ReactionSet {
                meta,
                conversation_id,
                target_seq: target,
                emoji,
                on,
            };
            allowed(Change::React(&r))?;
            r.into()
        }
    };
    let position = state.append_event(conversation, &record).await?;
    Ok(ServerFrame::Changed {
        request_id: None,
        conversation_id: conversation.to_string(),
        seq: position.offset,
        target_seq: target,
    })
}

/// The message at `seq` of `conversation` as the views hold it (with `user`'s own
/// reactions), if it is one of its messages.
async fn held(
    state: &Shared,
    user: &str,
    conversation: &str,
    seq: i64,
) -> Result<Option<MessageView>, ApiError> {
    let q = HistoryQuery {
        after: Some(seq - 1),
        before: Some(seq.saturating_add(1)),
        limit: 1,
        viewer: Some(user.to_string()),
    };
    let page = state.views.history(conversation, q).await?;
    Ok(page.messages.into_iter().find(|m| m.seq == seq))
}

/// The API's error for a refusal of the rules.
fn refused(r: Refusal) -> ApiError {
    let code = match r {
        Refusal::NotMember => ErrorCode::NotMember,
        Refusal::NotFound => ErrorCode::NotFound,
        Refusal::NotAuthor | Refusal::NotAllowed | Refusal::TooLate => ErrorCode::Forbidden,
        Refusal::Deleted => ErrorCode::Gone,
        Refusal::BadEmoji => ErrorCode::BadRequest,
        Refusal::TooManyEmoji | Refusal::NoChange => ErrorCode::Conflict,
    };
    ApiError::new(code, r.message())
}

/// What the gateway knows when it checks: the conversation's view and the target as
/// the views hold it.
struct Known<'a> {
    view: &'a ConversationView,
    message: Option<&'a MessageView>,
    user: &'a str,
}

impl LogState for Known<'_> {
    type Error = std::convert::Infallible;

    fn kind(&self, c: &str) -> Result<Option<ConversationKind>, Self::Error> {
        self.view.kind(c)
    }

    fn is_member(&self, c: &str, user: &str) -> Result<bool, Self::Error> {
        self.view.is_member(c, user)
    }

    fn member_count(&self, c: &str) -> Result<usize, Self::Error> {
        self.view.member_count(c)
    }

    fn seen_message(&self, c: &str, id: &Uuid) -> Result<bool, Self::Error> {
        self.view.seen_message(c, id)
    }

    fn creator(&self, c: &str) -> Result<Option<String>, Self::Error> {
        self.view.creator(c)
    }

    fn is_admin(&self, c: &str, user: &str) -> Result<bool, Self::Error> {
        self.view.is_admin(c, user)
    }

    fn message(&self, c: &str, seq: i64) -> Result<Option<MessageFacts>, Self::Error> {
        Ok(self
            .message
            .filter(|m| c == self.view.conversation_id && m.seq == seq)
            .map(|m| MessageFacts {
                sender: m.sender_id.clone(),
                posted_at: m.ts,
                deleted: m.deleted,
                reactions: m.reactions.clone(),
            }))
    }

    fn reacted(&self, c: &str, seq: i64, user: &str, emoji: &str) -> Result<bool, Self::Error> {
        Ok(user == self.user
            && self
                .message
                .filter(|m| c == self.view.conversation_id && m.seq == seq)
                .is_some_and(|m| m.my_reactions.iter().any(|e| e == emoji)))
    }
}
