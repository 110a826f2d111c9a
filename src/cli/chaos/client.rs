//! One simulated user, and what it records for the checks.
//!
//! The user holds a WebSocket [`Session`] to its home gateway and sends one message at
//! a time to its conversation (client_msg_id `<user>-<n>`). Any failure (an `error`
//! frame, no answer in time, a closed session) means the same client_msg_id is sent
//! again, after reconnecting if the session closed: a message is never abandoned while
//! the run lasts. A reconnect goes to the other gateway first, carries the old store
//! over, waits for `ready` and syncs. Every `sent` frame is recorded, repeated ones
//! included, and every ~2 s the user acknowledges its cursor.
//!
//! Every [`CHANGE_EVERY`]th acknowledged message is followed by a change, in turn: an
//! edit of its own latest message, a reaction set or taken back on the newest message
//! of someone else it holds, a deletion of its own message two sends back. A change that
//! fails is not retried (it may still have landed: the checks compare with history).
//!
//! After the load, the user first gets its last message acknowledged, then waits (only
//! reconnecting if its session closed, never syncing on purpose) until its store equals
//! the conversation's history, message by message, text, edits, deletions and reaction
//! counts included: a message or a change the system failed to bring it stays missing.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parley_client::session::Sent;
use parley_client::{Api, Session, SessionError, Store};
use parley_schemas::frames::MessageView;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long one send may wait for its `sent` (the log may be electing a leader).
const SEND_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a reconnect may take in all (every gateway tried, with backoff).
const RECONNECT_BUDGET: Duration = Duration::from_secs(120);
const ACK_EVERY: Duration = Duration::from_secs(2);
const ACK_TIMEOUT: Duration = Duration::from_millis(500);
/// Timed-out sends whose late `sent` is still awaited, at most.
const LATE_MAX: usize = 256;
/// A change to a message after every this many acknowledged sends.
const CHANGE_EVERY: u64 = 4;
/// How long one change may wait for its `changed`.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A user of the run.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub token: String,
    pub conversation: String,
    /// Index of the gateway it connects to first.
    pub home: usize,
}

/// Figures shared with the driver while the run goes on.
#[derive(Clone, Default)]
pub struct Progress {
    /// `sent` frames received, all users.
    pub acked: Arc<AtomicU64>,
    /// Users whose first session is synced.
    pub connected: Arc<AtomicUsize>,
    /// Users still sending (their last message not acknowledged yet).
    pub sending: Arc<AtomicUsize>,
}

pub struct Timing {
    /// Pause between sends.
    pub every: Duration,
    /// Cancelled when the load stops: no new message after it.
    pub load: CancellationToken,
    /// From then on, how long the user has to get its last message acknowledged and
    /// to come to hold its conversation's history.
    pub settle: Duration,
}

/// One `sent` frame.
#[derive(Clone, Debug)]
pub struct SentFrame {
    pub conversation: String,
    pub client_msg_id: String,
    pub message_id: Uuid,
    pub seq: i64,
}

/// What a user ended with.
#[derive(Debug)]
pub struct Record {
    pub user: String,
    pub conversation: String,
    /// Every `sent` received, in order, repeats included.
    pub sent: Vec<SentFrame>,
    /// What the client holds at the end (every session's, carried over).
    pub store: Store,
    /// Sessions opened after the first.
    pub reconnects: usize,
    /// Live `message` frames received, all sessions.
    pub arrivals: usize,
    /// Live `message` frames whose seq was below an earlier arrival's of the same
    /// conversation in the same session (the store puts them in order).
    pub arrivals_out_of_order: usize,
    /// Send attempts that failed and were retried.
    pub send_retries: usize,
    /// Changes (edits, reactions, deletions) acknowledged by `changed`.
    pub changes: usize,
    /// Changes that failed or got no answer in time (not retried).
    pub changes_failed: usize,
    /// Acks (receipts) confirmed.
    pub acks: usize,
    /// Whether the store came to equal the history of the conversation.
    pub converged: bool,
    /// Why the user stopped early (no gateway would take its session).
    pub gave_up: Option<String>,
}

/// A send that timed out; its `sent` may still come.
struct Late {
    conversation: String,
    client_msg_id: String,
    rx: oneshot::Receiver<Result<Sent, SessionError>>,
}

enum Attempt {
    Acked(Sent),
    Failed(String),
    TimedOut(oneshot::Receiver<Result<Sent, SessionError>>),
}

struct Client {
    user: User,
    gateways: Vec<String>,
    progress: Progress,
    rec: Record,
    late: Vec<Late>,
    /// The gateway of the current session.
    at: usize,
}

/// Runs one user until the end of the settle; see the module doc.
pub async fn run(user: User, gateways: Vec<String>, timing: Timing, progress: Progress) -> Record {
    let rec = Record {
        user: user.name.clone(),
        conversation: user.conversation.clone(),
        sent: Vec::new(),
        store: Store::default(),
        reconnects: 0,
        arrivals: 0,
        arrivals_out_of_order: 0,
        send_retries: 0,
        changes: 0,
        changes_failed: 0,
        acks: 0,
        converged: false,
        gave_up: None,
    };
    let at = user.home % gateways.len().max(1);
    let mut c = Client {
        user,
        gateways,
        progress,
        rec,
        late: Vec::new(),
        at,
    };
    let deadline = Instant::now() + RECONNECT_BUDGET;
    let session = match c.connect(at, Store::default(), deadline).await {
        Ok(s) => s,
        Err(store) => {
            c.rec.store = store;
            c.progress.sending.fetch_sub(1, Ordering::Relaxed);
            return c.rec;
        }
    };
    c.progress.connected.fetch_add(1, Ordering::Relaxed);
    let (session, finish_by) = c.send_loop(session, &timing).await;
    c.progress.sending.fetch_sub(1, Ordering::Relaxed);
    if let Some(session) = session {
        c.settle(session, finish_by).await;
    }
    c.rec
}

impl Client {
    /// Connects, absorbs `store`, waits for `ready` and syncs; tries the gateways from
    /// `first` on, with backoff, until `deadline`. On failure the store comes back and
    /// the reason is in `gave_up`.
    async fn connect(
        &mut self,
        first: usize,
        store: Store,
        deadline: Instant,
    ) -> Result<Session, Store> {
        let n = self.gateways.len().max(1);
        let mut store = Some(store);
        let mut backoff = Duration::from_millis(100);
        let mut last_error = String::from("no attempt");
        for i in 0.. {
            if Instant::now() >= deadline {
                break;
            }
            let g = (first + i) % n;
            let connecting = Session::connect(&self.gateways[g], &self.user.token);
            match tokio::time::timeout(Duration::from_secs(10), connecting).await {
                Ok(Ok(s)) => {
                    s.absorb(store.take().unwrap_or_default());
                    let _ = s.ready(Duration::from_secs(10)).await;
                    match s.sync(Duration::from_secs(30)).await {
                        Ok(()) => {
                            self.at = g;
                            return Ok(s);
                        }
                        Err(e) => {
                            last_error = format!("sync at gateway {g}: {e}");
                            store = Some(self.retire(s));
                        }
                    }
                }
                Ok(Err(e)) => last_error = format!("connect to gateway {g}: {e}"),
                Err(_) => last_error = format!("connect to gateway {g}: no answer in 10 s"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        self.rec.gave_up = Some(format!(
            "{}: no gateway took the session within {RECONNECT_BUDGET:?} (last: {last_error})",
            self.user.name
        ));
        eprintln!("chaos: {}", self.rec.gave_up.as_deref().unwrap_or_default());
        Err(store.unwrap_or_default())
    }

    /// Ends a session: tallies its live arrivals and takes its store.
    fn retire(&mut self, s: Session) -> Store {
        let (total, out_of_order) = tally(&s.arrivals());
        self.rec.arrivals += total;
        self.rec.arrivals_out_of_order += out_of_order;
        s.into_store()
    }

    /// A new session in place of `s` (closed, or not answering), the other gateway
    /// first. `None` if no gateway would take it.
    async fn reconnect(&mut self, s: Session, deadline: Instant) -> Option<Session> {
        self.rec.reconnects += 1;
        let store = self.retire(s);
        let other = self.at + 1;
        match self.connect(other, store, deadline).await {
            Ok(s) => Some(s),
            Err(store) => {
                self.rec.store = store;
                None
            }
        }
    }

    fn record(&mut self, conversation: &str, client_msg_id: &str, sent: &Sent) {
        self.rec.sent.push(SentFrame {
            conversation: conversation.to_string(),
            client_msg_id: client_msg_id.to_string(),
            message_id: sent.message_id,
            seq: sent.seq,
        });
        self.progress.acked.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the `sent` frames that came after their send timed out.
    fn poll_late(&mut self) {
        let mut done = Vec::new();
        self.late.retain_mut(|l| match l.rx.try_recv() {
            Ok(Ok(sent)) => {
                done.push((l.conversation.clone(), l.client_msg_id.clone(), sent));
                false
            }
            Err(oneshot::error::TryRecvError::Empty) => true,
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => false,
        });
        for (conv, cmid, sent) in done {
            self.record(&conv, &cmid, &sent);
        }
    }

    async fn attempt(&self, s: &Session, conversation: &str, cmid: &str) -> Attempt {
        let body = format!("{cmid} from {}", self.user.name);
        let mut rx = match s.send_nowait(conversation, cmid, &body).await {
            Ok(rx) => rx,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        match tokio::time::timeout(SEND_TIMEOUT, &mut rx).await {
            Ok(Ok(Ok(sent))) => Attempt::Acked(sent),
            Ok(Ok(Err(e))) => Attempt::Failed(e.to_string()),
            Ok(Err(_)) => Attempt::Failed("reply dropped".into()),
            Err(_) => Attempt::TimedOut(rx),
        }
    }

    /// The `k`th change of this user (see the module doc); failures are counted only.
    async fn change(&mut self, s: &Session, conv: &str, k: u64) {
        let me = self.user.name.clone();
        let mine: Vec<i64> = self
            .rec
            .sent
            .iter()
            .filter(|f| f.conversation == conv)
            .map(|f| f.seq)
            .collect();
        let done = match k % 3 {
            0 => {
                let Some(&seq) = mine.last() else { return };
                let body = format!("edit {k} by {me}");
                s.edit(conv, seq, &body, CHANGE_TIMEOUT).await
            }
            1 => {
                let held = s.messages(conv);
                let Some(target) = held.iter().rev().find(|m| m.sender_id != me && !m.deleted)
                else {
                    return;
                };
                let on = !target.my_reactions.iter().any(|e| e == "👍");
                s.react(conv, target.seq, "👍", on, CHANGE_TIMEOUT).await
            }
            _ => {
                let Some(&seq) = mine.len().checked_sub(3).and_then(|i| mine.get(i)) else {
                    return;
                };
                s.delete(conv, seq, CHANGE_TIMEOUT).await
            }
        };
        match done {
            Ok(_) => self.rec.changes += 1,
            Err(e) => {
                self.rec.changes_failed += 1;
                tracing::debug!(user = %me, error = %e, "change failed; not retried");
            }
        }
    }

    /// Acknowledges the conversation up to the cursor, if it moved (failures ignored).
    async fn ack(&mut self, s: &Session, acked_to: &mut Option<i64>) {
        let conv = self.user.conversation.clone();
        let Some(&cursor) = s.cursors().get(&conv) else {
            return;
        };
        if acked_to.is_some_and(|a| a >= cursor) {
            return;
        }
        if s.ack(&conv, cursor, ACK_TIMEOUT).await.is_ok() {
            *acked_to = Some(cursor);
            self.rec.acks += 1;
        }
    }

    /// Sends until the load stops, then until the last message is acknowledged (or the
    /// settle time is over). Returns the session (if one is left) and the settle deadline.
    async fn send_loop(&mut self, mut s: Session, timing: &Timing) -> (Option<Session>, Instant) {
        let conv = self.user.conversation.clone();
        let mut n = 0u64;
        let mut pending: Option<String> = None;
        let mut finish_by: Option<Instant> = None;
        let mut last_ack = Instant::now();
        let mut acked_to: Option<i64> = None;
        let mut silent = 0u32;
        loop {
            if timing.load.is_cancelled() {
                let by = *finish_by.get_or_insert_with(|| Instant::now() + timing.settle);
                if pending.is_none() || Instant::now() >= by {
                    break;
                }
            }
            let deadline = finish_by.unwrap_or_else(|| Instant::now() + RECONNECT_BUDGET);
            // Two sends in a row with no answer: the session is not worth keeping.
            if s.closed().is_some() || silent >= 2 {
                silent = 0;
                match self.reconnect(s, deadline).await {
                    Some(new) => s = new,
                    None => return (None, finish_by.unwrap_or_else(Instant::now)),
                }
                continue;
            }
            self.poll_late();
            if last_ack.elapsed() >= ACK_EVERY && !timing.load.is_cancelled() {
                last_ack = Instant::now();
                self.ack(&s, &mut acked_to).await;
            }
            let cmid = pending
                .get_or_insert_with(|| {
                    n += 1;
                    format!("{}-{n}", self.user.name)
                })
                .clone();
            match self.attempt(&s, &conv, &cmid).await {
                Attempt::Acked(sent) => {
                    self.record(&conv, &cmid, &sent);
                    pending = None;
                    silent = 0;
                    if n % CHANGE_EVERY == 0 && !timing.load.is_cancelled() {
                        self.change(&s, &conv, n / CHANGE_EVERY).await;
                    }
                }
                Attempt::TimedOut(rx) => {
                    silent += 1;
                    self.rec.send_retries += 1;
                    if self.late.len() >= LATE_MAX {
                        self.late.remove(0);
                    }
                    self.late.push(Late {
                        conversation: conv.clone(),
                        client_msg_id: cmid.clone(),
                        rx,
                    });
                }
                Attempt::Failed(why) => {
                    self.rec.send_retries += 1;
                    if s.closed().is_none() {
                        // `unavailable` (the log did not confirm in time), or worse: a
                        // moment's pause, then the same client_msg_id again.
                        let user = &self.user.name;
                        tracing::debug!(%user, %cmid, %why, "send failed; retrying it");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            tokio::time::sleep(timing.every).await;
        }
        (Some(s), finish_by.unwrap_or_else(Instant::now))
    }

    /// Waits until every user has stopped sending and this store equals the history
    /// (twice in a row, so that a history a moment behind the log does not count).
    async fn settle(&mut self, mut s: Session, deadline: Instant) {
        let conv = self.user.conversation.clone();
        let apis: Vec<Api> = self
            .gateways
            .iter()
            .map(|g| Api::new(g, &self.user.token))
            .collect();
        let mut matches = 0;
        while Instant::now() < deadline {
            if s.closed().is_some() {
                matches = 0;
                match self.reconnect(s, deadline).await {
                    Some(new) => s = new,
                    None => return,
                }
                continue;
            }
            self.poll_late();
            if self.progress.sending.load(Ordering::Relaxed) == 0 {
                match history(&apis, &conv).await {
                    Some(want) if same(&want, &s.messages(&conv)) => matches += 1,
                    _ => matches = 0,
                }
                if matches >= 2 {
                    self.rec.converged = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.poll_late();
        self.rec.store = self.retire(s);
    }
}

/// Every message of the conversation, from the first gateway that answers.
pub async fn history(apis: &[Api], conversation: &str) -> Option<Vec<MessageView>> {
    for api in apis {
        let fetch = api.all_messages(conversation);
        if let Ok(Ok(all)) = tokio::time::timeout(Duration::from_secs(10), fetch).await {
            return Some(all);
        }
    }
    None
}

fn same(a: &[MessageView], b: &[MessageView]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.seq == y.seq && x.message_id == y.message_id && same_state(x, y))
}

/// The same text, edit and deletion flags and reaction counts.
pub fn same_state(a: &MessageView, b: &MessageView) -> bool {
    (&a.body, a.edited, a.deleted, &a.reactions) == (&b.body, b.edited, b.deleted, &b.reactions)
}

/// (live arrivals, arrivals below an earlier arrival's seq in their conversation).
fn tally(arrivals: &[MessageView]) -> (usize, usize) {
    let mut highest: std::collections::HashMap<&str, i64> = Default::default();
    let mut out_of_order = 0;
    for m in arrivals {
        let top = highest
            .entry(m.conversation_id.as_str())
            .or_insert(i64::MIN);
        if m.seq < *top {
            out_of_order += 1;
        }
        *top = (*top).max(m.seq);
    }
    (arrivals.len(), out_of_order)
}
