//! DeleteObject and DeleteObjects.

use axum::response::Response;
use futures::StreamExt;
use http::StatusCode;
use serde::Deserialize;

use crate::error::{S3Error, S3Result};
use crate::request::Ctx;
use crate::respond;
use crate::xml::{self, XmlWriter};

/// DeleteObject: 204 whether or not the key existed.
pub async fn delete_object(ctx: &Ctx) -> S3Result<Response> {
    let key = ctx.key()?;
    if let Some(v) = ctx.query("versionId") {
        if v != "null" {
            return Err(S3Error::not_implemented(
                "Deleting a specific object version",
            ));
        }
    }
    let bucket = ctx.store_bucket()?;
    if ctx.header("if-match").is_some() {
        let meta = bucket
            .head(key)
            .await?
            .ok_or_else(|| S3Error::no_such_key(key))?;
        crate::get::check_conditions(ctx, &meta)?;
    }
    bucket.delete(key).await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
struct Delete {
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteEntry>,
    #[serde(rename = "Quiet", default)]
    quiet: Option<bool>,
}

#[derive(Deserialize)]
struct DeleteEntry {
    #[serde(rename = "Key")]
    key: String,
    #[serde(rename = "VersionId", default)]
    version_id: Option<String>,
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
    let limit = ctx.rt.config.limits.max_xml_body_bytes;
    let body = ctx.read_small_body(limit).await?;
    let req: Delete = xml::parse(&body)?;
    if req.objects.is_empty() || req.objects.len() > 1000 {
        return Err(S3Error::malformed_xml());
    }
    let quiet = req.quiet.unwrap_or(false);
    let bucket = ctx.store_bucket()?;
    let max_key = ctx.rt.config.limits.max_key_bytes;
    // Keys are deleted concurrently; answers keep the request's order.
    let jobs: Vec<(String, Option<String>)> = req
        .objects
        .iter()
        .map(|e| (e.key.clone(), e.version_id.clone()))
        .collect();
    let results: Vec<S3Result<()>> = futures::stream::iter(jobs)
        .map(|(key, version)| {
            let bucket = bucket.clone();
            let cache = &ctx.gw.cache;
            async move {
                if key.is_empty() || key.len() > max_key {
                    Err(S3Error::invalid_argument("Invalid key"))
                } else if version.is_some_and(|v| v != "null") {
                    Err(S3Error::not_implemented(
                        "Deleting a specific object version",
                    ))
                } else {
                    let r = bucket.delete(&key).await;
                    cache.invalidate(bucket.nats_name(), &key);
                    r
                }
            }
        })
        .buffered(16)
        .collect()
        .await;
    let mut w = XmlWriter::new("DeleteResult");
    for (entry, result) in req.objects.iter().zip(results) {
        match result {
            Ok(()) => {
                if !quiet {
                    w.open("Deleted").elem("Key", &entry.key);
                    w.opt("VersionId", entry.version_id.as_deref());
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
