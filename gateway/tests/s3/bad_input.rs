//! Bad input: limits, names, path-like keys, digests, malformed XML, oversize headers,
//! truncated bodies and clients that disconnect mid-upload. Each gets the right S3 error and
//! leaves storage unchanged.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::multipart::{completed, create_upload, upload_part};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_length_limit() {
    let b = unique_bucket("keylen");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let max = "k".repeat(1024);
    put(&s3, &b, &max, b"longest key").await;
    assert_eq!(get_bytes(&s3, &b, &max).await, b"longest key");

    let before = env.obj_streams().await;
    let long = "k".repeat(1025);
    let r = s3
        .put_object()
        .bucket(&b)
        .key(&long)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "KeyTooLongError".into()));
    let r = s3
        .create_multipart_upload()
        .bucket(&b)
        .key(&long)
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "KeyTooLongError".into()));
    let r = s3
        .copy_object()
        .bucket(&b)
        .key(&long)
        .copy_source(format!("{b}/{max}"))
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "KeyTooLongError".into()));
    // Multi-byte characters count in bytes: 513 two-byte characters = 1026 bytes.
    let wide = "é".repeat(513);
    let r = s3
        .put_object()
        .bucket(&b)
        .key(&wide)
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "KeyTooLongError".into()));
    env.wait_streams_equal(&before, "refused long keys").await;
    assert_eq!(list_all_keys(&s3, &b).await, vec![max]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_size_limit() {
    let b = unique_bucket("meta");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    ok(
        s3.put_object()
            .bucket(&b)
            .key("fits")
            .metadata("a", "v".repeat(1900))
            .body(b"x".to_vec().into())
            .send()
            .await,
        "PUT with 1.9 KB of metadata",
    );
    let before = env.obj_streams().await;
    let r = s3
        .put_object()
        .bucket(&b)
        .key("too-big")
        .metadata("a", "v".repeat(1500))
        .metadata("b", "w".repeat(1000))
        .body(b"x".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "MetadataTooLarge".into()));
    let r = s3
        .create_multipart_upload()
        .bucket(&b)
        .key("too-big")
        .metadata("a", "v".repeat(2100))
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "MetadataTooLarge".into()));
    env.wait_streams_equal(&before, "refused metadata").await;
    assert_eq!(list_all_keys(&s3, &b).await, vec!["fits".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bucket_names() {
    let env = Env::with_buckets(&[]).await;
    for name in [
        "Bad_Name",
        "ab",
        "a..b",
        "-abc",
        "abc-",
        "a_b",
        "192.168.1.1",
        "UPPER",
        "xn--abc",
        &"x".repeat(64),
    ] {
        let r = env
            .send_signed(RawRequest::new("PUT", &format!("/{}", enc_path(name))))
            .await;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("InvalidBucketName")),
            "CreateBucket {name:?}: {}",
            r.text()
        );
    }
    let list = ok(env.client().list_buckets().send().await, "ListBuckets");
    assert!(
        list.buckets().is_empty(),
        "no bucket created: {:?}",
        list.buckets()
    );
    let js = env.js().await;
    let mut names = js.stream_names();
    use futures::StreamExt;
    let mut streams = Vec::new();
    while let Some(n) = names.next().await {
        streams.push(n.unwrap());
    }
    assert!(
        !streams.iter().any(|s| s.starts_with("OBJ_")),
        "no object store created: {streams:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_like_and_unicode_keys_round_trip_exactly() {
    let b = unique_bucket("paths");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keys: Vec<String> = [
        "../x",
        "../../etc/passwd",
        "a//b",
        "./a",
        "x/../y",
        "/leading",
        "trailing/",
        "ключ/日本語 ✓",
        "a%2Fb",
        "100%",
        "sp ace",
        "plus+sign",
        "q?mark",
        "hash#tag",
        "semi;colon",
        "amp&eq=",
        "tab\there",
        "emoji 😀",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (i, k) in keys.iter().enumerate() {
        let body = format!("body {i}");
        let etag = put(&s3, &b, k, body.as_bytes()).await;
        assert_eq!(etag, etag_of(body.as_bytes()), "{k:?}");
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get_bytes(&s3, &b, k).await,
            format!("body {i}").as_bytes(),
            "GET {k:?}"
        );
    }
    let mut want = keys.clone();
    want.sort();
    assert_eq!(
        list_all_keys(&s3, &b).await,
        want,
        "keys are stored exactly"
    );

    // %2F in a raw path is a '/' in the key (S3 decodes the path once). The canonical URI
    // of the signature is the decoded path encoded again ('/' kept), as SDKs send it.
    let mut req = RawRequest::new("PUT", &format!("/{b}/raw/slash")).body("raw");
    sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Signed);
    req.path = format!("/{b}/raw%2Fslash");
    env.send(req).await.assert_status(200);
    assert_eq!(get_bytes(&s3, &b, "raw/slash").await, b"raw");
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/raw/slash")))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, b"raw");
    // ... and %252F is a literal "%2F".
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/a%252Fb")))
        .await;
    r.assert_status(200);
    let i = keys.iter().position(|k| k == "a%2Fb").unwrap();
    assert_eq!(r.body, format!("body {i}").as_bytes());
    let all = list_all_keys(&s3, &b).await;
    assert!(all.contains(&"raw/slash".to_string()) && !all.contains(&"raw%2Fslash".to_string()));

    // Nothing escaped the bucket.
    let list = ok(s3.list_buckets().send().await, "ListBuckets");
    assert_eq!(list.buckets().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_md5_is_verified() {
    let b = unique_bucket("md5");
    let env = Env::with_buckets(&[&b]).await;
    let body = b"integrity matters".to_vec();
    let r = env
        .send_signed(
            RawRequest::new("PUT", &format!("/{b}/good"))
                .header("content-md5", &md5_b64(&body))
                .body(body.clone()),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some(etag_of(&body).as_str()));

    let before = env.obj_streams().await;
    let r = env
        .send_signed(
            RawRequest::new("PUT", &format!("/{b}/bad"))
                .header("content-md5", &md5_b64(b"different"))
                .body(body.clone()),
        )
        .await;
    r.assert_error(400, "BadDigest");
    for invalid in ["not base64!", "AAAA"] {
        let r = env
            .send_signed(
                RawRequest::new("PUT", &format!("/{b}/bad"))
                    .header("content-md5", invalid)
                    .body(body.clone()),
            )
            .await;
        r.assert_error(400, "InvalidDigest");
    }
    // Through the SDK, and on UploadPart.
    let s3 = env.client();
    let r = s3
        .put_object()
        .bucket(&b)
        .key("bad")
        .content_md5(md5_b64(b"different"))
        .body(body.clone().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "BadDigest".into()));
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("bad").send().await);
    assert_eq!(status, 404);
    env.wait_streams_equal(&before, "PUTs with a bad Content-MD5")
        .await;

    let id = create_upload(&s3, &b, "mp").await;
    let r = s3
        .upload_part()
        .bucket(&b)
        .key("mp")
        .upload_id(&id)
        .part_number(1)
        .content_md5(md5_b64(b"different"))
        .body(body.clone().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "BadDigest".into()));
    let lp = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    assert!(lp.parts().is_empty(), "refused part not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_xml_bodies() {
    let b = unique_bucket("xml");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "a", b"keep me").await;
    let id = create_upload(&s3, &b, "mp").await;
    let cases: Vec<(&str, String, &str)> = vec![
        ("POST", format!("/{b}?delete"), "<Delete><Object><Key>a</Key>"),
        ("POST", format!("/{b}?delete"), "this is not xml"),
        ("POST", format!("/{b}?delete"), "<Delete><Object><Key>a</Key></Object></Wrong>"),
        (
            "POST",
            format!("/{b}/mp?uploadId={}", enc_query(&id)),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
        ),
        (
            "POST",
            format!("/{b}/mp?uploadId={}", enc_query(&id)),
            "<CompleteMultipartUpload><Part><PartNumber>one</PartNumber><ETag>\"x\"</ETag></Part></CompleteMultipartUpload>",
        ),
        (
            "PUT",
            format!("/{b}?tagging"),
            "<Tagging><TagSet><Tag><Key>x</Key></TagSet>",
        ),
        ("PUT", format!("/{b}/a?tagging"), "<Tagging><TagSet"),
        ("PUT", format!("/{b}?cors"), "<CORSConfiguration><CORSRule>"),
    ];
    for (method, path, body) in cases {
        let r = env
            .send_signed(
                RawRequest::new(method, &path)
                    .header("content-md5", &md5_b64(body.as_bytes()))
                    .body(body),
            )
            .await;
        assert_eq!(
            (r.status, r.code().as_deref()),
            (400, Some("MalformedXML")),
            "{method} {path} with {body:?}: {}",
            r.text()
        );
        assert!(r.header("x-amz-request-id").is_some());
    }
    assert_eq!(
        get_bytes(&s3, &b, "a").await,
        b"keep me",
        "nothing was deleted"
    );
    assert_eq!(
        sdk_err(s3.get_bucket_tagging().bucket(&b).send().await),
        (404, "NoSuchTagSet".into())
    );
    let lp = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .send()
            .await,
        "upload still there",
    );
    assert!(lp.parts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_headers_are_refused() {
    let b = unique_bucket("hdr");
    let env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "k", b"x").await;
    // One huge header.
    let huge = "v".repeat(128 * 1024);
    let req = RawRequest::new("GET", &format!("/{b}/k")).header("x-amz-meta-huge", &huge);
    check_refused(&env, req).await;
    // Too many headers.
    let mut req = RawRequest::new("GET", &format!("/{b}/k"));
    for i in 0..500 {
        req = req.header(&format!("x-extra-{i}"), "v");
    }
    check_refused(&env, req).await;
    // The gateway still serves.
    assert_eq!(get_bytes(&env.client(), &b, "k").await, b"x");
}

/// The gateway answers 400 or 431 (never 5xx) or closes the connection.
async fn check_refused(env: &Env, req: RawRequest) {
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let _ = stream.write_all(&req.to_bytes(&env.host())).await;
    let mut buf = Vec::new();
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        read_response(&mut stream, &mut buf, false, true),
    )
    .await
    .expect("an answer or a close within 10 s");
    if let Ok(r) = res {
        assert!(
            r.status == 400 || r.status == 431,
            "oversize headers: status {} {}",
            r.status,
            r.text()
        );
    }
}

/// Sends the head of a signed UNSIGNED-PAYLOAD PUT announcing `total` bytes, then `sent`
/// bytes of body, waits, and drops the connection.
async fn cut_off_put(env: &Env, path: &str, total: usize, sent: usize) {
    let body = data(total, 99);
    let mut req = RawRequest::new("PUT", path).header("content-length", &total.to_string());
    sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Unsigned);
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    stream.write_all(&req.to_bytes(&env.host())).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    // Let the gateway start storing what it got.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_put_leaves_nothing() {
    let b = unique_bucket("cut");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "existing", b"stays").await;
    let before = env.obj_streams().await;
    cut_off_put(&env, &format!("/{b}/cut"), 3 * MIB, 1024 * 1024 + 4096).await;
    env.wait_streams_equal(&before, "PUT cut off after 1 MiB")
        .await;
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("cut").send().await);
    assert_eq!(status, 404, "no object from a cut-off PUT");
    assert_eq!(list_all_keys(&s3, &b).await, vec!["existing".to_string()]);

    // Overwriting an existing key: the old content stays when the new upload is cut off.
    cut_off_put(&env, &format!("/{b}/existing"), 2 * MIB, 700 * 1024).await;
    env.wait_streams_equal(&before, "overwrite cut off").await;
    assert_eq!(get_bytes(&s3, &b, "existing").await, b"stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_mid_upload_part_leaves_nothing() {
    let b = unique_bucket("cutpart");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "mp").await;
    let p1 = data(5 * MIB, 1);
    let e1 = upload_part(&s3, &b, "mp", &id, 1, &p1).await;
    let before = env.obj_streams().await;
    cut_off_put(
        &env,
        &format!("/{b}/mp?partNumber=2&uploadId={}", enc_query(&id)),
        6 * MIB,
        2 * MIB,
    )
    .await;
    env.wait_streams_equal(&before, "UploadPart cut off after 2 MiB")
        .await;
    let lp = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    let nums: Vec<i32> = lp.parts().iter().filter_map(|p| p.part_number()).collect();
    assert_eq!(nums, vec![1], "the cut-off part is not recorded");
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1)]))
            .send()
            .await,
        "Complete with the good part",
    );
    assert!(get_bytes(&s3, &b, "mp").await == p1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_is_refused() {
    let b = unique_bucket("trunc");
    let env = Env::with_buckets(&[&b]).await;
    let before = env.obj_streams().await;
    let mut req = RawRequest::new("PUT", &format!("/{b}/t")).header("content-length", "1000");
    sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Unsigned);
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    stream.write_all(&req.to_bytes(&env.host())).await.unwrap();
    stream.write_all(&[b'x'; 400]).await.unwrap();
    stream.shutdown().await.unwrap(); // half-close: the body ends early
    let mut buf = Vec::new();
    let res = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("the gateway answers or closes within 10 s");
    if res.is_ok() && !buf.is_empty() {
        let text = String::from_utf8_lossy(&buf).to_string();
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert_eq!(status, 400, "truncated body: {text}");
        assert_eq!(
            xml_tag(&text, "Code").as_deref(),
            Some("IncompleteBody"),
            "{text}"
        );
    }
    env.wait_streams_equal(&before, "truncated PUT").await;
    let (status, _) = sdk_err(env.client().head_object().bucket(&b).key("t").send().await);
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_size_and_part_limits() {
    let b = unique_bucket("limits");
    let mut cfg = config_with(&[&b]);
    cfg.limits.max_object_size = MIB as u64;
    cfg.limits.max_parts = 2;
    let env = Env::start(cfg).await;
    let s3 = env.client();
    put(&s3, &b, "fits", &data(MIB, 1)).await;
    let id = create_upload(&s3, &b, "mp").await;
    let before = env.obj_streams().await;
    let r = s3
        .put_object()
        .bucket(&b)
        .key("too-big")
        .body(data(MIB + 1, 2).into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "EntityTooLarge".into()));
    let r = env
        .send_signed(
            RawRequest::new(
                "PUT",
                &format!("/{b}/mp?partNumber=3&uploadId={}", enc_query(&id)),
            )
            .body("x"),
        )
        .await;
    r.assert_error(400, "InvalidArgument");
    env.wait_streams_equal(&before, "requests over the configured limits")
        .await;
    assert_eq!(list_all_keys(&s3, &b).await, vec!["fits".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buckets_own_object_size_limit() {
    let (small, big) = (unique_bucket("small-limit"), unique_bucket("no-limit"));
    let mut cfg = config_with(&[&small, &big]);
    let limit = 64 * 1024;
    cfg.buckets[0].max_object_size = Some(limit as u64);
    cfg.limits.min_part_size = 1024;
    let env = Env::start(cfg).await;
    let s3 = env.client();
    put(&s3, &small, "fits", &data(limit, 1)).await;
    put(&s3, &big, "large", &data(limit + 1, 2)).await;
    let r = s3
        .put_object()
        .bucket(&small)
        .key("too-big")
        .body(data(limit + 1, 2).into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "EntityTooLarge".into()));
    let r = s3
        .copy_object()
        .bucket(&small)
        .key("copied")
        .copy_source(format!("{big}/large"))
        .send()
        .await;
    assert_eq!(sdk_err(r).0, 400);
    let id = create_upload(&s3, &small, "mp").await;
    let e1 = upload_part(&s3, &small, "mp", &id, 1, &data(limit / 2, 3)).await;
    let e2 = upload_part(&s3, &small, "mp", &id, 2, &data(limit / 2 + 1, 4)).await;
    let r = s3
        .complete_multipart_upload()
        .bucket(&small)
        .key("mp")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "EntityTooLarge".into()));
    assert_eq!(list_all_keys(&s3, &small).await, vec!["fits".to_string()]);
    // Within the limit, the same upload completes.
    ok(
        s3.complete_multipart_upload()
            .bucket(&small)
            .key("mp")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1)]))
            .send()
            .await,
        "Complete within the bucket's limit",
    );
}
