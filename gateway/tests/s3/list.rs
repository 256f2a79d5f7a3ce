//! ListObjects v1, ListObjectsV2, ListObjectVersions: order, prefix, delimiter, pagination,
//! encoding, owner, read-after-write.

use aws_sdk_s3::types::EncodingType;
use aws_sdk_s3::Client;
use futures::StreamExt;

use crate::common::*;

pub async fn put_many(s3: &Client, bucket: &str, keys: &[String]) {
    let results: Vec<()> = futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let s3 = s3.clone();
            let bucket = bucket.to_string();
            async move {
                put(&s3, &bucket, &k, k.as_bytes()).await;
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(results.len(), keys.len());
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_is_sorted_in_utf8_byte_order() {
    let b = unique_bucket("order");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keys = strings(&[
        "a", "B", "a/b", "a-b", "é", "z", "Z", "~", "日本", "a b", "0", "a0", "ab", "a/",
    ]);
    put_many(&s3, &b, &keys).await;
    let out = ok(
        s3.list_objects_v2().bucket(&b).send().await,
        "ListObjectsV2",
    );
    let got: Vec<String> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    let mut want = keys.clone();
    want.sort(); // String ordering is UTF-8 byte order
    assert_eq!(got, want);
    assert_eq!(out.key_count(), Some(keys.len() as i32));
    assert_eq!(out.is_truncated(), Some(false));
    assert_eq!(out.next_continuation_token(), None);
    assert_eq!(out.name(), Some(b.as_str()));
    assert_eq!(out.max_keys(), Some(1000));
    for o in out.contents() {
        let k = o.key().unwrap();
        assert_eq!(o.size(), Some(k.len() as i64), "Size of {k}");
        assert_eq!(
            o.e_tag(),
            Some(etag_of(k.as_bytes()).as_str()),
            "ETag of {k}"
        );
        assert!(o.last_modified().is_some());
        assert_eq!(o.storage_class().map(|s| s.as_str()), Some("STANDARD"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_prefix_and_delimiter() {
    let b = unique_bucket("delim");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put_many(
        &s3,
        &b,
        &strings(&[
            "photos/2024/a.jpg",
            "photos/2024/b.jpg",
            "photos/2025/c.jpg",
            "photos/top.jpg",
            "docs/x",
            "readme",
        ]),
    )
    .await;

    let page = |prefix: Option<&str>, delim: Option<&str>| {
        s3.list_objects_v2()
            .bucket(&b)
            .set_prefix(prefix.map(str::to_string))
            .set_delimiter(delim.map(str::to_string))
            .send()
    };
    let keys = |o: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output| -> Vec<String> {
        o.contents()
            .iter()
            .map(|c| c.key().unwrap().to_string())
            .collect()
    };
    let cps = |o: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output| -> Vec<String> {
        o.common_prefixes()
            .iter()
            .map(|c| c.prefix().unwrap().to_string())
            .collect()
    };

    let out = ok(page(None, Some("/")).await, "delimiter /");
    assert_eq!(keys(&out), strings(&["readme"]));
    assert_eq!(cps(&out), strings(&["docs/", "photos/"]));
    assert_eq!(
        out.key_count(),
        Some(3),
        "KeyCount counts keys and common prefixes"
    );
    assert_eq!(out.delimiter(), Some("/"));

    let out = ok(page(Some("photos/"), Some("/")).await, "prefix photos/");
    assert_eq!(keys(&out), strings(&["photos/top.jpg"]));
    assert_eq!(cps(&out), strings(&["photos/2024/", "photos/2025/"]));
    assert_eq!(out.key_count(), Some(3));
    assert_eq!(out.prefix(), Some("photos/"));

    let out = ok(page(Some("photos/2024/"), None).await, "prefix only");
    assert_eq!(
        keys(&out),
        strings(&["photos/2024/a.jpg", "photos/2024/b.jpg"])
    );
    assert!(cps(&out).is_empty());

    let out = ok(page(Some("photos/2024/"), Some(".")).await, "delimiter .");
    assert!(keys(&out).is_empty());
    assert_eq!(cps(&out), strings(&["photos/2024/a.", "photos/2024/b."]));

    let out = ok(page(Some("nothing-here"), Some("/")).await, "empty prefix");
    assert_eq!(out.key_count(), Some(0));
    assert!(out.contents().is_empty() && out.common_prefixes().is_empty());
    assert_eq!(out.is_truncated(), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_pagination_and_start_after() {
    let b = unique_bucket("pages");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keys: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    put_many(&s3, &b, &keys).await;

    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let out = ok(
            s3.list_objects_v2()
                .bucket(&b)
                .max_keys(3)
                .set_continuation_token(token.clone())
                .send()
                .await,
            "ListObjectsV2 page",
        );
        assert_eq!(out.max_keys(), Some(3));
        assert_eq!(
            out.continuation_token(),
            token.as_deref(),
            "ContinuationToken echoed"
        );
        let n = out.contents().len();
        assert_eq!(out.key_count(), Some(n as i32));
        sizes.push(n);
        seen.extend(out.contents().iter().map(|o| o.key().unwrap().to_string()));
        if out.is_truncated() == Some(true) {
            token = out.next_continuation_token().map(str::to_string);
            assert!(token.is_some(), "truncated page has NextContinuationToken");
        } else {
            assert_eq!(out.next_continuation_token(), None);
            break;
        }
    }
    assert_eq!(sizes, vec![3, 3, 3, 1]);
    assert_eq!(seen, keys);

    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .start_after("k05")
            .send()
            .await,
        "start-after",
    );
    assert_eq!(out.start_after(), Some("k05"));
    let got: Vec<String> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    assert_eq!(got, keys[6..].to_vec());

    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .start_after("k055")
            .max_keys(2)
            .send()
            .await,
        "start-after between keys",
    );
    let got: Vec<String> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    assert_eq!(got, strings(&["k06", "k07"]));
    assert_eq!(out.is_truncated(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_common_prefixes_count_toward_max_keys() {
    let b = unique_bucket("cpmax");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put_many(&s3, &b, &strings(&["a/1", "a/2", "b/1", "c", "d/1", "d/2"])).await;
    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .max_keys(2)
            .send()
            .await,
        "page 1",
    );
    let cps: Vec<&str> = out
        .common_prefixes()
        .iter()
        .filter_map(|c| c.prefix())
        .collect();
    assert_eq!(cps, vec!["a/", "b/"]);
    assert!(out.contents().is_empty());
    assert_eq!(out.key_count(), Some(2));
    assert_eq!(out.is_truncated(), Some(true));
    let token = out.next_continuation_token().expect("token").to_string();
    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .max_keys(2)
            .continuation_token(token)
            .send()
            .await,
        "page 2",
    );
    let keys: Vec<&str> = out.contents().iter().filter_map(|c| c.key()).collect();
    let cps: Vec<&str> = out
        .common_prefixes()
        .iter()
        .filter_map(|c| c.prefix())
        .collect();
    assert_eq!(keys, vec!["c"]);
    assert_eq!(
        cps,
        vec!["d/"],
        "a common prefix is returned once across pages"
    );
    assert_eq!(out.key_count(), Some(2));
    assert_eq!(out.is_truncated(), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v2_fetch_owner() {
    let b = unique_bucket("owner");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "k", b"v").await;
    let out = ok(
        s3.list_objects_v2().bucket(&b).send().await,
        "ListObjectsV2",
    );
    assert!(
        out.contents()[0].owner().is_none(),
        "no Owner without fetch-owner"
    );
    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .fetch_owner(true)
            .send()
            .await,
        "ListObjectsV2 fetch-owner",
    );
    // The owner every listing shows is the one the ACLs name (S3 has one canonical id).
    let acl = ok(
        s3.get_object_acl().bucket(&b).key("k").send().await,
        "GetObjectAcl",
    );
    let owner = acl.owner().and_then(|o| o.id()).expect("ACL owner");
    let listed = out.contents()[0].owner().and_then(|o| o.id());
    assert_eq!(listed, Some(owner), "ListObjectsV2 fetch-owner");
    let v1 = ok(s3.list_objects().bucket(&b).send().await, "ListObjects");
    assert_eq!(v1.contents()[0].owner().and_then(|o| o.id()), Some(owner));
    let versions = ok(
        s3.list_object_versions().bucket(&b).send().await,
        "ListObjectVersions",
    );
    assert_eq!(
        versions.versions()[0].owner().and_then(|o| o.id()),
        Some(owner)
    );
    let buckets = ok(s3.list_buckets().send().await, "ListBuckets");
    assert_eq!(buckets.owner().and_then(|o| o.id()), Some(owner));
    start_upload(&s3, &b, "up").await;
    let uploads = ok(
        s3.list_multipart_uploads().bucket(&b).send().await,
        "ListMultipartUploads",
    );
    let up = &uploads.uploads()[0];
    assert_eq!(up.owner().and_then(|o| o.id()), Some(owner));
    assert_eq!(up.initiator().and_then(|o| o.id()), Some(owner));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_encoding_type_url() {
    let b = unique_bucket("enc");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keys = strings(&["é/ü x.txt", "a+b&c", "plain", "ctl\u{1}char"]);
    put_many(&s3, &b, &keys).await;
    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjectsV2 encoding-type=url",
    );
    assert_eq!(out.encoding_type(), Some(&EncodingType::Url));
    let raw: Vec<String> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    for k in &raw {
        assert!(
            k.is_ascii() && !k.contains(' ') && !k.contains('\u{1}'),
            "{k:?} is URL-encoded"
        );
    }
    let decoded: Vec<String> = raw.iter().map(|k| url_decode(k)).collect();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(decoded, want);

    let out = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .delimiter("/")
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "with delimiter",
    );
    let cps: Vec<String> = out
        .common_prefixes()
        .iter()
        .map(|c| c.prefix().unwrap().to_string())
        .collect();
    assert_eq!(cps.len(), 1);
    assert!(cps[0].is_ascii());
    assert_eq!(url_decode(&cps[0]), "é/");

    let out = ok(
        s3.list_objects()
            .bucket(&b)
            .encoding_type(EncodingType::Url)
            .send()
            .await,
        "ListObjects v1 encoding-type=url",
    );
    let decoded: Vec<String> = out
        .contents()
        .iter()
        .map(|o| url_decode(o.key().unwrap()))
        .collect();
    assert_eq!(decoded, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_v1_marker_and_next_marker() {
    let b = unique_bucket("v1");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put_many(&s3, &b, &strings(&["a/1", "a/2", "b", "c/1", "d"])).await;

    let out = ok(s3.list_objects().bucket(&b).send().await, "ListObjects");
    let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["a/1", "a/2", "b", "c/1", "d"]);
    assert_eq!(out.is_truncated(), Some(false));
    assert_eq!(out.max_keys(), Some(1000));
    assert!(
        out.contents().iter().all(|o| o.owner().is_some()),
        "ListObjects v1 returns Owner"
    );

    // With a delimiter S3 returns NextMarker when truncated.
    let out = ok(
        s3.list_objects()
            .bucket(&b)
            .delimiter("/")
            .max_keys(2)
            .send()
            .await,
        "v1 page 1",
    );
    let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    let cps: Vec<&str> = out
        .common_prefixes()
        .iter()
        .filter_map(|c| c.prefix())
        .collect();
    assert_eq!((cps, keys), (vec!["a/"], vec!["b"]));
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.next_marker(), Some("b"));
    let out = ok(
        s3.list_objects()
            .bucket(&b)
            .delimiter("/")
            .max_keys(2)
            .marker("b")
            .send()
            .await,
        "v1 page 2",
    );
    assert_eq!(out.marker(), Some("b"));
    let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    let cps: Vec<&str> = out
        .common_prefixes()
        .iter()
        .filter_map(|c| c.prefix())
        .collect();
    assert_eq!((cps, keys), (vec!["c/"], vec!["d"]));
    assert_eq!(out.is_truncated(), Some(false));
    assert_eq!(out.next_marker(), None, "no NextMarker on the last page");

    // NextMarker is the last common prefix when the page ends on one.
    let out = ok(
        s3.list_objects()
            .bucket(&b)
            .delimiter("/")
            .max_keys(1)
            .send()
            .await,
        "v1 max-keys 1",
    );
    assert_eq!(out.is_truncated(), Some(true));
    assert_eq!(out.next_marker(), Some("a/"));

    // Without a delimiter: the next page starts after the last key.
    let out = ok(
        s3.list_objects().bucket(&b).max_keys(2).send().await,
        "v1 no delimiter",
    );
    let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["a/1", "a/2"]);
    assert_eq!(out.is_truncated(), Some(true));
    if let Some(m) = out.next_marker() {
        assert_eq!(m, "a/2", "NextMarker, when given, is the last key");
    }
    let out = ok(
        s3.list_objects().bucket(&b).marker("a/2").send().await,
        "v1 marker",
    );
    let keys: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, vec!["b", "c/1", "d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_more_than_1000_keys() {
    let b = unique_bucket("many");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let keys: Vec<String> = (0..1205).map(|i| format!("obj/{i:05}")).collect();
    put_many(&s3, &b, &keys).await;

    let p1 = ok(s3.list_objects_v2().bucket(&b).send().await, "v2 page 1");
    assert_eq!(p1.key_count(), Some(1000));
    assert_eq!(p1.contents().len(), 1000);
    assert_eq!(p1.is_truncated(), Some(true));
    let token = p1.next_continuation_token().expect("token").to_string();
    let p2 = ok(
        s3.list_objects_v2()
            .bucket(&b)
            .continuation_token(token)
            .send()
            .await,
        "v2 page 2",
    );
    assert_eq!(p2.key_count(), Some(205));
    assert_eq!(p2.is_truncated(), Some(false));
    let all: Vec<String> = p1
        .contents()
        .iter()
        .chain(p2.contents())
        .map(|o| o.key().unwrap().to_string())
        .collect();
    assert_eq!(all, keys);

    let big = ok(
        s3.list_objects_v2().bucket(&b).max_keys(5000).send().await,
        "max-keys 5000",
    );
    assert_eq!(big.contents().len(), 1000, "a page holds at most 1000 keys");
    assert_eq!(big.is_truncated(), Some(true));

    let v1 = ok(s3.list_objects().bucket(&b).send().await, "v1 page 1");
    assert_eq!(v1.contents().len(), 1000);
    assert_eq!(v1.is_truncated(), Some(true));
    let last = v1.contents().last().unwrap().key().unwrap().to_string();
    assert_eq!(last, keys[999]);
    let v1b = ok(
        s3.list_objects().bucket(&b).marker(&last).send().await,
        "v1 page 2",
    );
    assert_eq!(v1b.contents().len(), 205);
    assert_eq!(v1b.is_truncated(), Some(false));
    assert_eq!(v1b.contents()[0].key(), Some(keys[1000].as_str()));

    let all = list_all_keys(&s3, &b).await;
    assert_eq!(all.len(), 1205);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_answers_null_versions() {
    let b = unique_bucket("vers");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put_many(&s3, &b, &strings(&["x/a", "x/b", "y"])).await;
    let out = ok(
        s3.list_object_versions()
            .bucket(&b)
            .prefix("x/")
            .send()
            .await,
        "ListObjectVersions",
    );
    let v = out.versions();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].key(), Some("x/a"));
    assert_eq!(v[1].key(), Some("x/b"));
    for o in v {
        assert_eq!(o.version_id(), Some("null"));
        assert_eq!(o.is_latest(), Some(true));
        assert_eq!(o.size(), Some(3));
        assert_eq!(
            o.e_tag(),
            Some(etag_of(o.key().unwrap().as_bytes()).as_str())
        );
    }
    assert!(out.delete_markers().is_empty());
    assert_eq!(out.is_truncated(), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_read_after_write() {
    let b = unique_bucket("raw");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    for i in 0..15 {
        let k = format!("key-{i:02}");
        put(&s3, &b, &k, b"x").await;
        let keys = list_all_keys(&s3, &b).await;
        assert!(
            keys.contains(&k),
            "{k} listed right after its PUT: {keys:?}"
        );
        if i % 3 == 0 {
            ok(
                s3.delete_object().bucket(&b).key(&k).send().await,
                "DeleteObject",
            );
            let keys = list_all_keys(&s3, &b).await;
            assert!(!keys.contains(&k), "{k} not listed right after its DELETE");
        }
    }
    assert_eq!(list_all_keys(&s3, &b).await.len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_invalid_continuation_token() {
    let b = unique_bucket("badtok");
    let env = Env::with_buckets(&[&b]).await;
    // Not something the gateway can have produced.
    let r = env
        .send_signed(RawRequest::new(
            "GET",
            &format!("/{b}?list-type=2&continuation-token=%21%21%21invalid%21%21%21"),
        ))
        .await;
    r.assert_error(400, "InvalidArgument");
    let r = env
        .send_signed(RawRequest::new(
            "GET",
            &format!("/{b}?list-type=2&max-keys=-1"),
        ))
        .await;
    r.assert_error(400, "InvalidArgument");
}
