//! Disappearing messages in the views.
//!
//! A conversation with `disappear_after_ms` set (`GroupSettingsChanged`) gives each
//! message posted from then on a time to disappear: its `occurred_at` plus the setting
//! at that moment. The message is indexed by that time ([`CF_EXPIRING`]). When it has
//! come, a projector appends `MessagesExpired` ([`crate::expiry`]); applied at its
//! position, that record marks every message of the conversation due by then deleted
//! (as delete-for-everyone does: no text, files or reactions; the row stays) and queues
//! their data keys' tombstones ([`crate::eraser`]). A rebuild applies it the same way.

use rocksdb::{Direction, IteratorMode};

use parley_schemas::MessagesExpired;

use super::apply::Batch;
use super::{keys, Store, CF_EXPIRING};
use crate::error::Result;

impl Batch<'_> {
    /// The messages of `e`'s conversation due by `e.expired_until` are gone, at
    /// (`partition`, `offset`).
    pub(super) fn apply_expired(
        &mut self,
        partition: i32,
        offset: i64,
        e: &MessagesExpired,
    ) -> Result<bool> {
        let mut due: Vec<(Vec<u8>, i64)> = Vec::new();
        let mut stored = self.store.due(e.expired_until)?;
        stored.extend(
            self.ov
                .expiring
                .iter()
                .filter(|(_, put)| **put)
                .map(|(k, _)| k.clone()),
        );
        for key in stored {
            if self.ov.expiring.get(&key) == Some(&false) {
                continue;
            }
            if let Some((at, conv, seq)) = keys::expiring_parts(&key) {
                if conv == e.conversation_id && at <= e.expired_until && seq < offset {
                    due.push((key, seq));
                }
            }
        }
        let mut changed = false;
        for (key, seq) in due {
            self.ov.expiring.insert(key, false);
            changed |= self.wipe_message(partition, offset, &e.conversation_id, seq, false)?;
        }
        Ok(changed)
    }
}

impl Store {
    /// The [`keys::expiring`] keys of messages due at or before `until`, oldest first.
    pub fn due(&self, until: i64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let cf = self.cf(CF_EXPIRING)?;
        for item in self
            .db()
            .iterator_cf(cf, IteratorMode::From(&[], Direction::Forward))
        {
            let (k, _) = item?;
            match keys::expiring_parts(&k) {
                Some((at, _, _)) if at <= until => out.push(k.to_vec()),
                _ => break,
            }
        }
        Ok(out)
    }
}
