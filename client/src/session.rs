//! A WebSocket session with a Parley gateway.
//!
//! A reader task takes every frame: `sent` and `error` answer pending sends; `message`
//! frames go into the [`Store`] (ordered by seq, each message id once), and one whose
//! `prev_seq` the store lacks triggers a `history` request for the gap. Waiters are woken
//! on every change.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use parley_schemas::frames::{MessageView, PresenceView, ServerFrame};
use parley_schemas::ReceiptKind;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::store::{Inserted, Source, Store};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connection: {0}")]
    Connect(String),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("refused: {0}")]
    Refused(String),
    #[error("the server answered with an error: {code}: {message}")]
    Server { code: String, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("session closed: {0}")]
    Closed(String),
}

/// A send the log has acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message_id: Uuid,
    pub seq: i64,
    pub ts: i64,
}

type Reply = Result<Sent, SessionError>;

/// A `receipt` frame: `user` has received (or read) the conversation up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub conversation_id: String,
    pub user_id: String,
    pub kind: ReceiptKind,
    pub seq: i64,
}

/// The latest `receipt_counts` of a large group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptCounts {
    pub seq: i64,
    pub delivered: u64,
    pub read: u64,
}

/// A message this session sent, kept until its acknowledgement.
struct Outgoing {
    conversation_id: String,
    body: String,
    reply_to: Option<i64>,
    attachments: Vec<parley_schemas::AttachmentRef>,
}

#[derive(Default)]
struct State {
    store: Store,
    /// `message` frames in arrival order.
    arrivals: Vec<MessageView>,
    pending: HashMap<String, Vec<(Outgoing, oneshot::Sender<Reply>)>>,
    /// `error` frames not tied to a send.
    errors: Vec<Value>,
    ready: Option<bool>,
    /// request ids of the syncs that finished.
    synced: std::collections::HashSet<String>,
    /// `changed` answers (the change's seq) by request id.
    changed: std::collections::HashMap<String, i64>,
    /// `receipt` frames: this session's own confirmed, and other members' routed.
    receipts: Vec<Receipt>,
    /// The latest `receipt_counts` per large group.
    receipt_counts: std::collections::HashMap<String, ReceiptCounts>,
    /// `typing` frames: (conversation, user, active).
    typing: Vec<(String, String, bool)>,
    /// `presence` frames in arrival order: (user, online, last_seen).
    presence: Vec<(String, bool, Option<i64>)>,
    /// `presence_result` answers by request id.
    presence_results: std::collections::HashMap<String, Vec<PresenceView>>,
    user: String,
    /// Where `message` frames are also sent, with their arrival time (benchmarks).
    tap: Option<mpsc::UnboundedSender<(std::time::Instant, MessageView)>>,
    closed: Option<String>,
    /// The gap fills under way, by request id.
    fills: HashMap<String, Fill>,
}

/// A gap's fill: `history` pages of `conversation` with `after < seq < before`, asked
/// page after page from `next`.
#[derive(Clone, Debug)]
struct Fill {
    conversation: String,
    after: Option<i64>,
    next: Option<i64>,
    before: i64,
    /// Pages asked again after an `error` answer.
    retries: u32,
}

/// How many times one page of a fill is asked again after an error.
const FILL_RETRIES: u32 = 3;

impl State {
    /// The `error` frame answering request `request_id`, if one came.
    fn error_for(&self, request_id: &str) -> Option<SessionError> {
        self.errors
            .iter()
            .find(|e| e["request_id"].as_str() == Some(request_id))
            .map(|e| SessionError::Server {
                code: e["code"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    requests: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Session {
    out: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    user: String,
    _closed: watch::Receiver<()>,
}

impl Session {
    /// Connects to `base` (`ws://host:port` or `http://host:port`) with `token`.
    pub async fn connect(base: &str, token: &str) -> Result<Session, SessionError> {
        let url = format!(
            "{}/v1/ws",
            base.trim_end_matches('/').replacen("http://", "ws://", 1)
        );
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let auth = format!("Bearer {token}")
            .parse()
            .map_err(|_| SessionError::Connect("token is not a valid header value".into()))?;
        req.headers_mut().insert("authorization", auth);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(4096);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            requests: AtomicU64::new(0),
        });
        let (closed_tx, closed_rx) = watch::channel(());
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader_shared = shared.clone();
        let reader_out = out.clone();
        tokio::spawn(async move {
            let reason = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(t))) => on_frame(&reader_shared, &reader_out, t.as_str()),
                    Some(Ok(Message::Close(f))) => {
                        break f
                            .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "closed".into())
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "connection ended".into(),
                }
            };
            let mut st = reader_shared.lock();
            st.closed = Some(reason.clone());
            for (_, waiters) in st.pending.drain() {
                for (_, w) in waiters {
                    let _ = w.send(Err(SessionError::Closed(reason.clone())));
                }
            }
            drop(st);
            reader_shared.changed.notify_waiters();
            drop(closed_tx);
        });
        let user = token_subject(token).unwrap_or_default();
        shared.lock().user = user.clone();
        Ok(Session {
            out,
            shared,
            user,
            _closed: closed_rx,
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Waits, at most `timeout`, for a `ready` frame saying the session is live; false
    /// if only a not-live one came (the gateway sends a live one later when it can).
    pub async fn ready(&self, timeout: Duration) -> Result<bool, SessionError> {
        match self
            .wait("ready", timeout, |st| {
                (st.ready == Some(true)).then_some(())
            })
            .await
        {
            Ok(()) => Ok(true),
            Err(SessionError::Timeout(_)) if self.shared.lock().ready == Some(false) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a `ready` frame with `live: true` has come.
    pub fn is_live(&self) -> bool {
        self.shared.lock().ready == Some(true)
    }

    /// Sends a raw frame.
    pub async fn send_json(&self, frame: Value) -> Result<(), SessionError> {
        self.send_text(frame.to_string()).await
    }

    pub async fn send_text(&self, text: String) -> Result<(), SessionError> {
        self.out
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| SessionError::Closed("writer stopped".into()))
    }

    /// Sends a message and waits for the log's acknowledgement (or the error).
    pub async fn send(
        &self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
    ) -> Result<Sent, SessionError> {
        self.send_reply(conversation, client_msg_id, body, None)
            .await
    }

    /// [`Session::send`] of a reply to the message at `reply_to` (if any).
    pub async fn send_reply(
        &self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
        reply_to: Option<i64>,
    ) -> Result<Sent, SessionError> {
        let rx = self
            .send_message(conversation, client_msg_id, body, reply_to, Vec::new())
            .await?;
        Self::answer(client_msg_id, rx).await
    }

    /// [`Session::send`] of a message with files uploaded for it ([`crate::Api::upload`]).
    pub async fn send_files(
        &self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
        attachments: Vec<parley_schemas::AttachmentRef>,
    ) -> Result<Sent, SessionError> {
        let rx = self
            .send_message(conversation, client_msg_id, body, None, attachments)
            .await?;
        Self::answer(client_msg_id, rx).await
    }

    async fn answer(
        client_msg_id: &str,
        rx: oneshot::Receiver<Reply>,
    ) -> Result<Sent, SessionError> {
        match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(SessionError::Closed("reply dropped".into())),
            Err(_) => Err(SessionError::Timeout(format!("sent {client_msg_id}"))),
        }
    }

    /// Sends a message; the receiver gets its acknowledgement (pipelining).
    pub async fn send_nowait(
        &self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
    ) -> Result<oneshot::Receiver<Reply>, SessionError> {
        self.send_message(conversation, client_msg_id, body, None, Vec::new())
            .await
    }

    async fn send_message(
        &self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
        reply_to: Option<i64>,
        attachments: Vec<parley_schemas::AttachmentRef>,
    ) -> Result<oneshot::Receiver<Reply>, SessionError> {
        let (tx, rx) = oneshot::channel();
        let attach: Vec<parley_schemas::frames::Attach> = attachments
            .iter()
            .map(|a| parley_schemas::frames::Attach {
                attachment_id: a.attachment_id.clone(),
                name: a.name.clone(),
                width: a.width,
                height: a.height,
            })
            .collect();
        let outgoing = Outgoing {
            conversation_id: conversation.to_string(),
            body: body.to_string(),
            reply_to,
            attachments,
        };
        let retry = {
            let mut st = self.shared.lock();
            st.pending
                .entry(client_msg_id.to_string())
                .or_default()
                .push((outgoing, tx));
            !st.store.attempted.insert(client_msg_id.to_string())
        };
        let mut frame = json!({"type": "send", "client_msg_id": client_msg_id, "conversation_id": conversation, "body": body});
        if retry {
            frame["retry"] = json!(true);
        }
        if let Some(r) = reply_to {
            frame["reply_to"] = json!(r);
        }
        if !attach.is_empty() {
            frame["attachments"] = json!(attach);
        }
        self.send_json(frame).await?;
        Ok(rx)
    }

    /// Catches up: sends `sync` with the store's cursors and waits for `synced`. Messages
    /// arriving meanwhile (live or in `sync_batch` pages) go into the store.
    pub async fn sync(&self, timeout: Duration) -> Result<(), SessionError> {
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("sync-{n}");
        let cursors = self.cursors();
        let frame = json!({"type": "sync", "cursors": cursors, "request_id": request_id});
        self.send_json(frame).await?;
        let what = format!("synced {request_id}");
        self.wait(&what, timeout, |st| {
            if st.synced.contains(&request_id) {
                return Some(Ok(()));
            }
            st.error_for(&request_id).map(Err)
        })
        .await?
    }

    /// Edits this user's message at `seq`; the edit's own seq once the log has it.
    pub async fn edit(
        &self,
        conversation: &str,
        seq: i64,
        body: &str,
        timeout: Duration,
    ) -> Result<i64, SessionError> {
        let frame =
            json!({"type": "edit", "conversation_id": conversation, "seq": seq, "body": body});
        self.change(frame, timeout).await
    }

    /// Deletes the message at `seq` for everyone; the deletion's own seq.
    pub async fn delete(
        &self,
        conversation: &str,
        seq: i64,
        timeout: Duration,
    ) -> Result<i64, SessionError> {
        let frame = json!({"type": "delete", "conversation_id": conversation, "seq": seq});
        self.change(frame, timeout).await
    }

    /// Sets (`on`) or takes back reaction `emoji` on the message at `seq`; the
    /// reaction's own seq.
    pub async fn react(
        &self,
        conversation: &str,
        seq: i64,
        emoji: &str,
        on: bool,
        timeout: Duration,
    ) -> Result<i64, SessionError> {
        let frame = json!({"type": "react", "conversation_id": conversation, "seq": seq,
                           "emoji": emoji, "on": on});
        self.change(frame, timeout).await
    }

    /// Sends an `edit`, `delete` or `react` frame and waits for its `changed` (or error).
    async fn change(&self, mut frame: Value, timeout: Duration) -> Result<i64, SessionError> {
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("change-{n}");
        frame["request_id"] = json!(request_id);
        self.send_json(frame).await?;
        let what = format!("changed {request_id}");
        self.wait(&what, timeout, |st| {
            if let Some(&seq) = st.changed.get(&request_id) {
                return Some(Ok(seq));
            }
            st.error_for(&request_id).map(Err)
        })
        .await?
    }

    /// Sends a delivery receipt (`ack`): this client has everything of the conversation
    /// up to `seq`. Waits for the gateway to confirm it is recorded.
    pub async fn ack(
        &self,
        conversation: &str,
        seq: i64,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let frame = json!({"type": "ack", "conversation_id": conversation, "seq": seq});
        self.send_json(frame).await?;
        let what = format!("receipt of {conversation} up to {seq}");
        let me = self.user.clone();
        self.wait(&what, timeout, |st| {
            st.receipts
                .iter()
                .any(|r| {
                    r.conversation_id == conversation
                        && r.user_id == me
                        && r.kind == ReceiptKind::Delivered
                        && r.seq >= seq
                })
                .then_some(())
        })
        .await
    }

    /// Sends a typing indicator (no answer unless it fails).
    pub async fn typing(&self, conversation: &str, active: bool) -> Result<(), SessionError> {
        let frame = json!({"type": "typing", "conversation_id": conversation, "active": active});
        self.send_json(frame).await
    }

    /// Every `receipt` frame received so far.
    pub fn receipts(&self) -> Vec<Receipt> {
        self.shared.lock().receipts.clone()
    }

    /// The latest receipt counts of a large group, if any came.
    pub fn receipt_counts(&self, conversation: &str) -> Option<ReceiptCounts> {
        self.shared.lock().receipt_counts.get(conversation).copied()
    }

    /// Every `typing` frame received so far: (conversation, user, active).
    pub fn typing_seen(&self) -> Vec<(String, String, bool)> {
        self.shared.lock().typing.clone()
    }

    /// Every `presence` frame received so far: (user, online, last_seen).
    pub fn presence_seen(&self) -> Vec<(String, bool, Option<i64>)> {
        self.shared.lock().presence.clone()
    }

    /// The latest `presence` frame about `user`: (online, last_seen).
    pub fn presence_of(&self, user: &str) -> Option<(bool, Option<i64>)> {
        self.shared
            .lock()
            .presence
            .iter()
            .rev()
            .find(|(u, _, _)| u == user)
            .map(|(_, o, l)| (*o, *l))
    }

    /// Asks who of `users` is online (`presence_query`) and waits for the answer.
    pub async fn query_presence(
        &self,
        users: &[&str],
        timeout: Duration,
    ) -> Result<Vec<PresenceView>, SessionError> {
        let n = self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let id = format!("presence-{n}");
        self.send_json(json!({"type": "presence_query", "user_ids": users, "request_id": id}))
            .await?;
        self.wait_for("presence_result", timeout, |s| {
            s.shared.lock().presence_results.contains_key(&id)
        })
        .await?;
        Ok(self
            .shared
            .lock()
            .presence_results
            .remove(&id)
            .unwrap_or_default())
    }

    /// Waits until `check` holds of the session's received state, at most `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Session) -> bool,
    ) -> Result<(), SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            if check(self) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(SessionError::Timeout(what.to_string()));
            }
        }
    }

    /// Takes in what an earlier session held, before a sync from its cursors.
    pub fn absorb(&self, store: Store) {
        self.shared.lock().store.absorb(store);
    }

    /// Everything this session holds, to carry over to the next session.
    pub fn into_store(self) -> Store {
        std::mem::take(&mut self.shared.lock().store)
    }

    /// The conversation's messages, ordered by seq, each once.
    pub fn messages(&self, conversation: &str) -> Vec<MessageView> {
        self.shared.lock().store.messages(conversation)
    }

    /// From now on, every `message` frame also goes here with its arrival time.
    pub fn tap(&self) -> mpsc::UnboundedReceiver<(std::time::Instant, MessageView)> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared.lock().tap = Some(tx);
        rx
    }

    /// Every `message` frame received, in arrival order (duplicates included).
    pub fn arrivals(&self) -> Vec<MessageView> {
        self.shared.lock().arrivals.clone()
    }

    pub fn errors(&self) -> Vec<Value> {
        self.shared.lock().errors.clone()
    }

    pub fn cursors(&self) -> BTreeMap<String, i64> {
        self.shared.lock().store.cursors()
    }

    pub fn duplicates(&self, conversation: &str) -> usize {
        self.shared
            .lock()
            .store
            .conversations
            .get(conversation)
            .map(|c| c.duplicates)
            .unwrap_or(0)
    }

    /// Why the session closed, once it has.
    pub fn closed(&self) -> Option<String> {
        self.shared.lock().closed.clone()
    }

    /// Waits until the conversation holds at least `n` messages.
    pub async fn wait_messages(
        &self,
        conversation: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let what = format!("{n} messages in {conversation}");
        self.wait(&what, timeout, |st| {
            let have = st
                .store
                .conversations
                .get(conversation)
                .map(|c| c.messages.len())
                .unwrap_or(0);
            (have >= n).then_some(())
        })
        .await
    }

    /// Waits until `n` messages from `sender` have arrived live in the conversation.
    pub async fn wait_arrivals(
        &self,
        conversation: &str,
        sender: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        let what = format!("{n} messages from {sender} in {conversation}");
        self.wait(&what, timeout, |st| {
            let have = st
                .arrivals
                .iter()
                .filter(|m| m.conversation_id == conversation && m.sender_id == sender)
                .count();
            (have >= n).then_some(())
        })
        .await
    }

    /// Waits until the session closes; returns the reason.
    pub async fn wait_closed(&self, timeout: Duration) -> Result<String, SessionError> {
        self.wait("close", timeout, |st| st.closed.clone()).await
    }

    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, SessionError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.changed.notified();
            {
                let st = self.shared.lock();
                if let Some(v) = check(&st) {
                    return Ok(v);
                }
                if let Some(reason) = &st.closed {
                    if what != "close" {
                        return Err(SessionError::Closed(reason.clone()));
                    }
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(SessionError::Timeout(what.to_string()));
            }
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.out.send(Message::Close(None)).await;
    }
}

fn on_frame(shared: &Shared, out: &mpsc::Sender<Message>, text: &str) {
    let frame: ServerFrame = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(_) => {
            let v = serde_json::from_str(text).unwrap_or(Value::String(text.to_string()));
            shared.lock().errors.push(json!({"unparsed": v}));
            shared.changed.notify_waiters();
            return;
        }
    };
    let mut fetch = Vec::new();
    {
        let mut st = shared.lock();
        match frame {
            ServerFrame::Ready { live, .. } => st.ready = Some(live),
            ServerFrame::Sent {
                client_msg_id,
                message_id,
                seq,
                prev_seq,
                prev_unknown,
                ts,
                prev_change,
                ..
            } => {
                if let Some((out, w)) = take_waiter(&mut st, &client_msg_id) {
                    // Stored: this id is not sent again.
                    if !st.pending.contains_key(&client_msg_id) {
                        st.store.attempted.remove(&client_msg_id);
                    }
                    // The gateway does not echo a session's own messages: keep it here.
                    let user = st.user.clone();
                    let conversation = out.conversation_id.clone();
                    let own = MessageView {
                        conversation_id: out.conversation_id,
                        seq,
                        prev_seq,
                        prev_unknown,
                        message_id,
                        sender_id: user,
                        body: out.body,
                        ts,
                        reply_to: out.reply_to.map(|seq| parley_schemas::frames::ReplyTo {
                            seq,
                            ..Default::default()
                        }),
                        prev_change,
                        attachments: out.attachments,
                        ..Default::default()
                    };
                    if let Inserted::Gap { after, before } = st.store.insert(own, Source::Sent) {
                        fetch.push(Fill::new(conversation, after, before));
                    }
                    let _ = w.send(Ok(Sent {
                        message_id,
                        seq,
                        ts,
                    }));
                }
            }
            ServerFrame::Error {
                code,
                message,
                client_msg_id: Some(id),
                ..
            } => {
                let code = serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                match take_waiter(&mut st, &id) {
                    Some((_, w)) => {
                        let _ = w.send(Err(SessionError::Server { code, message }));
                    }
                    None => st
                        .errors
                        .push(json!({"code": code, "message": message, "client_msg_id": id})),
                }
            }
            ServerFrame::Error {
                request_id: Some(id),
                ..
            } if st.fills.contains_key(&id) => {
                // A fill's page refused (the views were busy, a rate limit): asked again
                // a few times; else the next sync brings what it would have.
                if let Some(mut fill) = st.fills.remove(&id) {
                    if fill.retries < FILL_RETRIES {
                        fill.retries += 1;
                        fetch.push(fill);
                    }
                }
            }
            ServerFrame::Error { .. } => {
                st.errors
                    .push(serde_json::from_str(text).unwrap_or(Value::Null));
            }
            ServerFrame::Message(m) => {
                if let Some(tap) = &st.tap {
                    let _ = tap.send((std::time::Instant::now(), m.clone()));
                }
                st.arrivals.push(m.clone());
                if let Inserted::Gap { after, before } = st.store.insert(m.clone(), Source::Live) {
                    fetch.push(Fill::new(m.conversation_id, after, before));
                }
            }
            ServerFrame::Changed {
                request_id, seq, ..
            } => {
                st.changed.insert(request_id.unwrap_or_default(), seq);
            }
            ServerFrame::MessageEdited {
                ref conversation_id,
                ..
            }
            | ServerFrame::MessageDeleted {
                ref conversation_id,
                ..
            }
            | ServerFrame::Reaction {
                ref conversation_id,
                ..
            } => {
                let me = st.user.clone();
                if let Some(Inserted::Gap { after, before }) = st.store.take_change(&frame, &me) {
                    fetch.push(Fill::new(conversation_id.clone(), after, before));
                }
            }
            ServerFrame::SyncBatch {
                conversation_id,
                messages,
                changes,
                ..
            } => {
                let through = messages
                    .iter()
                    .map(|m| m.seq)
                    .chain(changes.iter().map(|c| c.seq()))
                    .max();
                for m in messages {
                    st.store.insert(m, Source::History);
                }
                // After the page's messages: a change may name one of them.
                let me = st.user.clone();
                for c in changes {
                    st.store.apply_change(&c.into_frame(), &me);
                }
                if let Some(through) = through {
                    st.store.synced_through(&conversation_id, through);
                }
            }
            ServerFrame::History {
                request_id,
                messages,
                changes,
                has_more,
                ..
            } => {
                let last = messages.last().map(|m| m.seq);
                for m in messages {
                    st.store.insert(m, Source::History);
                }
                let me = st.user.clone();
                for c in changes {
                    st.store.apply_change(&c.into_frame(), &me);
                }
                // A gap's fill: the next page, or the end of the fill.
                if let Some(mut fill) = request_id.and_then(|id| st.fills.remove(&id)) {
                    match (has_more, last) {
                        (true, Some(last)) => {
                            fill.next = Some(last);
                            fill.retries = 0;
                            fetch.push(fill);
                        }
                        _ => st.store.filled(&fill.conversation, fill.after, fill.before),
                    }
                }
            }
            ServerFrame::Synced { request_id } => {
                st.synced.insert(request_id.unwrap_or_default());
            }
            ServerFrame::Receipt {
                conversation_id,
                user_id,
                kind,
                seq,
            } => st.receipts.push(Receipt {
                conversation_id,
                user_id,
                kind,
                seq,
            }),
            ServerFrame::Typing {
                conversation_id,
                user_id,
                active,
                ..
            } => st.typing.push((conversation_id, user_id, active)),
            ServerFrame::ReceiptCounts {
                conversation_id,
                seq,
                delivered,
                read,
            } => {
                st.receipt_counts.insert(
                    conversation_id,
                    ReceiptCounts {
                        seq,
                        delivered,
                        read,
                    },
                );
            }
            ServerFrame::Presence {
                user_id,
                online,
                last_seen,
            } => st.presence.push((user_id, online, last_seen)),
            ServerFrame::PresenceResult { request_id, users } => {
                st.presence_results
                    .insert(request_id.unwrap_or_default(), users);
            }
            ServerFrame::Pong { .. } => {}
        }
    }
    if !fetch.is_empty() {
        let mut st = shared.lock();
        for fill in fetch {
            let n = shared.requests.fetch_add(1, Ordering::Relaxed);
            let id = format!("gap-{n}");
            let frame = json!({"type": "history", "conversation_id": fill.conversation,
                "after_seq": fill.next, "before_seq": fill.before, "limit": 1000, "request_id": id});
            if out
                .try_send(Message::Text(frame.to_string().into()))
                .is_ok()
            {
                st.fills.insert(id, fill);
            }
        }
    }
    shared.changed.notify_waiters();
}

impl Fill {
    fn new(conversation: String, after: Option<i64>, before: i64) -> Fill {
        Fill {
            conversation,
            after,
            next: after,
            before,
            retries: 0,
        }
    }
}

fn take_waiter(st: &mut State, client_msg_id: &str) -> Option<(Outgoing, oneshot::Sender<Reply>)> {
    let list = st.pending.get_mut(client_msg_id)?;
    let w = if list.is_empty() {
        None
    } else {
        Some(list.remove(0))
    };
    if list.is_empty() {
        st.pending.remove(client_msg_id);
    }
    w
}

/// The `sub` of a JWT, read without verifying it (for naming only).
fn token_subject(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v["sub"].as_str().map(str::to_string)
}
