//! Part reads as S3 serves them: `partNumber` on GET and HEAD of multipart and simple
//! objects (status, Content-Range, parts count, checksums), and UploadPartCopy ranges.

use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType};

use crate::common::*;
use crate::multipart::{completed, create_upload};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_number_of_a_simple_object() {
    let b = unique_bucket("psimple");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = b"single part body".to_vec();
    ok(
        s3.put_object()
            .bucket(&b)
            .key("simple")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .body(body.clone().into())
            .send()
            .await,
        "PutObject",
    );
    for method in ["GET", "HEAD"] {
        let r = env
            .send_signed(
                RawRequest::new(method, &format!("/{b}/simple?partNumber=1"))
                    .header("x-amz-checksum-mode", "ENABLED"),
            )
            .await;
        r.assert_status(206);
        let range = format!("bytes 0-{}/{}", body.len() - 1, body.len());
        assert_eq!(r.header("content-range"), Some(range.as_str()), "{method}");
        assert_eq!(
            r.header("content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(
            r.header("x-amz-mp-parts-count"),
            None,
            "{method}: only multipart objects have a parts count"
        );
        assert_eq!(
            r.header("x-amz-checksum-crc32"),
            Some(crc32_b64(&body).as_str()),
            "{method}: part 1 is the whole object, with its checksum"
        );
        if method == "GET" {
            assert_eq!(r.body, body);
        }
    }
    let got = ok(
        s3.get_object()
            .bucket(&b)
            .key("simple")
            .part_number(1)
            .send()
            .await,
        "GetObject partNumber=1",
    );
    assert_eq!(got.parts_count(), None);
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), body);
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/simple?partNumber=2")))
        .await;
    r.assert_error(416, "InvalidPartNumber");
    assert_eq!(xml_tag(&r.text(), "ActualPartCount").as_deref(), Some("1"));

    // An empty object: part 1 is the (empty) object, no range to report.
    put(&s3, &b, "empty", b"").await;
    for method in ["GET", "HEAD"] {
        let r = env
            .send_signed(RawRequest::new(method, &format!("/{b}/empty?partNumber=1")))
            .await;
        r.assert_status(200);
        assert_eq!(r.header("content-range"), None, "{method}");
        assert_eq!(r.header("content-length"), Some("0"), "{method}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_number_of_multipart_objects_with_checksums() {
    let b = unique_bucket("pmulti");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let parts = [data(5 * MIB, 1), data(5 * MIB, 2), data(1000, 3)];
    let total: usize = parts.iter().map(Vec::len).sum();
    for kind in [ChecksumType::Composite, ChecksumType::FullObject] {
        let key = kind.as_str().to_lowercase();
        let id = ok(
            s3.create_multipart_upload()
                .bucket(&b)
                .key(&key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .checksum_type(kind.clone())
                .send()
                .await,
            "CreateMultipartUpload",
        )
        .upload_id()
        .unwrap()
        .to_string();
        let mut done = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let out = ok(
                s3.upload_part()
                    .bucket(&b)
                    .key(&key)
                    .upload_id(&id)
                    .part_number(i as i32 + 1)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(p.clone().into())
                    .send()
                    .await,
                "UploadPart",
            );
            done.push((i as i32 + 1, out.e_tag().unwrap().to_string()));
        }
        let refs: Vec<(i32, &str)> = done.iter().map(|(n, e)| (*n, e.as_str())).collect();
        ok(
            s3.complete_multipart_upload()
                .bucket(&b)
                .key(&key)
                .upload_id(&id)
                .multipart_upload(completed(&refs))
                .send()
                .await,
            "Complete",
        );
        let mut start = 0;
        for (i, p) in parts.iter().enumerate() {
            let n = i + 1;
            let r = env
                .send_signed(
                    RawRequest::new("GET", &format!("/{b}/{key}?partNumber={n}"))
                        .header("x-amz-checksum-mode", "ENABLED"),
                )
                .await;
            r.assert_status(206);
            assert_eq!(r.header("x-amz-mp-parts-count"), Some("3"));
            let range = format!("bytes {start}-{}/{total}", start + p.len() - 1);
            assert_eq!(r.header("content-range"), Some(range.as_str()));
            assert!(r.body == *p, "part {n} of {key}");
            match kind {
                // A part of a composite object carries its own checksum ...
                ChecksumType::Composite => assert_eq!(
                    r.header("x-amz-checksum-crc32"),
                    Some(crc32_b64(p).as_str()),
                    "part {n} of {key}"
                ),
                // ... the full-object checksum does not describe a part.
                _ => assert_eq!(r.header("x-amz-checksum-crc32"), None, "part {n} of {key}"),
            }
            start += p.len();
        }
        // The SDK validates what it reads (its checksum validation is on by default).
        let got = ok(
            s3.get_object()
                .bucket(&b)
                .key(&key)
                .part_number(2)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await,
            "GetObject partNumber=2 with checksum validation",
        );
        assert_eq!(got.parts_count(), Some(3));
        assert!(got.body.collect().await.unwrap().into_bytes() == parts[1]);
        let r = env
            .send_signed(RawRequest::new("HEAD", &format!("/{b}/{key}?partNumber=4")))
            .await;
        assert_eq!(r.status, 416);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_part_copy_ranges_as_s3_answers() {
    let b = unique_bucket("pcopy");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "src", b"0123456789").await;
    let id = create_upload(&s3, &b, "dst").await;
    let path = format!("/{b}/dst?partNumber=1&uploadId={id}");
    // Outside the source object: InvalidRange.
    for range in ["bytes=5-10", "bytes=10-12", "bytes=0-18446744073709551615"] {
        let r = env
            .send_signed(
                RawRequest::new("PUT", &path)
                    .header("x-amz-copy-source", &format!("/{b}/src"))
                    .header("x-amz-copy-source-range", range),
            )
            .await;
        r.assert_error(416, "InvalidRange");
        assert_eq!(
            xml_tag(&r.text(), "ActualObjectSize").as_deref(),
            Some("10"),
            "{range}"
        );
    }
    // Not of the form bytes=first-last: InvalidArgument.
    for range in [
        "0-2",
        "bytes=0",
        "bytes=hello-world",
        "bytes=0-bar",
        "bytes=hello-",
        "bytes=0-2,3-5",
        "bytes=-5",
        "bytes=5-1",
    ] {
        let r = env
            .send_signed(
                RawRequest::new("PUT", &path)
                    .header("x-amz-copy-source", &format!("/{b}/src"))
                    .header("x-amz-copy-source-range", range),
            )
            .await;
        r.assert_error(400, "InvalidArgument");
        assert!(
            r.text().contains("bytes=first-last"),
            "{range}: {}",
            r.text()
        );
    }
    let parts = ok(
        s3.list_parts()
            .bucket(&b)
            .key("dst")
            .upload_id(&id)
            .send()
            .await,
        "ListParts",
    );
    assert!(parts.parts().is_empty(), "no part was stored");
    let out = ok(
        s3.upload_part_copy()
            .bucket(&b)
            .key("dst")
            .upload_id(&id)
            .part_number(1)
            .copy_source(format!("{b}/src"))
            .copy_source_range("bytes=2-4")
            .send()
            .await,
        "UploadPartCopy",
    );
    let etag = out.copy_part_result().and_then(|r| r.e_tag()).unwrap();
    assert_eq!(etag, etag_of(b"234"));
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("dst")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, etag)]))
            .send()
            .await,
        "Complete",
    );
    assert_eq!(get_bytes(&s3, &b, "dst").await, b"234");
}
