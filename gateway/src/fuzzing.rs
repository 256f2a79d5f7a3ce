//! Entry points for the cargo-fuzz targets in `fuzz/`: the request parsers that live in
//! private modules, reached exactly as the handlers call them. Not a stable API.

use bytes::Bytes;
use futures::StreamExt;
use jets3_crds::CorsRule;

use crate::auth::{AuthSettings, SecretLookup};
use crate::config::compiled::CompiledConfig;
use crate::error::{S3Error, S3Result};
use crate::s3::ops::post_object as post;

pub use crate::s3::common::etag_matches;
pub use crate::s3::ops::get::{evaluate_conditions, parse_range, Span};
pub use crate::s3::ops::multipart::parse_copy_range;
pub use crate::s3::ops::tagging::parse_tagging;

/// Bucket and key of a request: `Host` (virtual-hosted style) or the path.
pub fn address(
    compiled: &CompiledConfig,
    host: Option<&str>,
    raw_path: &str,
) -> S3Result<(Option<String>, Option<String>)> {
    crate::s3::api::address(compiled, host, raw_path)
}

/// A DeleteObjects body: (key, version id) of each object, and `Quiet`.
pub type DeleteRequest = (Vec<(String, Option<String>)>, Option<bool>);

/// Parses a DeleteObjects body.
pub fn delete_objects(body: &[u8]) -> S3Result<DeleteRequest> {
    let d: crate::s3::ops::delete::Delete = crate::xml::parse(body)?;
    let objects = d
        .objects
        .into_iter()
        .map(|o| (o.key, o.version_id))
        .collect();
    Ok((objects, d.quiet))
}

/// Parses a CompleteMultipartUpload body: (part number, ETag) in request order.
pub fn complete_multipart(body: &[u8]) -> S3Result<Vec<(u32, String)>> {
    let c: crate::s3::ops::multipart::CompleteMultipartUpload = crate::xml::parse(body)?;
    Ok(c.parts.into_iter().map(|p| (p.number, p.etag)).collect())
}

/// Parses and validates a PutBucketCors body for bucket `s3`.
pub fn cors(body: &[u8], s3: &str) -> S3Result<Vec<CorsRule>> {
    crate::s3::ops::cors::parse_cors(body, s3, &jets3_crds::s3_to_nats_bucket(s3))
}

/// The first CORS rule allowing a request (preflight and actual requests).
pub fn cors_match<'r>(
    rules: &'r [CorsRule],
    origin: &str,
    method: &str,
    headers: &[&str],
) -> Option<&'r CorsRule> {
    crate::s3::ops::cors::find(rules, origin, method, headers)
}

/// Parses a CreateBucket body: its `LocationConstraint`.
pub fn create_bucket(body: &[u8]) -> S3Result<Option<String>> {
    let c: crate::s3::ops::bucket::CreateBucketConfiguration = crate::xml::parse(body)?;
    Ok(c.location_constraint)
}

/// Parses a PutBucketAcl / PutObjectAcl body owned by `owner`, where only `known` are
/// canonical ids of credentials: the permission of each grant.
pub fn acl(body: &[u8], owner: &str, known: &[&str]) -> S3Result<Vec<String>> {
    struct Known<'a>(&'a [&'a str]);
    impl crate::access::acl::KnownIds for Known<'_> {
        fn known(&self, id: &str) -> bool {
            self.0.contains(&id)
        }
    }
    let acl = crate::access::acl::from_xml(body, owner, &Known(known))?;
    Ok(acl
        .grants
        .into_iter()
        .map(|(_, p)| format!("{p:?}"))
        .collect())
}

/// Parses a PutBucketVersioning body: `Status` and `MfaDelete`.
pub fn versioning(body: &[u8]) -> S3Result<(Option<String>, Option<String>)> {
    let v: crate::s3::ops::versioning::VersioningConfiguration = crate::xml::parse(body)?;
    Ok((v.status, v.mfa_delete))
}

/// A PostObject form as the handler reads it before the upload is stored.
#[derive(Debug)]
pub struct PostForm {
    /// The text fields before the file part.
    pub fields: Vec<(String, String)>,
    /// The object key (`${filename}` substituted).
    pub key: String,
    /// The headers stored with the object.
    pub headers: Vec<(String, String)>,
    /// The object's tags.
    pub tags: Vec<(String, String)>,
    /// Bytes of the file part.
    pub size: u64,
    /// The `Location` of a 303 answer, when the form asks for a redirect.
    pub redirect: Option<String>,
    /// The status of any other answer.
    pub status: u16,
    /// The `success_action_status=201` document.
    pub document: String,
}

/// What the gateway's settings say about a PostObject.
#[derive(Debug, Clone, Copy)]
pub struct PostLimits {
    /// `limits.maxMetadataBytes`.
    pub max_metadata: usize,
    /// `limits.maxKeyBytes`.
    pub max_key: usize,
}

/// Reads a PostObject body (`pieces` as they arrive) and checks it as the handler does up
/// to the store write: form fields, policy signature and conditions, key, headers, tags,
/// checksums and the answer, for bucket `bucket` of virtual-host domains `domains`.
pub fn post_form(
    content_type: Option<&str>,
    pieces: Vec<Bytes>,
    bucket: &str,
    domains: &[String],
    lookup: &dyn SecretLookup,
    settings: &AuthSettings<'_>,
    limits: PostLimits,
) -> S3Result<PostForm> {
    futures::executor::block_on(async {
        let boundary = post::form_boundary(content_type)?;
        let body = futures::stream::iter(pieces.into_iter().map(Ok::<Bytes, S3Error>));
        let mut mp = multer::Multipart::new(body, boundary);
        let pre_limit = post::PRE_DATA_BYTES + limits.max_metadata;
        let (fields, file) = post::read_fields(&mut mp, pre_limit).await?;
        let mut file = file.ok_or_else(post::missing_file)?;
        let raw_key = post::field(&fields, "key")
            .ok_or_else(post::missing_key)?
            .to_string();
        let policy = crate::auth::verify_post_policy(&fields, lookup, settings)?;
        post::precheck(policy.check(bucket, &fields, 0))?;
        post::check_options(&fields)?;
        let filename = post::file_basename(file.file_name().unwrap_or_default()).to_string();
        let key = post::substitute(&raw_key, &filename);
        if key.is_empty() {
            return Err(post::missing_key());
        }
        if key.len() > limits.max_key {
            return Err(S3Error::new(
                crate::error::S3Code::KeyTooLongError,
                "Your key is too long",
            ));
        }
        let part_type = file
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let headers = post::form_headers(
            &fields,
            &filename,
            part_type.as_deref(),
            limits.max_metadata,
        )?;
        let tags = post::form_tags(&fields)?;
        post::form_md5(&fields)?;
        post::wanted_checksums(&fields)?;
        let outcome = post::success(&fields);
        let mut size = 0u64;
        while let Some(piece) = file.next().await {
            size += piece.map_err(post::multipart_error)?.len() as u64;
        }
        policy.check(bucket, &fields, size)?;
        let etag = "d41d8cd98f00b204e9800998ecf8427e";
        let location = post::object_location("http", "localhost", domains, bucket, &key);
        let (redirect, status) = match outcome {
            post::Success::Redirect(url) => {
                (Some(post::redirect_location(&url, bucket, &key, etag)), 303)
            }
            post::Success::Status(s) => (None, s),
        };
        Ok(PostForm {
            document: post::post_response_xml(&location, bucket, &key, etag),
            fields,
            key,
            headers,
            tags,
            size,
            redirect,
            status,
        })
    })
}
