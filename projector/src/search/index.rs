//! One shard's full-text index (tantivy), in `<data dir>/search`.
//!
//! A document per message the views hold and have not deleted, its body as it reads
//! now (the last edit's). Fields: `conversation`, `sender`, `seq` (with the conversation,
//! what an update replaces), `ts`, `order` (the conversation's place among equal times,
//! [`super::conversation_order`]) and `body`.
//!
//! A search is filtered inside the query by what the caller may read: the union, over
//! their conversations in this shard, of (that conversation and seq after the offset they
//! read from). A page therefore never comes back short because of what they may not see.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use tantivy::indexer::UserOperation;
use tantivy::query::{BooleanQuery, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::collect::{Best, Rank};
use super::recent::Recent;
use super::syntax::{Clause, Parsed};
use super::words::{self, ANALYZER};
use super::{Cursor, SnippetPart, Sort};
use crate::error::{Error, Result};
use crate::store::rows::MessageRow;

/// The writer's memory for documents not yet written out.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// The most characters a snippet shows.
const SNIPPET_CHARS: usize = 160;

/// What a commit says about the index: the views' incarnation it was built from, and
/// per partition of `events` the next offset it reflects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub incarnation: String,
    pub applied: BTreeMap<i32, i64>,
}

#[derive(Clone, Copy)]
struct Fields {
    conversation: Field,
    sender: Field,
    seq: Field,
    ts: Field,
    order: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::builder();
    // Nothing is stored: a result's row (author, time, text) is read from the views.
    let body = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    // A message's document is found again (to replace it) by its conversation and its
    // seq, both indexed: a key field of the two would add a term per document to
    // write, and to merge again at each merge, for what only an edit or a deletion
    // looks up.
    let fields = Fields {
        conversation: s.add_text_field("conversation", STRING | FAST),
        sender: s.add_text_field("sender", STRING),
        seq: s.add_i64_field("seq", INDEXED | FAST),
        ts: s.add_i64_field("ts", FAST),
        order: s.add_u64_field("order", FAST),
        body: s.add_text_field("body", body),
    };
    (s.build(), fields)
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("search index: {e}"))
}

impl Fields {
    /// The document of the message at (`conversation`, `seq`), if it is indexed.
    fn message(&self, conversation: &str, seq: i64) -> Box<dyn Query> {
        let term =
            |t: Term| -> Box<dyn Query> { Box::new(TermQuery::new(t, IndexRecordOption::Basic)) };
        Box::new(BooleanQuery::intersection(vec![
            term(Term::from_field_text(self.conversation, conversation)),
            term(Term::from_field_i64(self.seq, seq)),
        ]))
    }
}

/// The index as searches read it.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    f: Fields,
    /// What was written since the last visible commit ([`super::recent`]). A search
    /// holds it (read) while it takes its searcher; a commit's reload holds it (write)
    /// while it swaps the searcher and forgets what the commit holds.
    recent: RwLock<Recent>,
}

/// The index's one writer (it holds the index's lock until dropped).
pub struct Writer {
    writer: Mutex<IndexWriter>,
    f: Fields,
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if there is none, and its writer. Blocking.
    pub fn open(dir: &Path) -> Result<(Self, Writer)> {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        let (schema, f) = schema();
        let mut directory = tantivy::directory::MmapDirectory::open(dir).map_err(err)?;
        if Index::exists(&directory).map_err(err)?
            && Index::open(directory.clone()).map_err(err)?.schema() != schema
        {
            // An index of another layout (an older Parley's): it is built again from
            // the views, as a new one is.
            tracing::warn!(dir = %dir.display(), "the search index has another layout: building it again");
            drop(directory);
            std::fs::remove_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
            directory = tantivy::directory::MmapDirectory::open(dir).map_err(err)?;
        }
        let index = Index::open_or_create(directory, schema).map_err(err)?;
        index.tokenizers().register(ANALYZER, words::analyzer());
        // One indexing thread and one merging thread: the index must leave the views'
        // consumer its core.
        let options = tantivy::indexer::IndexWriterOptions::builder()
            .memory_budget_per_thread(WRITER_MEMORY)
            .num_worker_threads(1)
            .num_merge_threads(1)
            .build();
        let writer = index.writer_with_options(options).map_err(err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(err)?;
        Ok((
            SearchIndex {
                index,
                reader,
                f,
                recent: RwLock::default(),
            },
            Writer {
                writer: Mutex::new(writer),
                f,
            },
        ))
    }

    /// What the last commit said, if there was one.
    pub fn payload(&self) -> Result<Option<Payload>> {
        let metas = self.index.load_metas().map_err(err)?;
        match metas.payload {
            Some(p) => Ok(Some(serde_json::from_str(&p)?)),
            None => Ok(None),
        }
    }

    /// Searchable at once: the message at (`conversation`, `seq`) as [`Changes::set`]
    /// indexed it, until the commit holding it is visible.
    pub fn remember(
        &self,
        conversation: &str,
        seq: i64,
        indexed: Option<(&MessageRow, Vec<String>)>,
    ) {
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        recent.remember(conversation, seq, indexed);
    }

    /// Shows the last commit to searches, and forgets the overlay it makes redundant.
    fn reload(&self) -> Result<()> {
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        self.reader.reload().map_err(err)?;
        recent.clear();
        Ok(())
    }

    /// How many messages searches see.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// The page of `parsed` among the messages of `allowed` (conversation, and the
    /// offset after which the caller reads it), ordered by `sort`.
    pub fn search(
        &self,
        allowed: &[(String, i64)],
        parsed: &Parsed,
        sort: Sort,
        cursor: Option<Cursor>,
        limit: usize,
    ) -> Result<Hits> {
        let empty = Hits {
            hits: Vec::new(),
            more: false,
            snippets: None,
        };
        if allowed.is_empty() {
            return Ok(empty);
        }
        let f = self.f;
        let term = |field: Field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        let mut must: Vec<Box<dyn Query>> = Vec::new();
        let mut clauses: Vec<Vec<String>> = Vec::new();
        for clause in &parsed.clauses {
            let (Clause::Word(w) | Clause::Phrase(w)) = clause;
            let clause_words = words::words(w);
            let terms: Vec<Term> = clause_words
                .iter()
                .map(|t| Term::from_field_text(f.body, t))
                .collect();
            clauses.push(clause_words);
            let q: Box<dyn Query> = match terms.len() {
                0 => continue,
                1 => Box::new(TermQuery::new(
                    terms[0].clone(),
                    IndexRecordOption::WithFreqs,
                )),
                _ => Box::new(PhraseQuery::new(terms)),
            };
            must.push(q);
        }
        if !parsed.from.is_empty() {
            let authors = parsed.from.iter().map(|a| term(f.sender, a)).collect();
            must.push(Box::new(BooleanQuery::union(authors)));
        }
        // What the caller may read, inside the query: their conversations here, and in
        // each the messages after the offset they read from. The offsets are checked as
        // each document is collected, from its fast fields (a range over `seq` per
        // conversation would walk the whole column for each); should two of the
        // conversations share an order (a 64-bit hash), the ranges go in the query.
        let mine: Vec<&(String, i64)> = allowed
            .iter()
            .filter(|(c, _)| parsed.within.is_empty() || parsed.within.contains(c))
            .collect();
        let after: HashMap<u64, i64> = mine
            .iter()
            .map(|(c, from)| (super::conversation_order(c), *from))
            .collect();
        let distinct = after.len() == mine.len();
        let readable: Vec<Box<dyn Query>> = mine
            .iter()
            .map(|(c, from)| -> Box<dyn Query> {
                if distinct {
                    return term(f.conversation, c);
                }
                let after = RangeQuery::new(
                    Bound::Excluded(Term::from_field_i64(f.seq, *from)),
                    Bound::Unbounded,
                );
                Box::new(BooleanQuery::intersection(vec![
                    term(f.conversation, c),
                    Box::new(after),
                ]))
            })
            .collect();
        if readable.is_empty() {
            return Ok(empty);
        }
        must.push(Box::new(BooleanQuery::union(readable)));
        let query = BooleanQuery::intersection(must);
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        let searcher = self.reader.searcher();
        // Rarer words weigh more in choosing the fragment; a word only the overlay
        // holds yet is as rare as can be.
        let snippets = (!clauses.is_empty()).then(|| {
            let terms = clauses
                .iter()
                .flatten()
                .map(|w| {
                    let df = searcher
                        .doc_freq(&Term::from_field_text(f.body, w))
                        .unwrap_or(0);
                    (w.clone(), 1.0 / (1.0 + df as f32))
                })
                .collect();
            SnippetGenerator::new(terms, words::analyzer(), f.body, SNIPPET_CHARS)
        });
        // Newest: the `limit` after the cursor. By relevance: the best `skip + limit`
        // (the gateway merges them with other shards'), ties broken as newest first.
        let (before, want) = match (sort, cursor) {
            (Sort::Newest, Some(Cursor::Before(k))) => (Some(k), limit),
            (Sort::Relevance, Some(Cursor::Skip(n))) => (None, n as usize + limit),
            _ => (None, limit),
        };
        let ranked = sort == Sort::Relevance;
        let top = searcher
            .search(
                &query,
                &Best {
                    limit: want + 1,
                    before,
                    ranked,
                    shadow: recent.shadow(),
                    after: distinct.then(|| Arc::new(after)),
                },
            )
            .map_err(err)?;
        let mut ranked_hits: Vec<(Rank, String, i64)> = Vec::with_capacity(top.len());
        for (rank, address) in top {
            let reader = searcher.segment_reader(address.segment_ord);
            let fast = reader.fast_fields();
            let seq = fast.i64("seq").map_err(err)?.first(address.doc_id);
            let mut conversation = String::new();
            if let Some(column) = fast.str("conversation").map_err(err)? {
                if let Some(ord) = column.term_ords(address.doc_id).next() {
                    column.ord_to_str(ord, &mut conversation).map_err(err)?;
                }
            }
            if let (Some(seq), false) = (seq, conversation.is_empty()) {
                ranked_hits.push((rank, conversation, seq));
            }
        }
        // And what was written since the last commit.
        if !recent.is_empty() {
            let allowed: HashMap<&str, i64> = allowed
                .iter()
                .map(|(c, from)| (c.as_str(), *from))
                .collect();
            let idf = ranked.then(|| {
                let n = searcher.num_docs() as f32 + recent.len() as f32;
                clauses
                    .iter()
                    .flatten()
                    .map(|w| {
                        let df = searcher
                            .doc_freq(&Term::from_field_text(f.body, w))
                            .unwrap_or(0) as f32;
                        (w.clone(), (1.0 + (n - df + 0.5) / (df + 0.5)).ln())
                    })
                    .collect::<HashMap<String, f32>>()
            });
            for h in recent.matches(&allowed, parsed, &clauses, before, idf.as_ref()) {
                ranked_hits.push((h.rank, h.conversation, h.seq));
            }
            ranked_hits.sort_by_key(|h| std::cmp::Reverse(h.0));
        }
        let more = ranked_hits.len() > want;
        ranked_hits.truncate(want);
        let hits = ranked_hits
            .into_iter()
            .map(|(rank, conversation, seq)| Found {
                conversation,
                seq,
                score: ranked.then(|| f32::from_bits(rank.score)),
            })
            .collect();
        Ok(Hits {
            hits,
            more,
            snippets,
        })
    }
}

/// A message a search found: the rest is read from the views.
pub struct Found {
    pub conversation: String,
    pub seq: i64,
    pub score: Option<f32>,
}

/// What a search found in one index.
pub struct Hits {
    /// The best first.
    pub hits: Vec<Found>,
    /// The index holds more.
    pub more: bool,
    /// Makes a snippet of a body, with the query's words marked (none without words).
    pub snippets: Option<SnippetGenerator>,
}

/// The snippet of `body` for a search's results.
pub fn snippet(snippets: Option<&SnippetGenerator>, body: &str) -> Vec<SnippetPart> {
    match snippets {
        Some(g) => {
            let s = g.snippet(body);
            if s.is_empty() {
                plain(body)
            } else {
                parts(s.fragment(), s.highlighted())
            }
        }
        None => plain(body),
    }
}

impl Writer {
    /// Lets the merges under way finish, then lets go of the index.
    pub fn finish(self) {
        let writer = self.writer.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writer.wait_merging_threads() {
            tracing::warn!(error = %e, "a merge of the search index did not finish");
        }
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes to the index, handed to its indexing thread together.
    pub fn changes(&self) -> Changes<'_> {
        Changes {
            writer: self.writer(),
            f: self.f,
            adds: Vec::new(),
        }
    }

    /// Drops every document (before indexing the views again from nothing).
    pub fn clear(&self) -> Result<()> {
        self.writer().delete_all_documents().map_err(err)?;
        Ok(())
    }

    /// Writes what was put since the last commit, with `payload`, and shows it to
    /// searches.
    pub fn commit(&self, payload: &Payload, index: &SearchIndex) -> Result<()> {
        let text = serde_json::to_string(payload)?;
        {
            let mut writer = self.writer();
            let mut prepared = writer.prepare_commit().map_err(err)?;
            prepared.set_payload(&text);
            prepared.commit().map_err(err)?;
        }
        index.reload()
    }
}

/// Changes to the index ([`Writer::changes`]): the documents added go to tantivy's
/// indexing thread in one hand-over when [`Changes::send`] is called (or before a
/// deletion, which must follow them), not one by one. Seen by searches once committed.
#[must_use = "the documents added are handed over only by `send`"]
pub struct Changes<'w> {
    writer: MutexGuard<'w, IndexWriter>,
    f: Fields,
    adds: Vec<UserOperation>,
}

impl Changes<'_> {
    /// Makes the message at (`conversation`, `seq`) read as `row` says: indexed with its
    /// current body, or gone if it is deleted or absent. `replaces`: an earlier version
    /// may be indexed (by a commit, or earlier in these changes) and is deleted first.
    /// A deletion is a query every segment is searched for at the next commit, so a
    /// message first posted in the batch that touched it is added without one.
    ///
    /// Returns the row and the body's words, as the overlay of what is not committed
    /// yet keeps them ([`SearchIndex::remember`]).
    pub fn set<'r>(
        &mut self,
        conversation: &str,
        seq: i64,
        row: Option<&'r MessageRow>,
        replaces: bool,
    ) -> Result<Option<(&'r MessageRow, Vec<String>)>> {
        let f = self.f;
        if replaces {
            self.flush()?;
            self.writer
                .delete_query(f.message(conversation, seq))
                .map_err(err)?;
        }
        let Some(row) = row.filter(|r| !r.deleted) else {
            return Ok(None);
        };
        let mut doc = TantivyDocument::new();
        doc.add_text(f.conversation, conversation);
        doc.add_text(f.sender, &row.sender_id);
        doc.add_i64(f.seq, seq);
        doc.add_i64(f.ts, row.ts);
        doc.add_u64(f.order, super::conversation_order(conversation));
        doc.add_text(f.body, &row.body);
        self.adds.push(UserOperation::Add(doc));
        Ok(Some((row, words::words(&row.body))))
    }

    /// Hands the documents added over to the indexing thread.
    pub fn send(mut self) -> Result<()> {
        self.flush()
    }

    /// Hands the documents added so far over, and goes on taking changes.
    pub fn flush(&mut self) -> Result<()> {
        if !self.adds.is_empty() {
            self.writer
                .run(std::mem::take(&mut self.adds))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The start of a body, with nothing highlighted.
fn plain(body: &str) -> Vec<SnippetPart> {
    let mut text: String = body.chars().take(SNIPPET_CHARS).collect();
    if text.len() < body.len() {
        text.push('…');
    }
    vec![SnippetPart { text, hit: false }]
}

/// A fragment cut at its highlighted byte ranges.
fn parts(fragment: &str, highlighted: &[std::ops::Range<usize>]) -> Vec<SnippetPart> {
    let mut out = Vec::new();
    let mut at = 0;
    for r in highlighted {
        let (start, end) = (r.start.min(fragment.len()), r.end.min(fragment.len()));
        if start < at || !fragment.is_char_boundary(start) || !fragment.is_char_boundary(end) {
            continue;
        }
        if start > at {
            out.push(SnippetPart {
                text: fragment[at..start].to_string(),
                hit: false,
            });
        }
        out.push(SnippetPart {
            text: fragment[start..end].to_string(),
            hit: true,
        });
        at = end;
    }
    if at < fragment.len() {
        out.push(SnippetPart {
            text: fragment[at..].to_string(),
            hit: false,
        });
    }
    out
}
