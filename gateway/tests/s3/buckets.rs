//! Service and bucket operations: ListBuckets, Create/Head/DeleteBucket, location,
//! versioning, bucket tagging, ACLs, CORS and preflight, NotImplemented.

use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::{
    BucketCannedAcl, BucketLocationConstraint, CorsConfiguration, CorsRule,
    CreateBucketConfiguration, Permission as AclPermission, Tag, Tagging,
};
use jets3_crds::policy::canonical_user_id;
use jets3_crds::{CorsRule as CfgCorsRule, GatewayConfig, Permission};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_head_list_delete_bucket() {
    let declared = unique_bucket("declared");
    let env = Env::with_buckets(&[&declared]).await;
    let s3 = env.client();
    let name = unique_bucket("created");
    let t0 = SystemTime::now() - Duration::from_secs(2);
    let out = ok(
        s3.create_bucket().bucket(&name).send().await,
        "CreateBucket",
    );
    assert_eq!(
        out.location(),
        Some(format!("/{name}").as_str()),
        "Location"
    );
    ok(s3.head_bucket().bucket(&name).send().await, "HeadBucket");

    let list = ok(s3.list_buckets().send().await, "ListBuckets");
    let names: Vec<&str> = list.buckets().iter().filter_map(|b| b.name()).collect();
    assert!(names.contains(&name.as_str()), "{name} in {names:?}");
    assert!(
        names.contains(&declared.as_str()),
        "{declared} in {names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ListBuckets is sorted by name");
    let created = list
        .buckets()
        .iter()
        .find(|b| b.name() == Some(name.as_str()))
        .unwrap()
        .creation_date()
        .expect("CreationDate");
    let created = SystemTime::try_from(*created).unwrap();
    assert!(
        created >= t0 && created <= SystemTime::now() + Duration::from_secs(2),
        "creation date {created:?} is the real creation time (after {t0:?})"
    );
    assert!(
        list.owner()
            .and_then(|o| o.id())
            .is_some_and(|id| !id.is_empty()),
        "ListBuckets has an Owner ID"
    );

    let del = s3.delete_bucket().bucket(&name).send().await;
    ok(del, "DeleteBucket");
    let (status, _) = sdk_err(s3.head_bucket().bucket(&name).send().await);
    assert_eq!(status, 404, "HeadBucket after delete");
    let list = ok(s3.list_buckets().send().await, "ListBuckets");
    assert!(
        !list
            .buckets()
            .iter()
            .any(|b| b.name() == Some(name.as_str())),
        "deleted bucket is not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_answers_204() {
    let env = Env::with_buckets(&[]).await;
    let name = unique_bucket("del204");
    ok(
        env.client().create_bucket().bucket(&name).send().await,
        "CreateBucket",
    );
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{name}")))
        .await;
    r.assert_status(204);
    assert!(r.header("x-amz-request-id").is_some(), "x-amz-request-id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_existing_bucket_is_already_owned_by_you() {
    // Outside us-east-1 S3 answers 409 BucketAlreadyOwnedByYou to the owner.
    let declared = unique_bucket("owned");
    let mut cfg = config_with(&[&declared]);
    cfg.region = "eu-west-1".into();
    let env = Env::start(cfg).await;
    let s3 = s3_client(ClientOpts {
        endpoint: env.endpoint(),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        region: "eu-west-1".into(),
        ..Default::default()
    });
    let name = unique_bucket("twice");
    let conf = CreateBucketConfiguration::builder()
        .location_constraint(BucketLocationConstraint::EuWest1)
        .build();
    ok(
        s3.create_bucket()
            .bucket(&name)
            .create_bucket_configuration(conf.clone())
            .send()
            .await,
        "first CreateBucket",
    );
    let again = s3
        .create_bucket()
        .bucket(&name)
        .create_bucket_configuration(conf.clone())
        .send()
        .await;
    assert_eq!(sdk_err(again), (409, "BucketAlreadyOwnedByYou".into()));
    let declared_again = s3
        .create_bucket()
        .bucket(&declared)
        .create_bucket_configuration(conf)
        .send()
        .await;
    assert_eq!(
        sdk_err(declared_again),
        (409, "BucketAlreadyOwnedByYou".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_not_empty_then_empty() {
    let b = unique_bucket("notempty");
    let env = Env::with_buckets(&[]).await;
    let s3 = env.client();
    ok(s3.create_bucket().bucket(&b).send().await, "CreateBucket");
    put(&s3, &b, "k", b"v").await;
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{b}")))
        .await;
    r.assert_error(409, "BucketNotEmpty");
    assert_eq!(
        xml_tag(&r.text(), "BucketName").as_deref(),
        Some(b.as_str())
    );
    ok(
        s3.delete_object().bucket(&b).key("k").send().await,
        "DeleteObject",
    );
    ok(
        s3.delete_bucket().bucket(&b).send().await,
        "DeleteBucket on empty",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_errors() {
    let env = Env::with_buckets(&[]).await;
    let s3 = env.client();
    let missing = unique_bucket("missing");
    assert_eq!(
        sdk_err(s3.delete_bucket().bucket(&missing).send().await),
        (404, "NoSuchBucket".into())
    );
    let (status, _) = sdk_err(s3.head_bucket().bucket(&missing).send().await);
    assert_eq!(status, 404);
    assert_eq!(
        sdk_err(s3.get_bucket_location().bucket(&missing).send().await),
        (404, "NoSuchBucket".into())
    );
    assert_eq!(
        sdk_err(s3.list_objects_v2().bucket(&missing).send().await),
        (404, "NoSuchBucket".into())
    );
    assert_eq!(
        sdk_err(
            s3.put_object()
                .bucket(&missing)
                .key("k")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        (404, "NoSuchBucket".into())
    );
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{missing}/k")))
        .await;
    r.assert_error(404, "NoSuchBucket");
    assert_eq!(
        xml_tag(&r.text(), "BucketName").as_deref(),
        Some(missing.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_bucket_creates_nats_object_store_with_mapped_name() {
    let env = Env::with_buckets(&[]).await;
    let s3 = env.client();
    let name = format!("{}.data", unique_bucket("my.dotted"));
    ok(
        s3.create_bucket().bucket(&name).send().await,
        "CreateBucket",
    );
    let nats_name = name.replace('.', "_");
    let js = env.js().await;
    let store = js
        .get_object_store(&nats_name)
        .await
        .unwrap_or_else(|e| panic!("NATS object store {nats_name} exists: {e}"));
    put(&s3, &name, "hello.txt", b"hello nats").await;
    let mut obj = store.get("hello.txt").await.expect("native get");
    let mut got = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut obj, &mut got)
        .await
        .unwrap();
    assert_eq!(got, b"hello nats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_bucket_location_us_east_1_is_empty() {
    let b = unique_bucket("loc");
    let env = Env::with_buckets(&[&b]).await;
    let out = ok(
        env.client().get_bucket_location().bucket(&b).send().await,
        "GetBucketLocation",
    );
    // S3 answers an empty LocationConstraint for us-east-1.
    let lc = out.location_constraint().map(|c| c.as_str().to_string());
    assert!(
        lc.as_deref().is_none_or(|s| s.is_empty()),
        "us-east-1 LocationConstraint is empty, got {lc:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_bucket_location_other_region() {
    let b = unique_bucket("loc");
    let mut cfg = config_with(&[&b]);
    cfg.region = "eu-central-1".into();
    let env = Env::start(cfg).await;
    let s3 = s3_client(ClientOpts {
        endpoint: env.endpoint(),
        creds: Some((ADMIN_AK.into(), ADMIN_SK.into())),
        region: "eu-central-1".into(),
        ..Default::default()
    });
    let out = ok(
        s3.get_bucket_location().bucket(&b).send().await,
        "GetBucketLocation",
    );
    assert_eq!(
        out.location_constraint(),
        Some(&BucketLocationConstraint::EuCentral1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_tagging_roundtrip() {
    let b = unique_bucket("btag");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    assert_eq!(
        sdk_err(s3.get_bucket_tagging().bucket(&b).send().await),
        (404, "NoSuchTagSet".into())
    );
    let tagging = Tagging::builder()
        .tag_set(Tag::builder().key("env").value("test").build().unwrap())
        .tag_set(Tag::builder().key("team").value("a b/c=d").build().unwrap())
        .build()
        .unwrap();
    ok(
        s3.put_bucket_tagging()
            .bucket(&b)
            .tagging(tagging)
            .send()
            .await,
        "PutBucketTagging",
    );
    let out = ok(
        s3.get_bucket_tagging().bucket(&b).send().await,
        "GetBucketTagging",
    );
    let mut tags: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            ("env".to_string(), "test".to_string()),
            ("team".to_string(), "a b/c=d".to_string())
        ]
    );
    // Replacing the set replaces it whole.
    let one = Tagging::builder()
        .tag_set(Tag::builder().key("only").value("1").build().unwrap())
        .build()
        .unwrap();
    ok(
        s3.put_bucket_tagging().bucket(&b).tagging(one).send().await,
        "PutBucketTagging again",
    );
    let out = ok(
        s3.get_bucket_tagging().bucket(&b).send().await,
        "GetBucketTagging",
    );
    assert_eq!(out.tag_set().len(), 1);
    assert_eq!(out.tag_set()[0].key(), "only");
    let r = env
        .send_signed(RawRequest::new("DELETE", &format!("/{b}?tagging")))
        .await;
    r.assert_status(204);
    assert_eq!(
        sdk_err(s3.get_bucket_tagging().bucket(&b).send().await),
        (404, "NoSuchTagSet".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_tagging_duplicate_keys_is_invalid_tag() {
    let b = unique_bucket("btag");
    let env = Env::with_buckets(&[&b]).await;
    let body = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>a</Key><Value>2</Value></Tag></TagSet></Tagging>";
    let r = env
        .send_signed(
            RawRequest::new("PUT", &format!("/{b}?tagging"))
                .header("content-md5", &md5_b64(body.as_bytes()))
                .body(body),
        )
        .await;
    r.assert_error(400, "InvalidTag");
    assert_eq!(
        sdk_err(env.client().get_bucket_tagging().bucket(&b).send().await),
        (404, "NoSuchTagSet".into()),
        "a refused tag set is not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_acl_is_owner_full_control() {
    let b = unique_bucket("acl");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    let acl = ok(s3.get_bucket_acl().bucket(&b).send().await, "GetBucketAcl");
    let owner = acl
        .owner()
        .and_then(|o| o.id())
        .expect("owner id")
        .to_string();
    assert!(!owner.is_empty());
    assert_eq!(acl.grants().len(), 1, "one grant: {:?}", acl.grants());
    let g = &acl.grants()[0];
    assert_eq!(g.permission(), Some(&AclPermission::FullControl));
    assert_eq!(g.grantee().and_then(|g| g.id()), Some(owner.as_str()));

    ok(
        s3.put_bucket_acl()
            .bucket(&b)
            .acl(BucketCannedAcl::Private)
            .send()
            .await,
        "PutBucketAcl private",
    );
    let r = s3
        .put_bucket_acl()
        .bucket(&b)
        .acl(BucketCannedAcl::PublicRead)
        .send()
        .await;
    let (status, code) = sdk_err(r);
    assert!(
        (400..=501).contains(&status) && !code.is_empty(),
        "public-read ACL refused with an S3 error, got {status} {code:?}"
    );
    let missing = unique_bucket("nobucket");
    assert_eq!(
        sdk_err(s3.get_bucket_acl().bucket(&missing).send().await),
        (404, "NoSuchBucket".into())
    );
}

fn cors_rule() -> CorsRule {
    CorsRule::builder()
        .allowed_origins("https://app.example.com")
        .allowed_methods("GET")
        .allowed_methods("PUT")
        .allowed_headers("*")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_cors_put_get() {
    let b = unique_bucket("cors");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    assert_eq!(
        sdk_err(s3.get_bucket_cors().bucket(&b).send().await),
        (404, "NoSuchCORSConfiguration".into())
    );
    ok(
        s3.put_bucket_cors()
            .bucket(&b)
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(cors_rule())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "PutBucketCors",
    );
    let out = ok(
        s3.get_bucket_cors().bucket(&b).send().await,
        "GetBucketCors",
    );
    assert_eq!(out.cors_rules().len(), 1);
    let r = &out.cors_rules()[0];
    assert_eq!(r.allowed_origins(), ["https://app.example.com"]);
    assert_eq!(r.allowed_methods(), ["GET", "PUT"]);
    assert_eq!(r.allowed_headers(), ["*"]);
    assert_eq!(r.expose_headers(), ["ETag"]);
    assert_eq!(r.max_age_seconds(), Some(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_cors_invalid_method_is_malformed() {
    let b = unique_bucket("cors");
    let env = Env::with_buckets(&[&b]).await;
    let body = "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>";
    let r = env
        .send_signed(
            RawRequest::new("PUT", &format!("/{b}?cors"))
                .header("content-md5", &md5_b64(body.as_bytes()))
                .body(body),
        )
        .await;
    // S3: "Found unsupported HTTP method in CORS config."
    r.assert_error(400, "InvalidRequest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_and_response_headers() {
    let b = unique_bucket("cors");
    let env = Env::with_buckets(&[&b]).await;
    let s3 = env.client();
    put(&s3, &b, "obj", b"cors body").await;

    // No CORS configuration yet: preflight refused.
    let pre = RawRequest::new("OPTIONS", &format!("/{b}/obj"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "PUT");
    let r = env.send(pre.clone()).await;
    assert_eq!(r.status, 403, "preflight without CORS config: {}", r.text());

    ok(
        s3.put_bucket_cors()
            .bucket(&b)
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(cors_rule())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "PutBucketCors",
    );

    let r = env
        .send(pre.clone().header(
            "access-control-request-headers",
            "content-type, x-amz-meta-a",
        ))
        .await;
    r.assert_status(200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let methods = r
        .header("access-control-allow-methods")
        .unwrap_or("")
        .to_string();
    assert!(methods.contains("PUT"), "allow-methods {methods:?}");
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let allow_headers = r
        .header("access-control-allow-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(
        allow_headers.contains("content-type") && allow_headers.contains("x-amz-meta-a"),
        "allow-headers {allow_headers:?}"
    );

    // Origin or method outside the rule: refused.
    let r = env
        .send(
            RawRequest::new("OPTIONS", &format!("/{b}/obj"))
                .header("origin", "https://evil.example.com")
                .header("access-control-request-method", "PUT"),
        )
        .await;
    assert_eq!(r.status, 403, "preflight from a foreign origin");
    let r = env
        .send(
            RawRequest::new("OPTIONS", &format!("/{b}/obj"))
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "DELETE"),
        )
        .await;
    assert_eq!(r.status, 403, "preflight for a method outside the rule");

    // An actual request with an allowed Origin gets CORS headers.
    let r = env
        .send_signed(
            RawRequest::new("GET", &format!("/{b}/obj"))
                .header("origin", "https://app.example.com"),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.body, b"cors body");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let expose = r.header("access-control-expose-headers").unwrap_or("");
    assert!(expose.contains("ETag"), "expose-headers {expose:?}");
    // ... and a foreign Origin gets none.
    let r = env
        .send_signed(
            RawRequest::new("GET", &format!("/{b}/obj"))
                .header("origin", "https://evil.example.com"),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), None);
    // An error answered to an allowed Origin carries the rule's headers too, so that the
    // browser's script reads the error instead of a network failure.
    let r = env
        .send_signed(
            RawRequest::new("GET", &format!("/{b}/missing"))
                .header("origin", "https://app.example.com"),
        )
        .await;
    r.assert_error(404, "NoSuchKey");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let r = env
        .send_signed(
            RawRequest::new("GET", &format!("/{b}/missing"))
                .header("origin", "https://evil.example.com"),
        )
        .await;
    r.assert_error(404, "NoSuchKey");
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_rules_from_config() {
    let b = unique_bucket("cfgcors");
    let mut bc = bucket_cfg(&b);
    bc.cors = vec![CfgCorsRule {
        id: None,
        allowed_origins: vec!["*".into()],
        allowed_methods: vec!["GET".into(), "HEAD".into()],
        allowed_headers: vec![],
        expose_headers: vec![],
        max_age_seconds: Some(30),
    }];
    let cfg = GatewayConfig {
        buckets: vec![bc],
        credentials: vec![admin_credential()],
        ..Default::default()
    };
    let env = Env::start(cfg).await;
    let r = env
        .send(
            RawRequest::new("OPTIONS", &format!("/{b}/x"))
                .header("origin", "https://any.example.org")
                .header("access-control-request-method", "GET"),
        )
        .await;
    r.assert_status(200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-max-age"), Some("30"));
    let r = env
        .send(
            RawRequest::new("OPTIONS", &format!("/{b}/x"))
                .header("origin", "https://any.example.org")
                .header("access-control-request-method", "PUT"),
        )
        .await;
    assert_eq!(r.status, 403, "PUT is not in the configured rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_operations_answer_not_implemented_xml() {
    let b = unique_bucket("noimpl");
    let env = Env::with_buckets(&[&b]).await;
    put(&env.client(), &b, "k", b"v").await;
    let body = "<ReplicationConfiguration><Role>arn:aws:iam::1:role/x</Role><Rule><Status>Enabled</Status><Destination><Bucket>arn:aws:s3:::other</Bucket></Destination></Rule></ReplicationConfiguration>";
    let r = env
        .send_signed(
            RawRequest::new("PUT", &format!("/{b}?replication"))
                .header("content-md5", &md5_b64(body.as_bytes()))
                .body(body),
        )
        .await;
    r.assert_error(501, "NotImplemented");
    let r = env
        .send_signed(RawRequest::new("GET", &format!("/{b}/k?torrent")))
        .await;
    r.assert_error(501, "NotImplemented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_delete_bucket_need_admin() {
    let b = unique_bucket("adm");
    let mut cfg = config_with(&[&b]);
    cfg.credentials.push(credential(
        "AKIARW0000000001",
        "rw-secret-0001",
        &[("*", Permission::ReadWrite)],
    ));
    let env = Env::start(cfg).await;
    let rw = env.client_for("AKIARW0000000001", "rw-secret-0001");
    let name = unique_bucket("nope");
    assert_eq!(
        sdk_err(rw.create_bucket().bucket(&name).send().await),
        (403, "AccessDenied".into())
    );
    let (status, _) = sdk_err(env.client().head_bucket().bucket(&name).send().await);
    assert_eq!(status, 404, "refused CreateBucket created nothing");
    assert_eq!(
        sdk_err(rw.delete_bucket().bucket(&b).send().await),
        (403, "AccessDenied".into())
    );
    ok(
        env.client().head_bucket().bucket(&b).send().await,
        "bucket still there",
    );
}

/// Two keys create the same bucket at once through two gateways: one gets 200, the other
/// 409 BucketAlreadyExists, and from then on GetBucketAcl through either gateway, by
/// either key, names the winner as the owner (it named the reader while the winner's ACL
/// was not yet recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_two_keys_create_at_once_is_the_winners() {
    const OTHER: (&str, &str) = ("AKIAOTHER00000000002", "other-secret-2");
    let mut cfg = config_with(&[]);
    cfg.credentials
        .push(credential(OTHER.0, OTHER.1, &[("*", Permission::Admin)]));
    let env = Env::start(cfg).await;
    let peer = env.peer().await;
    let on_peer = |(ak, sk): (&str, &str)| {
        s3_client(ClientOpts {
            endpoint: format!("http://{}", peer.addr),
            creds: Some((ak.to_string(), sk.to_string())),
            ..Default::default()
        })
    };
    let (admin, other) = (env.client(), on_peer(OTHER));
    let readers = [
        env.client(),
        env.client_for(OTHER.0, OTHER.1),
        on_peer((ADMIN_AK, ADMIN_SK)),
        on_peer(OTHER),
    ];
    let mut wrong = Vec::new();
    for round in 0..15 {
        let name = unique_bucket(&format!("race{round}"));
        let (a, o) = futures::future::join(
            admin.create_bucket().bucket(&name).send(),
            other.create_bucket().bucket(&name).send(),
        )
        .await;
        let (winner, lost) = match (a, o) {
            (Ok(_), Err(e)) => (ADMIN_AK, sdk_err::<(), _>(Err(e))),
            (Err(e), Ok(_)) => (OTHER.0, sdk_err::<(), _>(Err(e))),
            other => panic!("round {round}: one CreateBucket wins: {other:?}"),
        };
        assert_eq!(
            lost,
            (409, "BucketAlreadyExists".to_string()),
            "round {round}"
        );
        let owner = canonical_user_id(winner);
        for (i, s3) in readers.iter().enumerate() {
            let acl = ok(
                s3.get_bucket_acl().bucket(&name).send().await,
                "GetBucketAcl",
            );
            let shown = acl.owner().and_then(|o| o.id()).unwrap_or_default();
            if shown != owner {
                wrong.push((round, i, winner));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "owner shown wrong (round, reader, winner): {wrong:?}"
    );
    peer.gw.shutdown().await;
}

/// Bucket settings changed at once through two gateways (versioning, tagging, CORS, a
/// public access block, a DeleteBucket refused for a non-empty bucket) all stay: each is
/// a change of the bucket stream's config, and one written over a config read before
/// another landed dropped that other (versioning's subjects included).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bucket_settings_changed_at_once_all_stay() {
    use aws_sdk_s3::types::{
        BucketVersioningStatus, PublicAccessBlockConfiguration, VersioningConfiguration,
    };
    let env = Env::with_buckets(&[]).await;
    let peer = env.peer().await;
    let (a, p) = (env.client(), peer.client());
    let js = env.js().await;
    let mut lost = Vec::new();
    for round in 0..15 {
        let b = unique_bucket(&format!("settings{round}"));
        ok(a.create_bucket().bucket(&b).send().await, "CreateBucket");
        put(&a, &b, "k", b"v").await;
        let versioning = a
            .put_bucket_versioning()
            .bucket(&b)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send();
        let tagging = p
            .put_bucket_tagging()
            .bucket(&b)
            .tagging(
                Tagging::builder()
                    .tag_set(
                        Tag::builder()
                            .key("round")
                            .value(round.to_string())
                            .build()
                            .expect("tag"),
                    )
                    .build()
                    .expect("tagging"),
            )
            .send();
        let cors = a
            .put_bucket_cors()
            .bucket(&b)
            .cors_configuration(
                CorsConfiguration::builder()
                    .cors_rules(
                        CorsRule::builder()
                            .allowed_origins("https://app.example.com")
                            .allowed_methods("GET")
                            .build()
                            .expect("rule"),
                    )
                    .build()
                    .expect("cors"),
            )
            .send();
        let pab = p
            .put_public_access_block()
            .bucket(&b)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_policy(true)
                    .build(),
            )
            .send();
        let refused = p.delete_bucket().bucket(&b).send();
        let (v, t, c, x, d) = futures::join!(versioning, tagging, cors, pab, refused);
        ok(v, "PutBucketVersioning");
        ok(t, "PutBucketTagging");
        ok(c, "PutBucketCors");
        ok(x, "PutPublicAccessBlock");
        assert_eq!(sdk_err(d), (409, "BucketNotEmpty".to_string()));
        let mut stream = js
            .get_stream(format!("OBJ_{}", b.replace('.', "_")))
            .await
            .expect("stream");
        let config = stream.info().await.expect("info").config.clone();
        let missing: Vec<&str> = [
            "jets3.versioning",
            "jets3.tagging",
            "jets3.cors",
            "jets3.pab",
        ]
        .into_iter()
        .filter(|k| !config.metadata.contains_key(*k))
        .collect();
        let versions = format!("$O.{}.V.>", b.replace('.', "_"));
        let fenced = config.max_message_size == 1 || config.metadata.contains_key("jets3.closing");
        if !missing.is_empty() || !config.subjects.contains(&versions) || fenced {
            lost.push((round, missing, config.subjects.clone(), fenced));
        }
    }
    assert!(lost.is_empty(), "settings lost: {lost:?}");
    peer.gw.shutdown().await;
}

/// A gateway that died holding a bucket's config lock holds up changes of that bucket's
/// settings until its lease (10 s) ends, not for good; the change then applies and
/// releases the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_lock_left_by_a_dead_gateway_is_taken_over() {
    let env = Env::with_buckets(&[]).await;
    let s3 = env.client();
    let b = unique_bucket("deadlock");
    ok(s3.create_bucket().bucket(&b).send().await, "CreateBucket");
    let tagging = |v: &str| {
        Tagging::builder()
            .tag_set(Tag::builder().key("t").value(v).build().expect("tag"))
            .build()
            .expect("tagging")
    };
    ok(
        s3.put_bucket_tagging()
            .bucket(&b)
            .tagging(tagging("1"))
            .send()
            .await,
        "PutBucketTagging",
    );
    let kv = env
        .js()
        .await
        .get_key_value("jets3_locks")
        .await
        .expect("the locks' KV");
    let key = format!("config.{}", b.replace('.', "_"));
    kv.create(&key, "a gateway that died".into())
        .await
        .expect("lock taken as a dead gateway would have");
    let started = std::time::Instant::now();
    ok(
        s3.put_bucket_tagging()
            .bucket(&b)
            .tagging(tagging("2"))
            .send()
            .await,
        "PutBucketTagging past a dead holder",
    );
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the change waited for the lease: {:?}",
        started.elapsed()
    );
    let got = ok(
        s3.get_bucket_tagging().bucket(&b).send().await,
        "GetBucketTagging",
    );
    assert_eq!(got.tag_set()[0].value(), "2");
    let entry = kv.entry(&key).await.expect("entry").expect("a record");
    assert_ne!(
        entry.operation,
        async_nats::jetstream::kv::Operation::Put,
        "released"
    );
}
