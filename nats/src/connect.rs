//! Connecting: the options the gateway and the operator share, and the settings' servers,
//! authentication and TLS applied to them.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr};

use crate::NatsSettings;

/// Why no client came out of [`connect`].
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no NATS server configured")]
    NoServer,
    #[error("bad NATS server URL: {0}")]
    BadServerUrl(String),
    #[error("{}: {source}", path.display())]
    CredsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Connect(#[from] async_nats::ConnectError),
}

/// The client options every jets3 process starts from: named `name`, it retries the first
/// connect and reconnects forever in the background (NATS not up yet is no reason to stop),
/// waiting 100 ms doubling up to 2 s between attempts.
pub fn options(name: &str) -> ConnectOptions {
    ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay)
}

/// The wait before reconnect attempt `attempts`.
fn reconnect_delay(attempts: usize) -> Duration {
    Duration::from_millis((100 * 2u64.pow(attempts.min(5) as u32)).min(2000))
}

/// Connects to the settings' servers with `options` plus the settings' authentication and
/// TLS.
pub async fn connect(
    settings: &NatsSettings,
    mut options: ConnectOptions,
) -> Result<Client, ConnectError> {
    if let (Some(u), Some(p)) = (&settings.user, &settings.password) {
        options = options.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &settings.token {
        options = options.token(t.clone());
    }
    if let Some(seed) = &settings.nkey_seed {
        options = options.nkey(seed.clone());
    }
    if let Some(path) = &settings.creds_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConnectError::CredsFile {
                    path: path.clone(),
                    source,
                })?;
    }
    if let Some(ca) = &settings.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if settings.tls_required {
        options = options.require_tls(true);
    }
    let servers: Vec<ServerAddr> = settings
        .servers
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .map_err(|e: std::io::Error| ConnectError::BadServerUrl(e.to_string()))?;
    if servers.is_empty() {
        return Err(ConnectError::NoServer);
    }
    Ok(options.connect(servers).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_backoff_doubles_to_two_seconds() {
        let waits: Vec<u64> = (0..8)
            .map(|a| reconnect_delay(a).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    }

    #[tokio::test]
    async fn refuses_settings_without_a_usable_server() {
        let none = NatsSettings::default();
        assert!(matches!(
            connect(&none, options("t")).await,
            Err(ConnectError::NoServer)
        ));
        let bad = NatsSettings {
            servers: vec!["nats://[::1".into()],
            ..Default::default()
        };
        assert!(matches!(
            connect(&bad, options("t")).await,
            Err(ConnectError::BadServerUrl(_))
        ));
    }
}
