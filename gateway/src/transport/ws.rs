//! `GET /v1/ws`: a client's WebSocket. The token is checked before the upgrade (a bad
//! one gets 401 and no socket). Each session has a writer fed by its bounded queue, and
//! a sender task that checks up to 64 of its `send` frames at once but begins their
//! appends one after another, so a client's messages reach the log in the order it sent
//! them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::extract::ws::{close_code, CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use parley_ops::metrics::CountersBy;
use parley_projector::views::HistoryQuery;
use parley_schemas::frames::{ClientFrame, ErrorCode, ServerFrame};
use parley_schemas::{ids, ReceiptKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::auth::{Identity, SocketCaller};
use crate::changes::{change, Request};
use crate::error::ApiError;
use crate::limits::Limit;
use crate::send::{appended, begin, check, confirm, Draft};
use crate::service::Shared;
use crate::sessions::{Frame, Session};
use crate::{history, receipts, sync, typing};

pub use crate::sessions::{
    CLOSE_DEAD, CLOSE_PRESENCE_LAPSED, CLOSE_SLOW, CLOSE_TOKEN_EXPIRED, CLOSE_TRY_AGAIN,
};
/// Close code when the gateway shuts down: reconnect elsewhere and sync.
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Read buffer of a socket. Frames are small JSON (a larger one grows the buffer):
/// tungstenite's 128 KiB default cost an idle connection more than everything else.
const READ_BUFFER: usize = 2 * 1024;
/// Frames are queued for a socket write until this much is waiting (or a flush): a
/// batch of small frames still leaves in one write.
const WRITE_BUFFER: usize = 4 * 1024;

/// The address a request came from (when the server was started with connect info).
pub struct PeerIp(pub Option<std::net::IpAddr>);

impl<S: std::marker::Send + Sync> axum::extract::FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

pub async fn upgrade(
    State(state): State<Shared>,
    PeerIp(ip): PeerIp,
    caller: Result<SocketCaller, ApiError>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // Upgrades per address count before the token is even looked at.
    if let Some(ip) = ip {
        state.limits.check_upgrade(ip)?;
    }
    let SocketCaller(who) = caller?;
    state.limits.check(Limit::Connect, &who.user)?;
    // The transport accepts more than a frame may hold, so that an oversized frame gets
    // a clear error frame rather than a dropped connection.
    let transport_max = state.config.max_frame_bytes * 4;
    Ok(ws
        .max_message_size(transport_max)
        .max_frame_size(transport_max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| session(state, who, socket)))
}

pub fn encode(frame: &ServerFrame) -> Frame {
    serde_json::to_string(frame)
        .unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"unencodable frame"}"#.to_string()
        })
        .into()
}

async fn session(state: Shared, who: Identity, socket: WebSocket) {
    let user = who.user;
    let (session, outbound) = state.sessions.open(&user, state.config.session_queue);
    info!(user = %user, session = session.id, "session opened");
    metrics::gauge!(parley_ops::metrics::CONNECTIONS).increment(1.0);
    metrics::counter!(parley_ops::metrics::CONNECTIONS_OPENED).increment(1);
    let _open = Open;
    // The session ends when its token does: the client gets a new one and reconnects.
    let expires_in =
        std::time::Duration::from_secs(who.expires_at.saturating_sub(crate::auth::now_s()));
    let expiry = tokio::time::Instant::now() + expires_in;
    let (sink, mut stream) = socket.split();

    let writer = tokio::spawn(write(
        sink,
        outbound,
        session.clone(),
        Timings {
            ping_interval: state.config.ping_interval,
            write_timeout: state.config.write_timeout,
        },
        state.shutdown.clone(),
    ));

    // Presence first: once the workers acknowledge it, every record of the log from
    // their acknowledged offsets on is routed here (group membership changes go only to
    // the slots with someone online).
    state.presence.session_opened(&user).await;
    {
        let (contacts, u) = (state.contacts.clone(), user.clone());
        tokio::spawn(async move { contacts.attach(&u).await });
    }
    // The socket is read while the workers acknowledge: a client gone meanwhile ends the
    // session at once (its socket is not left half-closed until the setup's end), and
    // frames it sent early are kept for afterwards.
    let mut early = std::collections::VecDeque::new();
    let waiting = state.presence.wait_live(&user, state.config.ack_timeout);
    let Some(live) = while_reading(&mut stream, &mut early, waiting).await else {
        debug!(user = %user, session = session.id, "client gone during session setup");
        end_session(&state, session, &user, writer).await;
        return;
    };

    // Then the user's groups, indexed before the session is ready from views that hold
    // the log up to where routing here begins: large groups' messages routed from then
    // on reach it, and its sync covers those before.
    let from = routed_from(&state, &user).await;
    let (views, u) = (state.views.clone(), user.clone());
    let attached = state
        .groups
        .attach(&user, |seen| async move {
            crate::groups::load(&*views, &u, &merge(seen, from)).await
        })
        .await;
    let attachment = match attached {
        Ok(a) => a,
        Err(e) => {
            warn!(user = %user, error = %e, "session refused: its groups could not be loaded");
            reply_error(&session, ApiError::unavailable(e.to_string()), None);
            session.close_with(CLOSE_TRY_AGAIN, "unavailable: try again later");
            end_session(&state, session, &user, writer).await;
            return;
        }
    };

    // The session's sender task starts with its first send: an idle connection holds
    // no task and no queue for sends.
    let mut sends: Option<(mpsc::Sender<Send>, tokio::task::JoinHandle<()>)> = None;

    let ready = |live| {
        encode(&ServerFrame::Ready {
            user_id: user.clone(),
            session_id: session.id.to_string(),
            gateway_id: state.config.gateway_id,
            live,
        })
    };
    session.push(ready(live));
    if !live {
        // Late acknowledgements (a fanout-worker still joining) still make it live.
        let (state, session, frame) = (state.clone(), session.clone(), ready(true));
        tokio::spawn(async move {
            // As long as the session lasts: every heartbeat asks the workers again.
            loop {
                let live = tokio::select! {
                    l = state.presence.wait_live(&session.user, state.config.presence_ttl) => l,
                    _ = session.cut.cancelled() => return,
                    _ = session.closed.cancelled() => return,
                };
                if live {
                    // Routing here began only now: the groups are loaded again up to it.
                    let from = routed_from(&state, &session.user).await;
                    let (views, u) = (state.views.clone(), session.user.clone());
                    let reloaded = state
                        .groups
                        .reload(&session.user, |seen| async move {
                            crate::groups::load(&*views, &u, &merge(seen, from)).await
                        })
                        .await;
                    if let Err(e) = reloaded {
                        warn!(user = %session.user, error = %e, "groups not reloaded: the session reconnects");
                        session.close_with(CLOSE_TRY_AGAIN, "unavailable: try again later");
                        return;
                    }
                    session.push(frame);
                    return;
                }
                warn!(user = %session.user, "session not live yet: its presence is not acknowledged");
            }
        });
    }

    let syncing = Arc::new(AtomicBool::new(false));
    // Frames being worked on: beyond the bound, the client is told to slow down.
    let in_progress = Arc::new(tokio::sync::Semaphore::new(state.limits.frames_in_progress));
    let idle = state.config.idle_timeout;
    let mut heard = tokio::time::Instant::now();
    loop {
        let msg = tokio::select! {
            _ = session.cut.cancelled() => break,
            _ = state.shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(expiry) => {
                info!(user = %user, session = session.id, "token expired: session closed");
                session.close_with(CLOSE_TOKEN_EXPIRED, "token_expired: get a new token and reconnect");
                break;
            }
            _ = tokio::time::sleep_until(heard + idle) => {
                info!(user = %user, session = session.id, "socket silent past the idle timeout: closed as dead");
                session.close_with(CLOSE_DEAD, "idle: no frame or pong in time");
                break;
            }
            m = next_frame(&mut stream, &mut early) => m,
        };
        heard = tokio::time::Instant::now();
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                count_in("invalid");
                reply_error(
                    &session,
                    ApiError::bad_request("frames are JSON text, not binary"),
                    None,
                );
                continue;
            }
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                debug!(session = session.id, error = %e, "socket error");
                break;
            }
        };
        if text.len() > state.config.max_frame_bytes {
            count_in("invalid");
            let e = ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "frame is larger than {} bytes",
                    state.config.max_frame_bytes
                ),
            );
            reply_error(&session, e, None);
            continue;
        }
        let frame: ClientFrame = match serde_json::from_str(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                count_in("invalid");
                reply_error(
                    &session,
                    ApiError::bad_request(format!("malformed frame: {e}")),
                    None,
                );
                continue;
            }
        };
        count_in(frame.kind());
        if let ClientFrame::Send {
            client_msg_id,
            conversation_id,
            body,
            retry,
            reply_to,
            attachments,
        } = frame
        {
            let send = Send {
                conversation_id,
                draft: Draft {
                    client_msg_id,
                    body,
                    retry,
                    reply_to,
                    attachments,
                },
            };
            let (tx, _) = sends.get_or_insert_with(|| {
                let (tx, rx) = mpsc::channel::<Send>(256);
                (tx, tokio::spawn(sender(state.clone(), session.clone(), rx)))
            });
            // A full queue stops the reading of this socket until it drains: a client
            // may pipeline sends, and TCP slows it down (no task, no memory per send).
            if tx.send(send).await.is_err() {
                break;
            }
            continue;
        }
        if matches!(frame, ClientFrame::Typing { .. }) {
            if let Err(e) = state.limits.check(Limit::Typing, &user) {
                reply_error(&session, e, None);
                continue;
            }
        }
        if !matches!(frame, ClientFrame::Ping { .. }) {
            let Ok(permit) = in_progress.clone().try_acquire_owned() else {
                metrics::counter!(parley_ops::metrics::BUSY).increment(1);
                let e = ApiError::rate_limited(
                    "too many frames in progress on this session: slow down",
                    std::time::Duration::from_millis(100),
                );
                reply_error(&session, e, request_id_of(&frame));
                continue;
            };
            dispatch(&state, &session, &syncing, frame, Some(permit));
        } else {
            dispatch(&state, &session, &syncing, frame, None);
        }
    }

    if let Some((tx, task)) = sends {
        drop(tx);
        let _ = task.await;
    }
    drop(attachment);
    end_session(&state, session, &user, writer).await;
    info!(user = %user, "session closed");
}

/// Frames read from a socket before its session was ready, at most.
const EARLY_FRAMES: usize = 16;

type Inbound = futures::stream::SplitStream<WebSocket>;

/// Runs `setup` while reading the socket: `None` as soon as the client is gone (closed,
/// reset), else `setup`'s output. Frames that arrive meanwhile are kept in `early`; past
/// [`EARLY_FRAMES`] the socket is left unread until `setup` ends (TCP holds the rest).
async fn while_reading<F: std::future::Future>(
    stream: &mut Inbound,
    early: &mut std::collections::VecDeque<Message>,
    setup: F,
) -> Option<F::Output> {
    tokio::pin!(setup);
    loop {
        if early.len() >= EARLY_FRAMES {
            return Some(setup.await);
        }
        tokio::select! {
            out = &mut setup => return Some(out),
            m = stream.next() => match m {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(m)) => early.push_back(m),
            },
        }
    }
}

/// The next frame: one kept from the session's setup first, else the socket's.
async fn next_frame(
    stream: &mut Inbound,
    early: &mut std::collections::VecDeque<Message>,
) -> Option<Result<Message, axum::Error>> {
    match early.pop_front() {
        Some(m) => Some(Ok(m)),
        None => stream.next().await,
    }
}

/// Takes a session out of the gateway (its contacts, its presence) and waits for its
/// writer to drain.
async fn end_session(
    state: &Shared,
    session: Arc<Session>,
    user: &str,
    writer: tokio::task::JoinHandle<()>,
) {
    // The presence agent counts the user's sessions itself.
    state.sessions.close(&session);
    state.contacts.detach(user);
    state.presence.session_closed(user).await;
    // The session is closed: its writer writes what is queued, then closes the socket.
    drop(session);
    let _ = writer.await;
}

/// Keeps the `parley_connections` gauge right however the session ends.
struct Open;

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(parley_ops::metrics::CONNECTIONS).decrement(1.0);
    }
}

fn count_in(kind: &'static str) {
    static IN: CountersBy = CountersBy::new(parley_ops::metrics::FRAMES_IN, "type");
    IN.increment(kind, 1);
}

fn request_id_of(frame: &ClientFrame) -> Option<String> {
    match frame {
        ClientFrame::Sync { request_id, .. }
        | ClientFrame::History { request_id, .. }
        | ClientFrame::PresenceQuery { request_id, .. } => request_id.clone(),
        _ => None,
    }
}

/// Most queued frames written to a socket at once.
const WRITE_BATCH: usize = 64;

/// What the writer needs of the configuration.
struct Timings {
    ping_interval: std::time::Duration,
    write_timeout: std::time::Duration,
}

/// Writes the session's frames to its socket, pings it, and closes it with the reason
/// the session was cut for. A write that blocks (a client that stops reading) is given
/// up after the write timeout, or as soon as the session is cut.
async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut outbound: crate::sessions::Outbound,
    session: Arc<Session>,
    config: Timings,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let cut = session.cut.clone();
    loop {
        // A frame to write, or the close code and reason to end with.
        let next: Result<Message, (u16, &'static str)> = tokio::select! {
            biased;
            _ = cut.cancelled() => Err(session.close_reason()),
            _ = shutdown.cancelled() => Err((CLOSE_GOING_AWAY, "gateway shutting down")),
            frame = outbound.live.recv() => match frame {
                Some(f) => Ok(text_out(&f)),
                None => break,
            },
            Some(f) = outbound.bulk.recv() => Ok(text_out(&f)),
            // The session has ended (its client left, or its setup failed) and everything
            // queued is written: the socket is closed now, not at the next ping.
            _ = session.closed.cancelled() => Err((close_code::NORMAL, "session ended")),
            _ = ping.tick() => Ok(Message::Ping(Default::default())),
        };
        let msg = match next {
            Ok(m) => m,
            Err((code, reason)) => {
                let close = Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }));
                let _ = tokio::time::timeout(config.write_timeout, sink.send(close)).await;
                break;
            }
        };
        // Frames already queued behind this one go out in the same write: live ones
        // first, then bulk ones (a sync's pages, a presence snapshot).
        let batch = async {
            sink.feed(msg).await?;
            for _ in 1..WRITE_BATCH {
                let next = match outbound.live.try_recv() {
                    Ok(f) => f,
                    Err(_) => match outbound.bulk.try_recv() {
                        Ok(f) => f,
                        Err(_) => break,
                    },
                };
                sink.feed(text_out(&next)).await?;
            }
            sink.flush().await
        };
        let written = tokio::select! {
            r = tokio::time::timeout(config.write_timeout, batch) => r,
            // Cut while the socket does not take the frame: nothing more can be written.
            _ = cut.cancelled() => break,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                session.close_with(CLOSE_DEAD, "socket error");
                break;
            }
            Err(_) => {
                info!(user = %session.user, session = session.id, "socket write stuck past the write timeout: closed");
                session.close_with(CLOSE_DEAD, "write timeout: the client does not read");
                break;
            }
        }
    }
}

/// A frame for the socket, counted by type.
fn text_out(frame: &Frame) -> Message {
    static OUT: CountersBy = CountersBy::new(parley_ops::metrics::FRAMES_OUT, "type");
    OUT.increment(ServerFrame::kind_of(frame.as_ref()), 1);
    Message::Text(Utf8Bytes::from(frame.as_ref()))
}

/// An `edit`, `delete` or `react`, in a task of its own: answered by `changed` or by an
/// `error`, each with the frame's request id.
fn spawn_change(
    state: Shared,
    session: Arc<Session>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    conversation: String,
    seq: i64,
    request: Request,
    request_id: Option<String>,
) {
    tokio::spawn(async move {
        let _permit = permit;
        match change(&state, &session.user, &conversation, seq, request).await {
            Ok(ServerFrame::Changed {
                conversation_id,
                seq,
                target_seq,
                ..
            }) => {
                session.push(encode(&ServerFrame::Changed {
                    request_id,
                    conversation_id,
                    seq,
                    target_seq,
                }));
            }
            Ok(_) => {}
            Err(e) => reply_error(&session, e, request_id),
        }
    });
}

/// Answers every frame but `send` (which the sender task takes, in order). Anything that
/// reads the views runs in a task of its own, so the socket keeps being read; each such
/// task holds one of the session's `permit`s until it ends.
fn dispatch(
    state: &Shared,
    session: &Arc<Session>,
    syncing: &Arc<AtomicBool>,
    frame: ClientFrame,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let (state, session) = (state.clone(), session.clone());
    match frame {
        // The caller hands sends to the session's sender task.
        ClientFrame::Send { .. } => {}
        ClientFrame::Edit {
            conversation_id,
            seq,
            body,
            request_id,
        } => spawn_change(
            state,
            session,
            permit,
            conversation_id,
            seq,
            Request::Edit { body },
            request_id,
        ),
        ClientFrame::Delete {
            conversation_id,
            seq,
            request_id,
        } => spawn_change(
            state,
            session,
            permit,
            conversation_id,
            seq,
            Request::Delete,
            request_id,
        ),
        ClientFrame::React {
            conversation_id,
            seq,
            emoji,
            on,
            request_id,
        } => spawn_change(
            state,
            session,
            permit,
            conversation_id,
            seq,
            Request::React { emoji, on },
            request_id,
        ),
        ClientFrame::Ping { nonce } => {
            session.push(encode(&ServerFrame::Pong { nonce }));
        }
        ClientFrame::PresenceQuery {
            user_ids,
            request_id,
        } => {
            tokio::spawn(async move {
                let _permit = permit;
                let cost = crate::service::presence_cost(&state, &session.user);
                let limited = state
                    .limits
                    .check(crate::limits::Limit::Read(cost), &session.user);
                let answer = match limited {
                    Ok(()) => state.contacts.query(&session.user, &user_ids).await,
                    Err(e) => Err(e),
                };
                let frame = match answer {
                    Ok(users) => ServerFrame::PresenceResult { request_id, users },
                    Err(e) => e.frame(None, request_id),
                };
                session.push(encode(&frame));
            });
        }
        ClientFrame::History {
            conversation_id,
            after_seq,
            before_seq,
            limit,
            request_id,
        } => {
            tokio::spawn(async move {
                let _permit = permit;
                let q = HistoryQuery {
                    after: after_seq,
                    before: before_seq,
                    limit: limit.unwrap_or(100).clamp(1, 1000),
                    viewer: None,
                };
                match history::page(&state, &session.user, &conversation_id, q).await {
                    Ok(page) => {
                        let frame = ServerFrame::History {
                            conversation_id,
                            request_id,
                            messages: page.messages,
                            changes: page.changes,
                            has_more: page.has_more,
                        };
                        session.push_bulk(encode(&frame)).await;
                    }
                    Err(e) => reply_error(&session, e, request_id),
                }
            });
        }
        ClientFrame::Sync {
            cursors,
            request_id,
        } => {
            if syncing.swap(true, Ordering::AcqRel) {
                let e = ApiError::bad_request("a sync of this session is already running");
                reply_error(&session, e, request_id);
                return;
            }
            let syncing = syncing.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let started = std::time::Instant::now();
                match sync::run(&state, &session, cursors, request_id.clone()).await {
                    Ok(done) => debug!(
                        user = %session.user,
                        conversations = done.conversations,
                        messages = done.messages,
                        ms = started.elapsed().as_millis() as u64,
                        "synced"
                    ),
                    Err(e) => reply_error(&session, e, request_id),
                }
                syncing.store(false, Ordering::Release);
            });
        }
        ClientFrame::Ack {
            conversation_id,
            seq,
        } => receipt(
            state,
            session,
            conversation_id,
            ReceiptKind::Delivered,
            seq,
            permit,
        ),
        ClientFrame::Read {
            conversation_id,
            seq,
        } => receipt(
            state,
            session,
            conversation_id,
            ReceiptKind::Read,
            seq,
            permit,
        ),
        ClientFrame::Typing {
            conversation_id,
            active,
        } => {
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) =
                    typing::record(&state, &session.user, &conversation_id, active).await
                {
                    reply_error(&session, e, None);
                }
            });
        }
    }
}

fn receipt(
    state: Shared,
    session: Arc<Session>,
    conversation: String,
    kind: ReceiptKind,
    seq: i64,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    tokio::spawn(async move {
        let _permit = permit;
        match receipts::record(&state, &session.user, &conversation, kind, seq).await {
            Ok(frame) => {
                session.push(encode(&frame));
            }
            Err(e) => reply_error(&session, e, None),
        }
    });
}

fn reply_error(session: &Session, e: ApiError, request_id: Option<String>) {
    session.push(encode(&e.frame(None, request_id)));
}

/// Sends of one session appended and not answered yet.
const CONFIRMS_IN_FLIGHT: usize = 256;
/// Sends of one session checked at once.
const CHECKS_IN_FLIGHT: usize = 64;

/// A `send` frame, for the session's sender task.
struct Send {
    conversation_id: String,
    draft: Draft,
}

/// Handles a session's sends: checked concurrently, appends begun one after another in
/// send order (so they reach the log in the order the client sent them), confirmed
/// concurrently, and answered (`sent` or `error`) in send order.
async fn sender(state: Shared, session: Arc<Session>, mut rx: mpsc::Receiver<Send>) {
    // The checks of several sends run at once (each may ask the views); their appends
    // begin in send order, as each check in line finishes.
    let mut checks = futures::stream::FuturesOrdered::new();
    // The answers, in send order: each resolves once its append is confirmed or failed.
    let mut replies = futures::stream::FuturesOrdered::new();
    let mut open = true;
    loop {
        let (client_msg_id, conversation_id, checked) = tokio::select! {
            biased;
            Some(frame) = replies.next(), if !replies.is_empty() => {
                session.push(frame);
                continue;
            }
            Some(done) = checks.next(), if !checks.is_empty() => done,
            next = rx.recv(), if open
                && checks.len() < CHECKS_IN_FLIGHT
                && replies.len() < CONFIRMS_IN_FLIGHT => {
                match next {
                    Some(send) => {
                        // Mark it before the log has it: the delivery may overtake the reply.
                        session.sent(ids::message_id(&session.user, &send.draft.client_msg_id));
                        let (state, user) = (state.clone(), session.user.clone());
                        checks.push_back(async move {
                            let Send { conversation_id, draft } = send;
                            let client_msg_id = draft.client_msg_id.clone();
                            let checked = check(&state, &user, &conversation_id, draft).await;
                            (client_msg_id, conversation_id, checked)
                        });
                    }
                    None => open = false,
                }
                continue;
            }
            else => break,
        };
        let started = match checked {
            Ok(c) => begin(&state, &conversation_id, c).await,
            Err(e) => Err(e),
        };
        let state = state.clone();
        replies.push_back(async move {
            let sent = match started {
                Ok(started) => match appended(started).await {
                    Ok(a) => confirm(&state, a).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            match sent {
                Ok(sent) => {
                    static SENT: OnceLock<metrics::Counter> = OnceLock::new();
                    parley_ops::metrics::kept(
                        &SENT,
                        || metrics::counter!(parley_ops::metrics::SENDS, "result" => "sent"),
                    )
                    .increment(1);
                    encode(&sent.frame(&client_msg_id, &conversation_id))
                }
                Err(e) => {
                    metrics::counter!(parley_ops::metrics::SENDS, "result" => e.code.label())
                        .increment(1);
                    encode(&e.frame(Some(client_msg_id), None))
                }
            }
        });
    }
}

/// Where routing to this gateway began for `user`: the workers' acknowledged offsets
/// since this slot has had someone live, once the user is live here; else the log's end
/// now (nothing older is routed here).
async fn routed_from(state: &Shared, user: &str) -> Vec<(i32, i64)> {
    if let Some(from) = state.presence.routed_since(user) {
        return from;
    }
    match state.log.end_offsets(&state.config.topics.events).await {
        Ok(ends) => ends
            .into_iter()
            .enumerate()
            .map(|(p, e)| (p as i32, e))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The larger offset of each partition of `a` and `b`.
fn merge(a: Vec<(i32, i64)>, b: Vec<(i32, i64)>) -> Vec<(i32, i64)> {
    let mut all: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    for (p, o) in a.into_iter().chain(b) {
        let at = all.entry(p).or_insert(o);
        *at = (*at).max(o);
    }
    all.into_iter().collect()
}
