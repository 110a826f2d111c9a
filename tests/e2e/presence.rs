//! Presence people see, end to end, with each presence store: the log-derived default
//! and Redis (`PARLEY_TEST_REDIS`, `scripts/redis.sh start`). Separate processes, real
//! broker, two gateways.

use crate::common;

use std::time::{Duration, Instant};

use common::stack::{Options, Processes};
use common::LONG;
use parley_client::{Api, Session};
use parley_schemas::frames::PresenceStatus;

/// Heartbeats every second: a presence TTL of 3 s.
const TTL: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug)]
enum Store {
    Log,
    Redis,
}

fn options(store: Store) -> Options {
    let mut o = Options::gateways(2);
    o.env.push(("PARLEY_HEARTBEAT_S".into(), "1".into()));
    o.gateway_args = vec!["--presence-group-limit".into(), "3".into()];
    if let Store::Redis = store {
        let url =
            std::env::var("PARLEY_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        o.env.push(("PARLEY_REDIS_URL".into(), url));
        let prefix = format!("t-{}:", uuid::Uuid::new_v4().simple());
        o.env.push(("PARLEY_REDIS_PREFIX".into(), prefix));
    }
    o
}

async fn api(base: &str, user: &str) -> Api {
    Api::new(base, &Api::dev_token(base, user).await.expect("token"))
}

async fn live(base: &str, user: &str) -> Session {
    let token = Api::dev_token(base, user).await.expect("token");
    let s = Session::connect(base, &token).await.expect("connect");
    assert!(s.ready(LONG).await.expect("ready"), "{user} not live");
    s
}

async fn wait_state(s: &Session, user: &str, online: bool, within: Duration) {
    s.wait_for(&format!("{user} online={online}"), within, |s| {
        s.presence_of(user).is_some_and(|(o, _)| o == online)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: frames {:?}", s.presence_seen()));
}

async fn contacts_see_each_other_come_and_go(store: Store) {
    let mut stack = Processes::start_with(
        &format!("presence-{store:?}").to_lowercase(),
        options(store),
    )
    .await;
    let (g0, g1) = (stack.gateways[0].clone(), stack.gateways[1].clone());
    let amy_api = api(&g0, "amy").await;
    let direct = amy_api.create_direct("bob").await.unwrap();
    // Bob writes back: he is shown to Amy (his answer is his consent).
    api(&g0, "bob")
        .await
        .ok(
            reqwest::Method::POST,
            &format!("/v1/conversations/{direct}/messages"),
            Some(serde_json::json!({"client_msg_id": "hi", "body": "hi amy"})),
        )
        .await
        .unwrap();
    // A group larger than the limit (3): its members are not shown each other.
    amy_api
        .create_group("big", &["dave", "erin", "finn"])
        .await
        .unwrap();

    let amy = live(&g0, "amy").await;
    // The first frames: each contact's state now (bob has never been seen).
    wait_state(&amy, "bob", false, LONG).await;
    assert_eq!(amy.presence_of("bob"), Some((false, None)));

    // Bob comes on another gateway: Amy sees it; he leaves: offline with last_seen.
    let bob = live(&g1, "bob").await;
    wait_state(&amy, "bob", true, LONG).await;
    let left = parley_schemas::now_millis();
    bob.close().await;
    wait_state(&amy, "bob", false, LONG).await;
    let (_, last_seen) = amy.presence_of("bob").unwrap();
    let last_seen = last_seen.expect("last_seen once offline");
    assert!(
        (left - 2_000..=parley_schemas::now_millis()).contains(&last_seen),
        "last_seen {last_seen} is when bob left ({left})"
    );

    // Two devices: online while either is.
    let bob_a = live(&g0, "bob").await;
    let bob_b = live(&g1, "bob").await;
    wait_state(&amy, "bob", true, LONG).await;
    bob_a.close().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        amy.presence_of("bob").map(|p| p.0),
        Some(true),
        "bob is still on g1"
    );

    // Bob's gateway dies without a word: he is offline within the TTL.
    let killed = Instant::now();
    stack.gateway_procs[1].kill();
    wait_state(&amy, "bob", false, TTL + Duration::from_secs(5)).await;
    let took = killed.elapsed();
    assert!(
        took <= TTL + Duration::from_secs(3),
        "offline after {took:?} (TTL {TTL:?})"
    );
    drop(bob_b);

    // Large group: no frames about its members, and a query does not tell either.
    let dave = live(&g0, "dave").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        amy.presence_of("dave").is_none(),
        "no frames about a large group's members"
    );
    let answer = amy
        .query_presence(&["dave", "bob", "zoe", "amy"], LONG)
        .await
        .expect("presence_result");
    let status: Vec<(String, PresenceStatus)> = answer
        .iter()
        .map(|v| (v.user_id.clone(), v.status))
        .collect();
    assert_eq!(
        status,
        vec![
            ("dave".into(), PresenceStatus::Unknown),
            ("bob".into(), PresenceStatus::Offline),
            ("zoe".into(), PresenceStatus::Unknown),
            ("amy".into(), PresenceStatus::Online),
        ]
    );

    // Someone who shares no conversation is unknown, even when online; over HTTP too.
    let _zoe = live(&g0, "zoe").await;
    let answer = amy.query_presence(&["zoe"], LONG).await.unwrap();
    assert_eq!(answer[0].status, PresenceStatus::Unknown);
    assert_eq!(answer[0].last_seen, None);
    let http = amy_api
        .ok(reqwest::Method::GET, "/v1/presence?user_ids=zoe,dave", None)
        .await
        .unwrap();
    assert_eq!(http["users"][0]["status"], "unknown", "{http}");
    assert_eq!(http["users"][1]["status"], "unknown", "{http}");
    let zoe_api = api(&g0, "zoe").await;
    let zoe_view = zoe_api
        .ok(reqwest::Method::GET, "/v1/presence?user_ids=amy", None)
        .await
        .unwrap();
    assert_eq!(
        zoe_view["users"][0]["status"], "unknown",
        "zoe may not see amy"
    );
    let bad = amy_api
        .call(
            reqwest::Method::GET,
            "/v1/presence?user_ids=no%20spaces",
            None,
        )
        .await
        .unwrap()
        .expect_err("a bad id is refused");
    assert_eq!(bad.status, 400);

    // Flapping: Bob connects and leaves 15 times; Amy gets a bounded number of frames
    // (at most one per 500 ms interval) and ends with the true state.
    stack.restart_gateway(1).await;
    let before = amy.presence_seen().len();
    let started = Instant::now();
    for _ in 0..15 {
        let s = live(&g0, "bob").await;
        s.close().await;
    }
    let flapping = started.elapsed();
    wait_state(&amy, "bob", false, LONG).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames = amy
        .presence_seen()
        .iter()
        .skip(before)
        .filter(|(u, _, _)| u == "bob")
        .count();
    let bound = (flapping.as_millis() / 500) as usize + 4;
    assert!(
        frames <= bound.min(30),
        "{frames} frames for 30 changes in {flapping:?} (bound {bound})"
    );
    assert_eq!(amy.presence_of("bob").map(|p| p.0), Some(false));
    drop(dave);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_see_each_other_with_the_log_store() {
    contacts_see_each_other_come_and_go(Store::Log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_see_each_other_with_the_redis_store() {
    contacts_see_each_other_come_and_go(Store::Redis).await;
}

/// A heartbeat costs one record per gateway, however many users are connected: the
/// slot's lease keeps their records alive. Twenty live users over four heartbeats (each
/// a second) add a handful of records to `presence`, not eighty; and they stay online
/// past twice the TTL: a message to one arrives live and leaves nothing in the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_costs_one_record_however_many_are_connected() {
    let mut o = Options::gateways(1);
    o.env.push(("PARLEY_HEARTBEAT_S".into(), "1".into()));
    let stack = Processes::start_with("presence-lease", o).await;
    let g = stack.gateways[0].clone();
    let amy_api = api(&g, "amy").await;
    let direct = amy_api.create_direct("bob").await.unwrap();
    let amy = live(&g, "amy").await;
    let bob = live(&g, "bob").await;
    let mut others = Vec::new();
    for i in 0..18 {
        others.push(live(&g, &format!("lease-{i}")).await);
    }
    // Every first record has landed and been acknowledged (all are live); let a
    // heartbeat go by so that nobody is asking any more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = common::stack::kafka().await;
    let count = |ends: Vec<i64>| ends.iter().sum::<i64>();
    let before = count(log.end_offsets(&stack.topics.presence).await.unwrap());
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = count(log.end_offsets(&stack.topics.presence).await.unwrap());
    let written = after - before;
    assert!(
        written <= 8,
        "{written} presence records in 4 heartbeats of 20 live users: one per heartbeat expected"
    );

    // Past twice the TTL since anyone's own record was written, Bob is online still.
    tokio::time::sleep(TTL).await;
    amy.send(&direct, "after-two-ttls", "still there?")
        .await
        .expect("sent");
    bob.wait_arrivals(&direct, "amy", 1, LONG)
        .await
        .expect("delivered live");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(api(&g, "bob").await.inbox().await.unwrap().is_empty());
    drop(others);
}
