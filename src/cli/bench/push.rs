//! `parley bench push`: push notifications delivered per second to a local webhook.
//!
//! On fresh topics: `--users` users each register one webhook device (a receiver in
//! this process, which checks every signature), then `--jobs` push jobs are written to
//! `push` ahead, each of its own conversation (nothing collapses). The push role starts
//! in this process and the clock runs until the receiver has every notification.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use parley_push::payload::{verify, SIGNATURE_HEADER};
use parley_push::{DeviceBook, PushConfig};
use parley_schemas::{encode, Meta, PushJob};
use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;

use super::report;
use crate::cli::LogArgs;

#[derive(Debug, Args)]
pub struct PushBenchArgs {
    /// Push jobs written ahead.
    #[arg(long, default_value_t = 20_000)]
    jobs: u64,
    /// Users (one device each); jobs go to them in turn.
    #[arg(long, default_value_t = 1_000)]
    users: u64,
    /// Deliveries in flight at once in the push role.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    #[command(flatten)]
    log: LogArgs,
}

const SECRET: &str = "bench-push-secret-0123456789abcdef0123456789";

impl PushBenchArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        anyhow::ensure!(
            self.jobs > 0 && self.users > 0,
            "--jobs and --users must be positive"
        );
        let prefix = format!("bench-{}.", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let settings = parley_sequencer::TopicSettings {
            prefix: prefix.clone(),
            ..self.log.settings()
        };
        let names = settings.names();
        let log: Arc<dyn EventLog> = Arc::new(self.log.connect().await?);
        for r in log.provision(&settings.spec()).await? {
            anyhow::ensure!(r.is_ok(), "topic {}: {:?}", r.spec.name, r.status);
        }
        println!("# parley bench push");
        println!("machine: {}", report::machine());
        println!(
            "log: {}, topics {prefix}*, {} jobs to {} users (one webhook each), {} in flight",
            self.log.url(),
            self.jobs,
            self.users,
            self.in_flight
        );

        // The receiver.
        let received = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(AtomicU64::new(0));
        let (r, b) = (received.clone(), bad.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (r, b) = (r.clone(), b.clone());
                async move {
                    let sig = headers
                        .get(SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    if verify(SECRET.as_bytes(), &body, sig) {
                        r.fetch_add(1, Ordering::Relaxed);
                        StatusCode::OK
                    } else {
                        b.fetch_add(1, Ordering::Relaxed);
                        StatusCode::UNAUTHORIZED
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });

        // Devices, then the jobs, ahead.
        let book = DeviceBook::follow(
            log.clone(),
            &names.devices,
            Duration::from_secs(30),
            stop.clone(),
        )
        .await?;
        for u in 0..self.users {
            book.register(&format!("u{u}"), "d", "webhook", &url)
                .await?;
        }
        let started = Instant::now();
        let jobs = (0..self.jobs).map(|j| {
            let log = log.clone();
            let topic = names.push.clone();
            async move {
                let user = format!("u{}", j % self.users);
                let job = PushJob {
                    meta: Meta::new("bench"),
                    user_id: user.clone(),
                    conversation_id: format!("c{j}"),
                    seq: 1,
                    message_id: uuid::Uuid::new_v4(),
                    sender_id: "bench".into(),
                    title: "bench".into(),
                    preview: "a message of about this length, as people write them".into(),
                    badge: None,
                    mentioned: false,
                };
                let value = encode(&job)?;
                log.append(&topic, user.as_bytes(), Some(&value)).await?;
                anyhow::Ok(())
            }
        });
        {
            use futures::{StreamExt, TryStreamExt};
            futures::stream::iter(jobs)
                .buffer_unordered(5_000)
                .try_collect::<Vec<()>>()
                .await?;
        }
        println!(
            "jobs written: {} in {:.1} s",
            self.jobs,
            started.elapsed().as_secs_f64()
        );

        let presence = parley_presence::LogPresence::follow(
            log.clone(),
            &names.presence,
            Duration::from_secs(30),
            stop.clone(),
        )
        .await?;
        let mut config = PushConfig::new(
            names.clone(),
            format!("{prefix}push"),
            SECRET.as_bytes().to_vec(),
        );
        config.collapse_window = Duration::ZERO;
        config.in_flight = self.in_flight.max(1);
        // The receiver is this process, on loopback; each user's share is the whole.
        config.per_user_in_flight = config.in_flight;
        config.per_user_pending = usize::MAX;
        config.targets = parley_push::WebhookTargets::new(Vec::new(), true);
        let started = Instant::now();
        let push = tokio::spawn(parley_push::run(
            config,
            log.clone(),
            None,
            presence,
            None,
            stop.clone(),
        ));
        let mut last = (Instant::now(), 0u64);
        let deadline = started + Duration::from_secs(600);
        while received.load(Ordering::Relaxed) < self.jobs {
            anyhow::ensure!(
                Instant::now() < deadline,
                "not every job delivered in 600 s"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            if last.0.elapsed() >= Duration::from_secs(5) {
                let n = received.load(Ordering::Relaxed);
                eprintln!(
                    "  … {n} delivered ({:.0}/s)",
                    (n - last.1) as f64 / last.0.elapsed().as_secs_f64()
                );
                last = (Instant::now(), n);
            }
        }
        let took = started.elapsed();
        stop.cancel();
        let _ = push.await;
        println!(
            "delivered: {} notifications in {:.2} s = {:.0} per second (bad signatures: {})",
            self.jobs,
            took.as_secs_f64(),
            self.jobs as f64 / took.as_secs_f64(),
            bad.load(Ordering::Relaxed)
        );
        println!("(each: one intent written, one signed HTTP POST, one intent marked done; no badge lookups)");
        Ok(ExitCode::SUCCESS)
    }
}
