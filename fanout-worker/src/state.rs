//! Per partition of `events`: each conversation's members (with the offset they joined
//! at), last message seq and last change seq (the two chains a routed event carries:
//! `DeliveryBatch.prev_seq` and `prev_change`), kept by applying the shared rules to
//! the log, and a bounded memory of recent message ids to drop repeats.
//!
//! A message of a group with at least [`Limits::large_group`] members takes the
//! broadcast path: it is routed to every gateway slot with anyone online, without a recipient list, and each
//! gateway finds its own members of the group. Group membership changes are therefore
//! routed too ([`Routed::Membership`]), so that the gateways' indexes follow the log.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;

use parley_projector::views::PartitionSnapshot;
use parley_schemas::rules::{self, Effect, LogState};
use parley_schemas::{AnyRecord, ConversationKind, MessagePosted};
use uuid::Uuid;

/// What a router knows of the message (or the change to a message) before the next
/// one of a conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Prev {
    /// None yet: the next is the conversation's first.
    #[default]
    First,
    /// The last one routed.
    Seq(i64),
    /// Not known here (a takeover from a snapshot ahead of the resume offset).
    Unknown,
}

impl Prev {
    /// As `DeliveryBatch.prev_seq` and `prev_change` carry it: -1 for "none before",
    /// null for "unknown" (see `DeliveryBatch.avsc`).
    pub fn to_record(self) -> Option<i64> {
        match self {
            Prev::First => Some(-1),
            Prev::Seq(s) => Some(s),
            Prev::Unknown => None,
        }
    }

    /// The inverse of [`Prev::to_record`].
    pub fn from_record(r: Option<i64>) -> Prev {
        match r {
            Some(s) if s >= 0 => Prev::Seq(s),
            Some(_) => Prev::First,
            None => Prev::Unknown,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Conversation {
    pub kind: Option<ConversationKind>,
    /// Who created it: in a group, the member who ranks above its admins.
    pub creator: Option<String>,
    /// user → offset of the record that made them a member.
    pub members: BTreeMap<String, i64>,
    /// admin → offset of the `MemberRoleSet` that made them one (a subset of `members`).
    pub admins: BTreeMap<String, i64>,
    /// The last message routed.
    pub last: Prev,
    /// The last change to a message routed (an edit, a deletion, a reaction).
    pub last_change: Prev,
}

/// The sizes a partition's state works with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Message ids remembered per partition to drop repeats.
    pub dedup_window: usize,
    /// Groups of at least this many members take the broadcast path.
    pub large_group: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            dedup_window: 20_000,
            large_group: 1_000,
        }
    }
}

#[derive(Default)]
pub struct PartitionState {
    conversations: HashMap<String, Conversation>,
    recent: HashSet<(String, Uuid)>,
    order: VecDeque<(String, Uuid)>,
    limits: Limits,
    /// Records before this offset are routed again over a state rebuilt from a snapshot
    /// taken later ([`PartitionState::from_snapshot`]), which lacks the members
    /// removed in between.
    replay_until: i64,
}

/// The conversation and actor of a change to a message.
fn change_of(record: &AnyRecord) -> Option<(&str, &str)> {
    match record {
        AnyRecord::MessageEdited(e) => Some((&e.conversation_id, &e.meta.actor)),
        AnyRecord::MessageDeleted(d) => Some((&d.conversation_id, &d.meta.actor)),
        AnyRecord::ReactionSet(r) => Some((&r.conversation_id, &r.meta.actor)),
        _ => None,
    }
}

/// Who a message goes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Recipients {
    /// Members when it was posted, the sender included: routed one by one.
    Members(Vec<String>),
    /// A large group: every gateway slot with anyone online, which finds its own members.
    Broadcast,
}

/// A message to route.
#[derive(Debug)]
pub struct Posted<'a> {
    pub message: &'a MessagePosted,
    pub recipients: Recipients,
    pub prev: Prev,
    /// The conversation's last change routed before it.
    pub prev_change: Prev,
}

/// What a record of `events` gives to route.
#[derive(Debug)]
pub enum Routed<'a> {
    Message(Posted<'a>),
    /// A group's membership changed (created, members added or removed): the record
    /// goes to every gateway slot, in order with the group's messages.
    Membership,
    /// A direct conversation's membership changed (one of its pair left, or came back):
    /// the record goes to the gateways of the pair (both, the one who left included),
    /// where it changes who is shown whose presence.
    Pair(Vec<String>),
    /// A member's change to a message (an edit, a deletion, a reaction): it goes to the
    /// members online now, like a message but to no inbox (history shows it). With the
    /// conversation's change routed before it.
    Change(Recipients, Prev),
    Nothing,
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

    fn member_count(&self, conversation: &str) -> Result<usize, Infallible> {
        Ok(self
            .conversations
            .get(conversation)
            .map_or(0, |c| c.members.len()))
    }

    fn seen_message(&self, conversation: &str, id: &Uuid) -> Result<bool, Infallible> {
        Ok(self.recent.contains(&(conversation.to_string(), *id)))
    }

    fn creator(&self, conversation: &str) -> Result<Option<String>, Infallible> {
        Ok(self
            .conversations
            .get(conversation)
            .and_then(|c| c.creator.clone()))
    }

    fn is_admin(&self, conversation: &str, user: &str) -> Result<bool, Infallible> {
        Ok(self
            .conversations
            .get(conversation)
            .is_some_and(|c| c.admins.contains_key(user)))
    }
}

impl PartitionState {
    pub fn new(limits: Limits) -> Self {
        PartitionState {
            limits: Limits {
                dedup_window: limits.dedup_window.max(1),
                large_group: limits.large_group.max(1),
            },
            ..Default::default()
        }
    }

    /// State from a projector snapshot, for routing from `resume` on.
    ///
    /// A snapshot at or behind `resume` is taken as it is (the caller applies the log
    /// from the snapshot up to `resume`). One taken *ahead* (`snapshot.applied` >
    /// `resume`) is wound back as far as it can be: conversations created and members
    /// added at or after `resume` are left out, so that routing those records again has
    /// its effect (and its membership broadcast) again. Members removed between `resume`
    /// and the snapshot cannot be put back; their removals are broadcast again during
    /// the replay ([`PartitionState::apply`]), and during the replay such a member's
    /// own messages are refused and other messages skip them (their clients fill the
    /// gap by sync, as for any message they missed). Its last seqs would be wrong at `resume`,
    /// so each conversation's next message says its predecessor is unknown.
    pub fn from_snapshot(snapshot: PartitionSnapshot, resume: i64, limits: Limits) -> Self {
        let ahead = snapshot.applied > resume;
        let mut s = PartitionState::new(limits);
        for c in snapshot.conversations {
            if ahead && c.created_at.is_some_and(|at| at >= resume) {
                continue;
            }
            s.conversations.insert(
                c.conversation_id,
                Conversation {
                    kind: Some(c.kind),
                    creator: c.creator,
                    members: c
                        .members
                        .into_iter()
                        .filter(|(_, since)| !ahead || *since < resume)
                        .collect(),
                    admins: c
                        .admins
                        .into_iter()
                        .filter(|(_, since)| !ahead || *since < resume)
                        .collect(),
                    last: match (ahead, c.last_seq) {
                        (true, _) => Prev::Unknown,
                        (false, Some(s)) => Prev::Seq(s),
                        (false, None) => Prev::First,
                    },
                    last_change: last_change_at(c.last_change, ahead, resume),
                },
            );
        }
        if ahead {
            s.replay_until = snapshot.applied;
        }
        // The dedup window, as the router before would have had it: the messages kept
        // before the resume point (those after it are routed again, and must pass).
        for (seq, conversation, id) in snapshot.recent {
            if seq < resume {
                s.remember(conversation, id);
            }
        }
        s
    }

    /// Applies the record at `offset`; says what to route.
    pub fn apply<'a>(&mut self, offset: i64, record: &'a AnyRecord) -> Routed<'a> {
        if let Some((conversation, actor)) = change_of(record) {
            return self.change(offset, conversation, actor);
        }
        let effect = match rules::effect(self, record) {
            Ok(e) => e,
            Err(never) => match never {},
        };
        match effect {
            Effect::Nothing => self.replayed_removal(offset, record),
            Effect::Create(c) => {
                let conv = self
                    .conversations
                    .entry(c.conversation_id.clone())
                    .or_default();
                conv.kind = Some(c.kind);
                conv.creator = Some(c.meta.actor.clone());
                for m in &c.members {
                    conv.members.insert(m.clone(), offset);
                }
                group_change(c.kind)
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
                match conv.kind.unwrap_or(ConversationKind::Group) {
                    ConversationKind::Group => Routed::Membership,
                    ConversationKind::Direct => {
                        Routed::Pair(conv.members.keys().cloned().collect())
                    }
                }
            }
            Effect::Remove {
                conversation,
                member,
            } => match self.conversations.get_mut(conversation) {
                Some(conv) => {
                    conv.members.remove(member);
                    conv.admins.remove(member);
                    match conv.kind.unwrap_or(ConversationKind::Group) {
                        ConversationKind::Group => Routed::Membership,
                        ConversationKind::Direct => {
                            let mut pair: Vec<String> = conv.members.keys().cloned().collect();
                            pair.push(member.to_string());
                            Routed::Pair(pair)
                        }
                    }
                }
                None => Routed::Nothing,
            },
            Effect::Role {
                conversation,
                member,
                admin,
            } => {
                if let Some(conv) = self.conversations.get_mut(conversation) {
                    if admin {
                        conv.admins.insert(member.to_string(), offset);
                    } else {
                        conv.admins.remove(member);
                    }
                }
                Routed::Nothing
            }
            // Who reads which history is the views' concern, not routing's.
            Effect::Settings(_) | Effect::Expire(_) => Routed::Nothing,
            // Changes never reach the rules here (`PartitionState::change`).
            Effect::Edit(_) | Effect::Delete(_) | Effect::React(_) => Routed::Nothing,
            Effect::Post(m) => {
                self.remember(m.conversation_id.clone(), m.message_id);
                let large = self.limits.large_group;
                let Some(conv) = self.conversations.get_mut(&m.conversation_id) else {
                    return Routed::Nothing;
                };
                let prev = std::mem::replace(&mut conv.last, Prev::Seq(offset));
                let prev_change = conv.last_change;
                let recipients = if conv.members.len() >= large {
                    Recipients::Broadcast
                } else {
                    // A snapshot taken ahead may list members who joined after this record.
                    Recipients::Members(
                        conv.members
                            .iter()
                            .filter(|(_, since)| **since < offset)
                            .map(|(u, _)| u.clone())
                            .collect(),
                    )
                };
                Routed::Message(Posted {
                    message: m,
                    recipients,
                    prev,
                    prev_change,
                })
            }
        }
    }

    /// Routing of a change to a message. This state keeps no messages, so it applies the
    /// part of the rules it can (the actor is a member); the rest depends on the message
    /// (`parley_schemas::rules::changes`), which the views and every client that holds
    /// it apply, each to its own copy. The gateway checks every change against the
    /// views before it appends it.
    ///
    /// A routed change moves the conversation's change chain: the next event routed
    /// says this change came before it, so a client that missed it knows.
    fn change<'a>(&mut self, offset: i64, conversation: &str, actor: &str) -> Routed<'a> {
        let large = self.limits.large_group;
        let Some(conv) = self.conversations.get_mut(conversation) else {
            return Routed::Nothing;
        };
        if !conv.members.contains_key(actor) {
            return Routed::Nothing;
        }
        let prev = std::mem::replace(&mut conv.last_change, Prev::Seq(offset));
        let recipients = if conv.members.len() >= large {
            Recipients::Broadcast
        } else {
            Recipients::Members(conv.members.keys().cloned().collect())
        };
        Routed::Change(recipients, prev)
    }

    /// During a replay over a state rebuilt from a snapshot ahead, a group member's
    /// removal that the rules now refuse because the member is already gone: the
    /// predecessor may not have routed it, so it is broadcast again. (If the member is
    /// in the state, the removal was refused at its position too: it is left alone.
    /// A removal that was refused because the user was never a member is broadcast
    /// too, which gateways ignore.)
    fn replayed_removal<'a>(&self, offset: i64, record: &'a AnyRecord) -> Routed<'a> {
        let AnyRecord::MemberRemoved(r) = record else {
            return Routed::Nothing;
        };
        if offset >= self.replay_until {
            return Routed::Nothing;
        }
        match self.conversations.get(&r.conversation_id) {
            Some(c)
                if c.kind == Some(ConversationKind::Group)
                    && !c.members.contains_key(&r.member) =>
            {
                Routed::Membership
            }
            _ => Routed::Nothing,
        }
    }

    /// Whether `user` is a member of `conversation` now.
    pub fn has_member(&self, conversation: &str, user: &str) -> bool {
        self.conversations
            .get(conversation)
            .is_some_and(|c| c.members.contains_key(user))
    }

    /// Whether `conversation` takes the broadcast path now.
    pub fn is_large(&self, conversation: &str) -> bool {
        self.conversations
            .get(conversation)
            .is_some_and(|c| c.members.len() >= self.limits.large_group)
    }

    fn remember(&mut self, conversation: String, id: Uuid) {
        let key = (conversation, id);
        if self.recent.insert(key.clone()) {
            self.order.push_back(key);
            while self.order.len() > self.limits.dedup_window {
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

/// The change before the first record routed from `resume` on, from a snapshot's last
/// kept change (`-1`: none; `None`: an older projector did not say).
///
/// `prev_change` is a bound: no change before the event is above it (a client checks
/// only that it holds every change up to it). A snapshot at or behind `resume` gives it
/// exactly (the records up to `resume` are applied on top). One taken ahead may name a
/// change at or after `resume`, which is routed again; then every change before
/// `resume` is at or below `resume - 1`, and that bound is what the next event names.
fn last_change_at(snapshot: Option<i64>, ahead: bool, resume: i64) -> Prev {
    let bound = match resume {
        0 => Prev::First,
        r => Prev::Seq(r - 1),
    };
    match snapshot {
        Some(l) if l < 0 => Prev::First,
        Some(l) if !ahead || l < resume => Prev::Seq(l),
        Some(_) => bound,
        None if ahead => bound,
        None => Prev::Unknown,
    }
}

fn group_change<'a>(kind: ConversationKind) -> Routed<'a> {
    match kind {
        ConversationKind::Group => Routed::Membership,
        ConversationKind::Direct => Routed::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use parley_schemas::{ConversationCreated, MemberRemoved, MembersAdded, Meta};

    use super::*;

    fn group(members: &[&str]) -> AnyRecord {
        ConversationCreated {
            meta: Meta::new(members[0]),
            conversation_id: "g".into(),
            kind: ConversationKind::Group,
            title: None,
            members: members.iter().map(|m| m.to_string()).collect(),
        }
        .into()
    }

    fn post(sender: &str, cmid: &str) -> AnyRecord {
        MessagePosted {
            meta: Meta::new(sender),
            conversation_id: "g".into(),
            message_id: parley_schemas::ids::message_id(sender, cmid),
            client_msg_id: cmid.into(),
            body: "hi".into(),
            reply_to: None,
            attachments: Vec::new(),
            sealed: None,
        }
        .into()
    }

    fn added(by: &str, member: &str) -> AnyRecord {
        MembersAdded {
            meta: Meta::new(by),
            conversation_id: "g".into(),
            members: vec![member.into()],
        }
        .into()
    }

    fn removed(by: &str, member: &str) -> AnyRecord {
        MemberRemoved {
            meta: Meta::new(by),
            conversation_id: "g".into(),
            member: member.into(),
        }
        .into()
    }

    fn role(by: &str, member: &str, admin: bool) -> AnyRecord {
        parley_schemas::MemberRoleSet {
            meta: Meta::new(by),
            conversation_id: "g".into(),
            member: member.into(),
            admin,
        }
        .into()
    }

    #[test]
    fn an_admin_made_in_the_log_removes_members_and_a_snapshot_ahead_forgets_later_grants() {
        let mut s = PartitionState::new(Limits::default());
        s.apply(0, &group(&["a", "b", "c", "d"]));
        assert!(matches!(s.apply(1, &removed("b", "c")), Routed::Nothing));
        assert!(s.has_member("g", "c"), "a member removes no one");
        assert!(matches!(s.apply(2, &role("a", "b", true)), Routed::Nothing));
        assert!(matches!(s.apply(3, &removed("b", "c")), Routed::Membership));
        assert!(!s.has_member("g", "c"));
        // Removed, an admin is one no longer.
        s.apply(4, &removed("a", "b"));
        s.apply(5, &added("a", "b"));
        assert!(matches!(s.apply(6, &removed("b", "d")), Routed::Nothing));

        // A snapshot at 20 lists "b" as an admin since 12; routing resumes at 10.
        let mut snap = snapshot(20, &[("a", 0), ("b", 0), ("d", 0)], 0);
        snap.conversations[0].admins = vec![("b".into(), 12)];
        let mut s = PartitionState::from_snapshot(snap.clone(), 10, Limits::default());
        assert!(matches!(s.apply(11, &removed("b", "d")), Routed::Nothing));
        let mut s = PartitionState::from_snapshot(snap, 20, Limits::default());
        assert!(matches!(
            s.apply(21, &removed("b", "d")),
            Routed::Membership
        ));
    }

    fn reaction(by: &str, target: i64) -> AnyRecord {
        parley_schemas::ReactionSet {
            meta: Meta::new(by),
            conversation_id: "g".into(),
            target_seq: target,
            emoji: "👍".into(),
            on: true,
        }
        .into()
    }

    #[test]
    fn every_routed_event_names_the_change_before_it() {
        let mut s = PartitionState::new(Limits::default());
        s.apply(0, &group(&["a", "b"]));
        let prev_change = |r: Routed<'_>| match r {
            Routed::Message(p) => p.prev_change,
            Routed::Change(_, prev) => prev,
            other => panic!("{other:?}"),
        };
        let first = post("a", "1");
        assert_eq!(prev_change(s.apply(1, &first)), Prev::First);
        assert_eq!(prev_change(s.apply(2, &reaction("b", 1))), Prev::First);
        assert_eq!(prev_change(s.apply(3, &reaction("a", 1))), Prev::Seq(2));
        let second = post("b", "2");
        assert_eq!(prev_change(s.apply(4, &second)), Prev::Seq(3));
        // A change by a non-member is not routed, and is not in the chain.
        assert!(matches!(s.apply(5, &reaction("z", 1)), Routed::Nothing));
        let third = post("a", "3");
        assert_eq!(prev_change(s.apply(6, &third)), Prev::Seq(3));

        // From a snapshot: the views' last kept change; unknown from one taken ahead.
        let mut snap = snapshot(20, &[("a", 0), ("b", 0)], 0);
        snap.conversations[0].last_change = Some(17);
        let mut s = PartitionState::from_snapshot(snap.clone(), 20, Limits::default());
        assert_eq!(prev_change(s.apply(20, &post("a", "9"))), Prev::Seq(17));
        // Taken ahead of the resume point past a change: a bound, every change before
        // the resume point is at or below it (the change at 17 is routed again).
        let mut s = PartitionState::from_snapshot(snap.clone(), 15, Limits::default());
        assert_eq!(prev_change(s.apply(15, &post("a", "9"))), Prev::Seq(14));
        // Taken ahead, its last change before the resume point: exact.
        let mut s = PartitionState::from_snapshot(snap.clone(), 18, Limits::default());
        assert_eq!(prev_change(s.apply(18, &post("a", "9"))), Prev::Seq(17));
        snap.conversations[0].last_change = Some(-1);
        let mut s = PartitionState::from_snapshot(snap.clone(), 15, Limits::default());
        assert_eq!(prev_change(s.apply(15, &post("a", "9"))), Prev::First);
        // From a projector that does not say: unknown, or the bound when ahead.
        snap.conversations[0].last_change = None;
        let mut s = PartitionState::from_snapshot(snap.clone(), 20, Limits::default());
        assert_eq!(prev_change(s.apply(20, &post("a", "9"))), Prev::Unknown);
        let mut s = PartitionState::from_snapshot(snap, 15, Limits::default());
        assert_eq!(prev_change(s.apply(15, &post("a", "9"))), Prev::Seq(14));
    }

    #[test]
    fn a_group_at_the_threshold_is_broadcast_and_its_membership_changes_are_routed() {
        let mut s = PartitionState::new(Limits {
            dedup_window: 100,
            large_group: 3,
        });
        assert!(matches!(
            s.apply(0, &group(&["a", "b"])),
            Routed::Membership
        ));
        let small = post("a", "1");
        match s.apply(1, &small) {
            Routed::Message(p) => assert_eq!(
                p.recipients,
                Recipients::Members(vec!["a".into(), "b".into()])
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.apply(2, &added("a", "c")), Routed::Membership));
        let large = post("a", "2");
        match s.apply(3, &large) {
            Routed::Message(p) => {
                assert_eq!(p.recipients, Recipients::Broadcast);
                assert_eq!(p.prev, Prev::Seq(1));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.apply(4, &removed("c", "c")), Routed::Membership));
        // Below the threshold again: member by member.
        let again = post("b", "3");
        assert!(matches!(
            s.apply(5, &again),
            Routed::Message(Posted {
                recipients: Recipients::Members(_),
                ..
            })
        ));
        // Repeats and non-members route nothing.
        assert!(matches!(s.apply(6, &again), Routed::Nothing));
        assert!(matches!(s.apply(7, &post("z", "4")), Routed::Nothing));
    }

    fn snapshot(applied: i64, members: &[(&str, i64)], created_at: i64) -> PartitionSnapshot {
        PartitionSnapshot {
            partition: 0,
            applied,
            conversations: vec![parley_projector::views::SnapshotConversation {
                conversation_id: "g".into(),
                kind: ConversationKind::Group,
                members: members.iter().map(|(u, s)| (u.to_string(), *s)).collect(),
                last_seq: Some(applied - 1),
                last_change: Some(-1),
                created_at: Some(created_at),
                creator: Some("a".into()),
                admins: Vec::new(),
            }],
            recent: Vec::new(),
        }
    }

    #[test]
    fn a_takeover_starts_with_the_dedup_window_of_the_snapshot() {
        let id = |cmid: &str| parley_schemas::ids::message_id("a", cmid);
        let mut snap = snapshot(20, &[("a", 0)], 0);
        snap.recent = vec![(5, "g".into(), id("1")), (15, "g".into(), id("2"))];
        // Resuming after the snapshot: both are repeats.
        let mut s = PartitionState::from_snapshot(snap.clone(), 25, Limits::default());
        assert!(matches!(s.apply(26, &post("a", "1")), Routed::Nothing));
        assert!(matches!(s.apply(27, &post("a", "2")), Routed::Nothing));
        assert!(matches!(s.apply(28, &post("a", "3")), Routed::Message(_)));
        // Resuming at 10, before the snapshot: the message at 15 is routed again (it is
        // replayed), the one at 5 is a repeat.
        let mut s = PartitionState::from_snapshot(snap, 10, Limits::default());
        assert!(matches!(s.apply(11, &post("a", "1")), Routed::Nothing));
        assert!(matches!(s.apply(15, &post("a", "2")), Routed::Message(_)));
    }

    #[test]
    fn a_takeover_from_a_snapshot_ahead_routes_the_membership_changes_again() {
        // Routing resumes at 10; the snapshot is at 20. Meanwhile: "c" was added at 12
        // and "b" removed at 14 (so the snapshot has a, c and not b).
        let mut s = PartitionState::from_snapshot(
            snapshot(20, &[("a", 0), ("c", 12)], 0),
            10,
            Limits::default(),
        );
        assert!(
            matches!(s.apply(12, &added("a", "c")), Routed::Membership),
            "the add again"
        );
        let b_out = removed("a", "b");
        assert!(
            matches!(s.apply(14, &b_out), Routed::Membership),
            "the removal again"
        );
        // A removal of a member still in at the snapshot was refused: nothing.
        assert!(matches!(s.apply(16, &removed("zed", "a")), Routed::Nothing));
        // Past the snapshot, the rules alone decide.
        assert!(matches!(s.apply(21, &b_out), Routed::Nothing));
        // A group created after the resume point is created again.
        let mut s =
            PartitionState::from_snapshot(snapshot(20, &[("a", 15)], 15), 10, Limits::default());
        assert!(matches!(s.apply(15, &group(&["a"])), Routed::Membership));
    }

    #[test]
    fn direct_conversations_route_their_leaves_to_the_pair_only() {
        let mut s = PartitionState::new(Limits::default());
        let direct: AnyRecord = ConversationCreated {
            meta: Meta::new("a"),
            conversation_id: "d".into(),
            kind: ConversationKind::Direct,
            title: None,
            members: vec!["a".into(), "b".into()],
        }
        .into();
        assert!(matches!(s.apply(0, &direct), Routed::Nothing));
        let leave: AnyRecord = MemberRemoved {
            meta: Meta::new("b"),
            conversation_id: "d".into(),
            member: "b".into(),
        }
        .into();
        match s.apply(1, &leave) {
            Routed::Pair(mut users) => {
                users.sort();
                assert_eq!(users, ["a", "b"]);
            }
            _ => panic!("a direct leave goes to the pair"),
        }
    }
}
