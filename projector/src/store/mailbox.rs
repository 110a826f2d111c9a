//! The inbox and receipt views: what waits for each offline user, and how far each
//! member has received and read each conversation.
//!
//! They come from two topics (`inbox`, keyed by user, and `receipts`, keyed by
//! conversation) whose records interleave in no fixed order, so the rules are chosen to
//! give the same views whatever the interleaving:
//! - a receipt only raises the member's `delivered`/`read` marks (reading implies having
//!   received), and clears the member's inbox entries of the conversation up to
//!   `delivered`;
//! - an inbox entry at or below the member's `delivered` mark is already acknowledged
//!   and is not stored.
//!
//! The views end up holding exactly the entries above the final marks.

use std::collections::{BTreeMap, HashMap};

use parley_schemas::{InboxEntry, ReceiptKind, ReceiptRecorded};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::apply::Batch;
use super::keys;
use super::rows::{InboxRow, ReceiptRow};
use super::{Store, CF_INBOX, CF_RECEIPTS};
use crate::error::{Error, Result};

/// The most inbox entries one query returns.
pub const MAX_INBOX_PAGE: u32 = 1000;

/// One message waiting for a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: Uuid,
    pub sender_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxPage {
    pub user_id: String,
    /// By conversation, then seq.
    pub entries: Vec<InboxItem>,
    pub has_more: bool,
}

/// How far one member has received and read a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptView {
    pub user_id: String,
    pub delivered: Option<i64>,
    pub read: Option<i64>,
}

/// Inbox and receipt changes of one batch, read through before the database.
#[derive(Default)]
pub(super) struct MailboxOverlay {
    receipts: HashMap<(String, String), ReceiptRow>,
    inbox: BTreeMap<Vec<u8>, InboxRow>,
    /// Key ranges `[from, to)` of inbox entries cleared by receipts.
    cleared: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch<'_> {
    fn receipt_row(&self, conversation: &str, user: &str) -> Result<ReceiptRow> {
        let key = (conversation.to_string(), user.to_string());
        if let Some(r) = self.mail.receipts.get(&key) {
            return Ok(r.clone());
        }
        Ok(self
            .store
            .get_json(CF_RECEIPTS, &keys::pair(conversation, user))?
            .unwrap_or_default())
    }

    pub(super) fn apply_inbox(&mut self, e: &InboxEntry) -> Result<bool> {
        let marks = self.receipt_row(&e.conversation_id, &e.user_id)?;
        if e.seq < 0 || marks.delivered.is_some_and(|d| e.seq <= d) {
            return Ok(false);
        }
        self.mail.inbox.insert(
            keys::inbox(&e.user_id, &e.conversation_id, e.seq),
            InboxRow {
                message_id: e.message_id,
                sender_id: e.sender_id.clone(),
            },
        );
        Ok(true)
    }

    pub(super) fn apply_receipt(&mut self, r: &ReceiptRecorded) -> Result<bool> {
        if r.up_to_seq < 0 {
            return Ok(false);
        }
        let user = &r.meta.actor;
        let old = self.receipt_row(&r.conversation_id, user)?;
        let mut new = old.clone();
        new.delivered = new.delivered.max(Some(r.up_to_seq));
        if r.kind == ReceiptKind::Read {
            new.read = new.read.max(Some(r.up_to_seq));
        }
        if new == old {
            return Ok(false);
        }
        if new.delivered != old.delivered {
            let upto = new.delivered.unwrap_or(0);
            let from = keys::inbox(user, &r.conversation_id, 0);
            let to = keys::inbox(user, &r.conversation_id, upto.saturating_add(1));
            let gone: Vec<Vec<u8>> = self
                .mail
                .inbox
                .range(from.clone()..to.clone())
                .map(|(k, _)| k.clone())
                .collect();
            for k in gone {
                self.mail.inbox.remove(&k);
            }
            self.mail.cleared.push((from, to));
        }
        self.mail
            .receipts
            .insert((r.conversation_id.clone(), user.clone()), new);
        Ok(true)
    }
}

impl MailboxOverlay {
    /// Adds the changes to `wb`: clearings first, then the entries that survived them.
    pub(super) fn write(self, store: &Store, wb: &mut WriteBatch) -> Result<()> {
        let inbox = store.cf(CF_INBOX)?;
        for (from, to) in &self.cleared {
            wb.delete_range_cf(inbox, from, to);
        }
        for (k, row) in self.inbox {
            wb.put_cf(inbox, k, serde_json::to_vec(&row)?);
        }
        let mut receipts: Vec<_> = self.receipts.into_iter().collect();
        receipts.sort_by(|a, b| a.0.cmp(&b.0));
        for ((conv, user), row) in receipts {
            wb.put_cf(
                store.cf(CF_RECEIPTS)?,
                keys::pair(&conv, &user),
                serde_json::to_vec(&row)?,
            );
        }
        Ok(())
    }
}

impl Store {
    /// The messages waiting for `user`, at most `limit`, by conversation then seq.
    pub fn inbox(&self, user: &str, limit: u32) -> Result<InboxPage> {
        let limit = limit.clamp(1, MAX_INBOX_PAGE) as usize;
        let prefix = keys::prefix(user);
        let mut entries = Vec::new();
        let mut has_more = false;
        for item in self.scan_prefix(CF_INBOX, &prefix)? {
            let (k, v) = item?;
            if entries.len() == limit {
                has_more = true;
                break;
            }
            let (conversation_id, seq) =
                keys::inbox_parts(&k).ok_or_else(|| Error::Store("bad inbox key".into()))?;
            let row: InboxRow = serde_json::from_slice(&v)?;
            entries.push(InboxItem {
                conversation_id,
                seq,
                message_id: row.message_id,
                sender_id: row.sender_id,
            });
        }
        Ok(InboxPage {
            user_id: user.to_string(),
            entries,
            has_more,
        })
    }

    /// Every member's receipt marks of `conversation` that any receipt set, by user.
    pub fn receipts(&self, conversation: &str) -> Result<Vec<ReceiptView>> {
        let prefix = keys::prefix(conversation);
        let mut out = Vec::new();
        for item in self.scan_prefix(CF_RECEIPTS, &prefix)? {
            let (k, v) = item?;
            let user_id =
                keys::second(&k).ok_or_else(|| Error::Store("bad receipts key".into()))?;
            let row: ReceiptRow = serde_json::from_slice(&v)?;
            out.push(ReceiptView {
                user_id,
                delivered: row.delivered,
                read: row.read,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use parley_schemas::{AnyRecord, Meta};
    use parley_sequencer::LogRecord;

    use super::*;
    use crate::store::Stream;

    fn entry(seq: i64) -> AnyRecord {
        InboxEntry {
            meta: Meta::new("fanout:w"),
            user_id: "bob".into(),
            conversation_id: "c".into(),
            seq,
            message_id: Uuid::from_u128(seq as u128),
            sender_id: "amy".into(),
        }
        .into()
    }

    fn receipt(kind: ReceiptKind, seq: i64) -> AnyRecord {
        ReceiptRecorded {
            meta: Meta::new("bob"),
            conversation_id: "c".into(),
            kind,
            up_to_seq: seq,
        }
        .into()
    }

    fn rec(stream: Stream, offset: i64, r: &AnyRecord) -> (Stream, LogRecord) {
        let topic = format!("{stream:?}");
        let value = Bytes::from(r.encode().unwrap());
        let record = LogRecord {
            topic,
            partition: 0,
            offset,
            timestamp_ms: None,
            key: None,
            value: Some(value),
        };
        (stream, record)
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn receipts_clear_the_inbox_whatever_the_interleaving() {
        let entries: Vec<_> = (0..6)
            .map(|i| rec(Stream::Inbox, i, &entry(i * 10)))
            .collect();
        let ack = rec(Stream::Receipts, 0, &receipt(ReceiptKind::Delivered, 30));
        let read = rec(Stream::Receipts, 1, &receipt(ReceiptKind::Read, 20));

        // Entries first, receipts after, one record per batch.
        let (_d1, a) = open();
        for r in entries.iter().chain([&ack, &read]) {
            a.apply(std::slice::from_ref(r)).unwrap();
        }
        // Receipts first, everything in one batch.
        let (_d2, b) = open();
        let mut all = vec![read.clone(), ack.clone()];
        all.extend(entries.iter().cloned());
        b.apply(&all).unwrap();

        let seqs: Vec<i64> = a
            .inbox("bob", 100)
            .unwrap()
            .entries
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, vec![40, 50]);
        assert_eq!(a.checksum().unwrap(), b.checksum().unwrap());
        assert_eq!(
            a.receipts("c").unwrap(),
            vec![ReceiptView {
                user_id: "bob".into(),
                delivered: Some(30),
                read: Some(20)
            }]
        );
        assert!(b.inbox("amy", 100).unwrap().entries.is_empty());
    }

    #[test]
    fn receipts_only_move_forward_and_bad_ones_change_nothing() {
        let (_d, s) = open();
        s.apply(&[
            rec(Stream::Receipts, 0, &receipt(ReceiptKind::Delivered, 50)),
            rec(Stream::Receipts, 1, &receipt(ReceiptKind::Delivered, 10)),
            rec(Stream::Receipts, 2, &receipt(ReceiptKind::Read, -3)),
            rec(Stream::Inbox, 0, &entry(50)),
            // An inbox entry read from the wrong stream is not applied.
            rec(Stream::Receipts, 3, &entry(70)),
        ])
        .unwrap();
        let r = s.receipts("c").unwrap();
        assert_eq!(r[0].delivered, Some(50));
        assert_eq!(r[0].read, None);
        assert!(s.inbox("bob", 10).unwrap().entries.is_empty());
        let offsets = s.offsets().unwrap();
        assert_eq!(offsets[&(Stream::Receipts, 0)], 4);
        assert_eq!(offsets[&(Stream::Inbox, 0)], 1);
    }
}
