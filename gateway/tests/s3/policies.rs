//! S3 access control on top of grants: canned ACLs and grants on buckets and objects,
//! bucket policies (principals, actions, resources, conditions), Block Public Access, the
//! config's ownership of these settings, and how fast a change reaches a second gateway.

use std::time::{Duration, Instant};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    BucketCannedAcl, Delete, ObjectCannedAcl, ObjectIdentifier, Permission as AclPermission,
    PublicAccessBlockConfiguration, Type as GranteeType,
};
use jets3_crds::policy::{canonical_user_id, user_arn};
use jets3_crds::{GatewayConfig, Permission, PublicAccessBlock};

use crate::common::*;

const R_AK: &str = "AKIAREADER00000001";
const R_SK: &str = "reader-secret-0001";
const W_AK: &str = "AKIAWRITER00000001";
const W_SK: &str = "writer-secret-0001";

/// The admin, a key without any grant (`R_AK`) and one that may write `b` only, with
/// Block Public Access relaxed gateway-wide unless `block`.
fn config(buckets: &[&str], block: bool) -> GatewayConfig {
    let mut cfg = config_with(buckets);
    cfg.credentials.push(credential(R_AK, R_SK, &[]));
    cfg.credentials.push(credential(
        W_AK,
        W_SK,
        &[(buckets[0], Permission::ReadWrite)],
    ));
    if !block {
        cfg.public_access_block = PublicAccessBlock::NONE;
    }
    cfg
}

fn denied() -> (u16, String) {
    (403, "AccessDenied".into())
}

async fn anon_get(env: &Env, b: &str, key: &str) -> u16 {
    env.send(RawRequest::new("GET", &format!("/{b}/{key}")))
        .await
        .status
}

async fn put_policy(env: &Env, b: &str, policy: &str) {
    ok(
        env.client()
            .put_bucket_policy()
            .bucket(b)
            .policy(policy)
            .send()
            .await,
        "PutBucketPolicy",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_acls_on_objects_and_buckets() {
    let b = unique_bucket("acl");
    let env = Env::start(config(&[&b], false)).await;
    let admin = env.client();
    let reader = env.client_for(R_AK, R_SK);
    put(&admin, &b, "private", b"p").await;
    for (key, acl) in [
        ("public", ObjectCannedAcl::PublicRead),
        ("authn", ObjectCannedAcl::AuthenticatedRead),
    ] {
        ok(
            admin
                .put_object()
                .bucket(&b)
                .key(key)
                .acl(acl)
                .body(b"data".to_vec().into())
                .send()
                .await,
            "PutObject with a canned ACL",
        );
    }
    assert_eq!(
        anon_get(&env, &b, "public").await,
        200,
        "public-read object"
    );
    assert_eq!(anon_get(&env, &b, "private").await, 403);
    assert_eq!(anon_get(&env, &b, "authn").await, 403, "authenticated-read");
    assert_eq!(get_bytes(&reader, &b, "authn").await, b"data");
    assert_eq!(get_bytes(&reader, &b, "public").await, b"data");
    assert_eq!(
        sdk_err(reader.get_object().bucket(&b).key("private").send().await),
        denied()
    );
    // No object ACL opens listing: that is the bucket's.
    assert_eq!(
        sdk_err(reader.list_objects_v2().bucket(&b).send().await),
        denied()
    );

    let acl = ok(
        admin.get_object_acl().bucket(&b).key("public").send().await,
        "GetObjectAcl",
    );
    let admin_id = canonical_user_id(ADMIN_AK);
    assert_eq!(acl.owner().and_then(|o| o.id()), Some(admin_id.as_str()));
    let grants: Vec<_> = acl
        .grants()
        .iter()
        .map(|g| {
            let who = g.grantee().expect("grantee");
            (
                who.r#type().clone(),
                who.id().or(who.uri()).unwrap_or_default().to_string(),
                g.permission().cloned(),
            )
        })
        .collect();
    assert_eq!(
        grants,
        vec![
            (
                GranteeType::CanonicalUser,
                admin_id.clone(),
                Some(AclPermission::FullControl)
            ),
            (
                GranteeType::Group,
                "http://acs.amazonaws.com/groups/global/AllUsers".to_string(),
                Some(AclPermission::Read)
            ),
        ]
    );

    // PutObjectAcl takes it back.
    ok(
        admin
            .put_object_acl()
            .bucket(&b)
            .key("public")
            .acl(ObjectCannedAcl::Private)
            .send()
            .await,
        "PutObjectAcl private",
    );
    assert_eq!(anon_get(&env, &b, "public").await, 403);

    // Bucket ACL public-read-write: anyone lists and writes.
    ok(
        admin
            .put_bucket_acl()
            .bucket(&b)
            .acl(BucketCannedAcl::PublicReadWrite)
            .send()
            .await,
        "PutBucketAcl public-read-write",
    );
    let anon = env.anon_client();
    ok(
        anon.list_objects_v2().bucket(&b).send().await,
        "anonymous list",
    );
    ok(
        anon.put_object()
            .bucket(&b)
            .key("dropped")
            .body(b"anon".to_vec().into())
            .send()
            .await,
        "anonymous put",
    );
    let bacl = ok(
        admin.get_bucket_acl().bucket(&b).send().await,
        "GetBucketAcl",
    );
    assert_eq!(bacl.owner().and_then(|o| o.id()), Some(admin_id.as_str()));
    assert_eq!(bacl.grants().len(), 3, "{:?}", bacl.grants());
    // Bucket WRITE does not let anyone read the objects.
    assert_eq!(anon_get(&env, &b, "dropped").await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_name_existing_credentials_only() {
    let b = unique_bucket("grants");
    let env = Env::start(config(&[&b], true)).await;
    let admin = env.client();
    let reader = env.client_for(R_AK, R_SK);
    ok(
        admin
            .put_object()
            .bucket(&b)
            .key("shared")
            .grant_read(format!("id=\"{}\"", canonical_user_id(R_AK)))
            .body(b"for the reader".to_vec().into())
            .send()
            .await,
        "PutObject with x-amz-grant-read",
    );
    assert_eq!(get_bytes(&reader, &b, "shared").await, b"for the reader");
    let unknown = format!("id=\"{}\"", canonical_user_id("AKIANOBODY0000001"));
    let before = env.obj_streams().await;
    assert_eq!(
        sdk_err(
            admin
                .put_object()
                .bucket(&b)
                .key("nobody")
                .grant_read(unknown.clone())
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        (400, "InvalidArgument".into())
    );
    assert_eq!(
        sdk_err(
            admin
                .put_bucket_acl()
                .bucket(&b)
                .grant_read(unknown)
                .send()
                .await
        ),
        (400, "InvalidArgument".into())
    );
    env.wait_streams_equal(&before, "refused grants").await;
    // The default Block Public Access refuses public ACLs, and stores nothing.
    for acl in [
        ObjectCannedAcl::PublicRead,
        ObjectCannedAcl::AuthenticatedRead,
    ] {
        assert_eq!(
            sdk_err(
                admin
                    .put_object()
                    .bucket(&b)
                    .key("blocked")
                    .acl(acl)
                    .body(b"x".to_vec().into())
                    .send()
                    .await
            ),
            denied()
        );
    }
    assert_eq!(
        sdk_err(admin.head_object().bucket(&b).key("blocked").send().await).0,
        404
    );
    // A bucket made over S3 with a canned ACL records its creator as owner.
    let made = unique_bucket("made");
    ok(
        admin
            .create_bucket()
            .bucket(&made)
            .acl(BucketCannedAcl::Private)
            .send()
            .await,
        "CreateBucket with x-amz-acl",
    );
    let acl = ok(
        admin.get_bucket_acl().bucket(&made).send().await,
        "GetBucketAcl",
    );
    assert_eq!(
        acl.owner().and_then(|o| o.id()),
        Some(canonical_user_id(ADMIN_AK).as_str())
    );
    assert_eq!(
        sdk_err(
            admin
                .create_bucket()
                .bucket(unique_bucket("pub"))
                .acl(BucketCannedAcl::PublicRead)
                .send()
                .await
        ),
        denied(),
        "BlockPublicAcls applies to CreateBucket"
    );
}

fn public_prefix_policy(b: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"pub","Effect":"Allow","Principal":"*",
        "Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/public/*"}}]}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_policy_allows_and_denies() {
    let b = unique_bucket("pol");
    let env = Env::start(config(&[&b], false)).await;
    let admin = env.client();
    let reader = env.client_for(R_AK, R_SK);
    let writer = env.client_for(W_AK, W_SK);
    put(&admin, &b, "public/a", b"a").await;
    put(&admin, &b, "secret/s", b"s").await;
    assert_eq!(
        sdk_err(admin.get_bucket_policy().bucket(&b).send().await),
        (404, "NoSuchBucketPolicy".into())
    );
    assert_eq!(
        anon_get(&env, &b, "public/a").await,
        403,
        "before the policy"
    );
    let policy = public_prefix_policy(&b);
    put_policy(&env, &b, &policy).await;
    assert_eq!(anon_get(&env, &b, "public/a").await, 200);
    assert_eq!(anon_get(&env, &b, "secret/s").await, 403);
    let got = ok(
        admin.get_bucket_policy().bucket(&b).send().await,
        "GetBucketPolicy",
    );
    assert_eq!(got.policy(), Some(policy.as_str()));
    let status = ok(
        admin.get_bucket_policy_status().bucket(&b).send().await,
        "GetBucketPolicyStatus",
    );
    assert_eq!(
        status.policy_status().and_then(|s| s.is_public()),
        Some(true)
    );

    // A second credential by ARN: read-only on the bucket, writes denied even though its
    // grant allows them; a presigned URL carries the same decision.
    let policy = format!(
        r#"{{"Statement":[
        {{"Effect":"Allow","Principal":{{"AWS":"{r}"}},"Action":["s3:GetObject","s3:ListBucket"],
          "Resource":["arn:aws:s3:::{b}","arn:aws:s3:::{b}/*"]}},
        {{"Effect":"Deny","Principal":{{"AWS":["{w}"]}},"NotAction":"s3:Get*",
          "Resource":"arn:aws:s3:::{b}/secret/*"}}]}}"#,
        r = user_arn(R_AK),
        w = user_arn(W_AK),
    );
    put_policy(&env, &b, &policy).await;
    assert_eq!(get_bytes(&reader, &b, "secret/s").await, b"s");
    ok(
        reader.list_objects_v2().bucket(&b).send().await,
        "ListObjects by policy",
    );
    assert_eq!(
        sdk_err(
            reader
                .put_object()
                .bucket(&b)
                .key("x")
                .body(b"x".to_vec().into())
                .send()
                .await
        ),
        denied()
    );
    assert_eq!(anon_get(&env, &b, "public/a").await, 403, "policy replaced");
    put(&writer, &b, "public/w", b"w").await;
    assert_eq!(
        sdk_err(
            writer
                .put_object()
                .bucket(&b)
                .key("secret/w")
                .body(b"w".to_vec().into())
                .send()
                .await
        ),
        denied(),
        "explicit Deny beats the credential's grant"
    );
    assert_eq!(get_bytes(&writer, &b, "secret/s").await, b"s");
    // DeleteObjects decides key by key: the denied key stays, the other goes.
    let out = ok(
        writer
            .delete_objects()
            .bucket(&b)
            .delete(
                Delete::builder()
                    .objects(ObjectIdentifier::builder().key("secret/s").build().unwrap())
                    .objects(ObjectIdentifier::builder().key("public/w").build().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
        "DeleteObjects",
    );
    let deleted: Vec<_> = out.deleted().iter().filter_map(|d| d.key()).collect();
    assert_eq!(deleted, ["public/w"]);
    let errors: Vec<_> = out
        .errors()
        .iter()
        .map(|e| (e.key().unwrap_or(""), e.code().unwrap_or("")))
        .collect();
    assert_eq!(errors, [("secret/s", "AccessDenied")]);
    assert_eq!(get_bytes(&admin, &b, "secret/s").await, b"s");
    let cfg = PresigningConfig::expires_in(Duration::from_secs(300)).unwrap();
    for (client, key, status) in [
        (&reader, "secret/s", 200),
        (&writer, "secret/s", 200),
        (&env.client_for(R_AK, R_SK), "public/a", 200),
    ] {
        let p = client
            .get_object()
            .bucket(&b)
            .key(key)
            .presigned(cfg.clone())
            .await
            .unwrap();
        let uri: http::Uri = p.uri().parse().expect("uri");
        let r = env
            .send(RawRequest::new(
                "GET",
                uri.path_and_query().unwrap().as_str(),
            ))
            .await;
        assert_eq!(r.status, status, "presigned GET {key}: {}", r.text());
    }
    let p = writer
        .put_object()
        .bucket(&b)
        .key("secret/p")
        .presigned(cfg.clone())
        .await
        .unwrap();
    let uri: http::Uri = p.uri().parse().expect("uri");
    let r = env
        .send(RawRequest::new("PUT", uri.path_and_query().unwrap().as_str()).body("p"))
        .await;
    r.assert_error(403, "AccessDenied");

    ok(
        admin.delete_bucket_policy().bucket(&b).send().await,
        "DeleteBucketPolicy",
    );
    assert_eq!(
        sdk_err(reader.get_object().bucket(&b).key("secret/s").send().await),
        denied()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_beats_acl_and_block_public_access_beats_both() {
    let b = unique_bucket("order");
    let env = Env::start(config(&[&b], false)).await;
    let admin = env.client();
    let reader = env.client_for(R_AK, R_SK);
    ok(
        admin
            .put_object()
            .bucket(&b)
            .key("k")
            .acl(ObjectCannedAcl::PublicRead)
            .body(b"v".to_vec().into())
            .send()
            .await,
        "public-read object",
    );
    assert_eq!(anon_get(&env, &b, "k").await, 200);
    let deny = format!(
        r#"{{"Statement":[{{"Effect":"Deny","Principal":"*","Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::{b}/*"}}]}}"#
    );
    put_policy(&env, &b, &deny).await;
    assert_eq!(anon_get(&env, &b, "k").await, 403, "Deny beats the ACL");
    assert_eq!(
        sdk_err(admin.get_object().bucket(&b).key("k").send().await),
        denied(),
        "Deny beats the admin grant"
    );
    // The admin can still read and remove the policy (as S3's root user).
    ok(
        admin.get_bucket_policy().bucket(&b).send().await,
        "GetBucketPolicy",
    );
    ok(
        admin.delete_bucket_policy().bucket(&b).send().await,
        "DeleteBucketPolicy",
    );
    put_policy(&env, &b, &public_prefix_policy(&b)).await;
    put(&admin, &b, "public/p", b"p").await;
    let reader_policy = format!(
        r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/public/*"}},
        {{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*"}}]}}"#,
        user_arn(R_AK)
    );
    put_policy(&env, &b, &reader_policy).await;
    assert_eq!(anon_get(&env, &b, "public/p").await, 200);

    // Block Public Access: public ACLs ignored, the public policy grants credentials only.
    ok(
        admin
            .put_public_access_block()
            .bucket(&b)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .ignore_public_acls(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await,
        "PutPublicAccessBlock",
    );
    assert_eq!(anon_get(&env, &b, "k").await, 403, "public ACL ignored");
    assert_eq!(
        anon_get(&env, &b, "public/p").await,
        403,
        "public policy restricted"
    );
    assert_eq!(get_bytes(&reader, &b, "public/p").await, b"p");
    let got = ok(
        admin.get_public_access_block().bucket(&b).send().await,
        "GetPublicAccessBlock",
    );
    let c = got.public_access_block_configuration().expect("config");
    assert_eq!(
        (
            c.block_public_acls(),
            c.ignore_public_acls(),
            c.block_public_policy(),
            c.restrict_public_buckets()
        ),
        (Some(false), Some(true), Some(false), Some(true))
    );
    // BlockPublicPolicy and BlockPublicAcls refuse new public settings; nothing changes.
    ok(
        admin
            .put_public_access_block()
            .bucket(&b)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_policy(true)
                    .block_public_acls(true)
                    .build(),
            )
            .send()
            .await,
        "PutPublicAccessBlock",
    );
    assert_eq!(
        sdk_err(
            admin
                .put_bucket_policy()
                .bucket(&b)
                .policy(public_prefix_policy(&b))
                .send()
                .await
        ),
        denied()
    );
    let kept = ok(
        admin.get_bucket_policy().bucket(&b).send().await,
        "GetBucketPolicy",
    );
    assert_eq!(kept.policy(), Some(reader_policy.as_str()));
    assert_eq!(
        sdk_err(
            admin
                .put_object_acl()
                .bucket(&b)
                .key("public/p")
                .acl(ObjectCannedAcl::PublicRead)
                .send()
                .await
        ),
        denied()
    );
    ok(
        admin.delete_public_access_block().bucket(&b).send().await,
        "DeletePublicAccessBlock",
    );
    assert_eq!(
        sdk_err(admin.get_public_access_block().bucket(&b).send().await),
        (404, "NoSuchPublicAccessBlockConfiguration".into())
    );
    assert_eq!(
        anon_get(&env, &b, "k").await,
        200,
        "gateway default (relaxed) again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_policies_change_nothing() {
    let b = unique_bucket("bad");
    let env = Env::start(config(&[&b], false)).await;
    let admin = env.client();
    let good = public_prefix_policy(&b);
    put_policy(&env, &b, &good).await;
    let cases = [
        "{not json".to_string(),
        format!(r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::{b}/*"}}]}}"#),
        r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::another/*"}]}"#.to_string(),
        format!(r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*"}}]}}"#, user_arn("AKIANOBODY0000001")),
        format!(r#"{{"Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*","Condition":{{"IpAddress":{{"aws:SourceIp":"999.0.0.0/8"}}}}}}]}}"#),
    ];
    for text in &cases {
        let r = env
            .send_signed(RawRequest::new("PUT", &format!("/{b}?policy")).body(text.as_str()))
            .await;
        r.assert_error(400, "MalformedPolicy");
        assert!(r.text().contains("<Message>"), "{}", r.text());
    }
    let kept = ok(
        admin.get_bucket_policy().bucket(&b).send().await,
        "GetBucketPolicy",
    );
    assert_eq!(kept.policy(), Some(good.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_conditions_on_ip_behind_trusted_proxies_and_transport() {
    let b = unique_bucket("ip");
    let env = Env::start_with(config(&[&b], false), |s| {
        s.trusted_proxies = vec!["127.0.0.1/32".into()]
    })
    .await;
    put(&env.client(), &b, "k", b"v").await;
    let policy = format!(
        r#"{{"Statement":[
        {{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*",
          "Condition":{{"IpAddress":{{"aws:SourceIp":"203.0.113.0/24"}}}}}},
        {{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{b}/*",
          "Condition":{{"Bool":{{"aws:SecureTransport":"false"}},"IpAddress":{{"aws:SourceIp":"203.0.113.128/25"}}}}}}]}}"#
    );
    put_policy(&env, &b, &policy).await;
    let get = |xff: &'static str, proto: Option<&'static str>| {
        let mut r = RawRequest::new("GET", &format!("/{b}/k")).header("x-forwarded-for", xff);
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r
    };
    assert_eq!(env.send(get("203.0.113.5", None)).await.status, 200);
    assert_eq!(env.send(get("198.51.100.7", None)).await.status, 403);
    assert_eq!(
        env.send(get("203.0.113.200", None)).await.status,
        403,
        "plain HTTP from the upper half is denied"
    );
    assert_eq!(
        env.send(get("203.0.113.200", Some("https"))).await.status,
        200,
        "HTTPS at the trusted proxy"
    );
    // Without the header the peer (127.0.0.1) is the client.
    assert_eq!(
        env.send(RawRequest::new("GET", &format!("/{b}/k")))
            .await
            .status,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_sources_obey_policies_and_acls() {
    let (dst, src) = (unique_bucket("dst"), unique_bucket("src"));
    // The writer may write `dst` only.
    let env = Env::start(config(&[&dst, &src], false)).await;
    let admin = env.client();
    let writer = env.client_for(W_AK, W_SK);
    put(&admin, &src, "open", b"o").await;
    put(&admin, &src, "closed", b"c").await;
    let copy = |key: &str| {
        writer
            .copy_object()
            .bucket(&dst)
            .key(format!("copy-of-{key}"))
            .copy_source(format!("{src}/{key}"))
            .send()
    };
    assert_eq!(
        sdk_err(copy("open").await),
        denied(),
        "no right on the source"
    );
    put_policy(
        &env,
        &src,
        &format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"s3:GetObject","Resource":"arn:aws:s3:::{src}/*"}},
            {{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{src}/closed"}}]}}"#,
            user_arn(W_AK)
        ),
    )
    .await;
    ok(copy("open").await, "copy allowed by the source's policy");
    assert_eq!(
        sdk_err(copy("closed").await),
        denied(),
        "Deny on the source"
    );
    ok(
        admin
            .put_object_acl()
            .bucket(&src)
            .key("closed")
            .acl(ObjectCannedAcl::PublicRead)
            .send()
            .await,
        "PutObjectAcl",
    );
    assert_eq!(
        sdk_err(copy("closed").await),
        denied(),
        "Deny beats the ACL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_config_owns_are_refused_over_s3() {
    let b = unique_bucket("owned");
    let mut cfg = config(&[&b], false);
    let policy = public_prefix_policy(&b);
    cfg.buckets[0].policy = Some(policy.clone());
    cfg.buckets[0].public_access_block = Some(PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: false,
        block_public_policy: true,
        restrict_public_buckets: false,
    });
    cfg.buckets[0].cors = vec![jets3_crds::CorsRule {
        allowed_origins: vec!["*".into()],
        allowed_methods: vec!["GET".into()],
        ..Default::default()
    }];
    let env = Env::start(cfg).await;
    let admin = env.client();
    put(&admin, &b, "public/x", b"x").await;
    assert_eq!(
        anon_get(&env, &b, "public/x").await,
        200,
        "the config's policy"
    );
    let got = ok(
        admin.get_bucket_policy().bucket(&b).send().await,
        "GetBucketPolicy",
    );
    assert_eq!(got.policy(), Some(policy.as_str()));
    let refusals = [
        env.send_signed(RawRequest::new("PUT", &format!("/{b}?policy")).body(policy.clone()))
            .await,
        env.send_signed(RawRequest::new("DELETE", &format!("/{b}?policy")))
            .await,
        env.send_signed(RawRequest::new("PUT", &format!("/{b}?publicAccessBlock")).body(
            "<PublicAccessBlockConfiguration><BlockPublicAcls>false</BlockPublicAcls></PublicAccessBlockConfiguration>",
        ))
        .await,
        env.send_signed(RawRequest::new("DELETE", &format!("/{b}?publicAccessBlock")))
            .await,
        env.send_signed(RawRequest::new("DELETE", &format!("/{b}?cors")))
            .await,
    ];
    for r in refusals {
        r.assert_error(403, "AccessDenied");
        assert!(
            r.text().contains("S3Bucket&apos;s spec."),
            "names the S3Bucket field: {}",
            r.text()
        );
    }
    assert_eq!(anon_get(&env, &b, "public/x").await, 200, "nothing changed");
    let pab = ok(
        admin.get_public_access_block().bucket(&b).send().await,
        "GetPublicAccessBlock",
    );
    assert_eq!(
        pab.public_access_block_configuration()
            .and_then(|c| c.block_public_acls()),
        Some(true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_gateway_holds_on_another() {
    let b = unique_bucket("two");
    let env = Env::start(config(&[&b], false)).await;
    let peer = env.peer().await;
    put(&env.client(), &b, "public/k", b"k").await;
    let on_peer = || async {
        send_raw(
            peer.addr,
            &RawRequest::new("GET", &format!("/{b}/public/k")).to_bytes(&peer.addr.to_string()),
        )
        .await
        .status
    };
    assert_eq!(on_peer().await, 403);
    let mut delays = Vec::new();
    for i in 0..20 {
        // Alternate: open through the first gateway, close again.
        let open = i % 2 == 0;
        if open {
            put_policy(&env, &b, &public_prefix_policy(&b)).await;
        } else {
            ok(
                env.client().delete_bucket_policy().bucket(&b).send().await,
                "DeleteBucketPolicy",
            );
        }
        // From the moment the change is acknowledged.
        let started = Instant::now();
        let want = if open { 200 } else { 403 };
        loop {
            if on_peer().await == want {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "change {i} not seen by the second gateway after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(started.elapsed());
    }
    delays.sort();
    let p50 = delays[delays.len() / 2];
    let p99 = delays[delays.len() - 1];
    println!("change-to-effect across two gateways: p50 {p50:?}, p99 {p99:?} (n=20)");
    // Within the advisory watch, well inside the 2 s TTL that bounds a missed advisory.
    assert!(p99 < Duration::from_secs(2), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_object_tags_decide_writes() {
    // The writer may PUT only objects tagged Class=open: a Deny on any other value (or none),
    // read from the request's x-amz-tagging.
    let b = unique_bucket("reqtag");
    let env = Env::start(config(&[&b], false)).await;
    let writer = env.client_for(W_AK, W_SK);
    let policy = format!(
        r#"{{"Statement":[{{"Effect":"Deny","Principal":{{"AWS":"{}"}},"Action":"s3:PutObject","Resource":"arn:aws:s3:::{b}/*","Condition":{{"StringNotEquals":{{"s3:RequestObjectTag/Class":"open"}}}}}}]}}"#,
        user_arn(W_AK)
    );
    put_policy(&env, &b, &policy).await;
    let put_tagged = |key: &'static str, tagging: Option<&'static str>| {
        let mut req = writer
            .put_object()
            .bucket(&b)
            .key(key)
            .body(b"x".to_vec().into());
        if let Some(t) = tagging {
            req = req.tagging(t);
        }
        req.send()
    };
    ok(put_tagged("open", Some("Class=open")).await, "tagged open");
    ok(
        put_tagged("open-and-more", Some("Team=a&Class=open")).await,
        "tagged open among others",
    );
    for (key, tagging) in [
        ("closed", Some("Class=closed")),
        ("case", Some("class=open")),
        ("untagged", None),
    ] {
        assert_eq!(
            sdk_err(put_tagged(key, tagging).await),
            denied(),
            "{key}: {tagging:?}"
        );
        assert_eq!(
            sdk_err(env.client().head_object().bucket(&b).key(key).send().await).0,
            404,
            "{key} was not stored"
        );
    }
    // The same tags through a multipart upload's Create.
    assert_eq!(
        sdk_err(
            writer
                .create_multipart_upload()
                .bucket(&b)
                .key("mp")
                .tagging("Class=closed")
                .send()
                .await
        ),
        denied()
    );
    ok(
        writer
            .create_multipart_upload()
            .bucket(&b)
            .key("mp")
            .tagging("Class=open")
            .send()
            .await,
        "CreateMultipartUpload tagged open",
    );
}

/// A GET or HEAD of a key with no object answers as S3 does: 404 NoSuchKey to a caller who
/// may list the bucket, 403 to one who may only read objects (who must not learn which keys
/// do not exist), whatever allows the read: a policy, or the bucket's ACL for listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_404_only_for_who_may_list() {
    let b = unique_bucket("missing");
    let env = Env::start(config(&[&b], false)).await;
    let admin = env.client();
    let reader = env.client_for(R_AK, R_SK);
    put(&admin, &b, "there", b"x").await;
    let get = |key: &'static str| reader.get_object().bucket(&b).key(key).send();
    let head = |key: &'static str| reader.head_object().bucket(&b).key(key).send();
    let read_only = |actions: &str| {
        format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":[{actions}],"Resource":["arn:aws:s3:::{b}","arn:aws:s3:::{b}/*"]}}]}}"#,
            user_arn(R_AK)
        )
    };

    put_policy(&env, &b, &read_only(r#""s3:GetObject""#)).await;
    ok(get("there").await, "GET an object it may read");
    assert_eq!(sdk_err(get("nothing").await), denied(), "GET, no list");
    assert_eq!(sdk_err(head("nothing").await).0, 403, "HEAD, no list");

    put_policy(&env, &b, &read_only(r#""s3:GetObject","s3:ListBucket""#)).await;
    assert_eq!(sdk_err(get("nothing").await), (404, "NoSuchKey".into()));
    assert_eq!(sdk_err(head("nothing").await).0, 404, "HEAD with list");

    // The bucket's ACL lets everyone list, no object ACL lets anyone read.
    ok(
        admin.delete_bucket_policy().bucket(&b).send().await,
        "DeleteBucketPolicy",
    );
    ok(
        admin
            .put_bucket_acl()
            .bucket(&b)
            .acl(BucketCannedAcl::PublicRead)
            .send()
            .await,
        "PutBucketAcl public-read",
    );
    assert_eq!(anon_get(&env, &b, "nothing").await, 404, "anonymous lister");
    assert_eq!(
        anon_get(&env, &b, "there").await,
        403,
        "object not readable"
    );
}

/// A Deny on `s3:x-amz-copy-source` holds however the header spells the source (a leading
/// `/`, percent-encoded characters); a policy may also decide on the `x-amz-grant-*`,
/// `x-amz-storage-class` and `x-amz-server-side-encryption` a request sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_conditions_hold_however_the_request_spells_them() {
    let b = unique_bucket("condkeys");
    let env = Env::start(config(&[&b], false)).await;
    let admin = env.client();
    let writer = env.client_for(W_AK, W_SK);
    put(&admin, &b, "secret/s", b"s").await;
    put(&admin, &b, "public/p", b"p").await;
    put_policy(
        &env,
        &b,
        &format!(
            r#"{{"Statement":[{{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::{b}/*","Condition":{{"StringLike":{{"s3:x-amz-copy-source":"{b}/secret/*"}}}}}},
            {{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::{b}/*","Condition":{{"StringLike":{{"s3:x-amz-grant-full-control":"*"}}}}}},
            {{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::{b}/*","Condition":{{"StringEquals":{{"s3:x-amz-storage-class":"GLACIER"}}}}}}]}}"#
        ),
    )
    .await;
    let copy = |source: String| {
        writer
            .copy_object()
            .bucket(&b)
            .key("copy")
            .copy_source(source)
            .send()
    };
    ok(copy(format!("{b}/public/p")).await, "copy of a public key");
    for source in [
        format!("{b}/secret/s"),
        format!("/{b}/secret/s"),
        format!("{b}/secr%65t/s"),
        format!("/{b}/secret%2Fs"),
    ] {
        assert_eq!(sdk_err(copy(source.clone()).await), denied(), "{source}");
    }
    let granted = writer
        .put_object()
        .bucket(&b)
        .key("g")
        .grant_full_control(format!("id={}", canonical_user_id(W_AK)))
        .body(b"g".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(granted), denied(), "x-amz-grant-full-control");
    let cold = writer
        .put_object()
        .bucket(&b)
        .key("c")
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(b"c".to_vec().into())
        .send()
        .await;
    assert_eq!(sdk_err(cold), denied(), "x-amz-storage-class");
    put(&writer, &b, "plain", b"p").await;
}

/// An object written by another credential than the bucket's owner is that credential's, as
/// S3 with ACLs has it, whether or not the write sent ACL headers: it reads its object and
/// its ACL back, and the ACL names it as owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_belongs_to_the_credential_that_wrote_it() {
    let declared = unique_bucket("declw");
    let env = Env::start(config(&[&declared], false)).await;
    let admin = env.client();
    let reader = env.client_for(R_AK, R_SK);
    let b = unique_bucket("ownw");
    ok(
        admin.create_bucket().bucket(&b).send().await,
        "CreateBucket",
    );
    put_policy(
        &env,
        &b,
        &format!(
            r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{}"}},"Action":"s3:PutObject","Resource":"arn:aws:s3:::{b}/*"}}]}}"#,
            user_arn(R_AK)
        ),
    )
    .await;
    put(&reader, &b, "plain", b"p").await;
    ok(
        reader
            .put_object()
            .bucket(&b)
            .key("private")
            .acl(ObjectCannedAcl::Private)
            .body(b"q".to_vec().into())
            .send()
            .await,
        "PUT with x-amz-acl: private",
    );
    put(&admin, &b, "admins", b"a").await;
    let writer_id = canonical_user_id(R_AK);
    for (key, body) in [("plain", b"p"), ("private", b"q")] {
        assert_eq!(get_bytes(&reader, &b, key).await, body, "{key}");
        let acl = ok(
            reader.get_object_acl().bucket(&b).key(key).send().await,
            "GetObjectAcl by its writer",
        );
        let owner = acl.owner().and_then(|o| o.id()).map(str::to_string);
        assert_eq!(owner, Some(writer_id.clone()), "{key}");
    }
    let acl = ok(
        admin.get_object_acl().bucket(&b).key("admins").send().await,
        "GetObjectAcl of the owner's object",
    );
    assert_eq!(
        acl.owner().and_then(|o| o.id()),
        Some(canonical_user_id(ADMIN_AK).as_str())
    );
    assert_eq!(
        sdk_err(reader.get_object().bucket(&b).key("admins").send().await),
        denied(),
        "the owner's object stays the owner's"
    );
}

/// A bucket that does not exist is NoSuchBucket to anyone, as S3 answers (its absence is no
/// secret), while a bucket that exists stays AccessDenied to who may not use it, and making
/// one stays AccessDenied to who may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_no_such_bucket_to_anyone() {
    let b = unique_bucket("there");
    let env = Env::start(config(&[&b], true)).await;
    let reader = env.client_for(R_AK, R_SK);
    let gone = unique_bucket("nobucket");
    let no_bucket = (404, "NoSuchBucket".to_string());
    assert_eq!(
        sdk_err(reader.get_object().bucket(&gone).key("k").send().await),
        no_bucket
    );
    assert_eq!(
        sdk_err(reader.list_objects_v2().bucket(&gone).send().await),
        no_bucket
    );
    assert_eq!(
        sdk_err(reader.delete_object().bucket(&gone).key("k").send().await),
        no_bucket
    );
    assert_eq!(anon_get(&env, &gone, "k").await, 404);
    assert_eq!(
        sdk_err(reader.create_bucket().bucket(&gone).send().await),
        denied(),
        "no right to make it"
    );
    assert_eq!(
        sdk_err(reader.get_object().bucket(&b).key("k").send().await),
        denied(),
        "a bucket that exists"
    );
    assert_eq!(anon_get(&env, &b, "k").await, 403);
}
