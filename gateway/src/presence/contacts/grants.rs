//! [`Grants`]: whose presence each user connected here is shown, and through which
//! conversations: the in-memory index the presence frames follow. No I/O; the caller
//! decides from the views and the log what to grant and revoke.

use std::collections::{HashMap, HashSet};

use parley_schemas::ConversationKind;

/// What one change did to a local user's contacts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub user: String,
    /// Contacts they are now shown (and were not).
    pub added: Vec<String>,
    /// Contacts they are no longer shown.
    pub removed: Vec<String>,
}

impl Delta {
    fn new(user: &str) -> Self {
        Delta {
            user: user.to_string(),
            ..Delta::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Local user → contact → the conversations that make them one.
#[derive(Default)]
pub struct Grants {
    of: HashMap<String, HashMap<String, HashSet<String>>>,
    /// Local user → the conversations looked at, with their kind.
    known: HashMap<String, HashMap<String, ConversationKind>>,
    /// Contact → the local users shown them.
    watchers: HashMap<String, HashSet<String>>,
    /// Conversation → the local users with a contact through it.
    via: HashMap<String, HashSet<String>>,
}

impl Grants {
    /// Whether `user`'s contacts are loaded here.
    pub fn is_loaded(&self, user: &str) -> bool {
        self.of.contains_key(user)
    }

    /// Whether `user` is shown `contact`'s presence.
    pub fn shows(&self, user: &str, contact: &str) -> bool {
        self.of.get(user).is_some_and(|c| c.contains_key(contact))
    }

    /// The kind of `conversation`, if `user`'s contacts were looked up in it.
    pub fn known(&self, user: &str, conversation: &str) -> Option<ConversationKind> {
        self.known.get(user)?.get(conversation).copied()
    }

    /// The local users shown `contact`.
    pub fn watchers(&self, contact: &str) -> Vec<String> {
        self.watchers
            .get(contact)
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether anyone here is shown `contact`.
    pub fn is_watched(&self, contact: &str) -> bool {
        self.watchers.contains_key(contact)
    }

    /// Everyone shown to someone here.
    pub fn watched(&self) -> Vec<String> {
        self.watchers.keys().cloned().collect()
    }

    /// The contacts of `user`.
    pub fn contacts(&self, user: &str) -> Vec<String> {
        self.of
            .get(user)
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The local users with a contact through `conversation`.
    pub fn users_of(&self, conversation: &str) -> Vec<String> {
        self.via
            .get(conversation)
            .map(|u| u.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces everything of `user`: `grants` (contact → conversations) and the
    /// conversations looked at.
    pub fn install(
        &mut self,
        user: &str,
        grants: HashMap<String, HashSet<String>>,
        known: HashMap<String, ConversationKind>,
    ) -> Delta {
        let before: HashSet<String> = self.contacts(user).into_iter().collect();
        self.drop_user(user);
        self.of.insert(user.to_string(), HashMap::new());
        self.known.insert(user.to_string(), known);
        for (contact, convs) in grants {
            for c in convs {
                self.add(user, &contact, &c);
            }
        }
        let after: HashSet<String> = self.contacts(user).into_iter().collect();
        Delta {
            user: user.to_string(),
            added: after.difference(&before).cloned().collect(),
            removed: before.difference(&after).cloned().collect(),
        }
    }

    /// `user`'s contacts through `conversation` become exactly `contacts` (a loaded
    /// user only).
    pub fn set_via(
        &mut self,
        user: &str,
        conversation: &str,
        kind: ConversationKind,
        contacts: &HashSet<String>,
    ) -> Delta {
        let mut delta = Delta::new(user);
        if !self.is_loaded(user) {
            return delta;
        }
        self.known
            .entry(user.to_string())
            .or_default()
            .insert(conversation.to_string(), kind);
        let now: Vec<String> = self.of[user]
            .iter()
            .filter(|(_, convs)| convs.contains(conversation))
            .map(|(c, _)| c.clone())
            .collect();
        for c in now.iter().filter(|c| !contacts.contains(*c)) {
            if self.take(user, c, conversation) {
                delta.removed.push(c.clone());
            }
        }
        for c in contacts {
            if c != user && self.add(user, c, conversation) {
                delta.added.push(c.clone());
            }
        }
        delta
    }

    /// `member` left (or was removed from) `conversation`: they lose their contacts
    /// through it, and everyone loses them through it.
    pub fn leave(&mut self, conversation: &str, member: &str) -> Vec<Delta> {
        let mut out = Vec::new();
        if let Some(known) = self.known.get_mut(member) {
            known.remove(conversation);
        }
        if self.is_loaded(member) {
            let mut d = Delta::new(member);
            for c in self.contacts(member) {
                if self.take(member, &c, conversation) {
                    d.removed.push(c);
                }
            }
            out.push(d);
        }
        for u in self.via.get(conversation).cloned().unwrap_or_default() {
            if u != member && self.take(&u, member, conversation) {
                let mut d = Delta::new(&u);
                d.removed.push(member.to_string());
                out.push(d);
            }
        }
        out.retain(|d| !d.is_empty());
        out
    }

    /// `user` has no session here any more.
    pub fn drop_user(&mut self, user: &str) {
        self.known.remove(user);
        for c in self.contacts(user) {
            for conv in self.of[user][&c].clone() {
                self.take(user, &c, &conv);
            }
        }
        self.of.remove(user);
    }

    /// Adds (user, contact, conversation); true if `contact` is a new contact.
    fn add(&mut self, user: &str, contact: &str, conversation: &str) -> bool {
        let convs = self
            .of
            .entry(user.to_string())
            .or_default()
            .entry(contact.to_string())
            .or_default();
        let new = convs.is_empty();
        convs.insert(conversation.to_string());
        self.watchers
            .entry(contact.to_string())
            .or_default()
            .insert(user.to_string());
        self.via
            .entry(conversation.to_string())
            .or_default()
            .insert(user.to_string());
        new
    }

    /// Removes (user, contact, conversation); true if `contact` is no longer a contact.
    fn take(&mut self, user: &str, contact: &str, conversation: &str) -> bool {
        let Some(contacts) = self.of.get_mut(user) else {
            return false;
        };
        let Some(convs) = contacts.get_mut(contact) else {
            return false;
        };
        if !convs.remove(conversation) {
            return false;
        }
        if !contacts.values().any(|c| c.contains(conversation)) {
            if let Some(v) = self.via.get_mut(conversation) {
                v.remove(user);
                if v.is_empty() {
                    self.via.remove(conversation);
                }
            }
        }
        let gone = contacts.get(contact).is_some_and(|c| c.is_empty());
        if gone {
            contacts.remove(contact);
            if let Some(w) = self.watchers.get_mut(contact) {
                w.remove(user);
                if w.is_empty() {
                    self.watchers.remove(contact);
                }
            }
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_contact_stays_while_any_conversation_grants_them() {
        let mut g = Grants::default();
        let mut grants = HashMap::new();
        grants.insert("bob".to_string(), set(&["d-ab", "team"]));
        grants.insert("cat".to_string(), set(&["team"]));
        let d = g.install("amy", grants, HashMap::new());
        assert_eq!(d.added.len(), 2);
        assert!(g.shows("amy", "bob") && g.shows("amy", "cat"));
        // Cat leaves the team: amy no longer sees cat; bob stays (their direct chat).
        assert_eq!(
            g.leave("team", "cat"),
            vec![Delta {
                user: "amy".into(),
                added: vec![],
                removed: vec!["cat".into()]
            }]
        );
        assert!(!g.is_watched("cat"));
        // Bob leaves the team: still shown through the direct conversation.
        assert!(g.leave("team", "bob").is_empty());
        assert!(g.shows("amy", "bob"));
        // Amy leaves the direct conversation: bob is gone.
        let d = g.leave("d-ab", "amy");
        assert_eq!(d[0].removed, vec!["bob".to_string()]);
        assert!(g.contacts("amy").is_empty());
        assert!(g.watched().is_empty());
    }

    #[test]
    fn set_via_replaces_one_conversations_contacts() {
        let mut g = Grants::default();
        g.install("amy", HashMap::new(), HashMap::new());
        let d = g.set_via(
            "amy",
            "team",
            ConversationKind::Group,
            &set(&["amy", "bob", "cat"]),
        );
        assert_eq!(d.added.len(), 2, "not herself");
        let d = g.set_via("amy", "team", ConversationKind::Group, &set(&["bob"]));
        assert_eq!(d.removed, vec!["cat".to_string()]);
        assert_eq!(g.known("amy", "team"), Some(ConversationKind::Group));
        assert_eq!(g.users_of("team"), vec!["amy".to_string()]);
        // Not loaded: nothing.
        assert!(g
            .set_via("zed", "team", ConversationKind::Group, &set(&["bob"]))
            .is_empty());
        g.drop_user("amy");
        assert!(g.watched().is_empty() && g.users_of("team").is_empty());
    }
}
