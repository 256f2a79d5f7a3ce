//! GetObject, HeadObject (ranges, part numbers, conditions) and GetObjectAttributes.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use time::OffsetDateTime;

use crate::checksum::Algo;
use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::common::etag_matches;
use crate::s3::context::Ctx;
use crate::s3::ops::common::require_object;
use crate::s3::respond;
use crate::store::ObjectMeta;
use crate::xml::XmlWriter;

/// A byte range `[start, end)` of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

/// Parses a `Range` header against an object size. `Ok(None)`: serve the whole object
/// (no header, or one S3 ignores); `Err`: InvalidRange.
pub fn parse_range(header: &str, size: u64) -> S3Result<Option<Span>> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let invalid = || {
        S3Error::new(
            S3Code::InvalidRange,
            "The requested range is not satisfiable",
        )
        .with("RangeRequested", header)
        .with("ActualObjectSize", size.to_string())
    };
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(invalid());
        }
        return Ok(Some(Span {
            start: size.saturating_sub(n),
            end: size,
        }));
    }
    let Ok(start) = a.parse::<u64>() else {
        return Ok(None);
    };
    let end = if b.is_empty() {
        size
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e.saturating_add(1).min(size),
            _ => return Ok(None),
        }
    };
    if start >= size {
        return Err(invalid());
    }
    Ok(Some(Span { start, end }))
}

/// Evaluates If-Match / If-Unmodified-Since (412) and If-None-Match / If-Modified-Since
/// (304) the way S3 does.
pub fn check_conditions(ctx: &Ctx, meta: &ObjectMeta) -> S3Result<()> {
    evaluate_conditions(
        |name| ctx.header(name),
        &meta.etag,
        meta.modified,
        OffsetDateTime::now_utc(),
    )
}

/// [`check_conditions`] on the request headers `header` gives, for an object with `etag`
/// last modified at `last_modified`.
pub fn evaluate_conditions<'h>(
    header: impl Fn(&str) -> Option<&'h str>,
    etag: &str,
    last_modified: OffsetDateTime,
    now: OffsetDateTime,
) -> S3Result<()> {
    let modified = last_modified.replace_nanosecond(0).unwrap_or(last_modified);
    if let Some(m) = header("if-match") {
        if !etag_matches(m, etag) {
            return Err(S3Error::precondition_failed("If-Match"));
        }
    } else if let Some(t) = header("if-unmodified-since").and_then(respond::parse_http_date) {
        if modified > t {
            return Err(S3Error::precondition_failed("If-Unmodified-Since"));
        }
    }
    let not_modified = || {
        S3Error::new(S3Code::NotModified, "Not Modified")
            .header("etag", respond::quote(etag))
            .header("last-modified", respond::http_date(last_modified))
    };
    if let Some(m) = header("if-none-match") {
        if etag_matches(m, etag) {
            return Err(not_modified());
        }
    } else if let Some(t) = header("if-modified-since").and_then(respond::parse_http_date) {
        if modified <= t && t <= now {
            return Err(not_modified());
        }
    }
    Ok(())
}

/// The checksum of part `n` (1-based) of a composite multipart object.
fn part_checksum(meta: &ObjectMeta, n: usize) -> Option<(Algo, &str)> {
    let algo = meta.checksums.first().and_then(|(a, _)| Algo::parse(a))?;
    let value = meta.part_checksums.get(n.checked_sub(1)?)?;
    Some((algo, value))
}

/// The span of part `n` (1-based) of an object.
fn part_span(meta: &ObjectMeta, n: usize) -> Option<Span> {
    if meta.parts.is_empty() {
        return (n == 1).then_some(Span {
            start: 0,
            end: meta.size,
        });
    }
    let start: u64 = meta.parts.iter().take(n.checked_sub(1)?).sum();
    let len = *meta.parts.get(n - 1)?;
    Some(Span {
        start,
        end: start + len,
    })
}

const OVERRIDES: [(&str, &str); 6] = [
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

/// Headers that describe the object on GET and HEAD.
pub fn object_headers(resp: &mut Response, meta: &ObjectMeta) {
    respond::set(resp, "etag", respond::quote(&meta.etag));
    respond::set(resp, "last-modified", respond::http_date(meta.modified));
    respond::set(resp, "content-type", meta.content_type());
    for (name, value) in &meta.headers {
        if name == "content-type" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
    if !meta.tags.is_empty() {
        respond::set(resp, "x-amz-tagging-count", meta.tags.len().to_string());
    }
}

/// The largest object the bucket caches, when this request may use the cache.
fn cache_limit(ctx: &Ctx) -> Option<u64> {
    let c = ctx.bucket.as_ref()?.config.as_ref()?.cache?;
    let plain = ctx.query("versionId").is_none() && ctx.query("partNumber").is_none();
    (c.enabled && plain).then_some(c.max_object_bytes)
}

/// GetObject and HeadObject. A key with no object answers 404 only to a caller who may
/// list the bucket, and 403 to others (S3's rule: they learn nothing a listing would not
/// tell them).
pub async fn get_object(ctx: &Ctx, head: bool) -> S3Result<Response> {
    let read = read_object(ctx, head).await;
    let Err(e) = &read else { return read };
    if e.code != S3Code::NoSuchKey {
        return read;
    }
    let s = crate::access::Subject {
        ep: ctx.ep,
        bucket: ctx.bucket.as_ref(),
        key: ctx.key.as_deref(),
        principal: ctx.principal.as_ref(),
        headers: &ctx.headers,
        query: &ctx.query,
        client: &ctx.client,
        presigned: ctx.query("X-Amz-Signature").is_some(),
    };
    if crate::access::missing_key_is_404(&s)
        && !crate::access::may_list(&ctx.gw, &ctx.compiled, &s).await
    {
        return Err(S3Error::access_denied());
    }
    read
}

async fn read_object(ctx: &Ctx, head: bool) -> S3Result<Response> {
    let limit = cache_limit(ctx);
    let (nats, key) = (&ctx.bucket_ref()?.nats, ctx.key()?);
    let hit = limit.and_then(|_| ctx.gw.cache.lookup(nats, key));
    let fill = match (&hit, limit) {
        (None, Some(max)) if !head && ctx.header("range").is_none() => {
            ctx.gw.cache.begin_fill(nats, key, max)
        }
        _ => None,
    };
    let fetched;
    let meta = match &hit {
        Some(h) => &h.meta,
        None => {
            fetched = require_object(ctx).await?;
            &fetched
        }
    };
    check_conditions(ctx, meta)?;
    let part_number = match ctx.query("partNumber") {
        None => None,
        Some(p) => match p.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => {
                return Err(S3Error::invalid_argument(
                    "Part number must be an integer between 1 and 10000, inclusive",
                )
                .with("ArgumentName", "partNumber")
                .with("ArgumentValue", p))
            }
        },
    };
    let range_header = ctx.header("range");
    if part_number.is_some() && range_header.is_some() {
        return Err(S3Error::invalid_request(
            "Cannot specify both Range header and partNumber query parameter",
        ));
    }
    let span = match (part_number, range_header) {
        (Some(n), _) => Some(part_span(meta, n).ok_or_else(|| {
            S3Error::new(
                S3Code::InvalidPartNumber,
                "The requested partnumber is not satisfiable",
            )
            .with("PartNumberRequested", n.to_string())
            .with("ActualPartCount", meta.parts.len().max(1).to_string())
        })?),
        (None, Some(r)) => parse_range(r, meta.size)?,
        (None, None) => None,
    };
    if ctx.principal.is_none() && OVERRIDES.iter().any(|(q, _)| ctx.query(q).is_some()) {
        return Err(S3Error::invalid_request(
            "Request specific response headers cannot be used for anonymous GET requests.",
        ));
    }
    let whole = Span {
        start: 0,
        end: meta.size,
    };
    // Part 1 of an empty simple object is the whole (empty) object: no range to report.
    let span = span.filter(|s| s.end > s.start || meta.size > 0);
    let s = span.unwrap_or(whole);
    let mut resp = Response::new(Body::empty());
    object_headers(&mut resp, meta);
    let mode = ctx.store_bucket()?.versioning().await?;
    crate::s3::ops::common::version_header(&mut resp, meta.version.as_deref(), mode);
    respond::set(&mut resp, "accept-ranges", "bytes");
    respond::set(&mut resp, "content-length", (s.end - s.start).to_string());
    if span.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        respond::set(
            &mut resp,
            "content-range",
            format!(
                "bytes {}-{}/{}",
                s.start,
                s.end.saturating_sub(1),
                meta.size
            ),
        );
    }
    // Only multipart objects have a parts count (S3 sends none for part 1 of a simple one).
    if part_number.is_some() && !meta.parts.is_empty() {
        respond::set(
            &mut resp,
            "x-amz-mp-parts-count",
            meta.parts.len().to_string(),
        );
    }
    // The checksums describe the whole object, which a part of a simple object is.
    let whole_object = span.is_none() || (part_number.is_some() && meta.parts.is_empty());
    if ctx.header("x-amz-checksum-mode") == Some("ENABLED") {
        if whole_object {
            for (algo, value) in &meta.checksums {
                if let Some(a) = Algo::parse(algo) {
                    respond::set(&mut resp, a.header(), value);
                }
            }
            if let Some(t) = &meta.checksum_type {
                respond::set(&mut resp, "x-amz-checksum-type", t);
            }
        } else if let Some((a, value)) = part_number.and_then(|n| part_checksum(meta, n)) {
            // A part of a composite object has a checksum of its own.
            respond::set(&mut resp, a.header(), value);
        }
    }
    for (q, h) in OVERRIDES {
        if let Some(v) = ctx.query(q) {
            respond::set(&mut resp, h, v);
        }
    }
    if head || s.start == s.end {
        return Ok(resp);
    }
    if let Some(h) = &hit {
        let body = h.body.slice(s.start as usize..s.end as usize);
        ctx.gw.metrics.bytes_out.inc_by(body.len() as u64);
        *resp.body_mut() = Body::from(body);
        return Ok(resp);
    }
    // The first piece is read before the status is sent: a read that fails at once gets an
    // error status instead of a cut-off 200, and hyper sends a small object's head and body
    // in one write.
    let mut pieces = Box::pin(ctx.store_bucket()?.read(meta, s.start, s.end));
    let first = match pieces.next().await {
        Some(first) => first?,
        None => Bytes::new(),
    };
    let gw = ctx.gw.clone();
    gw.metrics.bytes_out.inc_by(first.len() as u64);
    let stream =
        futures::stream::once(async move { Ok(first) }).chain(pieces.map(move |r| match r {
            Ok(b) => {
                gw.metrics.bytes_out.inc_by(b.len() as u64);
                Ok(b)
            }
            Err(e) => {
                tracing::warn!(error = %e, "object read failed mid-stream");
                Err(std::io::Error::other(e.to_string()))
            }
        }));
    *resp.body_mut() = match fill {
        Some(f) if span.is_none() && meta.size <= f.max() => {
            Body::from_stream(crate::cache::tee(Box::pin(stream), f, meta.clone()))
        }
        _ => Body::from_stream(stream),
    };
    Ok(resp)
}

/// GetObjectAttributes.
pub async fn get_object_attributes(ctx: &Ctx) -> S3Result<Response> {
    let meta = require_object(ctx).await?;
    let wanted = ctx.header_list("x-amz-object-attributes");
    if wanted.is_empty() {
        return Err(S3Error::invalid_argument(
            "x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
        ));
    }
    let mut w = XmlWriter::new("GetObjectAttributesResponse");
    for attr in &wanted {
        match attr.as_str() {
            "ETag" => {
                w.elem("ETag", &meta.etag);
            }
            "Checksum" if !meta.checksums.is_empty() => {
                w.open("Checksum");
                for (algo, value) in &meta.checksums {
                    if let Some(a) = Algo::parse(algo) {
                        w.elem(a.element(), value);
                    }
                }
                w.opt("ChecksumType", meta.checksum_type.as_deref());
                w.close("Checksum");
            }
            "ObjectParts" if !meta.parts.is_empty() => {
                let max: usize = ctx
                    .header("x-amz-max-parts")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                let marker: usize = ctx
                    .header("x-amz-part-number-marker")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let shown: Vec<(usize, u64)> = meta
                    .parts
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i + 1, *s))
                    .filter(|(n, _)| *n > marker)
                    .take(max)
                    .collect();
                let last = shown.last().map(|(n, _)| *n).unwrap_or(marker);
                w.open("ObjectParts")
                    .elem("PartsCount", meta.parts.len().to_string())
                    .elem("PartNumberMarker", marker.to_string())
                    .elem("NextPartNumberMarker", last.to_string())
                    .elem("MaxParts", max.to_string())
                    .elem("IsTruncated", (last < meta.parts.len()).to_string());
                for (n, size) in shown {
                    w.open("Part")
                        .elem("PartNumber", n.to_string())
                        .elem("Size", size.to_string());
                    if let Some((a, value)) = part_checksum(&meta, n) {
                        w.elem(a.element(), value);
                    }
                    w.close("Part");
                }
                w.close("ObjectParts");
            }
            "StorageClass" => {
                w.elem("StorageClass", "STANDARD");
            }
            "ObjectSize" => {
                w.elem("ObjectSize", meta.size.to_string());
            }
            "Checksum" | "ObjectParts" => {}
            other => {
                return Err(S3Error::invalid_argument(format!(
                    "Invalid attribute name specified: {other}"
                )))
            }
        }
    }
    let mut resp = respond::xml(w.finish("GetObjectAttributesResponse"));
    respond::set(
        &mut resp,
        "last-modified",
        respond::http_date(meta.modified),
    );
    let mode = ctx.store_bucket()?.versioning().await?;
    crate::s3::ops::common::version_header(&mut resp, meta.version.as_deref(), mode);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(s: u64, e: u64) -> Option<Span> {
        Some(Span { start: s, end: e })
    }

    #[test]
    fn parses_ranges_like_s3() {
        assert_eq!(parse_range("bytes=0-9", 100).ok().flatten(), span(0, 10));
        assert_eq!(
            parse_range("bytes=90-200", 100).ok().flatten(),
            span(90, 100)
        );
        assert_eq!(parse_range("bytes=95-", 100).ok().flatten(), span(95, 100));
        assert_eq!(parse_range("bytes=-10", 100).ok().flatten(), span(90, 100));
        assert_eq!(parse_range("bytes=-500", 100).ok().flatten(), span(0, 100));
        assert_eq!(parse_range("bytes=5-1", 100).ok().flatten(), None);
        assert_eq!(parse_range("items=0-1", 100).ok().flatten(), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100).ok().flatten(), None);
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=-0", 100).is_err());
        assert!(parse_range("bytes=0-", 0).is_err());
        let max = u64::MAX;
        assert_eq!(
            parse_range(&format!("bytes=1-{max}"), 100).ok().flatten(),
            span(1, 100)
        );
        assert!(parse_range(&format!("bytes={max}-{max}"), 100).is_err());
        assert_eq!(
            parse_range(&format!("bytes=-{max}"), 100).ok().flatten(),
            span(0, 100)
        );
    }
}
