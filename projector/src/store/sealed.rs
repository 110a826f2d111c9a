//! Sealed bodies in the views: a message row keeps its body as the log has it (sealed
//! under its data key), and is opened when it is read, with the data key the `keys`
//! topic holds for it ([`CF_DATA_KEYS`]).
//!
//! So an erased key (its tombstone applied, or a rebuild after compaction dropped it)
//! leaves the row's text unreadable at once, with nothing else to rewrite; and the
//! views' disk holds no plain text of a sealed message.

use parley_schemas::sealed::{ContentKey, Kek};
use parley_schemas::DataKey;

use super::rows::MessageRow;
use super::{keys, Store, CF_DATA_KEYS, CF_KEY_WAIT, CF_MESSAGES};
use crate::error::Result;

impl Store {
    /// Opens sealed bodies with `kek` from now on.
    pub fn with_kek(&self, kek: Kek) {
        let _ = self.kek.set(kek);
    }

    /// The data key `key_id`, unwrapped; `None` if the views hold none (erased, not
    /// read yet, or no key-encryption key here).
    pub fn data_key(&self, key_id: &str) -> Result<Option<ContentKey>> {
        let Some(kek) = self.kek.get() else {
            return Ok(None);
        };
        let Some(record) = self.get_json::<DataKey>(CF_DATA_KEYS, key_id.as_bytes())? else {
            return Ok(None);
        };
        Ok(kek.unwrap(key_id, record.kek_version as u32, &record.wrapped))
    }

    /// `row` with its body opened, if it is sealed: its text, or empty when its key is
    /// not held (`sealed` stays set: the text is not readable here).
    pub fn open_row(&self, conversation: &str, row: &mut MessageRow) -> Result<()> {
        let Some(sealed) = &row.sealed else {
            return Ok(());
        };
        if row.deleted {
            row.body.clear();
            return Ok(());
        }
        row.body = match self.data_key(&sealed.key_id)? {
            Some(key) => sealed
                .open(
                    &key,
                    conversation,
                    &row.sealed_for.unwrap_or(row.message_id),
                )
                .unwrap_or_default(),
            None => String::new(),
        };
        // The files' names are sealed under the message's first key, bound to its id (an
        // edit changes the text, not the files).
        if let Some(key) = match &row.names_key {
            Some(id) => self.data_key(id)?,
            None => None,
        } {
            parley_schemas::open_names(&mut row.attachments, &key, conversation, &row.message_id);
        }
        parley_schemas::hide_names(&mut row.attachments);
        Ok(())
    }

    /// Why each sealed, undeleted message at `seqs` of `conversation` shows no text
    /// (messages not sealed, or deleted, are left out).
    pub fn textless(&self, conversation: &str, seqs: &[i64]) -> Result<Vec<(i64, Textless)>> {
        let mut out = Vec::new();
        for seq in seqs {
            let row: Option<MessageRow> =
                self.get_json(CF_MESSAGES, &keys::message(conversation, *seq))?;
            let Some(MessageRow {
                sealed: Some(sealed),
                deleted: false,
                sealed_for,
                message_id,
                ..
            }) = row
            else {
                continue;
            };
            let awaited = self
                .db()
                .get_cf(self.cf(CF_KEY_WAIT)?, sealed.key_id.as_bytes())?
                .is_some();
            let why = match (awaited, self.data_key(&sealed.key_id)?) {
                (true, _) => Textless::KeyAwaited,
                (false, None) => Textless::KeyNotHeld,
                (false, Some(key)) => {
                    match sealed.open(&key, conversation, &sealed_for.unwrap_or(message_id)) {
                        Some(text) if text.is_empty() => Textless::Empty,
                        Some(_) => Textless::OpensNow,
                        None => Textless::DoesNotOpen,
                    }
                }
            };
            out.push((*seq, why));
        }
        Ok(out)
    }
}

/// Why a sealed message read without text ([`Store::textless`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Textless {
    /// Its data key has not reached this replica yet (it is awaited: [`CF_KEY_WAIT`]).
    KeyAwaited,
    /// No key here, and none awaited (erased, or the repair gave up).
    KeyNotHeld,
    /// The key held does not open it.
    DoesNotOpen,
    /// Its text is empty.
    Empty,
    /// It opens now (its key came between the two reads).
    OpensNow,
}
