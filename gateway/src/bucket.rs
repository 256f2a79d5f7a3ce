//! Bucket operations: list, create, head, delete, location.

use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use crate::error::{S3Code, S3Error, S3Result};
use crate::request::Ctx;
use crate::respond::{self, OWNER_ID, OWNER_NAME};
use crate::store::{BucketOptions, DeleteBucketError};
use crate::xml::{self, XmlWriter};

/// ListBuckets: the buckets the caller holds a grant on, with their creation dates.
pub async fn list_buckets(ctx: &Ctx) -> S3Result<Response> {
    let principal = ctx
        .principal
        .as_ref()
        .and_then(|p| p.access_key())
        .unwrap_or_default();
    let mut buckets: Vec<(String, time::OffsetDateTime)> = ctx
        .gw
        .store
        .list_buckets()
        .await?
        .into_iter()
        .filter_map(|b| {
            let s3 = ctx.rt.s3_name(&b.nats)?;
            ctx.rt.permission(principal, &s3)?;
            Some((s3, b.created))
        })
        .collect();
    buckets.sort();
    let mut w = XmlWriter::new("ListAllMyBucketsResult");
    w.open("Owner")
        .elem("ID", OWNER_ID)
        .elem("DisplayName", OWNER_NAME)
        .close("Owner")
        .open("Buckets");
    for (name, created) in &buckets {
        w.open("Bucket")
            .elem("Name", name)
            .elem("CreationDate", respond::iso8601(*created))
            .close("Bucket");
    }
    w.close("Buckets");
    Ok(respond::xml(w.finish("ListAllMyBucketsResult")))
}

#[derive(Deserialize, Default)]
pub(crate) struct CreateBucketConfiguration {
    #[serde(rename = "LocationConstraint", default)]
    pub(crate) location_constraint: Option<String>,
}

/// CreateBucket: a new object-store bucket; BucketAlreadyOwnedByYou if it exists.
pub async fn create_bucket(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    let acl = crate::access::api::create_bucket_acl(&ctx)?;
    let limit = ctx.rt.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let cfg: CreateBucketConfiguration = xml::parse(&body)?;
        if let Some(loc) = cfg.location_constraint.filter(|l| !l.is_empty()) {
            if loc != ctx.rt.config.region {
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
    if !ctx.gw.store.create_bucket(&b.nats, &opts).await? {
        return Err(S3Error::new(
            S3Code::BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it.",
        )
        .with("BucketName", &b.s3));
    }
    crate::access::api::store_bucket_acl(&ctx, &acl).await?;
    let mut r = respond::empty(StatusCode::OK);
    respond::set(&mut r, "location", format!("/{}", b.s3));
    Ok(r)
}

/// Fails with NoSuchBucket unless the bucket exists.
pub async fn require_bucket(ctx: &Ctx) -> S3Result<crate::store::BucketInfo> {
    let b = ctx.bucket_ref()?;
    ctx.gw
        .store
        .bucket_info(&b.nats)
        .await?
        .ok_or_else(|| S3Error::no_such_bucket(&b.s3))
}

/// HeadBucket.
pub async fn head_bucket(ctx: &Ctx) -> S3Result<Response> {
    require_bucket(ctx).await?;
    let mut r = respond::empty(StatusCode::OK);
    respond::set(&mut r, "x-amz-bucket-region", &ctx.rt.config.region);
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
        Err(DeleteBucketError::S3(e)) => Err(match e.code {
            S3Code::NoSuchBucket => S3Error::no_such_bucket(&b.s3),
            _ => e,
        }),
    }
}

/// GetBucketLocation: empty for us-east-1, as S3 answers.
pub async fn get_location(ctx: &Ctx) -> S3Result<Response> {
    require_bucket(ctx).await?;
    let region = &ctx.rt.config.region;
    let mut w = XmlWriter::new("LocationConstraint");
    if region != "us-east-1" {
        w.raw(&xml::escape(region));
    }
    Ok(respond::xml(w.finish("LocationConstraint")))
}
