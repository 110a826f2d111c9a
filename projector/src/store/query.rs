//! Read queries over the views. Blocking (RocksDB); callers run them off the async threads.

use std::collections::BTreeMap;

use parley_schemas::frames::{MessageChange, MessageView, ReplyTo, REPLY_PREVIEW_CHARS};
use rocksdb::{Direction, IteratorMode};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::keys;
use super::rows::{ConversationRow, MemberRow, MessageRow, ReceiptRow};
use super::{
    Store, Stream, CF_CHANGES, CF_CONVERSATIONS, CF_MEMBERS, CF_MESSAGES, CF_MESSAGE_IDS,
    CF_OFFSETS, CF_REACTIONS, CF_RECEIPTS, CF_USER_CONVS, VIEW_CFS,
};
use crate::error::{Error, Result};
use crate::views::{
    ConversationSummary, ConversationView, HistoryPage, HistoryQuery, PartitionSnapshot,
    SnapshotConversation,
};

/// The most messages one history page holds.
pub const MAX_PAGE: u32 = 1000;

/// A partition snapshot lists the messages among this many records before its offset
/// (at least the fanout-worker's dedup window of 20,000 messages, in records).
pub const RECENT_SPAN: i64 = 20_000;

/// Unread counts stop here: a conversation with more shows this many.
pub const UNREAD_CAP: u64 = 1000;

impl Store {
    /// Next offset to apply, per stream and partition that has any.
    /// The next offset of `stream`'s partition `p` to apply (0: none applied).
    pub fn next_offset(&self, stream: Stream, p: i32) -> Result<i64> {
        Ok(self
            .db()
            .get_cf(self.cf(CF_OFFSETS)?, stream.offset_key(p))?
            .and_then(|v| <[u8; 8]>::try_from(&v[..]).ok())
            .map_or(0, i64::from_be_bytes))
    }

    pub fn offsets(&self) -> Result<BTreeMap<(Stream, i32), i64>> {
        let mut out = BTreeMap::new();
        for item in self
            .db()
            .iterator_cf(self.cf(CF_OFFSETS)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            let key = Stream::of_key(&k).ok_or_else(|| Error::Store("bad offset key".into()))?;
            let o: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| Error::Store("bad offset value".into()))?;
            out.insert(key, i64::from_be_bytes(o));
        }
        Ok(out)
    }

    pub fn conversation_row(&self, id: &str) -> Result<Option<ConversationRow>> {
        self.get_json(CF_CONVERSATIONS, id.as_bytes())
    }

    /// Members of a conversation with the offset they joined at, in user order.
    pub fn members(&self, conv: &str) -> Result<Vec<(String, i64)>> {
        Ok(self
            .member_rows(conv)?
            .into_iter()
            .map(|(u, row)| (u, row.since))
            .collect())
    }

    /// Members of a conversation with their rows, in user order.
    pub fn member_rows(&self, conv: &str) -> Result<Vec<(String, MemberRow)>> {
        let prefix = keys::prefix(conv);
        let mut out = Vec::new();
        for item in self.scan_prefix(CF_MEMBERS, &prefix)? {
            let (k, v) = item?;
            let user = keys::second(&k).ok_or_else(|| Error::Store("bad member key".into()))?;
            out.push((user, serde_json::from_slice(&v)?));
        }
        Ok(out)
    }

    pub fn is_member(&self, conv: &str, user: &str) -> Result<bool> {
        Ok(self
            .db()
            .get_cf(self.cf(CF_MEMBERS)?, keys::pair(conv, user))?
            .is_some())
    }

    pub fn member_row(&self, conv: &str, user: &str) -> Result<Option<MemberRow>> {
        self.get_json(CF_MEMBERS, &keys::pair(conv, user))
    }

    /// The offset after which `user` reads `conv`'s history, if they are a member: the
    /// record that made them one, or, in a group whose history is open to new members,
    /// its creation.
    pub fn history_from(&self, conv: &str, user: &str) -> Result<Option<i64>> {
        let Some(member) = self.member_row(conv, user)? else {
            return Ok(None);
        };
        Ok(Some(match self.conversation_row(conv)? {
            Some(row) if row.full_history => row.created_at,
            _ => member.since,
        }))
    }

    pub fn conversation(&self, id: &str) -> Result<Option<ConversationView>> {
        let Some(row) = self.conversation_row(id)? else {
            return Ok(None);
        };
        let rows = self.member_rows(id)?;
        Ok(Some(ConversationView {
            conversation_id: id.to_string(),
            kind: row.kind,
            title: row.title,
            admins: rows
                .iter()
                .filter(|(_, m)| m.admin_since.is_some())
                .map(|(u, _)| u.clone())
                .collect(),
            wrote: rows
                .iter()
                .filter(|(_, m)| m.wrote.is_some())
                .map(|(u, _)| u.clone())
                .collect(),
            members: rows.into_iter().map(|(u, _)| u).collect(),
            last_seq: row.last_seq,
            partition: row.partition,
            creator: row.creator,
            full_history: row.full_history,
            disappear_after_ms: row.disappear_after_ms,
            disappear_since: row.disappear_since,
        }))
    }

    /// `user`'s conversations; with `unread`, each with its unread count (a scan of up
    /// to [`UNREAD_CAP`] messages per conversation), else with 0.
    pub fn user_conversations(&self, user: &str, unread: bool) -> Result<Vec<ConversationSummary>> {
        let prefix = keys::prefix(user);
        let mut out = Vec::new();
        for item in self.scan_prefix(CF_USER_CONVS, &prefix)? {
            let (k, _) = item?;
            let conv = keys::second(&k).ok_or_else(|| Error::Store("bad user_convs key".into()))?;
            if let Some(row) = self.conversation_row(&conv)? {
                let (unread, mentions) = if unread {
                    self.unread(&conv, user, row.last_seq)?
                } else {
                    (0, 0)
                };
                let joined = self.history_from(&conv, user)?;
                out.push(ConversationSummary {
                    conversation_id: conv,
                    kind: row.kind,
                    title: row.title,
                    last_seq: row.last_seq,
                    last_change: row.last_change,
                    unread,
                    mentions,
                    members: row.members,
                    joined,
                });
            }
        }
        Ok(out)
    }

    /// How many messages of `conv` from others `user` has not read (those after the
    /// user's read mark and not deleted, counted up to [`UNREAD_CAP`]), and how many of them mention
    /// the user (`@user` in their current text: a deleted message mentions no one).
    /// From the mark and history, so it holds for large groups, which have no inbox
    /// entries.
    fn unread(&self, conv: &str, user: &str, last_seq: Option<i64>) -> Result<(u64, u64)> {
        let Some(last) = last_seq else {
            return Ok((0, 0));
        };
        let read = self
            .get_json::<ReceiptRow>(CF_RECEIPTS, &keys::pair(conv, user))?
            .and_then(|r| r.read);
        if read.is_some_and(|r| r >= last) {
            return Ok((0, 0));
        }
        let prefix = keys::prefix(conv);
        let start = keys::message(conv, read.map_or(0, |r| r.saturating_add(1)));
        let cf = self.cf(CF_MESSAGES)?;
        let (mut n, mut mentions) = (0, 0);
        // Bounded by rows read too: the user's own messages do not count but cost.
        for (read_rows, item) in self
            .db()
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
            .enumerate()
        {
            let (k, v) = item?;
            if !k.starts_with(&prefix) || n >= UNREAD_CAP || read_rows as u64 >= 5 * UNREAD_CAP {
                break;
            }
            let row: MessageRow = serde_json::from_slice(&v)?;
            if row.sender_id != user && !row.deleted {
                n += 1;
                let named = match &row.sealed {
                    Some(sealed) => sealed.mentions.clone(),
                    None => parley_schemas::mentions::mentions(&row.body),
                };
                mentions += u64::from(named.iter().any(|u| u == user));
            }
        }
        Ok((n, mentions))
    }

    /// A message as history shows it: its current state, the message it quotes as that
    /// one is now, and (for `viewer`) the reactions that are theirs.
    fn view(
        &self,
        conv: &str,
        seq: i64,
        mut row: MessageRow,
        viewer: Option<&str>,
    ) -> Result<MessageView> {
        self.open_row(conv, &mut row)?;
        let reply_to = match row.reply_to {
            Some(target) => Some(self.quote(conv, target)?),
            None => None,
        };
        let my_reactions = match viewer {
            Some(user) if !row.reactions.is_empty() => self.reactions_of(conv, seq, user)?,
            _ => Vec::new(),
        };
        Ok(MessageView {
            conversation_id: conv.to_string(),
            seq,
            prev_seq: row.prev_seq,
            prev_unknown: false,
            message_id: row.message_id,
            sender_id: row.sender_id,
            body: row.body,
            ts: row.ts,
            reply_to,
            edited: row.edited_at.is_some(),
            edited_at: row.edited_at,
            deleted: row.deleted,
            reactions: row.reactions,
            my_reactions,
            changed_seq: row.changed_seq,
            prev_change: row.prev_change,
            attachments: row.attachments,
            expires_at: row.expires_at,
        })
    }

    /// The message at `target` of `conv`, as a reply quotes it now.
    fn quote(&self, conv: &str, target: i64) -> Result<ReplyTo> {
        Ok(match self.message_at(conv, target)? {
            Some(r) => ReplyTo {
                seq: target,
                sender_id: Some(r.sender_id),
                preview: (!r.deleted).then(|| r.body.chars().take(REPLY_PREVIEW_CHARS).collect()),
                deleted: r.deleted,
            },
            None => ReplyTo {
                seq: target,
                ..Default::default()
            },
        })
    }

    /// The emoji `user` has set on the message at `seq` of `conv`.
    fn reactions_of(&self, conv: &str, seq: i64, user: &str) -> Result<Vec<String>> {
        let prefix = keys::reactions_of(conv, seq, user);
        let mut out = Vec::new();
        for item in self.db().iterator_cf(
            self.cf(CF_REACTIONS)?,
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (k, _) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// Messages with `after < seq < before`, oldest first. With only `before` (or
    /// neither), the newest `limit` of them; otherwise the oldest `limit` after `after`.
    /// `has_more` says whether the scan stopped at the limit.
    pub fn history(&self, conv: &str, q: &HistoryQuery) -> Result<HistoryPage> {
        let limit = q.limit.clamp(1, MAX_PAGE) as usize;
        let viewer = q.viewer.as_deref();
        let prefix = keys::prefix(conv);
        let cf = self.cf(CF_MESSAGES)?;
        let mut messages = Vec::new();
        let mut has_more = false;
        if let Some(after) = q.after {
            let start = keys::message(conv, after.saturating_add(1).max(0));
            for item in self
                .db()
                .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
            {
                let (k, v) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                let seq = keys::seq_of(&k).ok_or_else(|| Error::Store("bad message key".into()))?;
                if q.before.is_some_and(|b| seq >= b) {
                    break;
                }
                if messages.len() == limit {
                    has_more = true;
                    break;
                }
                messages.push(self.view(conv, seq, serde_json::from_slice(&v)?, viewer)?);
            }
        } else {
            let end = match q.before {
                Some(b) => keys::message(conv, b),
                None => {
                    let mut e = prefix.clone();
                    e.extend_from_slice(&[0xff; 9]);
                    e
                }
            };
            for item in self
                .db()
                .iterator_cf(cf, IteratorMode::From(&end, Direction::Reverse))
            {
                let (k, v) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                let seq = keys::seq_of(&k).ok_or_else(|| Error::Store("bad message key".into()))?;
                if q.before.is_some_and(|b| seq >= b) {
                    continue;
                }
                if messages.len() == limit {
                    has_more = true;
                    break;
                }
                messages.push(self.view(conv, seq, serde_json::from_slice(&v)?, viewer)?);
            }
            messages.reverse();
        }
        let changes = match q.after {
            Some(after) => {
                let upto = match messages.last() {
                    Some(m) if has_more => Some(m.seq + 1),
                    _ => q.before,
                };
                self.changes(conv, after, upto)?
            }
            None => Vec::new(),
        };
        Ok(HistoryPage {
            messages,
            changes,
            has_more,
        })
    }

    /// The kept changes to `conv`'s messages with `after < seq < before` (no bound
    /// above without `before`), in seq order.
    fn changes(&self, conv: &str, after: i64, before: Option<i64>) -> Result<Vec<MessageChange>> {
        let prefix = keys::prefix(conv);
        let start = keys::message(conv, after.saturating_add(1).max(0));
        let mut out = Vec::new();
        for item in self.db().iterator_cf(
            self.cf(CF_CHANGES)?,
            IteratorMode::From(&start, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let seq = keys::seq_of(&k).ok_or_else(|| Error::Store("bad change key".into()))?;
            if before.is_some_and(|b| seq >= b) {
                break;
            }
            let mut change: MessageChange = serde_json::from_slice(&v)?;
            // A sealed edit's change keeps no text: the message's text as it reads now
            // (the last edit's, which a client applying the changes ends with anyway).
            if let MessageChange::MessageEdited {
                target_seq, body, ..
            } = &mut change
            {
                if body.is_empty() {
                    if let Some(row) = self.message_at(conv, *target_seq)? {
                        *body = row.body;
                    }
                }
            }
            out.push(change);
        }
        Ok(out)
    }

    /// The message `id` of `conversation`, if the views hold it.
    pub fn message_by_id(&self, conversation: &str, id: &Uuid) -> Result<Option<MessageView>> {
        let cf = self.cf(CF_MESSAGE_IDS)?;
        let Some(v) = self.db().get_cf(cf, keys::message_id(conversation, id))? else {
            return Ok(None);
        };
        let seq = i64::from_be_bytes(
            v.as_slice()
                .try_into()
                .map_err(|_| Error::Store("bad seq".into()))?,
        );
        let row: Option<MessageRow> =
            self.get_json(CF_MESSAGES, &keys::message(conversation, seq))?;
        row.map(|row| self.view(conversation, seq, row, None))
            .transpose()
    }

    /// Every conversation of one partition with its members and last seq, the ids of the
    /// messages among its last [`RECENT_SPAN`] records, and the offset the views stand at:
    /// what a fanout-worker taking the partition over starts from.
    pub fn partition_snapshot(&self, partition: i32) -> Result<PartitionSnapshot> {
        // One RocksDB snapshot, so the offset and the views agree.
        let snap = self.db().snapshot();
        let applied = match snap.get_cf(self.cf(CF_OFFSETS)?, keys::partition(partition))? {
            Some(v) => i64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .map_err(|_| Error::Store("bad offset".into()))?,
            ),
            None => 0,
        };
        let mut conversations = Vec::new();
        let mut recent = Vec::new();
        for item in snap.iterator_cf(self.cf(CF_CONVERSATIONS)?, IteratorMode::Start) {
            let (k, v) = item?;
            let row: ConversationRow = serde_json::from_slice(&v)?;
            if row.partition != partition {
                continue;
            }
            let id = String::from_utf8_lossy(&k).to_string();
            let prefix = keys::prefix(&id);
            let mut members = Vec::new();
            let mut admins = Vec::new();
            for m in snap.iterator_cf(
                self.cf(CF_MEMBERS)?,
                IteratorMode::From(&prefix, Direction::Forward),
            ) {
                let (mk, mv) = m?;
                if !mk.starts_with(&prefix) {
                    break;
                }
                let row: MemberRow = serde_json::from_slice(&mv)?;
                let user = keys::second(&mk).unwrap_or_default();
                if let Some(at) = row.admin_since {
                    admins.push((user.clone(), at));
                }
                members.push((user, row.since));
            }
            // The ids of its messages within the span: the router's dedup window.
            if row
                .last_seq
                .is_some_and(|last| last >= applied - RECENT_SPAN)
            {
                let end = keys::message(&id, applied);
                for m in snap.iterator_cf(
                    self.cf(CF_MESSAGES)?,
                    IteratorMode::From(&end, Direction::Reverse),
                ) {
                    let (mk, mv) = m?;
                    if !mk.starts_with(&prefix) {
                        break;
                    }
                    let Some(seq) = keys::seq_of(&mk) else { break };
                    if seq >= applied {
                        continue;
                    }
                    if seq < applied - RECENT_SPAN {
                        break;
                    }
                    let msg: MessageRow = serde_json::from_slice(&mv)?;
                    recent.push((seq, id.clone(), msg.message_id));
                }
            }
            conversations.push(SnapshotConversation {
                conversation_id: id,
                kind: row.kind,
                members,
                last_seq: row.last_seq,
                last_change: Some(row.last_change.unwrap_or(-1)),
                created_at: Some(row.created_at),
                creator: row.creator,
                admins,
            });
        }
        recent.sort();
        Ok(PartitionSnapshot {
            partition,
            applied,
            conversations,
            recent,
        })
    }

    /// SHA-256 over every view column family, keys and values in order: equal views,
    /// equal checksums. The consumed offsets are not part of it.
    pub fn checksum(&self) -> Result<String> {
        let snap = self.db().snapshot();
        let mut h = Sha256::new();
        for name in VIEW_CFS {
            h.update(name.as_bytes());
            for item in snap.iterator_cf(self.cf(name)?, IteratorMode::Start) {
                let (k, v) = item?;
                h.update((k.len() as u64).to_be_bytes());
                h.update(&k);
                h.update((v.len() as u64).to_be_bytes());
                h.update(&v);
            }
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}
