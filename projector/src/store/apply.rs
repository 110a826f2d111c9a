//! Applying records to the views. Deterministic: the same records in the same order give
//! the same bytes, which is what makes a rebuild from offset 0 equal a resumed projector.
//!
//! What each record of `events` changes is decided by [`parley_schemas::rules`], the
//! rules every consumer of `events` shares; inbox entries and receipts are applied by
//! [`super::mailbox`]. Undecodable records, and records of a kind their stream does not
//! carry, are skipped; their offsets still advance.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parley_schemas::frames::MessageChange;
use parley_schemas::rules::{self, Effect, LogState, MessageFacts};
use parley_schemas::{decode_any, AnyRecord, ConversationKind};
use parley_sequencer::LogRecord;
use rocksdb::WriteBatch;
use tracing::warn;
use uuid::Uuid;

use super::cache::{MemberKey, RowCache};
use super::keys;
use super::mailbox::MailboxOverlay;
use super::rows::{ConversationRow, MemberRow, MessageRow};
use super::{
    Store, Stream, CF_CHANGES, CF_CONVERSATIONS, CF_MEMBERS, CF_MESSAGES, CF_MESSAGE_IDS,
    CF_OFFSETS, CF_REACTIONS, CF_SEARCH_PENDING, CF_USER_CONVS,
};
use super::{
    CF_DATA_KEYS, CF_ERASE_PENDING, CF_EXPIRING, CF_KEY_MESSAGES, CF_KEY_WAIT, CF_OWNER_KEYS,
};
use crate::error::Result;

/// What applying a batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Next offset to apply, per stream and partition touched.
    pub offsets: BTreeMap<(Stream, i32), i64>,
    pub messages: usize,
    pub skipped: usize,
    /// The messages posted, edited or deleted, for the search index, each once (none
    /// when search is off).
    pub touched: Vec<Touch>,
}

/// A message a batch touched, as the batch leaves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub conversation: String,
    pub seq: i64,
    /// None: deleted, or gone.
    pub row: Option<MessageRow>,
    /// Posted by this batch: no batch before it touched the message, so only a reading
    /// of the views that ran since may have indexed it (the search index adds it
    /// without deleting an earlier copy first when none did).
    pub posted: bool,
    /// The partition of `events` that holds the conversation.
    pub partition: i32,
}

/// A message (`conversation`, `seq`) whose text the record at (`partition`, `offset`)
/// set: its post (`posted`), or a change to it.
pub(super) struct TouchedBy {
    partition: i32,
    offset: i64,
    conversation: String,
    seq: i64,
    posted: bool,
}

/// Changes of one batch, read through before the database.
#[derive(Default)]
pub(super) struct Overlay {
    pub(super) conversations: HashMap<String, ConversationRow>,
    pub(super) members: HashMap<MemberKey, Option<MemberRow>>,
    /// (conversation, seq) → the message as this batch leaves it (posted or changed).
    pub(super) messages: BTreeMap<(String, i64), MessageRow>,
    /// (conversation, message id) → seq.
    pub(super) message_ids: HashMap<(String, Uuid), i64>,
    /// (conversation, seq, user, emoji) → whether it is set after this batch.
    pub(super) reactions: BTreeMap<(String, i64, String, String), bool>,
    /// (conversation, seq of the change) → the kept change.
    pub(super) changes: BTreeMap<(String, i64), MessageChange>,
    /// A message whose text a record set, for the search index.
    pub(super) touched: Vec<TouchedBy>,
    /// Data keys read (`None`: a tombstone erased it).
    pub(super) data_keys: BTreeMap<String, Option<parley_schemas::DataKey>>,
    /// Data key id → the (conversation, seq) of the message it seals.
    pub(super) key_messages: BTreeMap<String, (String, i64)>,
    /// (owner, data key id) → the (conversation, seq) of the message it seals.
    pub(super) owner_keys: BTreeMap<(String, String), (String, i64)>,
    /// Data keys whose tombstones are to be written ([`super::erase`]).
    pub(super) erase: BTreeSet<String>,
    /// Sealed messages applied before their key (`None`: the key came).
    pub(super) key_wait: BTreeMap<String, Option<super::rows::WaitingKey>>,
    /// [`keys::expiring`] entries put (`true`) or gone (`false`).
    pub(super) expiring: BTreeMap<Vec<u8>, bool>,
}

pub(super) struct Batch<'a> {
    pub(super) store: &'a Store,
    pub(super) ov: Overlay,
    pub(super) mail: MailboxOverlay,
}

impl LogState for Batch<'_> {
    type Error = crate::error::Error;

    fn kind(&self, conversation: &str) -> Result<Option<ConversationKind>> {
        Ok(self.conversation(conversation)?.map(|c| c.kind))
    }

    fn is_member(&self, conversation: &str, user: &str) -> Result<bool> {
        Ok(self.member(conversation, user)?.is_some())
    }

    fn member_count(&self, conversation: &str) -> Result<usize> {
        Ok(self.conversation(conversation)?.map_or(0, |c| c.members))
    }

    fn creator(&self, conversation: &str) -> Result<Option<String>> {
        Ok(self.conversation(conversation)?.and_then(|c| c.creator))
    }

    fn is_admin(&self, conversation: &str, user: &str) -> Result<bool> {
        Ok(self
            .member(conversation, user)?
            .is_some_and(|m| m.admin_since.is_some()))
    }

    fn seen_message(&self, conversation: &str, id: &Uuid) -> Result<bool> {
        if self
            .ov
            .message_ids
            .contains_key(&(conversation.to_string(), *id))
        {
            return Ok(true);
        }
        let key = keys::message_id(conversation, id);
        Ok(self
            .store
            .db()
            .get_cf(self.store.cf(CF_MESSAGE_IDS)?, key)?
            .is_some())
    }

    fn message(&self, conversation: &str, seq: i64) -> Result<Option<MessageFacts>> {
        Ok(self.message_row(conversation, seq)?.map(|m| MessageFacts {
            sender: m.sender_id,
            posted_at: m.ts,
            deleted: m.deleted,
            reactions: m.reactions,
        }))
    }

    fn reacted(&self, conversation: &str, seq: i64, user: &str, emoji: &str) -> Result<bool> {
        let key = (
            conversation.to_string(),
            seq,
            user.to_string(),
            emoji.to_string(),
        );
        if let Some(set) = self.ov.reactions.get(&key) {
            return Ok(*set);
        }
        let k = keys::reaction(conversation, seq, user, emoji);
        Ok(self
            .store
            .db()
            .get_cf(self.store.cf(CF_REACTIONS)?, k)?
            .is_some())
    }
}

impl Batch<'_> {
    /// The message at `seq` of `conversation`: this batch's version, else the database's.
    pub(super) fn message_row(&self, conversation: &str, seq: i64) -> Result<Option<MessageRow>> {
        if let Some(m) = self.ov.messages.get(&(conversation.to_string(), seq)) {
            return Ok(Some(m.clone()));
        }
        self.store
            .get_json(CF_MESSAGES, &keys::message(conversation, seq))
    }

    /// Changes the message at `seq` with `change`; false if there is none.
    pub(super) fn change_message(
        &mut self,
        conversation: &str,
        seq: i64,
        change: impl FnOnce(&mut MessageRow),
    ) -> Result<bool> {
        let Some(mut row) = self.message_row(conversation, seq)? else {
            return Ok(false);
        };
        change(&mut row);
        self.ov
            .messages
            .insert((conversation.to_string(), seq), row);
        Ok(true)
    }

    /// Read through this batch's changes, then the rows cache, then the database.
    fn member(&self, conversation: &str, user: &str) -> Result<Option<MemberRow>> {
        let key = (conversation.to_string(), user.to_string());
        if let Some(m) = self.ov.members.get(&key) {
            return Ok(m.clone());
        }
        if let Some(m) = self.store.rows.member(&key) {
            return Ok(m);
        }
        let row = self.store.member_row(conversation, user)?;
        self.store.rows.keep_member(key, row.clone());
        Ok(row)
    }

    /// As [`Batch::member`]. A conversation not (yet) in the database is not kept.
    pub(super) fn conversation(&self, id: &str) -> Result<Option<ConversationRow>> {
        if let Some(c) = self.ov.conversations.get(id) {
            return Ok(Some(c.clone()));
        }
        if let Some(c) = self.store.rows.conversation(id) {
            return Ok(Some(c));
        }
        let row = self.store.conversation_row(id)?;
        if let Some(row) = &row {
            self.store
                .rows
                .keep_conversation(id.to_string(), row.clone());
        }
        Ok(row)
    }

    /// Moves `conversation`'s member count by `delta`.
    fn count_members(&mut self, conversation: &str, delta: isize) -> Result<()> {
        if let Some(mut row) = self.conversation(conversation)? {
            row.members = row.members.saturating_add_signed(delta);
            self.ov.conversations.insert(conversation.to_string(), row);
        }
        Ok(())
    }

    fn apply(&mut self, partition: i32, offset: i64, record: &AnyRecord) -> Result<bool> {
        let effect = rules::effect(self, record)?;
        if let Some(change) = change_at(&effect, offset) {
            self.keep_change(change)?;
        }
        match effect {
            Effect::Nothing => Ok(false),
            Effect::Create(c) => {
                let mut count = 0;
                for m in &c.members {
                    let key = (c.conversation_id.clone(), m.clone());
                    let row = Some(MemberRow::since(offset));
                    count += usize::from(self.ov.members.insert(key, row).is_none());
                }
                let row = ConversationRow {
                    kind: c.kind,
                    title: c.title.clone(),
                    partition,
                    created_at: offset,
                    last_seq: None,
                    last_change: None,
                    members: count,
                    creator: Some(c.meta.actor.clone()),
                    full_history: false,
                    disappear_after_ms: None,
                    disappear_since: None,
                };
                self.ov.conversations.insert(c.conversation_id.clone(), row);
                Ok(true)
            }
            Effect::Add {
                conversation,
                members,
            } => {
                self.count_members(conversation, members.len() as isize)?;
                for m in members {
                    let key = (conversation.to_string(), m.to_string());
                    self.ov.members.insert(key, Some(MemberRow::since(offset)));
                }
                Ok(true)
            }
            Effect::Remove {
                conversation,
                member,
            } => {
                self.count_members(conversation, -1)?;
                self.ov
                    .members
                    .insert((conversation.to_string(), member.to_string()), None);
                Ok(true)
            }
            Effect::Role {
                conversation,
                member,
                admin,
            } => {
                let Some(mut row) = self.member(conversation, member)? else {
                    return Ok(false);
                };
                row.admin_since = admin.then_some(offset);
                self.ov
                    .members
                    .insert((conversation.to_string(), member.to_string()), Some(row));
                Ok(true)
            }
            Effect::Settings(g) => {
                let Some(mut conv) = self.conversation(&g.conversation_id)? else {
                    return Ok(false);
                };
                // A direct conversation is read from its creation by both members.
                conv.full_history = g.full_history && conv.kind == ConversationKind::Group;
                let after = g.disappear_after_ms.filter(|ms| *ms > 0);
                if after != conv.disappear_after_ms {
                    conv.disappear_after_ms = after;
                    conv.disappear_since = after.map(|_| offset);
                }
                self.ov
                    .conversations
                    .insert(g.conversation_id.clone(), conv);
                Ok(true)
            }
            Effect::Post(m) => {
                let Some(mut conv) = self.conversation(&m.conversation_id)? else {
                    return Ok(false);
                };
                self.ov.touched.push(TouchedBy {
                    partition,
                    offset,
                    conversation: m.conversation_id.clone(),
                    seq: offset,
                    posted: true,
                });
                if conv.kind == ConversationKind::Direct {
                    // The first message since they joined: they consent to being seen.
                    if let Some(mut row) = self.member(&m.conversation_id, m.sender())? {
                        if row.wrote.is_none() {
                            row.wrote = Some(offset);
                            self.ov.members.insert(
                                (m.conversation_id.clone(), m.sender().to_string()),
                                Some(row),
                            );
                        }
                    }
                }
                let row = MessageRow {
                    message_id: m.message_id,
                    sender_id: m.meta.actor.clone(),
                    body: m.body.clone(),
                    ts: m.meta.occurred_at,
                    prev_seq: conv.last_seq,
                    reply_to: m.reply_to,
                    edited_at: None,
                    deleted: false,
                    reactions: BTreeMap::new(),
                    changed_seq: None,
                    prev_change: Some(conv.last_change.unwrap_or(-1)),
                    attachments: m.attachments.clone(),
                    // The views need no transit key: they open it with its data key.
                    sealed: m.sealed.clone().map(|s| parley_schemas::Sealed {
                        transit_key: None,
                        transit_wrapped: None,
                        ..s
                    }),
                    sealed_for: None,
                    expires_at: conv
                        .disappear_after_ms
                        .map(|ms| m.meta.occurred_at.saturating_add(ms)),
                    names_key: m
                        .sealed
                        .as_ref()
                        .filter(|_| !m.attachments.is_empty())
                        .map(|s| s.key_id.clone()),
                };
                if let Some(at) = row.expires_at {
                    let key = keys::expiring(at, &m.conversation_id, offset);
                    self.ov.expiring.insert(key, true);
                }
                if let Some(s) = &m.sealed {
                    self.await_key(s, &m.conversation_id, offset, m.sender())?;
                }
                if let Some(s) = &row.sealed {
                    let at = (m.conversation_id.clone(), offset);
                    self.ov.key_messages.insert(s.key_id.clone(), at.clone());
                    self.ov
                        .owner_keys
                        .insert((m.meta.actor.clone(), s.key_id.clone()), at);
                }
                conv.last_seq = Some(offset);
                self.ov
                    .conversations
                    .insert(m.conversation_id.clone(), conv);
                self.ov
                    .message_ids
                    .insert((m.conversation_id.clone(), m.message_id), offset);
                self.ov
                    .messages
                    .insert((m.conversation_id.clone(), offset), row);
                Ok(true)
            }
            Effect::Edit(e) => {
                self.ov.touched.push(TouchedBy {
                    partition,
                    offset,
                    conversation: e.conversation_id.clone(),
                    seq: e.target_seq,
                    posted: false,
                });
                // The text it replaces is shown nowhere again: its key goes (unless its
                // files' names are sealed under it too: it goes with the message).
                if let Some(row) = self.message_row(&e.conversation_id, e.target_seq)? {
                    if let Some(old) = row
                        .sealed
                        .filter(|s| row.names_key.as_ref() != Some(&s.key_id))
                    {
                        self.ov.erase.insert(old.key_id);
                    }
                }
                let sealed = e.sealed.clone().map(|s| parley_schemas::Sealed {
                    transit_key: None,
                    transit_wrapped: None,
                    ..s
                });
                if let Some(s) = &e.sealed {
                    self.await_key(s, &e.conversation_id, e.target_seq, &e.meta.actor)?;
                }
                if let Some(s) = &sealed {
                    let at = (e.conversation_id.clone(), e.target_seq);
                    self.ov.key_messages.insert(s.key_id.clone(), at.clone());
                    self.ov
                        .owner_keys
                        .insert((e.meta.actor.clone(), s.key_id.clone()), at);
                }
                self.change_message(&e.conversation_id, e.target_seq, |row| {
                    row.changed_seq = Some(offset);
                    row.body = e.body.clone();
                    row.sealed_for = sealed.as_ref().map(|_| e.meta.event_id);
                    row.sealed = sealed;
                    row.edited_at = Some(e.meta.occurred_at);
                })
            }
            Effect::Expire(e) => self.apply_expired(partition, offset, e),
            Effect::Delete(d) => {
                self.wipe_message(partition, offset, &d.conversation_id, d.target_seq, true)
            }
            Effect::React(r) => {
                let key = (
                    r.conversation_id.clone(),
                    r.target_seq,
                    r.meta.actor.clone(),
                    r.emoji.clone(),
                );
                self.ov.reactions.insert(key, r.on);
                self.change_message(&r.conversation_id, r.target_seq, |row| {
                    row.changed_seq = Some(offset);
                    let n = row.reactions.entry(r.emoji.clone()).or_insert(0);
                    if r.on {
                        *n += 1;
                    } else {
                        *n = n.saturating_sub(1);
                    }
                    if *n == 0 {
                        row.reactions.remove(&r.emoji);
                    }
                })
            }
        }
    }

    /// The message at (`conv`, `seq`) is gone for everyone, by the record at
    /// (`partition`, `offset`): deleted (`changed`: a change clients are sent), its
    /// author erased, or expired. Its data keys are queued for erasure and every
    /// reaction goes with its text; the row stays as a tombstone, so seqs and `prev_seq`
    /// chains stay whole.
    pub(super) fn wipe_message(
        &mut self,
        partition: i32,
        offset: i64,
        conv: &str,
        seq: i64,
        changed: bool,
    ) -> Result<bool> {
        let Some(row) = self.message_row(conv, seq)? else {
            return Ok(false);
        };
        self.ov.erase.extend(row.keys());
        if row.deleted && !changed {
            return Ok(false);
        }
        for user in self.reactors(conv, seq, &row)? {
            self.ov.reactions.insert(user, false);
        }
        self.ov.touched.push(TouchedBy {
            partition,
            offset,
            conversation: conv.to_string(),
            seq,
            posted: false,
        });
        self.change_message(conv, seq, |row| {
            if changed {
                row.changed_seq = Some(offset);
            }
            row.blank();
            row.reactions.clear();
        })
    }

    /// Keeps a change for sync, and moves its conversation's `last_change`.
    fn keep_change(&mut self, change: MessageChange) -> Result<()> {
        let (conversation, seq) = match &change {
            MessageChange::MessageEdited {
                conversation_id,
                seq,
                ..
            }
            | MessageChange::MessageDeleted {
                conversation_id,
                seq,
                ..
            }
            | MessageChange::Reaction {
                conversation_id,
                seq,
                ..
            } => (conversation_id.clone(), *seq),
        };
        if let Some(mut conv) = self.conversation(&conversation)? {
            conv.last_change = Some(seq);
            self.ov.conversations.insert(conversation.clone(), conv);
        }
        self.ov.changes.insert((conversation, seq), change);
        Ok(())
    }

    /// Every (conversation, seq, user, emoji) set on the message at `seq`, after this
    /// batch's changes so far.
    fn reactors(
        &self,
        conversation: &str,
        seq: i64,
        row: &MessageRow,
    ) -> Result<Vec<(String, i64, String, String)>> {
        let mut set: BTreeMap<(String, i64, String, String), bool> = BTreeMap::new();
        if !row.reactions.is_empty() {
            let prefix = keys::message(conversation, seq);
            let cf = self.store.cf(CF_REACTIONS)?;
            for item in self.store.db().prefix_iterator_cf(cf, &prefix) {
                let (k, _) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                if let Some((user, emoji)) = keys::reaction_parts(&k[prefix.len()..]) {
                    set.insert((conversation.to_string(), seq, user, emoji), true);
                }
            }
        }
        for (k, on) in &self.ov.reactions {
            if k.0 == conversation && k.1 == seq {
                set.insert(k.clone(), *on);
            }
        }
        Ok(set
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(k, _)| k)
            .collect())
    }

    /// Applies one record of `stream`; true if it changed the views.
    fn apply_from(
        &mut self,
        stream: Stream,
        partition: i32,
        offset: i64,
        record: &AnyRecord,
    ) -> Result<bool> {
        match (stream, record) {
            (Stream::Events, AnyRecord::UserErased(u)) => {
                self.apply_user_erased(partition, offset, &u.user_id)
            }
            (Stream::Events, r) => self.apply(partition, offset, r),
            (Stream::Inbox, AnyRecord::InboxEntry(e)) => self.apply_inbox(e),
            (Stream::Receipts, AnyRecord::ReceiptRecorded(r)) => self.apply_receipt(r),
            (Stream::Keys, AnyRecord::DataKey(k)) => {
                self.key_changed(partition, &k.key_id)?;
                self.ov.key_wait.insert(k.key_id.clone(), None);
                self.ov.data_keys.insert(k.key_id.clone(), Some(k.clone()));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// A data key arrived or was erased: the message it seals reads anew, so the search
    /// index takes it again. Its touch is placed at the partition's next offset of
    /// `events`, which the index's commits pass as they do any other.
    fn key_changed(&mut self, partition: i32, key_id: &str) -> Result<()> {
        let at = match self.ov.key_messages.get(key_id) {
            Some(at) => Some(at.clone()),
            None => self
                .store
                .db()
                .get_cf(self.store.cf(CF_KEY_MESSAGES)?, key_id.as_bytes())?
                .and_then(|v| serde_json::from_slice::<(String, i64)>(&v).ok()),
        };
        if let Some((conv, seq)) = at {
            let next = self.store.next_offset(Stream::Events, partition)?;
            self.ov.touched.push(TouchedBy {
                partition,
                offset: next,
                conversation: conv,
                seq,
                posted: false,
            });
        }
        Ok(())
    }

    /// A sealed message (or edit) at (`conv`, `seq`) whose key this replica has not
    /// read yet: noted, so that the key is written again if it never comes (its append
    /// can fail while the message's succeeds).
    fn await_key(
        &mut self,
        s: &parley_schemas::Sealed,
        conv: &str,
        seq: i64,
        owner: &str,
    ) -> Result<()> {
        let known = match self.ov.data_keys.get(&s.key_id) {
            Some(k) => k.is_some(),
            None => self
                .store
                .db()
                .get_cf(self.store.cf(CF_DATA_KEYS)?, s.key_id.as_bytes())?
                .is_some(),
        };
        if let (false, Some(transit_key), Some(wrapped)) =
            (known, &s.transit_key, &s.transit_wrapped)
        {
            let waiting = super::rows::WaitingKey {
                conversation: conv.to_string(),
                seq,
                owner: owner.to_string(),
                transit_key: transit_key.clone(),
                transit_wrapped: wrapped.clone(),
                since_ms: parley_schemas::now_millis(),
            };
            self.ov.key_wait.insert(s.key_id.clone(), Some(waiting));
        }
        Ok(())
    }

    /// A tombstone on `keys`: the data key `key_id` is erased.
    fn erase_key(&mut self, partition: i32, key_id: &str) -> Result<()> {
        self.key_changed(partition, key_id)?;
        self.ov.key_wait.insert(key_id.to_string(), None);
        self.ov.data_keys.insert(key_id.to_string(), None);
        Ok(())
    }

    /// The batch's writes, and the rows it changed, for the rows cache once written.
    fn into_write_batch(
        self,
        offsets: &BTreeMap<(Stream, i32), i64>,
    ) -> Result<(WriteBatch, Changed)> {
        let s = self.store;
        let mut wb = WriteBatch::default();
        self.mail.write(s, &mut wb)?;
        let mut conversations: Vec<_> = self.ov.conversations.into_iter().collect();
        conversations.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, row) in &conversations {
            wb.put_cf(
                s.cf(CF_CONVERSATIONS)?,
                id.as_bytes(),
                serde_json::to_vec(row)?,
            );
        }
        let mut members: Vec<_> = self.ov.members.into_iter().collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        for ((conv, user), row) in &members {
            match row {
                Some(row) => {
                    wb.put_cf(
                        s.cf(CF_MEMBERS)?,
                        keys::pair(conv, user),
                        serde_json::to_vec(row)?,
                    );
                    wb.put_cf(s.cf(CF_USER_CONVS)?, keys::pair(user, conv), b"");
                }
                None => {
                    wb.delete_cf(s.cf(CF_MEMBERS)?, keys::pair(conv, user));
                    wb.delete_cf(s.cf(CF_USER_CONVS)?, keys::pair(user, conv));
                }
            }
        }
        for ((conv, seq), row) in self.ov.messages {
            wb.put_cf(
                s.cf(CF_MESSAGES)?,
                keys::message(&conv, seq),
                serde_json::to_vec(&row)?,
            );
        }
        for ((conv, seq), change) in self.ov.changes {
            wb.put_cf(
                s.cf(CF_CHANGES)?,
                keys::message(&conv, seq),
                serde_json::to_vec(&change)?,
            );
        }
        for ((conv, seq, user, emoji), on) in self.ov.reactions {
            let key = keys::reaction(&conv, seq, &user, &emoji);
            if on {
                wb.put_cf(s.cf(CF_REACTIONS)?, key, b"");
            } else {
                wb.delete_cf(s.cf(CF_REACTIONS)?, key);
            }
        }
        for (id, key) in &self.ov.data_keys {
            let cf = s.cf(CF_DATA_KEYS)?;
            match key {
                Some(k) => wb.put_cf(cf, id.as_bytes(), serde_json::to_vec(k)?),
                None => wb.delete_cf(cf, id.as_bytes()),
            }
        }
        for (id, at) in &self.ov.key_messages {
            wb.put_cf(
                s.cf(CF_KEY_MESSAGES)?,
                id.as_bytes(),
                serde_json::to_vec(at)?,
            );
        }
        for ((owner, id), at) in &self.ov.owner_keys {
            wb.put_cf(
                s.cf(CF_OWNER_KEYS)?,
                keys::pair(owner, id),
                serde_json::to_vec(at)?,
            );
        }
        for id in &self.ov.erase {
            wb.put_cf(s.cf(CF_ERASE_PENDING)?, id.as_bytes(), []);
        }
        for (key, put) in &self.ov.expiring {
            let cf = s.cf(CF_EXPIRING)?;
            if *put {
                wb.put_cf(cf, key, []);
            } else {
                wb.delete_cf(cf, key);
            }
        }
        for (id, waiting) in &self.ov.key_wait {
            let cf = s.cf(CF_KEY_WAIT)?;
            match waiting {
                Some(w) => wb.put_cf(cf, id.as_bytes(), serde_json::to_vec(w)?),
                None => wb.delete_cf(cf, id.as_bytes()),
            }
        }
        // In key order, not the map's: message ids are random, so each insert searches
        // the memtable's skip list from the top, and in key order successive searches
        // walk the same upper nodes, still in the cache (those searches, one profiled
        // one-session burst each: 5.9% of the process's samples before, 4.5% after, 2.8%
        // with the smaller memtable of `store::cf_options`: docs/benchmarks.md).
        let mut ids: Vec<(Vec<u8>, i64)> = self
            .ov
            .message_ids
            .into_iter()
            .map(|((conv, id), seq)| (keys::message_id(&conv, &id), seq))
            .collect();
        ids.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let cf = s.cf(CF_MESSAGE_IDS)?;
        for (key, seq) in ids {
            wb.put_cf(cf, key, seq.to_be_bytes());
        }
        let touched = if s.searchable() {
            &self.ov.touched[..]
        } else {
            &[]
        };
        // One entry per partition: the messages its records in this batch touched, keyed
        // by the first such record's offset (a commit of the index clears the entries
        // before its offsets).
        type FirstAndMessages<'a> = (i64, Vec<(&'a String, i64)>);
        let mut by_partition: BTreeMap<i32, FirstAndMessages> = BTreeMap::new();
        for t in touched {
            let entry = by_partition
                .entry(t.partition)
                .or_insert((t.offset, Vec::new()));
            entry.0 = entry.0.min(t.offset);
            entry.1.push((&t.conversation, t.seq));
        }
        for (p, (first, messages)) in by_partition {
            let key = keys::touched_from(p, first);
            wb.put_cf(
                s.cf(CF_SEARCH_PENDING)?,
                key,
                serde_json::to_vec(&messages)?,
            );
        }
        // The consumed offsets go in the same batch as the views they produced.
        for ((stream, p), next) in offsets {
            wb.put_cf(s.cf(CF_OFFSETS)?, stream.offset_key(*p), next.to_be_bytes());
        }
        Ok((
            wb,
            Changed {
                conversations,
                members,
            },
        ))
    }
}

/// The rows a batch wrote.
struct Changed {
    conversations: Vec<(String, ConversationRow)>,
    members: Vec<(MemberKey, Option<MemberRow>)>,
}

impl Changed {
    /// Called once the batch is written: the cache then holds what the database does.
    fn keep(self, cache: &RowCache) {
        for (id, row) in self.conversations {
            cache.keep_conversation(id, row);
        }
        for (key, row) in self.members {
            cache.keep_member(key, row);
        }
    }
}

impl Store {
    /// Applies `records` (each with the stream it was read from, in log order within
    /// each partition) atomically. Blocking.
    pub fn apply(&self, records: &[(Stream, LogRecord)]) -> Result<Applied> {
        let mut batch = Batch {
            store: self,
            ov: Overlay::default(),
            mail: MailboxOverlay::default(),
        };
        let mut applied = Applied::default();
        for (stream, r) in records {
            applied.offsets.insert((*stream, r.partition), r.offset + 1);
            let Some(value) = &r.value else {
                if let (Stream::Keys, Some(id)) = (stream, r.key.as_deref()) {
                    batch.erase_key(r.partition, &String::from_utf8_lossy(id))?;
                }
                continue;
            };
            match decode_any(value) {
                Ok(record) => {
                    let is_message = matches!(record, AnyRecord::MessagePosted(_));
                    if batch.apply_from(*stream, r.partition, r.offset, &record)? {
                        applied.messages += usize::from(is_message);
                    } else {
                        applied.skipped += 1;
                    }
                }
                Err(e) => {
                    applied.skipped += 1;
                    warn!(partition = r.partition, offset = r.offset, error = %e, "undecodable record skipped");
                }
            }
        }
        if self.searchable() {
            // Each message once, as the batch leaves it.
            let mut keys: BTreeMap<(&String, i64), (bool, i32)> = BTreeMap::new();
            for t in &batch.ov.touched {
                let e = keys
                    .entry((&t.conversation, t.seq))
                    .or_insert((false, t.partition));
                if t.posted {
                    *e = (true, t.partition);
                }
            }
            applied.touched = keys
                .into_iter()
                .map(|((c, s), (posted, partition))| {
                    Ok(Touch {
                        conversation: c.clone(),
                        seq: s,
                        row: batch.message_row(c, s)?,
                        posted,
                        partition,
                    })
                })
                .collect::<Result<_>>()?;
        }
        let (wb, changed) = batch.into_write_batch(&applied.offsets)?;
        self.db().write(wb)?;
        changed.keep(&self.rows);
        // The index takes each message's text as readers see it.
        for t in applied.touched.iter_mut() {
            if let Some(row) = &mut t.row {
                self.open_row(&t.conversation, row)?;
            }
        }
        Ok(applied)
    }

    pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> Result<Option<T>> {
        match self.db().get_cf(self.cf(cf)?, key)? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }
}

/// The change a kept effect makes to a message, as clients apply it.
fn change_at(effect: &Effect<'_>, seq: i64) -> Option<MessageChange> {
    Some(match effect {
        Effect::Edit(e) => MessageChange::MessageEdited {
            conversation_id: e.conversation_id.clone(),
            seq,
            target_seq: e.target_seq,
            sender_id: e.meta.actor.clone(),
            body: e.body.clone(),
            edited_at: e.meta.occurred_at,
        },
        Effect::Delete(d) => MessageChange::MessageDeleted {
            conversation_id: d.conversation_id.clone(),
            seq,
            target_seq: d.target_seq,
            actor: d.meta.actor.clone(),
        },
        Effect::React(r) => MessageChange::Reaction {
            conversation_id: r.conversation_id.clone(),
            seq,
            target_seq: r.target_seq,
            user_id: r.meta.actor.clone(),
            emoji: r.emoji.clone(),
            on: r.on,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use parley_schemas::{ConversationCreated, MemberRemoved, MembersAdded, MessagePosted, Meta};

    use crate::views::HistoryQuery;

    use super::*;

    fn post(sender: &str, id: u128) -> AnyRecord {
        MessagePosted {
            meta: Meta::new(sender),
            conversation_id: "g".into(),
            message_id: Uuid::from_u128(id),
            client_msg_id: format!("c-{id}"),
            body: "hi".into(),
            reply_to: None,
            attachments: Vec::new(),
            sealed: None,
        }
        .into()
    }

    /// A group's life: members leave and come back, a non-member posts, a send is
    /// retried. Each record's effect depends on rows earlier records changed.
    fn history() -> Vec<(Stream, LogRecord)> {
        as_log(&life())
    }

    fn life() -> Vec<AnyRecord> {
        vec![
            ConversationCreated {
                meta: Meta::new("amy"),
                conversation_id: "g".into(),
                kind: ConversationKind::Group,
                title: None,
                members: vec!["amy".into(), "bob".into(), "cat".into()],
            }
            .into(),
            post("bob", 1),
            MemberRemoved {
                meta: Meta::new("cat"),
                conversation_id: "g".into(),
                member: "cat".into(),
            }
            .into(),
            post("cat", 2), // no longer a member: not stored
            post("bob", 1), // a retry of the first: not stored again
            MembersAdded {
                meta: Meta::new("amy"),
                conversation_id: "g".into(),
                members: vec!["cat".into(), "dan".into()],
            }
            .into(),
            post("cat", 3),
            post("dan", 4),
            post("eve", 5), // never a member
        ]
    }

    fn as_log(records: &[AnyRecord]) -> Vec<(Stream, LogRecord)> {
        records
            .iter()
            .enumerate()
            .map(|(i, r)| crate::store::event_at(0, i as i64, r).unwrap())
            .collect()
    }

    /// The rows cache must leave the views as the database alone would: a history
    /// applied in one batch, one record per batch, or in pairs, gives the same views.
    #[test]
    fn views_do_not_depend_on_how_the_log_is_cut_into_batches() {
        let records = history();
        let mut checksums = Vec::new();
        for size in [records.len(), 1, 2] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let mut messages = 0;
            for chunk in records.chunks(size) {
                messages += store.apply(chunk).unwrap().messages;
            }
            assert_eq!(
                messages, 3,
                "batches of {size}: bob's, cat's after her return, dan's"
            );
            let conv = store.conversation_row("g").unwrap().unwrap();
            assert_eq!(
                (conv.members, conv.last_seq),
                (4, Some(7)),
                "batches of {size}"
            );
            assert!(store.is_member("g", "cat").unwrap());
            checksums.push(store.checksum().unwrap());
        }
        assert!(checksums.windows(2).all(|w| w[0] == w[1]), "{checksums:?}");
    }

    /// [`life`] (bob's message at seq 1, dan's at 7), then changes to its messages,
    /// some of them refused; amy's reply lands at seq 16.
    fn changes() -> Vec<(Stream, LogRecord)> {
        use parley_schemas::{MessageDeleted, MessageEdited, ReactionSet};
        let edit = |actor: &str, seq: i64, body: &str| -> AnyRecord {
            MessageEdited {
                meta: Meta::new(actor),
                conversation_id: "g".into(),
                target_seq: seq,
                body: body.into(),
                sealed: None,
            }
            .into()
        };
        let react = |actor: &str, seq: i64, emoji: &str, on: bool| -> AnyRecord {
            ReactionSet {
                meta: Meta::new(actor),
                conversation_id: "g".into(),
                target_seq: seq,
                emoji: emoji.into(),
                on,
            }
            .into()
        };
        let delete = |actor: &str, seq: i64| -> AnyRecord {
            MessageDeleted {
                meta: Meta::new(actor),
                conversation_id: "g".into(),
                target_seq: seq,
            }
            .into()
        };
        let mut records = life();
        records.extend([
            edit("bob", 1, "hello"),      // 9: kept
            edit("cat", 1, "not yours"),  // 10: not the author
            react("dan", 1, "👍", true),  // 11
            react("cat", 1, "👍", true),  // 12
            react("dan", 1, "👍", true),  // 13: already set
            react("cat", 1, "👍", false), // 14
            react("dan", 7, "🎉", true),  // 15: on dan's own message
            MessagePosted {
                meta: Meta::new("amy"),
                conversation_id: "g".into(),
                message_id: Uuid::from_u128(6),
                client_msg_id: "c-6".into(),
                body: "replying".into(),
                reply_to: Some(1),
                attachments: Vec::new(),
                sealed: None,
            }
            .into(), // 16
            delete("bob", 7),             // 17: bob is no one's superior
            delete("amy", 7),             // 18: the creator deletes dan's
            edit("dan", 7, "too late"),   // 19: deleted
            react("bob", 7, "👍", true),  // 20: deleted
        ]);
        as_log(&records)
    }

    #[test]
    fn edits_deletions_and_reactions_follow_the_rules_whatever_the_batches() {
        let records = changes();
        let mut checksums = Vec::new();
        for size in [records.len(), 1, 3] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            for chunk in records.chunks(size) {
                store.apply(chunk).unwrap();
            }
            let page = store
                .history(
                    "g",
                    &HistoryQuery {
                        limit: 50,
                        viewer: Some("dan".into()),
                        ..Default::default()
                    },
                )
                .unwrap();
            let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, [1, 6, 7, 16], "batches of {size}");
            let bob = &page.messages[0];
            assert_eq!(bob.body, "hello");
            assert!(bob.edited && bob.edited_at.is_some() && !bob.deleted);
            assert_eq!(bob.reactions, BTreeMap::from([("👍".to_string(), 1)]));
            assert_eq!(bob.my_reactions, ["👍"]);
            let dan = &page.messages[2];
            assert!(dan.deleted && dan.body.is_empty() && !dan.edited);
            assert!(
                dan.reactions.is_empty(),
                "a deletion takes the reactions too"
            );
            assert_eq!(dan.prev_seq, Some(6), "the tombstone keeps its place");
            let reply = &page.messages[3];
            let quoted = reply.reply_to.as_ref().unwrap();
            assert_eq!(
                (
                    quoted.seq,
                    quoted.sender_id.as_deref(),
                    quoted.preview.as_deref()
                ),
                (1, Some("bob"), Some("hello")),
                "the quote shows the current text"
            );
            checksums.push(store.checksum().unwrap());
        }
        assert!(checksums.windows(2).all(|w| w[0] == w[1]), "{checksums:?}");
    }

    #[test]
    fn mentions_since_the_read_mark_are_counted_by_the_current_text() {
        use parley_schemas::MessageDeleted;
        let say = |id: u128, body: &str| -> AnyRecord {
            MessagePosted {
                meta: Meta::new("amy"),
                conversation_id: "g".into(),
                message_id: Uuid::from_u128(id),
                client_msg_id: format!("c-{id}"),
                body: body.into(),
                reply_to: None,
                attachments: Vec::new(),
                sealed: None,
            }
            .into()
        };
        let records = vec![
            ConversationCreated {
                meta: Meta::new("amy"),
                conversation_id: "g".into(),
                kind: ConversationKind::Group,
                title: None,
                members: vec!["amy".into(), "bob".into()],
            }
            .into(),
            say(1, "hi @bob"),                        // 1
            say(2, "hello"),                          // 2
            say(3, "@bob.smith is not bob; @bob is"), // 3
            say(4, "mail bob@example.com"),           // 4: no mention
            MessageDeleted {
                meta: Meta::new("amy"),
                conversation_id: "g".into(),
                target_seq: 1,
            }
            .into(),
        ];
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.apply(&as_log(&records)).unwrap();
        let bob = store.user_conversations("bob", true).unwrap();
        assert_eq!(
            (bob[0].unread, bob[0].mentions),
            (3, 1),
            "the deleted one is neither unread nor a mention"
        );
        let amy = store.user_conversations("amy", true).unwrap();
        assert_eq!(
            (amy[0].unread, amy[0].mentions),
            (0, 0),
            "one's own messages"
        );
    }
}
