//! `S3Bucket`: an S3 bucket stored in a NATS JetStream object store.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    default_name_rule, s3_name_rule, BucketCacheSpec, BucketIpFilter, BucketJwt, BucketRateLimit,
    Condition, Duration, Time, DURATION_PATTERN, S3_BUCKET_NAME_PATTERN,
};

/// OpenAPI pattern of a NATS object-store bucket name.
pub const NATS_BUCKET_PATTERN: &str = r"^[a-zA-Z0-9_-]+$";

/// The desired state of an S3 bucket.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "jets3.io",
    version = "v1alpha1",
    kind = "S3Bucket",
    namespaced,
    shortname = "s3b",
    category = "jets3",
    status = "S3BucketStatus",
    derive = "PartialEq",
    doc = "An S3 bucket served by the jets3 gateway and stored in a NATS JetStream object-store bucket. Grant access to it with an S3Credential.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the bucket is provisioned and served"
    ),
    printcolumn(
        name = "Bucket",
        type_ = "string",
        json_path = ".status.bucketName",
        description = "The S3 bucket name clients use"
    ),
    printcolumn(
        name = "Size",
        type_ = "string",
        json_path = ".status.size",
        description = "Bytes stored in the bucket"
    ),
    printcolumn(
        name = "Objects",
        type_ = "integer",
        json_path = ".status.objectCount",
        description = "Objects stored in the bucket",
        priority = 1
    ),
    printcolumn(
        name = "Access",
        type_ = "string",
        json_path = ".spec.access",
        description = "Anonymous access: private or public-read",
        priority = 1
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "The URL apps send S3 requests to",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = default_name_rule(0),
    validation = default_name_rule(1),
    validation = default_name_rule(2),
    validation = default_name_rule(3),
    validation = Rule::new(
        "(has(self.spec.bucketName) ? self.spec.bucketName : self.metadata.name) == (has(oldSelf.spec.bucketName) ? oldSelf.spec.bucketName : oldSelf.metadata.name)"
    )
    .message("the S3 bucket name (spec.bucketName, or metadata.name when unset) is immutable"),
)]
#[x_kube(
    validation = Rule::new(
        "!has(self.maxObjectBytes) || !has(self.maxBytes) || self.maxObjectBytes <= self.maxBytes"
    )
    .message("maxObjectBytes must not be larger than maxBytes"),
    validation = Rule::new("has(self.natsBucket) == has(oldSelf.natsBucket)")
        .message("natsBucket cannot be added or removed after creation"),
)]
#[serde(rename_all = "camelCase")]
pub struct S3BucketSpec {
    /// The S3 bucket name clients use; defaults to metadata.name. 3 to 63 characters:
    /// lowercase letters, digits, '.' and '-', in dot-separated labels that begin and end with
    /// a letter or digit; not formatted as an IP address; not starting with 'xn--', 'sthree-'
    /// or 'amzn-s3-demo-'; not ending with '-s3alias', '--ol-s3', '--x-s3', '--table-s3' or
    /// '.mrap'. S3 names are global to the cluster: when S3Buckets in two namespaces claim the
    /// same name, the first keeps it and the other is not Ready (reason NameConflict).
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 63), pattern(S3_BUCKET_NAME_PATTERN))]
    #[x_kube(
        validation = s3_name_rule("self", 0),
        validation = s3_name_rule("self", 1),
        validation = s3_name_rule("self", 2)
    )]
    pub bucket_name: Option<String>,

    /// The NATS object-store bucket that holds the objects; defaults to the S3 bucket name with
    /// every '.' replaced by '_'. Set it to serve an existing NATS bucket whose name is not of
    /// that form (see adopt). Letters, digits, '_' and '-'. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128), pattern(NATS_BUCKET_PATTERN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("natsBucket is immutable"))]
    pub nats_bucket: Option<String>,

    /// Take over the NATS bucket if it already exists and was not created for this S3Bucket
    /// (for example one filled by native NATS clients). Without it, such a bucket is left
    /// untouched and the S3Bucket is not Ready (reason BucketExists). Only a bucket without a
    /// jets3 owner, or owned by an S3Bucket of this namespace, is adopted; one owned in another
    /// namespace (say retained after its S3Bucket was deleted) is refused (reason
    /// AdoptionRefused) unless the operator's --adopt-across-namespaces names this namespace.
    /// An adopted bucket is then managed like one the operator created: this spec is applied
    /// where NATS allows it, and deletionPolicy Delete deletes it with the S3Bucket.
    #[serde(default)]
    pub adopt: bool,

    /// Free text describing the bucket, stored as the NATS bucket's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,

    /// Where JetStream keeps the bucket: 'file' (default, survives restarts) or 'memory'.
    /// Immutable: NATS cannot move a bucket between storage types.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable"))]
    pub storage: StorageType,

    /// How many NATS servers keep a copy of the bucket's stream: 1 to 5. Unset: 3 on a NATS
    /// cluster (1 on a single server), so a bucket on a cluster survives losing a server; a
    /// cluster of two servers needs it set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<i32>,

    /// The most bytes the bucket may hold (JetStream max_bytes); when full, writes are
    /// refused. Unset: no limit beyond the NATS account's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_bytes: Option<i64>,

    /// The largest object, in bytes, the gateway accepts in this bucket (single PUT, copy or
    /// completed multipart upload). Unset: the gateway's global limit. Must not exceed
    /// maxBytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_object_bytes: Option<i64>,

    /// S3 Versioning: 'Enabled' keeps every version of every object (a DELETE adds a delete
    /// marker; versions are read, listed and deleted by version id), 'Suspended' makes no new
    /// versions but keeps the ones made before. Once set here, S3 clients cannot change it
    /// (PutBucketVersioning is AccessDenied). Unset: S3 clients decide. As on S3, a bucket
    /// that had versioning never becomes unversioned again: removing this field leaves it in
    /// its last state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "versioning_schema")]
    pub versioning: Option<crate::VersioningStatus>,

    /// An S3 bucket policy: the JSON document, as PutBucketPolicy takes it (Version,
    /// Statement with Effect, Principal, Action/NotAction, Resource/NotResource, Condition).
    /// Principals are '*' or jets3 credentials: {"AWS": "arn:aws:iam::jets3:user/<access
    /// key id>"} or {"CanonicalUser": "<canonical id>"}. Checked with the gateway's own
    /// parser: a policy it refuses keeps the bucket out of the gateway config (Served
    /// condition, reason InvalidConfig, with the parser's message). Once set here, S3 clients
    /// cannot change it (Put/DeleteBucketPolicy are AccessDenied). Unset: S3 clients decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 20480))]
    pub policy: Option<String>,

    /// S3 Block Public Access for this bucket (each field defaults to true). Once set here,
    /// S3 clients cannot change it (Put/DeletePublicAccessBlock are AccessDenied). Unset: the
    /// one set over S3, else the gateway-wide default (the operator's
    /// --public-access-block-default). 'access: public-read' is the cluster's own grant and
    /// is not subject to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<crate::PublicAccessBlock>,

    /// Objects older than this are removed by JetStream, as a Go duration ('24h', '720h',
    /// '90m'). Unset: objects are kept until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), pattern(DURATION_PATTERN))]
    #[x_kube(
        validation = Rule::new("duration(self) > duration('0s')").message("ttl must be longer than 0s")
    )]
    pub ttl: Option<Duration>,

    /// Compress the bucket's stream on the NATS servers (S2). Reads return the original bytes.
    #[serde(default)]
    pub compression: bool,

    /// Which NATS servers hold the bucket's stream: a cluster and/or server tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,

    /// Key-value metadata stored on the NATS bucket's stream, visible to native NATS clients.
    /// Keys starting with 'jets3.' or '_nats.' are reserved (jets3 and the NATS server keep
    /// their own entries there).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(
        validation = Rule::new("self.all(k, !k.startsWith('jets3.') && !k.startsWith('_nats.'))")
            .message("metadata keys starting with 'jets3.' or '_nats.' are reserved")
    )]
    pub metadata: BTreeMap<String, String>,

    /// Who may read without credentials: 'private' (default: only S3Credentials granted this
    /// bucket) or 'public-read' (anyone may GET, HEAD and list objects).
    #[serde(default)]
    pub access: BucketAccess,

    /// Refuse every write to the bucket, whatever the credential's permission.
    #[serde(default)]
    pub read_only: bool,

    /// CORS rules for browser clients, as in S3 PutBucketCors (at most 100). When empty,
    /// rules set through the S3 API apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub cors: Vec<CorsRule>,

    /// JWT bearer authentication: tokens signed by keys from Secrets or a JWKS URL, checked
    /// for issuer, audience, expiry and claim rules, give read (or write) access. Combines
    /// with S3Credentials and public-read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<BucketJwt>,

    /// Client addresses (CIDRs) the bucket accepts or refuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_filter: Option<BucketIpFilter>,

    /// Cache the bucket's small hot objects in the gateways' memory (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<BucketCacheSpec>,

    /// A rate limit on all requests to the bucket, per gateway replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<BucketRateLimit>,

    /// Namespaces whose S3Credentials may be granted this bucket, besides the bucket's own;
    /// '*' allows every namespace. Empty (default): only S3Credentials in the same namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 100),
        inner(length(min = 1, max = 63), pattern(ALLOWED_NAMESPACE_PATTERN))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub allowed_namespaces: Vec<String>,

    /// What happens to the NATS bucket and its objects when the S3Bucket is deleted: 'Retain'
    /// (default: the NATS bucket stays) or 'Delete' (the NATS bucket and every object in it
    /// are deleted).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// A namespace name (as `DNS_LABEL_PATTERN`) or `*`.
const ALLOWED_NAMESPACE_PATTERN: &str = r"^(\*|[a-z0-9]([a-z0-9-]*[a-z0-9])?)$";

/// JetStream storage of a bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// On disk; survives server restarts.
    #[default]
    File,
    /// In memory; lost when the servers holding it restart.
    Memory,
}

/// Anonymous access to a bucket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BucketAccess {
    /// Only credentials with a grant.
    #[default]
    Private,
    /// Anyone may GET, HEAD and list objects.
    PublicRead,
}

/// What happens to the NATS bucket when its S3Bucket is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the NATS bucket and its objects.
    #[default]
    Retain,
    /// Delete the NATS bucket and its objects.
    Delete,
}

/// Placement of a bucket's stream on NATS servers.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.cluster) || (has(self.tags) && size(self.tags) > 0)")
        .message("placement needs a cluster or at least one tag")
)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// The NATS cluster (in a super-cluster) that holds the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub cluster: Option<String>,
    /// Server tags: the stream is placed only on servers that have every one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(min = 1, max = 253)))]
    pub tags: Vec<String>,
}

/// A CORS rule, as in S3 PutBucketCors.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CorsRule {
    /// An optional name for the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub id: Option<String>,
    /// Origins allowed to make cross-origin requests (`https://app.example.com`); each may
    /// contain one '*' wildcard (`https://*.example.com`, `*`).
    #[schemars(length(min = 1, max = 100), inner(length(min = 1, max = 512)))]
    #[x_kube(
        validation = Rule::new("self.all(o, !o.matches('[*].*[*]'))")
            .message("an origin may contain at most one '*'")
    )]
    pub allowed_origins: Vec<String>,
    /// HTTP methods allowed from those origins: GET, PUT, POST, DELETE, HEAD.
    #[schemars(length(min = 1, max = 5))]
    pub allowed_methods: Vec<CorsMethod>,
    /// Headers a preflight request may ask for ('*' allows any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    pub allowed_headers: Vec<String>,
    /// Response headers browsers may expose to scripts (for example 'ETag').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    pub expose_headers: Vec<String>,
    /// How long, in seconds, browsers may cache a preflight response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_age_seconds: Option<i32>,
}

/// An HTTP method in a CORS rule.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum CorsMethod {
    Get,
    Put,
    Post,
    Delete,
    Head,
}

impl CorsMethod {
    /// The method as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            CorsMethod::Get => "GET",
            CorsMethod::Put => "PUT",
            CorsMethod::Post => "POST",
            CorsMethod::Delete => "DELETE",
            CorsMethod::Head => "HEAD",
        }
    }
}

/// The observed state of an S3Bucket, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3BucketStatus {
    /// The metadata.generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (everything below holds), BucketProvisioned (the NATS bucket exists with the
    /// spec's configuration) and Served (the gateways serve the bucket). A False condition's
    /// reason and message say what is wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The S3 bucket name clients use (spec.bucketName or metadata.name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// The NATS object-store bucket that holds the objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_bucket: Option<String>,
    /// The URL apps send S3 requests to (the gateway Service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Bytes the bucket's stream holds (objects and their metadata), refreshed periodically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// sizeBytes for people ('1.5 GiB').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Objects stored in the bucket, refreshed periodically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_count: Option<i64>,
    /// When sizeBytes and objectCount last changed. They are measured at every resync of the
    /// operator (a minute by default) and written only when they change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_updated_at: Option<Time>,
}

impl S3Bucket {
    /// The S3 bucket name: `spec.bucketName`, or `metadata.name` when unset.
    pub fn s3_bucket_name(&self) -> String {
        self.spec
            .bucket_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }

    /// This bucket's entry in the gateway config, with `jwt_keys` its resolved JWT keys.
    pub fn gateway_bucket(&self, jwt_keys: Vec<crate::JwtKey>) -> crate::BucketConfig {
        let spec = &self.spec;
        crate::BucketConfig {
            name: self.s3_bucket_name(),
            nats_bucket: spec.nats_bucket.clone(),
            access: spec.access.into(),
            read_only: spec.read_only,
            create: false,
            storage: spec.storage.into(),
            replicas: spec.replicas.unwrap_or(1).clamp(1, 5) as u8,
            cors: spec.cors.iter().map(Into::into).collect(),
            max_object_size: spec.max_object_bytes.and_then(|m| u64::try_from(m).ok()),
            jwt: spec.jwt.as_ref().map(|j| j.to_gateway(jwt_keys)),
            ip_filter: spec.ip_filter.as_ref().map(Into::into),
            rate_limit: spec.rate_limit.as_ref().map(Into::into),
            cache: spec.cache.as_ref().map(Into::into),
            versioning: spec.versioning,
            policy: spec.policy.clone(),
            public_access_block: spec.public_access_block,
        }
    }

    /// The NATS bucket name: `spec.natsBucket`, or the S3 name with `.` mapped to `_`.
    pub fn nats_bucket_name(&self) -> String {
        self.spec
            .nats_bucket
            .clone()
            .unwrap_or_else(|| crate::s3_to_nats_bucket(&self.s3_bucket_name()))
    }
}

impl From<StorageType> for crate::StorageKind {
    fn from(s: StorageType) -> Self {
        match s {
            StorageType::File => crate::StorageKind::File,
            StorageType::Memory => crate::StorageKind::Memory,
        }
    }
}

impl From<BucketAccess> for crate::Access {
    fn from(a: BucketAccess) -> Self {
        match a {
            BucketAccess::Private => crate::Access::Private,
            BucketAccess::PublicRead => crate::Access::PublicRead,
        }
    }
}

impl From<&CorsRule> for crate::CorsRule {
    fn from(r: &CorsRule) -> Self {
        crate::CorsRule {
            id: r.id.clone(),
            allowed_origins: r.allowed_origins.clone(),
            allowed_methods: r
                .allowed_methods
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
            allowed_headers: r.allowed_headers.clone(),
            expose_headers: r.expose_headers.clone(),
            max_age_seconds: r.max_age_seconds.and_then(|s| u32::try_from(s).ok()),
        }
    }
}

/// `spec.versioning` as a plain string enum (the generated schema of an optional enum
/// would carry the type's description instead of the field's).
fn versioning_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "nullable": true,
        "enum": ["Enabled", "Suspended"]
    })
}
