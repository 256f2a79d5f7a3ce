//! The object cache: hits for hot small objects (also conditional and ranged GETs), kept
//! coherent across two gateways on one nats-server (overwrite through the other gateway,
//! a native NATS write, a delete), read-after-write through the same gateway, a fill that
//! an invalidation overtakes, a flush after a gap in the watch, and the purge endpoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jets3_crds::{BucketCache, GatewayConfig};
use jets3_gateway::GatewayHandle;

use crate::common::*;

const TOKEN: &str = "purge-token-0001";

fn cached_config(b: &str) -> GatewayConfig {
    let mut cfg = config_with(&[b]);
    cfg.buckets[0].cache = Some(BucketCache {
        enabled: true,
        max_object_bytes: 64 * 1024,
    });
    cfg
}

/// A second gateway on the same nats-server, ready.
async fn second_gateway(env: &Env) -> GatewayHandle {
    let gw = jets3_gateway::start(settings_for(&env.nats.url()), Some(env.config.clone()))
        .await
        .expect("second gateway");
    let admin = gw.admin_addr().unwrap();
    let ready = eventually(15, || async {
        let req = RawRequest::new("GET", "/readyz");
        send_raw(admin, &req.to_bytes(&admin.to_string()))
            .await
            .status
            == 200
    })
    .await;
    assert!(ready, "the second gateway gets ready");
    gw
}

async fn get_at(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = RawRequest::new("GET", path);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let host = addr.to_string();
    sign_request(&mut req, &host, &Signer::admin(), Payload::Signed);
    send_raw(addr, &req.to_bytes(&host)).await
}

async fn metric_at(admin: SocketAddr, line: &str) -> f64 {
    let req = RawRequest::new("GET", "/metrics");
    let text = send_raw(admin, &req.to_bytes(&admin.to_string()))
        .await
        .text();
    text.lines()
        .find(|l| l.starts_with(line) && l[line.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

const HIT: &str = "jets3_cache_requests_total{result=\"hit\"}";

/// Polls GET on `addr` until the body is `want` (or 404 when `want` is None); returns
/// how long that took.
async fn converges(addr: SocketAddr, path: &str, want: Option<&[u8]>) -> Duration {
    let t = Instant::now();
    loop {
        let r = get_at(addr, path, &[]).await;
        let done = match want {
            Some(w) => r.status == 200 && r.body == w,
            None => r.status == 404,
        };
        if done {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{path} on {addr} still answers {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// GETs until the bucket's watch is live and the object is served from the cache.
async fn warm(addr: SocketAddr, admin: SocketAddr, path: &str) {
    let ok = eventually(10, || async {
        let before = metric_at(admin, HIT).await;
        get_at(addr, path, &[]).await.assert_status(200);
        metric_at(admin, HIT).await > before
    })
    .await;
    assert!(ok, "{path} is served from the cache of {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherent_across_gateways() {
    let b = unique_bucket("cached");
    let env = Env::start(cached_config(&b)).await;
    let other = second_gateway(&env).await;
    let (a, a_admin) = (env.addr, env.admin.unwrap());
    let (g, g_admin) = (other.s3_addr(), other.admin_addr().unwrap());
    let path = format!("/{b}/hot.txt");
    put(&env.client(), &b, "hot.txt", b"version 1").await;
    warm(g, g_admin, &path).await;
    warm(a, a_admin, &path).await;

    // Conditional and ranged GETs are answered from the cached copy too.
    let hits = metric_at(g_admin, HIT).await;
    let etag = etag_of(b"version 1");
    let r = get_at(g, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, 304);
    let r = get_at(g, &path, &[("if-match", "\"nope\"")]).await;
    r.assert_error(412, "PreconditionFailed");
    let r = get_at(g, &path, &[("range", "bytes=2-6")]).await;
    assert_eq!((r.status, r.body.as_slice()), (206, &b"rsion"[..]));
    assert_eq!(r.header("content-range"), Some("bytes 2-6/9"));
    assert_eq!(metric_at(g_admin, HIT).await, hits + 3.0);

    // An overwrite through gateway A reaches gateway B's cache.
    put(&env.client(), &b, "hot.txt", b"version 2 via A").await;
    let took = converges(g, &path, Some(b"version 2 via A")).await;
    println!("overwrite through the other gateway seen after {took:?}");
    warm(g, g_admin, &path).await;
    // A native NATS client writes.
    let store = env
        .js()
        .await
        .get_object_store(&b)
        .await
        .expect("object store");
    let mut r: &[u8] = b"version 3 native";
    store.put("hot.txt", &mut r).await.expect("native put");
    let took = converges(g, &path, Some(b"version 3 native")).await;
    println!("native write seen after {took:?}");
    warm(g, g_admin, &path).await;
    // A delete through A.
    ok(
        env.client()
            .delete_object()
            .bucket(&b)
            .key("hot.txt")
            .send()
            .await,
        "DeleteObject",
    );
    let took = converges(g, &path, None).await;
    println!("delete seen after {took:?}");

    // Read-after-write through the cached gateway itself: never the old version.
    let s3_g = s3_client(ClientOpts {
        endpoint: format!("http://{g}"),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        ..Default::default()
    });
    for i in 0..20 {
        let body = format!("round {i}");
        put(&s3_g, &b, "raw.txt", body.as_bytes()).await;
        let got = get_at(g, &format!("/{b}/raw.txt"), &[]).await;
        assert_eq!(got.body, body.as_bytes(), "read after write, round {i}");
    }
    // Objects over the bucket's limit are not cached.
    let big = data(100_000, 7);
    put(&env.client(), &b, "big.bin", &big).await;
    let entries = metric_at(g_admin, "jets3_cache_entries").await;
    for _ in 0..3 {
        assert!(get_at(g, &format!("/{b}/big.bin"), &[]).await.body == big);
    }
    assert_eq!(metric_at(g_admin, "jets3_cache_entries").await, entries);
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_overtaken_by_a_change_is_dropped() {
    let b = unique_bucket("cache-race");
    let env = Env::start(cached_config(&b)).await;
    put(&env.client(), &b, "k", b"old").await;
    let gw = env.gw().gateway();
    let nats = b.as_str();
    // The watch starts on first use; wait until fills are accepted.
    let live = eventually(5, || async {
        gw.cache.begin_fill(nats, "k", 1024).is_some()
    })
    .await;
    assert!(live, "the bucket's watch goes live");
    let old = gw.store.bucket(nats).head("k").await.unwrap().unwrap();

    // Control: an undisturbed fill is served afterwards.
    let fill = gw.cache.begin_fill(nats, "k", 1024).unwrap();
    fill.finish(old.clone(), bytes::Bytes::from_static(b"old"));
    assert!(
        gw.cache.lookup(nats, "k").is_some(),
        "an undisturbed fill is kept"
    );

    // The race: a fill starts with the old version, a native write lands meanwhile.
    gw.cache.purge(Some(nats), None, None);
    let fill = gw.cache.begin_fill(nats, "k", 1024).unwrap();
    let store = env.js().await.get_object_store(&b).await.unwrap();
    let mut r: &[u8] = b"new";
    store.put("k", &mut r).await.unwrap();
    // Give the watch time to see the write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    fill.finish(old, bytes::Bytes::from_static(b"old"));
    assert!(
        gw.cache.lookup(nats, "k").is_none(),
        "a fill overtaken by a change is not stored"
    );
    assert_eq!(get_bytes(&env.client(), &b, "k").await, b"new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_watch_flushes() {
    let b = unique_bucket("cache-gap");
    let mut cfg = cached_config(&b);
    cfg.limits.circuit_breaker.failure_threshold = 0;
    let mut env = Env::start(cfg).await;
    let path = format!("/{b}/k");
    put(&env.client(), &b, "k", b"before the gap").await;
    warm(env.addr, env.admin.unwrap(), &path).await;

    // NATS goes down and comes back; a native client writes before the gateway is back.
    env.nats.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.nats.restart().await;
    let store = env.js().await.get_object_store(&b).await.unwrap();
    let mut r: &[u8] = b"written during the gap";
    store.put("k", &mut r).await.unwrap();
    let back = eventually(30, || async {
        env.metric("jets3_nats_connected").await == Some(1.0)
    })
    .await;
    assert!(back, "the gateway reconnects");
    let took = converges(env.addr, &path, Some(b"written during the gap")).await;
    println!("served fresh {took:?} after the restart");
    // And it is cached again afterwards.
    warm(env.addr, env.admin.unwrap(), &path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_endpoint_needs_the_admin_token() {
    let b = unique_bucket("cache-purge");
    let env = Env::start_with(cached_config(&b), |s| s.admin_token = Some(TOKEN.into())).await;
    let admin = env.admin.unwrap();
    for k in ["img/a", "img/b", "doc/c"] {
        put(&env.client(), &b, k, k.as_bytes()).await;
        warm(env.addr, admin, &format!("/{b}/{k}")).await;
    }
    let entries = || metric_at(admin, "jets3_cache_entries");
    assert_eq!(entries().await, 3.0);
    let purge = |query: String, token: Option<&str>| {
        let mut req = RawRequest::new("POST", &format!("/cache/purge{query}"));
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        async move { send_raw(admin, &req.to_bytes(&admin.to_string())).await }
    };
    assert_eq!(purge(format!("?bucket={b}"), None).await.status, 401);
    assert_eq!(
        purge(format!("?bucket={b}"), Some("wrong")).await.status,
        401
    );
    assert_eq!(entries().await, 3.0, "refused purges change nothing");
    let r = purge(format!("?bucket={b}&key=doc/c"), Some(TOKEN)).await;
    assert_eq!((r.status, r.text().trim()), (200, "{\"purged\":1}"));
    let r = purge(format!("?bucket={b}&prefix=img/"), Some(TOKEN)).await;
    assert_eq!(r.text().trim(), "{\"purged\":2}");
    assert_eq!(entries().await, 0.0);
    warm(env.addr, admin, &format!("/{b}/img/a")).await;
    let r = purge(String::new(), Some(TOKEN)).await;
    assert_eq!(r.text().trim(), "{\"purged\":1}", "no bucket: everything");
    assert_eq!(
        purge("?bucket=Bad_Name".into(), Some(TOKEN)).await.status,
        400
    );

    // Without a token configured the endpoint is off.
    let plain = Env::start(cached_config(&unique_bucket("cache-nopurge"))).await;
    let a = plain.admin.unwrap();
    let req = RawRequest::new("POST", "/cache/purge").header("authorization", "Bearer x");
    assert_eq!(send_raw(a, &req.to_bytes(&a.to_string())).await.status, 404);
}
