//! Config reload through the in-process API (valid and invalid), start-up validation, the
//! admin endpoints and shutdown.

use std::time::Duration;

use jets3_crds::{Access, Permission};

use crate::common::*;

const NEW_AK: &str = "AKIANEWKEY0000001";
const NEW_SK: &str = "new-key-secret-0001";

async fn lists_ok(env: &Env, ak: &str, sk: &str, b: &str) -> Result<(), (u16, String)> {
    match env
        .client_for(ak, sk)
        .list_objects_v2()
        .bucket(b)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(sdk_err::<(), _>(Err(e))),
    }
}

/// After a secret is rotated, requests signed with the old one are refused at once, and the new
/// one signs (the signing keys the gateway keeps are per secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_the_only_one_that_signs() {
    let b = unique_bucket("rotate");
    let env = Env::with_buckets(&[&b]).await;
    let mut cfg = env.config.clone();
    set_new_key(&env, &mut cfg, NEW_SK, &b).await;
    const ROTATED: &str = "new-key-secret-0002";
    set_new_key(&env, &mut cfg, ROTATED, &b).await;
    assert_eq!(
        lists_ok(&env, NEW_AK, NEW_SK, &b).await,
        Err((403, "SignatureDoesNotMatch".into())),
        "the old secret no longer signs"
    );
}

/// Gives `NEW_AK` (added or replaced) `secret` and read-write access to `b` in a new
/// generation of `cfg`, and waits until it signs.
async fn set_new_key(env: &Env, cfg: &mut jets3_crds::GatewayConfig, secret: &str, b: &str) {
    cfg.generation += 1;
    cfg.credentials.retain(|c| c.access_key_id != NEW_AK);
    cfg.credentials
        .push(credential(NEW_AK, secret, &[(b, Permission::ReadWrite)]));
    env.gw()
        .set_config(cfg.clone())
        .expect("a valid config is accepted");
    let works = eventually(3, || async {
        lists_ok(env, NEW_AK, secret, b).await.is_ok()
    })
    .await;
    assert!(works, "the credential signs after the reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_credentials() {
    let b = unique_bucket("reload");
    let env = Env::with_buckets(&[&b]).await;
    assert_eq!(
        lists_ok(&env, NEW_AK, NEW_SK, &b).await,
        Err((403, "InvalidAccessKeyId".into()))
    );

    let mut cfg = env.config.clone();
    set_new_key(&env, &mut cfg, NEW_SK, &b).await;
    put(&env.client_for(NEW_AK, NEW_SK), &b, "k", b"by new key").await;
    lists_ok(&env, ADMIN_AK, ADMIN_SK, &b)
        .await
        .expect("the admin key still works");

    // Remove it again.
    cfg.generation += 1;
    cfg.credentials.retain(|c| c.access_key_id != NEW_AK);
    env.gw().set_config(cfg).expect("valid");
    let gone = eventually(3, || async {
        lists_ok(&env, NEW_AK, NEW_SK, &b).await == Err((403, "InvalidAccessKeyId".into()))
    })
    .await;
    assert!(gone, "a removed credential is refused");
    assert_eq!(get_bytes(&env.client(), &b, "k").await, b"by new key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_invalid_config_and_keeps_the_old_one() {
    let b = unique_bucket("invalid");
    let env = Env::with_buckets(&[&b]).await;
    let mut bad = env.config.clone();
    bad.generation = 5;
    bad.region = "NOT A REGION".into();
    bad.credentials
        .push(credential(NEW_AK, NEW_SK, &[(&b, Permission::Admin)]));
    bad.credentials
        .push(credential(NEW_AK, "duplicate-key-1", &[]));
    let err = env.gw().set_config(bad);
    assert!(err.is_err(), "an invalid config is refused");
    let msg = format!("{:?}", err.err().unwrap());
    assert!(
        msg.contains("region") && msg.contains("accessKeyId"),
        "the error lists every problem with its field path: {msg}"
    );
    // The old config keeps serving, and nothing from the refused one leaked in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&env.client(), &b, "still", b"working").await;
    assert_eq!(
        lists_ok(&env, NEW_AK, NEW_SK, &b).await,
        Err((403, "InvalidAccessKeyId".into()))
    );
    // The region is unchanged: us-east-1 signatures pass.
    assert_eq!(get_bytes(&env.client(), &b, "still").await, b"working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_bucket_access_and_region() {
    let b = unique_bucket("access");
    let env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "k", b"soon public").await;
    let (status, _) = sdk_err(
        env.anon_client()
            .get_object()
            .bucket(&b)
            .key("k")
            .send()
            .await,
    );
    assert_eq!(status, 403);

    let mut cfg = env.config.clone();
    cfg.generation = 2;
    cfg.buckets[0].access = Access::PublicRead;
    env.gw().set_config(cfg.clone()).expect("valid");
    let public = eventually(3, || async {
        env.send(RawRequest::new("GET", &format!("/{b}/k")))
            .await
            .status
            == 200
    })
    .await;
    assert!(public, "anonymous GET works once the bucket is public-read");
    assert_eq!(get_bytes(&env.anon_client(), &b, "k").await, b"soon public");

    cfg.generation = 3;
    cfg.buckets[0].read_only = true;
    cfg.region = "eu-north-1".into();
    env.gw().set_config(cfg).expect("valid");
    let eu = s3_client(ClientOpts {
        endpoint: env.endpoint(),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        region: "eu-north-1".into(),
        ..Default::default()
    });
    let switched = eventually(3, || async {
        eu.list_objects_v2().bucket(&b).send().await.is_ok()
    })
    .await;
    assert!(switched, "signatures for the new region pass");
    assert_eq!(
        sdk_err(env.client().list_objects_v2().bucket(&b).send().await),
        (400, "AuthorizationHeaderMalformed".into()),
        "the old region is now wrong"
    );
    assert_eq!(
        sdk_err(
            eu.put_object()
                .bucket(&b)
                .key("x")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        (403, "AccessDenied".into()),
        "read-only after reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_with_invalid_config_fails() {
    let nats = NatsServer::start().await;
    let mut cfg = config_with(&["Bad_Bucket_Name"]);
    cfg.credentials.push(credential("x", "short", &[]));
    let r = jets3_gateway::start(settings_for(&nats.url()), Some(cfg)).await;
    match r {
        Ok(_) => panic!("an invalid config must not start"),
        Err(e) => {
            let msg = format!("{e:?}");
            assert!(
                msg.contains("buckets[0]") && msg.contains("credentials[1]"),
                "every problem with its path: {msg}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let b = unique_bucket("admin");
    let env = Env::with_buckets(&[&b]).await;
    assert_ne!(env.admin, Some(env.addr), "a separate admin listener");
    let h = env.admin_get("/healthz").await;
    h.assert_status(200);
    let r = env.admin_get("/readyz").await;
    r.assert_status(200);

    let s3 = env.client();
    for i in 0..3 {
        put(&s3, &b, &format!("m{i}"), b"metrics").await;
    }
    let _ = s3.get_object().bucket(&b).key("missing").send().await;
    let m = env.admin_get("/metrics").await;
    m.assert_status(200);
    let ct = m.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain"),
        "Prometheus text format, got {ct:?}"
    );
    let text = m.text();
    let norm = |s: &str| s.to_ascii_lowercase().replace(['_', '-'], "");
    // Request counters by operation and status.
    let mut put_200 = 0.0;
    let mut get_404 = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or("");
        if !name.contains("request") || !name.ends_with("_total") {
            continue;
        }
        let labels = norm(series);
        let v: f64 = value.parse().unwrap_or(0.0);
        if labels.contains("putobject") && labels.contains("\"200\"") {
            put_200 += v;
        }
        if labels.contains("getobject") && labels.contains("\"404\"") {
            get_404 += v;
        }
    }
    assert!(
        put_200 >= 3.0,
        "a request counter labelled PutObject / 200 counts 3 requests; metrics:\n{text}"
    );
    assert!(
        get_404 >= 1.0,
        "GetObject / 404 is counted; metrics:\n{text}"
    );
    assert!(
        text.contains("_bucket{") && text.contains("le=\""),
        "a latency histogram is exported"
    );
    let r = env.admin_get("/no-such-endpoint").await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting() {
    let b = unique_bucket("shut");
    let mut env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "k", b"x").await;
    let addr = env.addr;
    let gw = env.gw.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("shutdown within the grace period");
    let refused = eventually(3, || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(refused, "the S3 listener is closed after shutdown");
}

/// With a drain period, SIGTERM's shutdown first keeps serving on every connection, answering
/// `Connection: close` (and `/readyz` 503), so keep-alive clients leave on a response instead
/// of finding their connection closed under a request; then it stops as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_keep_alive_clients_before_it_stops() {
    let b = unique_bucket("drain");
    let mut env = Env::start_with(config_with(&[&b]), |s| s.shutdown_drain_seconds = 2).await;
    let client = env.client();
    put(&client, &b, "k", b"kept").await; // a pooled keep-alive connection
    let addr = env.addr;
    let gw = env.gw.take().unwrap();
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(gw.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The pooled connection still gets answers, and so does a new one.
    let got = client
        .get_object()
        .bucket(&b)
        .key("k")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GET while draining: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        });
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"kept"
    );
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/k")).header("connection", "keep-alive"))
        .await;
    r.assert_status(200);
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    let ready = env.admin_get("/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("draining"), "{}", ready.text());

    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown within drain + grace")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "drained for 2 s"
    );
    let refused = eventually(3, || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(refused, "the S3 listener is closed after the drain");
}
