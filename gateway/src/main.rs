//! The jets3-gateway binary: flags, config file with reload (standalone) or config push
//! (Kubernetes mode), signals.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use jets3_crds::GatewayConfig;
use jets3_gateway::config::cli::{Cli, LogFormat};
use jets3_gateway::config::reload::{stamp, Stamp, POLL};
use jets3_gateway::{ConfigFile, GatewayHandle};
use tokio::signal::unix::{signal, SignalKind};

/// Reads the file and applies the flag overrides that belong to the config.
fn load(cli: &Cli, path: &Path) -> Result<ConfigFile, jets3_gateway::Error> {
    let mut file = ConfigFile::load(path)?;
    if let Some(r) = &cli.region {
        file.config.region = r.clone();
    }
    Ok(file)
}

/// The config file in force and the version of it last looked at.
struct Watched<'a> {
    path: &'a Path,
    seen: Option<Stamp>,
    current: GatewayConfig,
}

impl Watched<'_> {
    fn reload(&mut self, cli: &Cli, gw: &GatewayHandle) {
        self.seen = stamp(self.path);
        match load(cli, self.path) {
            Ok(file) if file.config == self.current => {}
            Ok(file) => match gw.set_config(file.config.clone()) {
                Ok(()) => {
                    tracing::info!(path = %self.path.display(), "config reloaded");
                    self.current = file.config;
                }
                Err(e) => tracing::error!(error = %e, "new config refused; the old one stays"),
            },
            Err(e) => tracing::error!(error = %e, "new config refused; the old one stays"),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match cli.config.as_deref().map(|p| load(&cli, p)).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("jets3-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if let (Some(path), Some(Err(e))) = (&cli.config, file.as_ref().map(|f| f.config.validate())) {
        eprintln!("jets3-gateway: {}: {e}", path.display());
        return ExitCode::from(2);
    }
    let settings = match cli.server_settings(file.as_ref().and_then(|f| f.server.clone())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jets3-gateway: {e}");
            return ExitCode::from(2);
        }
    };
    let json = matches!(cli.log_format, LogFormat::Json);
    let _telemetry =
        match jets3_gateway::telemetry::init(&cli.log, json, settings.otlp_endpoint.as_deref()) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("jets3-gateway: {e}");
                return ExitCode::from(2);
            }
        };
    if file.is_none() && settings.push.is_none() {
        eprintln!(
            "jets3-gateway: give --config FILE (standalone) or --push-listen ADDR (Kubernetes mode)"
        );
        return ExitCode::from(2);
    }
    let config = file.map(|f| f.config);
    let mut watched = cli
        .config
        .as_deref()
        .zip(config.clone())
        .map(|(path, current)| Watched {
            path,
            seen: stamp(path),
            current,
        });
    let gw = match jets3_gateway::start(settings, config).await {
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
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Some(w) = watched.as_mut() {
                    tracing::info!("SIGHUP: reloading config");
                    w.reload(&cli, &gw);
                }
            }
            _ = poll.tick() => {
                if let Some(w) = watched.as_mut().filter(|w| stamp(w.path) != w.seen) {
                    w.reload(&cli, &gw);
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
