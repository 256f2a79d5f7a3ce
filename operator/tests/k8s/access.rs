//! An S3Bucket's access fields (JWT with a key from a Secret, ipFilter, cache, rateLimit)
//! in the published GatewayConfig; a Secret change reaches it, a missing Secret leaves only
//! that bucket out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::*;

/// Creates (or replaces the data of) Secret `name` holding `data`.
pub async fn put_secret(env: &Env, ns: &str, name: &str, key: &str, value: &[u8]) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name}, "data": {key: STANDARD.encode(value)}
    }))
    .unwrap();
    let api = env.secrets(ns);
    if api.get_opt(name).await.unwrap().is_some() {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&secret))
            .await
            .unwrap();
    } else {
        api.create(&PostParams::default(), &secret).await.unwrap();
    }
}

fn guarded_spec(secret: &str) -> serde_json::Value {
    json!({
        "jwt": {
            "keys": [{"kid": "k1", "algorithm": "HS256", "secretRef": {"name": secret, "key": "hmac"}}],
            "issuer": "https://idp.test", "audiences": ["media"],
            "claims": [{"claim": "roles", "op": "contains", "value": "reader"}],
            "sources": [{"kind": "bearer"}, {"kind": "query", "name": "access_token"}]
        },
        "ipFilter": {"allow": ["10.0.0.0/8", "127.0.0.1"], "deny": ["10.9.0.0/16"]},
        "cache": {"maxObjectBytes": 65536},
        "rateLimit": {"requestsPerSecond": 50, "burst": 100}
    })
}

#[tokio::test]
async fn access_fields_and_jwt_secret_keys_reach_the_config() {
    let env = Env::new(1).await;
    let ns = env.ns(0).to_string();
    let first = [b'a'; 32];
    put_secret(&env, &ns, "jwt-keys", "hmac", &first).await;
    env.create_bucket(&ns, "guarded", guarded_spec("jwt-keys"))
        .await;
    env.create_bucket(&ns, "nokey", guarded_spec("jwt-missing"))
        .await;
    env.create_bucket(&ns, "plain", json!({})).await;
    let buckets = env.buckets(&ns);
    env.condition(&buckets, "guarded", "Ready", "True", None)
        .await;
    env.condition(&buckets, "plain", "Ready", "True", None)
        .await;
    let nokey = env
        .condition(&buckets, "nokey", "Served", "False", Some("JwtKeyNotFound"))
        .await;
    let served = condition_of(&nokey, "Served");
    assert!(
        served.message.contains("Secret jwt-missing does not exist"),
        "{}",
        served.message
    );
    let note = env.event(&ns, "nokey", "JwtKeyNotFound").await;
    assert!(note.contains("jwt-missing"), "{note}");

    let want = STANDARD.encode(first);
    let cfg = env
        .operator()
        .config_where("the guarded bucket has its key", |c| {
            c.bucket("guarded")
                .and_then(|b| b.jwt.as_ref())
                .is_some_and(|j| {
                    j.keys.len() == 1 && j.keys[0].secret_base64.as_deref() == Some(want.as_str())
                })
        })
        .await;
    assert!(
        cfg.bucket("nokey").is_none(),
        "only the bucket without its key is out"
    );
    assert!(cfg.bucket("plain").is_some());
    let g = cfg.bucket("guarded").unwrap();
    let j = g.jwt.as_ref().unwrap();
    assert_eq!(j.issuer.as_deref(), Some("https://idp.test"));
    assert_eq!(j.audiences, ["media"]);
    assert_eq!(j.keys[0].kid.as_deref(), Some("k1"));
    assert_eq!(j.sources.len(), 2);
    assert_eq!(j.claims[0].value, json!("reader"));
    let f = g.ip_filter.as_ref().unwrap();
    assert_eq!(
        (f.allow.len(), f.deny.as_slice()),
        (2, &["10.9.0.0/16".to_string()][..])
    );
    assert_eq!(g.cache.unwrap().max_object_bytes, 65536);
    assert!(g.cache.unwrap().enabled);
    let r = g.rate_limit.unwrap();
    assert_eq!((r.requests_per_second, r.burst), (50.0, Some(100)));

    // The debug endpoint is on its own loopback listener, not next to the metrics, and
    // shows no key material: HMAC keys, public key PEMs (a publicKeyRef could name any key
    // of a Secret, a tls.key too) and secret access keys are redacted.
    let pem = rcgen::KeyPair::generate().unwrap().public_key_pem();
    put_secret(&env, &ns, "jwt-pem", "key.pem", pem.as_bytes()).await;
    env.create_bucket(
        &ns,
        "pem",
        json!({"jwt": {"keys": [{"algorithm": "ES256",
            "publicKeyRef": {"name": "jwt-pem", "key": "key.pem"}}]}}),
    )
    .await;
    env.create_credential(
        &ns,
        "reader",
        json!({"grants": [{"bucket": "plain", "permission": "read"}]}),
    )
    .await;
    env.condition(&buckets, "pem", "Ready", "True", None).await;
    env.condition(
        &env.credentials(&ns),
        "reader",
        "SecretWritten",
        "True",
        None,
    )
    .await;
    let (_, secret) = secret_keys(&env, &ns, "reader").await;
    let (code, _) = env.operator().get("/config").await.unwrap();
    assert_eq!(code, 404, "no /config on the metrics listener");
    let body = eventually(
        "the debug /config has the PEM bucket and the key",
        || async {
            let (code, body) = env.operator().debug_config().await?;
            (code == 200 && body.contains("\"pem\"") && body.contains("\"secretAccessKey\""))
                .then_some(body)
        },
    )
    .await;
    let pem_body = pem.lines().nth(1).unwrap();
    for (what, value) in [
        ("HMAC key", want.as_str()),
        ("public key PEM", pem_body),
        ("secret key", &secret),
    ] {
        assert!(!body.contains(value), "the {what} is redacted: {body}");
    }
    assert!(body.contains("<redacted>"));

    // A new key in the Secret reaches the config.
    let second = [b'b'; 32];
    put_secret(&env, &ns, "jwt-keys", "hmac", &second).await;
    let want = STANDARD.encode(second);
    env.operator()
        .config_where("the new key is in the config", |c| {
            c.bucket("guarded")
                .and_then(|b| b.jwt.as_ref())
                .is_some_and(|j| j.keys[0].secret_base64.as_deref() == Some(want.as_str()))
        })
        .await;

    // A key too short for HS256 is refused by the shared validation, for that bucket only.
    put_secret(&env, &ns, "jwt-missing", "hmac", b"short").await;
    env.condition(&buckets, "nokey", "Served", "False", Some("InvalidConfig"))
        .await;
    // The Secret fixed: the bucket is served.
    put_secret(&env, &ns, "jwt-missing", "hmac", &[b'c'; 48]).await;
    env.condition(&buckets, "nokey", "Ready", "True", None)
        .await;
    env.operator()
        .config_where("both guarded buckets are in the config", |c| {
            c.bucket("nokey").is_some() && c.bucket("guarded").is_some()
        })
        .await;
}

#[tokio::test]
async fn gateway_wide_limits_from_the_flags_are_in_the_config_and_bad_ones_stop_the_operator() {
    let mut env = Env::without_operator(1).await;
    let mut o = env.options();
    o.extra_args = vec!["--gateway-limits=rateLimits: {global: {requestsPerSecond: 0}}".into()];
    let mut bad = env.start_operator("bad-limits", &o);
    assert!(!bad.exited().await.success());
    let log = bad.log_text();
    assert!(
        log.contains("limits.rateLimits.global.requestsPerSecond"),
        "{log}"
    );

    o.extra_args = vec![
        r#"--gateway-limits={"rateLimits": {"perClientIp": {"requestsPerSecond": 20, "burst": 40}}, "timeouts": {"requestSeconds": 120}, "circuitBreaker": {"failureThreshold": 2, "cooldownSeconds": 3}}"#.into(),
        "--audit-reads=false".into(),
    ];
    env.operator = Some(env.start_operator("operator", &o));
    let ns = env.ns(0).to_string();
    env.create_bucket(&ns, "limited", json!({})).await;
    let cfg = env
        .operator()
        .config_where("the bucket is in the config", |c| {
            c.bucket("limited").is_some()
        })
        .await;
    let ip = cfg.limits.rate_limits.per_client_ip.unwrap();
    assert_eq!((ip.requests_per_second, ip.burst), (20.0, Some(40)));
    assert_eq!(cfg.limits.timeouts.request_seconds, 120);
    assert_eq!(cfg.limits.timeouts.header_read_seconds, 30, "default kept");
    assert_eq!(cfg.limits.circuit_breaker.failure_threshold, 2);
    assert!(!cfg.audit.reads);
}
