//! DeleteObject and DeleteObjects.

use axum::response::Response;
use futures::StreamExt;
use http::StatusCode;
use serde::Deserialize;

use crate::error::{S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond;
use crate::store::{DeleteOutcome, Expect};
use crate::xml::{self, XmlWriter};

/// DeleteObject: 204 whether or not the key (or version) existed. With `If-Match`, the
/// condition is checked on the version the delete replaces, atomically.
pub async fn delete_object(ctx: &Ctx) -> S3Result<Response> {
    let key = ctx.key()?;
    let version = ctx.version_id()?;
    let bucket = ctx.store_bucket()?;
    let expect = match ctx.header("if-match") {
        Some(v) => crate::s3::common::if_match(v.trim()),
        None => Expect::Any,
    };
    let outcome = match version {
        Some(v) => {
            if expect != Expect::Any {
                return Err(S3Error::not_implemented(
                    "If-Match on a delete of a specific version",
                ));
            }
            bucket.delete_version(key, v.as_deref()).await?
        }
        None => bucket.delete(key, &expect).await?,
    };
    let mut resp = respond::empty(StatusCode::NO_CONTENT);
    outcome_headers(&mut resp, &outcome);
    Ok(resp)
}

/// `x-amz-delete-marker` and `x-amz-version-id` of a delete.
fn outcome_headers(resp: &mut Response, outcome: &DeleteOutcome) {
    if outcome.marker {
        respond::set(resp, "x-amz-delete-marker", "true");
    }
    if let Some(v) = &outcome.version {
        respond::set(resp, "x-amz-version-id", v.as_deref().unwrap_or("null"));
    }
}

#[derive(Deserialize)]
pub(crate) struct Delete {
    #[serde(rename = "Object", default)]
    pub(crate) objects: Vec<DeleteEntry>,
    #[serde(rename = "Quiet", default)]
    pub(crate) quiet: Option<bool>,
}

#[derive(Deserialize)]
pub(crate) struct DeleteEntry {
    #[serde(rename = "Key")]
    pub(crate) key: String,
    #[serde(rename = "VersionId", default)]
    pub(crate) version_id: Option<String>,
}

/// DeleteObjects: up to 1000 keys, each answered on its own.
pub async fn delete_objects(mut ctx: Ctx) -> S3Result<Response> {
    if !ctx.headers.contains_key("content-md5")
        && !crate::checksum::ALL
            .iter()
            .any(|a| ctx.headers.contains_key(a.header()))
        && !ctx.headers.contains_key("x-amz-sdk-checksum-algorithm")
    {
        return Err(S3Error::invalid_request(
            "Missing required header for this request: Content-MD5",
        ));
    }
    let limit = ctx.compiled.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    let req: Delete = xml::parse(&body)?;
    if req.objects.is_empty() || req.objects.len() > 1000 {
        return Err(S3Error::malformed_xml());
    }
    let quiet = req.quiet.unwrap_or(false);
    let bucket = ctx.store_bucket()?;
    let max_key = ctx.compiled.config.limits.max_key_bytes;
    // Keys are deleted concurrently; answers keep the request's order.
    let jobs: Vec<(String, Option<String>)> = req
        .objects
        .iter()
        .map(|e| (e.key.clone(), e.version_id.clone()))
        .collect();
    let ctx = &ctx;
    let results: Vec<S3Result<DeleteOutcome>> = futures::stream::iter(jobs)
        .map(|(key, version)| {
            let bucket = bucket.clone();
            async move {
                if key.is_empty() || key.len() > max_key {
                    return Err(S3Error::invalid_argument("Invalid key"));
                }
                // Each key as its own DeleteObject: a policy may deny some keys.
                authorize_key(ctx, &key, version.as_deref()).await?;
                match version.as_deref() {
                    None => bucket
                        .delete(&key, &Expect::Any)
                        .await
                        .map_err(S3Error::from),
                    Some("null") => bucket
                        .delete_version(&key, None)
                        .await
                        .map_err(S3Error::from),
                    Some(v) if crate::store::meta::valid_version_id(v) => bucket
                        .delete_version(&key, Some(v))
                        .await
                        .map_err(S3Error::from),
                    Some(_) => Err(S3Error::invalid_argument("Invalid version id specified")),
                }
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut w = XmlWriter::new("DeleteResult");
    for (entry, result) in req.objects.iter().zip(results) {
        match result {
            Ok(outcome) => {
                if !quiet {
                    w.open("Deleted").elem("Key", &entry.key);
                    w.opt("VersionId", entry.version_id.as_deref());
                    if outcome.marker {
                        // The marker made, or the one deleted by its id.
                        w.elem("DeleteMarker", "true");
                        w.opt(
                            "DeleteMarkerVersionId",
                            outcome
                                .version
                                .as_ref()
                                .map(|v| v.as_deref().unwrap_or("null")),
                        );
                    }
                    w.close("Deleted");
                }
            }
            Err(e) if e.code == crate::error::S3Code::NoSuchBucket => return Err(e),
            Err(e) => {
                w.open("Error")
                    .elem("Key", &entry.key)
                    .elem("Code", e.code.as_str())
                    .elem("Message", &e.message)
                    .close("Error");
            }
        }
    }
    Ok(respond::xml(w.finish("DeleteResult")))
}

/// Decides one key of a request that names several (DeleteObjects) as a DeleteObject of
/// that key (and version).
async fn authorize_key(ctx: &Ctx, key: &str, version: Option<&str>) -> S3Result<()> {
    let query: crate::s3::endpoint::Query = version
        .map(|v| vec![("versionId".to_string(), v.to_string())])
        .unwrap_or_default();
    let s = crate::access::Subject {
        ep: crate::s3::endpoint::Endpoint::DeleteObject,
        bucket: ctx.bucket.as_ref(),
        key: Some(key),
        principal: ctx.principal.as_ref(),
        headers: &ctx.headers,
        query: &query,
        client: &ctx.client,
        presigned: ctx.query("X-Amz-Signature").is_some(),
    };
    crate::access::authorize(&ctx.gw, &ctx.compiled, &s).await
}
