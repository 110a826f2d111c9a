//! What a client holds of each conversation: messages by seq, each message id once.
//!
//! A message is *linked* when its `prev_seq` is held (or is null: the conversation's
//! first message). The cursor of a conversation, sent in a sync, is the last seq of the
//! linked run from its start: a message held after a gap never moves the cursor past
//! the gap. A message this client sent is held from its `sent` reply, which does not
//! say `prev_seq`; it is linked once a copy from the server (sync, history or another
//! session's delivery) says it.

use std::collections::{BTreeMap, HashMap, HashSet};

use parley_schemas::frames::MessageView;
use uuid::Uuid;

#[derive(Default, Debug)]
pub struct Conversation {
    pub messages: BTreeMap<i64, MessageView>,
    ids: HashSet<Uuid>,
    /// Seqs of own messages whose `prev_seq` is not known yet.
    unlinked: HashSet<i64>,
    /// Frames that carried a message already held (overlap, redelivery): dropped.
    pub duplicates: usize,
}

#[derive(Default, Debug)]
pub struct Store {
    pub conversations: HashMap<String, Conversation>,
}

/// What [`Store::insert`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
    /// New, and its `prev_seq` is a message this client does not hold: fetch
    /// `after < seq < before` to fill the gap.
    Gap {
        after: Option<i64>,
        before: i64,
    },
}

impl Store {
    pub fn insert(&mut self, m: MessageView) -> Inserted {
        let conv = self
            .conversations
            .entry(m.conversation_id.clone())
            .or_default();
        if !conv.ids.insert(m.message_id) {
            if conv.unlinked.remove(&m.seq) {
                if let Some(held) = conv.messages.get_mut(&m.seq) {
                    held.prev_seq = m.prev_seq;
                }
            }
            conv.duplicates += 1;
            return Inserted::Duplicate;
        }
        let gap = match m.prev_seq {
            Some(p) if !conv.messages.contains_key(&p) => {
                // Fill from the newest message held before it (or from the start).
                let after = conv.messages.range(..m.seq).next_back().map(|(s, _)| *s);
                Some(Inserted::Gap {
                    after,
                    before: m.seq,
                })
            }
            _ => None,
        };
        conv.messages.insert(m.seq, m);
        gap.unwrap_or(Inserted::New)
    }

    /// A message this client sent (acknowledged): held without gap checks.
    pub fn insert_own(&mut self, m: MessageView) {
        let conv = self
            .conversations
            .entry(m.conversation_id.clone())
            .or_default();
        if conv.ids.insert(m.message_id) {
            conv.unlinked.insert(m.seq);
            conv.messages.insert(m.seq, m);
        }
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
        for (_, conv) in other.conversations {
            for (seq, m) in conv.messages {
                if conv.unlinked.contains(&seq) {
                    self.insert_own(m);
                } else {
                    self.insert(m);
                }
            }
        }
    }
}

impl Conversation {
    /// See [`Store::cursors`].
    pub fn cursor(&self) -> Option<i64> {
        let mut cursor = None;
        for (seq, m) in &self.messages {
            let linked = !self.unlinked.contains(seq)
                && m.prev_seq.is_none_or(|p| self.messages.contains_key(&p));
            if !linked {
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
            message_id: Uuid::from_u128(seq as u128),
            sender_id: "a".into(),
            body: "b".into(),
            ts: 0,
        }
    }

    #[test]
    fn orders_dedups_and_spots_gaps() {
        let mut s = Store::default();
        assert_eq!(s.insert(m(3, None)), Inserted::New);
        assert_eq!(s.insert(m(7, Some(3))), Inserted::New);
        assert_eq!(s.insert(m(7, Some(3))), Inserted::Duplicate);
        assert_eq!(
            s.insert(m(12, Some(9))),
            Inserted::Gap {
                after: Some(7),
                before: 12
            }
        );
        assert_eq!(s.insert(m(9, Some(7))), Inserted::New);
        let seqs: Vec<i64> = s.messages("c").iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![3, 7, 9, 12]);
        assert_eq!(s.cursors()["c"], 12);
        assert_eq!(s.conversations["c"].duplicates, 1);
    }

    #[test]
    fn cursors_stop_before_gaps_and_unlinked_own_messages() {
        let mut s = Store::default();
        s.insert(m(3, None));
        s.insert(m(7, Some(3)));
        s.insert(m(12, Some(9)));
        assert_eq!(s.cursors()["c"], 7, "9 is missing: resume after 7");
        s.insert_own(m(9, None));
        assert_eq!(s.cursors()["c"], 7, "own 9 has no prev_seq yet");
        assert_eq!(s.insert(m(9, Some(7))), Inserted::Duplicate);
        assert_eq!(s.cursors()["c"], 12);

        let mut late = Store::default();
        late.insert(m(40, Some(30)));
        assert!(late.cursors().is_empty(), "nothing linked from the start");
    }
}
