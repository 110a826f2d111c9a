//! Erasure in the views: a user's content erased (`UserErased`), and the data keys to
//! erase from the log (their tombstones, written by [`crate::eraser`]).
//!
//! A `UserErased` record is appended to every partition of `events`. Applied at its
//! position in a partition, it marks every message the user posted there before it as
//! deleted (the row stays, so seqs and `prev_seq` chains stay whole; memberships stay),
//! and queues the data keys of those that were sealed. A rebuild applies it the same
//! way, whether or not compaction has already dropped the keys.

use std::collections::BTreeSet;

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::apply::Batch;
use super::keys;
use super::{Store, CF_ERASE_PENDING, CF_MESSAGES, CF_OWNER_KEYS, CF_USER_CONVS};
use crate::error::Result;

impl Batch<'_> {
    /// `user`'s content is erased at (`partition`, `offset`).
    pub(super) fn apply_user_erased(
        &mut self,
        partition: i32,
        offset: i64,
        user: &str,
    ) -> Result<bool> {
        let mut targets: BTreeSet<(String, i64)> = BTreeSet::new();
        // Their sealed messages, from the owner index.
        let prefix = keys::prefix(user);
        for item in self.store.scan_prefix(CF_OWNER_KEYS, &prefix)? {
            let (_, v) = item?;
            targets.insert(serde_json::from_slice(&v)?);
        }
        for ((owner, _), at) in &self.ov.owner_keys {
            if owner == user {
                targets.insert(at.clone());
            }
        }
        // Their plain messages (posted before sealing was on), in the conversations
        // they are in.
        for item in self.store.scan_prefix(CF_USER_CONVS, &prefix)? {
            let (k, _) = item?;
            let Some(conv) = keys::second(&k) else {
                continue;
            };
            let start = keys::message(&conv, 0);
            let conv_prefix = keys::prefix(&conv);
            let cf = self.store.cf(CF_MESSAGES)?;
            for item in self
                .store
                .db()
                .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
            {
                let (k, v) = item?;
                if !k.starts_with(&conv_prefix) {
                    break;
                }
                let row: super::rows::MessageRow = serde_json::from_slice(&v)?;
                if row.sender_id == user && !row.deleted {
                    if let Some(at) = keys::message_parts(&k) {
                        targets.insert(at);
                    }
                }
            }
        }
        let mut changed = false;
        for (conv, seq) in targets {
            if seq >= offset {
                continue;
            }
            match self.conversation(&conv)? {
                Some(c) if c.partition == partition => {}
                _ => continue,
            }
            changed |= self.wipe_message(partition, offset, &conv, seq, false)?;
        }
        Ok(changed)
    }
}

impl Store {
    /// Up to `limit` sealed messages still waiting for their data key.
    pub fn keys_waiting(&self, limit: usize) -> Result<Vec<(String, super::rows::WaitingKey)>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .iterator_cf(self.cf(super::CF_KEY_WAIT)?, IteratorMode::Start)
            .take(limit)
        {
            let (k, v) = item?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                serde_json::from_slice(&v)?,
            ));
        }
        Ok(out)
    }

    /// Stops waiting for `ids` (their messages are gone, or their keys cannot be made).
    pub fn stop_waiting(&self, ids: &[String]) -> Result<()> {
        let mut wb = WriteBatch::default();
        for id in ids {
            wb.delete_cf(self.cf(super::CF_KEY_WAIT)?, id.as_bytes());
        }
        self.db().write(wb)?;
        Ok(())
    }

    /// Up to `limit` data keys whose tombstones are to be written.
    pub fn erase_pending(&self, limit: usize) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for item in self
            .db()
            .iterator_cf(self.cf(CF_ERASE_PENDING)?, IteratorMode::Start)
            .take(limit)
        {
            let (k, _) = item?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// The tombstones of `ids` are in the log.
    pub fn erased(&self, ids: &[String]) -> Result<()> {
        let mut wb = WriteBatch::default();
        for id in ids {
            wb.delete_cf(self.cf(CF_ERASE_PENDING)?, id.as_bytes());
        }
        self.db().write(wb)?;
        Ok(())
    }
}
