//! Collecting a search's best documents: by [`Rank`] (score, then newest first), below
//! a cursor, leaving out the documents the recent overlay shadows
//! ([`super::recent`]).

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::{DocAddress, SegmentReader};

use super::OrderKey;

/// Where a document ranks: its score (0 unless ranked by relevance; scores are never
/// negative, so their bits order like them), then newest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub score: u32,
    pub key: OrderKey,
}

/// Collects the best `limit` documents (by [`Rank`]), older than `before` if given.
pub struct Best {
    pub limit: usize,
    pub before: Option<OrderKey>,
    pub ranked: bool,
    /// (conversation order, seq) of documents not to collect: newer versions of them
    /// are in the recent overlay.
    pub shadow: Arc<HashSet<(u64, i64)>>,
    /// Per conversation order: only its documents after this seq are collected (what
    /// the caller may read); none: the query itself says it.
    pub after: Option<Arc<HashMap<u64, i64>>>,
}

pub struct BestInSegment {
    limit: usize,
    before: Option<OrderKey>,
    shadow: Arc<HashSet<(u64, i64)>>,
    after: Option<Arc<HashMap<u64, i64>>>,
    segment: u32,
    ts: tantivy::columnar::Column<i64>,
    seq: tantivy::columnar::Column<i64>,
    order: tantivy::columnar::Column<u64>,
    /// The best so far, worst on top.
    top: BinaryHeap<std::cmp::Reverse<(Rank, DocAddress)>>,
}

impl Collector for Best {
    type Fruit = Vec<(Rank, DocAddress)>;
    type Child = BestInSegment;

    fn for_segment(&self, segment: u32, reader: &SegmentReader) -> tantivy::Result<Self::Child> {
        let fast = reader.fast_fields();
        Ok(BestInSegment {
            limit: self.limit,
            before: self.before,
            shadow: self.shadow.clone(),
            after: self.after.clone(),
            segment,
            ts: fast.i64("ts")?,
            seq: fast.i64("seq")?,
            order: fast.u64("order")?,
            top: BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.ranked
    }

    fn merge_fruits(&self, fruits: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<(Rank, DocAddress)> = fruits.into_iter().flatten().collect();
        all.sort_by(|a, b| b.cmp(a));
        all.truncate(self.limit);
        Ok(all)
    }
}

impl SegmentCollector for BestInSegment {
    type Fruit = Vec<(Rank, DocAddress)>;

    fn collect(&mut self, doc: tantivy::DocId, score: tantivy::Score) {
        let key = OrderKey {
            ts: self.ts.first(doc).unwrap_or(0),
            seq: self.seq.first(doc).unwrap_or(0),
            conversation: self.order.first(doc).unwrap_or(0),
        };
        if self.before.is_some_and(|b| key >= b)
            || self.shadow.contains(&(key.conversation, key.seq))
        {
            return;
        }
        if let Some(after) = &self.after {
            if after
                .get(&key.conversation)
                .is_none_or(|from| key.seq <= *from)
            {
                return;
            }
        }
        let rank = Rank {
            score: score.max(0.0).to_bits(),
            key,
        };
        let entry = std::cmp::Reverse((rank, DocAddress::new(self.segment, doc)));
        if self.top.len() < self.limit {
            self.top.push(entry);
        } else if self.top.peek().is_some_and(|worst| entry < *worst) {
            self.top.pop();
            self.top.push(entry);
        }
    }

    fn harvest(self) -> Self::Fruit {
        self.top.into_iter().map(|r| r.0).collect()
    }
}
