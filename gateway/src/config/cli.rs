//! Command-line flags (each also an environment variable `JETS3_*`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use jets3_nats::NatsFlags;

use crate::config::settings::{
    ListenerTls, PushSettings, ServerSettings, DEFAULT_PUSH_AUDIENCE, DEFAULT_PUSH_ISSUER,
};
use crate::Error;

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// jets3-gateway: S3 on NATS JetStream Object Store.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    mut_arg("nats_url", |a| a.help("NATS server URLs (comma-separated); overrides `server.nats.servers`"))
)]
pub struct Cli {
    /// Config file (YAML): `server:` settings plus buckets, credentials and limits.
    /// Reloaded on SIGHUP and when the file changes. Without it (Kubernetes mode,
    /// `--push-listen`) the gateway serves once a config has been pushed.
    #[arg(short, long, env = "JETS3_CONFIG")]
    pub config: Option<PathBuf>,
    /// S3 listen addresses (comma-separated); overrides `server.listen`.
    #[arg(long, env = "JETS3_LISTEN", value_delimiter = ',')]
    pub listen: Vec<SocketAddr>,
    /// Admin listen address (/healthz, /readyz, /metrics); overrides `server.adminListen`.
    #[arg(long, env = "JETS3_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub nats: NatsFlags,
    /// Config push listener (Kubernetes mode), e.g. `0.0.0.0:9443`; overrides `server.push.listen`.
    #[arg(long, env = "JETS3_PUSH_LISTEN")]
    pub push_listen: Option<SocketAddr>,
    /// Push listener TLS certificate chain (PEM); re-read when it changes.
    #[arg(long, env = "JETS3_PUSH_TLS_CERT")]
    pub push_tls_cert: Option<PathBuf>,
    /// Push listener TLS private key (PEM); re-read when it changes.
    #[arg(long, env = "JETS3_PUSH_TLS_KEY")]
    pub push_tls_key: Option<PathBuf>,
    /// Push listener on plain HTTP (local runs only).
    #[arg(long, env = "JETS3_PUSH_INSECURE")]
    pub push_insecure: bool,
    /// The operator's ES256 public key: a PEM `PUBLIC KEY` or a `CERTIFICATE` holding it;
    /// re-read when it changes.
    #[arg(long, env = "JETS3_PUSH_VERIFY_KEY")]
    pub push_verify_key: Option<PathBuf>,
    /// The `aud` push tokens must carry [default: jets3-gateway].
    #[arg(long, env = "JETS3_PUSH_AUDIENCE")]
    pub push_audience: Option<String>,
    /// The `iss` push tokens must carry [default: jets3-operator].
    #[arg(long, env = "JETS3_PUSH_ISSUER")]
    pub push_issuer: Option<String>,
    /// S3 region; overrides `region` in the file.
    #[arg(long, env = "JETS3_REGION")]
    pub region: Option<String>,
    /// Seconds in-flight requests get to finish at shutdown.
    #[arg(long, env = "JETS3_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Seconds to keep serving after SIGTERM, answering `Connection: close`, before stopping.
    #[arg(long, env = "JETS3_SHUTDOWN_DRAIN_SECONDS")]
    pub shutdown_drain_seconds: Option<u64>,
    /// Proxies (CIDRs, comma-separated) whose X-Forwarded-For names the client;
    /// overrides `server.trustedProxies`.
    #[arg(long, env = "JETS3_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// Audit log target: `stdout`, `stderr` or a file; overrides `server.auditLog`.
    #[arg(long, env = "JETS3_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Bearer token for `POST /cache/purge` on the admin listener; overrides
    /// `server.adminToken`.
    #[arg(long, env = "JETS3_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// HTTPS on the S3 listeners: certificate chain (PEM); overrides `server.tls.certFile`.
    #[arg(long, env = "JETS3_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); overrides `server.tls.keyFile`.
    #[arg(long, env = "JETS3_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) for client certificates (mutual TLS); overrides `server.tls.clientCaFile`.
    #[arg(long, env = "JETS3_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// OTLP/HTTP endpoint for traces (`http://collector:4318`; build feature `otel`);
    /// overrides `server.otlpEndpoint`.
    #[arg(long, env = "JETS3_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Memory for the object cache, in bytes (0 turns it off); overrides
    /// `server.cache.maxBytes`.
    #[arg(long, env = "JETS3_CACHE_MAX_BYTES")]
    pub cache_max_bytes: Option<u64>,
    /// Memory for listing snapshot pages, across buckets; overrides
    /// `server.cache.indexPagesBytes`.
    #[arg(long, env = "JETS3_CACHE_INDEX_PAGES_BYTES")]
    pub cache_index_pages_bytes: Option<u64>,
    /// Largest bucket (in NATS subjects) replayed when it has no usable listing snapshot, 0
    /// for no limit; overrides `server.cache.replayMaxSubjects`.
    #[arg(long, env = "JETS3_CACHE_REPLAY_MAX_SUBJECTS")]
    pub cache_replay_max_subjects: Option<u64>,
    /// Memory for the bytes of small objects read recently (0 turns it off); overrides
    /// `server.cache.smallReadsBytes`.
    #[arg(long, env = "JETS3_CACHE_SMALL_READS_BYTES")]
    pub cache_small_reads_bytes: Option<u64>,
    /// Objects the cache holds at most; overrides `server.cache.maxEntries`.
    #[arg(long, env = "JETS3_CACHE_MAX_ENTRIES")]
    pub cache_max_entries: Option<usize>,
    /// How long a replaced or deleted version stays readable before the collector purges
    /// it (longer reads hold it while they run); overrides `server.collector.graceSeconds`.
    #[arg(long, env = "JETS3_COLLECTOR_GRACE_SECONDS")]
    pub collector_grace_seconds: Option<u64>,
    /// Time between collector passes; overrides `server.collector.intervalSeconds`.
    #[arg(long, env = "JETS3_COLLECTOR_INTERVAL_SECONDS")]
    pub collector_interval_seconds: Option<u64>,
    /// Age after which chunks nothing references are orphans; overrides
    /// `server.collector.orphanAfterSeconds`.
    #[arg(long, env = "JETS3_COLLECTOR_ORPHAN_AFTER_SECONDS")]
    pub collector_orphan_after_seconds: Option<u64>,
    /// Time between scans for orphans; overrides `server.collector.scanIntervalSeconds`.
    #[arg(long, env = "JETS3_COLLECTOR_SCAN_INTERVAL_SECONDS")]
    pub collector_scan_interval_seconds: Option<u64>,
    /// Versions purged per pass at most; overrides `server.collector.maxPurgesPerPass`.
    #[arg(long, env = "JETS3_COLLECTOR_MAX_PURGES_PER_PASS")]
    pub collector_max_purges_per_pass: Option<usize>,
    /// How long a completed multipart upload answers a repeated Complete with its result;
    /// overrides `server.collector.completedUploadSeconds`.
    #[arg(long, env = "JETS3_COLLECTOR_COMPLETED_UPLOAD_SECONDS")]
    pub collector_completed_upload_seconds: Option<u64>,
    /// Time between listing snapshots of each bucket, 0 for none; overrides
    /// `server.collector.snapshotIntervalSeconds`.
    #[arg(long, env = "JETS3_COLLECTOR_SNAPSHOT_INTERVAL_SECONDS")]
    pub collector_snapshot_interval_seconds: Option<u64>,
    /// Buckets with fewer NATS subjects get no listing snapshot; overrides
    /// `server.collector.snapshotMinSubjects`.
    #[arg(long, env = "JETS3_COLLECTOR_SNAPSHOT_MIN_SUBJECTS")]
    pub collector_snapshot_min_subjects: Option<u64>,
    /// Changed keys a snapshot writer holds in memory at once; overrides
    /// `server.collector.snapshotBatchKeys`.
    #[arg(long, env = "JETS3_COLLECTOR_SNAPSHOT_BATCH_KEYS")]
    pub collector_snapshot_batch_keys: Option<usize>,
    /// Objects whose chunk references one collector scan pass holds; overrides
    /// `server.collector.scanBatchObjects`.
    #[arg(long, env = "JETS3_COLLECTOR_SCAN_BATCH_OBJECTS")]
    pub collector_scan_batch_objects: Option<u64>,
    /// Open connections per S3 listener, 0 for no cap [default: 4096]; overrides
    /// `server.connections.s3`.
    #[arg(long, env = "JETS3_S3_MAX_CONNECTIONS")]
    pub s3_max_connections: Option<usize>,
    /// Open connections on the admin listener, 0 for no cap [default: 64]; overrides
    /// `server.connections.admin`.
    #[arg(long, env = "JETS3_ADMIN_MAX_CONNECTIONS")]
    pub admin_max_connections: Option<usize>,
    /// Open connections on the push listener, 0 for no cap [default: 64]; overrides
    /// `server.connections.push`.
    #[arg(long, env = "JETS3_PUSH_MAX_CONNECTIONS")]
    pub push_max_connections: Option<usize>,
    /// Seconds the admin and push listeners wait for request headers, 0 for no limit
    /// [default: 10]; overrides `server.connections.headerReadSeconds`.
    #[arg(long, env = "JETS3_HEADER_READ_SECONDS")]
    pub header_read_seconds: Option<u64>,
    #[arg(long, env = "JETS3_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `jets3_gateway=debug`.
    #[arg(long, env = "JETS3_LOG", default_value = "info")]
    pub log: String,
}

impl Cli {
    /// Applies the flags on top of the file's server settings.
    pub fn server_settings(&self, file: Option<ServerSettings>) -> Result<ServerSettings, Error> {
        let mut s = file.unwrap_or_default();
        if !self.listen.is_empty() {
            s.listen = self.listen.clone();
        }
        if self.admin_listen.is_some() {
            s.admin_listen = self.admin_listen;
        }
        self.nats.apply(&mut s.nats);
        if let Some(g) = self.shutdown_grace_seconds {
            s.shutdown_grace_seconds = g;
        }
        if let Some(d) = self.shutdown_drain_seconds {
            s.shutdown_drain_seconds = d;
        }
        if !self.trusted_proxies.is_empty() {
            s.trusted_proxies = self.trusted_proxies.clone();
        }
        if let Some(b) = self.cache_index_pages_bytes {
            s.cache.index_pages_bytes = b;
        }
        if let Some(n) = self.cache_replay_max_subjects {
            s.cache.replay_max_subjects = n;
        }
        if let Some(b) = self.cache_small_reads_bytes {
            s.cache.small_reads_bytes = b;
        }
        if let Some(b) = self.cache_max_bytes {
            s.cache.max_bytes = b;
        }
        if let Some(n) = self.cache_max_entries {
            s.cache.max_entries = n;
        }
        let c = &mut s.collector;
        for (dst, src) in [
            (&mut c.grace_seconds, self.collector_grace_seconds),
            (&mut c.interval_seconds, self.collector_interval_seconds),
            (
                &mut c.orphan_after_seconds,
                self.collector_orphan_after_seconds,
            ),
            (
                &mut c.scan_interval_seconds,
                self.collector_scan_interval_seconds,
            ),
            (
                &mut c.completed_upload_seconds,
                self.collector_completed_upload_seconds,
            ),
            (
                &mut c.snapshot_interval_seconds,
                self.collector_snapshot_interval_seconds,
            ),
            (
                &mut c.snapshot_min_subjects,
                self.collector_snapshot_min_subjects,
            ),
            (&mut c.scan_batch_objects, self.collector_scan_batch_objects),
        ] {
            if let Some(v) = src {
                *dst = v;
            }
        }
        if let Some(n) = self.collector_snapshot_batch_keys {
            c.snapshot_batch_keys = n;
        }
        if let Some(n) = self.collector_max_purges_per_pass {
            c.max_purges_per_pass = n;
        }
        let c = &mut s.connections;
        for (dst, src) in [
            (&mut c.s3, self.s3_max_connections),
            (&mut c.admin, self.admin_max_connections),
            (&mut c.push, self.push_max_connections),
        ] {
            if let Some(n) = src {
                *dst = n;
            }
        }
        if let Some(secs) = self.header_read_seconds {
            c.header_read_seconds = secs;
        }
        for (dst, src) in [
            (&mut s.audit_log, &self.audit_log),
            (&mut s.admin_token, &self.admin_token),
            (&mut s.otlp_endpoint, &self.otlp_endpoint),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let t = s.tls.get_or_insert(ListenerTls {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: None,
                client_auth: Default::default(),
            });
            t.cert_file.clone_from(cert);
            t.key_file.clone_from(key);
        }
        if let Some(ca) = &self.tls_client_ca {
            match s.tls.as_mut() {
                Some(t) => t.client_ca_file = Some(ca.clone()),
                None => {
                    return Err(Error::Config(
                        "--tls-client-ca needs --tls-cert and --tls-key".into(),
                    ))
                }
            }
        }
        s.push = self.push_settings(s.push.take())?;
        Ok(s)
    }

    /// The push flags on top of the file's `server.push`.
    fn push_settings(&self, file: Option<PushSettings>) -> Result<Option<PushSettings>, Error> {
        let listen = self.push_listen.or(file.as_ref().map(|p| p.listen));
        let Some(listen) = listen else {
            let given = self.push_tls_cert.is_some()
                || self.push_tls_key.is_some()
                || self.push_insecure
                || self.push_verify_key.is_some()
                || self.push_audience.is_some()
                || self.push_issuer.is_some();
            return match given {
                true => Err(Error::Config(
                    "the --push-* flags need --push-listen".into(),
                )),
                false => Ok(None),
            };
        };
        let verify_key_file = self
            .push_verify_key
            .clone()
            .or(file.as_ref().map(|p| p.verify_key_file.clone()))
            .ok_or_else(|| Error::Config("--push-listen needs --push-verify-key".into()))?;
        let mut p = file.unwrap_or(PushSettings {
            listen,
            tls_cert_file: None,
            tls_key_file: None,
            insecure: false,
            verify_key_file: verify_key_file.clone(),
            audience: DEFAULT_PUSH_AUDIENCE.into(),
            issuer: DEFAULT_PUSH_ISSUER.into(),
        });
        p.listen = listen;
        p.verify_key_file = verify_key_file;
        p.insecure |= self.push_insecure;
        for (dst, src) in [
            (&mut p.tls_cert_file, &self.push_tls_cert),
            (&mut p.tls_key_file, &self.push_tls_key),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        for (dst, src) in [
            (&mut p.audience, &self.push_audience),
            (&mut p.issuer, &self.push_issuer),
        ] {
            if let Some(v) = src {
                dst.clone_from(v);
            }
        }
        Ok(Some(p))
    }
}
