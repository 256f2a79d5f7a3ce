//! S3 error codes and the gateway's single error type.

use crate::store::{Full, NatsError, StoreError, Unmet};
use axum::response::Response;
use http::{HeaderValue, StatusCode};

/// The S3 error codes the gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Code {
    AccessDenied,
    AccessForbidden,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    ExpiredToken,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidDigest,
    InvalidObjectState,
    InvalidPart,
    InvalidPartOrder,
    InvalidPartNumber,
    InvalidRange,
    InvalidRequest,
    InvalidStorageClass,
    InvalidTag,
    KeyTooLongError,
    MalformedXML,
    MalformedPOSTRequest,
    MaxMessageLengthExceeded,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingRequestBodyError,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchBucketPolicy,
    NoSuchCORSConfiguration,
    NoSuchKey,
    NoSuchTagSet,
    NoSuchUpload,
    NoSuchVersion,
    InsufficientStorage,
    NotImplemented,
    NotModified,
    PreconditionFailed,
    RequestHeaderSectionTooLarge,
    RequestTimeTooSkewed,
    RequestTimeout,
    ServiceUnavailable,
    SignatureDoesNotMatch,
    SlowDown,
    XAmzContentSHA256Mismatch,
    InvalidChecksum,
    ConditionalRequestConflict,
    MalformedTrailerError,
    InvalidURI,
    MalformedPolicy,
    MalformedACLError,
    NoSuchPublicAccessBlockConfiguration,
    UnresolvableGrantByEmailAddress,
    UnexpectedContent,
}

impl S3Code {
    /// The code as S3 spells it in `<Code>`.
    pub fn as_str(self) -> &'static str {
        use S3Code::*;
        match self {
            AccessDenied => "AccessDenied",
            AccessForbidden => "AccessForbidden",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            ExpiredToken => "ExpiredToken",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidDigest => "InvalidDigest",
            InvalidObjectState => "InvalidObjectState",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidPartNumber => "InvalidPartNumber",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            InvalidStorageClass => "InvalidStorageClass",
            InvalidTag => "InvalidTag",
            KeyTooLongError => "KeyTooLongError",
            MalformedXML => "MalformedXML",
            MalformedPOSTRequest => "MalformedPOSTRequest",
            MaxMessageLengthExceeded => "MaxMessageLengthExceeded",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingRequestBodyError => "MissingRequestBodyError",
            MissingSecurityHeader => "MissingSecurityHeader",
            NoSuchBucket => "NoSuchBucket",
            NoSuchBucketPolicy => "NoSuchBucketPolicy",
            NoSuchCORSConfiguration => "NoSuchCORSConfiguration",
            NoSuchKey => "NoSuchKey",
            NoSuchTagSet => "NoSuchTagSet",
            NoSuchUpload => "NoSuchUpload",
            NoSuchVersion => "NoSuchVersion",
            InsufficientStorage => "InsufficientStorage",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            PreconditionFailed => "PreconditionFailed",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            RequestTimeout => "RequestTimeout",
            ServiceUnavailable => "ServiceUnavailable",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            InvalidChecksum => "InvalidChecksum",
            ConditionalRequestConflict => "ConditionalRequestConflict",
            MalformedTrailerError => "MalformedTrailerError",
            InvalidURI => "InvalidURI",
            MalformedPolicy => "MalformedPolicy",
            MalformedACLError => "MalformedACLError",
            NoSuchPublicAccessBlockConfiguration => "NoSuchPublicAccessBlockConfiguration",
            UnresolvableGrantByEmailAddress => "UnresolvableGrantByEmailAddress",
            UnexpectedContent => "UnexpectedContent",
        }
    }

    /// The HTTP status S3 uses for the code.
    pub fn status(self) -> StatusCode {
        use S3Code::*;
        match self {
            AccessDenied
            | AccessForbidden
            | InvalidAccessKeyId
            | SignatureDoesNotMatch
            | RequestTimeTooSkewed
            | ExpiredToken
            | InvalidObjectState => StatusCode::FORBIDDEN,
            NoSuchBucket
            | NoSuchKey
            | NoSuchUpload
            | NoSuchVersion
            | NoSuchTagSet
            | NoSuchBucketPolicy
            | NoSuchPublicAccessBlockConfiguration
            | NoSuchCORSConfiguration => StatusCode::NOT_FOUND,
            BucketAlreadyExists
            | BucketAlreadyOwnedByYou
            | BucketNotEmpty
            | ConditionalRequestConflict => StatusCode::CONFLICT,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MissingContentLength => StatusCode::LENGTH_REQUIRED,
            PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            InvalidRange | InvalidPartNumber => StatusCode::RANGE_NOT_SATISFIABLE,
            NotModified => StatusCode::NOT_MODIFIED,
            NotImplemented => StatusCode::NOT_IMPLEMENTED,
            InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ServiceUnavailable | SlowDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An S3 error answer: code, message and the resource it concerns.
#[derive(Debug, Clone)]
pub struct S3Error {
    pub code: S3Code,
    pub message: String,
    /// `<Resource>`: the path the request addressed, when known.
    pub resource: Option<String>,
    /// Extra elements placed in the XML body (name, value), e.g. `ArgumentName`.
    pub extra: Vec<(&'static str, String)>,
    /// Extra response headers (e.g. `Retry-After`, `x-amz-delete-marker`).
    pub headers: Vec<(&'static str, String)>,
    /// NATS failed or did not answer (counted by the circuit breaker).
    pub nats_failure: bool,
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for S3Error {}

impl S3Error {
    /// An error with a code and message.
    pub fn new(code: S3Code, message: impl Into<String>) -> Self {
        S3Error {
            code,
            message: message.into(),
            resource: None,
            extra: Vec::new(),
            headers: Vec::new(),
            nats_failure: false,
        }
    }

    /// Adds an element to the XML body.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets `<Resource>`.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// S3's answer to a client that took too long.
    pub fn request_timeout() -> Self {
        Self::new(
            S3Code::RequestTimeout,
            "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.",
        )
    }
    pub fn access_denied() -> Self {
        Self::new(S3Code::AccessDenied, "Access Denied")
    }
    pub fn no_such_bucket(bucket: &str) -> Self {
        Self::new(S3Code::NoSuchBucket, "The specified bucket does not exist")
            .with("BucketName", bucket)
    }
    pub fn no_such_key(key: &str) -> Self {
        Self::new(S3Code::NoSuchKey, "The specified key does not exist.").with("Key", key)
    }
    pub fn no_such_upload(id: &str) -> Self {
        Self::new(
            S3Code::NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        )
        .with("UploadId", id)
    }
    pub fn invalid_argument(msg: impl Into<String>) -> Self {
        Self::new(S3Code::InvalidArgument, msg)
    }
    pub fn invalid_request(msg: impl Into<String>) -> Self {
        Self::new(S3Code::InvalidRequest, msg)
    }
    pub fn malformed_xml() -> Self {
        Self::new(
            S3Code::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        tracing::error!(error = %msg, "internal error");
        Self::new(
            S3Code::InternalError,
            "We encountered an internal error. Please try again.",
        )
    }
    /// NATS is unreachable or failed.
    pub fn unavailable() -> Self {
        let mut e = Self::new(
            S3Code::ServiceUnavailable,
            "The storage backend is unavailable. Please retry.",
        )
        .header("Retry-After", "1");
        e.nats_failure = true;
        e
    }
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            S3Code::NotImplemented,
            format!("{what} is not implemented by this gateway"),
        )
    }
    pub fn precondition_failed(condition: &str) -> Self {
        Self::new(
            S3Code::PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold",
        )
        .with("Condition", condition)
    }

    /// Renders the S3 XML error body.
    pub fn to_xml(&self, request_id: &str) -> String {
        let mut s = String::with_capacity(256);
        s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
        s.push_str(self.code.as_str());
        s.push_str("</Code><Message>");
        s.push_str(&crate::xml::escape(&self.message));
        s.push_str("</Message>");
        for (name, value) in &self.extra {
            s.push('<');
            s.push_str(name);
            s.push('>');
            s.push_str(&crate::xml::escape(value));
            s.push_str("</");
            s.push_str(name);
            s.push('>');
        }
        if let Some(r) = &self.resource {
            s.push_str("<Resource>");
            s.push_str(&crate::xml::escape(r));
            s.push_str("</Resource>");
        }
        s.push_str("<RequestId>");
        s.push_str(request_id);
        s.push_str("</RequestId><HostId>");
        s.push_str(request_id);
        s.push_str("</HostId></Error>");
        s
    }
}

impl S3Error {
    /// Renders the error as an HTTP response carrying `request_id`.
    pub fn into_response(self, request_id: &str) -> Response {
        let status = self.code.status();
        let head_like = status == StatusCode::NOT_MODIFIED;
        let mut resp = if head_like {
            Response::new(axum::body::Body::empty())
        } else {
            Response::new(axum::body::Body::from(self.to_xml(request_id)))
        };
        *resp.status_mut() = status;
        if !head_like {
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
        }
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().insert(*name, v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// Marks a response as an S3 error, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub S3Code);

/// Result alias used across the gateway.
pub type S3Result<T> = Result<T, S3Error>;

impl From<StoreError> for S3Error {
    fn from(e: StoreError) -> S3Error {
        match e {
            StoreError::Nats { bucket, error } => nats_error(error, &bucket),
            StoreError::Unavailable => S3Error::unavailable(),
            StoreError::NoSuchBucket(bucket) => S3Error::no_such_bucket(&bucket),
            StoreError::NoSuchKey(key) => S3Error::no_such_key(&key),
            StoreError::NoSuchUpload(id) => S3Error::no_such_upload(&id),
            StoreError::Unmet(Unmet::Exists) => S3Error::precondition_failed("If-None-Match"),
            StoreError::Unmet(Unmet::EtagDiffers) => S3Error::precondition_failed("If-Match"),
            StoreError::TooSlow(message) => S3Error::new(S3Code::RequestTimeout, message),
            StoreError::Loading => S3Error::new(
                S3Code::ServiceUnavailable,
                "The bucket's listing index is loading; retry.",
            )
            .header("Retry-After", "2"),
            StoreError::TooLarge { max } => S3Error::new(
                S3Code::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size",
            )
            .with("MaxSizeAllowed", max.to_string()),
            StoreError::Internal(message) => S3Error::internal(message),
            StoreError::Caller(e) => match e.downcast::<S3Error>() {
                Ok(e) => *e,
                Err(e) => S3Error::internal(e),
            },
        }
    }
}

/// An S3 error met by the caller of a store operation (in its body or its check of the
/// finished body): the store passes it back as it came.
impl From<S3Error> for StoreError {
    fn from(e: S3Error) -> StoreError {
        StoreError::Caller(Box::new(e))
    }
}

/// The S3 error for a NATS failure in bucket `bucket`; a timeout or an unreachable NATS
/// counts for the circuit breaker ([`S3Error::nats_failure`]).
fn nats_error(e: NatsError, bucket: &str) -> S3Error {
    match e {
        NatsError::NoStream => S3Error::no_such_bucket(bucket),
        NatsError::NoResponders => {
            tracing::warn!(bucket, "no stream leader answered");
            S3Error::new(
                S3Code::ServiceUnavailable,
                "The bucket's storage is electing a leader; retry.",
            )
            .header("Retry-After", "1")
        }
        NatsError::WrongLastSequence => S3Error::new(
            S3Code::ConditionalRequestConflict,
            "The conditional request cannot succeed due to a conflicting operation against this resource.",
        ),
        NatsError::Closing => S3Error::new(
            S3Code::ServiceUnavailable,
            "The bucket is being deleted; retry to learn the outcome.",
        )
        .header("Retry-After", "1"),
        NatsError::TimedOut => {
            tracing::warn!(bucket, "NATS did not answer in time");
            S3Error::unavailable()
        }
        NatsError::StorageFull(full, text) => {
            let (message, what) = match full {
                Full::Bucket => ("The bucket is full: it holds its maxBytes.", "bucket"),
                Full::Server => ("The NATS server is out of storage.", "server"),
            };
            tracing::warn!(bucket, full = what, error = %text, "a write found no room");
            S3Error::new(S3Code::InsufficientStorage, message)
        }
        NatsError::BatchRefused => {
            tracing::warn!(bucket, "NATS took no atomic batch");
            S3Error::unavailable()
        }
        NatsError::Other(text) => {
            tracing::warn!(error = %text, bucket, "nats operation failed");
            S3Error::unavailable()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loading_index_is_retried_without_tripping_the_breaker() {
        let e = S3Error::from(StoreError::Loading);
        assert_eq!(e.code.as_str(), "ServiceUnavailable");
        assert!(!e.nats_failure, "NATS answered: the breaker must not open");
        assert!(e.headers.iter().any(|(h, _)| *h == "Retry-After"));
    }
}
