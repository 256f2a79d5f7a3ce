//! API types shared by the jets3 operator and gateway.
//!
//! [`GatewayConfig`] is the wire type the operator pushes to every gateway and the
//! standalone gateway reads from its YAML file. Both sides call [`GatewayConfig::validate`].
//!
//! With the `kube` feature, the `k8s` module holds the custom resources (`S3Bucket`, `S3Credential`)
//! the operator reconciles. The feature is off by default so the gateway never compiles kube.

mod bucket_name;
mod config;
mod jwks_url;
mod jwt;
#[cfg(feature = "kube")]
pub mod k8s;
mod permission;
pub mod policy;
mod problems;
mod protection;
mod validate;

pub use bucket_name::{nats_to_s3_bucket, s3_to_nats_bucket, validate_s3_bucket_name};
pub use config::{
    Access, BucketConfig, CorsRule, Credential, GatewayConfig, Grant, Limits, PublicAccessBlock,
    StorageKind, VersioningStatus, MAX_GENERATION_STEP,
};
pub use jwks_url::{check_jwks_url, jwks_address_refused, jwks_url_shown, metadata_address};
pub use jwt::{
    ClaimOp, ClaimRule, JwtAlgorithm, JwtAuth, JwtKey, TokenSource, TokenSourceKind, MAX_LEEWAY,
    MIN_HMAC_SECRET,
};
pub use permission::Permission;
pub use problems::{FieldError, ValidationErrors};
pub use protection::{
    parse_cidr, AuditSettings, BucketCache, CircuitBreaker, IpFilter, RateLimit, RateLimits,
    Timeouts,
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config text is not valid YAML/JSON for the type.
    #[error("cannot parse config: {0}")]
    Parse(String),
    /// The config parsed but breaks one or more rules.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
}
