//! What every write of an object reads from its request the same way (PutObject, CopyObject,
//! CreateMultipartUpload, CompleteMultipartUpload, PostObject): the headers and tags to
//! store, the headers it cannot honour, its condition, its length; and the checksum headers
//! of its answer.

use axum::response::Response;

use crate::checksum::Algo;
use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond;
use crate::store::meta::STORED_HEADERS;
use crate::store::{Expect, ObjectMeta};

/// The headers to store with a new object: system headers and `x-amz-meta-*`,
/// refusing user metadata over the limit.
pub fn stored_headers(ctx: &Ctx) -> S3Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut meta_bytes = 0usize;
    for (name, value) in &ctx.headers {
        let name = name.as_str();
        let Ok(value) = value.to_str() else {
            if name.starts_with("x-amz-meta-") {
                return Err(S3Error::invalid_argument(format!(
                    "Header value of {name} is not valid text"
                )));
            }
            continue;
        };
        if let Some(user) = name.strip_prefix("x-amz-meta-") {
            meta_bytes += user.len() + value.len();
            out.push((name.to_string(), value.to_string()));
        } else if name == "content-encoding" {
            // aws-chunked is transport framing, not the object's encoding.
            let kept: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("aws-chunked"))
                .collect();
            if !kept.is_empty() {
                out.push((name.to_string(), kept.join(",")));
            }
        } else if STORED_HEADERS.contains(&name) {
            out.push((name.to_string(), value.to_string()));
        }
    }
    let limit = ctx.compiled.config.limits.max_metadata_bytes;
    if meta_bytes > limit {
        return Err(S3Error::new(
            S3Code::MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size.",
        )
        .with("MaxSizeAllowed", limit.to_string())
        .with("Size", meta_bytes.to_string()));
    }
    out.sort();
    Ok(out)
}

/// Tags from the `x-amz-tagging` header.
pub fn header_tags(ctx: &Ctx) -> S3Result<Vec<(String, String)>> {
    let Some(v) = ctx.header("x-amz-tagging") else {
        return Ok(Vec::new());
    };
    let tags = crate::store::decode_tags(v);
    crate::s3::ops::tagging::validate_tags(&tags, 10)?;
    Ok(tags)
}

/// Refuses storage classes and encryption settings the gateway cannot honour.
pub fn check_unsupported_headers(ctx: &Ctx) -> S3Result<()> {
    if let Some(sc) = ctx.header("x-amz-storage-class") {
        if sc != "STANDARD" {
            return Err(S3Error::new(
                S3Code::InvalidStorageClass,
                "The storage class you specified is not valid",
            )
            .with("StorageClassRequested", sc));
        }
    }
    for h in [
        "x-amz-server-side-encryption",
        "x-amz-server-side-encryption-customer-algorithm",
        "x-amz-object-lock-mode",
        "x-amz-website-redirect-location",
    ] {
        if ctx.headers.contains_key(h) {
            return Err(S3Error::not_implemented(&format!("The {h} header")));
        }
    }
    Ok(())
}

/// What a conditional write (`If-None-Match: *`, `If-Match`) expects.
pub fn write_expectation(ctx: &Ctx) -> S3Result<Expect> {
    match (ctx.header("if-none-match"), ctx.header("if-match")) {
        (Some(_), Some(_)) => Err(S3Error::not_implemented(
            "Combining If-None-Match and If-Match on writes",
        )),
        (Some(v), None) if v.trim() == "*" => Ok(Expect::Absent),
        (Some(_), None) => Err(S3Error::not_implemented(
            "If-None-Match with a value other than * on writes",
        )),
        (None, Some(v)) => Ok(crate::s3::common::if_match(v.trim().trim_matches('"'))),
        (None, None) => Ok(Expect::Any),
    }
}

/// Response headers announcing the stored checksums.
pub fn checksum_headers(resp: &mut Response, meta: &ObjectMeta) {
    for (algo, value) in &meta.checksums {
        if let Some(a) = Algo::parse(algo) {
            respond::set(resp, a.header(), value);
        }
    }
    if let Some(t) = &meta.checksum_type {
        respond::set(resp, "x-amz-checksum-type", t);
    }
}

/// Requires a declared body length, and refuses one over `max`.
pub fn check_length(ctx: &Ctx, max: u64) -> S3Result<()> {
    let declared = ctx.declared_length()?;
    if declared.is_none() && !ctx.headers.contains_key(http::header::TRANSFER_ENCODING) {
        return Err(S3Error::new(
            S3Code::MissingContentLength,
            "You must provide the Content-Length HTTP header.",
        ));
    }
    if let Some(len) = declared {
        if len > max {
            return Err(S3Error::new(
                S3Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size",
            )
            .with("ProposedSize", len.to_string())
            .with("MaxSizeAllowed", max.to_string()));
        }
    }
    Ok(())
}
