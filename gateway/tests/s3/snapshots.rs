//! Listing snapshots: a gateway that starts from a bucket's shared snapshot (plus the
//! changes since) lists exactly what a full replay lists, tokens work across gateways, and
//! a damaged snapshot is refused.

use aws_sdk_s3::types::BucketVersioningStatus;
use aws_sdk_s3::Client;
use futures::StreamExt;

use jets3_gateway::store::SnapshotPass;

use crate::common::*;
use crate::list::put_many;

/// Writes every bucket's snapshot now, as the collector's leader does, holding at most
/// `batch` changed keys in memory.
async fn write_snapshots_in(env: &Env, batch: usize) -> SnapshotPass {
    let settings = jets3_gateway::config::settings::CollectorSettings {
        snapshot_min_subjects: 0,
        snapshot_batch_keys: batch,
        ..Default::default()
    };
    let store = env.gw().gateway().store.clone();
    let collector = jets3_gateway::store::Collector::new(store, settings);
    collector
        .write_snapshots()
        .await
        .expect("snapshots written")
}

async fn write_snapshots(env: &Env) -> SnapshotPass {
    write_snapshots_in(env, 200_000).await
}

/// Every key of the snapshot KV bucket under `prefix`.
async fn index_keys(env: &Env, prefix: &str) -> Vec<String> {
    let js = env.js().await;
    let kv = js.get_key_value("jets3_index").await.expect("snapshot KV");
    let mut names = kv.keys().await.expect("keys");
    let mut out = Vec::new();
    while let Some(k) = names.next().await {
        let k = k.expect("key");
        if k.starts_with(prefix) {
            out.push(k);
        }
    }
    out.sort();
    out
}

/// A gateway whose collector writes no snapshots (the tests write them when they want).
async fn start(b: &str) -> Env {
    Env::start_with(config_with(&[b]), |s| {
        s.collector.snapshot_interval_seconds = 0
    })
    .await
}

/// A gateway that uses snapshots and writes none.
async fn reader(env: &Env) -> Peer {
    env.peer_with(|s| s.collector.enabled = false).await
}

/// A gateway that does not use snapshots: the reference.
async fn replaying(env: &Env) -> Peer {
    env.peer_with(|s| {
        s.collector.enabled = false;
        s.collector.snapshot_interval_seconds = 0;
    })
    .await
}

/// Every object (key, ETag, size) and common prefix, page by page.
async fn listing(
    s3: &Client,
    b: &str,
    delimiter: Option<&str>,
) -> (Vec<(String, String, i64)>, Vec<String>) {
    let (mut objects, mut prefixes) = (Vec::new(), Vec::new());
    let mut token: Option<String> = None;
    loop {
        let mut req = s3.list_objects_v2().bucket(b).max_keys(700);
        if let Some(d) = delimiter {
            req = req.delimiter(d);
        }
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let page = ok(req.send().await, "ListObjectsV2");
        for o in page.contents() {
            objects.push((
                o.key().unwrap_or_default().to_string(),
                o.e_tag().unwrap_or_default().to_string(),
                o.size().unwrap_or_default(),
            ));
        }
        for p in page.common_prefixes() {
            prefixes.push(p.prefix().unwrap_or_default().to_string());
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return (objects, prefixes),
        }
    }
}

/// Every version (key, version id, latest, delete marker), page by page.
async fn versions(s3: &Client, b: &str) -> Vec<(String, String, bool, bool)> {
    let mut out = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let mut req = s3.list_object_versions().bucket(b).max_keys(97);
        if let Some(k) = &key_marker {
            req = req.key_marker(k);
        }
        if let Some(v) = &version_marker {
            req = req.version_id_marker(v);
        }
        let page = ok(req.send().await, "ListObjectVersions");
        for v in page.versions() {
            out.push((
                v.key().unwrap_or_default().to_string(),
                v.version_id().unwrap_or_default().to_string(),
                v.is_latest() == Some(true),
                false,
            ));
        }
        for m in page.delete_markers() {
            out.push((
                m.key().unwrap_or_default().to_string(),
                m.version_id().unwrap_or_default().to_string(),
                m.is_latest() == Some(true),
                true,
            ));
        }
        if page.is_truncated() != Some(true) {
            out.sort();
            return out;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

async fn delete_many(s3: &Client, b: &str, keys: &[String]) {
    let n = futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let s3 = s3.clone();
            let b = b.to_string();
            async move { ok(s3.delete_object().bucket(b).key(k).send().await, "DELETE") }
        })
        .buffer_unordered(16)
        .count()
        .await;
    assert_eq!(n, keys.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_from_a_snapshot_lists_what_a_replay_lists() {
    let b = unique_bucket("snap");
    let env = start(&b).await;
    let s3 = env.client();
    // Long keys: a few snapshot pages from a few thousand keys.
    let pad = "p".repeat(300);
    let keys: Vec<String> = (0..2500)
        .map(|i| format!("d{}/{pad}{i:05}", i % 7))
        .collect();
    put_many(&s3, &b, &keys).await;
    // Writes while the snapshot is being written (through another gateway).
    let writer = replaying(&env).await;
    let during: Vec<String> = (0..50).map(|i| format!("c/{i:03}")).collect();
    let concurrent = {
        let (w, b, during, gone) = (
            writer.client(),
            b.clone(),
            during.clone(),
            keys[2000..2050].to_vec(),
        );
        tokio::spawn(async move {
            put_many(&w, &b, &during).await;
            delete_many(&w, &b, &gone).await;
        })
    };
    // A small batch: the first snapshot is merged from sorted runs.
    let first = write_snapshots_in(&env, 700).await;
    assert!(first.runs >= 3, "{first:?}");
    concurrent.await.expect("concurrent writes");
    assert!(
        index_keys(&env, &format!("{b}.r.")).await.is_empty(),
        "the runs are removed"
    );

    // Changes after the snapshot: overwrites, deletes, new keys.
    let overwritten: Vec<String> = keys[..40].to_vec();
    for k in &overwritten {
        put(&s3, &b, k, b"changed after the snapshot").await;
    }
    delete_many(&s3, &b, &keys[100..160]).await;
    let added: Vec<String> = (0..30).map(|i| format!("new/{i:03}")).collect();
    put_many(&s3, &b, &added).await;

    let peer = reader(&env).await;
    let fresh = peer.client();
    let reference = replaying(&env).await;
    let from_replay = listing(&reference.client(), &b, None).await;
    let from_snapshot = listing(&fresh, &b, None).await;
    assert!(
        peer.metric("jets3_index_snapshots_loaded_total").await >= 1.0,
        "the second gateway started from the snapshot"
    );
    assert!(
        peer.metric("jets3_index_pages_read_total").await >= 2.0,
        "it read several snapshot pages"
    );
    let mut expected: Vec<String> = keys[..100]
        .iter()
        .chain(&keys[160..2000])
        .chain(&keys[2050..])
        .chain(&added)
        .chain(&during)
        .cloned()
        .collect();
    expected.sort();
    let got: Vec<String> = from_snapshot.0.iter().map(|o| o.0.clone()).collect();
    assert_eq!(got, expected);
    assert_eq!(from_snapshot, from_replay, "keys, ETags and sizes agree");
    let changed = from_snapshot
        .0
        .iter()
        .find(|o| o.0 == overwritten[0])
        .expect("overwritten key listed");
    assert_eq!(changed.1, etag_of(b"changed after the snapshot"));

    let with_delimiter = listing(&fresh, &b, Some("/")).await;
    assert!(with_delimiter.0.is_empty());
    let mut prefixes: Vec<String> = vec!["c/".into()];
    prefixes.extend((0..7).map(|i| format!("d{i}/")));
    prefixes.push("new/".into());
    assert_eq!(with_delimiter.1, prefixes);
    assert_eq!(
        with_delimiter,
        listing(&reference.client(), &b, Some("/")).await
    );
    assert_eq!(
        reference.metric("jets3_index_snapshots_loaded_total").await,
        0.0
    );

    // A continuation token of one gateway works on the other.
    let mut walked = Vec::new();
    let mut token: Option<String> = None;
    for turn in 0.. {
        let client = if turn % 2 == 0 { &s3 } else { &fresh };
        let mut req = client.list_objects_v2().bucket(&b).max_keys(333);
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let page = ok(req.send().await, "alternating page");
        walked.extend(page.contents().iter().map(|o| o.key().unwrap().to_string()));
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, expected);

    // Read-after-write on the snapshot-started gateway, for writes through either.
    put(&s3, &b, "d0/zz-after", b"x").await;
    delete_many(&fresh, &b, &keys[..1]).await;
    let now = listing(&fresh, &b, None).await;
    assert!(now.0.iter().any(|o| o.0 == "d0/zz-after"));
    assert!(!now.0.iter().any(|o| o.0 == keys[0]));

    // The next snapshot rewrites only the pages the changes fall on.
    let second = write_snapshots(&env).await;
    assert_eq!((second.buckets, second.runs), (1, 0), "{second:?}");
    assert!(second.pages_written < 6, "{second:?}");
    let later = reader(&env).await;
    assert_eq!(listing(&later.client(), &b, None).await, now);
    // A change or two does not rewrite a snapshot: readers hold them.
    put(&s3, &b, "d1/zz-one-more", b"y").await;
    let third = write_snapshots(&env).await;
    assert_eq!(third.buckets, 0, "{third:?}");
    let late = reader(&env).await;
    let mut now = now;
    let one_more = listing(&late.client(), &b, None).await;
    assert!(one_more.0.iter().any(|o| o.0 == "d1/zz-one-more"));
    now.0 = one_more.0.clone();
    // The first reader moves to the new snapshot on a listing (it looks every 10 s).
    tokio::time::sleep(std::time::Duration::from_millis(10_500)).await;
    assert_eq!(listing(&fresh, &b, None).await, now);
    assert_eq!(peer.metric("jets3_index_snapshots_loaded_total").await, 2.0);
    assert_eq!(
        listing(&fresh, &b, Some("/")).await,
        with_delimiter_now(&reference, &b).await
    );
}

async fn with_delimiter_now(
    reference: &Peer,
    b: &str,
) -> (Vec<(String, String, i64)>, Vec<String>) {
    listing(&reference.client(), b, Some("/")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_leave_one_snapshot_and_nothing_else() {
    let b = unique_bucket("snaprace");
    let env = start(&b).await;
    let s3 = env.client();
    let keys: Vec<String> = (0..600).map(|i| format!("k{i:04}")).collect();
    put_many(&s3, &b, &keys).await;
    let (one, two) = tokio::join!(write_snapshots_in(&env, 250), write_snapshots_in(&env, 250));
    assert!(one.buckets + two.buckets >= 1, "{one:?} {two:?}");
    // Changes, and another race on top of a snapshot.
    delete_many(&s3, &b, &keys[..100]).await;
    let (one, two) = tokio::join!(write_snapshots(&env), write_snapshots(&env));
    assert!(one.buckets + two.buckets >= 1, "{one:?} {two:?}");

    let manifests = index_keys(&env, &format!("{b}.m.")).await;
    let pages = index_keys(&env, &format!("{b}.p.")).await;
    // The head's manifest, and the one it replaced (retired, removed after a while).
    assert!(manifests.len() <= 2, "{manifests:?}");
    let peer = reader(&env).await;
    let got: Vec<String> = listing(&peer.client(), &b, None)
        .await
        .0
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(got, keys[100..]);
    assert_eq!(peer.metric("jets3_index_snapshots_loaded_total").await, 1.0);
    assert!(!pages.is_empty() && pages.len() <= 2, "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_listed_from_a_snapshot_equal_a_replay() {
    let b = unique_bucket("snapv");
    let env = start(&b).await;
    let s3 = env.client();
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let keys: Vec<String> = (0..120).map(|i| format!("k/{i:04}")).collect();
    put_many(&s3, &b, &keys).await;
    put_many(&s3, &b, &keys[..60]).await;
    delete_many(&s3, &b, &keys[50..70]).await;
    write_snapshots(&env).await;

    // After the snapshot: more versions, markers, and a version deleted by id.
    put_many(&s3, &b, &keys[..10]).await;
    delete_many(&s3, &b, &keys[100..105]).await;
    let all = versions(&s3, &b).await;
    let (victim_key, victim_version) = all
        .iter()
        .find(|v| v.0 == keys[0] && !v.2)
        .map(|v| (v.0.clone(), v.1.clone()))
        .expect("a noncurrent version");
    ok(
        s3.delete_object()
            .bucket(&b)
            .key(&victim_key)
            .version_id(&victim_version)
            .send()
            .await,
        "delete a version",
    );

    let peer = reader(&env).await;
    let fresh = peer.client();
    let replay = replaying(&env).await;
    let reference = replay.client();
    let from_snapshot = versions(&fresh, &b).await;
    assert!(peer.metric("jets3_index_snapshots_loaded_total").await >= 1.0);
    assert_eq!(from_snapshot, versions(&reference, &b).await);
    assert!(!from_snapshot.iter().any(|v| v.1 == victim_version));
    assert_eq!(from_snapshot.iter().filter(|v| v.3).count(), 25);
    assert_eq!(
        listing(&fresh, &b, None).await,
        listing(&reference, &b, None).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_is_refused() {
    let b = unique_bucket("snapbad");
    let env = start(&b).await;
    let s3 = env.client();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i:04}")).collect();
    put_many(&s3, &b, &keys).await;
    write_snapshots(&env).await;

    // Damage the one page: a copy of its bytes with one bit flipped.
    let js = env.js().await;
    let kv = js.get_key_value("jets3_index").await.expect("snapshot KV");
    let mut names = kv.keys().await.expect("keys");
    let mut page_key = None;
    while let Some(k) = names.next().await {
        let k = k.expect("key");
        if k.starts_with(&format!("{b}.p.")) {
            page_key = Some(k);
        }
    }
    let page_key = page_key.expect("a snapshot page");
    let mut bytes = kv
        .get(&page_key)
        .await
        .expect("get")
        .expect("page")
        .to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    kv.put(&page_key, bytes.into()).await.expect("damaged");

    let peer = reader(&env).await;
    let fresh = peer.client();
    let got: Vec<String> = listing(&fresh, &b, None)
        .await
        .0
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(got, keys, "the listing comes from a replay");
    assert_eq!(
        peer.metric("jets3_index_snapshots_refused_total").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_a_bucket_made_again_is_not_used() {
    let b = unique_bucket("snapnew");
    let env = start(&b).await;
    let s3 = env.client();
    let old: Vec<String> = (0..50).map(|i| format!("old{i:03}")).collect();
    put_many(&s3, &b, &old).await;
    assert_eq!(write_snapshots(&env).await.buckets, 1);

    // Deleted and made again under the same name, behind the gateway's back.
    let js = env.js().await;
    js.delete_object_store(&b).await.expect("native delete");
    js.create_object_store(async_nats::jetstream::object_store::Config {
        bucket: b.clone(),
        ..Default::default()
    })
    .await
    .expect("native create");
    assert!(!index_keys(&env, &format!("{b}.head")).await.is_empty());
    // More writes than before: the old snapshot is not ahead of the new stream.
    let fresh: Vec<String> = (0..80).map(|i| format!("new{i:03}")).collect();
    put_many(&s3, &b, &fresh).await;

    let peer = reader(&env).await;
    let got: Vec<String> = listing(&peer.client(), &b, None)
        .await
        .0
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(got, fresh);
    assert_eq!(peer.metric("jets3_index_snapshots_loaded_total").await, 0.0);
}

/// A bucket too large to replay into memory (`cache.replayMaxSubjects`) that has no snapshot
/// yet answers listings with 503 and builds no index; once the collector's leader has written
/// the snapshot, the same gateway lists it from there. A bucket below the snapshot threshold,
/// or any bucket with snapshots off, is replayed whatever the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_too_large_to_replay_waits_for_its_snapshot() {
    let b = unique_bucket("snapcap");
    let env = start(&b).await;
    let keys: Vec<String> = (0..40).map(|i| format!("k{i:03}")).collect();
    put_many(&env.client(), &b, &keys).await;
    let capped = env
        .peer_with(|s| {
            s.collector.enabled = false;
            s.collector.snapshot_min_subjects = 10;
            s.cache.replay_max_subjects = 30;
        })
        .await;
    for _ in 0..2 {
        let r = capped.client().list_objects_v2().bucket(&b).send().await;
        assert_eq!(
            sdk_err(r),
            (503, "ServiceUnavailable".to_string()),
            "80 subjects, at most 30 replayed, no snapshot"
        );
    }
    let names = |l: (Vec<(String, String, i64)>, Vec<String>)| -> Vec<String> {
        l.0.into_iter().map(|o| o.0).collect()
    };
    // A bucket too small for a snapshot (collector.snapshotMinSubjects) is always replayed.
    let floor = env
        .peer_with(|s| {
            s.collector.enabled = false;
            s.cache.replay_max_subjects = 30;
        })
        .await;
    assert_eq!(names(listing(&floor.client(), &b, None).await), keys);

    assert_eq!(write_snapshots(&env).await.buckets, 1);
    assert_eq!(names(listing(&capped.client(), &b, None).await), keys);
    assert_eq!(
        capped.metric("jets3_index_snapshots_loaded_total").await,
        1.0
    );

    let off = env
        .peer_with(|s| {
            s.collector.enabled = false;
            s.collector.snapshot_interval_seconds = 0;
            s.collector.snapshot_min_subjects = 10;
            s.cache.replay_max_subjects = 30;
        })
        .await;
    assert_eq!(names(listing(&off.client(), &b, None).await), keys);
}

/// The snapshots' KV deleted under a gateway that reads its pages from there (too little
/// page memory to keep them): its listings go on from a replay, whole, and the KV is made
/// again for the next snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_go_on_when_the_snapshots_kv_is_deleted() {
    let b = unique_bucket("snapgone");
    let env = start(&b).await;
    let pad = "p".repeat(300);
    let keys: Vec<String> = (0..2500)
        .map(|i| format!("d{}/{pad}{i:05}", i % 7))
        .collect();
    put_many(&env.client(), &b, &keys).await;
    write_snapshots(&env).await;
    let peer = env
        .peer_with(|s| {
            s.collector.enabled = false;
            s.cache.index_pages_bytes = 4096;
        })
        .await;
    let before = listing(&peer.client(), &b, None).await;
    assert!(
        peer.metric("jets3_index_snapshots_loaded_total").await >= 1.0,
        "the gateway started from the snapshot"
    );
    assert_eq!(before.0.len(), keys.len());

    env.js()
        .await
        .delete_stream("KV_jets3_index")
        .await
        .expect("delete the snapshots' KV");
    let started = std::time::Instant::now();
    let after = listing(&peer.client(), &b, None).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(after, before);
    env.js()
        .await
        .get_stream("KV_jets3_index")
        .await
        .expect("the snapshots' KV is made again");
}
