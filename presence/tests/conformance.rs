//! One conformance suite for every [`PresenceStore`]: the log-derived store against the
//! real Kafka broker (`PARLEY_TEST_KAFKA`, `scripts/kafka.sh start`), the Redis store
//! against a real Redis (`PARLEY_TEST_REDIS`, `scripts/redis.sh start`). A missing
//! server is a failure, not a skip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_presence::{LogPresence, PresenceStore, RedisPresence, Seen};
use parley_schemas::now_millis;
use parley_sequencer::{EventLog, KafkaConfig, KafkaLog, TopicSpec};
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(2);

fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

async fn log_store(shutdown: CancellationToken) -> Arc<dyn PresenceStore> {
    let bootstrap = std::env::var("PARLEY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let log = KafkaLog::connect(KafkaConfig::with_bootstrap(bootstrap))
        .await
        .expect("a Kafka broker (scripts/kafka.sh start)");
    let topic = unique("presence-conformance");
    let mut spec = TopicSpec::plain(&topic, 2, 1);
    spec.configs
        .insert("cleanup.policy".into(), "compact".into());
    log.provision(&[spec]).await.expect("topic");
    let log: Arc<dyn EventLog> = Arc::new(log);
    LogPresence::follow(log, &topic, Duration::from_secs(10), shutdown)
        .await
        .expect("follow")
}

async fn redis_store(shutdown: CancellationToken) -> Arc<dyn PresenceStore> {
    let url =
        std::env::var("PARLEY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    RedisPresence::connect(&url, &format!("{}:", unique("t")), shutdown)
        .await
        .expect("a Redis server (scripts/redis.sh start)")
}

/// Polls `store` until `user` is `want`, for at most `within`.
async fn until(
    store: &dyn PresenceStore,
    user: &str,
    within: Duration,
    want: impl Fn(Seen) -> bool,
) -> Seen {
    let deadline = Instant::now() + within;
    loop {
        let seen = store.lookup(&[user.to_string()]).await.expect("lookup")[0];
        if want(seen) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_refreshed_device_is_online_and_an_unknown_user_is_not(store: Arc<dyn PresenceStore>) {
    let (a, nobody) = (unique("a"), unique("nobody"));
    store.refresh(&a, 1, Duration::from_secs(60)).await.unwrap();
    let seen = until(&*store, &a, Duration::from_secs(5), |s| s.online).await;
    assert_eq!(
        seen,
        Seen {
            online: true,
            last_seen: None
        }
    );
    let both = store.lookup(&[nobody.clone(), a.clone()]).await.unwrap();
    assert_eq!(
        both[0],
        Seen::default(),
        "never seen: offline, no last_seen"
    );
    assert!(both[1].online, "answers keep the order asked");
}

async fn online_while_any_device_is_and_last_seen_when_the_last_goes(
    store: Arc<dyn PresenceStore>,
) {
    let a = unique("a");
    let mut changes = store.changes();
    store.refresh(&a, 1, Duration::from_secs(60)).await.unwrap();
    store.refresh(&a, 2, Duration::from_secs(60)).await.unwrap();
    until(&*store, &a, Duration::from_secs(5), |s| s.online).await;
    store.gone(&a, 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        store.lookup(std::slice::from_ref(&a)).await.unwrap()[0].online,
        "device 2 is still there"
    );
    let before = now_millis();
    store.gone(&a, 2).await.unwrap();
    let seen = until(&*store, &a, Duration::from_secs(5), |s| !s.online).await;
    assert!(!seen.online);
    let last = seen.last_seen.expect("last_seen once offline");
    assert!(
        last >= before - 1000 && last <= now_millis() + 1000,
        "last_seen {last} is when the last device went"
    );
    // The change was announced.
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match changes.recv().await {
                Ok(u) if u == a => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    })
    .await;
    assert_eq!(heard, Ok(true), "a change notice for the user");
}

async fn a_device_that_stops_refreshing_lapses_within_the_ttl(store: Arc<dyn PresenceStore>) {
    // A gateway that dies sends no tombstone: only the TTL ends its users' presence.
    let a = unique("a");
    let mut changes = store.changes();
    store.refresh(&a, 3, TTL).await.unwrap();
    until(&*store, &a, Duration::from_secs(5), |s| s.online).await;
    let refreshed = now_millis();
    let seen = until(&*store, &a, TTL + Duration::from_secs(3), |s| !s.online).await;
    assert!(!seen.online, "offline within the TTL (+ one sweep)");
    let last = seen.last_seen.expect("last_seen is the lapse");
    assert!(
        (refreshed..=now_millis()).contains(&last),
        "last_seen {last} is when the TTL ran out"
    );
    // Both the coming and the lapse are announced (the lapse by a sweep).
    let mut notices = 0;
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(u) = changes.recv().await {
            if u == a {
                notices += 1;
                if notices == 2 {
                    return;
                }
            }
        }
    })
    .await;
    assert!(
        notices >= 2,
        "a notice when it came and when it lapsed ({notices})"
    );
}

async fn a_refresh_keeps_a_device_past_its_first_ttl(store: Arc<dyn PresenceStore>) {
    let a = unique("a");
    for _ in 0..4 {
        store.refresh(&a, 1, TTL).await.unwrap();
        tokio::time::sleep(TTL / 2).await;
    }
    assert!(
        store.lookup(std::slice::from_ref(&a)).await.unwrap()[0].online,
        "heartbeats every TTL/2 keep it online past 2 TTLs"
    );
}

macro_rules! suite {
    ($backend:ident, $make:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_refreshed_device_is_online_and_an_unknown_user_is_not() {
                let stop = CancellationToken::new();
                super::a_refreshed_device_is_online_and_an_unknown_user_is_not(
                    $make(stop.clone()).await,
                )
                .await;
                stop.cancel();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn online_while_any_device_is_and_last_seen_when_the_last_goes() {
                let stop = CancellationToken::new();
                super::online_while_any_device_is_and_last_seen_when_the_last_goes(
                    $make(stop.clone()).await,
                )
                .await;
                stop.cancel();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_device_that_stops_refreshing_lapses_within_the_ttl() {
                let stop = CancellationToken::new();
                super::a_device_that_stops_refreshing_lapses_within_the_ttl(
                    $make(stop.clone()).await,
                )
                .await;
                stop.cancel();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_refresh_keeps_a_device_past_its_first_ttl() {
                let stop = CancellationToken::new();
                super::a_refresh_keeps_a_device_past_its_first_ttl($make(stop.clone()).await).await;
                stop.cancel();
            }
        }
    };
}

suite!(log, log_store);
suite!(redis, redis_store);
