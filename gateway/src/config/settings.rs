//! Process settings (listeners, NATS connection) and the standalone config file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use jets3_nats::NatsSettings;

use jets3_crds::GatewayConfig;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Listener and connection settings: fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerSettings {
    /// S3 listeners.
    pub listen: Vec<SocketAddr>,
    /// Listener for `/healthz`, `/readyz` and `/metrics`.
    pub admin_listen: Option<SocketAddr>,
    pub nats: NatsSettings,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace_seconds: u64,
    /// Seconds the gateway keeps serving after SIGTERM before it stops accepting, answering
    /// every request with `Connection: close` and `/readyz` with 503: keep-alive clients move
    /// to other gateways on a response, not on a connection closed under a request (0: none).
    pub shutdown_drain_seconds: u64,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the client, for per-address limits
    /// and bucket IP filters.
    pub trusted_proxies: Vec<String>,
    /// The object cache's limits (buckets opt in with `cache` in their settings).
    pub cache: CacheSettings,
    /// Bearer token that `POST /cache/purge` on the admin listener requires; without one
    /// the endpoint is off.
    pub admin_token: Option<String>,
    /// Audit log: `stdout`, `stderr` or a file path; none when unset.
    pub audit_log: Option<String>,
    /// OpenTelemetry collector for traces (OTLP/HTTP, e.g. `http://collector:4318`); needs a
    /// build with the `otel` feature.
    pub otlp_endpoint: Option<String>,
    /// The config push listener (Kubernetes mode); none in standalone mode.
    pub push: Option<PushSettings>,
    /// HTTPS on the S3 listeners (and optionally client certificates); plain HTTP without.
    pub tls: Option<ListenerTls>,
    /// The collector of retired versions and orphan chunks.
    pub collector: CollectorSettings,
    /// Open connections per listener, and the admin and push listeners' header timeout.
    pub connections: ConnectionLimits,
}

/// When retired versions and orphan chunks are removed (see the store's module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CollectorSettings {
    /// Run collector passes (one gateway at a time does); off only for debugging.
    pub enabled: bool,
    /// Time between passes.
    pub interval_seconds: u64,
    /// How long a replaced or deleted version stays readable (reads that take longer hold
    /// it through a read registration).
    pub grace_seconds: u64,
    /// Chunks that no version, part or upload references are retired once their last
    /// write is this old; a write never pauses half this long.
    pub orphan_after_seconds: u64,
    /// Time between scans for orphan chunks (each reads every bucket's metadata).
    pub scan_interval_seconds: u64,
    /// Versions purged at most per pass.
    pub max_purges_per_pass: usize,
    /// How long a completed multipart upload answers a repeated CompleteMultipartUpload
    /// with its result (S3 documents no such window; SDKs retry within seconds).
    pub completed_upload_seconds: u64,
    /// Time between listing snapshots of each bucket; at most a quarter of
    /// `orphanAfterSeconds` is used. 0: this gateway neither writes nor reads snapshots (it
    /// replays each bucket it lists).
    pub snapshot_interval_seconds: u64,
    /// Buckets with fewer NATS subjects than this (about two per object) get no snapshot.
    pub snapshot_min_subjects: u64,
    /// Changed keys a snapshot writer holds in memory at once (more are merged from sorted
    /// runs stored in NATS).
    pub snapshot_batch_keys: usize,
    /// Objects whose chunk references one scan pass holds (8 bytes each); a bucket with
    /// more NATS subjects is scanned in several passes over its metadata.
    pub scan_batch_objects: u64,
}

impl Default for CollectorSettings {
    fn default() -> Self {
        CollectorSettings {
            enabled: true,
            interval_seconds: 5,
            grace_seconds: 30,
            orphan_after_seconds: 3600,
            scan_interval_seconds: 600,
            max_purges_per_pass: 1000,
            completed_upload_seconds: 3600,
            snapshot_interval_seconds: 300,
            snapshot_min_subjects: 20_000,
            snapshot_batch_keys: 200_000,
            scan_batch_objects: 4_000_000,
        }
    }
}

impl CollectorSettings {
    /// Every problem with these settings.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.interval_seconds == 0 {
            out.push("collector.intervalSeconds must be at least 1".to_string());
        }
        if self.grace_seconds == 0 {
            out.push("collector.graceSeconds must be at least 1".to_string());
        }
        if self.orphan_after_seconds < 2 {
            out.push("collector.orphanAfterSeconds must be at least 2".to_string());
        }
        if self.scan_interval_seconds == 0 {
            out.push("collector.scanIntervalSeconds must be at least 1".to_string());
        }
        if self.max_purges_per_pass == 0 {
            out.push("collector.maxPurgesPerPass must be at least 1".to_string());
        }
        if self.scan_batch_objects == 0 {
            out.push("collector.scanBatchObjects must be at least 1".to_string());
        }
        if self.snapshot_batch_keys == 0 {
            out.push("collector.snapshotBatchKeys must be at least 1".to_string());
        }
        out
    }

    /// Time between listing snapshots; `None` when they are off.
    pub fn snapshot_interval(&self) -> Option<std::time::Duration> {
        let quarter = self.orphan_after_seconds / 4;
        match self.snapshot_interval_seconds {
            0 => None,
            n => Some(std::time::Duration::from_secs(n.min(quarter).max(1))),
        }
    }
}

/// What slow or idle clients may hold: open connections per listener (past the cap new
/// ones wait in the kernel's backlog) and, on the admin and push listeners, the time to
/// send a request's headers (also the idle keep-alive limit). The S3 listeners' header
/// timeout is `limits.timeouts.headerReadSeconds` of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Open connections per S3 listener; 0 for no cap.
    pub s3: usize,
    /// Open connections on the admin listener; 0 for no cap.
    pub admin: usize,
    /// Open connections on the push listener; 0 for no cap.
    pub push: usize,
    /// Seconds the admin and push listeners wait for a request's headers; 0 turns it off.
    pub header_read_seconds: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            s3: 4096,
            admin: 64,
            push: 64,
            header_read_seconds: 10,
        }
    }
}

/// TLS of the S3 listeners: certificate and key re-read when they change, and optional
/// mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to: turns on mutual TLS.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// With a client CA: `required` (default) refuses clients without a certificate,
    /// `optional` checks only the certificates that are given.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Required,
    Optional,
}

/// Limits of the in-memory object cache; `maxBytes: 0` turns it off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Memory for cached objects, in bytes.
    pub max_bytes: u64,
    /// Objects cached at most.
    pub max_entries: usize,
    /// Largest object cached (a bucket's own `cache.maxObjectBytes` may lower it).
    pub max_object_bytes: u64,
    /// Memory for listing snapshot pages, in bytes, across buckets.
    pub index_pages_bytes: u64,
    /// A bucket without a usable listing snapshot is replayed into memory (about 270 bytes
    /// per object) only if it has at most this many NATS subjects; a larger one answers
    /// listings with 503 until the collector has written its snapshot. 0: no limit. Never
    /// below `collector.snapshotMinSubjects` (smaller buckets get no snapshot), and not
    /// applied when snapshots are off (every index then replays).
    pub replay_max_subjects: u64,
    /// Memory for the bytes of small objects read recently, kept by their chunks' identity
    /// and served after the key's lookup (so never stale); 0 turns it off.
    pub small_reads_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            max_bytes: 64 << 20,
            max_entries: 10_000,
            max_object_bytes: 1 << 20,
            index_pages_bytes: 64 << 20,
            replay_max_subjects: 2_000_000,
            small_reads_bytes: 32 << 20,
        }
    }
}

/// The `aud` the gateway expects in push tokens unless told otherwise.
pub const DEFAULT_PUSH_AUDIENCE: &str = "jets3-gateway";
/// The `iss` the gateway expects in push tokens unless told otherwise.
pub const DEFAULT_PUSH_ISSUER: &str = "jets3-operator";

/// The listener the operator pushes configs to, and how pushes are authenticated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushSettings {
    pub listen: SocketAddr,
    /// Serving certificate chain and key (PEM), re-read when they change.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Plain HTTP instead of TLS (local runs only).
    #[serde(default)]
    pub insecure: bool,
    /// The operator's ES256 public key: a `PUBLIC KEY` or a `CERTIFICATE` PEM holding it.
    pub verify_key_file: PathBuf,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
}

fn default_audience() -> String {
    DEFAULT_PUSH_AUDIENCE.into()
}

fn default_issuer() -> String {
    DEFAULT_PUSH_ISSUER.into()
}

impl PushSettings {
    /// The TLS certificate and key files, or `None` for plain HTTP; refuses a half or
    /// contradictory setup.
    pub fn tls_files(&self) -> Result<Option<(PathBuf, PathBuf)>, Error> {
        match (&self.tls_cert_file, &self.tls_key_file, self.insecure) {
            (None, None, true) => Ok(None),
            (Some(c), Some(k), false) => Ok(Some((c.clone(), k.clone()))),
            (_, _, true) => Err(Error::Config(
                "push: a TLS certificate and --push-insecure exclude each other".into(),
            )),
            _ => Err(Error::Config(
                "push: TLS needs both a certificate and a key (--push-tls-cert, --push-tls-key); plain HTTP needs --push-insecure".into(),
            )),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 9000))],
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9001))),
            nats: NatsSettings {
                servers: vec!["nats://127.0.0.1:4222".into()],
                ..Default::default()
            },
            shutdown_grace_seconds: 30,
            shutdown_drain_seconds: 0,
            trusted_proxies: Vec::new(),
            cache: CacheSettings::default(),
            admin_token: None,
            audit_log: None,
            otlp_endpoint: None,
            push: None,
            tls: None,
            collector: CollectorSettings::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

/// The standalone YAML file: an optional `server:` section plus the `GatewayConfig` fields.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub server: Option<ServerSettings>,
    pub config: GatewayConfig,
}

impl ConfigFile {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<ConfigFile, Error> {
        let mut value: serde_yaml::Value =
            serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let server = if value.is_null() {
            None
        } else {
            match value.as_mapping_mut() {
                Some(map) => map.remove("server"),
                None => return Err(Error::Config("the file must hold a mapping".into())),
            }
        };
        let server = server
            .map(serde_yaml::from_value::<ServerSettings>)
            .transpose()
            .map_err(|e| Error::Config(format!("server: {e}")))?;
        let config = if value.is_null() {
            GatewayConfig::default()
        } else {
            serde_yaml::from_value(value).map_err(|e| Error::Config(e.to_string()))?
        };
        Ok(ConfigFile { server, config })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Self::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_section_and_config() {
        let f = ConfigFile::parse(
            "server:\n  listen: ['127.0.0.1:9100']\n  nats:\n    servers: ['nats://h:4222']\n    token: t\nregion: eu-west-1\nbuckets: [{name: demo}]\n",
        )
        .expect("parses");
        let s = f.server.expect("server");
        assert_eq!(s.listen[0].port(), 9100);
        assert_eq!(s.nats.token.as_deref(), Some("t"));
        assert_eq!(f.config.region, "eu-west-1");
        assert_eq!(f.config.buckets[0].name, "demo");
    }

    #[test]
    fn parses_protection_settings() {
        let f = ConfigFile::parse(
            "server:\n  trustedProxies: [10.0.0.0/8]\n  cache: {maxBytes: 0}\n  adminToken: t\n  auditLog: stdout\n  otlpEndpoint: http://c:4318\nbuckets: [{name: demo, cache: {enabled: true}}]\n",
        )
        .expect("parses");
        let s = f.server.expect("server");
        assert_eq!(s.trusted_proxies, ["10.0.0.0/8"]);
        assert_eq!(s.cache.max_bytes, 0);
        assert_eq!(s.cache.max_entries, 10_000, "defaults fill the rest");
        assert_eq!(s.admin_token.as_deref(), Some("t"));
        assert_eq!(s.audit_log.as_deref(), Some("stdout"));
        assert_eq!(s.otlp_endpoint.as_deref(), Some("http://c:4318"));
        let cache = f.config.buckets[0].cache.expect("cache");
        assert_eq!(cache.max_object_bytes, 1 << 20);
    }

    #[test]
    fn cache_flags_override_the_file() {
        use clap::Parser;
        let f = ConfigFile::parse("server:\n  cache: {maxBytes: 5, maxEntries: 6}\n").unwrap();
        let cli = crate::config::cli::Cli::try_parse_from([
            "jets3-gateway",
            "--cache-max-bytes=1048576",
            "--cache-max-entries=100",
            "--cache-index-pages-bytes=4096",
            "--cache-replay-max-subjects=12",
            "--cache-small-reads-bytes=13",
            "--collector-snapshot-interval-seconds=0",
            "--collector-snapshot-min-subjects=7",
            "--collector-snapshot-batch-keys=9",
            "--collector-scan-batch-objects=11",
        ])
        .unwrap();
        let s = cli.server_settings(f.server).unwrap();
        assert_eq!((s.cache.max_bytes, s.cache.max_entries), (1 << 20, 100));
        assert_eq!(s.cache.index_pages_bytes, 4096);
        assert_eq!(s.cache.replay_max_subjects, 12);
        assert_eq!(s.cache.small_reads_bytes, 13);
        let c = &s.collector;
        assert_eq!(c.snapshot_interval(), None, "0 turns snapshots off");
        assert_eq!((c.snapshot_min_subjects, c.snapshot_batch_keys), (7, 9));
        assert_eq!(c.scan_batch_objects, 11);
        let on = CollectorSettings {
            orphan_after_seconds: 400,
            ..Default::default()
        };
        assert_eq!(
            on.snapshot_interval(),
            Some(std::time::Duration::from_secs(100)),
            "a quarter of the orphan horizon at most"
        );
        let cli = crate::config::cli::Cli::try_parse_from(["jets3-gateway"]).unwrap();
        assert_eq!(
            cli.server_settings(None).unwrap().cache,
            CacheSettings::default()
        );
    }

    #[test]
    fn connection_limits_from_the_file_and_flags() {
        use clap::Parser;
        let f =
            ConfigFile::parse("server:\n  connections: {s3: 100, headerReadSeconds: 3}\n").unwrap();
        let none = crate::config::cli::Cli::try_parse_from(["jets3-gateway"]).unwrap();
        let s = none.server_settings(f.server.clone()).unwrap();
        assert_eq!(
            s.connections,
            ConnectionLimits {
                s3: 100,
                admin: 64,
                push: 64,
                header_read_seconds: 3
            }
        );
        let cli = crate::config::cli::Cli::try_parse_from([
            "jets3-gateway",
            "--s3-max-connections=7",
            "--admin-max-connections=8",
            "--push-max-connections=9",
            "--header-read-seconds=0",
        ])
        .unwrap();
        let s = cli.server_settings(f.server).unwrap();
        assert_eq!(
            (s.connections.s3, s.connections.admin, s.connections.push),
            (7, 8, 9)
        );
        assert_eq!(s.connections.header_read_seconds, 0);
    }

    #[test]
    fn refuses_unknown_keys() {
        assert!(ConfigFile::parse("server:\n  lisen: []\n").is_err());
        assert!(ConfigFile::parse("bucketz: []\n").is_err());
    }
}
