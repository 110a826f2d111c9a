//! A whole Parley on fresh topics, for one test: in this process (the role crates'
//! `run` functions on 127.0.0.1:0) or as separate `parley` processes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parley_fanout::FanoutConfig;
use parley_gateway::GatewayConfig;
use parley_projector::{LocalViews, Projector, ProjectorConfig, Views};
use parley_sequencer::{EventLog, KafkaConfig, KafkaLog, TopicNames, TopicSettings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-of-parley-0123456789abcdef";
/// The projector API's service token of process stacks.
pub const SERVICE_TOKEN: &str = "test-service-token-of-parley-0123456789";

/// Partitions of the test topics: fewer than production, so tests start fast.
pub const PARTITIONS: i32 = 4;
pub const SLOTS: i32 = 4;

pub async fn kafka() -> Arc<dyn EventLog> {
    let config = KafkaConfig {
        session_timeout_ms: 6_000,
        ..KafkaConfig::with_bootstrap(super::bootstrap())
    };
    Arc::new(
        KafkaLog::connect(config)
            .await
            .expect("Kafka (scripts/kafka.sh start)"),
    )
}

pub fn settings(prefix: &str) -> TopicSettings {
    TopicSettings {
        prefix: prefix.to_string(),
        partitions: PARTITIONS,
        gateway_slots: SLOTS,
        ..TopicSettings::default()
    }
}

pub async fn provision(log: &dyn EventLog, prefix: &str) {
    let reports = log
        .provision(&settings(prefix).spec())
        .await
        .expect("topics");
    assert!(reports.iter().all(|r| r.is_ok()), "{reports:?}");
}

/// Sum of the end offsets of a topic: grows with every append.
pub async fn appended(log: &dyn EventLog, topic: &str) -> i64 {
    log.end_offsets(topic)
        .await
        .expect("end offsets")
        .iter()
        .sum()
}

/// Roles running in this process.
pub struct InProcess {
    pub log: Arc<dyn EventLog>,
    pub prefix: String,
    pub topics: TopicNames,
    /// `http://127.0.0.1:port` of each gateway.
    pub gateways: Vec<String>,
    pub views: LocalViews,
    pub shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

impl InProcess {
    /// Roles with no rate limits (tests not about them send fast, from one address).
    pub async fn start(name: &str, gateways: usize) -> InProcess {
        Self::start_limited(
            name,
            gateways,
            parley_gateway::limits::RateConfig::unlimited(),
        )
        .await
    }

    /// Roles whose gateways have these rate limits.
    pub async fn start_limited(
        name: &str,
        gateways: usize,
        limits: parley_gateway::limits::RateConfig,
    ) -> InProcess {
        let log = kafka().await;
        let prefix = super::fresh_prefix(name);
        provision(&*log, &prefix).await;
        let topics = settings(&prefix).names();
        let data = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let projector = Projector::start(
            ProjectorConfig::new(data.path().join("projector"), &topics),
            log.clone(),
            shutdown.clone(),
        )
        .await
        .expect("projector");
        let views = projector.views();
        tokio::spawn(projector.join());
        let fanout = FanoutConfig::new(topics.clone(), format!("{prefix}fanout"), "test-worker");
        let shared: Arc<dyn Views> = Arc::new(views.clone());
        tokio::spawn(report(
            "fanout",
            parley_fanout::run(fanout, log.clone(), Some(shared.clone()), shutdown.clone()),
        ));
        let mut urls = Vec::new();
        for id in 0..gateways {
            let mut config = GatewayConfig::new(id as i32, topics.clone(), SECRET);
            config.dev_auth = true;
            config.limits = limits.clone();
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}", listener.local_addr().unwrap()));
            tokio::spawn(report(
                "gateway",
                parley_gateway::run(
                    config,
                    log.clone(),
                    shared.clone(),
                    parley_gateway::service::PresenceSource::Log,
                    listener,
                    shutdown.clone(),
                ),
            ));
        }
        for u in &urls {
            wait_healthy(u).await;
        }
        InProcess {
            log,
            prefix,
            topics,
            gateways: urls,
            views,
            shutdown,
            _data: data,
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Runs a role; prints why it stopped, if it failed (a test then fails on its effects).
async fn report(role: &str, f: impl std::future::Future<Output = anyhow::Result<()>>) {
    if let Err(e) = f.await {
        eprintln!("{role} failed: {e:#}");
    }
}

/// `parley dev --dev-auth` in `dir` on its embedded log (no `--log`, no `PARLEY_LOG`),
/// with `env` added; its stderr goes to `dir/<run>.log`. Killed when dropped (also when
/// the test fails half-way, so no orphan keeps its port and CPU).
pub fn dev_embedded(dir: &std::path::Path, port: u16, run: &str, env: &[(String, String)]) -> Proc {
    let log_path = dir.join(format!("{run}.log"));
    let stderr = std::fs::File::create(&log_path).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
    cmd.args(["dev", "--dev-auth", "--http", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env_remove("PARLEY_LOG")
        .env_remove("PARLEY_TOPIC_PREFIX")
        .env_remove("PARLEY_DATA_DIR")
        .env_remove("PARLEY_LOG_DIR")
        .env_remove("PARLEY_ATTACHMENTS")
        .env("PARLEY_LOG_LEVEL", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    let child = cmd.spawn().expect("spawn parley dev");
    Proc::adopt(&format!("parley dev ({run})"), child, log_path)
}

/// Waits until `base/readyz` answers 200.
pub async fn wait_ready(base: &str) {
    super::eventually(&format!("{base} ready"), super::LONG, || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

pub async fn wait_healthy(base: &str) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{base} never became healthy");
}

/// GET on a projector's query API, with the service token.
pub async fn projector_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .get(url)
        .bearer_auth(SERVICE_TOKEN)
        .send()
        .await
}

/// A free address on 127.0.0.1 for a child process to listen on, possibly again after a
/// restart: [`parley_ops::ports::free_port`].
pub fn free_port() -> SocketAddr {
    parley_ops::ports::free_port().expect("no free port below the ephemeral range")
}

/// A `parley` process, killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    log_path: std::path::PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, prefix: &str, args: &[&str]) -> Proc {
        Self::spawn_with(name, prefix, args, &[])
    }

    /// [`Proc::spawn`] with more environment variables.
    pub fn spawn_with(name: &str, prefix: &str, args: &[&str], env: &[(String, String)]) -> Proc {
        let log_path =
            std::env::temp_dir().join(format!("{}{name}.log", prefix.trim_end_matches('.')));
        let log_file = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(args)
            .env("PARLEY_LOG", super::log_url())
            .env("PARLEY_TOPIC_PREFIX", prefix)
            .env("PARLEY_JWT_SECRET", SECRET)
            .env("PARLEY_SERVICE_TOKEN", SERVICE_TOKEN)
            // Unlimited unless a test sets them: tests send fast, from one address.
            .envs(
                [
                    "PARLEY_RATE_SENDS",
                    "PARLEY_RATE_TYPING",
                    "PARLEY_RATE_CREATES",
                    "PARLEY_RATE_ADDS",
                    "PARLEY_RATE_CONNECTS",
                    "PARLEY_RATE_UPGRADES_PER_IP",
                    "PARLEY_RATE_READS",
                    "PARLEY_RATE_SETTINGS",
                ]
                .map(|k| (k, "0")),
            )
            .env("PARLEY_LOG_LEVEL", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn parley");
        Self::adopt(name, child, log_path)
    }

    /// A `parley` process started with its own command line (directory, environment),
    /// logging to `log_path`: killed when dropped, its log shown if the test fails.
    pub fn adopt(name: &str, child: Child, log_path: std::path::PathBuf) -> Proc {
        Proc {
            name: format!("{name} (log {})", log_path.display()),
            child,
            log_path,
        }
    }

    /// What the process has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process freezes, its sockets stay open (a hung process).
    pub fn pause(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what each process said last (CI keeps no temp files).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- last lines of {} ----", self.name);
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// What a [`Processes`] stack runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub gateways: usize,
    pub fanout_workers: usize,
    /// Extra arguments of the projector (e.g. `--debug-apply-delay-ms`).
    pub projector_args: Vec<String>,
    /// Extra arguments of every gateway.
    pub gateway_args: Vec<String>,
    /// Extra arguments of every fanout-worker (e.g. `--dedup-window`).
    pub fanout_args: Vec<String>,
    /// Environment variables of every process (e.g. `PARLEY_MAX_GROUP_MEMBERS`).
    pub env: Vec<(String, String)>,
    /// Projectors as (shards, replicas of each): gateways and fanout-workers then find
    /// them in the directory. `None`: one projector, which they are pointed at.
    pub shards: Option<(usize, usize)>,
    /// More arguments of one replica, by (shard, replica). Replica 0 of a shard is the
    /// one whose URL sorts first: the one callers prefer while it is healthy.
    pub replica_args: Vec<((usize, usize), Vec<String>)>,
}

impl Options {
    pub fn gateways(n: usize) -> Options {
        Options {
            gateways: n,
            fanout_workers: 1,
            projector_args: Vec::new(),
            gateway_args: Vec::new(),
            fanout_args: Vec::new(),
            env: Vec::new(),
            shards: None,
            replica_args: Vec::new(),
        }
    }
}

/// One projector process: a replica of shard `shard`.
pub struct Replica {
    pub shard: usize,
    /// `http://127.0.0.1:port` of its query API.
    pub url: String,
    pub proc: Proc,
    args: Vec<String>,
    name: String,
    data_dir: std::path::PathBuf,
}

/// Roles as separate processes: a projector, fanout-workers, and gateways.
pub struct Processes {
    pub prefix: String,
    pub topics: TopicNames,
    /// The first projector's query API.
    pub projector_url: String,
    pub gateways: Vec<String>,
    /// Every projector, shard by shard.
    pub projectors: Vec<Replica>,
    /// What gateways and fanout-workers are given: one projector's URL, or none (they
    /// follow the directory).
    views_url: Option<String>,
    pub fanouts: Vec<Proc>,
    pub gateway_procs: Vec<Proc>,
    gateway_args: Vec<String>,
    fanout_args: Vec<String>,
    env: Vec<(String, String)>,
    _data: tempfile::TempDir,
}

impl Processes {
    pub async fn start(name: &str, gateways: usize) -> Processes {
        Self::start_with(name, Options::gateways(gateways)).await
    }

    pub async fn start_with(name: &str, options: Options) -> Processes {
        let log = kafka().await;
        let prefix = super::fresh_prefix(name);
        provision(&*log, &prefix).await;
        let data = tempfile::tempdir().unwrap();
        let (shards, replicas) = options.shards.unwrap_or((1, 1));
        let mut projectors = Vec::new();
        for shard in 0..shards {
            // Replica 0 is the one whose URL sorts first (callers prefer it).
            let mut addrs: Vec<std::net::SocketAddr> = (0..replicas).map(|_| free_port()).collect();
            addrs.sort_by_key(|a| format!("http://{a}"));
            for (r, addr) in addrs.into_iter().enumerate() {
                let data_dir = data.path().join(format!("p{shard}-{r}"));
                let mut args = vec![
                    "projector".to_string(),
                    "--http".into(),
                    addr.to_string(),
                    "--data-dir".into(),
                    data_dir.to_str().unwrap().to_string(),
                ];
                if options.shards.is_some() {
                    args.extend(["--shard".into(), format!("{shard}/{shards}")]);
                }
                args.extend(options.projector_args.iter().cloned());
                for (at, extra) in &options.replica_args {
                    if *at == (shard, r) {
                        args.extend(extra.iter().cloned());
                    }
                }
                let name = if options.shards.is_some() {
                    format!("projector{shard}-{r}")
                } else {
                    "projector".into()
                };
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let proc = Proc::spawn_with(&name, &prefix, &refs, &options.env);
                projectors.push(Replica {
                    shard,
                    url: format!("http://{addr}"),
                    proc,
                    args,
                    name,
                    data_dir,
                });
            }
        }
        for p in &projectors {
            wait_healthy(&p.url).await;
        }
        let projector_url = projectors[0].url.clone();
        let views_url = options.shards.is_none().then(|| projector_url.clone());
        let fanouts = (0..options.fanout_workers)
            .map(|i| {
                spawn_fanout(
                    &prefix,
                    views_url.as_deref(),
                    &options.fanout_args,
                    &options.env,
                    i,
                )
            })
            .collect();
        let mut stack = Processes {
            topics: settings(&prefix).names(),
            prefix,
            projector_url,
            gateways: Vec::new(),
            projectors,
            views_url,
            fanouts,
            gateway_procs: Vec::new(),
            gateway_args: options.gateway_args.clone(),
            fanout_args: options.fanout_args.clone(),
            env: options.env.clone(),
            _data: data,
        };
        for id in 0..options.gateways {
            let addr = free_port();
            stack.gateways.push(format!("http://{addr}"));
            let proc = stack.spawn_gateway(id);
            stack.gateway_procs.push(proc);
        }
        for u in &stack.gateways {
            wait_healthy(u).await;
        }
        stack
    }

    fn spawn_gateway(&self, id: usize) -> Proc {
        let addr = self.gateways[id].trim_start_matches("http://").to_string();
        self.spawn_gateway_at(id, &addr)
    }

    /// A gateway process with slot `id` listening on `addr` (a second one with the
    /// same slot, for fencing tests).
    pub fn spawn_gateway_at(&self, id: usize, addr: &str) -> Proc {
        let id_arg = id.to_string();
        let mut args = vec![
            "gateway",
            "--http",
            addr,
            "--gateway-id",
            &id_arg,
            "--dev-auth",
        ];
        if let Some(url) = &self.views_url {
            args.extend(["--projector", url]);
        }
        args.extend(self.gateway_args.iter().map(String::as_str));
        Proc::spawn_with(
            &format!("gateway{id}-{}", addr.replace([':', '.'], "_")),
            &self.prefix,
            &args,
            &self.env,
        )
    }

    /// A push role process (`parley push`) with extra `args`, serving its stats on
    /// `http` (`host:port`).
    pub fn spawn_push(&self, http: &str, args: &[&str]) -> Proc {
        let mut all = vec!["push", "--http", http];
        if let Some(url) = &self.views_url {
            all.extend(["--projector", url]);
        }
        all.extend(args);
        Proc::spawn_with(
            &format!("push-{}", http.replace([':', '.'], "_")),
            &self.prefix,
            &all,
            &self.env,
        )
    }

    /// Starts fanout-worker `i` again (same worker id) after it was killed.
    pub fn restart_fanout(&mut self, i: usize) {
        self.fanouts[i].kill();
        self.fanouts[i] = spawn_fanout(
            &self.prefix,
            self.views_url.as_deref(),
            &self.fanout_args,
            &self.env,
            i,
        );
    }

    /// Starts gateway `id` again (same slot, same address) after it was killed.
    pub async fn restart_gateway(&mut self, id: usize) {
        self.gateway_procs[id].kill();
        self.gateway_procs[id] = self.spawn_gateway(id);
        wait_healthy(&self.gateways[id]).await;
    }

    /// Kills projector `i`, deletes its data (a lost disk) and starts it again on the
    /// same port with `extra` arguments: its views are rebuilt from the log.
    pub async fn rebuild_projector(&mut self, i: usize, extra: &[&str]) {
        let p = &mut self.projectors[i];
        p.proc.kill();
        std::fs::remove_dir_all(&p.data_dir).unwrap();
        let mut args: Vec<&str> = p.args.iter().map(String::as_str).collect();
        args.extend(extra);
        p.proc = Proc::spawn_with(&p.name, &self.prefix, &args, &self.env);
        wait_healthy(&p.url).await;
    }

    /// Starts projector `i` again (same port, same data dir) after it was killed.
    pub async fn restart_projector(&mut self, i: usize) {
        let p = &mut self.projectors[i];
        p.proc.kill();
        let args: Vec<&str> = p.args.iter().map(String::as_str).collect();
        p.proc = Proc::spawn_with(&p.name, &self.prefix, &args, &self.env);
        wait_healthy(&p.url).await;
    }
}

fn spawn_fanout(
    prefix: &str,
    projector_url: Option<&str>,
    extra: &[String],
    env: &[(String, String)],
    i: usize,
) -> Proc {
    let worker = format!("w{i}");
    let mut args = vec![
        "fanout",
        "--worker-id",
        &worker,
        "--session-timeout-ms",
        "6000",
        "--http",
        "127.0.0.1:0",
    ];
    if let Some(url) = projector_url {
        args.extend(["--projector", url]);
    }
    args.extend(extra.iter().map(String::as_str));
    Proc::spawn_with(&format!("fanout{i}"), prefix, &args, env)
}
