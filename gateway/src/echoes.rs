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

use std::collections::HashMap;
use std::sync::Mutex;

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
}

/// The sends waiting for their copy, by message id.
#[derive(Default)]
pub struct Echoes {
    waiting: Mutex<HashMap<Uuid, oneshot::Sender<Echo>>>,
}

impl Echoes {
    /// Waits for `id`'s copy (a second registration of one id replaces the first, which
    /// then falls back to the views).
    pub fn expect(&self, id: Uuid) -> oneshot::Receiver<Echo> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        rx
    }

    /// No longer waiting for `id` (it timed out).
    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
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
            waiting.remove(&id)
        };
        if let Some(tx) = waiter {
            let _ = tx.send(echo);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<Echo>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_copy_reaches_its_waiter_once() {
        let echoes = Echoes::default();
        let id = Uuid::new_v4();
        let rx = echoes.expect(id);
        let echo = Echo {
            seq: 7,
            prev_seq: Some(5),
            prev_unknown: false,
            ts: 1,
        };
        echoes.arrived(Uuid::new_v4(), echo);
        echoes.arrived(id, echo);
        assert_eq!(rx.await.unwrap(), echo);
        // Nobody waits any more: a second copy is ignored.
        echoes.arrived(id, echo);
        let rx = echoes.expect(id);
        echoes.forget(id);
        assert!(rx.await.is_err(), "forgotten: the waiter falls back");
    }
}
