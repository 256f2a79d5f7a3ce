//! The lock every change of a bucket stream's config holds, in the gateways and in the
//! operator alike. NATS replaces a stream's config whole and takes no expected revision, so
//! two changes of different settings of one bucket at once (each reads the config, changes
//! its part and writes it back) would drop the one written first: a bucket policy,
//! versioning's subjects, DeleteBucket's fence, a spec's `maxBytes`. A change holds
//! `config.<bucket>` in the `jets3_locks` KV from its read to its write.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use time::OffsetDateTime;

/// The KV bucket of locks (also the gateways' collector leadership).
pub const LOCKS_KV: &str = "jets3_locks";
/// How long an entry of the locks lives unless refreshed (the KV's max age).
pub const LOCKS_TTL: Duration = Duration::from_secs(30);
/// How long a holder may keep a config lock before another takes it over (a process that
/// died holding it).
pub const LEASE: Duration = Duration::from_secs(10);
/// How long a change waits for the lock before it fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// The locks' KV bucket, as whoever first needs it creates it.
pub fn locks_kv() -> kv::Config {
    kv::Config {
        bucket: LOCKS_KV.into(),
        description: "jets3: leadership of background work".into(),
        history: 1,
        max_age: LOCKS_TTL,
        ..Default::default()
    }
}

/// A config lock, held until dropped (or until its lease runs out).
pub struct ConfigLock {
    kv: kv::Store,
    key: String,
    revision: u64,
}

/// Why no config lock was had.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another change held it until the deadline.
    #[error("the config lock of bucket {0} is held elsewhere")]
    Held(String),
    /// NATS did not take the lock's entry (between leaders, or the locks' KV is gone).
    #[error("the config lock was not taken: {0}")]
    Nats(#[from] kv::CreateError),
}

/// A new holder id: one per change that asks for a lock.
pub fn holder() -> Bytes {
    Bytes::from(format!("{:032x}", rand::random::<u128>()))
}

/// Waits until `deadline` for bucket `bucket`'s config lock for `holder` (see [`holder`]),
/// trying again after a short random pause while another holds it (for less than
/// [`LEASE`]) and, unless `stop_on_nats_error`, while NATS does not take the entry.
pub async fn lock_until(
    kv: &kv::Store,
    bucket: &str,
    holder: &Bytes,
    deadline: tokio::time::Instant,
    stop_on_nats_error: bool,
) -> Result<ConfigLock, LockError> {
    let key = format!("config.{bucket}");
    let mut attempt = 0u32;
    loop {
        let taken = match kv.create(&key, holder.clone()).await {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => take_over(kv, &key, holder)
                .await
                .ok_or_else(|| LockError::Held(bucket.into())),
            Err(e) if stop_on_nats_error => return Err(e.into()),
            Err(e) => Err(e.into()),
        };
        match taken {
            Ok(revision) => {
                return Ok(ConfigLock {
                    kv: kv.clone(),
                    key,
                    revision,
                })
            }
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        // Random, up to a bound that doubles from 5 ms to 40 ms.
        let pause = rand::random::<u64>() % (5u64 << attempt.min(3)) + 1;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        attempt += 1;
    }
}

/// Takes the lock from a holder that has had it longer than [`LEASE`] (by this process's
/// clock against the entry's server time), or finds it taken by `holder` itself (a create
/// whose answer was lost); its revision then.
async fn take_over(kv: &kv::Store, key: &str, holder: &Bytes) -> Option<u64> {
    let entry = kv.entry(key).await.ok().flatten()?;
    if entry.operation != kv::Operation::Put {
        return None;
    }
    if entry.value == *holder {
        return Some(entry.revision);
    }
    if OffsetDateTime::now_utc() - entry.created < LEASE {
        return None;
    }
    kv.update(key, holder.clone(), entry.revision).await.ok()
}

impl Drop for ConfigLock {
    /// Releases the lock, unless another took it over meanwhile (the lease ran out).
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
            // Not released: the lease ends it.
            let _ = kv.delete_expect_revision(&key, Some(revision)).await;
        });
    }
}
