//! A small S3 load generator for the figures in issue notes (the side-by-side benchmark
//! harness with warp and the Go peer lives in `bench/`).
//!
//! `cargo run --release --example loadgen -- <endpoint> <access> <secret> <bucket> <op> <size> <clients> <seconds|count>`
//! where op is `put`, `get`, `list` (size = page size), or `getbig` (count of GETs per client).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

fn client(endpoint: &str, access: &str, secret: &str) -> Client {
    let creds = aws_credential_types::Credentials::new(access, secret, None, None, "loadgen");
    let http = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_s3::Config::builder()
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .http_client(http)
        .behavior_version_latest()
        .build();
    Client::from_conf(conf)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 9 {
        eprintln!("usage: loadgen <endpoint> <access> <secret> <bucket> <put|get|list|getbig> <size> <clients> <seconds|count>");
        std::process::exit(2);
    }
    let (endpoint, access, secret, bucket, op) = (&a[1], &a[2], &a[3], a[4].clone(), a[5].clone());
    let size: usize = a[6].parse().expect("size");
    let clients: usize = a[7].parse().expect("clients");
    let amount: u64 = a[8].parse().expect("seconds or count");
    let c = client(endpoint, access, secret);
    let body = bytes::Bytes::from(vec![7u8; size]);
    if op == "get" || op == "getbig" {
        for i in 0..clients {
            c.put_object()
                .bucket(&bucket)
                .key(format!("obj-{i}"))
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .expect("seed put");
        }
    }
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(amount);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (c, bucket, op, body) = (c.clone(), bucket.clone(), op.clone(), body.clone());
        let (bytes, errors) = (bytes.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            loop {
                let done = if op == "getbig" {
                    n >= amount
                } else {
                    Instant::now() >= deadline
                };
                if done {
                    break;
                }
                let t = Instant::now();
                let ok = match op.as_str() {
                    "put" => c
                        .put_object()
                        .bucket(&bucket)
                        .key(format!("put-{i}-{n}"))
                        .body(ByteStream::from(body.clone()))
                        .send()
                        .await
                        .map(|_| size as u64)
                        .is_ok(),
                    "list" => c
                        .list_objects_v2()
                        .bucket(&bucket)
                        .max_keys(size as i32)
                        .send()
                        .await
                        .is_ok(),
                    _ => match c
                        .get_object()
                        .bucket(&bucket)
                        .key(format!("obj-{i}"))
                        .send()
                        .await
                    {
                        Ok(o) => {
                            let mut s = o.body;
                            let mut got = 0u64;
                            while let Some(Ok(chunk)) = s.next().await {
                                got += chunk.len() as u64;
                            }
                            bytes.fetch_add(got, Ordering::Relaxed);
                            got == size as u64
                        }
                        Err(_) => false,
                    },
                };
                if op == "put" && ok {
                    bytes.fetch_add(size as u64, Ordering::Relaxed);
                }
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "op={op} size={size} clients={clients} ops={} ops/s={:.0} MB/s={:.1} p50_ms={:.2} p99_ms={:.2} errors={}",
        all.len(),
        all.len() as f64 / secs,
        bytes.load(Ordering::Relaxed) as f64 / secs / 1e6,
        pct(&all, 0.5),
        pct(&all, 0.99),
        errors.load(Ordering::Relaxed)
    );
}
