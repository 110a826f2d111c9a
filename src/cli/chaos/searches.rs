//! The search check: once the run has settled, a search by each user for the text of
//! their last message (as history holds it now, edits included) finds it, through any
//! gateway, in their conversation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parley_client::{Api, SearchOptions};
use parley_schemas::frames::MessageView;

use super::client::User;

/// The most words of a body searched for (as one phrase).
const WORDS: usize = 8;

/// How many users' last messages a search did not find (each tried for up to a minute,
/// through every gateway in turn).
pub async fn unfound(
    users: &[User],
    histories: &HashMap<String, Vec<MessageView>>,
    gateways: &[String],
) -> usize {
    let mut missing = 0;
    for user in users {
        let Some(history) = histories.get(&user.conversation) else {
            continue;
        };
        let Some(last) = history
            .iter()
            .rev()
            .find(|m| m.sender_id == user.name && !m.deleted && !m.body.trim().is_empty())
        else {
            continue;
        };
        let words: Vec<&str> = last
            .body
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(WORDS)
            .collect();
        if words.is_empty() {
            continue;
        }
        let q = format!("\"{}\"", words.join(" "));
        let options = SearchOptions {
            conversation_id: Some(user.conversation.clone()),
            from: Some(user.name.clone()),
            limit: Some(100),
            ..SearchOptions::default()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0;
        let found = loop {
            let api = Api::new(&gateways[attempt % gateways.len()], &user.token);
            attempt += 1;
            let answer =
                tokio::time::timeout(Duration::from_secs(15), api.search(&q, &options)).await;
            match answer {
                Ok(Ok(page)) if page.results.iter().any(|r| r.seq == last.seq) => break true,
                Ok(Ok(_)) => {
                    eprintln!(
                        "chaos: a search by {} for {q} lacks seq {}",
                        user.name, last.seq
                    )
                }
                Ok(Err(e)) => eprintln!("chaos: a search by {} failed: {e}", user.name),
                Err(_) => eprintln!("chaos: a search by {} got no answer in 15 s", user.name),
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        missing += usize::from(!found);
    }
    missing
}
