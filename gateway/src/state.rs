//! The state every request shares ([`AppState`]) and the swap of the config in force.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use jets3_crds::GatewayConfig;

use crate::config::compiled::CompiledConfig;
use crate::metrics::Metrics;
use crate::store::{BucketOptions, Store};
use crate::Error;

/// State shared by every request.
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    /// Rate limits and admission control.
    pub limits: crate::limits::Limiter,
    /// The circuit breaker around NATS.
    pub breaker: crate::breaker::Breaker,
    /// Small hot objects of buckets that opt in.
    pub cache: crate::cache::ObjectCache,
    /// The audit log, when one is configured.
    pub audit: Option<crate::audit::Audit>,
    /// What the collector of retired versions has done (for metrics).
    pub collector: Arc<crate::store::CollectorStats>,
    /// Bucket ACLs, policies and Block Public Access set over S3, as last read from NATS.
    pub access: Arc<crate::access::state::Cache>,
    /// The S3 listeners serve TLS (`aws:SecureTransport`).
    pub tls: bool,
    /// The admin API token (`/cache/purge`), when one is configured.
    pub admin_token: Option<String>,
    compiled: ArcSwapOption<CompiledConfig>,
    /// Serializes config changes (readers never wait: they load `compiled`).
    writer: Mutex<()>,
    /// Set when shutdown begins with a drain period: every response closes its connection.
    draining: AtomicBool,
}

/// A pushed config that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Swapped in.
    Applied,
    /// The gateway already held this generation with this hash.
    Unchanged,
}

/// Why a pushed config was refused; the config in force stays.
#[derive(Debug)]
pub enum PushRefused {
    /// Older than the config held, or the same generation with other content.
    Stale {
        generation: u64,
        hash: String,
    },
    /// More than [`jets3_crds::MAX_GENERATION_STEP`] ahead of the generation held (none: 0).
    OutOfRange {
        held: Option<u64>,
        max: u64,
    },
    Invalid(jets3_crds::ValidationErrors),
}

impl AppState {
    /// The config in force; `None` until one has been received.
    pub fn compiled(&self) -> Option<Arc<CompiledConfig>> {
        self.compiled.load_full()
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates and swaps in a config from a file or the embedding program. An invalid
    /// or older one is refused and the config in force stays.
    pub fn set_config(self: &Arc<Self>, config: GatewayConfig) -> Result<(), Error> {
        let _writer = self.write_lock();
        if let Some(current) = self.compiled() {
            if config.generation < current.config.generation {
                self.metrics.config_rejected.inc();
                return Err(Error::Config(format!(
                    "generation {} is older than the one in force ({})",
                    config.generation, current.config.generation
                )));
            }
        }
        let compiled =
            CompiledConfig::new(config).inspect_err(|_| self.metrics.config_rejected.inc())?;
        self.install(compiled);
        Ok(())
    }

    /// Applies a pushed config whose content hash is `hash`: a newer generation is
    /// validated and swapped in, the generation and hash held already is a no-op, anything
    /// else is stale.
    pub fn push_config(
        self: &Arc<Self>,
        config: GatewayConfig,
        hash: &str,
    ) -> Result<Pushed, PushRefused> {
        let _writer = self.write_lock();
        let held = self.compiled().map(|r| r.config.generation);
        let max = held
            .unwrap_or(0)
            .saturating_add(jets3_crds::MAX_GENERATION_STEP);
        if config.generation > max {
            self.metrics.config_rejected.inc();
            return Err(PushRefused::OutOfRange { held, max });
        }
        if let Some(held) = self.compiled() {
            let generation = held.config.generation;
            if config.generation == generation && hash == held.hash {
                return Ok(Pushed::Unchanged);
            }
            if config.generation <= generation {
                return Err(PushRefused::Stale {
                    generation,
                    hash: held.hash.clone(),
                });
            }
        }
        let compiled = CompiledConfig::new(config).map_err(|e| {
            self.metrics.config_rejected.inc();
            PushRefused::Invalid(e)
        })?;
        self.install(compiled);
        Ok(Pushed::Applied)
    }

    /// Swaps in a compiled config; requests already running keep the one they started with.
    pub(crate) fn install(self: &Arc<Self>, compiled: CompiledConfig) {
        self.metrics
            .config_generation
            .set(compiled.config.generation as i64);
        tracing::info!(
            generation = compiled.config.generation,
            hash = %compiled.hash,
            buckets = compiled.config.buckets.len(),
            credentials = compiled.config.credentials.len(),
            "config in force"
        );
        self.compiled.store(Some(Arc::new(compiled)));
        spawn_bucket_creation(self.clone());
    }

    /// The shared state around a connected store, with no config in force yet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: Store,
        metrics: Metrics,
        limits: crate::limits::Limiter,
        cache: crate::cache::ObjectCache,
        audit: Option<crate::audit::Audit>,
        collector: Arc<crate::store::CollectorStats>,
        admin_token: Option<String>,
        tls: bool,
    ) -> Self {
        AppState {
            cache,
            admin_token,
            audit,
            collector,
            access: Default::default(),
            tls,
            store,
            metrics,
            limits,
            breaker: Default::default(),
            compiled: ArcSwapOption::empty(),
            writer: Mutex::new(()),
            draining: AtomicBool::new(false),
        }
    }

    /// Starts draining: every response closes its connection.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown is draining connections (see `shutdown_drain_seconds`).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready: a config is in force, NATS answers and the circuit is closed.
    pub async fn ready(&self) -> bool {
        self.compiled().is_some() && self.store.ping().await && !self.breaker.is_open()
    }
}

/// Creates the NATS buckets the config marks `create: true`, retrying until NATS is up,
/// then gives jets3's own KV buckets as many replicas as the most replicated bucket.
fn spawn_bucket_creation(gateway: Arc<AppState>) {
    tokio::spawn(async move {
        let Some(compiled) = gateway.compiled() else {
            return;
        };
        for b in compiled.config.buckets.iter().filter(|b| b.create) {
            let opts = BucketOptions {
                memory: b.storage == jets3_crds::StorageKind::Memory,
                replicas: b.replicas as usize,
            };
            for attempt in 0u32.. {
                match gateway
                    .store
                    .create_bucket(&b.nats_name(), &opts, None, Default::default())
                    .await
                {
                    Ok(created) => {
                        if created {
                            tracing::info!(bucket = %b.name, "created bucket");
                        }
                        break;
                    }
                    Err(e) => {
                        if attempt % 10 == 0 {
                            tracing::warn!(bucket = %b.name, error = %e, "cannot create bucket yet");
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
        for attempt in 0u32.. {
            let buckets = compiled.config.buckets.iter().map(|b| b.nats_name());
            match gateway.store.raise_internal_replicas(buckets).await {
                Ok(()) => break,
                Err(e) => {
                    if attempt % 10 == 0 {
                        tracing::warn!(error = %e, "cannot check the KV buckets' replicas yet");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
}
