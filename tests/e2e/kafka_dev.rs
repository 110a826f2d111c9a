//! `parley dev` on the real broker. Its router and views take the messages the process
//! appends from memory once the broker has acknowledged them (the loopback,
//! docs/ARCHITECTURE.md "One process"), and what a gateway of another process appends
//! to the same topics from the broker. Both reach their recipients live and the history,
//! in the log's order, each once.

use crate::common;

use std::time::Duration;

use common::stack::{free_port, wait_ready, Proc};
use common::{fresh_prefix, live, token, LONG};
use parley_client::Api;

/// The value of the counter series starting with `series` on `base`'s `/metrics`.
async fn counter(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parley_dev_on_kafka_routes_its_own_and_another_processs_messages_in_log_order() {
    let prefix = fresh_prefix("kafka-dev");
    let dir = tempfile::tempdir().unwrap();
    let (http, views) = (free_port(), free_port());
    let views_url = format!("http://{views}");
    let data = [(
        "PARLEY_DATA_DIR".to_string(),
        dir.path().join("projector").display().to_string(),
    )];
    let (http_arg, views_arg) = (http.to_string(), views.to_string());
    let _dev = Proc::spawn_with(
        "dev",
        &prefix,
        &[
            "dev",
            "--dev-auth",
            "--http",
            &http_arg,
            "--projector-http",
            &views_arg,
        ],
        &data,
    );
    let base = format!("http://{http}");
    wait_ready(&base).await;
    // Gateway 1, a process of its own on the same topics, its views those of `parley dev`.
    let other = free_port();
    let other_arg = other.to_string();
    let _gateway = Proc::spawn(
        "gateway1",
        &prefix,
        &[
            "gateway",
            "--http",
            &other_arg,
            "--gateway-id",
            "1",
            "--dev-auth",
            "--projector",
            &views_url,
        ],
    );
    let far = format!("http://{other}");
    wait_ready(&far).await;

    let amy_t = token(&base, "amy").await;
    let bob_t = token(&far, "bob").await;
    let conv = Api::new(&base, &amy_t).create_direct("bob").await.unwrap();
    let amy = live(&base, &amy_t).await;
    let bob = live(&far, &bob_t).await;
    let before = counter(&base, "parley_log_loopback_records_total").await;

    // Turns: amy's sends go through `parley dev`, bob's through the other process.
    const TURNS: usize = 25;
    let mut sent = Vec::new();
    for i in 0..TURNS {
        let a = amy.send(&conv, &format!("a{i}"), &format!("amy {i}")).await;
        sent.push((a.expect("amy's send").seq, format!("amy {i}")));
        let b = bob.send(&conv, &format!("b{i}"), &format!("bob {i}")).await;
        sent.push((b.expect("bob's send").seq, format!("bob {i}")));
    }
    assert!(
        sent.windows(2).all(|w| w[0].0 < w[1].0),
        "each send's seq is after the last: {sent:?}"
    );
    // Each gets the other's messages live, in seq order, each once.
    amy.wait_arrivals(&conv, "bob", TURNS, LONG).await.unwrap();
    bob.wait_arrivals(&conv, "amy", TURNS, LONG).await.unwrap();
    for (who, session, from) in [("amy", &amy, "bob"), ("bob", &bob, "amy")] {
        let got: Vec<(i64, String)> = session
            .arrivals()
            .into_iter()
            .filter(|m| m.conversation_id == conv)
            .map(|m| (m.seq, m.body))
            .collect();
        let want: Vec<(i64, String)> = sent
            .iter()
            .filter(|(_, body)| body.starts_with(from))
            .cloned()
            .collect();
        assert_eq!(got, want, "{who}'s live copies of {from}'s messages");
        assert_eq!(session.duplicates(&conv), 0, "{who} got a message twice");
    }
    // The history holds all of them at the seqs they were acknowledged with.
    let history = Api::new(&base, &amy_t).all_messages(&conv).await.unwrap();
    let kept: Vec<(i64, String)> = history.into_iter().map(|m| (m.seq, m.body)).collect();
    assert_eq!(kept, sent);
    // And the process's own appends reached its readers through the loopback.
    common::eventually("the loopback counted", Duration::from_secs(10), || async {
        counter(&base, "parley_log_loopback_records_total").await >= before + TURNS as f64
    })
    .await;
}
