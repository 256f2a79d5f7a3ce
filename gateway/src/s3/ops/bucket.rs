//! Bucket operations: list, create, head, delete, location.

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::StatusCode;
use serde::Deserialize;

use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::ops::common::require_bucket;
use crate::s3::respond::{self, OWNER_NAME};
use crate::store::{BucketOptions, DeleteBucketError};
use crate::xml::{self, XmlWriter};

/// ListBuckets: the buckets the caller holds a grant on, with their creation dates, in
/// name order; `prefix`, `bucket-region`, and pages of `max-buckets` after a
/// `continuation-token` (the last name of the page before, base64url).
pub async fn list_buckets(ctx: &Ctx) -> S3Result<Response> {
    let principal = ctx
        .principal
        .as_ref()
        .and_then(|p| p.access_key())
        .unwrap_or_default();
    let max = match ctx.query("max-buckets") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => {
                return Err(S3Error::invalid_argument(
                    "Argument max-buckets must be an integer between 1 and 10000.",
                )
                .with("ArgumentName", "max-buckets")
                .with("ArgumentValue", v))
            }
        },
    };
    let after = crate::s3::ops::common::continuation_token(ctx)?;
    let prefix = ctx.query("prefix").unwrap_or_default();
    let region = &ctx.compiled.config.region;
    let other_region = ctx.query("bucket-region").is_some_and(|r| r != region);
    let mut buckets: Vec<(String, time::OffsetDateTime)> = ctx
        .gw
        .store
        .list_buckets()
        .await?
        .into_iter()
        .filter_map(|b| {
            let s3 = ctx.compiled.s3_name(&b.nats)?;
            ctx.compiled.permission(principal, &s3)?;
            Some((s3, b.created))
        })
        .filter(|(name, _)| {
            !other_region
                && name.starts_with(prefix)
                && after.as_deref().is_none_or(|a| name.as_str() > a)
        })
        .collect();
    buckets.sort();
    let next = match max {
        Some(n) if buckets.len() > n => {
            buckets.truncate(n);
            buckets.last().map(|(name, _)| URL_SAFE_NO_PAD.encode(name))
        }
        _ => None,
    };
    let mut w = XmlWriter::new("ListAllMyBucketsResult");
    w.open("Owner")
        .elem("ID", crate::s3::ops::access::caller_owner_id(ctx))
        .elem("DisplayName", OWNER_NAME)
        .close("Owner")
        .open("Buckets");
    for (name, created) in &buckets {
        w.open("Bucket")
            .elem("Name", name)
            .elem("CreationDate", respond::iso8601(*created))
            .elem("BucketRegion", region)
            .close("Bucket");
    }
    w.close("Buckets");
    w.opt("ContinuationToken", next);
    w.opt("Prefix", ctx.query("prefix"));
    Ok(respond::xml(w.finish("ListAllMyBucketsResult")))
}

#[derive(Deserialize, Default)]
pub(crate) struct CreateBucketConfiguration {
    #[serde(rename = "LocationConstraint", default)]
    pub(crate) location_constraint: Option<String>,
}

/// CreateBucket: a new object-store bucket, owned by the access key that created it.
pub async fn create_bucket(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    let acl = crate::s3::ops::access::create_bucket_acl(&ctx).await?;
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let cfg: CreateBucketConfiguration = xml::parse(&body)?;
        if let Some(loc) = cfg.location_constraint.filter(|l| !l.is_empty()) {
            if loc != ctx.compiled.config.region {
                return Err(S3Error::new(
                    S3Code::InvalidArgument,
                    "The specified location-constraint is not valid",
                )
                .with("ArgumentName", "LocationConstraint")
                .with("ArgumentValue", loc));
            }
        }
    }
    let opts = match &b.config {
        Some(c) => BucketOptions {
            memory: c.storage == jets3_crds::StorageKind::Memory,
            replicas: c.replicas as usize,
        },
        None => BucketOptions {
            memory: false,
            replicas: 1,
        },
    };
    let caller = ctx.principal.as_ref().and_then(|p| p.access_key());
    // The ACL goes in with the bucket: no reader sees the bucket without its owner.
    let metadata = crate::s3::ops::access::bucket_acl_metadata(&acl);
    let created = ctx
        .gw
        .store
        .create_bucket(&b.nats, &opts, caller, metadata)
        .await;
    // Its state was read to check the request, maybe as a bucket that did not exist.
    ctx.gw.access.forget(&b.nats);
    if !created? {
        // S3's us-east-1 answers its owner 200 and resets the bucket's ACL (to the one the
        // request sets, else private).
        already_there(&ctx, caller).await?;
        crate::s3::ops::access::store_bucket_acl(&ctx, &acl).await?;
    }
    let mut r = respond::empty(StatusCode::OK);
    respond::set(&mut r, "location", format!("/{}", b.s3));
    Ok(r)
}

/// CreateBucket of a bucket that exists: BucketAlreadyExists when another key created
/// it; for the caller's own bucket (or one the config declares), 200 in us-east-1 and
/// BucketAlreadyOwnedByYou elsewhere, as S3 answers.
async fn already_there(ctx: &Ctx, caller: Option<&str>) -> S3Result<()> {
    let b = ctx.bucket_ref()?;
    let info = ctx.gw.store.bucket_info(&b.nats).await?;
    let owner = info.as_ref().and_then(|i| i.owner());
    if owner.is_some_and(|o| Some(o) != caller) {
        return Err(S3Error::new(
            S3Code::BucketAlreadyExists,
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
        )
        .with("BucketName", &b.s3));
    }
    if ctx.compiled.config.region == "us-east-1" {
        return Ok(());
    }
    Err(S3Error::new(
        S3Code::BucketAlreadyOwnedByYou,
        "Your previous request to create the named bucket succeeded and you already own it.",
    )
    .with("BucketName", &b.s3))
}

/// HeadBucket.
pub async fn head_bucket(ctx: &Ctx) -> S3Result<Response> {
    require_bucket(ctx).await?;
    let mut r = respond::empty(StatusCode::OK);
    respond::set(&mut r, "x-amz-bucket-region", &ctx.compiled.config.region);
    Ok(r)
}

/// DeleteBucket: only when no object version (nor delete marker) is left, atomically
/// against writes through any gateway; open multipart uploads go with the bucket.
pub async fn delete_bucket(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    require_bucket(ctx).await?;
    match ctx.gw.store.delete_bucket_if_empty(&b.nats).await {
        Ok(()) => Ok(respond::empty(StatusCode::NO_CONTENT)),
        Err(DeleteBucketError::NotEmpty) => Err(S3Error::new(
            S3Code::BucketNotEmpty,
            "The bucket you tried to delete is not empty",
        )
        .with("BucketName", &b.s3)),
        Err(DeleteBucketError::Store(e)) => Err(match S3Error::from(e) {
            e if e.code == S3Code::NoSuchBucket => S3Error::no_such_bucket(&b.s3),
            e => e,
        }),
    }
}

/// GetBucketLocation: empty for us-east-1, as S3 answers.
pub async fn get_location(ctx: &Ctx) -> S3Result<Response> {
    require_bucket(ctx).await?;
    let region = &ctx.compiled.config.region;
    let mut w = XmlWriter::new("LocationConstraint");
    if region != "us-east-1" {
        w.raw(&xml::escape(region));
    }
    Ok(respond::xml(w.finish("LocationConstraint")))
}
