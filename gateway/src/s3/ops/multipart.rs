//! Multipart uploads: create, upload part (and part copy), complete, abort, list.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::checksum::{self, Algo, Assembly, Kind};
use crate::error::{S3Code, S3Error, S3Result};
use crate::s3::context::Ctx;
use crate::s3::respond::{self, OWNER_NAME};
use crate::store::completion::{parts_digest, Claim, Completed, UploadState};
use crate::store::{
    Expect, Finished, NewObject, ObjectMeta, PartInfo, StoreError, UploadInfo, Versioning,
};
use crate::xml::{self, XmlWriter};

fn upload_id(ctx: &Ctx) -> S3Result<String> {
    ctx.query("uploadId")
        .map(str::to_string)
        .ok_or_else(|| S3Error::invalid_request("uploadId is required"))
}

/// The upload, checked to belong to the addressed key.
async fn upload_for_key(ctx: &Ctx, id: &str) -> S3Result<UploadInfo> {
    let info = ctx.store_bucket()?.upload(id).await?;
    if info.key != ctx.key()? {
        return Err(S3Error::no_such_upload(id));
    }
    Ok(info)
}

fn part_number(ctx: &Ctx) -> S3Result<u32> {
    let raw = ctx.query("partNumber").unwrap_or_default();
    let max = ctx.compiled.config.limits.max_parts;
    match raw.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(S3Error::invalid_argument(format!(
            "Part number must be an integer between 1 and {max}, inclusive"
        ))
        .with("ArgumentName", "partNumber")
        .with("ArgumentValue", raw)),
    }
}

/// CreateMultipartUpload.
pub async fn create(ctx: &Ctx) -> S3Result<Response> {
    let key = ctx.key()?.to_string();
    crate::s3::ops::write::check_unsupported_headers(ctx)?;
    crate::s3::ops::common::require_bucket(ctx).await?;
    let (algo, kind) = upload_checksum(ctx)?;
    let checksum_algorithm = algo.map(|a| a.name().to_string());
    let info = UploadInfo {
        key: key.clone(),
        initiated: OffsetDateTime::now_utc().unix_timestamp_nanos(),
        headers: crate::s3::ops::write::stored_headers(ctx)?,
        tags: crate::s3::ops::write::header_tags(ctx)?,
        checksum_algorithm: checksum_algorithm.clone(),
        acl: crate::s3::ops::access::request_acl(ctx).await?,
        checksum_type: kind.map(|k| k.name().to_string()),
        completion: None,
    };
    let id = ctx.store_bucket()?.create_upload(&info).await?;
    let mut w = XmlWriter::new("InitiateMultipartUploadResult");
    w.elem("Bucket", &ctx.bucket_ref()?.s3)
        .elem("Key", &key)
        .elem("UploadId", &id);
    let mut resp = respond::xml(w.finish("InitiateMultipartUploadResult"));
    if let Some(a) = checksum_algorithm {
        respond::set(&mut resp, "x-amz-checksum-algorithm", a);
    }
    if let Some(k) = kind {
        respond::set(&mut resp, "x-amz-checksum-type", k.name());
    }
    Ok(resp)
}

/// The checksum algorithm and type a CreateMultipartUpload asks for, refusing what S3
/// refuses: a type without an algorithm, SHA digests as full-object checksums, CRC64NVME
/// as a composite one.
fn upload_checksum(ctx: &Ctx) -> S3Result<(Option<Algo>, Option<Kind>)> {
    let algo = match ctx.header("x-amz-checksum-algorithm") {
        Some(a) => Some(Algo::parse(a).ok_or_else(|| {
            S3Error::invalid_request(format!("Checksum algorithm {a} is not supported"))
        })?),
        None => None,
    };
    let asked = match ctx.header("x-amz-checksum-type") {
        Some(t) => Some(Kind::parse(t).ok_or_else(|| {
            S3Error::invalid_request(format!(
                "Value for x-amz-checksum-type header is invalid: {t}"
            ))
        })?),
        None => None,
    };
    match (algo, asked) {
        (None, None) => Ok((None, None)),
        (None, Some(_)) => Err(S3Error::invalid_request(
            "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
        )),
        (Some(a), Some(k)) if !k.allows(a) => Err(S3Error::invalid_request(format!(
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            k.name(),
            a.name().to_lowercase()
        ))),
        (Some(a), k) => Ok((Some(a), Some(k.unwrap_or_else(|| Kind::default_for(a))))),
    }
}

/// The checksum algorithm and type of an upload (older uploads with an algorithm and no
/// type made full-object checksums).
fn checksum_of(info: &UploadInfo) -> Option<(Algo, Kind)> {
    let algo = info.checksum_algorithm.as_deref().and_then(Algo::parse)?;
    let kind = info
        .checksum_type
        .as_deref()
        .and_then(Kind::parse)
        .unwrap_or(Kind::FullObject);
    Some((algo, kind))
}

/// UploadPart.
pub async fn upload_part(mut ctx: Ctx) -> S3Result<Response> {
    let id = upload_id(&ctx)?;
    let n = part_number(&ctx)?;
    let max = ctx.compiled.config.limits.max_part_size;
    crate::s3::ops::write::check_length(&ctx, max)?;
    let info = upload_for_key(&ctx, &id).await?;
    let bucket = ctx.store_bucket()?;
    // The upload's own algorithm is computed for every part (its composite checksum and
    // ListParts need it), whatever the request sends.
    let (body, checks) = ctx.upload_body_with(checksum_of(&info).map(|(a, _)| a))?;
    let part = bucket
        .put_part(&id, n, body, max, |w| Ok(checks.verify(w)?))
        .await?;
    let mut resp = respond::empty(StatusCode::OK);
    respond::set(&mut resp, "etag", respond::quote(&part.etag));
    for (algo, value) in &part.checksums {
        if let Some(a) = Algo::parse(algo) {
            respond::set(&mut resp, a.header(), value);
        }
    }
    Ok(resp)
}

/// UploadPartCopy: a part from a range of an existing object.
pub async fn upload_part_copy(ctx: &Ctx) -> S3Result<Response> {
    let id = upload_id(ctx)?;
    let n = part_number(ctx)?;
    let info = upload_for_key(ctx, &id).await?;
    let src = crate::s3::ops::copy::source(ctx).await?;
    let size = src.meta.size;
    let (start, end) = match ctx.header("x-amz-copy-source-range") {
        None => (0, size),
        Some(r) => parse_copy_range(r, size)?,
    };
    let max = ctx.compiled.config.limits.max_part_size;
    if end - start > max {
        return Err(S3Error::new(
            S3Code::EntityTooLarge,
            "Part exceeds the maximum allowed size",
        ));
    }
    let algos: Vec<Algo> = checksum_of(&info).map(|(a, _)| a).into_iter().collect();
    let (body, hashers) = crate::s3::ops::copy::source_stream(&src, start, end, &algos);
    let part = ctx
        .store_bucket()?
        .put_part(&id, n, body, max, |_| {
            Ok(hashers
                .finish()
                .into_iter()
                .map(|(a, v)| (a.name().to_string(), v))
                .collect())
        })
        .await?;
    let mut w = XmlWriter::new("CopyPartResult");
    w.elem("LastModified", respond::iso8601(part.modified_at()))
        .elem("ETag", respond::quote(&part.etag));
    for (algo, value) in &part.checksums {
        if let Some(a) = Algo::parse(algo) {
            w.elem(a.element(), value);
        }
    }
    Ok(respond::xml(w.finish("CopyPartResult")))
}

/// Parses `x-amz-copy-source-range` against the source size, as S3 answers: not of the form
/// `bytes=first-last` is InvalidArgument, outside the source is InvalidRange.
pub fn parse_copy_range(r: &str, size: u64) -> S3Result<(u64, u64)> {
    let malformed = || {
        S3Error::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
        .with("ArgumentName", "x-amz-copy-source-range")
        .with("ArgumentValue", r)
    };
    let (a, b) = r
        .trim()
        .strip_prefix("bytes=")
        .and_then(|s| s.split_once('-'))
        .ok_or_else(malformed)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(a) || !digits(b) {
        return Err(malformed());
    }
    let first: u64 = a.parse().map_err(|_| out_of_range(r, size))?;
    let last: u64 = b.parse().map_err(|_| out_of_range(r, size))?;
    if first > last {
        return Err(malformed());
    }
    if last >= size {
        return Err(out_of_range(r, size));
    }
    Ok((first, last + 1))
}

fn out_of_range(r: &str, size: u64) -> S3Error {
    S3Error::new(
        S3Code::InvalidRange,
        "The requested range is not satisfiable",
    )
    .with("RangeRequested", r)
    .with("ActualObjectSize", size.to_string())
}

#[derive(Deserialize)]
pub(crate) struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    pub(crate) parts: Vec<CompletePart>,
}

#[derive(Deserialize)]
pub(crate) struct CompletePart {
    #[serde(rename = "PartNumber")]
    pub(crate) number: u32,
    #[serde(rename = "ETag")]
    pub(crate) etag: String,
    #[serde(rename = "ChecksumCRC32")]
    crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    sha256: Option<String>,
}

impl CompletePart {
    /// The part checksums the request names, by algorithm.
    fn checksums(&self) -> impl Iterator<Item = (Algo, &str)> {
        [
            (Algo::Crc32, &self.crc32),
            (Algo::Crc32c, &self.crc32c),
            (Algo::Crc64Nvme, &self.crc64nvme),
            (Algo::Sha1, &self.sha1),
            (Algo::Sha256, &self.sha256),
        ]
        .into_iter()
        .filter_map(|(a, v)| Some((a, v.as_deref()?.trim())))
    }
}

/// What a Complete's headers say of the object's checksum.
struct AskedChecksum {
    kind: Option<Kind>,
    values: Vec<(Algo, String)>,
}

impl AskedChecksum {
    fn of(ctx: &Ctx) -> S3Result<AskedChecksum> {
        let kind = match ctx.header("x-amz-checksum-type") {
            Some(t) => Some(Kind::parse(t).ok_or_else(|| {
                S3Error::invalid_request(format!(
                    "Value for x-amz-checksum-type header is invalid: {t}"
                ))
            })?),
            None => None,
        };
        let values = crate::checksum::ALL
            .into_iter()
            .filter_map(|a| Some((a, ctx.header(a.header())?.trim().to_string())))
            .collect();
        Ok(AskedChecksum { kind, values })
    }

    /// Refuses a type other than the upload's and a value of another algorithm; returns
    /// the value to check the object against, if any.
    fn check(&self, sum: Option<(Algo, Kind)>) -> S3Result<Option<String>> {
        if let Some(asked) = self.kind {
            if sum.map(|(_, k)| k) != Some(asked) {
                return Err(S3Error::invalid_request(format!(
                    "The upload was created using the {} checksum mode. The complete request must use the same checksum mode.",
                    sum.map_or("null", |(_, k)| k.name())
                )));
            }
        }
        let mut given = None;
        for (algo, value) in &self.values {
            match sum {
                Some((a, _)) if a == *algo => given = Some(value.clone()),
                _ => {
                    return Err(S3Error::invalid_request(format!(
                        "The upload was created using {} checksums; the complete request cannot name a {} checksum.",
                        sum.map_or("no", |(a, _)| a.name()),
                        algo.name()
                    )))
                }
            }
        }
        Ok(given)
    }
}

/// Whether a part ETag in a Complete request names the stored part: exactly, quotes
/// optional (no `*`, no list, no weak tag: those are for conditional requests).
fn part_etag_matches(given: &str, stored: &str) -> bool {
    let bare = given
        .strip_prefix('"')
        .and_then(|g| g.strip_suffix('"'))
        .unwrap_or(given);
    bare == stored
}

/// What a Complete answers (the first one, and every repeat).
#[derive(Clone)]
struct Outcome {
    key: String,
    etag: String,
    version: Option<String>,
    checksums: Vec<(String, String)>,
    checksum_type: Option<String>,
    mode: Versioning,
}

impl Outcome {
    fn of(key: &str, done: Completed, mode: Versioning) -> Outcome {
        Outcome {
            key: key.to_string(),
            etag: done.etag,
            version: done.version,
            checksums: done.checksums,
            checksum_type: done.checksum_type,
            mode,
        }
    }
}

/// One CompleteMultipartUpload, detached from its request.
struct Completing {
    bucket: crate::store::Bucket,
    id: String,
    key: String,
    parts: Vec<CompletePart>,
    /// Digest of the part list, to recognise a repeat.
    digest: String,
    asked: AskedChecksum,
    expect: Expect,
    min_part: u64,
    max_object: u64,
}

impl Completing {
    /// Completes the upload, or answers as the Complete that did (or waits for the one
    /// that does).
    async fn run(self) -> S3Result<Outcome> {
        loop {
            let state = self
                .bucket
                .complete_state(&self.id, &self.key, &self.digest)
                .await?;
            let (info, revision, lapsed) = match state {
                UploadState::Done(done) => {
                    let mode = self.bucket.versioning().await?;
                    return Ok(Outcome::of(&self.key, done, mode));
                }
                UploadState::Open {
                    info,
                    revision,
                    lapsed,
                } => (info, revision, lapsed),
            };
            let sum = checksum_of(&info);
            let expected_sum = self.asked.check(sum)?;
            let chosen = match self.choose().await {
                Ok(chosen) => chosen,
                // The parts may have gone with a Complete that ended since the upload read
                // open (or an abort): answer as the upload now says.
                Err(e) if e.code == S3Code::InvalidPart => {
                    match self
                        .bucket
                        .complete_state(&self.id, &self.key, &self.digest)
                        .await?
                    {
                        UploadState::Open { revision: now, .. } if now == revision => {
                            return Err(e)
                        }
                        _ => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            if self.expect != Expect::Any {
                // Fail before assembling when the condition already does not hold.
                self.bucket.check_write(&self.key, &self.expect).await?;
            }
            let claimed = self
                .bucket
                .claim_upload(&self.id, (*info).clone(), revision, &self.digest, lapsed)
                .await?;
            let Some(claim) = claimed else {
                // Another Complete (or an abort) changed the upload meanwhile.
                continue;
            };
            let meta = self
                .assemble(claim, &info, &chosen, sum, expected_sum)
                .await?;
            let mode = self.bucket.versioning().await?;
            return Ok(Outcome::of(&self.key, Completed::of(&meta), mode));
        }
    }

    /// The stored parts the request names, checked as S3 checks them.
    async fn choose(&self) -> S3Result<Vec<PartInfo>> {
        let id = &self.id;
        let stored = self.bucket.parts(id).await?;
        let mut chosen: Vec<PartInfo> = Vec::with_capacity(self.parts.len());
        let mut last = 0u32;
        for (i, p) in self.parts.iter().enumerate() {
            if p.number <= last {
                return Err(S3Error::new(
                    S3Code::InvalidPartOrder,
                    "The list of parts was not in ascending order. Parts must be ordered by part number.",
                )
                .with("UploadId", id));
            }
            last = p.number;
            // A part checksum the request names must be the stored part's.
            let same_sums = |s: &PartInfo| {
                p.checksums().all(|(a, v)| {
                    s.checksums
                        .iter()
                        .any(|(n, stored)| n == a.name() && stored == v)
                })
            };
            let part = stored
                .get(&p.number)
                .filter(|s| part_etag_matches(&p.etag, &s.etag) && same_sums(s))
                .ok_or_else(|| {
                    S3Error::new(
                        S3Code::InvalidPart,
                        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
                    )
                    .with("UploadId", id)
                    .with("PartNumber", p.number.to_string())
                    .with("ETag", &p.etag)
                })?;
            if i + 1 < self.parts.len() && part.size < self.min_part {
                return Err(S3Error::new(
                    S3Code::EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size.",
                )
                .with("ProposedSize", part.size.to_string())
                .with("MinSizeAllowed", self.min_part.to_string())
                .with("PartNumber", p.number.to_string())
                .with("ETag", &p.etag));
            }
            chosen.push(part.clone());
        }
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        if total > self.max_object {
            return Err(S3Error::new(
                S3Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size",
            )
            .with("ProposedSize", total.to_string())
            .with("MaxSizeAllowed", self.max_object.to_string())
            .with("UploadId", id));
        }
        Ok(chosen)
    }

    /// Assembles and commits the chosen parts under `claim`.
    async fn assemble(
        &self,
        claim: Claim,
        info: &UploadInfo,
        chosen: &[PartInfo],
        sum: Option<(Algo, Kind)>,
        expected_sum: Option<String>,
    ) -> S3Result<ObjectMeta> {
        let mut md5s = md5_many::Md5State::new();
        for p in chosen {
            if let Ok(raw) = hex::decode(&p.etag) {
                md5s.update(&raw);
            }
        }
        let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
        let sizes: Vec<u64> = chosen.iter().map(|p| p.size).collect();
        let obj = NewObject {
            key: self.key.clone(),
            headers: info.headers.clone(),
            tags: info.tags.clone(),
            parts: sizes.clone(),
            acl: info.acl.clone().filter(|a| a.is_valid()),
        };
        // The checksum from the parts' own values when they combine; else over the bytes.
        let from_parts = sum.and_then(|(a, k)| {
            let named: Vec<(Option<&str>, u64)> = chosen
                .iter()
                .map(|p| {
                    let value = p.checksums.iter().find(|(n, _)| Algo::parse(n) == Some(a));
                    (value.map(|(_, v)| v.as_str()), p.size)
                })
                .collect();
            checksum::from_parts(a, k, &named)
        });
        let over_bytes = sum.filter(|_| from_parts.is_none());
        let assembly = std::sync::Mutex::new(over_bytes.map(|(a, k)| Assembly::new(a, k, &sizes)));
        let mut observe = |b: &[u8]| {
            if let Some(h) = assembly.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                h.update(b);
            }
        };
        let finish = || {
            let h = assembly.lock().unwrap_or_else(|p| p.into_inner()).take();
            let computed = from_parts.or_else(|| h.map(Assembly::finish));
            let (checksums, checksum_type, part_checksums) = match (sum, computed) {
                (Some((a, k)), Some((value, parts))) => {
                    // The value a client names may leave out the `-<parts>`.
                    let (bare, _) = value.rsplit_once('-').unwrap_or((&value, ""));
                    if expected_sum
                        .as_deref()
                        .is_some_and(|e| e != value && e != bare)
                    {
                        return Err(StoreError::from(S3Error::new(
                            S3Code::BadDigest,
                            format!(
                                "The {} you specified did not match the calculated checksum.",
                                a.name().to_lowercase()
                            ),
                        )));
                    }
                    let kind = Some(k.name().to_string());
                    (vec![(a.name().to_string(), value)], kind, parts)
                }
                _ => (Vec::new(), None, Vec::new()),
            };
            let finished = Finished {
                checksums,
                checksum_type,
                etag: Some(etag),
            };
            Ok((finished, part_checksums))
        };
        self.bucket
            .complete_upload(
                &self.id,
                claim,
                obj,
                chosen,
                self.expect.clone(),
                finish,
                // Nothing to compute over the bytes: the parts may be spliced.
                over_bytes
                    .is_some()
                    .then_some(&mut observe as &mut crate::store::Observer<'_>),
            )
            .await
            .map_err(S3Error::from)
    }
}

/// How long Complete answers normally before it switches to a 200 with keep-alive spaces.
const COMPLETE_WAIT: Duration = Duration::from_secs(2);

/// CompleteMultipartUpload: validates the part list, then assembles the object; a repeat
/// with the same parts answers as the first did. Long assemblies (or waits for another
/// Complete of the same upload) answer 200 at once and keep the connection alive with
/// spaces, as S3 does.
pub async fn complete(mut ctx: Ctx) -> S3Result<Response> {
    let id = upload_id(&ctx)?;
    let key = ctx.key()?.to_string();
    let limit = ctx
        .compiled
        .config
        .limits
        .max_xml_body_bytes
        .max(10_000 * 128);
    // Checksum headers here describe the object, not the XML document.
    let body = ctx.read_document(limit, false).await?;
    let req: CompleteMultipartUpload = xml::parse(&body)?;
    if req.parts.is_empty() {
        return Err(S3Error::malformed_xml());
    }
    let digest = parts_digest(req.parts.iter().map(|p| (p.number, p.etag.as_str())));
    let job = Completing {
        bucket: ctx.store_bucket()?,
        id,
        key,
        parts: req.parts,
        digest,
        asked: AskedChecksum::of(&ctx)?,
        expect: crate::s3::ops::write::write_expectation(&ctx)?,
        min_part: ctx.compiled.config.limits.min_part_size,
        max_object: ctx.max_object_size(),
    };
    let gw = ctx.gw.clone();
    let bucket_name = ctx.bucket_ref()?.s3.clone();
    let started = Instant::now();
    // Detached: a client that goes away does not cut the assembly short.
    let task = tokio::spawn(async move {
        let result = job.run().await;
        gw.metrics
            .complete_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    });
    let render = move |done: &Outcome| {
        let mut w = XmlWriter::new("CompleteMultipartUploadResult");
        w.elem("Location", format!("/{bucket_name}/{}", done.key))
            .elem("Bucket", &bucket_name)
            .elem("Key", &done.key)
            .elem("ETag", respond::quote(&done.etag));
        for (algo, value) in &done.checksums {
            if let Some(a) = Algo::parse(algo) {
                w.elem(a.element(), value);
            }
        }
        w.opt("ChecksumType", done.checksum_type.as_deref());
        w.finish("CompleteMultipartUploadResult")
    };
    let mut task = task;
    match tokio::time::timeout(COMPLETE_WAIT, &mut task).await {
        Ok(joined) => {
            let done = joined.map_err(S3Error::internal)??;
            let mut resp = respond::xml(render(&done));
            crate::s3::ops::common::version_header(&mut resp, done.version.as_deref(), done.mode);
            Ok(resp)
        }
        Err(_) => {
            let request_id = ctx.request_id.clone();
            let stream = futures::stream::unfold((Some(task), true), move |(task, first)| {
                let render = render.clone();
                let request_id = request_id.clone();
                async move {
                    let mut task = task?;
                    if first {
                        let head =
                            Bytes::from_static(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
                        return Some((Ok::<_, std::io::Error>(head), (Some(task), false)));
                    }
                    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
                        Err(_) => Some((Ok(Bytes::from_static(b" ")), (Some(task), false))),
                        Ok(joined) => {
                            let text = match joined {
                                Ok(Ok(done)) => render(&done),
                                Ok(Err(e)) => e.to_xml(&request_id),
                                Err(e) => S3Error::internal(e).to_xml(&request_id),
                            };
                            let body = text
                                .split_once('\n')
                                .map(|(_, rest)| rest.to_string())
                                .unwrap_or(text);
                            Some((Ok(Bytes::from(body)), (None, false)))
                        }
                    }
                }
            });
            let mut resp = Response::new(Body::from_stream(stream));
            respond::set(&mut resp, "content-type", "application/xml");
            Ok(resp)
        }
    }
}

/// AbortMultipartUpload.
pub async fn abort(ctx: &Ctx) -> S3Result<Response> {
    let id = upload_id(ctx)?;
    upload_for_key(ctx, &id).await?;
    ctx.store_bucket()?.abort_upload(&id).await?;
    Ok(respond::empty(StatusCode::NO_CONTENT))
}

/// ListParts.
pub async fn list_parts(ctx: &Ctx) -> S3Result<Response> {
    let id = upload_id(ctx)?;
    let info = upload_for_key(ctx, &id).await?;
    let max: usize = match ctx.query("max-parts") {
        None => 1000,
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(1000))
            .map_err(|_| S3Error::invalid_argument("max-parts must be an integer"))?,
    };
    let marker: u32 = match ctx.query("part-number-marker") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| S3Error::invalid_argument("part-number-marker must be an integer"))?,
    };
    let parts = ctx.store_bucket()?.parts(&id).await?;
    let after = (
        std::ops::Bound::Excluded(marker),
        std::ops::Bound::Unbounded,
    );
    let shown: Vec<(&u32, &PartInfo)> = parts.range(after).take(max).collect();
    let truncated = parts.range(after).nth(max).is_some();
    let mut w = XmlWriter::new("ListPartsResult");
    w.elem("Bucket", &ctx.bucket_ref()?.s3)
        .elem("Key", &info.key)
        .elem("UploadId", &id);
    let owner_id = crate::s3::ops::access::bucket_owner_id(ctx).await?;
    owner(&mut w, "Initiator", &owner_id);
    owner(&mut w, "Owner", &owner_id);
    w.elem("StorageClass", "STANDARD")
        .elem("PartNumberMarker", marker.to_string());
    if let Some((n, _)) = shown.last() {
        w.elem("NextPartNumberMarker", n.to_string());
    }
    w.elem("MaxParts", max.to_string())
        .elem("IsTruncated", truncated.to_string());
    w.opt("ChecksumAlgorithm", info.checksum_algorithm.as_deref());
    w.opt("ChecksumType", checksum_of(&info).map(|(_, k)| k.name()));
    for (n, p) in shown {
        w.open("Part")
            .elem("PartNumber", n.to_string())
            .elem("LastModified", respond::iso8601(p.modified_at()))
            .elem("ETag", respond::quote(&p.etag))
            .elem("Size", p.size.to_string());
        for (algo, value) in &p.checksums {
            if let Some(a) = Algo::parse(algo) {
                w.elem(a.element(), value);
            }
        }
        w.close("Part");
    }
    Ok(respond::xml(w.finish("ListPartsResult")))
}

fn owner(w: &mut XmlWriter, tag: &str, id: &str) {
    w.open(tag)
        .elem("ID", id)
        .elem("DisplayName", OWNER_NAME)
        .close(tag);
}

/// ListMultipartUploads, sorted by key then initiation time.
pub async fn list_uploads(ctx: &Ctx) -> S3Result<Response> {
    crate::s3::ops::common::require_bucket(ctx).await?;
    let prefix = ctx.query("prefix").unwrap_or_default().to_string();
    let delimiter = ctx.query("delimiter").unwrap_or_default().to_string();
    let key_marker = ctx.query("key-marker").unwrap_or_default().to_string();
    let id_marker = ctx
        .query("upload-id-marker")
        .unwrap_or_default()
        .to_string();
    let max: usize = match ctx.query("max-uploads") {
        None => 1000,
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.min(1000))
            .map_err(|_| S3Error::invalid_argument("max-uploads must be an integer"))?,
    };
    let mut uploads = ctx.store_bucket()?.uploads().await?;
    uploads.sort_by(|a, b| (&a.1.key, a.1.initiated, &a.0).cmp(&(&b.1.key, b.1.initiated, &b.0)));
    let mut items: Vec<(String, UploadInfo)> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut next: Option<(String, String)> = None;
    for (id, info) in uploads {
        if !info.key.starts_with(&prefix) {
            continue;
        }
        let after_marker = if id_marker.is_empty() {
            info.key > key_marker
        } else {
            info.key > key_marker || (info.key == key_marker && id > id_marker)
        };
        if !key_marker.is_empty() && !after_marker {
            continue;
        }
        let rest = &info.key[prefix.len()..];
        let group = (!delimiter.is_empty())
            .then(|| rest.find(&delimiter))
            .flatten()
            .map(|i| info.key[..prefix.len() + i + delimiter.len()].to_string());
        if let Some(cp) = group {
            if prefixes.last() == Some(&cp) {
                continue;
            }
            if items.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            next = Some((cp.clone(), String::new()));
            prefixes.push(cp);
            continue;
        }
        if items.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        next = Some((info.key.clone(), id.clone()));
        items.push((id, info));
    }
    let mut w = XmlWriter::new("ListMultipartUploadsResult");
    w.elem("Bucket", &ctx.bucket_ref()?.s3)
        .elem("KeyMarker", &key_marker)
        .elem("UploadIdMarker", &id_marker);
    if truncated {
        if let Some((k, i)) = &next {
            w.elem("NextKeyMarker", k).elem("NextUploadIdMarker", i);
        }
    }
    w.elem("Prefix", &prefix);
    if !delimiter.is_empty() {
        w.elem("Delimiter", &delimiter);
    }
    w.elem("MaxUploads", max.to_string())
        .elem("IsTruncated", truncated.to_string());
    let owner_id = crate::s3::ops::access::bucket_owner_id(ctx).await?;
    for (id, info) in &items {
        w.open("Upload").elem("Key", &info.key).elem("UploadId", id);
        owner(&mut w, "Initiator", &owner_id);
        owner(&mut w, "Owner", &owner_id);
        w.elem("StorageClass", "STANDARD")
            .elem("Initiated", respond::iso8601(info.initiated_at()));
        w.opt("ChecksumAlgorithm", info.checksum_algorithm.as_deref());
        w.opt("ChecksumType", checksum_of(info).map(|(_, k)| k.name()));
        w.close("Upload");
    }
    for p in &prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", p)
            .close("CommonPrefixes");
    }
    Ok(respond::xml(w.finish("ListMultipartUploadsResult")))
}
