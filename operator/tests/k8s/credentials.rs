//! S3Credential -> key pair, app Secret, grants in the gateway config, rotation.

use std::collections::BTreeMap;
use std::time::Duration;

use jets3_crds::{GatewayConfig, Permission};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use crate::common::*;

fn grants_of(cfg: &GatewayConfig, id: &str) -> Option<Vec<(String, Permission)>> {
    let c = cfg.credentials.iter().find(|c| c.access_key_id == id)?;
    let mut g: Vec<_> = c
        .grants
        .iter()
        .map(|g| (g.bucket.clone(), g.permission))
        .collect();
    g.sort();
    Some(g)
}

async fn user_secret(env: &Env, ns: &str, name: &str, data: &[(&str, &str)]) {
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    match env.secrets(ns).get_opt(name).await.unwrap() {
        None => {
            env.secrets(ns)
                .create(&PostParams::default(), &s)
                .await
                .unwrap();
        }
        Some(_) => {
            env.secrets(ns)
                .patch(name, &PatchParams::default(), &Patch::Merge(&s))
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_generated_key_lands_in_an_owned_secret_for_envfrom() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    env.create_bucket(ns, "media", json!({"bucketName": "media.example"}))
        .await;
    env.create_bucket(ns, "logs", json!({})).await;
    let cred = env
        .create_credential(
            ns,
            "app",
            json!({"grants": [{"bucket": "media", "permission": "read-write"}]}),
        )
        .await;
    let api = env.credentials(ns);
    let c = env.condition(&api, "app", "Ready", "True", None).await;
    assert_eq!(condition_of(&c, "SecretWritten").status, "True");
    assert_eq!(condition_of(&c, "Served").status, "True");

    let s = env.secrets(ns).get("app").await.unwrap();
    let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_SECRET_ACCESS_KEY",
            "BUCKET_NAME"
        ]
    );
    let id = secret_value(&s, "AWS_ACCESS_KEY_ID").unwrap();
    let secret = secret_value(&s, "AWS_SECRET_ACCESS_KEY").unwrap();
    assert!(id.len() == 20 && id.starts_with("JETS3"), "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{id}"
    );
    assert!(secret.len() == 40 && secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        secret_value(&s, "AWS_ENDPOINT_URL").unwrap(),
        "http://jets3-gateway.test:9000"
    );
    assert_eq!(secret_value(&s, "AWS_REGION").unwrap(), "eu-test-1");
    assert_eq!(secret_value(&s, "BUCKET_NAME").unwrap(), "media.example");
    let owner = &s.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("S3Credential", cred.uid().unwrap().as_str())
    );
    assert_eq!(owner.controller, Some(true));

    let status = c.status.clone().unwrap();
    assert_eq!(status.access_key_id.as_deref(), Some(id.as_str()));
    assert!(status.key_creation_timestamp.is_some());
    assert_eq!(status.secret_name.as_deref(), Some("app"));
    assert_eq!(status.buckets.as_deref(), Some("media"));
    let whole = serde_json::to_string(&c).unwrap();
    assert!(
        !whole.contains(&secret),
        "the status must never hold the secret"
    );

    let cfg = env
        .operator()
        .config_where("the key is in the config", |c| grants_of(c, &id).is_some())
        .await;
    assert_eq!(
        grants_of(&cfg, &id).unwrap(),
        [("media.example".to_string(), Permission::ReadWrite)]
    );
    let entry = cfg
        .credentials
        .iter()
        .find(|c| c.access_key_id == id)
        .unwrap();
    assert_eq!(entry.secret_access_key, secret);
    assert_eq!(
        entry.description.as_deref(),
        Some(format!("{ns}/app").as_str())
    );
    assert!(entry.not_after.is_none());
    assert!(env
        .event(ns, "app", "KeyGenerated")
        .await
        .contains("generated"));

    // Two grants and its own Secret name: no BUCKET_NAME.
    env.create_credential(
        ns,
        "two",
        json!({"secretName": "two-s3", "grants": [
            {"bucket": "media", "permission": "read"}, {"bucket": "logs", "permission": "write"}]}),
    )
    .await;
    env.condition(&api, "two", "Ready", "True", None).await;
    let s2 = env.secrets(ns).get("two-s3").await.unwrap();
    assert!(secret_value(&s2, "BUCKET_NAME").is_none());
    let id2 = secret_value(&s2, "AWS_ACCESS_KEY_ID").unwrap();
    assert_ne!(id2, id);
    let cfg = env
        .operator()
        .config_where("both keys", |c| grants_of(c, &id2).is_some())
        .await;
    assert_eq!(
        grants_of(&cfg, &id2).unwrap(),
        [
            ("logs".to_string(), Permission::Write),
            ("media.example".to_string(), Permission::Read)
        ]
    );
}

#[tokio::test]
async fn a_grant_on_a_missing_bucket_resolves_when_the_bucket_appears() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.credentials(ns);
    env.create_credential(
        ns,
        "early",
        json!({"grants": [{"bucket": "later", "permission": "read"}]}),
    )
    .await;
    let c = env
        .condition(&api, "early", "Ready", "False", Some("BucketNotFound"))
        .await;
    assert!(condition_of(&c, "Ready")
        .message
        .contains(&format!("S3Bucket {ns}/later does not exist")));
    let s = env.secrets(ns).get("early").await.unwrap();
    assert!(secret_value(&s, "BUCKET_NAME").is_none());
    let id = secret_value(&s, "AWS_ACCESS_KEY_ID").unwrap();
    // The key works already (it authenticates), with no grant.
    let cfg = env
        .operator()
        .config_where("the key is in the config", |c| grants_of(c, &id).is_some())
        .await;
    assert!(grants_of(&cfg, &id).unwrap().is_empty());

    env.create_bucket(ns, "later", json!({"bucketName": "later.example"}))
        .await;
    env.condition(&api, "early", "Ready", "True", None).await;
    let s = env.secrets(ns).get("early").await.unwrap();
    assert_eq!(
        secret_value(&s, "BUCKET_NAME").as_deref(),
        Some("later.example")
    );
    assert_eq!(
        secret_value(&s, "AWS_ACCESS_KEY_ID").unwrap(),
        id,
        "the key stays"
    );
    let cfg = env
        .operator()
        .config_where("the grant resolved", |c| {
            grants_of(c, &id).is_some_and(|g| !g.is_empty())
        })
        .await;
    assert_eq!(
        grants_of(&cfg, &id).unwrap(),
        [("later.example".to_string(), Permission::Read)]
    );
}

#[tokio::test]
async fn cross_namespace_grants_need_the_buckets_consent() {
    let env = Env::new(2).await;
    let (apps, data) = (env.ns(0), env.ns(1));
    env.create_bucket(data, "open", json!({"allowedNamespaces": [apps]}))
        .await;
    env.create_bucket(data, "closed", json!({})).await;
    env.create_bucket(data, "everyone", json!({"allowedNamespaces": ["*"]}))
        .await;
    env.create_credential(
        apps,
        "reader",
        json!({"grants": [
            {"bucket": "open", "namespace": data, "permission": "read"},
            {"bucket": "closed", "namespace": data, "permission": "read"},
            {"bucket": "everyone", "namespace": data, "permission": "write"}]}),
    )
    .await;
    let api = env.credentials(apps);
    let c = env
        .condition(&api, "reader", "Ready", "False", Some("GrantDenied"))
        .await;
    let message = condition_of(&c, "Ready").message;
    assert!(
        message.contains(&format!("S3Bucket {data}/closed does not allow")),
        "{message}"
    );
    assert!(!message.contains("open"), "{message}");
    let id = c.status.unwrap().access_key_id.unwrap();
    let cfg = env
        .operator()
        .config_where("the allowed grants are in the config", |c| {
            grants_of(c, &id).is_some_and(|g| g.len() == 2)
        })
        .await;
    assert_eq!(
        grants_of(&cfg, &id).unwrap(),
        [
            ("everyone".to_string(), Permission::Write),
            ("open".to_string(), Permission::Read)
        ]
    );
    assert!(env
        .event(apps, "reader", "GrantDenied")
        .await
        .contains("closed"));

    env.patch_spec(
        &env.buckets(data),
        "closed",
        json!({"allowedNamespaces": [apps]}),
    )
    .await;
    env.condition(&api, "reader", "Ready", "True", None).await;
    env.operator()
        .config_where("all three grants", |c| {
            grants_of(c, &id).is_some_and(|g| g.len() == 3)
        })
        .await;
}

#[tokio::test]
async fn a_key_from_an_existing_secret_and_its_change_with_overlap() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    env.create_bucket(ns, "bkt1", json!({})).await;
    user_secret(
        &env,
        ns,
        "given",
        &[
            ("id", "AKIAGIVEN000000000001"),
            ("key", "given-secret-key-0001"),
        ],
    )
    .await;
    env.create_credential(
        ns,
        "imported",
        json!({
            "grants": [{"bucket": "bkt1", "permission": "read"}],
            "keySource": {"type": "Secret", "secretRef": {"name": "given", "accessKeyIdKey": "id", "secretAccessKeyKey": "key"}},
            "secretName": "imported-s3",
            "rotation": {"overlap": "4s"},
        }),
    )
    .await;
    let api = env.credentials(ns);
    env.condition(&api, "imported", "Ready", "True", None).await;
    let s = env.secrets(ns).get("imported-s3").await.unwrap();
    assert_eq!(
        secret_value(&s, "AWS_ACCESS_KEY_ID").unwrap(),
        "AKIAGIVEN000000000001"
    );
    assert_eq!(
        secret_value(&s, "AWS_SECRET_ACCESS_KEY").unwrap(),
        "given-secret-key-0001"
    );
    assert_eq!(secret_value(&s, "BUCKET_NAME").unwrap(), "bkt1");
    assert!(env
        .event(ns, "imported", "KeyImported")
        .await
        .contains("keySource"));

    // The user changes the source: the new key is used, the old one works for the overlap.
    user_secret(
        &env,
        ns,
        "given",
        &[
            ("id", "AKIAGIVEN000000000002"),
            ("key", "given-secret-key-0002"),
        ],
    )
    .await;
    let cfg = env
        .operator()
        .config_where("both keys are in the config", |c| {
            grants_of(c, "AKIAGIVEN000000000001").is_some()
                && grants_of(c, "AKIAGIVEN000000000002").is_some()
        })
        .await;
    let old = cfg
        .credentials
        .iter()
        .find(|c| c.access_key_id == "AKIAGIVEN000000000001")
        .unwrap();
    assert!(old.not_after.is_some(), "the previous key has an end");
    assert_eq!(
        grants_of(&cfg, "AKIAGIVEN000000000001"),
        grants_of(&cfg, "AKIAGIVEN000000000002")
    );
    let s = env.secrets(ns).get("imported-s3").await.unwrap();
    assert_eq!(
        secret_value(&s, "AWS_ACCESS_KEY_ID").unwrap(),
        "AKIAGIVEN000000000002"
    );
    let c = api.get("imported").await.unwrap();
    assert_eq!(
        c.status.unwrap().previous_access_key_id.as_deref(),
        Some("AKIAGIVEN000000000001")
    );
    assert!(env
        .event(ns, "imported", "KeyChanged")
        .await
        .contains("AKIAGIVEN000000000001"));
    env.operator()
        .config_where("the previous key is dropped after the overlap", |c| {
            grants_of(c, "AKIAGIVEN000000000001").is_none()
                && grants_of(c, "AKIAGIVEN000000000002").is_some()
        })
        .await;

    // A source without the keys: the condition says so; the last key keeps working.
    user_secret(&env, ns, "given", &[("other", "x")]).await;
    env.secrets(ns)
        .patch(
            "given",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "remove", "path": "/data/id"}])).unwrap(),
            ),
        )
        .await
        .unwrap();
    let c = env
        .condition(
            &api,
            "imported",
            "SecretWritten",
            "False",
            Some("SourceSecretInvalid"),
        )
        .await;
    assert!(condition_of(&c, "SecretWritten").message.contains("given"));
    assert!(grants_of(&env.operator().config().unwrap(), "AKIAGIVEN000000000002").is_some());
}

#[tokio::test]
async fn rotation_keeps_the_previous_key_for_the_overlap_then_drops_it() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    env.create_bucket(ns, "rot", json!({})).await;
    env.create_credential(
        ns,
        "rotating",
        json!({"grants": [{"bucket": "rot", "permission": "read-write"}], "rotation": {"overlap": "4s"}}),
    )
    .await;
    let api = env.credentials(ns);
    env.condition(&api, "rotating", "Ready", "True", None).await;
    let first = secret_value(
        &env.secrets(ns).get("rotating").await.unwrap(),
        "AWS_ACCESS_KEY_ID",
    )
    .unwrap();

    api.patch(
        "rotating",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"jets3.io/rotate": "2026-01-01T00:00:00Z"}}}),
        ),
    )
    .await
    .unwrap();
    let second = eventually("the key is rotated", || async {
        let s = env.secrets(ns).get("rotating").await.ok()?;
        secret_value(&s, "AWS_ACCESS_KEY_ID").filter(|id| *id != first)
    })
    .await;
    let cfg = env
        .operator()
        .config_where("both keys are in the config", |c| {
            grants_of(c, &first).is_some() && grants_of(c, &second).is_some()
        })
        .await;
    let old = cfg
        .credentials
        .iter()
        .find(|c| c.access_key_id == first)
        .unwrap();
    let not_after: k8s_openapi::jiff::Timestamp = old.not_after.as_ref().unwrap().parse().unwrap();
    let left = not_after.duration_since(k8s_openapi::jiff::Timestamp::now());
    assert!(left.as_secs() <= 4, "{left:?}");
    assert!(old.description.as_ref().unwrap().contains("previous"));
    let c = api.get("rotating").await.unwrap();
    let st = c.status.unwrap();
    assert_eq!(st.previous_access_key_id.as_deref(), Some(first.as_str()));
    assert_eq!(
        st.last_rotate_request.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert!(env
        .event(ns, "rotating", "KeyRotated")
        .await
        .contains("jets3.io/rotate"));

    env.operator()
        .config_where("only the new key after the overlap", |c| {
            grants_of(c, &first).is_none() && grants_of(c, &second).is_some()
        })
        .await;
    eventually("the previous-key Secret is deleted", || async {
        let c = api.get("rotating").await.ok()?;
        let prev = format!("jets3-previous-key-{}", c.uid()?);
        env.secrets(ns)
            .get_opt(&prev)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    env.event(ns, "rotating", "PreviousKeyRevoked").await;
    env.condition(&api, "rotating", "Ready", "True", None).await;
    // The Event comes before the status write of the same reconcile: wait for the status.
    eventually("the status drops the previous key", || async {
        let st = api.get("rotating").await.ok()?.status?;
        st.previous_access_key_id.is_none().then_some(())
    })
    .await;

    // The same annotation value again rotates nothing.
    api.patch(
        "rotating",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = secret_value(
        &env.secrets(ns).get("rotating").await.unwrap(),
        "AWS_ACCESS_KEY_ID",
    )
    .unwrap();
    assert_eq!(now, second);
}

#[tokio::test]
async fn a_rotation_interval_replaces_the_key_by_itself() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    env.create_bucket(ns, "auto", json!({})).await;
    env.create_credential(
        ns,
        "timed",
        json!({"grants": [{"bucket": "auto", "permission": "read"}], "rotation": {"interval": "4s", "overlap": "1s"}}),
    )
    .await;
    let api = env.credentials(ns);
    env.condition(&api, "timed", "Ready", "True", None).await;
    let first = secret_value(
        &env.secrets(ns).get("timed").await.unwrap(),
        "AWS_ACCESS_KEY_ID",
    )
    .unwrap();
    let second = eventually("the key is rotated by interval", || async {
        let s = env.secrets(ns).get("timed").await.ok()?;
        secret_value(&s, "AWS_ACCESS_KEY_ID").filter(|id| *id != first)
    })
    .await;
    assert!(env
        .event(ns, "timed", "KeyRotated")
        .await
        .contains("rotation.interval"));
    env.operator()
        .config_where("the new key is in the config", |c| {
            grants_of(c, &second).is_some()
        })
        .await;
}

#[tokio::test]
async fn a_secret_name_taken_by_someone_else_is_left_alone() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    env.create_bucket(ns, "bkt", json!({})).await;
    user_secret(&env, ns, "taken", &[("mine", "do not touch")]).await;
    env.create_credential(
        ns,
        "wants-it",
        json!({"secretName": "taken", "grants": [{"bucket": "bkt", "permission": "read"}]}),
    )
    .await;
    let api = env.credentials(ns);
    let c = env
        .condition(&api, "wants-it", "Ready", "False", Some("SecretExists"))
        .await;
    assert!(condition_of(&c, "SecretWritten").message.contains("taken"));
    assert_eq!(condition_of(&c, "Served").reason, "NoKey");
    let s = env.secrets(ns).get("taken").await.unwrap();
    assert_eq!(s.data.unwrap().len(), 1);
    assert!(s.metadata.owner_references.is_none());
    env.event(ns, "wants-it", "SecretExists").await;
}

#[tokio::test]
async fn an_invalid_part_is_marked_on_its_own_status_and_the_others_proceed() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    env.create_bucket(ns, "shared", json!({})).await;
    user_secret(
        &env,
        ns,
        "bad-src",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIABADKEY0000000001"),
            ("AWS_SECRET_ACCESS_KEY", "short"),
        ],
    )
    .await;
    user_secret(
        &env,
        ns,
        "dup-src",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIADUPLICATE0000001"),
            ("AWS_SECRET_ACCESS_KEY", "duplicate-secret-01"),
        ],
    )
    .await;
    let from = |src: &str| {
        json!({"grants": [{"bucket": "shared", "permission": "read"}],
               "keySource": {"type": "Secret", "secretRef": {"name": src}}})
    };
    env.create_credential(ns, "bad", from("bad-src")).await;
    env.create_credential(ns, "dup-first", from("dup-src"))
        .await;
    // Creation timestamps have one-second resolution: make "first" unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.create_credential(ns, "dup-second", from("dup-src"))
        .await;
    env.create_credential(
        ns,
        "good",
        json!({"grants": [{"bucket": "shared", "permission": "read"}]}),
    )
    .await;
    let api = env.credentials(ns);

    let bad = env
        .condition(&api, "bad", "Served", "False", Some("InvalidConfig"))
        .await;
    let message = condition_of(&bad, "Served").message;
    assert!(message.contains("secretAccessKey"), "{message}");
    assert_eq!(condition_of(&bad, "Ready").reason, "InvalidConfig");
    assert_eq!(condition_of(&bad, "SecretWritten").status, "True");
    let second = env
        .condition(
            &api,
            "dup-second",
            "Served",
            "False",
            Some("DuplicateAccessKey"),
        )
        .await;
    assert!(condition_of(&second, "Served")
        .message
        .contains(&format!("{ns}/dup-first")));
    env.condition(&api, "dup-first", "Ready", "True", None)
        .await;
    let good = env.condition(&api, "good", "Ready", "True", None).await;
    let good_id = good.status.unwrap().access_key_id.unwrap();

    let cfg = env
        .operator()
        .config_where("the good keys are served", |c| {
            grants_of(c, &good_id).is_some()
        })
        .await;
    assert!(cfg.validate().is_ok());
    assert!(grants_of(&cfg, "AKIABADKEY0000000001").is_none());
    assert_eq!(
        cfg.credentials
            .iter()
            .filter(|c| c.access_key_id == "AKIADUPLICATE0000001")
            .count(),
        1
    );
    let dup = cfg
        .credentials
        .iter()
        .find(|c| c.access_key_id == "AKIADUPLICATE0000001")
        .unwrap();
    assert_eq!(
        dup.description.as_deref(),
        Some(format!("{ns}/dup-first").as_str())
    );
    assert!(cfg.bucket("shared").is_some());

    // Fixing the source brings it in.
    user_secret(
        &env,
        ns,
        "bad-src",
        &[("AWS_SECRET_ACCESS_KEY", "long-enough-now")],
    )
    .await;
    env.condition(&api, "bad", "Ready", "True", None).await;
    env.operator()
        .config_where("the fixed key is served", |c| {
            grants_of(c, "AKIABADKEY0000000001").is_some()
        })
        .await;
}
