//! The listing benchmark's driver (`scripts/bench-listing.sh`, `make bench-listing`, see
//! BENCHMARKS.md): what a bucket of many small objects costs a gateway that lists it.
//!
//! - `seed`: creates the object-store bucket the way jets3 does and fills it with `--count`
//!   zero-byte objects `dNN/kNNNNNNNNN` (`NN` = i mod 100) straight through NATS: only their
//!   metadata messages (a zero-byte object has no chunks), in the JSON the gateway writes for
//!   a zero-byte PUT, with many acknowledgements in flight.
//! - `run`: starts a gateway binary (`--gateway-bin`) against the bucket and measures the
//!   time from process start to its first ListObjectsV2 page (and to `/readyz`), the whole
//!   bucket listed page by page (checked key for key) and the gateway's RSS after it, and
//!   page latencies at random positions, under a random prefix with delimiter `/`, and at the
//!   root with delimiter `/`. If the binary has the counter
//!   `jets3_index_snapshots_written_total`, it then waits for the gateway to write a listing
//!   snapshot of the bucket; either way it stops the gateway and measures a second fresh one
//!   (a warm start from the snapshot, or a plain restart).
//! - `drop`: deletes the bucket.
//!
//! `run` prints `RESULT key=value ...` lines and one markdown table row (`ROW | ... |`) per
//! gateway start; `--header` prints the table's header rows.
//!
//! ```text
//! cargo run --release -p jets3-gateway --example listing_bench -- --nats URL --bucket B \
//!     seed --count 1000000
//! cargo run --release -p jets3-gateway --example listing_bench -- --nats URL --bucket B \
//!     run --count 1000000 --gateway-bin target/release/jets3-gateway --name jets3 --work DIR
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, stream::StorageType};
use clap::{Parser, Subcommand};
use jets3_gateway::store::meta::{digest_string, meta_subject, ObjectInfoJson, OptionsJson};
use jets3_gateway::store::{Record, CHUNK_SIZE};
use jets3_testkit::http::percentile;
use rand::Rng;
use sha2::Digest;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The counter a gateway with persistent listing snapshots exposes.
const SNAPSHOT_METRIC: &str = "jets3_index_snapshots_written_total";
/// The gateway's default `collector.snapshotMinSubjects`: a bucket of fewer zero-byte objects
/// (one subject each) gets no snapshot, so none is waited for.
const MIN_SUBJECTS: usize = 20_000;
/// The KV bucket that holds the listing snapshots.
const INDEX_KV: &str = "jets3_index";
/// Keys per listing page.
const PAGE: usize = 1000;
/// Key prefixes (`d00/` to `d99/`).
const PREFIXES: usize = 100;
/// The ETag of an empty body.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

#[derive(Parser, Debug)]
#[command(about = "jets3 listing benchmark: seed a bucket through NATS, time gateways listing it")]
struct Args {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    #[arg(long, default_value = "listing")]
    bucket: String,
    #[command(subcommand)]
    op: Op,
}

#[derive(Subcommand, Debug)]
enum Op {
    /// Creates the bucket and seeds `--count` zero-byte objects through NATS.
    Seed {
        #[arg(long)]
        count: usize,
        /// Publishing tasks.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Unacknowledged publishes per task, at most.
        #[arg(long, default_value_t = 1024)]
        window: usize,
    },
    /// Measures one gateway binary on the seeded bucket (two starts).
    Run {
        /// Objects in the bucket (as seeded).
        #[arg(long)]
        count: usize,
        #[arg(long)]
        gateway_bin: PathBuf,
        /// The system's name in the table.
        #[arg(long)]
        name: String,
        /// Folder for the gateway's config, log and working directory.
        #[arg(long)]
        work: PathBuf,
        /// Pages per latency measurement.
        #[arg(long, default_value_t = 200)]
        pages: usize,
        /// Seconds to wait for the first snapshot.
        #[arg(long, default_value_t = 600)]
        snapshot_wait: u64,
        /// Seconds a gateway may take to answer its first listing.
        #[arg(long, default_value_t = 900)]
        first_page_limit: u64,
        /// The nats-server process, whose RSS is reported too.
        #[arg(long)]
        nats_pid: Option<u32>,
        /// The gateway's log filter.
        #[arg(long, default_value = "warn")]
        log: String,
    },
    /// Deletes the bucket.
    Drop,
    /// Prints the header rows of the markdown table.
    Header,
}

fn err_text(e: impl std::fmt::Display) -> String {
    e.to_string().chars().take(300).collect()
}

/// The key of object `i`.
fn key_name(i: usize) -> String {
    format!("d{:02}/k{i:09}", i % PREFIXES)
}

/// Every key of a bucket of `count` objects, in listing order.
fn sorted_keys(count: usize) -> impl Iterator<Item = String> {
    (0..PREFIXES.min(count)).flat_map(move |p| (p..count).step_by(PREFIXES).map(key_name))
}

// ---- seeding ----------------------------------------------------------------------------------

/// The metadata message of zero-byte object `key`, as the gateway writes it for a PUT
/// without a body (ETag, stamp, digest of nothing, no chunks, the default chunk size).
fn zero_object(bucket: &str, key: &str, mtime: &str, stamp: u64) -> ObjectInfoJson {
    let metadata = [
        ("jets3.etag".to_string(), EMPTY_MD5.to_string()),
        ("jets3.stamp".to_string(), stamp.to_string()),
    ]
    .into_iter()
    .collect();
    let headers = [(
        "Content-Type".to_string(),
        vec!["application/octet-stream".to_string()],
    )]
    .into_iter()
    .collect();
    ObjectInfoJson {
        name: key.to_string(),
        metadata,
        headers: Some(headers),
        options: Some(OptionsJson {
            max_chunk_size: Some(CHUNK_SIZE as u64),
            link: None,
        }),
        bucket: bucket.to_string(),
        nuid: nuid::next().to_string(),
        size: 0,
        chunks: 0,
        mtime: Some(mtime.to_string()),
        digest: Some(digest_string(&sha2::Sha256::digest(b""))),
        ..Default::default()
    }
}

/// Checks that the gateway reads a seeded message as the zero-byte object it stands for.
fn check_format(bucket: &str) -> Result<(), String> {
    let key = key_name(0);
    let info = zero_object(bucket, &key, "2026-01-01T00:00:00Z", 1);
    let payload = serde_json::to_vec(&info).map_err(err_text)?;
    match Record::decode(&payload, Some(&key), 1) {
        Ok(Record::Object(m)) if m.size == 0 && m.etag == EMPTY_MD5 && m.chunks == 0 => Ok(()),
        other => Err(format!(
            "the gateway does not read a seeded message as a zero-byte object: {other:?}"
        )),
    }
}

async fn seed(
    js: &jetstream::Context,
    bucket: &str,
    count: usize,
    clients: usize,
    window: usize,
) -> Result<(), String> {
    check_format(bucket)?;
    js.create_stream(jetstream::stream::Config {
        storage: StorageType::File,
        ..jets3_nats::names::object_store_stream(bucket)
    })
    .await
    .map_err(|e| format!("creating the bucket {bucket}: {}", err_text(e)))?;
    let now = OffsetDateTime::now_utc();
    let mtime = Arc::new(now.format(&Rfc3339).map_err(err_text)?);
    let stamp0 = u64::try_from(now.unix_timestamp_nanos()).unwrap_or(0);
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (js, bucket, mtime, next) =
            (js.clone(), bucket.to_string(), mtime.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut acks: VecDeque<PublishAckFuture> = VecDeque::with_capacity(window);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                if i > 0 && i % (count / 10).max(1) == 0 {
                    eprintln!(
                        "listing_bench: {i} of {count} published ({:.0} s)",
                        t0.elapsed().as_secs_f64()
                    );
                }
                let key = key_name(i);
                let info = zero_object(&bucket, &key, &mtime, stamp0 + i as u64);
                let payload = serde_json::to_vec(&info).map_err(err_text)?;
                if acks.len() >= window.max(1) {
                    if let Some(ack) = acks.pop_front() {
                        ack.await.map_err(err_text)?;
                    }
                }
                let ack = js
                    .publish(meta_subject(&bucket, &key), payload.into())
                    .await
                    .map_err(err_text)?;
                acks.push_back(ack);
            }
            for ack in acks {
                ack.await.map_err(err_text)?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(err_text)??;
    }
    let state = stream_state(js, &jets3_nats::names::stream_name(bucket))
        .await
        .ok_or("the bucket's stream is gone")?;
    if state.0 != count as u64 {
        return Err(format!(
            "the stream holds {} messages, not {count}",
            state.0
        ));
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "listing_bench: seeded {count} objects in {secs:.1} s ({:.0}/s), stream {:.1} MiB",
        count as f64 / secs,
        mib(state.1)
    );
    println!(
        "SEED count={count} secs={secs:.1} stream_mib={:.1}",
        mib(state.1)
    );
    Ok(())
}

/// (messages, bytes) of a stream, if it exists.
async fn stream_state(js: &jetstream::Context, stream: &str) -> Option<(u64, u64)> {
    let mut s = js.get_stream(stream).await.ok()?;
    let info = s.info().await.ok()?;
    Some((info.state.messages, info.state.bytes))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

// ---- one gateway process ----------------------------------------------------------------------

/// A gateway process with its ports.
struct Gateway {
    child: tokio::process::Child,
    pid: u32,
    started: Instant,
    s3: aws_sdk_s3::Client,
    admin: String,
    /// Its working directory (also its TMPDIR): fresh for every start, removed at the end.
    dir: PathBuf,
    log: PathBuf,
}

fn s3_client(endpoint: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{retry::RetryConfig, timeout::TimeoutConfig, Region};
    let creds = aws_credential_types::Credentials::new(access, secret, None, None, "listing");
    let conf = aws_sdk_s3::Config::builder()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .behavior_version_latest()
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

impl Gateway {
    /// Writes a standalone config (both listeners on free ports of 127.0.0.1) and starts `bin`.
    fn start(bin: &Path, nats: &str, work: &Path, tag: &str, log: &str) -> Result<Self, String> {
        let (s3_port, admin_port) = (jets3_testkit::free_port(), jets3_testkit::free_port());
        let (access, secret) = ("LISTINGBENCH", format!("listing-{}", nuid::next()));
        let config = work.join(format!("{tag}.yaml"));
        std::fs::write(
            &config,
            format!(
                "server:\n  listen: [\"127.0.0.1:{s3_port}\"]\n  adminListen: \"127.0.0.1:{admin_port}\"\n  \
                 nats:\n    servers: [\"{nats}\"]\ncredentials:\n  - accessKeyId: {access}\n    \
                 secretAccessKey: {secret}\n    grants:\n      - bucket: \"*\"\n        permission: admin\n"
            ),
        )
        .map_err(err_text)?;
        let dir = work.join(format!("{tag}.dir"));
        std::fs::create_dir_all(&dir).map_err(err_text)?;
        let log_path = work.join(format!("{tag}.log"));
        let out = std::fs::File::create(&log_path).map_err(err_text)?;
        let err = out.try_clone().map_err(err_text)?;
        let started = Instant::now();
        let child = tokio::process::Command::new(bin)
            .arg("--config")
            .arg(&config)
            .current_dir(&dir)
            .env("TMPDIR", &dir)
            .env("JETS3_LOG", log)
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let pid = child.id().ok_or("the gateway exited at once")?;
        Ok(Gateway {
            child,
            pid,
            started,
            s3: s3_client(&format!("http://127.0.0.1:{s3_port}"), access, &secret),
            admin: format!("127.0.0.1:{admin_port}"),
            dir,
            log: log_path,
        })
    }

    /// The log's last lines, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" / ")
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// (VmRSS, VmHWM) in MiB.
    fn rss(&self) -> (f64, f64) {
        rss_of(self.pid)
    }

    /// CPU seconds (user + system) the process has used.
    fn cpu(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // After the command name in parentheses: fields 3 onwards; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
            .sum();
        ticks / 100.0
    }

    /// SIGTERM, then SIGKILL after 10 s.
    async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// (VmRSS, VmHWM) of process `pid` in MiB.
fn rss_of(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A GET on the admin listener: status and body.
async fn admin_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(err_text)?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").as_bytes())
            .await
            .map_err(err_text)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.map_err(err_text)?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no HTTP status")?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .map_err(|_| "admin request timed out".to_string())?
}

/// One ListObjectsV2 page: keys, common prefixes, next continuation token.
struct Page {
    keys: Vec<String>,
    prefixes: usize,
    next: Option<String>,
}

#[derive(Default, Clone)]
struct ListReq {
    token: Option<String>,
    start_after: Option<String>,
    prefix: Option<String>,
    delimiter: Option<String>,
}

async fn list(s3: &aws_sdk_s3::Client, bucket: &str, r: ListReq) -> Result<Page, String> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .max_keys(PAGE as i32)
        .set_continuation_token(r.token)
        .set_start_after(r.start_after)
        .set_prefix(r.prefix)
        .set_delimiter(r.delimiter)
        .send()
        .await
        .map_err(|e| match e.raw_response() {
            Some(raw) => format!(
                "HTTP {} {}",
                raw.status().as_u16(),
                e.as_service_error()
                    .and_then(|se| aws_sdk_s3::error::ProvideErrorMetadata::message(se))
                    .unwrap_or("")
            ),
            None => {
                let text = err_text(aws_sdk_s3::error::DisplayErrorContext(&e));
                if text.contains("Connection refused") {
                    "connection refused".to_string()
                } else {
                    text
                }
            }
        })?;
    Ok(Page {
        keys: out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect(),
        prefixes: out.common_prefixes().len(),
        next: out
            .is_truncated()
            .unwrap_or(false)
            .then(|| out.next_continuation_token().map(str::to_string))
            .flatten(),
    })
}

/// Milliseconds of `n` requests made by `req(i)`: p50 and p99, and the first error.
async fn latencies<F, Fut>(n: usize, mut req: F) -> (f64, f64, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut ms = Vec::with_capacity(n);
    let mut first_error = None;
    for _ in 0..n {
        let t = Instant::now();
        match req().await {
            Ok(()) => ms.push(t.elapsed().as_secs_f64() * 1e3),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if ms.is_empty() {
        return (f64::NAN, f64::NAN, first_error);
    }
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99), first_error)
}

/// What one gateway start measured.
#[derive(Default)]
struct Start {
    /// `None`: no first page within the limit (nothing else was measured).
    first_page_s: Option<f64>,
    ready_s: Option<f64>,
    cpu_first_s: f64,
    rss_first: f64,
    full_s: f64,
    pages: usize,
    rss: f64,
    hwm: f64,
    /// nats-server's VmRSS after the full listing (or when the first page never came).
    nats_rss: f64,
    random: (f64, f64),
    prefix: (f64, f64),
    root: (f64, f64),
    problems: Vec<String>,
}

/// One system on one seeded bucket.
struct Bench {
    nats: String,
    bucket: String,
    count: usize,
    bin: PathBuf,
    name: String,
    work: PathBuf,
    pages: usize,
    snapshot_wait: u64,
    first_page_limit: Duration,
    nats_pid: Option<u32>,
    log: String,
}

impl Bench {
    fn nats_rss(&self) -> f64 {
        self.nats_pid.map_or(f64::NAN, |p| rss_of(p).0)
    }

    /// Starts a gateway and measures it; returns it still running.
    async fn measure(&self, tag: &str) -> Result<(Gateway, Start), String> {
        let (bucket, count, pages) = (self.bucket.as_str(), self.count, self.pages);
        let mut gw = Gateway::start(&self.bin, &self.nats, &self.work, tag, &self.log)?;
        let mut st = Start::default();

        // Readiness, watched alongside.
        let (admin, started, limit) = (gw.admin.clone(), gw.started, self.first_page_limit);
        let ready = tokio::spawn(async move {
            while started.elapsed() < limit {
                if let Ok((200, _)) = admin_get(&admin, "/readyz").await {
                    return Some(started.elapsed().as_secs_f64());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        });

        // (a) the first page.
        let want_first: Vec<String> = sorted_keys(count).take(PAGE).collect();
        let (mut said, mut last_error) = (Instant::now(), String::new());
        let first = loop {
            if gw.exited() {
                return Err(format!("the gateway exited: {}", gw.log_tail()));
            }
            let left = self.first_page_limit.saturating_sub(gw.started.elapsed());
            let attempt = tokio::time::timeout(left, list(&gw.s3, bucket, ListReq::default()));
            let Ok(answer) = attempt.await else {
                if ready.is_finished() {
                    st.ready_s = ready.await.ok().flatten();
                } else {
                    ready.abort();
                }
                st.nats_rss = self.nats_rss();
                st.problems.push(format!(
                    "no listing within {} s (gateway RSS then {:.0} MiB); the last answer: {}",
                    self.first_page_limit.as_secs(),
                    gw.rss().0,
                    if last_error.is_empty() {
                        "none"
                    } else {
                        &last_error
                    }
                    .replace('|', "/")
                ));
                return Ok((gw, st));
            };
            match answer {
                Ok(p) => break p,
                // A client error will not go away: a server error or none at all may.
                Err(e) if e.starts_with("HTTP 4") => {
                    return Err(format!("the first listing failed: {e}"));
                }
                Err(e) => {
                    if said.elapsed() > Duration::from_secs(30) {
                        eprintln!("listing_bench: {tag}: no listing yet: {e}");
                        said = Instant::now();
                    }
                    // Not listening yet: try again soon; a server error: after a second.
                    let pause = if e.starts_with("HTTP 5") { 1000 } else { 10 };
                    last_error = e;
                    tokio::time::sleep(Duration::from_millis(pause)).await
                }
            }
        };
        st.first_page_s = Some(gw.started.elapsed().as_secs_f64());
        st.cpu_first_s = gw.cpu();
        st.rss_first = gw.rss().0;
        st.ready_s = tokio::time::timeout(Duration::from_secs(5), ready)
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
        if first.keys != want_first {
            st.problems.push(format!(
                "first page: {} keys from {:?}, expected {} from {:?}",
                first.keys.len(),
                first.keys.first(),
                want_first.len(),
                want_first.first()
            ));
        }

        // (b) the whole bucket, page by page, checked against the seeded keys.
        let t = Instant::now();
        let mut expected = sorted_keys(count);
        let (mut seen, mut token, mut mismatch) = (0usize, None, None);
        loop {
            let page = list(
                &gw.s3,
                bucket,
                ListReq {
                    token: token.take(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("page {} of the full listing: {e}", st.pages + 1))?;
            st.pages += 1;
            for k in page.keys {
                if mismatch.is_none() && expected.next().as_deref() != Some(k.as_str()) {
                    mismatch = Some(format!("key {seen} of the full listing is {k}"));
                }
                seen += 1;
            }
            match page.next {
                Some(n) => token = Some(n),
                None => break,
            }
        }
        st.full_s = t.elapsed().as_secs_f64();
        (st.rss, st.hwm) = gw.rss();
        st.nats_rss = self.nats_rss();
        if seen != count {
            st.problems
                .push(format!("the full listing has {seen} keys, not {count}"));
        }
        st.problems.extend(mismatch);

        // (c) page latencies.
        let random_key = move || key_name(rand::thread_rng().gen_range(0..count));
        let (s3, b) = (gw.s3.clone(), bucket.to_string());
        let (p50, p99, e) = latencies(pages, || {
            let (s3, b, after) = (s3.clone(), b.clone(), random_key());
            async move {
                let p = list(
                    &s3,
                    &b,
                    ListReq {
                        start_after: Some(after.clone()),
                        ..Default::default()
                    },
                )
                .await?;
                match p.keys.first() {
                    Some(k) if *k > after => Ok(()),
                    None if p.next.is_none() => Ok(()),
                    _ => Err(format!(
                        "a page after {after} starts at {:?}",
                        p.keys.first()
                    )),
                }
            }
        })
        .await;
        st.random = (p50, p99);
        st.problems.extend(e.map(|e| format!("random pages: {e}")));
        let (p50, p99, e) = latencies(pages, || {
            let (s3, b, after) = (s3.clone(), b.clone(), random_key());
            let prefix = after[..4].to_string();
            async move {
                let p = list(
                    &s3,
                    &b,
                    ListReq {
                        start_after: Some(after.clone()),
                        prefix: Some(prefix.clone()),
                        delimiter: Some("/".into()),
                        ..Default::default()
                    },
                )
                .await?;
                if p.keys.iter().all(|k| k.starts_with(&prefix) && *k > after) {
                    Ok(())
                } else {
                    Err(format!("a page of {prefix} after {after} has other keys"))
                }
            }
        })
        .await;
        st.prefix = (p50, p99);
        st.problems.extend(e.map(|e| format!("prefix pages: {e}")));
        let roots = (pages / 10).max(1);
        let want_prefixes = PREFIXES.min(count);
        let (p50, p99, e) = latencies(roots, || {
            let (s3, b) = (s3.clone(), b.clone());
            async move {
                let p = list(
                    &s3,
                    &b,
                    ListReq {
                        delimiter: Some("/".into()),
                        ..Default::default()
                    },
                )
                .await?;
                if p.prefixes == want_prefixes && p.keys.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "the root has {} prefixes and {} keys",
                        p.prefixes,
                        p.keys.len()
                    ))
                }
            }
        })
        .await;
        st.root = (p50, p99);
        st.problems.extend(e.map(|e| format!("root pages: {e}")));
        if gw.exited() {
            return Err(format!("the gateway exited: {}", gw.log_tail()));
        }
        Ok((gw, st))
    }
}

/// Whether the gateway has the snapshot counter: on its /metrics, or else (a labelled counter
/// shows only once it has counted) by name in its binary, without the `jets3_` prefix that
/// the metrics registry may add.
async fn knows_snapshots(admin: &str, bucket: &str, bin: &Path) -> bool {
    if snapshots_written(admin, bucket).await.is_some() {
        return true;
    }
    let Ok(raw) = std::fs::read(bin) else {
        return false;
    };
    let needle = SNAPSHOT_METRIC.trim_start_matches("jets3_").as_bytes();
    raw.windows(needle.len()).any(|w| w == needle)
}

/// The snapshot counter for `bucket` on /metrics: a series labelled with the bucket, or
/// an unlabelled one.
async fn snapshots_written(admin: &str, bucket: &str) -> Option<f64> {
    let (_, body) = admin_get(admin, "/metrics").await.ok()?;
    let label = format!("\"{bucket}\"");
    body.lines()
        .filter(|l| l.starts_with(SNAPSHOT_METRIC))
        .filter(|l| l.starts_with(&format!("{SNAPSHOT_METRIC} ")) || l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(f64::max)
}

fn ms(p: (f64, f64)) -> String {
    format!("{:.1} / {:.1}", p.0, p.1)
}

fn row(count: usize, name: &str, start: &str, st: &Start, snapshot: &str) -> String {
    let correct = if st.problems.is_empty() {
        "yes".to_string()
    } else {
        format!("**no**: {}", st.problems.join("; ").replace('|', "/"))
    };
    let nats = format!("{:.0} MiB", st.nats_rss);
    let ready = st.ready_s.map_or("-".to_string(), |r| format!("{r:.2} s"));
    let Some(first) = st.first_page_s else {
        return format!(
            "ROW | {count} | {name} | {start} | **none** | {ready} | - | - | - | - | {nats} | - | - | - | {snapshot} | {correct} |"
        );
    };
    format!(
        "ROW | {count} | {name} | {start} | {first:.2} s | {ready} | {:.2} s | {:.1} s ({} pages) | {:.0} MiB | {:.0} / {:.0} MiB | {nats} | {} | {} | {} | {snapshot} | {correct} |",
        st.cpu_first_s,
        st.full_s,
        st.pages,
        st.rss_first,
        st.rss,
        st.hwm,
        ms(st.random),
        ms(st.prefix),
        ms(st.root),
    )
}

fn result_line(count: usize, name: &str, start: &str, st: &Start, snapshot: &str) -> String {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    format!(
        "RESULT count={count} system={name} start={start} first_page_s={} ready_s={} cpu_first_s={:.2} rss_first_mib={:.1} full_list_s={:.2} pages={} rss_mib={:.1} hwm_mib={:.1} nats_rss_mib={:.1} random_p50_ms={:.2} random_p99_ms={:.2} prefix_p50_ms={:.2} prefix_p99_ms={:.2} root_p50_ms={:.2} root_p99_ms={:.2} snapshot=\"{snapshot}\" problems=\"{}\"",
        opt(st.first_page_s),
        opt(st.ready_s),
        st.cpu_first_s,
        st.rss_first,
        st.full_s,
        st.pages,
        st.rss,
        st.hwm,
        st.nats_rss,
        st.random.0,
        st.random.1,
        st.prefix.0,
        st.prefix.1,
        st.root.0,
        st.root.1,
        st.problems.join("; ").replace('"', "'"),
    )
}

impl Bench {
    /// Measures a cold start, waits for a snapshot, then measures a second start.
    async fn run(&self, js: &jetstream::Context) -> Result<(), String> {
        let (bucket, count, name, work) = (
            self.bucket.as_str(),
            self.count,
            self.name.as_str(),
            self.work.as_path(),
        );
        std::fs::create_dir_all(work).map_err(err_text)?;
        let kv = jets3_nats::names::kv_stream(INDEX_KV);
        // A cold start is a gateway's first ever on this bucket: no snapshot from an earlier run.
        if stream_state(js, &kv).await.is_some() {
            js.delete_stream(&kv).await.map_err(err_text)?;
            eprintln!("listing_bench: deleted {kv} for a cold start");
        }
        let tag = format!("{name}-{count}");
        let (gw, cold) = self.measure(&format!("{tag}-cold")).await?;
        println!("{}", result_line(count, name, "cold", &cold, "-"));
        println!("{}", row(count, name, "cold", &cold, "-"));
        let listed = cold.first_page_s.is_some();
        let snapshots = knows_snapshots(&gw.admin, bucket, &self.bin).await;
        if !listed && !snapshots {
            // A second start would fail the same way.
            gw.stop().await;
            return Ok(());
        }

        // (d) a snapshot, if the binary writes them (even when this gateway could not list:
        // the collector's leader writes it on its own).
        let (snapshot, start) = if snapshots && count < MIN_SUBJECTS {
            (
                "none: fewer subjects than collector.snapshotMinSubjects".to_string(),
                "restart",
            )
        } else if snapshots {
            let t = Instant::now();
            let mut written = false;
            while t.elapsed() < Duration::from_secs(self.snapshot_wait) {
                if snapshots_written(&gw.admin, bucket).await.unwrap_or(0.0) >= 1.0 {
                    written = true;
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let waited = gw.started.elapsed().as_secs_f64();
            match (written, stream_state(js, &kv).await) {
                (true, Some((msgs, bytes))) => (
                    format!(
                        "written (seen {waited:.0} s after start); {kv} {:.1} MiB in {msgs} messages",
                        mib(bytes)
                    ),
                    "warm (snapshot)",
                ),
                (true, None) => (
                    format!("counted {waited:.0} s after start, but no {kv}"),
                    "warm (snapshot)",
                ),
                (false, _) => (
                    format!("no snapshot within {} s", self.snapshot_wait),
                    "restart",
                ),
            }
        } else {
            (
                "no snapshot (the binary has no such counter)".to_string(),
                "restart",
            )
        };
        gw.stop().await;
        if !listed && start == "restart" {
            println!("ROW | {count} | {name} | second start | not tried: no first page and no snapshot | {snapshot} |");
            return Ok(());
        }

        let (gw, warm) = self.measure(&format!("{tag}-warm")).await?;
        gw.stop().await;
        println!("{}", result_line(count, name, start, &warm, &snapshot));
        println!("{}", row(count, name, start, &warm, &snapshot));
        Ok(())
    }
}

async fn main_inner(args: Args) -> Result<(), String> {
    if let Op::Header = args.op {
        println!(
            "| objects | system | start | first page | ready | gateway CPU to first page | full listing | RSS after first page | RSS / peak after full listing | nats-server RSS | random page p50 / p99 (ms) | prefix + delimiter page p50 / p99 (ms) | root delimiter page p50 / p99 (ms) | snapshot | correct |"
        );
        println!("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
        return Ok(());
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(&args.nats)
        .await
        .map_err(err_text)?;
    let js = jetstream::new(client);
    match args.op {
        Op::Header => Ok(()),
        Op::Seed {
            count,
            clients,
            window,
        } => seed(&js, &args.bucket, count, clients, window).await,
        Op::Drop => match js.delete_object_store(&args.bucket).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(err_text(e)),
        },
        Op::Run {
            count,
            gateway_bin,
            name,
            work,
            pages,
            snapshot_wait,
            first_page_limit,
            nats_pid,
            log,
        } => {
            let bench = Bench {
                nats: args.nats.clone(),
                bucket: args.bucket.clone(),
                count,
                bin: gateway_bin,
                name,
                work,
                pages,
                snapshot_wait,
                first_page_limit: Duration::from_secs(first_page_limit),
                nats_pid,
                log,
            };
            bench.run(&js).await
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // On SIGINT or SIGTERM the run is dropped, and with it the gateway process it started.
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(err_text)?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Err::<(), String>("stopped by a signal".into())
    };
    let res = tokio::select! {
        r = main_inner(args) => r,
        r = stop => r,
    };
    if let Err(e) = res {
        eprintln!("listing_bench: {e}");
        std::process::exit(1);
    }
}
