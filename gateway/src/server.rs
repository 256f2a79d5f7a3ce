//! The running gateway: shared state, listeners, admin endpoints and shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::Listener;
use axum::Router;
use http::StatusCode;
use jets3_crds::GatewayConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::listener::CappedTcp;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::settings::ServerSettings;
use crate::store::{BucketOptions, Store};
use crate::Error;

/// State shared by every request.
pub struct Gateway {
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
    admin_token: Option<String>,
    runtime: ArcSwapOption<Runtime>,
    /// Serializes config changes (readers never wait: they load `runtime`).
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

impl Gateway {
    /// The config in force; `None` until one has been received.
    pub fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime.load_full()
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Validates and swaps in a config from a file or the embedding program. An invalid
    /// or older one is refused and the config in force stays.
    pub fn set_config(self: &Arc<Self>, config: GatewayConfig) -> Result<(), Error> {
        let _writer = self.write_lock();
        if let Some(current) = self.runtime() {
            if config.generation < current.config.generation {
                self.metrics.config_rejected.inc();
                return Err(Error::Config(format!(
                    "generation {} is older than the one in force ({})",
                    config.generation, current.config.generation
                )));
            }
        }
        let runtime = Runtime::new(config).inspect_err(|_| self.metrics.config_rejected.inc())?;
        self.install(runtime);
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
        let held = self.runtime().map(|r| r.config.generation);
        let max = held
            .unwrap_or(0)
            .saturating_add(jets3_crds::MAX_GENERATION_STEP);
        if config.generation > max {
            self.metrics.config_rejected.inc();
            return Err(PushRefused::OutOfRange { held, max });
        }
        if let Some(held) = self.runtime() {
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
        let runtime = Runtime::new(config).map_err(|e| {
            self.metrics.config_rejected.inc();
            PushRefused::Invalid(e)
        })?;
        self.install(runtime);
        Ok(Pushed::Applied)
    }

    /// Swaps in a compiled config; requests already running keep the one they started with.
    fn install(self: &Arc<Self>, runtime: Runtime) {
        self.metrics
            .config_generation
            .set(runtime.config.generation as i64);
        tracing::info!(
            generation = runtime.config.generation,
            hash = %runtime.hash,
            buckets = runtime.config.buckets.len(),
            credentials = runtime.config.credentials.len(),
            "config in force"
        );
        self.runtime.store(Some(Arc::new(runtime)));
        spawn_bucket_creation(self.clone());
    }

    /// Whether shutdown is draining connections (see `shutdown_drain_seconds`).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready: a config is in force, NATS answers and the circuit is closed.
    pub async fn ready(&self) -> bool {
        self.runtime().is_some() && self.store.ping().await && !self.breaker.is_open()
    }
}

/// A running gateway.
pub struct GatewayHandle {
    gateway: Arc<Gateway>,
    s3_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    push_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    grace: Duration,
    drain: Duration,
}

impl GatewayHandle {
    /// The first S3 listener's address (useful with port 0).
    pub fn s3_addr(&self) -> SocketAddr {
        self.s3_addrs[0]
    }

    /// All S3 listener addresses.
    pub fn s3_addrs(&self) -> &[SocketAddr] {
        &self.s3_addrs
    }

    /// The admin listener's address, if one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The config push listener's address, if one is configured.
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.push_addr
    }

    /// Validates and swaps in a new config; on error the old one stays.
    pub fn set_config(&self, config: GatewayConfig) -> Result<(), Error> {
        self.gateway.set_config(config)
    }

    /// The shared state (for the admin push channel and tests).
    pub fn gateway(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// Drains for the drain period (serving, each response closing its connection), then
    /// stops accepting connections and waits for in-flight requests, up to the grace period.
    pub async fn shutdown(self) {
        if !self.drain.is_zero() {
            self.gateway.draining.store(true, Ordering::Relaxed);
            tracing::info!(
                seconds = self.drain.as_secs(),
                "draining: every response closes its connection"
            );
            tokio::time::sleep(self.drain).await;
        }
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!("shutdown grace period over; dropping remaining requests");
        }
    }
}

/// Connects to NATS and starts serving: with `config` in force, or (Kubernetes mode) with
/// none until one is pushed, answering S3 requests with 503 until then.
pub async fn start(
    settings: ServerSettings,
    config: Option<GatewayConfig>,
) -> Result<GatewayHandle, Error> {
    let runtime = config.map(Runtime::new).transpose()?;
    if settings.listen.is_empty() {
        return Err(Error::Config("no S3 listen address".into()));
    }
    let trusted = crate::limits::TrustedProxies::parse(&settings.trusted_proxies)
        .map_err(|e| Error::Config(format!("trustedProxies: {e}")))?;
    let problems = settings.collector.problems();
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    let store = Store::connect(&settings.nats, &settings.collector).await?;
    let collector = crate::store::Collector::new(store.clone(), settings.collector.clone());
    let metrics = Metrics::new();
    let audit = settings
        .audit_log
        .as_deref()
        .map(|t| crate::audit::Audit::start(t, metrics.audit_dropped.clone()))
        .transpose()?;
    let (stop, stop_rx) = watch::channel(false);
    let gateway = Arc::new(Gateway {
        cache: crate::cache::ObjectCache::new(
            &settings.cache,
            store.clone(),
            &metrics,
            stop_rx.clone(),
        ),
        admin_token: settings.admin_token.clone(),
        audit,
        collector: collector.stats(),
        access: Default::default(),
        tls: settings.tls.is_some(),
        store,
        metrics,
        limits: crate::limits::Limiter::new(trusted),
        breaker: Default::default(),
        runtime: ArcSwapOption::empty(),
        writer: Mutex::new(()),
        draining: AtomicBool::new(false),
    });
    if let Some(runtime) = runtime {
        gateway.install(runtime);
    }
    let mut tasks = Vec::new();
    tokio::spawn(gateway.access.clone().watch(gateway.store.clone()));
    let conns = &settings.connections;
    let push_addr = match &settings.push {
        Some(push) => {
            let (addr, push_tasks) =
                crate::push::listen(push, conns, gateway.clone(), stop_rx.clone()).await?;
            tasks.extend(push_tasks);
            Some(addr)
        }
        None => None,
    };
    let mut s3_addrs = Vec::new();
    let app = crate::dispatch::router(gateway.clone());
    let tls = match &settings.tls {
        Some(t) => {
            let (cert, watch) =
                crate::tls::serving_cert(t.cert_file.clone(), t.key_file.clone(), stop_rx.clone())?;
            tasks.push(watch);
            let clients = t.client_ca_file.as_ref().map(|ca| crate::tls::ClientCerts {
                ca_file: ca.clone(),
                required: t.client_auth == crate::settings::ClientAuth::Required,
            });
            Some(crate::tls::server_config(cert, clients.as_ref())?)
        }
        None => None,
    };
    for addr in &settings.listen {
        let listener = CappedTcp::new(TcpListener::bind(addr).await?, conns.s3);
        s3_addrs.push(listener.local_addr()?);
        let (app, gw, stop) = (app.clone(), gateway.clone(), stop_rx.clone());
        // The config in force sets the S3 header timeout of each new connection.
        let header_timeout = move || {
            let secs = gw
                .runtime()
                .map(|rt| rt.config.limits.timeouts.header_read_seconds);
            crate::listener::seconds(secs.unwrap_or(30))
        };
        tasks.push(match &tls {
            Some(config) => crate::listener::serve(
                crate::tls::TlsListener::new(listener, config.clone())?,
                app,
                header_timeout,
                stop,
            ),
            None => crate::listener::serve(listener, app, header_timeout, stop),
        });
    }
    let admin_addr = match settings.admin_listen {
        Some(addr) => {
            let listener = CappedTcp::new(TcpListener::bind(addr).await?, conns.admin);
            let local = listener.local_addr()?;
            let timeout = crate::listener::seconds(conns.header_read_seconds);
            tasks.push(crate::listener::serve(
                listener,
                admin_router(gateway.clone()),
                move || timeout,
                stop_rx.clone(),
            ));
            Some(local)
        }
        None => None,
    };
    tasks.push(tokio::spawn(watch_nats(gateway.clone(), stop_rx.clone())));
    if settings.collector.enabled {
        let gw = gateway.clone();
        let expiry = move || {
            gw.runtime()
                .map(|rt| rt.config.limits.multipart_expiry_seconds)
        };
        tasks.push(tokio::spawn(collector.run(expiry, stop_rx.clone())));
    }
    tracing::info!(s3 = ?s3_addrs, admin = ?admin_addr, push = ?push_addr, "jets3-gateway listening");
    Ok(GatewayHandle {
        gateway,
        s3_addrs,
        admin_addr,
        push_addr,
        stop,
        tasks,
        grace: Duration::from_secs(settings.shutdown_grace_seconds),
        drain: Duration::from_secs(settings.shutdown_drain_seconds),
    })
}

/// Creates the NATS buckets the config marks `create: true`, retrying until NATS is up.
fn spawn_bucket_creation(gateway: Arc<Gateway>) {
    tokio::spawn(async move {
        let Some(rt) = gateway.runtime() else { return };
        for b in rt.config.buckets.iter().filter(|b| b.create) {
            let opts = BucketOptions {
                memory: b.storage == jets3_crds::StorageKind::Memory,
                replicas: b.replicas as usize,
            };
            for attempt in 0u32.. {
                match gateway
                    .store
                    .create_bucket(&b.nats_name(), &opts, None)
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
    });
}

/// Keeps the NATS gauges current, and measures a JetStream round trip every fourth tick.
async fn watch_nats(gateway: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let m = &gateway.metrics;
        m.nats_connected.set(gateway.store.connected() as i64);
        m.nats_connects.set(gateway.store.connects() as i64);
        if n % 4 == 0 {
            let started = std::time::Instant::now();
            if gateway.store.ping().await {
                m.nats_rtt.observe(started.elapsed().as_secs_f64());
            }
        }
    }
}

fn admin_router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/cache/purge", axum::routing::post(purge_cache))
        .with_state(gateway)
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down\n").into_response();
    }
    if gw.runtime().is_none() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no config yet\n").into_response();
    }
    if !gw.store.ping().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "NATS unreachable\n").into_response();
    }
    if gw.breaker.is_open() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "NATS circuit open: requests fail fast\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    gw.metrics.sync_store(gw.store.stats(), &gw.collector);
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
        .into_response()
}

/// `POST /cache/purge?bucket=<name>&prefix=<p>` or `&key=<k>` (no bucket: everything),
/// with `Authorization: Bearer <adminToken>`; off without an admin token.
async fn purge_cache(
    State(gw): State<Arc<Gateway>>,
    headers: http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(token) = gw.admin_token.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "cache purge is off: set server.adminToken\n",
        )
            .into_response();
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::auth::ct_eq(given.as_bytes(), token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            "a valid admin token is required\n",
        )
            .into_response();
    }
    let nats = match q.get("bucket") {
        Some(b) => match gw.runtime().map(|rt| rt.bucket(b)) {
            Some(Ok(r)) => Some(r.nats),
            _ => return (StatusCode::BAD_REQUEST, "invalid bucket name\n").into_response(),
        },
        None => None,
    };
    let purged = gw.cache.purge(
        nats.as_deref(),
        q.get("prefix").map(String::as_str),
        q.get("key").map(String::as_str),
    );
    tracing::info!(bucket = ?q.get("bucket"), prefix = ?q.get("prefix"), key = ?q.get("key"), purged, "cache purged");
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        format!("{{\"purged\":{purged}}}\n"),
    )
        .into_response()
}
