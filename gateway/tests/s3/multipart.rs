//! Multipart uploads: concurrent out-of-order parts, Complete validation, Abort, ListParts,
//! ListMultipartUploads, UploadPartCopy, storage accounting.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ObjectAttributes};
use aws_sdk_s3::Client;

use crate::common::*;

pub async fn create_upload(s3: &Client, b: &str, k: &str) -> String {
    ok(
        s3.create_multipart_upload().bucket(b).key(k).send().await,
        "CreateMultipartUpload",
    )
    .upload_id()
    .expect("UploadId")
    .to_string()
}

pub async fn upload_part(s3: &Client, b: &str, k: &str, id: &str, n: i32, body: &[u8]) -> String {
    let out = ok(
        s3.upload_part()
            .bucket(b)
            .key(k)
            .upload_id(id)
            .part_number(n)
            .body(body.to_vec().into())
            .send()
            .await,
        &format!("UploadPart {n}"),
    );
    out.e_tag().expect("part ETag").to_string()
}

/// Completes upload `id` of `key` with every part: the ETag.
pub async fn complete(s3: &Client, b: &str, key: &str, id: &str, etags: &[String]) -> String {
    let list: Vec<(i32, &str)> = etags
        .iter()
        .enumerate()
        .map(|(i, e)| (i as i32 + 1, e.as_str()))
        .collect();
    let done = ok(
        s3.complete_multipart_upload()
            .bucket(b)
            .key(key)
            .upload_id(id)
            .multipart_upload(completed(&list))
            .send()
            .await,
        "Complete",
    );
    done.e_tag().unwrap_or_default().to_string()
}

pub fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|(n, e)| CompletedPart::builder().part_number(*n).e_tag(*e).build())
                .collect(),
        ))
        .build()
}

/// Total bytes of every object-store stream.
async fn obj_bytes(env: &Env) -> u64 {
    env.obj_streams().await.values().map(|(_, b)| *b).sum()
}

/// Polls (up to 8 s) until the object-store streams hold at most `limit` bytes; returns
/// the last total seen.
async fn bytes_settle_at_most(env: &Env, limit: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let total = obj_bytes(env).await;
        if total <= limit || std::time::Instant::now() > deadline {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_concurrent_out_of_order() {
    let b = unique_bucket("mpu");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let key = "videos/clip.mp4";
    let out = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key(key)
            .content_type("video/mp4")
            .metadata("camera", "one")
            .send()
            .await,
        "CreateMultipartUpload",
    );
    assert_eq!(out.bucket(), Some(b.as_str()));
    assert_eq!(out.key(), Some(key));
    let id = out.upload_id().unwrap().to_string();

    let parts = [data(5 * MIB, 1), data(5 * MIB, 2), data(1234, 3)];
    // Upload concurrently, started in the order 3, 1, 2.
    let mut handles = Vec::new();
    for n in [3usize, 1, 2] {
        let (s3, b, id, body) = (s3.clone(), b.clone(), id.clone(), parts[n - 1].clone());
        handles.push(tokio::spawn(async move {
            (n, upload_part(&s3, &b, key, &id, n as i32, &body).await)
        }));
    }
    let mut etags = HashMap::new();
    for h in handles {
        let (n, e) = h.await.unwrap();
        assert_eq!(e, etag_of(&parts[n - 1]), "part {n} ETag is its MD5");
        etags.insert(n, e);
    }

    let lp = ok(
        s3.list_parts()
            .bucket(&b)
            .key(key)
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    let listed: Vec<(i32, i64, String)> = lp
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap(),
                p.size().unwrap(),
                p.e_tag().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            (1, 5 * MIB as i64, etags[&1].clone()),
            (2, 5 * MIB as i64, etags[&2].clone()),
            (3, 1234, etags[&3].clone())
        ]
    );

    let done = ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key(key)
            .upload_id(&id)
            .multipart_upload(completed(&[
                (1, &etags[&1]),
                (2, &etags[&2]),
                (3, &etags[&3]),
            ]))
            .send()
            .await,
        "CompleteMultipartUpload",
    );
    let want_etag = multipart_etag(&[&parts[0], &parts[1], &parts[2]]);
    assert_eq!(done.e_tag(), Some(want_etag.as_str()), "multipart ETag");
    assert_eq!(done.bucket(), Some(b.as_str()));
    assert_eq!(done.key(), Some(key));

    let whole: Vec<u8> = parts.concat();
    let got = ok(
        s3.get_object().bucket(&b).key(key).send().await,
        "GetObject",
    );
    assert_eq!(got.e_tag(), Some(want_etag.as_str()));
    assert_eq!(got.content_length(), Some(whole.len() as i64));
    assert_eq!(
        got.content_type(),
        Some("video/mp4"),
        "Create's Content-Type kept"
    );
    assert_eq!(
        got.metadata()
            .and_then(|m| m.get("camera"))
            .map(String::as_str),
        Some("one"),
        "Create's metadata kept"
    );
    let body = got.body.collect().await.unwrap().into_bytes();
    assert!(
        body == whole,
        "multipart object is the concatenation of its parts"
    );

    let attrs = ok(
        s3.get_object_attributes()
            .bucket(&b)
            .key(key)
            .object_attributes(ObjectAttributes::ObjectParts)
            .object_attributes(ObjectAttributes::ObjectSize)
            .send()
            .await,
        "GetObjectAttributes",
    );
    assert_eq!(attrs.object_size(), Some(whole.len() as i64));
    assert_eq!(
        attrs.object_parts().and_then(|p| p.total_parts_count()),
        Some(3)
    );

    assert_eq!(
        sdk_err(
            s3.list_parts()
                .bucket(&b)
                .key(key)
                .upload_id(&id)
                .send()
                .await
        ),
        (404, "NoSuchUpload".into()),
        "the upload is gone after Complete"
    );
    let ups = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads",
    );
    assert!(ups.uploads().is_empty());

    // No part data left behind: the streams hold about one copy of the object.
    let size = whole.len() as u64;
    let limit = size + size / 10 + 64 * 1024;
    let total = bytes_settle_at_most(&env, limit).await;
    assert!(
        total <= limit,
        "object-store streams hold {total} bytes for a {size}-byte object: parts leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_small_part_is_entity_too_small() {
    let b = unique_bucket("small");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let e1 = upload_part(&s3, &b, "k", &id, 1, &data(MIB, 1)).await;
    let e2 = upload_part(&s3, &b, "k", &id, 2, &data(MIB, 2)).await;
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "EntityTooSmall".into()));
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404, "no object after a refused Complete");
    // The upload survives a refused Complete; a single small (last) part is fine.
    let done = ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(2, &e2)]))
            .send()
            .await,
        "Complete with only the last part",
    );
    assert_eq!(
        done.e_tag(),
        Some(multipart_etag(&[&data(MIB, 2)]).as_str())
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, data(MIB, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_unknown_part_or_wrong_etag_is_invalid_part() {
    let b = unique_bucket("invpart");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let p1 = data(5 * MIB, 1);
    let e1 = upload_part(&s3, &b, "k", &id, 1, &p1).await;
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[
            (1, &e1),
            (2, "\"0123456789abcdef0123456789abcdef\""),
        ]))
        .send()
        .await;
    assert_eq!(
        sdk_err(r),
        (400, "InvalidPart".into()),
        "part 2 was never uploaded"
    );
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, "\"ffffffffffffffffffffffffffffffff\"")]))
        .send()
        .await;
    assert_eq!(
        sdk_err(r),
        (400, "InvalidPart".into()),
        "wrong ETag for part 1"
    );
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_parts_out_of_order_is_invalid_part_order() {
    let b = unique_bucket("order");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let e1 = upload_part(&s3, &b, "k", &id, 1, &data(5 * MIB, 1)).await;
    // Both parts are big enough: the order is the only problem.
    let e2 = upload_part(&s3, &b, "k", &id, 2, &data(5 * MIB, 2)).await;
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(2, &e2), (1, &e1)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "InvalidPartOrder".into()));
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_with_no_parts_is_malformed_xml() {
    let b = unique_bucket("noparts");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let body = "<CompleteMultipartUpload></CompleteMultipartUpload>";
    let r = env
        .send_signed(
            RawRequest::new("POST", &format!("/{b}/k?uploadId={}", enc_query(&id))).body(body),
        )
        .await;
    r.assert_error(400, "MalformedXML");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuploading_a_part_replaces_it() {
    let b = unique_bucket("reup");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let first = upload_part(&s3, &b, "k", &id, 1, b"first attempt").await;
    let second = upload_part(&s3, &b, "k", &id, 1, b"second").await;
    assert_ne!(first, second);
    let lp = ok(
        s3.list_parts()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    assert_eq!(lp.parts().len(), 1);
    assert_eq!(lp.parts()[0].e_tag(), Some(second.as_str()));
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &first)]))
        .send()
        .await;
    assert_eq!(
        sdk_err(r),
        (400, "InvalidPart".into()),
        "the replaced part's ETag"
    );
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &second)]))
            .send()
            .await,
        "Complete",
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_removes_upload_and_part_data() {
    let b = unique_bucket("abort");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let bytes_before = obj_bytes(&env).await;
    let id = create_upload(&s3, &b, "k").await;
    let e1 = upload_part(&s3, &b, "k", &id, 1, &data(5 * MIB, 1)).await;
    upload_part(&s3, &b, "k", &id, 2, &data(MIB, 2)).await;
    let r = env
        .send_signed(RawRequest::new(
            "DELETE",
            &format!("/{b}/k?uploadId={}", enc_query(&id)),
        ))
        .await;
    r.assert_status(204);
    assert_eq!(
        sdk_err(
            s3.list_parts()
                .bucket(&b)
                .key("k")
                .upload_id(&id)
                .send()
                .await
        ),
        (404, "NoSuchUpload".into())
    );
    let r = s3
        .upload_part()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .part_number(3)
        .body(b"late".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchUpload".into()));
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchUpload".into()));
    let r = s3
        .abort_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchUpload".into()), "second Abort");
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404);
    let now = bytes_settle_at_most(&env, bytes_before + 16 * 1024).await;
    assert!(
        now <= bytes_before + 16 * 1024,
        "6 MiB of aborted parts must not stay in the streams: {bytes_before} bytes before, {now} after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_upload_id_is_no_such_upload() {
    let b = unique_bucket("noup");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let r = s3
        .upload_part()
        .bucket(&b)
        .key("k")
        .upload_id("bogus-upload-id")
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchUpload".into()));
    assert_eq!(
        sdk_err(
            s3.list_parts()
                .bucket(&b)
                .key("k")
                .upload_id("bogus-upload-id")
                .send()
                .await
        ),
        (404, "NoSuchUpload".into())
    );
    // An upload id belongs to its key.
    let id = create_upload(&s3, &b, "real").await;
    let r = s3
        .upload_part()
        .bucket(&b)
        .key("other")
        .upload_id(&id)
        .part_number(1)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchUpload".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_number_out_of_range() {
    let b = unique_bucket("pnum");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    for n in [0, 10001] {
        let r = env
            .send_signed(
                RawRequest::new(
                    "PUT",
                    &format!("/{b}/k?partNumber={n}&uploadId={}", enc_query(&id)),
                )
                .body("x"),
            )
            .await;
        r.assert_error(400, "InvalidArgument");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_parts_pagination() {
    let b = unique_bucket("lparts");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let mut etags = Vec::new();
    for n in 1..=3 {
        etags.push(upload_part(&s3, &b, "k", &id, n, format!("part {n}").as_bytes()).await);
    }
    let p1 = ok(
        s3.list_parts()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .max_parts(2)
            .send()
            .await,
        "ListParts page 1",
    );
    let nums: Vec<i32> = p1.parts().iter().filter_map(|p| p.part_number()).collect();
    assert_eq!(nums, vec![1, 2]);
    assert_eq!(p1.is_truncated(), Some(true));
    assert_eq!(p1.next_part_number_marker(), Some("2"));
    assert_eq!(p1.max_parts(), Some(2));
    assert_eq!(p1.upload_id(), Some(id.as_str()));
    assert_eq!(p1.key(), Some("k"));
    let p2 = ok(
        s3.list_parts()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .max_parts(2)
            .part_number_marker("2")
            .send()
            .await,
        "ListParts page 2",
    );
    let nums: Vec<i32> = p2.parts().iter().filter_map(|p| p.part_number()).collect();
    assert_eq!(nums, vec![3]);
    assert_eq!(p2.is_truncated(), Some(false));
    assert_eq!(p2.part_number_marker(), Some("2"));
    assert_eq!(p2.parts()[0].e_tag(), Some(etags[2].as_str()));
    assert_eq!(p2.parts()[0].size(), Some(6));
    assert!(p2.parts()[0].last_modified().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_multipart_uploads_with_markers() {
    let b = unique_bucket("lups");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let mut all = Vec::new();
    for k in ["c", "a/1", "b", "b"] {
        all.push((k.to_string(), create_upload(&s3, &b, k).await));
    }
    let out = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads",
    );
    let keys: Vec<&str> = out.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, vec!["a/1", "b", "b", "c"], "sorted by key");
    assert_eq!(out.is_truncated(), Some(false));
    for u in out.uploads() {
        assert!(u.initiated().is_some(), "Initiated");
    }

    // Pages of 2 with key-marker / upload-id-marker.
    let mut seen = Vec::new();
    let (mut km, mut um): (Option<String>, Option<String>) = (None, None);
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 10, "pagination does not end");
        let out = ok(
            s3.list_multipart_uploads()
                .bucket(&b)
                .max_uploads(2)
                .set_key_marker(km.clone())
                .set_upload_id_marker(um.clone())
                .send()
                .await,
            "ListMultipartUploads page",
        );
        assert_eq!(out.max_uploads(), Some(2));
        let page: Vec<(String, String)> = out
            .uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap().to_string(),
                    u.upload_id().unwrap().to_string(),
                )
            })
            .collect();
        assert!(page.len() <= 2);
        if out.is_truncated() == Some(true) {
            let last = page.last().expect("a truncated page is not empty").clone();
            assert_eq!(
                out.next_key_marker(),
                Some(last.0.as_str()),
                "NextKeyMarker"
            );
            assert_eq!(
                out.next_upload_id_marker(),
                Some(last.1.as_str()),
                "NextUploadIdMarker"
            );
            km = Some(last.0.clone());
            um = Some(last.1.clone());
            seen.extend(page);
        } else {
            seen.extend(page);
            break;
        }
    }
    let mut want = all.clone();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want, "every upload exactly once across pages");
    let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec!["a/1", "b", "b", "c"]);

    let out = ok(
        s3.list_multipart_uploads()
            .bucket(&b)
            .prefix("a/")
            .send()
            .await,
        "prefix",
    );
    assert_eq!(out.uploads().len(), 1);
    assert_eq!(out.uploads()[0].key(), Some("a/1"));
    let out = ok(
        s3.list_multipart_uploads()
            .bucket(&b)
            .delimiter("/")
            .send()
            .await,
        "delimiter",
    );
    let cps: Vec<&str> = out
        .common_prefixes()
        .iter()
        .filter_map(|c| c.prefix())
        .collect();
    assert_eq!(cps, vec!["a/"]);
    let keys: Vec<&str> = out.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, vec!["b", "b", "c"]);
    let out = ok(
        s3.list_multipart_uploads()
            .bucket(&b)
            .key_marker("b")
            .send()
            .await,
        "key-marker alone",
    );
    let keys: Vec<&str> = out.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(
        keys,
        vec!["c"],
        "key-marker alone skips every upload of that key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_with_ranges() {
    let b = unique_bucket("upc");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let src = data(7 * MIB + 100, 4);
    put(&s3, &b, "source", &src).await;
    let id = create_upload(&s3, &b, "dest").await;
    let split = 5 * MIB;
    let c1 = ok(
        s3.upload_part_copy()
            .bucket(&b)
            .key("dest")
            .upload_id(&id)
            .part_number(1)
            .copy_source(format!("{b}/source"))
            .copy_source_range(format!("bytes=0-{}", split - 1))
            .send()
            .await,
        "UploadPartCopy 1",
    );
    let e1 = c1
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .unwrap()
        .to_string();
    assert_eq!(e1, etag_of(&src[..split]));
    let c2 = ok(
        s3.upload_part_copy()
            .bucket(&b)
            .key("dest")
            .upload_id(&id)
            .part_number(2)
            .copy_source(format!("{b}/source"))
            .copy_source_range(format!("bytes={}-{}", split, src.len() - 1))
            .send()
            .await,
        "UploadPartCopy 2",
    );
    let e2 = c2
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .unwrap()
        .to_string();
    assert_eq!(e2, etag_of(&src[split..]));
    // A part copied whole, in a separate upload.
    let id2 = create_upload(&s3, &b, "whole").await;
    let c3 = ok(
        s3.upload_part_copy()
            .bucket(&b)
            .key("whole")
            .upload_id(&id2)
            .part_number(1)
            .copy_source(format!("{b}/source"))
            .send()
            .await,
        "UploadPartCopy without range",
    );
    let e3 = c3
        .copy_part_result()
        .and_then(|r| r.e_tag())
        .unwrap()
        .to_string();
    assert_eq!(e3, etag_of(&src));

    let done = ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("dest")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
            .send()
            .await,
        "Complete",
    );
    assert_eq!(
        done.e_tag(),
        Some(multipart_etag(&[&src[..split], &src[split..]]).as_str())
    );
    assert!(
        get_bytes(&s3, &b, "dest").await == src,
        "copied parts rebuild the source"
    );

    let r = s3
        .upload_part_copy()
        .bucket(&b)
        .key("whole")
        .upload_id(&id2)
        .part_number(2)
        .copy_source(format!("{b}/missing"))
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchKey".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_create_on_missing_bucket() {
    let env = Env::with_buckets(&[]).await;
    let r = env
        .client()
        .create_multipart_upload()
        .bucket(unique_bucket("nob"))
        .key("k")
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchBucket".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_uploads_expire() {
    // The collector expires uploads on its scans; this test runs one pass by hand.
    let b = unique_bucket("expire");
    let mut cfg = config_with(&[&b]);
    cfg.limits.multipart_expiry_seconds = 2;
    let env = Env::start_with(cfg, |s| s.collector.enabled = false).await;
    let s3 = env.client();
    let bytes_before = obj_bytes(&env).await;
    let old1 = create_upload(&s3, &b, "old1").await;
    upload_part(&s3, &b, "old1", &old1, 1, &data(MIB, 1)).await;
    let old2 = create_upload(&s3, &b, "old2").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fresh = create_upload(&s3, &b, "fresh").await;
    upload_part(&s3, &b, "fresh", &fresh, 1, b"fresh part").await;

    let gw = env.gw().gateway();
    let settings = jets3_gateway::config::settings::CollectorSettings {
        grace_seconds: 1,
        ..Default::default()
    };
    let collector = jets3_gateway::store::Collector::new(gw.store.clone(), settings);
    let led = collector.pass(Some(2), true).await;
    assert!(matches!(led, Ok(true)), "the only collector leads: {led:?}");
    let stats = collector.stats();
    let n = stats
        .uploads_expired
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(n, 2, "the two uploads older than 2 s expire");
    for (k, id) in [("old1", &old1), ("old2", &old2)] {
        assert_eq!(
            sdk_err(s3.list_parts().bucket(&b).key(k).upload_id(id).send().await),
            (404, "NoSuchUpload".into()),
            "{k} expired"
        );
    }
    let ups = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads",
    );
    let keys: Vec<&str> = ups.uploads().iter().filter_map(|u| u.key()).collect();
    assert_eq!(keys, vec!["fresh"], "the fresh upload stays");
    // Their parts are retired: purged by a pass after the grace period (2 s here).
    let limit = bytes_before + 64 * 1024;
    let purged = eventually(15, || async {
        let _ = collector.pass(Some(2), false).await;
        obj_bytes(&env).await <= limit
    })
    .await;
    let now = obj_bytes(&env).await;
    assert!(
        purged,
        "expired part data is purged: {bytes_before} before, {now} after"
    );
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("fresh")
            .upload_id(&fresh)
            .multipart_upload(completed(&[(1, &etag_of(b"fresh part"))]))
            .send()
            .await,
        "the fresh upload completes",
    );
    assert_eq!(get_bytes(&s3, &b, "fresh").await, b"fresh part");
}

/// A part's record that reaches NATS late (2.2 s: past one metadata attempt, within the
/// 3 s NATS request timeout) is written once. A write that timed out may still land, and
/// writing it again could put it back over the record of a later UploadPart of the same
/// number, which has retired this one's chunks by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_part_record_is_written_once() {
    let b = unique_bucket("part-late");
    let (env, proxy) = crate::netfault::env_behind_proxy(&b, |_| {}).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let record = format!("$KV.jets3_uploads.{}.{id}.1", b.replace('.', "_"));
    proxy.hold_publishes_to(&[&record], Duration::from_millis(2200));
    let body = data(100 << 10, 41);
    let etag = upload_part(&s3, &b, "k", &id, 1, &body).await;
    proxy.heal();
    assert_eq!(proxy.publishes_to(&record), 1, "the part record's writes");
    complete(&s3, &b, "k", &id, &[etag]).await;
    assert!(get_bytes(&s3, &b, "k").await == body);
}
