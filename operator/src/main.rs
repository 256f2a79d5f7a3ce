//! The `jets3-operator` binary: flags, logging, signals, leader election, then the
//! controllers (see the library docs).

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::FutureExt;
use jets3_crds::AuditSettings;
use jets3_operator::admin::{self, Admin};
use jets3_operator::cli::{Cli, LogFormat};
use jets3_operator::context::Settings;
use jets3_operator::controller;
use jets3_operator::hub::Hub;
use jets3_operator::leader::{Elector, LeaseSettings};
use jets3_operator::metrics::Metrics;
use jets3_operator::model::gateway_config::GatewayWide;
use jets3_operator::nats::Nats;
use jets3_operator::{Error, Result};
use tokio::signal::unix::{signal, SignalKind};

/// How long running reconciles get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt().with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT.
async fn terminated() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

async fn run(cli: Cli) -> Result<()> {
    let region_only = jets3_crds::GatewayConfig {
        region: cli.region.clone(),
        ..Default::default()
    };
    region_only
        .validate()
        .map_err(|e| Error::Config(format!("--region {:?}: {e}", cli.region)))?;
    let client = kube::Client::try_default().await?;
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let instance = cli.pod_name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let push = cli.push_settings(&namespace)?;
    let metrics = Metrics::new();
    let hub = Arc::new(Hub::default());
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        hub: hub.clone(),
        leading: AtomicBool::new(false),
    });
    let server = admin::serve(cli.metrics_listen, admin.clone())
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", cli.metrics_listen)))?;
    tokio::spawn(server);
    let debug = admin::serve_debug(cli.debug_listen, admin.clone())
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", cli.debug_listen)))?;
    tokio::spawn(debug);
    controller::check_crds(&client, &cli.watch_namespaces).await?;

    let nats = Nats::connect(&cli.nats.settings()).await?;
    tokio::spawn({
        let (nats, metrics) = (nats.clone(), metrics.clone());
        async move {
            loop {
                metrics.nats_connected.set(nats.connected().into());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });

    let mut terminated = std::pin::pin!(terminated().shared());
    let mut elector = cli.leader_election.then(|| {
        Elector::new(
            client.clone(),
            LeaseSettings {
                name: cli.lease_name.clone(),
                namespace: namespace.clone(),
                identity: instance.clone(),
                duration: cli.lease_duration,
            },
        )
    });
    if let Some(e) = elector.as_mut() {
        tracing::info!(lease = %cli.lease_name, %namespace, identity = %instance, "waiting for the leader Lease");
        tokio::select! {
            _ = e.acquire() => {},
            _ = terminated.as_mut() => return Ok(()),
        }
    }
    admin.set_leading(true);

    let settings = Settings {
        endpoint: cli.gateway_endpoint.clone(),
        region: cli.region.clone(),
        gateway: GatewayWide {
            limits: cli.gateway_limits.clone().unwrap_or_default(),
            audit: AuditSettings {
                reads: cli.audit_reads,
            },
            public_access_block: cli.public_access_block_default.unwrap_or_default(),
        },
        resync: cli.resync_interval,
        delete_timeout: cli.delete_timeout,
        namespace,
        instance,
        watch_namespaces: cli.watch_namespaces.clone(),
        adopt_across_namespaces: cli.adopt_across_namespaces.clone(),
        config_state: cli.config_state.clone(),
        config_file: cli.config_file.clone(),
        push,
    };
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let shutdown = controller::shutdown_on(stopped.map(drop));
    let mut operator = std::pin::pin!(controller::run(
        client, nats, metrics, settings, hub, shutdown
    ));
    let lost = async {
        match elector.as_mut() {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        r = operator.as_mut() => r,
        _ = lost => Err(Error::Config("lost the leader Lease; exiting so that only one replica acts".into())),
        _ = terminated.as_mut() => {
            tracing::info!("shutting down: letting running reconciles finish");
            let _ = stop.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, operator.as_mut()).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("reconciles still running after the grace period; stopping anyway");
                    Ok(())
                }
            }
        }
    };
    admin.set_leading(false);
    if let Some(e) = elector.as_mut() {
        e.release().await;
    }
    result
}
