//! The rows that applying a message reads every time, its conversation's and its
//! sender's membership, kept in memory as the database holds them after the last batch
//! written.
//!
//! Without it each message costs three database reads and two JSON decodings of its
//! conversation's row before anything is written: about a fifth of the projector's CPU
//! at 4,000 msgs/s (docs/benchmarks.md, *Less CPU per message*).
//!
//! It stays equal to the database because [`Store::apply`](super::Store::apply) is the
//! only writer of these rows and applies one batch at a time per store: a row read from
//! the database is the committed one, and the rows of a batch enter the cache only once
//! the batch's write has succeeded. A rebuild opens a new store, with an empty cache.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use super::rows::{ConversationRow, MemberRow};

/// Conversations kept (about 150 bytes each).
const CONVERSATIONS: usize = 16_384;
/// Memberships kept, `None` (not a member) included (about 120 bytes each).
const MEMBERS: usize = 65_536;

pub(super) type MemberKey = (String, String);

pub(super) struct RowCache {
    conversations: Mutex<LruCache<String, ConversationRow>>,
    members: Mutex<LruCache<MemberKey, Option<MemberRow>>>,
}

impl Default for RowCache {
    fn default() -> Self {
        let size = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        RowCache {
            conversations: Mutex::new(LruCache::new(size(CONVERSATIONS))),
            members: Mutex::new(LruCache::new(size(MEMBERS))),
        }
    }
}

impl RowCache {
    pub(super) fn conversation(&self, id: &str) -> Option<ConversationRow> {
        lock(&self.conversations).get(id).cloned()
    }

    /// `Some(None)`: known not to be a member; `None`: not kept.
    pub(super) fn member(&self, key: &MemberKey) -> Option<Option<MemberRow>> {
        lock(&self.members).get(key).cloned()
    }

    pub(super) fn keep_conversation(&self, id: String, row: ConversationRow) {
        lock(&self.conversations).put(id, row);
    }

    pub(super) fn keep_member(&self, key: MemberKey, row: Option<MemberRow>) {
        lock(&self.members).put(key, row);
    }
}

/// A poisoned cache is still a correct one: every entry is put whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_schemas::ConversationKind;

    #[test]
    fn keeps_what_it_is_given_and_forgets_the_least_recent() {
        let cache = RowCache {
            conversations: Mutex::new(LruCache::new(NonZeroUsize::new(2).unwrap())),
            members: Mutex::new(LruCache::new(NonZeroUsize::new(2).unwrap())),
        };
        let row = |seq| ConversationRow {
            kind: ConversationKind::Direct,
            title: None,
            partition: 0,
            created_at: 0,
            last_seq: Some(seq),
            last_change: None,
            members: 2,
            creator: None,
            full_history: false,
            disappear_after_ms: None,
            disappear_since: None,
        };
        cache.keep_conversation("a".into(), row(1));
        cache.keep_conversation("b".into(), row(2));
        assert_eq!(cache.conversation("a").unwrap().last_seq, Some(1));
        cache.keep_conversation("c".into(), row(3));
        assert!(cache.conversation("b").is_none(), "b was the least recent");
        assert_eq!(cache.conversation("a").unwrap().last_seq, Some(1));

        let key = ("a".to_string(), "u".to_string());
        assert_eq!(cache.member(&key), None);
        cache.keep_member(key.clone(), None);
        assert_eq!(cache.member(&key), Some(None));
        cache.keep_member(key.clone(), Some(MemberRow::since(7)));
        assert_eq!(cache.member(&key), Some(Some(MemberRow::since(7))));
    }
}
