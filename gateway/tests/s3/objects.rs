//! Object operations: Put/Get/Head/Delete, DeleteObjects, CopyObject, tagging, ACLs,
//! GetObjectAttributes, checksums, streaming uploads through the SDK, 100-continue, PostObject.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectAttributes, ObjectCannedAcl,
    ObjectIdentifier, Permission as AclPermission, Tag, Tagging,
};
use tokio::io::AsyncWriteExt;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_roundtrip_exact() {
    let b = unique_bucket("obj");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(1000, 1);
    let t0 = SystemTime::now() - Duration::from_secs(2);
    let out = ok(
        s3.put_object()
            .bucket(&b)
            .key("dir/file.bin")
            .body(body.clone().into())
            .send()
            .await,
        "PutObject",
    );
    assert_eq!(
        out.e_tag(),
        Some(etag_of(&body).as_str()),
        "PUT ETag is the quoted MD5"
    );
    assert!(
        out.request_id().is_some_and(|r| !r.is_empty()),
        "x-amz-request-id on PUT"
    );

    let got = ok(
        s3.get_object().bucket(&b).key("dir/file.bin").send().await,
        "GetObject",
    );
    assert_eq!(got.e_tag(), Some(etag_of(&body).as_str()));
    assert_eq!(got.content_length(), Some(1000));
    assert_eq!(got.content_type(), Some("application/octet-stream"));
    assert_eq!(got.accept_ranges(), Some("bytes"));
    assert!(got.request_id().is_some_and(|r| !r.is_empty()));
    let lm = SystemTime::try_from(*got.last_modified().expect("Last-Modified")).unwrap();
    assert!(
        lm >= t0 && lm <= SystemTime::now() + Duration::from_secs(1),
        "Last-Modified {lm:?} is the PUT time"
    );
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], &body[..], "GET body is byte-equal");

    let head = ok(
        s3.head_object().bucket(&b).key("dir/file.bin").send().await,
        "HeadObject",
    );
    assert_eq!(head.content_length(), Some(1000));
    assert_eq!(head.e_tag(), Some(etag_of(&body).as_str()));
    assert_eq!(head.content_type(), Some("application/octet-stream"));

    // Raw: exact header formats.
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/dir/file.bin")))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, body);
    assert_eq!(r.header("etag"), Some(etag_of(&body).as_str()));
    assert_eq!(r.header("content-length"), Some("1000"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let lm = r.header("last-modified").expect("last-modified");
    assert!(lm.ends_with(" GMT"), "Last-Modified is an HTTP date: {lm}");
    parse_http_date(lm);
    let r2 = env
        .send_signed(RawRequest::new("HEAD", &format!("/{b}/dir/file.bin")))
        .await;
    r2.assert_status(200);
    assert_eq!(r2.header("content-length"), Some("1000"));
    assert_eq!(r2.header("etag"), r.header("etag"));
    assert_eq!(r2.header("last-modified"), r.header("last-modified"));
    let (id1, id2) = (r.header("x-amz-request-id"), r2.header("x-amz-request-id"));
    assert!(
        id1.is_some() && id2.is_some() && id1 != id2,
        "distinct request ids {id1:?} {id2:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_object() {
    let b = unique_bucket("empty");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let etag = put(&s3, &b, "empty", b"").await;
    assert_eq!(etag, "\"d41d8cd98f00b204e9800998ecf8427e\"");
    let got = ok(
        s3.get_object().bucket(&b).key("empty").send().await,
        "GetObject",
    );
    assert_eq!(got.content_length(), Some(0));
    assert!(got.body.collect().await.unwrap().into_bytes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overwrite_replaces_content() {
    let b = unique_bucket("over");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"first version").await;
    let etag = put(&s3, &b, "k", b"second").await;
    assert_eq!(etag, etag_of(b"second"));
    assert_eq!(get_bytes(&s3, &b, "k").await, b"second");
    assert_eq!(list_all_keys(&s3, &b).await, vec!["k".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_spanning_many_chunks() {
    let b = unique_bucket("large");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(3 * MIB + 12345, 7);
    let etag = put(&s3, &b, "big", &body).await;
    assert_eq!(etag, etag_of(&body));
    let got = get_bytes(&s3, &b, "big").await;
    assert_eq!(got.len(), body.len());
    assert!(got == body, "3 MiB body is byte-equal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_headers_and_user_metadata() {
    let b = unique_bucket("hdrs");
    let env = Env::with_buckets(&[&b]).await;
    let expires = "Wed, 21 Oct 2037 07:28:00 GMT";
    let r = env
        .send_signed(
            RawRequest::new("PUT", &format!("/{b}/doc.txt"))
                .header("content-type", "text/plain; charset=utf-8")
                .header("content-encoding", "gzip")
                .header("content-disposition", "attachment; filename=\"doc.txt\"")
                .header("content-language", "de-DE")
                .header("cache-control", "max-age=60")
                .header("expires", expires)
                .header("x-amz-meta-color", "blue")
                .header("x-amz-meta-Mixed-Case", "Value With Spaces")
                .body("not really gzip"),
        )
        .await;
    r.assert_status(200);
    for method in ["GET", "HEAD"] {
        let r = env
            .send_signed(RawRequest::new(method, &format!("/{b}/doc.txt")))
            .await;
        r.assert_status(200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{method}"
        );
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{method}");
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"doc.txt\""),
            "{method}"
        );
        assert_eq!(r.header("content-language"), Some("de-DE"), "{method}");
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "{method}");
        assert_eq!(r.header("expires"), Some(expires), "{method}");
        assert_eq!(r.header("x-amz-meta-color"), Some("blue"), "{method}");
        assert_eq!(
            r.header("x-amz-meta-mixed-case"),
            Some("Value With Spaces"),
            "{method}"
        );
        if method == "GET" {
            assert_eq!(r.body, b"not really gzip");
        }
    }
    let head = ok(
        env.client()
            .head_object()
            .bucket(&b)
            .key("doc.txt")
            .send()
            .await,
        "HeadObject",
    );
    let meta: HashMap<String, String> = head.metadata().cloned().unwrap_or_default();
    assert_eq!(
        meta,
        HashMap::from([
            ("color".to_string(), "blue".to_string()),
            ("mixed-case".to_string(), "Value With Spaces".to_string())
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_overrides_on_get() {
    let b = unique_bucket("resp");
    let env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "o", b"override me").await;
    let q = [
        ("response-cache-control", "no-cache"),
        (
            "response-content-disposition",
            "attachment; filename=\"x.bin\"",
        ),
        ("response-content-encoding", "identity"),
        ("response-content-language", "fr"),
        ("response-content-type", "application/x-test"),
        ("response-expires", "Thu, 01 Jan 2037 00:00:00 GMT"),
    ];
    let qs: Vec<String> = q
        .iter()
        .map(|(k, v)| format!("{k}={}", enc_query(v)))
        .collect();
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/o?{}", qs.join("&"))))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, b"override me");
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(
        r.header("content-disposition"),
        Some("attachment; filename=\"x.bin\"")
    );
    assert_eq!(r.header("content-encoding"), Some("identity"));
    assert_eq!(r.header("content-language"), Some("fr"));
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.header("expires"), Some("Thu, 01 Jan 2037 00:00:00 GMT"));
    // The SDK sends them the same way.
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("o")
            .response_content_type("text/x-sdk")
            .send()
            .await,
        "GetObject with response-content-type",
    );
    assert_eq!(got.content_type(), Some("text/x-sdk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_missing_key() {
    let b = unique_bucket("nokey");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    assert_eq!(
        sdk_err(s3.get_object().bucket(&b).key("nope").send().await),
        (404, "NoSuchKey".into())
    );
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("nope").send().await);
    assert_eq!(status, 404);
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/no/such%20key")))
        .await;
    r.assert_error(404, "NoSuchKey");
    assert_eq!(xml_tag(&r.text(), "Key").as_deref(), Some("no/such key"));
    let r = env
        .send_signed(RawRequest::new("HEAD", &format!("/{b}/nope")))
        .await;
    r.assert_status(404);
    assert!(r.header("x-amz-request-id").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_object_is_204_even_when_missing() {
    let b = unique_bucket("del");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"v").await;
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{b}/k")))
        .await;
    r.assert_status(204);
    assert_eq!(
        sdk_err(s3.get_object().bucket(&b).key("k").send().await),
        (404, "NoSuchKey".into())
    );
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{b}/k")))
        .await;
    r.assert_status(204);
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{b}/never-existed")))
        .await;
    r.assert_status(204);
    assert!(list_all_keys(&s3, &b).await.is_empty());
}

fn ids(keys: &[&str]) -> Vec<ObjectIdentifier> {
    keys.iter()
        .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_reports_every_key() {
    let b = unique_bucket("dels");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    for k in ["k1", "k2", "k3"] {
        put(&s3, &b, k, k.as_bytes()).await;
    }
    let out = ok(
        s3.delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids(&["k1", "k2", "missing"])))
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "DeleteObjects",
    );
    let mut deleted: Vec<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(
        deleted,
        vec!["k1", "k2", "missing"],
        "a missing key counts as deleted"
    );
    assert!(out.errors().is_empty(), "errors: {:?}", out.errors());
    assert_eq!(list_all_keys(&s3, &b).await, vec!["k3".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_quiet() {
    let b = unique_bucket("quiet");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    for k in ["a", "b"] {
        put(&s3, &b, k, b"x").await;
    }
    let out = ok(
        s3.delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids(&["a", "b"])))
                    .quiet(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "DeleteObjects quiet",
    );
    assert!(
        out.deleted().is_empty(),
        "quiet mode lists no Deleted: {:?}",
        out.deleted()
    );
    assert!(out.errors().is_empty());
    assert!(list_all_keys(&s3, &b).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_per_key_error() {
    let b = unique_bucket("perkey");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "good", b"x").await;
    let long = "k".repeat(1025);
    let out = ok(
        s3.delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids(&["good", &long])))
                    .quiet(true)
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "DeleteObjects with one bad key",
    );
    assert_eq!(
        out.errors().len(),
        1,
        "one per-key error: {:?}",
        out.errors()
    );
    let e = &out.errors()[0];
    assert_eq!(e.key(), Some(long.as_str()));
    assert!(e.code().is_some_and(|c| !c.is_empty()), "error code: {e:?}");
    assert!(
        list_all_keys(&s3, &b).await.is_empty(),
        "the good key was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_objects_more_than_1000_keys_is_malformed() {
    let b = unique_bucket("del1001");
    let env = Env::with_buckets(&[&b]).await;
    let mut body = String::from("<Delete>");
    for i in 0..1001 {
        body.push_str(&format!("<Object><Key>k{i}</Key></Object>"));
    }
    body.push_str("</Delete>");
    let r = env
        .send_signed(
            RawRequest::new("POST", &format!("/{b}?delete"))
                .header("content-md5", &md5_b64(body.as_bytes()))
                .body(body),
        )
        .await;
    r.assert_error(400, "MalformedXML");
}

async fn put_with_meta(env: &Env, b: &str, key: &str, body: &[u8]) {
    ok(
        env.client()
            .put_object()
            .bucket(b)
            .key(key)
            .content_type("text/x-source")
            .metadata("origin", "source")
            .tagging("t=1")
            .body(body.to_vec().into())
            .send()
            .await,
        "PutObject with metadata",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_copy_directive_same_and_across_buckets() {
    let (b1, b2) = (unique_bucket("src"), unique_bucket("dst"));
    let env = Env::with_buckets(&[&b1, &b2]).await;
    let s3 = env.client();
    let body = data(200_000, 3);
    put_with_meta(&env, &b1, "dir/ü ñ+&=.txt", &body).await;
    for (bucket, key) in [(&b1, "copy-same"), (&b2, "copy/across")] {
        let out = ok(
            s3.copy_object()
                .bucket(bucket.as_str())
                .key(key)
                .copy_source(format!("{b1}/{}", enc_path("dir/ü ñ+&=.txt")))
                .send()
                .await,
            "CopyObject",
        );
        let res = out.copy_object_result().expect("CopyObjectResult");
        assert_eq!(res.e_tag(), Some(etag_of(&body).as_str()), "copy ETag");
        assert!(res.last_modified().is_some());
        let got = ok(
            s3.get_object()
                .bucket(bucket.as_str())
                .key(key)
                .send()
                .await,
            "GetObject copy",
        );
        assert_eq!(got.e_tag(), Some(etag_of(&body).as_str()));
        assert_eq!(got.content_type(), Some("text/x-source"));
        assert_eq!(
            got.metadata()
                .and_then(|m| m.get("origin"))
                .map(String::as_str),
            Some("source"),
            "COPY keeps metadata"
        );
        assert_eq!(got.tag_count(), Some(1), "tags are copied by default");
        assert!(got.body.collect().await.unwrap().into_bytes() == body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_replace_directive() {
    let b = unique_bucket("repl");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put_with_meta(&env, &b, "src", b"content").await;
    ok(
        s3.copy_object()
            .bucket(&b)
            .key("dst")
            .copy_source(format!("{b}/src"))
            .metadata_directive(MetadataDirective::Replace)
            .content_type("application/json")
            .metadata("new", "yes")
            .send()
            .await,
        "CopyObject REPLACE",
    );
    let head = ok(
        s3.head_object().bucket(&b).key("dst").send().await,
        "HeadObject",
    );
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.metadata().cloned().unwrap_or_default(),
        HashMap::from([("new".to_string(), "yes".to_string())]),
        "REPLACE drops the old metadata"
    );
    assert_eq!(get_bytes(&s3, &b, "dst").await, b"content");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_onto_itself() {
    let b = unique_bucket("self");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put_with_meta(&env, &b, "k", b"same").await;
    let r = s3
        .copy_object()
        .bucket(&b)
        .key("k")
        .copy_source(format!("{b}/k"))
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "InvalidRequest".into()));
    ok(
        s3.copy_object()
            .bucket(&b)
            .key("k")
            .copy_source(format!("{b}/k"))
            .metadata_directive(MetadataDirective::Replace)
            .metadata("v", "2")
            .send()
            .await,
        "CopyObject onto itself with REPLACE",
    );
    let head = ok(
        s3.head_object().bucket(&b).key("k").send().await,
        "HeadObject",
    );
    assert_eq!(
        head.metadata().and_then(|m| m.get("v")).map(String::as_str),
        Some("2")
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, b"same");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_object_missing_source() {
    let b = unique_bucket("cmiss");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let r = s3
        .copy_object()
        .bucket(&b)
        .key("dst")
        .copy_source(format!("{b}/nope"))
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchKey".into()));
    let r = s3
        .copy_object()
        .bucket(&b)
        .key("dst")
        .copy_source(format!("{}/k", unique_bucket("nobucket")))
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchBucket".into()));
    assert!(list_all_keys(&s3, &b).await.is_empty());
}

async fn tags_of(env: &Env, b: &str, k: &str) -> Vec<(String, String)> {
    let out = ok(
        env.client()
            .get_object_tagging()
            .bucket(b)
            .key(k)
            .send()
            .await,
        "GetObjectTagging",
    );
    let mut t: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_tagging_lifecycle() {
    let b = unique_bucket("otag");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    ok(
        s3.put_object()
            .bucket(&b)
            .key("k")
            .tagging("a=1&b=two%20words")
            .body(b"x".to_vec().into())
            .send()
            .await,
        "PutObject with x-amz-tagging",
    );
    assert_eq!(
        tags_of(&env, &b, "k").await,
        vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "two words".to_string())
        ]
    );
    let got = ok(
        s3.get_object().bucket(&b).key("k").send().await,
        "GetObject",
    );
    assert_eq!(got.tag_count(), Some(2), "x-amz-tagging-count");

    ok(
        s3.put_object_tagging()
            .bucket(&b)
            .key("k")
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("c").value("3").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "PutObjectTagging",
    );
    assert_eq!(
        tags_of(&env, &b, "k").await,
        vec![("c".to_string(), "3".to_string())]
    );
    assert_eq!(
        get_bytes(&s3, &b, "k").await,
        b"x",
        "tagging leaves the content alone"
    );
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{b}/k?tagging")))
        .await;
    r.assert_status(204);
    assert!(tags_of(&env, &b, "k").await.is_empty());
    assert_eq!(
        sdk_err(
            s3.get_object_tagging()
                .bucket(&b)
                .key("missing")
                .send()
                .await
        ),
        (404, "NoSuchKey".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_tagging_limits() {
    let b = unique_bucket("otagl");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"x").await;
    let mut t = Tagging::builder();
    for i in 0..11 {
        t = t.tag_set(
            Tag::builder()
                .key(format!("k{i}"))
                .value("v")
                .build()
                .unwrap(),
        );
    }
    let r = s3
        .put_object_tagging()
        .bucket(&b)
        .key("k")
        .tagging(t.build().unwrap())
        .send()
        .await;
    assert_eq!(sdk_err(r).0, 400, "more than 10 tags");
    let r = s3
        .put_object()
        .bucket(&b)
        .key("k2")
        .tagging(format!("{}=v", "x".repeat(129)))
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(
        sdk_err(r),
        (400, "InvalidTag".into()),
        "tag key over 128 chars"
    );
    assert_eq!(list_all_keys(&s3, &b).await, vec!["k".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_acl_owner_full_control() {
    let b = unique_bucket("oacl");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"x").await;
    let acl = ok(
        s3.get_object_acl().bucket(&b).key("k").send().await,
        "GetObjectAcl",
    );
    let owner = acl.owner().and_then(|o| o.id()).expect("owner").to_string();
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(
        acl.grants()[0].permission(),
        Some(&AclPermission::FullControl)
    );
    assert_eq!(
        acl.grants()[0].grantee().and_then(|g| g.id()),
        Some(owner.as_str())
    );
    ok(
        s3.put_object_acl()
            .bucket(&b)
            .key("k")
            .acl(ObjectCannedAcl::Private)
            .send()
            .await,
        "PutObjectAcl private",
    );
    let (status, code) = sdk_err(
        s3.put_object_acl()
            .bucket(&b)
            .key("k")
            .acl(ObjectCannedAcl::PublicReadWrite)
            .send()
            .await,
    );
    assert!(
        (400..=501).contains(&status) && !code.is_empty(),
        "public-read-write refused, got {status} {code}"
    );
    assert_eq!(
        sdk_err(s3.get_object_acl().bucket(&b).key("missing").send().await),
        (404, "NoSuchKey".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_object_attributes_simple_object() {
    let b = unique_bucket("attrs");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(4321, 9);
    put(&s3, &b, "k", &body).await; // the SDK adds a CRC32 checksum by default
    let out = ok(
        s3.get_object_attributes()
            .bucket(&b)
            .key("k")
            .object_attributes(ObjectAttributes::Etag)
            .object_attributes(ObjectAttributes::ObjectSize)
            .object_attributes(ObjectAttributes::StorageClass)
            .object_attributes(ObjectAttributes::Checksum)
            .send()
            .await,
        "GetObjectAttributes",
    );
    assert_eq!(
        out.e_tag().map(|e| e.trim_matches('"')),
        Some(md5_hex(&body).as_str())
    );
    assert_eq!(out.object_size(), Some(4321));
    assert_eq!(out.storage_class().map(|s| s.as_str()), Some("STANDARD"));
    assert!(out.last_modified().is_some());
    assert_eq!(
        out.checksum().and_then(|c| c.checksum_crc32()),
        Some(crc32_b64(&body).as_str())
    );
    assert_eq!(
        sdk_err(
            s3.get_object_attributes()
                .bucket(&b)
                .key("missing")
                .object_attributes(ObjectAttributes::ObjectSize)
                .send()
                .await
        ),
        (404, "NoSuchKey".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_are_stored_and_returned() {
    let b = unique_bucket("cksum");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(70_000, 11);
    let cases: Vec<(ChecksumAlgorithm, String)> = vec![
        (ChecksumAlgorithm::Crc32, crc32_b64(&body)),
        (ChecksumAlgorithm::Crc32C, crc32c_b64(&body)),
        (ChecksumAlgorithm::Crc64Nvme, crc64nvme_b64(&body)),
        (ChecksumAlgorithm::Sha1, sha1_b64(&body)),
        (ChecksumAlgorithm::Sha256, sha256_b64(&body)),
    ];
    for (alg, want) in cases {
        let key = format!("k-{}", alg.as_str());
        let out = ok(
            s3.put_object()
                .bucket(&b)
                .key(&key)
                .checksum_algorithm(alg.clone())
                .body(body.clone().into())
                .send()
                .await,
            &format!("PutObject {alg:?}"),
        );
        let pick = |c32: Option<&str>,
                    c32c: Option<&str>,
                    c64: Option<&str>,
                    s1: Option<&str>,
                    s256: Option<&str>|
         -> Option<String> {
            match alg {
                ChecksumAlgorithm::Crc32 => c32,
                ChecksumAlgorithm::Crc32C => c32c,
                ChecksumAlgorithm::Crc64Nvme => c64,
                ChecksumAlgorithm::Sha1 => s1,
                _ => s256,
            }
            .map(str::to_string)
        };
        assert_eq!(
            pick(
                out.checksum_crc32(),
                out.checksum_crc32_c(),
                out.checksum_crc64_nvme(),
                out.checksum_sha1(),
                out.checksum_sha256()
            ),
            Some(want.clone()),
            "PUT answers the {alg:?} checksum"
        );
        let got = ok(
            s3.get_object()
                .bucket(&b)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await,
            "GetObject checksum mode",
        );
        assert_eq!(
            pick(
                got.checksum_crc32(),
                got.checksum_crc32_c(),
                got.checksum_crc64_nvme(),
                got.checksum_sha1(),
                got.checksum_sha256()
            ),
            Some(want.clone()),
            "GET returns the stored {alg:?} checksum"
        );
        assert!(got.body.collect().await.unwrap().into_bytes() == body);
        let head = ok(
            s3.head_object()
                .bucket(&b)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await,
            "HeadObject checksum mode",
        );
        assert_eq!(
            pick(
                head.checksum_crc32(),
                head.checksum_crc32_c(),
                head.checksum_crc64_nvme(),
                head.checksum_sha1(),
                head.checksum_sha256()
            ),
            Some(want),
            "HEAD returns the stored {alg:?} checksum"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_is_bad_digest_and_stores_nothing() {
    let b = unique_bucket("badck");
    let env = Env::with_buckets(&[&b]).await;
    let before = env.obj_streams().await;
    let body = b"checksummed body".to_vec();
    for (name, wrong) in [
        ("x-amz-checksum-crc32", crc32_b64(b"other")),
        ("x-amz-checksum-crc32c", crc32c_b64(b"other")),
        ("x-amz-checksum-sha256", sha256_b64(b"other")),
        ("x-amz-checksum-sha1", sha1_b64(b"other")),
        ("x-amz-checksum-crc64nvme", crc64nvme_b64(b"other")),
    ] {
        let r = env
            .send_signed(
                RawRequest::new("PUT", &format!("/{b}/k"))
                    .header(name, &wrong)
                    .body(body.clone()),
            )
            .await;
        r.assert_error(400, "BadDigest");
    }
    let (status, _) = sdk_err(env.client().head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404);
    env.wait_streams_equal(&before, "refused checksummed PUTs")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_streaming_signed_upload_with_trailer() {
    // Over plain HTTP the SDK signs every chunk: STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER.
    let b = unique_bucket("stream");
    let env = Env::with_buckets(&[&b]).await;
    let rec: Recorded = Arc::new(Mutex::new(Vec::new()));
    let s3 = s3_client(ClientOpts {
        endpoint: env.endpoint(),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        record: Some(rec.clone()),
        ..Default::default()
    });
    let body = data(300_000, 5);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let out = ok(
        s3.put_object()
            .bucket(&b)
            .key("streamed")
            .body(ByteStream::from_path(file.path()).await.unwrap())
            .send()
            .await,
        "streaming PutObject",
    );
    let sent = rec.lock().unwrap().last().cloned().unwrap();
    let mode = sent
        .iter()
        .find(|(k, _)| k == "x-amz-content-sha256")
        .map(|(_, v)| v.clone());
    assert_eq!(
        mode.as_deref(),
        Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
        "the SDK used signed streaming"
    );
    assert_eq!(out.e_tag(), Some(etag_of(&body).as_str()));
    assert_eq!(out.checksum_crc32(), Some(crc32_b64(&body).as_str()));
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("streamed")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
        "GetObject",
    );
    assert_eq!(
        got.checksum_crc32(),
        Some(crc32_b64(&body).as_str()),
        "trailer checksum stored"
    );
    assert_eq!(got.content_length(), Some(body.len() as i64));
    assert!(got.body.collect().await.unwrap().into_bytes() == body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_streaming_unsigned_upload_with_trailer() {
    // Over "TLS" the SDK sends STREAMING-UNSIGNED-PAYLOAD-TRAILER.
    let b = unique_bucket("ustream");
    let env = Env::with_buckets(&[&b]).await;
    let rec: Recorded = Arc::new(Mutex::new(Vec::new()));
    let s3 = s3_client(ClientOpts {
        endpoint: format!("https://{}", env.addr),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        redirect_to: Some(env.addr),
        record: Some(rec.clone()),
        ..Default::default()
    });
    let body = data(200_000, 6);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &body).unwrap();
    let out = ok(
        s3.put_object()
            .bucket(&b)
            .key("u")
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from_path(file.path()).await.unwrap())
            .send()
            .await,
        "unsigned streaming PutObject",
    );
    let sent = rec.lock().unwrap().last().cloned().unwrap();
    let mode = sent
        .iter()
        .find(|(k, _)| k == "x-amz-content-sha256")
        .map(|(_, v)| v.clone());
    assert_eq!(mode.as_deref(), Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER"));
    assert_eq!(out.e_tag(), Some(etag_of(&body).as_str()));
    assert_eq!(out.checksum_crc32_c(), Some(crc32c_b64(&body).as_str()));
    assert_eq!(get_bytes(&env.client(), &b, "u").await, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_honoured() {
    let b = unique_bucket("cont");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(50_000, 2);
    let mut req = RawRequest::new("PUT", &format!("/{b}/k"))
        .header("expect", "100-continue")
        .header("content-length", &body.len().to_string());
    sign_request(
        &mut req,
        &env.host(),
        &Signer::admin(),
        Payload::Precomputed(sha256_hex(&body)),
    );
    let head = req.to_bytes(&env.host()); // no body attached yet
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    stream.write_all(&head).await.unwrap();
    let mut buf = Vec::new();
    let interim = tokio::time::timeout(
        Duration::from_secs(10),
        read_response(&mut stream, &mut buf, false, false),
    )
    .await
    .expect("100 Continue before the body is sent")
    .unwrap();
    assert_eq!(interim.status, 100, "interim response");
    stream.write_all(&body).await.unwrap();
    let fin = tokio::time::timeout(
        Duration::from_secs(30),
        read_response(&mut stream, &mut buf, false, true),
    )
    .await
    .unwrap()
    .unwrap();
    fin.assert_status(200);
    assert_eq!(fin.header("etag"), Some(etag_of(&body).as_str()));
    assert_eq!(get_bytes(&env.client(), &b, "k").await, body);

    // Refused before the body: the final status comes without 100 Continue.
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let anon = RawRequest::new("PUT", &format!("/{b}/anon"))
        .header("expect", "100-continue")
        .header("content-length", "5");
    stream.write_all(&anon.to_bytes(&env.host())).await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        read_response(&mut stream, &mut buf, false, false),
    )
    .await
    .expect("answer without waiting for the body")
    .unwrap();
    r.assert_error(403, "AccessDenied");
}

/// A PUT that waits for 100 Continue reads the key's metadata once (the check before the body
/// is what the write starts from), and a version written between that check and the body is
/// still replaced properly: retired, never left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_100_continue_looks_the_key_up_once() {
    use futures::StreamExt;
    let b = unique_bucket("cont-once");
    // No collector here: its checks read keys too.
    let env = Env::start_with(config_with(&[&b]), |s| s.collector.enabled = false).await;
    let s3 = env.client();
    put(&s3, &b, "k", &data(1000, 1)).await;
    let nats = async_nats::connect(env.nats.url()).await.unwrap();
    let mut lookups = nats
        .subscribe(format!("$JS.API.DIRECT.GET.OBJ_{b}.$O.{b}.M.>"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let body = data(3000, 2);
    let mut req = RawRequest::new("PUT", &format!("/{b}/k"))
        .header("expect", "100-continue")
        .header("content-length", &body.len().to_string());
    sign_request(
        &mut req,
        &env.host(),
        &Signer::admin(),
        Payload::Precomputed(sha256_hex(&body)),
    );
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    stream.write_all(&req.to_bytes(&env.host())).await.unwrap();
    let mut buf = Vec::new();
    let interim = read_response(&mut stream, &mut buf, false, false)
        .await
        .unwrap();
    assert_eq!(interim.status, 100);
    // Another write lands between the check and the body.
    put(&s3, &b, "k", &data(2000, 3)).await;
    let other_lookups = count_at_least(&mut lookups, 2).await;
    stream.write_all(&body).await.unwrap();
    let fin = read_response(&mut stream, &mut buf, false, true)
        .await
        .unwrap();
    fin.assert_status(200);
    assert!(get_bytes(&s3, &b, "k").await == body, "the last write wins");
    let ours = count_at_least(&mut lookups, 2).await;
    // The other PUT and the GET read the key once each; the 100-continue PUT once before the
    // interim answer, and once more only because the key changed under it (its
    // compare-and-set failed and it looked again).
    assert_eq!(other_lookups, 2, "the check and the other PUT's lookup");
    assert_eq!(ours, 2, "the retried commit's lookup and the GET's");

    // Unchanged meanwhile: one lookup in all.
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let mut req = RawRequest::new("PUT", &format!("/{b}/fresh"))
        .header("expect", "100-continue")
        .header("content-length", &body.len().to_string());
    sign_request(
        &mut req,
        &env.host(),
        &Signer::admin(),
        Payload::Precomputed(sha256_hex(&body)),
    );
    stream.write_all(&req.to_bytes(&env.host())).await.unwrap();
    let mut buf = Vec::new();
    let interim = read_response(&mut stream, &mut buf, false, false)
        .await
        .unwrap();
    assert_eq!(interim.status, 100);
    stream.write_all(&body).await.unwrap();
    read_response(&mut stream, &mut buf, false, true)
        .await
        .unwrap()
        .assert_status(200);
    assert_eq!(
        count_at_least(&mut lookups, 1).await,
        1,
        "one lookup per PUT"
    );
    assert!(get_bytes(&s3, &b, "fresh").await == body);
    // Both replaced versions of `k` were retired: a gateway with a collector purges them.
    let _collector = env.peer().await;
    env.wait_holds_only_live(&b, 20).await;

    /// Messages the subscription receives: the first `expected` however slowly they come
    /// (a loaded machine delays deliveries), then any more until it has been quiet for 300 ms.
    async fn count_at_least(sub: &mut async_nats::Subscriber, expected: usize) -> usize {
        let mut n = 0;
        while n < expected {
            match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                Ok(Some(_)) => n += 1,
                _ => return n,
            }
        }
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
            n += 1;
        }
        n
    }
}

fn form_body(boundary: &str, fields: &[(&str, &str)], file: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"up.txt\"\r\nContent-Type: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(file);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

struct PostForm {
    fields: Vec<(String, String)>,
}

/// Form fields of a browser upload signed with a SigV4 POST policy.
fn post_form(
    bucket: &str,
    key: &str,
    expiration: SystemTime,
    extra_conditions: &[serde_json::Value],
    status: Option<&str>,
    sk: &str,
) -> PostForm {
    let signer = Signer::admin();
    let credential = format!("{}/{}", ADMIN_AK, signer.scope());
    let exp = time::OffsetDateTime::from(expiration);
    let exp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
        exp.year(),
        u8::from(exp.month()),
        exp.day(),
        exp.hour(),
        exp.minute(),
        exp.second()
    );
    let mut conditions = vec![
        serde_json::json!({ "bucket": bucket }),
        serde_json::json!(["starts-with", "$key", "uploads/"]),
        serde_json::json!({ "x-amz-algorithm": "AWS4-HMAC-SHA256" }),
        serde_json::json!({ "x-amz-credential": credential }),
        serde_json::json!({ "x-amz-date": signer.amz_date() }),
        serde_json::json!(["content-length-range", 1, 1024]),
    ];
    if let Some(s) = status {
        conditions.push(serde_json::json!({ "success_action_status": s }));
    }
    conditions.extend_from_slice(extra_conditions);
    let policy = serde_json::json!({ "expiration": exp, "conditions": conditions });
    let policy_b64 = b64(policy.to_string().as_bytes());
    let mut key_signer = signer.clone();
    key_signer.sk = sk.to_string();
    let signature =
        aws_sigv4::sign::v4::calculate_signature(key_signer.signing_key(), policy_b64.as_bytes());
    let mut fields = vec![
        ("key".to_string(), key.to_string()),
        (
            "x-amz-algorithm".to_string(),
            "AWS4-HMAC-SHA256".to_string(),
        ),
        ("x-amz-credential".to_string(), credential),
        ("x-amz-date".to_string(), signer.amz_date()),
        ("policy".to_string(), policy_b64),
        ("x-amz-signature".to_string(), signature),
    ];
    if let Some(s) = status {
        fields.push(("success_action_status".to_string(), s.to_string()));
    }
    PostForm { fields }
}

async fn send_post(env: &Env, bucket: &str, form: &PostForm, file: &[u8]) -> RawResponse {
    let boundary = "----jets3testboundary7MA4YWxkTrZu0gW";
    let fields: Vec<(&str, &str)> = form
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    env.send(
        RawRequest::new("POST", &format!("/{bucket}"))
            .header(
                "content-type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .body(form_body(boundary, &fields, file)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_object_browser_upload() {
    let b = unique_bucket("post");
    let env = Env::with_buckets(&[&b]).await;
    let in_1h = SystemTime::now() + Duration::from_secs(3600);
    let file = b"uploaded from a browser form";

    let form = post_form(&b, "uploads/a.txt", in_1h, &[], Some("201"), ADMIN_SK);
    let r = send_post(&env, &b, &form, file).await;
    r.assert_status(201);
    let text = r.text();
    assert_eq!(
        xml_tag(&text, "Bucket").as_deref(),
        Some(b.as_str()),
        "{text}"
    );
    assert_eq!(xml_tag(&text, "Key").as_deref(), Some("uploads/a.txt"));
    assert_eq!(xml_tag(&text, "ETag"), Some(etag_of(file)));
    assert!(xml_tag(&text, "Location").is_some());
    assert_eq!(get_bytes(&env.client(), &b, "uploads/a.txt").await, file);

    // Default success_action_status: 204.
    let form = post_form(&b, "uploads/b.txt", in_1h, &[], None, ADMIN_SK);
    let r = send_post(&env, &b, &form, file).await;
    r.assert_status(204);
    assert_eq!(r.header("etag"), Some(etag_of(file).as_str()));
    assert_eq!(get_bytes(&env.client(), &b, "uploads/b.txt").await, file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_object_policy_conditions_are_enforced() {
    let b = unique_bucket("postbad");
    let env = Env::with_buckets(&[&b]).await;
    let in_1h = SystemTime::now() + Duration::from_secs(3600);
    // starts-with $key uploads/ violated
    let form = post_form(&b, "elsewhere/x.txt", in_1h, &[], None, ADMIN_SK);
    send_post(&env, &b, &form, b"data")
        .await
        .assert_error(403, "AccessDenied");
    // content-length-range violated
    let form = post_form(&b, "uploads/big.txt", in_1h, &[], None, ADMIN_SK);
    send_post(&env, &b, &form, &data(2000, 1))
        .await
        .assert_error(400, "EntityTooLarge");
    // expired policy
    let past = SystemTime::now() - Duration::from_secs(60);
    let form = post_form(&b, "uploads/late.txt", past, &[], None, ADMIN_SK);
    send_post(&env, &b, &form, b"data")
        .await
        .assert_error(403, "AccessDenied");
    // signed with the wrong secret
    let form = post_form(
        &b,
        "uploads/forged.txt",
        in_1h,
        &[],
        None,
        "not-the-secret-key",
    );
    send_post(&env, &b, &form, b"data")
        .await
        .assert_error(403, "SignatureDoesNotMatch");
    // an exact-match condition on a field that differs
    let form = post_form(
        &b,
        "uploads/ct.txt",
        in_1h,
        &[serde_json::json!({ "x-amz-meta-tag": "expected" })],
        None,
        ADMIN_SK,
    );
    let mut form2 = PostForm {
        fields: form.fields.clone(),
    };
    form2
        .fields
        .push(("x-amz-meta-tag".to_string(), "different".to_string()));
    send_post(&env, &b, &form2, b"data")
        .await
        .assert_error(403, "AccessDenied");
    assert!(
        list_all_keys(&env.client(), &b).await.is_empty(),
        "nothing was stored"
    );
}

/// A GET that started before an overwrite (or a delete) still returns the whole old
/// version; the old chunks are purged once that reader is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_in_progress_survive_overwrite_and_delete() {
    let b = unique_bucket("lease");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let old = data(6 << 20, 1);
    let new = data(1 << 20, 2);
    put(&s3, &b, "k", &old).await;

    for replace in [true, false] {
        put(&s3, &b, "k", &old).await;
        let got = ok(s3.get_object().bucket(&b).key("k").send().await, "GET");
        let mut body = got.body;
        let first = body
            .next()
            .await
            .expect("first piece")
            .expect("first piece ok");
        if replace {
            put(&s3, &b, "k", &new).await;
        } else {
            ok(
                s3.delete_object().bucket(&b).key("k").send().await,
                "DELETE",
            );
        }
        let mut all = first.to_vec();
        while let Some(piece) = body.next().await {
            all.extend_from_slice(&piece.expect("body piece"));
        }
        assert!(
            all == old,
            "the reader got the whole old version (replace={replace})"
        );
        drop(body);
        if replace {
            assert_eq!(get_bytes(&s3, &b, "k").await, new);
            ok(
                s3.delete_object().bucket(&b).key("k").send().await,
                "DELETE",
            );
        }
        // Both versions are gone once the reader has finished: only the key's metadata
        // message (its delete marker) is left in the stream.
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        loop {
            let now = env.obj_streams().await;
            if now[&format!("OBJ_{b}")].0 == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "old chunks not purged: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Large bodies uploaded at once share the MD5 lanes: each ETag is still the MD5 of its own
/// body, with Content-MD5 checked, including sizes that end mid-chunk, and a bad Content-MD5
/// among them changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_large_puts_keep_their_own_etags() {
    let b = unique_bucket("lanes");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let sizes: Vec<usize> = (0..12).map(|i| (3 << 20) + i * 70_001).collect();
    let mut tasks = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let (s3, b) = (s3.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let body = data(size, 40 + i as u64);
            let put = s3
                .put_object()
                .bucket(&b)
                .key(format!("big/{i}"))
                .content_md5(md5_b64(&body))
                .body(body.clone().into())
                .send()
                .await;
            (body, put)
        }));
    }
    let bad = data(5 << 20, 7);
    let refused = s3
        .put_object()
        .bucket(&b)
        .key("big/bad")
        .content_md5(md5_b64(&data(5 << 20, 8)))
        .body(bad.into())
        .send()
        .await;
    assert_eq!(
        sdk_err(refused),
        (400, "BadDigest".to_string()),
        "a wrong Content-MD5 is refused"
    );
    for (i, t) in tasks.into_iter().enumerate() {
        let (body, put) = t.await.expect("upload task");
        let put = ok(put, "PutObject");
        assert_eq!(
            put.e_tag(),
            Some(etag_of(&body).as_str()),
            "ETag of upload {i}"
        );
        let got = get_bytes(&s3, &b, &format!("big/{i}")).await;
        assert!(got == body, "upload {i} reads back as written");
    }
    let head = s3.head_object().bucket(&b).key("big/bad").send().await;
    assert!(head.is_err(), "the refused upload left no object");
}

/// Tag and ACL changes of one object at once, through two gateways, all succeed (S3 makes
/// them unconditional; jets3 once refused the one that lost the compare-and-set with 409),
/// and the object ends with one of the tag sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_acl_changes_at_once_all_land() {
    use aws_sdk_s3::types::{ObjectCannedAcl, Tag, Tagging};
    let b = unique_bucket("tagrace");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let clients = [env.client(), peer.client()];
    put(&clients[0], &b, "k", b"v").await;
    let tagging = |v: usize| {
        Tagging::builder()
            .tag_set(
                Tag::builder()
                    .key("t")
                    .value(v.to_string())
                    .build()
                    .expect("tag"),
            )
            .build()
            .expect("tagging")
    };
    let mut refused = Vec::new();
    for round in 0..30 {
        let tags = (0..4).map(|i| {
            let s3 = clients[i % 2].clone();
            let (b, t) = (b.clone(), tagging(i));
            async move {
                s3.put_object_tagging()
                    .bucket(b)
                    .key("k")
                    .tagging(t)
                    .send()
                    .await
                    .map(|_| ())
            }
        });
        let acls = (0..2).map(|i| {
            let s3 = clients[i % 2].clone();
            let b = b.clone();
            async move {
                s3.put_object_acl()
                    .bucket(b)
                    .key("k")
                    .acl(ObjectCannedAcl::Private)
                    .send()
                    .await
                    .map(|_| ())
            }
        });
        let (tags, acls) = futures::future::join(
            futures::future::join_all(tags),
            futures::future::join_all(acls),
        )
        .await;
        for r in tags {
            if let Err(e) = r {
                refused.push((round, sdk_err::<(), _>(Err(e))));
            }
        }
        for r in acls {
            if let Err(e) = r {
                refused.push((round, sdk_err::<(), _>(Err(e))));
            }
        }
        let got = ok(
            clients[0]
                .get_object_tagging()
                .bucket(&b)
                .key("k")
                .send()
                .await,
            "GetObjectTagging",
        );
        let value = got.tag_set().first().map(|t| t.value().to_string());
        assert!(
            value
                .as_deref()
                .is_some_and(|v| ["0", "1", "2", "3"].contains(&v)),
            "round {round}: {value:?}"
        );
    }
    assert!(refused.is_empty(), "refused: {refused:?}");
    assert_eq!(get_bytes(&clients[0], &b, "k").await, b"v");
    peer.gw.shutdown().await;
}

/// Tagging or an ACL change that reads a key just before a DELETE removes it, on a bucket
/// that never had versioning, answers NoSuchKey (or lands first): it stalled for seconds on
/// a subject the bucket does not have and answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tagging_a_key_deleted_meanwhile_is_no_such_key() {
    let b = unique_bucket("tagdel");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("t").value("v").build().expect("tag"))
        .build()
        .expect("tagging");
    let mut answers: HashMap<(u16, String), usize> = HashMap::new();
    for round in 0..20 {
        let key = format!("k{round}");
        put(&s3, &b, &key, b"v").await;
        let tags = (0..3).map(|_| {
            let (s3, b, key, t) = (s3.clone(), b.clone(), key.clone(), tagging.clone());
            async move {
                let r = s3
                    .put_object_tagging()
                    .bucket(b)
                    .key(key)
                    .tagging(t)
                    .send()
                    .await;
                match r {
                    Ok(_) => (200, String::new()),
                    Err(e) => sdk_err::<(), _>(Err(e)),
                }
            }
        });
        let acl = {
            let (s3, b, key) = (s3.clone(), b.clone(), key.clone());
            async move {
                match s3
                    .put_object_acl()
                    .bucket(b)
                    .key(key)
                    .acl(ObjectCannedAcl::Private)
                    .send()
                    .await
                {
                    Ok(_) => (200, String::new()),
                    Err(e) => sdk_err::<(), _>(Err(e)),
                }
            }
        };
        let delete = s3.delete_object().bucket(&b).key(&key).send();
        let (tags, acl, deleted) =
            futures::future::join3(futures::future::join_all(tags), acl, delete).await;
        ok(deleted, "DeleteObject");
        for answer in tags.into_iter().chain([acl]) {
            *answers.entry(answer).or_default() += 1;
        }
        let gone = s3.head_object().bucket(&b).key(&key).send().await;
        assert_eq!(sdk_err(gone).0, 404, "round {round}: the key is gone");
    }
    let wrong: Vec<_> = answers
        .iter()
        .filter(|((status, code), _)| {
            *status != 200 && (*status, code.as_str()) != (404, "NoSuchKey")
        })
        .collect();
    assert!(wrong.is_empty(), "answers: {answers:?}");
}
