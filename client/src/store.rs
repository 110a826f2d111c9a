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
//!
//! Changes to messages (edits, deletions, reactions) have a chain of their own: every
//! live event names the conversation's change before it (`prev_change`, -1 for none).
//! Each conversation keeps a *change mark*: every change at or before it is held. An
//! event whose `prev_change` is above the mark reveals a missed change: history is
//! fetched from the mark up to and including the event (its page lists the changes of
//! that stretch), and a change that revealed a gap is applied from that page, in order,
//! not before. A sync's cursor is never past the mark, so a change missed while away
//! comes with the next sync too.

use std::collections::{BTreeMap, HashMap, HashSet};

use parley_schemas::frames::{MessageView, ServerFrame};
use uuid::Uuid;

#[derive(Default, Debug)]
pub struct Conversation {
    pub messages: BTreeMap<i64, MessageView>,
    ids: HashSet<Uuid>,
    /// Frames that carried a message already held (overlap, redelivery): dropped.
    pub duplicates: usize,
    /// The change mark: every change to a message at or before this seq is held (applied
    /// to the copy held, or to none when its message is not held). `None`: none known.
    pub changes_through: Option<i64>,
    /// Changes to messages not held (yet), by target seq: applied when the message comes
    /// (a gap's fill may bring it from views read before the change). Bounded.
    waiting: BTreeMap<i64, Vec<(ServerFrame, String)>>,
    /// Where each held message's text was last taken from (for reports of a difference).
    pub text_from: HashMap<i64, Source>,
}

/// Changes kept per conversation for messages not held, at most (the oldest go first).
const WAITING_MAX: usize = 1024;

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
    /// Routed live (`message` frames): `prev_seq` and `prev_change` are the router's.
    Live,
    /// The sender's `sent` reply: `prev_seq` is history's, or the router's when the
    /// gateway confirmed the send by its routed copy.
    Sent,
    /// `history` and `sync_batch` pages: `prev_seq` is history's.
    History,
    /// A long-poll page: `prev_seq` links like a live copy's, but the change chain is not
    /// checked (a poll lists every change of its stretch of the log).
    Polled,
}

/// What [`Store::insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
    /// Its predecessor (or the change before it) is unknown or not held: fetch history
    /// with `after < seq < before` (`before` is one past the event itself, so that its
    /// history copy, with history's `prev_seq`, comes too), then call
    /// [`Store::filled`].
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
                    conv.text_from.insert(m.seq, source);
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
        let chained = match source {
            Source::Live | Source::Sent => conv.chain(seq, m.prev_change),
            Source::History | Source::Polled => true,
        };
        conv.messages.insert(seq, m);
        conv.text_from.insert(seq, source);
        conv.apply_waiting(seq);
        if (linked && chained) || source == Source::History {
            // History pages are filled by the caller page after page.
            return Inserted::New;
        }
        // Fill from the newest message held before it (or from the start), and from the
        // change mark if the change chain broke.
        let mut after = match linked {
            true => Some(seq - 1),
            false => conv.messages.range(..seq).next_back().map(|(s, _)| *s),
        };
        if !chained {
            after = after.min(conv.changes_through);
        }
        Inserted::Gap {
            after,
            before: seq + 1,
        }
    }

    /// Takes in a live change frame (`message_edited`, `message_deleted`, `reaction`):
    /// applied if the change chain links it, else left to the fill of the gap it
    /// reveals (returned; its page brings this change in order).
    pub fn take_change(&mut self, change: &ServerFrame, me: &str) -> Option<Inserted> {
        let Change {
            conversation,
            seq,
            prev,
            ..
        } = Change::of(change)?;
        let conv = self.conversations.entry(conversation.clone()).or_default();
        let through = conv.changes_through;
        if conv.chain(seq, prev) {
            self.apply_change(change, me);
            return None;
        }
        Some(Inserted::Gap {
            after: through,
            before: seq + 1,
        })
    }

    /// A fill of `conversation` with `after < seq < before` is complete (every page of
    /// it taken in, its changes applied): the change mark moves to its end if the fill
    /// began at or below it.
    pub fn filled(&mut self, conversation: &str, after: Option<i64>, before: i64) {
        let conv = self
            .conversations
            .entry(conversation.to_string())
            .or_default();
        if after.is_none() || conv.changes_through >= after {
            conv.changes_through = conv.changes_through.max(Some(before - 1));
        }
    }

    /// A `sync_batch` page of `conversation` is taken in, messages and changes, up to
    /// `through`. A sync starts at this store's cursors, never past the change mark, and
    /// its pages follow one another: the mark moves to the page's end.
    pub fn synced_through(&mut self, conversation: &str, through: i64) {
        let conv = self
            .conversations
            .entry(conversation.to_string())
            .or_default();
        conv.changes_through = conv.changes_through.max(Some(through));
    }

    /// Applies a change to a message this client holds (`message_edited`,
    /// `message_deleted`, `reaction`; `me` is this client's user), by the rules of
    /// `parley_schemas::rules::changes` as far as a client can tell them: an edit by
    /// someone other than the author, or any change to a deleted message, is ignored.
    /// A change to a message not held is ignored too: history brings it as it is now.
    /// True if the held copy changed.
    pub fn apply_change(&mut self, change: &ServerFrame, me: &str) -> bool {
        let Some(Change {
            conversation,
            seq: at,
            target,
            ..
        }) = Change::of(change)
        else {
            return false;
        };
        let conv = self.conversations.entry(conversation.clone()).or_default();
        let Some(held) = conv.messages.get_mut(&target) else {
            conv.wait(target, change.clone(), me);
            return false;
        };
        apply_to(held, change, at, me)
    }

    /// The conversation's messages in seq order.
    pub fn messages(&self, conversation: &str) -> Vec<MessageView> {
        self.conversations
            .get(conversation)
            .map(|c| c.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The cursors of a sync: each conversation's last seq of its linked run from its
    /// start, but not past its change mark (so that a change missed comes with the
    /// sync). A conversation with no linked start, or no change mark, has none (sync it
    /// from the beginning).
    pub fn cursors(&self) -> BTreeMap<String, i64> {
        self.conversations
            .iter()
            .filter_map(|(k, c)| {
                let cursor = c.cursor()?.min(c.changes_through?);
                Some((k.clone(), cursor))
            })
            .collect()
    }

    /// Takes in everything `other` holds (e.g. what an earlier session held): its
    /// messages (a held copy is replaced by one that reflects a later change), and the
    /// lower of the two change marks (what both are known to hold).
    pub fn absorb(&mut self, other: Store) {
        self.attempted.extend(other.attempted);
        for (id, old) in other.conversations {
            let fresh = !self.conversations.contains_key(&id);
            for (_, m) in old.messages {
                self.insert(m, Source::History);
            }
            let conv = self.conversations.entry(id).or_default();
            conv.changes_through = match fresh {
                true => old.changes_through,
                false => conv.changes_through.min(old.changes_through),
            };
            for (target, changes) in old.waiting {
                for (change, me) in changes {
                    conv.wait(target, change, &me);
                }
            }
        }
    }
}

/// The seq of a change frame (0 for any other frame).
fn change_seq(change: &ServerFrame) -> i64 {
    Change::of(change).map_or(0, |c| c.seq)
}

/// What every change frame says: its conversation, its own seq, the message it changes
/// and the change before it.
struct Change<'a> {
    conversation: &'a String,
    seq: i64,
    target: i64,
    prev: Option<i64>,
}

impl<'a> Change<'a> {
    /// `None` for a frame that is not a change to a message.
    fn of(frame: &'a ServerFrame) -> Option<Change<'a>> {
        match frame {
            ServerFrame::MessageEdited {
                conversation_id,
                seq,
                target_seq,
                prev_change,
                ..
            }
            | ServerFrame::MessageDeleted {
                conversation_id,
                seq,
                target_seq,
                prev_change,
                ..
            }
            | ServerFrame::Reaction {
                conversation_id,
                seq,
                target_seq,
                prev_change,
                ..
            } => Some(Change {
                conversation: conversation_id,
                seq: *seq,
                target: *target_seq,
                prev: *prev_change,
            }),
            _ => None,
        }
    }
}

/// Applies `change` (at seq `at`) to the held copy `held`; true if it changed.
fn apply_to(held: &mut MessageView, change: &ServerFrame, at: i64, me: &str) -> bool {
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

impl Conversation {
    /// Whether an event at `seq` whose change before it is `prev_change` (-1: none;
    /// `None`: not known) links to the change mark; if so the mark moves to `seq`.
    fn chain(&mut self, seq: i64, prev_change: Option<i64>) -> bool {
        let linked = match prev_change {
            Some(p) if p < 0 => true,
            Some(p) => self.changes_through >= Some(p),
            None => false,
        };
        if linked {
            self.changes_through = self.changes_through.max(Some(seq));
        }
        linked
    }

    /// Keeps `change` (by `me`'s session) until its message at `target` is held.
    fn wait(&mut self, target: i64, change: ServerFrame, me: &str) {
        self.waiting
            .entry(target)
            .or_default()
            .push((change, me.to_string()));
        let mut n: usize = self.waiting.values().map(Vec::len).sum();
        while n > WAITING_MAX {
            let Some(mut oldest) = self.waiting.first_entry() else {
                break;
            };
            oldest.get_mut().remove(0);
            if oldest.get().is_empty() {
                oldest.remove();
            }
            n -= 1;
        }
    }

    /// Applies, in seq order, the changes that waited for the message at `seq`.
    fn apply_waiting(&mut self, seq: i64) {
        let Some(mut changes) = self.waiting.remove(&seq) else {
            return;
        };
        changes.sort_by_key(|(c, _)| change_seq(c));
        if let Some(held) = self.messages.get_mut(&seq) {
            for (c, me) in changes {
                apply_to(held, &c, change_seq(&c), &me);
            }
        }
    }

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
            prev_change: Some(-1),
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
            prev_change: None,
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
            prev_change: None,
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
            prev_change: None,
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
            prev_change: None,
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

    fn reaction(seq: i64, target: i64, prev_change: Option<i64>) -> ServerFrame {
        ServerFrame::Reaction {
            conversation_id: "c".into(),
            seq,
            target_seq: target,
            user_id: "b".into(),
            emoji: "👍".into(),
            on: true,
            prev_change,
        }
    }

    #[test]
    fn a_missed_change_is_a_gap_and_holds_the_cursor_back() {
        let mut s = Store::default();
        s.insert(m(1, None), Source::Live);
        assert_eq!(s.take_change(&reaction(2, 1, Some(-1)), "me"), None);
        assert_eq!(s.conversations["c"].changes_through, Some(2));
        // The reaction at 3 never came; the message at 4 (the sender's own `sent`, say)
        // names it as the change before it.
        let mut own = m(4, Some(1));
        own.prev_change = Some(3);
        assert_eq!(
            s.insert(own, Source::Sent),
            Inserted::Gap {
                after: Some(2),
                before: 5
            }
        );
        assert_eq!(s.cursors()["c"], 2, "a sync brings the change at 3");
        // So does a live change after the missed one: it waits for the fill.
        assert_eq!(
            s.take_change(&reaction(5, 1, Some(3)), "me"),
            Some(Inserted::Gap {
                after: Some(2),
                before: 6
            })
        );
        assert_eq!(s.messages("c")[0].reactions.get("👍"), Some(&1));
        // The fill's page lists the changes of its stretch, in order.
        s.apply_change(&reaction(3, 1, None), "me");
        s.apply_change(&reaction(5, 1, None), "me");
        s.filled("c", Some(2), 6);
        assert_eq!(s.messages("c")[0].reactions.get("👍"), Some(&3));
        assert_eq!(s.conversations["c"].changes_through, Some(5));
        assert_eq!(s.cursors()["c"], 4);
        // Not known (a router that took the partition over): a gap too.
        assert!(s.take_change(&reaction(6, 1, None), "me").is_some());
    }

    #[test]
    fn a_change_to_a_message_not_held_yet_waits_for_it() {
        let mut s = Store::default();
        s.insert(m(1, None), Source::Live);
        // The change to 3 comes before a fill brings 3, from views read before it.
        assert_eq!(s.take_change(&reaction(5, 3, Some(-1)), "me"), None);
        let mut old = m(3, Some(1));
        old.changed_seq = None;
        s.insert(old, Source::History);
        assert_eq!(s.messages("c")[1].reactions.get("👍"), Some(&1));
        // A copy that already reflects it is not changed twice.
        let mut s = Store::default();
        s.take_change(&reaction(5, 3, Some(-1)), "me");
        let mut now = m(3, None);
        now.reactions.insert("👍".into(), 1);
        now.changed_seq = Some(5);
        s.insert(now, Source::History);
        assert_eq!(s.messages("c")[0].reactions.get("👍"), Some(&1));
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
