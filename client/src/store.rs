//! What a client holds of each conversation: messages by seq, each message id once.

use std::collections::{BTreeMap, HashMap, HashSet};

use parley_schemas::frames::MessageView;
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

    /// Last seq held, per conversation: the cursors of a sync.
    pub fn cursors(&self) -> BTreeMap<String, i64> {
        self.conversations
            .iter()
            .filter_map(|(k, c)| c.messages.keys().next_back().map(|s| (k.clone(), *s)))
            .collect()
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
}
