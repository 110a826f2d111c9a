//! What a record of `events` means at its log position: the one set of rules every
//! consumer applies, so that the projector's history and the fanout-worker's routing
//! agree on who is a member and which messages count.
//!
//! - `ConversationCreated` creates a conversation once; later ones for the same id do
//!   nothing (creating a direct conversation is idempotent).
//! - `ConversationCreated` of more members than the group cap does nothing.
//! - `MembersAdded` applies if the conversation is a group and the actor is a member;
//!   only users not yet members are added, and only if the group then stays within the
//!   cap ([`max_group_members`]); an add beyond it does nothing at all. In a direct
//!   conversation it only brings its pair back (re-creating it after one of them left):
//!   the members must be exactly the two users its id is derived from, and the actor
//!   one of them.
//! - `MemberRemoved` applies if the removed user is a member and the actor is that user
//!   (leaving), or, in a group, its creator (the actor of its `ConversationCreated`).
//!   No one is removed from a direct conversation by anyone else.
//! - `MessagePosted` counts if the conversation exists, the sender is a member and the
//!   message id was not posted in the conversation before (first occurrence wins).

use std::sync::OnceLock;

use uuid::Uuid;

use crate::records::{AnyRecord, ConversationCreated, ConversationKind, MessagePosted};

/// The default of [`max_group_members`].
pub const DEFAULT_MAX_GROUP_MEMBERS: usize = 100_000;

/// The environment variable that sets [`max_group_members`]. The cap is a rule of the
/// log: every role of a deployment must see the same value.
pub const MAX_GROUP_MEMBERS_ENV: &str = "PARLEY_MAX_GROUP_MEMBERS";

/// The most members a conversation may have: `PARLEY_MAX_GROUP_MEMBERS`, else
/// [`DEFAULT_MAX_GROUP_MEMBERS`]. Read once per process.
pub fn max_group_members() -> usize {
    static CAP: OnceLock<usize> = OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var(MAX_GROUP_MEMBERS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n >= 2)
            .unwrap_or(DEFAULT_MAX_GROUP_MEMBERS)
    })
}

/// What a consumer knows at a log position.
pub trait LogState {
    type Error;
    fn kind(&self, conversation: &str) -> Result<Option<ConversationKind>, Self::Error>;
    fn is_member(&self, conversation: &str, user: &str) -> Result<bool, Self::Error>;
    /// How many members `conversation` has.
    fn member_count(&self, conversation: &str) -> Result<usize, Self::Error>;
    /// Whether `id` was already posted in `conversation`.
    fn seen_message(&self, conversation: &str, id: &Uuid) -> Result<bool, Self::Error>;
    /// Who created `conversation` (the actor of its `ConversationCreated`).
    fn creator(&self, conversation: &str) -> Result<Option<String>, Self::Error>;
}

/// What applying a record changes.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect<'a> {
    Create(&'a ConversationCreated),
    /// Users who become members (none of them members before).
    Add {
        conversation: &'a str,
        members: Vec<&'a str>,
    },
    Remove {
        conversation: &'a str,
        member: &'a str,
    },
    Post(&'a MessagePosted),
    /// The record changes nothing (refused, repeated, or not a conversation record).
    Nothing,
}

/// The effect of `record` on `state`.
pub fn effect<'a, S: LogState>(state: &S, record: &'a AnyRecord) -> Result<Effect<'a>, S::Error> {
    effect_capped(state, record, max_group_members())
}

/// [`effect`] with the group cap given.
pub fn effect_capped<'a, S: LogState>(
    state: &S,
    record: &'a AnyRecord,
    cap: usize,
) -> Result<Effect<'a>, S::Error> {
    Ok(match record {
        AnyRecord::ConversationCreated(c) => match state.kind(&c.conversation_id)? {
            Some(_) => Effect::Nothing,
            None if distinct(&c.members) > cap => Effect::Nothing,
            None => Effect::Create(c),
        },
        AnyRecord::MembersAdded(a) => {
            let kind = state.kind(&a.conversation_id)?;
            if kind == Some(ConversationKind::Direct) {
                return rejoin(state, a);
            }
            let group = kind == Some(ConversationKind::Group);
            if !group || !state.is_member(&a.conversation_id, &a.meta.actor)? {
                return Ok(Effect::Nothing);
            }
            let mut members: Vec<&str> = Vec::new();
            for m in &a.members {
                if !members.contains(&m.as_str()) && !state.is_member(&a.conversation_id, m)? {
                    members.push(m);
                }
            }
            if members.is_empty() || state.member_count(&a.conversation_id)? + members.len() > cap {
                Effect::Nothing
            } else {
                Effect::Add {
                    conversation: &a.conversation_id,
                    members,
                }
            }
        }
        AnyRecord::MemberRemoved(r) => {
            let allowed = r.meta.actor == r.member
                || (state.kind(&r.conversation_id)? == Some(ConversationKind::Group)
                    && state.creator(&r.conversation_id)?.as_deref() == Some(&r.meta.actor)
                    && state.is_member(&r.conversation_id, &r.meta.actor)?);
            if allowed && state.is_member(&r.conversation_id, &r.member)? {
                Effect::Remove {
                    conversation: &r.conversation_id,
                    member: &r.member,
                }
            } else {
                Effect::Nothing
            }
        }
        AnyRecord::MessagePosted(m) => {
            if state.kind(&m.conversation_id)?.is_some()
                && state.is_member(&m.conversation_id, m.sender())?
                && !state.seen_message(&m.conversation_id, &m.message_id)?
            {
                Effect::Post(m)
            } else {
                Effect::Nothing
            }
        }
        _ => Effect::Nothing,
    })
}

/// `MembersAdded` in a direct conversation: its pair back, by one of them.
fn rejoin<'a, S: LogState>(
    state: &S,
    a: &'a crate::records::MembersAdded,
) -> Result<Effect<'a>, S::Error> {
    let [x, y] = a.members.as_slice() else {
        return Ok(Effect::Nothing);
    };
    let pair = x != y && crate::ids::direct_conversation_id(x, y) == a.conversation_id;
    if !pair || (a.meta.actor != *x && a.meta.actor != *y) {
        return Ok(Effect::Nothing);
    }
    let mut members = Vec::new();
    for m in [x, y] {
        if !state.is_member(&a.conversation_id, m)? {
            members.push(m.as_str());
        }
    }
    Ok(if members.is_empty() {
        Effect::Nothing
    } else {
        Effect::Add {
            conversation: &a.conversation_id,
            members,
        }
    })
}

fn distinct(users: &[String]) -> usize {
    users.iter().collect::<std::collections::HashSet<_>>().len()
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::convert::Infallible;

    use super::*;
    use crate::records::{MemberRemoved, MembersAdded, Meta};

    #[derive(Default)]
    struct Mem {
        kinds: HashMap<String, ConversationKind>,
        members: HashSet<(String, String)>,
        seen: HashSet<(String, Uuid)>,
        creators: HashMap<String, String>,
    }

    impl LogState for Mem {
        type Error = Infallible;
        fn kind(&self, c: &str) -> Result<Option<ConversationKind>, Infallible> {
            Ok(self.kinds.get(c).copied())
        }
        fn is_member(&self, c: &str, u: &str) -> Result<bool, Infallible> {
            Ok(self.members.contains(&(c.into(), u.into())))
        }
        fn member_count(&self, c: &str) -> Result<usize, Infallible> {
            Ok(self.members.iter().filter(|(conv, _)| conv == c).count())
        }
        fn seen_message(&self, c: &str, id: &Uuid) -> Result<bool, Infallible> {
            Ok(self.seen.contains(&(c.to_string(), *id)))
        }
        fn creator(&self, c: &str) -> Result<Option<String>, Infallible> {
            Ok(self.creators.get(c).cloned())
        }
    }

    fn post(sender: &str, cmid: &str) -> AnyRecord {
        MessagePosted {
            meta: Meta::new(sender),
            conversation_id: "c".into(),
            message_id: crate::ids::message_id(sender, cmid),
            client_msg_id: cmid.into(),
            body: "hi".into(),
        }
        .into()
    }

    fn state() -> Mem {
        let mut s = Mem::default();
        s.kinds.insert("c".into(), ConversationKind::Group);
        s.members.insert(("c".into(), "a".into()));
        s.creators.insert("c".into(), "a".into());
        s
    }

    #[test]
    fn only_members_post_and_ids_count_once() {
        let mut s = state();
        assert!(matches!(
            effect(&s, &post("a", "1")).unwrap(),
            Effect::Post(_)
        ));
        assert_eq!(effect(&s, &post("x", "1")).unwrap(), Effect::Nothing);
        s.seen
            .insert(("c".into(), crate::ids::message_id("a", "1")));
        assert_eq!(effect(&s, &post("a", "1")).unwrap(), Effect::Nothing);
    }

    #[test]
    fn outsiders_cannot_add_and_direct_conversations_do_not_grow() {
        let mut s = state();
        let add = |actor: &str| -> AnyRecord {
            MembersAdded {
                meta: Meta::new(actor),
                conversation_id: "c".into(),
                members: vec!["b".into(), "a".into(), "b".into()],
            }
            .into()
        };
        assert_eq!(
            effect(&s, &add("a")).unwrap(),
            Effect::Add {
                conversation: "c",
                members: vec!["b"]
            }
        );
        assert_eq!(effect(&s, &add("z")).unwrap(), Effect::Nothing);
        s.kinds.insert("c".into(), ConversationKind::Direct);
        assert_eq!(effect(&s, &add("a")).unwrap(), Effect::Nothing);
    }

    #[test]
    fn a_group_never_grows_beyond_the_cap() {
        let s = state();
        let add = |members: &[&str]| -> AnyRecord {
            MembersAdded {
                meta: Meta::new("a"),
                conversation_id: "c".into(),
                members: members.iter().map(|m| m.to_string()).collect(),
            }
            .into()
        };
        // "a" is a member: two more make three.
        assert!(matches!(
            effect_capped(&s, &add(&["b", "d"]), 3).unwrap(),
            Effect::Add { .. }
        ));
        // Three more would make four: the whole add is refused, not a part of it.
        assert_eq!(
            effect_capped(&s, &add(&["b", "d", "e"]), 3).unwrap(),
            Effect::Nothing
        );
        // Repeats and members already in do not count against the cap.
        assert!(matches!(
            effect_capped(&s, &add(&["a", "b", "b"]), 2).unwrap(),
            Effect::Add { .. }
        ));
        let create = |n: usize| -> AnyRecord {
            crate::records::ConversationCreated {
                meta: Meta::new("a"),
                conversation_id: "new".into(),
                kind: ConversationKind::Group,
                title: None,
                members: (0..n).map(|i| format!("u{i}")).collect(),
            }
            .into()
        };
        assert!(matches!(
            effect_capped(&s, &create(3), 3).unwrap(),
            Effect::Create(_)
        ));
        assert_eq!(effect_capped(&s, &create(4), 3).unwrap(), Effect::Nothing);
    }

    #[test]
    fn members_leave_and_only_the_creator_removes_others() {
        let mut s = state();
        s.members.insert(("c".into(), "b".into()));
        s.members.insert(("c".into(), "d".into()));
        let rm = |actor: &str, member: &str| -> AnyRecord {
            MemberRemoved {
                meta: Meta::new(actor),
                conversation_id: "c".into(),
                member: member.into(),
            }
            .into()
        };
        assert!(matches!(
            effect(&s, &rm("b", "b")).unwrap(),
            Effect::Remove { .. }
        ));
        assert!(matches!(
            effect(&s, &rm("a", "b")).unwrap(),
            Effect::Remove { .. }
        ));
        // A member who did not create the group removes no one but themselves.
        assert_eq!(effect(&s, &rm("d", "b")).unwrap(), Effect::Nothing);
        assert_eq!(effect(&s, &rm("z", "b")).unwrap(), Effect::Nothing);
        assert_eq!(effect(&s, &rm("a", "nobody")).unwrap(), Effect::Nothing);
        // A creator who left has no say.
        s.members.remove(&("c".to_string(), "a".to_string()));
        assert_eq!(effect(&s, &rm("a", "b")).unwrap(), Effect::Nothing);
    }

    #[test]
    fn a_direct_conversation_loses_no_one_but_who_leaves_and_can_be_rejoined() {
        let id = crate::ids::direct_conversation_id("a", "b");
        let mut s = Mem::default();
        s.kinds.insert(id.clone(), ConversationKind::Direct);
        s.members.insert((id.clone(), "a".into()));
        s.members.insert((id.clone(), "b".into()));
        s.creators.insert(id.clone(), "a".into());
        let rm = |actor: &str, member: &str| -> AnyRecord {
            MemberRemoved {
                meta: Meta::new(actor),
                conversation_id: id.clone(),
                member: member.into(),
            }
            .into()
        };
        assert_eq!(effect(&s, &rm("a", "b")).unwrap(), Effect::Nothing);
        assert!(matches!(
            effect(&s, &rm("b", "b")).unwrap(),
            Effect::Remove { .. }
        ));
        s.members.remove(&(id.clone(), "b".to_string()));
        let add = |actor: &str, members: &[&str]| -> AnyRecord {
            MembersAdded {
                meta: Meta::new(actor),
                conversation_id: id.clone(),
                members: members.iter().map(|m| m.to_string()).collect(),
            }
            .into()
        };
        assert_eq!(
            effect(&s, &add("b", &["a", "b"])).unwrap(),
            Effect::Add {
                conversation: &id,
                members: vec!["b"]
            }
        );
        // Nobody else joins a direct conversation, and nobody else brings its pair back.
        assert_eq!(effect(&s, &add("a", &["a", "z"])).unwrap(), Effect::Nothing);
        assert_eq!(effect(&s, &add("a", &["b"])).unwrap(), Effect::Nothing);
        assert_eq!(effect(&s, &add("z", &["a", "b"])).unwrap(), Effect::Nothing);
    }
}
