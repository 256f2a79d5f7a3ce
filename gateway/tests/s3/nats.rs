//! NATS side: native interop with the async-nats object-store client, buckets made or
//! deleted natively, and a NATS restart in the middle of a run.

use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use sha2::Digest;
use tokio::io::AsyncReadExt;

use crate::common::*;

async fn native_get(
    store: &async_nats::jetstream::object_store::ObjectStore,
    name: &str,
) -> Vec<u8> {
    let mut obj = store
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("native get {name:?}: {e}"));
    let mut out = Vec::new();
    obj.read_to_end(&mut out)
        .await
        .unwrap_or_else(|e| panic!("native read {name:?} (digest checked at the end): {e}"));
    out
}

fn nats_digest(data: &[u8]) -> String {
    format!(
        "SHA-256={}",
        base64::engine::general_purpose::URL_SAFE.encode(sha2::Sha256::digest(data))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_objects_read_back_natively() {
    let b = format!("{}.interop", unique_bucket("my.data"));
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let small = b"small object".to_vec();
    let big = data(MIB + 4321, 41);
    put(&s3, &b, "small.txt", &small).await;
    put(&s3, &b, "dir/big.bin", &big).await;
    // A multipart object is a normal NATS object too, once the collector has compacted it.
    let id = crate::multipart::create_upload(&s3, &b, "mp.bin").await;
    let p1 = data(5 * MIB, 42);
    let p2 = data(1000, 43);
    let e1 = crate::multipart::upload_part(&s3, &b, "mp.bin", &id, 1, &p1).await;
    let e2 = crate::multipart::upload_part(&s3, &b, "mp.bin", &id, 2, &p2).await;
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("mp.bin")
            .upload_id(&id)
            .multipart_upload(crate::multipart::completed(&[(1, &e1), (2, &e2)]))
            .send()
            .await,
        "Complete",
    );
    let mp = [p1, p2].concat();

    let js = env.js().await;
    let store = js
        .get_object_store(b.replace('.', "_"))
        .await
        .expect("the NATS bucket is the S3 name with . mapped to _");
    let compacted = eventually(20, || async {
        match store.get("mp.bin").await {
            Ok(mut o) => {
                let mut out = Vec::new();
                o.read_to_end(&mut out).await.is_ok() && out == mp
            }
            Err(_) => false,
        }
    })
    .await;
    assert!(compacted, "the multipart object is compacted");
    for (name, want) in [
        ("small.txt", &small),
        ("dir/big.bin", &big),
        ("mp.bin", &mp),
    ] {
        let got = native_get(&store, name).await;
        assert!(
            got == *want,
            "{name}: native bytes equal what went through S3"
        );
        let info = store.info(name).await.expect("native info");
        assert_eq!(info.size, want.len(), "{name} size");
        assert_eq!(
            info.digest.as_deref(),
            Some(nats_digest(want).as_str()),
            "{name} digest"
        );
    }
    // Native listing sees exactly the S3 objects (no upload leftovers).
    let mut list = store.list().await.expect("native list");
    let mut names = Vec::new();
    while let Some(o) = list.next().await {
        names.push(o.expect("info").name);
    }
    names.sort();
    assert_eq!(names, vec!["dir/big.bin", "mp.bin", "small.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_objects_are_served() {
    let b = unique_bucket("native");
    let env = Env::with_buckets(&[&b]).await;
    let js = env.js().await;
    let store = js.get_object_store(&b).await.expect("store");
    let body = data(300_000, 44);
    let mut r: &[u8] = &body;
    store
        .put("native/dir/file.bin", &mut r)
        .await
        .expect("native put");
    let mut r: &[u8] = b"";
    store
        .put("native/empty", &mut r)
        .await
        .expect("native put empty");

    let s3 = env.client();
    let got = ok(
        s3.get_object()
            .bucket(&b)
            .key("native/dir/file.bin")
            .send()
            .await,
        "GetObject of a native object",
    );
    assert_eq!(got.content_length(), Some(body.len() as i64));
    assert!(got.e_tag().is_some_and(|e| !e.is_empty()), "an ETag");
    assert!(got.last_modified().is_some());
    assert!(got.body.collect().await.unwrap().into_bytes() == body);
    let head = ok(
        s3.head_object().bucket(&b).key("native/empty").send().await,
        "HeadObject",
    );
    assert_eq!(head.content_length(), Some(0));
    let list = ok(
        s3.list_objects_v2().bucket(&b).send().await,
        "ListObjectsV2",
    );
    let listed: Vec<(String, i64)> = list
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_string(), o.size().unwrap()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("native/dir/file.bin".to_string(), body.len() as i64),
            ("native/empty".to_string(), 0)
        ]
    );
    let got = ok(
        s3.get_object()
            .bucket(&b)
            .key("native/dir/file.bin")
            .range("bytes=200000-200099")
            .send()
            .await,
        "ranged GET of a native object",
    );
    assert!(got.body.collect().await.unwrap().into_bytes() == body[200_000..200_100]);
    // Deleting through S3 removes it for native clients too.
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("native/empty")
            .send()
            .await,
        "DeleteObject",
    );
    let deleted = match store.info("native/empty").await {
        Ok(info) => info.deleted,
        Err(_) => true,
    };
    assert!(deleted, "deleted for native clients too");
    assert!(
        store.get("native/empty").await.is_err(),
        "native get of a deleted object fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn natively_created_bucket_is_served() {
    let env = Env::with_buckets(&[]).await;
    let js = env.js().await;
    let name = unique_bucket("made-natively");
    let store = js
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: name.clone(),
            ..Default::default()
        })
        .await
        .expect("create object store");
    let mut r: &[u8] = b"from nats";
    store.put("hello", &mut r).await.unwrap();
    let s3 = env.client();
    let ok_listed = eventually(5, || async {
        let l = ok(s3.list_buckets().send().await, "ListBuckets");
        l.buckets().iter().any(|b| b.name() == Some(name.as_str()))
    })
    .await;
    assert!(ok_listed, "a bucket created natively is listed");
    assert_eq!(get_bytes(&s3, &name, "hello").await, b"from nats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_deleted_underneath_is_no_such_bucket() {
    let b = unique_bucket("vanish");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"x").await;
    assert_eq!(get_bytes(&s3, &b, "k").await, b"x");
    env.js()
        .await
        .delete_object_store(&b)
        .await
        .expect("native delete");
    let gone = eventually(5, || async {
        let r = env
            .send_signed(RawRequest::new("GET", &format!("/{b}/k")))
            .await;
        r.status == 404 && r.code().as_deref() == Some("NoSuchBucket")
    })
    .await;
    assert!(
        gone,
        "GET answers 404 NoSuchBucket once the bucket is deleted in NATS"
    );
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}?list-type=2")))
        .await;
    r.assert_error(404, "NoSuchBucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_run() {
    let b = unique_bucket("restart");
    let mut env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let ready = env.admin_get("/readyz").await;
    ready.assert_status(200);
    let mut acked = Vec::new();
    for i in 0..20 {
        let k = format!("before/{i:02}");
        let body = data(1000 + i * 300, i as u64);
        put(&s3, &b, &k, &body).await; // panics unless 200
        acked.push((k, body));
    }

    env.nats.stop().await;
    let not_ready = eventually(10, || async {
        env.admin_get("/readyz").await.status == 503
    })
    .await;
    assert!(not_ready, "/readyz turns 503 while NATS is down");
    assert_eq!(
        env.admin_get("/healthz").await.status,
        200,
        "/healthz stays 200"
    );

    for req in [
        RawRequest::new("GET", &format!("/{b}/before/00")),
        RawRequest::new("PUT", &format!("/{b}/during")).body("x"),
        RawRequest::new("GET", &format!("/{b}?list-type=2")),
    ] {
        let what = format!("{} {}", req.method, req.path);
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(10), env.send_signed(req))
            .await
            .unwrap_or_else(|_| panic!("{what} hangs while NATS is down"));
        assert!(
            t.elapsed() < Duration::from_secs(6),
            "{what} took {:?} while NATS is down",
            t.elapsed()
        );
        let code = r.code().unwrap_or_default();
        assert!(
            r.status == 503 && (code == "ServiceUnavailable" || code == "SlowDown"),
            "{what} while NATS is down: {} {}",
            r.status,
            r.text()
        );
        r.assert_error(503, &code);
    }

    env.nats.restart().await;
    let back = eventually(30, || async {
        env.admin_get("/readyz").await.status == 200
    })
    .await;
    assert!(back, "/readyz is 200 again after NATS restarts");
    for (k, body) in &acked {
        assert!(
            get_bytes(&s3, &b, k).await == *body,
            "{k} acknowledged before the restart is readable after it"
        );
    }
    put(&s3, &b, "after", b"serving again").await;
    assert_eq!(get_bytes(&s3, &b, "after").await, b"serving again");
    let keys = list_all_keys(&s3, &b).await;
    assert_eq!(keys.len(), 21, "{keys:?}");
    assert!(!keys.contains(&"during".to_string()));
}
