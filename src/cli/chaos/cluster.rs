//! The Kafka cluster's faults, through `scripts/kafka.sh cluster …`: kill and restart a
//! broker, pause (SIGSTOP) and resume it; and the broker that leads the most partitions
//! of a topic, from the cluster's metadata.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use parley_sequencer::{KafkaConfig, KafkaLog};

/// `kafka.sh cluster restart` waits up to 270 s for the broker; a little more here.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(330);

/// The three-broker cluster of `scripts/kafka.sh cluster start`.
#[derive(Clone)]
pub struct Cluster {
    script: PathBuf,
    log: KafkaLog,
}

impl Cluster {
    pub async fn new(script: PathBuf, bootstrap: &str) -> anyhow::Result<Cluster> {
        anyhow::ensure!(
            script.is_file(),
            "--kafka-script {}: no such file (it is scripts/kafka.sh of the repository)",
            script.display()
        );
        let log = KafkaLog::connect(KafkaConfig::with_bootstrap(bootstrap))
            .await
            .with_context(|| {
                format!("connecting to {bootstrap} (scripts/kafka.sh cluster start)")
            })?;
        Ok(Cluster { script, log })
    }

    /// Runs `kafka.sh cluster ARGS…`; its stdout, or an error with its stderr.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let what = format!("{} cluster {}", self.script.display(), args.join(" "));
        let child = tokio::process::Command::new(&self.script)
            .arg("cluster")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {what}"))?;
        let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow::anyhow!("{what}: no answer within {SCRIPT_TIMEOUT:?}"))?
            .with_context(|| format!("running {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The broker (1..3) that leads the most partitions of `topic`.
    pub async fn busiest_leader(&self, topic: &str) -> anyhow::Result<u8> {
        // A topic just created may not be in every broker's metadata yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let leaders = loop {
            match self.log.leaders(topic).await {
                Ok(l) if !l.is_empty() => break l,
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("the leaders of {topic}"));
                }
                Ok(_) if std::time::Instant::now() >= deadline => {
                    anyhow::bail!("{topic} has no partitions");
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        };
        let mut counts = [0usize; 4];
        for l in leaders {
            if (1..=3).contains(&l) {
                counts[l as usize] += 1;
            }
        }
        let (n, most) = (1..=3usize)
            .map(|n| (n, counts[n]))
            .max_by_key(|(n, c)| (*c, std::cmp::Reverse(*n)))
            .unwrap_or((1, 0));
        anyhow::ensure!(most > 0, "no partition of {topic} has a leader");
        Ok(n as u8)
    }

    /// SIGKILL broker `n`.
    pub async fn kill(&self, n: u8) -> anyhow::Result<()> {
        self.run(&["kill", &n.to_string()]).await.map(drop)
    }

    /// Starts broker `n` again and waits until it answers.
    pub async fn restart(&self, n: u8) -> anyhow::Result<()> {
        self.run(&["restart", &n.to_string()]).await.map(drop)
    }

    /// SIGSTOP broker `n`; the guard resumes it if it is dropped before
    /// [`Paused::resume`] (an error or Ctrl-C in between).
    pub async fn pause(&self, n: u8) -> anyhow::Result<Paused> {
        self.run(&["pause", &n.to_string()]).await?;
        Ok(Paused {
            cluster: self.clone(),
            broker: n,
            resumed: false,
        })
    }
}

/// A broker under SIGSTOP.
pub struct Paused {
    cluster: Cluster,
    broker: u8,
    resumed: bool,
}

impl Paused {
    pub fn broker(&self) -> u8 {
        self.broker
    }

    /// SIGCONT.
    pub async fn resume(mut self) -> anyhow::Result<()> {
        self.resumed = true;
        self.cluster
            .run(&["resume", &self.broker.to_string()])
            .await
            .map(drop)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if self.resumed {
            return;
        }
        // Not in the runtime's hands any more (we may be unwinding): plainly, and quickly.
        let status = std::process::Command::new(&self.cluster.script)
            .args(["cluster", "resume", &self.broker.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "chaos: could not resume broker {}: run `{} cluster resume {}`",
                self.broker,
                self.cluster.script.display(),
                self.broker
            );
        }
    }
}
