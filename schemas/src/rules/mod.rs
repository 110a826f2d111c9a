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
//!   conversation it brings back its actor alone (re-creating it after leaving): the
//!   members must be exactly the two users its id is derived from, and the actor one of
//!   them. The other one, if they left, stays out until they come back themselves: no
//!   one is put back into a conversation they left (consent).
//! - A group member's rank: its creator (the actor of its `ConversationCreated`) ranks
//!   above its admins, who rank above other members. Only members have a rank: a creator
//!   who left has no say until added again. A direct conversation has no ranks.
//! - `MemberRemoved` applies if the removed user is a member and the actor is that user
//!   (leaving), or, in a group, a member who outranks them: the creator removes anyone,
//!   an admin removes members who are not admins. No one is removed from a direct
//!   conversation by anyone else. A removed admin is an admin no longer.
//! - `MemberRoleSet` applies in a group if its member is a member other than the creator
//!   and the role changes: the creator or an admin makes a member an admin; the creator
//!   ends anyone's admin role, and an admin may end their own.
//! - `GroupSettingsChanged` applies in a group whose creator or an admin is the actor,
//!   and in a direct conversation whose member is the actor (there only
//!   `disappear_after_ms` counts: both members read its history from its creation).
//! - `MessagesExpired` applies in a conversation that exists.
//! - `MessagePosted` counts if the conversation exists, the sender is a member and the
//!   message id was not posted in the conversation before (first occurrence wins). Its
//!   `reply_to` does not decide anything: views show the quoted message if it is one of
//!   the conversation's.
//! - `MessageEdited`, `MessageDeleted` and `ReactionSet`, the changes made to a message
//!   after it was posted, follow [`changes`].

pub mod changes;

use std::sync::OnceLock;

use uuid::Uuid;

use crate::records::{
    AnyRecord, ConversationCreated, ConversationKind, GroupSettingsChanged, MemberRemoved,
    MemberRoleSet, MessageDeleted, MessageEdited, MessagePosted, MessagesExpired, ReactionSet,
};
pub use changes::{Change, MessageFacts, Refusal};

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
    /// Whether `user` holds the admin role in `conversation` (given by `MemberRoleSet`;
    /// the creator's rank does not depend on it).
    fn is_admin(&self, conversation: &str, user: &str) -> Result<bool, Self::Error>;
    /// The message at `seq` of `conversation`, if it is one of its messages (the rules
    /// kept it) and this consumer keeps messages. A consumer that keeps none leaves the
    /// default, to which every change of [`changes`] targets nothing.
    fn message(&self, _conversation: &str, _seq: i64) -> Result<Option<MessageFacts>, Self::Error> {
        Ok(None)
    }
    /// Whether `user` has reaction `emoji` set on the message at `seq`.
    fn reacted(
        &self,
        _conversation: &str,
        _seq: i64,
        _user: &str,
        _emoji: &str,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}

/// A member's say in a group: see the module's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Not a member (or not of a group): no say over others.
    None,
    Member,
    Admin,
    Creator,
}

/// `user`'s rank in `conversation`.
pub fn rank<S: LogState>(state: &S, conversation: &str, user: &str) -> Result<Rank, S::Error> {
    if state.kind(conversation)? != Some(ConversationKind::Group)
        || !state.is_member(conversation, user)?
    {
        return Ok(Rank::None);
    }
    Ok(if state.creator(conversation)?.as_deref() == Some(user) {
        Rank::Creator
    } else if state.is_admin(conversation, user)? {
        Rank::Admin
    } else {
        Rank::Member
    })
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
    /// `member` becomes an admin (`admin`) or is one no longer.
    Role {
        conversation: &'a str,
        member: &'a str,
        admin: bool,
    },
    Settings(&'a GroupSettingsChanged),
    /// Disappearing messages due at or before its time are gone.
    Expire(&'a MessagesExpired),
    Post(&'a MessagePosted),
    /// The body of the message at `target` becomes the edit's (see [`changes`]).
    Edit(&'a MessageEdited),
    /// The message at `target` is deleted for everyone.
    Delete(&'a MessageDeleted),
    /// A member's reaction is set or taken back.
    React(&'a ReactionSet),
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
        AnyRecord::MemberRemoved(r) => remove(state, r)?,
        AnyRecord::MemberRoleSet(r) => set_role(state, r)?,
        AnyRecord::GroupSettingsChanged(g) => {
            let allowed = match state.kind(&g.conversation_id)? {
                Some(ConversationKind::Group) => {
                    rank(state, &g.conversation_id, &g.meta.actor)? >= Rank::Admin
                }
                Some(ConversationKind::Direct) => {
                    state.is_member(&g.conversation_id, &g.meta.actor)?
                }
                None => false,
            };
            if allowed {
                Effect::Settings(g)
            } else {
                Effect::Nothing
            }
        }
        AnyRecord::MessagesExpired(e) => {
            if state.kind(&e.conversation_id)?.is_some() {
                Effect::Expire(e)
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
        AnyRecord::MessageEdited(e) => kept(state, Change::Edit(e), Effect::Edit(e))?,
        AnyRecord::MessageDeleted(d) => kept(state, Change::Delete(d), Effect::Delete(d))?,
        AnyRecord::ReactionSet(r) => kept(state, Change::React(r), Effect::React(r))?,
        _ => Effect::Nothing,
    })
}

/// `effect` if `change` is kept, else nothing.
fn kept<'a, S: LogState>(
    state: &S,
    change: Change<'_>,
    effect: Effect<'a>,
) -> Result<Effect<'a>, S::Error> {
    Ok(match changes::check(state, change)? {
        Ok(()) => effect,
        Err(_) => Effect::Nothing,
    })
}

fn remove<'a, S: LogState>(state: &S, r: &'a MemberRemoved) -> Result<Effect<'a>, S::Error> {
    let c = &r.conversation_id;
    if !state.is_member(c, &r.member)? {
        return Ok(Effect::Nothing);
    }
    let allowed = r.meta.actor == r.member || {
        let actor = rank(state, c, &r.meta.actor)?;
        actor >= Rank::Admin && actor > rank(state, c, &r.member)?
    };
    Ok(if allowed {
        Effect::Remove {
            conversation: c,
            member: &r.member,
        }
    } else {
        Effect::Nothing
    })
}

fn set_role<'a, S: LogState>(state: &S, r: &'a MemberRoleSet) -> Result<Effect<'a>, S::Error> {
    let c = &r.conversation_id;
    let target = rank(state, c, &r.member)?;
    let actor = rank(state, c, &r.meta.actor)?;
    let allowed = match (r.admin, target) {
        (true, Rank::Member) => actor >= Rank::Admin,
        (false, Rank::Admin) => actor == Rank::Creator || r.meta.actor == r.member,
        // Not a member, the creator, or no change.
        _ => false,
    };
    Ok(if allowed {
        Effect::Role {
            conversation: c,
            member: &r.member,
            admin: r.admin,
        }
    } else {
        Effect::Nothing
    })
}

/// `MembersAdded` in a direct conversation: one of its pair back, by themself.
fn rejoin<'a, S: LogState>(
    state: &S,
    a: &'a crate::records::MembersAdded,
) -> Result<Effect<'a>, S::Error> {
    let [x, y] = a.members.as_slice() else {
        return Ok(Effect::Nothing);
    };
    let pair = x != y && crate::ids::direct_conversation_id(x, y) == a.conversation_id;
    let Some(actor) = [x, y].into_iter().find(|m| **m == a.meta.actor) else {
        return Ok(Effect::Nothing);
    };
    if !pair || state.is_member(&a.conversation_id, actor)? {
        return Ok(Effect::Nothing);
    }
    Ok(Effect::Add {
        conversation: &a.conversation_id,
        members: vec![actor.as_str()],
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
    use crate::records::{MembersAdded, Meta};

    #[derive(Default)]
    struct Mem {
        kinds: HashMap<String, ConversationKind>,
        members: HashSet<(String, String)>,
        seen: HashSet<(String, Uuid)>,
        creators: HashMap<String, String>,
        admins: HashSet<(String, String)>,
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
        fn is_admin(&self, c: &str, u: &str) -> Result<bool, Infallible> {
            Ok(self.admins.contains(&(c.into(), u.into())))
        }
    }

    fn post(sender: &str, cmid: &str) -> AnyRecord {
        MessagePosted {
            meta: Meta::new(sender),
            conversation_id: "c".into(),
            message_id: crate::ids::message_id(sender, cmid),
            client_msg_id: cmid.into(),
            body: "hi".into(),
            reply_to: None,
            attachments: Vec::new(),
            sealed: None,
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
        // The one who stayed cannot bring the one who left back: "a" re-creating it does
        // nothing while "a" is a member.
        assert_eq!(effect(&s, &add("a", &["a", "b"])).unwrap(), Effect::Nothing);
        // Both left: each comes back alone.
        s.members.remove(&(id.clone(), "a".to_string()));
        assert_eq!(
            effect(&s, &add("a", &["a", "b"])).unwrap(),
            Effect::Add {
                conversation: &id,
                members: vec!["a"]
            }
        );
    }

    fn remove_rec(actor: &str, member: &str) -> AnyRecord {
        MemberRemoved {
            meta: Meta::new(actor),
            conversation_id: "c".into(),
            member: member.into(),
        }
        .into()
    }

    fn role(actor: &str, member: &str, admin: bool) -> AnyRecord {
        MemberRoleSet {
            meta: Meta::new(actor),
            conversation_id: "c".into(),
            member: member.into(),
            admin,
        }
        .into()
    }

    /// "a" created "c"; "b" and "d" are members, "e" an admin.
    fn ranked() -> Mem {
        let mut s = state();
        for u in ["b", "d", "e"] {
            s.members.insert(("c".into(), u.into()));
        }
        s.admins.insert(("c".into(), "e".into()));
        s
    }

    #[test]
    fn admins_remove_members_but_not_admins_or_the_creator() {
        let s = ranked();
        let removes = |actor: &str, member: &str| {
            matches!(
                effect(&s, &remove_rec(actor, member)).unwrap(),
                Effect::Remove { .. }
            )
        };
        assert!(removes("e", "b"));
        assert!(!removes("e", "a"), "an admin does not remove the creator");
        assert!(removes("a", "e"), "the creator removes an admin");
        assert!(!removes("b", "e"));
        assert!(removes("e", "e"), "an admin may leave");
        let mut s2 = ranked();
        s2.admins.insert(("c".into(), "d".into()));
        assert_eq!(effect(&s2, &remove_rec("e", "d")).unwrap(), Effect::Nothing);
    }

    #[test]
    fn the_creator_and_admins_grant_the_role_and_only_the_creator_takes_it() {
        let s = ranked();
        let is_role = |r: &AnyRecord, admin: bool| matches!(effect(&s, r).unwrap(), Effect::Role { admin: a, .. } if a == admin);
        assert!(is_role(&role("a", "b", true), true));
        assert!(is_role(&role("e", "b", true), true));
        assert!(
            !is_role(&role("d", "b", true), true),
            "members grant nothing"
        );
        assert!(!is_role(&role("e", "e", true), true), "no change");
        assert!(!is_role(&role("a", "x", true), true), "not a member");
        assert!(!is_role(&role("a", "a", false), false), "the creator stays");
        assert!(is_role(&role("a", "e", false), false));
        assert!(
            is_role(&role("e", "e", false), false),
            "an admin steps down"
        );
        let mut s2 = ranked();
        s2.admins.insert(("c".into(), "d".into()));
        assert_eq!(
            effect(&s2, &role("e", "d", false)).unwrap(),
            Effect::Nothing
        );
        // No roles in a direct conversation.
        s2.kinds.insert("c".into(), ConversationKind::Direct);
        assert_eq!(effect(&s2, &role("a", "b", true)).unwrap(), Effect::Nothing);
    }

    #[test]
    fn only_the_creator_and_admins_change_settings() {
        let s = ranked();
        let set = |actor: &str| -> AnyRecord {
            GroupSettingsChanged {
                meta: Meta::new(actor),
                conversation_id: "c".into(),
                full_history: true,
                disappear_after_ms: None,
            }
            .into()
        };
        assert!(matches!(
            effect(&s, &set("a")).unwrap(),
            Effect::Settings(_)
        ));
        assert!(matches!(
            effect(&s, &set("e")).unwrap(),
            Effect::Settings(_)
        ));
        assert_eq!(effect(&s, &set("b")).unwrap(), Effect::Nothing);
        assert_eq!(effect(&s, &set("z")).unwrap(), Effect::Nothing);
        // In a direct conversation, either member; nobody else.
        let mut direct = ranked();
        direct.kinds.insert("c".into(), ConversationKind::Direct);
        assert!(matches!(
            effect(&direct, &set("b")).unwrap(),
            Effect::Settings(_)
        ));
        assert_eq!(effect(&direct, &set("z")).unwrap(), Effect::Nothing);
    }
}
