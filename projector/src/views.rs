//! What the other roles ask of the projector, as a trait: [`LocalViews`] answers in
//! process (`parley dev`), [`crate::HttpViews`] over the projector's HTTP API.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use parley_schemas::frames::{MessageChange, MessageView};
use parley_schemas::ConversationKind;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::search::indexer::Indexer;
use crate::search::{SearchPage, SearchQuery};
use crate::store::mailbox::{InboxPage, ReceiptView};
use crate::store::sealed::Textless;
use crate::store::{Store, Stream};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub limit: u32,
    /// Who reads: each message then says which reactions are theirs (`my_reactions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewer: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub messages: Vec<MessageView>,
    /// For a page read forward (`after` given): the changes to messages in the same
    /// stretch of the log, after `after` and up to the last message (when `has_more`)
    /// or to `before`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<MessageChange>,
    pub has_more: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    pub conversation_id: String,
    #[serde(rename = "type")]
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub members: Vec<String>,
    pub last_seq: Option<i64>,
    pub partition: i32,
    /// Who created it: in a group, the member who ranks above its admins.
    #[serde(default)]
    pub creator: Option<String>,
    /// A group's admins (the creator not among them unless made one).
    #[serde(default)]
    pub admins: Vec<String>,
    /// Whether members added to the group read its history from its creation.
    #[serde(default)]
    pub full_history: bool,
    /// Disappearing messages: each message posted from now on disappears this long
    /// (ms) after it was posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_after_ms: Option<i64>,
    /// The seq of the record that set `disappear_after_ms`: messages after it have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_since: Option<i64>,
    /// In a direct conversation, the members who have written in it since they became
    /// members (each one's consent to being shown to the other).
    #[serde(default)]
    pub wrote: Vec<String>,
}

/// A conversation's view as the rules' state of that one conversation: the gateway
/// checks a change against the same rules the log applies before it writes it.
impl parley_schemas::rules::LogState for ConversationView {
    type Error = std::convert::Infallible;

    fn kind(&self, c: &str) -> std::result::Result<Option<ConversationKind>, Self::Error> {
        Ok((c == self.conversation_id).then_some(self.kind))
    }

    fn is_member(&self, c: &str, user: &str) -> std::result::Result<bool, Self::Error> {
        Ok(c == self.conversation_id && self.members.iter().any(|m| m == user))
    }

    fn member_count(&self, c: &str) -> std::result::Result<usize, Self::Error> {
        Ok(if c == self.conversation_id {
            self.members.len()
        } else {
            0
        })
    }

    fn seen_message(&self, _: &str, _: &Uuid) -> std::result::Result<bool, Self::Error> {
        Ok(false)
    }

    fn creator(&self, c: &str) -> std::result::Result<Option<String>, Self::Error> {
        Ok(self.creator.clone().filter(|_| c == self.conversation_id))
    }

    fn is_admin(&self, c: &str, user: &str) -> std::result::Result<bool, Self::Error> {
        Ok(c == self.conversation_id && self.admins.iter().any(|a| a == user))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub conversation_id: String,
    #[serde(rename = "type")]
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub last_seq: Option<i64>,
    /// seq of its latest kept change to a message (edit, deletion, reaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<i64>,
    /// Messages from others after the caller's read mark (at most 1,000).
    #[serde(default)]
    pub unread: u64,
    /// How many of those mention the caller (`@user_id`), in groups of every size.
    #[serde(default)]
    pub mentions: u64,
    /// How many members it has.
    #[serde(default)]
    pub members: usize,
    /// The offset after which the user reads its history: where they became a member,
    /// or its creation in a group with full history open to new members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotConversation {
    pub conversation_id: String,
    pub kind: ConversationKind,
    /// (user, offset they joined at).
    pub members: Vec<(String, i64)>,
    pub last_seq: Option<i64>,
    /// seq of its last kept change to a message; -1 when it has none (absent from an
    /// older projector: unknown).
    #[serde(default)]
    pub last_change: Option<i64>,
    /// Offset of its `ConversationCreated`.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Who created it.
    #[serde(default)]
    pub creator: Option<String>,
    /// (admin, offset of the `MemberRoleSet` that made them one).
    #[serde(default)]
    pub admins: Vec<(String, i64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    pub partition: i32,
    /// The views reflect every record of the partition before this offset.
    pub applied: i64,
    pub conversations: Vec<SnapshotConversation>,
    /// (seq, conversation, message id) of the messages the views kept among the
    /// partition's last records before `applied`, oldest first: a router taking the
    /// partition over starts its dedup window with them.
    #[serde(default)]
    pub recent: Vec<(i64, String, Uuid)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Next offset to apply, per owned partition of `events`.
    pub applied: BTreeMap<i32, i64>,
    /// The same, of `inbox`.
    #[serde(default)]
    pub inbox: BTreeMap<i32, i64>,
    /// The same, of `receipts`.
    #[serde(default)]
    pub receipts: BTreeMap<i32, i64>,
}

#[async_trait]
pub trait Views: Send + Sync + 'static {
    async fn conversation(&self, id: &str) -> Result<Option<ConversationView>>;
    async fn is_member(&self, conversation: &str, user: &str) -> Result<bool>;
    /// The offset after which `user` reads the conversation's history, if they are a
    /// member: the record that made them one, or, in a group whose history is open to new
    /// members (`GroupSettingsChanged`), its creation.
    async fn history_from(&self, conversation: &str, user: &str) -> Result<Option<i64>>;
    /// `user`'s conversations; with `unread`, each one's unread count (dearer: it reads
    /// history), else 0.
    async fn user_conversations(
        &self,
        user: &str,
        unread: bool,
    ) -> Result<Vec<ConversationSummary>>;
    async fn history(&self, conversation: &str, q: HistoryQuery) -> Result<HistoryPage>;
    /// The message `id` of `conversation`, if the views hold it.
    async fn message_by_id(&self, conversation: &str, id: Uuid) -> Result<Option<MessageView>>;
    /// Waits until the views reflect every record before `offsets` (partition, next
    /// offset), at most `timeout`; false if they did not get there in time.
    async fn wait_applied(&self, offsets: &[(i32, i64)], timeout: Duration) -> Result<bool> {
        self.wait_stream_applied(Stream::Events, offsets, timeout)
            .await
    }
    /// [`Views::wait_applied`] for the records of `stream` (`events`, `inbox` or
    /// `receipts`: their partitions are numbered alike).
    async fn wait_stream_applied(
        &self,
        stream: Stream,
        offsets: &[(i32, i64)],
        timeout: Duration,
    ) -> Result<bool>;
    async fn partition_snapshot(&self, partition: i32) -> Result<PartitionSnapshot>;
    /// Messages waiting for `user` (offline when they were routed, not acknowledged yet).
    async fn inbox(&self, user: &str, limit: u32) -> Result<InboxPage>;
    /// How far each member has received and read `conversation`.
    async fn receipts(&self, conversation: &str) -> Result<Vec<ReceiptView>>;
    async fn status(&self) -> Result<Status>;
    async fn checksum(&self) -> Result<String>;
    /// One replica's own answer to `q`, unmerged: its best results, and "more" when it
    /// has more ([`crate::search::merge`] makes pages of such answers).
    async fn search_shard(&self, q: SearchQuery) -> Result<SearchPage>;
    /// The messages `q.user` may read now that match `q`, a page of them
    /// ([`crate::search`]).
    async fn search(&self, q: SearchQuery) -> Result<SearchPage> {
        let cursor = q.check().map_err(Error::BadRequest)?.1;
        let page = self.search_shard(q.clone()).await?;
        Ok(crate::search::merge(&q, cursor, vec![page]))
    }
}

/// How long a read waits for the data keys of sealed messages it holds without them
/// (longer than the repair of a key that never came takes: [`crate::rekey`]).
const KEY_WAIT: Duration = Duration::from_secs(8);

/// The seqs of a page's messages (and edits) that show no text and are not deleted.
fn textless(page: &HistoryPage) -> Vec<i64> {
    let messages = page
        .messages
        .iter()
        .filter(|m| m.body.is_empty() && !m.deleted)
        .map(|m| m.seq);
    let edits = page.changes.iter().filter_map(|c| match c {
        MessageChange::MessageEdited {
            target_seq, body, ..
        } if body.is_empty() => Some(*target_seq),
        _ => None,
    });
    messages.chain(edits).collect()
}

/// The views of a projector in this process.
#[derive(Clone)]
pub struct LocalViews {
    pub(crate) store: Store,
    /// Next offset to apply, per stream and partition.
    pub(crate) applied: watch::Receiver<BTreeMap<(Stream, i32), i64>>,
    pub(crate) owned: Vec<i32>,
    /// The search index of the same partitions (none when search is off).
    pub(crate) indexer: Option<Indexer>,
}

impl LocalViews {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Unavailable(format!("query task: {e}")))?
    }

    fn reached(
        applied: &BTreeMap<(Stream, i32), i64>,
        stream: Stream,
        offsets: &[(i32, i64)],
    ) -> bool {
        offsets
            .iter()
            .all(|(p, o)| applied.get(&(stream, *p)).copied().unwrap_or(0) >= *o)
    }

    fn check_owned(&self, partition: i32) -> Result<()> {
        if self.owned.contains(&partition) {
            Ok(())
        } else {
            Err(Error::BadRequest(format!(
                "partition {partition} is not this projector's"
            )))
        }
    }
}

#[async_trait]
impl Views for LocalViews {
    async fn conversation(&self, id: &str) -> Result<Option<ConversationView>> {
        let id = id.to_string();
        self.blocking(move |s| s.conversation(&id)).await
    }

    async fn is_member(&self, conversation: &str, user: &str) -> Result<bool> {
        let (c, u) = (conversation.to_string(), user.to_string());
        self.blocking(move |s| s.is_member(&c, &u)).await
    }

    async fn history_from(&self, conversation: &str, user: &str) -> Result<Option<i64>> {
        let (c, u) = (conversation.to_string(), user.to_string());
        self.blocking(move |s| s.history_from(&c, &u)).await
    }

    async fn user_conversations(
        &self,
        user: &str,
        unread: bool,
    ) -> Result<Vec<ConversationSummary>> {
        let u = user.to_string();
        self.blocking(move |s| s.user_conversations(&u, unread))
            .await
    }

    async fn history(&self, conversation: &str, q: HistoryQuery) -> Result<HistoryPage> {
        let deadline = tokio::time::Instant::now() + KEY_WAIT;
        let mut applied = self.applied.clone();
        loop {
            let (c, q2) = (conversation.to_string(), q.clone());
            let page = self.blocking(move |s| s.history(&c, &q2)).await?;
            let textless = textless(&page);
            if textless.is_empty() {
                return Ok(page);
            }
            let c = conversation.to_string();
            let why = self.blocking(move |s| s.textless(&c, &textless)).await?;
            let pending = why
                .iter()
                .any(|(_, w)| matches!(w, Textless::KeyAwaited | Textless::OpensNow));
            if !pending {
                for (seq, w) in why.iter().filter(|(_, w)| *w != Textless::Empty) {
                    warn!(conversation_id = %conversation, seq, why = ?w, "a sealed message read without its text");
                }
                return Ok(page);
            }
            // A sealed message whose key this replica has not read yet: a page without
            // its text would be kept by the client as if it were the text.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || tokio::time::timeout(left, applied.changed()).await.is_err() {
                return Err(Error::Unavailable(
                    "the data key of a sealed message has not reached these views yet".into(),
                ));
            }
        }
    }

    async fn message_by_id(&self, conversation: &str, id: Uuid) -> Result<Option<MessageView>> {
        let c = conversation.to_string();
        self.blocking(move |s| s.message_by_id(&c, &id)).await
    }

    async fn wait_stream_applied(
        &self,
        stream: Stream,
        offsets: &[(i32, i64)],
        timeout: Duration,
    ) -> Result<bool> {
        for (p, _) in offsets {
            self.check_owned(*p)?;
        }
        let mut rx = self.applied.clone();
        let outcome = tokio::time::timeout(timeout, async {
            rx.wait_for(|applied| Self::reached(applied, stream, offsets))
                .await
                .is_ok()
        })
        .await;
        match outcome {
            Ok(true) => Ok(true),
            Ok(false) => Err(Error::Unavailable("projector stopped".into())),
            Err(_) => Ok(false),
        }
    }

    async fn partition_snapshot(&self, partition: i32) -> Result<PartitionSnapshot> {
        self.check_owned(partition)?;
        self.blocking(move |s| s.partition_snapshot(partition))
            .await
    }

    async fn inbox(&self, user: &str, limit: u32) -> Result<InboxPage> {
        let u = user.to_string();
        let page = self.blocking(move |s| s.inbox(&u, limit)).await?;
        metrics::histogram!(parley_ops::metrics::INBOX_SIZE).record(page.entries.len() as f64);
        Ok(page)
    }

    async fn receipts(&self, conversation: &str) -> Result<Vec<ReceiptView>> {
        let c = conversation.to_string();
        self.blocking(move |s| s.receipts(&c)).await
    }

    async fn status(&self) -> Result<Status> {
        let all = self.applied.borrow().clone();
        let of = |stream: Stream| -> BTreeMap<i32, i64> {
            self.owned
                .iter()
                .map(|p| (*p, all.get(&(stream, *p)).copied().unwrap_or(0)))
                .collect()
        };
        Ok(Status {
            applied: of(Stream::Events),
            inbox: of(Stream::Inbox),
            receipts: of(Stream::Receipts),
        })
    }

    async fn checksum(&self) -> Result<String> {
        self.blocking(|s| s.checksum()).await
    }

    async fn search_shard(&self, q: SearchQuery) -> Result<SearchPage> {
        let Some(indexer) = &self.indexer else {
            return Err(Error::Unavailable(
                "search is off on this replica (started with --no-search)".into(),
            ));
        };
        let (store, applied) = (&self.store, &self.applied);
        crate::search::shard::answer(store, applied, &self.owned, indexer, q).await
    }
}
