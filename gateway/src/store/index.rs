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

use super::direct::last_for_subject;
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
        let index = Arc::new(Index {
            map: RwLock::new(BTreeMap::new()),
            applied,
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
                let seq = match msg.info() {
                    Ok(i) => i.stream_sequence,
                    Err(_) => continue,
                };
                index.apply(&msg.payload, seq);
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

    /// Waits until every metadata message in the stream now has been applied.
    pub async fn catch_up(&self, client: &Client, stream: &str, bucket: &str) -> Result<(), NatsError> {
        let last = last_for_subject(client, stream, &format!("$O.{bucket}.M.>"))
            .await
            .map_err(NatsError::direct)?;
        let Some(last) = last else { return Ok(()) };
        let mut rx = self.applied.subscribe();
        let caught_up = tokio::time::timeout(CATCH_UP_TIMEOUT, async {
            rx.wait_for(|applied| *applied >= last.seq).await.is_ok()
        })
        .await;
        match caught_up {
            Ok(true) => Ok(()),
            _ => Err(NatsError::Other("listing index did not catch up".into())),
        }
    }

    /// Read access to the sorted map.
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }
}
