//! A sender's own message, routed back to this gateway: the confirmation of a first
//! attempt that needs no views.
//!
//! A router routes a message only once the log's rules have kept it at its position (a
//! sender removed before it, or a repeat of an earlier message id, is dropped), and it
//! routes it to every member who is live somewhere — the sender included. So when the
//! sender is live here (a fanout-worker has acknowledged its presence on every
//! partition), the message comes back on this gateway's slot, carrying the seq the log
//! gave it and the seq before it: everything `sent` needs, at the moment the recipients
//! get it, without asking the projector. A send registers its message id before its
//! append begins (the copy may come back before the broker's acknowledgement does);
//! the slot's reader and the broadcast task hand every routed frame here
//! ([`Echoes::arrived_frame`]).
//!
//! If the copy does not come back in time (the sender's presence moved, a router is
//! taking partitions over, or the rules dropped it), the send is confirmed the careful
//! way, by the views.
//!
//! A registration is an [`EchoWait`]: dropping it (the copy came, the wait timed out,
//! the append failed, the send was abandoned) takes its entry out, so nothing waits
//! for a copy that will never come. `parley_echo_waiters` counts the entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use parley_schemas::frames::ServerFrame;
use tokio::sync::oneshot;
use uuid::Uuid;

/// What the routed copy of a message says of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    pub seq: i64,
    /// The conversation's message before it, as the router knows it.
    pub prev_seq: Option<i64>,
    /// The router did not know the message before it.
    pub prev_unknown: bool,
    pub ts: i64,
    /// The conversation's change before it, as the router knows it (-1: none).
    pub prev_change: Option<i64>,
}

/// The sends waiting for their copy, by message id (each with the token of its
/// registration).
#[derive(Default)]
pub struct Echoes {
    waiting: Mutex<HashMap<Uuid, (u64, oneshot::Sender<Echo>)>>,
    next: AtomicU64,
}

/// One send's wait for its copy; its entry goes when this is dropped.
pub struct EchoWait {
    echoes: Arc<Echoes>,
    id: Uuid,
    token: u64,
    rx: oneshot::Receiver<Echo>,
}

impl EchoWait {
    /// The copy, if it comes within `within`.
    pub async fn within(mut self, within: std::time::Duration) -> Option<Echo> {
        tokio::time::timeout(within, &mut self.rx).await.ok()?.ok()
    }
}

impl std::fmt::Debug for EchoWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoWait").field("id", &self.id).finish()
    }
}

impl Drop for EchoWait {
    fn drop(&mut self) {
        let mut waiting = self.echoes.lock();
        // A later registration of the same id replaced this one: it stays.
        if waiting.get(&self.id).is_some_and(|(t, _)| *t == self.token) {
            waiting.remove(&self.id);
        }
        gauge(waiting.len());
    }
}

fn gauge(n: usize) {
    static WAITERS: OnceLock<metrics::Gauge> = OnceLock::new();
    parley_ops::metrics::kept(&WAITERS, || {
        metrics::gauge!(parley_ops::metrics::ECHO_WAITERS)
    })
    .set(n as f64);
}

impl Echoes {
    /// Waits for `id`'s copy (a second registration of one id replaces the first, which
    /// then falls back to the views).
    pub fn expect(self: &Arc<Self>, id: Uuid) -> EchoWait {
        let (tx, rx) = oneshot::channel();
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let mut waiting = self.lock();
        waiting.insert(id, (token, tx));
        gauge(waiting.len());
        EchoWait {
            echoes: self.clone(),
            id,
            token,
            rx,
        }
    }

    /// How many sends wait for their copy.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no send waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A routed frame reached this gateway: if it is a message, its copy (seq and
    /// predecessor as the router gave them, the same the recipients get).
    pub fn arrived_frame(&self, frame: &ServerFrame) {
        if let ServerFrame::Message(m) = frame {
            let echo = Echo {
                seq: m.seq,
                prev_seq: m.prev_seq,
                prev_unknown: m.prev_unknown,
                ts: m.ts,
                prev_change: m.prev_change,
            };
            self.arrived(m.message_id, echo);
        }
    }

    /// A routed message reached this gateway.
    pub fn arrived(&self, id: Uuid, echo: Echo) {
        let waiter = {
            let mut waiting = self.lock();
            if waiting.is_empty() {
                return;
            }
            let w = waiting.remove(&id);
            gauge(waiting.len());
            w
        };
        if let Some((_, tx)) = waiter {
            let _ = tx.send(echo);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (u64, oneshot::Sender<Echo>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_copy_reaches_its_waiter_once_and_no_wait_outlives_its_send() {
        let echoes = Arc::new(Echoes::default());
        let id = Uuid::new_v4();
        let wait = echoes.expect(id);
        let echo = Echo {
            seq: 7,
            prev_seq: Some(5),
            prev_unknown: false,
            ts: 1,
            prev_change: Some(-1),
        };
        echoes.arrived(Uuid::new_v4(), echo);
        echoes.arrived(id, echo);
        assert_eq!(wait.within(Duration::from_secs(1)).await, Some(echo));
        assert!(echoes.is_empty());
        // Nobody waits any more: a second copy is ignored.
        echoes.arrived(id, echo);
        // A wait dropped (a failed append, a timeout) leaves nothing behind.
        drop(echoes.expect(id));
        assert!(echoes.is_empty());
        // A wait replaced by a later one of the same id does not take the later one out.
        let first = echoes.expect(id);
        let second = echoes.expect(id);
        drop(first);
        assert_eq!(echoes.len(), 1);
        assert_eq!(second.within(Duration::from_millis(10)).await, None);
        assert!(echoes.is_empty());
    }
}
