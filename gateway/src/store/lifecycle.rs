//! Retire records and the cluster-wide read registry: what lets a replaced version outlive
//! every read of it, on any gateway, without a request ever purging chunks.
//!
//! - `jets3_gc` (KV): `<bucket>.<nuid>` → [`Retired`]. Written when a version stops being
//!   referenced; the entry's server timestamp is the retirement time. The collector purges
//!   the chunks once the grace period has passed and no registered read holds them.
//! - `jets3_reads` (KV, max age = the grace period): `<bucket>.<nuid>.<reader>`. A read
//!   that still has chunks to fetch a quarter of the grace period after it started registers
//!   here and refreshes the entry every quarter period until it ends; an ended or dead
//!   reader's entry expires by itself.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{kv, Context};
use jets3_nats::names;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::direct::{from_leader, kv_live};
use super::internal::InternalReplicas;
use super::meta::valid_nuid;
use super::NatsError;

/// KV bucket of retire records.
pub const GC_KV: &str = "jets3_gc";
/// KV bucket of read registrations.
pub const READS_KV: &str = "jets3_reads";
/// KV bucket of locks (the collector's leadership, changes of a bucket's config).
pub use jets3_nats::config_lock::{LOCKS_KV, LOCKS_TTL};

/// A retire record: what the chunks held, for logs and metrics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Retired {
    /// The key the version belonged to (empty for upload parts and orphans).
    #[serde(default)]
    pub key: String,
    /// Object bytes of the version.
    #[serde(default)]
    pub size: u64,
    /// Why: `replaced`, `deleted`, `part`, `orphan`, `compacted`; `compact` marks a spliced
    /// version to compact (not chunks to purge).
    #[serde(default)]
    pub why: String,
    /// The spliced version these chunks are a part of: its reads hold them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Timing of the lifecycle, from the collector settings.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a retired version stays readable without a registration.
    pub grace: Duration,
    /// Age after which unreferenced chunks count as orphans.
    pub orphan_after: Duration,
    /// How long a completed multipart upload answers a repeated Complete.
    pub completed: Duration,
}

impl Timing {
    /// When a long read registers, and how often it refreshes.
    pub fn register_every(&self) -> Duration {
        (self.grace / 4).max(Duration::from_millis(100))
    }

    /// The longest a write may pause between two chunks, or between its last chunk (or its
    /// lookup) and its commit: half the orphan horizon.
    pub fn write_pause(&self) -> Duration {
        self.orphan_after / 2
    }

    /// How long a Complete's claim on an upload lasts without a heartbeat: a minute, or a
    /// quarter of the orphan horizon when that is shorter (its writes pause at most half).
    pub fn claim_lease(&self) -> Duration {
        (self.orphan_after / 4).min(Duration::from_secs(60))
    }
}

/// The lifecycle KV buckets of one connection.
pub struct Lifecycle {
    js: Context,
    pub timing: Timing,
    gc: OnceCell<kv::Store>,
    reads: OnceCell<kv::Store>,
    locks: OnceCell<kv::Store>,
    /// Replicas of the KV buckets jets3 creates.
    replicas: InternalReplicas,
}

impl Lifecycle {
    pub fn new(js: Context, timing: Timing, replicas: InternalReplicas) -> Arc<Lifecycle> {
        Arc::new(Lifecycle {
            js,
            timing,
            gc: OnceCell::new(),
            reads: OnceCell::new(),
            locks: OnceCell::new(),
            replicas,
        })
    }

    /// The retire records.
    pub async fn gc(&self) -> Result<&kv::Store, NatsError> {
        self.gc
            .get_or_try_init(|| {
                self.replicas.open(
                    &self.js,
                    kv::Config {
                        bucket: GC_KV.into(),
                        description: "jets3: retired versions waiting for the collector".into(),
                        history: 1,
                        ..Default::default()
                    },
                )
            })
            .await
    }

    /// The read registry.
    pub async fn reads(&self) -> Result<&kv::Store, NatsError> {
        self.reads
            .get_or_try_init(|| {
                self.replicas.open(
                    &self.js,
                    kv::Config {
                        bucket: READS_KV.into(),
                        description: "jets3: reads that hold retired versions".into(),
                        history: 1,
                        max_age: self.timing.grace,
                        ..Default::default()
                    },
                )
            })
            .await
    }

    /// The locks.
    pub async fn locks(&self) -> Result<&kv::Store, NatsError> {
        self.locks
            .get_or_try_init(|| {
                self.replicas
                    .open(&self.js, jets3_nats::config_lock::locks_kv())
            })
            .await
    }

    /// Records that version `nuid` of `bucket` is no longer referenced. A record lost here
    /// (NATS gone) is found again by the collector's orphan scan; a record NATS has no
    /// room for is `Err(StorageFull)`: the caller then frees the chunks itself.
    pub async fn retire(&self, bucket: &str, nuid: &str, record: Retired) -> Result<(), NatsError> {
        if !valid_nuid(nuid) {
            return Ok(());
        }
        self.gc().await?;
        let payload = serde_json::to_vec(&record).map_err(|e| NatsError::Other(e.to_string()))?;
        let subject = names::kv_subject(GC_KV, &format!("{bucket}.{nuid}"));
        let result = async {
            self.js
                .publish(subject, payload.into())
                .await
                .map_err(NatsError::publish)?
                .await
                .map_err(NatsError::publish)
        }
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e @ NatsError::StorageFull(..)) => Err(e),
            Err(e) => {
                tracing::debug!(bucket, nuid, error = ?e, "retire record not stored: the orphan scan will find it");
                Ok(())
            }
        }
    }

    /// Records that version `nuid` is retired and waits for NATS to store the record.
    pub async fn retire_acked(
        &self,
        bucket: &str,
        nuid: &str,
        record: Retired,
    ) -> Result<(), NatsError> {
        if !valid_nuid(nuid) {
            return Ok(());
        }
        let payload = serde_json::to_vec(&record).map_err(|e| NatsError::Other(e.to_string()))?;
        self.gc()
            .await?
            .put(format!("{bucket}.{nuid}"), payload.into())
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        Ok(())
    }

    /// Whether any live reader holds version `nuid` of `bucket`. The KV stream's leader
    /// answers (the JetStream API, not a Direct Get): a replica that is behind could miss
    /// the registration, and the version would be purged under the read.
    pub async fn is_read(&self, bucket: &str, nuid: &str) -> Result<bool, NatsError> {
        self.reads().await?;
        let stream = self
            .js
            .get_stream_no_info(names::kv_stream(READS_KV))
            .await
            .map_err(NatsError::other)?;
        let subject = names::kv_subject(READS_KV, &format!("{bucket}.{nuid}.*"));
        let registered = from_leader(stream.raw_message_builder().last_by_subject(subject))
            .await
            .map_err(NatsError::other)?;
        Ok(registered.is_some_and(|m| kv_live(&m)))
    }

    /// Holds version `nuid` of `bucket` for a read until the returned guard drops: after a
    /// quarter of the grace period, and every quarter period after, a task registers it.
    pub fn hold(self: &Arc<Self>, bucket: &str, nuid: &str) -> ReadHold {
        let me = self.clone();
        let key = format!("{bucket}.{nuid}.{}", nuid::next());
        let every = self.timing.register_every();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                let result = match me.reads().await {
                    Ok(kv) => kv
                        .put(key.clone(), bytes::Bytes::new())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("{e:?}")),
                };
                if let Err(e) = result {
                    tracing::warn!(read = %key, error = %e, "could not register a long read");
                }
            }
        });
        ReadHold { task }
    }
}

/// A running read's registration; dropping it stops the refreshes.
pub struct ReadHold {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReadHold {
    fn drop(&mut self) {
        self.task.abort();
    }
}
