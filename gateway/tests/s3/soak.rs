//! A bounded soak: mixed load on a gateway process in front of a three-node cluster whose
//! nodes restart one after another; the gateway's memory and descriptors, the NATS
//! consumers and the bucket's bytes stay flat, and nothing acknowledged is lost.
//!
//! `JETS3_SOAK_SECONDS` sets the length (default 90: the CI run; `make bench-soak` runs 30
//! minutes) and `JETS3_SOAK_OUT` a CSV file for the curves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::failover::{check_ledgers, client_loop};

/// One sample of the curves.
struct Sample {
    at: Duration,
    rss: u64,
    fds: usize,
    consumers: usize,
    bytes: u64,
}

async fn consumers_and_bytes(cluster: &NatsCluster, stream: &str) -> Option<(usize, u64)> {
    for url in cluster.urls() {
        let got = async {
            let c = async_nats::connect(&url).await.ok()?;
            let js = async_nats::jetstream::new(c);
            let account = js.query_account().await.ok()?;
            let mut s = js.get_stream(stream).await.ok()?;
            let info = s.info().await.ok()?;
            Some((account.consumers, info.state.bytes))
        };
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(3), got).await {
            return Some(v);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_with_node_restarts_stays_flat_and_loses_nothing() {
    let seconds: u64 = std::env::var("JETS3_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(90);
    let mut cluster = NatsCluster::start(3).await;
    let b = unique_bucket("soak");
    let gw = GatewayProcess::start(&cluster.urls(), &b, 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..4 {
        clients.push(tokio::spawn(client_loop(
            id,
            gw.client(),
            b.clone(),
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_restart = Duration::from_secs(20);
    let mut node = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        if started.elapsed() >= next_restart {
            cluster.kill(node);
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster.restart(node).await;
            node = (node + 1) % 3;
            next_restart = started.elapsed() + Duration::from_secs(20);
        }
        let (rss, fds) = gw.rss_and_fds();
        if let Some((consumers, bytes)) = consumers_and_bytes(&cluster, &format!("OBJ_{b}")).await {
            samples.push(Sample {
                at: started.elapsed(),
                rss,
                fds,
                consumers,
                bytes,
            });
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut ledgers = Vec::new();
    for c in clients {
        ledgers.push(c.await.expect("client"));
    }
    if let Ok(path) = std::env::var("JETS3_SOAK_OUT") {
        let mut csv = String::from("seconds,rss_bytes,fds,consumers,stream_bytes\n");
        for s in &samples {
            csv.push_str(&format!(
                "{},{},{},{},{}\n",
                s.at.as_secs(),
                s.rss,
                s.fds,
                s.consumers,
                s.bytes
            ));
        }
        std::fs::write(&path, csv).expect("write the curves");
    }
    assert!(samples.len() >= 6, "samples: {}", samples.len());
    for line in gw
        .log()
        .lines()
        .filter(|l| l.contains("collector"))
        .take(20)
    {
        eprintln!("soak: gateway log: {line}");
    }
    let metrics = send_raw(
        gw.admin,
        &RawRequest::new("GET", "/metrics").to_bytes(&gw.admin.to_string()),
    )
    .await
    .text();
    for line in metrics.lines().filter(|l| l.starts_with("jets3_collector")) {
        eprintln!("soak: {line}");
    }
    // Flat: the last quarter against the first quarter after a warm-up sample.
    let quarter = (samples.len() / 4).max(1);
    let early = &samples[1..1 + quarter];
    let late = &samples[samples.len() - quarter..];
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
    let (rss0, rss1) = (max(early, |s| s.rss), max(late, |s| s.rss));
    let (fd0, fd1) = (max(early, |s| s.fds as u64), max(late, |s| s.fds as u64));
    let (c0, c1) = (
        max(early, |s| s.consumers as u64),
        max(late, |s| s.consumers as u64),
    );
    let (b0, b1) = (max(early, |s| s.bytes), max(late, |s| s.bytes));
    let acked: u64 = ledgers.iter().map(|l| l.acked).sum();
    eprintln!(
        "soak {seconds} s: {acked} acknowledged writes; gateway RSS {} -> {} MiB, fds {fd0} -> {fd1}, NATS consumers {c0} -> {c1}, stream {} -> {} MiB",
        rss0 >> 20,
        rss1 >> 20,
        b0 >> 20,
        b1 >> 20
    );
    assert!(
        rss1 <= rss0 + rss0 / 2 + (16 << 20),
        "gateway memory grows: {rss0} -> {rss1}"
    );
    assert!(fd1 <= fd0 + 16, "descriptors grow: {fd0} -> {fd1}");
    assert!(c1 <= c0 + 4, "NATS consumers grow: {c0} -> {c1}");
    assert!(
        b1 <= b0 + b0 / 2 + (32 << 20),
        "the bucket's bytes grow under a steady load: {b0} -> {b1}"
    );
    let checked = check_ledgers(&gw.client(), &b, &ledgers).await;
    eprintln!("soak: {checked} keys checked by content, 0 lost");
}
