//! The fanout-worker role. One task follows `presence`; the main loop is a member of
//! the fanout consumer group on `events`: it routes each record, appends the outputs
//! (pipelined, in order), and commits a record's offset only once all its outputs are
//! acknowledged by the log.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::stream::FuturesOrdered;
use futures::StreamExt;
use parley_projector::Views;
use parley_schemas::{encode, DeadLetter, Meta, DEAD_LETTER_VALUE_MAX};
use parley_sequencer::log::Appending;
use parley_sequencer::{EventLog, GroupEvent, StartAt, TopicNames};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::FanoutConfig;
use crate::router::{Output, Router};
use crate::signals::Signals;
use crate::takeover::{Hold, Takeovers};

/// The fanout-worker role, until `shutdown`.
pub async fn run(
    config: FanoutConfig,
    log: Arc<dyn EventLog>,
    views: Option<Arc<dyn Views>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    parley_ops::metrics::install();
    let positions = parley_ops::lag::watched(
        log.clone(),
        parley_ops::lag::LagCheck {
            role: "fanout",
            check: "fanout_caught_up",
            bound: config.ready_lag,
            every: Duration::from_secs(2),
        },
        config.health.clone(),
        shutdown.clone(),
    );
    let router = Arc::new(Router::new(&config.worker_id, config.large_typing_per_s));
    let book = parley_push::DeviceBook::follow(
        log.clone(),
        &config.topics.devices,
        Duration::from_secs(30),
        shutdown.clone(),
    )
    .await?;
    router.set_opt_ins(book);
    let presence = tokio::spawn(follow_presence(
        log.clone(),
        router.clone(),
        config.clone(),
        shutdown.clone(),
    ));
    let result = route_events(
        &config,
        &log,
        views.as_ref(),
        &router,
        &positions,
        &shutdown,
    )
    .await;
    if let Err(e) = &result {
        error!(error = %e, "fanout-worker failed");
    }
    shutdown.cancel();
    let _ = presence.await;
    result
}

async fn follow_presence(
    log: Arc<dyn EventLog>,
    router: Arc<Router>,
    config: FanoutConfig,
    shutdown: CancellationToken,
) {
    let topics = &config.topics;
    let count = match log.partition_count(&topics.presence).await {
        Ok(n) => n,
        Err(e) => {
            error!(error = %e, "presence topic unavailable; no one will be seen online");
            return;
        }
    };
    let from: Vec<(i32, StartAt)> = (0..count).map(|p| (p, StartAt::Beginning)).collect();
    let mut stream = match log.read(&topics.presence, &from).await {
        Ok(s) => s,
        Err(e) => {
            error!(error = %e, "cannot read presence");
            return;
        }
    };
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        let record = match next {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                error!(error = %e, "presence stream failed");
                return;
            }
            None => return,
        };
        if let Some((slot, ack)) = router.apply_presence(&record) {
            let Ok(value) = encode(&ack) else { continue };
            let key = ack.user_id.clone();
            let (log, topic, stop) = (log.clone(), topics.deliveries.clone(), shutdown.clone());
            // Acks go out concurrently; a slow one does not hold up the presence view.
            tokio::spawn(async move {
                let _ =
                    append_retrying(&*log, &topic, Some(slot), key.as_bytes(), &value, &stop).await;
            });
        }
    }
}

async fn route_events(
    config: &FanoutConfig,
    log: &Arc<dyn EventLog>,
    views: Option<&Arc<dyn Views>>,
    router: &Arc<Router>,
    positions: &parley_ops::lag::Positions,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let topics = &config.topics;
    let mut sub = log.subscribe(&config.group, &topics.events).await?;
    info!(group = %config.group, topic = %topics.events, worker = %config.worker_id, "fanout-worker joined");
    let mut pipeline: FuturesOrdered<Done> = FuturesOrdered::new();
    let mut takeovers = Takeovers::new(config.hold_max);
    // Partitions paused at the log while they warm up (their share is held).
    let mut paused: std::collections::BTreeSet<i32> = std::collections::BTreeSet::new();
    // The log pauses partitions: then reading never stops for what warm-ups hold.
    let mut pauses = false;
    let mut done: BTreeMap<i32, i64> = BTreeMap::new();
    let mut failed: Vec<i32> = Vec::new();
    let mut dirty = false;
    let mut tick = tokio::time::interval(config.commit_interval);
    let mut signals = Signals::default();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Before the pipeline: a pipeline that is always ready must not starve the
            // commits (a successor would route everything since the last one again).
            _ = tick.tick() => {
                if dirty {
                    let offsets: Vec<(i32, i64)> = done.iter().map(|(p, o)| (*p, *o)).collect();
                    if let Err(e) = sub.commit(&offsets) {
                        warn!(error = %e, "commit failed; will retry");
                    } else {
                        dirty = false;
                    }
                }
            }
            Some((p, next, ok)) = pipeline.next(), if !pipeline.is_empty() => {
                if !ok {
                    failed.push(p);
                } else if !failed.contains(&p) {
                    done.insert(p, next);
                    positions.at(&topics.events, p, next);
                    dirty = true;
                }
            }
            // A partition taken over is ready: route what was held for it meanwhile.
            Some(warmed) = takeovers.next() => {
                let Some(ended) = takeovers.finished(warmed) else { continue };
                if paused.remove(&ended.partition) {
                    sub.resume(&[ended.partition])?;
                }
                let state = ended.state?;
                info!(partition = ended.partition, conversations = state.conversations(), held = ended.held.len(), "partition taken over");
                router.ready(ended.partition, state);
                for record in ended.held {
                    dispatch(record, config, log, router, shutdown, &mut pipeline).await;
                }
            }
            ev = sub.next(), if pipeline.len() < config.max_in_flight && (pauses || !takeovers.full()) => {
                let Some(ev) = ev else { break };
                match ev? {
                    GroupEvent::Assigned(parts) => {
                        // A partition paused before it was revoked may come back paused.
                        sub.resume(&parts)?;
                        take_over(config, log, views, router, &mut *sub, &parts, &mut takeovers).await?;
                        signals.restart(config, log, router, shutdown);
                    }
                    GroupEvent::Revoked(parts) => {
                        router.revoke(&parts);
                        takeovers.revoke(&parts);
                        let was_paused: Vec<i32> =
                            parts.iter().copied().filter(|p| paused.remove(p)).collect();
                        if !was_paused.is_empty() {
                            sub.resume(&was_paused)?;
                        }
                        positions.forget(&topics.events, &parts);
                        for p in &parts {
                            done.remove(p);
                            failed.retain(|f| f != p);
                        }
                        signals.restart(config, log, router, shutdown);
                    }
                    GroupEvent::Record(record) => {
                        // Read from here on: its lag counts from the first record read.
                        positions.at(&topics.events, record.partition, record.offset);
                        let p = record.partition;
                        match takeovers.hold(record) {
                            Hold::Route(record) => {
                                dispatch(record, config, log, router, shutdown, &mut pipeline).await;
                            }
                            Hold::Held { pause: true } => {
                                if sub.pause(&[p])? {
                                    debug!(partition = p, "paused while it warms up");
                                    paused.insert(p);
                                    pauses = true;
                                }
                            }
                            Hold::Held { pause: false } => {}
                        }
                    }
                }
            }
        }
    }
    // Finish what is in flight (briefly), then commit it.
    let drain = async {
        while let Some((p, next, ok)) = pipeline.next().await {
            if ok && !failed.contains(&p) {
                done.insert(p, next);
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    let offsets: Vec<(i32, i64)> = done.into_iter().collect();
    if !offsets.is_empty() {
        let _ = sub.commit(&offsets);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    info!(worker = %config.worker_id, "fanout-worker stopped");
    Ok(())
}

/// A record's outputs on their way to the log: its partition, the next offset, and
/// whether every output was appended (or parked as a dead letter).
type Done = std::pin::Pin<Box<dyn std::future::Future<Output = (i32, i64, bool)> + Send>>;

/// Routes a record and hands its outputs to the producer, in order (the appends to one
/// slot keep the log's order); the pipeline learns when they are all appended.
async fn dispatch(
    record: parley_sequencer::LogRecord,
    config: &FanoutConfig,
    log: &Arc<dyn EventLog>,
    router: &Router,
    shutdown: &CancellationToken,
    pipeline: &mut FuturesOrdered<Done>,
) {
    let (p, next) = (record.partition, record.offset + 1);
    let outputs = router.route(&record);
    static ROUTED: OnceLock<metrics::Counter> = OnceLock::new();
    parley_ops::metrics::kept(&ROUTED, || metrics::counter!(parley_ops::metrics::ROUTED))
        .increment(outputs.len() as u64);
    let source = Source::of(&record);
    let mut started = Vec::with_capacity(outputs.len());
    for o in outputs {
        started.push(start(&**log, &config.topics, o).await);
    }
    let (log, topics, stop, actor) = (
        log.clone(),
        config.topics.clone(),
        shutdown.clone(),
        router.actor.clone(),
    );
    pipeline.push_back(Box::pin(async move {
        let mut ok = true;
        for s in started {
            ok &= finish(&*log, &topics, &actor, &source, s, &stop).await;
        }
        (p, next, ok)
    }));
}

/// Takes newly assigned partitions over: presence first (so that nobody online is
/// routed to an inbox), then each partition's state as of its committed offset, built
/// in a task of its own ([`Takeovers`]) while the other partitions keep routing.
async fn take_over(
    config: &FanoutConfig,
    log: &Arc<dyn EventLog>,
    views: Option<&Arc<dyn Views>>,
    router: &Router,
    sub: &mut dyn parley_sequencer::Subscription,
    parts: &[i32],
    takeovers: &mut Takeovers,
) -> anyhow::Result<()> {
    let committed = retry("committed offsets", || sub.committed(parts)).await?;
    for (p, c) in &committed {
        router.assign(*p, c.unwrap_or(0));
    }
    let ends = retry("presence end offsets", || {
        log.end_offsets(&config.topics.presence)
    })
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !router.presence_caught_up(&ends) {
        if tokio::time::Instant::now() > deadline {
            warn!("presence not caught up after 10 s; routing anyway");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (p, c) in committed {
        info!(partition = p, resume = ?c, "taking the partition over");
        takeovers.start(config, log.clone(), views.cloned(), p, c);
    }
    for (slot, ack) in router.acknowledge_open_requests() {
        if let Ok(value) = encode(&ack) {
            let key = ack.user_id.clone();
            let stop = CancellationToken::new();
            let _ = append_retrying(
                &**log,
                &config.topics.deliveries,
                Some(slot),
                key.as_bytes(),
                &value,
                &stop,
            )
            .await;
        }
    }
    Ok(())
}

/// Tries `f` for up to 30 s, backing off: a topic just created, or a coordinator
/// moving, fails for a moment.
async fn retry<T, F, Fut>(what: &str, mut f: F) -> parley_sequencer::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = parley_sequencer::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(50);
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if tokio::time::Instant::now() < deadline => {
                warn!(what, error = %e, "retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where an output came from, for its dead letter.
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
}

impl Source {
    fn of(record: &parley_sequencer::LogRecord) -> Self {
        Source {
            topic: record.topic.clone(),
            partition: record.partition,
            offset: record.offset,
        }
    }
}

/// An output whose append has started (or, with a full producer queue, already ended).
struct Started {
    topic: String,
    partition: Option<i32>,
    key: Vec<u8>,
    value: Vec<u8>,
    appending: Appending,
}

/// Starts appending an output. If the producer cannot take it now, waits for the
/// append here, so that nothing routed later overtakes it.
async fn start(log: &dyn EventLog, topics: &TopicNames, output: Output) -> Started {
    let (topic, partition, key, value) = match output {
        Output::Delivery { slot, key, value } => (
            topics.deliveries.clone(),
            Some(slot),
            key.into_bytes(),
            value,
        ),
        Output::Inbox { user, value } => (topics.inbox.clone(), None, user.into_bytes(), value),
        Output::Push { user, value } => (topics.push.clone(), None, user.into_bytes(), value),
    };
    let appending = match log.start_append(&topic, partition, &key, Some(&value)) {
        Some(a) => a,
        None => Box::pin(std::future::ready(
            log.append_at(&topic, partition, &key, Some(&value)).await,
        )),
    };
    Started {
        topic,
        partition,
        key,
        value,
        appending,
    }
}

/// Waits for a started append. A retryable failure is retried until the log takes it;
/// a refusal (too large, invalid, no such partition) parks it in the dead-letter topic.
/// False only if shut down first.
async fn finish(
    log: &dyn EventLog,
    topics: &TopicNames,
    actor: &str,
    source: &Source,
    started: Started,
    stop: &CancellationToken,
) -> bool {
    let Started {
        topic,
        partition,
        key,
        value,
        appending,
    } = started;
    let error = match appending.await {
        Ok(_) => return true,
        Err(e) if e.is_retryable() => {
            warn!(topic, error = %e, "append failed; retrying");
            match append_retrying(log, &topic, partition, &key, &value, stop).await {
                Ok(()) => return true,
                Err(None) => return false,
                Err(Some(e)) => e,
            }
        }
        Err(e) => e,
    };
    error!(
        topic,
        partition,
        source_topic = %source.topic,
        source_partition = source.partition,
        source_offset = source.offset,
        bytes = value.len(),
        error = %error,
        "the log refused an output: parked in the dead-letter topic"
    );
    let letter = DeadLetter {
        meta: Meta::new(actor),
        topic,
        partition,
        key: key.clone(),
        value_size: value.len() as i64,
        value: (value.len() <= DEAD_LETTER_VALUE_MAX).then_some(value),
        error: error.to_string(),
        source_topic: source.topic.clone(),
        source_partition: source.partition,
        source_offset: source.offset,
    };
    match encode(&letter) {
        Ok(v) => append_retrying(log, &topics.dead_letters, None, &key, &v, stop)
            .await
            .is_ok(),
        Err(e) => {
            error!(error = %e, "a dead letter could not be encoded; the output is lost");
            true
        }
    }
}

/// Appends until the log accepts, backing off. `Err(None)` if shut down first;
/// `Err(Some(e))` if the log refuses the record for good.
async fn append_retrying(
    log: &dyn EventLog,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: &[u8],
    stop: &CancellationToken,
) -> Result<(), Option<parley_sequencer::Error>> {
    let mut delay = Duration::from_millis(50);
    loop {
        match log.append_at(topic, partition, key, Some(value)).await {
            Ok(_) => return Ok(()),
            Err(e) if !e.is_retryable() => return Err(Some(e)),
            Err(e) => {
                warn!(topic, error = %e, "append failed; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Err(None),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
