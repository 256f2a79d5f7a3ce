//! Object and bucket tagging.

use std::collections::HashSet;

use axum::response::Response;
use http::StatusCode;
use serde::Deserialize;

use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::ops::common::update_object;
use crate::s3::respond;
use crate::store::{decode_tags, encode_tags, ObjectMeta};
use crate::xml::{self, XmlWriter};

/// Stream metadata key holding a bucket's tags.
const BUCKET_TAGS: &str = "jets3.tagging";

/// Checks S3's tag rules: count, key and value lengths, unique keys, no `aws:` keys.
pub fn validate_tags(tags: &[(String, String)], max: usize) -> S3Result<()> {
    let invalid = |msg: &str| S3Error::new(S3Code::InvalidTag, msg.to_string());
    if tags.len() > max {
        return Err(invalid(&format!(
            "Object tags cannot be greater than {max}"
        )));
    }
    let mut seen = HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid("The TagKey you have provided is invalid"));
        }
        if v.chars().count() > 256 {
            return Err(invalid("The TagValue you have provided is invalid"));
        }
        if k.starts_with("aws:") {
            return Err(invalid("Your TagKey cannot be prefixed with aws:"));
        }
        if !seen.insert(k.as_str()) {
            return Err(invalid("Cannot provide multiple Tags with the same key"));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct Tagging {
    #[serde(rename = "TagSet")]
    tag_set: TagSet,
}

#[derive(Deserialize)]
struct TagSet {
    #[serde(rename = "Tag", default)]
    tags: Vec<Tag>,
}

#[derive(Deserialize)]
struct Tag {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "Value", default)]
    value: String,
}

/// Parses and validates a `<Tagging>` document of at most `max` tags.
pub fn parse_tagging(doc: &[u8], max: usize) -> S3Result<Vec<(String, String)>> {
    let t: Tagging = xml::parse(doc)?;
    let tags: Vec<(String, String)> = t
        .tag_set
        .tags
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect();
    validate_tags(&tags, max)?;
    Ok(tags)
}

async fn read_tags(ctx: &mut Ctx, max: usize) -> S3Result<Vec<(String, String)>> {
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    parse_tagging(&body, max)
}

fn render(tags: &[(String, String)]) -> Response {
    let mut w = XmlWriter::new("Tagging");
    w.open("TagSet");
    for (k, v) in tags {
        w.open("Tag").elem("Key", k).elem("Value", v).close("Tag");
    }
    w.close("TagSet");
    respond::xml(w.finish("Tagging"))
}

/// GetObjectTagging.
pub async fn get_object_tagging(ctx: &Ctx) -> S3Result<Response> {
    let meta = crate::s3::ops::common::require_object(ctx).await?;
    with_version(ctx, &meta, render(&meta.tags)).await
}

/// PutObjectTagging: replaces the tag set (metadata only, no data copy).
pub async fn put_object_tagging(mut ctx: Ctx) -> S3Result<Response> {
    let tags = read_tags(&mut ctx, 10).await?;
    let meta = crate::s3::ops::common::require_object(&ctx).await?;
    let meta = update_object(&ctx, meta, |m| m.tags = tags.clone()).await?;
    with_version(&ctx, &meta, respond::empty(StatusCode::OK)).await
}

/// DeleteObjectTagging.
pub async fn delete_object_tagging(ctx: &Ctx) -> S3Result<Response> {
    let mut meta = crate::s3::ops::common::require_object(ctx).await?;
    if !meta.tags.is_empty() {
        meta = update_object(ctx, meta, |m| m.tags.clear()).await?;
    }
    with_version(ctx, &meta, respond::empty(StatusCode::NO_CONTENT)).await
}

/// `resp` with `x-amz-version-id` naming the version whose tags it read or changed.
async fn with_version(ctx: &Ctx, meta: &ObjectMeta, mut resp: Response) -> S3Result<Response> {
    let mode = ctx.store_bucket()?.versioning().await?;
    crate::s3::ops::common::version_header(&mut resp, meta.version.as_deref(), mode);
    Ok(resp)
}

/// GetBucketTagging: NoSuchTagSet when none is set.
pub async fn get_bucket_tagging(ctx: &Ctx) -> S3Result<Response> {
    let info = crate::s3::ops::common::require_bucket(ctx).await?;
    match info.metadata.get(BUCKET_TAGS) {
        Some(t) if !t.is_empty() => Ok(render(&decode_tags(t))),
        _ => Err(S3Error::new(
            S3Code::NoSuchTagSet,
            "The TagSet does not exist",
        )),
    }
}

/// PutBucketTagging.
pub async fn put_bucket_tagging(mut ctx: Ctx) -> S3Result<Response> {
    let tags = read_tags(&mut ctx, 50).await?;
    let b = ctx.bucket_ref()?.clone();
    crate::s3::ops::common::require_bucket(&ctx).await?;
    ctx.gw
        .store
        .set_bucket_metadata(&b.nats, BUCKET_TAGS, Some(encode_tags(&tags)))
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

/// DeleteBucketTagging.
pub async fn delete_bucket_tagging(ctx: &Ctx) -> S3Result<Response> {
    let b = ctx.bucket_ref()?;
    crate::s3::ops::common::require_bucket(ctx).await?;
    ctx.gw
        .store
        .set_bucket_metadata(&b.nats, BUCKET_TAGS, None)
        .await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn tag_rules() {
        assert!(validate_tags(&[t("a", "1"), t("b", "")], 10).is_ok());
        assert!(validate_tags(&[t("a", "1"), t("a", "2")], 10).is_err());
        assert!(validate_tags(&[t("", "1")], 10).is_err());
        assert!(validate_tags(&[t("aws:x", "1")], 10).is_err());
        assert!(validate_tags(&[t(&"k".repeat(129), "1")], 10).is_err());
        assert!(validate_tags(&[t("k", &"v".repeat(257))], 10).is_err());
        let many: Vec<_> = (0..11).map(|i| t(&i.to_string(), "v")).collect();
        assert!(validate_tags(&many, 10).is_err());
        assert!(validate_tags(&many, 50).is_ok());
    }
}
