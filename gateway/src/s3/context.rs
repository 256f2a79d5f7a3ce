//! The per-request context handed to every operation, and request body helpers.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, Method};

use crate::auth::{self, Payload, Principal, TrailerSlot};
use crate::checksum::{self, Algo, Running};
use crate::config::compiled::{BucketRef, CompiledConfig};
use crate::error::{S3Code, S3Error, S3Result};
use crate::limits::ClientAddr;
use crate::s3::endpoint::{query_get, Endpoint, Query};
use crate::state::AppState;
use crate::store::{Bucket, Written};

/// Everything an operation handler needs to know about its request.
pub struct Ctx {
    pub gw: Arc<AppState>,
    pub compiled: Arc<CompiledConfig>,
    pub ep: Endpoint,
    pub request_id: String,
    /// Where the request comes from (see `TrustedProxies`).
    pub client: ClientAddr,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    pub bucket: Option<BucketRef>,
    pub key: Option<String>,
    /// The access key that signed the request, or the bucket's JWT; `None` when anonymous.
    pub principal: Option<Principal>,
    pub payload: Payload,
    /// In a mutex only so that `&Ctx` is `Send` (a body is not `Sync`).
    body: Mutex<Option<Body>>,
}

/// A request body as a stream of decoded payload bytes.
pub type BodyStream = std::pin::Pin<Box<dyn Stream<Item = S3Result<Bytes>> + Send>>;

impl Ctx {
    /// Builds the context; the body is kept for the handler to take.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gw: Arc<AppState>,
        compiled: Arc<CompiledConfig>,
        ep: Endpoint,
        request_id: String,
        client: ClientAddr,
        method: Method,
        headers: HeaderMap,
        query: Query,
        bucket: Option<BucketRef>,
        key: Option<String>,
        principal: Option<Principal>,
        payload: Payload,
        body: Body,
    ) -> Ctx {
        Ctx {
            gw,
            compiled,
            ep,
            request_id,
            client,
            method,
            headers,
            query,
            bucket,
            key,
            principal,
            payload,
            body: Mutex::new(Some(body)),
        }
    }

    /// A request header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a list header (repeated lines and comma-separated items).
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        query_get(&self.query, name)
    }

    /// The addressed bucket (operations on buckets always have one).
    pub fn bucket_ref(&self) -> S3Result<&BucketRef> {
        self.bucket
            .as_ref()
            .ok_or_else(|| S3Error::invalid_request("a bucket is required"))
    }

    /// The addressed key.
    pub fn key(&self) -> S3Result<&str> {
        self.key
            .as_deref()
            .ok_or_else(|| S3Error::invalid_request("an object key is required"))
    }

    /// The largest object the addressed bucket accepts.
    pub fn max_object_size(&self) -> u64 {
        let limits = &self.compiled.config.limits;
        match self.bucket.as_ref().and_then(|b| b.config.as_ref()) {
            Some(b) => b.max_object_size(limits),
            None => limits.max_object_size,
        }
    }

    /// The store handle of the addressed bucket (with the versioning its config declares).
    pub fn store_bucket(&self) -> S3Result<Bucket> {
        let b = self.bucket_ref()?;
        Ok(self
            .gw
            .store
            .bucket(&b.nats)
            .with_versioning(b.declared_versioning()))
    }

    /// The `versionId` query parameter: `None` when absent, `Some(None)` for `null`;
    /// InvalidArgument when it cannot be a version id.
    pub fn version_id(&self) -> S3Result<Option<Option<String>>> {
        match self.query("versionId") {
            None => Ok(None),
            Some("null") => Ok(Some(None)),
            Some(v) if crate::store::meta::valid_version_id(v) => Ok(Some(Some(v.to_string()))),
            Some(v) => Err(S3Error::invalid_argument("Invalid version id specified")
                .with("ArgumentName", "versionId")
                .with("ArgumentValue", v)),
        }
    }

    /// The declared payload length: `x-amz-decoded-content-length` for aws-chunked
    /// bodies, else `Content-Length`.
    pub fn declared_length(&self) -> S3Result<Option<u64>> {
        let name = match self.payload {
            Payload::SignedChunks { .. } | Payload::UnsignedChunksWithTrailer => {
                "x-amz-decoded-content-length"
            }
            _ => "content-length",
        };
        match self.header(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| S3Error::invalid_argument(format!("invalid {name}"))),
        }
    }

    /// Takes the body as a stream of payload bytes: aws-chunked framing removed and every
    /// chunk signature checked. The trailer slot fills when the stream ends.
    pub fn take_body(&mut self) -> (BodyStream, TrailerSlot) {
        let body = self
            .body
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(Body::empty);
        let metrics = self.gw.clone();
        let timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = timed_out.clone();
        let raw = body
            .into_data_stream()
            .map_err(move |e| {
                if crate::bodies::is_timeout(&e) {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                e.to_string()
            })
            .inspect_ok(move |b| metrics.metrics.bytes_in.inc_by(b.len() as u64));
        let (stream, slot): (BodyStream, TrailerSlot) = match &self.payload {
            Payload::SignedChunks { .. } | Payload::UnsignedChunksWithTrailer => {
                let (stream, slot) = auth::decode_chunked(Box::pin(raw), &self.payload);
                (Box::pin(stream), slot)
            }
            _ => (
                Box::pin(raw.map_err(|_| {
                    S3Error::new(
                        S3Code::IncompleteBody,
                        "The request body terminated unexpectedly",
                    )
                })),
                TrailerSlot::default(),
            ),
        };
        // The declared length is the client's word: more bytes are refused as they come.
        let stream: BodyStream = match self.declared_length() {
            Ok(Some(declared)) => {
                let mut seen = 0u64;
                Box::pin(stream.map(move |piece| {
                    let piece = piece?;
                    seen += piece.len() as u64;
                    if seen > declared {
                        return Err(S3Error::invalid_request(
                            "The request body is longer than its declared length.",
                        ));
                    }
                    Ok(piece)
                }))
            }
            _ => stream,
        };
        let gw = self.gw.clone();
        let stream = stream.map_err(move |e| {
            if timed_out.load(std::sync::atomic::Ordering::Relaxed) {
                gw.metrics.timeouts.with_label_values(&["idle_body"]).inc();
                S3Error::request_timeout()
            } else {
                e
            }
        });
        (Box::pin(stream), slot)
    }

    /// Reads a small body (XML documents) whole, up to `limit` bytes, verifying
    /// Content-MD5, the signed payload hash and any `x-amz-checksum-*` header.
    pub async fn read_small_body(&mut self, limit: usize) -> S3Result<Bytes> {
        self.read_document(limit, true).await
    }

    /// Like [`Ctx::read_small_body`]; `x-amz-checksum-*` headers are checked against the
    /// body only when `checksums_of_body` (on CompleteMultipartUpload they describe the
    /// object).
    pub async fn read_document(
        &mut self,
        limit: usize,
        checksums_of_body: bool,
    ) -> S3Result<Bytes> {
        let (mut stream, _) = self.take_body();
        let mut buf = BytesMut::new();
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            if buf.len() + piece.len() > limit {
                return Err(S3Error::new(
                    S3Code::MaxMessageLengthExceeded,
                    "Your request was too big.",
                ));
            }
            buf.extend_from_slice(&piece);
        }
        let body = buf.freeze();
        if let Payload::Sha256(want) = &self.payload {
            use sha2::Digest;
            let got: [u8; 32] = sha2::Sha256::digest(&body).into();
            if &got != want {
                return Err(sha_mismatch());
            }
        }
        if let Some(md5) = self.content_md5()? {
            let got: [u8; 16] = md5_many::md5(&body);
            if got != md5 {
                return Err(bad_digest());
            }
        }
        for algo in checksum::ALL.into_iter().filter(|_| checksums_of_body) {
            if let Some(v) = self.header(algo.header()) {
                let v = v.trim();
                if !checksum::well_formed(algo, v) {
                    return Err(S3Error::invalid_request(format!(
                        "Value for {} header is invalid.",
                        algo.header()
                    )));
                }
                let mut h = algo.hasher();
                h.update(&body);
                checksum::verify(
                    &[(algo, Some(v.to_string()))],
                    vec![(algo, h.finish())],
                    &[],
                )?;
            }
        }
        Ok(body)
    }

    /// The decoded `Content-MD5` header, if sent.
    pub fn content_md5(&self) -> S3Result<Option<[u8; 16]>> {
        crate::s3::common::content_md5(self.header("content-md5"))
    }

    /// Prepares the integrity checks of an upload body: wraps the stream to compute the
    /// requested S3 checksums, and returns what `verify` needs once the body is written.
    pub fn upload_body(&mut self) -> S3Result<(BodyStream, UploadChecks)> {
        self.upload_body_with(None)
    }

    /// Like [`Ctx::upload_body`], computing `also` (a multipart upload's algorithm) even
    /// when the request does not ask for it.
    pub fn upload_body_with(&mut self, also: Option<Algo>) -> S3Result<(BodyStream, UploadChecks)> {
        let md5 = self.content_md5()?;
        let mut wanted = crate::s3::common::sent_checksums(|name| self.header(name))?;
        let mut announced = Vec::new();
        for name in self.header_list("x-amz-trailer") {
            let name = name.as_str();
            {
                match Algo::from_header(name) {
                    Some(a) if wanted.iter().all(|(w, _)| *w != a) => {
                        wanted.push((a, None));
                        announced.push(a);
                    }
                    Some(_) => {}
                    None => {
                        return Err(S3Error::invalid_argument(format!(
                            "unsupported trailer {name}"
                        )))
                    }
                }
            }
        }
        if wanted.is_empty() {
            let algo_header = self
                .header("x-amz-sdk-checksum-algorithm")
                .or_else(|| self.header("x-amz-checksum-algorithm"));
            if let Some(a) = algo_header {
                let algo = Algo::parse(a).ok_or_else(|| {
                    S3Error::invalid_request(format!("Checksum algorithm {a} is not supported"))
                })?;
                wanted.push((algo, None));
            }
        }
        if let Some(a) = also.filter(|a| wanted.iter().all(|(w, _)| w != a)) {
            wanted.push((a, None));
        }
        let algos: Vec<Algo> = wanted.iter().map(|(a, _)| *a).collect();
        let hashers = Running::new(&algos);
        let (stream, trailers) = self.take_body();
        let stream: BodyStream = if wanted.is_empty() {
            stream
        } else {
            let h = hashers.clone();
            Box::pin(stream.inspect_ok(move |b| h.update(b)))
        };
        let checks = UploadChecks {
            md5,
            sha256: match &self.payload {
                Payload::Sha256(h) => Some(*h),
                _ => None,
            },
            declared: self.declared_length()?,
            announced,
            wanted,
            hashers,
            trailers,
        };
        Ok((stream, checks))
    }
}

/// The integrity checks of one upload body, run after it is written and before it shows.
pub struct UploadChecks {
    md5: Option<[u8; 16]>,
    sha256: Option<[u8; 32]>,
    declared: Option<u64>,
    /// Checksums `x-amz-trailer` announced: their trailers must arrive.
    announced: Vec<Algo>,
    wanted: Vec<(Algo, Option<String>)>,
    hashers: Running,
    trailers: TrailerSlot,
}

fn sha_mismatch() -> S3Error {
    S3Error::new(
        S3Code::XAmzContentSHA256Mismatch,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )
}

fn bad_digest() -> S3Error {
    S3Error::new(
        S3Code::BadDigest,
        "The Content-MD5 you specified did not match what we received.",
    )
}

impl UploadChecks {
    /// Verifies length, Content-MD5, payload SHA-256 and checksums; returns the
    /// checksums to store (algorithm name, base64 value).
    pub fn verify(&self, w: &Written) -> S3Result<Vec<(String, String)>> {
        if let Some(len) = self.declared {
            if w.size < len {
                return Err(S3Error::new(
                    S3Code::IncompleteBody,
                    "You did not provide the number of bytes specified by the Content-Length HTTP header.",
                ));
            }
            if w.size > len {
                return Err(S3Error::invalid_request(
                    "The request body is longer than its declared length.",
                ));
            }
        }
        if let Some(md5) = self.md5 {
            if md5 != w.md5 {
                return Err(bad_digest());
            }
        }
        if let Some(sha) = self.sha256 {
            if sha != w.sha256 {
                return Err(sha_mismatch());
            }
        }
        let trailers = self.trailers.get();
        let arrived = |a: &Algo| trailers.iter().any(|(n, _)| n == a.header());
        let unannounced = trailers.iter().any(|(n, _)| {
            n.starts_with("x-amz-checksum-")
                && !self.announced.iter().any(|a| a.header() == n.as_str())
        });
        if unannounced || !self.announced.iter().all(arrived) {
            return Err(S3Error::new(
                S3Code::MalformedTrailerError,
                "The request contained trailing data that was not well-formed or did not conform to our published schema.",
            ));
        }
        checksum::verify(&self.wanted, self.hashers.finish(), &trailers)
    }
}
