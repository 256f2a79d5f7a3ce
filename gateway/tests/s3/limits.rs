//! Admission limits and timeouts: token-bucket rate limits (gateway-wide, per client
//! address behind trusted proxies, per access key, per bucket) answer 503 SlowDown with
//! Retry-After; requests in flight and buffered bytes are capped; slow clients are cut off
//! (header read, idle body, whole request) and leave nothing behind.

use std::time::{Duration, Instant};

use jets3_crds::{Permission, RateLimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const SLOW_AK: &str = "AKIASLOWKEY000001";
const SLOW_SK: &str = "slow-key-secret-0001";

fn rate(rps: f64, burst: u32) -> Option<RateLimit> {
    Some(RateLimit {
        requests_per_second: rps,
        burst: Some(burst),
    })
}

#[track_caller]
fn assert_slow_down(r: &RawResponse, what: &str) {
    assert_eq!(
        (r.status, r.code().as_deref()),
        (503, Some("SlowDown")),
        "{what}: {}",
        r.text()
    );
    r.assert_error(503, "SlowDown");
    let after: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(after >= 1, "{what}: Retry-After {after}");
}

fn get_from(b: &str, key: &str, client: &str) -> RawRequest {
    RawRequest::new("GET", &format!("/{b}/{key}")).header("x-forwarded-for", client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_slow_down() {
    let (limited, free) = (unique_bucket("rl-bucket"), unique_bucket("rl-free"));
    let mut cfg = config_with(&[&limited, &free]);
    cfg.credentials.push(credential(
        SLOW_AK,
        SLOW_SK,
        &[("*", Permission::ReadWrite)],
    ));
    let env = Env::start_with(cfg.clone(), |s| {
        s.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let s3 = env.client();
    put(&s3, &limited, "k", b"v").await;
    put(&s3, &free, "k", b"v").await;

    // Per bucket: 2 requests, then SlowDown; the other bucket is not affected.
    cfg.generation = 2;
    cfg.buckets[0].rate_limit = rate(0.05, 2);
    env.gw().set_config(cfg.clone()).expect("valid");
    for _ in 0..2 {
        env.send_signed(RawRequest::new("GET", &format!("/{limited}/k")))
            .await
            .assert_status(200);
    }
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{limited}/k")))
        .await;
    assert_slow_down(&r, "third request to a bucket limited to 2");
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((15..=20).contains(&after), "1 token at 0.05/s: {after}");
    for _ in 0..3 {
        env.send_signed(RawRequest::new("GET", &format!("/{free}/k")))
            .await
            .assert_status(200);
    }
    assert_eq!(
        env.metric("jets3_requests_throttled_total{limit=\"bucket\"}")
            .await,
        Some(1.0)
    );

    per_key_and_address(&env, cfg, &free).await;
}

async fn per_key_and_address(env: &Env, mut cfg: jets3_crds::GatewayConfig, free: &str) {
    let s3 = env.client();
    // Per access key: the slow key runs out, the admin key does not.
    cfg.generation = 3;
    cfg.buckets[0].rate_limit = None;
    cfg.limits.rate_limits.per_access_key = rate(0.05, 2);
    env.gw().set_config(cfg.clone()).expect("valid");
    let slow = env.client_for(SLOW_AK, SLOW_SK);
    for _ in 0..2 {
        get_bytes(&slow, free, "k").await;
    }
    let (status, code) = sdk_err(slow.get_object().bucket(free).key("k").send().await);
    assert_eq!((status, code.as_str()), (503, "SlowDown"));
    for _ in 0..2 {
        get_bytes(&s3, free, "k").await;
    }

    // Per client address, from X-Forwarded-For of a trusted proxy (127.0.0.1 here).
    cfg.generation = 4;
    cfg.limits.rate_limits.per_access_key = None;
    cfg.limits.rate_limits.per_client_ip = rate(0.05, 3);
    env.gw().set_config(cfg.clone()).expect("valid");
    for _ in 0..3 {
        env.send_signed(get_from(free, "k", "203.0.113.1"))
            .await
            .assert_status(200);
    }
    assert_slow_down(
        &env.send_signed(get_from(free, "k", "203.0.113.1")).await,
        "fourth request from one client",
    );
    // A forged first item does not make a new client: the proxy appended the real one.
    assert_slow_down(
        &env.send_signed(get_from(free, "k", "198.51.100.1, 203.0.113.1"))
            .await,
        "forged X-Forwarded-For",
    );
    env.send_signed(get_from(free, "k", "203.0.113.2"))
        .await
        .assert_status(200);
    // Anonymous requests count too (refused later for lack of rights, but counted first).
    for _ in 0..2 {
        env.send(get_from(free, "k", "203.0.113.3"))
            .await
            .assert_error(403, "AccessDenied");
    }
    env.send(get_from(free, "k", "203.0.113.3"))
        .await
        .assert_error(403, "AccessDenied");
    assert_slow_down(
        &env.send(get_from(free, "k", "203.0.113.3")).await,
        "anonymous flood",
    );

    // Gateway-wide: every client together.
    cfg.generation = 5;
    cfg.limits.rate_limits.per_client_ip = None;
    cfg.limits.rate_limits.global = rate(0.05, 3);
    env.gw().set_config(cfg.clone()).expect("valid");
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        env.send_signed(get_from(free, "k", ip))
            .await
            .assert_status(200);
    }
    assert_slow_down(
        &env.send_signed(get_from(free, "k", "192.0.2.4")).await,
        "over the gateway-wide rate",
    );
    assert!(env
        .metric("jets3_requests_throttled_total{limit=\"global\"}")
        .await
        .is_some_and(|v| v >= 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peers_cannot_pick_their_address() {
    let b = unique_bucket("rl-untrusted");
    let mut cfg = config_with(&[&b]);
    cfg.limits.rate_limits.per_client_ip = rate(0.05, 2);
    let env = Env::start_with(cfg, |s| s.trusted_proxies = vec!["10.0.0.0/8".into()]).await;
    put(&env.client(), &b, "k", b"v").await; // 1 of the 2 for 127.0.0.1
    env.send_signed(get_from(&b, "k", "203.0.113.1"))
        .await
        .assert_status(200);
    assert_slow_down(
        &env.send_signed(get_from(&b, "k", "203.0.113.2")).await,
        "X-Forwarded-For from a peer that is not a trusted proxy",
    );
}

/// Opens a PUT that announces `len` bytes and sends only `sent` of them.
async fn stalled_put(env: &Env, path: &str, len: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(env.addr).await.unwrap();
    s.write_all(&env.signed_head("PUT", path, len))
        .await
        .unwrap();
    s.write_all(&vec![b'x'; sent]).await.unwrap();
    s
}

/// Reads one response from a connection (60 s at most).
async fn response(s: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        read_response(s, &mut buf, false, true),
    )
    .await
    .expect("an answer")
    .expect("a response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_and_buffered_bytes_are_capped() {
    let b = unique_bucket("inflight");
    let mut cfg = config_with(&[&b]);
    cfg.limits.max_in_flight_requests = 2;
    let env = Env::start(cfg.clone()).await;
    put(&env.client(), &b, "k", b"v").await;
    let before = env.obj_streams().await;

    let mut held = vec![
        stalled_put(&env, &format!("/{b}/held-1"), 1000, 10).await,
        stalled_put(&env, &format!("/{b}/held-2"), 1000, 10).await,
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_slow_down(
        &env.send_signed(RawRequest::new("GET", &format!("/{b}/k")))
            .await,
        "a third request while two are in flight",
    );
    // Finishing one frees its place.
    held[0].write_all(&[b'x'; 990]).await.unwrap();
    response(&mut held[0]).await.assert_status(200);
    env.send_signed(RawRequest::new("GET", &format!("/{b}/k")))
        .await
        .assert_status(200);
    drop(held);

    // Body memory: a PUT reserves up to the write window (about 4 MiB), a GET the read
    // window (1 MiB); 6 MiB admits one of each but not a second PUT.
    let mut cfg = cfg.clone();
    cfg.generation = 2;
    cfg.limits.max_in_flight_requests = 0;
    cfg.limits.max_buffered_bytes = 6 * MIB as u64;
    env.gw().set_config(cfg).expect("valid");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut big = stalled_put(&env, &format!("/{b}/big"), 10 * MIB, 1000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.send_signed(RawRequest::new("GET", &format!("/{b}/k")))
        .await
        .assert_status(200);
    let mut second = stalled_put(&env, &format!("/{b}/second"), 10 * MIB, 0).await;
    let r = response(&mut second).await;
    assert_slow_down(&r, "a second large upload over the byte budget");
    // A small PUT reserves only its length.
    env.send_signed(RawRequest::new("PUT", &format!("/{b}/small")).body("tiny"))
        .await
        .assert_status(200);
    assert!(env
        .metric("jets3_requests_throttled_total{limit=\"buffered_bytes\"}")
        .await
        .is_some_and(|v| v >= 1.0));
    big.shutdown().await.unwrap();
    drop(big);
    // What stays: held-1 and small (a chunk and a metadata message each); the cut-off
    // uploads leave no chunk behind.
    let name = format!("OBJ_{b}");
    let want = before[&name].0 + 4;
    let settled = eventually(8, || async { env.obj_streams().await[&name].0 == want }).await;
    assert!(
        settled,
        "messages in {name}: {:?}, want {want}",
        env.obj_streams().await
    );
    let mut keys = list_all_keys(&env.client(), &b).await;
    keys.sort();
    assert_eq!(keys, vec!["held-1", "k", "small"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let b = unique_bucket("slow");
    let mut cfg = config_with(&[&b]);
    cfg.limits.timeouts.header_read_seconds = 1;
    cfg.limits.timeouts.idle_body_seconds = 1;
    cfg.limits.timeouts.request_seconds = 3;
    let env = Env::start(cfg).await;
    let before = env.obj_streams().await;

    // Headers that never end: the connection is closed.
    let mut s = TcpStream::connect(env.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the gateway closes a connection whose headers stall"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "closed after {:?} (header read timeout 1 s)",
        t.elapsed()
    );
    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(env.addr).await.unwrap();
    let mut req =
        RawRequest::new("GET", &format!("/{b}?list-type=2")).header("connection", "keep-alive");
    sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Signed);
    s.write_all(&req.to_bytes(&env.host())).await.unwrap();
    response(&mut s).await.assert_status(200);
    let mut rest = Vec::new();
    let idle = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
    assert!(idle.is_ok(), "an idle keep-alive connection is closed");

    // A body that stops: 400 RequestTimeout, nothing stored.
    let mut s = stalled_put(&env, &format!("/{b}/stalled"), 1000, 10).await;
    let r = response(&mut s).await;
    r.assert_error(400, "RequestTimeout");

    // A body that dribbles (never idle for 1 s) hits the 3 s request timeout.
    let mut s = stalled_put(&env, &format!("/{b}/dribble"), 1000, 1).await;
    let t = Instant::now();
    let dribble = async {
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if s.write_all(b"x").await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(4), dribble).await;
    let r = response(&mut s).await;
    r.assert_error(400, "RequestTimeout");
    assert!(t.elapsed() < Duration::from_secs(20));
    for name in ["request", "idle_body"] {
        assert!(
            env.metric(&format!(
                "jets3_request_timeouts_total{{timeout=\"{name}\"}}"
            ))
            .await
            .is_some_and(|v| v >= 1.0),
            "{name} timeouts are counted"
        );
    }
    env.wait_streams_equal(&before, "cut-off uploads leave nothing")
        .await;
    assert!(list_all_keys(&env.client(), &b).await.is_empty());
}
