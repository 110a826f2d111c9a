//! The rules of the changes made to a message after it was posted: an edit, a deletion
//! for everyone, a reaction. Each one names its target by seq; whether it is kept
//! depends on that message, so only a consumer that keeps messages (the projector's
//! views, a client's store, the gateway's pre-check through the views) can apply them.
//! To a consumer that keeps none, [`super::LogState::message`] is `None` and every
//! change is refused as [`Refusal::NotFound`].
//!
//! - `MessageEdited` is kept if its actor is a member and wrote the target, the target
//!   is a message of the same conversation that is not deleted, and the edit's
//!   `occurred_at` is at most [`edit_window_ms`] after the target's.
//! - `MessageDeleted` is kept if the target is a message of the conversation that is
//!   not deleted yet, and its actor is a member who wrote it or, in a group, who
//!   outranks its author ([`super::rank`]: the creator deletes anyone's, an admin the
//!   messages of members who are not admins, and of people no longer members).
//! - `ReactionSet` is kept if its actor is a member, the target is a message of the
//!   conversation that is not deleted, the emoji is 1 to [`MAX_EMOJI_BYTES`] bytes with
//!   no whitespace or control character, and it changes something: `on` for an emoji
//!   the member has not set on that message (and, for an emoji nobody has set yet, the
//!   message has fewer than [`MAX_EMOJI_PER_MESSAGE`] distinct ones), or not `on` for
//!   one they have.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{rank, LogState, Rank};
use crate::records::{MessageDeleted, MessageEdited, ReactionSet};

/// The default of [`edit_window_ms`]: 48 hours.
pub const DEFAULT_EDIT_WINDOW_SECS: i64 = 48 * 3600;
/// The environment variable that sets the edit window in seconds. Like the group cap,
/// it is a rule of the log: every role of a deployment must see the same value.
pub const EDIT_WINDOW_ENV: &str = "PARLEY_EDIT_WINDOW_SECS";
/// The most distinct emoji one message carries.
pub const MAX_EMOJI_PER_MESSAGE: usize = 20;
/// The longest emoji, in bytes of UTF-8.
pub const MAX_EMOJI_BYTES: usize = 32;

/// How long after a message was posted its author may edit it, in ms:
/// `PARLEY_EDIT_WINDOW_SECS`, else [`DEFAULT_EDIT_WINDOW_SECS`]. Read once per process.
pub fn edit_window_ms() -> i64 {
    static WINDOW: OnceLock<i64> = OnceLock::new();
    *WINDOW.get_or_init(|| {
        std::env::var(EDIT_WINDOW_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|s| *s >= 0)
            .unwrap_or(DEFAULT_EDIT_WINDOW_SECS)
            .saturating_mul(1000)
    })
}

/// What a consumer that keeps messages knows of one, as of a log position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFacts {
    pub sender: String,
    /// Its record's `occurred_at` (ms).
    pub posted_at: i64,
    pub deleted: bool,
    /// Emoji → how many members have it set (only counts above zero).
    pub reactions: BTreeMap<String, u64>,
}

/// A change to a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Edit(&'a MessageEdited),
    Delete(&'a MessageDeleted),
    React(&'a ReactionSet),
}

impl Change<'_> {
    pub fn conversation(&self) -> &str {
        match self {
            Change::Edit(e) => &e.conversation_id,
            Change::Delete(d) => &d.conversation_id,
            Change::React(r) => &r.conversation_id,
        }
    }

    pub fn target(&self) -> i64 {
        match self {
            Change::Edit(e) => e.target_seq,
            Change::Delete(d) => d.target_seq,
            Change::React(r) => r.target_seq,
        }
    }

    pub fn actor(&self) -> &str {
        match self {
            Change::Edit(e) => &e.meta.actor,
            Change::Delete(d) => &d.meta.actor,
            Change::React(r) => &r.meta.actor,
        }
    }
}

/// Why a change is not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The actor is not a member of the conversation.
    NotMember,
    /// No message of this conversation has that seq (or this consumer keeps none).
    NotFound,
    /// Only its author edits a message.
    NotAuthor,
    /// Neither its author nor a member who outranks them.
    NotAllowed,
    /// The message was deleted.
    Deleted,
    /// The edit window has passed.
    TooLate,
    /// An emoji that is empty, too long, or holds whitespace or control characters.
    BadEmoji,
    /// The message has [`MAX_EMOJI_PER_MESSAGE`] distinct emoji already.
    TooManyEmoji,
    /// A reaction set that was set, or taken back that was not.
    NoChange,
}

impl Refusal {
    /// A sentence for people.
    pub fn message(self) -> String {
        match self {
            Refusal::NotMember => "you are not a member of this conversation".into(),
            Refusal::NotFound => "no message of this conversation has that seq".into(),
            Refusal::NotAuthor => "only its author edits a message".into(),
            Refusal::NotAllowed => {
                "only its author, or in a group the creator or an admin who outranks the author, deletes a message".into()
            }
            Refusal::Deleted => "the message was deleted".into(),
            Refusal::TooLate => format!(
                "a message is editable for {} s after it was sent",
                edit_window_ms() / 1000
            ),
            Refusal::BadEmoji => format!(
                "an emoji is 1 to {MAX_EMOJI_BYTES} bytes, without whitespace or control characters"
            ),
            Refusal::TooManyEmoji => {
                format!("a message carries at most {MAX_EMOJI_PER_MESSAGE} distinct reactions")
            }
            Refusal::NoChange => "that reaction is already as asked".into(),
        }
    }
}

/// Whether `emoji` is acceptable as a reaction.
pub fn valid_emoji(emoji: &str) -> bool {
    !emoji.is_empty()
        && emoji.len() <= MAX_EMOJI_BYTES
        && !emoji.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `change` is kept at its position, given what `state` knows there.
pub fn check<S: LogState>(state: &S, change: Change<'_>) -> Result<Result<(), Refusal>, S::Error> {
    check_within(state, change, edit_window_ms())
}

/// [`check`] with the edit window given (ms).
pub fn check_within<S: LogState>(
    state: &S,
    change: Change<'_>,
    window_ms: i64,
) -> Result<Result<(), Refusal>, S::Error> {
    let conversation = change.conversation();
    let actor = change.actor();
    if let Change::React(r) = change {
        if !valid_emoji(&r.emoji) {
            return Ok(Err(Refusal::BadEmoji));
        }
    }
    if !state.is_member(conversation, actor)? {
        return Ok(Err(Refusal::NotMember));
    }
    let Some(target) = state.message(conversation, change.target())? else {
        return Ok(Err(Refusal::NotFound));
    };
    if target.deleted {
        return Ok(Err(Refusal::Deleted));
    }
    Ok(match change {
        Change::Edit(e) => {
            if target.sender != actor {
                Err(Refusal::NotAuthor)
            } else if e.meta.occurred_at.saturating_sub(target.posted_at) > window_ms {
                Err(Refusal::TooLate)
            } else {
                Ok(())
            }
        }
        Change::Delete(_) => {
            let allowed = target.sender == actor || {
                let by = rank(state, conversation, actor)?;
                by >= Rank::Admin && by > rank(state, conversation, &target.sender)?
            };
            if allowed {
                Ok(())
            } else {
                Err(Refusal::NotAllowed)
            }
        }
        Change::React(r) => {
            let set = state.reacted(conversation, r.target_seq, actor, &r.emoji)?;
            if set == r.on {
                Err(Refusal::NoChange)
            } else if r.on
                && !target.reactions.contains_key(&r.emoji)
                && target.reactions.len() >= MAX_EMOJI_PER_MESSAGE
            {
                Err(Refusal::TooManyEmoji)
            } else {
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::convert::Infallible;

    use uuid::Uuid;

    use super::*;
    use crate::records::{AnyRecord, Meta};
    use crate::rules::{effect, Effect};
    use crate::ConversationKind;

    const HOUR: i64 = 3_600_000;

    /// A group "g" (creator "c", admin "ad", members "m1", "m2") and a direct
    /// conversation "d" of "m1" and "m2". Messages: g#10 by m1, g#11 by ad, g#12 by
    /// "gone" (no longer a member), d#20 by m1; all posted at t=1000.
    struct Mem {
        members: HashSet<(String, String)>,
        admins: HashSet<(String, String)>,
        messages: HashMap<(String, i64), MessageFacts>,
        reacted: HashSet<(String, i64, String, String)>,
    }

    impl LogState for Mem {
        type Error = Infallible;
        fn kind(&self, c: &str) -> Result<Option<ConversationKind>, Infallible> {
            Ok(match c {
                "g" => Some(ConversationKind::Group),
                "d" => Some(ConversationKind::Direct),
                _ => None,
            })
        }
        fn is_member(&self, c: &str, u: &str) -> Result<bool, Infallible> {
            Ok(self.members.contains(&(c.into(), u.into())))
        }
        fn member_count(&self, c: &str) -> Result<usize, Infallible> {
            Ok(self.members.iter().filter(|(x, _)| x == c).count())
        }
        fn seen_message(&self, _: &str, _: &Uuid) -> Result<bool, Infallible> {
            Ok(false)
        }
        fn creator(&self, c: &str) -> Result<Option<String>, Infallible> {
            Ok((c == "g").then(|| "c".to_string()))
        }
        fn is_admin(&self, c: &str, u: &str) -> Result<bool, Infallible> {
            Ok(self.admins.contains(&(c.into(), u.into())))
        }
        fn message(&self, c: &str, seq: i64) -> Result<Option<MessageFacts>, Infallible> {
            Ok(self.messages.get(&(c.to_string(), seq)).cloned())
        }
        fn reacted(&self, c: &str, seq: i64, u: &str, e: &str) -> Result<bool, Infallible> {
            Ok(self.reacted.contains(&(c.into(), seq, u.into(), e.into())))
        }
    }

    fn state() -> Mem {
        let mut s = Mem {
            members: HashSet::new(),
            admins: HashSet::new(),
            messages: HashMap::new(),
            reacted: HashSet::new(),
        };
        for m in ["c", "ad", "m1", "m2"] {
            s.members.insert(("g".into(), m.into()));
        }
        s.admins.insert(("g".into(), "ad".into()));
        s.members.insert(("d".into(), "m1".into()));
        s.members.insert(("d".into(), "m2".into()));
        for (c, seq, by) in [
            ("g", 10, "m1"),
            ("g", 11, "ad"),
            ("g", 12, "gone"),
            ("d", 20, "m1"),
        ] {
            s.messages.insert(
                (c.into(), seq),
                MessageFacts {
                    sender: by.into(),
                    posted_at: 1000,
                    ..Default::default()
                },
            );
        }
        s
    }

    fn meta(actor: &str, at: i64) -> Meta {
        Meta {
            occurred_at: at,
            ..Meta::new(actor)
        }
    }

    fn edit(actor: &str, c: &str, seq: i64, at: i64) -> MessageEdited {
        MessageEdited {
            meta: meta(actor, at),
            conversation_id: c.into(),
            target_seq: seq,
            body: "fixed".into(),
            sealed: None,
        }
    }

    fn delete(actor: &str, c: &str, seq: i64) -> MessageDeleted {
        MessageDeleted {
            meta: meta(actor, 2000),
            conversation_id: c.into(),
            target_seq: seq,
        }
    }

    fn react(actor: &str, seq: i64, emoji: &str, on: bool) -> ReactionSet {
        ReactionSet {
            meta: meta(actor, 2000),
            conversation_id: "g".into(),
            target_seq: seq,
            emoji: emoji.into(),
            on,
        }
    }

    fn verdict(s: &Mem, change: Change<'_>) -> Result<(), Refusal> {
        check_within(s, change, 48 * HOUR).unwrap()
    }

    #[test]
    fn only_the_author_edits_within_the_window() {
        let s = state();
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 10, 2000))),
            Ok(())
        );
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 10, 1000 + 48 * HOUR))),
            Ok(()),
            "the window's last millisecond"
        );
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 10, 1001 + 48 * HOUR))),
            Err(Refusal::TooLate)
        );
        // Not even the creator edits someone else's message.
        assert_eq!(
            verdict(&s, Change::Edit(&edit("c", "g", 10, 2000))),
            Err(Refusal::NotAuthor)
        );
        assert_eq!(
            verdict(&s, Change::Edit(&edit("x", "g", 10, 2000))),
            Err(Refusal::NotMember)
        );
        // A seq of another conversation is no message of this one.
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 20, 2000))),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 99, 2000))),
            Err(Refusal::NotFound)
        );
    }

    #[test]
    fn an_author_who_left_edits_nothing() {
        let mut s = state();
        s.members.remove(&("g".to_string(), "m1".to_string()));
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 10, 2000))),
            Err(Refusal::NotMember)
        );
        assert_eq!(
            verdict(&s, Change::Delete(&delete("m1", "g", 10))),
            Err(Refusal::NotMember)
        );
    }

    #[test]
    fn authors_delete_theirs_and_the_rank_rule_decides_for_others() {
        let s = state();
        assert_eq!(verdict(&s, Change::Delete(&delete("m1", "g", 10))), Ok(()));
        // The creator deletes anyone's; an admin a member's and a former member's...
        assert_eq!(verdict(&s, Change::Delete(&delete("c", "g", 11))), Ok(()));
        assert_eq!(verdict(&s, Change::Delete(&delete("ad", "g", 10))), Ok(()));
        assert_eq!(verdict(&s, Change::Delete(&delete("ad", "g", 12))), Ok(()));
        // ...but not another admin's or the creator's, and a member no one else's.
        let mut s2 = state();
        s2.admins.insert(("g".into(), "m2".into()));
        assert_eq!(
            verdict(&s2, Change::Delete(&delete("m2", "g", 11))),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(
            verdict(&s, Change::Delete(&delete("m2", "g", 10))),
            Err(Refusal::NotAllowed)
        );
        // A direct conversation has no ranks: each deletes only their own.
        assert_eq!(
            verdict(&s, Change::Delete(&delete("m2", "d", 20))),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(verdict(&s, Change::Delete(&delete("m1", "d", 20))), Ok(()));
    }

    #[test]
    fn a_deleted_message_takes_no_more_changes() {
        let mut s = state();
        s.messages.get_mut(&("g".to_string(), 10)).unwrap().deleted = true;
        assert_eq!(
            verdict(&s, Change::Edit(&edit("m1", "g", 10, 2000))),
            Err(Refusal::Deleted)
        );
        assert_eq!(
            verdict(&s, Change::Delete(&delete("m1", "g", 10))),
            Err(Refusal::Deleted)
        );
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "👍", true))),
            Err(Refusal::Deleted)
        );
    }

    #[test]
    fn a_reaction_is_one_per_member_message_and_emoji() {
        let mut s = state();
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "👍", true))),
            Ok(())
        );
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "👍", false))),
            Err(Refusal::NoChange),
            "taking back what is not set"
        );
        s.reacted.insert(("g".into(), 10, "m2".into(), "👍".into()));
        s.messages
            .get_mut(&("g".to_string(), 10))
            .unwrap()
            .reactions
            .insert("👍".into(), 1);
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "👍", true))),
            Err(Refusal::NoChange)
        );
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "👍", false))),
            Ok(())
        );
        assert_eq!(
            verdict(&s, Change::React(&react("m1", 10, "👍", true))),
            Ok(())
        );
        assert_eq!(
            verdict(&s, Change::React(&react("x", 10, "👍", true))),
            Err(Refusal::NotMember)
        );
    }

    #[test]
    fn a_message_carries_at_most_twenty_distinct_emoji_of_sound_shape() {
        let mut s = state();
        let facts = s.messages.get_mut(&("g".to_string(), 10)).unwrap();
        for i in 0..MAX_EMOJI_PER_MESSAGE {
            facts.reactions.insert(format!("e{i}"), 1);
        }
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "new", true))),
            Err(Refusal::TooManyEmoji)
        );
        // One already there may still be set by another member.
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 10, "e3", true))),
            Ok(())
        );
        for bad in ["", "a b", "tab\t", &"x".repeat(MAX_EMOJI_BYTES + 1)] {
            assert_eq!(
                verdict(&s, Change::React(&react("m2", 11, bad, true))),
                Err(Refusal::BadEmoji),
                "{bad:?}"
            );
        }
        let family = "👨‍👩‍👧‍👦"; // 25 bytes, joined by zero-width joiners
        assert!(valid_emoji(family));
        assert_eq!(
            verdict(&s, Change::React(&react("m2", 11, family, true))),
            Ok(())
        );
    }

    #[test]
    fn effect_keeps_what_the_check_allows_and_nothing_else() {
        let s = state();
        let ok: AnyRecord = edit("m1", "g", 10, 2000).into();
        assert!(matches!(effect(&s, &ok).unwrap(), Effect::Edit(_)));
        let refused: AnyRecord = edit("m2", "g", 10, 2000).into();
        assert_eq!(effect(&s, &refused).unwrap(), Effect::Nothing);
        let del: AnyRecord = delete("c", "g", 10).into();
        assert!(matches!(effect(&s, &del).unwrap(), Effect::Delete(_)));
        let r: AnyRecord = react("m2", 10, "👍", true).into();
        assert!(matches!(effect(&s, &r).unwrap(), Effect::React(_)));
        // A consumer that keeps no messages refuses every change.
        struct Bare;
        impl LogState for Bare {
            type Error = Infallible;
            fn kind(&self, _: &str) -> Result<Option<ConversationKind>, Infallible> {
                Ok(Some(ConversationKind::Group))
            }
            fn is_member(&self, _: &str, _: &str) -> Result<bool, Infallible> {
                Ok(true)
            }
            fn member_count(&self, _: &str) -> Result<usize, Infallible> {
                Ok(2)
            }
            fn seen_message(&self, _: &str, _: &Uuid) -> Result<bool, Infallible> {
                Ok(false)
            }
            fn creator(&self, _: &str) -> Result<Option<String>, Infallible> {
                Ok(None)
            }
            fn is_admin(&self, _: &str, _: &str) -> Result<bool, Infallible> {
                Ok(false)
            }
        }
        assert_eq!(effect(&Bare, &ok).unwrap(), Effect::Nothing);
    }
}
