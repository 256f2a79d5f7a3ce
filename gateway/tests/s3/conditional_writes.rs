//! Conditional writes are compare-and-swaps across gateways: PUT and Complete with
//! `If-Match` / `If-None-Match: *`, raced through two gateways on one NATS.

use aws_sdk_s3::Client;

use crate::common::*;
use crate::multipart::{completed, create_upload, upload_part};

/// Reads the counter object: (value, ETag).
async fn read_counter(s3: &Client, b: &str) -> (u64, String) {
    let out = ok(
        s3.get_object().bucket(b).key("counter").send().await,
        "GET counter",
    );
    let etag = out.e_tag().unwrap().to_string();
    let body = out.body.collect().await.unwrap().into_bytes();
    let value = std::str::from_utf8(&body).unwrap().parse().unwrap();
    (value, etag)
}

/// Workers on two gateways increment one counter with read + PUT If-Match: no increment is
/// lost, and every refused write is a 412 (or a 409 conflict), never a 501.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_match_is_a_compare_and_swap_across_gateways() {
    let b = unique_bucket("cas");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let clients = [env.client(), peer.client()];
    put(&clients[0], &b, "counter", b"0").await;
    const WORKERS: usize = 6;
    const EACH: u64 = 5;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let s3 = clients[w % 2].clone();
            let b = b.clone();
            tokio::spawn(async move {
                let mut refused = 0u64;
                for _ in 0..EACH {
                    loop {
                        let (value, etag) = read_counter(&s3, &b).await;
                        let r = s3
                            .put_object()
                            .bucket(&b)
                            .key("counter")
                            .if_match(&etag)
                            .body((value + 1).to_string().into_bytes().into())
                            .send()
                            .await;
                        match r {
                            Ok(_) => break,
                            Err(e) => {
                                let (status, code) = sdk_err::<(), _>(Err(e));
                                assert!(
                                    (status, code.as_str()) == (412, "PreconditionFailed")
                                        || (status, code.as_str())
                                            == (409, "ConditionalRequestConflict"),
                                    "refused CAS: {status} {code}"
                                );
                                refused += 1;
                            }
                        }
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for w in workers {
        refused += w.await.unwrap();
    }
    let (value, _) = read_counter(&clients[1], &b).await;
    assert_eq!(value, WORKERS as u64 * EACH, "no increment lost");
    assert!(refused > 0, "the workers did race");
}

/// `If-None-Match: *` through both gateways at once: exactly one PUT and one Complete win.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn if_none_match_creates_once_across_gateways() {
    let b = unique_bucket("createonce");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let clients = [env.client(), peer.client()];
    let puts = (0..8).map(|i| {
        let s3 = clients[i % 2].clone();
        let b = b.clone();
        async move {
            s3.put_object()
                .bucket(&b)
                .key("once")
                .if_none_match("*")
                .body(format!("writer {i}").into_bytes().into())
                .send()
                .await
                .map(|_| i)
        }
    });
    let results = futures::future::join_all(puts).await;
    let winners: Vec<usize> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "one PUT creates the key");
    for r in results.into_iter().filter(|r| r.is_err()) {
        let (status, _) = sdk_err(r);
        assert!(status == 412 || status == 409, "{status}");
    }
    assert_eq!(
        get_bytes(&clients[0], &b, "once").await,
        format!("writer {}", winners[0]).into_bytes()
    );
    // Two uploads of one key completed at once through the two gateways.
    let mut uploads = Vec::new();
    for i in 0..2 {
        let id = create_upload(&clients[0], &b, "mp").await;
        let e = upload_part(
            &clients[0],
            &b,
            "mp",
            &id,
            1,
            format!("upload {i}").as_bytes(),
        )
        .await;
        uploads.push((id, e));
    }
    let completes = uploads.iter().enumerate().map(|(i, (id, e))| {
        let s3 = clients[i % 2].clone();
        let (b, id, e) = (b.clone(), id.clone(), e.clone());
        async move {
            s3.complete_multipart_upload()
                .bucket(&b)
                .key("mp")
                .upload_id(&id)
                .if_none_match("*")
                .multipart_upload(completed(&[(1, &e)]))
                .send()
                .await
                .map(|_| i)
        }
    });
    let results = futures::future::join_all(completes).await;
    let winners: Vec<usize> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "one Complete creates the key");
    assert_eq!(
        get_bytes(&clients[1], &b, "mp").await,
        format!("upload {}", winners[0]).into_bytes()
    );
    // Complete If-Match on a missing key is NoSuchKey.
    let id = create_upload(&clients[0], &b, "missing").await;
    let e = upload_part(&clients[0], &b, "missing", &id, 1, b"m").await;
    let r = clients[1]
        .complete_multipart_upload()
        .bucket(&b)
        .key("missing")
        .upload_id(&id)
        .if_match("\"00000000000000000000000000000000\"")
        .multipart_upload(completed(&[(1, &e)]))
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchKey".into()));
}
