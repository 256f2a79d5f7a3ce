//! On a replicated bucket, the reads that decide a purge (is a retired version referenced
//! again?) or answer for a version (GET and HEAD with a version id) ask the stream leader. A
//! Direct Get may be answered by a replica that is behind (a frozen stream leader that comes
//! back answered with an older version: see `failover.rs`): a purge decided so would take the
//! chunks of a live version, a read would answer NoSuchVersion for one that exists. The
//! collector's orphan scan reads at least as far as the leader held when it began.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use jets3_gateway::config::settings::CollectorSettings;
use jets3_gateway::store::lifecycle::{Retired, GC_KV};
use jets3_gateway::store::meta::meta_subject;
use jets3_gateway::store::versions::version_subject;
use jets3_gateway::store::Collector;
use jets3_gateway::{GatewayHandle, NatsSettings};

use crate::common::*;
use crate::netfault::FaultProxy;
use crate::retried_complete::{leave_claim, list, uploaded, version_ids};

/// A gateway (its own collector off) on a three-node cluster through a proxy, serving bucket
/// `b` with three replicas; a client of it, and a JetStream context on another node.
struct R3 {
    cluster: NatsCluster,
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
    // The store's orphan horizon (the tests' own collectors run the passes).
    s.collector.orphan_after_seconds = 4;
    let gw = jets3_gateway::start(s, Some(cfg)).await.expect("start");
    let admin = gw.admin_addr().expect("admin");
    assert!(
        ready_within(admin, 60).await,
        "gateway ready on the cluster"
    );
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
        cluster,
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

    /// With versioning on, key "k" with a noncurrent version of 200 KiB whose chunks also
    /// have a retire record (and "warm", whose overwrite before versioning made the gateway
    /// create the KV): the version's id, its bytes and the record's key.
    async fn noncurrent_retired_by_hand(&self, b: &str) -> (String, Vec<u8>, String) {
        use aws_sdk_s3::types::BucketVersioningStatus;
        put(&self.s3, b, "warm", &data(1000, 6)).await;
        put(&self.s3, b, "warm", &data(1000, 7)).await;
        set_versioning(&self.s3, b, BucketVersioningStatus::Enabled).await;
        let old = data(200 << 10, 4);
        let first = ok(
            self.s3
                .put_object()
                .bucket(b)
                .key("k")
                .body(old.clone().into())
                .send()
                .await,
            "PUT",
        );
        let id = first.version_id().expect("a version id").to_string();
        put(&self.s3, b, "k", &data(100 << 10, 5)).await;
        let subject = version_subject(b, "k", Some(&id));
        let record = self.retire_by_hand(b, &subject, "k").await;
        (id, old, record)
    }

    /// A bare NATS protocol connection to the third server, to answer requests by hand.
    async fn raw_connection(&self) -> tokio::net::TcpStream {
        let url = self.cluster.urls()[2]
            .trim_start_matches("nats://")
            .to_string();
        let mut conn = tokio::net::TcpStream::connect(url).await.expect("connect");
        let hello = b"CONNECT {\"verbose\":false,\"headers\":true}\r\n";
        conn.write_all(hello).await.expect("connect");
        conn
    }

    /// Plays a replica that is behind, for the requests to subjects starting with `api`
    /// that the proxy holds back from the servers: answers each first with "404 Message Not
    /// Found", a Direct Get's answer from a replica that lacks the message. Runs until
    /// dropped.
    async fn answer_not_found(&self, api: &str) {
        let mut stale = self.raw_connection().await;
        let mut done = 0;
        loop {
            for reply in self.proxy.replies_to(api).into_iter().skip(done) {
                let status = "NATS/1.0 404 Message Not Found\r\n\r\n";
                let n = status.len();
                let frame = format!("HPUB {reply} {n} {n}\r\n{status}\r\n");
                stale.write_all(frame.as_bytes()).await.expect("answer");
                done += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Plays a stream that is not listening (being created, or between leaders) for the
    /// requests to subjects starting with one of `prefixes`, which the proxy loses: answers
    /// the first `n` with "503 No Responders" (or as many as come within 10 s), then
    /// forwards everything again.
    async fn answer_no_responders(&self, prefixes: &[&str], n: usize) {
        let requests = || {
            prefixes
                .iter()
                .flat_map(|p| self.proxy.replies_to(p))
                .collect::<std::collections::HashSet<_>>()
        };
        let mut seen = requests();
        self.proxy.lose_publishes_to(prefixes);
        let mut answerer = self.raw_connection().await;
        let mut done = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while done < n && tokio::time::Instant::now() < deadline {
            for reply in requests() {
                if done == n || !seen.insert(reply.clone()) {
                    continue;
                }
                let status = "NATS/1.0 503\r\n\r\n";
                let len = status.len();
                let frame = format!("HPUB {reply} {len} {len}\r\n{status}\r\n");
                answerer.write_all(frame.as_bytes()).await.expect("answer");
                done += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.proxy.heal();
    }

    /// Runs `work` while the gateway's Direct Gets of `stream` reach only a replica that is
    /// behind ([`R3::answer_not_found`]).
    async fn behind<T>(&self, stream: &str, work: impl std::future::Future<Output = T>) -> T {
        let api = format!("$JS.API.DIRECT.GET.{stream}");
        self.proxy
            .hold_publishes_to(&[api.as_str()], Duration::from_secs(2));
        let done = tokio::select! {
            done = work => done,
            _ = self.answer_not_found(&api) => unreachable!(),
        };
        self.proxy.heal();
        done
    }

    async fn gc(&self) -> async_nats::jetstream::kv::Store {
        self.js.get_key_value(GC_KV).await.expect("gc kv")
    }

    /// Runs collector passes until `record` is forgotten and the stream holds `chunks` chunk
    /// subjects; when they never do, prints what the last pass left.
    async fn collect_until(&self, b: &str, record: &str, chunks: usize) -> bool {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let gc = self.gc().await;
        let last = std::sync::Mutex::new(String::new());
        let done = eventually(20, || async {
            let pass = self.collector.pass(None, false).await;
            let kept = gc.get(record).await.map(|r| r.is_some());
            let subjects = chunk_subjects(&self.js, b).await;
            let done = matches!(kept, Ok(false)) && subjects.len() == chunks;
            *last.lock().unwrap() =
                format!("pass {pass:?}, record kept {kept:?}, chunk subjects {subjects:?}");
            done
        })
        .await;
        if !done {
            eprintln!(
                "collect_until({b}, {record}, {chunks}): {}",
                last.lock().unwrap()
            );
        }
        done
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
    let b = unique_bucket("purge-r3v");
    let env = r3(&b).await;
    let (id, old, record) = env.noncurrent_retired_by_hand(&b).await;
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

/// A replica that has lost its leader answers STREAM.INFO from what it holds (nats-server's
/// `jsStreamInfoRequest` lets a leaderless member of the group answer), and one that is
/// behind lacks a version written meanwhile. The collector's last check before a purge lists
/// the key's versions: it takes no answer that is not the leader's. No timing of real servers
/// makes such a replica answer first on demand, so the test plays it: the proxy holds the
/// listing requests back from the servers for a while, and the test answers each first with
/// what such a replica sends (no leader, itself among the replicas, no subjects).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_leader_does_not_list_a_keys_versions() {
    let b = unique_bucket("stale-info");
    let env = r3(&b).await;
    let (id, old, record) = env.noncurrent_retired_by_hand(&b).await;

    // What a replica without a leader, and behind, answers.
    let stale = async_nats::connect(env.cluster.urls()[2].as_str())
        .await
        .expect("connect");
    let api = format!("$JS.API.STREAM.INFO.OBJ_{b}");
    let real = stale
        .request(api.clone(), "".into())
        .await
        .expect("stream info");
    let mut answer: serde_json::Value = serde_json::from_slice(&real.payload).expect("json");
    let cluster = &mut answer["cluster"];
    let leader = cluster["leader"].take();
    cluster["replicas"]
        .as_array_mut()
        .expect("replicas")
        .push(serde_json::json!({"name": leader, "current": true, "active": 0}));
    cluster.as_object_mut().expect("cluster").remove("leader");
    answer["state"]
        .as_object_mut()
        .expect("state")
        .remove("subjects");
    answer["state"]["num_subjects"] = 0.into();
    answer["total"] = 0.into();
    let answer = bytes::Bytes::from(answer.to_string());

    env.proxy
        .hold_publishes_to(&[api.as_str()], Duration::from_secs(2));
    let versions = jets3_gateway::store::versions::key_versions_filter(&b, "k");
    let answered = || env.proxy.api_replies(&api, &versions);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let passes = async {
        for _ in 0..20 {
            let _ = env.collector.pass(None, false).await;
            if !answered().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let play = async {
        let mut done = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            for reply in answered().into_iter().skip(done) {
                stale.publish(reply, answer.clone()).await.expect("answer");
                done += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(40), async {
        tokio::select! {
            _ = passes => {}
            _ = play => {}
        }
    })
    .await;
    env.proxy.heal();
    assert!(
        answered().len() > 1,
        "the collector listed the key's versions, took no answer without the leader, and asked again"
    );
    let nuid = record.strip_prefix(&format!("{b}.")).expect("a record key");
    let subject = format!("$O.{b}.C.{nuid}");
    assert!(
        chunk_subjects(&env.js, &b)
            .await
            .iter()
            .any(|(s, _)| *s == subject),
        "no version's chunks were purged on a stale replica's word"
    );
    assert!(
        env.collect_until(&b, &record, 3).await,
        "with the leader answering, the record is forgotten and the version kept"
    );
    assert!(
        get_version_bytes(&env.s3, &b, "k", &id).await == old,
        "the noncurrent version stays whole"
    );
    env.gw.shutdown().await;
}

/// A listing shows what the stream leader holds: an object written through another server
/// is listed at once, even when the gateway's listing index follows a replica that is behind.
/// The test plays that replica: the proxy holds the index's deliveries back, and answers its
/// Direct Gets first with "404 Message Not Found" (nothing newer), as such a replica does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_shows_what_the_leader_holds() {
    let b = unique_bucket("list-r3");
    let env = r3(&b).await;
    put(&env.s3, &b, "a", &data(1000, 1)).await;
    assert_eq!(list_all_keys(&env.s3, &b).await, ["a"]);
    env.proxy
        .hold_deliveries_replying_to(&[&format!("$JS.ACK.OBJ_{b}.")], Duration::from_secs(2));
    let store = env
        .js
        .get_object_store(&b)
        .await
        .expect("the bucket as a native object store");
    store
        .put("late", &mut &b"written natively"[..])
        .await
        .expect("native put");
    let listed = env
        .behind(&format!("OBJ_{b}"), list_all_keys(&env.s3, &b))
        .await;
    assert_eq!(
        listed,
        ["a", "late"],
        "the listing shows the leader's objects"
    );
    env.gw.shutdown().await;
}

/// What a write or a delete decides without a compare-and-set rests on what the stream
/// leader holds: a refused condition (412, or 404 for If-Match on no object), a delete of a
/// key that shows no object, "no such version", the subject a tagging update goes to. The
/// gateway looks keys up with Direct Gets, which the test answers first with "404 Message
/// Not Found" (as a replica that has not yet applied the writes does): each request must
/// still act on the objects written before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_decided_without_a_compare_and_set_ask_the_leader() {
    use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging};
    let b = unique_bucket("cas-r3");
    let env = r3(&b).await;
    let etag = put(&env.s3, &b, "cond", &data(1000, 1)).await;
    put(&env.s3, &b, "gone", &data(1000, 2)).await;
    put(&env.s3, &b, "over", &data(1000, 5)).await;
    put(&env.s3, &b, "tagged", &data(1000, 7)).await;
    let direct = format!("$JS.API.DIRECT.GET.OBJ_{b}.{}", meta_subject(&b, "over"));
    let before = env.proxy.publishes_to(&direct);
    let tag = Tag::builder().key("t").value("1").build().expect("tag");
    let tagging = Tagging::builder().tag_set(tag).build().expect("tagging");
    let (overwritten, replaced, deleted, tagged) = env
        .behind(&format!("OBJ_{b}"), async {
            // A blind overwrite: its compare-and-set, refused on what the replica showed,
            // tries again on what the leader holds.
            let overwritten = env
                .s3
                .put_object()
                .bucket(&b)
                .key("over")
                .body(data(1000, 6).into())
                .send()
                .await;
            let replaced = env
                .s3
                .put_object()
                .bucket(&b)
                .key("cond")
                .if_match(&etag)
                .body(data(1000, 4).into())
                .send()
                .await;
            let deleted = env.s3.delete_object().bucket(&b).key("gone").send().await;
            let tagged = env
                .s3
                .put_object_tagging()
                .bucket(&b)
                .key("tagged")
                .tagging(tagging)
                .send()
                .await;
            (overwritten, replaced, deleted, tagged)
        })
        .await;
    ok(overwritten, "PUT over an existing key");
    assert!(
        env.proxy.publishes_to(&direct) - before <= 1,
        "after a refused compare-and-set the overwrite asked the leader"
    );
    assert_eq!(get_bytes(&env.s3, &b, "over").await, data(1000, 6));
    ok(replaced, "PUT If-Match the current ETag");
    ok(deleted, "DELETE");
    assert_eq!(get_bytes(&env.s3, &b, "cond").await, data(1000, 4));
    let r = env.s3.get_object().bucket(&b).key("gone").send().await;
    assert_eq!(sdk_err(r).0, 404, "the deleted key is gone");
    ok(tagged, "PutObjectTagging");
    let tags = env.s3.get_object_tagging().bucket(&b).key("tagged").send();
    let tags = ok(tags.await, "GetObjectTagging");
    assert_eq!(tags.tag_set().len(), 1, "the object is tagged");

    set_versioning(&env.s3, &b, BucketVersioningStatus::Enabled).await;
    let id = put_version(&env.s3, &b, "versioned", &data(1000, 3)).await;
    let delete = env
        .s3
        .delete_object()
        .bucket(&b)
        .key("versioned")
        .version_id(&id)
        .send();
    ok(
        env.behind(&format!("OBJ_{b}"), delete).await,
        "DELETE by version id",
    );
    let r = env
        .s3
        .get_object()
        .bucket(&b)
        .key("versioned")
        .version_id(&id)
        .send()
        .await;
    assert_eq!(sdk_err(r).0, 404, "the deleted version is gone");
    env.gw.shutdown().await;
}

/// CreateMultipartUpload, UploadPart and CompleteMultipartUpload write their records to
/// jets3's uploads KV bucket (three replicas here), and UploadPart reads the part's earlier
/// record first: a request nothing answers, while that bucket is being created or is
/// between leaders, is tried again, as object writes are, instead of answering 503.
#[tokio::test]
async fn upload_records_nothing_answers_are_written_once_something_does() {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let b = unique_bucket("mpu-nr");
    let env = r3(&b).await;
    let s3 = &env.s3;
    let first = crate::failover::retried(60, "the uploads KV's creation", || {
        s3.create_multipart_upload().bucket(&b).key("first").send()
    })
    .await;
    let records = "$KV.jets3_uploads.";
    let before = env.proxy.replies_to(records).len();
    // The record's publish and, after it, the Direct Get by which async-nats tells a key that
    // exists from a failed write: neither finds a responder, twice.
    let lookups = "$JS.API.DIRECT.GET.KV_jets3_uploads.";
    let (both, records_only) = ([records, lookups], [records]);
    let (created, ()) = tokio::join!(
        s3.create_multipart_upload().bucket(&b).key("k").send(),
        env.answer_no_responders(&both, 4),
    );
    let id = ok(created, "CreateMultipartUpload")
        .upload_id()
        .expect("UploadId")
        .to_string();
    let tried = env.proxy.replies_to(records).len() - before;
    assert!(tried > 2, "tried again: {tried} publishes");
    let mut want = vec![id.clone(), first.upload_id().expect("UploadId").to_string()];
    want.sort();
    assert_eq!(upload_ids(s3, &b).await, want);

    // UploadPart reads the upload's record, then the part's earlier record, then writes the
    // part's: each in turn finds no responder, twice. The Direct Gets name the key.
    let nats = b.replace('.', "_");
    let upload = format!("{lookups}{records}{nats}.{id}");
    let (part_read, part_write) = (format!("{upload}.1"), format!("{records}{nats}.{id}.1"));
    let body = data(100 << 10, 3);
    for step in [&upload, &part_read, &part_write] {
        let before = env.proxy.replies_to(step).len();
        let prefixes = [step.as_str()];
        let (stored, ()) = tokio::join!(
            s3.upload_part()
                .bucket(&b)
                .key("k")
                .upload_id(&id)
                .part_number(1)
                .body(body.clone().into())
                .send(),
            env.answer_no_responders(&prefixes, 2),
        );
        ok(stored, "UploadPart");
        let tried = env.proxy.replies_to(step).len() - before;
        assert!(tried > 2, "tried again: {tried} requests to {step}");
    }
    // ListParts asks the leader how far its records go first.
    let floor = ["$JS.API.STREAM.MSG.GET.KV_jets3_uploads"];
    let before = env.proxy.replies_to(floor[0]).len();
    let (parts, ()) = tokio::join!(
        s3.list_parts().bucket(&b).key("k").upload_id(&id).send(),
        env.answer_no_responders(&floor, 2),
    );
    let parts = ok(parts, "ListParts");
    let tried = env.proxy.replies_to(floor[0]).len() - before;
    assert!(tried > 2, "tried again: {tried} requests to {floor:?}");
    let sizes: Vec<_> = parts.parts().iter().map(|p| p.size()).collect();
    assert_eq!(sizes, [Some(100 << 10)]);
    // An upload no replica shows is asked of the leader before it is called missing: that
    // question too finds no responder, twice, and is asked again.
    let before = env.proxy.replies_to(floor[0]).len();
    let (missing, ()) = tokio::join!(
        s3.upload_part()
            .bucket(&b)
            .key("k")
            .upload_id("NoSuchUploadId0123456789")
            .part_number(1)
            .body(body.clone().into())
            .send(),
        env.answer_no_responders(&floor, 2),
    );
    assert_eq!(sdk_err(missing), (404, "NoSuchUpload".into()));
    let tried = env.proxy.replies_to(floor[0]).len() - before;
    assert!(tried > 2, "tried again: {tried} requests to {floor:?}");

    let etag = parts.parts()[0].e_tag().expect("ETag").to_string();
    let done = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
        .build();
    let before = env.proxy.replies_to(records).len();
    let (completed, ()) = tokio::join!(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(done)
            .send(),
        env.answer_no_responders(&records_only, 2),
    );
    ok(completed, "CompleteMultipartUpload");
    let tried = env.proxy.replies_to(records).len() - before;
    assert!(tried > 2, "tried again: {tried} publishes");
    assert!(get_bytes(s3, &b, "k").await == body);

    // AbortMultipartUpload's purge of the record (the record's read played above).
    let first = first.upload_id().expect("UploadId");
    let record = format!("{records}{nats}.{first}");
    let before = env.proxy.replies_to(&record).len();
    let prefixes = [record.as_str()];
    let (aborted, ()) = tokio::join!(
        s3.abort_multipart_upload()
            .bucket(&b)
            .key("first")
            .upload_id(first)
            .send(),
        env.answer_no_responders(&prefixes, 2),
    );
    ok(aborted, "AbortMultipartUpload");
    let tried = env.proxy.replies_to(&record).len() - before;
    assert!(tried > 2, "tried again: {tried} publishes");
    let listed = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads",
    );
    assert!(listed.uploads().is_empty(), "{:?}", listed.uploads());
}

/// An upload and its parts recorded through another gateway are there at once: "no such
/// upload" (an UploadPart refused, or its part dropped as the upload's record seemed gone)
/// and the parts a listing or a Complete finds rest on what the leader of the uploads' KV
/// stream holds, not on a replica that has not yet applied the records (played as in the
/// tests above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_and_its_parts_are_there_as_far_as_the_leader_holds() {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let b = unique_bucket("mpu-r3");
    let env = r3(&b).await;
    let s3 = &env.s3;
    // The first upload creates the uploads' KV bucket (three replicas), which on a loaded
    // machine can outlast the request.
    let id = crate::failover::retried(60, "CreateMultipartUpload", || {
        s3.create_multipart_upload().bucket(&b).key("k").send()
    })
    .await
    .upload_id()
    .expect("UploadId")
    .to_string();
    let body = data(6 << 20, 7);
    let (listed, completed) = env
        .behind("KV_jets3_uploads", async {
            let part = s3.upload_part().bucket(&b).key("k").upload_id(&id);
            let part = ok(
                part.part_number(1).body(body.clone().into()).send().await,
                "UploadPart",
            );
            let listed = s3
                .list_parts()
                .bucket(&b)
                .key("k")
                .upload_id(&id)
                .send()
                .await;
            let done = CompletedMultipartUpload::builder()
                .parts(
                    CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap_or_default())
                        .build(),
                )
                .build();
            let completed = s3
                .complete_multipart_upload()
                .bucket(&b)
                .key("k")
                .upload_id(&id)
                .multipart_upload(done)
                .send()
                .await;
            (listed, completed)
        })
        .await;
    let listed = ok(listed, "ListParts");
    assert_eq!(listed.parts().len(), 1, "the part is listed");
    ok(completed, "Complete");
    assert!(
        get_bytes(s3, &b, "k").await == body,
        "the part is the object"
    );
    env.gw.shutdown().await;
}

/// A GET whose chunk Direct Gets reach a replica that has not yet applied them (the key
/// itself is read from the leader) takes the chunks from the leader, whole and at once,
/// for a whole object, a multi-chunk one and a range deep inside it; it does not fail with
/// "chunks missing" after its retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_a_replica_lacks_are_read_from_the_leader() {
    let b = unique_bucket("chunks-r3");
    let env = r3(&b).await;
    let (small, large) = (data(1000, 1), data(300 << 10, 2));
    put(&env.s3, &b, "small", &small).await;
    put(&env.s3, &b, "large", &large).await;
    let s3 = &env.s3;
    let (got_small, got_large, got_range) = env
        .behind(&format!("OBJ_{b}"), async {
            let range = s3
                .get_object()
                .bucket(&b)
                .key("large")
                .range("bytes=200000-250000")
                .send()
                .await;
            let range = ok(range, "Range GET").body.collect().await;
            (
                get_bytes(s3, &b, "small").await,
                get_bytes(s3, &b, "large").await,
                range.expect("range body").into_bytes().to_vec(),
            )
        })
        .await;
    assert!(got_small == small, "the small object");
    assert!(got_large == large, "the large object");
    assert!(got_range == large[200000..=250000], "the range");
    env.gw.shutdown().await;
}

/// DeleteBucket's last check, behind the fence, counts what the stream leader holds: the
/// listing index may follow a replica that is behind, and its catch-up asks Direct Gets such
/// a replica may answer, so either could miss an object just written and the bucket would be
/// deleted with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_checks_emptiness_as_far_as_the_leader_holds() {
    let b = unique_bucket("del-r3");
    let env = r3(&b).await;
    put(&env.s3, &b, "gone", &data(1000, 1)).await;
    ok(
        env.s3.delete_object().bucket(&b).key("gone").send().await,
        "DELETE",
    );
    // The gateway's index is running; an object lands through another server.
    assert!(env.s3.list_objects_v2().bucket(&b).send().await.is_ok());
    let store = env
        .js
        .get_object_store(&b)
        .await
        .expect("the bucket as a native object store");
    store
        .put("late", &mut &b"written natively"[..])
        .await
        .expect("native put");
    let refused = env.s3.delete_bucket().bucket(&b).send().await;
    assert_eq!(sdk_err(refused), (409, "BucketNotEmpty".to_string()));
    store.delete("late").await.expect("native delete");
    let leader = format!("$JS.API.STREAM.MSG.GET.OBJ_{b}");
    let before = env.proxy.publishes_to(&leader);
    ok(
        env.s3.delete_bucket().bucket(&b).send().await,
        "DeleteBucket of an empty bucket",
    );
    assert!(
        env.proxy.publishes_to(&leader) > before,
        "the stream leader was asked how far the bucket goes"
    );
    assert!(env.js.get_stream(format!("OBJ_{b}")).await.is_err());
    env.gw.shutdown().await;
}

/// A long read registered in `jets3_reads` holds the version it reads past the grace period.
/// The collector asks the KV stream's leader whether one does: a Direct Get, which a replica
/// behind answers without the registration, would let the version be purged under the read.
/// The test plays that replica: the proxy holds Direct Gets to the KV back from the servers
/// while the test answers each first with "404 Message Not Found", as such a replica does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_leader_holds_keeps_the_version_it_reads() {
    use futures::TryStreamExt;
    use jets3_gateway::store::lifecycle::READS_KV;
    let b = unique_bucket("held-r3");
    let env = r3(&b).await;
    put(&env.s3, &b, "k", &data(300 << 10, 1)).await;
    put(&env.s3, &b, "k", &data(1000, 2)).await;
    let gc = env.gc().await;
    let records: Vec<String> = gc
        .keys()
        .await
        .expect("keys")
        .try_collect()
        .await
        .expect("keys");
    let retired = records
        .iter()
        .find_map(|k| k.strip_prefix(&format!("{b}.")))
        .expect("the replaced version's retire record")
        .to_string();
    // The registry as the gateway makes it: registrations expire after the grace period, so
    // a long read refreshes its own.
    let reads = env
        .js
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: READS_KV.into(),
            history: 1,
            max_age: Duration::from_secs(2),
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .expect("reads KV");
    let reader = format!("{b}.{retired}.reader");
    let register = || reads.put(reader.clone(), bytes::Bytes::new());
    // A stream just created on three servers answers publishes once its group has formed:
    // until then a publish finds no responders (async-nats says StreamNotFound).
    let mut first = register().await;
    for _ in 0..50 {
        if first.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        first = register().await;
    }
    first.expect("a registered read");

    let api = format!("$JS.API.DIRECT.GET.KV_{READS_KV}");
    env.proxy
        .hold_publishes_to(&[api.as_str()], Duration::from_secs(2));
    let asked = || env.proxy.replies_to(&api);
    let passes = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for _ in 0..20 {
            let _ = env.collector.pass(None, false).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let refresh = async {
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            register().await.expect("the read goes on");
        }
    };
    tokio::select! {
        _ = passes => {}
        _ = env.answer_not_found(&api) => {}
        _ = refresh => {}
    }
    env.proxy.heal();
    assert!(
        asked().is_empty(),
        "no Direct Get decided whether a read holds the version"
    );
    let subject = format!("$O.{b}.C.{retired}");
    assert!(
        chunk_subjects(&env.js, &b)
            .await
            .iter()
            .any(|(s, _)| *s == subject),
        "the version a read holds is not purged"
    );
    reads.purge(&reader).await.expect("the read ends");
    let record = format!("{b}.{retired}");
    assert!(
        env.collect_until(&b, &record, 1).await,
        "once no read holds it, the version is purged"
    );
    env.gw.shutdown().await;
}

/// A Complete that takes over a dead gateway's asks the stream leader whether that one
/// committed: a replica that is behind would say it did not, and the object would be
/// committed a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_asks_the_stream_leader_whether_the_dead_complete_committed() {
    use aws_sdk_s3::types::BucketVersioningStatus;
    let b = unique_bucket("takeover-r3");
    let env = r3(&b).await;
    set_versioning(&env.s3, &b, BucketVersioningStatus::Enabled).await;
    let parts = vec![data(5 << 20, 31), data(10, 32)];
    let (id, etags) = uploaded(&env.s3, &b, "k", &parts).await;
    let kv = env.js.get_key_value("jets3_uploads").await.expect("KV");
    let record = format!("{b}.{id}");
    let in_progress = kv.get(&record).await.expect("get").expect("the upload");
    let complete = || {
        env.s3
            .complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(list(&etags))
            .send()
    };
    let first = ok(complete().await, "Complete");
    // What a gateway that died right after its commit leaves.
    let stream = env.js.get_stream(format!("OBJ_{b}")).await.expect("stream");
    let meta = stream
        .direct_get_last_for_subject(meta_subject(&b, "k"))
        .await
        .expect("metadata");
    let info: serde_json::Value = serde_json::from_slice(&meta.payload).expect("json");
    let nuid = info["nuid"].as_str().expect("nuid").to_string();
    kv.put(&record, in_progress).await.expect("put");
    leave_claim(&env.js, &b, &id, &etags, &nuid).await;
    let direct = format!("$JS.API.DIRECT.GET.OBJ_{b}.{}", meta_subject(&b, "k"));
    let before = env.proxy.publishes_to(&direct);
    let again = ok(complete().await, "Complete retried after the commit");
    assert_eq!(again.e_tag(), first.e_tag());
    assert_eq!(
        env.proxy.publishes_to(&direct) - before,
        0,
        "no Direct Get decided whether the dead Complete committed"
    );
    assert_eq!(version_ids(&env.s3, &b).await.len(), 1, "committed once");
    env.gw.shutdown().await;
}

/// The chunk subjects bucket `b`'s stream holds, with their message counts.
async fn chunk_subjects(js: &async_nats::jetstream::Context, b: &str) -> Vec<(String, usize)> {
    use futures::TryStreamExt;
    let stream = js.get_stream(format!("OBJ_{b}")).await.expect("stream");
    stream
        .info_with_subjects(format!("$O.{b}.C.>"))
        .await
        .expect("subjects")
        .try_collect()
        .await
        .expect("subjects")
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
        ids.push(put_version(&env.s3, &b, "k", body).await);
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

/// A collector pass's orphan scan reads the bucket's metadata and the upload records at least
/// as far as the stream leaders held them when it began (it asks each leader for the last
/// matching sequence, and a replay does not end before it): a replay or a Direct Get batch
/// answered by a replica that is behind (restarted and catching up) would show the chunks of
/// live objects and parts as orphans; the leader says how old a candidate's chunks are (a
/// replica behind shows an older message). The scan still finds a real orphan, and only that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_scan_reads_as_far_as_the_leader() {
    let b = unique_bucket("scan-r3");
    let env = r3(&b).await;
    let body = data(10_000, 11);
    put(&env.s3, &b, "a", &body).await;
    put(&env.s3, &b, "b", &body).await;
    // An upload with one part: only the uploads KV references its chunks.
    let id = crate::multipart::create_upload(&env.s3, &b, "mp").await;
    let part = data(5 << 20, 12);
    let etag = crate::multipart::upload_part(&env.s3, &b, "mp", &id, 1, &part).await;
    // An orphan: a chunk no metadata names.
    let orphan = "ORPHAN0000000000000001";
    env.js
        .publish(format!("$O.{b}.C.{orphan}"), "lost".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let collector = Collector::new(
        env.gw.gateway().store.clone(),
        CollectorSettings {
            orphan_after_seconds: 4,
            grace_seconds: 1,
            ..Default::default()
        },
    );
    let leader = |stream: &str| format!("$JS.API.STREAM.MSG.GET.{stream}");
    let (obj, kv) = (leader(&format!("OBJ_{b}")), leader("KV_jets3_uploads"));
    let direct = format!("$JS.API.DIRECT.GET.OBJ_{b}.$O.{b}.C.{orphan}");
    let before = (env.proxy.publishes_to(&obj), env.proxy.publishes_to(&kv));
    collector.pass(None, true).await.expect("first pass");
    assert_eq!(
        env.proxy.publishes_to(&direct),
        0,
        "no Direct Get said how old the orphan's chunks are"
    );
    assert!(
        env.proxy.publishes_to(&obj) > before.0,
        "the bucket's leader was asked how far the metadata goes"
    );
    assert!(
        env.proxy.publishes_to(&kv) > before.1,
        "the uploads KV's leader was asked how far the upload records go"
    );
    // Later passes purge the orphan once its grace period is over.
    let purged = eventually(20, || async {
        let _ = collector.pass(None, true).await;
        chunk_subjects(&env.js, &b).await.len() <= 3
    })
    .await;
    assert!(purged, "the orphan is purged");
    assert_eq!(
        chunk_subjects(&env.js, &b).await.len(),
        3,
        "a, b and the part stay"
    );
    assert!(get_bytes(&env.s3, &b, "a").await == body);
    assert!(get_bytes(&env.s3, &b, "b").await == body);
    crate::multipart::complete(&env.s3, &b, "mp", &id, &[etag]).await;
    assert!(
        get_bytes(&env.s3, &b, "mp").await == part,
        "the part's bytes stay"
    );
    env.gw.shutdown().await;
}

/// The last upload record the leader showed when a scan began is removed before the scan
/// reads the records (an upload aborted on another gateway): the scan asks the leader again
/// and goes on, instead of waiting for a record that will never come and failing the pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_goes_on_when_the_last_record_it_waited_for_is_removed() {
    let b = unique_bucket("scan-gone");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| s.collector.enabled = false).await;
    let s3 = env.client();
    let mut ids = Vec::new();
    for key in ["one", "two"] {
        ids.push(crate::multipart::create_upload(&s3, &b, key).await);
    }
    let collector = Collector::new(
        env.gw.as_ref().expect("gateway").gateway().store.clone(),
        CollectorSettings::default(),
    );
    // The records' batch read is held up; meanwhile the last record goes.
    let batch = "$JS.API.DIRECT.GET.KV_jets3_uploads";
    let before = proxy.publishes_to(batch);
    proxy.hold_publishes_to(&[batch], Duration::from_millis(1500));
    let pass = tokio::spawn(async move { collector.pass(None, true).await });
    assert!(
        eventually(10, || async { proxy.publishes_to(batch) > before }).await,
        "the scan read the upload records"
    );
    let kv = env
        .js()
        .await
        .get_stream("KV_jets3_uploads")
        .await
        .expect("kv");
    kv.purge()
        .filter(format!("$KV.jets3_uploads.{b}.{}", ids[1]))
        .await
        .expect("purge");
    let passed = pass.await.expect("pass task");
    assert!(passed.is_ok(), "the pass went on: {passed:?}");
    let uploads = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads",
    );
    assert_eq!(uploads.uploads().len(), 1, "the other upload stays");
}

/// Deleting the current version by id makes the newest noncurrent version current; on a
/// replicated bucket the noncurrent versions it chooses from are read as far as the leader
/// holds them (a replica behind would miss the newest and make an older one current).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_current_version_reads_the_others_as_far_as_the_leader() {
    use aws_sdk_s3::types::BucketVersioningStatus;
    use jets3_gateway::store::versions::key_versions_filter;
    let b = unique_bucket("delete-r3");
    let env = r3(&b).await;
    set_versioning(&env.s3, &b, BucketVersioningStatus::Enabled).await;
    let bodies = [data(2000, 21), data(3000, 22), data(4000, 23)];
    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(put_version(&env.s3, &b, "k", body).await);
    }
    let leader = format!("$JS.API.STREAM.MSG.GET.OBJ_{b}");
    let filter = format!("\"last_by_subj\":\"{}\"", key_versions_filter(&b, "k"));
    let before = env.proxy.api_requests(&leader, &filter);
    ok(
        env.s3
            .delete_object()
            .bucket(&b)
            .key("k")
            .version_id(&ids[2])
            .send()
            .await,
        "DELETE the current version",
    );
    assert!(
        env.proxy.api_requests(&leader, &filter) > before,
        "the leader was asked how far the key's noncurrent versions go"
    );
    assert!(
        get_bytes(&env.s3, &b, "k").await == bodies[1],
        "the newest other version is current"
    );
    env.gw.shutdown().await;
}
