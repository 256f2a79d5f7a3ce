//! Object versions that never cut a read or lose a write: several gateways on one NATS,
//! requests dropped at any point, hostile metadata written by native clients, and the
//! collector that leaves each stream holding exactly its live data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use tokio::io::AsyncWriteExt;

use crate::common::*;

/// Reads the rest of a GET body.
async fn drain(mut body: aws_sdk_s3::primitives::ByteStream, into: &mut Vec<u8>) {
    while let Some(piece) = body.next().await {
        into.extend_from_slice(&piece.expect("body piece"));
    }
}

/// Starts a GET of `key` and reads its first piece: the rest of the body, and that piece.
async fn first_piece(
    s3: &aws_sdk_s3::Client,
    b: &str,
    key: &str,
) -> (aws_sdk_s3::primitives::ByteStream, Vec<u8>) {
    let got = ok(s3.get_object().bucket(b).key(key).send().await, "GET");
    let mut body = got.body;
    let piece = body.next().await.expect("first piece");
    (body, piece.expect("first piece ok").to_vec())
}

/// A GET through one gateway returns the version it started on, whole, while another
/// gateway overwrites or deletes the key, even when the read outlasts the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_through_one_gateway_outlives_overwrite_and_delete_through_another() {
    let b = unique_bucket("slowread");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let (via_a, via_b) = (env.client(), peer.client());
    let old = data(64 << 20, 7);
    let new = data(1 << 20, 8);
    for replace in [true, false] {
        put(&via_a, &b, "k", &old).await;
        let (body, mut all) = first_piece(&via_b, &b, "k").await;
        if replace {
            put(&via_a, &b, "k", &new).await;
        } else {
            ok(
                via_a.delete_object().bucket(&b).key("k").send().await,
                "DELETE A",
            );
        }
        // Three grace periods (2 s each here) and several collector passes on both
        // gateways: only the read's registration keeps the old chunks.
        tokio::time::sleep(Duration::from_secs(6)).await;
        drain(body, &mut all).await;
        assert_eq!(all.len(), old.len(), "replace={replace}: whole length");
        assert!(all == old, "replace={replace}: the old bytes");
    }
    let held = env
        .metric("jets3_collector_held_by_reads_total")
        .await
        .unwrap_or(0.0)
        + peer.metric("jets3_collector_held_by_reads_total").await;
    assert!(held >= 1.0, "a registered read held a retired version");
    // Once the reads are over, the old versions go.
    env.wait_holds_only_live(&b, 20).await;
    peer.gw.shutdown().await;
}

/// The read registry deleted under a running gateway and made again at once lacks the
/// registrations of the reads running then; each read renews its own within a quarter of
/// the grace period. A collector pass in between must not purge on the empty registry's
/// word: the long read of a retired version goes on, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_registry_made_again_cuts_no_running_read() {
    let b = unique_bucket("readsgone");
    let grace = Duration::from_secs(8);
    let env = Env::start_with(config_with(&[&b]), |s| {
        s.collector.enabled = false;
        s.collector.grace_seconds = grace.as_secs();
    })
    .await;
    let s3 = env.client();
    let old = data(64 << 20, 11);
    put(&s3, &b, "k", &old).await;
    let (body, mut all) = first_piece(&s3, &b, "k").await;
    put(&s3, &b, "k", b"new").await;
    // The old version is due (retired a grace period ago), held only by the read.
    tokio::time::sleep(grace + Duration::from_millis(500)).await;
    let settings = jets3_gateway::config::settings::CollectorSettings {
        grace_seconds: grace.as_secs(),
        ..Default::default()
    };
    let collector =
        jets3_gateway::store::Collector::new(env.gw().gateway().store.clone(), settings);
    let led = collector.pass(None, false).await;
    assert!(matches!(led, Ok(true)), "the collector leads: {led:?}");

    remake_read_registry(&env, grace).await;
    let led = collector.pass(None, false).await;
    assert!(
        matches!(led, Ok(true)),
        "a pass on the new registry: {led:?}"
    );

    drain(body, &mut all).await;
    assert_eq!(all.len(), old.len(), "whole length");
    assert!(all == old, "the old bytes");
    // Purges resume on the new registry: once the read's registration has expired, the
    // old version goes.
    let only_live = eventually(30, || async {
        let _ = collector.pass(None, false).await;
        let held: Vec<String> = env.chunk_subjects(&b).await.into_keys().collect();
        let live: Vec<String> = env.live_versions(&b).await.into_keys().collect();
        held == live
    })
    .await;
    assert!(only_live, "the retired version is purged in the end");
}

/// Deletes the read registry and makes it again, empty, as a gateway restoring it would.
async fn remake_read_registry(env: &Env, grace: Duration) {
    let js = env.js().await;
    js.delete_stream("KV_jets3_reads")
        .await
        .expect("delete the read registry");
    js.create_key_value(read_registry(grace))
        .await
        .expect("make the read registry again");
}

/// The read registry's config, as a gateway of grace period `grace` makes it.
fn read_registry(grace: Duration) -> async_nats::jetstream::kv::Config {
    async_nats::jetstream::kv::Config {
        bucket: "jets3_reads".into(),
        history: 1,
        max_age: grace,
        ..Default::default()
    }
}

/// The read registry made again in the middle of a pass, after the pass began and before
/// one of its purges asked whether the version is read: the registry that answers lacks the
/// registration of a read running on another gateway (made here by hand, so no renewal
/// comes), and the purge must wait instead of taking the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_registry_made_again_during_a_pass_purges_nothing_on_its_word() {
    let b = unique_bucket("readsmid");
    let grace = Duration::from_secs(4);
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| {
        s.collector.enabled = false;
        s.collector.grace_seconds = grace.as_secs();
    })
    .await;
    let s3 = env.client();
    put(&s3, &b, "k", &data(300 << 10, 12)).await;
    let first: Vec<String> = env.live_versions(&b).await.into_keys().collect();
    put(&s3, &b, "k", b"new").await;
    let [old] = first.as_slice() else {
        panic!("one version first: {first:?}")
    };
    // A read of the old version, registered as a gateway registers one.
    let js = env.js().await;
    let reads = js
        .create_key_value(read_registry(grace))
        .await
        .expect("registry");
    reads
        .put(format!("{b}.{old}.elsewhere"), bytes::Bytes::new())
        .await
        .expect("register the read");
    tokio::time::sleep(grace + Duration::from_millis(500)).await;
    reads
        .put(format!("{b}.{old}.elsewhere"), bytes::Bytes::new())
        .await
        .expect("renew the read");

    // The pass's question to the registry reaches it only after the registry is made again.
    let ask = "$JS.API.STREAM.MSG.GET.KV_jets3_reads";
    proxy.hold_publishes_to(&[ask], Duration::from_secs(2));
    let settings = jets3_gateway::config::settings::CollectorSettings {
        grace_seconds: grace.as_secs(),
        ..Default::default()
    };
    let collector =
        jets3_gateway::store::Collector::new(env.gw().gateway().store.clone(), settings);
    let stats = collector.stats();
    let pass = tokio::spawn(async move { collector.pass(None, false).await });
    let asked = eventually(10, || async { proxy.lost() >= 1 }).await;
    assert!(asked, "the pass asked the registry");
    remake_read_registry(&env, grace).await;
    let led = pass.await.expect("pass task");
    proxy.heal();
    assert!(matches!(led, Ok(true)), "the collector leads: {led:?}");
    let held = env.chunk_subjects(&b).await;
    assert!(
        held.contains_key(old.as_str()),
        "the read version's chunks stay: {held:?}"
    );
    let deferred = stats.deferred_new_registry.load(Ordering::Relaxed);
    assert_eq!(deferred, 1, "the purge was put off");
}

/// Sends `bytes` and closes the connection after `delay`, whatever the gateway is doing.
async fn send_and_hang_up(env: &Env, bytes: Vec<u8>, delay: Duration) {
    let mut s = tokio::net::TcpStream::connect(env.addr)
        .await
        .expect("connect");
    s.write_all(&bytes).await.expect("send");
    tokio::time::sleep(delay).await;
    drop(s);
}

/// A signed request's bytes.
fn signed(env: &Env, mut req: RawRequest) -> Vec<u8> {
    sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Signed);
    req.to_bytes(&env.host())
}

/// Every key either answers 404 or its whole body, with the ETag its bytes give.
async fn assert_every_key_whole(client: &aws_sdk_s3::Client, b: &str, keys: &[String]) {
    for k in keys {
        let r = client.get_object().bucket(b).key(k).send().await;
        let got = match r {
            Ok(got) => got,
            Err(e) => {
                let (status, code) = sdk_err::<(), _>(Err(e));
                assert_eq!((status, code.as_str()), (404, "NoSuchKey"), "{k}");
                continue;
            }
        };
        let etag = got.e_tag().unwrap_or_default().to_string();
        let len = got.content_length().unwrap_or(-1);
        let mut bytes = Vec::new();
        let mut body = got.body;
        while let Some(piece) = body.next().await {
            match piece {
                Ok(p) => bytes.extend_from_slice(&p),
                Err(e) => panic!("{k}: metadata is live but the body broke: {e}"),
            }
        }
        assert_eq!(bytes.len() as i64, len, "{k}: whole body");
        if !etag.contains('-') {
            assert_eq!(etag, etag_of(&bytes), "{k}: the body the ETag names");
        }
    }
}

/// Requests dropped at every point (the client hangs up after 0 to 89 ms) never leave a
/// key whose metadata has no chunks, and the collector then leaves only live data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_dropped_anywhere_never_leave_metadata_without_chunks() {
    let b = unique_bucket("drops");
    let env = Env::start_with(config_with(&[&b]), |s| {
        s.collector.orphan_after_seconds = 3;
    })
    .await;
    let s3 = env.client();
    let src = data(3 << 20, 1);
    put(&s3, &b, "src", &src).await;
    let mut keys = vec!["src".to_string()];
    let delays = [0u64, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89];
    for (i, d) in delays.iter().enumerate() {
        let delay = Duration::from_millis(*d);
        // PutObject over an existing key.
        let key = format!("put-{}", i % 3);
        let body = data(((i % 4) + 1) << 19, i as u64);
        let req = RawRequest::new("PUT", &format!("/{b}/{key}")).body(body);
        send_and_hang_up(&env, signed(&env, req), delay).await;
        keys.push(key);
        // CopyObject over an existing key.
        let key = format!("copy-{}", i % 3);
        let req = RawRequest::new("PUT", &format!("/{b}/{key}"))
            .header("x-amz-copy-source", &format!("/{b}/src"));
        send_and_hang_up(&env, signed(&env, req), delay).await;
        keys.push(key);
        // CompleteMultipartUpload over an existing key.
        let key = format!("mpu-{}", i % 3);
        let up = ok(
            s3.create_multipart_upload()
                .bucket(&b)
                .key(&key)
                .send()
                .await,
            "create",
        );
        let id = up.upload_id().unwrap_or_default().to_string();
        let part = ok(
            s3.upload_part()
                .bucket(&b)
                .key(&key)
                .upload_id(&id)
                .part_number(1)
                .body(data(1 << 20, 100 + i as u64).into())
                .send()
                .await,
            "part",
        );
        let xml = format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
            part.e_tag().unwrap_or_default()
        );
        let req = RawRequest::new("POST", &format!("/{b}/{key}?uploadId={id}")).body(xml);
        send_and_hang_up(&env, signed(&env, req), delay).await;
        keys.push(key);
    }
    keys.sort();
    keys.dedup();
    // Let dropped work settle, then every key is whole or absent.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_every_key_whole(&s3, &b, &keys).await;
    // Abandoned uploads (Completes that never ran) hold parts; abort them as a client
    // would, then the collector leaves exactly the live versions.
    let ups = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "uploads",
    );
    for u in ups.uploads() {
        ok(
            s3.abort_multipart_upload()
                .bucket(&b)
                .key(u.key().unwrap_or_default())
                .upload_id(u.upload_id().unwrap_or_default())
                .send()
                .await,
            "abort",
        );
    }
    env.wait_holds_only_live(&b, 30).await;
    assert_every_key_whole(&s3, &b, &keys).await;
}

/// Overwrites cut off by the request timeout while NATS stalls (the gateway drops the
/// request future wherever it is waiting) never leave metadata without chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeouts_during_nats_stalls_never_lose_a_version() {
    let b = unique_bucket("stall");
    let mut cfg = config_with(&[&b]);
    cfg.limits.timeouts.request_seconds = 1;
    let env = Env::start_with(cfg, |s| s.collector.orphan_after_seconds = 3).await;
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    for (w, key) in keys.iter().enumerate() {
        let (s3, b, key, stop, acked) = (
            env.client(),
            b.clone(),
            key.clone(),
            stop.clone(),
            acked.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = data((64 << 10) * (1 + (n as usize % 24)), (w as u64) << 32 | n);
                let r = s3
                    .put_object()
                    .bucket(&b)
                    .key(&key)
                    .body(body.clone().into())
                    .send()
                    .await;
                if let Ok(out) = r {
                    acked
                        .lock()
                        .unwrap()
                        .insert(key.clone(), out.e_tag().unwrap_or_default().to_string());
                }
            }
        }));
    }
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        env.nats.pause();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        env.nats.resume();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    let s3 = env.client();
    assert_every_key_whole(&s3, &b, &keys).await;
    let timeouts = env
        .metric("jets3_request_timeouts_total{timeout=\"request\"}")
        .await
        .unwrap_or(0.0);
    assert!(timeouts >= 1.0, "some requests were cut off by the timeout");
    env.wait_holds_only_live(&b, 30).await;
    assert_every_key_whole(&s3, &b, &keys).await;
}

/// A commit whose metadata publishes are lost on the way (NATS never stores them, the
/// gateway tries again as through a leader election) is not made once its chunks could
/// look like an orphan's to the collector: the PUT fails with 503 and leaves nothing, where
/// it used to be acknowledged seconds later, after the collector had taken its chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_held_up_past_the_write_pause_fails_and_never_loses_the_object() {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let b = unique_bucket("lostmeta");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| {
        s.collector.orphan_after_seconds = 3;
    })
    .await;
    let s3 = env.client();
    let kept = data(100 << 10, 1);
    put(&s3, &b, "kept", &kept).await;
    let body = data(300 << 10, 2);
    // Every metadata publish of the bucket is lost for 5 s: longer than the orphan horizon.
    proxy.lose_publishes_to(&[&format!("$O.{b}.M.")]);
    let put_body = async {
        let started = std::time::Instant::now();
        let r = s3
            .put_object()
            .bucket(&b)
            .key("k")
            .body(body.clone().into())
            .send()
            .await;
        (r, started.elapsed())
    };
    let heal = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        proxy.heal();
    };
    let ((r, took), ()) = tokio::join!(put_body, heal);
    assert!(proxy.lost() >= 1, "the metadata publish was lost");
    // Past the horizon, the grace period and a few collector passes.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let got = s3.get_object().bucket(&b).key("k").send().await;
    match r {
        Ok(_) => {
            let out = got.unwrap_or_else(|e| {
                panic!(
                    "the PUT was acknowledged after {took:?}, then GET: {:?} {:?}",
                    e.code(),
                    e.message()
                )
            });
            let bytes = out.body.collect().await.expect("body").to_vec();
            assert!(bytes == body, "the acknowledged object reads back whole");
        }
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            assert_eq!(status, Some(503), "{:?}", e.code());
            assert!(
                took < Duration::from_secs(3),
                "it failed within the write pause: {took:?}"
            );
            let code = got.err().and_then(|e| e.code().map(str::to_string));
            assert_eq!(
                code.as_deref(),
                Some("NoSuchKey"),
                "a failed PUT leaves nothing"
            );
        }
    }
    assert_eq!(get_bytes(&s3, &b, "kept").await, kept);
    env.wait_holds_only_live(&b, 30).await;
}

/// A commit that reaches NATS late (held up on the way past the orphan horizon; its PUT has
/// failed by then) makes a version that reads back whole: the collector's scan took its
/// chunks for an orphan's before the commit arrived, and purges only what a later scan
/// still finds unreferenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_arrives_late_is_never_left_without_its_chunks() {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let b = unique_bucket("latemeta");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| {
        s.collector.orphan_after_seconds = 3;
        s.collector.grace_seconds = 4;
    })
    .await;
    let s3 = env.client();
    let body = data(300 << 10, 4);
    // The chunks look like an orphan's from 3 s on; the commit lands after 5 s, before the
    // grace period of a retirement in between is over.
    proxy.hold_publishes_to(&[&format!("$O.{b}.M.")], Duration::from_secs(5));
    let r = s3
        .put_object()
        .bucket(&b)
        .key("k")
        .body(body.clone().into())
        .send()
        .await;
    proxy.heal();
    assert!(proxy.lost() >= 1, "the commit was held up");
    let found = env
        .metric("jets3_collector_orphans_found_total")
        .await
        .unwrap_or(0.0);
    // Past the grace period of that retirement, and a few passes.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let got = s3.get_object().bucket(&b).key("k").send().await;
    match got {
        Ok(out) => {
            let bytes = out.body.collect().await.expect("body").to_vec();
            assert!(bytes == body, "the version reads back whole");
        }
        Err(e) => assert_eq!(
            e.code(),
            Some("NoSuchKey"),
            "PUT {:?}",
            r.err().map(|e| e.code().map(str::to_string))
        ),
    }
    let after = env
        .metric("jets3_collector_orphans_found_total")
        .await
        .unwrap_or(0.0);
    assert!(
        after > found,
        "the scan took the chunks for an orphan's meanwhile"
    );
    env.wait_holds_only_live(&b, 30).await;
}

/// The same for a part: a part record that reaches NATS seconds late is refused (503) instead
/// of acknowledged over chunks the collector may have taken for an orphan's meanwhile, and
/// the upload completes whole with the part sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_record_held_up_past_the_write_pause_fails_and_never_loses_the_part() {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let b = unique_bucket("heldpart");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |s| {
        s.collector.orphan_after_seconds = 3;
    })
    .await;
    let s3 = env.client();
    let id = crate::multipart::create_upload(&s3, &b, "mp").await;
    let body = data(300 << 10, 3);
    // Part records of this upload reach NATS 4 s late: past the orphan horizon, within the
    // client's 5 s wait for the answer.
    proxy.hold_publishes_to(
        &[&format!("$KV.jets3_uploads.{b}.{id}.")],
        Duration::from_secs(4),
    );
    let started = std::time::Instant::now();
    let r = s3
        .upload_part()
        .bucket(&b)
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .body(body.clone().into())
        .send()
        .await;
    let took = started.elapsed();
    assert!(proxy.lost() >= 1, "the part record was held up");
    let etag = match r {
        Ok(out) => out.e_tag().expect("ETag").to_string(),
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            assert_eq!(status, Some(503), "{:?}", e.code());
            assert!(
                took < Duration::from_secs(3),
                "it failed within the write pause: {took:?}"
            );
            // Once the held record has landed, the client sends the part again.
            tokio::time::sleep(Duration::from_secs(5)).await;
            proxy.heal();
            crate::multipart::upload_part(&s3, &b, "mp", &id, 1, &body).await
        }
    };
    proxy.heal();
    // Past the horizon, the grace period and a few collector passes.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let done = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("mp")
        .upload_id(&id)
        .multipart_upload(crate::multipart::completed(&[(1, &etag)]))
        .send()
        .await;
    if let Err(e) = &done {
        panic!(
            "Complete after an acknowledged part ({took:?}): {:?} {:?}",
            e.code(),
            e.message()
        );
    }
    assert!(
        get_bytes(&s3, &b, "mp").await == body,
        "the object reads back whole"
    );
    env.wait_holds_only_live(&b, 30).await;
}

/// The collector's own writes (its lock's refresh, the probe of the records' clock) failing
/// for a while, as on a NATS that is full or slow, do not stop it: it keeps a lock it
/// refreshed recently and reads the time from its last probe, so a deleted version's room
/// comes back after the grace period all the same. It used to lose its own lock until the
/// lock expired (30 s), and to purge nothing without a probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_purges_while_nats_refuses_its_own_writes() {
    let b = unique_bucket("gcwrites");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |_| {}).await;
    let s3 = env.client();
    put(&s3, &b, "gone", &data(300 << 10, 1)).await;
    put(&s3, &b, "kept", &data(100 << 10, 2)).await;
    let leading = eventually(10, || async {
        env.metric("jets3_collector_leader").await == Some(1.0)
    })
    .await;
    assert!(leading, "the collector leads");
    let before = env.chunk_subjects(&b).await.len();
    ok(
        s3.delete_object().bucket(&b).key("gone").send().await,
        "DELETE",
    );
    // From now on (for longer than the test waits) NATS never gets the lock's refresh or a
    // clock probe.
    proxy.lose_publishes_to(&["$KV.jets3_locks.", "$KV.jets3_gc.clock"]);
    let purged = eventually(12, || async { env.chunk_subjects(&b).await.len() < before }).await;
    let lost = proxy.lost();
    proxy.heal();
    assert!(lost >= 1, "the collector's writes were lost");
    assert!(purged, "the deleted version is purged within 12 s");
    assert_eq!(get_bytes(&s3, &b, "kept").await, data(100 << 10, 2));
    env.wait_holds_only_live(&b, 30).await;
}

/// Metadata written by someone else (a native client, or anyone with stream access) is
/// validated: a wildcard nuid never reaches a purge, a short digest never panics, odd
/// headers never reach a response, and listings keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_native_metadata_is_skipped_never_obeyed() {
    let b = unique_bucket("hostile");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keep = data(300 << 10, 3);
    put(&s3, &b, "keep", &keep).await;
    let js = env.js().await;
    let meta = |key: &str, json: String| {
        let subject = format!(
            "$O.{b}.M.{}",
            base64::engine::general_purpose::URL_SAFE.encode(key)
        );
        (subject, json)
    };
    let docs = [
        meta(
            "wild",
            format!(r#"{{"name":"wild","bucket":"{b}","nuid":">","size":5,"chunks":1}}"#),
        ),
        meta(
            "star",
            format!(r#"{{"name":"star","bucket":"{b}","nuid":"*","size":5,"chunks":1}}"#),
        ),
        meta(
            "short",
            format!(
                r#"{{"name":"short","bucket":"{b}","nuid":"SHORT1","size":0,"chunks":0,"digest":"SHA-256=AAAA"}}"#
            ),
        ),
        meta(
            "headers",
            format!(
                r#"{{"name":"headers","bucket":"{b}","nuid":"HDRS1","size":0,"chunks":0,"headers":{{"Set-Cookie":["session=stolen"],"Location":["http://evil.example"],"Content-Type":["text/plain"]}}}}"#
            ),
        ),
        meta(
            "liar",
            format!(r#"{{"name":"someone-else","bucket":"{b}","nuid":"LIAR1","size":0}}"#),
        ),
    ];
    for (subject, json) in &docs {
        js.publish(subject.clone(), json.clone().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    // Listing works and shows what is well formed.
    let keys = list_all_keys(&s3, &b).await;
    assert_eq!(
        keys,
        ["headers", "keep", "short"],
        "malformed entries are skipped"
    );
    // An odd header is not sent back.
    let head = ok(
        s3.head_object().bucket(&b).key("headers").send().await,
        "HEAD",
    );
    assert_eq!(head.content_type(), Some("text/plain"));
    let raw = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/headers")))
        .await;
    raw.assert_status(200);
    assert!(raw.header("set-cookie").is_none() && raw.header("location").is_none());
    // Overwriting and deleting the hostile keys purges nothing of anyone else.
    for k in ["wild", "star", "short", "headers", "liar"] {
        put(&s3, &b, k, b"fresh").await;
    }
    for k in ["wild", "star"] {
        ok(s3.delete_object().bucket(&b).key(k).send().await, "DELETE");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        get_bytes(&s3, &b, "keep").await,
        keep,
        "other objects survive"
    );
    let keys = list_all_keys(&s3, &b).await;
    assert_eq!(keys, ["headers", "keep", "liar", "short"]);
    let malformed = env
        .metric("jets3_metadata_malformed_total")
        .await
        .unwrap_or(0.0);
    assert!(
        malformed >= 3.0,
        "malformed metadata is counted: {malformed}"
    );
}

/// DeleteBucket never loses a write acknowledged while it runs on another gateway: the
/// bucket is deleted and the PUT failed, or the PUT succeeded and the bucket stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_never_loses_a_concurrent_acknowledged_put() {
    let env = Env::with_buckets(&[]).await;
    let peer = env.peer().await;
    let (a, p) = (env.client(), peer.client());
    let mut outcomes = HashMap::new();
    for round in 0..30u64 {
        let b = unique_bucket("race");
        ok(a.create_bucket().bucket(&b).send().await, "create");
        // From "the PUT starts 15 ms late" to "the DELETE starts 14 ms late", in 1 ms steps.
        let offset = round as i64 - 15;
        let later = |ms: i64| Duration::from_millis(ms.max(0) as u64);
        let put = async {
            tokio::time::sleep(later(-offset)).await;
            p.put_object()
                .bucket(&b)
                .key("k")
                .body(data(4096, round).into())
                .send()
                .await
        };
        let del = async {
            tokio::time::sleep(later(offset)).await;
            a.delete_bucket().bucket(&b).send().await
        };
        let (put, del) = tokio::join!(put, del);
        let exists = a.head_bucket().bucket(&b).send().await.is_ok();
        match (&put, &del) {
            (Ok(_), Ok(_)) => panic!("round {round}: PUT acknowledged and bucket deleted"),
            (Ok(_), Err(_)) => {
                assert!(exists, "round {round}");
                assert_eq!(get_bytes(&a, &b, "k").await, data(4096, round));
            }
            (Err(_), Ok(_)) => assert!(!exists, "round {round}"),
            (Err(_), Err(_)) => {}
        }
        *outcomes.entry((put.is_ok(), del.is_ok())).or_insert(0u32) += 1;
    }
    assert!(outcomes.len() >= 2, "both orders happened: {outcomes:?}");
    peer.gw.shutdown().await;
}

/// A DeleteBucket whose client hangs up while the fence is on its way to NATS still
/// finishes: the fence goes up after the client left, the bucket turns out to hold an
/// object (written meanwhile by a native client), so the fence comes down again and the
/// bucket takes writes at once, not only after the collector lifts a dead fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_whose_client_hangs_up_never_leaves_its_fence() {
    let b = unique_bucket("fenced");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |_| {}).await;
    let hold = Duration::from_secs(2);
    proxy.hold_publishes_to(&["$JS.API.STREAM.UPDATE."], hold);
    let req = RawRequest::new("DELETE", &format!("/{b}"));
    send_and_hang_up(&env, signed(&env, req), Duration::from_millis(300)).await;
    assert_eq!(
        proxy.publishes_to("$JS.API.STREAM.UPDATE."),
        1,
        "the fence was sent before the client hung up"
    );
    let js = env.js().await;
    let store = js.get_object_store(&b).await.expect("object store");
    store
        .put("native", &mut &b"written natively"[..])
        .await
        .expect("a native write before the fence lands");
    // Only the fence is held back: it lands after `hold`, and whatever DeleteBucket decides
    // then is over soon after (the collector would lift a dead fence only after a minute).
    proxy.heal();
    tokio::time::sleep(hold).await;
    let fenced = || async {
        let mut stream = js.get_stream(format!("OBJ_{b}")).await.expect("stream");
        let config = stream.info().await.expect("info").config.clone();
        config.metadata.contains_key("jets3.closing") || config.max_message_size == 1
    };
    assert!(
        eventually(10, || async { !fenced().await }).await,
        "the fence is down"
    );
    let s3 = env.client();
    put(&s3, &b, "after", b"takes writes").await;
    assert_eq!(get_bytes(&s3, &b, "native").await, b"written natively");
}

/// A bucket setting change whose client hangs up while it holds the bucket's config lock
/// (its stream update on its way to NATS) still releases it once its update is answered:
/// the next change neither waits for the lock's lease (10 s) nor goes in before that
/// update, which would then land over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_setting_change_whose_client_hangs_up_releases_the_config_lock() {
    let b = unique_bucket("lockhangup");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |_| {}).await;
    let tagging = |v: &str| {
        format!("<Tagging><TagSet><Tag><Key>t</Key><Value>{v}</Value></Tag></TagSet></Tagging>")
    };
    let hold = Duration::from_secs(2);
    proxy.hold_publishes_to(&["$JS.API.STREAM.UPDATE."], hold);
    let body = tagging("dropped");
    let req = RawRequest::new("PUT", &format!("/{b}?tagging"))
        .header("content-md5", &md5_b64(body.as_bytes()))
        .body(body);
    send_and_hang_up(&env, signed(&env, req), Duration::from_millis(300)).await;
    assert_eq!(
        proxy.publishes_to("$JS.API.STREAM.UPDATE."),
        1,
        "the update was sent, under the lock, before the client hung up"
    );
    proxy.heal();
    let s3 = env.client();
    let started = std::time::Instant::now();
    ok(
        s3.put_bucket_tagging()
            .bucket(&b)
            .tagging(
                aws_sdk_s3::types::Tagging::builder()
                    .tag_set(
                        aws_sdk_s3::types::Tag::builder()
                            .key("t")
                            .value("next")
                            .build()
                            .expect("tag"),
                    )
                    .build()
                    .expect("tagging"),
            )
            .send()
            .await,
        "PutBucketTagging after the hang-up",
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the next change waited {:?}: the lock was left to its lease",
        started.elapsed()
    );
    // Whatever was held back has landed by now: the last change made is what stays.
    tokio::time::sleep(hold).await;
    let got = ok(
        s3.get_bucket_tagging().bucket(&b).send().await,
        "GetBucketTagging",
    );
    assert_eq!(got.tag_set()[0].value(), "next");
}

/// DeleteObject with If-Match deletes only the version it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_delete_checks_the_version_it_deletes() {
    let b = unique_bucket("ifmatch");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let e1 = put(&s3, &b, "k", b"one").await;
    let e2 = put(&s3, &b, "k", b"two").await;
    let r = s3
        .delete_object()
        .bucket(&b)
        .key("k")
        .if_match(&e1)
        .send()
        .await;
    assert_eq!(sdk_err(r), (412, "PreconditionFailed".into()));
    assert_eq!(get_bytes(&s3, &b, "k").await, b"two", "nothing changed");
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .if_match(&e2)
            .send()
            .await,
        "DELETE If-Match current",
    );
    let r = s3
        .delete_object()
        .bucket(&b)
        .key("k")
        .if_match(&e2)
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchKey".into()));
}

/// The multipart part list is the one completed, even when Complete runs while a part is
/// uploaded again through another gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_upload_racing_a_part_leaves_nothing() {
    let b = unique_bucket("abortrace");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let (a, p) = (env.client(), peer.client());
    for round in 0..6u64 {
        let up = ok(
            a.create_multipart_upload().bucket(&b).key("k").send().await,
            "create",
        );
        let id = up.upload_id().unwrap_or_default().to_string();
        let part = p
            .upload_part()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .part_number(1)
            .body(data(2 << 20, round).into())
            .send();
        let abort = async {
            tokio::time::sleep(Duration::from_millis(round * 20)).await;
            a.abort_multipart_upload()
                .bucket(&b)
                .key("k")
                .upload_id(&id)
                .send()
                .await
        };
        let _ = tokio::join!(part, abort);
        let done = a
            .complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .parts(
                        CompletedPart::builder()
                            .part_number(1)
                            .e_tag("\"x\"")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await;
        assert!(
            done.is_err(),
            "round {round}: the aborted upload stays aborted"
        );
    }
    env.wait_holds_only_live(&b, 20).await;
    peer.gw.shutdown().await;
}

/// A gateway killed with SIGKILL in the middle of a 1 GiB PUT and of an UploadPart leaves
/// chunks that nothing references; the collector (of another gateway) removes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_mid_upload_leaves_nothing_after_the_collector() {
    let b = unique_bucket("killed");
    let env = Env::start_with(config_with(&[&b]), |s| {
        s.collector.orphan_after_seconds = 3;
    })
    .await;
    let s3 = env.client();
    let keep = data(200 << 10, 4);
    put(&s3, &b, "keep", &keep).await;
    let before = env.chunk_subjects(&b).await;

    let gw = GatewayProcess::start(&[env.nats.url()], &b, 1).await;
    gw.kill_during_upload(&format!("/{b}/big"), 1 << 30, 96 << 20)
        .await;
    let up = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key("mp")
            .send()
            .await,
        "create",
    );
    let id = up.upload_id().unwrap_or_default().to_string();
    let gw = GatewayProcess::start(&[env.nats.url()], &b, 1).await;
    gw.kill_during_upload(
        &format!("/{b}/mp?partNumber=1&uploadId={id}"),
        512 << 20,
        48 << 20,
    )
    .await;
    let orphans = env.chunk_subjects(&b).await.len() - before.len();
    assert!(
        orphans >= 2,
        "the killed uploads left chunks: {orphans} subjects"
    );

    let r = s3.head_object().bucket(&b).key("big").send().await;
    assert_eq!(sdk_err(r).0, 404, "the cut PUT never became visible");
    let parts = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    assert!(
        parts.parts().is_empty(),
        "the cut part never became visible"
    );
    env.wait_holds_only_live(&b, 60).await;
    assert_eq!(env.chunk_subjects(&b).await, before, "no orphan bytes");
    assert_eq!(get_bytes(&s3, &b, "keep").await, keep);
    let found = env
        .metric("jets3_collector_orphans_found_total")
        .await
        .unwrap_or(0.0);
    assert!(found >= 2.0, "the collector found the orphans: {found}");
}

/// The tombstone of a version deleted by id goes once it is older than the orphan horizon;
/// the key's other versions stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tombstones_of_deleted_versions_are_removed() {
    use aws_sdk_s3::types::BucketVersioningStatus;
    let b = unique_bucket("tomb");
    let env = Env::start_with(config_with(&[&b]), |s| {
        s.collector.orphan_after_seconds = 3;
        s.collector.scan_interval_seconds = 1;
    })
    .await;
    let s3 = env.client();
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let first = ok(
        s3.put_object()
            .bucket(&b)
            .key("k")
            .body(b"one".to_vec().into())
            .send()
            .await,
        "PUT one",
    );
    put(&s3, &b, "k", b"two").await;
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .version_id(first.version_id().unwrap_or_default())
            .send()
            .await,
        "delete version one",
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while env
        .metric("jets3_collector_tombstones_removed_total")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(std::time::Instant::now() < deadline, "no tombstone removed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(get_bytes(&s3, &b, "k").await, b"two");
    let versions = ok(
        s3.list_object_versions().bucket(&b).send().await,
        "versions",
    );
    assert_eq!(versions.versions().len(), 1);
}

/// A bucket scanned in several passes, each holding the references of a share of its objects
/// (`collector.scanBatchObjects`): every orphan goes and every object stays, whichever pass
/// its chunks fall in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_in_several_passes_removes_every_orphan_and_keeps_every_object() {
    let b = unique_bucket("passes");
    let env = Env::start_with(config_with(&[&b]), |s| {
        s.collector.orphan_after_seconds = 3;
        s.collector.scan_batch_objects = 4;
    })
    .await;
    let s3 = env.client();
    let bodies: Vec<Vec<u8>> = (0..16).map(|i| data(1000 + i, i as u64)).collect();
    for (i, body) in bodies.iter().enumerate() {
        put(&s3, &b, &format!("k{i}"), body).await;
    }
    let before = env.chunk_subjects(&b).await;
    assert_eq!(before.len(), 16, "one chunk subject per object");
    let js = env.js().await;
    for i in 0..12 {
        let subject = jets3_nats::names::chunk_subject(&b, &nuid::next().to_string());
        js.publish(subject, data(300, 100 + i).into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    assert_eq!(env.chunk_subjects(&b).await.len(), 28, "12 orphans more");
    env.wait_holds_only_live(&b, 60).await;
    assert_eq!(
        env.chunk_subjects(&b).await,
        before,
        "only the objects' chunks"
    );
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(&get_bytes(&s3, &b, &format!("k{i}")).await, body, "k{i}");
    }
    let found = env
        .metric("jets3_collector_orphans_found_total")
        .await
        .unwrap_or(0.0);
    assert_eq!(found, 12.0, "each orphan found once");
}

/// Whether every stream of `names` exists, polled for up to `secs` seconds.
async fn streams_exist(js: &async_nats::jetstream::Context, names: &[&str], secs: u64) -> bool {
    eventually(secs, || async {
        for name in names {
            if js.get_stream(*name).await.is_err() {
                return false;
            }
        }
        true
    })
    .await
}

/// The collector's own KV buckets deleted under a running gateway (an operator's slip, a
/// stream lost) are made again: its lock, retire records and read registry went with them,
/// and it purges what an overwrite retires again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collectors_kv_buckets_deleted_under_a_running_gateway_are_made_again() {
    let b = unique_bucket("kvgone");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let js = env.js().await;
    let size = 200 << 10;
    put(&s3, &b, "k", &data(size, 1)).await;
    put(&s3, &b, "k", &data(size, 2)).await;
    let one_copy = (size + size / 10 + (64 << 10)) as u64;
    let obj_bytes = || async {
        env.obj_streams()
            .await
            .values()
            .map(|(_, b)| *b)
            .sum::<u64>()
    };
    let settled = || eventually(20, || async { obj_bytes().await <= one_copy });
    assert!(
        settled().await,
        "the first version purged: {} bytes",
        obj_bytes().await
    );

    let kvs = ["KV_jets3_gc", "KV_jets3_locks", "KV_jets3_reads"];
    for name in kvs {
        js.delete_stream(name).await.expect("delete a jets3 KV");
    }
    assert!(streams_exist(&js, &kvs, 20).await, "made again");
    put(&s3, &b, "k", &data(size, 3)).await;
    assert!(
        settled().await,
        "the second version purged: {} bytes",
        obj_bytes().await
    );
    assert!(get_bytes(&s3, &b, "k").await == data(size, 3));
}

/// A gateway without a collector (nothing else to notice), an upload started in a new
/// bucket, then the uploads' KV deleted: the gateway, the bucket and the upload's id.
async fn uploads_kv_deleted(prefix: &str) -> (Env, String, String) {
    let b = unique_bucket(prefix);
    let env = Env::start_with(config_with(&[&b]), |s| s.collector.enabled = false).await;
    let old = start_upload(&env.client(), &b, "m").await;
    env.js()
        .await
        .delete_stream("KV_jets3_uploads")
        .await
        .expect("delete the uploads' KV");
    (env, b, old)
}

/// The uploads' KV deleted under a running gateway (no collector to notice) is made again
/// by the first multipart request that misses it: a new upload starts at once and
/// completes, and an upload the deleted KV held is NoSuchUpload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uploads_kv_deleted_under_a_running_gateway_is_made_again() {
    let (env, b, old) = uploads_kv_deleted("upsgone").await;
    let s3 = env.client();
    let started = std::time::Instant::now();
    let new = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key("m")
            .send()
            .await,
        "CreateMultipartUpload after the uploads' KV was deleted",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    let new = new.upload_id().expect("UploadId");
    let part = data(100 << 10, 3);
    let send_part = |id: String| {
        s3.upload_part()
            .bucket(&b)
            .key("m")
            .upload_id(id)
            .part_number(1)
            .body(part.clone().into())
            .send()
    };
    assert_eq!(sdk_err(send_part(old).await), (404, "NoSuchUpload".into()));
    let etag = ok(send_part(new.to_string()).await, "UploadPart");
    let etag = etag.e_tag().expect("ETag").to_string();
    let done = CompletedMultipartUpload::builder()
        .parts(CompletedPart::builder().part_number(1).e_tag(etag).build())
        .build();
    let completed = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("m")
        .upload_id(new)
        .multipart_upload(done)
        .send()
        .await;
    ok(completed, "CompleteMultipartUpload");
    assert!(get_bytes(&s3, &b, "m").await == part);
}

/// Two gateways that miss the deleted uploads' KV at the same moment both make it again,
/// or find it made by the other: both uploads start, and each gateway lists both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_missing_the_deleted_uploads_kv_at_once_both_go_on() {
    let b = unique_bucket("upstwo");
    let env = Env::start_with(config_with(&[&b]), |s| s.collector.enabled = false).await;
    let peer = env.peer_with(|s| s.collector.enabled = false).await;
    let (via_a, via_b) = (env.client(), peer.client());
    let js = env.js().await;
    let start = |s3| start_upload(s3, &b, "m");
    for s3 in [&via_a, &via_b] {
        start(s3).await;
    }
    for round in 0..3 {
        js.delete_stream("KV_jets3_uploads")
            .await
            .expect("delete the uploads' KV");
        let (a, b_id) = tokio::join!(start(&via_a), start(&via_b));
        let mut started = vec![a, b_id];
        started.sort();
        for s3 in [&via_a, &via_b] {
            assert_eq!(upload_ids(s3, &b).await, started, "round {round}");
        }
    }
}

/// A listing is the first request to miss the deleted uploads' KV: the JetStream API says
/// "stream not found" where a Direct Get finds no responders. The listing answers at once
/// with no uploads, and the KV is there again for the next upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_uploads_after_the_uploads_kv_was_deleted_is_empty_and_makes_it_again() {
    let (env, b, old) = uploads_kv_deleted("upslist").await;
    let s3 = env.client();
    let js = env.js().await;
    let started = std::time::Instant::now();
    let listed = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads after the uploads' KV was deleted",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(listed.uploads().is_empty(), "{:?}", listed.uploads());
    js.get_stream("KV_jets3_uploads")
        .await
        .expect("the uploads' KV is made again");
    let parts = s3
        .list_parts()
        .bucket(&b)
        .key("m")
        .upload_id(old)
        .send()
        .await;
    assert_eq!(sdk_err(parts), (404, "NoSuchUpload".into()));
    let new = start_upload(&s3, &b, "m").await;
    assert_eq!(upload_ids(&s3, &b).await, [new]);
}
