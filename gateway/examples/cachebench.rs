//! Object cache on vs off, and admission limits on (never reached) vs off, under a
//! Zipf-skewed GET workload, side by side in one run.
//!
//! Starts nats-server (`$JETS3_TOOLS_DIR/bin/nats-server`, from `make tools`) and one
//! gateway with two public-read buckets holding the same objects, one with the cache on.
//! Clients GET keys drawn from a Zipf distribution; the phases alternate (cache off, limits
//! on, cache on, and again) so that machine noise hits all alike. Prints GET p50/p99,
//! throughput, ratios and the cache hit ratio.
//!
//! ```sh
//! cargo run --release -p jets3-gateway --example cachebench -- \
//!     [--objects 10000] [--size 4096] [--zipf 1.1] [--clients 16] \
//!     [--seconds 5] [--rounds 3] [--cache-mib 16]
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jets3_crds::{
    Access, BucketCache, BucketConfig, Credential, GatewayConfig, Grant, IpFilter, Permission,
    RateLimit, RateLimits,
};
use jets3_gateway::{NatsSettings, ServerSettings};
use jets3_testkit::http::{connect, get, percentile};
use jets3_testkit::NatsServer;
use rand::{Rng, SeedableRng};

struct Args {
    objects: usize,
    size: usize,
    zipf: f64,
    clients: usize,
    seconds: u64,
    rounds: usize,
    cache_mib: u64,
}

fn num<T: std::str::FromStr>(flag: &str, v: Option<&str>) -> T {
    v.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{flag} needs a number"))
}

fn args() -> Args {
    let mut a = Args {
        objects: 10_000,
        size: 4096,
        zipf: 1.1,
        clients: 16,
        seconds: 5,
        rounds: 3,
        cache_mib: 16,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let (flag, v) = (pair[0].as_str(), pair.get(1).map(String::as_str));
        match flag {
            "--objects" => a.objects = num(flag, v),
            "--size" => a.size = num(flag, v),
            "--zipf" => a.zipf = num(flag, v),
            "--clients" => a.clients = num(flag, v),
            "--seconds" => a.seconds = num(flag, v),
            "--rounds" => a.rounds = num(flag, v),
            "--cache-mib" => a.cache_mib = num(flag, v),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// Ranks 0..n drawn with probability proportional to 1 / (rank + 1)^s.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        Zipf(cdf.into_iter().map(|c| c / total).collect())
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.0.partition_point(|c| *c < u).min(self.0.len() - 1)
    }
}

/// Clients GETting Zipf-drawn keys of `bucket` for `secs`; returns each latency.
async fn phase(addr: SocketAddr, bucket: &str, a: &Args, zipf: &std::sync::Arc<Zipf>) -> Vec<f64> {
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (bucket, zipf) = (bucket.to_string(), zipf.clone());
        let (secs, size) = (a.seconds, a.size);
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let mut lat = Vec::new();
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                let k = zipf.sample(&mut rng);
                let t = Instant::now();
                let (status, body) = get(&mut s, &format!("/{bucket}/obj-{k:06}")).await;
                assert!(
                    status == 200 && body.len() == size,
                    "GET {k}: {status} {}",
                    body.len()
                );
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    all
}

async fn metrics(admin: SocketAddr) -> HashMap<String, f64> {
    let (_, text) = get(&mut connect(admin).await, "/metrics").await;
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let a = args();
    let nats = NatsServer::start().await;
    let url = nats.url();
    let bucket = |name: &str, cache: bool| BucketConfig {
        name: name.into(),
        access: Access::PublicRead,
        create: true,
        cache: cache.then_some(BucketCache {
            enabled: true,
            max_object_bytes: a.size as u64,
        }),
        ..Default::default()
    };
    let config = GatewayConfig {
        buckets: vec![bucket("plain", false), bucket("cached", true)],
        credentials: vec![Credential {
            access_key_id: "BENCH0001".into(),
            secret_access_key: "bench-secret".into(),
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
    let mut settings = ServerSettings {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        nats: NatsSettings {
            servers: vec![url.clone()],
            ..Default::default()
        },
        ..Default::default()
    };
    settings.cache.max_bytes = a.cache_mib << 20;
    settings.cache.max_entries = 1_000_000;
    let gw = jets3_gateway::start(settings, Some(config.clone()))
        .await
        .expect("gateway");
    let (addr, admin) = (gw.s3_addr(), gw.admin_addr().expect("admin"));
    // Load the objects natively (the buckets are public-read, not writable anonymously).
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("nats"));
    let mut stores = Vec::new();
    for name in ["plain", "cached"] {
        loop {
            if let Ok(s) = js.get_object_store(name).await {
                stores.push(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let payload = vec![7u8; a.size];
    let t = Instant::now();
    futures::future::join_all((0..16).map(|w| {
        let (stores, payload, n) = (stores.clone(), payload.clone(), a.objects);
        async move {
            for k in (w..n).step_by(16) {
                for s in &stores {
                    let mut r: &[u8] = &payload;
                    s.put(format!("obj-{k:06}").as_str(), &mut r)
                        .await
                        .expect("native put");
                }
            }
        }
    }))
    .await;
    eprintln!(
        "loaded {} objects of {} B into both buckets in {:.1?}",
        a.objects,
        a.size,
        t.elapsed()
    );
    let zipf = std::sync::Arc::new(Zipf::new(a.objects, a.zipf));
    // The same config with every limit on but generous: what the checks cost.
    let mut limited = config.clone();
    limited.generation = 1;
    let generous = Some(RateLimit {
        requests_per_second: 1e9,
        burst: Some(u32::MAX),
    });
    limited.limits.rate_limits = RateLimits {
        global: generous,
        per_client_ip: generous,
        per_access_key: generous,
    };
    limited.limits.max_in_flight_requests = 1_000_000;
    limited.limits.max_buffered_bytes = 1 << 40;
    limited.buckets[0].rate_limit = generous;
    limited.buckets[0].ip_filter = Some(IpFilter {
        allow: vec!["127.0.0.0/8".into()],
        deny: vec!["10.0.0.0/8".into()],
    });
    let mut unlimited = config.clone();
    unlimited.generation = 2;
    let (mut off, mut lim, mut on) = (Vec::new(), Vec::new(), Vec::new());
    let m0 = metrics(admin).await;
    for round in 0..a.rounds {
        off.extend(phase(addr, "plain", &a, &zipf).await);
        limited.generation += 2;
        gw.set_config(limited.clone()).expect("limits config");
        lim.extend(phase(addr, "plain", &a, &zipf).await);
        unlimited.generation = limited.generation + 1;
        gw.set_config(unlimited.clone()).expect("config");
        on.extend(phase(addr, "cached", &a, &zipf).await);
        eprintln!("round {} of {} done", round + 1, a.rounds);
    }
    let m1 = metrics(admin).await;
    let d = |k: &str| m1.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0);
    let (hits, misses) = (
        d("jets3_cache_requests_total{result=\"hit\"}"),
        d("jets3_cache_requests_total{result=\"miss\"}"),
    );
    let secs = (a.seconds * a.rounds as u64) as f64;
    println!(
        "cachebench: {} objects x {} B, zipf s={}, {} clients, {} rounds of {} s, cache {} MiB",
        a.objects, a.size, a.zipf, a.clients, a.rounds, a.seconds, a.cache_mib
    );
    println!("| phase | GETs | GET/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|");
    for (name, lat) in [
        ("cache off, limits off", &mut off),
        ("cache off, limits on (never hit)", &mut lim),
        ("cache on", &mut on),
    ] {
        lat.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {:.0} | {:.3} | {:.3} |",
            lat.len(),
            lat.len() as f64 / secs,
            percentile(lat, 0.50),
            percentile(lat, 0.99)
        );
    }
    println!(
        "hit ratio {:.1}% ({hits} hits, {misses} misses), {} evictions, {:.1} MiB held",
        100.0 * hits / (hits + misses).max(1.0),
        d("jets3_cache_evictions_total"),
        m1.get("jets3_cache_bytes").copied().unwrap_or(0.0) / (1 << 20) as f64
    );
    let ratios = |x: &[f64], y: &[f64]| {
        format!(
            "p50 {:.2}, p99 {:.2}, throughput {:.2}",
            percentile(x, 0.5) / percentile(y, 0.5),
            percentile(x, 0.99) / percentile(y, 0.99),
            x.len() as f64 / y.len() as f64
        )
    };
    println!("cache on / off: {}", ratios(&on, &off));
    println!("limits on / off: {}", ratios(&lim, &off));
    gw.shutdown().await;
}
