//! The gateway's side of the lock on a bucket's stream config ([`jets3_nats::config_lock`]):
//! every change of a bucket stream's config waits for it, through a NATS election and a
//! deleted locks KV (made again once).

use jets3_nats::config_lock::{holder, lock_until, ConfigLock, LockError, WAIT};
use tokio::time::Instant;

use super::{NatsError, Store};

impl Store {
    /// Takes the config lock of bucket `nats`, waiting for its holder to release it.
    pub(super) async fn lock_config(&self, nats: &str) -> Result<ConfigLock, NatsError> {
        let (holder, deadline) = (holder(), Instant::now() + WAIT);
        let kv = self.inner.lifecycle.locks().await?;
        let taken = match lock_until(kv, nats, &holder, deadline, true).await {
            Err(LockError::Nats(e)) => {
                // NATS between leaders, or the locks' KV deleted under this gateway.
                tracing::debug!(error = %e, bucket = nats, "config lock not taken");
                self.restore_internal_kvs().await;
                lock_until(kv, nats, &holder, deadline, false).await
            }
            taken => taken,
        };
        taken.map_err(|e| {
            tracing::warn!(bucket = nats, error = %e, "the bucket's config lock was not taken in time");
            NatsError::TimedOut
        })
    }
}
