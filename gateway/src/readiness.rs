//! What a gateway's `/readyz` checks: `log` (the log answers), `deliveries` (this
//! slot's consumer is running) and `views` (every partition of `events` is served by a
//! projector within `ready_lag` records of its end: a partition no replica serves yet,
//! even an empty one, keeps the gateway unready, since any request on it would fail).

use std::sync::Arc;
use std::time::Duration;

use parley_ops::Health;
use parley_projector::Views;
use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;

/// How often the checks run.
const EVERY: Duration = Duration::from_secs(2);

/// Checks the views against the log's end every [`EVERY`] until `shutdown`.
pub async fn watch(
    log: Arc<dyn EventLog>,
    views: Arc<dyn Views>,
    events: String,
    bound: i64,
    health: Health,
    shutdown: CancellationToken,
) {
    health.set("views", false, "starting");
    loop {
        match log.end_offsets(&events).await {
            Err(e) => {
                health.set("log", false, format!("unreachable: {e}"));
                health.set("views", false, "unknown: the log does not answer");
            }
            Ok(ends) => {
                health.set("log", true, "reachable");
                // Within the bound of each end: applied past end - bound. Every
                // partition is asked, so one that no replica serves is seen.
                let targets: Vec<(i32, i64)> = ends
                    .iter()
                    .enumerate()
                    .map(|(p, end)| (p as i32, (end - bound).max(0)))
                    .collect();
                let (ok, detail) = match views
                    .wait_applied(&targets, Duration::from_millis(200))
                    .await
                {
                    Ok(true) => (true, format!("within {bound} records of the log's end")),
                    Ok(false) => (
                        false,
                        format!("more than {bound} records behind the log's end"),
                    ),
                    Err(e) => (false, format!("unreachable: {e}")),
                };
                health.set("views", ok, detail);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
