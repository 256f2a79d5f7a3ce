//! Listing and bucket edge cases real clients meet: `max-keys=0`, a continuation token with
//! `start-after`, ListBuckets pages, CreateBucket of an existing bucket (owner, region), and
//! a bucket deleted through another gateway.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_keys_zero_is_empty_and_not_truncated() {
    let b = unique_bucket("maxzero");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    for k in ["a", "b/c", "d"] {
        put(&s3, &b, k, b"v").await;
    }
    let v2 = ok(
        s3.list_objects_v2().bucket(&b).max_keys(0).send().await,
        "ListObjectsV2 max-keys=0",
    );
    assert_eq!(v2.key_count(), Some(0));
    assert_eq!(v2.is_truncated(), Some(false));
    assert!(v2.contents().is_empty() && v2.next_continuation_token().is_none());
    let v2d = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .max_keys(0)
            .send()
            .await,
        "ListObjectsV2 max-keys=0 with a delimiter",
    );
    assert_eq!(v2d.is_truncated(), Some(false));
    assert!(v2d.common_prefixes().is_empty());
    let v1 = ok(
        s3.list_objects().bucket(&b).max_keys(0).send().await,
        "ListObjects max-keys=0",
    );
    assert_eq!(v1.is_truncated(), Some(false));
    assert!(v1.contents().is_empty() && v1.next_marker().is_none());
    let versions = ok(
        s3.list_object_versions()
            .bucket(&b)
            .max_keys(0)
            .send()
            .await,
        "ListObjectVersions max-keys=0",
    );
    assert_eq!(versions.is_truncated(), Some(false));
    assert!(versions.versions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_token_wins_over_start_after() {
    let b = unique_bucket("tokenwins");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    for k in ["a", "b", "c", "d", "e"] {
        put(&s3, &b, k, b"v").await;
    }
    let first = ok(
        s3.list_objects_v2().bucket(&b).max_keys(2).send().await,
        "first page",
    );
    let token = first
        .next_continuation_token()
        .expect("a token")
        .to_string();
    for start_after in ["a", "d"] {
        let out = ok(
            s3.list_objects_v2()
                .bucket(&b)
                .continuation_token(&token)
                .start_after(start_after)
                .send()
                .await,
            "ListObjectsV2 with a token and start-after",
        );
        let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, ["c", "d", "e"], "start-after {start_after}");
        assert_eq!(out.continuation_token(), Some(token.as_str()));
        assert_eq!(out.start_after(), Some(start_after), "both are echoed");
    }
}

