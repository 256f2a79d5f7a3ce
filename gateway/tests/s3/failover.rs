//! Faults of a three-node NATS cluster under load from two gateways: nothing acknowledged
//! is lost, and every error a client sees during a fault is one it retries (503), never a
//! NoSuchBucket, a NoSuchKey for a key that exists, a 500, or a short body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::Client;
use jets3_gateway::{GatewayHandle, NatsSettings};

use crate::common::*;

/// What a key must hold: the bytes of its last acknowledged write (`None`: deleted), or
/// any of several when a write's outcome is unknown (it failed: it may or may not have
/// landed).
#[derive(Clone, Debug)]
struct Expected(Vec<Option<Vec<u8>>>);

/// One client's view of its keys and what it saw.
#[derive(Default)]
pub struct Ledger {
    keys: HashMap<String, Expected>,
    pub acked: u64,
    errors: Vec<(Instant, String)>,
    bad: Vec<String>,
}

impl Ledger {
    fn write(&mut self, key: &str, value: Option<Vec<u8>>, ok: bool) {
        let e = self
            .keys
            .entry(key.to_string())
            .or_insert(Expected(vec![None]));
        if ok {
            self.acked += 1;
            *e = Expected(vec![value]);
        } else {
            e.0.push(value);
        }
    }
}

/// The error a call ended with: `<status> <code>`, or the transport failure.
fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &aws_sdk_s3::error::SdkError<E, HttpResponse>,
) -> String {
    match e.raw_response() {
        Some(r) => format!("{} {}", r.status().as_u16(), e.code().unwrap_or("-")),
        None => format!("transport {}", aws_sdk_s3::error::DisplayErrorContext(e)),
    }
}

/// An error a client may see during a fault: 503 (ServiceUnavailable, SlowDown), or a
/// connection cut (a body that could not be finished).
fn retryable(e: &str) -> bool {
    e.starts_with("503 ") || e.starts_with("transport ")
}

pub async fn gateway_on(
    cluster: &NatsCluster,
    config: &jets3_crds::GatewayConfig,
) -> GatewayHandle {
    init_logging();
    let mut s = settings_for(&cluster.urls()[0]);
    s.nats = NatsSettings {
        servers: cluster.urls(),
        ..Default::default()
    };
    let gw = jets3_gateway::start(s, Some(config.clone()))
        .await
        .expect("gateway start");
    let admin = gw.admin_addr().expect("admin");
    assert!(
        ready_within(admin, 60).await,
        "gateway ready on the cluster"
    );
    gw
}

fn client_of(gw: &GatewayHandle) -> Client {
    s3_client(ClientOpts {
        endpoint: format!("http://{}", gw.s3_addr()),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        ..Default::default()
    })
}

/// One client's loop of PUT, GET, LIST and DELETE over its own keys until `stop`.
pub async fn client_loop(id: usize, s3: Client, bucket: String, stop: Arc<AtomicBool>) -> Ledger {
    let mut l = Ledger::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("c{id}/k{}", n % 6);
        match n % 5 {
            0 | 1 => {
                let body = data(1024 * (1 + (n as usize % 96)), (id as u64) << 40 | n);
                let r = s3
                    .put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body.clone().into())
                    .send()
                    .await;
                if let Err(e) = &r {
                    l.errors
                        .push((Instant::now(), format!("PUT {}", describe(e))));
                }
                l.write(&key, Some(body), r.is_ok());
            }
            2 | 3 => {
                let want = l.keys.get(&key).cloned();
                let r = s3.get_object().bucket(&bucket).key(&key).send().await;
                match r {
                    Ok(out) => match out.body.collect().await {
                        Ok(b) => {
                            let got = Some(b.to_vec());
                            if let Some(w) = want {
                                if !w.0.contains(&got) {
                                    l.bad.push(format!("GET {key}: bytes no write put there"));
                                }
                            }
                        }
                        Err(e) => l
                            .errors
                            .push((Instant::now(), format!("GET transport body {e}"))),
                    },
                    Err(e) => {
                        let d = describe(&e);
                        let absent_ok = want.as_ref().is_none_or(|w| w.0.contains(&None));
                        if d == "404 NoSuchKey" && absent_ok {
                            continue;
                        }
                        l.errors.push((Instant::now(), format!("GET {d}")));
                    }
                }
            }
            _ => {
                if n % 10 == 4 {
                    let r = s3.delete_object().bucket(&bucket).key(&key).send().await;
                    if let Err(e) = &r {
                        l.errors
                            .push((Instant::now(), format!("DELETE {}", describe(e))));
                    }
                    l.write(&key, None, r.is_ok());
                } else {
                    let r = s3
                        .list_objects_v2()
                        .bucket(&bucket)
                        .prefix(format!("c{id}/"))
                        .send()
                        .await;
                    if let Err(e) = &r {
                        l.errors
                            .push((Instant::now(), format!("LIST {}", describe(e))));
                    }
                }
            }
        }
    }
    l
}

/// Raw NATS for comparison: a client of the surviving nodes publishing to the bucket's
/// own stream every 10 ms (1 s ack timeout, a chunk subject the collector removes later);
/// returns when each publish failed.
async fn raw_probe(
    cluster: &NatsCluster,
    bucket: &str,
    leader: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Instant>> {
    let urls = cluster.urls();
    let client = async_nats::ConnectOptions::new()
        .connect(
            urls.iter()
                .enumerate()
                .filter(|(i, _)| *i != leader)
                .map(|(_, u)| u.parse::<async_nats::ServerAddr>().expect("url"))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("probe client");
    let js = async_nats::jetstream::new(client);
    let subject = format!("$O.{bucket}.C.rawprobe");
    tokio::spawn(async move {
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let sent = async {
                js.publish(subject.clone(), "x".into())
                    .await
                    .ok()?
                    .await
                    .ok()
            };
            if tokio::time::timeout(Duration::from_secs(1), sent)
                .await
                .ok()
                .flatten()
                .is_none()
            {
                failures.push(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        failures
    })
}

/// Checks every client's keys against its ledger, through `s3`. A 503 (the stream between
/// leaders just after a fault) is retried for up to 10 s, as a client would.
pub async fn check_ledgers(s3: &Client, bucket: &str, ledgers: &[Ledger]) -> u64 {
    let mut checked = 0;
    for l in ledgers {
        for (key, want) in &l.keys {
            let mut tries = 0;
            let got = loop {
                match s3.get_object().bucket(bucket).key(key).send().await {
                    Ok(out) => break Some(out.body.collect().await.expect("body").to_vec()),
                    Err(e) if describe(&e).starts_with("503 ") && tries < 20 => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        assert_eq!(describe(&e), "404 NoSuchKey", "{key}");
                        break None;
                    }
                }
            };
            assert!(
                want.0.contains(&got),
                "{key}: holds {:?} bytes, which no acknowledged (or pending) write put there",
                got.as_ref().map(Vec::len)
            );
            checked += 1;
        }
    }
    checked
}

/// A fault of the cluster, applied under load; the node index is the stream leader's.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL the leader's node, restart it 12 s later.
    KillLeader,
    /// SIGSTOP the leader's node for 30 s (a partition that keeps connections open).
    FreezeLeader,
    /// SIGKILL two of three nodes (the leader's among them), restart them 10 s later.
    LoseQuorum,
}

/// What a run under a fault saw.
struct Run {
    fault_at: Instant,
    /// When each kill of a `KillLeader` run happened (one per round).
    kills: Vec<Instant>,
    ledgers: Vec<Ledger>,
    raw_failures: Vec<Instant>,
    readiness_lost: bool,
}

/// Two gateways on a three-node cluster, a bucket with three replicas, eight clients, and
/// `fault`; checks that nothing acknowledged is lost and every error is retryable, and
/// prints the figures (failover window against raw NATS).
async fn under_fault(fault: Fault) -> Run {
    let mut cluster = NatsCluster::start(3).await;
    let b = unique_bucket("fault");
    let mut cfg = config_with(&[]);
    let mut bc = bucket_cfg(&b);
    bc.replicas = 3;
    cfg.buckets.push(bc);
    let gw1 = gateway_on(&cluster, &cfg).await;
    let gw2 = gateway_on(&cluster, &cfg).await;
    let leader = cluster.leader_of(&format!("OBJ_{b}")).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..8 {
        let s3 = client_of(if id % 2 == 0 { &gw1 } else { &gw2 });
        clients.push(tokio::spawn(client_loop(id, s3, b.clone(), stop.clone())));
    }
    let probe = raw_probe(&cluster, &b, leader, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault_at = Instant::now();
    let admin = gw1.admin_addr().expect("admin");
    let not_ready = || async {
        try_send_raw(
            admin,
            &RawRequest::new("GET", "/readyz").to_bytes(&admin.to_string()),
        )
        .await
        .is_none_or(|r| r.status != 200)
    };
    let mut readiness_lost = false;
    let mut kills = Vec::new();
    match fault {
        Fault::KillLeader => {
            // JETS3_FAULT_ROUNDS kills (default 1; `make bench-faults` runs 10), each of
            // the node that leads the stream then.
            let rounds: usize = std::env::var("JETS3_FAULT_ROUNDS")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or(1);
            let mut node = leader;
            for round in 0..rounds {
                if round > 0 {
                    node = cluster.leader_of(&format!("OBJ_{b}")).await;
                }
                kills.push(Instant::now());
                cluster.kill(node);
                tokio::time::sleep(Duration::from_secs(12)).await;
                cluster.restart(node).await;
                tokio::time::sleep(Duration::from_secs(8)).await;
            }
        }
        Fault::FreezeLeader => {
            cluster.freeze(leader, true);
            tokio::time::sleep(Duration::from_secs(30)).await;
            cluster.freeze(leader, false);
        }
        Fault::LoseQuorum => {
            let other = (leader + 1) % 3;
            cluster.kill(leader);
            cluster.kill(other);
            // 10 s when the machine is quiet; a CI run beside the whole suite once took longer.
            readiness_lost = eventually(20, not_ready).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            cluster.restart(leader).await;
            cluster.restart(other).await;
            let back = eventually(60, || async { !not_ready().await }).await;
            assert!(back, "the gateway is ready again once quorum is back");
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for c in clients {
        ledgers.push(c.await.expect("client"));
    }
    let raw_failures = probe.await.expect("probe");
    let run = Run {
        fault_at,
        kills,
        ledgers,
        raw_failures,
        readiness_lost,
    };
    run.check(fault, &client_of(&gw1), &b).await;
    gw1.shutdown().await;
    gw2.shutdown().await;
    run
}

impl Run {
    /// Per kill: how long after it the last PUT and the last GET failed (before the node
    /// came back), and raw NATS publishes; p50 and max over the kills.
    fn print_windows(&self, errors: &[(Instant, String)]) {
        if self.kills.is_empty() {
            return;
        }
        let mut put = Vec::new();
        let mut get = Vec::new();
        let mut raw = Vec::new();
        for k in &self.kills {
            let within = |t: &Instant| *t >= *k && t.duration_since(*k) < Duration::from_secs(12);
            let last = |op: &str| {
                errors
                    .iter()
                    .filter(|(t, e)| within(t) && e.starts_with(op))
                    .map(|(t, _)| t.duration_since(*k))
                    .max()
                    .unwrap_or_default()
            };
            put.push(last("PUT "));
            get.push(last("GET "));
            raw.push(
                self.raw_failures
                    .iter()
                    .filter(|t| within(t))
                    .map(|t| t.duration_since(*k))
                    .max()
                    .unwrap_or_default(),
            );
        }
        let stat = |v: &mut Vec<Duration>| {
            v.sort();
            (v[v.len() / 2], v[v.len() - 1])
        };
        eprintln!(
            "fault windows over {} kills (p50, max): PUT {:?}, GET {:?}, raw NATS publish {:?}",
            self.kills.len(),
            stat(&mut put),
            stat(&mut get),
            stat(&mut raw)
        );
    }

    /// The time from the fault to the last failure in `times`.
    fn window(&self, times: impl Iterator<Item = Instant>) -> Duration {
        times
            .map(|t| t.saturating_duration_since(self.fault_at))
            .max()
            .unwrap_or_default()
    }

    async fn check(&self, fault: Fault, s3: &Client, b: &str) {
        let errors: Vec<(Instant, String)> =
            self.ledgers.iter().flat_map(|l| l.errors.clone()).collect();
        let bad: Vec<String> = self.ledgers.iter().flat_map(|l| l.bad.clone()).collect();
        let acked: u64 = self.ledgers.iter().map(|l| l.acked).sum();
        let mut kinds: HashMap<&str, usize> = HashMap::new();
        for (_, e) in &errors {
            *kinds.entry(e.as_str()).or_default() += 1;
        }
        let mut per_second = std::collections::BTreeMap::new();
        for (t, _) in &errors {
            let s = t.saturating_duration_since(self.fault_at).as_secs();
            *per_second.entry(s).or_insert(0u32) += 1;
        }
        eprintln!(
            "fault {fault:?}: raw NATS publishes to the stream failed {} times, the last {:?} after the fault",
            self.raw_failures.len(),
            self.window(self.raw_failures.iter().copied())
        );
        eprintln!(
            "fault {fault:?}: {acked} acknowledged writes, {} client errors, the last {:?} after the fault; per second: {per_second:?}; {kinds:?}",
            errors.len(),
            self.window(errors.iter().map(|(t, _)| *t)),
        );
        assert!(bad.is_empty(), "reads returned wrong bytes: {bad:?}");
        let wrong: Vec<&String> = errors
            .iter()
            .map(|(_, e)| e)
            .filter(|e| !retryable(e.split_once(' ').map_or("", |(_, d)| d)))
            .collect();
        assert!(
            wrong.is_empty(),
            "errors a client would not retry: {wrong:?}"
        );
        let checked = check_ledgers(s3, b, &self.ledgers).await;
        eprintln!("fault {fault:?}: {checked} keys checked by content, 0 lost");
        self.print_windows(&errors);
        assert!(acked > 50, "the load ran: {acked}");
    }
}

/// Kills the stream leader's node (SIGKILL) under load, restarts it later: nothing
/// acknowledged is lost, and clients see only retryable errors, within a short window.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_leader_loses_nothing_and_fails_only_retryably() {
    under_fault(Fault::KillLeader).await;
}

/// Freezes the stream leader's node for 30 s (SIGSTOP: its connections stay open, nothing
/// answers), then lets it go on: the same promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freezing_the_stream_leader_loses_nothing_and_fails_only_retryably() {
    under_fault(Fault::FreezeLeader).await;
}

/// Two of three nodes gone: writes fail with 503 and readiness says so; when the nodes come
/// back, everything works again by itself, and nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_quorum_fails_retryably_reports_unready_and_recovers_by_itself() {
    let run = under_fault(Fault::LoseQuorum).await;
    assert!(run.readiness_lost, "readiness reported the lost quorum");
}

/// A bucket that holds its `max_bytes` refuses writes with 507 InsufficientStorage and keeps
/// nothing of them; a DELETE still works and makes room, and writes work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bucket_refuses_writes_cleanly_and_takes_them_again_once_there_is_room() {
    let b = unique_bucket("full");
    let mut cfg = config_with(&[]);
    cfg.buckets.push(jets3_crds::BucketConfig {
        name: b.clone(),
        ..Default::default()
    });
    cfg.limits.min_part_size = 1;
    let env = Env::start(cfg).await;
    env.js()
        .await
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: b.clone(),
            max_bytes: 3 << 20,
            ..Default::default()
        })
        .await
        .expect("bucket with maxBytes");
    let s3 = env.client();
    put(&s3, &b, "a", &data(1 << 20, 1)).await;
    put(&s3, &b, "b", &data(1 << 20, 2)).await;
    let chunks = env.chunk_subjects(&b).await;
    let r = s3
        .put_object()
        .bucket(&b)
        .key("c")
        .body(data(1536 << 10, 3).into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (507, "InsufficientStorage".into()));
    let up = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key("m")
            .send()
            .await,
        "create",
    );
    let id = up.upload_id().unwrap_or_default().to_string();
    let r = s3
        .upload_part()
        .bucket(&b)
        .key("m")
        .upload_id(&id)
        .part_number(1)
        .body(data(1536 << 10, 4).into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (507, "InsufficientStorage".into()));
    assert_eq!(
        sdk_err(s3.head_object().bucket(&b).key("c").send().await).0,
        404
    );
    let cleaned = eventually(10, || async { env.chunk_subjects(&b).await == chunks }).await;
    assert!(cleaned, "the refused writes left no chunks");
    // Deleting makes room once the collector has purged the deleted version (after the
    // grace period: 2 s here).
    ok(
        s3.delete_object().bucket(&b).key("a").send().await,
        "DELETE on a full bucket",
    );
    let room = eventually(15, || async {
        s3.put_object()
            .bucket(&b)
            .key("c")
            .body(data(1536 << 10, 3).into())
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(
        room,
        "the write goes through once the deleted version is purged"
    );
    assert_eq!(get_bytes(&s3, &b, "c").await, data(1536 << 10, 3));
    assert_eq!(get_bytes(&s3, &b, "b").await, data(1 << 20, 2));
}

/// A NATS server whose JetStream storage is full: the same, for every bucket on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_refuses_writes_cleanly_and_takes_them_again_once_there_is_room() {
    let b = unique_bucket("srvfull");
    let cfg = config_with(&[&b]);
    let nats = NatsServer::start_limited("6MB").await;
    let settings = settings_for(&nats.url());
    let env = Env::launch(nats, settings, Some(cfg.clone())).await;
    env.wait_ready().await;
    env.wait_declared_buckets(&cfg).await;
    let s3 = env.client();
    let mut stored = Vec::new();
    let mut refused = None;
    for i in 0..20 {
        let body = data(512 << 10, i);
        let r = s3
            .put_object()
            .bucket(&b)
            .key(format!("k{i}"))
            .body(body.into())
            .send()
            .await;
        match r {
            Ok(_) => stored.push(i),
            Err(e) => {
                refused = Some(sdk_err::<(), _>(Err(e)));
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some((507, "InsufficientStorage".to_string())),
        "the full server refuses a write with 507 after {} objects",
        stored.len()
    );
    let last = stored.len() as u64;
    assert_eq!(
        sdk_err(
            s3.head_object()
                .bucket(&b)
                .key(format!("k{last}"))
                .send()
                .await
        )
        .0,
        404
    );
    for i in &stored[..3] {
        ok(
            s3.delete_object()
                .bucket(&b)
                .key(format!("k{i}"))
                .send()
                .await,
            "DELETE on a full server",
        );
    }
    // The deleted versions are purged after the grace period (2 s here); then there is
    // room again.
    let room = eventually(15, || async {
        s3.put_object()
            .bucket(&b)
            .key("after")
            .body(data(512 << 10, 99).into())
            .send()
            .await
            .is_ok()
    })
    .await;
    assert!(
        room,
        "the write goes through once the deleted versions are purged"
    );
    for i in &stored[3..] {
        assert_eq!(
            get_bytes(&s3, &b, &format!("k{i}")).await,
            data(512 << 10, *i)
        );
    }
}

/// jets3's own KV buckets keep as many replicas as the most replicated bucket: with a
/// three-replica bucket, a multipart upload goes on after the server that led the uploads KV
/// is killed (with one replica its state went with that server). A KV bucket created with
/// one replica before (an older gateway's) is raised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_kv_buckets_survive_a_server_as_the_buckets_do() {
    let mut cluster = NatsCluster::start(3).await;
    let client = async_nats::connect(cluster.urls()[1].as_str())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: "jets3_gc".into(),
        history: 1,
        ..Default::default()
    })
    .await
    .expect("an older gateway's KV bucket");
    let b = unique_bucket("kv-r3");
    let mut cfg = config_with(&[]);
    let mut bc = bucket_cfg(&b);
    bc.replicas = 3;
    cfg.buckets.push(bc);
    let gw = gateway_on(&cluster, &cfg).await;
    cluster.leader_of(&format!("OBJ_{b}")).await;
    let s3 = client_of(&gw);
    // A fresh cluster's first KV bucket of three replicas may take a while to answer.
    let id = retried(60, "CreateMultipartUpload", || {
        s3.create_multipart_upload().bucket(&b).key("mp").send()
    })
    .await
    .upload_id()
    .unwrap_or_default()
    .to_string();
    let replicas = |kv: &'static str| {
        let js = js.clone();
        async move {
            let mut s = js.get_stream(format!("KV_{kv}")).await.ok()?;
            Some(s.info().await.ok()?.config.num_replicas)
        }
    };
    for kv in ["jets3_uploads", "jets3_gc"] {
        assert!(
            eventually(60, || async { replicas(kv).await == Some(3) }).await,
            "KV bucket {kv} has three replicas"
        );
    }
    let leader = cluster.leader_of("KV_jets3_uploads").await;
    cluster.kill(leader);
    let part = data(6 << 20, 31);
    let etag = retried(
        60,
        "UploadPart once the uploads KV has a new leader",
        || {
            s3.upload_part()
                .bucket(&b)
                .key("mp")
                .upload_id(&id)
                .part_number(1)
                .body(part.clone().into())
                .send()
        },
    )
    .await
    .e_tag()
    .unwrap_or_default()
    .to_string();
    retried(30, "CompleteMultipartUpload", || {
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .multipart_upload(crate::multipart::completed(&[(1, etag.as_str())]))
            .send()
    })
    .await;
    assert!(get_bytes(&s3, &b, "mp").await == part);
    gw.shutdown().await;
}

/// Runs `op` until it succeeds, for up to `secs`, as long as it fails only retryably.
pub async fn retried<T, E, F, Fut>(secs: u64, what: &str, mut op: F) -> T
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws_sdk_s3::error::SdkError<E, HttpResponse>>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let e = match op().await {
            Ok(out) => return out,
            Err(e) => describe(&e),
        };
        assert!(retryable(&e) && Instant::now() < deadline, "{what}: {e}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
