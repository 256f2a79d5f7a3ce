//! Test harness: a real nats-server per test, the gateway in-process, S3 clients, and raw
//! HTTP helpers (exact bytes, SigV4 header / presigned / streaming signing).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
    StalledStreamProtectionConfig,
};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use futures::StreamExt;
use jets3_crds::{Access, BucketConfig, Credential, GatewayConfig, Grant, Permission, StorageKind};
use jets3_gateway::config::settings::CollectorSettings;
use jets3_gateway::{GatewayHandle, NatsSettings, ServerSettings};
use md5_reference::{Digest as _, Md5};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const REGION: &str = "us-east-1";
pub const ADMIN_AK: &str = "AKIAADMIN0000000001";
pub const ADMIN_SK: &str = "admin-secret-key/0001+xyz";

pub type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

// ---------------------------------------------------------------------------------------
// nats-server: jets3-testkit's
// ---------------------------------------------------------------------------------------

pub use jets3_testkit::{NatsCluster, NatsServer};

/// The gateway binary as a separate process (killable with SIGKILL, its RSS and descriptors
/// readable), on the NATS servers `urls`, serving bucket `bucket` (created with `replicas`).
pub struct GatewayProcess {
    child: std::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    pub async fn start(urls: &[String], bucket: &str, replicas: u8) -> GatewayProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let (s3, admin) = (port(), port());
        let file = dir.path().join("gateway.yaml");
        let servers: Vec<String> = urls.iter().map(|u| format!("'{u}'")).collect();
        std::fs::write(
            &file,
            format!(
                "server:\n  listen: ['127.0.0.1:{s3}']\n  adminListen: '127.0.0.1:{admin}'\n  nats: {{servers: [{}]}}\n  collector: {{orphanAfterSeconds: 3, graceSeconds: 2, intervalSeconds: 1, scanIntervalSeconds: 1}}\nbuckets: [{{name: {bucket}, create: true, replicas: {replicas}}}]\ncredentials:\n  - {{accessKeyId: {ADMIN_AK}, secretAccessKey: '{ADMIN_SK}', grants: [{{bucket: '*', permission: admin}}]}}\n",
                servers.join(", ")
            ),
        )
        .expect("config file");
        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_jets3-gateway"))
            .arg("--config")
            .arg(&file)
            .env("NO_COLOR", "1")
            .env("JETS3_LOG", "warn")
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the gateway binary");
        let admin: SocketAddr = ([127, 0, 0, 1], admin).into();
        assert!(
            ready_within(admin, 30).await,
            "the gateway binary became ready"
        );
        GatewayProcess {
            child,
            addr: ([127, 0, 0, 1], s3).into(),
            admin,
            _dir: dir,
        }
    }

    /// S3 client for the admin credential.
    pub fn client(&self) -> Client {
        s3_client(ClientOpts {
            endpoint: format!("http://{}", self.addr),
            creds: Some((ADMIN_AK.to_string(), ADMIN_SK.to_string())),
            ..Default::default()
        })
    }

    /// What the process logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Resident memory (bytes) and open file descriptors of the process.
    pub fn rss_and_fds(&self) -> (u64, usize) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        (rss_kib * 1024, fds)
    }

    /// Sends a signed request head announcing `declared` body bytes, then `sent` of them,
    /// then kills the process with SIGKILL.
    pub async fn kill_during_upload(mut self, path: &str, declared: u64, sent: usize) {
        let host = self.addr.to_string();
        let mut req = RawRequest::new("PUT", path).header("content-length", &declared.to_string());
        sign_request(&mut req, &host, &Signer::admin(), Payload::Unsigned);
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        s.write_all(&req.to_bytes(&host)).await.expect("head");
        let piece = data(1 << 20, 9);
        for _ in 0..sent >> 20 {
            s.write_all(&piece).await.expect("body");
        }
        s.flush().await.expect("flush");
        // Let the gateway write what it has received, then kill it mid-upload.
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// config helpers
// ---------------------------------------------------------------------------------------

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A bucket name unique within this test binary run.
pub fn unique_bucket(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 100_000;
    format!("{prefix}-{n}-{nanos}")
}

/// A bucket the gateway creates in NATS at start.
pub fn bucket_cfg(name: &str) -> BucketConfig {
    BucketConfig {
        name: name.to_string(),
        nats_bucket: None,
        access: Access::Private,
        read_only: false,
        create: true,
        storage: StorageKind::File,
        replicas: 1,
        cors: vec![],
        ..Default::default()
    }
}

pub fn credential(ak: &str, sk: &str, grants: &[(&str, Permission)]) -> Credential {
    Credential {
        access_key_id: ak.to_string(),
        secret_access_key: sk.to_string(),
        grants: grants
            .iter()
            .map(|(b, p)| Grant {
                bucket: b.to_string(),
                permission: *p,
            })
            .collect(),
        not_before: None,
        not_after: None,
        description: Some("test".into()),
    }
}

pub fn admin_credential() -> Credential {
    credential(ADMIN_AK, ADMIN_SK, &[("*", Permission::Admin)])
}

/// A config with the admin credential (`*`: admin) and these buckets, created at start.
pub fn config_with(buckets: &[&str]) -> GatewayConfig {
    GatewayConfig {
        buckets: buckets.iter().map(|b| bucket_cfg(b)).collect(),
        credentials: vec![admin_credential()],
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------
// the environment: nats-server + gateway
// ---------------------------------------------------------------------------------------

pub struct Env {
    pub gw: Option<GatewayHandle>,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub config: GatewayConfig,
    pub nats: NatsServer,
}

/// Gateway logs on the test output when `JETS3_TEST_LOG` is set (an env-filter, e.g. `debug`).
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("JETS3_TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_env("JETS3_TEST_LOG"))
                .with_test_writer()
                .try_init();
        }
    });
}

pub fn settings_for(nats_url: &str) -> ServerSettings {
    ServerSettings {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        nats: NatsSettings {
            servers: vec![nats_url.to_string()],
            ..Default::default()
        },
        shutdown_grace_seconds: 1,
        // Retired versions go fast; orphans only in the tests that ask for them.
        collector: CollectorSettings {
            interval_seconds: 1,
            grace_seconds: 2,
            scan_interval_seconds: 1,
            orphan_after_seconds: 600,
            ..Default::default()
        },
        ..Default::default()
    }
}

impl Env {
    /// Starts a nats-server and the gateway with `config`.
    pub async fn start(config: GatewayConfig) -> Env {
        Env::start_with(config, |_| {}).await
    }

    /// Like `start`, with the server settings changed by `settings`.
    pub async fn start_with(
        config: GatewayConfig,
        settings: impl FnOnce(&mut ServerSettings),
    ) -> Env {
        let nats = NatsServer::start().await;
        let mut s = settings_for(&nats.url());
        settings(&mut s);
        let env = Env::launch(nats, s, Some(config)).await;
        env.wait_ready().await;
        env.wait_declared_buckets(&env.config).await;
        env
    }

    /// Starts the gateway on `nats` with `settings` and, if given, `config`; does not wait
    /// for readiness (without a config the gateway is not ready).
    pub async fn launch(
        nats: NatsServer,
        settings: ServerSettings,
        config: Option<GatewayConfig>,
    ) -> Env {
        init_logging();
        let gw = jets3_gateway::start(settings, config.clone())
            .await
            .unwrap_or_else(|e| panic!("gateway start failed: {e:?}"));
        Env {
            addr: gw.s3_addr(),
            admin: gw.admin_addr(),
            gw: Some(gw),
            config: config.unwrap_or_default(),
            nats,
        }
    }

    /// Like a readinessProbe: wait for `/readyz` 200 (config in force and NATS reachable).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = self.admin_get("/readyz").await;
            if r.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready after 15 s: /readyz {} {}",
                r.status,
                r.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The gateway creates a config's declared buckets in the background: wait until each
    /// exists.
    pub async fn wait_declared_buckets(&self, config: &GatewayConfig) {
        let js = self.js().await;
        for b in config.buckets.iter().filter(|b| b.create) {
            let stream = format!("OBJ_{}", b.nats_name());
            let deadline = Instant::now() + Duration::from_secs(15);
            while js.get_stream(&stream).await.is_err() {
                assert!(
                    Instant::now() < deadline,
                    "declared bucket {} was not created in NATS",
                    b.name
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The admin credential and these buckets.
    pub async fn with_buckets(buckets: &[&str]) -> Env {
        Env::start(config_with(buckets)).await
    }

    pub fn gw(&self) -> &GatewayHandle {
        self.gw.as_ref().expect("gateway running")
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// S3 client for the admin credential, path style.
    pub fn client(&self) -> Client {
        self.client_for(ADMIN_AK, ADMIN_SK)
    }

    pub fn client_for(&self, ak: &str, sk: &str) -> Client {
        s3_client(ClientOpts {
            endpoint: self.endpoint(),
            creds: Some((ak.to_string(), sk.to_string())),
            ..Default::default()
        })
    }

    /// Client that sends no credentials at all.
    pub fn anon_client(&self) -> Client {
        s3_client(ClientOpts {
            endpoint: self.endpoint(),
            creds: None,
            ..Default::default()
        })
    }

    /// Virtual-hosted-style client: the SDK addresses `<bucket>.<domain>:<port>`, the
    /// connection goes to the gateway with that Host header.
    pub fn vhost_client(&self, domain: &str) -> Client {
        s3_client(ClientOpts {
            endpoint: format!("http://{domain}:{}", self.addr.port()),
            creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
            path_style: false,
            redirect_to: Some(self.addr),
            ..Default::default()
        })
    }

    /// Client that believes it talks HTTPS (so the SDK uses STREAMING-UNSIGNED-PAYLOAD-TRAILER
    /// for streaming bodies) while the connection is plain HTTP to the gateway.
    pub fn tls_pretending_client(&self) -> Client {
        s3_client(ClientOpts {
            endpoint: format!("https://{}", self.addr),
            creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
            redirect_to: Some(self.addr),
            ..Default::default()
        })
    }

    /// Native NATS JetStream context on the test's server.
    pub async fn js(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.nats.url())
            .await
            .expect("connect to nats");
        async_nats::jetstream::new(client)
    }

    /// (messages, bytes) of every object-store stream (`OBJ_*`).
    pub async fn obj_streams(&self) -> BTreeMap<String, (u64, u64)> {
        let js = self.js().await;
        let mut names = js.stream_names();
        let mut out = BTreeMap::new();
        let mut all = Vec::new();
        while let Some(name) = names.next().await {
            all.push(name.expect("stream name"));
        }
        for name in all {
            if !name.starts_with("OBJ_") {
                continue;
            }
            let mut stream = js.get_stream(&name).await.expect("get stream");
            let info = stream.info().await.expect("stream info");
            out.insert(name, (info.state.messages, info.state.bytes));
        }
        out
    }

    /// Polls until the object-store streams are back to `before` (cleanup may be async).
    pub async fn wait_streams_equal(&self, before: &BTreeMap<String, (u64, u64)>, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let now = self.obj_streams().await;
            if &now == before {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: object-store streams (messages, bytes) changed: before {before:?}, after {now:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A request signed with the admin credential, now, over the S3 port.
    pub async fn send_signed(&self, mut req: RawRequest) -> RawResponse {
        let signer = Signer::admin();
        sign_request(&mut req, &self.host(), &signer, Payload::Signed);
        send_raw(self.addr, &req.to_bytes(&self.host())).await
    }

    /// A request sent as given (no signature added).
    pub async fn send(&self, req: RawRequest) -> RawResponse {
        send_raw(self.addr, &req.to_bytes(&self.host())).await
    }

    /// The value of a metric line (name with labels, as exposed) on `/metrics`.
    pub async fn metric(&self, line: &str) -> Option<f64> {
        let text = self.admin_get("/metrics").await.text();
        text.lines()
            .find(|l| l.starts_with(line) && l[line.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// A signed request's head (UNSIGNED-PAYLOAD) announcing `len` body bytes, for
    /// clients that send their body slowly or not at all.
    pub fn signed_head(&self, method: &str, path: &str, len: usize) -> Vec<u8> {
        let mut req = RawRequest::new(method, path)
            .header("content-length", &len.to_string())
            .header("connection", "keep-alive");
        sign_request(&mut req, &self.host(), &Signer::admin(), Payload::Unsigned);
        req.to_bytes(&self.host())
    }

    /// GET on the admin listener.
    pub async fn admin_get(&self, path: &str) -> RawResponse {
        let admin = self.admin.expect("admin listener");
        let req = RawRequest::new("GET", path);
        send_raw(admin, &req.to_bytes(&admin.to_string())).await
    }

    /// Another gateway on the same nats-server and config (as a second pod would be),
    /// with `settings` changed by `change`.
    pub async fn peer_with(&self, change: impl FnOnce(&mut ServerSettings)) -> Peer {
        let mut s = settings_for(&self.nats.url());
        change(&mut s);
        let gw = jets3_gateway::start(s, Some(self.config.clone()))
            .await
            .unwrap_or_else(|e| panic!("second gateway start failed: {e:?}"));
        let admin = gw.admin_addr().expect("admin listener");
        assert!(ready_within(admin, 15).await, "second gateway not ready");
        Peer {
            addr: gw.s3_addr(),
            gw,
        }
    }

    /// Another gateway on the same nats-server and config.
    pub async fn peer(&self) -> Peer {
        self.peer_with(|_| {}).await
    }

    /// Every chunk subject of NATS bucket `nats` with its message count.
    pub async fn chunk_subjects(&self, nats: &str) -> BTreeMap<String, u64> {
        use futures::TryStreamExt;
        let js = self.js().await;
        let stream = js.get_stream(format!("OBJ_{nats}")).await.expect("stream");
        let prefix = format!("$O.{nats}.C.");
        let mut subjects = stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .expect("subjects");
        let mut out = BTreeMap::new();
        while let Some((subject, count)) = subjects.try_next().await.expect("subject") {
            out.insert(subject[prefix.len()..].to_string(), count as u64);
        }
        out
    }

    /// The nuid and chunk count of every version that metadata references in NATS bucket
    /// `nats` (current versions, and noncurrent ones with versioning).
    pub async fn live_versions(&self, nats: &str) -> BTreeMap<String, u64> {
        self.live_chunks(nats, false).await
    }

    /// Like [`Env::live_versions`]; with `parts`, also the parts a spliced version's bytes
    /// are on, with a count of 0 (not checked).
    async fn live_chunks(&self, nats: &str, parts: bool) -> BTreeMap<String, u64> {
        use futures::TryStreamExt;
        let js = self.js().await;
        let stream = js.get_stream(format!("OBJ_{nats}")).await.expect("stream");
        let mut out = BTreeMap::new();
        for tree in ["M", "V"] {
            let mut subjects = match stream
                .info_with_subjects(format!("$O.{nats}.{tree}.>"))
                .await
            {
                Ok(s) => s,
                Err(_) => continue,
            };
            let mut names = Vec::new();
            while let Some((subject, _)) = subjects.try_next().await.expect("subject") {
                names.push(subject);
            }
            for subject in names {
                let msg = stream
                    .direct_get_last_for_subject(&subject)
                    .await
                    .expect("metadata message");
                let v: serde_json::Value =
                    serde_json::from_slice(&msg.payload).expect("metadata JSON");
                if v["deleted"].as_bool() == Some(true) {
                    continue;
                }
                if let Some(nuid) = v["nuid"].as_str() {
                    out.insert(nuid.to_string(), v["chunks"].as_u64().unwrap_or(0));
                }
                if !parts {
                    continue;
                }
                let segments = v["metadata"]["jets3.segments"].as_str().unwrap_or("");
                for segment in segments.split(',').filter(|s| !s.is_empty()) {
                    let nuid = segment.split(':').next().unwrap_or(segment);
                    out.insert(nuid.to_string(), 0);
                }
            }
        }
        out
    }

    /// Waits (up to `secs`) until the bucket's stream holds exactly the chunks of its live
    /// versions, no more (retired and orphan chunks purged) and no less.
    pub async fn wait_holds_only_live(&self, nats: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            // Live versions first: a version committed in between (a compaction) then has
            // all its chunks in the listing that follows.
            let live = self.live_chunks(nats, true).await;
            let chunks = self.chunk_subjects(nats).await;
            let missing: Vec<&String> = live
                .iter()
                .filter(|(n, c)| **c > 0 && chunks.get(*n) != Some(c))
                .map(|(n, _)| n)
                .collect();
            assert!(
                missing.is_empty(),
                "live versions without (all their) chunks: {missing:?}"
            );
            let extra: Vec<&String> = chunks.keys().filter(|n| !live.contains_key(*n)).collect();
            if extra.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chunks no version references are still in OBJ_{nats} after {secs} s: {} subjects",
                extra.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(gw) = self.gw.take() {
            gw.shutdown().await;
        }
    }
}

/// A second gateway on an [`Env`]'s NATS.
pub struct Peer {
    pub gw: GatewayHandle,
    pub addr: SocketAddr,
}

impl Peer {
    /// The value of a metric line (name with labels, as exposed) on `/metrics`; 0 when absent.
    pub async fn metric(&self, line: &str) -> f64 {
        let admin = self.gw.admin_addr().expect("admin listener");
        let r = send_raw(
            admin,
            &RawRequest::new("GET", "/metrics").to_bytes(&admin.to_string()),
        )
        .await;
        r.text()
            .lines()
            .find(|l| l.starts_with(line) && l[line.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// S3 client for the admin credential, path style.
    pub fn client(&self) -> Client {
        s3_client(ClientOpts {
            endpoint: format!("http://{}", self.addr),
            creds: Some((ADMIN_AK.to_string(), ADMIN_SK.to_string())),
            ..Default::default()
        })
    }
}

// ---------------------------------------------------------------------------------------
// S3 clients
// ---------------------------------------------------------------------------------------

pub struct ClientOpts {
    pub endpoint: String,
    pub creds: Option<(String, String)>,
    pub region: String,
    pub path_style: bool,
    /// Send every request to this address, keeping the Host the SDK signed.
    pub redirect_to: Option<SocketAddr>,
    /// Record the headers of every request sent (after signing).
    pub record: Option<Recorded>,
}

/// Headers of the requests a client sent, in order.
pub type Recorded = Arc<Mutex<Vec<Vec<(String, String)>>>>;

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            endpoint: String::new(),
            creds: None,
            region: REGION.to_string(),
            path_style: true,
            redirect_to: None,
            record: None,
        }
    }
}

pub fn s3_client(opts: ClientOpts) -> Client {
    let mut b = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(opts.region.clone()))
        .endpoint_url(opts.endpoint.clone())
        .force_path_style(opts.path_style)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(120))
                .build(),
        );
    match &opts.creds {
        Some((ak, sk)) => {
            b = b.credentials_provider(Credentials::new(ak, sk, None, None, "jets3-test"));
        }
        None => {
            b = b.allow_no_auth();
        }
    }
    if opts.redirect_to.is_some() || opts.record.is_some() {
        b = b.interceptor(Hook {
            redirect_to: opts.redirect_to,
            record: opts.record.clone(),
        });
    }
    Client::from_conf(b.build())
}

/// Records headers, and rewrites the request URI to `http://<to>` after signing, keeping
/// the signed Host.
#[derive(Debug)]
struct Hook {
    redirect_to: Option<SocketAddr>,
    record: Option<Recorded>,
}

impl Intercept for Hook {
    fn name(&self) -> &'static str {
        "jets3-test-hook"
    }

    fn modify_before_transmit(
        &self,
        ctx: &mut BeforeTransmitInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let req = ctx.request_mut();
        if let Some(rec) = &self.record {
            let hs = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect();
            rec.lock().unwrap().push(hs);
        }
        if let Some(to) = self.redirect_to {
            let uri: http::Uri = req.uri().parse()?;
            let authority = uri.authority().expect("absolute uri").as_str().to_string();
            let pq = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            if !req.headers().contains_key("host") {
                req.headers_mut().insert("host", authority);
            }
            req.set_uri(format!("http://{to}{pq}"))?;
        }
        Ok(())
    }
}

/// Status and S3 error code of a failed SDK call; panics if the call succeeded or if there
/// was no HTTP response.
pub fn sdk_err<T: std::fmt::Debug, E>(r: Result<T, SdkError<E, HttpResponse>>) -> (u16, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => {
            let status = match e.raw_response() {
                Some(r) => r.status().as_u16(),
                None => panic!("no HTTP response: {}", DisplayErrorContext(&e)),
            };
            let code = e.code().unwrap_or("").to_string();
            (status, code)
        }
    }
}

/// Unwraps an SDK result with the full error chain in the panic message.
pub fn ok<T, E>(r: Result<T, SdkError<E, HttpResponse>>, what: &str) -> T
where
    E: std::error::Error + Send + Sync + 'static,
{
    match r {
        Ok(v) => v,
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            panic!(
                "{what} failed (HTTP {status:?}): {}",
                DisplayErrorContext(&e)
            )
        }
    }
}

pub async fn put(client: &Client, bucket: &str, key: &str, body: &[u8]) -> String {
    let out = ok(
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await,
        &format!("PutObject {bucket}/{key}"),
    );
    out.e_tag().unwrap_or_default().to_string()
}

/// Whether the gateway whose admin listener is `admin` answers `/readyz` with 200 within
/// `secs` (as a readinessProbe would see it).
pub async fn ready_within(admin: SocketAddr, secs: u64) -> bool {
    eventually(secs, || async {
        try_send_raw(
            admin,
            &RawRequest::new("GET", "/readyz").to_bytes(&admin.to_string()),
        )
        .await
        .is_some_and(|r| r.status == 200)
    })
    .await
}

/// PUTs `body` and returns its version id.
pub async fn put_version(s3: &Client, b: &str, key: &str, body: &[u8]) -> String {
    let out = ok(
        s3.put_object()
            .bucket(b)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await,
        "PUT",
    );
    out.version_id().expect("x-amz-version-id").to_string()
}

/// The bytes of version `id` of `bucket/key`.
pub async fn get_version_bytes(client: &Client, bucket: &str, key: &str, id: &str) -> Vec<u8> {
    let out = ok(
        client
            .get_object()
            .bucket(bucket)
            .key(key)
            .version_id(id)
            .send()
            .await,
        &format!("GetObject {bucket}/{key} version {id}"),
    );
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Starts an upload of `key` (CreateMultipartUpload); its id.
pub async fn start_upload(client: &Client, bucket: &str, key: &str) -> String {
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await;
    let created = ok(created, "CreateMultipartUpload");
    created.upload_id().expect("UploadId").to_string()
}

/// The ids of the uploads in progress in `bucket` (ListMultipartUploads), sorted.
pub async fn upload_ids(client: &Client, bucket: &str) -> Vec<String> {
    let listed = ok(
        client.list_multipart_uploads().bucket(bucket).send().await,
        "ListMultipartUploads",
    );
    let mut ids: Vec<String> = listed
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

pub async fn get_bytes(client: &Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = ok(
        client.get_object().bucket(bucket).key(key).send().await,
        &format!("GetObject {bucket}/{key}"),
    );
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

pub async fn list_all_keys(client: &Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = ok(
            client
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token.clone())
                .send()
                .await,
            "ListObjectsV2",
        );
        keys.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() == Some(true) {
            token = out.next_continuation_token().map(str::to_string);
            assert!(
                token.is_some(),
                "truncated page without NextContinuationToken"
            );
        } else {
            return keys;
        }
    }
}

// ---------------------------------------------------------------------------------------
// digests and data
// ---------------------------------------------------------------------------------------

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

/// The quoted ETag S3 gives a simple PUT.
pub fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

/// The quoted ETag of a multipart object: md5 of the binary part md5s, `-N`.
pub fn multipart_etag(parts: &[&[u8]]) -> String {
    let mut cat = Vec::new();
    for p in parts {
        cat.extend_from_slice(&Md5::digest(p));
    }
    format!("\"{}-{}\"", hex::encode(Md5::digest(&cat)), parts.len())
}

pub fn md5_b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(data))
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn crc32_b64(data: &[u8]) -> String {
    b64(&crc32fast::hash(data).to_be_bytes())
}

pub fn crc32c_b64(data: &[u8]) -> String {
    b64(&crc32c::crc32c(data).to_be_bytes())
}

pub fn crc64nvme_b64(data: &[u8]) -> String {
    let c = crc::Crc::<u64>::new(&crc::CRC_64_NVME);
    b64(&c.checksum(data).to_be_bytes())
}

pub fn sha1_b64(data: &[u8]) -> String {
    use sha1::Digest;
    b64(&sha1::Sha1::digest(data))
}

pub fn sha256_b64(data: &[u8]) -> String {
    b64(&Sha256::digest(data))
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// raw HTTP
// ---------------------------------------------------------------------------------------

/// Characters kept as-is in an S3 path: unreserved and '/'.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Characters kept as-is in a query value: unreserved only.
const QUERY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a key for a path (keeps '/').
pub fn enc_path(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SET).to_string()
}

/// Percent-encodes a query value (encodes '/').
pub fn enc_query(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_SET).to_string()
}

pub fn url_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .expect("utf-8")
        .to_string()
}

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    /// Encoded path and query, e.g. `/bucket/key?tagging`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn new(method: &str, path: &str) -> RawRequest {
        RawRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> RawRequest {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> RawRequest {
        self.body = body.into();
        self
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }

    /// The request bytes: `Host` (if missing), `Content-Length` (if missing and there is a
    /// body or the method sends one), `Connection: close`.
    pub fn to_bytes(&self, host: &str) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        if !self.has_header("host") {
            head.push_str(&format!("host: {host}\r\n"));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.has_header("content-length")
            && !self.has_header("transfer-encoding")
            && (!self.body.is_empty() || matches!(self.method.as_str(), "PUT" | "POST"))
        {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        if !self.has_header("connection") {
            head.push_str("connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn code(&self) -> Option<String> {
        xml_tag(&self.text(), "Code")
    }

    /// Asserts an S3 error answer: status, `<Code>`, and `x-amz-request-id` equal to the
    /// body's `<RequestId>`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code().as_deref()),
            (status, Some(code)),
            "expected HTTP {status} {code}; got body: {}",
            self.text()
        );
        let rid = self.header("x-amz-request-id");
        assert!(
            rid.is_some_and(|r| !r.is_empty()),
            "no x-amz-request-id header"
        );
        assert_eq!(
            xml_tag(&self.text(), "RequestId").as_deref(),
            rid,
            "x-amz-request-id must equal the error body's RequestId: {}",
            self.text()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.contains("xml"), "error content-type {ct:?}");
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(
            self.status,
            status,
            "unexpected status; headers {:?} body: {}",
            self.headers,
            self.text()
        );
    }
}

/// The text of the first `<tag>...</tag>` (XML entities for &, <, >, ", ' decoded).
pub fn xml_tag(text: &str, tag: &str) -> Option<String> {
    xml_tags(text, tag).into_iter().next()
}

/// The texts of every `<tag>...</tag>`, in order (`<tag/>` gives "").
pub fn xml_tags(text: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let empty = format!("<{tag}/>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let a = rest.find(&open);
        let e = rest.find(&empty);
        match (a, e) {
            (Some(a), e) if e.is_none_or(|e| a < e) => {
                let start = a + open.len();
                let Some(end) = rest[start..].find(&close) else {
                    break;
                };
                out.push(xml_unescape(&rest[start..start + end]));
                rest = &rest[start + end + close.len()..];
            }
            (_, Some(e)) => {
                out.push(String::new());
                rest = &rest[e + empty.len()..];
            }
            _ => break,
        }
    }
    out
}

pub fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Sends `bytes` on a new connection and reads one response (skipping `100 Continue`).
pub async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let head = bytes.starts_with(b"HEAD ");
    let mut stream = TcpStream::connect(addr).await.expect("connect to gateway");
    stream.write_all(bytes).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        read_response(&mut stream, &mut buf, head, true),
    )
    .await
    .expect("response within 60 s")
    .expect("read response")
}

/// Like [`send_raw`], but `None` when the response breaks off (a transfer a fault cut).
pub async fn try_send_raw(addr: SocketAddr, bytes: &[u8]) -> Option<RawResponse> {
    let head = bytes.starts_with(b"HEAD ");
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(bytes).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        read_response(&mut stream, &mut buf, head, true),
    )
    .await
    .ok()?
    .ok()
}

/// Reads one HTTP/1.1 response. `buf` holds bytes already read (and keeps the rest).
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    head: bool,
    skip_continue: bool,
) -> std::io::Result<RawResponse> {
    loop {
        let end = loop {
            if let Some(p) = find(buf, b"\r\n\r\n") {
                break p;
            }
            let mut tmp = [0u8; 16384];
            let n = stream.read(&mut tmp).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a full response head ({} bytes: {:?})",
                        buf.len(),
                        String::from_utf8_lossy(buf)
                    ),
                ));
            }
            buf.extend_from_slice(&tmp[..n]);
        };
        let head_text = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        if (100..200).contains(&status) {
            if skip_continue {
                continue;
            }
            return Ok(RawResponse {
                status,
                headers,
                body: Vec::new(),
            });
        }
        let mut resp = RawResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if head || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = read_chunked(stream, buf).await?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("content-length");
            while buf.len() < len {
                let mut tmp = [0u8; 65536];
                let n = stream.read(&mut tmp).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "body shorter than content-length",
                    ));
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            resp.body = buf.drain(..len).collect();
        } else {
            stream.read_to_end(buf).await?;
            resp.body = std::mem::take(buf);
        }
        return Ok(resp);
    }
}

async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(p) = find(buf, b"\r\n") {
                break p;
            }
            fill(stream, buf).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).to_string();
        buf.drain(..line_end + 2);
        let size =
            usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).expect("chunk size");
        if size == 0 {
            // trailers until an empty line
            loop {
                let p = loop {
                    if let Some(p) = find(buf, b"\r\n") {
                        break p;
                    }
                    fill(stream, buf).await?;
                };
                buf.drain(..p + 2);
                if p == 0 {
                    return Ok(body);
                }
            }
        }
        while buf.len() < size + 2 {
            fill(stream, buf).await?;
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut tmp = [0u8; 65536];
    let n = stream.read(&mut tmp).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "eof in chunked body",
        ));
    }
    buf.extend_from_slice(&tmp[..n]);
    Ok(())
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// SigV4 with aws-sigv4
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Signer {
    pub ak: String,
    pub sk: String,
    pub region: String,
    pub service: String,
    pub time: SystemTime,
}

impl Signer {
    pub fn new(ak: &str, sk: &str) -> Signer {
        Signer {
            ak: ak.into(),
            sk: sk.into(),
            region: REGION.into(),
            service: "s3".into(),
            time: SystemTime::now(),
        }
    }

    pub fn admin() -> Signer {
        Signer::new(ADMIN_AK, ADMIN_SK)
    }

    /// `YYYYMMDDTHHMMSSZ`
    pub fn amz_date(&self) -> String {
        jets3_testkit::sigv4::amz_date(time::OffsetDateTime::from(self.time))
    }

    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            &self.amz_date()[..8],
            self.region,
            self.service
        )
    }

    pub fn signing_key(&self) -> Vec<u8> {
        aws_sigv4::sign::v4::generate_signing_key(&self.sk, self.time, &self.region, &self.service)
            .as_ref()
            .to_vec()
    }
}

#[derive(Debug, Clone)]
pub enum Payload {
    /// x-amz-content-sha256 = hex sha256 of the body.
    Signed,
    /// UNSIGNED-PAYLOAD
    Unsigned,
    /// x-amz-content-sha256 = this value (streaming modes, or a forged hash).
    Precomputed(String),
}

fn sigv4_settings(
    location: aws_sigv4::http_request::SignatureLocation,
    expires: Option<Duration>,
    content_sha_header: bool,
) -> aws_sigv4::http_request::SigningSettings {
    use aws_sigv4::http_request::{
        PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
    };
    let mut s = SigningSettings::default();
    s.percent_encoding_mode = PercentEncodingMode::Single;
    s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    s.payload_checksum_kind = if content_sha_header {
        PayloadChecksumKind::XAmzSha256
    } else {
        PayloadChecksumKind::NoHeader
    };
    s.signature_location = location;
    s.expires_in = expires;
    s
}

/// Signs `req` in place (Authorization, x-amz-date, x-amz-content-sha256 headers). Every
/// header already on the request (and `host`) is signed. Returns the signature.
pub fn sign_request(req: &mut RawRequest, host: &str, signer: &Signer, payload: Payload) -> String {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation};
    if !req.has_header("host") {
        req.headers.insert(0, ("host".into(), host.to_string()));
    }
    let identity = Credentials::new(&signer.ak, &signer.sk, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name(&signer.service)
        .time(signer.time)
        .settings(sigv4_settings(SignatureLocation::Headers, None, true))
        .build()
        .expect("signing params")
        .into();
    let body = match &payload {
        Payload::Signed => SignableBody::Bytes(&req.body),
        Payload::Unsigned => SignableBody::UnsignedPayload,
        Payload::Precomputed(v) => SignableBody::Precomputed(v.clone()),
    };
    let uri = format!("http://{host}{}", req.path);
    let signable = SignableRequest::new(
        &req.method,
        uri,
        req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        body,
    )
    .expect("signable request");
    let out = sign(signable, &params).expect("sign");
    let signature = out.signature().to_string();
    let (instructions, _) = out.into_parts();
    let (headers, _params) = instructions.into_parts();
    for h in headers {
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(h.name()));
        req.headers
            .push((h.name().to_string(), h.value().to_string()));
    }
    signature
}

/// A presigned path+query for `method` on `path` (encoded), valid `expires` from
/// `signer.time`. `headers` are signed too (the caller must send them).
pub fn presign(
    method: &str,
    host: &str,
    path: &str,
    signer: &Signer,
    expires: Duration,
    headers: &[(&str, &str)],
) -> String {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation};
    let identity = Credentials::new(&signer.ak, &signer.sk, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&signer.region)
        .name(&signer.service)
        .time(signer.time)
        .settings(sigv4_settings(
            SignatureLocation::QueryParams,
            Some(expires),
            false,
        ))
        .build()
        .expect("signing params")
        .into();
    let mut hs: Vec<(&str, &str)> = vec![("host", host)];
    hs.extend_from_slice(headers);
    let uri = format!("http://{host}{path}");
    let signable = SignableRequest::new(method, uri, hs.into_iter(), SignableBody::UnsignedPayload)
        .expect("signable request");
    let out = sign(signable, &params).expect("presign");
    let (instructions, _) = out.into_parts();
    let (_headers, qparams) = instructions.into_parts();
    let mut url = path.to_string();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in qparams {
        url.push(sep);
        sep = '&';
        url.push_str(k);
        url.push('=');
        url.push_str(&enc_query(&v));
    }
    url
}

/// Body of an aws-chunked `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` upload, each chunk signed
/// from `seed` (the request signature). `corrupt_chunk` replaces that chunk's signature.
pub fn signed_chunked_body(
    data: &[u8],
    chunk: usize,
    seed: &str,
    signer: &Signer,
    corrupt_chunk: Option<usize>,
) -> Vec<u8> {
    let key = signer.signing_key();
    let empty = sha256_hex(b"");
    let mut prev = seed.to_string();
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    pieces.push(&[]);
    for (i, piece) in pieces.iter().enumerate() {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            signer.amz_date(),
            signer.scope(),
            prev,
            empty,
            sha256_hex(piece)
        );
        let mut sig = aws_sigv4::sign::v4::calculate_signature(&key, sts.as_bytes());
        prev = sig.clone();
        if corrupt_chunk == Some(i) {
            sig = format!(
                "{}{}",
                &sig[..63],
                if sig.ends_with('0') { '1' } else { '0' }
            );
        }
        out.extend_from_slice(format!("{:x};chunk-signature={}\r\n", piece.len(), sig).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Body of an aws-chunked `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` upload: signed
/// chunks, then one trailer and `x-amz-trailer-signature` (spoiled when `forge_trailer_sig`).
pub fn signed_trailer_body(
    data: &[u8],
    chunk: usize,
    seed: &str,
    signer: &Signer,
    trailer: (&str, &str),
    forge_trailer_sig: bool,
) -> Vec<u8> {
    let mut out = signed_chunked_body(data, chunk, seed, signer, None);
    // The final zero-length chunk has no CRLF after its (empty) data when trailers follow.
    out.truncate(out.len() - 2);
    let last_sig = {
        let text = String::from_utf8_lossy(&out).to_string();
        let at = text.rfind("chunk-signature=").expect("final chunk") + "chunk-signature=".len();
        text[at..at + 64].to_string()
    };
    let canonical = format!("{}:{}\n", trailer.0, trailer.1.trim());
    let sts = format!(
        "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
        signer.amz_date(),
        signer.scope(),
        last_sig,
        sha256_hex(canonical.as_bytes())
    );
    let mut sig = aws_sigv4::sign::v4::calculate_signature(signer.signing_key(), sts.as_bytes());
    if forge_trailer_sig {
        sig = format!(
            "{}{}",
            &sig[..63],
            if sig.ends_with('0') { '1' } else { '0' }
        );
    }
    out.extend_from_slice(format!("{}:{}\r\n", trailer.0, trailer.1).as_bytes());
    out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n\r\n").as_bytes());
    out
}

/// Body of an aws-chunked `STREAMING-UNSIGNED-PAYLOAD-TRAILER` upload with one trailer.
pub fn unsigned_trailer_body(data: &[u8], chunk: usize, trailer: (&str, &str)) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(format!("{}:{}\r\n\r\n", trailer.0, trailer.1).as_bytes());
    out
}

/// Polls `f` until it returns true or `secs` pass; returns whether it became true.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// RFC 7231 IMF-fixdate of `t`.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

pub fn parse_http_date(s: &str) -> SystemTime {
    httpdate::parse_http_date(s).unwrap_or_else(|e| panic!("bad HTTP date {s:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// certificates
// ---------------------------------------------------------------------------------------

pub use jets3_testkit::Pki;

/// Replaces a file the way the kubelet updates a mounted Secret: write aside, rename over.
pub fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Sets bucket `b`'s versioning to `status` (PutBucketVersioning, which must succeed).
pub async fn set_versioning(
    s3: &Client,
    b: &str,
    status: aws_sdk_s3::types::BucketVersioningStatus,
) {
    ok(
        s3.put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(status)
                    .build(),
            )
            .send()
            .await,
        "PutBucketVersioning",
    );
}
