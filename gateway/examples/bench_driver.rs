//! The load driver of the side-by-side benchmark (`scripts/bench.sh`, see BENCHMARKS.md).
//!
//! It runs the workloads against
//! - raw NATS: the async-nats object store directly, the ceiling a gateway can approach. Reads go
//!   either through Direct Get (`--read direct`: meta by last-for-subject, then the chunks in
//!   batches, no consumer, the way jets3 reads) or through `ObjectStore::get` (`--read objstore`,
//!   an ordered consumer per read);
//! - an S3 endpoint (`--s3 http://127.0.0.1:PORT`): jets3-gateway or the Go nats-s3 gateway, through
//!   aws-sdk-s3 with UNSIGNED-PAYLOAD bodies, no checksums and no retries, for the workloads warp
//!   cannot run (listing pages, Range GET, multipart Complete, the RSS run), or all of them;
//! - `warp -- <warp command line>`: runs MinIO's warp and reports its figures, with the CPU time
//!   of warp, the gateway and nats-server over the window warp measured.
//!
//! Every measuring op prints one line `RESULT key=value ...` (ops, ops_s, mb_s, p50_ms, p99_ms,
//! errors, first_error, incorrect, and `client_cpu_s` / `gw_cpu_s` / `nats_cpu_s` for the
//! processes given by `--gateway-pid` and `--nats-pid`) that scripts/bench.sh collects. Every
//! op is bounded in time.
//!
//! ```text
//! cargo run --release --example bench_driver -- [--s3 URL --access A --secret S] [--nats URL] \
//!     --bucket B <op> [--size N] [--clients C] [--seconds D] [--count K] [--read direct|objstore]
//! ```
//!
//! ops: `create` / `drop` (the NATS object store, made the same way for every system),
//! `seed` (`--count` objects `k0000000`... of `--size` bytes), `put`, `get`, `mixed`, `list`
//! (first page of `--page` keys, checked for correct content and pagination first), `range`
//! (`--offset start|end`: a 1 MiB Range GET of a `--size` object, time to first byte),
//! `multipart` (`--size` bytes in `--parts` parts, timing CompleteMultipartUpload), `getmany`
//! (`--clients` concurrent GETs of one `--size` object, once each: the peak RSS workload), `warp`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, object_store};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

const MIB: u64 = 1024 * 1024;
/// Chunks asked for per batched Direct Get (the window of one reader).
const READ_BATCH: usize = 8;
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(about = "jets3 benchmark driver: raw NATS object store or an S3 endpoint")]
struct Args {
    /// NATS server (always used for create/drop and for raw-NATS runs).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// S3 endpoint; when given, the workload goes through it instead of raw NATS.
    #[arg(long)]
    s3: Option<String>,
    #[arg(long, default_value = "")]
    access: String,
    #[arg(long, default_value = "")]
    secret: String,
    #[arg(long)]
    bucket: String,
    /// Object size in bytes (total size for multipart).
    #[arg(long, default_value_t = 4096)]
    size: u64,
    /// Concurrent clients (tasks).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Duration of a timed workload.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Objects to seed (`seed`), or repetitions (`range`).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// Raw-NATS read path.
    #[arg(long, value_enum, default_value_t = ReadPath::Direct)]
    read: ReadPath,
    /// Parts of a multipart upload.
    #[arg(long, default_value_t = 100)]
    parts: usize,
    /// Where the Range GET starts: `start` (offset 0) or `end` (the last 1 MiB).
    #[arg(long, default_value = "start")]
    offset: String,
    /// Keys per listing page.
    #[arg(long, default_value_t = 1000)]
    page: usize,
    /// Label printed in the RESULT line.
    #[arg(long, default_value = "")]
    label: String,
    /// The gateway process, whose CPU time over the measured window is reported (`gw_cpu_s`).
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// The nats-server process, reported the same way (`nats_cpu_s`).
    #[arg(long)]
    nats_pid: Option<u32>,
    op: Op,
    /// `warp`: the warp command line to run (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum ReadPath {
    Direct,
    Objstore,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Op {
    Create,
    Drop,
    Seed,
    Put,
    /// PUTs over 8 keys per client: after the first eight, every PUT replaces an object.
    Overwrite,
    Get,
    Mixed,
    List,
    Range,
    Multipart,
    Getmany,
    Warp,
}

/// Where the operations go.
#[derive(Clone)]
enum Target {
    Nats(Box<Nats>),
    S3(aws_sdk_s3::Client),
}

#[derive(Clone)]
struct Nats {
    client: async_nats::Client,
    store: object_store::ObjectStore,
    bucket: String,
    read: ReadPath,
}

fn s3_client(endpoint: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{
        retry::RetryConfig, timeout::TimeoutConfig, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    let creds = aws_credential_types::Credentials::new(access, secret, None, None, "bench-driver");
    let conf = aws_sdk_s3::Config::builder()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(300))
                .build(),
        )
        .behavior_version_latest()
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Object content: not constant, so nothing along the way can shortcut it.
fn payload(size: u64) -> Bytes {
    let mut v = vec![0u8; size as usize];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        c.copy_from_slice(&b[..c.len()]);
    }
    Bytes::from(v)
}

fn err_text(e: impl std::fmt::Display) -> String {
    let s = e.to_string();
    s.chars().take(200).collect()
}

fn s3_err<E: std::error::Error + 'static>(e: aws_sdk_s3::error::SdkError<E>) -> String {
    match &e {
        aws_sdk_s3::error::SdkError::ServiceError(se) => {
            let raw = se.raw();
            format!(
                "HTTP {} {}",
                raw.status().as_u16(),
                std::str::from_utf8(raw.body().bytes().unwrap_or_default())
                    .unwrap_or("")
                    .chars()
                    .take(160)
                    .collect::<String>()
            )
        }
        _ => err_text(aws_sdk_s3::error::DisplayErrorContext(&e)),
    }
}

// ---- raw NATS reads: Direct Get ---------------------------------------------------------------

#[derive(Deserialize, Default)]
struct MetaInfo {
    #[serde(default)]
    nuid: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    chunks: u64,
    #[serde(default)]
    deleted: bool,
}

#[derive(Serialize, Default)]
struct DirectReq<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_by_subj: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<usize>,
}

struct Msg {
    seq: u64,
    subject: String,
    payload: Bytes,
}

fn decode(m: async_nats::Message) -> Result<Option<Msg>, String> {
    match m.status {
        Some(s) if s.as_u16() == 404 || s.as_u16() == 204 => return Ok(None),
        Some(s) if s.as_u16() != 200 => {
            return Err(format!(
                "direct get status {s} {}",
                m.description.unwrap_or_default()
            ))
        }
        _ => {}
    }
    let h = m
        .headers
        .as_ref()
        .ok_or("direct get reply without headers")?;
    let seq = h
        .get("Nats-Sequence")
        .and_then(|v| v.as_str().parse().ok())
        .ok_or("direct get reply without Nats-Sequence")?;
    let subject = h
        .get("Nats-Subject")
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    Ok(Some(Msg {
        seq,
        subject,
        payload: m.payload,
    }))
}

impl Nats {
    fn stream(&self) -> String {
        format!("OBJ_{}", self.bucket)
    }

    async fn request(&self, subject: String, body: Bytes) -> Result<async_nats::Message, String> {
        tokio::time::timeout(NATS_TIMEOUT, self.client.request(subject, body))
            .await
            .map_err(|_| "direct get timed out".to_string())?
            .map_err(err_text)
    }

    async fn last_for_subject(&self, subject: &str) -> Result<Option<Msg>, String> {
        let m = self
            .request(
                format!("$JS.API.DIRECT.GET.{}.{subject}", self.stream()),
                Bytes::new(),
            )
            .await?;
        decode(m)
    }

    async fn by_seq(&self, seq: u64) -> Result<Option<Msg>, String> {
        let body = serde_json::to_vec(&DirectReq {
            seq: Some(seq),
            ..Default::default()
        })
        .map_err(err_text)?;
        let m = self
            .request(format!("$JS.API.DIRECT.GET.{}", self.stream()), body.into())
            .await?;
        decode(m)
    }

    async fn meta(&self, key: &str) -> Result<MetaInfo, String> {
        let enc = base64::engine::general_purpose::URL_SAFE.encode(key);
        let m = self
            .last_for_subject(&format!("$O.{}.M.{enc}", self.bucket))
            .await?
            .ok_or_else(|| format!("{key}: no such object"))?;
        let info: MetaInfo = serde_json::from_slice(&m.payload).map_err(err_text)?;
        if info.deleted {
            return Err(format!("{key}: deleted"));
        }
        Ok(info)
    }

    /// Calls `each` with the chunks of `subject` from sequence `from`, `READ_BATCH` per request,
    /// until `want` bytes arrived. Returns the bytes read.
    async fn read_chunks(
        &self,
        subject: &str,
        mut from: u64,
        want: u64,
        mut each: impl FnMut(&Msg),
    ) -> Result<u64, String> {
        let mut got = 0u64;
        while got < want {
            let inbox = self.client.new_inbox();
            let mut sub = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(err_text)?;
            let body = serde_json::to_vec(&DirectReq {
                seq: Some(from),
                next_by_subj: Some(subject),
                batch: Some(READ_BATCH),
            })
            .map_err(err_text)?;
            self.client
                .publish_with_reply(
                    format!("$JS.API.DIRECT.GET.{}", self.stream()),
                    inbox,
                    body.into(),
                )
                .await
                .map_err(err_text)?;
            let mut in_batch = 0;
            loop {
                let m = tokio::time::timeout(NATS_TIMEOUT, sub.next())
                    .await
                    .map_err(|_| "direct get batch timed out".to_string())?
                    .ok_or("batch subscription closed")?;
                let Some(msg) = decode(m)? else { break };
                in_batch += 1;
                got += msg.payload.len() as u64;
                from = msg.seq + 1;
                each(&msg);
                if got >= want {
                    break;
                }
            }
            if in_batch == 0 {
                return Err(format!("{subject}: chunks missing after {got} bytes"));
            }
        }
        Ok(got)
    }

    async fn get_direct(&self, key: &str) -> Result<u64, String> {
        let info = self.meta(key).await?;
        let subject = format!("$O.{}.C.{}", self.bucket, info.nuid);
        let got = if info.chunks <= 1 {
            match self.last_for_subject(&subject).await? {
                Some(m) => m.payload.len() as u64,
                None => 0,
            }
        } else {
            self.read_chunks(&subject, 1, info.size, |_| {}).await?
        };
        if got != info.size {
            return Err(format!("{key}: read {got} of {} bytes", info.size));
        }
        Ok(got)
    }

    async fn get_objstore(&self, key: &str) -> Result<u64, String> {
        let mut obj = self.store.get(key).await.map_err(err_text)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        loop {
            let n = obj.read(&mut buf).await.map_err(err_text)?;
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        Ok(got)
    }

    /// `len` bytes at `offset`, by Direct Get of the chunks that hold them; returns (bytes,
    /// time to first byte). The chunk sequence is found from the object's first chunk, assuming
    /// its chunks are contiguous in the stream (true for an object written alone); it falls back
    /// to scanning when they are not.
    async fn range(&self, key: &str, offset: u64, len: u64) -> Result<(u64, Duration), String> {
        let t = Instant::now();
        let info = self.meta(key).await?;
        let subject = format!("$O.{}.C.{}", self.bucket, info.nuid);
        let first = self
            .read_first(&subject)
            .await?
            .ok_or_else(|| format!("{key}: no chunks"))?;
        let chunk = first.payload.len() as u64;
        let idx = offset / chunk;
        let mut ttfb = None;
        let (start_seq, skip) = if idx == 0 {
            ttfb = Some(t.elapsed());
            (first.seq, 0)
        } else {
            match self.by_seq(first.seq + idx).await? {
                Some(m) if m.subject == subject => {
                    ttfb = Some(t.elapsed());
                    (m.seq, idx * chunk)
                }
                // Not contiguous: read from the first chunk on.
                _ => (first.seq, 0),
            }
        };
        let want = (offset + len).min(info.size) - skip;
        let mut seen_first = ttfb;
        let got = self
            .read_chunks(&subject, start_seq, want, |_| {
                if seen_first.is_none() {
                    seen_first = Some(t.elapsed());
                }
            })
            .await?;
        Ok((got.min(len), seen_first.unwrap_or_else(|| t.elapsed())))
    }

    async fn read_first(&self, subject: &str) -> Result<Option<Msg>, String> {
        let body = serde_json::to_vec(&DirectReq {
            seq: Some(1),
            next_by_subj: Some(subject),
            batch: None,
        })
        .map_err(err_text)?;
        let m = self
            .request(format!("$JS.API.DIRECT.GET.{}", self.stream()), body.into())
            .await?;
        decode(m)
    }
}

// ---- one operation on either target -----------------------------------------------------------

impl Target {
    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<u64, String> {
        let n = body.len() as u64;
        match self {
            Target::Nats(n_) => {
                let mut r: &[u8] = &body;
                n_.store.put(key, &mut r).await.map_err(err_text)?;
            }
            Target::S3(c) => {
                c.put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(ByteStream::from(body))
                    .customize()
                    .disable_payload_signing()
                    .send()
                    .await
                    .map_err(s3_err)?;
            }
        }
        Ok(n)
    }

    /// Reads an object (or a range of it) completely; returns (bytes, time to first body byte).
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(u64, Duration), String> {
        let t = Instant::now();
        match self {
            Target::Nats(n) => match range {
                Some((off, len)) => n.range(key, off, len).await,
                None => {
                    let got = match n.read {
                        ReadPath::Direct => n.get_direct(key).await?,
                        ReadPath::Objstore => n.get_objstore(key).await?,
                    };
                    Ok((got, t.elapsed()))
                }
            },
            Target::S3(c) => {
                let mut req = c.get_object().bucket(bucket).key(key);
                if let Some((off, len)) = range {
                    req = req.range(format!("bytes={off}-{}", off + len - 1));
                }
                let out = req.send().await.map_err(s3_err)?;
                let want = out.content_length().unwrap_or(-1);
                let mut body = out.body;
                let mut got = 0u64;
                let mut ttfb = None;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(err_text)?;
                    if ttfb.is_none() && !chunk.is_empty() {
                        ttfb = Some(t.elapsed());
                    }
                    got += chunk.len() as u64;
                }
                if want >= 0 && got != want as u64 {
                    return Err(format!("{key}: body {got} bytes, Content-Length {want}"));
                }
                Ok((got, ttfb.unwrap_or_else(|| t.elapsed())))
            }
        }
    }

    async fn stat(&self, bucket: &str, key: &str) -> Result<u64, String> {
        match self {
            Target::Nats(n) => match n.read {
                ReadPath::Direct => n.meta(key).await.map(|_| 0),
                ReadPath::Objstore => n.store.info(key).await.map(|_| 0).map_err(err_text),
            },
            Target::S3(c) => c
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map(|_| 0)
                .map_err(s3_err),
        }
    }

    async fn size_of(&self, bucket: &str, key: &str) -> Option<u64> {
        match self {
            Target::Nats(n) => n.meta(key).await.ok().map(|i| i.size),
            Target::S3(c) => c
                .head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .ok()
                .and_then(|o| o.content_length())
                .map(|l| l as u64),
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<u64, String> {
        match self {
            Target::Nats(n) => n.store.delete(key).await.map(|_| 0).map_err(err_text),
            Target::S3(c) => c
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map(|_| 0)
                .map_err(s3_err),
        }
    }

    /// One listing page: the keys, whether it is truncated, and the token for the next one.
    async fn list_page(
        &self,
        bucket: &str,
        page: usize,
        token: Option<String>,
    ) -> Result<(Vec<String>, bool, Option<String>), String> {
        match self {
            Target::Nats(n) => {
                // The object store has no paged listing: enumerate everything (an ordered
                // consumer over all metadata), sort, and cut the page.
                let mut names = Vec::new();
                let mut list = n.store.list().await.map_err(err_text)?;
                while let Some(info) = list.next().await {
                    names.push(info.map_err(err_text)?.name);
                }
                names.sort();
                let truncated = names.len() > page;
                names.truncate(page);
                Ok((names, truncated, None))
            }
            Target::S3(c) => {
                let out = c
                    .list_objects_v2()
                    .bucket(bucket)
                    .max_keys(page as i32)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(s3_err)?;
                let keys = out
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string))
                    .collect();
                Ok((
                    keys,
                    out.is_truncated().unwrap_or(false),
                    out.next_continuation_token().map(str::to_string),
                ))
            }
        }
    }
}

// ---- measuring --------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    lat: Vec<Duration>,
    /// Operations and p50 / p99 in ms, when an outside client (warp) measured them instead
    /// of `lat`.
    summary: Option<(u64, f64, f64)>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
    incorrect: Option<String>,
    extra: Vec<(String, String)>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return 0.0;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i].as_secs_f64() * 1000.0
    }

    fn print(mut self, args: &Args, system: &str) {
        self.lat.sort();
        let (ops, p50, p99) = self
            .summary
            .unwrap_or_else(|| (self.lat.len() as u64, self.pct(0.5), self.pct(0.99)));
        let secs = self.secs.max(1e-9);
        let mut line = format!(
            "RESULT label={} system={} op={} size={} clients={} ops={} secs={:.3} ops_s={:.1} mb_s={:.2} p50_ms={:.3} p99_ms={:.3} errors={}",
            if args.label.is_empty() { "-" } else { &args.label },
            system,
            format!("{:?}", args.op).to_lowercase(),
            args.size,
            args.clients,
            ops,
            secs,
            ops as f64 / secs,
            self.bytes as f64 / secs / 1e6,
            p50,
            p99,
            self.errors
        );
        for (k, v) in &self.extra {
            line.push_str(&format!(" {k}={v}"));
        }
        if let Some(e) = &self.first_error {
            line.push_str(&format!(" first_error={:?}", e));
        }
        if let Some(e) = &self.incorrect {
            line.push_str(&format!(" incorrect={:?}", e));
        }
        println!("{line}");
    }
}

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time (user + system) a process has used so far, in clock ticks; `None` once it is gone.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The processes whose CPU time a measured window is charged with: the client, and the
/// gateway and nats-server when their pids are given.
#[derive(Clone)]
struct CpuWatch(Vec<(&'static str, u32)>);

impl CpuWatch {
    fn new(client: u32, args: &Args) -> CpuWatch {
        let mut pids = vec![("client_cpu_s", client)];
        pids.extend(args.gateway_pid.map(|p| ("gw_cpu_s", p)));
        pids.extend(args.nats_pid.map(|p| ("nats_cpu_s", p)));
        CpuWatch(pids)
    }

    fn ticks(&self) -> Vec<Option<u64>> {
        self.0.iter().map(|(_, pid)| cpu_ticks(*pid)).collect()
    }

    /// `name=seconds` fields for the CPU used between two `ticks()` readings.
    fn fields(&self, from: &[Option<u64>], to: &[Option<u64>]) -> Vec<(String, String)> {
        self.0
            .iter()
            .zip(from.iter().zip(to))
            .filter_map(|((name, _), (a, b))| {
                let used = b.as_ref()?.checked_sub(*a.as_ref()?)?;
                Some((
                    name.to_string(),
                    format!("{:.2}", used as f64 / TICKS_PER_SEC),
                ))
            })
            .collect()
    }
}

/// Runs `f(client, n)` in `clients` tasks for `seconds` (or `count_each` times each when given);
/// `f` returns the bytes it moved.
async fn run<F, Fut>(
    cpu: &CpuWatch,
    clients: usize,
    seconds: f64,
    count_each: Option<u64>,
    f: F,
) -> Stats
where
    F: Fn(usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<u64, String>> + Send,
{
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let cpu0 = cpu.ticks();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (f, bytes, errors, first_error) = (
            f.clone(),
            bytes.clone(),
            errors.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            loop {
                match count_each {
                    Some(k) if n >= k => break,
                    None if Instant::now() >= deadline => break,
                    _ => {}
                }
                let t = Instant::now();
                match f(c, n).await {
                    Ok(b) => {
                        bytes.fetch_add(b, Ordering::Relaxed);
                        lat.push(t.elapsed());
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
                        // Do not spin on a failing server.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                n += 1;
            }
            lat
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        stats.lat.extend(t.await.expect("task"));
    }
    stats.secs = started.elapsed().as_secs_f64();
    stats.bytes = bytes.load(Ordering::Relaxed);
    stats.errors = errors.load(Ordering::Relaxed);
    stats.first_error = first_error.lock().unwrap().take();
    stats.extra = cpu.fields(&cpu0, &cpu.ticks());
    stats
}

/// Seeds `count` objects `name(i)` of `size` bytes with `clients` tasks.
async fn seed(
    t: &Target,
    bucket: &str,
    count: usize,
    clients: usize,
    size: u64,
    name: impl Fn(usize) -> String + Clone + Send + Sync + 'static,
) -> Result<(), String> {
    let body = payload(size);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (t, bucket, body, next, name) = (
            t.clone(),
            bucket.to_string(),
            body.clone(),
            next.clone(),
            name.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    return Ok::<(), String>(());
                }
                t.put(&bucket, &name(i), body.clone()).await?;
            }
        }));
    }
    for task in tasks {
        task.await.map_err(err_text)??;
    }
    Ok(())
}

/// Puts `key` with `size` bytes unless it is already there with that size.
async fn ensure_object(t: &Target, bucket: &str, key: &str, size: u64) -> Result<(), String> {
    if t.size_of(bucket, key).await == Some(size) {
        return Ok(());
    }
    t.put(bucket, key, payload(size)).await.map(|_| ())
}

fn key_name(i: usize) -> String {
    format!("k{i:07}")
}

async fn list_check(t: &Target, bucket: &str, count: usize, page: usize) -> Option<String> {
    let expect: Vec<String> = (0..count.min(2 * page)).map(key_name).collect();
    let (keys, truncated, token) = match t.list_page(bucket, page, None).await {
        Ok(p) => p,
        Err(e) => return Some(format!("first page failed: {e}")),
    };
    let want = &expect[..count.min(page)];
    if keys != want {
        return Some(format!(
            "first page has {} keys starting {}, expected {} starting {}",
            keys.len(),
            keys.first().map(String::as_str).unwrap_or("-"),
            want.len(),
            want.first().map(String::as_str).unwrap_or("-")
        ));
    }
    if truncated != (count > page) {
        return Some(format!("IsTruncated={truncated} with {count} objects"));
    }
    if count > page && matches!(t, Target::S3(_)) {
        let Some(token) = token else {
            return Some("no NextContinuationToken on a truncated page".into());
        };
        match t.list_page(bucket, page, Some(token)).await {
            Ok((keys2, _, _)) => {
                let want2 = &expect[page..];
                if keys2 != want2 {
                    return Some(format!(
                        "second page has {} keys starting {}, expected {} starting {}",
                        keys2.len(),
                        keys2.first().map(String::as_str).unwrap_or("-"),
                        want2.len(),
                        want2.first().map(String::as_str).unwrap_or("-")
                    ));
                }
            }
            Err(e) => return Some(format!("second page failed: {e}")),
        }
    }
    None
}

async fn multipart(t: &Target, bucket: &str, size: u64, parts: usize) -> Stats {
    let mut stats = Stats::default();
    let Target::S3(c) = t else {
        stats.incorrect = Some("raw NATS has no multipart upload".into());
        return stats;
    };
    let key = format!("mpu-{}", rand::thread_rng().gen::<u32>());
    let part_size = size / parts as u64;
    let last_size = size - part_size * (parts as u64 - 1);
    let started = Instant::now();
    let result: Result<(), String> = async {
        let up = c
            .create_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .map_err(s3_err)?;
        let id = up.upload_id().ok_or("no UploadId")?.to_string();
        let body = payload(part_size);
        let last = payload(last_size);
        let etags = Arc::new(Mutex::new(vec![String::new(); parts]));
        let next = Arc::new(AtomicU64::new(1));
        let mut tasks = Vec::new();
        let upload_start = Instant::now();
        for _ in 0..4 {
            let (c, bucket, key, id, body, last, etags, next) = (
                c.clone(),
                bucket.to_string(),
                key.clone(),
                id.clone(),
                body.clone(),
                last.clone(),
                etags.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if n > parts {
                        return Ok::<(), String>(());
                    }
                    let b = if n == parts {
                        last.clone()
                    } else {
                        body.clone()
                    };
                    let out = c
                        .upload_part()
                        .bucket(&bucket)
                        .key(&key)
                        .upload_id(&id)
                        .part_number(n as i32)
                        .body(ByteStream::from(b))
                        .customize()
                        .disable_payload_signing()
                        .send()
                        .await
                        .map_err(s3_err)?;
                    etags.lock().unwrap()[n - 1] = out.e_tag().unwrap_or_default().to_string();
                }
            }));
        }
        for task in tasks {
            task.await.map_err(err_text)??;
        }
        let upload_secs = upload_start.elapsed().as_secs_f64();
        let done: Vec<CompletedPart> = etags
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, e)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(e)
                    .build()
            })
            .collect();
        let t0 = Instant::now();
        c.complete_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_err)?;
        stats.lat.push(t0.elapsed());
        stats.extra.push((
            "upload_mb_s".into(),
            format!("{:.1}", size as f64 / upload_secs / 1e6),
        ));
        match t.size_of(bucket, &key).await {
            Some(s) if s == size => {}
            other => stats.incorrect = Some(format!("object size after complete {other:?}")),
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        stats.errors += 1;
        stats.first_error = Some(e);
    }
    stats.secs = started.elapsed().as_secs_f64();
    stats
}

// ---- warp ---------------------------------------------------------------------------------------

/// How often the CPU time of warp, the gateway and nats-server is read during a warp run.
const CPU_SAMPLE: Duration = Duration::from_millis(50);

/// Runs the warp command line of `args`, reading the CPU time of warp, the gateway and
/// nats-server every `CPU_SAMPLE`, and reports warp's figures (its `--json` output) for the
/// window warp measured, with the CPU each process used in that window.
async fn warp(args: &Args) -> Result<Stats, String> {
    use tokio::io::AsyncReadExt as _;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or("warp: give the warp command line after --")?;
    let mut child = tokio::process::Command::new(program)
        .args(rest)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    let cpu = CpuWatch::new(child.id().ok_or("warp exited at once")?, args);
    let (mut out, mut err) = (
        child.stdout.take().ok_or("warp stdout")?,
        child.stderr.take().ok_or("warp stderr")?,
    );
    let out = tokio::spawn(async move {
        let mut b = Vec::new();
        out.read_to_end(&mut b).await.map(|_| b)
    });
    let err = tokio::spawn(async move {
        let mut b = Vec::new();
        err.read_to_end(&mut b).await.map(|_| b)
    });
    let mut samples = Vec::new();
    let status = loop {
        samples.push((time::OffsetDateTime::now_utc(), cpu.ticks()));
        tokio::select! {
            status = child.wait() => break status.map_err(err_text)?,
            _ = tokio::time::sleep(CPU_SAMPLE) => {}
        }
    };
    // One more reading after warp exited, in case its window ended after the last one; warp's
    // own CPU time is gone with it, so its previous reading stands in.
    let mut last = cpu.ticks();
    if let Some((_, before)) = samples.last() {
        last[0] = before[0];
    }
    samples.push((time::OffsetDateTime::now_utc(), last));
    let out = out.await.map_err(err_text)?.map_err(err_text)?;
    let err = err.await.map_err(err_text)?.map_err(err_text)?;
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        return Err(format!("warp failed ({status}): {}", tail.join(" / ")));
    }
    let text = String::from_utf8_lossy(&out);
    let json = text
        .find('{')
        .map(|i| &text[i..])
        .ok_or("warp printed no JSON")?;
    let report: serde_json::Value = serde_json::from_str(json).map_err(err_text)?;
    let benchmark = rest.first().map(String::as_str).unwrap_or_default();
    warp_stats(&report, benchmark, &cpu, &samples)
}

/// Figures from warp's final report of `benchmark` (`put`, `get` or `mixed`): operations,
/// bytes, errors, the window they ran in, and p50 / p99 (of the GETs for `mixed`). They come
/// from the report's per-operation sections: its totals may count an upload of the preparation
/// phase, which stretches the window back to it.
fn warp_stats(
    report: &serde_json::Value,
    benchmark: &str,
    cpu: &CpuWatch,
    samples: &[(time::OffsetDateTime, Vec<Option<u64>>)],
) -> Result<Stats, String> {
    use time::format_description::well_known::Rfc3339;
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let when = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(v.as_str().unwrap_or_default(), &Rfc3339).map_err(err_text)
    };
    let by_type = report["by_op_type"]
        .as_object()
        .ok_or("warp report without by_op_type")?;
    let host = |op: &serde_json::Value| {
        op["throughput_by_host"]
            .as_object()
            .and_then(|hosts| hosts.values().next())
            .cloned()
            .ok_or("warp report without throughput_by_host")
    };
    // The operation types of the benchmark, and the one whose window and latencies count.
    let (types, main): (&[&str], &str) = match benchmark {
        "put" => (&["PUT"], "PUT"),
        "get" => (&["GET"], "GET"),
        "mixed" => (&["GET", "STAT", "PUT", "DELETE"], "GET"),
        other => return Err(format!("warp {other:?}: not a benchmark the driver reads")),
    };
    let op = by_type
        .get(main)
        .ok_or_else(|| format!("warp report without {main}"))?;
    let window = host(op)?;
    let (start, end) = (when(&window["start_time"])?, when(&window["end_time"])?);
    let mut stats = Stats::default();
    let mut ops = 0.0;
    for section in types.iter().filter_map(|t| by_type.get(*t)) {
        let h = host(section)?;
        ops += num(&h["ops"]);
        stats.bytes += num(&h["bytes"]) as u64;
        stats.errors += num(&section["total_errors"]) as u64;
        if stats.first_error.is_none() {
            stats.first_error = section["first_errors"]
                .get(0)
                .and_then(|e| e.as_str())
                .map(str::to_string);
        }
    }
    let latency = op["requests_by_client"]
        .as_object()
        .and_then(|clients| clients.values().next())
        .and_then(|segments| segments.get(0))
        .map(|s| &s["single_sized_requests"])
        .ok_or("warp report without request latencies")?;
    stats.summary = Some((
        ops as u64,
        num(&latency["dur_median_millis"]),
        num(&latency["dur_99_millis"]),
    ));
    stats.secs = num(&window["measure_duration_millis"]) / 1000.0;
    // CPU from the last reading at or before the window's start to the first at or after its end.
    let before = samples.iter().rev().find(|(at, _)| *at <= start);
    let after = samples.iter().find(|(at, _)| *at >= end);
    if let (Some((_, a)), Some((_, b))) = (before.or(samples.first()), after.or(samples.last())) {
        stats.extra = cpu.fields(a, b);
    }
    Ok(stats)
}

async fn main_inner(args: Args) -> Result<(), String> {
    if args.op == Op::Warp {
        let stats = warp(&args).await?;
        stats.print(&args, "warp");
        return Ok(());
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&args.nats)
        .await
        .map_err(err_text)?;
    let js = jetstream::new(client.clone());
    let bucket = args.bucket.clone();

    match args.op {
        Op::Create => {
            js.create_object_store(object_store::Config {
                bucket: bucket.clone(),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(err_text)?;
            // `ObjectStore::get` reads through an ordered consumer that it leaves to expire
            // (5 s idle): at a benchmark's rate they outnumber nats-server's default limit
            // of 1000 consumers per stream, which a limit of the stream's own replaces.
            let mut stream = js
                .get_stream(format!("OBJ_{bucket}"))
                .await
                .map_err(err_text)?;
            let mut config = stream.info().await.map_err(err_text)?.config.clone();
            config.max_consumers = 1 << 20;
            js.update_stream(config).await.map_err(err_text)?;
            return Ok(());
        }
        Op::Drop => {
            return match js.delete_object_store(&bucket).await {
                Ok(_) => Ok(()),
                Err(e) if e.to_string().contains("not found") => Ok(()),
                Err(e) => Err(err_text(e)),
            };
        }
        _ => {}
    }

    let store = js.get_object_store(&bucket).await.map_err(err_text)?;
    let nats = Nats {
        client: client.clone(),
        store,
        bucket: bucket.clone(),
        read: args.read,
    };
    let (target, system) = match &args.s3 {
        Some(url) => (
            Target::S3(s3_client(url, &args.access, &args.secret)),
            "s3".to_string(),
        ),
        None => (
            Target::Nats(Box::new(nats)),
            format!("nats-{}", format!("{:?}", args.read).to_lowercase()),
        ),
    };
    let (size, clients, seconds) = (args.size, args.clients.max(1), args.seconds);
    let cpu = CpuWatch::new(std::process::id(), &args);

    let stats = match args.op {
        Op::Create | Op::Drop | Op::Warp => unreachable!(),
        Op::Seed => {
            let t0 = Instant::now();
            seed(&target, &bucket, args.count, clients, size, key_name).await?;
            eprintln!(
                "bench_driver: seeded {} objects of {size} B in {:.1}s",
                args.count,
                t0.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Op::Put => {
            let body = payload(size);
            let (t, b) = (target.clone(), bucket.clone());
            run(&cpu, clients, seconds, None, move |c, n| {
                let (t, b, body) = (t.clone(), b.clone(), body.clone());
                async move { t.put(&b, &format!("p-{c}-{n}"), body).await }
            })
            .await
        }
        Op::Overwrite => {
            let body = payload(size);
            let (t, b) = (target.clone(), bucket.clone());
            run(&cpu, clients, seconds, None, move |c, n| {
                let (t, b, body) = (t.clone(), b.clone(), body.clone());
                async move { t.put(&b, &format!("o-{c}-{}", n % 8), body).await }
            })
            .await
        }
        Op::Get => {
            seed(&target, &bucket, clients, clients, size, |i| {
                format!("g-{i}")
            })
            .await?;
            let (t, b) = (target.clone(), bucket.clone());
            run(&cpu, clients, seconds, None, move |c, _| {
                let (t, b) = (t.clone(), b.clone());
                async move {
                    let (got, _) = t.get(&b, &format!("g-{c}"), None).await?;
                    if got != size {
                        return Err(format!("read {got} of {size} bytes"));
                    }
                    Ok(got)
                }
            })
            .await
        }
        Op::Mixed => {
            // warp mixed's default distribution: 45% GET, 30% STAT, 15% PUT, 10% DELETE.
            const POOL: usize = 64;
            seed(&target, &bucket, POOL, clients, size, |i| format!("m-{i}")).await?;
            let body = payload(size);
            let (t, b) = (target.clone(), bucket.clone());
            run(&cpu, clients, seconds, None, move |c, n| {
                let (t, b, body) = (t.clone(), b.clone(), body.clone());
                async move {
                    let (dice, pick) = {
                        let mut r = rand::thread_rng();
                        (r.gen_range(0..100u32), r.gen_range(0..POOL))
                    };
                    let key = format!("m-{pick}");
                    match dice {
                        0..=44 => {
                            let (got, _) = t.get(&b, &key, None).await?;
                            if got != size {
                                return Err(format!("read {got} of {size} bytes"));
                            }
                            Ok(got)
                        }
                        45..=74 => t.stat(&b, &key).await,
                        // A PUT of a new key, deleted by this client's later DELETE draws.
                        75..=89 => t.put(&b, &format!("w-{c}-{n}"), body).await,
                        _ => {
                            // Delete what this client put last (or nothing if it put nothing).
                            let own = format!("w-{c}-{}", n.saturating_sub(1));
                            match t.delete(&b, &own).await {
                                Ok(x) => Ok(x),
                                Err(_) => t.stat(&b, &key).await,
                            }
                        }
                    }
                }
            })
            .await
        }
        Op::List => {
            let incorrect = list_check(&target, &bucket, args.count, args.page).await;
            let (t, b, page) = (target.clone(), bucket.clone(), args.page);
            let mut s = run(&cpu, 1, seconds, None, move |_, _| {
                let (t, b) = (t.clone(), b.clone());
                async move {
                    let (keys, _, _) = t.list_page(&b, page, None).await?;
                    let _ = keys;
                    Ok(0)
                }
            })
            .await;
            s.incorrect = incorrect;
            s
        }
        Op::Range => {
            ensure_object(&target, &bucket, "range-object", size).await?;
            let len = MIB.min(size);
            let off = if args.offset == "end" { size - len } else { 0 };
            let mut s = Stats::default();
            let t0 = Instant::now();
            let mut total = Vec::new();
            for _ in 0..args.count {
                let t1 = Instant::now();
                match target.get(&bucket, "range-object", Some((off, len))).await {
                    Ok((got, ttfb)) if got == len => {
                        s.lat.push(ttfb);
                        s.bytes += got;
                        total.push(t1.elapsed());
                    }
                    Ok((got, _)) => {
                        s.errors += 1;
                        s.first_error
                            .get_or_insert(format!("range read {got} of {len} bytes"));
                    }
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert(e);
                    }
                }
                if t0.elapsed().as_secs_f64() > seconds {
                    break;
                }
            }
            total.sort();
            if let Some(m) = total.get(total.len() / 2) {
                s.extra.push((
                    "total_p50_ms".into(),
                    format!("{:.3}", m.as_secs_f64() * 1e3),
                ));
            }
            s.secs = t0.elapsed().as_secs_f64();
            s
        }
        Op::Multipart => multipart(&target, &bucket, size, args.parts).await,
        Op::Getmany => {
            ensure_object(&target, &bucket, "big-object", size).await?;
            let (t, b) = (target.clone(), bucket.clone());
            run(&cpu, clients, seconds, Some(1), move |_, _| {
                let (t, b) = (t.clone(), b.clone());
                async move {
                    let (got, _) = t.get(&b, "big-object", None).await?;
                    if got != size {
                        return Err(format!("read {got} of {size} bytes"));
                    }
                    Ok(got)
                }
            })
            .await
        }
    };
    stats.print(&args, &system);
    Ok(())
}

fn main() {
    let args = Args::parse();
    // A hard bound on every run, whatever the server does.
    let limit = Duration::from_secs_f64(args.seconds.max(1.0) + 600.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt.block_on(async move {
        match tokio::time::timeout(limit, main_inner(args)).await {
            Ok(r) => r,
            Err(_) => Err(format!("gave up after {limit:?}")),
        }
    });
    if let Err(e) = res {
        eprintln!("bench_driver: {e}");
        std::process::exit(1);
    }
    // Do not wait for lingering tasks or connections.
    std::process::exit(0);
}
