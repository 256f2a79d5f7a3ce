//! The composition root: connects to NATS, builds the shared state, starts the background
//! tasks and the listeners, and shuts them down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use jets3_crds::GatewayConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::compiled::CompiledConfig;
use crate::config::settings::ServerSettings;
use crate::http::listener::CappedTcp;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::Store;
use crate::Error;

/// A running gateway.
pub struct GatewayHandle {
    gateway: Arc<AppState>,
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
    pub fn gateway(&self) -> Arc<AppState> {
        self.gateway.clone()
    }

    /// Drains for the drain period (serving, each response closing its connection), then
    /// stops accepting connections and waits for in-flight requests, up to the grace period.
    pub async fn shutdown(self) {
        if !self.drain.is_zero() {
            self.gateway.start_draining();
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
    let compiled = config.map(CompiledConfig::new).transpose()?;
    if settings.listen.is_empty() {
        return Err(Error::Config("no S3 listen address".into()));
    }
    let trusted = crate::limits::TrustedProxies::parse(&settings.trusted_proxies)
        .map_err(|e| Error::Config(format!("trustedProxies: {e}")))?;
    let problems = settings.collector.problems();
    if !problems.is_empty() {
        return Err(Error::Config(problems.join("; ")));
    }
    let store = Store::connect(&settings.nats, &settings.collector, &settings.cache).await?;
    let collector = crate::store::Collector::new(store.clone(), settings.collector.clone());
    let metrics = Metrics::new();
    let audit = settings
        .audit_log
        .as_deref()
        .map(|t| crate::audit::Audit::start(t, metrics.audit_dropped.clone()))
        .transpose()?;
    let (stop, stop_rx) = watch::channel(false);
    let cache =
        crate::cache::ObjectCache::new(&settings.cache, store.clone(), &metrics, stop_rx.clone());
    let gateway = Arc::new(AppState::new(
        store,
        metrics,
        crate::limits::Limiter::new(trusted),
        cache,
        audit,
        collector.stats(),
        settings.admin_token.clone(),
        settings.tls.is_some(),
    ));
    if let Some(compiled) = compiled {
        gateway.install(compiled);
    }
    let mut tasks = Vec::new();
    tokio::spawn(gateway.access.clone().watch(gateway.store.clone()));
    let conns = &settings.connections;
    let push_addr = match &settings.push {
        Some(push) => {
            let (addr, push_tasks) =
                crate::http::push::listen(push, conns, gateway.clone(), stop_rx.clone()).await?;
            tasks.extend(push_tasks);
            Some(addr)
        }
        None => None,
    };
    let mut s3_addrs = Vec::new();
    let app = crate::s3::api::router(gateway.clone());
    let tls = match &settings.tls {
        Some(t) => {
            let (cert, watch) = crate::http::tls::serving_cert(
                t.cert_file.clone(),
                t.key_file.clone(),
                stop_rx.clone(),
            )?;
            tasks.push(watch);
            let clients = t
                .client_ca_file
                .as_ref()
                .map(|ca| crate::http::tls::ClientCerts {
                    ca_file: ca.clone(),
                    required: t.client_auth == crate::config::settings::ClientAuth::Required,
                });
            Some(crate::http::tls::server_config(cert, clients.as_ref())?)
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
                .compiled()
                .map(|compiled| compiled.config.limits.timeouts.header_read_seconds);
            crate::http::listener::seconds(secs.unwrap_or(30))
        };
        tasks.push(match &tls {
            Some(config) => crate::http::listener::serve(
                crate::http::tls::TlsListener::new(listener, config.clone())?,
                app,
                header_timeout,
                stop,
            ),
            None => crate::http::listener::serve(listener, app, header_timeout, stop),
        });
    }
    let admin_addr = match settings.admin_listen {
        Some(addr) => {
            let listener = CappedTcp::new(TcpListener::bind(addr).await?, conns.admin);
            let local = listener.local_addr()?;
            let timeout = crate::http::listener::seconds(conns.header_read_seconds);
            tasks.push(crate::http::listener::serve(
                listener,
                crate::http::admin::router(gateway.clone()),
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
            gw.compiled()
                .map(|compiled| compiled.config.limits.multipart_expiry_seconds)
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

/// Keeps the NATS gauges current, and measures a JetStream round trip every fourth tick.
async fn watch_nats(gateway: Arc<AppState>, mut stop: watch::Receiver<bool>) {
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
