//! S3 Versioning with aws-sdk-s3: versions, delete markers, the null version, listing with
//! pagination, version ids on every operation that takes one, and native readers.

use std::time::Duration;

use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, Tag, Tagging, VersioningConfiguration,
};
use aws_sdk_s3::Client;

use crate::common::*;

async fn get_version(s3: &Client, b: &str, key: &str, v: &str) -> Vec<u8> {
    let out = ok(
        s3.get_object()
            .bucket(b)
            .key(key)
            .version_id(v)
            .send()
            .await,
        "GET versionId",
    );
    assert_eq!(out.version_id(), Some(v));
    out.body.collect().await.expect("body").to_vec()
}

/// Every (key, version id, is latest, is delete marker), in listing order, page by page.
async fn all_versions(s3: &Client, b: &str, page: i32) -> Vec<(String, String, bool, bool)> {
    let mut out = Vec::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    loop {
        let r = ok(
            s3.list_object_versions()
                .bucket(b)
                .max_keys(page)
                .set_key_marker(km.clone())
                .set_version_id_marker(vm.clone())
                .send()
                .await,
            "ListObjectVersions",
        );
        let mut items: Vec<(String, String, bool, bool, String)> = Vec::new();
        for v in r.versions() {
            items.push((
                v.key().unwrap_or_default().into(),
                v.version_id().unwrap_or_default().into(),
                v.is_latest() == Some(true),
                false,
                v.last_modified().map(|t| t.to_string()).unwrap_or_default(),
            ));
        }
        for m in r.delete_markers() {
            items.push((
                m.key().unwrap_or_default().into(),
                m.version_id().unwrap_or_default().into(),
                m.is_latest() == Some(true),
                true,
                m.last_modified().map(|t| t.to_string()).unwrap_or_default(),
            ));
        }
        // The SDK separates versions and markers; S3 order is key, then newest first.
        items.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.cmp(&a.2)).then(b.1.cmp(&a.1)));
        assert!(
            items.len() <= page as usize,
            "page of {page} holds {}",
            items.len()
        );
        out.extend(items.into_iter().map(|(k, v, l, m, _)| (k, v, l, m)));
        if r.is_truncated() == Some(true) {
            km = r.next_key_marker().map(str::to_string);
            vm = r.next_version_id_marker().map(str::to_string);
            assert!(km.is_some(), "truncated page without NextKeyMarker");
        } else {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_and_delete_markers_through_their_whole_life() {
    let b = unique_bucket("ver");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let st = ok(s3.get_bucket_versioning().bucket(&b).send().await, "Get");
    assert_eq!(st.status(), None, "never enabled");
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let st = ok(s3.get_bucket_versioning().bucket(&b).send().await, "Get");
    assert_eq!(st.status(), Some(&BucketVersioningStatus::Enabled));

    let v1 = put_version(&s3, &b, "k", b"one").await;
    let v2 = put_version(&s3, &b, "k", b"two").await;
    let v3 = put_version(&s3, &b, "k", b"three").await;
    assert!(
        v1 < v2 && v2 < v3,
        "version ids sort by age: {v1} {v2} {v3}"
    );
    let cur = ok(s3.get_object().bucket(&b).key("k").send().await, "GET");
    assert_eq!(cur.version_id(), Some(v3.as_str()));
    assert_eq!(cur.body.collect().await.expect("body").to_vec(), b"three");
    assert_eq!(get_version(&s3, &b, "k", &v1).await, b"one");
    let head = ok(
        s3.head_object()
            .bucket(&b)
            .key("k")
            .version_id(&v2)
            .send()
            .await,
        "HEAD versionId",
    );
    assert_eq!(head.content_length(), Some(3));

    // DELETE adds a delete marker; the key is gone, its versions stay.
    let del = ok(
        s3.delete_object().bucket(&b).key("k").send().await,
        "DELETE",
    );
    assert_eq!(del.delete_marker(), Some(true));
    let m1 = del.version_id().expect("marker version").to_string();
    assert!(m1 > v3);
    let raw = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/k")))
        .await;
    raw.assert_error(404, "NoSuchKey");
    assert_eq!(raw.header("x-amz-delete-marker"), Some("true"));
    assert_eq!(raw.header("x-amz-version-id"), Some(m1.as_str()));
    let raw = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/k?versionId={m1}")))
        .await;
    raw.assert_error(405, "MethodNotAllowed");
    assert_eq!(raw.header("x-amz-delete-marker"), Some("true"));
    assert!(
        list_all_keys(&s3, &b).await.is_empty(),
        "hidden from listings"
    );
    let all = all_versions(&s3, &b, 1000).await;
    let want = vec![
        ("k".to_string(), m1.clone(), true, true),
        ("k".to_string(), v3.clone(), false, false),
        ("k".to_string(), v2.clone(), false, false),
        ("k".to_string(), v1.clone(), false, false),
    ];
    assert_eq!(all, want);

    // Removing the marker brings the key back; deleting the current version by id
    // promotes the one before.
    let d = ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .version_id(&m1)
            .send()
            .await,
        "DELETE marker",
    );
    assert_eq!(d.delete_marker(), Some(true));
    assert_eq!(get_bytes(&s3, &b, "k").await, b"three");
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .version_id(&v3)
            .send()
            .await,
        "DELETE current version",
    );
    assert_eq!(get_bytes(&s3, &b, "k").await, b"two");
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .version_id(&v1)
            .send()
            .await,
        "DELETE old version",
    );
    let all = all_versions(&s3, &b, 1000).await;
    assert_eq!(all, vec![("k".to_string(), v2.clone(), true, false)]);

    // Native clients read the current version as a normal object.
    let js = env.js().await;
    let store = js.get_object_store(&b).await.expect("object store");
    let mut native = store.get("k").await.expect("native get");
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut native, &mut bytes)
        .await
        .expect("native read");
    assert_eq!(bytes, b"two");

    // Version ids that do not exist, and ones that cannot.
    let missing = format!("{}AAAAAA", "0".repeat(16));
    let r = s3
        .get_object()
        .bucket(&b)
        .key("k")
        .version_id(&missing)
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchVersion".into()));
    let r = s3
        .get_object()
        .bucket(&b)
        .key("k")
        .version_id("../x")
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "InvalidArgument".into()));
    let r = s3
        .delete_object()
        .bucket(&b)
        .key("k")
        .version_id("*")
        .send()
        .await;
    assert_eq!(sdk_err(r), (400, "InvalidArgument".into()));
    // Deleting a version that does not exist changes nothing.
    let d = ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .version_id(&missing)
            .send()
            .await,
        "DELETE missing version",
    );
    assert_eq!(d.version_id(), Some(missing.as_str()));
    assert_eq!(get_bytes(&s3, &b, "k").await, b"two");

    // The collector removes what was deleted; the stream holds what is left.
    env.wait_holds_only_live(&b, 20).await;
    // A bucket with versions is not empty until every version is deleted.
    let r = s3.delete_bucket().bucket(&b).send().await;
    assert_eq!(sdk_err(r), (409, "BucketNotEmpty".into()));
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("k")
            .version_id(&v2)
            .send()
            .await,
        "DELETE last version",
    );
    let d = ok(
        s3.delete_object().bucket(&b).key("gone").send().await,
        "marker",
    );
    let r = s3.delete_bucket().bucket(&b).send().await;
    assert_eq!(
        sdk_err(r),
        (409, "BucketNotEmpty".into()),
        "a marker counts"
    );
    ok(
        s3.delete_object()
            .bucket(&b)
            .key("gone")
            .version_id(d.version_id().unwrap_or_default())
            .send()
            .await,
        "DELETE marker",
    );
    ok(s3.delete_bucket().bucket(&b).send().await, "DeleteBucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_null_version_before_during_and_after_suspension() {
    let b = unique_bucket("null");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let e0 = put(&s3, &b, "k", b"before").await;
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let v1 = put_version(&s3, &b, "k", b"enabled").await;
    assert_eq!(get_version(&s3, &b, "k", "null").await, b"before");
    let all = all_versions(&s3, &b, 1000).await;
    assert_eq!(
        all,
        vec![
            ("k".to_string(), v1.clone(), true, false),
            ("k".to_string(), "null".to_string(), false, false),
        ]
    );
    set_versioning(&s3, &b, BucketVersioningStatus::Suspended).await;
    let st = ok(s3.get_bucket_versioning().bucket(&b).send().await, "Get");
    assert_eq!(st.status(), Some(&BucketVersioningStatus::Suspended));
    // A PUT while suspended makes the null version, replacing the old one.
    let n = put_version(&s3, &b, "k", b"suspended").await;
    assert_eq!(n, "null");
    assert_eq!(get_version(&s3, &b, "k", "null").await, b"suspended");
    assert_eq!(get_version(&s3, &b, "k", &v1).await, b"enabled");
    let all = all_versions(&s3, &b, 1000).await;
    assert_eq!(
        all,
        vec![
            ("k".to_string(), "null".to_string(), true, false),
            ("k".to_string(), v1.clone(), false, false),
        ]
    );
    // A DELETE while suspended is a null delete marker; v1 stays.
    let d = ok(
        s3.delete_object().bucket(&b).key("k").send().await,
        "DELETE",
    );
    assert_eq!(d.delete_marker(), Some(true));
    assert_eq!(d.version_id(), Some("null"));
    let all = all_versions(&s3, &b, 1000).await;
    assert_eq!(
        all,
        vec![
            ("k".to_string(), "null".to_string(), true, true),
            ("k".to_string(), v1.clone(), false, false),
        ]
    );
    assert_ne!(e0, etag_of(b"suspended"));
    // Enabled again: the null marker becomes noncurrent.
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let v2 = put_version(&s3, &b, "k", b"again").await;
    let all = all_versions(&s3, &b, 1000).await;
    assert_eq!(
        all,
        vec![
            ("k".to_string(), v2, true, false),
            ("k".to_string(), "null".to_string(), false, true),
            ("k".to_string(), v1, false, false),
        ]
    );
    env.wait_holds_only_live(&b, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_object_versions_pages_through_more_than_1000_versions() {
    let b = unique_bucket("verpage");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let mut want: Vec<(String, String, bool, bool)> = Vec::new();
    let keys = ["a", "b/c", "d"];
    for key in keys {
        let mut versions = Vec::new();
        for i in 0..350 {
            versions.push((
                put_version(&s3, &b, key, format!("{key}{i}").as_bytes()).await,
                false,
            ));
        }
        let d = ok(
            s3.delete_object().bucket(&b).key(key).send().await,
            "marker",
        );
        versions.push((d.version_id().unwrap_or_default().to_string(), true));
        let n = versions.len();
        for (i, (v, marker)) in versions.into_iter().enumerate().rev() {
            want.push((key.to_string(), v, i == n - 1, marker));
        }
    }
    assert_eq!(want.len(), 1053);
    assert_eq!(all_versions(&s3, &b, 1000).await, want, "pages of 1000");
    assert_eq!(all_versions(&s3, &b, 97).await, want, "pages of 97");
    // Delimiter and prefix work on versions too.
    let r = ok(
        s3.list_object_versions()
            .bucket(&b)
            .delimiter("/")
            .max_keys(5)
            .send()
            .await,
        "delimiter",
    );
    assert_eq!(r.versions().len() + r.delete_markers().len(), 5);
    let r = ok(
        s3.list_object_versions()
            .bucket(&b)
            .prefix("b/")
            .max_keys(1000)
            .send()
            .await,
        "prefix",
    );
    assert_eq!(r.versions().len() + r.delete_markers().len(), 351);
    let r = ok(
        s3.list_object_versions()
            .bucket(&b)
            .delimiter("/")
            .send()
            .await,
        "rolled up",
    );
    let prefixes: Vec<&str> = r
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["b/"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_tagging_and_batch_delete_take_version_ids() {
    let b = unique_bucket("verops");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let (s3, other) = (env.client(), peer.client());
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let v1 = put_version(&s3, &b, "src", b"first").await;
    // Written through another gateway: one history.
    let v2 = put_version(&other, &b, "src", b"second").await;
    assert!(v1 < v2);
    let c = ok(
        s3.copy_object()
            .bucket(&b)
            .key("dst")
            .copy_source(format!("{b}/src?versionId={v1}"))
            .send()
            .await,
        "CopyObject from a version",
    );
    assert_eq!(c.copy_source_version_id(), Some(v1.as_str()));
    assert!(c.version_id().is_some());
    assert_eq!(get_bytes(&s3, &b, "dst").await, b"first");
    // Tags of a noncurrent version, without touching the current one; each tagging call
    // and GetObjectAttributes name the version they acted on.
    let tagged = ok(
        s3.put_object_tagging()
            .bucket(&b)
            .key("src")
            .version_id(&v1)
            .tagging(
                Tagging::builder()
                    .tag_set(Tag::builder().key("t").value("old").build().expect("tag"))
                    .build()
                    .expect("tagging"),
            )
            .send()
            .await,
        "PutObjectTagging versionId",
    );
    assert_eq!(tagged.version_id(), Some(v1.as_str()));
    let t = ok(
        s3.get_object_tagging()
            .bucket(&b)
            .key("src")
            .version_id(&v1)
            .send()
            .await,
        "GetObjectTagging versionId",
    );
    assert_eq!(t.tag_set().len(), 1);
    assert_eq!(t.version_id(), Some(v1.as_str()));
    let t = ok(
        s3.get_object_tagging().bucket(&b).key("src").send().await,
        "current",
    );
    assert!(t.tag_set().is_empty());
    assert_eq!(t.version_id(), Some(v2.as_str()));
    let untagged = ok(
        s3.delete_object_tagging()
            .bucket(&b)
            .key("src")
            .send()
            .await,
        "DeleteObjectTagging",
    );
    assert_eq!(untagged.version_id(), Some(v2.as_str()));
    let attrs = ok(
        s3.get_object_attributes()
            .bucket(&b)
            .key("src")
            .version_id(&v1)
            .object_attributes(aws_sdk_s3::types::ObjectAttributes::ObjectSize)
            .send()
            .await,
        "GetObjectAttributes versionId",
    );
    assert_eq!(attrs.version_id(), Some(v1.as_str()));
    assert_eq!(get_version(&other, &b, "src", &v1).await, b"first");
    // DeleteObjects with and without version ids.
    let del = ok(
        s3.delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .objects(
                        ObjectIdentifier::builder()
                            .key("src")
                            .version_id(&v1)
                            .build()
                            .expect("id"),
                    )
                    .objects(ObjectIdentifier::builder().key("dst").build().expect("id"))
                    .build()
                    .expect("delete"),
            )
            .send()
            .await,
        "DeleteObjects",
    );
    let deleted = del.deleted();
    assert_eq!(deleted.len(), 2);
    let dst = deleted
        .iter()
        .find(|d| d.key() == Some("dst"))
        .expect("dst");
    assert_eq!(dst.delete_marker(), Some(true));
    let marker = dst.delete_marker_version_id().expect("the marker's id");
    // Deleting the marker by its id names it too.
    let del = ok(
        s3.delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .objects(
                        ObjectIdentifier::builder()
                            .key("dst")
                            .version_id(marker)
                            .build()
                            .expect("id"),
                    )
                    .build()
                    .expect("delete"),
            )
            .send()
            .await,
        "DeleteObjects of the marker",
    );
    let gone = &del.deleted()[0];
    assert_eq!(gone.delete_marker(), Some(true));
    assert_eq!(gone.version_id(), Some(marker));
    assert_eq!(gone.delete_marker_version_id(), Some(marker));
    assert_eq!(
        get_bytes(&s3, &b, "dst").await,
        b"first",
        "the marker is gone"
    );
    let r = s3
        .get_object()
        .bucket(&b)
        .key("src")
        .version_id(&v1)
        .send()
        .await;
    assert_eq!(sdk_err(r), (404, "NoSuchVersion".into()));
    assert_eq!(get_bytes(&s3, &b, "src").await, b"second");
    env.wait_holds_only_live(&b, 20).await;
    peer.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versioning_set_by_config_and_read_only_buckets_refuse_changes() {
    let managed = unique_bucket("managed");
    let ro = unique_bucket("ro");
    let mut cfg = config_with(&[&managed, &ro]);
    cfg.buckets[0].versioning = Some(jets3_crds::VersioningStatus::Enabled);
    cfg.buckets[1].read_only = true;
    let env = Env::start(cfg).await;
    let s3 = env.client();
    let st = ok(
        s3.get_bucket_versioning().bucket(&managed).send().await,
        "Get",
    );
    assert_eq!(st.status(), Some(&BucketVersioningStatus::Enabled));
    for (b, status) in [
        (&managed, BucketVersioningStatus::Suspended),
        (&ro, BucketVersioningStatus::Enabled),
    ] {
        let r = s3
            .put_bucket_versioning()
            .bucket(b)
            .versioning_configuration(VersioningConfiguration::builder().status(status).build())
            .send()
            .await;
        assert_eq!(sdk_err(r), (403, "AccessDenied".into()), "{b}");
    }
    let v1 = put_version(&s3, &managed, "k", b"1").await;
    let v2 = put_version(&s3, &managed, "k", b"2").await;
    assert_ne!(v1, v2);
    assert_eq!(get_version(&s3, &managed, "k", &v1).await, b"1");
    let st = ok(
        s3.get_bucket_versioning().bucket(&ro).send().await,
        "Get ro",
    );
    assert_eq!(st.status(), None);
    // Bad documents change nothing.
    let b = unique_bucket("bad");
    ok(s3.create_bucket().bucket(&b).send().await, "create");
    for body in [
        "<VersioningConfiguration><Status>On</Status></VersioningConfiguration>",
        "<VersioningConfiguration><Status>Enabled</Status>",
        "<VersioningConfiguration><MfaDelete>Maybe</MfaDelete></VersioningConfiguration>",
    ] {
        let r = env
            .send_signed(RawRequest::new("PUT", &format!("/{b}?versioning")).body(body))
            .await;
        r.assert_error(400, "MalformedXML");
    }
    let st = ok(
        s3.get_bucket_versioning().bucket(&b).send().await,
        "Get bad",
    );
    assert_eq!(st.status(), None);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// Every version of a key deleted by id at once, half through each of two gateways: a
/// delete of the current version makes the next one current while a delete of that one
/// runs. Every delete answers 204, and no version is left, current or not (a deleted
/// version made current again after its own delete read back whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_deleted_by_id_at_once_all_go() {
    let b = unique_bucket("vdelrace");
    let env = Env::with_buckets(&[&b]).await;
    let peer = env.peer().await;
    let (a, other) = (env.client(), peer.client());
    set_versioning(&a, &b, BucketVersioningStatus::Enabled).await;
    let mut left_behind = Vec::new();
    for round in 0..120 {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(put_version(&a, &b, "k", format!("{round}.{i}").as_bytes()).await);
        }
        let deletes = ids.iter().enumerate().map(|(i, id)| {
            let s3 = if i % 2 == 0 { a.clone() } else { other.clone() };
            let (b, id) = (b.clone(), id.clone());
            async move {
                s3.delete_object()
                    .bucket(b)
                    .key("k")
                    .version_id(id)
                    .send()
                    .await
            }
        });
        for r in futures::future::join_all(deletes).await {
            ok(r, "DELETE versionId");
        }
        let left = all_versions(&a, &b, 1000).await;
        if !left.is_empty() {
            left_behind.push((round, left.clone()));
            for (_, id, _, _) in left {
                ok(
                    a.delete_object()
                        .bucket(&b)
                        .key("k")
                        .version_id(id)
                        .send()
                        .await,
                    "DELETE what was left",
                );
            }
        }
    }
    assert!(left_behind.is_empty(), "versions left: {left_behind:?}");
    peer.gw.shutdown().await;
}

/// S3's way to bring a previous version back: CopyObject of `key?versionId=<old>` onto
/// `key`, also when a delete marker is current. A copy onto itself without a version id and
/// without changes stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_version_is_restored_by_copying_it_onto_its_key() {
    let b = unique_bucket("vrestore");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
    let one = put_version(&s3, &b, "k", b"one").await;
    let two = put_version(&s3, &b, "k", b"two").await;
    let copy = |version: &str| {
        s3.copy_object()
            .bucket(&b)
            .key("k")
            .copy_source(format!("{b}/k?versionId={version}"))
    };
    let restored = ok(copy(&one).send().await, "restore by copy");
    let new_id = restored.version_id().expect("new version id").to_string();
    assert!(new_id != one && new_id != two, "a new version: {new_id}");
    let cur = ok(s3.get_object().bucket(&b).key("k").send().await, "GET");
    assert_eq!(cur.version_id(), Some(new_id.as_str()));
    assert_eq!(cur.body.collect().await.expect("body").to_vec(), b"one");

    ok(
        s3.delete_object().bucket(&b).key("k").send().await,
        "DELETE (marker)",
    );
    ok(copy(&two).send().await, "restore over a delete marker");
    assert_eq!(get_bytes(&s3, &b, "k").await, b"two");
    assert_eq!(
        get_version(&s3, &b, "k", &one).await,
        b"one",
        "history kept"
    );

    let itself = s3
        .copy_object()
        .bucket(&b)
        .key("k")
        .copy_source(format!("{b}/k"))
        .send()
        .await;
    let (status, code) = sdk_err(itself);
    assert_eq!((status, code.as_str()), (400, "InvalidRequest"));
}

/// While versioning is suspended, a PUT makes a new null version and drops the noncurrent
/// one: reads of `versionId=null` at that moment find one or the other, never
/// NoSuchVersion, and tagging changes of the noncurrent null version at once leave no
/// second null version behind (listed, or shown once the new one is deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_null_version_is_always_there_while_a_suspended_put_replaces_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let b = unique_bucket("vnullrace");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let mut missing = Vec::new();
    let mut doubled = Vec::new();
    for round in 0..30 {
        set_versioning(&s3, &b, BucketVersioningStatus::Suspended).await;
        put(&s3, &b, "k", b"old null").await;
        set_versioning(&s3, &b, BucketVersioningStatus::Enabled).await;
        put_version(&s3, &b, "k", b"versioned").await;
        set_versioning(&s3, &b, BucketVersioningStatus::Suspended).await;
        let done = Arc::new(AtomicBool::new(false));
        let readers = (0..3).map(|_| {
            let (s3, b, done) = (s3.clone(), b.clone(), done.clone());
            async move {
                let mut answers = Vec::new();
                while !done.load(Ordering::Acquire) {
                    let r = s3
                        .get_object()
                        .bucket(&b)
                        .key("k")
                        .version_id("null")
                        .send()
                        .await;
                    answers.push(match r {
                        Ok(out) => out.body.collect().await.expect("body").to_vec(),
                        Err(e) => format!("{:?}", sdk_err::<(), _>(Err(e))).into_bytes(),
                    });
                }
                answers
            }
        });
        let taggers = (0..3).map(|_| {
            let (s3, b, done) = (s3.clone(), b.clone(), done.clone());
            let tagging = Tagging::builder()
                .tag_set(Tag::builder().key("t").value("v").build().expect("tag"))
                .build()
                .expect("tagging");
            async move {
                while !done.load(Ordering::Acquire) {
                    ok(
                        s3.put_object_tagging()
                            .bucket(&b)
                            .key("k")
                            .version_id("null")
                            .tagging(tagging.clone())
                            .send()
                            .await,
                        "PutObjectTagging versionId=null",
                    );
                }
            }
        });
        let writer = {
            let (s3, b, done) = (s3.clone(), b.clone(), done.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                put(&s3, &b, "k", b"new null").await;
                done.store(true, Ordering::Release);
            }
        };
        let (answers, _, ()) = futures::future::join3(
            futures::future::join_all(readers),
            futures::future::join_all(taggers),
            writer,
        )
        .await;
        for a in answers.into_iter().flatten() {
            if a != b"old null" && a != b"new null" {
                missing.push((round, String::from_utf8_lossy(&a).into_owned()));
            }
        }
        let nulls = all_versions(&s3, &b, 1000)
            .await
            .into_iter()
            .filter(|(_, id, _, _)| id == "null")
            .count();
        if nulls != 1 {
            doubled.push((round, nulls));
        }
        assert_eq!(get_version(&s3, &b, "k", "null").await, b"new null");
        ok(
            s3.delete_object()
                .bucket(&b)
                .key("k")
                .version_id("null")
                .send()
                .await,
            "DELETE versionId=null",
        );
        let after = s3
            .get_object()
            .bucket(&b)
            .key("k")
            .version_id("null")
            .send()
            .await;
        if after.is_ok() {
            doubled.push((round, 2));
        }
    }
    assert!(missing.is_empty(), "reads of versionId=null: {missing:?}");
    assert!(
        doubled.is_empty(),
        "null versions left (listed, or shown after a delete): {doubled:?}"
    );
}
