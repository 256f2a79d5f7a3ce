//! The keys an S3Credential's Secret holds work on a real jets3 gateway that serves the
//! operator's GatewayConfig (the file `--config-file` writes, as a standalone gateway reads
//! it): on the granted buckets, with the granted permission only, nowhere else; and across a
//! rotation, both keys during the overlap, only the new one after it.

#[path = "k8s/common.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use jets3_gateway::{ConfigFile, GatewayHandle, NatsSettings, ServerSettings};
use kube::api::{Patch, PatchParams};
use serde_json::json;

use common::*;

/// Loads the operator's config file into the gateway, as its file reload does.
fn reload(gw: &GatewayHandle, env: &Env) -> u64 {
    let text = std::fs::read_to_string(&env.operator().config_file).unwrap();
    let file =
        ConfigFile::parse(&text).expect("the operator's file parses as a gateway config file");
    let generation = file.config.generation;
    gw.set_config(file.config)
        .expect("the gateway accepts the operator's config");
    generation
}

/// A standalone gateway on the operator's `--config-file` and the test's NATS, once ready.
async fn start_gateway(env: &Env) -> GatewayHandle {
    let settings = ServerSettings {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        admin_listen: None,
        nats: NatsSettings {
            servers: vec![env.nats.url()],
            ..Default::default()
        },
        shutdown_grace_seconds: 1,
        ..Default::default()
    };
    let text = std::fs::read_to_string(&env.operator().config_file).unwrap();
    let gw = jets3_gateway::start(settings, Some(ConfigFile::parse(&text).unwrap().config))
        .await
        .expect("gateway starts");
    let gateway = gw.gateway();
    eventually("the gateway is ready", || async {
        gateway.ready().await.then_some(())
    })
    .await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_keys_work_on_the_gateway_as_granted_and_rotate_with_overlap() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    for (name, spec) in [
        ("rw-bucket", json!({})),
        ("ro-bucket", json!({})),
        ("other-bucket", json!({})),
        ("tiny-bucket", json!({"maxObjectBytes": 1000})),
    ] {
        env.create_bucket(ns, name, spec).await;
        env.condition(&env.buckets(ns), name, "Ready", "True", None)
            .await;
    }
    env.create_credential(
        ns,
        "app",
        json!({"grants": [
            {"bucket": "rw-bucket", "permission": "read-write"},
            {"bucket": "ro-bucket", "permission": "read"},
            {"bucket": "tiny-bucket", "permission": "write"}],
            "rotation": {"overlap": "5s"}}),
    )
    .await;
    let creds = env.credentials(ns);
    env.condition(&creds, "app", "Ready", "True", None).await;
    let (id, secret) = secret_keys(&env, ns, "app").await;
    env.operator()
        .config_where("the key is in the config", |c| {
            c.credentials.iter().any(|k| k.access_key_id == id)
        })
        .await;

    let gw = start_gateway(&env).await;
    let addr = gw.s3_addr();
    let app = s3(addr, &id, &secret);

    // Seed the read-only bucket through NATS, as a native client would.
    let js = env.nats.js().await;
    js.get_object_store("ro-bucket")
        .await
        .unwrap()
        .put("seed.txt", &mut &b"seeded"[..])
        .await
        .unwrap();

    assert_eq!(put(&app, "rw-bucket", "a.txt", b"written").await, "");
    assert_eq!(get(&app, "rw-bucket", "a.txt").await.unwrap(), b"written");
    assert_eq!(get(&app, "ro-bucket", "seed.txt").await.unwrap(), b"seeded");
    assert_eq!(put(&app, "ro-bucket", "no.txt", b"x").await, "AccessDenied");
    assert_eq!(
        put(&app, "other-bucket", "no.txt", b"x").await,
        "AccessDenied"
    );
    assert_eq!(
        get(&app, "other-bucket", "x").await.unwrap_err(),
        "AccessDenied"
    );
    assert_eq!(put(&app, "tiny-bucket", "small", &[1; 1000]).await, "");
    assert_eq!(
        put(&app, "tiny-bucket", "big", &[1; 1001]).await,
        "EntityTooLarge"
    );
    assert_eq!(
        get(&app, "tiny-bucket", "small").await.unwrap_err(),
        "AccessDenied",
        "write only"
    );
    let stranger = s3(addr, "JETS3NOTAKEY00000000", &secret);
    assert_eq!(
        put(&stranger, "rw-bucket", "b.txt", b"x").await,
        "InvalidAccessKeyId"
    );
    let wrong = s3(addr, &id, "wrong-secret-wrong-secret-wrong-secret-00");
    assert_eq!(
        put(&wrong, "rw-bucket", "b.txt", b"x").await,
        "SignatureDoesNotMatch"
    );

    // Rotate: during the overlap both keys work, afterwards only the new one.
    creds
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"jets3.io/rotate": "now"}}})),
        )
        .await
        .unwrap();
    let (new_id, new_secret) = eventually("the key is rotated", || async {
        Some(secret_keys(&env, ns, "app").await).filter(|(i, _)| *i != id)
    })
    .await;
    env.operator()
        .config_where("both keys are in the config", |c| {
            c.credentials.iter().any(|k| k.access_key_id == new_id)
                && c.credentials.iter().any(|k| k.access_key_id == id)
        })
        .await;
    reload(&gw, &env);
    let fresh = s3(addr, &new_id, &new_secret);
    assert_eq!(put(&fresh, "rw-bucket", "new.txt", b"new key").await, "");
    assert_eq!(
        put(&app, "rw-bucket", "old.txt", b"old key").await,
        "",
        "the old key works during the overlap"
    );
    assert_eq!(
        put(&fresh, "other-bucket", "no.txt", b"x").await,
        "AccessDenied"
    );

    // Past the overlap the gateway refuses the old key by its notAfter, before any reload...
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        put(&app, "rw-bucket", "late.txt", b"x").await,
        "InvalidAccessKeyId"
    );
    // ...and the operator's next config no longer holds it.
    env.operator()
        .config_where("the old key is dropped", |c| {
            !c.credentials.iter().any(|k| k.access_key_id == id)
        })
        .await;
    reload(&gw, &env);
    assert_eq!(
        put(&app, "rw-bucket", "late.txt", b"x").await,
        "InvalidAccessKeyId"
    );
    assert_eq!(
        get(&fresh, "rw-bucket", "old.txt").await.unwrap(),
        b"old key"
    );
    gw.shutdown().await;
}

fn b64u(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// An HS256 token with `claims`, signed with `secret`.
fn hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k1"});
    let msg = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    format!(
        "{msg}.{}",
        b64u(ring::hmac::sign(&key, msg.as_bytes()).as_ref())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_signed_with_the_secrets_key_reads_the_bucket_on_the_gateway() {
    use base64::Engine;
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let secret = [b'z'; 32];
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "jwt-keys"},
        "data": {"hmac": base64::engine::general_purpose::STANDARD.encode(secret)}
    }))
    .unwrap();
    env.secrets(ns)
        .create(&Default::default(), &s)
        .await
        .unwrap();
    env.create_bucket(
        ns,
        "jwt-bucket",
        json!({"jwt": {
            "keys": [{"kid": "k1", "algorithm": "HS256", "secretRef": {"name": "jwt-keys", "key": "hmac"}}],
            "audiences": ["media"], "sources": [{"kind": "query", "name": "access_token"}]},
            "ipFilter": {"allow": ["127.0.0.0/8"]}, "cache": {}}),
    )
    .await;
    env.condition(&env.buckets(ns), "jwt-bucket", "Ready", "True", None)
        .await;
    env.operator()
        .config_where("the bucket is in the config", |c| {
            c.bucket("jwt-bucket").is_some()
        })
        .await;
    let gw = start_gateway(&env).await;
    env.nats
        .js()
        .await
        .get_object_store("jwt-bucket")
        .await
        .unwrap()
        .put("seed.txt", &mut &b"seeded"[..])
        .await
        .unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let url = |token: &str| {
        format!(
            "http://{}/jwt-bucket/seed.txt?access_token={token}",
            gw.s3_addr()
        )
    };
    let good = hs256(&secret, &json!({"sub": "app", "aud": "media", "exp": exp}));
    let (code, body) = http_get(&url(&good)).await.unwrap();
    assert_eq!((code, body.as_str()), (200, "seeded"));
    let forged = hs256(
        &[b'x'; 32],
        &json!({"sub": "app", "aud": "media", "exp": exp}),
    );
    let (code, body) = http_get(&url(&forged)).await.unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("AccessDenied"), "{body}");
    let other_aud = hs256(&secret, &json!({"sub": "app", "aud": "other", "exp": exp}));
    assert_eq!(http_get(&url(&other_aud)).await.unwrap().0, 403);
    let (code, _) = http_get(&format!("http://{}/jwt-bucket/seed.txt", gw.s3_addr()))
        .await
        .unwrap();
    assert_eq!(code, 403, "no token, private bucket");
    gw.shutdown().await;
}
