//! Removes what no message holds any more: uploads never sent, past
//! [`super::AttachmentLimits::unsent_ttl`] after their slot was given, and the files of
//! messages deleted for everyone (their claims stay, so the id is never used again);
//! and the quota markers of past days.
//! Gateway 0 sweeps every [`EVERY`] (`PARLEY_ATTACHMENT_SWEEP_S`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use super::slots::{self, file_key, thumb_key};
use super::Blobs;
use crate::service::Shared;

/// How often gateway 0 sweeps by default.
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub unsent: usize,
    pub deleted: usize,
}

/// Sweeps every `every` until `shutdown`.
pub async fn run(state: Shared, every: Duration, shutdown: CancellationToken) {
    let Some(blobs) = state.config.attachments.clone() else {
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        match sweep(&state, &blobs).await {
            Ok(s) if s != Swept::default() => {
                info!(unsent = s.unsent, deleted = s.deleted, "attachments swept")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "attachment sweep failed; the next one retries"),
        }
    }
}

/// One sweep over every slot.
pub async fn sweep(state: &Shared, blobs: &Blobs) -> anyhow::Result<Swept> {
    let now = parley_schemas::now_millis();
    let ttl = state.config.attachment_limits.unsent_ttl.as_millis() as i64;
    let mut swept = Swept::default();
    for key in blobs.list("uploads").await? {
        let Some(id) = key
            .strip_prefix("uploads/")
            .and_then(|k| k.strip_suffix(".json"))
            .and_then(|k| Uuid::parse_str(k).ok())
        else {
            continue;
        };
        let Some(slot) = slots::slot(blobs, &id).await.map_err(anyhow::Error::msg)? else {
            continue;
        };
        match slots::claim_of(blobs, &id)
            .await
            .map_err(anyhow::Error::msg)?
        {
            None if now - slot.created_at > ttl => {
                remove_bytes(blobs, &id).await?;
                blobs.delete(&slots::slot_key(&id)).await?;
                swept.unsent += 1;
            }
            None => {}
            Some(claim) => {
                let message = state
                    .views
                    .message_by_id(&claim.conversation_id, claim.message_id)
                    .await?;
                let held = match &message {
                    Some(m) => m
                        .attachments
                        .iter()
                        .any(|a| a.attachment_id == id.to_string()),
                    // Claimed by a send whose append never happened.
                    None => now - slot.created_at <= ttl,
                };
                if !held && blobs.size(&file_key(&id)).await?.is_some() {
                    remove_bytes(blobs, &id).await?;
                    swept.deleted += 1;
                }
            }
        }
    }
    // Quota markers of days gone by.
    let today = now.div_euclid(86_400_000);
    for key in blobs.list("quota").await? {
        let day = key.split('/').nth(2).and_then(|d| d.parse::<i64>().ok());
        if day.is_some_and(|d| d < today) {
            blobs.delete(&key).await?;
        }
    }
    Ok(swept)
}

async fn remove_bytes(blobs: &Blobs, id: &Uuid) -> anyhow::Result<()> {
    blobs.delete(&file_key(id)).await?;
    blobs.delete(&thumb_key(id)).await?;
    Ok(())
}
