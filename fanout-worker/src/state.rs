//! Per partition of `events`: each conversation's members (with the offset they joined
//! at) and last message seq, kept by applying the shared rules to the log, and a
//! bounded memory of recent message ids to drop repeats.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;

use parley_projector::views::PartitionSnapshot;
use parley_schemas::rules::{self, Effect, LogState};
use parley_schemas::{AnyRecord, ConversationKind, MessagePosted};
use uuid::Uuid;

/// What a router knows of the message before the next one of a conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prev {
    /// No message yet: the next is the conversation's first.
    #[default]
    First,
    /// The last message routed.
    Seq(i64),
    /// Not known here (a takeover from a snapshot ahead of the resume offset).
    Unknown,
}

impl Prev {
    /// As `DeliveryBatch.prev_seq` carries it: -1 for "the first message", null for
    /// "unknown" (see `DeliveryBatch.avsc`).
    pub fn to_record(self) -> Option<i64> {
        match self {
            Prev::First => Some(-1),
            Prev::Seq(s) => Some(s),
            Prev::Unknown => None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub kind: Option<ConversationKind>,
    /// user → offset of the record that made them a member.
    pub members: BTreeMap<String, i64>,
    pub last: Prev,
}

#[derive(Default)]
pub struct PartitionState {
    conversations: HashMap<String, Conversation>,
    recent: HashSet<(String, Uuid)>,
    order: VecDeque<(String, Uuid)>,
    window: usize,
}

/// A message to route.
#[derive(Debug)]
pub struct Posted<'a> {
    pub message: &'a MessagePosted,
    /// Members when it was posted, the sender included.
    pub recipients: Vec<String>,
    pub prev: Prev,
}

impl LogState for PartitionState {
    type Error = Infallible;

    fn kind(&self, conversation: &str) -> Result<Option<ConversationKind>, Infallible> {
        Ok(self.conversations.get(conversation).and_then(|c| c.kind))
    }

    fn is_member(&self, conversation: &str, user: &str) -> Result<bool, Infallible> {
        Ok(self
            .conversations
            .get(conversation)
            .is_some_and(|c| c.members.contains_key(user)))
    }

    fn seen_message(&self, conversation: &str, id: &Uuid) -> Result<bool, Infallible> {
        Ok(self.recent.contains(&(conversation.to_string(), *id)))
    }
}

impl PartitionState {
    pub fn new(window: usize) -> Self {
        PartitionState {
            window: window.max(1),
            ..Default::default()
        }
    }

    /// State from a projector snapshot. `with_last_seq` is false when the snapshot is
    /// ahead of where routing resumes: its last seqs would be wrong there, so each
    /// conversation's next message says its predecessor is unknown.
    pub fn from_snapshot(snapshot: PartitionSnapshot, with_last_seq: bool, window: usize) -> Self {
        let mut s = PartitionState::new(window);
        for c in snapshot.conversations {
            s.conversations.insert(
                c.conversation_id,
                Conversation {
                    kind: Some(c.kind),
                    members: c.members.into_iter().collect(),
                    last: match (with_last_seq, c.last_seq) {
                        (false, _) => Prev::Unknown,
                        (true, Some(s)) => Prev::Seq(s),
                        (true, None) => Prev::First,
                    },
                },
            );
        }
        s
    }

    /// Applies the record at `offset`; returns the message to route if it is one.
    pub fn apply<'a>(&mut self, offset: i64, record: &'a AnyRecord) -> Option<Posted<'a>> {
        let effect = match rules::effect(self, record) {
            Ok(e) => e,
            Err(never) => match never {},
        };
        match effect {
            Effect::Nothing => None,
            Effect::Create(c) => {
                let conv = self
                    .conversations
                    .entry(c.conversation_id.clone())
                    .or_default();
                conv.kind = Some(c.kind);
                for m in &c.members {
                    conv.members.insert(m.clone(), offset);
                }
                None
            }
            Effect::Add {
                conversation,
                members,
            } => {
                let conv = self
                    .conversations
                    .entry(conversation.to_string())
                    .or_default();
                for m in members {
                    conv.members.insert(m.to_string(), offset);
                }
                None
            }
            Effect::Remove {
                conversation,
                member,
            } => {
                if let Some(conv) = self.conversations.get_mut(conversation) {
                    conv.members.remove(member);
                }
                None
            }
            Effect::Post(m) => {
                self.remember(m.conversation_id.clone(), m.message_id);
                let conv = self.conversations.get_mut(&m.conversation_id)?;
                let prev = std::mem::replace(&mut conv.last, Prev::Seq(offset));
                // A snapshot taken ahead may list members who joined after this record.
                let recipients = conv
                    .members
                    .iter()
                    .filter(|(_, since)| **since < offset)
                    .map(|(u, _)| u.clone())
                    .collect();
                Some(Posted {
                    message: m,
                    recipients,
                    prev,
                })
            }
        }
    }

    fn remember(&mut self, conversation: String, id: Uuid) {
        let key = (conversation, id);
        if self.recent.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > self.window {
                if let Some(old) = self.order.pop_front() {
                    self.recent.remove(&old);
                }
            }
        }
    }

    /// The members of `conversation` now, if this partition knows it.
    pub fn members(&self, conversation: &str) -> Option<Vec<String>> {
        self.conversations
            .get(conversation)
            .map(|c| c.members.keys().cloned().collect())
    }

    pub fn conversations(&self) -> usize {
        self.conversations.len()
    }
}
