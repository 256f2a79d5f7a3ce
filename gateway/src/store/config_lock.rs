//! A cluster-wide lock on one bucket's stream config. NATS replaces a stream's config whole
//! and takes no expected revision, so two gateways changing different settings of one
//! bucket at once (each reads the config, changes its part, writes it back) would drop the
//! change written first: a bucket policy, versioning's subjects, DeleteBucket's fence.
//! Every such change holds `config.<bucket>` in `jets3_locks` from its read to its write.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::{NatsError, Store};

/// How long a holder may keep the lock before another takes it over (a gateway that died
/// holding it).
const LEASE: Duration = Duration::from_secs(10);
/// How long a change waits for the lock before it fails.
const WAIT: Duration = Duration::from_secs(15);

/// The lock, held until dropped (or until its lease runs out).
pub(super) struct ConfigLock {
    kv: kv::Store,
    key: String,
    revision: u64,
}

impl Store {
    /// Takes the config lock of bucket `nats`, waiting for its holder to release it.
    pub(super) async fn lock_config(&self, nats: &str) -> Result<ConfigLock, NatsError> {
        use kv::CreateErrorKind;
        let key = format!("config.{nats}");
        let holder = Bytes::from(nuid::next().to_string());
        let deadline = Instant::now() + WAIT;
        let mut restored = false;
        let mut attempt = 0u32;
        loop {
            let kv = self.inner.lifecycle.locks().await?;
            let taken = match kv.create(&key, holder.clone()).await {
                Ok(revision) => Some(revision),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    take_over(kv, &key, holder.clone()).await
                }
                Err(e) => {
                    // NATS between leaders, or the locks' KV deleted under this gateway.
                    tracing::debug!(error = %e, bucket = nats, "config lock not taken");
                    if !restored {
                        self.restore_internal_kvs().await;
                        restored = true;
                    }
                    None
                }
            };
            if let Some(revision) = taken {
                return Ok(ConfigLock {
                    kv: kv.clone(),
                    key,
                    revision,
                });
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    bucket = nats,
                    "the bucket's config lock was not taken in time"
                );
                return Err(NatsError::TimedOut);
            }
            // Random, up to a bound that doubles from 5 ms to 40 ms.
            let pause = rand::random::<u64>() % (5u64 << attempt.min(3)) + 1;
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

/// Takes the lock from a holder that has had it longer than [`LEASE`] (or finds it taken by
/// this `holder`, a create whose answer was lost); its revision then.
async fn take_over(kv: &kv::Store, key: &str, holder: Bytes) -> Option<u64> {
    let entry = kv.entry(key).await.ok().flatten()?;
    if entry.operation != kv::Operation::Put {
        return None;
    }
    if entry.value == holder {
        return Some(entry.revision);
    }
    if OffsetDateTime::now_utc() - entry.created < LEASE {
        return None;
    }
    tracing::warn!(key, "a bucket config lock outlived its lease: taken over");
    kv.update(key, holder, entry.revision).await.ok()
}

impl Drop for ConfigLock {
    /// Releases the lock, unless another took it over meanwhile (the lease ran out). It
    /// runs on its own, so a request dropped midway (the client hung up) releases it too.
    fn drop(&mut self) {
        let (kv, key, revision) = (
            self.kv.clone(),
            std::mem::take(&mut self.key),
            self.revision,
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = kv.delete_expect_revision(&key, Some(revision)).await {
                tracing::debug!(key, error = %e, "config lock not released: its lease ends it");
            }
        });
    }
}
