//! Search: one more view of the log, a full-text index per projector shard.
//!
//! - [`words`]: how text becomes words (Unicode word boundaries, lower case, ASCII
//!   folding), for bodies and queries alike.
//! - [`syntax`]: the query language (words, "phrases", `from:`, `in:`).
//! - [`index`]: the tantivy index of one shard: its fields, its writes, and a query
//!   filtered by what the caller may read.
//! - [`collect`]: the best documents of a search, by score then newest first, below a
//!   cursor.
//! - [`recent`]: what was written since the last commit, searchable at once.
//! - [`indexer`]: keeps the index in step with the views: the messages a batch touched
//!   are indexed again from their rows, commits are batched, and the offsets the index
//!   reflects are kept in its commit.
//! - [`writer`]: the thread that owns the index's writer, below the views in priority.
//!
//! This module holds the types the gateway and the replicas exchange, and the merge of
//! the shards' answers.

pub mod collect;
pub mod index;
pub mod indexer;
pub mod recent;
pub mod shard;
pub mod syntax;
pub mod words;
pub mod writer;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The most results one page holds.
pub const MAX_LIMIT: u32 = 100;
/// Relevance pages go this deep at most.
pub const MAX_RELEVANCE_DEPTH: u32 = 1_000;

/// How results are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Newest first (by the time the message was sent).
    #[default]
    Newest,
    /// Best match first (BM25 over each shard's index).
    Relevance,
}

/// One search, as the gateway asks it of a replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// Who searches: only what they may read now is searched.
    pub user: String,
    /// The query ([`syntax`]).
    pub q: String,
    /// Only this conversation.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// Only messages by this user.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub sort: Sort,
    pub limit: u32,
    /// Where the previous page ended ([`Cursor`], as text).
    #[serde(default)]
    pub cursor: Option<String>,
    /// Per partition of `events`, the log's end when the search was asked: a replica
    /// answers once its views and its index reflect the caller's conversations up to
    /// there (read-your-log).
    #[serde(default)]
    pub until: Vec<(i32, i64)>,
}

/// A message found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: Uuid,
    pub sender_id: String,
    /// When it was sent (ms since the epoch).
    pub ts: i64,
    /// A fragment of the text around the best match, in parts: `hit` on matched words.
    pub snippet: Vec<SnippetPart>,
    /// With `sort=relevance`: the match's score in its shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnippetPart {
    pub text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hit: bool,
}

/// A page of results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub results: Vec<SearchHit>,
    /// Give it as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where newest-first results are ordered: the send time, then the seq, then a hash of
/// the conversation (every replica computes the same), so that the order is total and
/// the same on every shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    pub ts: i64,
    pub seq: i64,
    pub conversation: u64,
}

impl OrderKey {
    pub fn of(hit: &SearchHit) -> Self {
        OrderKey {
            ts: hit.ts,
            seq: hit.seq,
            conversation: conversation_order(&hit.conversation_id),
        }
    }
}

/// The order of a conversation among those whose messages tie on time and seq.
pub fn conversation_order(conversation: &str) -> u64 {
    let digest = Sha256::digest(conversation.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Where a page ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// Newest first: the results older than this one.
    Before(OrderKey),
    /// By relevance: skip this many.
    Skip(u32),
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Before(k) => write!(f, "n{}.{}.{}", k.ts, k.seq, k.conversation),
            Cursor::Skip(n) => write!(f, "r{n}"),
        }
    }
}

impl Cursor {
    /// Reads a cursor given back by a client, for a search sorted by `sort`.
    pub fn parse(text: &str, sort: Sort) -> Result<Cursor, String> {
        let bad = || format!("cursor {text:?} is not one this search gave");
        let cursor = if let Some(rest) = text.strip_prefix('n') {
            let mut parts = rest.split('.');
            let (Some(ts), Some(seq), Some(c), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            Cursor::Before(OrderKey {
                ts: ts.parse().map_err(|_| bad())?,
                seq: seq.parse().map_err(|_| bad())?,
                conversation: c.parse().map_err(|_| bad())?,
            })
        } else if let Some(n) = text.strip_prefix('r') {
            let n: u32 = n.parse().map_err(|_| bad())?;
            if n > MAX_RELEVANCE_DEPTH {
                return Err(format!(
                    "results by relevance go {MAX_RELEVANCE_DEPTH} deep at most"
                ));
            }
            Cursor::Skip(n)
        } else {
            return Err(bad());
        };
        match (cursor, sort) {
            (Cursor::Before(_), Sort::Newest) | (Cursor::Skip(_), Sort::Relevance) => Ok(cursor),
            _ => Err(format!(
                "cursor {text:?} belongs to a search sorted the other way"
            )),
        }
    }
}

impl SearchQuery {
    /// Checks everything but the caller: the limit, the cursor and the query's syntax.
    pub fn check(&self) -> Result<(syntax::Parsed, Option<Cursor>), String> {
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(format!("limit must be 1 to {MAX_LIMIT}"));
        }
        let cursor = self
            .cursor
            .as_deref()
            .map(|c| Cursor::parse(c, self.sort))
            .transpose()?;
        Ok((syntax::parse(&self.q)?, cursor))
    }

    /// How many results by relevance to skip.
    pub fn skip(&self, cursor: Option<Cursor>) -> u32 {
        match cursor {
            Some(Cursor::Skip(n)) => n,
            _ => 0,
        }
    }
}

/// The page the shards' answers make together: each shard answered with its best
/// results (newest first: the `limit` after the cursor, and whether it has more; by
/// relevance: its best `skip + limit`, and whether it has more).
pub fn merge(q: &SearchQuery, cursor: Option<Cursor>, parts: Vec<SearchPage>) -> SearchPage {
    let more = parts.iter().any(|p| p.next_cursor.is_some());
    let mut all: Vec<SearchHit> = parts.into_iter().flat_map(|p| p.results).collect();
    let limit = q.limit as usize;
    match q.sort {
        Sort::Newest => {
            all.sort_by_key(|h| std::cmp::Reverse(OrderKey::of(h)));
            let more = more || all.len() > limit;
            all.truncate(limit);
            let next_cursor = all
                .last()
                .filter(|_| more)
                .map(|h| Cursor::Before(OrderKey::of(h)).to_string());
            SearchPage {
                results: all,
                next_cursor,
            }
        }
        Sort::Relevance => {
            all.sort_by(|a, b| {
                let (sa, sb) = (a.score.unwrap_or(0.0), b.score.unwrap_or(0.0));
                sb.total_cmp(&sa)
                    .then_with(|| OrderKey::of(b).cmp(&OrderKey::of(a)))
            });
            let skip = q.skip(cursor) as usize;
            let more = more || all.len() > skip + limit;
            let results: Vec<SearchHit> = all.into_iter().skip(skip).take(limit).collect();
            let end = (skip + limit) as u32;
            let next_cursor =
                (more && end < MAX_RELEVANCE_DEPTH).then(|| Cursor::Skip(end).to_string());
            SearchPage {
                results,
                next_cursor,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(conversation: &str, seq: i64, ts: i64, score: Option<f32>) -> SearchHit {
        SearchHit {
            conversation_id: conversation.into(),
            seq,
            message_id: Uuid::nil(),
            sender_id: "a".into(),
            ts,
            snippet: Vec::new(),
            score,
        }
    }

    fn query(sort: Sort, limit: u32) -> SearchQuery {
        SearchQuery {
            user: "a".into(),
            q: "x".into(),
            conversation_id: None,
            from: None,
            sort,
            limit,
            cursor: None,
            until: Vec::new(),
        }
    }

    #[test]
    fn shards_merge_newest_first_and_the_cursor_resumes_after_the_last() {
        let q = query(Sort::Newest, 2);
        let one = SearchPage {
            results: vec![hit("c1", 9, 300, None), hit("c1", 4, 100, None)],
            next_cursor: None,
        };
        let two = SearchPage {
            results: vec![hit("c2", 7, 200, None)],
            next_cursor: None,
        };
        let page = merge(&q, None, vec![one, two]);
        let seqs: Vec<i64> = page.results.iter().map(|h| h.seq).collect();
        assert_eq!(seqs, [9, 7]);
        let next = page.next_cursor.expect("one more result");
        let Cursor::Before(k) = Cursor::parse(&next, Sort::Newest).unwrap() else {
            panic!("{next}")
        };
        assert_eq!((k.ts, k.seq), (200, 7));
        assert_eq!(k.conversation, conversation_order("c2"));
        assert!(Cursor::parse(&next, Sort::Relevance).is_err());
    }

    #[test]
    fn relevance_pages_skip_what_was_shown() {
        let q = SearchQuery {
            cursor: Some("r1".into()),
            ..query(Sort::Relevance, 1)
        };
        let (_, cursor) = q.check().unwrap();
        let one = SearchPage {
            results: vec![hit("c1", 1, 1, Some(2.0)), hit("c1", 2, 2, Some(0.5))],
            next_cursor: None,
        };
        let two = SearchPage {
            results: vec![hit("c2", 3, 3, Some(1.0))],
            next_cursor: None,
        };
        let page = merge(&q, cursor, vec![one, two]);
        assert_eq!(page.results[0].seq, 3);
        assert_eq!(page.next_cursor.as_deref(), Some("r2"));
    }

    #[test]
    fn bad_cursors_and_limits_are_refused() {
        for (cursor, sort) in [
            ("x", Sort::Newest),
            ("n1.2", Sort::Newest),
            ("n1.2.3.4", Sort::Newest),
            ("r5000", Sort::Relevance),
            ("nq.1.2", Sort::Newest),
        ] {
            assert!(Cursor::parse(cursor, sort).is_err(), "{cursor}");
        }
        assert!(query(Sort::Newest, 0).check().is_err());
        assert!(query(Sort::Newest, 101).check().is_err());
    }
}
