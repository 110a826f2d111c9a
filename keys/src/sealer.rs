//! A gateway's side of sealing: a data key for every message it appends, wrapped by the
//! key-encryption key for the `keys` topic, and wrapped again under the gateway's
//! transit key of the hour inside the record.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parley_schemas::sealed::{ContentKey, Kek};
use parley_schemas::{encode, now_millis, DataKey, MessageEdited, MessagePosted, Meta, TransitKey};
use parley_sequencer::partition::partition_for_key;
use parley_sequencer::EventLog;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Result, TransitRing, HOUR_MS, TRANSIT_GRACE_MS};

/// A sealed message's data key, to append to `keys` before (or with) the message.
pub struct SealedAppend {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub struct Sealer {
    kek: Kek,
    slot: i32,
    actor: String,
    log: Arc<dyn EventLog>,
    keys_topic: String,
    transit_topic: String,
    partitions: i32,
    ring: Arc<TransitRing>,
    /// This process, in the ids of its transit keys ([`TransitKey::id_of`]).
    instance: uuid::Uuid,
    /// This gateway's transit keys by hour (hours since the epoch).
    own: tokio::sync::Mutex<BTreeMap<i64, (String, ContentKey)>>,
}

impl Sealer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kek: Kek,
        slot: i32,
        log: Arc<dyn EventLog>,
        keys_topic: String,
        transit_topic: String,
        partitions: i32,
        ring: Arc<TransitRing>,
    ) -> Arc<Sealer> {
        Arc::new(Sealer {
            kek,
            slot,
            actor: format!("gateway:{slot}"),
            log,
            keys_topic,
            transit_topic,
            partitions,
            ring,
            instance: uuid::Uuid::new_v4(),
            own: Default::default(),
        })
    }

    pub fn ring(&self) -> &Arc<TransitRing> {
        &self.ring
    }

    /// Appends a sealed record's data key, tried again a few times: the record itself
    /// may be in the log already, and its text is readable for good only with this key.
    pub async fn append(&self, k: &SealedAppend) -> parley_sequencer::Result<()> {
        let mut attempt = 0u32;
        loop {
            match self
                .log
                .append_to(&self.keys_topic, k.partition, &k.key, Some(&k.value))
                .await
            {
                Err(e) if attempt < 3 && e.is_retryable() => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
                Err(e) => return Err(e),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Seals `m`'s body under a fresh data key; the key's record for `keys`. Its id is
    /// the conversation and the record's own event id, so a retry appended again has a
    /// key of its own and never replaces its original's.
    pub async fn seal(&self, m: &mut MessagePosted) -> Result<SealedAppend> {
        let (key_id, key, transit_id, transit, append) = self
            .new_key(&m.conversation_id, &m.meta.event_id, m.sender())
            .await?;
        m.seal(key_id, &key, Some((&transit_id, &transit)));
        Ok(append)
    }

    /// Seals an edit's new text the same way, under a key of its own.
    pub async fn seal_edit(&self, e: &mut MessageEdited) -> Result<SealedAppend> {
        let (key_id, key, transit_id, transit, append) = self
            .new_key(&e.conversation_id, &e.meta.event_id, &e.meta.actor)
            .await?;
        e.seal(key_id, &key, Some((&transit_id, &transit)));
        Ok(append)
    }

    /// A fresh data key for the record `event_id` of `conversation`, whose content is
    /// `owner`'s: its id, the key, the transit key of the hour, and its record.
    async fn new_key(
        &self,
        conversation: &str,
        event_id: &uuid::Uuid,
        owner: &str,
    ) -> Result<(String, ContentKey, String, ContentKey, SealedAppend)> {
        let (transit_id, transit) = self.transit(now_millis().div_euclid(HOUR_MS)).await?;
        let key = ContentKey::generate();
        let key_id = DataKey::id_of(conversation, event_id);
        let (version, wrapped) = self.kek.wrap(&key_id, &key);
        let record = DataKey {
            meta: Meta::new(self.actor.clone()),
            key_id: key_id.clone(),
            owner: owner.to_string(),
            conversation_id: conversation.to_string(),
            kek_version: version as i32,
            wrapped,
        };
        let append = SealedAppend {
            partition: partition_for_key(conversation.as_bytes(), self.partitions),
            key: key_id.clone().into_bytes(),
            value: encode(&record)?,
        };
        Ok((key_id, key, transit_id, transit, append))
    }

    /// This gateway's transit key of `hour`, made (and appended) if it has none yet.
    async fn transit(&self, hour: i64) -> Result<(String, ContentKey)> {
        let mut own = self.own.lock().await;
        if let Some(k) = own.get(&hour) {
            return Ok(k.clone());
        }
        let key = ContentKey::generate();
        let id = TransitKey::id_of(self.slot, hour, &self.instance);
        let (version, wrapped) = self.kek.wrap(&id, &key);
        let expires_at = (hour + 1) * HOUR_MS + TRANSIT_GRACE_MS;
        let record = TransitKey {
            meta: Meta::new(self.actor.clone()),
            key_id: id.clone(),
            expires_at,
            kek_version: version as i32,
            wrapped,
        };
        self.log
            .append(&self.transit_topic, id.as_bytes(), Some(&encode(&record)?))
            .await?;
        self.ring.insert(&id, key.clone(), expires_at);
        own.insert(hour, (id.clone(), key.clone()));
        // Hours gone by are not sealed with any more. The current hour's key stays when
        // the upkeep makes the next one: made again, it would go out under the same id
        // with other bytes, and a gateway still holding the first would deliver the
        // hour's next messages without their text.
        let current = now_millis().div_euclid(HOUR_MS);
        own.retain(|h, _| *h >= current.min(hour));
        Ok((id, key))
    }

    /// Every minute until `shutdown`: makes the next hour's transit key ahead of time,
    /// and writes the tombstone of every transit key expired (any gateway's: one that
    /// stopped for good does not erase its own).
    pub fn spawn_upkeep(self: &Arc<Self>, shutdown: CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let now = now_millis();
                if let Err(e) = me.transit(now.div_euclid(HOUR_MS) + 1).await {
                    warn!(error = %e, "the next hour's transit key is not made yet; trying again");
                }
                for id in me.ring.expired(now) {
                    match me.log.append(&me.transit_topic, id.as_bytes(), None).await {
                        Ok(_) => {
                            info!(key_id = %id, "transit key expired: erased");
                            me.ring.forget(&id);
                        }
                        Err(e) => warn!(key_id = %id, error = %e, "transit key not erased yet"),
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use parley_sequencer::{EmbeddedConfig, EmbeddedLog, TopicSpec};

    use super::*;

    /// The upkeep makes the next hour's transit key while the hour's own is in use. The
    /// hour's key must stay: made again, it would go out under the same id with other
    /// bytes, and a gateway that still held the first would deliver the next messages
    /// without their text.
    #[tokio::test]
    async fn making_the_next_hours_transit_key_keeps_this_hours() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(EmbeddedConfig::new(dir.path()))
                .await
                .unwrap(),
        );
        log.provision(&[
            TopicSpec::plain("transit-keys", 1, 1),
            TopicSpec::plain("keys", 1, 1),
        ])
        .await
        .unwrap();
        let kek = Kek::parse(&"k".repeat(32)).unwrap();
        let shutdown = CancellationToken::new();
        let ring = TransitRing::start(log.clone(), "transit-keys", kek.clone(), shutdown.clone())
            .await
            .unwrap();
        let sealer = Sealer::new(
            kek,
            0,
            log.clone(),
            "keys".into(),
            "transit-keys".into(),
            1,
            ring,
        );
        let hour = now_millis().div_euclid(HOUR_MS);
        let first = sealer.transit(hour).await.unwrap();
        sealer.transit(hour + 1).await.unwrap(); // the upkeep's round
        let again = sealer.transit(hour).await.unwrap();
        assert_eq!(first.0, again.0, "one id per hour and process");
        assert!(first.1 == again.1, "the hour's key made again under its id");
        assert_eq!(
            log.end_offsets("transit-keys").await.unwrap(),
            vec![2],
            "one transit key appended per hour"
        );
        shutdown.cancel();
    }
}
