//! CopyObject, and the copy-source parsing and conditions shared with UploadPartCopy.

use axum::response::Response;
use futures::StreamExt;

use crate::checksum::{Algo, Running};
use crate::error::{S3Error, S3Result};
use crate::s3::common::etag_matches;
use crate::s3::context::{BodyStream, Ctx};
use crate::s3::respond;
use crate::store::{Bucket, Finished, NewObject, ObjectMeta, Record};
use crate::xml::XmlWriter;

/// The object named by `x-amz-copy-source`, after access and condition checks.
pub struct Source {
    pub bucket: Bucket,
    pub meta: ObjectMeta,
    pub same_as_target: bool,
}

/// Resolves `x-amz-copy-source`, checks read access and the copy-source conditions.
pub async fn source(ctx: &Ctx) -> S3Result<Source> {
    let raw = ctx
        .header("x-amz-copy-source")
        .ok_or_else(|| S3Error::invalid_argument("x-amz-copy-source is required"))?;
    let (path, version) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let version: Option<Option<String>> = match version {
        None => None,
        Some(q) => match q.strip_prefix("versionId=") {
            Some("null") => Some(None),
            Some(v) if crate::store::meta::valid_version_id(v) => Some(Some(v.to_string())),
            _ => {
                return Err(S3Error::invalid_argument("Invalid version id specified")
                    .with("ArgumentName", "x-amz-copy-source")
                    .with("ArgumentValue", raw))
            }
        },
    };
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| S3Error::invalid_argument("Invalid copy source encoding"))?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (src_bucket, src_key) = decoded
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| {
            S3Error::invalid_argument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            )
            .with("ArgumentName", "x-amz-copy-source")
            .with("ArgumentValue", raw)
        })?;
    let bref = ctx.compiled.bucket(src_bucket)?;
    let asked = version.as_ref().map(|v| v.as_deref().unwrap_or("null"));
    crate::s3::api::admit_copy_source(ctx, &bref, src_key, asked).await?;
    let bucket = ctx
        .gw
        .store
        .bucket(&bref.nats)
        .with_versioning(bref.declared_versioning());
    let record = match &version {
        None => bucket.current(src_key).await?,
        Some(v) => bucket
            .version(src_key, v.as_deref())
            .await?
            .ok_or_else(|| {
                S3Error::new(
                    crate::error::S3Code::NoSuchVersion,
                    "The specified version does not exist.",
                )
                .with("Key", src_key)
                .with("VersionId", v.as_deref().unwrap_or("null"))
            })?,
    };
    let meta = match record {
        Record::Object(m) if !m.is_link => *m,
        Record::Marker(_) if version.is_some() => {
            return Err(S3Error::invalid_request(
                "The source of a copy request may not specifically refer to a delete marker by version id.",
            ))
        }
        _ => return Err(S3Error::no_such_key(src_key)),
    };
    check_source_conditions(ctx, &meta)?;
    // A copy of a version named by id onto its own key restores it (S3's way to bring a
    // previous version back, also over a delete marker): not a copy "to itself".
    let same_as_target = version.is_none()
        && ctx.bucket.as_ref().map(|b| b.s3.as_str()) == Some(src_bucket)
        && ctx.key.as_deref() == Some(src_key);
    Ok(Source {
        bucket,
        meta,
        same_as_target,
    })
}

fn check_source_conditions(ctx: &Ctx, meta: &ObjectMeta) -> S3Result<()> {
    let modified = meta.modified.replace_nanosecond(0).unwrap_or(meta.modified);
    let date = |h: &str| ctx.header(h).and_then(respond::parse_http_date);
    let if_match = ctx.header("x-amz-copy-source-if-match");
    if let Some(m) = if_match {
        if !etag_matches(m, &meta.etag) {
            return Err(S3Error::precondition_failed("x-amz-copy-source-If-Match"));
        }
    } else if let Some(t) = date("x-amz-copy-source-if-unmodified-since") {
        if modified > t {
            return Err(S3Error::precondition_failed(
                "x-amz-copy-source-If-Unmodified-Since",
            ));
        }
    }
    let if_none = ctx.header("x-amz-copy-source-if-none-match");
    if let Some(m) = if_none {
        if etag_matches(m, &meta.etag) {
            return Err(S3Error::precondition_failed(
                "x-amz-copy-source-If-None-Match",
            ));
        }
    } else if let Some(t) = date("x-amz-copy-source-if-modified-since") {
        if modified <= t {
            return Err(S3Error::precondition_failed(
                "x-amz-copy-source-If-Modified-Since",
            ));
        }
    }
    Ok(())
}

/// A body stream reading `[start, end)` of the source while computing `algos`.
pub fn source_stream(src: &Source, start: u64, end: u64, algos: &[Algo]) -> (BodyStream, Running) {
    let running = Running::new(algos);
    let r = running.clone();
    let stream = src.bucket.read(&src.meta, start, end).map(move |piece| {
        if let Ok(b) = &piece {
            r.update(b);
        }
        piece.map_err(S3Error::from)
    });
    (Box::pin(stream), running)
}

/// CopyObject: streams the source into a new object (never whole in memory).
pub async fn copy_object(ctx: &Ctx) -> S3Result<Response> {
    let key = ctx.key()?.to_string();
    crate::s3::ops::write::check_unsupported_headers(ctx)?;
    let src = source(ctx).await?;
    let replace_meta = match ctx.header("x-amz-metadata-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(S3Error::invalid_argument("Unknown metadata directive.")
                .with("ArgumentName", "x-amz-metadata-directive")
                .with("ArgumentValue", other))
        }
    };
    let replace_tags = match ctx.header("x-amz-tagging-directive") {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(S3Error::invalid_argument("Unknown tagging directive.")
                .with("ArgumentName", "x-amz-tagging-directive")
                .with("ArgumentValue", other))
        }
    };
    let requested_algo = match ctx.header("x-amz-checksum-algorithm") {
        Some(a) => Some(Algo::parse(a).ok_or_else(|| {
            S3Error::invalid_request(format!("Checksum algorithm {a} is not supported"))
        })?),
        None => None,
    };
    if src.same_as_target && !replace_meta && !replace_tags && requested_algo.is_none() {
        return Err(S3Error::invalid_request(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let max = ctx.max_object_size();
    if src.meta.size > max {
        return Err(S3Error::invalid_request(
            "The specified copy source is larger than the maximum allowable size for a copy source",
        ));
    }
    let headers = if replace_meta {
        crate::s3::ops::write::stored_headers(ctx)?
    } else {
        src.meta.headers.clone()
    };
    let tags = if replace_tags {
        crate::s3::ops::write::header_tags(ctx)?
    } else {
        src.meta.tags.clone()
    };
    let algos: Vec<Algo> = match requested_algo {
        Some(a) => vec![a],
        None => src
            .meta
            .checksums
            .iter()
            .filter_map(|(a, _)| Algo::parse(a))
            .collect(),
    };
    let (body, hashers) = source_stream(&src, 0, src.meta.size, &algos);
    let obj = NewObject {
        key,
        headers,
        tags,
        parts: Vec::new(),
        acl: crate::s3::ops::access::request_acl(ctx).await?,
    };
    let expect = crate::s3::ops::write::write_expectation(ctx)?;
    let meta = ctx
        .store_bucket()?
        .put(obj, body, max, (expect, None), |_| {
            let checksums: Vec<(String, String)> = hashers
                .finish()
                .into_iter()
                .map(|(a, v)| (a.name().to_string(), v))
                .collect();
            Ok(Finished::full_object(checksums))
        })
        .await?;
    let mut w = XmlWriter::new("CopyObjectResult");
    w.elem("LastModified", respond::iso8601(meta.modified))
        .elem("ETag", respond::quote(&meta.etag));
    for (algo, value) in &meta.checksums {
        if let Some(a) = Algo::parse(algo) {
            w.elem(a.element(), value);
        }
    }
    let mut resp = respond::xml(w.finish("CopyObjectResult"));
    crate::s3::ops::write::checksum_headers(&mut resp, &meta);
    let src_mode = src.bucket.versioning().await?;
    if src.meta.version.is_some() || src_mode.has_history() {
        respond::set(
            &mut resp,
            "x-amz-copy-source-version-id",
            src.meta.version.as_deref().unwrap_or("null"),
        );
    }
    let mode = ctx.store_bucket()?.versioning().await?;
    crate::s3::ops::common::version_header(&mut resp, meta.version.as_deref(), mode);
    Ok(resp)
}
