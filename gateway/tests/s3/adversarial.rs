//! Adversarial requests that once crossed a security boundary, kept here so that none does
//! again: alias bucket names, copy sources across protections, upload ids across buckets,
//! XML text with whitespace and entities, forged X-Forwarded-For, floods against a bucket's
//! rate limit, lying lengths and missing trailers, exact part ETags, huge and malformed
//! headers, ranges and paths, slow clients on every listener. Every refusal is the exact S3
//! error (or HTTP status before S3 processing), and nothing it touched changed (object
//! bytes, listings, stream contents).

use aws_sdk_s3::types::{Delete, ObjectIdentifier, Tag, Tagging};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jets3_crds::{Access, GatewayConfig, IpFilter, Permission, RateLimit};
use serde_json::json;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use crate::common::*;

/// A browser-style PostObject form for `key` in `bucket`, signed by the admin key.
fn post_form(bucket: &str, key: &str, file: &[u8]) -> RawRequest {
    let signer = Signer::admin();
    let credential = format!("{}/{}", signer.ak, signer.scope());
    let expiration = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let doc = json!({
        "expiration": expiration,
        "conditions": [
            {"bucket": bucket},
            ["starts-with", "$key", ""],
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-credential": credential},
            {"x-amz-date": signer.amz_date()},
        ],
    });
    let policy = base64::engine::general_purpose::STANDARD.encode(doc.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(&signer.signing_key()).expect("key");
    mac.update(policy.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let boundary = "adversarialFormBoundary";
    let mut body = Vec::new();
    for (name, value) in [
        ("key", key.to_string()),
        ("x-amz-algorithm", "AWS4-HMAC-SHA256".into()),
        ("x-amz-credential", credential),
        ("x-amz-date", signer.amz_date()),
        ("policy", policy),
        ("x-amz-signature", signature),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    RawRequest::new("POST", &format!("/{bucket}"))
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
}

/// `{name: vault, natsBucket: vault_store, readOnly: true}`: `vault.store` maps to the same
/// NATS bucket and must never reach it (NoSuchBucket; CreateBucket: BucketAlreadyExists),
/// whatever the operation or addressing style.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_names_never_reach_a_configured_bucket() {
    let vault = unique_bucket("vault");
    let plain = unique_bucket("plain");
    let alias = format!("{vault}.store");
    let mut cfg = config_with(&[&vault, &plain]);
    cfg.buckets[0].nats_bucket = Some(format!("{vault}_store"));
    cfg.virtual_host_domains = vec!["s3.localhost".into()];
    let env = Env::start(cfg.clone()).await;
    let s3 = env.client();
    put(&s3, &vault, "secret", b"top secret").await;
    put(&s3, &plain, "k", b"plain").await;
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&vault)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    let mut cfg: GatewayConfig = cfg;
    cfg.generation = 2;
    cfg.buckets[0].read_only = true;
    env.gw().set_config(cfg).expect("valid");
    let before = env.obj_streams().await;

    let (denied, missing) = (
        (403, "AccessDenied".to_string()),
        (404, "NoSuchBucket".into()),
    );
    let put_to = |b: &str| {
        s3.put_object()
            .bucket(b.to_string())
            .key("x")
            .body(b"intruder".to_vec().into())
            .send()
    };
    assert_eq!(
        sdk_err(put_to(&vault).await),
        denied,
        "the bucket is read-only"
    );
    assert_eq!(
        sdk_err(put_to(&alias).await),
        missing,
        "PUT through the alias"
    );
    let vh = env.vhost_client("s3.localhost");
    assert_eq!(
        sdk_err(
            vh.put_object()
                .bucket(&alias)
                .key("x")
                .body(b"intruder".to_vec().into())
                .send()
                .await
        ),
        missing,
        "PUT through the alias, virtual-hosted"
    );
    assert_eq!(
        sdk_err(s3.get_object().bucket(&alias).key("secret").send().await),
        missing,
        "GET through the alias"
    );
    assert_eq!(
        sdk_err(s3.list_objects_v2().bucket(&alias).send().await),
        missing,
        "LIST through the alias"
    );
    assert_eq!(
        sdk_err(s3.head_bucket().bucket(&alias).send().await).0,
        404,
        "HeadBucket of the alias"
    );
    assert_eq!(
        sdk_err(s3.delete_object().bucket(&alias).key("secret").send().await),
        missing,
        "DELETE through the alias"
    );
    assert_eq!(
        sdk_err(s3.create_bucket().bucket(&alias).send().await),
        (409, "BucketAlreadyExists".into()),
        "CreateBucket of the alias"
    );
    assert_eq!(
        sdk_err(
            s3.copy_object()
                .bucket(&plain)
                .key("stolen")
                .copy_source(format!("{alias}/secret"))
                .send()
                .await
        ),
        missing,
        "copy out through the alias"
    );
    assert_eq!(
        sdk_err(
            s3.copy_object()
                .bucket(&alias)
                .key("x")
                .copy_source(format!("{plain}/k"))
                .send()
                .await
        ),
        missing,
        "copy in through the alias"
    );
    assert_eq!(
        sdk_err(
            s3.create_multipart_upload()
                .bucket(&alias)
                .key("x")
                .send()
                .await
        ),
        missing,
        "CreateMultipartUpload through the alias"
    );
    assert_eq!(
        sdk_err(
            s3.upload_part()
                .bucket(&alias)
                .key("mp")
                .upload_id(&upload)
                .part_number(1)
                .body(vec![b'p'; 10].into())
                .send()
                .await
        ),
        missing,
        "UploadPart with the bucket's upload id through the alias"
    );
    assert_eq!(
        sdk_err(
            s3.list_parts()
                .bucket(&alias)
                .key("mp")
                .upload_id(&upload)
                .send()
                .await
        ),
        missing,
        "ListParts through the alias"
    );
    env.send(post_form(&alias, "posted", b"intruder"))
        .await
        .assert_error(404, "NoSuchBucket");
    let listed: Vec<String> = ok(s3.list_buckets().send().await, "list buckets")
        .buckets()
        .iter()
        .filter_map(|b| b.name().map(str::to_string))
        .collect();
    assert!(listed.contains(&vault), "{listed:?}");
    assert!(
        !listed.contains(&alias),
        "the alias is not listed: {listed:?}"
    );

    env.wait_streams_equal(&before, "refused alias requests")
        .await;
    assert_eq!(list_all_keys(&s3, &vault).await, vec!["secret"]);
    assert_eq!(get_bytes(&s3, &vault, "secret").await, b"top secret");
    assert_eq!(list_all_keys(&s3, &plain).await, vec!["k"]);
}

/// A copy source passes every read check of its bucket, as a GET of it would: the address
/// filter, the caller's grant (or public-read) and the bucket's rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_sources_keep_their_bucket_protections() {
    let (secret, limited, dst) = (
        unique_bucket("secret"),
        unique_bucket("limited"),
        unique_bucket("dst"),
    );
    let mut cfg = config_with(&[&secret, &limited, &dst]);
    cfg.credentials.push(credential(
        "AKIACOPIER0000001",
        "copier-secret-0001",
        &[(&dst, Permission::ReadWrite)],
    ));
    let env = Env::start(cfg.clone()).await;
    let s3 = env.client();
    put(&s3, &secret, "k", b"secret bytes").await;
    put(&s3, &limited, "k", b"limited bytes").await;
    put(&s3, &dst, "k", b"dst bytes").await;
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&dst)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    cfg.generation = 2;
    cfg.buckets[0].ip_filter = Some(IpFilter {
        allow: vec![],
        deny: vec!["127.0.0.0/8".into()],
    });
    cfg.buckets[1].rate_limit = Some(RateLimit {
        requests_per_second: 0.01,
        burst: Some(1),
    });
    env.gw().set_config(cfg).expect("valid");
    let before = env.obj_streams().await;
    let denied = (403, "AccessDenied".to_string());

    let copy = |src: String, key: &'static str| {
        s3.copy_object()
            .bucket(&dst)
            .key(key)
            .copy_source(src)
            .send()
    };
    let part_copy = |src: String| {
        s3.upload_part_copy()
            .bucket(&dst)
            .key("mp")
            .upload_id(&upload)
            .part_number(1)
            .copy_source(src)
            .send()
    };
    // The address filter.
    assert_eq!(
        sdk_err(s3.get_object().bucket(&secret).key("k").send().await),
        denied,
        "GET from a denied address"
    );
    assert_eq!(
        sdk_err(copy(format!("{secret}/k"), "stolen").await),
        denied,
        "CopyObject from a denied address"
    );
    assert_eq!(
        sdk_err(part_copy(format!("{secret}/k")).await),
        denied,
        "UploadPartCopy from a denied address"
    );
    // The grant: a key that may write the target but not read the source.
    let copier = env.client_for("AKIACOPIER0000001", "copier-secret-0001");
    assert_eq!(
        sdk_err(
            copier
                .copy_object()
                .bucket(&dst)
                .key("stolen")
                .copy_source(format!("{limited}/k"))
                .send()
                .await
        ),
        denied,
        "CopyObject without a grant on the source"
    );
    // The rate limit: one request, then SlowDown, for a GET and a copy alike.
    get_bytes(&s3, &limited, "k").await;
    assert_eq!(
        sdk_err(s3.get_object().bucket(&limited).key("k").send().await),
        (503, "SlowDown".to_string()),
        "second GET of a bucket limited to one"
    );
    assert_eq!(
        sdk_err(copy(format!("{limited}/k"), "stolen").await),
        (503, "SlowDown".to_string()),
        "CopyObject from a bucket over its rate"
    );
    assert_eq!(
        sdk_err(part_copy(format!("{limited}/k")).await),
        (503, "SlowDown".to_string()),
        "UploadPartCopy from a bucket over its rate"
    );

    env.wait_streams_equal(&before, "refused copies").await;
    assert_eq!(list_all_keys(&s3, &dst).await, vec!["k"]);
    let parts = ok(
        s3.list_parts()
            .bucket(&dst)
            .key("mp")
            .upload_id(&upload)
            .send()
            .await,
        "list parts",
    );
    assert!(parts.parts().is_empty(), "no part was copied");
}

/// Text in XML request bodies is taken exactly: no trimming, entities and CDATA decoded.
/// DeleteObjects deletes exactly the keys named; tag keys and values keep their spaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_text_keeps_its_whitespace_and_entities() {
    let b = unique_bucket("xmltext");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keys = [
        "_", "_ ", " ", " a", "a", "a\t", "a&b", "x<y>", "z]]>z", " sp ", "keep",
    ];
    for k in keys {
        // Raw: the SDK refuses a key of blanks.
        env.send_signed(RawRequest::new("PUT", &format!("/{b}/{}", enc_path(k))).body(k))
            .await
            .assert_status(200);
    }
    let doomed = ["_ ", " ", " a", "a\t"];
    let out = ok(
        s3.delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .set_objects(Some(
                        doomed
                            .iter()
                            .map(|k| ObjectIdentifier::builder().key(*k).build().unwrap())
                            .collect(),
                    ))
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "delete objects",
    );
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    let mut deleted: Vec<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    let mut want = doomed.to_vec();
    want.sort();
    assert_eq!(deleted, want, "the answer names the keys exactly");
    let mut left = list_all_keys(&s3, &b).await;
    left.sort();
    let mut expect: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| !doomed.contains(k))
        .collect();
    expect.sort();
    assert_eq!(left, expect, "exactly the named keys are gone");

    // Entities, character references and CDATA, written by hand.
    let doc = "<Delete><Quiet>false</Quiet>\n  <Object><Key>a&amp;b</Key></Object>\n  <Object><Key><![CDATA[x<y>]]></Key></Object>\n  <Object><Key><![CDATA[z]]]]><![CDATA[>z]]></Key></Object>\n  <Object><Key>&#32;sp&#x20;</Key></Object>\n</Delete>";
    let r = env
        .send_signed(
            RawRequest::new("POST", &format!("/{b}?delete"))
                .header("content-md5", &md5_b64(doc.as_bytes()))
                .body(doc),
        )
        .await;
    r.assert_status(200);
    let mut gone = xml_tags(&r.text(), "Key");
    gone.sort();
    assert_eq!(gone, vec![" sp ", "a&b", "x<y>", "z]]>z"], "{}", r.text());
    let mut left = list_all_keys(&s3, &b).await;
    left.sort();
    assert_eq!(left, vec!["_", "a", "keep"]);
    for k in ["_", "a", "keep"] {
        assert_eq!(get_bytes(&s3, &b, k).await, k.as_bytes(), "{k:?} untouched");
    }

    // Tagging keeps spaces in keys and values.
    let tags = Tagging::builder()
        .tag_set(Tag::builder().key("k ").value(" v ").build().unwrap())
        .tag_set(Tag::builder().key("e").value("a&b <c>").build().unwrap())
        .build()
        .unwrap();
    ok(
        s3.put_object_tagging()
            .bucket(&b)
            .key("keep")
            .tagging(tags)
            .send()
            .await,
        "put tagging",
    );
    let got = ok(
        s3.get_object_tagging().bucket(&b).key("keep").send().await,
        "get tagging",
    );
    let mut pairs: Vec<(&str, &str)> = got.tag_set().iter().map(|t| (t.key(), t.value())).collect();
    pairs.sort();
    assert_eq!(pairs, vec![("e", "a&b <c>"), ("k ", " v ")]);
}

/// Ranges and markers at the edge of u64/u32 are clipped or refused, never wrapped: a
/// Range ending at 2^64-1 serves the rest of the object, from NATS and from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_ranges_and_markers_do_not_overflow() {
    let (plain, cached) = (unique_bucket("range"), unique_bucket("rangecache"));
    let mut cfg = config_with(&[&plain, &cached]);
    cfg.buckets[1].cache = Some(jets3_crds::BucketCache {
        enabled: true,
        max_object_bytes: 1 << 20,
    });
    let env = Env::start(cfg).await;
    let s3 = env.client();
    let body = data(1000, 7);
    for b in [&plain, &cached] {
        put(&s3, b, "k", &body).await;
        // A whole GET fills the cache of the cached bucket.
        assert_eq!(get_bytes(&s3, b, "k").await, body);
        let r = env
            .send_signed(
                RawRequest::new("GET", &format!("/{b}/k"))
                    .header("range", "bytes=1-18446744073709551615"),
            )
            .await;
        r.assert_status(206);
        assert_eq!(r.header("content-range"), Some("bytes 1-999/1000"), "{b}");
        assert_eq!(r.header("content-length"), Some("999"), "{b}");
        assert_eq!(r.body, body[1..], "{b}");
        let r = env
            .send_signed(
                RawRequest::new("GET", &format!("/{b}/k"))
                    .header("range", "bytes=18446744073709551615-18446744073709551615"),
            )
            .await;
        r.assert_error(416, "InvalidRange");
        let r = env
            .send_signed(
                RawRequest::new("GET", &format!("/{b}/k"))
                    .header("range", "bytes=-18446744073709551615"),
            )
            .await;
        r.assert_status(206);
        assert_eq!(r.body, body, "{b}: a suffix longer than the object");
    }
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&plain)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    let r = env
        .send_signed(
            RawRequest::new(
                "PUT",
                &format!("/{plain}/mp?partNumber=1&uploadId={upload}"),
            )
            .header("x-amz-copy-source", &format!("/{plain}/k"))
            .header("x-amz-copy-source-range", "bytes=0-18446744073709551615"),
        )
        .await;
    r.assert_error(416, "InvalidRange");
    let r = env
        .send_signed(RawRequest::new(
            "GET",
            &format!("/{plain}/mp?uploadId={upload}&part-number-marker=4294967295"),
        ))
        .await;
    r.assert_status(200);
    assert!(xml_tags(&r.text(), "Part").is_empty(), "{}", r.text());
    assert_eq!(list_all_keys(&s3, &plain).await, vec!["k"]);
}

/// Behind trusted proxies the client is the first untrusted address of X-Forwarded-For
/// from the right; a deny rule applies to every address on that path, so a client whose
/// own address is inside the trusted range cannot name another one to escape it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_cannot_escape_a_deny_rule() {
    let (b, other) = (unique_bucket("xff"), unique_bucket("xff-other"));
    let mut cfg = config_with(&[&b, &other]);
    let env = Env::start_with(cfg.clone(), |s| {
        s.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    put(&env.client(), &b, "k", b"v").await;
    cfg.generation = 2;
    cfg.buckets[0].ip_filter = Some(IpFilter {
        allow: vec![],
        deny: vec!["127.0.0.1/32".into(), "198.51.100.0/24".into()],
    });
    cfg.buckets[1].ip_filter = Some(IpFilter {
        allow: vec!["203.0.113.0/24".into()],
        deny: vec![],
    });
    env.gw().set_config(cfg).expect("valid");
    let get = |bucket: &str, xff: Option<&str>| {
        let mut r = RawRequest::new("GET", &format!("/{bucket}?list-type=2"));
        if let Some(v) = xff {
            r = r.header("x-forwarded-for", v);
        }
        env.send_signed(r)
    };
    // 127.0.0.1 (the peer, a trusted proxy by configuration) is denied itself.
    get(&b, None).await.assert_error(403, "AccessDenied");
    for forged in ["203.0.113.9", "127.0.0.2", "10.1.1.1, 127.0.0.3"] {
        get(&b, Some(forged))
            .await
            .assert_error(403, "AccessDenied");
    }
    // The client named by the proxy chain is checked as before.
    get(&other, Some("203.0.113.9")).await.assert_status(200);
    get(&other, Some("198.51.100.1, 203.0.113.9"))
        .await
        .assert_status(200);
    get(&other, Some("203.0.113.9, 198.51.100.1"))
        .await
        .assert_error(403, "AccessDenied");
    get(&other, Some("127.0.0.9"))
        .await
        .assert_error(403, "AccessDenied");
}

/// A bucket's rate limit counts authenticated requests apart from anonymous and
/// failed-auth ones: a flood of either kind cannot use up a valid client's budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_floods_do_not_starve_a_bucket_budget() {
    let b = unique_bucket("flood");
    let mut cfg = config_with(&[&b]);
    let env = Env::start(cfg.clone()).await;
    put(&env.client(), &b, "k", b"v").await;
    cfg.generation = 2;
    cfg.buckets[0].rate_limit = Some(RateLimit {
        requests_per_second: 0.01,
        burst: Some(2),
    });
    env.gw().set_config(cfg).expect("valid");
    let path = format!("/{b}/k");
    for _ in 0..2 {
        env.send(RawRequest::new("GET", &path))
            .await
            .assert_error(403, "AccessDenied");
    }
    env.send(RawRequest::new("GET", &path))
        .await
        .assert_error(503, "SlowDown");
    // Bad signatures count with the anonymous ones.
    let mut forged = RawRequest::new("GET", &path);
    sign_request(
        &mut forged,
        &env.host(),
        &Signer::new(ADMIN_AK, "not-the-secret"),
        Payload::Signed,
    );
    env.send(forged).await.assert_error(503, "SlowDown");
    // The valid client still has its whole budget.
    for _ in 0..2 {
        env.send_signed(RawRequest::new("GET", &path))
            .await
            .assert_status(200);
    }
    env.send_signed(RawRequest::new("GET", &path))
        .await
        .assert_error(503, "SlowDown");
}

/// `maxBufferedBytes` admission does not believe `x-amz-decoded-content-length` (the
/// client picks it): an aws-chunked upload reserves the write window unless its
/// Content-Length is smaller, and a body longer than its declared decoded length is cut
/// off as it streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_decoded_length_is_not_trusted() {
    let b = unique_bucket("declared");
    let mut cfg = config_with(&[&b]);
    cfg.limits.max_buffered_bytes = 5 * MIB as u64;
    let env = Env::start(cfg).await;
    let before = env.obj_streams().await;
    let mut req = RawRequest::new("PUT", &format!("/{b}/liar"))
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", "1")
        .header("content-length", &(10 * MIB).to_string())
        .header("connection", "keep-alive");
    sign_request(
        &mut req,
        &env.host(),
        &Signer::admin(),
        Payload::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
    );
    let mut liar = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    liar.write_all(&req.to_bytes(&env.host())).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The liar holds the write window: a 1 MiB upload no longer fits in 5 MiB.
    let r = env
        .send_signed(RawRequest::new("PUT", &format!("/{b}/honest")).body(vec![b'h'; MIB]))
        .await;
    r.assert_error(503, "SlowDown");
    // Decoded bytes past the declared one are refused at once.
    liar.write_all(b"64\r\n").await.unwrap();
    liar.write_all(&[b'x'; 100]).await.unwrap();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        read_response(&mut liar, &mut buf, false, true),
    )
    .await
    .expect("an answer before the body ends")
    .expect("a response");
    r.assert_error(400, "InvalidRequest");
    drop(liar);
    env.wait_streams_equal(&before, "refused uploads").await;
    assert!(list_all_keys(&env.client(), &b).await.is_empty());
}

/// A checksum announced in `x-amz-trailer` must arrive: a body that ends without it (or
/// with another checksum trailer) is `400 MalformedTrailerError` and stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_trailers_must_arrive() {
    let b = unique_bucket("notrailer");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    let before = env.obj_streams().await;
    let body = data(70_000, 3);
    let mut unsigned = Vec::new();
    for piece in body.chunks(32 * 1024) {
        unsigned.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        unsigned.extend_from_slice(piece);
        unsigned.extend_from_slice(b"\r\n");
    }
    let mut other_trailer = unsigned.clone();
    unsigned.extend_from_slice(b"0\r\n\r\n");
    other_trailer.extend_from_slice(
        format!("0\r\nx-amz-checksum-crc32c:{}\r\n\r\n", crc32c_b64(&body)).as_bytes(),
    );
    let unsigned_put = |path: String, encoded: Vec<u8>| {
        let mut req = RawRequest::new("PUT", &path)
            .header("content-encoding", "aws-chunked")
            .header("x-amz-decoded-content-length", &body.len().to_string())
            .header("x-amz-trailer", "x-amz-checksum-crc32")
            .header("content-length", &encoded.len().to_string());
        sign_request(
            &mut req,
            &env.host(),
            &Signer::admin(),
            Payload::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
        );
        req.body = encoded;
        env.send(req)
    };
    unsigned_put(format!("/{b}/k"), unsigned.clone())
        .await
        .assert_error(400, "MalformedTrailerError");
    unsigned_put(format!("/{b}/k"), other_trailer)
        .await
        .assert_error(400, "MalformedTrailerError");
    unsigned_put(format!("/{b}/mp?partNumber=1&uploadId={upload}"), unsigned)
        .await
        .assert_error(400, "MalformedTrailerError");
    // Signed chunks with a trailer announced, ending without one.
    let signer = Signer::admin();
    let len = signed_chunked_body(&body, 64 * 1024, &"0".repeat(64), &signer, None).len();
    let mut req = RawRequest::new("PUT", &format!("/{b}/signed"))
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &body.len().to_string())
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .header("content-length", &len.to_string());
    let seed = sign_request(
        &mut req,
        &env.host(),
        &signer,
        Payload::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER".into()),
    );
    req.body = signed_chunked_body(&body, 64 * 1024, &seed, &signer, None);
    env.send(req)
        .await
        .assert_error(400, "MalformedTrailerError");

    env.wait_streams_equal(&before, "uploads without their trailer")
        .await;
    assert!(list_all_keys(&s3, &b).await.is_empty());
    let parts = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&upload)
            .send()
            .await,
        "list parts",
    );
    assert!(parts.parts().is_empty());
}

/// DeleteObjects (and every XML body) is checked against the `x-amz-checksum-*` header
/// it carries: a mismatch is `400 BadDigest`, a malformed value `400 InvalidRequest`, and
/// nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_bodies_are_checked_against_their_checksum_headers() {
    let b = unique_bucket("delsum");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"v").await;
    let doc = "<Delete><Object><Key>k</Key></Object></Delete>";
    let delete = |name: &str, value: &str| {
        env.send_signed(
            RawRequest::new("POST", &format!("/{b}?delete"))
                .header(name, value)
                .body(doc),
        )
    };
    let wrong = crc32_b64(b"another body");
    delete("x-amz-checksum-crc32", &wrong)
        .await
        .assert_error(400, "BadDigest");
    delete("x-amz-checksum-sha256", &sha256_b64(b"another body"))
        .await
        .assert_error(400, "BadDigest");
    delete("x-amz-checksum-crc32", "not-base64!")
        .await
        .assert_error(400, "InvalidRequest");
    assert_eq!(list_all_keys(&s3, &b).await, vec!["k"], "nothing deleted");
    let tagging = "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>";
    env.send_signed(
        RawRequest::new("PUT", &format!("/{b}/k?tagging"))
            .header("x-amz-checksum-crc32", &wrong)
            .body(tagging),
    )
    .await
    .assert_error(400, "BadDigest");
    let tags = ok(
        s3.get_object_tagging().bucket(&b).key("k").send().await,
        "get tagging",
    );
    assert!(tags.tag_set().is_empty(), "no tag set");
    delete("x-amz-checksum-crc32", &crc32_b64(doc.as_bytes()))
        .await
        .assert_status(200);
    assert!(list_all_keys(&s3, &b).await.is_empty());
}

/// CompleteMultipartUpload needs each part's exact ETag (quotes optional): `*` or a list
/// is `400 InvalidPart`, and the upload stays as it was. `If-Match: *` keeps its meaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_needs_exact_part_etags() {
    let b = unique_bucket("etagstar");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    let body = data(1000, 5);
    let etag = ok(
        s3.upload_part()
            .bucket(&b)
            .key("mp")
            .upload_id(&upload)
            .part_number(1)
            .body(body.clone().into())
            .send()
            .await,
        "upload part",
    )
    .e_tag
    .expect("etag");
    let bare = etag.trim_matches('"').to_string();
    let complete = |tag: &str| {
        let doc = format!(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
            tag.replace('"', "&quot;")
        );
        env.send_signed(RawRequest::new("POST", &format!("/{b}/mp?uploadId={upload}")).body(doc))
    };
    for wrong in [
        "*".to_string(),
        "\"*\"".into(),
        format!("W/{etag}"),
        format!("\"{bare}\", \"0123\""),
        format!("0123, {bare}"),
    ] {
        complete(&wrong).await.assert_error(400, "InvalidPart");
    }
    assert!(list_all_keys(&s3, &b).await.is_empty(), "nothing completed");
    let parts = ok(
        s3.list_parts()
            .bucket(&b)
            .key("mp")
            .upload_id(&upload)
            .send()
            .await,
        "list parts",
    );
    assert_eq!(parts.parts().len(), 1, "the upload is untouched");
    complete(&bare).await.assert_status(200);
    assert_eq!(get_bytes(&s3, &b, "mp").await, body);
    ok(
        s3.get_object()
            .bucket(&b)
            .key("mp")
            .if_match("*")
            .send()
            .await,
        "If-Match: * still matches any object",
    );
}

/// A query whose percent-decoding is not UTF-8 is `400 InvalidURI` too: decoded lossily, an
/// anonymous listing of a public bucket with `prefix=%FF` listed the stored key
/// `\u{FFFD}x` (two raw prefixes named one). A PUT that carries one stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_that_are_not_utf8_are_refused() {
    let b = unique_bucket("utf8q");
    let mut cfg = config_with(&[&b]);
    cfg.buckets[0].access = Access::PublicRead;
    let env = Env::start(cfg).await;
    let s3 = env.client();
    put(&s3, &b, "\u{FFFD}x", b"v").await;
    let before = env.obj_streams().await;
    for query in [
        "list-type=2&prefix=%FF",
        "list-type=2&start-after=%C3%28",
        "prefix=%ED%A0%80",
        "versions&key-marker=%FF",
        "uploads&prefix=%FF",
    ] {
        env.send(RawRequest::new("GET", &format!("/{b}?{query}")))
            .await
            .assert_error(400, "InvalidURI");
    }
    env.send(RawRequest::new(
        "GET",
        &format!("/{b}/%EF%BF%BDx?versionId=%FF"),
    ))
    .await
    .assert_error(400, "InvalidURI");
    env.send_signed(RawRequest::new("PUT", &format!("/{b}/k?x-id=%FF")).body("x"))
        .await
        .assert_error(400, "InvalidURI");
    env.wait_streams_equal(&before, "refused queries").await;
    // The same prefix, well encoded, lists the key.
    env.send(RawRequest::new(
        "GET",
        &format!("/{b}?list-type=2&prefix=%EF%BF%BD"),
    ))
    .await
    .assert_status(200);
}

/// A path whose percent-decoding is not UTF-8 is `400 InvalidURI` (it was decoded lossily,
/// so two raw keys named one stored key), path-style and virtual-hosted; in a copy source
/// it is `400 InvalidArgument`. Nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_are_not_utf8_are_refused() {
    let b = unique_bucket("utf8");
    let mut cfg = config_with(&[&b]);
    cfg.virtual_host_domains = vec!["s3.localhost".into()];
    let env = Env::start(cfg).await;
    let s3 = env.client();
    put(&s3, &b, "ok", b"v").await;
    let before = env.obj_streams().await;
    for raw in ["%FF", "a%C3%28", "%ED%A0%80", "x/%C0%AF"] {
        env.send_signed(RawRequest::new("PUT", &format!("/{b}/{raw}")).body("x"))
            .await
            .assert_error(400, "InvalidURI");
        env.send_signed(RawRequest::new("GET", &format!("/{b}/{raw}")))
            .await
            .assert_error(400, "InvalidURI");
        env.send_signed(
            RawRequest::new("PUT", &format!("/{raw}"))
                .header("host", &format!("{b}.s3.localhost"))
                .body("x"),
        )
        .await
        .assert_error(400, "InvalidURI");
        env.send_signed(
            RawRequest::new("PUT", &format!("/{b}/copy"))
                .header("x-amz-copy-source", &format!("/{b}/{raw}")),
        )
        .await
        .assert_error(400, "InvalidArgument");
    }
    env.send_signed(RawRequest::new("GET", "/%FF%FE?list-type=2"))
        .await
        .assert_error(400, "InvalidURI");
    env.wait_streams_equal(&before, "refused paths").await;
    assert_eq!(list_all_keys(&s3, &b).await, vec!["ok"]);
    env.send_signed(RawRequest::new("PUT", &format!("/{b}/%C3%A9")).body("e"))
        .await
        .assert_status(200);
    assert_eq!(get_bytes(&s3, &b, "é").await, b"e");
}

/// PostObject removes the object it wrote from the cache before it answers, like every
/// other write: a GET right after it never sees the old bytes (the bucket's watch usually
/// removes it first; this guards the answer not depending on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_object_invalidates_the_cache() {
    let b = unique_bucket("postcache");
    let mut cfg = config_with(&[&b]);
    cfg.buckets[0].cache = Some(jets3_crds::BucketCache {
        enabled: true,
        max_object_bytes: 1 << 20,
    });
    let env = Env::start(cfg).await;
    let s3 = env.client();
    let mut stale = 0;
    for round in 0..10 {
        let old = format!("old-{round}");
        put(&s3, &b, "k", old.as_bytes()).await;
        for _ in 0..2 {
            // The second read is served from the cache (once its watch is live).
            assert_eq!(get_bytes(&s3, &b, "k").await, old.as_bytes());
        }
        let new = format!("new-{round}");
        let r = env.send(post_form(&b, "k", new.as_bytes())).await;
        assert!(r.status == 204, "PostObject: {} {}", r.status, r.text());
        if get_bytes(&s3, &b, "k").await != new.as_bytes() {
            stale += 1;
        }
    }
    assert_eq!(
        stale, 0,
        "GETs right after a PostObject that saw the old object"
    );
}

/// Opens `n` connections to `addr`, each sending half a request head and then nothing.
async fn slow_clients(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .expect("write");
        out.push(s);
    }
    out
}

/// Sockets this process holds that a listener on `port` accepted: found by inode among the
/// connections of `/proc/net/tcp{,6}` whose local port is `port`. Other tests of this binary
/// open and close descriptors all the time, so a count of every descriptor is not a measure.
fn accepted_sockets(port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            // State 0A is LISTEN: the listener itself, not a connection.
            if local_port == Some(port) && f.get(3) != Some(&"0A") {
                if let Some(inode) = f.get(9) {
                    inodes.insert(format!("socket:[{inode}]"));
                }
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_str().is_some_and(|l| inodes.contains(l)))
        .count()
}

/// Every listener (S3, admin, push) caps its open connections and cuts off a client that
/// does not finish its request head: slow clients cannot exhaust the file descriptors the
/// listeners share, and a real request gets through once their time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_exhaust_any_listener() {
    let b = unique_bucket("slowloris");
    let mut cfg = config_with(&[&b]);
    cfg.limits.timeouts.header_read_seconds = 1;
    let dir = tempfile::tempdir().unwrap();
    let verify = dir.path().join("verify.pem");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(&verify, key.public_key_pem()).unwrap();
    let cap = 8;
    let env = Env::start_with(cfg, |s| {
        s.connections = jets3_gateway::ConnectionLimits {
            s3: cap,
            admin: cap,
            push: cap,
            header_read_seconds: 1,
        };
        s.push = Some(jets3_gateway::PushSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls_cert_file: None,
            tls_key_file: None,
            insecure: true,
            verify_key_file: verify,
            audience: "jets3-gateway".into(),
            issuer: "jets3-operator".into(),
        });
    })
    .await;
    let listeners = [
        ("s3", env.addr),
        ("admin", env.admin.expect("admin")),
        ("push", env.gw().push_addr().expect("push")),
    ];
    let clients = 4 * cap;
    for (name, addr) in listeners {
        let mut slow = slow_clients(addr, clients).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let held = accepted_sockets(addr.port());
        // At most `cap` accepted and held by the gateway; the rest wait in the backlog.
        assert!(
            held <= cap + 1,
            "{name}: {held} connections held for {clients} slow clients (cap {cap})"
        );
        // The first ones are cut off after the header read timeout.
        let mut rest = Vec::new();
        let t = std::time::Instant::now();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut slow[0], &mut rest),
        )
        .await;
        assert!(closed.is_ok(), "{name}: a stalled head is cut off");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{name}");
        drop(slow);
        // A client that connects and says nothing is cut off too.
        let mut mute = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::io::AsyncReadExt::read_to_end(&mut mute, &mut rest),
        )
        .await;
        assert!(closed.is_ok(), "{name}: a silent connection is cut off");
    }
    // With the slow clients gone, each listener serves again.
    env.admin_get("/healthz").await.assert_status(200);
    env.send_signed(RawRequest::new("GET", &format!("/{b}?list-type=2")))
        .await
        .assert_status(200);
}

/// An upload id names one upload of one bucket and key: used anywhere else it is
/// `404 NoSuchUpload`, as is an id that is not one, and the upload is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_ids_do_not_cross_buckets_or_keys() {
    let (a, b) = (unique_bucket("upl-a"), unique_bucket("upl-b"));
    let env = Env::with_buckets(&[&a, &b]).await;
    let s3 = env.client();
    put(&s3, &a, "src", b"source bytes").await;
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&a)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    ok(
        s3.upload_part()
            .bucket(&a)
            .key("mp")
            .upload_id(&upload)
            .part_number(1)
            .body(b"part one".to_vec().into())
            .send()
            .await,
        "upload part",
    );
    let before = env.obj_streams().await;
    let no_upload = (404, "NoSuchUpload".to_string());
    for (bucket, key, id) in [
        (&b, "mp", upload.as_str()),
        (&a, "other", upload.as_str()),
        (&a, "mp", "../x"),
        (&a, "mp", "*"),
        (&a, "mp", ">"),
        (&a, "mp", &format!("{upload}.1")),
    ] {
        let what = format!("{bucket}/{key} with upload id {id:?}");
        assert_eq!(
            sdk_err(
                s3.upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(2)
                    .body(b"intruder".to_vec().into())
                    .send()
                    .await
            ),
            no_upload,
            "UploadPart to {what}"
        );
        assert_eq!(
            sdk_err(
                s3.upload_part_copy()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .part_number(2)
                    .copy_source(format!("{a}/src"))
                    .send()
                    .await
            ),
            no_upload,
            "UploadPartCopy to {what}"
        );
        assert_eq!(
            sdk_err(
                s3.list_parts()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
            ),
            no_upload,
            "ListParts of {what}"
        );
        let doc = "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>";
        env.send_signed(
            RawRequest::new(
                "POST",
                &format!("/{bucket}/{key}?uploadId={}", enc_query(id)),
            )
            .body(doc),
        )
        .await
        .assert_error(404, "NoSuchUpload");
        assert_eq!(
            sdk_err(
                s3.abort_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
            ),
            no_upload,
            "Abort of {what}"
        );
    }
    env.wait_streams_equal(&before, "refused upload ids").await;
    let parts = ok(
        s3.list_parts()
            .bucket(&a)
            .key("mp")
            .upload_id(&upload)
            .send()
            .await,
        "list parts",
    );
    assert_eq!(parts.parts().len(), 1, "the upload keeps its one part");
    assert!(list_all_keys(&s3, &b).await.is_empty());
    assert_eq!(list_all_keys(&s3, &a).await, vec!["src"]);
}

/// Huge or malformed headers, ranges and numbers get their exact answer (an S3 error, or
/// HTTP 431 before any S3 processing) and change nothing; the gateway keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_malformed_headers_and_ranges() {
    let b = unique_bucket("malformed");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(1000, 11);
    put(&s3, &b, "k", &body).await;
    let before = env.obj_streams().await;
    let path = format!("/{b}/k");

    // A header section over 16 KiB: S3's error; far over or too many headers: HTTP 431.
    env.send_signed(
        RawRequest::new("PUT", &format!("/{b}/big-meta"))
            .header("x-amz-meta-big", &"m".repeat(20 * 1024))
            .body("x"),
    )
    .await
    .assert_error(400, "RequestHeaderSectionTooLarge");
    let huge = RawRequest::new("GET", &path).header("x-huge", &"h".repeat(1 << 20));
    let mut many = RawRequest::new("GET", &path);
    for i in 0..200 {
        many = many.header(&format!("x-many-{i}"), "v");
    }
    for (what, req) in [("a 1 MiB header", huge), ("200 headers", many)] {
        let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
        // The gateway may answer and close before it has read everything.
        let _ = s.write_all(&req.to_bytes(&env.host())).await;
        let mut buf = Vec::new();
        let r = read_response(&mut s, &mut buf, false, true)
            .await
            .expect(what);
        assert_eq!(r.status, 431, "{what}");
    }

    // Ranges S3 ignores serve the whole object; unsatisfiable ones are InvalidRange.
    for ignored in [
        "bytes=abc-def",
        "bytes=5-1",
        "bytes=--1",
        "bytes=0-0,1-1",
        "items=0-1",
        "bytes=0-99999999999999999999999",
    ] {
        let r = env
            .send_signed(RawRequest::new("GET", &path).header("range", ignored))
            .await;
        r.assert_status(200);
        assert_eq!(r.body, body, "{ignored}");
    }
    for unsatisfiable in ["bytes=1000-", "bytes=-0", "bytes=4000-5000"] {
        env.send_signed(RawRequest::new("GET", &path).header("range", unsatisfiable))
            .await
            .assert_error(416, "InvalidRange");
    }
    env.send_signed(RawRequest::new(
        "GET",
        &format!("{path}?partNumber=99999999999999999999"),
    ))
    .await
    .assert_error(400, "InvalidArgument");
    env.send_signed(RawRequest::new(
        "GET",
        &format!("/{b}?list-type=2&max-keys=-1"),
    ))
    .await
    .assert_error(400, "InvalidArgument");
    let r = env
        .send_signed(RawRequest::new(
            "GET",
            &format!("/{b}?list-type=2&max-keys=99999999999999999999"),
        ))
        .await;
    r.assert_error(400, "InvalidArgument");

    // Copy-source ranges that are not byte ranges of the source.
    let upload = ok(
        s3.create_multipart_upload()
            .bucket(&b)
            .key("mp")
            .send()
            .await,
        "create upload",
    )
    .upload_id
    .expect("upload id");
    let before = {
        // Creating the upload wrote no object data.
        let now = env.obj_streams().await;
        assert_eq!(now, before);
        now
    };
    for (bad, status, code) in [
        ("bytes=a-b", 400, "InvalidArgument"),
        ("bytes=5-1", 400, "InvalidArgument"),
        ("bytes=0-1000", 416, "InvalidRange"),
        ("0-10", 400, "InvalidArgument"),
        ("bytes=-5", 400, "InvalidArgument"),
    ] {
        env.send_signed(
            RawRequest::new("PUT", &format!("/{b}/mp?partNumber=1&uploadId={upload}"))
                .header("x-amz-copy-source", &format!("/{b}/k"))
                .header("x-amz-copy-source-range", bad),
        )
        .await
        .assert_error(status, code);
    }
    // A declared length that is not a number.
    let mut req = RawRequest::new("PUT", &format!("/{b}/chunked"))
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", "lots")
        .body("0\r\n\r\n");
    sign_request(
        &mut req,
        &env.host(),
        &Signer::admin(),
        Payload::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
    );
    env.send(req).await.assert_error(400, "InvalidArgument");

    env.wait_streams_equal(&before, "refused requests").await;
    assert_eq!(list_all_keys(&s3, &b).await, vec!["k"]);
    assert_eq!(get_bytes(&s3, &b, "k").await, body);
}
