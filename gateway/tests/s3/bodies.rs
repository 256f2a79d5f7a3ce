//! Bodies and headers: `Expect: 100-continue` answered only for requests that will be
//! served (a refused one never reads its body), `aws-chunked` kept out of the stored
//! Content-Encoding, and a multipart upload of one small part.

use std::time::Duration;

use jets3_crds::Permission;
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::multipart::{completed, create_upload, upload_part};

/// Sends `req`'s head with `Expect: 100-continue` and no body; returns the first response
/// (an interim 100 included).
async fn first_answer(env: &Env, head: Vec<u8>) -> RawResponse {
    let mut stream = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    stream.write_all(&head).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        read_response(&mut stream, &mut buf, false, false),
    )
    .await
    .expect("an answer without the body")
    .expect("a response")
}

fn expecting(method: &str, path: &str, len: usize) -> RawRequest {
    RawRequest::new(method, path)
        .header("expect", "100-continue")
        .header("content-length", &len.to_string())
        .header("connection", "keep-alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_get_no_100_continue() {
    let b = unique_bucket("nocont");
    let mut cfg = config_with(&[&b]);
    cfg.credentials.push(credential(
        "AKIAREADER0000000001",
        "reader-secret",
        &[(b.as_str(), Permission::Read)],
    ));
    let env = Env::start(cfg).await;
    let s3 = env.client();
    put(&s3, &b, "exists", b"v").await;
    let upload = create_upload(&s3, &b, "mp").await;
    let before = env.obj_streams().await;
    let host = env.host();
    let signed = |req: RawRequest, signer: &Signer| {
        let mut req = req;
        sign_request(&mut req, &host, signer, Payload::Unsigned);
        req.to_bytes(&host)
    };
    let mut bad_secret = Signer::admin();
    bad_secret.sk = "not-the-secret".into();
    let unknown = Signer::new("AKIANOBODY0000000001", "whatever");
    let reader = Signer::new("AKIAREADER0000000001", "reader-secret");
    let put_k = format!("/{b}/k");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "anonymous",
            expecting("PUT", &put_k, 5).to_bytes(&host),
            403,
            "AccessDenied",
        ),
        (
            "unknown key",
            signed(expecting("PUT", &put_k, 5), &unknown),
            403,
            "InvalidAccessKeyId",
        ),
        (
            "wrong signature",
            signed(expecting("PUT", &put_k, 5), &bad_secret),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            "no write grant",
            signed(expecting("PUT", &put_k, 5), &reader),
            403,
            "AccessDenied",
        ),
        (
            "no write grant on a part",
            signed(
                expecting("PUT", &format!("/{b}/mp?partNumber=1&uploadId={upload}"), 5),
                &reader,
            ),
            403,
            "AccessDenied",
        ),
        (
            "no such bucket",
            signed(
                expecting("PUT", &format!("/{}/k", unique_bucket("nothere")), 5),
                &Signer::admin(),
            ),
            404,
            "NoSuchBucket",
        ),
        (
            "no such upload",
            signed(
                expecting(
                    "PUT",
                    &format!("/{b}/mp?partNumber=1&uploadId=NOSUCHUPLOAD1"),
                    5,
                ),
                &Signer::admin(),
            ),
            404,
            "NoSuchUpload",
        ),
        (
            "key exists",
            signed(
                expecting("PUT", &format!("/{b}/exists"), 5).header("if-none-match", "*"),
                &Signer::admin(),
            ),
            412,
            "PreconditionFailed",
        ),
        (
            "too large",
            signed(
                expecting("PUT", &put_k, 6 * 1024 * 1024 * 1024 * 1024),
                &Signer::admin(),
            ),
            400,
            "EntityTooLarge",
        ),
    ];
    for (what, head, status, code) in cases {
        let r = first_answer(&env, head).await;
        assert_ne!(r.status, 100, "{what}: 100 Continue for a refused request");
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.code().as_deref(), Some(code), "{what}");
        // The body was never sent: the connection cannot carry another request.
        assert_eq!(r.header("connection"), Some("close"), "{what}");
    }
    env.wait_streams_equal(&before, "refused requests").await;
    assert_eq!(list_all_keys(&s3, &b).await, vec!["exists"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_requests_get_100_continue_then_their_answer() {
    let b = unique_bucket("cont2");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let upload = create_upload(&s3, &b, "mp").await;
    let body = data(70_000, 5);
    for path in [
        format!("/{b}/plain"),
        format!("/{b}/mp?partNumber=1&uploadId={upload}"),
    ] {
        let mut req = expecting("PUT", &path, body.len());
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
        assert_eq!(interim.status, 100, "{path}");
        stream.write_all(&body).await.unwrap();
        let fin = read_response(&mut stream, &mut buf, false, true)
            .await
            .unwrap();
        fin.assert_status(200);
        assert_eq!(fin.header("etag"), Some(etag_of(&body).as_str()), "{path}");
        assert_eq!(fin.header("connection"), None, "{path}: kept alive");
    }
    assert_eq!(get_bytes(&s3, &b, "plain").await, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_chunked_is_not_a_stored_content_encoding() {
    let b = unique_bucket("encoding");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(1000, 9);
    for (sent, stored) in [
        ("aws-chunked", None),
        ("aws-chunked,gzip", Some("gzip")),
        ("gzip, aws-chunked", Some("gzip")),
        ("AWS-CHUNKED, br", Some("br")),
    ] {
        let chunked =
            unsigned_trailer_body(&body, 400, ("x-amz-checksum-crc32", &crc32_b64(&body)));
        let mut req = RawRequest::new("PUT", &format!("/{b}/k"))
            .header("content-encoding", sent)
            .header("x-amz-decoded-content-length", &body.len().to_string())
            .header("x-amz-trailer", "x-amz-checksum-crc32")
            .body(chunked);
        sign_request(
            &mut req,
            &env.host(),
            &Signer::admin(),
            Payload::Precomputed("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
        );
        env.send(req).await.assert_status(200);
        let head = env
            .send_signed(RawRequest::new("HEAD", &format!("/{b}/k")))
            .await;
        head.assert_status(200);
        assert_eq!(head.header("content-encoding"), stored, "sent {sent:?}");
    }
    // The SDK's own streaming upload with an encoding.
    let s3 = env.tls_pretending_client();
    ok(
        s3.put_object()
            .bucket(&b)
            .key("sdk")
            .content_encoding("gzip")
            .body(body.clone().into())
            .send()
            .await,
        "PutObject",
    );
    let head = ok(
        s3.head_object().bucket(&b).key("sdk").send().await,
        "HeadObject",
    );
    assert_eq!(head.content_encoding(), Some("gzip"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_small_part_completes() {
    let b = unique_bucket("onepart");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let id = create_upload(&s3, &b, "k").await;
    let e = upload_part(&s3, &b, "k", &id, 1, b"tiny").await;
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e)]))
            .send()
            .await,
        "Complete of one small part",
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, b"tiny");
}
