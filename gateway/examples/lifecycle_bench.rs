//! What the version lifecycle costs in space and time: the bytes that linger after many
//! overwrites of one key (and how long until the collector has removed them), and the time
//! of one collector pass with a scan over a bucket of many objects.
//!
//! Starts nats-server (`$JETS3_TOOLS_DIR/bin/nats-server`, from `make tools`) and one gateway
//! with the default collector settings (or `--grace` / `--interval`).
//!
//! ```sh
//! cargo run --release -p jets3-gateway --example lifecycle_bench -- \
//!     [--overwrites 1000] [--size 1048576] [--objects 100000] [--grace 30] [--interval 5]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use futures::StreamExt;
use jets3_crds::{BucketConfig, Credential, GatewayConfig, Grant, Permission};
use jets3_gateway::config::settings::CollectorSettings;
use jets3_gateway::store::Collector;
use jets3_gateway::{NatsSettings, ServerSettings};
use jets3_testkit::NatsServer;

struct Args {
    overwrites: usize,
    size: usize,
    objects: usize,
    grace: u64,
    interval: u64,
}

fn args() -> Args {
    let d = CollectorSettings::default();
    let mut a = Args {
        overwrites: 1000,
        size: 1 << 20,
        objects: 100_000,
        grace: d.grace_seconds,
        interval: d.interval_seconds,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = |f: &str| -> u64 {
            pair.get(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{f} needs a number"))
        };
        match pair[0].as_str() {
            "--overwrites" => a.overwrites = v("--overwrites") as usize,
            "--size" => a.size = v("--size") as usize,
            "--objects" => a.objects = v("--objects") as usize,
            "--grace" => a.grace = v("--grace"),
            "--interval" => a.interval = v("--interval"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// (messages, bytes) of a bucket's stream.
async fn stream_state(js: &async_nats::jetstream::Context, bucket: &str) -> (u64, u64) {
    let mut s = js
        .get_stream(format!("OBJ_{bucket}"))
        .await
        .expect("stream");
    let info = s.info().await.expect("info");
    (info.state.messages, info.state.bytes)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

#[tokio::main]
async fn main() {
    let a = args();
    let nats = NatsServer::start().await;
    let url = nats.url();
    let (ak, sk) = ("AKIDLIFECYCLEBENCH", "lifecycle-bench-secret");
    let config = GatewayConfig {
        buckets: ["linger", "many"]
            .iter()
            .map(|n| BucketConfig {
                name: n.to_string(),
                create: true,
                ..Default::default()
            })
            .collect(),
        credentials: vec![Credential {
            access_key_id: ak.into(),
            secret_access_key: sk.into(),
            grants: vec![Grant {
                bucket: "*".into(),
                permission: Permission::Admin,
            }],
            not_before: None,
            not_after: None,
            description: None,
        }],
        ..Default::default()
    };
    let settings = ServerSettings {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        admin_listen: None,
        nats: NatsSettings {
            servers: vec![url.clone()],
            ..Default::default()
        },
        collector: CollectorSettings {
            grace_seconds: a.grace,
            interval_seconds: a.interval,
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = jets3_gateway::start(settings, Some(config))
        .await
        .expect("gateway");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", gw.s3_addr()))
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .credentials_provider(Credentials::new(ak, sk, None, None, "bench"))
            .build(),
    );
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("nats"));
    while js.get_stream("OBJ_many").await.is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let g = gw.gateway();

    // 1. Overwrites of one key: what lingers, and for how long.
    let body = vec![7u8; a.size];
    let started = Instant::now();
    for _ in 0..a.overwrites {
        s3.put_object()
            .bucket("linger")
            .key("k")
            .body(body.clone().into())
            .send()
            .await
            .expect("PUT");
    }
    let writing = started.elapsed();
    let (_, after) = stream_state(&js, "linger").await;
    let mut peak = after;
    let drained = loop {
        let (_, bytes) = stream_state(&js, "linger").await;
        peak = peak.max(bytes);
        if bytes < (a.size as u64) * 2 {
            break started.elapsed();
        }
        if started.elapsed() > writing + Duration::from_secs(a.grace + 20 * a.interval + 60) {
            panic!("retired versions were not purged: {} left", mib(bytes));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let purged = g
        .collector
        .purged_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "overwrites: {} x {} in {:.1} s ({:.0} MB/s); stream right after: {} (live {}); \
         all retired versions purged {:.1} s after the first PUT ({:.1} s after the last); \
         purged {} (grace {} s, interval {} s)",
        a.overwrites,
        mib(a.size as u64),
        writing.as_secs_f64(),
        (a.overwrites * a.size) as f64 / writing.as_secs_f64() / 1e6,
        mib(after),
        mib(a.size as u64),
        drained.as_secs_f64(),
        (drained - writing).as_secs_f64(),
        mib(purged),
        a.grace,
        a.interval,
    );

    // 2. One collector pass with a scan, over a bucket of many small objects (seeded through
    // the gateway, 32 at a time).
    let started = Instant::now();
    futures::stream::iter(0..a.objects)
        .map(|i| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket("many")
                    .key(format!("obj/{i:08}"))
                    .body(vec![1u8; 1024].into())
                    .send()
                    .await
                    .expect("seed PUT");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    println!(
        "seeded {} objects of 1 KiB in {:.1} s",
        a.objects,
        started.elapsed().as_secs_f64()
    );
    // The gateway's own collector holds the lock; a separate one waits for it to lapse.
    gw.shutdown().await;
    let store = g.store.clone();
    let collector = Collector::new(store, CollectorSettings::default());
    let lead = Instant::now();
    while !collector.pass(None, false).await.unwrap_or(false) {
        assert!(lead.elapsed() < Duration::from_secs(120), "never led");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for round in 0..3 {
        let t = Instant::now();
        collector.pass(None, true).await.expect("pass");
        let stats = collector.stats();
        println!(
            "collector pass with a scan, {} objects in 2 buckets, round {round}: {:.2} s (scan {} ms)",
            a.objects + 1,
            t.elapsed().as_secs_f64(),
            stats
                .last_scan_millis
                .load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    let t = Instant::now();
    collector.pass(None, false).await.expect("pass");
    println!(
        "collector pass without a scan: {:.1} ms",
        t.elapsed().as_secs_f64() * 1000.0
    );
}
