//! The S3 client that the chart's `helm test` and the cluster scenario suite (`e2e/cluster`) run
//! inside the cluster: as a pod or Job with an app's Secret as `envFrom`, or with `kubectl
//! exec` in a client pod.
//!
//! It reads `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`
//! (the keys of the Secret the operator writes; flags override them; `--bucket` defaults to its
//! `BUCKET_NAME`), sends every request once
//! (no SDK retries: a failure is counted, never hidden) and prints one JSON object on stdout.
//!
//! ```text
//! jets3-e2e-client roundtrip --bucket B [--size N]   once the keys work: PUT, multipart upload,
//!                                                   GET (bytes compared), LIST, DELETE
//! jets3-e2e-client load --bucket B --seconds S [--workers W] [--size N] [--pause-ms P]
//!                                                   PUT + GET + DELETE loops; counts failed requests
//! jets3-e2e-client probe --bucket B [--until ok|refused] [--timeout-seconds T]
//!                                                   PUTs until the keys work (or are refused)
//! jets3-e2e-client put --bucket B --key K [--size N] / get --bucket B --key K
//!                                                   one object: its size and SHA-256
//! jets3-e2e-client idle                             waits for SIGTERM (a pod to `kubectl exec` in)
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region, StalledStreamProtectionConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Parser)]
#[command(about = "In-cluster S3 client of the jets3 cluster scenario suite")]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where to connect and with which keys (an app Secret's variables by default).
#[derive(Args)]
struct Conn {
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true)]
    endpoint: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID", global = true, hide_env_values = true)]
    access_key_id: Option<String>,
    #[arg(
        long,
        env = "AWS_SECRET_ACCESS_KEY",
        global = true,
        hide_env_values = true
    )]
    secret_access_key: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// Seconds one request may take before it counts as failed.
    #[arg(long, default_value_t = 10, global = true)]
    request_timeout_seconds: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// PUT an object and a two-part multipart upload, GET both back (bytes compared), LIST, DELETE.
    Roundtrip {
        /// The bucket (default: BUCKET_NAME, which the Secret of a one-bucket credential has).
        #[arg(long, env = "BUCKET_NAME")]
        bucket: String,
        /// Bytes of the single-PUT object.
        #[arg(long, default_value_t = 1 << 20)]
        size: usize,
        /// Seconds to wait first for the keys to work (a new credential's Secret may be
        /// written a moment before the gateways hold its key), as an app retries.
        #[arg(long, default_value_t = 60)]
        wait_seconds: u64,
    },
    /// Steady load until `--seconds` pass: each worker PUTs an object, GETs it (bytes
    /// compared) and DELETEs it, over and over. Every request counts once.
    Load {
        /// The bucket (default: BUCKET_NAME, which the Secret of a one-bucket credential has).
        #[arg(long, env = "BUCKET_NAME")]
        bucket: String,
        #[arg(long)]
        seconds: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 4096)]
        size: usize,
        /// Pause of each worker between two PUT-GET-DELETE rounds.
        #[arg(long, default_value_t = 20)]
        pause_ms: u64,
    },
    /// One small PUT per attempt, every 20 ms, until the outcome is `--until`.
    Probe {
        /// The bucket (default: BUCKET_NAME, which the Secret of a one-bucket credential has).
        #[arg(long, env = "BUCKET_NAME")]
        bucket: String,
        #[arg(long, value_enum, default_value_t = Outcome::Ok)]
        until: Outcome,
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// PUT one object of random bytes; prints its size and SHA-256.
    Put {
        /// The bucket (default: BUCKET_NAME, which the Secret of a one-bucket credential has).
        #[arg(long, env = "BUCKET_NAME")]
        bucket: String,
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 1 << 20)]
        size: usize,
    },
    /// GET one object; prints its size and SHA-256.
    Get {
        /// The bucket (default: BUCKET_NAME, which the Secret of a one-bucket credential has).
        #[arg(long, env = "BUCKET_NAME")]
        bucket: String,
        #[arg(long)]
        key: String,
    },
    /// Waits for SIGTERM, then exits 0.
    Idle,
}

/// What a request with a given key got.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ok,
    /// The gateway refused the key (InvalidAccessKeyId, AccessDenied, SignatureDoesNotMatch).
    Refused,
    /// Anything else: no answer, another error code.
    Error,
}

/// A failed request: its S3 error code (or the transport error) and message.
struct Failure {
    code: String,
    message: String,
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self.code.as_str() {
            "InvalidAccessKeyId" | "AccessDenied" | "SignatureDoesNotMatch" => Outcome::Refused,
            _ => Outcome::Error,
        }
    }
}

impl<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug> From<SdkError<E, R>>
    for Failure
{
    fn from(e: SdkError<E, R>) -> Self {
        let code = e.code().unwrap_or("").to_string();
        let message = match &e {
            SdkError::ServiceError(s) => s.err().message().unwrap_or_default().to_string(),
            other => format!("{}", aws_sdk_s3::error::DisplayErrorContext(other)),
        };
        let code = if code.is_empty() {
            match e {
                SdkError::TimeoutError(_) => "Timeout",
                SdkError::DispatchFailure(_) => "DispatchFailure",
                SdkError::ResponseError(_) => "ResponseError",
                _ => "Unknown",
            }
            .to_string()
        } else {
            code
        };
        Failure { code, message }
    }
}

/// Exit status and report of a command that either worked or failed with a message.
fn outcome(r: Result<serde_json::Value, String>) -> (bool, serde_json::Value) {
    match r {
        Ok(v) => (true, v),
        Err(e) => (false, json!({"ok": false, "error": e})),
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn client(conn: &Conn) -> Result<Client, String> {
    let endpoint = conn
        .endpoint
        .clone()
        .ok_or("no endpoint: set AWS_ENDPOINT_URL or --endpoint")?;
    let (Some(ak), Some(sk)) = (&conn.access_key_id, &conn.secret_access_key) else {
        return Err("no keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(conn.region.clone()))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(ak, sk, None, None, "jets3-e2e"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(conn.request_timeout_seconds))
                .build(),
        )
        .build();
    Ok(Client::from_conf(config))
}

fn random_bytes(n: usize) -> Bytes {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    Bytes::from(v)
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn get_bytes(c: &Client, bucket: &str, key: &str) -> Result<Bytes, Failure> {
    let out = c.get_object().bucket(bucket).key(key).send().await?;
    out.body
        .collect()
        .await
        .map(|d| d.into_bytes())
        .map_err(|e| Failure {
            code: "BodyError".into(),
            message: e.to_string(),
        })
}

async fn roundtrip(c: &Client, bucket: &str, size: usize) -> Result<serde_json::Value, String> {
    let fail = |what: &str, f: Failure| format!("{what}: {} {}", f.code, f.message);
    let run = unix_ms();
    let single = format!("roundtrip/{run}/single.bin");
    let body = random_bytes(size);
    c.put_object()
        .bucket(bucket)
        .key(&single)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .map_err(|e| fail("PUT", e.into()))?;

    // Multipart: a 5 MiB part (the S3 minimum for all but the last) and a 1 MiB one.
    let multi = format!("roundtrip/{run}/multipart.bin");
    let parts = [random_bytes(5 << 20), random_bytes(1 << 20)];
    let upload = c
        .create_multipart_upload()
        .bucket(bucket)
        .key(&multi)
        .send()
        .await
        .map_err(|e| fail("CreateMultipartUpload", e.into()))?;
    let id = upload.upload_id().unwrap_or_default().to_string();
    let mut done = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let n = i as i32 + 1;
        let out = c
            .upload_part()
            .bucket(bucket)
            .key(&multi)
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .map_err(|e| fail("UploadPart", e.into()))?;
        done.push(
            CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
    }
    c.complete_multipart_upload()
        .bucket(bucket)
        .key(&multi)
        .upload_id(&id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(done))
                .build(),
        )
        .send()
        .await
        .map_err(|e| fail("CompleteMultipartUpload", e.into()))?;

    let got = get_bytes(c, bucket, &single)
        .await
        .map_err(|e| fail("GET", e))?;
    if sha256(&got) != sha256(&body) {
        return Err(format!(
            "GET {single}: {} bytes read back differ from the {} written",
            got.len(),
            body.len()
        ));
    }
    let whole: Vec<u8> = parts.concat();
    let got = get_bytes(c, bucket, &multi)
        .await
        .map_err(|e| fail("GET multipart", e))?;
    if sha256(&got) != sha256(&whole) {
        return Err(format!(
            "GET {multi}: {} bytes read back differ from the {} uploaded",
            got.len(),
            whole.len()
        ));
    }
    let listed = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("roundtrip/{run}/"))
        .send()
        .await
        .map_err(|e| fail("LIST", e.into()))?;
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    if keys != [multi.clone(), single.clone()] {
        return Err(format!("LIST roundtrip/{run}/ gave {keys:?}"));
    }
    for key in [&single, &multi] {
        c.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| fail("DELETE", e.into()))?;
    }
    Ok(json!({
        "ok": true,
        "bytes": size + whole.len(),
        "sha256": sha256(&body),
        "listed": keys,
    }))
}

#[derive(Serialize)]
struct LoadError {
    at_unix_ms: u128,
    op: &'static str,
    code: String,
    message: String,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    failed: u64,
    by_op: BTreeMap<&'static str, (u64, u64)>,
    errors: Vec<LoadError>,
}

impl Tally {
    fn count(&mut self, op: &'static str, r: Result<(), Failure>) -> bool {
        self.requests += 1;
        let e = self.by_op.entry(op).or_default();
        e.0 += 1;
        match r {
            Ok(()) => true,
            Err(f) => {
                self.failed += 1;
                e.1 += 1;
                if self.errors.len() < 50 {
                    self.errors.push(LoadError {
                        at_unix_ms: unix_ms(),
                        op,
                        code: f.code,
                        message: f.message,
                    });
                }
                false
            }
        }
    }
}

async fn load_worker(
    c: Client,
    bucket: String,
    worker: usize,
    until: Instant,
    size: usize,
    pause: Duration,
) -> Tally {
    let mut t = Tally::default();
    let run = unix_ms();
    let mut i = 0u64;
    while Instant::now() < until {
        let key = format!("load/{run}/{worker}/{i}");
        let body = random_bytes(size);
        let put = c
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(Failure::from);
        if t.count("put", put) {
            let get = get_bytes(&c, &bucket, &key).await.and_then(|got| {
                if got == body {
                    Ok(())
                } else {
                    Err(Failure {
                        code: "WrongContent".into(),
                        message: format!(
                            "{key}: {} bytes read back differ from the {} written",
                            got.len(),
                            body.len()
                        ),
                    })
                }
            });
            t.count("get", get);
            let del = c
                .delete_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .map(|_| ())
                .map_err(Failure::from);
            t.count("delete", del);
        }
        i += 1;
        tokio::time::sleep(pause).await;
    }
    t
}

async fn load(
    c: &Client,
    bucket: &str,
    seconds: u64,
    workers: usize,
    size: usize,
    pause_ms: u64,
) -> serde_json::Value {
    let start = unix_ms();
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            tokio::spawn(load_worker(
                c.clone(),
                bucket.to_string(),
                w,
                until,
                size,
                Duration::from_millis(pause_ms),
            ))
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = match task.await {
            Ok(t) => t,
            Err(e) => {
                let mut t = Tally::default();
                t.count(
                    "worker",
                    Err(Failure {
                        code: "WorkerPanicked".into(),
                        message: e.to_string(),
                    }),
                );
                t
            }
        };
        all.requests += t.requests;
        all.failed += t.failed;
        for (op, (n, f)) in t.by_op {
            let e = all.by_op.entry(op).or_default();
            e.0 += n;
            e.1 += f;
        }
        all.errors.extend(t.errors);
    }
    all.errors.sort_by_key(|e| e.at_unix_ms);
    let by_op: BTreeMap<_, _> = all
        .by_op
        .iter()
        .map(|(op, (n, f))| (*op, json!({"requests": n, "failed": f})))
        .collect();
    json!({
        "started_unix_ms": start,
        "ended_unix_ms": unix_ms(),
        "requests": all.requests,
        "failed": all.failed,
        "by_op": by_op,
        "errors": all.errors,
    })
}

async fn probe(
    c: &Client,
    bucket: &str,
    until: Outcome,
    timeout: Duration,
) -> (bool, serde_json::Value) {
    let start = unix_ms();
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let r = c
            .put_object()
            .bucket(bucket)
            .key(format!("probe/{}", unix_ms()))
            .body(ByteStream::from_static(b"probe"))
            .send()
            .await;
        let (outcome, code, message) = match r {
            Ok(_) => (Outcome::Ok, String::new(), String::new()),
            Err(e) => {
                let f = Failure::from(e);
                (f.outcome(), f.code, f.message)
            }
        };
        if outcome == until || Instant::now() >= deadline {
            let report = json!({
                "outcome": outcome,
                "code": code,
                "message": message,
                "attempts": attempts,
                "started_unix_ms": start,
                "at_unix_ms": unix_ms(),
            });
            return (outcome == until, report);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn put(
    c: &Client,
    bucket: &str,
    key: &str,
    size: usize,
) -> Result<serde_json::Value, String> {
    let body = random_bytes(size);
    c.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .map_err(|e| {
            let f = Failure::from(e);
            format!("PUT {key}: {} {}", f.code, f.message)
        })?;
    Ok(json!({"ok": true, "size": size, "sha256": sha256(&body)}))
}

async fn get(c: &Client, bucket: &str, key: &str) -> Result<serde_json::Value, String> {
    let got = get_bytes(c, bucket, key)
        .await
        .map_err(|f| format!("GET {key}: {} {}", f.code, f.message))?;
    Ok(json!({"ok": true, "size": got.len(), "sha256": sha256(&got)}))
}

async fn idle() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(e) => {
            eprintln!("cannot wait for SIGTERM: {e}");
            std::process::exit(1);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    if let Cmd::Idle = cli.cmd {
        idle().await;
        return;
    }
    let c = match client(&cli.conn) {
        Ok(c) => c,
        Err(e) => {
            println!("{}", json!({"ok": false, "error": e}));
            std::process::exit(2);
        }
    };
    let (ok, report) = match cli.cmd {
        Cmd::Roundtrip {
            bucket,
            size,
            wait_seconds,
        } => match probe(&c, &bucket, Outcome::Ok, Duration::from_secs(wait_seconds)).await {
            (true, _) => outcome(roundtrip(&c, &bucket, size).await),
            (false, report) => (
                false,
                json!({"ok": false, "error": "the keys never worked", "probe": report}),
            ),
        },
        Cmd::Load {
            bucket,
            seconds,
            workers,
            size,
            pause_ms,
        } => (
            true,
            load(&c, &bucket, seconds, workers, size, pause_ms).await,
        ),
        Cmd::Probe {
            bucket,
            until,
            timeout_seconds,
        } => probe(&c, &bucket, until, Duration::from_secs(timeout_seconds)).await,
        Cmd::Put { bucket, key, size } => outcome(put(&c, &bucket, &key, size).await),
        Cmd::Get { bucket, key } => outcome(get(&c, &bucket, &key).await),
        Cmd::Idle => (true, json!({})),
    };
    println!("{report}");
    if !ok {
        std::process::exit(1);
    }
}
