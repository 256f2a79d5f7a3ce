//! The jets3-gateway binary: flags, config file with reload, signals.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Parser;
use jets3_crds::GatewayConfig;
use jets3_gateway::cli::{Cli, LogFormat};
use jets3_gateway::{ConfigFile, GatewayHandle};
use tokio::signal::unix::{signal, SignalKind};

/// Reads the file and applies the flag overrides that belong to the config.
fn load(cli: &Cli) -> Result<ConfigFile, jets3_gateway::Error> {
    let mut file = ConfigFile::load(&cli.config)?;
    if let Some(r) = &cli.region {
        file.config.region = r.clone();
    }
    Ok(file)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn reload(cli: &Cli, gw: &GatewayHandle, current: &mut GatewayConfig) {
    match load(cli) {
        Ok(file) if file.config == *current => {}
        Ok(file) => match gw.set_config(file.config.clone()) {
            Ok(()) => {
                tracing::info!(path = %cli.config.display(), "config reloaded");
                *current = file.config;
            }
            Err(e) => tracing::error!(error = %e, "new config refused; the old one stays"),
        },
        Err(e) => tracing::error!(error = %e, "new config refused; the old one stays"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match load(&cli) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("jets3-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = cli.server_settings(file.server.clone());
    let json = matches!(cli.log_format, LogFormat::Json);
    let _telemetry =
        match jets3_gateway::telemetry::init(&cli.log, json, settings.otlp_endpoint.as_deref()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("jets3-gateway: {e}");
                return ExitCode::from(2);
            }
        };
    if let Err(e) = file.config.validate() {
        eprintln!("jets3-gateway: {}: {e}", cli.config.display());
        return ExitCode::from(2);
    }
    let mut current = file.config.clone();
    let gw = match jets3_gateway::start(settings, file.config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("jets3-gateway: {e}");
            return ExitCode::from(1);
        }
    };
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("jets3-gateway: cannot install signal handlers");
        return ExitCode::from(1);
    };
    let mut seen = stamp(&cli.config);
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading config");
                seen = stamp(&cli.config);
                reload(&cli, &gw, &mut current);
            }
            _ = poll.tick() => {
                let now = stamp(&cli.config);
                if now != seen {
                    seen = now;
                    reload(&cli, &gw, &mut current);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    gw.shutdown().await;
    ExitCode::SUCCESS
}
