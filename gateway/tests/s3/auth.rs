//! Authentication: SigV4 header, presigned URLs, streaming chunk signatures and trailers,
//! UNSIGNED-PAYLOAD, payload hashes, and every auth error S3 names.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::ChecksumMode;

use crate::common::*;

/// Path and query of a presigned URL, and its headers (except host).
fn presigned_parts(
    p: &aws_sdk_s3::presigning::PresignedRequest,
) -> (String, Vec<(String, String)>) {
    let uri: http::Uri = p.uri().parse().expect("presigned uri");
    let pq = uri.path_and_query().unwrap().as_str().to_string();
    let hs = p
        .headers()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (pq, hs)
}

fn with_headers(mut r: RawRequest, hs: &[(String, String)]) -> RawRequest {
    for (k, v) in hs {
        r = r.header(k, v);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_access_key_is_invalid_access_key_id() {
    let b = unique_bucket("auth");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client_for("AKIANOSUCHKEY0001", "whatever-secret");
    assert_eq!(
        sdk_err(s3.list_objects_v2().bucket(&b).send().await),
        (403, "InvalidAccessKeyId".into())
    );
    let mut req = RawRequest::new("GET", &format!("/{b}?list-type=2"));
    sign_request(
        &mut req,
        &env.host(),
        &Signer::new("AKIANOSUCHKEY0001", "whatever-secret"),
        Payload::Signed,
    );
    env.send(req).await.assert_error(403, "InvalidAccessKeyId");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_signature_does_not_match() {
    let b = unique_bucket("auth");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client_for(ADMIN_AK, "not-the-admin-secret");
    assert_eq!(
        sdk_err(
            s3.put_object()
                .bucket(&b)
                .key("k")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        (403, "SignatureDoesNotMatch".into())
    );
    let (status, _) = sdk_err(env.client().head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404, "nothing stored");
}

fn auth_header(req: &RawRequest) -> String {
    req.headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .expect("authorization header")
}

fn set_auth(req: &mut RawRequest, value: String) {
    req.headers.retain(|(k, _)| k != "authorization");
    req.headers.push(("authorization".into(), value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_truncated_signatures() {
    let b = unique_bucket("forge");
    let env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "k", b"secret data").await;

    let signed = || {
        let mut r = RawRequest::new("GET", &format!("/{b}/k"));
        sign_request(&mut r, &env.host(), &Signer::admin(), Payload::Signed);
        r
    };
    // Sanity: the untouched request passes.
    let ok_resp = env.send(signed()).await;
    ok_resp.assert_status(200);
    assert_eq!(ok_resp.body, b"secret data");

    // One hex digit flipped.
    let mut r = signed();
    let a = auth_header(&r);
    let last = a.chars().last().unwrap();
    let flipped = if last == '0' { '1' } else { '0' };
    set_auth(&mut r, format!("{}{}", &a[..a.len() - 1], flipped));
    env.send(r).await.assert_error(403, "SignatureDoesNotMatch");

    // Signature cut short.
    let mut r = signed();
    let a = auth_header(&r);
    set_auth(&mut r, a[..a.len() - 8].to_string());
    env.send(r).await.assert_error(403, "SignatureDoesNotMatch");

    // Signed for another path (request tampered after signing).
    let mut r = signed();
    r.path = format!("/{b}/other");
    env.send(r).await.assert_error(403, "SignatureDoesNotMatch");

    // A signed header changed after signing.
    let mut r = RawRequest::new("GET", &format!("/{b}/k")).header("range", "bytes=0-1");
    sign_request(&mut r, &env.host(), &Signer::admin(), Payload::Signed);
    for h in r.headers.iter_mut() {
        if h.0 == "range" {
            h.1 = "bytes=0-5".into();
        }
    }
    env.send(r).await.assert_error(403, "SignatureDoesNotMatch");

    // Authorization header cut before its Signature component.
    let mut r = signed();
    let a = auth_header(&r);
    let cut = a
        .find(", Signature=")
        .or_else(|| a.find(",Signature="))
        .unwrap();
    set_auth(&mut r, a[..cut].to_string());
    let resp = env.send(r).await;
    assert_eq!(resp.status, 400, "malformed Authorization: {}", resp.text());
    let code = resp.code().unwrap_or_default();
    assert!(
        [
            "AuthorizationHeaderMalformed",
            "InvalidArgument",
            "InvalidRequest"
        ]
        .contains(&code.as_str()),
        "malformed Authorization code {code}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_region_or_service_in_scope() {
    let b = unique_bucket("region");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = s3_client(ClientOpts {
        endpoint: env.endpoint(),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        region: "eu-west-1".into(),
        ..Default::default()
    });
    assert_eq!(
        sdk_err(s3.list_objects_v2().bucket(&b).send().await),
        (400, "AuthorizationHeaderMalformed".into())
    );
    let mut signer = Signer::admin();
    signer.region = "eu-west-1".into();
    let mut r = RawRequest::new("GET", &format!("/{b}?list-type=2"));
    sign_request(&mut r, &env.host(), &signer, Payload::Signed);
    let resp = env.send(r).await;
    resp.assert_error(400, "AuthorizationHeaderMalformed");
    assert_eq!(xml_tag(&resp.text(), "Region").as_deref(), Some(REGION));

    let mut signer = Signer::admin();
    signer.service = "ec2".into();
    let mut r = RawRequest::new("GET", &format!("/{b}?list-type=2"));
    sign_request(&mut r, &env.host(), &signer, Payload::Signed);
    env.send(r)
        .await
        .assert_error(400, "AuthorizationHeaderMalformed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_clock_is_request_time_too_skewed() {
    let b = unique_bucket("skew");
    let env = Env::with_buckets(&[&b]).await;
    for offset in [-1200i64, 1200] {
        let mut signer = Signer::admin();
        signer.time = if offset < 0 {
            SystemTime::now() - Duration::from_secs((-offset) as u64)
        } else {
            SystemTime::now() + Duration::from_secs(offset as u64)
        };
        let mut r = RawRequest::new("PUT", &format!("/{b}/k")).body("skewed");
        sign_request(&mut r, &env.host(), &signer, Payload::Signed);
        env.send(r).await.assert_error(403, "RequestTimeTooSkewed");
    }
    // 10 minutes off is within the 15-minute window.
    let mut signer = Signer::admin();
    signer.time = SystemTime::now() - Duration::from_secs(600);
    let mut r = RawRequest::new("PUT", &format!("/{b}/k")).body("fine");
    sign_request(&mut r, &env.host(), &signer, Payload::Signed);
    env.send(r).await.assert_status(200);
    assert_eq!(get_bytes(&env.client(), &b, "k").await, b"fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_request_on_private_bucket_is_access_denied() {
    let b = unique_bucket("priv");
    let env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "k", b"x").await;
    env.send(RawRequest::new("GET", &format!("/{b}/k")))
        .await
        .assert_error(403, "AccessDenied");
    env.send(RawRequest::new("GET", &format!("/{b}?list-type=2")))
        .await
        .assert_error(403, "AccessDenied");
    env.send(RawRequest::new("PUT", &format!("/{b}/new")).body("x"))
        .await
        .assert_error(403, "AccessDenied");
    env.send(RawRequest::new("GET", "/"))
        .await
        .assert_error(403, "AccessDenied");
    let (status, code) = sdk_err(
        env.anon_client()
            .get_object()
            .bucket(&b)
            .key("k")
            .send()
            .await,
    );
    assert_eq!((status, code.as_str()), (403, "AccessDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_hash_is_verified() {
    let b = unique_bucket("sha");
    let env = Env::with_buckets(&[&b]).await;
    let before = env.obj_streams().await;
    let mut r = RawRequest::new("PUT", &format!("/{b}/k")).body("actual body");
    sign_request(
        &mut r,
        &env.host(),
        &Signer::admin(),
        Payload::Precomputed(sha256_hex(b"another body")),
    );
    env.send(r)
        .await
        .assert_error(400, "XAmzContentSHA256Mismatch");
    let (status, _) = sdk_err(env.client().head_object().bucket(&b).key("k").send().await);
    assert_eq!(status, 404, "nothing stored");
    env.wait_streams_equal(&before, "PUT with a wrong payload hash")
        .await;

    // UNSIGNED-PAYLOAD is accepted.
    let mut r = RawRequest::new("PUT", &format!("/{b}/u")).body("unsigned body");
    sign_request(&mut r, &env.host(), &Signer::admin(), Payload::Unsigned);
    let resp = env.send(r).await;
    resp.assert_status(200);
    assert_eq!(
        resp.header("etag"),
        Some(etag_of(b"unsigned body").as_str())
    );
    assert_eq!(get_bytes(&env.client(), &b, "u").await, b"unsigned body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_get_and_put() {
    let b = unique_bucket("presign");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "dir/file name.txt", b"presigned content").await;
    let cfg = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();

    let p = s3
        .get_object()
        .bucket(&b)
        .key("dir/file name.txt")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let (pq, hs) = presigned_parts(&p);
    assert!(pq.contains("X-Amz-Signature="), "{pq}");
    let r = env
        .send(with_headers(RawRequest::new("GET", &pq), &hs))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, b"presigned content");

    let p = s3
        .put_object()
        .bucket(&b)
        .key("uploaded")
        .presigned(cfg)
        .await
        .unwrap();
    let (pq, hs) = presigned_parts(&p);
    let r = env
        .send(with_headers(RawRequest::new("PUT", &pq), &hs).body("via presigned PUT"))
        .await;
    r.assert_status(200);
    assert_eq!(
        r.header("etag"),
        Some(etag_of(b"via presigned PUT").as_str())
    );
    assert_eq!(get_bytes(&s3, &b, "uploaded").await, b"via presigned PUT");

    // The presigned GET is for that key only.
    let p = s3
        .get_object()
        .bucket(&b)
        .key("dir/file name.txt")
        .presigned(PresigningConfig::expires_in(Duration::from_secs(300)).unwrap())
        .await
        .unwrap();
    let (pq, hs) = presigned_parts(&p);
    let tampered = pq.replacen("file%20name.txt", "uploaded", 1);
    assert_ne!(tampered, pq);
    env.send(with_headers(RawRequest::new("GET", &tampered), &hs))
        .await
        .assert_error(403, "SignatureDoesNotMatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_expiry() {
    let b = unique_bucket("expiry");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"x").await;

    // Expired an hour ago.
    let cfg = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(7200))
        .expires_in(Duration::from_secs(3600))
        .build()
        .unwrap();
    let p = s3
        .get_object()
        .bucket(&b)
        .key("k")
        .presigned(cfg)
        .await
        .unwrap();
    let (pq, hs) = presigned_parts(&p);
    env.send(with_headers(RawRequest::new("GET", &pq), &hs))
        .await
        .assert_error(403, "AccessDenied");

    // Signed 6 days ago for 7 days: still valid (the 15-minute skew check is for headers).
    let mut signer = Signer::admin();
    signer.time = SystemTime::now() - Duration::from_secs(6 * 24 * 3600);
    let pq = presign(
        "GET",
        &env.host(),
        &format!("/{b}/k"),
        &signer,
        Duration::from_secs(7 * 24 * 3600),
        &[],
    );
    let r = env.send(RawRequest::new("GET", &pq)).await;
    r.assert_status(200);
    assert_eq!(r.body, b"x");

    // More than 7 days is refused.
    let pq = presign(
        "GET",
        &env.host(),
        &format!("/{b}/k"),
        &Signer::admin(),
        Duration::from_secs(7 * 24 * 3600 + 1),
        &[],
    );
    env.send(RawRequest::new("GET", &pq))
        .await
        .assert_error(400, "AuthorizationQueryParametersError");

    // Wrong region in the credential scope.
    let mut signer = Signer::admin();
    signer.region = "ap-south-1".into();
    let pq = presign(
        "GET",
        &env.host(),
        &format!("/{b}/k"),
        &signer,
        Duration::from_secs(60),
        &[],
    );
    env.send(RawRequest::new("GET", &pq))
        .await
        .assert_error(400, "AuthorizationQueryParametersError");

    // Unknown key in a presigned URL.
    let pq = presign(
        "GET",
        &env.host(),
        &format!("/{b}/k"),
        &Signer::new("AKIANOSUCHKEY0001", "secretsecret"),
        Duration::from_secs(60),
        &[],
    );
    env.send(RawRequest::new("GET", &pq))
        .await
        .assert_error(403, "InvalidAccessKeyId");
}

/// A hand-built `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` PUT; `corrupt` spoils one chunk signature.
async fn streaming_put(
    env: &Env,
    b: &str,
    key: &str,
    body: &[u8],
    corrupt: Option<usize>,
) -> RawResponse {
    let signer = Signer::admin();
    let chunk = 64 * 1024;
    let len = signed_chunked_body(body, chunk, &"0".repeat(64), &signer, None).len();
    let mut req = RawRequest::new("PUT", &format!("/{b}/{}", enc_path(key)))
        .header("content-encoding", "aws-chunked")
        .header("x-amz-decoded-content-length", &body.len().to_string())
        .header("content-length", &len.to_string());
    let seed = sign_request(
        &mut req,
        &env.host(),
        &signer,
        Payload::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into()),
    );
    req.body = signed_chunked_body(body, chunk, &seed, &signer, corrupt);
    assert_eq!(req.body.len(), len);
    env.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_signed_chunks_are_verified() {
    let b = unique_bucket("chunks");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(200_000, 12);
    let r = streaming_put(&env, &b, "streamed", &body, None).await;
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some(etag_of(&body).as_str()));
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("streamed")
            .send()
            .await,
        "GetObject",
    );
    assert_eq!(
        got.content_length(),
        Some(body.len() as i64),
        "decoded length stored"
    );
    assert!(
        got.body.collect().await.unwrap().into_bytes() == body,
        "chunk framing removed"
    );

    let before = env.obj_streams().await;
    for bad in [0usize, 2, 4] {
        // chunk 4 is the final zero-length chunk
        let r = streaming_put(&env, &b, "forged", &body, Some(bad)).await;
        r.assert_error(403, "SignatureDoesNotMatch");
        let (status, _) = sdk_err(
            env.client()
                .head_object()
                .bucket(&b)
                .key("forged")
                .send()
                .await,
        );
        assert_eq!(status, 404, "no object from a forged chunk {bad}");
        env.wait_streams_equal(&before, &format!("streaming PUT with chunk {bad} forged"))
            .await;
    }
}

async fn unsigned_trailer_put(
    env: &Env,
    b: &str,
    key: &str,
    body: &[u8],
    trailer_value: &str,
) -> RawResponse {
    let encoded = unsigned_trailer_body(body, 32 * 1024, ("x-amz-checksum-crc32", trailer_value));
    let mut req = RawRequest::new("PUT", &format!("/{b}/{key}"))
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
    env.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_unsigned_payload_with_trailer_checksum() {
    let b = unique_bucket("trailer");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(100_000, 13);
    let r = unsigned_trailer_put(&env, &b, "t", &body, &crc32_b64(&body)).await;
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some(etag_of(&body).as_str()));
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("t")
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
    assert!(got.body.collect().await.unwrap().into_bytes() == body);

    let before = env.obj_streams().await;
    let r = unsigned_trailer_put(&env, &b, "bad", &body, &crc32_b64(b"something else")).await;
    r.assert_error(400, "BadDigest");
    let (status, _) = sdk_err(
        env.client()
            .head_object()
            .bucket(&b)
            .key("bad")
            .send()
            .await,
    );
    assert_eq!(status, 404);
    env.wait_streams_equal(&before, "trailer checksum mismatch")
        .await;
}

/// A hand-built `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER` PUT with a CRC32 trailer.
async fn signed_trailer_put(
    env: &Env,
    b: &str,
    key: &str,
    body: &[u8],
    crc: &str,
    forge_trailer_sig: bool,
) -> RawResponse {
    let signer = Signer::admin();
    let chunk = 64 * 1024;
    let trailer = ("x-amz-checksum-crc32", crc);
    let len = signed_trailer_body(body, chunk, &"0".repeat(64), &signer, trailer, false).len();
    let mut req = RawRequest::new("PUT", &format!("/{b}/{key}"))
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
    req.body = signed_trailer_body(body, chunk, &seed, &signer, trailer, forge_trailer_sig);
    assert_eq!(req.body.len(), len);
    env.send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_signed_payload_with_signed_trailer() {
    let b = unique_bucket("strailer");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(150_000, 14);
    let r = signed_trailer_put(&env, &b, "ok", &body, &crc32_b64(&body), false).await;
    r.assert_status(200);
    assert_eq!(r.header("etag"), Some(etag_of(&body).as_str()));
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("ok")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await,
        "GetObject",
    );
    assert_eq!(got.checksum_crc32(), Some(crc32_b64(&body).as_str()));
    assert!(got.body.collect().await.unwrap().into_bytes() == body);

    let before = env.obj_streams().await;
    let r = signed_trailer_put(&env, &b, "forged", &body, &crc32_b64(&body), true).await;
    r.assert_error(403, "SignatureDoesNotMatch");
    let r = signed_trailer_put(&env, &b, "badsum", &body, &crc32_b64(b"other"), false).await;
    r.assert_error(400, "BadDigest");
    for k in ["forged", "badsum"] {
        let (status, _) = sdk_err(env.client().head_object().bucket(&b).key(k).send().await);
        assert_eq!(status, 404, "{k}: nothing stored");
    }
    env.wait_streams_equal(&before, "refused signed-trailer uploads")
        .await;
}
