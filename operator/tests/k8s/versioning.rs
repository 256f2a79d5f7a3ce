//! `S3Bucket.spec.versioning` reaches the gateway config (the schema's refusals are in
//! `schema.rs`).

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn spec_versioning_reaches_the_config() {
    let env = Env::new(1).await;
    let ns = env.ns(0).to_string();
    env.create_bucket(&ns, "kept", json!({"versioning": "Enabled"}))
        .await;
    env.create_bucket(&ns, "paused", json!({"versioning": "Suspended"}))
        .await;
    env.create_bucket(&ns, "plain", json!({})).await;
    let buckets = env.buckets(&ns);
    for b in ["kept", "paused", "plain"] {
        env.condition(&buckets, b, "Ready", "True", None).await;
    }
    let cfg = env
        .operator()
        .config_where("every bucket is in the config", |c| {
            ["kept", "paused", "plain"]
                .iter()
                .all(|b| c.bucket(b).is_some())
        })
        .await;
    use jets3_crds::VersioningStatus::*;
    assert_eq!(cfg.bucket("kept").and_then(|b| b.versioning), Some(Enabled));
    assert_eq!(
        cfg.bucket("paused").and_then(|b| b.versioning),
        Some(Suspended)
    );
    assert_eq!(cfg.bucket("plain").and_then(|b| b.versioning), None);
}
