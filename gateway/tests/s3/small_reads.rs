//! Reads of small objects: bytes kept in memory by their chunks' identity, never served for a
//! version the key's lookup no longer names; and a read whose chunks are gone gets an error
//! status, not a cut-off 200.

use aws_sdk_s3::types::BucketVersioningStatus;

use crate::common::*;

const HITS: &str = "jets3_small_reads_hits_total";

/// GETs `key` (optionally a version or a range) and returns its bytes.
async fn get(
    s3: &aws_sdk_s3::Client,
    b: &str,
    key: &str,
    version: Option<&str>,
    range: Option<&str>,
) -> Vec<u8> {
    let out = ok(
        s3.get_object()
            .bucket(b)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .set_range(range.map(str::to_string))
            .send()
            .await,
        "GetObject",
    );
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_reads_come_from_memory_but_never_outlive_their_version() {
    let b = unique_bucket("small-reads");
    let env = Env::with_buckets(&[&b]).await;
    let (s3, other) = (env.client(), env.peer().await);
    let writer = other.client();
    let v1 = data(4096, 1);
    put(&s3, &b, "k", &v1).await;
    assert_eq!(get(&s3, &b, "k", None, None).await, v1);
    assert_eq!(
        env.metric(HITS).await,
        Some(0.0),
        "the first read goes to NATS"
    );
    assert_eq!(get(&s3, &b, "k", None, None).await, v1);
    assert_eq!(
        get(&s3, &b, "k", None, Some("bytes=100-199")).await,
        v1[100..200]
    );
    assert_eq!(env.metric(HITS).await, Some(2.0), "repeated reads are kept");

    // Another gateway overwrites the key with as many bytes: this one serves the new ones.
    let v2 = data(4096, 2);
    put(&writer, &b, "k", &v2).await;
    for _ in 0..2 {
        assert!(get(&s3, &b, "k", None, None).await == v2, "the new bytes");
    }
    // ... and once it is deleted, nothing.
    ok(
        writer.delete_object().bucket(&b).key("k").send().await,
        "DeleteObject",
    );
    let (status, code) = sdk_err(s3.get_object().bucket(&b).key("k").send().await);
    assert_eq!((status, code.as_str()), (404, "NoSuchKey"));

    // Versions of one key are told apart by their chunks.
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let (a, c) = (data(2000, 3), data(2000, 4));
    let va = ok(
        s3.put_object()
            .bucket(&b)
            .key("v")
            .body(a.clone().into())
            .send()
            .await,
        "PutObject",
    );
    assert!(get(&s3, &b, "v", None, None).await == a);
    put(&s3, &b, "v", &c).await;
    for _ in 0..2 {
        assert!(
            get(&s3, &b, "v", None, None).await == c,
            "the current version"
        );
        let old = get(&s3, &b, "v", va.version_id(), None).await;
        assert!(old == a, "the version asked for");
    }
    assert!(env.metric(HITS).await.unwrap_or(0.0) >= 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_whose_chunks_are_gone_answers_an_error_not_a_cut_off_body() {
    let b = unique_bucket("gone-chunks");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "small", &data(4096, 5)).await;
    put(&s3, &b, "large", &data(300 << 10, 6)).await;
    // Every chunk is removed behind the gateway's back (as an operator's purge would).
    let js = env.js().await;
    let stream = js.get_stream(format!("OBJ_{b}")).await.unwrap();
    stream
        .purge()
        .filter(format!("$O.{b}.C.>"))
        .await
        .expect("purge the chunks");
    for key in ["small", "large"] {
        let r = env
            .send_signed(RawRequest::new("GET", &format!("/{b}/{key}")))
            .await;
        r.assert_error(503, "ServiceUnavailable");
    }
}
