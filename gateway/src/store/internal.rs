//! jets3's own KV buckets (retire records, reads, locks, multipart uploads, listing
//! snapshots) keep as many replicas as the most replicated bucket of the config: a NATS
//! server lost takes none of them with it where the buckets themselves survive it. One
//! deleted while gateways run is made again by the first of them to miss it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{kv, Context};
use jets3_nats::names;

use super::NatsError;

/// How many replicas jets3's own KV buckets get (shared by whoever opens one), and the
/// buckets already counted for it.
#[derive(Debug, Clone, Default)]
pub struct InternalReplicas(Arc<Counted>);

#[derive(Debug)]
struct Counted {
    replicas: AtomicUsize,
    buckets: Mutex<HashSet<String>>,
    /// The KV buckets opened here, by name, with the config they are made with.
    opened: Mutex<HashMap<String, kv::Config>>,
}

impl Default for Counted {
    fn default() -> Self {
        Counted {
            replicas: AtomicUsize::new(1),
            buckets: Mutex::new(HashSet::new()),
            opened: Mutex::new(HashMap::new()),
        }
    }
}

impl InternalReplicas {
    fn get(&self) -> usize {
        self.0.replicas.load(Ordering::Relaxed)
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Those of `buckets` not counted yet: a config coming in reads only new buckets' streams.
    pub fn uncounted(&self, buckets: impl Iterator<Item = String>) -> Vec<String> {
        let counted = self.counted();
        buckets.filter(|b| !counted.contains(b)).collect()
    }

    /// Opens one of jets3's KV buckets, creating it with `config` and the replicas in force
    /// if it does not exist.
    pub async fn open(&self, js: &Context, config: kv::Config) -> Result<kv::Store, NatsError> {
        let name = config.bucket.clone();
        self.opened().insert(name.clone(), config.clone());
        if let Ok(s) = js.get_key_value(&name).await {
            return Ok(s);
        }
        self.create(js, config).await
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, HashMap<String, kv::Config>> {
        self.0.opened.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes those of the KV buckets opened here that no longer exist (deleted while this
    /// gateway runs) again, empty; their names. Handles opened before keep working: a KV
    /// handle names its stream, and the stream comes back as it was made.
    pub async fn restore(&self, js: &Context) -> Result<Vec<String>, NatsError> {
        let opened: Vec<kv::Config> = self.opened().values().cloned().collect();
        let mut restored = Vec::new();
        for config in opened {
            let name = config.bucket.clone();
            match js.get_stream(names::kv_stream(&name)).await {
                Ok(_) => continue,
                Err(e) if super::is_stream_not_found(&e) => {}
                Err(e) => return Err(NatsError::other(e)),
            }
            self.create(js, config).await?;
            tracing::warn!(kv = %name, "a jets3 KV bucket was gone: made again, empty");
            restored.push(name);
        }
        Ok(restored)
    }

    /// Creates KV bucket `config` with the replicas in force (or finds it made by another
    /// gateway meanwhile).
    async fn create(&self, js: &Context, mut config: kv::Config) -> Result<kv::Store, NatsError> {
        let name = config.bucket.clone();
        let replicas = self.get();
        config.num_replicas = replicas;
        let store = match js.create_key_value(config).await {
            Ok(s) => s,
            // Another gateway created it first.
            Err(_) => js
                .get_key_value(&name)
                .await
                .map_err(|e| NatsError::Other(e.to_string()))?,
        };
        // Raised while it was being created: a raise that looked before it existed missed it.
        if self.get() > replicas {
            raise_one(js, &name, self.get()).await?;
        }
        Ok(store)
    }

    /// Raises the KV buckets `kvs` to `replicas`, the most of `buckets` (never lowers
    /// them): those created from now on get it, and existing ones with fewer are updated.
    /// Then `buckets` count as counted.
    pub async fn raise(
        &self,
        js: &Context,
        kvs: &[&str],
        replicas: usize,
        buckets: Vec<String>,
    ) -> Result<(), NatsError> {
        if replicas > self.get() {
            self.0
                .replicas
                .fetch_max(replicas.clamp(1, 5), Ordering::Relaxed);
            for kv in kvs {
                raise_one(js, kv, self.get()).await?;
            }
        }
        self.counted().extend(buckets);
        Ok(())
    }
}

/// Gives KV bucket `kv` `replicas` if it exists with fewer. A cluster with too few servers
/// refuses the update; the bucket then stays as it is.
async fn raise_one(js: &Context, kv: &str, replicas: usize) -> Result<(), NatsError> {
    let stream = match js.get_stream(names::kv_stream(kv)).await {
        Ok(s) => s,
        Err(e) if super::is_stream_not_found(&e) => return Ok(()),
        Err(e) => return Err(NatsError::other(e)),
    };
    let mut config = stream.cached_info().config.clone();
    if config.num_replicas >= replicas {
        return Ok(());
    }
    config.num_replicas = replicas;
    match js.update_stream(config).await {
        Ok(_) => tracing::info!(kv, replicas, "raised the replicas of a KV bucket"),
        Err(e) => {
            tracing::warn!(kv, replicas, error = %e, "cannot raise the replicas of a KV bucket")
        }
    }
    Ok(())
}
