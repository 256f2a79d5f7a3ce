//! Figures for the operator against real servers (run by hand, not a pass/fail test):
//!
//! - the time from creating an S3Bucket to its Ready=True, 20 times, with the median;
//! - a cold start with 500 S3Buckets and 500 S3Credentials already there: the time until all
//!   are Ready, and the operator's peak RSS.
//!
//! `cargo bench -p jets3-operator --bench scale` (needs `make tools`). `JETS3_SCALE=N` changes
//! the 500. `JETS3_SCALE_BASELINE_BIN=<jets3-operator>` runs the cold start with that binary
//! first, then with this build's, on fresh servers: before/after figures from one run.

#[path = "../tests/k8s/common.rs"]
mod common;

use std::time::{Duration, Instant};

use kube::api::ListParams;
use serde_json::json;

use common::*;

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn ready(conditions: Vec<jets3_crds::k8s::Condition>) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn apply_to_ready() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    env.create_bucket(ns, "warm-up", json!({})).await;
    env.condition(&api, "warm-up", "Ready", "True", None).await;
    let mut times = Vec::new();
    for i in 0..20 {
        let name = format!("latency-{i}");
        let t = Instant::now();
        env.create_bucket(ns, &name, json!({})).await;
        loop {
            if ready(conditions_of(&api.get(&name).await.unwrap())) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "S3Bucket create -> Ready=True, 20 runs: median {:.0} ms, min {:.0} ms, max {:.0} ms",
        ms(times[10]),
        ms(times[0]),
        ms(times[19])
    );
}

async fn cold_start(n: usize, binary: Option<std::path::PathBuf>) {
    let label = if binary.is_some() {
        "baseline"
    } else {
        "this build"
    };
    let mut env = Env::without_operator(1).await;
    let ns = env.ns(0).to_string();
    let t = Instant::now();
    for i in 0..n {
        env.create_bucket(&ns, &format!("scale-{i}"), json!({}))
            .await;
        env.create_credential(
            &ns,
            &format!("scale-{i}"),
            json!({"grants": [{"bucket": format!("scale-{i}"), "permission": "read-write"}]}),
        )
        .await;
    }
    println!(
        "created {n} S3Buckets and {n} S3Credentials in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut o = env.options();
    o.resync = "10m".into();
    o.binary = binary;
    let started = Instant::now();
    env.operator = Some(env.start_operator("operator", &o));
    let pid = env.operator().pid().unwrap();
    let lp = ListParams::default();
    let mut peak = 0.0f64;
    loop {
        peak = peak.max(peak_rss_mib(pid));
        let b = env.buckets(&ns).list(&lp).await.unwrap();
        let c = env.credentials(&ns).list(&lp).await.unwrap();
        let rb = b.items.iter().filter(|x| ready(conditions_of(*x))).count();
        let rc = c.items.iter().filter(|x| ready(conditions_of(*x))).count();
        if rb == n && rc == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "not all Ready after 30 min: {rb} buckets, {rc} credentials"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let took = started.elapsed();
    peak = peak.max(peak_rss_mib(pid));
    let cfg = env.operator().config().unwrap();
    println!(
        "{label}: cold start, {n} S3Buckets + {n} S3Credentials: all Ready in {:.1} s; operator peak RSS {peak:.0} MiB; config generation {} with {} buckets and {} keys",
        took.as_secs_f64(),
        cfg.generation,
        cfg.buckets.len(),
        cfg.credentials.len()
    );
}

#[tokio::main]
async fn main() {
    let n = std::env::var("JETS3_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    apply_to_ready().await;
    if let Some(bin) = std::env::var_os("JETS3_SCALE_BASELINE_BIN") {
        cold_start(n, Some(bin.into())).await;
    }
    cold_start(n, None).await;
}
