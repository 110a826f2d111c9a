//! A user's upload quota per UTC day: how many slots, and how many bytes. Each slot
//! leaves a marker `quota/<user>/<day>/<size>-<id>` in the store, so every gateway counts
//! the same uploads: a check lists the user's markers of the day (as many as the quota
//! allows, at most). Two slots asked for at the same instant on two gateways may both
//! pass at the limit; nothing else goes over it.

use bytes::Bytes;
use uuid::Uuid;

use super::Blobs;
use crate::error::ApiError;

/// Slots and bytes a user may take per UTC day (0: no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub count: u64,
    pub bytes: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            count: 500,
            bytes: 2 * 1024 * 1024 * 1024,
        }
    }
}

const DAY_MS: i64 = 86_400_000;

fn prefix(user: &str, now_ms: i64) -> String {
    // User ids are `A-Z a-z 0-9 . _ @ : -` (auth::valid_user_id): safe in a key.
    format!("quota/{user}/{}", now_ms.div_euclid(DAY_MS))
}

/// Takes a slot of `size` bytes from `user`'s quota of the day, or says when it renews.
pub async fn take(
    blobs: &Blobs,
    quota: Quota,
    user: &str,
    id: &Uuid,
    size: u64,
    now_ms: i64,
) -> Result<(), ApiError> {
    if quota.count == 0 && quota.bytes == 0 {
        return Ok(());
    }
    let prefix = prefix(user, now_ms);
    let used = blobs.list(&prefix).await?;
    let bytes: u64 = used
        .iter()
        .filter_map(|key| {
            key.rsplit('/')
                .next()?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let count = used.len() as u64;
    let over_count = quota.count > 0 && count + 1 > quota.count;
    let over_bytes = quota.bytes > 0 && bytes + size > quota.bytes;
    if over_count || over_bytes {
        let renews = DAY_MS - now_ms.rem_euclid(DAY_MS);
        return Err(ApiError::rate_limited(
            &format!(
                "the daily upload quota ({} files, {} bytes; {count} and {bytes} used) is spent",
                quota.count, quota.bytes
            ),
            std::time::Duration::from_millis(renews as u64),
        ));
    }
    blobs
        .put(&format!("{prefix}/{size}-{id}"), Bytes::new())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_schemas::frames::ErrorCode;

    async fn blobs() -> (tempfile::TempDir, Blobs) {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::local(dir.path()).unwrap();
        (dir, b)
    }

    #[tokio::test]
    async fn the_count_and_the_bytes_of_a_day_are_capped_and_renew_the_next_day() {
        let (_d, b) = blobs().await;
        let q = Quota {
            count: 3,
            bytes: 1000,
        };
        let day = 20_000 * DAY_MS + 5;
        for _ in 0..3 {
            take(&b, q, "amy", &Uuid::new_v4(), 100, day).await.unwrap();
        }
        let e = take(&b, q, "amy", &Uuid::new_v4(), 1, day)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        // Someone else has their own quota; the next day the count starts again.
        take(&b, q, "ben", &Uuid::new_v4(), 100, day).await.unwrap();
        take(&b, q, "amy", &Uuid::new_v4(), 100, day + DAY_MS)
            .await
            .unwrap();
        // Bytes: 900 of 1000 used.
        let q = Quota {
            count: 0,
            bytes: 1000,
        };
        let e = take(&b, q, "amy", &Uuid::new_v4(), 901, day)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::RateLimited);
        take(&b, q, "amy", &Uuid::new_v4(), 700, day).await.unwrap();
    }

    #[tokio::test]
    async fn no_quota_takes_nothing() {
        let (_d, b) = blobs().await;
        let q = Quota { count: 0, bytes: 0 };
        take(&b, q, "amy", &Uuid::new_v4(), 100, 0).await.unwrap();
        assert!(b.list("quota").await.unwrap().is_empty());
    }
}
