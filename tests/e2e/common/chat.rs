//! A chat client that survives its gateway: it reconnects (to another gateway first),
//! resyncs from its cursors, and retries an unacknowledged send with the same
//! client_msg_id. The fault tests run several of them under continuous traffic.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parley_client::{Api, Session, SessionError, Store};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One user's part in a run.
#[derive(Clone, Debug)]
pub struct Member {
    pub user: String,
    pub token: String,
    /// The conversations it sends to (round robin).
    pub conversations: Vec<String>,
    /// Index of the gateway it prefers.
    pub home: usize,
}

/// What a client ended with.
#[derive(Debug)]
pub struct Outcome {
    pub user: String,
    pub store: Store,
    /// (conversation, message id, seq) of each send the log acknowledged.
    pub acked: Vec<(String, Uuid, i64)>,
    /// Sessions opened after the first.
    pub reconnects: usize,
    /// Whether the store came to equal the history of every conversation.
    pub converged: bool,
}

pub struct Timing {
    /// Pause between sends.
    pub every: Duration,
    /// Until this is cancelled, the client sends.
    pub sending: CancellationToken,
    /// Clients of the run still sending (their last send may be in flight): a client
    /// compares its store with history only once this is 0, so that history is final.
    pub still_sending: Arc<AtomicUsize>,
    /// How long it then has to hold every message.
    pub settle: Duration,
}

async fn connect(gateways: &[String], m: &Member, attempt: usize, store: Store) -> Session {
    let mut store = Some(store);
    let mut i = 0;
    loop {
        // After a failure, the other gateways first.
        let g = (m.home + attempt + i) % gateways.len();
        i += 1;
        match Session::connect(&gateways[g], &m.token).await {
            Ok(s) => {
                s.absorb(store.take().unwrap_or_default());
                let _ = s.ready(Duration::from_secs(10)).await;
                match s.sync(Duration::from_secs(30)).await {
                    Ok(()) => return s,
                    Err(e) => {
                        eprintln!("{}: sync failed ({e}); reconnecting", m.user);
                        store = Some(s.into_store());
                    }
                }
            }
            Err(e) => eprintln!("{}: connect to gateway {g} failed: {e}", m.user),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(i < 300, "{}: no gateway would take the session", m.user);
    }
}

/// Runs one member until the end of `timing`; see [`Outcome`].
pub async fn run(gateways: Vec<String>, m: Member, timing: Timing) -> Outcome {
    // Counted out when sending ends, or when this client panics (so that the others do
    // not wait for it until their deadline and hide the failure).
    let sending = StillSending(timing.still_sending.clone());
    let api = Api::new(&gateways[m.home], &m.token);
    let mut session = connect(&gateways, &m, 0, Store::default()).await;
    let mut reconnects = 0;
    let mut acked = Vec::new();
    let mut n = 0usize;
    let mut pending: Option<(String, String)> = None;
    while !timing.sending.is_cancelled() {
        if session.closed().is_some() {
            reconnects += 1;
            let store = session.into_store();
            session = connect(&gateways, &m, reconnects, store).await;
            continue;
        }
        let (conv, cmid) = pending.get_or_insert_with(|| {
            n += 1;
            let conv = m.conversations[n % m.conversations.len()].clone();
            (conv, format!("{}-{n}", m.user))
        });
        let body = format!("{cmid} says hello");
        match session.send(conv, cmid, &body).await {
            Ok(sent) => {
                acked.push((conv.clone(), sent.message_id, sent.seq));
                pending = None;
            }
            Err(SessionError::Server { code, message }) => {
                // The log was unreachable for a moment: the same send again.
                assert_eq!(code, "unavailable", "{}: send refused: {message}", m.user);
            }
            Err(e) => eprintln!("{}: send {cmid} failed ({e}); retrying it", m.user),
        }
        tokio::time::sleep(timing.every).await;
    }

    // Settle: no more sends; the client only reconnects if it has to. History is final
    // once every client's last send has been answered.
    drop(sending);
    let deadline = tokio::time::Instant::now() + timing.settle;
    while timing.still_sending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut converged = false;
    while tokio::time::Instant::now() < deadline {
        if session.closed().is_some() {
            reconnects += 1;
            let store = session.into_store();
            session = connect(&gateways, &m, reconnects, store).await;
        }
        let mut all = true;
        for c in &m.conversations {
            let want: Vec<(i64, Uuid)> = api
                .all_messages(c)
                .await
                .expect("history")
                .iter()
                .map(|x| (x.seq, x.message_id))
                .collect();
            let have: Vec<(i64, Uuid)> = session
                .messages(c)
                .iter()
                .map(|x| (x.seq, x.message_id))
                .collect();
            all &= want == have;
        }
        if all {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Outcome {
        user: m.user.clone(),
        store: session.into_store(),
        acked,
        reconnects,
        converged,
    }
}

/// The checks every fault test makes: each client holds every acknowledged message of
/// its conversations, in seq order, each once.
pub fn check(members: &[Member], outcomes: &[Outcome]) {
    let acked: Vec<&(String, Uuid, i64)> = outcomes.iter().flat_map(|o| &o.acked).collect();
    assert!(!acked.is_empty(), "nothing was sent");
    for (m, o) in members.iter().zip(outcomes) {
        for c in &m.conversations {
            let held = o.store.messages(c);
            let seqs: Vec<i64> = held.iter().map(|x| x.seq).collect();
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(
                seqs, sorted,
                "{}: {c} not in seq order, or repeated",
                m.user
            );
            let ids: BTreeSet<Uuid> = held.iter().map(|x| x.message_id).collect();
            assert_eq!(
                ids.len(),
                held.len(),
                "{}: a message shown twice in {c}",
                m.user
            );
            for (conv, id, seq) in acked.iter().filter(|(conv, _, _)| conv == c) {
                assert!(
                    ids.contains(id),
                    "{}: acked message {id} (seq {seq}) of {conv} is missing",
                    m.user
                );
            }
        }
        assert!(
            o.converged,
            "{}: never came to hold its conversations' history",
            m.user
        );
    }
}

/// One client's share of [`Timing::still_sending`], given back on drop.
struct StillSending(Arc<AtomicUsize>);

impl Drop for StillSending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts a client per member, each sending every `every` until `sending` is
/// cancelled, then given `settle` to hold its history.
pub fn start(
    gateways: &[String],
    members: &[Member],
    sending: &CancellationToken,
    every: Duration,
    settle: Duration,
) -> Vec<tokio::task::JoinHandle<Outcome>> {
    let still_sending = Arc::new(AtomicUsize::new(members.len()));
    members
        .iter()
        .map(|m| {
            let timing = Timing {
                every,
                sending: sending.clone(),
                still_sending: still_sending.clone(),
                settle,
            };
            tokio::spawn(run(gateways.to_vec(), m.clone(), timing))
        })
        .collect()
}
