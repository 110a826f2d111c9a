//! What a client holds of each conversation: messages by seq, each message id once.
//!
//! A message is *linked* when its predecessor is known and held: its `prev_seq` is
//! null without `prev_unknown` (the conversation's first message), or names a seq this
//! client holds. The cursor of a conversation, sent in a sync, is the last seq of the
//! linked run from its start: a message held after a gap never moves the cursor past
//! the gap.
//!
//! A live copy's `prev_seq` comes from a router, which may not know it (`prev_unknown`)
//! or, rarely, name a repeated send that history does not keep. History is the
//! authority: a gap is filled by fetching history up to *and including* the message
//! that revealed it, and a copy from history or sync replaces the `prev_seq` of the copy
//! held. So no `prev_seq` can hold a cursor back for good.

use std::collections::{BTreeMap, HashMap, HashSet};

use parley_schemas::frames::{MessageView, ServerFrame};
use uuid::Uuid;

#[derive(Default, Debug)]
pub struct Conversation {
    pub messages: BTreeMap<i64, MessageView>,
    ids: HashSet<Uuid>,
    /// Frames that carried a message already held (overlap, redelivery): dropped.
    pub duplicates: usize,
}

#[derive(Default, Debug)]
pub struct Store {
    pub conversations: HashMap<String, Conversation>,
    /// The `client_msg_id`s this client has sent and not had a `sent` for yet: sending
    /// one again is a retry, and is marked so (`"retry": true`) for the gateway's
    /// careful path.
    pub attempted: HashSet<String>,
}

/// Where a copy of a message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Routed live (`message` frames): `prev_seq` is the router's.
    Live,
    /// The sender's `sent` reply: `prev_seq` is history's, or the router's when the
    /// gateway confirmed the send by its routed copy.
    Sent,
    /// `history` and `sync_batch` pages: `prev_seq` is history's.
    History,
}

/// What [`Store::insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
    /// Its predecessor is unknown or not held: fetch history with
    /// `after < seq < before` (`before` is one past the message itself, so that its
    /// history copy, with history's `prev_seq`, comes too).
    Gap {
        after: Option<i64>,
        before: i64,
    },
}

impl Store {
    /// Takes in a copy of a message; says whether a gap must be filled.
    pub fn insert(&mut self, m: MessageView, source: Source) -> Inserted {
        let conv = self
            .conversations
            .entry(m.conversation_id.clone())
            .or_default();
        if !conv.ids.insert(m.message_id) {
            conv.duplicates += 1;
            if source != Source::Live {
                if let Some(held) = conv.messages.get_mut(&m.seq) {
                    held.prev_seq = m.prev_seq;
                    held.prev_unknown = m.prev_unknown;
                }
            }
            if source == Source::History {
                // History shows the message as it is now: edits, deletion, reactions.
                if let Some(held) = conv
                    .messages
                    .get_mut(&m.seq)
                    .filter(|held| m.changed_seq >= held.changed_seq)
                {
                    held.body = m.body;
                    held.edited = m.edited;
                    held.edited_at = m.edited_at;
                    held.deleted = m.deleted;
                    held.reactions = m.reactions;
                    held.my_reactions = m.my_reactions;
                    held.changed_seq = m.changed_seq;
                    if m.reply_to.is_some() {
                        held.reply_to = m.reply_to;
                    }
                }
            }
            return Inserted::Duplicate;
        }
        let seq = m.seq;
        let linked = conv.links(&m);
        conv.messages.insert(seq, m);
        if linked || source == Source::History {
            // History pages are filled by the caller page after page.
            return Inserted::New;
        }
        // Fill from the newest message held before it (or from the start).
        let after = conv.messages.range(..seq).next_back().map(|(s, _)| *s);
        Inserted::Gap {
            after,
            before: seq + 1,
        }
    }

    /// Applies a change to a message this client holds (`message_edited`,
    /// `message_deleted`, `reaction`; `me` is this client's user), by the rules of
    /// `parley_schemas::rules::changes` as far as a client can tell them: an edit by
    /// someone other than the author, or any change to a deleted message, is ignored.
    /// A change to a message not held is ignored too: history brings it as it is now.
    /// True if the held copy changed.
    pub fn apply_change(&mut self, change: &ServerFrame, me: &str) -> bool {
        let (conversation, target, at) = match change {
            ServerFrame::MessageEdited {
                conversation_id,
                target_seq,
                seq,
                ..
            }
            | ServerFrame::MessageDeleted {
                conversation_id,
                target_seq,
                seq,
                ..
            }
            | ServerFrame::Reaction {
                conversation_id,
                target_seq,
                seq,
                ..
            } => (conversation_id, *target_seq, *seq),
            _ => return false,
        };
        let Some(held) = self
            .conversations
            .get_mut(conversation)
            .and_then(|c| c.messages.get_mut(&target))
        else {
            return false;
        };
        // Deleted, or this copy already reflects the change (it came from history or a
        // sync page read after it).
        if held.deleted || held.changed_seq.is_some_and(|c| c >= at) {
            return false;
        }
        match change {
            ServerFrame::MessageEdited {
                sender_id,
                body,
                edited_at,
                ..
            } => {
                if *sender_id != held.sender_id {
                    return false;
                }
                held.body = body.clone();
                held.edited = true;
                held.edited_at = Some(*edited_at);
            }
            ServerFrame::MessageDeleted { .. } => {
                held.deleted = true;
                held.body.clear();
                held.edited = false;
                held.edited_at = None;
                held.reactions.clear();
                held.my_reactions.clear();
            }
            ServerFrame::Reaction {
                user_id, emoji, on, ..
            } => {
                let mine = user_id == me;
                if mine && held.my_reactions.contains(emoji) == *on {
                    return false;
                }
                let n = held.reactions.entry(emoji.clone()).or_insert(0);
                if *on {
                    *n += 1;
                } else {
                    *n = n.saturating_sub(1);
                }
                if *n == 0 {
                    held.reactions.remove(emoji);
                }
                if mine {
                    if *on {
                        held.my_reactions.push(emoji.clone());
                    } else {
                        held.my_reactions.retain(|e| e != emoji);
                    }
                }
            }
            _ => return false,
        }
        held.changed_seq = Some(at);
        true
    }

    /// The conversation's messages in seq order.
    pub fn messages(&self, conversation: &str) -> Vec<MessageView> {
        self.conversations
            .get(conversation)
            .map(|c| c.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The last seq of each conversation's linked run from its start: the cursors of a
    /// sync. A conversation with no linked start has none (sync it from the beginning).
    pub fn cursors(&self) -> BTreeMap<String, i64> {
        self.conversations
            .iter()
            .filter_map(|(k, c)| c.cursor().map(|s| (k.clone(), s)))
            .collect()
    }

    /// Takes in everything `other` holds (e.g. what an earlier session held).
    pub fn absorb(&mut self, other: Store) {
        self.attempted.extend(other.attempted);
        for (_, conv) in other.conversations {
            for (_, m) in conv.messages {
                self.insert(m, Source::Sent);
            }
        }
    }
}

impl Conversation {
    /// Whether `m`'s predecessor is known and held.
    fn links(&self, m: &MessageView) -> bool {
        !m.prev_unknown && m.prev_seq.is_none_or(|p| self.messages.contains_key(&p))
    }

    /// See [`Store::cursors`].
    pub fn cursor(&self) -> Option<i64> {
        let mut cursor = None;
        for (seq, m) in &self.messages {
            if !self.links(m) {
                break;
            }
            cursor = Some(*seq);
        }
        cursor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seq: i64, prev: Option<i64>) -> MessageView {
        MessageView {
            conversation_id: "c".into(),
            seq,
            prev_seq: prev,
            prev_unknown: false,
            message_id: Uuid::from_u128(seq as u128),
            sender_id: "a".into(),
            body: "b".into(),
            ts: 0,
            ..Default::default()
        }
    }

    fn unknown(seq: i64) -> MessageView {
        MessageView {
            prev_unknown: true,
            ..m(seq, None)
        }
    }

    #[test]
    fn edits_deletions_and_reactions_change_the_held_copy_by_the_rules() {
        let mut s = Store::default();
        s.insert(m(1, None), Source::Live); // by "a"
        let edit = |by: &str, body: &str| ServerFrame::MessageEdited {
            conversation_id: "c".into(),
            seq: 5,
            target_seq: 1,
            sender_id: by.into(),
            body: body.into(),
            edited_at: 9,
        };
        assert!(!s.apply_change(&edit("z", "not theirs"), "me"));
        assert!(s.apply_change(&edit("a", "fixed"), "me"));
        let held = &s.messages("c")[0];
        assert_eq!(
            (held.body.as_str(), held.edited, held.edited_at),
            ("fixed", true, Some(9))
        );
        let react = |seq: i64, user: &str, on: bool| ServerFrame::Reaction {
            conversation_id: "c".into(),
            seq,
            target_seq: 1,
            user_id: user.into(),
            emoji: "👍".into(),
            on,
        };
        assert!(s.apply_change(&react(6, "me", true), "me"));
        assert!(
            !s.apply_change(&react(6, "me", true), "me"),
            "the same change again"
        );
        assert!(
            !s.apply_change(&react(7, "me", true), "me"),
            "mine, already set"
        );
        assert!(s.apply_change(&react(8, "b", true), "me"));
        let held = &s.messages("c")[0];
        assert_eq!(held.reactions.get("👍"), Some(&2));
        assert_eq!(held.my_reactions, ["👍"]);
        assert!(s.apply_change(&react(9, "me", false), "me"));
        assert_eq!(s.messages("c")[0].reactions.get("👍"), Some(&1));
        let delete = ServerFrame::MessageDeleted {
            conversation_id: "c".into(),
            seq: 10,
            target_seq: 1,
            actor: "a".into(),
        };
        assert!(s.apply_change(&delete, "me"));
        let held = &s.messages("c")[0];
        assert!(held.deleted && held.body.is_empty() && held.reactions.is_empty());
        assert!(!s.apply_change(&edit("a", "again"), "me"), "deleted");
        // A change to a message not held waits for history.
        let other = ServerFrame::MessageDeleted {
            conversation_id: "c".into(),
            seq: 8,
            target_seq: 4,
            actor: "a".into(),
        };
        assert!(!s.apply_change(&other, "me"));
        // History is the authority on a held message's state, unless its copy is older
        // than the changes already applied.
        let mut older = m(1, None);
        older.body = "an older copy".into();
        older.changed_seq = Some(9);
        s.insert(older, Source::History);
        assert!(
            s.messages("c")[0].deleted,
            "a copy from before the deletion"
        );
        let mut now = m(1, None);
        now.body = "from history".into();
        now.edited = true;
        now.changed_seq = Some(12);
        s.insert(now, Source::History);
        let held = &s.messages("c")[0];
        assert_eq!((held.body.as_str(), held.deleted), ("from history", false));
    }

    #[test]
    fn orders_dedups_and_spots_gaps() {
        let mut s = Store::default();
        assert_eq!(s.insert(m(3, None), Source::Live), Inserted::New);
        assert_eq!(s.insert(m(7, Some(3)), Source::Live), Inserted::New);
        assert_eq!(s.insert(m(7, Some(3)), Source::Live), Inserted::Duplicate);
        assert_eq!(
            s.insert(m(12, Some(9)), Source::Live),
            Inserted::Gap {
                after: Some(7),
                before: 13
            }
        );
        assert_eq!(s.insert(m(9, Some(7)), Source::History), Inserted::New);
        let seqs: Vec<i64> = s.messages("c").iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![3, 7, 9, 12]);
        assert_eq!(s.cursors()["c"], 12);
        assert_eq!(s.conversations["c"].duplicates, 1);
    }

    #[test]
    fn cursors_stop_before_gaps() {
        let mut s = Store::default();
        s.insert(m(3, None), Source::Live);
        s.insert(m(7, Some(3)), Source::Live);
        s.insert(m(12, Some(9)), Source::Live);
        assert_eq!(s.cursors()["c"], 7, "9 is missing: resume after 7");
        s.insert(m(9, Some(7)), Source::Sent);
        assert_eq!(s.cursors()["c"], 12);

        let mut late = Store::default();
        late.insert(m(40, Some(30)), Source::Live);
        assert!(late.cursors().is_empty(), "nothing linked from the start");
    }

    #[test]
    fn an_unknown_predecessor_is_a_gap_not_a_link() {
        let mut s = Store::default();
        // The first message was never received; the router does not know the second's
        // predecessor. The cursor must not move past the hole.
        assert_eq!(
            s.insert(unknown(8), Source::Live),
            Inserted::Gap {
                after: None,
                before: 9
            }
        );
        assert!(s.cursors().is_empty());
        // History fills the hole and brings its own copy of 8.
        s.insert(m(5, None), Source::History);
        s.insert(m(8, Some(5)), Source::History);
        assert_eq!(s.cursors()["c"], 8);
    }

    #[test]
    fn history_replaces_a_prev_seq_history_does_not_keep() {
        let mut s = Store::default();
        s.insert(m(3, None), Source::Live);
        // The router named a repeated send (seq 5) that history drops.
        assert!(matches!(
            s.insert(m(6, Some(5)), Source::Live),
            Inserted::Gap { .. }
        ));
        assert_eq!(s.cursors()["c"], 3);
        // A live copy does not overrule; history's does.
        s.insert(m(6, Some(5)), Source::Live);
        assert_eq!(s.cursors()["c"], 3);
        s.insert(m(6, Some(3)), Source::History);
        assert_eq!(s.cursors()["c"], 6);
    }
}
