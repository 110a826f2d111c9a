//! `parley replay`: a topic as JSON lines, one decoded record per line — the analytics
//! consumer's first tool. By default it reads every partition from the beginning up to
//! the end offsets taken when it starts, then exits; `--follow` keeps streaming.
//!
//! A sealed message's body is printed as the log holds it (ciphertext, in base64),
//! unless `--decrypt` is given with the key-encryption key: its text then, or
//! `"body": null, "erased": true` once its data key is erased.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine;
use clap::Args;
use futures::StreamExt;
use parley_sequencer::{EventLog, LogRecord, StartAt};
use serde_json::json;

use super::LogArgs;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Topic: a role (`events`, `receipts`, …, which gets the prefix) or a full name.
    #[arg(long, short, default_value = "events")]
    topic: String,
    /// Only these partitions (repeatable); default all.
    #[arg(long, short)]
    partition: Vec<i32>,
    /// Start at this offset in each partition read (default: the beginning).
    #[arg(long, conflicts_with = "from_end")]
    offset: Option<i64>,
    /// Start at the end: print only records appended from now on (implies --follow).
    #[arg(long)]
    from_end: bool,
    /// Keep streaming new records after reaching the end.
    #[arg(long, short)]
    follow: bool,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<u64>,
    /// Print sealed bodies as text, opened with their data keys (the `keys` topic,
    /// read first) and the key-encryption key (`--kek` / `PARLEY_KEK`). An erased
    /// body prints as `"body": null` with `"erased": true`.
    #[arg(long)]
    decrypt: bool,
    #[command(flatten)]
    kek: crate::cli::roles::KekArgs,
    #[command(flatten)]
    log: LogArgs,
}

impl ReplayArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let log = self.log.connect().await?;
        let topic = self.log.topic_name(&self.topic);
        let count = log.partition_count(&topic).await?;
        let partitions: Vec<i32> = if self.partition.is_empty() {
            (0..count).collect()
        } else {
            for &p in &self.partition {
                anyhow::ensure!(
                    (0..count).contains(&p),
                    "{topic} has no partition {p} (it has {count})"
                );
            }
            self.partition.clone()
        };
        let follow = self.follow || self.from_end;
        let start = match (self.from_end, self.offset) {
            (true, _) => StartAt::End,
            (false, Some(o)) => {
                anyhow::ensure!(o >= 0, "--offset must be 0 or more");
                StartAt::Offset(o)
            }
            (false, None) => StartAt::Beginning,
        };

        // Partitions still to finish: those with records at or after the start.
        let ends = log.end_offsets(&topic).await?;
        let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
        for &p in &partitions {
            let end = ends[p as usize];
            let from = match start {
                StartAt::Offset(o) => o,
                _ => 0,
            };
            if end > from {
                pending.insert(p, end);
            }
        }
        if !follow && pending.is_empty() {
            eprintln!("parley replay: {topic}: nothing to replay");
            return Ok(ExitCode::SUCCESS);
        }

        let stop = crate::shutdown::on_signal();
        let keys = match (self.decrypt, self.kek.kek()?) {
            (false, _) => None,
            (true, None) => {
                anyhow::bail!("--decrypt needs the key-encryption key: set PARLEY_KEK (or --kek)")
            }
            (true, Some(kek)) => {
                let keys_topic = self.log.settings().names().keys;
                let keys = parley_keys::DataKeys::load(
                    std::sync::Arc::new(log.clone()),
                    &keys_topic,
                    kek,
                    follow.then(|| stop.clone()),
                )
                .await?;
                eprintln!("parley replay: {} data key(s) in {keys_topic}", keys.len());
                Some(keys)
            }
        };
        let from: Vec<(i32, StartAt)> = partitions.iter().map(|&p| (p, start)).collect();
        let mut stream = log.read(&topic, &from).await?;
        let stdout = io::stdout();
        let mut out = io::BufWriter::new(stdout.lock());
        let mut printed: u64 = 0;
        let mut undecodable: u64 = 0;
        loop {
            if !follow && pending.is_empty() {
                break;
            }
            if self.limit.is_some_and(|l| printed >= l) {
                break;
            }
            let next = if follow {
                tokio::select! {
                    n = stream.next() => n,
                    _ = stop.cancelled() => break,
                }
            } else {
                // Records between the start and the end offsets may have been deleted by
                // retention or compaction; an idle reader has then seen all there is.
                match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                    Ok(n) => n,
                    Err(_) => break,
                }
            };
            let record = match next {
                Some(Ok(r)) => r,
                Some(Err(e)) => return Err(e.into()),
                None => break,
            };
            if let Some(&end) = pending.get(&record.partition) {
                if record.offset + 1 >= end {
                    pending.remove(&record.partition);
                }
                if record.offset >= end && !follow {
                    continue;
                }
            } else if !follow {
                continue;
            }
            let (mut line, ok) = to_json(&record);
            if let Some(keys) = &keys {
                decrypted(&mut line, &record, keys);
            }
            undecodable += u64::from(!ok);
            if let Err(e) =
                writeln!(out, "{line}").and_then(|_| if follow { out.flush() } else { Ok(()) })
            {
                return closed_pipe_is_fine(e, printed);
            }
            printed += 1;
        }
        if let Err(e) = out.flush() {
            return closed_pipe_is_fine(e, printed);
        }
        eprintln!(
            "parley replay: {printed} record(s) from {topic} ({} partition(s)){}",
            partitions.len(),
            if undecodable > 0 {
                format!(", {undecodable} undecodable")
            } else {
                String::new()
            }
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// The JSON line of one record, and whether it decoded.
pub fn to_json(r: &LogRecord) -> (serde_json::Value, bool) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let key = r.key.as_ref().map(|k| match std::str::from_utf8(k) {
        Ok(s) => json!(s),
        Err(_) => json!({ "base64": b64(k) }),
    });
    let mut line = json!({
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": key,
    });
    let mut ok = true;
    match &r.value {
        None => {
            line["tombstone"] = json!(true);
            line["record"] = serde_json::Value::Null;
        }
        Some(v) => match parley_schemas::decode_any(v) {
            Ok(rec) => {
                line["schema"] = json!(rec.schema_name());
                line["record"] = rec.to_json();
            }
            Err(e) => {
                ok = false;
                line["error"] = json!(e.to_string());
                line["value_base64"] = json!(b64(v));
            }
        },
    }
    (line, ok)
}

/// `line` with a sealed message's body (and its files' names) opened with its data key,
/// or marked erased.
fn decrypted(line: &mut serde_json::Value, r: &LogRecord, keys: &parley_keys::DataKeys) {
    let opened = match r.value.as_deref().map(parley_schemas::decode_any) {
        Some(Ok(parley_schemas::AnyRecord::MessagePosted(mut m))) if m.sealed.is_some() => {
            let opened = match keys.open_in_place(&mut m) {
                true => parley_keys::Opened::Text(m.body.clone()),
                false => parley_keys::Opened::Erased,
            };
            if !m.attachments.is_empty() {
                line["record"]["attachments"] = json!(m.attachments);
            }
            opened
        }
        Some(Ok(parley_schemas::AnyRecord::MessageEdited(e))) if e.sealed.is_some() => {
            keys.open(&e)
        }
        _ => return,
    };
    match opened {
        parley_keys::Opened::Text(text) => {
            line["record"]["body"] = json!(text);
            line["record"]["erased"] = json!(false);
        }
        parley_keys::Opened::Erased => {
            line["record"]["body"] = serde_json::Value::Null;
            line["record"]["erased"] = json!(true);
        }
    }
}

fn closed_pipe_is_fine(e: io::Error, printed: u64) -> anyhow::Result<ExitCode> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        // `parley replay | head` closes the pipe: that is how a reader says "enough".
        tracing::debug!(printed, "output closed");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(e.into())
    }
}
