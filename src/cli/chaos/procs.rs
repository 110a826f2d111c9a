//! The roles as child processes of this same binary: projectors (shards × replicas,
//! announced in the directory topic, where the other roles find them), fanout-workers
//! and gateways, each with its stderr in a log file of the run directory. A role can be
//! crashed (SIGKILL) and started again with the same arguments (same port, slot, worker
//! id, data dir). Every child is killed when its [`Proc`] is dropped, so the driver
//! leaves nothing behind, whichever way it ends.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::Method;
use parley_client::Api;
use serde_json::Value;

/// How long a role may take to answer `/healthz` after it starts.
const HEALTHY_WITHIN: Duration = Duration::from_secs(120);
/// One HTTP request to a role.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What every child gets: the binary, the log, the topics and the token secret.
#[derive(Clone, Debug)]
pub struct Env {
    pub exe: PathBuf,
    /// `kafka://host:port,…`
    pub log_url: String,
    pub prefix: String,
    pub secret: String,
    /// The key-encryption key every role seals with (none with `--plain`).
    pub kek: Option<String>,
    /// The run directory: `logs/` and the projectors' data dirs.
    pub dir: PathBuf,
}

/// A child `parley` process, SIGKILLed when dropped.
pub struct Proc {
    name: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Proc {
    fn spawn(env: &Env, name: &str, args: Vec<String>) -> anyhow::Result<Proc> {
        let mut p = Proc {
            name: name.to_string(),
            args,
            child: None,
        };
        p.start(env)?;
        Ok(p)
    }

    /// Starts the process (again), appending to its log.
    fn start(&mut self, env: &Env) -> anyhow::Result<()> {
        let path = env.dir.join("logs").join(format!("{}.log", self.name));
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let _ = writeln!(log, "=== chaos: parley {}", self.args.join(" "));
        let level = std::env::var("PARLEY_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let child = Command::new(&env.exe)
            .args(&self.args)
            .env("PARLEY_LOG", &env.log_url)
            .env("PARLEY_TOPIC_PREFIX", &env.prefix)
            .env("PARLEY_JWT_SECRET", &env.secret)
            .env("PARLEY_SERVICE_TOKEN", &env.secret)
            .envs(env.kek.iter().map(|k| ("PARLEY_KEK", k)))
            // Chaos load is many users on one address, faster than any person.
            .env("PARLEY_RATE_SENDS", "0")
            .env("PARLEY_RATE_CONNECTS", "0")
            .env("PARLEY_RATE_UPGRADES_PER_IP", "0")
            .env("PARLEY_RATE_READS", "0")
            .env("PARLEY_LOG_LEVEL", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {} ({})", self.name, env.exe.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, as a crash, and reap it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP (`stop`) or SIGCONT: a hung process, its sockets open.
    fn signal_stop(&self, stop: bool) -> anyhow::Result<()> {
        let Some(c) = &self.child else {
            anyhow::bail!("{} is not running", self.name);
        };
        let sig = if stop { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .context("kill")?;
        anyhow::ensure!(status.success(), "kill {sig} {} failed", self.name);
        Ok(())
    }

    /// `Some(status)` if the process ended by itself (it should not).
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A role of the stack, as a fault names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Gateway(usize),
    Fanout(usize),
    /// Replica `.1` of shard `.0`.
    Projector(usize, usize),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Gateway(i) => write!(f, "gateway {i}"),
            Role::Fanout(i) => write!(f, "fanout-worker {i}"),
            Role::Projector(s, r) => write!(f, "projector {s}.{r} (shard {s}, replica {r})"),
        }
    }
}

/// Every role of the run.
pub struct Roles {
    pub env: Env,
    /// Shards of the projectors, and replicas of each.
    pub shards: usize,
    pub replicas: usize,
    /// `http://127.0.0.1:port` of each projector's query API, shard by shard.
    pub projector_urls: Vec<String>,
    /// `http://127.0.0.1:port` of each gateway (index = gateway id).
    pub gateway_urls: Vec<String>,
    projectors: Vec<Proc>,
    fanouts: Vec<Proc>,
    gateways: Vec<Proc>,
    /// The projectors of the checksum check, once started (held to be killed with the
    /// rest).
    rebuilds: Vec<Proc>,
}

/// A projector's arguments: its address, data dir, and `--shard S/N` unless there is
/// one shard.
fn projector_args(
    addr: SocketAddr,
    data: &std::path::Path,
    shard: usize,
    shards: usize,
) -> Vec<String> {
    let mut args = vec![
        "projector".into(),
        "--http".into(),
        addr.to_string(),
        "--data-dir".into(),
        data.to_string_lossy().into_owned(),
    ];
    if shards > 1 {
        args.extend(["--shard".into(), format!("{shard}/{shards}")]);
    }
    args
}

impl Roles {
    /// Starts the projectors, then the fanout-workers and the gateways, each once
    /// healthy. The fanout-workers and gateways find the projectors in the directory.
    pub async fn start(
        env: Env,
        gateways: usize,
        fanouts: usize,
        shards: usize,
        replicas: usize,
    ) -> anyhow::Result<Roles> {
        std::fs::create_dir_all(env.dir.join("logs"))
            .with_context(|| format!("cannot create {}", env.dir.display()))?;
        let mut roles = Roles {
            env,
            shards,
            replicas,
            projector_urls: Vec::new(),
            gateway_urls: Vec::new(),
            projectors: Vec::new(),
            fanouts: Vec::new(),
            gateways: Vec::new(),
            rebuilds: Vec::new(),
        };
        for s in 0..shards {
            for r in 0..replicas {
                let addr = free_port()?;
                let data = roles.env.dir.join(format!("projector{s}.{r}"));
                let args = projector_args(addr, &data, s, shards);
                let p = Proc::spawn(&roles.env, &format!("projector{s}.{r}"), args)?;
                roles.projectors.push(p);
                roles.projector_urls.push(format!("http://{addr}"));
            }
        }
        for s in 0..shards {
            for r in 0..replicas {
                roles.wait_up(Role::Projector(s, r)).await?;
            }
        }
        for i in 0..fanouts {
            let args = vec![
                "fanout".into(),
                "--worker-id".into(),
                format!("w{i}"),
                "--session-timeout-ms".into(),
                "6000".into(),
                "--http".into(),
                "127.0.0.1:0".into(),
            ];
            let p = Proc::spawn(&roles.env, &format!("fanout{i}"), args)?;
            roles.fanouts.push(p);
        }
        for id in 0..gateways {
            let addr = free_port()?;
            let args = vec![
                "gateway".into(),
                "--http".into(),
                addr.to_string(),
                "--gateway-id".into(),
                id.to_string(),
                "--dev-auth".into(),
                "--heartbeat-s".into(),
                "2".into(),
                "--ping-interval-s".into(),
                "2".into(),
            ];
            let p = Proc::spawn(&roles.env, &format!("gateway{id}"), args)?;
            roles.gateways.push(p);
            roles.gateway_urls.push(format!("http://{addr}"));
        }
        for id in 0..gateways {
            roles.wait_up(Role::Gateway(id)).await?;
        }
        // Ready, not only alive: every partition served by a projector the gateway
        // has seen announced, so the first requests find their views.
        for url in &roles.gateway_urls {
            wait_ready(url, HEALTHY_WITHIN).await?;
        }
        Ok(roles)
    }

    /// Waits until `role` answers `/healthz` while its process runs (a fanout-worker
    /// listens on a port of the kernel's choosing: started is enough); fails at once
    /// if it exits.
    async fn wait_up(&mut self, role: Role) -> anyhow::Result<()> {
        let url = match role {
            Role::Gateway(i) => self.gateway_urls[i].clone(),
            Role::Projector(s, r) => self.projector_urls[s * self.replicas + r].clone(),
            Role::Fanout(_) => return Ok(()),
        };
        let deadline = tokio::time::Instant::now() + HEALTHY_WITHIN;
        loop {
            let healthy = matches!(get(&url, "/healthz", "").await, Ok(Some(_)));
            let p = self.proc_mut(role);
            let exited = p.exited();
            if healthy && exited.is_none() {
                return Ok(());
            }
            if let Some(status) = exited {
                let name = p.name.clone();
                let log = self.env.dir.join("logs").join(format!("{name}.log"));
                bail!(
                    "{role} exited while starting ({status}); see {}; it ended with:\n{}",
                    log.display(),
                    log_tail(&log, 20)
                );
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{role} did not answer {url}/healthz within {HEALTHY_WITHIN:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn proc_mut(&mut self, role: Role) -> &mut Proc {
        match role {
            Role::Gateway(i) => &mut self.gateways[i],
            Role::Fanout(i) => &mut self.fanouts[i],
            Role::Projector(s, r) => &mut self.projectors[s * self.replicas + r],
        }
    }

    /// SIGKILLs `role`, waits `down`, starts it again with the same arguments and waits
    /// until it is healthy (fanout-workers serve no HTTP: started is enough).
    pub async fn crash(&mut self, role: Role, down: Duration) -> anyhow::Result<()> {
        self.proc_mut(role).kill();
        tokio::time::sleep(down).await;
        let env = self.env.clone();
        self.proc_mut(role).start(&env)?;
        self.wait_up(role).await
    }

    /// Roles that ended by themselves (a role should only end when the driver kills
    /// it), with how they ended.
    pub fn exited(&mut self) -> Vec<(Role, String)> {
        let mut roles: Vec<Role> = (0..self.shards)
            .flat_map(|s| (0..self.replicas).map(move |r| Role::Projector(s, r)))
            .collect();
        roles.extend((0..self.fanouts.len()).map(Role::Fanout));
        roles.extend((0..self.gateways.len()).map(Role::Gateway));
        let mut out = Vec::new();
        for role in roles {
            let p = self.proc_mut(role);
            let ended = p.exited().map(|status| (status, p.name.clone()));
            if let Some((status, name)) = ended {
                let log = self.env.dir.join("logs").join(format!("{name}.log"));
                out.push((role, format!("{status}, log {}", log.display())));
            }
        }
        out
    }

    /// SIGKILLs replica `r` of every shard at once, waits `down`, starts them again
    /// and waits until they are healthy: each shard is served by its other replicas
    /// meanwhile.
    pub async fn crash_replicas(&mut self, r: usize, down: Duration) -> anyhow::Result<()> {
        for s in 0..self.shards {
            self.proc_mut(Role::Projector(s, r)).kill();
        }
        tokio::time::sleep(down).await;
        let env = self.env.clone();
        for s in 0..self.shards {
            self.proc_mut(Role::Projector(s, r)).start(&env)?;
        }
        for s in 0..self.shards {
            self.wait_up(Role::Projector(s, r)).await?;
        }
        Ok(())
    }

    /// The replica of each shard that callers prefer while it is healthy (its URL sorts
    /// first).
    pub fn preferred_replicas(&self) -> Vec<Role> {
        (0..self.shards)
            .map(|s| {
                let r = (0..self.replicas)
                    .min_by_key(|r| self.projector_urls[s * self.replicas + r].clone())
                    .unwrap_or(0);
                Role::Projector(s, r)
            })
            .collect()
    }

    /// SIGSTOPs `roles` for `stall`, then SIGCONTs them: hung, not dead (their sockets
    /// stay open; a stalled replica stops announcing and applying at once).
    pub async fn stall(&mut self, roles: &[Role], stall: Duration) -> anyhow::Result<()> {
        for r in roles {
            self.proc_mut(*r).signal_stop(true)?;
        }
        tokio::time::sleep(stall).await;
        for r in roles {
            self.proc_mut(*r).signal_stop(false)?;
        }
        Ok(())
    }

    /// A projector of `shard` on a fresh data dir, on the same topics: it rebuilds that
    /// shard's views from the log. Its URL, once healthy. (It announces itself too, as
    /// a replica still catching up; the run's clients are done by then.)
    pub async fn start_rebuild(&mut self, shard: usize) -> anyhow::Result<String> {
        let addr = free_port()?;
        let data = self.env.dir.join(format!("projector-rebuild{shard}"));
        let args = projector_args(addr, &data, shard, self.shards);
        let p = Proc::spawn(&self.env, &format!("projector-rebuild{shard}"), args)?;
        self.rebuilds.push(p);
        let url = format!("http://{addr}");
        wait_healthy(&url, HEALTHY_WITHIN).await?;
        Ok(url)
    }
}

/// A port for a role to listen on, below the kernel's ephemeral range: a port from
/// `bind(0)` could be handed out again before the role binds it, to a fanout-worker's
/// `--http 127.0.0.1:0`, whose `/healthz` would then answer for a gateway that never
/// started.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    parley_ops::ports::free_port().context("no free port below the kernel's ephemeral range")
}

/// GET `base` + `path` with `token` (the service token, for the projector's query
/// API; none for `/healthz`): `Ok(Some(json))` on a 2xx answer, `Ok(None)` on another
/// status, `Err` if nothing answered within [`REQUEST_TIMEOUT`].
pub async fn get(base: &str, path: &str, token: &str) -> anyhow::Result<Option<Value>> {
    let api = Api::new(base, token);
    match tokio::time::timeout(REQUEST_TIMEOUT, api.call(Method::GET, path, None)).await {
        Ok(Ok(Ok(v))) => Ok(Some(v)),
        Ok(Ok(Err(_refused))) => Ok(None),
        Ok(Err(e)) => bail!("GET {base}{path}: {e}"),
        Err(_) => bail!("GET {base}{path}: no answer within {REQUEST_TIMEOUT:?}"),
    }
}

/// Waits until `GET base/readyz` answers 200, at most `within`.
async fn wait_ready(base: &str, within: Duration) -> anyhow::Result<()> {
    wait_ok(base, "/readyz", within).await
}

/// Waits until `GET base/healthz` answers 200, at most `within`.
pub async fn wait_healthy(base: &str, within: Duration) -> anyhow::Result<()> {
    wait_ok(base, "/healthz", within).await
}

/// Waits until `GET base{path}` answers 200, at most `within`.
async fn wait_ok(base: &str, path: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(_)) = get(base, path, "").await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{base} did not answer {path} with 200 within {within:?} (see its log)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last `lines` lines of the log at `path`, for an error that should say why a
/// process died without sending the reader to a file a CI run does not keep.
fn log_tail(path: &std::path::Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(its log could not be read: {e})"),
    }
}
