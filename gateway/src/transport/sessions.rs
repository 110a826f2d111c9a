//! The sessions connected to this gateway. Each has a bounded outbound queue: a session
//! that lets it fill up is cut off (it resyncs when it reconnects) and never slows the
//! others down.
//!
//! Bulk answers (sync pages, history) go through a second, small queue that the writer
//! drains only when the live queue is empty: the task producing them waits for room, so
//! a large catch-up is paced by the socket instead of filling the live queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A serialized frame, shared by every session it goes to.
pub type Frame = Arc<str>;

/// The messages a session sent itself, not to be echoed back to it (bounded).
const OWN_ECHOES: usize = 1024;
/// Bulk frames queued ahead of the socket.
const BULK_QUEUE: usize = 4;

/// The receiving ends of a session's queues, for its writer.
pub struct Outbound {
    pub live: mpsc::Receiver<Frame>,
    pub bulk: mpsc::Receiver<Frame>,
}

pub struct Session {
    pub id: u64,
    pub user: String,
    tx: mpsc::Sender<Frame>,
    bulk: mpsc::Sender<Frame>,
    /// Cancelled when the session must close (too slow, dead, lapsed).
    pub cut: CancellationToken,
    /// Why it was cut: the close code and reason sent to the client.
    reason: Mutex<Option<(u16, &'static str)>>,
    /// Cancelled once the session has ended.
    pub closed: CancellationToken,
    own: Mutex<VecDeque<Uuid>>,
}

/// Close code of a session cut off for being too slow (the 4000–4999 range is ours).
pub const CLOSE_SLOW: u16 = 4008;
const SLOW: (u16, &str) = (CLOSE_SLOW, "slow_consumer: reconnect and sync");
/// Close code of a session whose presence lapsed: reconnect and sync.
pub const CLOSE_PRESENCE_LAPSED: u16 = 4009;
/// Close code of a socket that stayed silent past the idle timeout, or whose writes stuck.
pub const CLOSE_DEAD: u16 = 4010;
/// Close code of a session whose token expired: get a new token, reconnect and sync.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// The session could not be set up (the views did not answer): try again later.
pub const CLOSE_TRY_AGAIN: u16 = 1013;

impl Session {
    /// Cuts the session off with a close code and reason (the first reason given wins).
    pub fn close_with(&self, code: u16, reason: &'static str) {
        let mut r = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        r.get_or_insert((code, reason));
        self.cut.cancel();
    }

    /// The close code and reason of a cut session.
    pub fn close_reason(&self) -> (u16, &'static str) {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(SLOW)
    }

    /// Queues a frame; false (and the session is cut off) if its queue is full.
    pub fn push(&self, frame: Frame) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_with(SLOW.0, SLOW.1);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a bulk frame, waiting for room; false if the session is gone.
    pub async fn push_bulk(&self, frame: Frame) -> bool {
        tokio::select! {
            r = self.bulk.send(frame) => r.is_ok(),
            _ = self.cut.cancelled() => false,
        }
    }

    /// Remembers that this session sent `id`, so its delivery is not echoed back.
    pub fn sent(&self, id: Uuid) {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.push_back(id);
        if own.len() > OWN_ECHOES {
            own.pop_front();
        }
    }

    fn is_own(&self, id: &Uuid) -> bool {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        match own.iter().position(|x| x == id) {
            Some(i) => {
                own.remove(i);
                true
            }
            None => false,
        }
    }
}

#[derive(Default)]
pub struct Sessions {
    next_id: AtomicU64,
    by_user: Mutex<HashMap<String, Vec<Arc<Session>>>>,
}

impl Sessions {
    /// A new session of `user` and the receiving end of its queue.
    pub fn open(&self, user: &str, queue: usize) -> (Arc<Session>, Outbound) {
        let (tx, live) = mpsc::channel(queue.max(1));
        let (bulk_tx, bulk) = mpsc::channel(BULK_QUEUE);
        let session = Arc::new(Session {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            user: user.to_string(),
            tx,
            bulk: bulk_tx,
            cut: CancellationToken::new(),
            reason: Mutex::new(None),
            closed: CancellationToken::new(),
            own: Mutex::new(VecDeque::new()),
        });
        self.lock()
            .entry(user.to_string())
            .or_default()
            .push(session.clone());
        (session, Outbound { live, bulk })
    }

    /// Removes a session (the presence agent counts a user's sessions itself).
    pub fn close(&self, session: &Session) {
        session.closed.cancel();
        let mut by_user = self.lock();
        let Some(list) = by_user.get_mut(&session.user) else {
            return;
        };
        list.retain(|s| s.id != session.id);
        if list.is_empty() {
            by_user.remove(&session.user);
        }
    }

    /// Cuts off every session of `user` with a close code and reason.
    pub fn close_user(&self, user: &str, code: u16, reason: &'static str) {
        let targets: Vec<Arc<Session>> = self.lock().get(user).cloned().unwrap_or_default();
        for s in targets {
            s.close_with(code, reason);
        }
    }

    /// The sessions of `user` here.
    pub fn of(&self, user: &str) -> Vec<Arc<Session>> {
        self.lock().get(user).cloned().unwrap_or_default()
    }

    /// Whether `user` has a session here.
    pub fn has_user(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// Queues `frame` to every session of `user`, except the one that sent `message_id`.
    /// Returns how many sessions got it.
    pub fn deliver(&self, user: &str, frame: &Frame, message_id: Option<&Uuid>) -> usize {
        let targets: Vec<Arc<Session>> = self.lock().get(user).cloned().unwrap_or_default();
        let mut n = 0;
        for s in targets {
            if message_id.is_some_and(|id| s.is_own(id)) {
                continue;
            }
            n += usize::from(s.push(frame.clone()));
        }
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Arc<Session>>>> {
        self.by_user.lock().unwrap_or_else(|p| p.into_inner())
    }
}
