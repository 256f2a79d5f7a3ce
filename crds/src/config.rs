//! The `GatewayConfig` wire type.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jwt::JwtAuth;
use crate::permission::Permission;
use crate::protection::{
    AuditSettings, BucketCache, CircuitBreaker, IpFilter, RateLimit, RateLimits, Timeouts,
};

/// How far a pushed config's `generation` may be ahead of the one a gateway holds (of 0, for
/// a gateway without a config). Generations grow by one per new content, and an operator
/// that lost its state publishes one above what a gateway reports holding, so a legitimate
/// push never jumps this far; a bigger jump is refused, so that no push (u64::MAX, say) can
/// put a gateway where later generations could not follow.
pub const MAX_GENERATION_STEP: u64 = 1 << 32;

/// Everything a gateway needs to serve S3: buckets, credentials and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayConfig {
    /// Monotonic version set by the producer (the operator, or 0 for a file).
    #[serde(default)]
    pub generation: u64,
    /// The S3 region the gateway answers for and checks in signatures.
    #[serde(default = "default_region")]
    pub region: String,
    /// Base domains for virtual-hosted style (`<bucket>.<domain>`).
    #[serde(default)]
    pub virtual_host_domains: Vec<String>,
    /// Buckets with settings; other object-store buckets in NATS are served as private.
    #[serde(default)]
    pub buckets: Vec<BucketConfig>,
    /// Access keys and what they may do.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Request and object limits.
    #[serde(default)]
    pub limits: Limits,
    /// What the audit log records.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Block Public Access of buckets that set none (by config or PutPublicAccessBlock).
    #[serde(default, skip_serializing_if = "PublicAccessBlock::is_all")]
    pub public_access_block: PublicAccessBlock,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            generation: 0,
            region: default_region(),
            virtual_host_domains: Vec::new(),
            buckets: Vec::new(),
            credentials: Vec::new(),
            limits: Limits::default(),
            audit: AuditSettings::default(),
            public_access_block: PublicAccessBlock::default(),
        }
    }
}

impl GatewayConfig {
    /// SHA-256 (hex) of the canonical JSON of everything but the generation.
    pub fn content_hash(&self) -> String {
        let mut copy = self.clone();
        copy.generation = 0;
        let json = serde_json::to_vec(&copy).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }

    /// Parses YAML (or JSON, which is YAML) text.
    pub fn from_yaml(text: &str) -> Result<Self, crate::Error> {
        serde_yaml::from_str(text).map_err(|e| crate::Error::Parse(e.to_string()))
    }

    /// The settings of the bucket with this S3 name, if declared.
    pub fn bucket(&self, name: &str) -> Option<&BucketConfig> {
        self.buckets.iter().find(|b| b.name == name)
    }
}

/// A bucket the gateway serves, with its access settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BucketConfig {
    /// The S3 bucket name.
    pub name: String,
    /// The NATS object-store bucket; defaults to the S3 name with `.` mapped to `_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_bucket: Option<String>,
    /// Who may read without credentials.
    #[serde(default)]
    pub access: Access,
    /// Refuse every write, whoever asks.
    #[serde(default)]
    pub read_only: bool,
    /// Create the NATS bucket at start if it is missing (standalone mode).
    #[serde(default)]
    pub create: bool,
    /// Storage for a bucket the gateway creates.
    #[serde(default)]
    pub storage: StorageKind,
    /// Stream replicas for a bucket the gateway creates.
    #[serde(default = "one")]
    pub replicas: u8,
    /// CORS rules; when empty, rules set with PutBucketCors apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cors: Vec<CorsRule>,
    /// JWT bearer authentication, besides SigV4 credentials and public-read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
    /// Client addresses the bucket accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_filter: Option<IpFilter>,
    /// A rate limit on all requests to the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Keep small hot objects in the gateway's memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<BucketCache>,
    /// The largest object in this bucket, in bytes (single PUT, copy, POST or completed
    /// multipart upload); unset: `limits.maxObjectSize`. The smaller of the two applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_object_size: Option<u64>,
    /// S3 Versioning, set by the config (S3 clients may then not change it); unset: the
    /// bucket's own setting, changed with PutBucketVersioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<VersioningStatus>,
    /// A bucket policy (the JSON document), set by the config (S3 clients may then not
    /// change it); unset: the one set with PutBucketPolicy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Block Public Access, set by the config (S3 clients may then not change it); unset:
    /// the one set with PutPublicAccessBlock, else the gateway's `publicAccessBlock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
}

/// S3 Block Public Access: what a bucket's ACLs and policy may open to everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicAccessBlock {
    /// Refuse requests that set an ACL granting everyone (or every credential).
    #[serde(default = "yes")]
    pub block_public_acls: bool,
    /// Ignore ACL grants to everyone (or every credential).
    #[serde(default = "yes")]
    pub ignore_public_acls: bool,
    /// Refuse PutBucketPolicy with a public policy.
    #[serde(default = "yes")]
    pub block_public_policy: bool,
    /// A public policy grants only credentials, never anonymous callers.
    #[serde(default = "yes")]
    pub restrict_public_buckets: bool,
}

fn yes() -> bool {
    true
}

impl Default for PublicAccessBlock {
    /// Everything blocked (S3's default for new buckets).
    fn default() -> Self {
        PublicAccessBlock::ALL
    }
}

impl PublicAccessBlock {
    /// Everything blocked.
    pub const ALL: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
    /// Nothing blocked.
    pub const NONE: PublicAccessBlock = PublicAccessBlock {
        block_public_acls: false,
        ignore_public_acls: false,
        block_public_policy: false,
        restrict_public_buckets: false,
    };

    /// Whether everything is blocked.
    pub fn is_all(&self) -> bool {
        *self == PublicAccessBlock::ALL
    }
}

/// S3 Versioning of a bucket, spelled as S3 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum VersioningStatus {
    /// Every write keeps the version it replaces; a DELETE adds a delete marker.
    Enabled,
    /// New writes replace the null version; versions made before are kept.
    Suspended,
}

fn one() -> u8 {
    1
}

impl Default for BucketConfig {
    /// A private bucket with no name yet: fill in `name`.
    fn default() -> Self {
        BucketConfig {
            name: String::new(),
            nats_bucket: None,
            access: Access::Private,
            read_only: false,
            create: false,
            storage: StorageKind::File,
            replicas: 1,
            cors: Vec::new(),
            jwt: None,
            ip_filter: None,
            rate_limit: None,
            cache: None,
            max_object_size: None,
            versioning: None,
            policy: None,
            public_access_block: None,
        }
    }
}

impl BucketConfig {
    /// The largest object this bucket accepts under `limits`.
    pub fn max_object_size(&self, limits: &Limits) -> u64 {
        self.max_object_size
            .map_or(limits.max_object_size, |m| m.min(limits.max_object_size))
    }

    /// The NATS bucket this S3 bucket maps to.
    pub fn nats_name(&self) -> String {
        self.nats_bucket
            .clone()
            .unwrap_or_else(|| crate::s3_to_nats_bucket(&self.name))
    }
}

/// Anonymous access to a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Only credentials with a grant.
    #[default]
    Private,
    /// Anyone may GET, HEAD and list.
    PublicRead,
}

/// JetStream storage for a bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    #[default]
    File,
    Memory,
}

/// A CORS rule, as in PutBucketCors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
}

/// An access key pair and its grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Credential {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Buckets this key may use, with a permission each.
    #[serde(default)]
    pub grants: Vec<Grant>,
    /// The key is refused before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// The key is refused after this time (RFC 3339): rotation overlap ends here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Free text naming the owner, shown in logs (never the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A permission on a bucket, or on every bucket with `*`, or on a prefix with `name*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grant {
    pub bucket: String,
    pub permission: Permission,
}

impl Grant {
    /// Whether this grant covers the bucket `name`.
    pub fn matches(&self, name: &str) -> bool {
        match self.bucket.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.bucket == name,
        }
    }
}

/// Request and object limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single PUT (and copy) in bytes.
    pub max_object_size: u64,
    /// Longest key in bytes.
    pub max_key_bytes: usize,
    /// Largest user metadata (`x-amz-meta-*` names and values) in bytes.
    pub max_metadata_bytes: usize,
    /// Most parts in a multipart upload.
    pub max_parts: u32,
    /// Smallest part but the last.
    pub min_part_size: u64,
    /// Largest part.
    pub max_part_size: u64,
    /// Incomplete multipart uploads older than this are removed.
    pub multipart_expiry_seconds: u64,
    /// Allowed clock skew for header-signed requests.
    pub max_clock_skew_seconds: u64,
    /// Largest XML request body (DeleteObjects, Complete, CORS ...).
    pub max_xml_body_bytes: usize,
    /// Requests served at once; 0 for no limit.
    pub max_in_flight_requests: u32,
    /// Body bytes all requests together may hold in memory (request bodies on their way to
    /// NATS, responses on their way out); 0 for no limit.
    pub max_buffered_bytes: u64,
    /// Client timeouts.
    pub timeouts: Timeouts,
    /// Gateway-wide rate limits.
    #[serde(skip_serializing_if = "RateLimits::is_empty")]
    pub rate_limits: RateLimits,
    /// The circuit breaker around NATS.
    pub circuit_breaker: CircuitBreaker,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_object_size: 5 << 30,
            max_key_bytes: 1024,
            max_metadata_bytes: 2048,
            max_parts: 10_000,
            min_part_size: 5 << 20,
            max_part_size: 5 << 30,
            multipart_expiry_seconds: 7 * 24 * 3600,
            max_clock_skew_seconds: 15 * 60,
            max_xml_body_bytes: 2 << 20,
            max_in_flight_requests: 0,
            max_buffered_bytes: 0,
            timeouts: Timeouts::default(),
            rate_limits: RateLimits::default(),
            circuit_breaker: CircuitBreaker::default(),
        }
    }
}
