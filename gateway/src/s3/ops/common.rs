//! Helpers several operation families share: the addressed bucket and object, the version
//! header, refusals of what the config owns, the continuation token of a listing.

use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond;
use crate::store::{ObjectMeta, Record, Versioning};

/// Fails with NoSuchBucket unless the bucket exists.
pub async fn require_bucket(ctx: &Ctx) -> S3Result<crate::store::BucketInfo> {
    let b = ctx.bucket_ref()?;
    ctx.gw
        .store
        .bucket_info(&b.nats)
        .await?
        .ok_or_else(|| S3Error::no_such_bucket(&b.s3))
}

/// The addressed object (the version `versionId` names, else the current one), or the
/// error S3 gives: NoSuchKey (with the delete marker's headers when one is current),
/// NoSuchVersion, or MethodNotAllowed for a delete marker named by id.
pub async fn require_object(ctx: &Ctx) -> S3Result<ObjectMeta> {
    let key = ctx.key()?;
    let bucket = ctx.store_bucket()?;
    let record = match ctx.version_id()? {
        None => match bucket.current(key).await? {
            Record::Marker(m) => {
                return Err(S3Error::no_such_key(key)
                    .header("x-amz-delete-marker", "true")
                    .header("x-amz-version-id", version_label(m.version.as_deref())))
            }
            other => other,
        },
        Some(v) => match bucket.version(key, v.as_deref()).await? {
            Some(Record::Marker(m)) => {
                return Err(S3Error::new(
                    S3Code::MethodNotAllowed,
                    "The specified method is not allowed against this resource.",
                )
                .with("Method", ctx.method.as_str())
                .with("ResourceType", "DeleteMarker")
                .header("x-amz-delete-marker", "true")
                .header("x-amz-version-id", version_label(m.version.as_deref()))
                .header("last-modified", respond::http_date(m.modified)))
            }
            Some(r) => r,
            None => {
                return Err(S3Error::new(
                    S3Code::NoSuchVersion,
                    "The specified version does not exist.",
                )
                .with("Key", key)
                .with("VersionId", version_label(v.as_deref())))
            }
        },
    };
    let meta = record.object().ok_or_else(|| S3Error::no_such_key(key))?;
    if meta.is_link {
        return Err(S3Error::not_implemented("Reading NATS object links"));
    }
    Ok(meta)
}

/// Writes `change` into the metadata of the version the request addresses (`meta`, as read
/// for it), reading it again and changing it again when another write to the key's metadata
/// (a tagging or ACL change, the collector's compaction of the version) lands in between:
/// these changes are unconditional in S3, not conflicts to report.
pub async fn update_object(
    ctx: &Ctx,
    mut meta: ObjectMeta,
    change: impl Fn(&mut ObjectMeta),
) -> S3Result<ObjectMeta> {
    const TRIES: usize = 16;
    for _ in 1..TRIES {
        change(&mut meta);
        match ctx
            .store_bucket()?
            .update_meta(&meta)
            .await
            .map_err(S3Error::from)
        {
            Err(e) if e.code == S3Code::ConditionalRequestConflict => {
                meta = require_object(ctx).await?;
            }
            done => return done,
        }
    }
    change(&mut meta);
    Ok(ctx.store_bucket()?.update_meta(&meta).await?)
}

/// A version id as S3 shows it (`null` for the null version).
pub fn version_label(v: Option<&str>) -> String {
    v.unwrap_or("null").to_string()
}

/// Sets `x-amz-version-id` for a version of a bucket in versioning mode `mode`: its id, or
/// `null` once the bucket has had versioning; nothing for a bucket that never had it.
pub fn version_header(resp: &mut Response, version: Option<&str>, mode: Versioning) {
    match version {
        Some(v) => respond::set(resp, "x-amz-version-id", v),
        None if mode.has_history() => respond::set(resp, "x-amz-version-id", "null"),
        None => {}
    }
}

/// AccessDenied for a change the config owns.
pub fn set_by_config(bucket: &str, what: &str, field: &str) -> S3Error {
    S3Error::new(
        S3Code::AccessDenied,
        format!(
            "Access Denied: the {what} of bucket {bucket} is set by its configuration (the S3Bucket's spec.{field}); change it there"
        ),
    )
}

/// The `continuation-token` of a listing (ListBuckets, ListObjectsV2), decoded, if sent.
pub fn continuation_token(ctx: &Ctx) -> S3Result<Option<String>> {
    ctx.query("continuation-token")
        .map(|t| {
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    S3Error::invalid_argument("The continuation token provided is incorrect")
                        .with("ArgumentName", "continuation-token")
                })
        })
        .transpose()
}
