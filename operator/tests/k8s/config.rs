//! The published GatewayConfig: generation persisted and stable, restarts, debug endpoints.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::common::*;

async fn state(env: &Env) -> (u64, String) {
    let cm = env
        .configmaps(env.ns(0))
        .get("jets3-config-state")
        .await
        .unwrap();
    let data = cm.data.unwrap();
    assert_eq!(
        data.len(),
        2,
        "the state holds only generation and hash: {data:?}"
    );
    (data["generation"].parse().unwrap(), data["hash"].clone())
}

#[tokio::test]
async fn a_restarted_operator_picks_up_where_it_was() {
    let mut env = Env::new(1).await;
    let ns = env.ns(0).to_string();
    env.create_bucket(&ns, "steady", json!({"maxBytes": 1_000_000}))
        .await;
    env.create_credential(
        &ns,
        "steady-app",
        json!({"grants": [{"bucket": "steady", "permission": "read"}], "rotation": {"interval": "720h"}}),
    )
    .await;
    env.condition(&env.buckets(&ns), "steady", "Ready", "True", None)
        .await;
    env.condition(&env.credentials(&ns), "steady-app", "Ready", "True", None)
        .await;
    // Let the config settle.
    let cfg = env
        .operator()
        .config_where("the credential is in the config", |c| {
            c.credentials.len() == 1 && c.buckets.len() == 1
        })
        .await;
    let (generation, hash) = state(&env).await;
    assert_eq!(generation, cfg.generation);
    assert_eq!(hash, cfg.content_hash());
    let secret = env.secrets(&ns).get("steady-app").await.unwrap();
    let created = env.nats.bucket("steady").await.unwrap().created;

    let code = env.operator.as_mut().unwrap().terminate().await;
    assert!(code.success(), "SIGTERM is a clean exit: {code}");
    std::fs::remove_file(&env.operator().config_file).unwrap();
    let o = env.options();
    env.operator = Some(env.start_operator("operator-2", &o));
    let again = eventually("the new operator writes the config", || async {
        env.operator().config()
    })
    .await;
    assert_eq!(
        again.generation, generation,
        "same content, same generation"
    );
    assert_eq!(again, cfg);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = env.secrets(&ns).get("steady-app").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, secret.metadata.resource_version,
        "the Secret is not rewritten"
    );
    assert_eq!(
        env.nats.bucket("steady").await.unwrap().created,
        created,
        "the bucket is not re-created"
    );
    let generated = env
        .events(&ns, "steady-app")
        .await
        .into_iter()
        .filter(|(_, r, _)| r == "KeyGenerated")
        .count();
    assert_eq!(generated, 1);
    assert_eq!(state(&env).await, (generation, hash));

    // New content gets the next generation.
    env.patch_spec(&env.buckets(&ns), "steady", json!({"readOnly": true}))
        .await;
    let newer = env
        .operator()
        .config_where("readOnly is in the config", |c| {
            c.bucket("steady").is_some_and(|b| b.read_only)
        })
        .await;
    assert_eq!(newer.generation, generation + 1);
    assert_eq!(state(&env).await.0, generation + 1);
}

#[tokio::test]
async fn metrics_probes_and_the_redacted_config_endpoint() {
    let env = Env::new(2).await;
    let (a, b) = (env.ns(0), env.ns(1));
    env.create_bucket(a, "dbg", json!({"bucketName": "debug-me"}))
        .await;
    env.condition(&env.buckets(a), "dbg", "Ready", "True", None)
        .await;
    env.create_bucket(b, "dbg", json!({"bucketName": "debug-me"}))
        .await;
    env.create_credential(
        a,
        "dbg-app",
        json!({"grants": [{"bucket": "dbg", "permission": "read"}]}),
    )
    .await;
    env.condition(&env.credentials(a), "dbg-app", "Ready", "True", None)
        .await;
    env.condition(
        &env.buckets(b),
        "dbg",
        "Ready",
        "False",
        Some("NameConflict"),
    )
    .await;
    let secret = secret_value(
        &env.secrets(a).get("dbg-app").await.unwrap(),
        "AWS_SECRET_ACCESS_KEY",
    )
    .unwrap();

    let o = env.operator();
    assert_eq!(o.get("/healthz").await.unwrap(), (200, "ok".to_string()));
    assert_eq!(o.get("/readyz").await.unwrap(), (200, "ok".to_string()));
    let (code, body) = eventually("/config lists the conflict", || async {
        let (code, body) = o.debug_config().await?;
        body.contains("NameConflict").then_some((code, body))
    })
    .await;
    assert_eq!(code, 200);
    assert!(!body.contains(&secret), "/config must not show secrets");
    let v: Value = serde_json::from_str(&body).unwrap();
    let file = o.config().unwrap();
    assert_eq!(v["generation"], file.generation);
    assert_eq!(v["hash"], file.content_hash());
    assert_eq!(
        v["config"]["credentials"][0]["secretAccessKey"],
        "<redacted>"
    );
    assert_eq!(v["config"]["buckets"][0]["name"], "debug-me");
    assert_eq!(v["excluded"][0]["object"], format!("{b}/dbg"));

    // The NATS gauge is sampled once a second.
    let metrics = eventually("jets3_operator_nats_connected 1", || async {
        let (_, metrics) = o.get("/metrics").await?;
        (metric(&metrics, "jets3_operator_nats_connected").as_deref() == Some("1"))
            .then_some(metrics)
    })
    .await;
    for (sample, value) in [
        (
            "jets3_operator_managed_objects{kind=\"S3Bucket\"}",
            "2".to_string(),
        ),
        (
            "jets3_operator_managed_objects{kind=\"S3Credential\"}",
            "1".to_string(),
        ),
        (
            "jets3_operator_config_excluded{kind=\"S3Bucket\"}",
            "1".to_string(),
        ),
        (
            "jets3_operator_config_generation",
            file.generation.to_string(),
        ),
        ("jets3_operator_leader", "1".to_string()),
        ("jets3_operator_nats_connected", "1".to_string()),
    ] {
        assert_eq!(
            metric(&metrics, sample),
            Some(value),
            "{sample} in\n{metrics}"
        );
    }
    assert!(metrics.contains("jets3_operator_reconciliations_total{kind=\"S3Bucket\"}"));
    assert!(
        metrics.contains("jets3_operator_reconcile_duration_seconds_bucket{kind=\"S3Credential\"")
    );
}

#[tokio::test]
async fn resources_outside_the_watched_namespaces_are_left_alone() {
    let env = Env::new(1).await;
    let other = unique("t");
    create_namespace(&env.client, &other).await;
    env.create_bucket(&other, "unwatched", json!({})).await;
    env.create_bucket(env.ns(0), "watched", json!({})).await;
    env.condition(&env.buckets(env.ns(0)), "watched", "Ready", "True", None)
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = env.buckets(&other).get("unwatched").await.unwrap();
    assert!(b.status.is_none() && b.metadata.finalizers.is_none());
    assert!(env.nats.bucket("unwatched").await.is_none());
}

/// The chart creates the state ConfigMap (so its RBAC can name it) and `helm upgrade` applies it
/// again server-side: the operator writes only the data, so the chart's labels stay the chart's
/// and an upgrade never conflicts with the operator.
#[tokio::test]
async fn the_state_configmap_stays_the_charts_across_operator_writes_and_upgrades() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.configmaps(ns);
    let chart = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "jets3-config-state",
            "labels": {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "jets3"},
        },
    });
    let helm = PatchParams::apply("helm");
    let cm = eventually("the operator wrote its state", || async {
        api.get_opt("jets3-config-state").await.unwrap()
    })
    .await;
    assert!(cm.data.is_some_and(|d| d.contains_key("generation")));
    // helm install owned it first; force stands for that here.
    api.patch(
        "jets3-config-state",
        &helm.clone().force(),
        &Patch::Apply(&chart),
    )
    .await
    .unwrap();
    let (before, _) = state(&env).await;
    env.create_bucket(ns, "moves-the-generation", json!({}))
        .await;
    let after = eventually("the operator wrote a new generation", || async {
        let (g, _) = state(&env).await;
        (g > before).then_some(g)
    })
    .await;
    // helm upgrade: the same apply, without force.
    let cm = api
        .patch("jets3-config-state", &helm, &Patch::Apply(&chart))
        .await
        .unwrap_or_else(|e| panic!("helm upgrade's apply conflicts with the operator: {e}"));
    assert_eq!(cm.labels()["app.kubernetes.io/managed-by"], "Helm");
    assert_eq!(
        state(&env).await.0,
        after,
        "the apply left the operator's data alone"
    );
}
