//! CompleteMultipartUpload without copying: a spliced version reads at once through S3,
//! and the collector compacts it into the native layout without cutting a read or losing
//! a part, nor a newer write that races it. The collector runs by hand here, so each state
//! can be looked at.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use aws_sdk_s3::Client;
use jets3_gateway::config::settings::CollectorSettings;
use jets3_gateway::store::Collector;
use sha2::Digest;
use tokio::io::AsyncReadExt;

use crate::common::*;
use crate::multipart::{complete, create_upload, upload_part};

/// A gateway whose collector only runs when the test says.
async fn env_without_collector(b: &str) -> (Env, Collector) {
    let env = Env::start_with(config_with(&[b]), |s| s.collector.enabled = false).await;
    let collector = hand_collector(&env);
    (env, collector)
}

/// A collector on `env`'s gateway store that runs only when the test calls it.
fn hand_collector(env: &Env) -> Collector {
    let settings = CollectorSettings {
        grace_seconds: 2,
        ..Default::default()
    };
    Collector::new(env.gw().gateway().store.clone(), settings)
}

async fn obj_bytes(env: &Env) -> u64 {
    env.obj_streams().await.values().map(|(_, b)| *b).sum()
}

/// The multipart upload records' KV bucket.
async fn uploads_kv(env: &Env) -> async_nats::jetstream::kv::Store {
    let js = env.js().await;
    js.get_key_value("jets3_uploads").await.expect("uploads KV")
}

/// Uploads `parts` to a new upload of `key`: its id and the parts' ETags.
async fn upload_parts(s3: &Client, b: &str, key: &str, parts: &[&[u8]]) -> (String, Vec<String>) {
    let id = create_upload(s3, b, key).await;
    let mut etags = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        etags.push(upload_part(s3, b, key, &id, i as i32 + 1, p).await);
    }
    (id, etags)
}

/// Uploads `parts` to a new upload of `key` and completes it; the part records as stored
/// (KV key and value) just before the Complete.
async fn upload_and_complete(
    env: &Env,
    s3: &Client,
    b: &str,
    key: &str,
    parts: &[&[u8]],
) -> Vec<(String, Vec<u8>)> {
    let (id, etags) = upload_parts(s3, b, key, parts).await;
    let kv = uploads_kv(env).await;
    let mut records = Vec::new();
    for n in 1..=parts.len() {
        let k = format!("{}.{id}.{n}", b.replace('.', "_"));
        let v = kv.get(&k).await.expect("part record").expect("stored");
        records.push((k, v.to_vec()));
    }
    complete(s3, b, key, &id, &etags).await;
    records
}

async fn get_range(s3: &Client, b: &str, k: &str, range: &str) -> Vec<u8> {
    let out = ok(
        s3.get_object().bucket(b).key(k).range(range).send().await,
        "ranged GET",
    );
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

fn nats_digest(data: &[u8]) -> String {
    use base64::Engine;
    let d = sha2::Sha256::digest(data);
    format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(d)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_copies_nothing_reads_at_once_and_compaction_makes_it_native() {
    let b = unique_bucket("splice");
    let (env, collector) = env_without_collector(&b).await;
    let s3 = env.client();
    let parts = [data(5 * MIB, 1), data(5 * MIB, 2), data(1234, 3)];
    let whole = parts.concat();
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let (id, etags) = upload_parts(&s3, &b, "mp", &refs).await;
    let before = obj_bytes(&env).await;
    let etag = complete(&s3, &b, "mp", &id, &etags).await;
    assert_eq!(etag, multipart_etag(&refs));
    let after = obj_bytes(&env).await;
    assert!(
        after < before + 64 * 1024,
        "Complete copied nothing: {before} bytes before, {after} after"
    );

    // S3 reads it at once: whole, across the part boundaries, and by part.
    assert!(get_bytes(&s3, &b, "mp").await == whole, "whole object");
    let cut = 5 * MIB;
    for (lo, hi) in [
        (cut - 10, cut + 10),
        (2 * cut - 1, 2 * cut + 1233),
        (0, 0),
        (cut, 2 * cut - 1),
    ] {
        let got = get_range(&s3, &b, "mp", &format!("bytes={lo}-{hi}")).await;
        assert!(got == whole[lo..=hi], "range {lo}-{hi}");
    }
    let p2 = ok(
        s3.get_object()
            .bucket(&b)
            .key("mp")
            .part_number(2)
            .send()
            .await,
        "GET part 2",
    );
    let p2 = p2.body.collect().await.expect("body").into_bytes();
    assert!(p2 == parts[1], "part 2");

    // Native clients refuse it until it is compacted: never wrong bytes.
    let js = env.js().await;
    let store = js.get_object_store(&b).await.expect("store");
    let native = match store.get("mp").await {
        Ok(mut o) => {
            let mut out = Vec::new();
            o.read_to_end(&mut out).await.map(|_| out).ok()
        }
        Err(_) => None,
    };
    assert!(native.is_none(), "a native read of a spliced version fails");

    // The collector compacts it into the object store's own layout.
    let compacted = eventually(30, || async {
        let _ = collector.pass(None, false).await;
        let Ok(mut o) = store.get("mp").await else {
            return false;
        };
        let mut out = Vec::new();
        o.read_to_end(&mut out).await.is_ok() && out == whole
    })
    .await;
    assert!(
        compacted,
        "native clients read the object once it is compacted"
    );
    let info = store.info("mp").await.expect("native info");
    assert_eq!(info.digest.as_deref(), Some(nats_digest(&whole).as_str()));
    assert_eq!(
        collector.stats().compacted_versions.load(Relaxed),
        1,
        "one compaction"
    );
    // S3 sees the same object, and the parts' chunks go once the grace period is over.
    let head = ok(s3.head_object().bucket(&b).key("mp").send().await, "HEAD");
    assert_eq!(head.e_tag(), Some(etag.as_str()));
    assert!(
        get_bytes(&s3, &b, "mp").await == whole,
        "whole after compaction"
    );
    let limit = before + 64 * 1024;
    let purged = eventually(20, || async {
        let _ = collector.pass(None, false).await;
        obj_bytes(&env).await <= limit
    })
    .await;
    assert!(
        purged,
        "one copy of the data is left: {} bytes, at most {limit}",
        obj_bytes(&env).await
    );
    assert!(
        get_bytes(&s3, &b, "mp").await == whole,
        "whole after the purge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_begun_on_a_spliced_version_outlives_its_compaction() {
    let b = unique_bucket("splice-read");
    let (env, collector) = env_without_collector(&b).await;
    let s3 = env.client();
    let parts: Vec<Vec<u8>> = (0..4).map(|i| data(5 * MIB, 10 + i)).collect();
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let whole = parts.concat();
    upload_and_complete(&env, &s3, &b, "big", &refs).await;

    // A slow reader takes its first mebibyte, then stalls while the version is compacted
    // and its parts retired, well past the grace period.
    let out = ok(s3.get_object().bucket(&b).key("big").send().await, "GET");
    let mut body = out.body.into_async_read();
    let mut got = vec![0u8; MIB];
    body.read_exact(&mut got).await.expect("first MiB");
    let compacted = eventually(30, || async {
        let _ = collector.pass(None, false).await;
        collector.stats().compacted_versions.load(Relaxed) == 1
    })
    .await;
    assert!(compacted, "compacted while the read stalls");
    for _ in 0..8 {
        let _ = collector.pass(None, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut rest = Vec::new();
    body.read_to_end(&mut rest)
        .await
        .expect("the read goes on to the end");
    got.extend_from_slice(&rest);
    assert_eq!(got.len(), whole.len(), "the whole object arrives");
    assert!(got == whole, "the read returns the bytes it began on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_records_left_behind_never_free_a_spliced_versions_parts() {
    // Removed with the upload's record once its window is over.
    part_records_left_behind(1, 600, false).await;
    // Older than the orphan horizon while the upload's record is still kept.
    part_records_left_behind(3600, 3, false).await;
    // Older than the orphan horizon, and the upload's record is gone.
    part_records_left_behind(3600, 3, true).await;
}

/// A Complete whose gateway died before it removed the part records leaves them to the
/// collector; the spliced version (noncurrent here, so never compacted) still uses them.
async fn part_records_left_behind(window: u64, orphan_after: u64, drop_upload: bool) {
    let b = unique_bucket("splice-left");
    let mut cfg = config_with(&[&b]);
    cfg.limits.multipart_expiry_seconds = 1;
    let env = Env::start_with(cfg, |s| {
        s.collector.enabled = false;
        s.collector.completed_upload_seconds = window;
        s.collector.orphan_after_seconds = orphan_after;
    })
    .await;
    let settings = CollectorSettings {
        grace_seconds: 2,
        ..Default::default()
    };
    let collector = Collector::new(env.gw().gateway().store.clone(), settings);
    let s3 = env.client();
    set_versioning(&s3, &b, aws_sdk_s3::types::BucketVersioningStatus::Enabled).await;
    let parts = [data(5 * MIB, 21), data(300 * 1024, 22)];
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let records = upload_and_complete(&env, &s3, &b, "k", &refs).await;
    let versions = ok(
        s3.list_object_versions().bucket(&b).send().await,
        "ListObjectVersions",
    );
    let spliced = versions.versions()[0]
        .version_id()
        .expect("version id")
        .to_string();
    put(&s3, &b, "k", b"newer").await;
    let kv = uploads_kv(&env).await;
    for (k, v) in &records {
        kv.put(k, v.clone().into()).await.expect("put back");
    }
    if drop_upload {
        let (upload, _) = records[0].0.rsplit_once('.').expect("part key");
        kv.purge(upload).await.expect("drop the upload's record");
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // The upload's window, or the parts' horizon, is over: then the purges run.
    for _ in 0..10 {
        let _ = collector.pass(Some(1), true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if window < orphan_after {
        let left = kv.keys().await.expect("keys");
        use futures::TryStreamExt;
        let left: Vec<String> = left.try_collect().await.expect("keys");
        assert!(
            !left.iter().any(|k| k.starts_with(&b.replace('.', "_"))),
            "the upload's records are gone: {left:?}"
        );
    }
    let old = ok(
        s3.get_object()
            .bucket(&b)
            .key("k")
            .version_id(&spliced)
            .send()
            .await,
        "GET the spliced version",
    );
    let old = old.body.collect().await.expect("body").into_bytes();
    assert!(old == parts.concat(), "the spliced version is whole");
}

/// A compaction whose swap is held up in NATS while another gateway overwrites the key: the
/// swap is refused (the key moved on), the newer write stays, the copy is purged, and the
/// spliced version's parts go with the version the overwrite replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_that_loses_the_race_to_an_overwrite_leaves_it_and_no_copy() {
    let b = unique_bucket("splice-race");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| s.collector.enabled = false).await;
    let collector = hand_collector(&env);
    let s3 = env.client();
    let parts = [data(5 * MIB, 21), data(5 * MIB, 22), data(777, 23)];
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let (id, etags) = upload_parts(&s3, &b, "mp", &refs).await;
    complete(&s3, &b, "mp", &id, &etags).await;
    // Another gateway, straight on NATS: its writes are never held.
    let peer = env.peer().await;

    // The compaction copies the parts, then its swap of the metadata reaches NATS 4 s late.
    proxy.hold_publishes_to(&[&format!("$O.{b}.M.")], Duration::from_secs(4));
    let _ = collector.pass(None, false).await;
    let held = eventually(20, || async { proxy.lost() >= 1 }).await;
    assert!(held, "the compaction's swap was held up");
    let newer = data(3 * MIB, 24);
    let put = ok(
        peer.client()
            .put_object()
            .bucket(&b)
            .key("mp")
            .body(newer.clone().into())
            .send()
            .await,
        "PUT through the other gateway",
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.heal();

    // The newer write is the object, for S3 and native clients alike, and stays so.
    for _ in 0..3 {
        let _ = collector.pass(None, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let head = ok(s3.head_object().bucket(&b).key("mp").send().await, "HEAD");
    assert_eq!(head.e_tag(), put.e_tag(), "the overwrite's ETag");
    assert!(
        get_bytes(&s3, &b, "mp").await == newer,
        "S3 reads the overwrite"
    );
    let js = env.js().await;
    let store = js.get_object_store(&b).await.expect("store");
    let mut native = Vec::new();
    store
        .get("mp")
        .await
        .expect("native get")
        .read_to_end(&mut native)
        .await
        .expect("native read");
    assert!(native == newer, "native clients read the overwrite");
    assert_eq!(
        collector.stats().compacted_versions.load(Relaxed),
        0,
        "the refused swap counts as no compaction"
    );

    // Neither the copy nor the parts outlive this: only the overwrite's chunks are left.
    let purged = eventually(30, || async {
        let _ = collector.pass(None, false).await;
        obj_bytes(&env).await < newer.len() as u64 + 64 * 1024
    })
    .await;
    assert!(
        purged,
        "only the overwrite's bytes are left: {} bytes",
        obj_bytes(&env).await
    );
    env.wait_holds_only_live(&b, 30).await;
}

/// A part uploaded again (through another gateway) after a Complete read its part list and
/// before its claim reached NATS: the upload retires the part the Complete names. The
/// Complete copies the parts instead of splicing them: the object is the parts it named, and
/// once the collector has run past the grace nothing is left that no version references (a
/// splice there leaves chunks behind for the hourly orphan scan: checked by splicing
/// regardless).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_replaced_before_the_claim_lands_is_copied_not_spliced() {
    let b = unique_bucket("splice-reup");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| s.collector.enabled = false).await;
    let collector = hand_collector(&env);
    let s3 = env.client();
    let peer = env.peer_with(|s| s.collector.enabled = false).await;
    let parts = [data(5 * MIB, 31), data(300 * 1024, 32)];
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let (id, etags) = upload_parts(&s3, &b, "k", &refs).await;

    // The Complete's claim (its write of the upload's record) reaches NATS 1.5 s late
    // (NATS answers the gateway within its 3 s request timeout).
    let record = format!("$KV.jets3_uploads.{}.{id}", b.replace('.', "_"));
    proxy.hold_publishes_to(&[&record], Duration::from_millis(1500));
    let completing = {
        let (s3, b, id) = (s3.clone(), b.clone(), id.clone());
        tokio::spawn(async move { complete(&s3, &b, "k", &id, &etags).await })
    };
    let held = eventually(20, || async { proxy.lost() >= 1 }).await;
    assert!(held, "the Complete's claim was held up");
    upload_part(&peer.client(), &b, "k", &id, 2, &data(300 * 1024, 33)).await;
    completing.await.expect("the Complete");
    proxy.heal();

    // Past the grace: the part the upload replaced is purged.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..4 {
        let _ = collector.pass(None, false).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        get_bytes(&s3, &b, "k").await == parts.concat(),
        "the object is the parts its Complete named"
    );
    env.wait_holds_only_live(&b, 30).await;
}
