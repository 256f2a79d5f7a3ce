//! GetBucketVersioning, PutBucketVersioning, and the version headers other operations set.

use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond;
use crate::store::Versioning;
use crate::xml::{self, XmlWriter};

/// GetBucketVersioning: `Status` once versioning was ever turned on.
pub async fn get_versioning(ctx: &Ctx) -> S3Result<Response> {
    crate::s3::ops::common::require_bucket(ctx).await?;
    let mode = ctx.store_bucket()?.versioning().await?;
    let mut w = XmlWriter::new("VersioningConfiguration");
    w.opt("Status", mode.status());
    Ok(respond::xml(w.finish("VersioningConfiguration")))
}

#[derive(Deserialize)]
pub(crate) struct VersioningConfiguration {
    #[serde(rename = "Status", default)]
    pub(crate) status: Option<String>,
    #[serde(rename = "MfaDelete", default)]
    pub(crate) mfa_delete: Option<String>,
}

/// PutBucketVersioning: `Enabled` or `Suspended`. Refused when the gateway config (an
/// S3Bucket) sets the bucket's versioning: the cluster is the source of truth.
pub async fn put_versioning(mut ctx: Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?.clone();
    if b.read_only() {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            "Access Denied: the bucket is read-only",
        ));
    }
    if b.declared_versioning().is_some() {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            format!(
                "Access Denied: the versioning of bucket {} is set by its configuration (the S3Bucket's spec.versioning); change it there",
                b.s3
            ),
        ));
    }
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    let cfg: VersioningConfiguration = xml::parse(&body)?;
    if cfg.mfa_delete.as_deref() == Some("Enabled") {
        return Err(S3Error::not_implemented("MFA Delete"));
    }
    if cfg.mfa_delete.as_deref().is_some_and(|m| m != "Disabled") {
        return Err(S3Error::malformed_xml());
    }
    let mode = match cfg.status.as_deref() {
        Some(s) => Versioning::parse(s).ok_or_else(S3Error::malformed_xml)?,
        // No Status: nothing to change.
        None => return Ok(respond::empty(StatusCode::OK)),
    };
    crate::s3::ops::common::require_bucket(&ctx).await?;
    ctx.gw.store.set_versioning(&b.nats, mode).await?;
    Ok(respond::empty(StatusCode::OK))
}
