//! What the search index reads from the views ([`crate::search::indexer`]): the
//! messages records touched since its last commit, the messages themselves, and what a
//! user may read.

use std::collections::BTreeMap;

use rocksdb::{IteratorMode, WriteBatch};

use super::keys;
use super::rows::MessageRow;
use super::{Store, CF_MESSAGES, CF_SEARCH_PENDING, CF_USER_CONVS};
use crate::error::{Error, Result};

/// A conversation a user may search, in this store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readable {
    pub conversation: String,
    /// They read the messages after this offset.
    pub from: i64,
    pub partition: i32,
    /// The offset of its last message or change to one: the index must reflect it.
    pub last: Option<i64>,
}

impl Store {
    /// The message at (`conversation`, `seq`), as the views hold it.
    pub fn message_at(&self, conversation: &str, seq: i64) -> Result<Option<MessageRow>> {
        let mut row: Option<MessageRow> =
            self.get_json(CF_MESSAGES, &keys::message(conversation, seq))?;
        if let Some(r) = row.as_mut() {
            self.open_row(conversation, r)?;
        }
        Ok(row)
    }

    /// The messages touched and not yet cleared ([`Store::clear_touched`]), as
    /// (conversation, seq), by partition and offset (one may come more than once).
    pub fn touched(&self) -> Result<Vec<(String, i64)>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .iterator_cf(self.cf(CF_SEARCH_PENDING)?, IteratorMode::Start)
        {
            let (_, v) = item?;
            let batch: Vec<(String, i64)> = serde_json::from_slice(&v)?;
            out.extend(batch);
        }
        Ok(out)
    }

    /// Forgets the touches of records before `upto` (per partition): the index has
    /// committed them. With `None`, forgets all of them.
    pub fn clear_touched(&self, upto: Option<&BTreeMap<i32, i64>>) -> Result<()> {
        let cf = self.cf(CF_SEARCH_PENDING)?;
        let mut wb = WriteBatch::default();
        match upto {
            Some(upto) => {
                for (p, o) in upto {
                    wb.delete_range_cf(cf, keys::touched_from(*p, 0), keys::touched_from(*p, *o));
                }
            }
            None => wb.delete_range_cf(cf, &[0u8; 0][..], &[0xffu8; 13][..]),
        }
        self.db().write(wb)?;
        Ok(())
    }

    /// Every message the views hold, in key order, to index them all.
    pub fn each_message(
        &self,
        mut f: impl FnMut(&str, i64, &MessageRow) -> Result<()>,
    ) -> Result<()> {
        for item in self
            .db()
            .iterator_cf(self.cf(CF_MESSAGES)?, IteratorMode::Start)
        {
            let (k, v) = item?;
            let (conversation, seq) =
                keys::message_parts(&k).ok_or_else(|| Error::Store("bad message key".into()))?;
            let mut row: MessageRow = serde_json::from_slice(&v)?;
            self.open_row(&conversation, &mut row)?;
            f(&conversation, seq, &row)?;
        }
        Ok(())
    }

    /// The conversations of this store `user` may read now, with where they read from.
    pub fn readable(&self, user: &str) -> Result<Vec<Readable>> {
        let prefix = keys::prefix(user);
        let mut out = Vec::new();
        for item in self.scan_prefix(CF_USER_CONVS, &prefix)? {
            let (k, _) = item?;
            let conversation =
                keys::second(&k).ok_or_else(|| Error::Store("bad user_convs key".into()))?;
            let Some(row) = self.conversation_row(&conversation)? else {
                continue;
            };
            let Some(from) = self.history_from(&conversation, user)? else {
                continue;
            };
            out.push(Readable {
                conversation,
                from,
                partition: row.partition,
                last: row.last_seq.max(row.last_change),
            });
        }
        Ok(out)
    }
}
