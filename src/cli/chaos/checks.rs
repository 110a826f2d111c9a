//! What the run must show, counted from the users' records, the conversations' history
//! and the two projectors, and the markdown table it is reported in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use parley_schemas::frames::MessageView;
use serde_json::Value;
use uuid::Uuid;

use super::client::Record;
use super::procs;

/// A conversation of the run and its members.
#[derive(Clone, Debug)]
pub struct Conversation {
    pub id: String,
    /// `direct p0`, `group g1`.
    pub label: String,
    pub members: Vec<String>,
}

/// The counts of the checks. Every field but the `info_` ones must be zero.
#[derive(Debug, Default)]
pub struct Counts {
    /// Distinct (conversation, message id) acknowledged by a `sent`.
    pub info_acked: usize,
    pub info_sent_frames: usize,
    pub info_arrivals: usize,
    pub info_arrivals_out_of_order: usize,
    pub info_duplicates_dropped: usize,
    pub info_reconnects: usize,
    pub info_send_retries: usize,
    pub info_changes: usize,
    pub info_changes_failed: usize,
    pub info_receipts: usize,
    pub missing_in_history: usize,
    /// (acked message, member) pairs where the member's store lacks it.
    pub missing_at_clients: usize,
    pub sent_not_in_history: usize,
    pub cmid_two_seqs: usize,
    pub stores_out_of_order: usize,
    pub held_not_in_history: usize,
    /// Messages a client holds whose text, flags or reaction counts differ from history.
    pub changes_differ: usize,
    pub store_duplicates: usize,
    pub history_duplicates: usize,
    pub not_converged: usize,
    pub gave_up: usize,
    pub histories_unread: usize,
    /// Users whose last message (as history holds it) a search did not find.
    pub search_missing: usize,
    /// Messages in the log whose body is not sealed, when every role runs with a
    /// key-encryption key (the default; not with `--plain`); `None` otherwise.
    pub plain_in_log: Option<usize>,
}

/// Counts every check. `histories` lacks a conversation whose history could not be read.
pub fn count(
    conversations: &[Conversation],
    histories: &HashMap<String, Vec<MessageView>>,
    records: &[Record],
) -> Counts {
    let mut c = Counts::default();
    let by_user: HashMap<&str, &Record> = records.iter().map(|r| (r.user.as_str(), r)).collect();
    // What each history and each store holds.
    let history_ids: HashMap<&str, HashSet<Uuid>> = histories
        .iter()
        .map(|(k, h)| (k.as_str(), h.iter().map(|m| m.message_id).collect()))
        .collect();
    let history_pairs: HashMap<&str, HashSet<(Uuid, i64)>> = histories
        .iter()
        .map(|(k, h)| {
            (
                k.as_str(),
                h.iter().map(|m| (m.message_id, m.seq)).collect(),
            )
        })
        .collect();
    let held = |r: &Record| -> HashSet<Uuid> {
        r.store
            .messages(&r.conversation)
            .iter()
            .map(|m| m.message_id)
            .collect()
    };
    let held_ids: HashMap<&str, HashSet<Uuid>> =
        records.iter().map(|r| (r.user.as_str(), held(r))).collect();

    for conv in conversations {
        if !histories.contains_key(&conv.id) {
            c.histories_unread += 1;
        }
        let h = history_of(histories, &conv.id);
        c.history_duplicates +=
            h.len() - h.iter().map(|m| m.message_id).collect::<HashSet<_>>().len();
    }

    // (1) acked but missing; (4) sent for what history does not hold; (5) two seqs.
    let mut acked: HashSet<(&str, Uuid)> = HashSet::new();
    let mut seqs_of: HashMap<(&str, &str), HashSet<i64>> = HashMap::new();
    for r in records {
        c.info_sent_frames += r.sent.len();
        for s in &r.sent {
            acked.insert((s.conversation.as_str(), s.message_id));
            seqs_of
                .entry((r.user.as_str(), s.client_msg_id.as_str()))
                .or_default()
                .insert(s.seq);
            let kept = history_pairs
                .get(s.conversation.as_str())
                .is_some_and(|p| p.contains(&(s.message_id, s.seq)));
            if !kept {
                c.sent_not_in_history += 1;
            }
        }
    }
    c.info_acked = acked.len();
    c.cmid_two_seqs = seqs_of.values().filter(|s| s.len() > 1).count();
    let members: HashMap<&str, &[String]> = conversations
        .iter()
        .map(|k| (k.id.as_str(), k.members.as_slice()))
        .collect();
    for (conv, id) in &acked {
        if !history_ids.get(conv).is_some_and(|h| h.contains(id)) {
            c.missing_in_history += 1;
        }
        for m in members.get(conv).copied().unwrap_or_default() {
            if !held_ids.get(m.as_str()).is_some_and(|h| h.contains(id)) {
                c.missing_at_clients += 1;
            }
        }
    }
    // A member with no record at all (its task failed) holds nothing.
    for conv in conversations {
        for m in &conv.members {
            if !by_user.contains_key(m.as_str()) {
                c.not_converged += 1;
            }
        }
    }

    // (2) order, (3) duplicates, and what clients hold that history does not.
    for r in records {
        c.info_arrivals += r.arrivals;
        c.info_arrivals_out_of_order += r.arrivals_out_of_order;
        c.info_reconnects += r.reconnects;
        c.info_send_retries += r.send_retries;
        c.info_changes += r.changes;
        c.info_changes_failed += r.changes_failed;
        c.info_receipts += r.acks;
        c.info_duplicates_dropped += r
            .store
            .conversations
            .get(&r.conversation)
            .map(|k| k.duplicates)
            .unwrap_or(0);
        if !r.converged {
            c.not_converged += 1;
        }
        if r.gave_up.is_some() {
            c.gave_up += 1;
        }
        let store = r.store.messages(&r.conversation);
        let ids: HashSet<Uuid> = store.iter().map(|m| m.message_id).collect();
        c.store_duplicates += store.len() - ids.len();
        let pairs = history_pairs.get(r.conversation.as_str());
        c.held_not_in_history += store
            .iter()
            .filter(|m| !pairs.is_some_and(|p| p.contains(&(m.message_id, m.seq))))
            .count();
        // The messages both hold, in the store's order and in history's.
        let h = history_of(histories, &r.conversation);
        let by_seq: HashMap<i64, &MessageView> = h.iter().map(|m| (m.seq, m)).collect();
        for m in store.iter() {
            let Some(h) = by_seq.get(&m.seq) else {
                continue;
            };
            if h.message_id == m.message_id && !super::client::same_state(m, h) {
                if c.changes_differ < 10 {
                    tracing::warn!(
                        user = %r.user, conversation = %r.conversation, seq = m.seq,
                        client = ?(&m.body, m.edited, m.deleted, &m.reactions),
                        history = ?(&h.body, h.edited, h.deleted, &h.reactions),
                        text_from = ?r.store.conversations.get(&r.conversation).and_then(|c| c.text_from.get(&m.seq)),
                        "a message differs between a client and history"
                    );
                }
                c.changes_differ += 1;
            }
        }
        let in_history = history_ids.get(r.conversation.as_str());
        let mine: Vec<(i64, Uuid)> = store
            .iter()
            .filter(|m| in_history.is_some_and(|h| h.contains(&m.message_id)))
            .map(|m| (m.seq, m.message_id))
            .collect();
        let theirs: Vec<(i64, Uuid)> = h
            .iter()
            .filter(|m| ids.contains(&m.message_id))
            .map(|m| (m.seq, m.message_id))
            .collect();
        if mine != theirs {
            c.stores_out_of_order += 1;
        }
    }
    c
}

fn history_of<'a>(
    histories: &'a HashMap<String, Vec<MessageView>>,
    conv: &str,
) -> &'a [MessageView] {
    histories.get(conv).map(Vec::as_slice).unwrap_or(&[])
}

/// The projector's views against a rebuild from the log.
#[derive(Debug)]
pub enum Checksum {
    Equal(String),
    Differ { live: String, rebuilt: String },
    NotCompared(String),
}

impl Checksum {
    pub fn ok(&self) -> bool {
        matches!(self, Checksum::Equal(_))
    }

    fn cell(&self) -> String {
        match self {
            Checksum::Equal(c) => format!("equal (`{}…`)", &c[..c.len().min(16)]),
            Checksum::Differ { live, rebuilt } => format!(
                "**differ**: live `{}…`, rebuilt `{}…`",
                &live[..live.len().min(16)],
                &rebuilt[..rebuilt.len().min(16)]
            ),
            Checksum::NotCompared(why) => format!("**not compared**: {why}"),
        }
    }
}

/// Waits (at most `within`) until both projectors report the same offsets, the same
/// before and after their checksums are read, and compares the checksums.
pub async fn compare_checksums(
    live: &str,
    rebuilt: &str,
    token: &str,
    within: Duration,
) -> Checksum {
    let deadline = tokio::time::Instant::now() + within;
    let mut last = String::from("no answer yet");
    while tokio::time::Instant::now() < deadline {
        match checksums_at_rest(live, rebuilt, token).await {
            Ok(Some((a, b))) if a == b => return Checksum::Equal(a),
            Ok(Some((a, b))) => {
                return Checksum::Differ {
                    live: a,
                    rebuilt: b,
                }
            }
            Ok(None) => last = "the rebuild has not caught up".into(),
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Checksum::NotCompared(format!(
        "not at the same offsets within {within:?} ({last})"
    ))
}

/// Both checksums if both projectors stood at the same offsets throughout.
async fn checksums_at_rest(
    live: &str,
    rebuilt: &str,
    token: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let before = (status(live, token).await?, status(rebuilt, token).await?);
    if before.0 != before.1 {
        return Ok(None);
    }
    let sum = |v: Option<Value>| -> anyhow::Result<String> {
        v.as_ref()
            .and_then(|v| v["checksum"].as_str())
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("/v1/checksum: no checksum in {v:?}"))
    };
    let a = sum(procs::get(live, "/v1/checksum", token).await?)?;
    let b = sum(procs::get(rebuilt, "/v1/checksum", token).await?)?;
    let after = (status(live, token).await?, status(rebuilt, token).await?);
    Ok((after == before).then_some((a, b)))
}

/// A projector's consumed offsets (`/v1/status`: events, inbox, receipts).
async fn status(base: &str, token: &str) -> anyhow::Result<Value> {
    procs::get(base, "/v1/status", token)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{base}/v1/status refused"))
}

/// What the faults did.
#[derive(Debug, Default)]
pub struct Faults {
    /// Kills by kind: `gateway`, `fanout-worker`, `projector replica`, `broker`.
    pub kills: BTreeMap<&'static str, usize>,
    pub pauses: usize,
    /// Projector replicas stalled (SIGSTOP), each counted.
    pub stalls: usize,
    /// Faults whose recovery failed (a role not healthy again, a broker not back).
    pub failed: Vec<String>,
    /// Roles that ended without being killed.
    pub exited: Vec<String>,
}

/// One line of the table.
struct Row {
    check: &'static str,
    value: String,
    /// `None`: for information only.
    pass: Option<bool>,
    must: &'static str,
}

/// The result: the markdown report and what failed (empty: the run passed).
pub struct Verdict {
    pub markdown: String,
    pub failures: Vec<String>,
}

/// The table and the totals, and the verdict.
pub fn verdict(c: &Counts, checksum: &Checksum, faults: &Faults, elapsed: Duration) -> Verdict {
    let zero = |check: &'static str, n: usize| Row {
        check,
        value: n.to_string(),
        pass: Some(n == 0),
        must: "0",
    };
    let mut rows = vec![
        zero("acked, missing from history", c.missing_in_history),
        zero(
            "acked, missing at a member's client (message × member)",
            c.missing_at_clients,
        ),
        zero(
            "`sent` for a (message_id, seq) history does not hold",
            c.sent_not_in_history,
        ),
        zero(
            "client_msg_ids with `sent` of different seqs",
            c.cmid_two_seqs,
        ),
        zero(
            "client stores in another order than history",
            c.stores_out_of_order,
        ),
        zero(
            "messages held at a client at a seq history does not hold",
            c.held_not_in_history,
        ),
        zero(
            "messages whose text, edit or deletion, or reactions at a client differ from history",
            c.changes_differ,
        ),
        zero(
            "message ids held twice in a client's store",
            c.store_duplicates,
        ),
        zero("message ids twice in history", c.history_duplicates),
        zero(
            "users whose last message a search for its text does not find",
            c.search_missing,
        ),
        zero(
            "clients that never came to hold their history",
            c.not_converged,
        ),
        zero("clients that gave up (no gateway took them)", c.gave_up),
        zero(
            "conversations whose history could not be read",
            c.histories_unread,
        ),
        zero("fault recoveries that failed", faults.failed.len()),
        zero(
            "roles that exited without being killed",
            faults.exited.len(),
        ),
        Row {
            check: "arrivals out of seq order (client reorders them)",
            value: c.info_arrivals_out_of_order.to_string(),
            pass: None,
            must: "(info)",
        },
        Row {
            check: "projector checksum vs a rebuild from the log",
            value: checksum.cell(),
            pass: Some(checksum.ok()),
            must: "equal",
        },
        Row {
            check: "acked messages",
            value: c.info_acked.to_string(),
            pass: Some(c.info_acked > 0),
            must: "> 0",
        },
    ];
    if let Some(plain) = c.plain_in_log {
        rows.push(zero("messages in the log whose text is not sealed", plain));
    }
    let mut md = String::from("## Checks\n\n| check | result | must be | |\n|---|---|---|---|\n");
    let mut failures = Vec::new();
    for r in &rows {
        let mark = match r.pass {
            Some(true) => "ok",
            Some(false) => "**FAIL**",
            None => "",
        };
        let _ = writeln!(md, "| {} | {} | {} | {mark} |", r.check, r.value, r.must);
        if r.pass == Some(false) {
            failures.push(format!("{}: {}", r.check, r.value));
        }
    }
    for f in faults.failed.iter().chain(&faults.exited) {
        failures.push(f.clone());
    }
    let kills = |k: &str| faults.kills.get(k).copied().unwrap_or(0);
    let totals = [
        ("acked messages (distinct)", c.info_acked.to_string()),
        ("`sent` frames", c.info_sent_frames.to_string()),
        ("send attempts retried", c.info_send_retries.to_string()),
        (
            "edits, reactions, deletions acknowledged",
            c.info_changes.to_string(),
        ),
        (
            "changes that failed (not retried)",
            c.info_changes_failed.to_string(),
        ),
        ("kills: gateway", kills("gateway").to_string()),
        ("kills: fanout-worker", kills("fanout-worker").to_string()),
        (
            "kills: projector replica",
            kills("projector replica").to_string(),
        ),
        ("kills: broker", kills("broker").to_string()),
        ("broker pauses", faults.pauses.to_string()),
        ("projector replicas stalled", faults.stalls.to_string()),
        ("client reconnects", c.info_reconnects.to_string()),
        ("live arrivals", c.info_arrivals.to_string()),
        (
            "copies dropped as duplicates by clients",
            c.info_duplicates_dropped.to_string(),
        ),
        ("receipts acknowledged", c.info_receipts.to_string()),
        ("elapsed", format!("{:.0} s", elapsed.as_secs_f64())),
    ];
    md.push_str("\n## Totals\n\n| | |\n|---|---:|\n");
    for (k, v) in totals {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    if !faults.failed.is_empty() || !faults.exited.is_empty() {
        md.push_str("\n## Fault problems\n\n");
        for f in faults.failed.iter().chain(&faults.exited) {
            let _ = writeln!(md, "- {f}");
        }
    }
    Verdict {
        markdown: md,
        failures,
    }
}
