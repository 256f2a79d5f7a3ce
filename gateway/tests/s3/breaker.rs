//! The circuit breaker around NATS, with a real nats-server that is stopped, restarted and
//! frozen: it opens after consecutive failures or timeouts, fails fast while open (also in
//! `/readyz` and the metrics), and closes after a successful half-open probe.

use std::time::{Duration, Instant};

use crate::common::*;

const OPEN_MESSAGE: &str = "refusing requests";

async fn get(env: &Env, path: &str) -> (RawResponse, Duration) {
    let t = Instant::now();
    let r = env.send_signed(RawRequest::new("GET", path)).await;
    (r, t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_fails_fast_and_closes_after_a_probe() {
    let b = unique_bucket("breaker");
    let mut cfg = config_with(&[&b]);
    cfg.limits.circuit_breaker.failure_threshold = 3;
    cfg.limits.circuit_breaker.cooldown_seconds = 600;
    let mut env = Env::start(cfg.clone()).await;
    put(&env.client(), &b, "k", b"kept").await;
    let path = format!("/{b}/k");
    assert_eq!(env.metric("jets3_nats_circuit_state").await, Some(0.0));

    // NATS goes away: three failures open the circuit.
    env.nats.stop().await;
    for _ in 0..3 {
        let (r, _) = get(&env, &path).await;
        r.assert_error(503, "ServiceUnavailable");
        assert!(
            !r.text().contains(OPEN_MESSAGE),
            "NATS itself failed: {}",
            r.text()
        );
    }
    assert_eq!(env.metric("jets3_nats_circuit_state").await, Some(1.0));
    assert_eq!(
        env.metric("jets3_nats_circuit_opened_total").await,
        Some(1.0)
    );

    // NATS is back, but the circuit stays open for the cool-down: fast 503s, not ready.
    env.nats.restart().await;
    let connected = eventually(30, || async {
        env.metric("jets3_nats_connected").await == Some(1.0)
    })
    .await;
    assert!(connected, "the gateway reconnects to NATS");
    let (r, took) = get(&env, &path).await;
    r.assert_error(503, "ServiceUnavailable");
    assert!(r.text().contains(OPEN_MESSAGE), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert!(took < Duration::from_secs(2), "fails fast: {took:?}");
    let ready = env.admin_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("circuit open"), "{}", ready.text());

    // A shorter cool-down (config reload keeps the breaker's state): the next request
    // after it probes NATS, closes the circuit and is served.
    cfg.generation = 2;
    cfg.limits.circuit_breaker.cooldown_seconds = 1;
    env.gw().set_config(cfg.clone()).expect("valid");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (r, _) = get(&env, &path).await;
    r.assert_status(200);
    assert_eq!(r.body, b"kept");
    assert_eq!(env.metric("jets3_nats_circuit_state").await, Some(0.0));
    env.admin_get("/readyz").await.assert_status(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_cuts_timeouts_short() {
    let b = unique_bucket("breaker-slow");
    let mut cfg = config_with(&[&b]);
    cfg.limits.circuit_breaker.failure_threshold = 2;
    cfg.limits.circuit_breaker.cooldown_seconds = 2;
    let env = Env::start(cfg).await;
    put(&env.client(), &b, "k", b"v").await;
    let path = format!("/{b}/k");

    // A frozen server: the connection stays up, requests time out.
    env.nats.pause();
    let (a, c) = tokio::join!(get(&env, &path), get(&env, &path));
    for (r, took) in [a, c] {
        r.assert_error(503, "ServiceUnavailable");
        assert!(took >= Duration::from_secs(3), "a NATS timeout: {took:?}");
    }
    // Now open: no more waiting for NATS.
    let (r, took) = get(&env, &path).await;
    r.assert_error(503, "ServiceUnavailable");
    assert!(r.text().contains(OPEN_MESSAGE), "{}", r.text());
    assert!(
        took < Duration::from_secs(2),
        "fails fast while open: {took:?}"
    );

    // The server thaws; after the cool-down a probe closes the circuit.
    env.nats.resume();
    // Until then a request may also break off mid-body (a transfer NATS cut): not served.
    let served = eventually(20, || async {
        let mut req = RawRequest::new("GET", &path);
        sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Signed);
        try_send_raw(env.addr, &req.to_bytes(&env.host()))
            .await
            .is_some_and(|r| r.status == 200)
    })
    .await;
    assert!(served, "served again once NATS answers");
    assert_eq!(env.metric("jets3_nats_circuit_state").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_round_trip_is_measured_while_connected() {
    let b = unique_bucket("rtt");
    let mut env = Env::start(config_with(&[&b])).await;
    let measured = eventually(15, || async {
        env.metric("jets3_nats_rtt_seconds_count").await >= Some(2.0)
    })
    .await;
    assert!(measured, "no NATS round trips measured");
    let (sum, count) = (
        env.metric("jets3_nats_rtt_seconds_sum").await.unwrap(),
        env.metric("jets3_nats_rtt_seconds_count").await.unwrap(),
    );
    assert!(
        sum > 0.0 && sum / count < 0.5,
        "mean round trip {}s",
        sum / count
    );
    // Without NATS nothing is measured (the readiness and circuit metrics say why).
    env.nats.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stopped = env.metric("jets3_nats_rtt_seconds_count").await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        env.metric("jets3_nats_rtt_seconds_count").await,
        Some(stopped)
    );
}
