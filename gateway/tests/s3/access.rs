//! Access control: per-credential bucket isolation, read / write permissions, grant patterns,
//! key validity windows, public-read and read-only buckets, virtual-hosted style.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use jets3_crds::{Access, GatewayConfig, Permission};

use crate::common::*;

const A_AK: &str = "AKIATEAMA00000001";
const A_SK: &str = "team-a-secret-0001";
const B_AK: &str = "AKIATEAMB00000001";
const B_SK: &str = "team-b-secret-0001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_credential_bucket_isolation() {
    let (ba, bb) = (unique_bucket("team-a"), unique_bucket("team-b"));
    let mut cfg = config_with(&[&ba, &bb]);
    cfg.credentials
        .push(credential(A_AK, A_SK, &[(&ba, Permission::ReadWrite)]));
    cfg.credentials
        .push(credential(B_AK, B_SK, &[(&bb, Permission::ReadWrite)]));
    let env = Env::start(cfg).await;
    let a = env.client_for(A_AK, A_SK);
    let bcl = env.client_for(B_AK, B_SK);
    put(&a, &ba, "a-secret", b"only for a").await;
    put(&bcl, &bb, "b-secret", b"only for b").await;

    for (client, own, other, other_key) in
        [(&a, &ba, &bb, "b-secret"), (&bcl, &bb, &ba, "a-secret")]
    {
        assert_eq!(list_all_keys(client, own).await.len(), 1);
        let denied = (403, "AccessDenied".to_string());
        assert_eq!(
            sdk_err(
                client
                    .get_object()
                    .bucket(other)
                    .key(other_key)
                    .send()
                    .await
            ),
            denied,
            "GET in a foreign bucket"
        );
        assert_eq!(
            sdk_err(client.list_objects_v2().bucket(other).send().await),
            denied,
            "LIST in a foreign bucket"
        );
        assert_eq!(
            sdk_err(
                client
                    .put_object()
                    .bucket(other)
                    .key("intruder")
                    .body(b"x".to_vec().into())
                    .send()
                    .await
            ),
            denied,
            "PUT in a foreign bucket"
        );
        assert_eq!(
            sdk_err(
                client
                    .delete_object()
                    .bucket(other)
                    .key(other_key)
                    .send()
                    .await
            ),
            denied,
            "DELETE in a foreign bucket"
        );
        let (status, _) = sdk_err(
            client
                .head_object()
                .bucket(other)
                .key(other_key)
                .send()
                .await,
        );
        assert_eq!(status, 403, "HEAD in a foreign bucket");
        let (status, _) = sdk_err(client.head_bucket().bucket(other).send().await);
        assert_eq!(status, 403, "HeadBucket of a foreign bucket");
        // A key cannot copy a foreign object into its own bucket.
        assert_eq!(
            sdk_err(
                client
                    .copy_object()
                    .bucket(own)
                    .key("stolen")
                    .copy_source(format!("{other}/{other_key}"))
                    .send()
                    .await
            ),
            denied,
            "copy from a foreign bucket"
        );
        let names: Vec<String> = ok(client.list_buckets().send().await, "ListBuckets")
            .buckets()
            .iter()
            .filter_map(|b| b.name().map(str::to_string))
            .collect();
        assert_eq!(
            names,
            vec![own.to_string()],
            "ListBuckets shows only granted buckets"
        );
    }
    // Nothing changed in either bucket.
    assert_eq!(
        get_bytes(&env.client(), &ba, "a-secret").await,
        b"only for a"
    );
    assert_eq!(
        get_bytes(&env.client(), &bb, "b-secret").await,
        b"only for b"
    );
    assert_eq!(
        list_all_keys(&env.client(), &ba).await,
        vec!["a-secret".to_string()]
    );
    assert_eq!(
        list_all_keys(&env.client(), &bb).await,
        vec!["b-secret".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_write_permissions() {
    let b = unique_bucket("perm");
    let mut cfg = config_with(&[&b]);
    cfg.credentials.push(credential(
        "AKIAREADER0000001",
        "reader-secret-1",
        &[(&b, Permission::Read)],
    ));
    cfg.credentials.push(credential(
        "AKIAWRITER0000001",
        "writer-secret-1",
        &[(&b, Permission::Write)],
    ));
    let env = Env::start(cfg).await;
    put(&env.client(), &b, "k", b"data").await;
    let reader = env.client_for("AKIAREADER0000001", "reader-secret-1");
    let writer = env.client_for("AKIAWRITER0000001", "writer-secret-1");
    let denied = (403, "AccessDenied".to_string());

    assert_eq!(get_bytes(&reader, &b, "k").await, b"data");
    ok(
        reader.head_object().bucket(&b).key("k").send().await,
        "reader HEAD",
    );
    assert_eq!(list_all_keys(&reader, &b).await, vec!["k".to_string()]);
    assert_eq!(
        sdk_err(
            reader
                .put_object()
                .bucket(&b)
                .key("r")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        sdk_err(reader.delete_object().bucket(&b).key("k").send().await),
        denied
    );
    assert_eq!(
        sdk_err(
            reader
                .create_multipart_upload()
                .bucket(&b)
                .key("m")
                .send()
                .await
        ),
        denied
    );

    put(&writer, &b, "w", b"written").await;
    assert_eq!(
        sdk_err(writer.get_object().bucket(&b).key("w").send().await),
        denied,
        "write permission does not read"
    );
    assert_eq!(
        sdk_err(writer.list_objects_v2().bucket(&b).send().await),
        denied
    );
    ok(
        writer.delete_object().bucket(&b).key("w").send().await,
        "writer DELETE",
    );
    assert_eq!(
        list_all_keys(&env.client(), &b).await,
        vec!["k".to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_prefix_pattern() {
    let team = unique_bucket("team-x");
    let other = unique_bucket("other");
    let mut cfg = config_with(&[&team, &other]);
    cfg.credentials.push(credential(
        "AKIAPATTERN000001",
        "pattern-secret-1",
        &[("team-*", Permission::ReadWrite)],
    ));
    let env = Env::start(cfg).await;
    let c = env.client_for("AKIAPATTERN000001", "pattern-secret-1");
    put(&c, &team, "k", b"ok").await;
    assert_eq!(get_bytes(&c, &team, "k").await, b"ok");
    assert_eq!(
        sdk_err(c.list_objects_v2().bucket(&other).send().await),
        (403, "AccessDenied".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_validity_window() {
    let b = unique_bucket("window");
    let mut cfg = config_with(&[&b]);
    let fmt = |t: SystemTime| {
        time::OffsetDateTime::from(t)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut expired = credential(
        "AKIAEXPIRED000001",
        "expired-secret-1",
        &[(&b, Permission::Read)],
    );
    expired.not_after = Some(fmt(SystemTime::now() - Duration::from_secs(3600)));
    let mut future = credential(
        "AKIAFUTURE0000001",
        "future-secret-1",
        &[(&b, Permission::Read)],
    );
    future.not_before = Some(fmt(SystemTime::now() + Duration::from_secs(3600)));
    let mut current = credential(
        "AKIACURRENT000001",
        "current-secret-1",
        &[(&b, Permission::Read)],
    );
    current.not_before = Some(fmt(SystemTime::now() - Duration::from_secs(3600)));
    current.not_after = Some(fmt(SystemTime::now() + Duration::from_secs(3600)));
    cfg.credentials.extend([expired, future, current]);
    let env = Env::start(cfg).await;
    for (ak, sk) in [
        ("AKIAEXPIRED000001", "expired-secret-1"),
        ("AKIAFUTURE0000001", "future-secret-1"),
    ] {
        let (status, code) = sdk_err(
            env.client_for(ak, sk)
                .list_objects_v2()
                .bucket(&b)
                .send()
                .await,
        );
        assert_eq!(status, 403, "{ak} outside its window: {code}");
        assert!(
            ["InvalidAccessKeyId", "AccessDenied", "ExpiredToken"].contains(&code.as_str()),
            "{ak}: {code}"
        );
    }
    ok(
        env.client_for("AKIACURRENT000001", "current-secret-1")
            .list_objects_v2()
            .bucket(&b)
            .send()
            .await,
        "key inside its window",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_read_bucket() {
    let b = unique_bucket("public");
    let private = unique_bucket("private");
    let mut cfg = config_with(&[&b, &private]);
    cfg.buckets[0].access = Access::PublicRead;
    let env = Env::start(cfg).await;
    put(&env.client(), &b, "pub/readme.txt", b"hello world").await;
    put(&env.client(), &private, "k", b"hidden").await;
    let anon = env.anon_client();

    assert_eq!(get_bytes(&anon, &b, "pub/readme.txt").await, b"hello world");
    let head = ok(
        anon.head_object()
            .bucket(&b)
            .key("pub/readme.txt")
            .send()
            .await,
        "anonymous HEAD",
    );
    assert_eq!(head.content_length(), Some(11));
    assert_eq!(
        list_all_keys(&anon, &b).await,
        vec!["pub/readme.txt".to_string()]
    );
    let v1 = ok(
        anon.list_objects().bucket(&b).send().await,
        "anonymous ListObjects",
    );
    assert_eq!(v1.contents().len(), 1);
    let r = env
        .send(RawRequest::new("GET", &format!("/{b}/pub/readme.txt")))
        .await;
    r.assert_status(200);
    assert_eq!(r.body, b"hello world");

    let denied = (403, "AccessDenied".to_string());
    assert_eq!(
        sdk_err(
            anon.put_object()
                .bucket(&b)
                .key("graffiti")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        denied,
        "anonymous PUT"
    );
    assert_eq!(
        sdk_err(
            anon.delete_object()
                .bucket(&b)
                .key("pub/readme.txt")
                .send()
                .await
        ),
        denied,
        "anonymous DELETE"
    );
    assert_eq!(
        sdk_err(
            anon.create_multipart_upload()
                .bucket(&b)
                .key("m")
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        sdk_err(
            anon.delete_objects()
                .bucket(&b)
                .delete(
                    Delete::builder()
                        .objects(
                            ObjectIdentifier::builder()
                                .key("pub/readme.txt")
                                .build()
                                .unwrap()
                        )
                        .build()
                        .unwrap()
                )
                .send()
                .await
        ),
        denied
    );
    assert_eq!(
        sdk_err(anon.get_object().bucket(&private).key("k").send().await),
        denied,
        "anonymous GET on a private bucket"
    );
    env.send(RawRequest::new("PUT", &format!("/{b}/raw")).body("x"))
        .await
        .assert_error(403, "AccessDenied");
    // Credentials still write.
    put(&env.client(), &b, "pub/new", b"by admin").await;
    assert_eq!(get_bytes(&anon, &b, "pub/new").await, b"by admin");
    assert_eq!(get_bytes(&anon, &b, "pub/readme.txt").await, b"hello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_bucket_refuses_every_write() {
    let b = unique_bucket("ro");
    let mut cfg = config_with(&[&b]);
    cfg.buckets[0].read_only = true;
    let env = Env::start(cfg).await;
    // Content arrives through NATS directly.
    let js = env.js().await;
    let store = js
        .get_object_store(b.replace('.', "_"))
        .await
        .expect("store");
    let mut content: &[u8] = b"archived";
    store.put("doc", &mut content).await.expect("native put");

    let s3 = env.client();
    assert_eq!(get_bytes(&s3, &b, "doc").await, b"archived");
    assert_eq!(list_all_keys(&s3, &b).await, vec!["doc".to_string()]);
    let denied = (403, "AccessDenied".to_string());
    assert_eq!(
        sdk_err(
            s3.put_object()
                .bucket(&b)
                .key("new")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        denied,
        "PUT"
    );
    assert_eq!(
        sdk_err(
            s3.put_object()
                .bucket(&b)
                .key("doc")
                .body(b"overwrite".to_vec().into())
                .send()
                .await
        ),
        denied,
        "overwrite"
    );
    assert_eq!(
        sdk_err(s3.delete_object().bucket(&b).key("doc").send().await),
        denied,
        "DELETE"
    );
    assert_eq!(
        sdk_err(
            s3.create_multipart_upload()
                .bucket(&b)
                .key("m")
                .send()
                .await
        ),
        denied,
        "CreateMultipartUpload"
    );
    assert_eq!(
        sdk_err(
            s3.copy_object()
                .bucket(&b)
                .key("copy")
                .copy_source(format!("{b}/doc"))
                .send()
                .await
        ),
        denied,
        "CopyObject into"
    );
    let del = s3
        .delete_objects()
        .bucket(&b)
        .delete(
            Delete::builder()
                .objects(ObjectIdentifier::builder().key("doc").build().unwrap())
                .build()
                .unwrap(),
        )
        .send()
        .await;
    match del {
        Ok(out) => assert!(
            out.deleted().is_empty() && out.errors().len() == 1,
            "DeleteObjects on a read-only bucket reports an error per key: {out:?}"
        ),
        Err(e) => assert_eq!(sdk_err::<(), _>(Err(e)), denied),
    }
    assert_eq!(
        get_bytes(&s3, &b, "doc").await,
        b"archived",
        "content unchanged"
    );
    assert_eq!(list_all_keys(&s3, &b).await, vec!["doc".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_hosted_style() {
    let b = unique_bucket("vhost");
    let cfg = GatewayConfig {
        virtual_host_domains: vec!["s3.localhost".into()],
        ..config_with(&[&b])
    };
    let env = Env::start(cfg).await;
    let vh = env.vhost_client("s3.localhost");
    let etag = put(&vh, &b, "dir/v.txt", b"virtual host").await;
    assert_eq!(etag, etag_of(b"virtual host"));
    assert_eq!(get_bytes(&vh, &b, "dir/v.txt").await, b"virtual host");
    assert_eq!(list_all_keys(&vh, &b).await, vec!["dir/v.txt".to_string()]);
    let names: Vec<String> = ok(
        vh.list_buckets().send().await,
        "ListBuckets on the base domain",
    )
    .buckets()
    .iter()
    .filter_map(|x| x.name().map(str::to_string))
    .collect();
    assert!(names.contains(&b));
    // Path style keeps working on the same gateway.
    assert_eq!(
        get_bytes(&env.client(), &b, "dir/v.txt").await,
        b"virtual host"
    );

    // Raw: Host <bucket>.s3.localhost, path is the key.
    let host = format!("{b}.s3.localhost:{}", env.addr.port());
    let mut req = RawRequest::new("GET", "/dir/v.txt").header("host", &host);
    sign_request(&mut req, &host, &Signer::admin(), Payload::Signed);
    let r = env.send(req).await;
    r.assert_status(200);
    assert_eq!(r.body, b"virtual host");
    // Bucket-level request on the virtual host: ListObjectsV2.
    let mut req = RawRequest::new("GET", "/?list-type=2").header("host", &host);
    sign_request(&mut req, &host, &Signer::admin(), Payload::Signed);
    let r = env.send(req).await;
    r.assert_status(200);
    assert_eq!(xml_tag(&r.text(), "Name").as_deref(), Some(b.as_str()));
    assert_eq!(xml_tag(&r.text(), "Key").as_deref(), Some("dir/v.txt"));
    // Unknown bucket through the virtual host.
    let missing = unique_bucket("nobucket");
    let host = format!("{missing}.s3.localhost:{}", env.addr.port());
    let mut req = RawRequest::new("GET", "/k").header("host", &host);
    sign_request(&mut req, &host, &Signer::admin(), Payload::Signed);
    env.send(req).await.assert_error(404, "NoSuchBucket");
}
