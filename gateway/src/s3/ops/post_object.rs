//! PostObject: browser form uploads signed with a SigV4 POST policy.
//!
//! The text fields before `file` are read (bounded, as S3 bounds them), the policy is
//! verified and the signer's grant checked, then the file part is streamed into the store.
//! The policy's conditions are checked before the file is read and again, with the final
//! size, once it is written and before it becomes visible: a violation leaves nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use time::OffsetDateTime;

use crate::auth::{self, AuthSettings, PostPolicy};
use crate::checksum::{self, Algo, Running};
use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond;
use crate::store::meta::STORED_HEADERS;
use crate::store::{Expect, Finished, NewObject, StoreError};

/// Form fields naming features the gateway cannot honour.
const UNSUPPORTED: [&str; 6] = [
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-website-redirect-location",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
];

/// S3 allows 20 KB of form data before the file; user metadata (whose limit is
/// configurable) comes on top here so that the metadata limit is the one that bites.
pub(crate) const PRE_DATA_BYTES: usize = 20 * 1024;

/// Raw body bytes that may be read beyond the field limit before the file part starts
/// (part headers, boundaries, one body chunk of overshoot).
const RAW_SLACK: u64 = 1 << 20;

/// Body bytes read after the file part (the closing boundary, ignored fields).
const TRAILING_BYTES: u64 = 64 * 1024;

/// How long to wait for what follows the file part before answering anyway.
const TRAILING_WAIT: Duration = Duration::from_secs(1);

/// Characters left as they are in query values and key paths (RFC 3986 unreserved).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A form field by name, any case; the first one wins, as in the policy check.
pub(crate) fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn malformed() -> S3Error {
    S3Error::new(
        S3Code::MalformedPOSTRequest,
        "The body of your POST request is not well-formed multipart/form-data.",
    )
}

fn pre_data_too_large() -> S3Error {
    S3Error::new(
        S3Code::MaxMessageLengthExceeded,
        "Your POST request fields preceding the upload file were too large.",
    )
}

pub(crate) fn missing_key() -> S3Error {
    S3Error::invalid_argument(
        "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.",
    )
    .with("ArgumentName", "key")
    .with("ArgumentValue", "")
}

pub(crate) fn missing_file() -> S3Error {
    S3Error::invalid_argument("POST requires exactly one file upload per request.")
        .with("ArgumentName", "file")
        .with("ArgumentValue", "0")
}

/// The boundary of a `multipart/form-data` request body.
pub(crate) fn form_boundary(content_type: Option<&str>) -> S3Result<String> {
    let ct = content_type.unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return Err(S3Error::precondition_failed(
            "Bucket POST must be of the enclosure-type multipart/form-data",
        ));
    }
    multer::parse_boundary(ct)
        .ok()
        .filter(|b| !b.is_empty())
        .ok_or_else(malformed)
}

/// The S3 error behind a multipart parse failure.
pub(crate) fn multipart_error(e: multer::Error) -> S3Error {
    match e {
        multer::Error::StreamReadFailed(inner) => match inner.downcast::<S3Error>() {
            Ok(e) => *e,
            Err(_) => S3Error::new(
                S3Code::IncompleteBody,
                "The request body terminated unexpectedly",
            ),
        },
        _ => malformed(),
    }
}

/// The file name as `${filename}` uses it: what follows the last `/` or `\`.
pub(crate) fn file_basename(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// Replaces `${filename}` in a field value.
pub(crate) fn substitute(value: &str, filename: &str) -> String {
    value.replace("${filename}", filename)
}

/// Caps how much of the request body is read: before the file part and after it.
struct ReadGuard {
    consumed: AtomicU64,
    limit: AtomicU64,
}

impl ReadGuard {
    fn new(limit: u64) -> Self {
        ReadGuard {
            consumed: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        }
    }

    /// Lets a body chunk through unless the cap was already reached.
    fn admit(&self, piece: S3Result<Bytes>) -> S3Result<Bytes> {
        if self.consumed.load(Ordering::Relaxed) >= self.limit.load(Ordering::Relaxed) {
            return Err(pre_data_too_large());
        }
        if let Ok(b) = &piece {
            self.consumed.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        piece
    }

    /// Allows `more` bytes beyond what was read so far (`u64::MAX`: no cap).
    fn allow(&self, more: u64) {
        let consumed = self.consumed.load(Ordering::Relaxed);
        self.limit
            .store(consumed.saturating_add(more), Ordering::Relaxed);
    }
}

/// Reads the text fields up to the `file` part, which is returned unread.
pub(crate) async fn read_fields(
    mp: &mut multer::Multipart<'static>,
    limit: usize,
) -> S3Result<(Vec<(String, String)>, Option<multer::Field<'static>>)> {
    let mut fields = Vec::new();
    let mut total = 0usize;
    loop {
        let Some(mut part) = mp.next_field().await.map_err(multipart_error)? else {
            return Ok((fields, None));
        };
        let name = part.name().unwrap_or_default().to_string();
        if name.eq_ignore_ascii_case("file") {
            return Ok((fields, Some(part)));
        }
        total += name.len();
        let mut value = Vec::new();
        while let Some(chunk) = part.chunk().await.map_err(multipart_error)? {
            total += chunk.len();
            if total > limit {
                return Err(pre_data_too_large());
            }
            value.extend_from_slice(&chunk);
        }
        if total > limit {
            return Err(pre_data_too_large());
        }
        if name.is_empty() {
            continue;
        }
        let value = String::from_utf8(value).map_err(|_| {
            S3Error::invalid_argument(format!("The value of the form field {name} is not UTF-8"))
        })?;
        fields.push((name, value));
    }
}

/// Refuses form options the gateway cannot honour: storage classes other than STANDARD,
/// encryption, object lock, website redirects.
pub(crate) fn check_options(fields: &[(String, String)]) -> S3Result<()> {
    if let Some(sc) = field(fields, "x-amz-storage-class") {
        if sc != "STANDARD" {
            return Err(S3Error::new(
                S3Code::InvalidStorageClass,
                "The storage class you specified is not valid",
            )
            .with("StorageClassRequested", sc));
        }
    }
    for name in UNSUPPORTED {
        if field(fields, name).is_some() {
            return Err(S3Error::not_implemented(&format!("The {name} field")));
        }
    }
    Ok(())
}

/// The headers to store with the object: system headers and `x-amz-meta-*` from the
/// form (`${filename}` replaced), names in lower case, the first of duplicates kept. The
/// Content-Type defaults to the file part's, else `binary/octet-stream` as in S3.
pub(crate) fn form_headers(
    fields: &[(String, String)],
    filename: &str,
    part_type: Option<&str>,
    max_metadata: usize,
) -> S3Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut meta_bytes = 0usize;
    for (name, value) in fields {
        let name = name.to_ascii_lowercase();
        let user = name.strip_prefix("x-amz-meta-");
        if user.is_none() && !STORED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if out.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let value = substitute(value, filename);
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(S3Error::invalid_argument(format!(
                "The form field name {name} is not a valid header name"
            )));
        }
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(S3Error::invalid_argument(format!(
                "The value of the form field {name} is not a valid header value"
            )));
        }
        if let Some(user) = user {
            meta_bytes += user.len() + value.len();
        }
        out.push((name, value));
    }
    if meta_bytes > max_metadata {
        return Err(S3Error::new(
            S3Code::MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size.",
        )
        .with("MaxSizeAllowed", max_metadata.to_string())
        .with("Size", meta_bytes.to_string()));
    }
    if !out.iter().any(|(n, _)| n == "content-type") {
        let ct = part_type
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or("binary/octet-stream");
        out.push(("content-type".to_string(), ct.to_string()));
    }
    out.sort();
    Ok(out)
}

/// Tags from the `tagging` field (a `<Tagging>` XML document).
pub(crate) fn form_tags(fields: &[(String, String)]) -> S3Result<Vec<(String, String)>> {
    let Some(doc) = field(fields, "tagging") else {
        return Ok(Vec::new());
    };
    crate::s3::ops::tagging::parse_tagging(doc.as_bytes(), 10)
}

/// The decoded `Content-MD5` field, if sent.
pub(crate) fn form_md5(fields: &[(String, String)]) -> S3Result<Option<[u8; 16]>> {
    crate::s3::common::content_md5(field(fields, "content-md5"))
}

/// The checksums to compute: from an `x-amz-checksum-<algo>` field (with the value to
/// verify) or an `x-amz-checksum-algorithm` field (computed and stored).
pub(crate) fn wanted_checksums(
    fields: &[(String, String)],
) -> S3Result<Vec<(Algo, Option<String>)>> {
    let mut wanted = crate::s3::common::sent_checksums(|name| field(fields, name))?;
    if let Some(a) = field(fields, "x-amz-checksum-algorithm") {
        let algo = Algo::parse(a.trim()).ok_or_else(|| {
            S3Error::invalid_request(format!("Checksum algorithm {a} is not supported"))
        })?;
        match wanted.first() {
            Some((w, _)) if *w != algo => {
                return Err(S3Error::invalid_request(format!(
                    "Value for x-amz-checksum-algorithm does not match the {} field.",
                    w.header()
                )))
            }
            Some(_) => {}
            None => wanted.push((algo, None)),
        }
    }
    Ok(wanted)
}

/// The pre-upload policy check: every condition but the size range, which needs the
/// final size (`check` tests the range last, so with size 0 only EntityTooSmall can come
/// from it, and is ignored here).
pub(crate) fn precheck(result: S3Result<()>) -> S3Result<()> {
    match result {
        Err(e) if e.code == S3Code::EntityTooSmall => Ok(()),
        other => other,
    }
}

/// What a successful upload answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Success {
    /// 303 See Other to this URL (with bucket, key and etag appended).
    Redirect(String),
    /// 200 or 204 empty, 201 with a PostResponse document.
    Status(u16),
}

/// `success_action_redirect` (or the older `redirect`) when it is an absolute http(s)
/// URL (S3 ignores one it cannot interpret), else `success_action_status` (200, 201, or
/// 204 for anything else).
pub(crate) fn success(fields: &[(String, String)]) -> Success {
    let redirect = field(fields, "success_action_redirect").or_else(|| field(fields, "redirect"));
    if let Some(url) = redirect.map(str::trim) {
        let ok = url.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http") | Some("https")) && u.authority().is_some()
        });
        if ok {
            return Success::Redirect(url.to_string());
        }
    }
    match field(fields, "success_action_status").map(str::trim) {
        Some("200") => Success::Status(200),
        Some("201") => Success::Status(201),
        _ => Success::Status(204),
    }
}

/// The redirect target: the URL with `bucket`, `key` and `etag` (quoted) appended.
pub(crate) fn redirect_location(url: &str, bucket: &str, key: &str, etag: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    let mut out = format!(
        "{base}{sep}bucket={}&key={}&etag={}",
        utf8_percent_encode(bucket, ENCODE),
        utf8_percent_encode(key, ENCODE),
        utf8_percent_encode(&respond::quote(etag), ENCODE)
    );
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The new object's URL: virtual-hosted when the request came that way, else path style.
pub(crate) fn object_location(
    scheme: &str,
    host: &str,
    domains: &[String],
    bucket: &str,
    key: &str,
) -> String {
    let key = utf8_percent_encode(key, ENCODE);
    let bare = match host.rfind(':') {
        Some(i) if !host.ends_with(']') && !host[..i].contains(':') => &host[..i],
        _ => host,
    }
    .to_ascii_lowercase();
    let vhost = domains.iter().any(|d| {
        bare.strip_suffix(d.as_str())
            .and_then(|b| b.strip_suffix('.'))
            .is_some_and(|b| b == bucket)
    });
    if vhost {
        format!("{scheme}://{host}/{key}")
    } else {
        format!(
            "{scheme}://{host}/{}/{key}",
            utf8_percent_encode(bucket, ENCODE)
        )
    }
}

/// The `success_action_status=201` document.
pub(crate) fn post_response_xml(location: &str, bucket: &str, key: &str, etag: &str) -> String {
    use crate::xml::escape;
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
        escape(location),
        escape(bucket),
        escape(key),
        escape(&respond::quote(etag))
    )
}

/// Reads what follows the file part (the closing boundary, ignored fields), within
/// bounds, so that the connection can be reused.
async fn drain(mp: &mut multer::Multipart<'static>) {
    let _ = tokio::time::timeout(TRAILING_WAIT, async {
        while let Ok(Some(mut part)) = mp.next_field().await {
            while let Ok(Some(_)) = part.chunk().await {}
        }
    })
    .await;
}

/// PostObject.
pub async fn post_object(mut ctx: Ctx) -> S3Result<Response> {
    let compiled = ctx.compiled.clone();
    let limits = &compiled.config.limits;
    let bucket = ctx.bucket_ref()?.clone();
    let max = ctx.max_object_size();
    let boundary = form_boundary(ctx.header("content-type"))?;
    let pre_limit = PRE_DATA_BYTES + limits.max_metadata_bytes;
    let guard = Arc::new(ReadGuard::new(pre_limit as u64 + RAW_SLACK));
    let (body, _) = ctx.take_body();
    let g = guard.clone();
    let body = body.map(move |piece| g.admit(piece));
    let mut mp = multer::Multipart::new(body, boundary);
    let (fields, file) = read_fields(&mut mp, pre_limit).await?;
    let file = file.ok_or_else(missing_file)?;
    let raw_key = field(&fields, "key").ok_or_else(missing_key)?.to_string();

    // Authentication and authorization: a signed policy from a key that may write.
    let signed = [
        "policy",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-algorithm",
        "awsaccesskeyid",
        "signature",
    ]
    .iter()
    .any(|n| field(&fields, n).is_some());
    if !signed {
        crate::s3::api::charge_bucket(&ctx.gw, &bucket, false)?;
        return Err(S3Error::access_denied());
    }
    let now = OffsetDateTime::now_utc();
    let settings = AuthSettings {
        region: &compiled.config.region,
        now,
        max_skew: Duration::from_secs(limits.max_clock_skew_seconds),
    };
    let policy = auth::verify_post_policy(
        &fields,
        &crate::s3::common::Secrets(&compiled, now),
        &settings,
    );
    crate::s3::api::charge_bucket(&ctx.gw, &bucket, policy.is_ok())?;
    let policy: PostPolicy = policy?;
    if bucket.read_only() {
        return Err(S3Error::new(
            S3Code::AccessDenied,
            "Access Denied: the bucket is read-only",
        ));
    }
    precheck(policy.check(&bucket.s3, &fields, 0))?;
    let signer = crate::auth::Principal::AccessKey(policy.access_key_id.clone());

    // What to store.
    check_options(&fields)?;
    let filename = file_basename(file.file_name().unwrap_or_default()).to_string();
    let key = substitute(&raw_key, &filename);
    if key.is_empty() {
        return Err(missing_key());
    }
    if key.len() > limits.max_key_bytes {
        return Err(
            S3Error::new(S3Code::KeyTooLongError, "Your key is too long")
                .with("MaxSizeAllowed", limits.max_key_bytes.to_string())
                .with("Size", key.len().to_string()),
        );
    }
    let part_type = file
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let obj = NewObject {
        key: key.clone(),
        headers: form_headers(
            &fields,
            &filename,
            part_type.as_deref(),
            limits.max_metadata_bytes,
        )?,
        tags: form_tags(&fields)?,
        parts: Vec::new(),
        acl: crate::s3::ops::access::form_acl(&ctx, &policy.access_key_id, field(&fields, "acl"))
            .await?,
    };
    // The key is known only now: grants, the bucket policy and ACLs decide as for a PUT.
    let subject = crate::access::Subject {
        ep: crate::s3::endpoint::Endpoint::PutObject,
        bucket: Some(&bucket),
        key: Some(&key),
        principal: Some(&signer),
        headers: &ctx.headers,
        query: &ctx.query,
        client: &ctx.client,
        presigned: false,
    };
    crate::access::authorize(&ctx.gw, &compiled, &subject).await?;
    let md5 = form_md5(&fields)?;
    let wanted = wanted_checksums(&fields)?;
    let outcome = success(&fields);

    // Stream the file part; stop as soon as it outgrows the policy's size range.
    let algos: Vec<Algo> = wanted.iter().map(|(a, _)| *a).collect();
    let hashers = Running::new(&algos);
    let store = ctx
        .gw
        .store
        .bucket(&bucket.nats)
        .with_versioning(bucket.declared_versioning());
    let (policy_ref, fields_ref, bucket_name) = (&policy, &fields, bucket.s3.as_str());
    let h = hashers.clone();
    let mut size = 0u64;
    let stream = file.map(move |piece| {
        let piece = piece.map_err(multipart_error)?;
        size += piece.len() as u64;
        if let Err(e) = policy_ref.check(bucket_name, fields_ref, size) {
            if e.code == S3Code::EntityTooLarge {
                return Err(e);
            }
        }
        h.update(&piece);
        Ok(piece)
    });
    guard.allow(u64::MAX);
    let meta = store
        .put(obj, stream, max, (Expect::Any, None), |w| {
            policy.check(&bucket.s3, &fields, w.size)?;
            if let Some(md5) = md5 {
                if md5 != w.md5 {
                    return Err(StoreError::from(S3Error::new(
                        S3Code::BadDigest,
                        "The Content-MD5 you specified did not match what we received.",
                    )));
                }
            }
            let checksums = checksum::verify(&wanted, hashers.finish(), &[])?;
            Ok(Finished::full_object(checksums))
        })
        .await?;
    guard.allow(TRAILING_BYTES);
    drain(&mut mp).await;

    // Answer.
    let scheme = match ctx.header("x-forwarded-proto") {
        Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = ctx.header("host").unwrap_or("localhost");
    let location = object_location(
        scheme,
        host,
        &compiled.config.virtual_host_domains,
        &bucket.s3,
        &key,
    );
    let mut resp = match outcome {
        Success::Redirect(url) => {
            let mut r = respond::empty(StatusCode::SEE_OTHER);
            respond::set(
                &mut r,
                "location",
                redirect_location(&url, &bucket.s3, &key, &meta.etag),
            );
            r
        }
        Success::Status(201) => {
            let mut r = respond::xml(post_response_xml(&location, &bucket.s3, &key, &meta.etag));
            *r.status_mut() = StatusCode::CREATED;
            respond::set(&mut r, "location", &location);
            r
        }
        Success::Status(200) => {
            let mut r = respond::empty(StatusCode::OK);
            respond::set(&mut r, "location", &location);
            r
        }
        Success::Status(_) => {
            let mut r = respond::empty(StatusCode::NO_CONTENT);
            respond::set(&mut r, "location", &location);
            r
        }
    };
    respond::set(&mut resp, "etag", respond::quote(&meta.etag));
    crate::s3::ops::write::checksum_headers(&mut resp, &meta);
    let mode = store.versioning().await?;
    crate::s3::ops::common::version_header(&mut resp, meta.version.as_deref(), mode);
    if let Some(origin) = ctx.header("origin") {
        crate::s3::ops::cors::decorate(&ctx.gw, &bucket, origin, &ctx.method, &mut resp).await;
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(
            form_boundary(Some("multipart/form-data; boundary=abc123")).unwrap(),
            "abc123"
        );
        assert_eq!(
            form_boundary(Some("Multipart/Form-Data; charset=utf-8; boundary=\"q q\"")).unwrap(),
            "q q"
        );
        let e = form_boundary(Some("application/x-www-form-urlencoded")).unwrap_err();
        assert_eq!(e.code, S3Code::PreconditionFailed);
        assert_eq!(
            form_boundary(None).unwrap_err().code,
            S3Code::PreconditionFailed
        );
        let e = form_boundary(Some("multipart/form-data")).unwrap_err();
        assert_eq!(e.code, S3Code::MalformedPOSTRequest);
    }

    #[test]
    fn filename_substitution() {
        assert_eq!(
            file_basename("C:\\Program Files\\dir\\file.txt"),
            "file.txt"
        );
        assert_eq!(file_basename("a/b/c.png"), "c.png");
        assert_eq!(file_basename("plain"), "plain");
        assert_eq!(file_basename(""), "");
        assert_eq!(substitute("user/${filename}", "x.jpg"), "user/x.jpg");
        assert_eq!(substitute("${filename}-${filename}", "a"), "a-a");
        assert_eq!(substitute("user/${filename}", ""), "user/");
        assert_eq!(substitute("no-var", "a"), "no-var");
    }

    #[test]
    fn headers_from_fields() {
        let fields = owned(&[
            ("key", "k"),
            ("Content-Type", "image/png"),
            ("content-type", "text/plain"),
            ("Cache-Control", "max-age=60"),
            (
                "Content-Disposition",
                "attachment; filename=\"${filename}\"",
            ),
            ("X-Amz-Meta-Color", "blue"),
            ("x-amz-meta-empty", ""),
            ("success_action_status", "201"),
            ("Expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
        ]);
        let h = form_headers(&fields, "f.png", Some("application/pdf"), 2048).unwrap();
        assert_eq!(
            h,
            owned(&[
                ("cache-control", "max-age=60"),
                ("content-disposition", "attachment; filename=\"f.png\""),
                ("content-type", "image/png"),
                ("expires", "Thu, 01 Dec 2094 16:00:00 GMT"),
                ("x-amz-meta-color", "blue"),
                ("x-amz-meta-empty", ""),
            ])
        );
    }

    #[test]
    fn content_type_defaults() {
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(
            form_headers(&none, "", Some("text/csv"), 2048).unwrap(),
            owned(&[("content-type", "text/csv")])
        );
        assert_eq!(
            form_headers(&none, "", None, 2048).unwrap(),
            owned(&[("content-type", "binary/octet-stream")])
        );
        assert_eq!(
            form_headers(&none, "", Some("  "), 2048).unwrap(),
            owned(&[("content-type", "binary/octet-stream")])
        );
    }

    #[test]
    fn metadata_limit_and_validity() {
        let fields = owned(&[("x-amz-meta-a", &"v".repeat(10))]);
        assert!(form_headers(&fields, "", None, 11).is_ok());
        let e = form_headers(&fields, "", None, 10).unwrap_err();
        assert_eq!(e.code, S3Code::MetadataTooLarge);
        assert!(e.extra.contains(&("Size", "11".to_string())));
        let bad = owned(&[("x-amz-meta-a", "line\r\nbreak")]);
        assert_eq!(
            form_headers(&bad, "", None, 2048).unwrap_err().code,
            S3Code::InvalidArgument
        );
        let bad = owned(&[("x-amz-meta-a b", "v")]);
        assert_eq!(
            form_headers(&bad, "", None, 2048).unwrap_err().code,
            S3Code::InvalidArgument
        );
    }

    #[test]
    fn tags_from_field() {
        let doc = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>b</Key><Value></Value></Tag></TagSet></Tagging>";
        let tags = form_tags(&owned(&[("Tagging", doc)])).unwrap();
        assert_eq!(tags, owned(&[("a", "1"), ("b", "")]));
        assert!(form_tags(&[]).unwrap().is_empty());
        let e = form_tags(&owned(&[("tagging", "<Tagging>")])).unwrap_err();
        assert_eq!(e.code, S3Code::MalformedXML);
        let dup = "<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag><Tag><Key>a</Key><Value>2</Value></Tag></TagSet></Tagging>";
        assert_eq!(
            form_tags(&owned(&[("tagging", dup)])).unwrap_err().code,
            S3Code::InvalidTag
        );
    }

    #[test]
    fn unsupported_options() {
        assert!(check_options(&owned(&[
            ("acl", "private"),
            ("x-amz-storage-class", "STANDARD")
        ]))
        .is_ok());
        assert_eq!(
            check_options(&owned(&[("X-Amz-Storage-Class", "GLACIER")]))
                .unwrap_err()
                .code,
            S3Code::InvalidStorageClass
        );
        assert_eq!(
            check_options(&owned(&[("x-amz-server-side-encryption", "AES256")]))
                .unwrap_err()
                .code,
            S3Code::NotImplemented
        );
    }

    #[test]
    fn checksum_fields() {
        assert!(wanted_checksums(&[]).unwrap().is_empty());
        assert_eq!(
            wanted_checksums(&owned(&[("x-amz-checksum-crc32", "DUoRhQ==")])).unwrap(),
            vec![(Algo::Crc32, Some("DUoRhQ==".to_string()))]
        );
        assert_eq!(
            wanted_checksums(&owned(&[("x-amz-checksum-algorithm", "sha256")])).unwrap(),
            vec![(Algo::Sha256, None)]
        );
        assert_eq!(
            wanted_checksums(&owned(&[("x-amz-checksum-crc32", "nope")]))
                .unwrap_err()
                .code,
            S3Code::InvalidRequest
        );
        let two = owned(&[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-crc32c", "yZRlqg=="),
        ]);
        assert_eq!(
            wanted_checksums(&two).unwrap_err().code,
            S3Code::InvalidRequest
        );
        let mismatch = owned(&[
            ("x-amz-checksum-crc32", "DUoRhQ=="),
            ("x-amz-checksum-algorithm", "SHA1"),
        ]);
        assert_eq!(
            wanted_checksums(&mismatch).unwrap_err().code,
            S3Code::InvalidRequest
        );

        let want = [(Algo::Crc32, Some("DUoRhQ==".to_string()))];
        let ok = checksum::verify(&want, vec![(Algo::Crc32, "DUoRhQ==".into())], &[]);
        assert_eq!(ok.unwrap(), owned(&[("CRC32", "DUoRhQ==")]));
        let bad = checksum::verify(&want, vec![(Algo::Crc32, "AAAAAA==".into())], &[]);
        assert_eq!(bad.unwrap_err().code, S3Code::BadDigest);
    }

    #[test]
    fn md5_field() {
        assert_eq!(form_md5(&[]).unwrap(), None);
        let v = form_md5(&owned(&[("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")])).unwrap();
        assert_eq!(
            v.map(hex::encode).as_deref(),
            Some("5eb63bbbe01eeed093cb22bb8f5acdc3")
        );
        assert_eq!(
            form_md5(&owned(&[("content-md5", "short")]))
                .unwrap_err()
                .code,
            S3Code::InvalidDigest
        );
    }

    #[test]
    fn success_outcomes() {
        assert_eq!(success(&[]), Success::Status(204));
        assert_eq!(
            success(&owned(&[("success_action_status", "200")])),
            Success::Status(200)
        );
        assert_eq!(
            success(&owned(&[("success_action_status", "201")])),
            Success::Status(201)
        );
        assert_eq!(
            success(&owned(&[("success_action_status", "204")])),
            Success::Status(204)
        );
        assert_eq!(
            success(&owned(&[("success_action_status", "302")])),
            Success::Status(204)
        );
        assert_eq!(
            success(&owned(&[
                ("success_action_status", "201"),
                ("success_action_redirect", "https://example.com/done")
            ])),
            Success::Redirect("https://example.com/done".into())
        );
        assert_eq!(
            success(&owned(&[("redirect", "http://example.com/x?y=1")])),
            Success::Redirect("http://example.com/x?y=1".into())
        );
        // Not an absolute http(s) URL: ignored.
        assert_eq!(
            success(&owned(&[
                ("success_action_redirect", "/relative"),
                ("success_action_status", "201")
            ])),
            Success::Status(201)
        );
        assert_eq!(
            success(&owned(&[(
                "success_action_redirect",
                "javascript:alert(1)"
            )])),
            Success::Status(204)
        );
    }

    #[test]
    fn redirect_urls() {
        assert_eq!(
            redirect_location("https://example.com/done", "b", "a b/c+d", "abc"),
            "https://example.com/done?bucket=b&key=a%20b%2Fc%2Bd&etag=%22abc%22"
        );
        assert_eq!(
            redirect_location("https://example.com/done?x=1#top", "b", "k", "e"),
            "https://example.com/done?x=1&bucket=b&key=k&etag=%22e%22#top"
        );
        assert_eq!(
            redirect_location("https://example.com/done?", "b", "k", "e"),
            "https://example.com/done?bucket=b&key=k&etag=%22e%22"
        );
    }

    #[test]
    fn object_urls() {
        let domains = vec!["s3.example.com".to_string()];
        assert_eq!(
            object_location("http", "127.0.0.1:9000", &domains, "bkt", "a/b c"),
            "http://127.0.0.1:9000/bkt/a%2Fb%20c"
        );
        assert_eq!(
            object_location("https", "bkt.s3.example.com:443", &domains, "bkt", "k"),
            "https://bkt.s3.example.com:443/k"
        );
        assert_eq!(
            object_location("http", "s3.example.com", &domains, "bkt", "k"),
            "http://s3.example.com/bkt/k"
        );
    }

    #[test]
    fn post_response_document() {
        assert_eq!(
            post_response_xml("http://h/b/k%26", "b", "k&", "e1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>http://h/b/k%26</Location><Bucket>b</Bucket><Key>k&amp;</Key><ETag>&quot;e1&quot;</ETag></PostResponse>"
        );
    }

    #[test]
    fn precheck_ignores_only_too_small() {
        assert!(precheck(Ok(())).is_ok());
        assert!(precheck(Err(S3Error::new(S3Code::EntityTooSmall, "x"))).is_ok());
        assert_eq!(
            precheck(Err(S3Error::new(S3Code::AccessDenied, "x")))
                .unwrap_err()
                .code,
            S3Code::AccessDenied
        );
    }

    #[test]
    fn read_guard_caps_reads() {
        let g = ReadGuard::new(10);
        assert!(g.admit(Ok(Bytes::from_static(b"0123456789abc"))).is_ok());
        let e = g.admit(Ok(Bytes::from_static(b"x"))).unwrap_err();
        assert_eq!(e.code, S3Code::MaxMessageLengthExceeded);
        g.allow(5);
        assert!(g.admit(Ok(Bytes::from_static(b"xyz"))).is_ok());
        g.allow(u64::MAX);
        assert!(g.admit(Ok(Bytes::from(vec![0u8; 1 << 20]))).is_ok());
    }

    fn body(parts: &[(&str, &str)], close: bool) -> Bytes {
        let mut s = String::new();
        for (name, value) in parts {
            s.push_str("--XB\r\nContent-Disposition: form-data; name=\"");
            s.push_str(name);
            s.push_str("\"\r\n\r\n");
            s.push_str(value);
            s.push_str("\r\n");
        }
        if close {
            s.push_str("--XB--\r\n");
        }
        Bytes::from(s)
    }

    fn parser(data: Bytes) -> multer::Multipart<'static> {
        let stream = futures::stream::iter(
            data.chunks(7)
                .map(|c| Ok::<_, S3Error>(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        multer::Multipart::new(stream, "XB")
    }

    #[tokio::test]
    async fn reads_fields_up_to_the_file() {
        let data = body(
            &[
                ("key", "k"),
                ("X-Amz-Meta-A", "v"),
                ("File", "content"),
                ("after", "x"),
            ],
            true,
        );
        let mut mp = parser(data);
        let (fields, file) = read_fields(&mut mp, 1000).await.unwrap();
        assert_eq!(fields, owned(&[("key", "k"), ("X-Amz-Meta-A", "v")]));
        let file = file.expect("file part");
        assert_eq!(file.bytes().await.unwrap(), Bytes::from_static(b"content"));

        let mut mp = parser(body(&[("key", "k")], true));
        let (fields, file) = read_fields(&mut mp, 1000).await.unwrap();
        assert_eq!(fields.len(), 1);
        assert!(file.is_none());

        let mut mp = parser(body(&[("key", &"k".repeat(100))], true));
        let e = read_fields(&mut mp, 50).await.err().unwrap();
        assert_eq!(e.code, S3Code::MaxMessageLengthExceeded);

        let mut mp = parser(body(&[("key", "k")], false));
        let e = read_fields(&mut mp, 1000).await.err().unwrap();
        assert_eq!(e.code, S3Code::MalformedPOSTRequest);
    }
}
