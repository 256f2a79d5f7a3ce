//! Listing and bucket edge cases real clients meet: `max-keys=0`, a continuation token with
//! `start-after`, ListBuckets pages, CreateBucket of an existing bucket (owner, region), and
//! a bucket deleted through another gateway.

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
};
use jets3_crds::policy::canonical_user_id;
use jets3_crds::{BucketCache, Permission};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_buckets_pages_prefix_and_region() {
    let env = Env::with_buckets(&[]).await;
    let s3 = env.client();
    let stem = unique_bucket("lbp");
    let names: Vec<String> = (0..5).map(|i| format!("{stem}-{i}")).collect();
    for n in &names {
        ok(s3.create_bucket().bucket(n).send().await, "CreateBucket");
    }
    ok(
        s3.create_bucket()
            .bucket(unique_bucket("other"))
            .send()
            .await,
        "CreateBucket outside the prefix",
    );
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let out = ok(
            s3.list_buckets()
                .prefix(&stem)
                .max_buckets(2)
                .set_continuation_token(token.clone())
                .send()
                .await,
            "ListBuckets page",
        );
        pages += 1;
        assert_eq!(out.prefix(), Some(stem.as_str()));
        assert!(out.buckets().len() <= 2);
        for bucket in out.buckets() {
            seen.push(bucket.name().unwrap().to_string());
            assert_eq!(bucket.bucket_region(), Some(REGION));
        }
        token = out.continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, names);
    assert_eq!(pages, 3, "5 buckets at 2 a page");
    // The SDK's paginator follows the token.
    let paged: Vec<String> = s3
        .list_buckets()
        .prefix(&stem)
        .max_buckets(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|b| b.expect("page").name().unwrap().to_string())
        .collect();
    assert_eq!(paged, names);
    let here = ok(
        s3.list_buckets()
            .prefix(&stem)
            .bucket_region(REGION)
            .send()
            .await,
        "ListBuckets bucket-region here",
    );
    assert_eq!(here.buckets().len(), 5);
    assert!(here.continuation_token().is_none(), "not paginated");
    let elsewhere = ok(
        s3.list_buckets()
            .prefix(&stem)
            .bucket_region("eu-west-1")
            .send()
            .await,
        "ListBuckets bucket-region elsewhere",
    );
    assert!(elsewhere.buckets().is_empty());
    for bad in ["0", "10001", "x"] {
        let r = env
            .send_signed(RawRequest::new("GET", &format!("/?max-buckets={bad}")))
            .await;
        r.assert_error(400, "InvalidArgument");
    }
    let r = env
        .send_signed(RawRequest::new("GET", "/?continuation-token=%25%25"))
        .await;
    r.assert_error(400, "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_bucket_again_by_owner_and_by_someone_else() {
    let declared = unique_bucket("decl");
    let mut cfg = config_with(&[&declared]);
    cfg.credentials.push(credential(
        "AKIAOTHER00000000001",
        "other-secret",
        &[("*", Permission::Admin)],
    ));
    let env = Env::start(cfg).await;
    let s3 = env.client();
    let other = env.client_for("AKIAOTHER00000000001", "other-secret");
    let mine = unique_bucket("mine");
    let grantee = canonical_user_id("AKIAOTHER00000000001");
    ok(
        s3.create_bucket()
            .bucket(&mine)
            .grant_read(format!("id=\"{grantee}\""))
            .send()
            .await,
        "CreateBucket with a grant",
    );
    put(&s3, &mine, "k", b"kept").await;
    let granted = || async {
        let acl = ok(
            s3.get_bucket_acl().bucket(&mine).send().await,
            "GetBucketAcl",
        );
        acl.grants()
            .iter()
            .any(|g| g.grantee().and_then(|e| e.id()) == Some(grantee.as_str()))
    };
    assert!(granted().await, "the grant made at creation");
    // us-east-1: the owner's second CreateBucket is a 200 that keeps the objects and
    // resets the bucket's ACL (S3's legacy behaviour there): to private without ACL
    // headers, to what they say with them.
    let again = ok(
        s3.create_bucket().bucket(&mine).send().await,
        "CreateBucket of an owned bucket in us-east-1",
    );
    assert_eq!(again.location(), Some(format!("/{mine}").as_str()));
    assert_eq!(get_bytes(&s3, &mine, "k").await, b"kept");
    assert!(!granted().await, "reset to private");
    ok(
        s3.create_bucket()
            .bucket(&mine)
            .grant_read(format!("id=\"{grantee}\""))
            .send()
            .await,
        "CreateBucket again with a grant",
    );
    assert!(granted().await, "set by the second CreateBucket");
    // The bucket's own Block Public Access decides a public ACL, not the gateway's default.
    ok(
        s3.put_public_access_block()
            .bucket(&mine)
            .public_access_block_configuration(
                aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                    .block_public_acls(false)
                    .ignore_public_acls(false)
                    .build(),
            )
            .send()
            .await,
        "PutPublicAccessBlock",
    );
    ok(
        s3.create_bucket()
            .bucket(&mine)
            .acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead)
            .send()
            .await,
        "CreateBucket again, public-read",
    );
    assert_eq!(
        env.send(RawRequest::new("GET", &format!("/{mine}")))
            .await
            .status,
        200,
        "anonymous listing"
    );
    // Another key's bucket: BucketAlreadyExists.
    let r = other.create_bucket().bucket(&mine).send().await;
    assert_eq!(sdk_err(r), (409, "BucketAlreadyExists".into()));
    // A bucket the config declares belongs to whoever may administer it.
    for client in [&s3, &other] {
        ok(
            client.create_bucket().bucket(&declared).send().await,
            "CreateBucket of a declared bucket",
        );
    }
    assert_eq!(get_bytes(&s3, &mine, "k").await, b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_bucket_again_outside_us_east_1() {
    let mut cfg = config_with(&[]);
    cfg.region = "eu-west-1".into();
    cfg.credentials.push(credential(
        "AKIAOTHER00000000002",
        "other-secret",
        &[("*", Permission::Admin)],
    ));
    let env = Env::start(cfg).await;
    let client = |ak: &str, sk: &str| {
        s3_client(ClientOpts {
            endpoint: env.endpoint(),
            creds: Some((ak.into(), sk.into())),
            region: "eu-west-1".into(),
            ..Default::default()
        })
    };
    let s3 = client(ADMIN_AK, ADMIN_SK);
    let other = client("AKIAOTHER00000000002", "other-secret");
    let conf = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    let name = unique_bucket("eu");
    ok(
        s3.create_bucket()
            .bucket(&name)
            .create_bucket_configuration(conf.clone())
            .send()
            .await,
        "CreateBucket",
    );
    let r = s3
        .create_bucket()
        .bucket(&name)
        .create_bucket_configuration(conf.clone())
        .send()
        .await;
    assert_eq!(sdk_err(r), (409, "BucketAlreadyOwnedByYou".into()));
    let r = other
        .create_bucket()
        .bucket(&name)
        .create_bucket_configuration(conf)
        .send()
        .await;
    assert_eq!(sdk_err(r), (409, "BucketAlreadyExists".into()));
}

/// A bucket deleted through one gateway is NoSuchBucket through the other one at once:
/// object reads (also of cached objects), writes, deletes, listings, presigned URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_deleted_through_another_gateway_is_no_such_bucket() {
    let plain = unique_bucket("gone");
    let cached = unique_bucket("gonecached");
    let versioned = unique_bucket("goneversioned");
    let mut cfg = config_with(&[&cached]);
    cfg.buckets[0].cache = Some(BucketCache {
        enabled: true,
        max_object_bytes: 64 * 1024,
    });
    let env = Env::start(cfg).await;
    let peer = env.peer().await;
    let a = env.client();
    let b = peer.client();
    ok(
        a.create_bucket().bucket(&plain).send().await,
        "CreateBucket",
    );
    ok(
        a.create_bucket().bucket(&versioned).send().await,
        "CreateBucket",
    );
    set_versioning(&a, &versioned, BucketVersioningStatus::Enabled).await;
    for bucket in [&plain, &cached, &versioned] {
        put(&a, bucket, "k", b"v").await;
        // Gateway A reads everything once: caches, indexes and bucket state are warm.
        for _ in 0..3 {
            assert_eq!(get_bytes(&a, bucket, "k").await, b"v");
        }
        ok(
            a.list_objects_v2().bucket(bucket.as_str()).send().await,
            "ListObjectsV2",
        );
        ok(
            a.head_object()
                .bucket(bucket.as_str())
                .key("k")
                .send()
                .await,
            "HeadObject",
        );
    }
    for bucket in [&plain, &cached, &versioned] {
        let presigned = presign(
            "GET",
            &env.host(),
            &format!("/{bucket}/k"),
            &Signer::admin(),
            std::time::Duration::from_secs(600),
            &[],
        );
        // Emptied and deleted through gateway B.
        if bucket == &versioned {
            let versions = ok(
                b.list_object_versions()
                    .bucket(bucket.as_str())
                    .send()
                    .await,
                "ListObjectVersions",
            );
            for v in versions.versions() {
                ok(
                    b.delete_object()
                        .bucket(bucket.as_str())
                        .key("k")
                        .version_id(v.version_id().unwrap())
                        .send()
                        .await,
                    "DeleteObject version",
                );
            }
        } else {
            ok(
                b.delete_object()
                    .bucket(bucket.as_str())
                    .key("k")
                    .send()
                    .await,
                "DeleteObject",
            );
            // Gateway A learns of the delete and fills its cache with nothing stale.
            put(&b, bucket, "k", b"v").await;
            assert_eq!(get_bytes(&a, bucket, "k").await, b"v");
            ok(
                b.delete_object()
                    .bucket(bucket.as_str())
                    .key("k")
                    .send()
                    .await,
                "DeleteObject",
            );
        }
        ok(
            b.delete_bucket().bucket(bucket.as_str()).send().await,
            "DeleteBucket through gateway B",
        );
        let no_bucket = (404, "NoSuchBucket".to_string());
        let get = a.get_object().bucket(bucket.as_str()).key("k").send().await;
        assert_eq!(sdk_err(get), no_bucket, "{bucket}: GetObject");
        let del = a
            .delete_object()
            .bucket(bucket.as_str())
            .key("k")
            .send()
            .await;
        assert_eq!(sdk_err(del), no_bucket, "{bucket}: DeleteObject");
        let put = a
            .put_object()
            .bucket(bucket.as_str())
            .key("k")
            .body(b"v".to_vec().into())
            .send()
            .await;
        assert_eq!(sdk_err(put), no_bucket, "{bucket}: PutObject");
        let list = a.list_objects_v2().bucket(bucket.as_str()).send().await;
        assert_eq!(sdk_err(list), no_bucket, "{bucket}: ListObjectsV2");
        let versions = a
            .list_object_versions()
            .bucket(bucket.as_str())
            .send()
            .await;
        assert_eq!(sdk_err(versions), no_bucket, "{bucket}: ListObjectVersions");
        let head = a
            .head_object()
            .bucket(bucket.as_str())
            .key("k")
            .send()
            .await;
        assert_eq!(sdk_err(head).0, 404, "{bucket}: HeadObject");
        let raw = env
            .send_signed(RawRequest::new("GET", &format!("/{bucket}/k")))
            .await;
        raw.assert_error(404, "NoSuchBucket");
        let raw = env
            .send_signed(RawRequest::new("DELETE", &format!("/{bucket}/k")))
            .await;
        raw.assert_error(404, "NoSuchBucket");
        let pre = env.send(RawRequest::new("GET", &presigned)).await;
        pre.assert_error(404, "NoSuchBucket");
    }
}
