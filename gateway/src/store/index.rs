//! A per-bucket sorted index of live objects, kept current from the metadata subjects.
//!
//! Listing pages walk a `BTreeMap` (O(log n + page)). Before a listing is answered the
//! index catches up to the last metadata message in the stream, which keeps S3's
//! read-after-write promise for writes through any gateway or native client.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::Context;
use async_nats::Client;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::direct::next_for_subject;
use super::meta::{ObjectInfoJson, ObjectMeta};
use super::NatsError;

/// What a listing shows of an object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub size: u64,
    pub etag: Box<str>,
    pub modified: OffsetDateTime,
}

/// The sorted keys of one bucket.
pub struct Index {
    map: RwLock<BTreeMap<String, Entry>>,
    applied: watch::Sender<u64>,
    /// True once the consumer has delivered every message that existed when it started.
    loaded: watch::Sender<bool>,
    dead: AtomicBool,
}

const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

impl Index {
    /// Starts following the bucket's metadata subjects.
    pub async fn start(js: &Context, stream: &str, bucket: &str) -> Result<Arc<Index>, NatsError> {
        let s = js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        let consumer = s
            .create_consumer(OrderedConfig {
                filter_subject: format!("$O.{bucket}.M.>"),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await
            .map_err(NatsError::consumer)?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        let (applied, _) = watch::channel(0);
        let (loaded, _) = watch::channel(false);
        let index = Arc::new(Index {
            map: RwLock::new(BTreeMap::new()),
            applied,
            loaded,
            dead: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&index);
        tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                let Some(index) = weak.upgrade() else { return };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "listing index lost its consumer");
                        index.dead.store(true, Ordering::Relaxed);
                        return;
                    }
                };
                let (seq, pending) = match msg.info() {
                    Ok(i) => (i.stream_sequence, i.pending),
                    Err(_) => continue,
                };
                index.apply(&msg.payload, seq);
                if pending == 0 {
                    index.loaded.send_replace(true);
                }
            }
            if let Some(index) = weak.upgrade() {
                index.dead.store(true, Ordering::Relaxed);
            }
        });
        Ok(index)
    }

    fn apply(&self, payload: &[u8], seq: u64) {
        if let Ok(info) = serde_json::from_slice::<ObjectInfoJson>(payload) {
            let name = info.name.clone();
            let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
            match ObjectMeta::from_info(info, seq) {
                Some(m) => {
                    map.insert(
                        name,
                        Entry {
                            size: m.size,
                            etag: m.etag.into_boxed_str(),
                            modified: m.modified,
                        },
                    );
                }
                None => {
                    map.remove(&name);
                }
            }
        }
        self.applied.send_replace(seq);
    }

    /// False once the consumer behind the index has failed.
    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }

    /// Waits until every metadata message in the stream now has been applied: asks for
    /// the first metadata message after the last one applied, and waits for it, until
    /// there is none. That costs one Direct Get when the index is current (a wildcard
    /// `last_by_subj` would scan every subject of the bucket).
    pub async fn catch_up(
        &self,
        client: &Client,
        stream: &str,
        bucket: &str,
    ) -> Result<(), NatsError> {
        let filter = format!("$O.{bucket}.M.>");
        let wait = async {
            let mut applied = self.applied.subscribe();
            let mut loaded = self.loaded.subscribe();
            let mut first = true;
            loop {
                let from = *applied.borrow() + 1;
                let next = next_for_subject(client, stream, &filter, from).await?;
                let Some(next) = next else { return Ok(()) };
                if first {
                    // Still loading: let the consumer finish its initial pass first.
                    let _ = loaded.wait_for(|l| *l).await;
                    first = false;
                }
                if applied.wait_for(|a| *a >= next.seq).await.is_err() {
                    return Err(NatsError::Other("listing index stopped".into()));
                }
            }
        };
        match tokio::time::timeout(CATCH_UP_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) => Err(NatsError::Other("listing index did not catch up".into())),
        }
    }

    /// Read access to the sorted map.
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}
