//! What a 20-statement bucket policy costs a 4 KiB GET, side by side in one run.
//!
//! Starts nats-server (`$JETS3_TOOLS_DIR/bin/nats-server`, from `make tools`) and one
//! gateway with two buckets holding the same objects: `plain`, readable by anyone through
//! `access: public-read` (no policy), and `policy`, readable by anyone through the last of
//! 20 policy statements (the 19 before it name other principals, prefixes and conditions,
//! so every GET walks all of them). Anonymous clients GET random keys; the phases alternate
//! so that machine noise hits both alike. Prints ops/s, p50/p99 and the ratio.
//!
//! ```sh
//! cargo run --release -p jets3-gateway --example policybench -- \
//!     [--objects 1000] [--size 4096] [--clients 16] [--seconds 5] [--rounds 3]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jets3_crds::{Access, BucketConfig, GatewayConfig, PublicAccessBlock};
use jets3_gateway::{NatsSettings, ServerSettings};
use jets3_testkit::http::{connect, get, percentile};
use jets3_testkit::NatsServer;
use rand::{Rng, SeedableRng};

struct Args {
    objects: usize,
    size: usize,
    clients: usize,
    seconds: u64,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        objects: 1000,
        size: 4096,
        clients: 16,
        seconds: 5,
        rounds: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        let v = v.unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--objects" => a.objects = v as usize,
            "--size" => a.size = v as usize,
            "--clients" => a.clients = v as usize,
            "--seconds" => a.seconds = v,
            "--rounds" => a.rounds = v as usize,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// 19 statements that do not apply to an anonymous GET of `policy/obj-*`, then the one that
/// allows it.
fn twenty_statements() -> String {
    let mut s = Vec::new();
    for i in 0..19 {
        s.push(match i % 4 {
            0 => format!(
                r#"{{"Sid":"s{i}","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::jets3:user/AKIAOTHER{i:08}"}},"Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::policy/team{i}/*"}}"#
            ),
            1 => format!(
                r#"{{"Sid":"s{i}","Effect":"Deny","Principal":"*","Action":"s3:DeleteObject","Resource":"arn:aws:s3:::policy/*"}}"#
            ),
            2 => format!(
                r#"{{"Sid":"s{i}","Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::policy/private{i}/*","Condition":{{"NotIpAddress":{{"aws:SourceIp":"10.0.0.0/8"}}}}}}"#
            ),
            _ => format!(
                r#"{{"Sid":"s{i}","Effect":"Allow","Principal":"*","Action":"s3:ListBucket","Resource":"arn:aws:s3:::policy","Condition":{{"StringLike":{{"s3:prefix":["shared{i}/*"]}}}}}}"#
            ),
        });
    }
    s.push(
        r#"{"Sid":"read","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::policy/obj-*"}"#.to_string(),
    );
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        s.join(",")
    )
}

/// Anonymous clients GETting random keys of `bucket` for the phase; returns each latency.
async fn phase(addr: SocketAddr, bucket: &str, a: &Args) -> Vec<f64> {
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let bucket = bucket.to_string();
        let (secs, size, n) = (a.seconds, a.size, a.objects);
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let mut rng = rand::rngs::StdRng::seed_from_u64(c as u64);
            let mut lat = Vec::new();
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end {
                let k = rng.gen_range(0..n);
                let t = Instant::now();
                let (status, body) = get(&mut s, &format!("/{bucket}/obj-{k:06}")).await;
                assert!(
                    status == 200 && body.len() == size,
                    "GET {bucket} {k}: {status}"
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

#[tokio::main]
async fn main() {
    let a = args();
    let nats = NatsServer::start().await;
    let url = nats.url();
    let policy = twenty_statements();
    let config = GatewayConfig {
        buckets: vec![
            BucketConfig {
                name: "plain".into(),
                access: Access::PublicRead,
                create: true,
                ..Default::default()
            },
            BucketConfig {
                name: "policy".into(),
                create: true,
                policy: Some(policy),
                ..Default::default()
            },
        ],
        public_access_block: PublicAccessBlock::NONE,
        ..Default::default()
    };
    let settings = ServerSettings {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        admin_listen: None,
        nats: NatsSettings {
            servers: vec![url.clone()],
            ..Default::default()
        },
        ..Default::default()
    };
    let gw = jets3_gateway::start(settings, Some(config))
        .await
        .expect("gateway");
    let addr = gw.s3_addr();
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.expect("nats"));
    let mut stores = Vec::new();
    for name in ["plain", "policy"] {
        loop {
            if let Ok(s) = js.get_object_store(name).await {
                stores.push(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let payload = vec![7u8; a.size];
    for k in 0..a.objects {
        for s in &stores {
            let mut r: &[u8] = &payload;
            s.put(format!("obj-{k:06}").as_str(), &mut r)
                .await
                .expect("native put");
        }
    }
    let (mut plain, mut with) = (Vec::new(), Vec::new());
    let (mut plain_s, mut with_s) = (0.0, 0.0);
    for round in 0..a.rounds {
        for (bucket, lat, secs) in [
            ("plain", &mut plain, &mut plain_s),
            ("policy", &mut with, &mut with_s),
        ] {
            let t = Instant::now();
            let l = phase(addr, bucket, &a).await;
            *secs += t.elapsed().as_secs_f64();
            eprintln!("round {round} {bucket}: {} GETs", l.len());
            lat.extend(l);
        }
    }
    for l in [&mut plain, &mut with] {
        l.sort_by(|x, y| x.total_cmp(y));
    }
    let ops = |l: &Vec<f64>, s: f64| l.len() as f64 / s;
    println!(
        "4 KiB GET, {} clients, {} rounds of {} s each:",
        a.clients, a.rounds, a.seconds
    );
    println!(
        "  no policy (public-read): {:>8.0} ops/s  p50 {:.2} ms  p99 {:.2} ms",
        ops(&plain, plain_s),
        percentile(&plain, 0.5),
        percentile(&plain, 0.99)
    );
    println!(
        "  20-statement policy:     {:>8.0} ops/s  p50 {:.2} ms  p99 {:.2} ms",
        ops(&with, with_s),
        percentile(&with, 0.5),
        percentile(&with, 0.99)
    );
    println!(
        "  ratio (policy / none):   {:.3}",
        ops(&with, with_s) / ops(&plain, plain_s)
    );
    gw.shutdown().await;
}
