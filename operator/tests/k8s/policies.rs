//! `S3Bucket.spec.policy` (checked with the gateway's own parser) and
//! `spec.publicAccessBlock` reach the gateway config; `--public-access-block-default` sets
//! the gateway-wide Block Public Access.

use serde_json::json;

use crate::common::*;

fn policy(bucket: &str, action: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": action,
                       "Resource": format!("arn:aws:s3:::{bucket}/public/*")}]
    })
    .to_string()
}

#[tokio::test]
async fn spec_policy_and_public_access_block_reach_the_config() {
    let env = Env::new(1).await;
    let ns = env.ns(0).to_string();
    let good = policy("site", "s3:GetObject");
    env.create_bucket(
        &ns,
        "site",
        json!({"policy": good, "publicAccessBlock": {"blockPublicPolicy": false, "restrictPublicBuckets": false}}),
    )
    .await;
    env.create_bucket(&ns, "broken", json!({"policy": policy("broken", "s3:Fly")}))
        .await;
    let buckets = env.buckets(&ns);
    env.condition(&buckets, "site", "Ready", "True", None).await;
    let broken = env
        .condition(&buckets, "broken", "Served", "False", Some("InvalidConfig"))
        .await;
    let message = condition_of(&broken, "Served").message;
    assert!(
        message.contains("policy") && message.contains("Policy has invalid action: s3:Fly"),
        "{message}"
    );
    let cfg = env
        .operator()
        .config_where("site is in the config", |c| c.bucket("site").is_some())
        .await;
    let site = cfg.bucket("site").unwrap();
    assert_eq!(site.policy.as_deref(), Some(good.as_str()));
    let pab = site.public_access_block.unwrap();
    assert!(pab.block_public_acls && pab.ignore_public_acls);
    assert!(!pab.block_public_policy && !pab.restrict_public_buckets);
    assert!(cfg.bucket("broken").is_none());
    assert!(
        cfg.public_access_block.is_all(),
        "the default blocks everything"
    );

    // Fixed in the spec: served.
    env.patch_spec(
        &buckets,
        "broken",
        json!({"policy": policy("broken", "s3:Get*")}),
    )
    .await;
    env.condition(&buckets, "broken", "Ready", "True", None)
        .await;
    env.operator()
        .config_where("the fixed policy is in the config", |c| {
            c.bucket("broken")
                .and_then(|b| b.policy.as_deref())
                .is_some_and(|p| p.contains("s3:Get*"))
        })
        .await;
}

#[tokio::test]
async fn the_gateway_wide_public_access_block_comes_from_the_flag() {
    let mut env = Env::without_operator(1).await;
    let mut o = env.options();
    o.extra_args = vec![
        r#"--public-access-block-default={"blockPublicAcls": false, "ignorePublicAcls": false}"#
            .into(),
    ];
    env.operator = Some(env.start_operator("operator", &o));
    let ns = env.ns(0).to_string();
    env.create_bucket(&ns, "open", json!({})).await;
    let cfg = env
        .operator()
        .config_where("the bucket is in the config", |c| {
            c.bucket("open").is_some()
        })
        .await;
    let pab = cfg.public_access_block;
    assert!(!pab.block_public_acls && !pab.ignore_public_acls);
    assert!(
        pab.block_public_policy && pab.restrict_public_buckets,
        "left out: true"
    );
}
