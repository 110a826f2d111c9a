//! Every data key of the `keys` topic, for a reader of the whole log (`parley replay
//! --decrypt`, an analytics consumer holding the key-encryption key): read to the
//! topic's end, then followed if asked. A tombstone takes its key out: what it sealed
//! reads as erased from then on.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use parley_schemas::sealed::{ContentKey, Kek};
use parley_schemas::{decode, DataKey, SealedBody};
use parley_sequencer::{EventLog, RecordStream, StartAt};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::Result;

/// What a sealed message's body opens to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// Its text (a plain body's is itself).
    Text(String),
    /// Its data key is not in the topic: erased (or never written).
    Erased,
}

pub struct DataKeys {
    kek: Kek,
    keys: RwLock<HashMap<String, DataKey>>,
}

impl DataKeys {
    /// Every key of `topic` as it stands now; with `follow`, kept up to date until
    /// `shutdown`.
    pub async fn load(
        log: Arc<dyn EventLog>,
        topic: &str,
        kek: Kek,
        follow: Option<CancellationToken>,
    ) -> Result<Arc<DataKeys>> {
        let keys = Arc::new(DataKeys {
            kek,
            keys: RwLock::new(HashMap::new()),
        });
        let ends = log.end_offsets(topic).await?;
        let from: Vec<(i32, StartAt)> = (0..ends.len() as i32)
            .map(|p| (p, StartAt::Beginning))
            .collect();
        let mut stream = log.read(topic, &from).await?;
        let mut pending: HashMap<i32, i64> = ends
            .iter()
            .enumerate()
            .filter(|(_, e)| **e > 0)
            .map(|(p, e)| (p as i32, *e))
            .collect();
        while !pending.is_empty() {
            // Compaction may have removed a partition's last records: an idle reader has
            // then seen everything there is.
            let next = match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
                Ok(Some(r)) => r?,
                _ => break,
            };
            if pending
                .get(&next.partition)
                .is_some_and(|end| next.offset + 1 >= *end)
            {
                pending.remove(&next.partition);
            }
            keys.take(next.key.as_deref(), next.value.as_deref());
        }
        if let Some(shutdown) = follow {
            tokio::spawn(keys.clone().follow(stream, shutdown));
        }
        Ok(keys)
    }

    async fn follow(self: Arc<Self>, mut stream: RecordStream, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = stream.next() => n,
            };
            match next {
                Some(Ok(r)) => self.take(r.key.as_deref(), r.value.as_deref()),
                Some(Err(e)) => {
                    warn!(error = %e, "keys: read failed; reading on");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return,
            }
        }
    }

    fn take(&self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        match value {
            None => {
                if let Some(id) = key.and_then(|k| std::str::from_utf8(k).ok()) {
                    keys.remove(id);
                }
            }
            Some(v) => {
                if let Ok(k) = decode::<DataKey>(v) {
                    keys.insert(k.key_id.clone(), k);
                }
            }
        }
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key `key_id`, unwrapped.
    pub fn get(&self, key_id: &str) -> Option<ContentKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let k = keys.get(key_id)?;
        self.kek.unwrap(key_id, k.kek_version as u32, &k.wrapped)
    }

    /// Opens a message or an edit in place with its data key: its text, and a
    /// message's files' names. False when its key is gone (erased); its body is then
    /// empty. A plain one stays as it is.
    pub fn open_in_place<R: SealedBody>(&self, r: &mut R) -> bool {
        let key = r.sealed().and_then(|s| self.get(&s.key_id));
        r.open_with(key.as_ref())
    }

    /// The text of a message or an edit, or [`Opened::Erased`] when its key is gone.
    pub fn open<R: SealedBody + Clone>(&self, r: &R) -> Opened {
        let mut r = r.clone();
        match self.open_in_place(&mut r) {
            true => Opened::Text(r.body().to_string()),
            false => Opened::Erased,
        }
    }
}
