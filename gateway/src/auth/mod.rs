//! Request authentication: AWS Signature Version 4 verification as S3 does it.
//!
//! [`authenticate`] checks the `Authorization` header or a presigned query, [`decode_chunked`]
//! decodes and verifies `aws-chunked` bodies, and [`verify_post_policy`] handles browser POST
//! uploads.

mod canonical;
mod chunked;
pub mod jwt;
mod post_policy;
mod sigv4;
mod verify;

#[cfg(test)]
mod tests;

use std::fmt;

use http::header::AUTHORIZATION;

use crate::error::{S3Code, S3Error};

pub use chunked::{decode_chunked, ChunkedBody, TrailerSlot};
pub use post_policy::{verify_post_policy, PostPolicy};
pub use sigv4::ct_eq;

/// Who a request speaks for.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The access key that signed the request (SigV4).
    AccessKey(String),
    /// A valid JWT of the addressed bucket.
    Token(jwt::TokenClaims),
}

impl Principal {
    /// The access key, for SigV4 callers.
    pub fn access_key(&self) -> Option<&str> {
        match self {
            Principal::AccessKey(k) => Some(k),
            Principal::Token(_) => None,
        }
    }
}

/// The parts of a request that authentication reads.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The request method.
    pub method: &'a http::Method,
    /// The path exactly as received on the wire (percent-encoded), without the query.
    pub raw_path: &'a str,
    /// The raw query string without '?', if any.
    pub raw_query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
}

/// Finds the secret key of an access key id; None when the key is unknown or not valid now.
pub trait SecretLookup {
    /// The secret key of `access_key_id`, if the key exists and is valid now.
    fn secret(&self, access_key_id: &str) -> Option<String>;
}

/// Server-side settings for verification.
#[derive(Debug, Clone, Copy)]
pub struct AuthSettings<'a> {
    /// The region requests must be signed for.
    pub region: &'a str,
    /// The current time.
    pub now: time::OffsetDateTime,
    /// The largest allowed difference between the request time and `now` (S3: 15 minutes).
    pub max_skew: std::time::Duration,
}

/// The outcome of [`authenticate`].
#[derive(Debug, Clone)]
pub enum Authenticated {
    /// No credentials were presented.
    Anonymous,
    /// A valid signature was presented.
    Signed(SignedRequest),
}

/// A request whose signature has been verified.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// Whether the signature came from the query string (presigned URL).
    pub presigned: bool,
    /// How the body must be read.
    pub payload: Payload,
}

/// How the request body must be read.
#[derive(Debug, Clone)]
pub enum Payload {
    /// UNSIGNED-PAYLOAD, presigned URLs, or no x-amz-content-sha256 on presigned.
    Unsigned,
    /// The body's SHA-256 must equal this (caller verifies while streaming; mismatch =>
    /// XAmzContentSHA256Mismatch).
    Sha256([u8; 32]),
    /// STREAMING-AWS4-HMAC-SHA256-PAYLOAD (trailer=false) or
    /// STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (trailer=true).
    SignedChunks {
        /// Verifies the chunk and trailer signatures.
        signer: ChunkSigner,
        /// Whether signed trailing headers follow the final chunk.
        trailer: bool,
    },
    /// STREAMING-UNSIGNED-PAYLOAD-TRAILER.
    UnsignedChunksWithTrailer,
}

/// Everything needed to verify chunk and trailer signatures: signing key, seed signature,
/// request date and credential scope.
#[derive(Clone)]
pub struct ChunkSigner {
    key: [u8; 32],
    seed: String,
    amz_date: String,
    scope: String,
}

impl fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSigner")
            .field("seed", &self.seed)
            .field("amz_date", &self.amz_date)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Verifies the request's signature (Authorization header or presigned query) or returns
/// Anonymous when neither is present.
pub fn authenticate(
    req: &RequestParts<'_>,
    lookup: &dyn SecretLookup,
    settings: &AuthSettings<'_>,
) -> Result<Authenticated, S3Error> {
    let query = canonical::parse_query(req.raw_query.unwrap_or(""));
    let has = |name: &str| query.iter().any(|(n, _)| n == name.as_bytes());
    let presigned_v4 = has("X-Amz-Algorithm") || has("X-Amz-Credential") || has("X-Amz-Signature");
    let presigned_v2 = has("AWSAccessKeyId") && has("Signature");
    let header = req.headers.get(AUTHORIZATION);
    match (header, presigned_v4 || presigned_v2) {
        (None, false) => Ok(Authenticated::Anonymous),
        (Some(_), true) => Err(S3Error::new(
            S3Code::InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        )
        .with("ArgumentName", "Authorization")),
        (Some(value), false) => verify::verify_header(req, value, &query, lookup, settings),
        (None, true) if !presigned_v4 => Err(sigv4::unsupported_mechanism()),
        (None, true) => verify::verify_presigned(req, &query, lookup, settings),
    }
}
