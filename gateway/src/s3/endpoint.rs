//! The typed `Endpoint`: every S3 operation, parsed once from method, path, query and a
//! few headers.

use http::{HeaderMap, Method};

use crate::error::{S3Code, S3Error, S3Result};

/// An S3 operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket,
    DeleteBucket,
    HeadBucket,
    GetBucketLocation,
    GetBucketVersioning,
    PutBucketVersioning,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    GetBucketTagging,
    PutBucketTagging,
    DeleteBucketTagging,
    GetBucketCors,
    PutBucketCors,
    DeleteBucketCors,
    GetBucketAcl,
    PutBucketAcl,
    GetBucketPolicy,
    PutBucketPolicy,
    DeleteBucketPolicy,
    GetBucketPolicyStatus,
    GetPublicAccessBlock,
    PutPublicAccessBlock,
    DeletePublicAccessBlock,
    DeleteObjects,
    PostObject,
    GetObject,
    HeadObject,
    PutObject,
    CopyObject,
    DeleteObject,
    GetObjectTagging,
    PutObjectTagging,
    DeleteObjectTagging,
    GetObjectAcl,
    PutObjectAcl,
    GetObjectAttributes,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    /// CORS preflight.
    Preflight,
    /// A known S3 operation this gateway does not implement.
    NotImplemented(&'static str),
}

/// What an operation needs from the caller's grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No bucket: only a valid signature.
    Authenticated,
    /// No authentication at all.
    Nothing,
    Read,
    Write,
    Admin,
}

impl Endpoint {
    /// The operation name used in metrics, logs and errors.
    pub fn name(self) -> &'static str {
        use Endpoint::*;
        match self {
            ListBuckets => "ListBuckets",
            CreateBucket => "CreateBucket",
            DeleteBucket => "DeleteBucket",
            HeadBucket => "HeadBucket",
            GetBucketLocation => "GetBucketLocation",
            GetBucketVersioning => "GetBucketVersioning",
            PutBucketVersioning => "PutBucketVersioning",
            ListObjects => "ListObjects",
            ListObjectsV2 => "ListObjectsV2",
            ListObjectVersions => "ListObjectVersions",
            ListMultipartUploads => "ListMultipartUploads",
            GetBucketTagging => "GetBucketTagging",
            PutBucketTagging => "PutBucketTagging",
            DeleteBucketTagging => "DeleteBucketTagging",
            GetBucketCors => "GetBucketCors",
            PutBucketCors => "PutBucketCors",
            DeleteBucketCors => "DeleteBucketCors",
            GetBucketAcl => "GetBucketAcl",
            PutBucketAcl => "PutBucketAcl",
            GetBucketPolicy => "GetBucketPolicy",
            PutBucketPolicy => "PutBucketPolicy",
            DeleteBucketPolicy => "DeleteBucketPolicy",
            GetBucketPolicyStatus => "GetBucketPolicyStatus",
            GetPublicAccessBlock => "GetPublicAccessBlock",
            PutPublicAccessBlock => "PutPublicAccessBlock",
            DeletePublicAccessBlock => "DeletePublicAccessBlock",
            DeleteObjects => "DeleteObjects",
            PostObject => "PostObject",
            GetObject => "GetObject",
            HeadObject => "HeadObject",
            PutObject => "PutObject",
            CopyObject => "CopyObject",
            DeleteObject => "DeleteObject",
            GetObjectTagging => "GetObjectTagging",
            PutObjectTagging => "PutObjectTagging",
            DeleteObjectTagging => "DeleteObjectTagging",
            GetObjectAcl => "GetObjectAcl",
            PutObjectAcl => "PutObjectAcl",
            GetObjectAttributes => "GetObjectAttributes",
            CreateMultipartUpload => "CreateMultipartUpload",
            UploadPart => "UploadPart",
            UploadPartCopy => "UploadPartCopy",
            CompleteMultipartUpload => "CompleteMultipartUpload",
            AbortMultipartUpload => "AbortMultipartUpload",
            ListParts => "ListParts",
            Preflight => "Preflight",
            NotImplemented(n) => n,
        }
    }

    /// The permission the operation needs on its bucket.
    pub fn need(self) -> Need {
        use Endpoint::*;
        match self {
            ListBuckets => Need::Authenticated,
            Preflight | NotImplemented(_) | PostObject => Need::Nothing,
            CreateBucket
            | DeleteBucket
            | PutBucketTagging
            | DeleteBucketTagging
            | PutBucketCors
            | DeleteBucketCors
            | PutBucketAcl
            | PutBucketVersioning
            | GetBucketPolicy
            | PutBucketPolicy
            | DeleteBucketPolicy
            | GetPublicAccessBlock
            | PutPublicAccessBlock
            | DeletePublicAccessBlock => Need::Admin,
            HeadBucket
            | GetBucketLocation
            | GetBucketVersioning
            | ListObjects
            | ListObjectsV2
            | ListObjectVersions
            | GetBucketTagging
            | GetBucketCors
            | GetBucketAcl
            | GetObject
            | HeadObject
            | GetObjectTagging
            | GetObjectAcl
            | GetObjectAttributes
            | GetBucketPolicyStatus => Need::Read,
            ListMultipartUploads
            | ListParts
            | DeleteObjects
            | PutObject
            | CopyObject
            | DeleteObject
            | PutObjectTagging
            | DeleteObjectTagging
            | PutObjectAcl
            | CreateMultipartUpload
            | UploadPart
            | UploadPartCopy
            | CompleteMultipartUpload
            | AbortMultipartUpload => Need::Write,
        }
    }

    /// Whether anonymous callers may use it on a public-read bucket.
    pub fn public_read(self) -> bool {
        use Endpoint::*;
        matches!(
            self,
            HeadBucket
                | GetBucketLocation
                | ListObjects
                | ListObjectsV2
                | ListObjectVersions
                | GetObject
                | HeadObject
        )
    }
}

/// Query parameters in order, decoded.
pub type Query = Vec<(String, String)>;

/// The value of a query parameter.
pub fn query_get<'a>(q: &'a Query, name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn has(q: &Query, name: &str) -> bool {
    q.iter().any(|(k, _)| k == name)
}

/// Decodes a raw query string (`+` is a space, as S3 clients send it only encoded). A name
/// or value that does not decode to UTF-8 is `InvalidURI`, as in the path: decoded lossily,
/// two raw prefixes or markers would name one stored key.
pub fn parse_query(raw: Option<&str>) -> S3Result<Query> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> S3Result<String> {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8()
        .map(|d| d.into_owned())
        .map_err(|_| S3Error::new(S3Code::InvalidURI, "Couldn't parse the specified URI."))
}

/// Sub-resources that are S3 operations we do not serve.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("lifecycle", "BucketLifecycle"),
    ("replication", "BucketReplication"),
    ("website", "BucketWebsite"),
    ("logging", "BucketLogging"),
    ("notification", "BucketNotification"),
    ("encryption", "BucketEncryption"),
    ("object-lock", "ObjectLockConfiguration"),
    ("retention", "ObjectRetention"),
    ("legal-hold", "ObjectLegalHold"),
    ("accelerate", "BucketAccelerateConfiguration"),
    ("requestPayment", "BucketRequestPayment"),
    ("inventory", "BucketInventoryConfiguration"),
    ("analytics", "BucketAnalyticsConfiguration"),
    ("metrics", "BucketMetricsConfiguration"),
    (
        "intelligent-tiering",
        "BucketIntelligentTieringConfiguration",
    ),
    ("ownershipControls", "BucketOwnershipControls"),
    ("restore", "RestoreObject"),
    ("select", "SelectObjectContent"),
    ("torrent", "GetObjectTorrent"),
    ("session", "CreateSession"),
    ("metadataTable", "BucketMetadataTableConfiguration"),
];

/// Parses the operation. `bucket` and `key` come from the addressing style.
pub fn parse(
    method: &Method,
    bucket: Option<&str>,
    key: Option<&str>,
    q: &Query,
    headers: &HeaderMap,
) -> S3Result<Endpoint> {
    use Endpoint::*;
    if method == Method::OPTIONS {
        return Ok(Preflight);
    }
    for (sub, name) in UNSUPPORTED {
        if has(q, sub) {
            return Ok(NotImplemented(name));
        }
    }
    let Some(_bucket) = bucket else {
        return match *method {
            Method::GET => Ok(ListBuckets),
            _ => Err(S3Error::new(
                crate::error::S3Code::MethodNotAllowed,
                "The specified method is not allowed against this resource.",
            )),
        };
    };
    let method_not_allowed = || {
        Err(S3Error::new(
            crate::error::S3Code::MethodNotAllowed,
            "The specified method is not allowed against this resource.",
        ))
    };
    match key {
        None => match *method {
            Method::GET => Ok(if has(q, "location") {
                GetBucketLocation
            } else if has(q, "versioning") {
                GetBucketVersioning
            } else if has(q, "tagging") {
                GetBucketTagging
            } else if has(q, "cors") {
                GetBucketCors
            } else if has(q, "acl") {
                GetBucketAcl
            } else if has(q, "policy") {
                GetBucketPolicy
            } else if has(q, "policyStatus") {
                GetBucketPolicyStatus
            } else if has(q, "publicAccessBlock") {
                GetPublicAccessBlock
            } else if has(q, "uploads") {
                ListMultipartUploads
            } else if has(q, "versions") {
                ListObjectVersions
            } else if query_get(q, "list-type") == Some("2") {
                ListObjectsV2
            } else {
                ListObjects
            }),
            Method::HEAD => Ok(HeadBucket),
            Method::PUT => Ok(if has(q, "tagging") {
                PutBucketTagging
            } else if has(q, "cors") {
                PutBucketCors
            } else if has(q, "acl") {
                PutBucketAcl
            } else if has(q, "policy") {
                PutBucketPolicy
            } else if has(q, "publicAccessBlock") {
                PutPublicAccessBlock
            } else if has(q, "versioning") {
                PutBucketVersioning
            } else {
                CreateBucket
            }),
            Method::DELETE => Ok(if has(q, "tagging") {
                DeleteBucketTagging
            } else if has(q, "cors") {
                DeleteBucketCors
            } else if has(q, "policy") {
                DeleteBucketPolicy
            } else if has(q, "publicAccessBlock") {
                DeletePublicAccessBlock
            } else {
                DeleteBucket
            }),
            Method::POST => Ok(if has(q, "delete") {
                DeleteObjects
            } else {
                PostObject
            }),
            _ => method_not_allowed(),
        },
        Some(_) => match *method {
            Method::GET => Ok(if has(q, "tagging") {
                GetObjectTagging
            } else if has(q, "acl") {
                GetObjectAcl
            } else if has(q, "attributes") {
                GetObjectAttributes
            } else if has(q, "uploadId") {
                ListParts
            } else {
                GetObject
            }),
            Method::HEAD => Ok(HeadObject),
            Method::PUT => Ok(if has(q, "tagging") {
                PutObjectTagging
            } else if has(q, "acl") {
                PutObjectAcl
            } else if has(q, "partNumber") && has(q, "uploadId") {
                if headers.contains_key("x-amz-copy-source") {
                    UploadPartCopy
                } else {
                    UploadPart
                }
            } else if headers.contains_key("x-amz-copy-source") {
                CopyObject
            } else {
                PutObject
            }),
            Method::DELETE => Ok(if has(q, "tagging") {
                DeleteObjectTagging
            } else if has(q, "uploadId") {
                AbortMultipartUpload
            } else {
                DeleteObject
            }),
            Method::POST => {
                if has(q, "uploads") {
                    Ok(CreateMultipartUpload)
                } else if has(q, "uploadId") {
                    Ok(CompleteMultipartUpload)
                } else {
                    method_not_allowed()
                }
            }
            _ => method_not_allowed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(method: Method, bucket: Option<&str>, key: Option<&str>, query: &str) -> Endpoint {
        let q = parse_query(Some(query)).expect("UTF-8");
        parse(&method, bucket, key, &q, &HeaderMap::new()).expect("parses")
    }

    #[test]
    fn routes_bucket_and_object_operations() {
        use Endpoint::*;
        assert_eq!(ep(Method::GET, None, None, ""), ListBuckets);
        assert_eq!(
            ep(Method::GET, Some("b"), None, "list-type=2&prefix=a"),
            ListObjectsV2
        );
        assert_eq!(ep(Method::GET, Some("b"), None, "prefix=a"), ListObjects);
        assert_eq!(
            ep(Method::GET, Some("b"), None, "versions"),
            ListObjectVersions
        );
        assert_eq!(ep(Method::PUT, Some("b"), None, ""), CreateBucket);
        assert_eq!(ep(Method::POST, Some("b"), None, "delete"), DeleteObjects);
        assert_eq!(
            ep(Method::POST, Some("b"), Some("k"), "uploads"),
            CreateMultipartUpload
        );
        assert_eq!(
            ep(Method::PUT, Some("b"), Some("k"), "partNumber=1&uploadId=x"),
            UploadPart
        );
        assert_eq!(
            ep(Method::GET, Some("b"), Some("k"), "uploadId=x"),
            ListParts
        );
        assert_eq!(
            ep(Method::DELETE, Some("b"), Some("k"), "uploadId=x"),
            AbortMultipartUpload
        );
        assert_eq!(
            ep(Method::GET, Some("b"), Some("k"), "attributes"),
            GetObjectAttributes
        );
        assert_eq!(ep(Method::OPTIONS, Some("b"), Some("k"), ""), Preflight);
        assert_eq!(ep(Method::GET, Some("b"), None, "policy"), GetBucketPolicy);
        assert_eq!(
            ep(Method::DELETE, Some("b"), None, "publicAccessBlock"),
            DeletePublicAccessBlock
        );
        assert_eq!(
            ep(Method::GET, Some("b"), None, "lifecycle"),
            NotImplemented("BucketLifecycle")
        );
    }

    #[test]
    fn copy_source_header_selects_copy() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-copy-source", "src/k".parse().expect("header"));
        let q = parse_query(Some("partNumber=2&uploadId=u")).expect("UTF-8");
        assert_eq!(
            parse(&Method::PUT, Some("b"), Some("k"), &q, &h).expect("parses"),
            Endpoint::UploadPartCopy
        );
        assert_eq!(
            parse(&Method::PUT, Some("b"), Some("k"), &Vec::new(), &h).expect("parses"),
            Endpoint::CopyObject
        );
    }

    #[test]
    fn decodes_query_values() {
        let q = parse_query(Some("prefix=a%2Fb+c&delimiter=%2F&empty")).expect("UTF-8");
        assert_eq!(query_get(&q, "prefix"), Some("a/b c"));
        assert_eq!(query_get(&q, "delimiter"), Some("/"));
        assert_eq!(query_get(&q, "empty"), Some(""));
        for bad in ["prefix=%FF", "a%C3%28=1", "marker=x%ED%A0%80"] {
            let e = parse_query(Some(bad)).expect_err(bad);
            assert_eq!(e.code, S3Code::InvalidURI, "{bad}");
        }
    }
}
