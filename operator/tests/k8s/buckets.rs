//! S3Bucket -> NATS object-store bucket.

use std::time::Duration;

use async_nats::jetstream::stream::{Compression, StorageType};
use jets3_crds::Access;
use jets3_testkit::NatsCluster;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn bucket_is_created_updated_and_deleted_with_the_spec() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    env.create_bucket(
        ns,
        "media",
        json!({
            "bucketName": "media.example",
            "description": "pictures",
            "maxBytes": 10_000_000,
            "maxObjectBytes": 1_000_000,
            "ttl": "24h",
            "compression": true,
            "metadata": {"team": "media"},
            "access": "public-read",
            "deletionPolicy": "Delete",
        }),
    )
    .await;
    let b = env.condition(&api, "media", "Ready", "True", None).await;
    let status = b.status.clone().unwrap();
    assert_eq!(status.bucket_name.as_deref(), Some("media.example"));
    assert_eq!(status.nats_bucket.as_deref(), Some("media_example"));
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://jets3-gateway.test:9000")
    );
    assert_eq!(status.observed_generation, b.metadata.generation);
    assert_eq!(condition_of(&b, "BucketProvisioned").status, "True");
    assert_eq!(condition_of(&b, "Served").status, "True");

    let info = env
        .nats
        .bucket("media_example")
        .await
        .expect("NATS bucket exists");
    let c = &info.config;
    assert_eq!(c.storage, StorageType::File);
    assert_eq!(c.num_replicas, 1);
    assert_eq!(c.max_bytes, 10_000_000);
    assert_eq!(c.max_age, Duration::from_secs(24 * 3600));
    assert_eq!(c.compression, Some(Compression::S2));
    assert_eq!(c.description.as_deref(), Some("pictures"));
    assert_eq!(c.metadata["team"], "media");
    assert_eq!(c.metadata["jets3.owner"], format!("{ns}/media"));
    assert!(c.allow_direct && c.allow_rollup);
    assert_eq!(c.subjects, ["$O.media_example.C.>", "$O.media_example.M.>"]);

    let cfg = env
        .operator()
        .config_where("the bucket is in the gateway config", |c| {
            c.bucket("media.example").is_some()
        })
        .await;
    let entry = cfg.bucket("media.example").unwrap();
    assert_eq!(entry.access, Access::PublicRead);
    assert_eq!(entry.nats_name(), "media_example");
    assert!(!entry.create);
    assert_eq!(cfg.region, "eu-test-1");
    assert!(env
        .event(ns, "media", "BucketCreated")
        .await
        .contains("media_example"));

    // Update what NATS can change.
    env.patch_spec(
        &api,
        "media",
        json!({"maxBytes": 20_000_000, "ttl": "1h", "compression": false, "description": "new",
               "metadata": {"team": "web"}, "access": "private"}),
    )
    .await;
    eventually("NATS has the new settings", || async {
        let c = env.nats.bucket("media_example").await?.config;
        (c.max_bytes == 20_000_000
            && c.max_age == Duration::from_secs(3600)
            && c.compression != Some(Compression::S2)
            && c.description.as_deref() == Some("new")
            && c.metadata.get("team").map(String::as_str) == Some("web"))
        .then_some(())
    })
    .await;
    let note = env.event(ns, "media", "BucketUpdated").await;
    assert!(note.contains("maxBytes") && note.contains("ttl"), "{note}");
    let newer = env
        .operator()
        .config_where("the config has the new access", |c| {
            c.bucket("media.example")
                .is_some_and(|b| b.access == Access::Private)
        })
        .await;
    assert!(newer.generation > cfg.generation);
    // The config follows the spec at once; the status follows the reconcile that applied it.
    eventually("Ready for the updated spec", || async {
        let b = api.get("media").await.ok()?;
        let ready = conditions_of(&b)
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let observed = b.status.as_ref()?.observed_generation;
        (ready && observed == b.metadata.generation).then_some(())
    })
    .await;

    // deletionPolicy Delete removes the NATS bucket, then the finalizer.
    env.delete(&api, "media").await;
    env.gone(&api, "media").await;
    assert!(env.nats.bucket("media_example").await.is_none());
    env.operator()
        .config_where("the bucket left the config", |c| {
            c.bucket("media.example").is_none()
        })
        .await;
}

#[tokio::test]
async fn retain_keeps_the_nats_bucket_and_its_objects() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    env.create_bucket(ns, "kept", json!({})).await;
    env.condition(&api, "kept", "Ready", "True", None).await;
    let store = env.nats.js().await.get_object_store("kept").await.unwrap();
    store.put("hello.txt", &mut &b"hi there"[..]).await.unwrap();
    env.delete(&api, "kept").await;
    env.gone(&api, "kept").await;
    let store = env
        .nats
        .js()
        .await
        .get_object_store("kept")
        .await
        .expect("NATS bucket kept");
    let mut obj = store.get("hello.txt").await.expect("object kept");
    let mut data = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut data)
        .await
        .unwrap();
    assert_eq!(data, b"hi there");
    assert!(env
        .event(ns, "kept", "BucketRetained")
        .await
        .contains("kept"));
}

#[tokio::test]
async fn a_bucket_deleted_behind_the_operators_back_is_created_again() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    env.create_bucket(ns, "phoenix", json!({"maxBytes": 5_000_000}))
        .await;
    env.condition(&api, "phoenix", "Ready", "True", None).await;
    env.nats
        .js()
        .await
        .delete_stream("OBJ_phoenix")
        .await
        .unwrap();
    let info = eventually("the NATS bucket is back", || env.nats.bucket("phoenix")).await;
    assert_eq!(info.config.max_bytes, 5_000_000);
    assert_eq!(info.config.metadata["jets3.owner"], format!("{ns}/phoenix"));
    let note = env.event(ns, "phoenix", "BucketRecreated").await;
    assert!(note.contains("phoenix"), "{note}");
    // The objects are gone: a Warning, and a condition that stays on the S3Bucket.
    let events = env.events(ns, "phoenix").await;
    let recreated: Vec<_> = events
        .iter()
        .filter(|(_, reason, _)| reason == "BucketRecreated")
        .collect();
    assert!(
        recreated.iter().all(|(t, _, _)| t == "Warning"),
        "{recreated:?}"
    );
    let obj = env
        .condition(&api, "phoenix", "DataLost", "True", Some("BucketRecreated"))
        .await;
    let lost = conditions_of(&obj)
        .into_iter()
        .find(|c| c.type_ == "DataLost")
        .unwrap();
    assert!(lost.message.contains("empty"), "{}", lost.message);
    // Still usable, and the condition outlives later reconciles (2 s resync).
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.condition(&api, "phoenix", "Ready", "True", None).await;
    env.condition(&api, "phoenix", "DataLost", "True", Some("BucketRecreated"))
        .await;
}

#[tokio::test]
async fn the_first_claimant_keeps_a_contested_name_and_nothing_is_overwritten() {
    let env = Env::new(2).await;
    let (a, b) = (env.ns(0), env.ns(1));
    env.create_bucket(
        a,
        "logs",
        json!({"bucketName": "shared-logs", "description": "first"}),
    )
    .await;
    env.condition(&env.buckets(a), "logs", "Ready", "True", None)
        .await;
    env.create_bucket(
        b,
        "logs",
        json!({"bucketName": "shared-logs", "description": "second", "access": "public-read"}),
    )
    .await;
    let loser = env
        .condition(
            &env.buckets(b),
            "logs",
            "Ready",
            "False",
            Some("NameConflict"),
        )
        .await;
    let c = condition_of(&loser, "BucketProvisioned");
    assert_eq!(c.reason, "NameConflict");
    assert!(
        c.message.contains(&format!("S3Bucket {a}/logs")),
        "{}",
        c.message
    );
    assert_eq!(condition_of(&loser, "Served").reason, "NameConflict");
    assert!(loser.status.unwrap().nats_bucket.is_none());
    let info = env.nats.bucket("shared-logs").await.unwrap();
    assert_eq!(info.config.description.as_deref(), Some("first"));
    assert_eq!(info.config.metadata["jets3.owner"], format!("{a}/logs"));
    let cfg = env
        .operator()
        .config_where("the first bucket is served", |c| {
            c.bucket("shared-logs").is_some()
        })
        .await;
    assert_eq!(cfg.bucket("shared-logs").unwrap().access, Access::Private);
    let note = env.event(b, "logs", "NameConflict").await;
    assert!(note.contains(a), "{note}");

    // The holder goes (Retain): the NATS bucket is still the first one's, which another
    // namespace may not take over (see `adoption_stays_in_the_owners_namespace`).
    env.delete(&env.buckets(a), "logs").await;
    env.gone(&env.buckets(a), "logs").await;
    let blocked = env
        .condition(
            &env.buckets(b),
            "logs",
            "Ready",
            "False",
            Some("BucketExists"),
        )
        .await;
    assert!(condition_of(&blocked, "BucketProvisioned")
        .message
        .contains(&format!("{a}/logs")));
    assert_eq!(
        env.nats
            .bucket("shared-logs")
            .await
            .unwrap()
            .config
            .description
            .as_deref(),
        Some("first")
    );
}

#[tokio::test]
async fn adoption_stays_in_the_owners_namespace() {
    let mut env = Env::new(2).await;
    let (a, b) = (env.ns(0).to_string(), env.ns(1).to_string());
    let (a, b) = (a.as_str(), b.as_str());
    let spec = |description: &str| json!({"natsBucket": "tenant-data", "description": description, "deletionPolicy": "Retain"});
    env.create_bucket(a, "data", spec("tenant a")).await;
    env.condition(&env.buckets(a), "data", "Ready", "True", None)
        .await;
    let js = env.nats.js().await;
    let store = js.get_object_store("tenant-data").await.unwrap();
    store
        .put("secret.txt", &mut &b"tenant a's data"[..])
        .await
        .unwrap();
    env.delete(&env.buckets(a), "data").await;
    env.gone(&env.buckets(a), "data").await;

    // Another namespace asks to adopt the retained bucket: refused, nothing touched.
    let mut thief = spec("tenant b");
    thief["adopt"] = json!(true);
    thief["bucketName"] = json!("thief");
    env.create_bucket(b, "steal", thief.clone()).await;
    let refused = env
        .condition(
            &env.buckets(b),
            "steal",
            "Ready",
            "False",
            Some("AdoptionRefused"),
        )
        .await;
    let message = condition_of(&refused, "BucketProvisioned").message;
    assert!(
        message.contains(&format!("{a}/data")) && message.contains("--adopt-across-namespaces"),
        "{message}"
    );
    assert!(refused.status.unwrap().nats_bucket.is_none());
    let note = env.event(b, "steal", "AdoptionRefused").await;
    assert!(note.contains(a), "{note}");
    let info = env.nats.bucket("tenant-data").await.unwrap();
    assert_eq!(info.config.description.as_deref(), Some("tenant a"));
    assert_eq!(info.config.metadata["jets3.owner"], format!("{a}/data"));
    env.operator()
        .config_where("the thief is not served", |c| c.bucket("thief").is_none())
        .await;
    // Deleting the refused S3Bucket (even with Delete) leaves the NATS bucket alone.
    env.patch_spec(
        &env.buckets(b),
        "steal",
        json!({"deletionPolicy": "Delete"}),
    )
    .await;
    env.delete(&env.buckets(b), "steal").await;
    env.gone(&env.buckets(b), "steal").await;
    let mut kept = store.get("secret.txt").await.unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut kept, &mut bytes)
        .await
        .unwrap();
    assert_eq!(bytes, b"tenant a's data");

    // The owner's namespace may adopt it under another S3Bucket.
    let mut again = spec("tenant a again");
    again["adopt"] = json!(true);
    env.create_bucket(a, "again", again).await;
    env.condition(&env.buckets(a), "again", "Ready", "True", None)
        .await;
    let info = env.nats.bucket("tenant-data").await.unwrap();
    assert_eq!(info.config.metadata["jets3.owner"], format!("{a}/again"));
    env.delete(&env.buckets(a), "again").await;
    env.gone(&env.buckets(a), "again").await;

    // An operator started with --adopt-across-namespaces naming b lets b adopt it.
    drop(env.operator.take());
    let mut opts = env.options();
    opts.extra_args = vec![format!("--adopt-across-namespaces={b}")];
    env.operator = Some(env.start_operator("operator-allowing", &opts));
    env.create_bucket(b, "steal", thief).await;
    env.condition(&env.buckets(b), "steal", "Ready", "True", None)
        .await;
    let info = env.nats.bucket("tenant-data").await.unwrap();
    assert_eq!(info.config.description.as_deref(), Some("tenant b"));
    assert_eq!(info.config.metadata["jets3.owner"], format!("{b}/steal"));
}

#[tokio::test]
async fn an_existing_nats_bucket_is_adopted_only_when_the_spec_says_so() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    let js = env.nats.js().await;
    let store = js
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: "native".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .put("a.txt", &mut &b"from a native client"[..])
        .await
        .unwrap();
    store.put("b.txt", &mut &b"another"[..]).await.unwrap();
    env.create_bucket(ns, "native", json!({"description": "adopted"}))
        .await;
    let b = env
        .condition(&api, "native", "Ready", "False", Some("BucketExists"))
        .await;
    assert!(condition_of(&b, "BucketProvisioned")
        .message
        .contains("not created by jets3"));
    let untouched = env.nats.bucket("native").await.unwrap();
    assert!(
        untouched.config.description.is_none()
            && !untouched.config.metadata.contains_key("jets3.owner")
    );
    env.operator()
        .config_where("the bucket is not served", |c| c.bucket("native").is_none())
        .await;

    env.patch_spec(&api, "native", json!({"adopt": true})).await;
    env.condition(&api, "native", "Ready", "True", None).await;
    let info = env.nats.bucket("native").await.unwrap();
    assert_eq!(info.config.description.as_deref(), Some("adopted"));
    assert_eq!(info.config.metadata["jets3.owner"], format!("{ns}/native"));
    assert!(
        !untouched.config.allow_atomic_publish && info.config.allow_atomic_publish,
        "a native bucket gets atomic batches (a small object in one publish)"
    );
    assert!(env
        .event(ns, "native", "BucketAdopted")
        .await
        .contains("native"));
    let status = eventually("the object count is shown", || async {
        let s = api.get("native").await.ok()?.status?;
        (s.object_count == Some(2)).then_some(s)
    })
    .await;
    assert!(status.size_bytes.unwrap() > 0 && status.size.is_some());
    assert!(env.operator().config().unwrap().bucket("native").is_some());
}

#[tokio::test]
async fn what_nats_refuses_is_a_condition_not_a_crash_loop() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    // A single nats-server cannot hold 3 replicas.
    env.create_bucket(ns, "triple", json!({"replicas": 3}))
        .await;
    let b = env
        .condition(&api, "triple", "Ready", "False", Some("CreateRefused"))
        .await;
    let message = condition_of(&b, "BucketProvisioned").message;
    assert!(
        message.contains("triple") && message.contains("NATS refused"),
        "{message}"
    );
    assert!(env.nats.bucket("triple").await.is_none());
    env.patch_spec(&api, "triple", json!({"replicas": 1})).await;
    env.condition(&api, "triple", "Ready", "True", None).await;

    // An update NATS refuses leaves the bucket as it is and says why.
    env.patch_spec(&api, "triple", json!({"replicas": 3})).await;
    let b = env
        .condition(
            &api,
            "triple",
            "BucketProvisioned",
            "False",
            Some("UpdateRefused"),
        )
        .await;
    assert!(condition_of(&b, "BucketProvisioned")
        .message
        .contains("replicas"));
    // Still served, as it is.
    env.condition(&api, "triple", "Served", "True", None).await;
    assert_eq!(
        env.nats.bucket("triple").await.unwrap().config.num_replicas,
        1
    );

    // Storage cannot change: an adopted memory bucket with a file spec.
    let js = env.nats.js().await;
    js.create_object_store(async_nats::jetstream::object_store::Config {
        bucket: "inmem".into(),
        storage: StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    env.create_bucket(ns, "inmem", json!({"adopt": true, "storage": "file"}))
        .await;
    let b = env
        .condition(&api, "inmem", "Ready", "False", Some("StorageMismatch"))
        .await;
    assert!(condition_of(&b, "BucketProvisioned")
        .message
        .contains("cannot change"));
    assert_eq!(
        env.nats.bucket("inmem").await.unwrap().config.storage,
        StorageType::Memory
    );
    // The operator keeps running and keeps answering.
    let (code, _) = env.operator().get("/healthz").await.unwrap();
    assert_eq!(code, 200);
}

#[tokio::test]
async fn nats_down_while_reconciling_is_reported_and_resumes() {
    let mut env = Env::new(1).await;
    let ns = env.ns(0).to_string();
    let api = env.buckets(&ns);
    env.create_bucket(&ns, "first", json!({})).await;
    env.condition(&api, "first", "Ready", "True", None).await;
    env.nats.kill();
    env.create_bucket(&ns, "during", json!({})).await;
    let b = env
        .condition(
            &api,
            "during",
            "BucketProvisioned",
            "False",
            Some("NatsUnavailable"),
        )
        .await;
    assert_eq!(condition_of(&b, "Ready").reason, "NatsUnavailable");
    env.nats.restart().await;
    env.condition(&api, "during", "Ready", "True", None).await;
    assert!(env.nats.bucket("during").await.is_some());
    assert!(env.nats.bucket("first").await.is_some());
    env.condition(&api, "first", "Ready", "True", None).await;
}

#[tokio::test]
async fn deleting_while_nats_is_down_retries_then_never_blocks_forever() {
    let mut env = Env::new(1).await;
    let ns = env.ns(0).to_string();
    let api = env.buckets(&ns);
    for name in ["comes-back", "stays-down"] {
        env.create_bucket(&ns, name, json!({"deletionPolicy": "Delete"}))
            .await;
        env.condition(&api, name, "Ready", "True", None).await;
    }

    // NATS comes back in time: the bucket is deleted and the S3Bucket goes.
    env.nats.kill();
    env.delete(&api, "comes-back").await;
    let b = env
        .condition(
            &api,
            "comes-back",
            "Ready",
            "False",
            Some("DeletionBlocked"),
        )
        .await;
    assert!(condition_of(&b, "Ready").message.contains("retrying"));
    assert!(env
        .event(&ns, "comes-back", "DeletionBlocked")
        .await
        .contains("comes-back"));
    env.nats.restart().await;
    env.gone(&api, "comes-back").await;
    assert!(env.nats.bucket("comes-back").await.is_none());

    // NATS stays down past --delete-timeout (6 s): the S3Bucket goes, the NATS bucket stays.
    env.nats.kill();
    env.delete(&api, "stays-down").await;
    env.gone(&api, "stays-down").await;
    let note = env.event(&ns, "stays-down", "BucketOrphaned").await;
    assert!(note.contains("nats object del stays-down"), "{note}");
    env.nats.restart().await;
    assert!(env.nats.bucket("stays-down").await.is_some());
    let (_, metrics) = env.operator().get("/metrics").await.unwrap();
    assert!(
        metrics.contains("jets3_operator_orphaned_buckets_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn size_and_object_count_are_refreshed() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    env.create_bucket(ns, "stats", json!({})).await;
    let b = env.condition(&api, "stats", "Ready", "True", None).await;
    assert_eq!(b.status.unwrap().object_count, Some(0));
    let store = env.nats.js().await.get_object_store("stats").await.unwrap();
    for i in 0..3 {
        store
            .put(format!("o{i}").as_str(), &mut &[7u8; 10_000][..])
            .await
            .unwrap();
    }
    store.delete("o0").await.unwrap();
    // A refresh that read the stream's size before the last writes and counted after them
    // shows the new count with the old size; the next one (the stream changed since) has
    // both.
    let s = eventually("the status shows 2 objects of 10,000 bytes", || async {
        let s = api.get("stats").await.ok()?.status?;
        (s.object_count == Some(2) && s.size_bytes? >= 20_000).then_some(s)
    })
    .await;
    assert!(s.size.unwrap().ends_with("KiB"));
    assert!(s.stats_updated_at.is_some());
}

#[tokio::test]
async fn a_bucket_on_a_nats_cluster_gets_three_replicas_even_if_the_operator_came_first() {
    // A chart install: the NATS pods start together and their routes form later. The operator
    // connects to the first server while it is alone (its INFO names one server), the bucket is
    // asked for while only two of three are up (a new cluster's JetStream waits for all three),
    // then the third comes. A bucket without spec.replicas must end with three.
    let env = Env::without_operator(1).await;
    let ns = env.ns(0);
    let mut servers = NatsCluster::configure(3);
    servers.restart(0).await;
    let options = OperatorOptions {
        resync: "10m".into(),
        ..env.options()
    };
    let operator = Operator::start(env.cp, &servers[0], env.dir.path(), "operator", &options);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !operator.log_text().contains("connected to NATS") {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator never connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    servers.restart(1).await;
    let api = env.buckets(ns);
    env.create_bucket(ns, "replicated", json!({})).await;
    env.condition(&api, "replicated", "BucketProvisioned", "False", None)
        .await;
    servers.restart(2).await;
    env.condition(&api, "replicated", "Ready", "True", None)
        .await;
    let info = servers[0].bucket("replicated").await;
    assert_eq!(info.map(|i| i.config.num_replicas), Some(3));
    drop(operator);
}

/// A spec change of a bucket waits while a gateway holds the bucket's config lock (it is
/// changing a bucket setting: NATS replaces a stream config whole, and the operator's
/// update read before the gateway's landed would drop it), then applies.
#[tokio::test]
async fn a_spec_change_waits_for_the_config_lock_a_gateway_holds() {
    let env = Env::new(1).await;
    let ns = env.ns(0);
    let api = env.buckets(ns);
    env.create_bucket(ns, "locked", json!({"maxBytes": 1_000_000}))
        .await;
    let b = env.condition(&api, "locked", "Ready", "True", None).await;
    let nats = b.status.and_then(|s| s.nats_bucket).expect("NATS bucket");
    let js = env.nats.js().await;
    let kv = match js.get_key_value(jets3_nats::config_lock::LOCKS_KV).await {
        Ok(kv) => kv,
        Err(_) => js
            .create_key_value(jets3_nats::config_lock::locks_kv())
            .await
            .expect("locks KV"),
    };
    let key = format!("config.{nats}");
    kv.create(&key, "a gateway changing a bucket setting".into())
        .await
        .expect("the lock, as a gateway takes it");
    env.patch_spec(&api, "locked", json!({"maxBytes": 2_000_000}))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = env.nats.bucket(&nats).await.expect("bucket").config;
    assert_eq!(
        held.max_bytes, 1_000_000,
        "no update while the lock is held"
    );
    kv.delete(&key)
        .await
        .expect("the gateway releases the lock");
    eventually("the spec change applied once the lock is free", || async {
        let c = env.nats.bucket(&nats).await?.config;
        (c.max_bytes == 2_000_000).then_some(())
    })
    .await;
}
