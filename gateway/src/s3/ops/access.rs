//! The S3 calls that read and set ACLs, bucket policies and Block Public Access, and the
//! ACL a write sets on what it creates.
//!
//! Where the gateway config (an S3Bucket) sets a bucket's policy, Block Public Access or
//! public access, S3 calls that would change it are AccessDenied: the cluster is the
//! source of truth.

use axum::response::Response;
use http::StatusCode;
use jets3_crds::policy::Policy;
use jets3_crds::PublicAccessBlock;
use serde::Deserialize;

use crate::access::acl::{self, Acl, KnownIds};
use crate::access::state::{Stored, ACL_KEY, PAB_KEY, POLICY_KEY};
use crate::auth::Principal;
use crate::config::compiled::{BucketRef, CompiledConfig};
use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::ops::common::set_by_config;
use crate::s3::respond;
use crate::xml::{self, XmlWriter};

impl KnownIds for CompiledConfig {
    fn known(&self, canonical_id: &str) -> bool {
        self.known_canonical_id(canonical_id)
    }
}

/// The caller's canonical id (anonymous callers and tokens write as the jets3 owner).
fn caller_id(ctx: &Ctx) -> String {
    match &ctx.principal {
        Some(Principal::AccessKey(k)) => ctx
            .compiled
            .principal_id(k)
            .map(|p| p.canonical.clone())
            .unwrap_or_else(|| respond::OWNER_ID.to_string()),
        _ => respond::OWNER_ID.to_string(),
    }
}

async fn stored(ctx: &Ctx, b: &BucketRef) -> S3Result<std::sync::Arc<Stored>> {
    ctx.gw.access.get(&ctx.gw.store, &b.s3, &b.nats).await
}

/// The canonical id of the owner of the request's bucket, as its ACL names it (listings show
/// it as every object's owner, as GetObjectAcl does for objects without an ACL of their own).
pub async fn bucket_owner_id(ctx: &Ctx) -> S3Result<String> {
    let b = ctx.bucket_ref()?;
    Ok(bucket_owner(ctx, &*stored(ctx, b).await?))
}

/// The caller's canonical id (the owner ListBuckets shows).
pub fn caller_owner_id(ctx: &Ctx) -> String {
    caller_id(ctx)
}

fn bucket_owner(ctx: &Ctx, s: &Stored) -> String {
    match &s.acl {
        Some(a) => a.owner.clone(),
        None => caller_id(ctx),
    }
}

/// AccessDenied when Block Public Access refuses a public ACL.
fn check_public_acl(acl: &Acl, pab: &PublicAccessBlock) -> S3Result<()> {
    if acl.is_public() && pab.block_public_acls {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            "Access Denied: Block Public Access (BlockPublicAcls) refuses public ACLs on this bucket",
        ));
    }
    Ok(())
}

/// The ACL an object write sets with `x-amz-acl` or `x-amz-grant-*` (`None`: private,
/// owned by the bucket's owner).
pub async fn request_acl(ctx: &Ctx) -> S3Result<Option<Acl>> {
    let b = ctx.bucket_ref()?;
    let s = stored(ctx, b).await?;
    if !acl::requested(&ctx.headers) {
        // Without an ACL of its own the bucket's owner is the caller: nothing to record.
        return Ok(match (&s.acl, writer_key(ctx)) {
            (Some(bucket), Some(_)) => {
                let writer = caller_id(ctx);
                (writer != bucket.owner).then(|| Acl::private(&writer))
            }
            _ => None,
        });
    }
    let owner = bucket_owner(ctx, &s);
    let writer = caller_id(ctx);
    let acl = acl::from_headers(&ctx.headers, &writer, &owner, &*ctx.compiled)?;
    if let Some(a) = &acl {
        check_public_acl(a, &crate::access::public_access_block(&ctx.compiled, b, &s))?;
    }
    Ok(owned_by_writer(
        acl,
        writer_key(ctx).map(|_| writer),
        &owner,
    ))
}

/// The access key of a request signed by one (anonymous and token callers write as the
/// bucket's owner).
fn writer_key(ctx: &Ctx) -> Option<&str> {
    match &ctx.principal {
        Some(Principal::AccessKey(k)) => Some(k),
        _ => None,
    }
}

/// The ACL to store for an object written by `writer` (a credential's canonical id) with
/// the ACL `asked`: the writer owns what it writes, as S3 with ACLs has it, so a private
/// object of another credential than the bucket's owner records that owner; a private one of
/// the bucket's owner (or of no credential) stores nothing, which reads as just that.
fn owned_by_writer(asked: Option<Acl>, writer: Option<String>, bucket_owner: &str) -> Option<Acl> {
    let acl = match (asked, writer) {
        (Some(a), _) => a,
        (None, Some(w)) => Acl::private(&w),
        (None, None) => return None,
    };
    (acl != Acl::private(bucket_owner)).then_some(acl)
}

/// The ACL the canned `acl` field of a POST upload signed by `access_key` sets.
pub async fn form_acl(ctx: &Ctx, access_key: &str, canned: Option<&str>) -> S3Result<Option<Acl>> {
    let b = ctx.bucket_ref()?;
    let s = stored(ctx, b).await?;
    let owner = bucket_owner(ctx, &s);
    let writer = ctx
        .compiled
        .principal_id(access_key)
        .map(|p| p.canonical.clone());
    let acl = match canned {
        Some(canned) => {
            let mut headers = http::HeaderMap::new();
            let value = http::HeaderValue::from_str(canned.trim())
                .map_err(|_| S3Error::invalid_argument("Invalid canned ACL"))?;
            headers.insert("x-amz-acl", value);
            let caller = writer.as_deref().unwrap_or(respond::OWNER_ID);
            acl::from_headers(&headers, caller, &owner, &*ctx.compiled)?
        }
        None => None,
    };
    if let Some(a) = &acl {
        check_public_acl(a, &crate::access::public_access_block(&ctx.compiled, b, &s))?;
    }
    Ok(owned_by_writer(acl, writer, &owner))
}

/// The ACL of a bucket CreateBucket makes: the caller owns it, with the canned ACL or
/// grants it asks for. Checked before the bucket is made.
pub async fn create_bucket_acl(ctx: &Ctx) -> S3Result<Acl> {
    let b = ctx.bucket_ref()?;
    // A bucket that exists (a CreateBucket of its owner resets its ACL) keeps its owner and
    // its own Block Public Access; a new one is the caller's.
    let s = stored(ctx, b).await?;
    let owner = bucket_owner(ctx, &s);
    let acl = acl::from_headers(&ctx.headers, &caller_id(ctx), &owner, &*ctx.compiled)?
        .unwrap_or_else(|| Acl::private(&owner));
    if acl != Acl::private(&owner) && b.public_read() {
        return Err(set_by_config(&b.s3, "public access", "access"));
    }
    check_public_acl(
        &acl,
        &crate::access::public_access_block(&ctx.compiled, b, &s),
    )?;
    Ok(acl)
}

/// A bucket's ACL as the stream metadata a new bucket is made with.
pub fn bucket_acl_metadata(acl: &Acl) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([(ACL_KEY.to_string(), acl.encode())])
}

/// Records a bucket's ACL (its owner first of all).
pub async fn store_bucket_acl(ctx: &Ctx, acl: &Acl) -> S3Result<()> {
    let b = ctx.bucket_ref()?;
    set(ctx, b, ACL_KEY, Some(acl.encode())).await
}

async fn set(ctx: &Ctx, b: &BucketRef, key: &str, value: Option<String>) -> S3Result<()> {
    ctx.gw
        .store
        .set_bucket_metadata(&b.nats, key, value)
        .await?;
    ctx.gw.access.forget(&b.nats);
    Ok(())
}

/// Get(Bucket|Object)Acl.
pub async fn get_acl(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    crate::s3::ops::common::require_bucket(ctx).await?;
    let s = stored(ctx, b).await?;
    let owner = bucket_owner(ctx, &s);
    let acl = match &ctx.key {
        Some(_) => crate::s3::ops::common::require_object(ctx)
            .await?
            .acl
            .unwrap_or_else(|| Acl::private(&owner)),
        None => s.acl.clone().unwrap_or_else(|| Acl::private(&owner)),
    };
    Ok(respond::xml(acl.to_xml()))
}

/// Put(Bucket|Object)Acl: a canned ACL, grant headers, or an AccessControlPolicy body.
pub async fn put_acl(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    crate::s3::ops::common::require_bucket(&ctx).await?;
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    let s = stored(&ctx, &b).await?;
    let bucket_owner = bucket_owner(&ctx, &s);
    let object = match &ctx.key {
        Some(_) => Some(crate::s3::ops::common::require_object(&ctx).await?),
        None => None,
    };
    let owner = match &object {
        Some(m) => m
            .acl
            .as_ref()
            .map_or(bucket_owner.clone(), |a| a.owner.clone()),
        None => bucket_owner.clone(),
    };
    let from_headers = acl::from_headers(&ctx.headers, &owner, &bucket_owner, &*ctx.compiled)?;
    let acl = match (from_headers, body.iter().all(u8::is_ascii_whitespace)) {
        (Some(_), false) => {
            return Err(S3Error::new(
                S3Code::UnexpectedContent,
                "This request does not support content",
            ))
        }
        (Some(a), true) => a,
        (None, false) => acl::from_xml(&body, &owner, &*ctx.compiled)?,
        (None, true) => {
            return Err(S3Error::new(
                S3Code::MissingSecurityHeader,
                "Your request was missing a required header",
            )
            .with("MissingHeaderName", "x-amz-acl"))
        }
    };
    check_public_acl(
        &acl,
        &crate::access::public_access_block(&ctx.compiled, &b, &s),
    )?;
    match object {
        Some(meta) => {
            // Private to the bucket's owner is what no ACL means; anyone else's is recorded.
            let acl = Some(acl).filter(|a| *a != Acl::private(&bucket_owner));
            crate::s3::ops::common::update_object(&ctx, meta, |m| m.acl = acl.clone()).await?;
        }
        None => {
            if b.public_read() {
                return Err(set_by_config(&b.s3, "public access", "access"));
            }
            set(&ctx, &b, ACL_KEY, Some(acl.encode())).await?;
        }
    }
    Ok(respond::empty(StatusCode::OK))
}

fn policy_text<'a>(b: &'a BucketRef, s: &'a Stored) -> Option<&'a str> {
    b.config
        .as_ref()
        .and_then(|c| c.policy.as_deref())
        .or(s.policy.as_ref().map(|(t, _)| t.as_str()))
}

fn no_policy(b: &BucketRef) -> S3Error {
    S3Error::new(
        S3Code::NoSuchBucketPolicy,
        "The bucket policy does not exist",
    )
    .with("BucketName", &b.s3)
}

/// GetBucketPolicy: the document as it was set.
pub async fn get_policy(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    crate::s3::ops::common::require_bucket(ctx).await?;
    let s = stored(ctx, b).await?;
    let text = policy_text(b, &s).ok_or_else(|| no_policy(b))?;
    let mut r = Response::new(axum::body::Body::from(text.to_string()));
    respond::set(&mut r, "content-type", "application/json");
    Ok(r)
}

/// GetBucketPolicyStatus: whether the policy makes the bucket public.
pub async fn get_policy_status(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    crate::s3::ops::common::require_bucket(ctx).await?;
    let s = stored(ctx, b).await?;
    let policy = crate::access::policy(b, &s).ok_or_else(|| no_policy(b))?;
    let mut w = XmlWriter::new("PolicyStatus");
    w.elem(
        "IsPublic",
        if policy.is_public() { "true" } else { "false" },
    );
    Ok(respond::xml(w.finish("PolicyStatus")))
}

fn malformed_policy(why: impl Into<String>) -> S3Error {
    S3Error::new(S3Code::MalformedPolicy, why)
}

/// PutBucketPolicy: validated (syntax, principals that exist, Block Public Access), then
/// stored with the bucket.
pub async fn put_policy(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    if b.policy.is_some() {
        return Err(set_by_config(&b.s3, "policy", "policy"));
    }
    let body = ctx
        .read_small_body(jets3_crds::policy::MAX_POLICY_BYTES + 1)
        .await
        .map_err(|e| match e.code {
            S3Code::MaxMessageLengthExceeded | S3Code::EntityTooLarge => {
                malformed_policy("Policy exceeds the maximum allowed document size")
            }
            _ => e,
        })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| malformed_policy("This policy contains invalid Json"))?;
    let policy = Policy::parse(text, &b.s3).map_err(|e| malformed_policy(e.0))?;
    if let Some(ak) = policy
        .named_access_keys()
        .find(|ak| !ctx.compiled.known_access_key(ak))
    {
        return Err(malformed_policy(format!(
            "Invalid principal in policy: no credential has access key id {ak}"
        )));
    }
    if let Some(id) = policy
        .named_canonical_ids()
        .find(|id| !ctx.compiled.known_canonical_id(id))
    {
        return Err(malformed_policy(format!(
            "Invalid principal in policy: no credential has canonical id {id}"
        )));
    }
    crate::s3::ops::common::require_bucket(&ctx).await?;
    let s = stored(&ctx, &b).await?;
    if policy.is_public()
        && crate::access::public_access_block(&ctx.compiled, &b, &s).block_public_policy
    {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            "Access Denied: Block Public Access (BlockPublicPolicy) refuses public policies on this bucket",
        ));
    }
    set(&ctx, &b, POLICY_KEY, Some(text.to_string())).await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

/// DeleteBucketPolicy.
pub async fn delete_policy(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    if b.policy.is_some() {
        return Err(set_by_config(&b.s3, "policy", "policy"));
    }
    crate::s3::ops::common::require_bucket(ctx).await?;
    set(ctx, b, POLICY_KEY, None).await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

fn pab_by_config(b: &BucketRef) -> Option<PublicAccessBlock> {
    b.config.as_ref().and_then(|c| c.public_access_block)
}

/// GetPublicAccessBlock: the bucket's own setting (config or S3), not the gateway default.
pub async fn get_public_access_block(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    crate::s3::ops::common::require_bucket(ctx).await?;
    let s = stored(ctx, b).await?;
    let pab = pab_by_config(b).or(s.pab).ok_or_else(|| {
        S3Error::new(
            S3Code::NoSuchPublicAccessBlockConfiguration,
            "The public access block configuration was not found",
        )
        .with("BucketName", &b.s3)
    })?;
    let flag = |v: bool| if v { "true" } else { "false" };
    let mut w = XmlWriter::new("PublicAccessBlockConfiguration");
    w.elem("BlockPublicAcls", flag(pab.block_public_acls))
        .elem("IgnorePublicAcls", flag(pab.ignore_public_acls))
        .elem("BlockPublicPolicy", flag(pab.block_public_policy))
        .elem("RestrictPublicBuckets", flag(pab.restrict_public_buckets));
    Ok(respond::xml(w.finish("PublicAccessBlockConfiguration")))
}

#[derive(Deserialize)]
struct PabXml {
    #[serde(rename = "BlockPublicAcls", default)]
    block_public_acls: Option<String>,
    #[serde(rename = "IgnorePublicAcls", default)]
    ignore_public_acls: Option<String>,
    #[serde(rename = "BlockPublicPolicy", default)]
    block_public_policy: Option<String>,
    #[serde(rename = "RestrictPublicBuckets", default)]
    restrict_public_buckets: Option<String>,
}

/// PutPublicAccessBlock: fields left out are false, as on S3.
pub async fn put_public_access_block(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    if pab_by_config(&b).is_some() {
        return Err(set_by_config(
            &b.s3,
            "Block Public Access",
            "publicAccessBlock",
        ));
    }
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    let doc: PabXml = xml::parse(&body)?;
    let flag = |v: Option<String>| match v.as_deref().map(str::trim) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(S3Error::malformed_xml()),
    };
    let pab = PublicAccessBlock {
        block_public_acls: flag(doc.block_public_acls)?,
        ignore_public_acls: flag(doc.ignore_public_acls)?,
        block_public_policy: flag(doc.block_public_policy)?,
        restrict_public_buckets: flag(doc.restrict_public_buckets)?,
    };
    crate::s3::ops::common::require_bucket(&ctx).await?;
    let json = serde_json::to_string(&pab).map_err(S3Error::internal)?;
    set(&ctx, &b, PAB_KEY, Some(json)).await?;
    Ok(respond::empty(StatusCode::OK))
}

/// DeletePublicAccessBlock: the gateway default applies again.
pub async fn delete_public_access_block(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    if pab_by_config(b).is_some() {
        return Err(set_by_config(
            &b.s3,
            "Block Public Access",
            "publicAccessBlock",
        ));
    }
    crate::s3::ops::common::require_bucket(ctx).await?;
    set(ctx, b, PAB_KEY, None).await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}
