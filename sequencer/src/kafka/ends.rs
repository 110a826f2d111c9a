//! End offsets read once for many callers.
//!
//! A call returns offsets read by a request that began after the call did, so it sees
//! every append acknowledged before it (the read-your-log barriers rely on that). While
//! a request is under way, later calls wait for it to end and then share the next one:
//! many sessions opening at once cost one request per round, not one each (a read is a
//! metadata request and one watermark request per partition).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::Result;

type Last = Arc<tokio::sync::Mutex<Option<(Instant, Vec<i64>)>>>;

#[derive(Default)]
pub(crate) struct EndOffsets {
    by_topic: Mutex<HashMap<String, Last>>,
}

impl EndOffsets {
    /// The end offsets of `topic`, from `fetch` or from a fetch begun after this call.
    pub(crate) async fn read<F, Fut>(&self, topic: &str, fetch: F) -> Result<Vec<i64>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<i64>>>,
    {
        let since = Instant::now();
        let slot = self
            .by_topic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(topic.to_string())
            .or_default()
            .clone();
        let mut last = slot.lock().await;
        if let Some((at, ends)) = &*last {
            if *at >= since {
                return Ok(ends.clone());
            }
        }
        let at = Instant::now();
        let ends = fetch().await?;
        *last = Some((at, ends.clone()));
        Ok(ends)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_call_never_gets_offsets_read_before_it_began() {
        let ends = Arc::new(EndOffsets::default());
        let fetches = Arc::new(AtomicI64::new(0));
        let fetch = |fetches: Arc<AtomicI64>| async move {
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(vec![n])
        };
        let first = {
            let (e, f) = (ends.clone(), fetches.clone());
            tokio::spawn(async move { e.read("t", || fetch(f)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Begun while fetch 1 is under way: fetch 1 may miss what came just before.
        let during: Vec<_> = (0..20)
            .map(|_| {
                let (e, f) = (ends.clone(), fetches.clone());
                tokio::spawn(async move { e.read("t", || fetch(f)).await })
            })
            .collect();
        assert_eq!(first.await.unwrap().unwrap(), vec![1]);
        for d in during {
            assert_eq!(
                d.await.unwrap().unwrap(),
                vec![2],
                "one later fetch serves them all"
            );
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // After every fetch has ended, a new call fetches again.
        let f = fetches.clone();
        assert_eq!(ends.read("t", || fetch(f)).await.unwrap(), vec![3]);
        // Topics do not share.
        let f = fetches.clone();
        assert_eq!(ends.read("u", || fetch(f)).await.unwrap(), vec![4]);
    }
}
