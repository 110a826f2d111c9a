//! What was indexed since the index's last commit, searchable at once.
//!
//! tantivy shows a document to searches only once it is committed, and a commit costs
//! milliseconds of writes and syncs. A search that waited for one each time (to find
//! a message sent a moment ago) would pay that cost on every query under traffic. So
//! every message the indexer writes is also kept here, as its words, until the commit
//! that holds it is visible. A search reads the committed index and this overlay
//! together, under one lock that a commit's reload takes too. A message here shadows
//! its older version in the committed index: an edit's new words replace the old ones,
//! and a deletion hides it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::collect::Rank;
use super::syntax::Parsed;
use super::{conversation_order, OrderKey};
use crate::store::rows::MessageRow;

/// BM25's parameters (tantivy's), and the body length assumed as the average.
const K1: f32 = 1.2;
const B: f32 = 0.75;
const AVERAGE_WORDS: f32 = 12.0;

struct Doc {
    sender: String,
    ts: i64,
    /// Its words; none once deleted.
    words: Option<Vec<String>>,
}

/// The messages indexed since the last visible commit, by conversation.
///
/// A search reads only its caller's conversations here, and the set of what the
/// overlay shadows is kept as it grows, not rebuilt per search: with thousands of
/// messages waiting for a commit, a search costs what its caller's conversations hold.
#[derive(Default)]
pub struct Recent {
    docs: HashMap<String, BTreeMap<i64, Doc>>,
    count: usize,
    shadow: Arc<HashSet<(u64, i64)>>,
}

/// A message of the overlay that matches a search.
pub struct RecentHit {
    pub rank: Rank,
    pub conversation: String,
    pub seq: i64,
}

impl Recent {
    /// Keeps the message at (`conversation`, `seq`): its row and its body's words as
    /// the index takes them ([`super::words::words`]), or `None` if it is deleted or absent
    /// (hidden).
    pub fn remember(
        &mut self,
        conversation: &str,
        seq: i64,
        indexed: Option<(&MessageRow, Vec<String>)>,
    ) {
        let doc = match indexed {
            Some((r, words)) => Doc {
                sender: r.sender_id.clone(),
                ts: r.ts,
                words: Some(words),
            },
            None => Doc {
                sender: String::new(),
                ts: 0,
                words: None,
            },
        };
        let kept = match self.docs.get_mut(conversation) {
            Some(docs) => docs,
            None => self.docs.entry(conversation.to_string()).or_default(),
        };
        if kept.insert(seq, doc).is_none() {
            self.count += 1;
            Arc::make_mut(&mut self.shadow).insert((conversation_order(conversation), seq));
        }
    }

    /// Forgets everything (the commit holding it is visible).
    pub fn clear(&mut self) {
        self.docs.clear();
        self.count = 0;
        self.shadow = Arc::default();
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// (conversation order, seq) of every message here: the committed index's versions
    /// of them are not to be found.
    pub fn shadow(&self) -> Arc<HashSet<(u64, i64)>> {
        self.shadow.clone()
    }

    /// The messages here that match: every clause (`clauses`: each one's words, in
    /// order), an author of `parsed.from` if any, a conversation of `allowed` read after
    /// its offset, older than `before`. With `idf` (by relevance), each is scored by
    /// BM25 with those inverse document frequencies.
    pub fn matches(
        &self,
        allowed: &HashMap<&str, i64>,
        parsed: &Parsed,
        clauses: &[Vec<String>],
        before: Option<OrderKey>,
        idf: Option<&HashMap<String, f32>>,
    ) -> Vec<RecentHit> {
        let mut out = Vec::new();
        let held = allowed.iter().filter_map(|(conversation, from)| {
            let (conversation, docs) = self.docs.get_key_value(*conversation)?;
            Some(
                docs.range(from.saturating_add(1)..)
                    .map(move |d| (conversation, d)),
            )
        });
        for (conversation, (seq, doc)) in held.flatten() {
            let Some(words) = &doc.words else { continue };
            if !parsed.within.is_empty() && !parsed.within.contains(conversation) {
                continue;
            }
            if !parsed.from.is_empty() && !parsed.from.contains(&doc.sender) {
                continue;
            }
            if !clauses.iter().all(|c| contains_run(words, c)) {
                continue;
            }
            let key = OrderKey {
                ts: doc.ts,
                seq: *seq,
                conversation: conversation_order(conversation),
            };
            if before.is_some_and(|b| key >= b) {
                continue;
            }
            let score = idf.map_or(0.0, |idf| bm25(words, clauses, idf));
            out.push(RecentHit {
                rank: Rank {
                    score: score.max(0.0).to_bits(),
                    key,
                },
                conversation: conversation.clone(),
                seq: *seq,
            });
        }
        out
    }
}

/// Whether `run` occurs in `words`, its words next to each other.
fn contains_run(words: &[String], run: &[String]) -> bool {
    match run.len() {
        0 => true,
        1 => words.contains(&run[0]),
        n => words.windows(n).any(|w| w == run),
    }
}

fn bm25(words: &[String], clauses: &[Vec<String>], idf: &HashMap<String, f32>) -> f32 {
    let length = words.len() as f32;
    clauses
        .iter()
        .flatten()
        .map(|term| {
            let tf = words.iter().filter(|w| *w == term).count() as f32;
            let idf = idf.get(term).copied().unwrap_or(0.0);
            idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * length / AVERAGE_WORDS))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::words;

    fn row(sender: &str, body: &str, deleted: bool) -> MessageRow {
        MessageRow {
            message_id: uuid::Uuid::nil(),
            sender_id: sender.into(),
            body: body.into(),
            ts: 5,
            prev_seq: None,
            reply_to: None,
            edited_at: None,
            deleted,
            reactions: Default::default(),
            changed_seq: None,
            prev_change: None,
            attachments: Vec::new(),
            sealed: None,
            sealed_for: None,
            expires_at: None,
            names_key: None,
        }
    }

    /// What the indexer gives the overlay for `row`.
    fn seen(row: &MessageRow) -> Option<(&MessageRow, Vec<String>)> {
        (!row.deleted).then(|| (row, words::words(&row.body)))
    }

    #[test]
    fn recent_messages_match_as_the_index_would_and_shadow_it() {
        let mut r = Recent::default();
        r.remember("c", 3, seen(&row("amy", "The launch DATE moved", false)));
        r.remember("c", 4, seen(&row("bob", "launch", true)));
        r.remember("d", 5, seen(&row("amy", "launch date", false)));
        let allowed: HashMap<&str, i64> = [("c", 0)].into_iter().collect();
        let parsed = crate::search::syntax::parse("\"launch date\"").unwrap();
        let clauses = vec![words::words("launch date")];
        let hits = r.matches(&allowed, &parsed, &clauses, None, None);
        assert_eq!(hits.len(), 1, "c:4 is deleted, d is not the caller's");
        assert_eq!((hits[0].conversation.as_str(), hits[0].seq), ("c", 3));
        let moved = vec![words::words("date launch")];
        assert!(r.matches(&allowed, &parsed, &moved, None, None).is_empty());
        // Every message here hides its committed version, deleted ones included.
        assert_eq!(r.shadow().len(), 3);
        r.clear();
        assert!(r.is_empty());
    }

    #[test]
    fn a_caller_reads_only_what_follows_its_offset_and_a_message_counts_once() {
        let mut r = Recent::default();
        for seq in 1..=5 {
            r.remember("c", seq, seen(&row("amy", "launch", false)));
        }
        // Indexed again (an edit): still one message, shadowed once.
        r.remember("c", 5, seen(&row("amy", "launch moved", false)));
        assert_eq!((r.len(), r.shadow().len()), (5, 5));
        let parsed = crate::search::syntax::parse("launch").unwrap();
        let clauses = vec![words::words("launch")];
        let seqs = |from: i64| {
            let allowed: HashMap<&str, i64> = [("c", from)].into_iter().collect();
            let mut s: Vec<i64> = r
                .matches(&allowed, &parsed, &clauses, None, None)
                .iter()
                .map(|h| h.seq)
                .collect();
            s.sort();
            s
        };
        assert_eq!(seqs(0), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(3), vec![4, 5], "what she may read begins after 3");
        assert_eq!(seqs(i64::MAX), Vec::<i64>::new());
        // A search holding the shadow set keeps it as it was; the overlay moves on.
        let held = r.shadow();
        r.remember("c", 6, seen(&row("amy", "launch", false)));
        assert_eq!((held.len(), r.shadow().len()), (5, 6));
    }
}
