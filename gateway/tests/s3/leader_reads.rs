//! On a replicated bucket, the reads that decide a purge (is a retired version referenced
//! again?) or answer for a version (GET and HEAD with a version id) ask the stream leader. A
//! Direct Get may be answered by a replica that is behind (a frozen stream leader that comes
//! back answered with an older version: see `failover.rs`): a purge decided so would take the
//! chunks of a live version, a read would answer NoSuchVersion for one that exists.

use std::time::Duration;

use jets3_gateway::config::settings::CollectorSettings;
use jets3_gateway::store::lifecycle::{Retired, GC_KV};
use jets3_gateway::store::meta::meta_subject;
use jets3_gateway::store::versions::version_subject;
use jets3_gateway::store::Collector;
use jets3_gateway::{GatewayHandle, NatsSettings};

use crate::common::*;
use crate::netfault::FaultProxy;

/// A gateway (its own collector off) on a three-node cluster through a proxy, serving bucket
/// `b` with three replicas; a client of it, and a JetStream context on another node.
struct R3 {
    _cluster: NatsCluster,
    proxy: FaultProxy,
    gw: GatewayHandle,
    s3: aws_sdk_s3::Client,
    js: async_nats::jetstream::Context,
    collector: Collector,
}

async fn r3(b: &str) -> R3 {
    let cluster = NatsCluster::start(3).await;
    let proxy = FaultProxy::start(&cluster.urls()[0]).await;
    let mut cfg = config_with(&[]);
    let mut bc = bucket_cfg(b);
    bc.replicas = 3;
    cfg.buckets.push(bc);
    let mut s = settings_for(&proxy.url);
    s.nats = NatsSettings {
        servers: vec![proxy.url.clone()],
        ..Default::default()
    };
    s.collector.enabled = false;
    let gw = jets3_gateway::start(s, Some(cfg)).await.expect("start");
    let admin = gw.admin_addr().expect("admin");
    let ready = eventually(60, || async {
        try_send_raw(
            admin,
            &RawRequest::new("GET", "/readyz").to_bytes(&admin.to_string()),
        )
        .await
        .is_some_and(|r| r.status == 200)
    })
    .await;
    assert!(ready, "gateway ready on the cluster");
    cluster.leader_of(&format!("OBJ_{b}")).await;
    let s3 = s3_client(ClientOpts {
        endpoint: format!("http://{}", gw.s3_addr()),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        ..Default::default()
    });
    let client = async_nats::connect(cluster.urls()[1].as_str())
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let collector = Collector::new(
        gw.gateway().store.clone(),
        CollectorSettings {
            grace_seconds: 1,
            ..Default::default()
        },
    );
    R3 {
        _cluster: cluster,
        proxy,
        gw,
        s3,
        js,
        collector,
    }
}

impl R3 {
    /// Writes a retire record for the chunks of the version whose metadata `subject` holds
    /// (what a commit whose answer was lost leaves); the record's KV key.
    async fn retire_by_hand(&self, b: &str, subject: &str, key: &str) -> String {
        let stream = self
            .js
            .get_stream(format!("OBJ_{b}"))
            .await
            .expect("stream");
        let msg = stream
            .get_last_raw_message_by_subject(subject)
            .await
            .expect("metadata");
        let info: serde_json::Value = serde_json::from_slice(&msg.payload).expect("json");
        let nuid = info["nuid"].as_str().expect("nuid");
        let record = Retired {
            key: key.into(),
            size: info["size"].as_u64().unwrap_or_default(),
            why: "replaced".into(),
            owner: None,
        };
        let record_key = format!("{b}.{nuid}");
        self.gc()
            .await
            .put(
                &record_key,
                serde_json::to_vec(&record).expect("encode").into(),
            )
            .await
            .expect("record");
        record_key
    }

    async fn gc(&self) -> async_nats::jetstream::kv::Store {
        self.js.get_key_value(GC_KV).await.expect("gc kv")
    }

    /// Runs collector passes until `record` is forgotten and the stream holds `chunks` chunk
    /// subjects.
    async fn collect_until(&self, b: &str, record: &str, chunks: usize) -> bool {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let gc = self.gc().await;
        eventually(20, || async {
            let _ = self.collector.pass(None, false).await;
            let forgotten = matches!(gc.get(record).await, Ok(None));
            forgotten && chunk_count(&self.js, b).await == chunks
        })
        .await
    }
}

/// A version left current with a retire record is kept, a replaced one is purged, and no
/// Direct Get (which any replica may answer) decides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_check_before_a_purge_asks_the_stream_leader() {
    let b = unique_bucket("purge-r3");
    let env = r3(&b).await;
    let kept = data(300 << 10, 1);
    put(&env.s3, &b, "kept", &kept).await;
    put(&env.s3, &b, "replaced", &data(200 << 10, 2)).await;
    put(&env.s3, &b, "replaced", &data(100 << 10, 3)).await;
    let record = env
        .retire_by_hand(&b, &meta_subject(&b, "kept"), "kept")
        .await;

    let direct = format!("$JS.API.DIRECT.GET.OBJ_{b}.{}", meta_subject(&b, "kept"));
    let leader = format!("$JS.API.STREAM.MSG.GET.OBJ_{b}");
    let (direct_before, leader_before) = (
        env.proxy.publishes_to(&direct),
        env.proxy.publishes_to(&leader),
    );
    assert!(
        env.collect_until(&b, &record, 2).await,
        "the replaced version is purged and the record of the live one forgotten"
    );
    assert_eq!(
        env.proxy.publishes_to(&direct) - direct_before,
        0,
        "no Direct Get decided whether \"kept\" is referenced"
    );
    assert!(
        env.proxy.publishes_to(&leader) > leader_before,
        "the stream leader was asked"
    );
    assert!(
        get_bytes(&env.s3, &b, "kept").await == kept,
        "the live version stays whole"
    );
    env.gw.shutdown().await;
}

/// With versioning, the leader's noncurrent versions count too: a retired noncurrent version
/// that is still listed is kept, readable by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noncurrent_version_on_the_leader_is_kept() {
    use aws_sdk_s3::types::BucketVersioningStatus;
    let b = unique_bucket("purge-r3v");
    let env = r3(&b).await;
    // An overwrite before versioning: its retire record makes the gateway create the KV.
    put(&env.s3, &b, "warm", &data(1000, 6)).await;
    put(&env.s3, &b, "warm", &data(1000, 7)).await;
    set_versioning(&env.s3, &b, BucketVersioningStatus::Enabled).await;
    let old = data(200 << 10, 4);
    let first = ok(
        env.s3
            .put_object()
            .bucket(&b)
            .key("k")
            .body(old.clone().into())
            .send()
            .await,
        "PUT",
    );
    let id = first.version_id().expect("a version id").to_string();
    put(&env.s3, &b, "k", &data(100 << 10, 5)).await;
    let subject = version_subject(&b, "k", Some(&id));
    let record = env.retire_by_hand(&b, &subject, "k").await;
    assert!(
        env.collect_until(&b, &record, 3).await,
        "the record of the noncurrent version is forgotten, its chunks kept"
    );
    assert!(
        get_version_bytes(&env.s3, &b, "k", &id).await == old,
        "the noncurrent version stays whole"
    );
    env.gw.shutdown().await;
}

/// How many chunk subjects bucket `b`'s stream holds.
async fn chunk_count(js: &async_nats::jetstream::Context, b: &str) -> usize {
    use futures::TryStreamExt;
    let stream = js.get_stream(format!("OBJ_{b}")).await.expect("stream");
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("$O.{b}.C.>"))
        .await
        .expect("subjects")
        .try_collect()
        .await
        .expect("subjects");
    subjects.len()
}

/// GET and HEAD of a noncurrent and of the current version by id read both from the leader:
/// no Direct Get of the key's metadata or of the version's subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_by_version_id_asks_the_stream_leader() {
    use aws_sdk_s3::types::BucketVersioningStatus;
    let b = unique_bucket("version-r3");
    let env = r3(&b).await;
    set_versioning(&env.s3, &b, BucketVersioningStatus::Enabled).await;
    let bodies = [data(3000, 8), data(4000, 9)];
    let mut ids = Vec::new();
    for body in &bodies {
        let out = ok(
            env.s3
                .put_object()
                .bucket(&b)
                .key("k")
                .body(body.clone().into())
                .send()
                .await,
            "PUT",
        );
        ids.push(out.version_id().expect("a version id").to_string());
    }
    let direct = |subject: String| format!("$JS.API.DIRECT.GET.OBJ_{b}.{subject}");
    let watched = [
        direct(meta_subject(&b, "k")),
        direct(version_subject(&b, "k", Some(&ids[0]))),
    ];
    let before: Vec<usize> = watched.iter().map(|w| env.proxy.publishes_to(w)).collect();
    for (id, body) in ids.iter().zip(&bodies) {
        assert!(
            get_version_bytes(&env.s3, &b, "k", id).await == *body,
            "version {id} reads back"
        );
        let head = ok(
            env.s3
                .head_object()
                .bucket(&b)
                .key("k")
                .version_id(id)
                .send()
                .await,
            "HEAD by version id",
        );
        assert_eq!(head.content_length(), Some(body.len() as i64));
    }
    for (w, n) in watched.iter().zip(before) {
        assert_eq!(env.proxy.publishes_to(w) - n, 0, "no Direct Get of {w}");
    }
    env.gw.shutdown().await;
}
