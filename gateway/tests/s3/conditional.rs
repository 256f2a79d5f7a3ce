//! Conditional requests: If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since
//! on GET and HEAD, conditional PUT and Complete, and copy-source conditionals.

use std::time::Duration;

use aws_sdk_s3::primitives::DateTime;

use crate::common::*;
use crate::multipart::{completed, create_upload, upload_part};

struct Obj {
    etag: String,
    last_modified: String,
}

async fn setup(env: &Env, b: &str) -> Obj {
    let r = env
        .send_signed(RawRequest::new("PUT", &format!("/{b}/k")).body("conditional body"))
        .await;
    r.assert_status(200);
    let h = env
        .send_signed(RawRequest::new("HEAD", &format!("/{b}/k")))
        .await;
    h.assert_status(200);
    Obj {
        etag: h.header("etag").unwrap().to_string(),
        last_modified: h.header("last-modified").unwrap().to_string(),
    }
}

fn hour_before(d: &str) -> String {
    http_date(parse_http_date(d) - Duration::from_secs(3600))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_get_and_head() {
    let b = unique_bucket("cond");
    let env = Env::with_buckets(&[&b]).await;
    let o = setup(&env, &b).await;
    let earlier = hour_before(&o.last_modified);
    type Case<'a> = (Vec<(&'a str, String)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("if-match", o.etag.clone())], 200, "If-Match current"),
        (vec![("if-match", "*".into())], 200, "If-Match *"),
        (vec![("if-match", "\"0000\"".into())], 412, "If-Match stale"),
        (
            vec![("if-none-match", o.etag.clone())],
            304,
            "If-None-Match current",
        ),
        (vec![("if-none-match", "*".into())], 304, "If-None-Match *"),
        (
            vec![("if-none-match", "\"0000\"".into())],
            200,
            "If-None-Match other",
        ),
        (
            vec![("if-modified-since", o.last_modified.clone())],
            304,
            "If-Modified-Since LM",
        ),
        (
            vec![("if-modified-since", earlier.clone())],
            200,
            "If-Modified-Since earlier",
        ),
        (
            vec![("if-unmodified-since", earlier.clone())],
            412,
            "If-Unmodified-Since earlier",
        ),
        (
            vec![("if-unmodified-since", o.last_modified.clone())],
            200,
            "If-Unmodified-Since LM",
        ),
        // S3 precedence: If-Match true wins over If-Unmodified-Since false ...
        (
            vec![
                ("if-match", o.etag.clone()),
                ("if-unmodified-since", earlier.clone()),
            ],
            200,
            "If-Match true + If-Unmodified-Since false",
        ),
        // ... and If-None-Match false wins over If-Modified-Since true.
        (
            vec![
                ("if-none-match", o.etag.clone()),
                ("if-modified-since", earlier.clone()),
            ],
            304,
            "If-None-Match false + If-Modified-Since true",
        ),
    ];
    for method in ["GET", "HEAD"] {
        for (headers, want, what) in &cases {
            let mut req = RawRequest::new(method, &format!("/{b}/k"));
            for (k, v) in headers {
                req = req.header(k, v);
            }
            let r = env.send_signed(req).await;
            assert_eq!(r.status, *want, "{method} {what}: {}", r.text());
            match *want {
                200 if method == "GET" => {
                    assert_eq!(r.body, b"conditional body", "{method} {what}");
                }
                304 => {
                    assert!(r.body.is_empty(), "304 has no body");
                    assert_eq!(
                        r.header("etag"),
                        Some(o.etag.as_str()),
                        "{method} {what}: 304 ETag"
                    );
                }
                412 if method == "GET" => r.assert_error(412, "PreconditionFailed"),
                _ => {}
            }
        }
    }
    // The SDK maps them the same way.
    let s3 = env.client();
    let (status, _) = sdk_err(
        s3.get_object()
            .bucket(&b)
            .key("k")
            .if_match("\"0000\"")
            .send()
            .await,
    );
    assert_eq!(status, 412);
    let (status, _) = sdk_err(
        s3.head_object()
            .bucket(&b)
            .key("k")
            .if_none_match(&o.etag)
            .send()
            .await,
    );
    assert_eq!(status, 304);
    let lm = DateTime::from(parse_http_date(&o.last_modified));
    let (status, _) = sdk_err(
        s3.get_object()
            .bucket(&b)
            .key("k")
            .if_modified_since(lm)
            .send()
            .await,
    );
    assert_eq!(status, 304);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_if_none_match_star() {
    let b = unique_bucket("cput");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let out = ok(
        s3.put_object()
            .bucket(&b)
            .key("once")
            .if_none_match("*")
            .body(b"first".to_vec().into())
            .send()
            .await,
        "PUT If-None-Match * on a new key",
    );
    assert_eq!(out.e_tag(), Some(etag_of(b"first").as_str()));
    let r = s3
        .put_object()
        .bucket(&b)
        .key("once")
        .if_none_match("*")
        .body(b"second".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(r), (412, "PreconditionFailed".into()));
    assert_eq!(
        get_bytes(&s3, &b, "once").await,
        b"first",
        "content unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_if_match() {
    let b = unique_bucket("cputm");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let e1 = put(&s3, &b, "k", b"v1").await;
    let out = ok(
        s3.put_object()
            .bucket(&b)
            .key("k")
            .if_match(&e1)
            .body(b"v2".to_vec().into())
            .send()
            .await,
        "PUT If-Match current",
    );
    assert_eq!(out.e_tag(), Some(etag_of(b"v2").as_str()));
    let r = s3
        .put_object()
        .bucket(&b)
        .key("k")
        .if_match(&e1)
        .body(b"v3".to_vec().into())
        .send()
        .await;
    assert_eq!(
        sdk_err(r),
        (412, "PreconditionFailed".into()),
        "stale If-Match"
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, b"v2");
    let r = s3
        .put_object()
        .bucket(&b)
        .key("missing")
        .if_match(&e1)
        .body(b"v".to_vec().into())
        .send()
        .await;
    assert_eq!(
        sdk_err(r),
        (404, "NoSuchKey".into()),
        "If-Match on a missing key"
    );
    let (status, _) = sdk_err(s3.head_object().bucket(&b).key("missing").send().await);
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_complete_multipart() {
    let b = unique_bucket("ccomp");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let existing = put(&s3, &b, "k", b"already here").await;
    let id = create_upload(&s3, &b, "k").await;
    let e = upload_part(&s3, &b, "k", &id, 1, b"new content").await;
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .if_none_match("*")
        .multipart_upload(completed(&[(1, &e)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (412, "PreconditionFailed".into()));
    assert_eq!(get_bytes(&s3, &b, "k").await, b"already here");
    let r = s3
        .complete_multipart_upload()
        .bucket(&b)
        .key("k")
        .upload_id(&id)
        .if_match("\"00000000000000000000000000000000\"")
        .multipart_upload(completed(&[(1, &e)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (412, "PreconditionFailed".into()));
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("k")
            .upload_id(&id)
            .if_match(&existing)
            .multipart_upload(completed(&[(1, &e)]))
            .send()
            .await,
        "Complete If-Match current",
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, b"new content");

    let id = create_upload(&s3, &b, "fresh").await;
    let e = upload_part(&s3, &b, "fresh", &id, 1, b"fresh").await;
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("fresh")
            .upload_id(&id)
            .if_none_match("*")
            .multipart_upload(completed(&[(1, &e)]))
            .send()
            .await,
        "Complete If-None-Match * on a new key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_source_conditionals() {
    let b = unique_bucket("ccopy");
    let env = Env::with_buckets(&[&b]).await;
    let o = setup(&env, &b).await;
    let earlier = hour_before(&o.last_modified);
    let cases: Vec<(&str, String, u16)> = vec![
        ("x-amz-copy-source-if-match", o.etag.clone(), 200),
        ("x-amz-copy-source-if-match", "\"0000\"".into(), 412),
        ("x-amz-copy-source-if-none-match", o.etag.clone(), 412),
        ("x-amz-copy-source-if-none-match", "\"0000\"".into(), 200),
        (
            "x-amz-copy-source-if-modified-since",
            o.last_modified.clone(),
            412,
        ),
        ("x-amz-copy-source-if-modified-since", earlier.clone(), 200),
        (
            "x-amz-copy-source-if-unmodified-since",
            earlier.clone(),
            412,
        ),
        (
            "x-amz-copy-source-if-unmodified-since",
            o.last_modified.clone(),
            200,
        ),
    ];
    for (i, (h, v, want)) in cases.iter().enumerate() {
        let dst = format!("dst{i}");
        let r = env
            .send_signed(
                RawRequest::new("PUT", &format!("/{b}/{dst}"))
                    .header("x-amz-copy-source", &format!("/{b}/k"))
                    .header(h, v),
            )
            .await;
        if *want == 200 {
            r.assert_status(200);
            assert_eq!(
                xml_tag(&r.text(), "ETag").as_deref(),
                Some(o.etag.as_str()),
                "{h}"
            );
            assert_eq!(
                get_bytes(&env.client(), &b, &dst).await,
                b"conditional body"
            );
        } else {
            r.assert_error(412, "PreconditionFailed");
            let (status, _) = sdk_err(env.client().head_object().bucket(&b).key(&dst).send().await);
            assert_eq!(status, 404, "{h}: {v}: no copy made");
        }
    }
}
