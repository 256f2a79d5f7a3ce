//! Range GET (a-b, a-, -n), unsatisfiable ranges, ranges across chunk boundaries, and
//! partNumber on GET/HEAD.

use crate::common::*;
use crate::multipart::{completed, create_upload, upload_part};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_forms() {
    let b = unique_bucket("range");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(1000, 21);
    put(&env.client(), &b, "k", &body).await;
    let cases: Vec<(&str, usize, usize)> = vec![
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, 999),
        ("bytes=-5", 995, 999),
        ("bytes=500-500", 500, 500),
        ("bytes=990-5000", 990, 999),
        ("bytes=-5000", 0, 999),
        ("bytes=0-999", 0, 999),
    ];
    for (range, first, last) in cases {
        for method in ["GET", "HEAD"] {
            let r = env
                .send_signed(RawRequest::new(method, &format!("/{b}/k")).header("range", range))
                .await;
            r.assert_status(206);
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes {first}-{last}/1000").as_str()),
                "{method} {range}"
            );
            assert_eq!(
                r.header("content-length"),
                Some((last - first + 1).to_string().as_str()),
                "{method} {range}"
            );
            assert_eq!(r.header("accept-ranges"), Some("bytes"));
            assert_eq!(r.header("etag"), Some(etag_of(&body).as_str()));
            if method == "GET" {
                assert_eq!(r.body, body[first..=last].to_vec(), "{range} body");
            }
        }
    }
    // The SDK path.
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("k")
            .range("bytes=100-199")
            .send()
            .await,
        "ranged GetObject",
    );
    assert_eq!(got.content_range(), Some("bytes 100-199/1000"));
    assert_eq!(got.content_length(), Some(100));
    assert!(got.body.collect().await.unwrap().into_bytes() == body[100..200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsatisfiable_and_ignored_ranges() {
    let b = unique_bucket("r416");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let body = data(1000, 22);
    put(&s3, &b, "k", &body).await;
    put(&s3, &b, "empty", b"").await;
    for range in ["bytes=1000-", "bytes=1000-2000", "bytes=5000-6000"] {
        let r = env
            .send_signed(RawRequest::new("GET", &format!("/{b}/k")).header("range", range))
            .await;
        r.assert_error(416, "InvalidRange");
    }
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/empty")).header("range", "bytes=0-0"))
        .await;
    r.assert_error(416, "InvalidRange");
    // Syntactically invalid ranges are ignored: the whole object, 200.
    for range in ["bytes=abc", "items=0-5", "bytes=5-2"] {
        let r = env
            .send_signed(RawRequest::new("GET", &format!("/{b}/k")).header("range", range))
            .await;
        r.assert_status(200);
        assert_eq!(r.body, body, "{range} ignored");
        assert_eq!(r.header("content-range"), None);
    }
    let (status, code) = sdk_err(
        s3.get_object()
            .bucket(&b)
            .key("k")
            .range("bytes=2000-")
            .send()
            .await,
    );
    assert_eq!((status, code.as_str()), (416, "InvalidRange"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_across_chunk_boundaries() {
    let b = unique_bucket("rchunk");
    let env = Env::with_buckets(&[&b]).await;
    let body = data(MIB + 777, 23);
    put(&env.client(), &b, "big", &body).await;
    let n = body.len();
    let ranges = [
        (131_000usize, 131_200usize),
        (131_071, 131_072),
        (262_143, 262_144),
        (1, n - 2),
        (n - 10, n - 1),
        (500_000, 900_000),
    ];
    for (first, last) in ranges {
        let got = ok(
            env.client()
                .get_object()
                .bucket(&b)
                .key("big")
                .range(format!("bytes={first}-{last}"))
                .send()
                .await,
            "ranged GetObject",
        );
        assert_eq!(
            got.content_range(),
            Some(format!("bytes {first}-{last}/{n}").as_str())
        );
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(
            bytes == body[first..=last],
            "bytes {first}-{last} are byte-equal"
        );
    }
    let got = ok(
        env.client()
            .get_object()
            .bucket(&b)
            .key("big")
            .range("bytes=-100000")
            .send()
            .await,
        "suffix range",
    );
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert!(bytes == body[n - 100_000..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn part_number_on_get_and_head() {
    let b = unique_bucket("pnum");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let p1 = data(5 * MIB, 31);
    let p2 = data(100_000, 32);
    let id = create_upload(&s3, &b, "mp").await;
    let e1 = upload_part(&s3, &b, "mp", &id, 1, &p1).await;
    let e2 = upload_part(&s3, &b, "mp", &id, 2, &p2).await;
    ok(
        s3.complete_multipart_upload()
            .bucket(&b)
            .key("mp")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
            .send()
            .await,
        "Complete",
    );
    let total = p1.len() + p2.len();
    let etag = multipart_etag(&[&p1, &p2]);

    let got = ok(
        s3.get_object()
            .bucket(&b)
            .key("mp")
            .part_number(2)
            .send()
            .await,
        "GET partNumber=2",
    );
    assert_eq!(got.parts_count(), Some(2), "x-amz-mp-parts-count");
    assert_eq!(
        got.content_range(),
        Some(format!("bytes {}-{}/{}", p1.len(), total - 1, total).as_str())
    );
    assert_eq!(got.content_length(), Some(p2.len() as i64));
    assert_eq!(got.e_tag(), Some(etag.as_str()));
    assert!(got.body.collect().await.unwrap().into_bytes() == p2);

    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/mp?partNumber=1")))
        .await;
    r.assert_status(206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-{}/{}", p1.len() - 1, total).as_str())
    );
    assert_eq!(r.header("x-amz-mp-parts-count"), Some("2"));
    assert!(r.body == p1);

    let head = ok(
        s3.head_object()
            .bucket(&b)
            .key("mp")
            .part_number(1)
            .send()
            .await,
        "HEAD partNumber=1",
    );
    assert_eq!(head.content_length(), Some(p1.len() as i64));
    assert_eq!(head.parts_count(), Some(2));

    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/mp?partNumber=3")))
        .await;
    r.assert_error(416, "InvalidPartNumber");

    // A simple object has one part: the whole object.
    put(&s3, &b, "simple", b"single part").await;
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/simple?partNumber=1")))
        .await;
    assert!(
        r.status == 200 || r.status == 206,
        "partNumber=1 on a simple object: {}",
        r.status
    );
    assert_eq!(r.body, b"single part");
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/simple?partNumber=2")))
        .await;
    r.assert_error(416, "InvalidPartNumber");
}

/// Two uploads whose chunks alternate in the stream (as concurrent PUTs leave them): ranges
/// anywhere in either object are found and byte-equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_in_interleaved_objects() {
    use tokio::io::AsyncWriteExt;
    const CHUNK: usize = 128 * 1024;
    let b = unique_bucket("rinter");
    let env = Env::with_buckets(&[&b]).await;
    let mut stream = env
        .js()
        .await
        .get_stream(format!("OBJ_{b}"))
        .await
        .expect("bucket stream");
    let bodies = [data(12 * CHUNK + 1000, 41), data(12 * CHUNK + 5000, 42)];
    let mut conns = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let mut req = RawRequest::new("PUT", &format!("/{b}/obj{i}"))
            .header("content-length", &body.len().to_string());
        sign_request(&mut req, &env.host(), &Signer::admin(), Payload::Unsigned);
        let mut conn = tokio::net::TcpStream::connect(env.addr).await.unwrap();
        conn.write_all(&req.to_bytes(&env.host())).await.unwrap();
        conns.push(conn);
    }
    // One chunk of each object in turn, each stored before the next is sent.
    let mut messages = stream.info().await.expect("stream info").state.messages;
    for c in 0..12 {
        for (conn, body) in conns.iter_mut().zip(&bodies) {
            conn.write_all(&body[c * CHUNK..(c + 1) * CHUNK])
                .await
                .unwrap();
            messages += 1;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while stream.info().await.expect("stream info").state.messages < messages {
                assert!(
                    std::time::Instant::now() < deadline,
                    "chunk {c} was not stored"
                );
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    }
    for (conn, body) in conns.iter_mut().zip(&bodies) {
        conn.write_all(&body[12 * CHUNK..]).await.unwrap();
        let r = read_response(conn, &mut Vec::new(), false, false)
            .await
            .expect("PUT response");
        r.assert_status(200);
    }
    let s3 = env.client();
    for (i, body) in bodies.iter().enumerate() {
        let n = body.len();
        for (first, last) in [
            (0, 99),
            (CHUNK - 1, CHUNK),
            (5 * CHUNK + 17, 7 * CHUNK),
            (11 * CHUNK, 11 * CHUNK + 10),
            (12 * CHUNK - 1, n - 1),
            (n - 1, n - 1),
        ] {
            let got = ok(
                s3.get_object()
                    .bucket(&b)
                    .key(format!("obj{i}"))
                    .range(format!("bytes={first}-{last}"))
                    .send()
                    .await,
                "ranged GetObject",
            );
            let bytes = got.body.collect().await.unwrap().into_bytes();
            assert!(
                bytes == body[first..=last],
                "obj{i} bytes {first}-{last} are byte-equal"
            );
        }
    }
}
