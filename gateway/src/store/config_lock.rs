//! The gateway's side of the lock on a bucket's stream config ([`jets3_nats::config_lock`]):
//! every change of a bucket stream's config waits for it, through a NATS election and a
//! deleted locks KV.

use jets3_nats::config_lock::{holder, pause, try_lock, ConfigLock, WAIT};
use tokio::time::Instant;

use super::{NatsError, Store};

impl Store {
    /// Takes the config lock of bucket `nats`, waiting for its holder to release it.
    pub(super) async fn lock_config(&self, nats: &str) -> Result<ConfigLock, NatsError> {
        let holder = holder();
        let deadline = Instant::now() + WAIT;
        let mut restored = false;
        let mut attempt = 0;
        loop {
            let kv = self.inner.lifecycle.locks().await?;
            match try_lock(kv, nats, &holder).await {
                Ok(Some(lock)) => return Ok(lock),
                Ok(None) => {}
                Err(e) => {
                    // NATS between leaders, or the locks' KV deleted under this gateway.
                    tracing::debug!(error = %e, bucket = nats, "config lock not taken");
                    if !restored {
                        self.restore_internal_kvs().await;
                        restored = true;
                    }
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    bucket = nats,
                    "the bucket's config lock was not taken in time"
                );
                return Err(NatsError::TimedOut);
            }
            tokio::time::sleep(pause(attempt)).await;
            attempt += 1;
        }
    }
}
