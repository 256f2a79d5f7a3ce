//! PutObject.

use axum::response::Response;
use http::StatusCode;

use crate::error::S3Result;
use crate::s3::context::Ctx;
use crate::s3::ops::write::{
    check_length, check_unsupported_headers, checksum_headers, header_tags, stored_headers,
    write_expectation,
};
use crate::s3::respond;
use crate::store::{Expect, Finished, NewObject};

/// Whether the client sent `Expect: 100-continue` (it sends the body once the first read
/// of it makes hyper answer 100).
pub fn expects_continue(ctx: &Ctx) -> bool {
    ctx.header("expect")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// PutObject.
pub async fn put_object(mut ctx: Ctx) -> S3Result<Response> {
    let key = ctx.key()?.to_string();
    check_unsupported_headers(&ctx)?;
    let max = ctx.max_object_size();
    check_length(&ctx, max)?;
    let obj = NewObject {
        key,
        headers: stored_headers(&ctx)?,
        tags: header_tags(&ctx)?,
        parts: Vec::new(),
        acl: crate::s3::ops::access::request_acl(&ctx).await?,
    };
    let expect = write_expectation(&ctx)?;
    let bucket = ctx.store_bucket()?;
    let mut prior = None;
    if expects_continue(&ctx) && expect == Expect::Any {
        // The client waits to send the body: refuse a missing bucket before it does (and
        // write from what this found).
        prior = Some(bucket.check_write(ctx.key()?, &expect).await?);
    }
    let (body, checks) = ctx.upload_body()?;
    let meta = bucket
        .put(obj, body, max, (expect, prior), |w| {
            let checksums = checks.verify(w)?;
            Ok(Finished::full_object(checksums))
        })
        .await?;
    let mut resp = respond::empty(StatusCode::OK);
    respond::set(&mut resp, "etag", respond::quote(&meta.etag));
    checksum_headers(&mut resp, &meta);
    let mode = bucket.versioning().await?;
    crate::s3::ops::common::version_header(&mut resp, meta.version.as_deref(), mode);
    Ok(resp)
}
