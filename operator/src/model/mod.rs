//! The operator's pure logic: no API calls, no NATS, no clock but what callers pass in. What
//! the reconcilers and the config publisher decide is computed here and unit-tested without a
//! cluster.
//!
//! - [`gateway_config`]: builds the one `GatewayConfig` from every resource;
//! - [`name_claims`]: who holds a contested S3 bucket, NATS bucket or access key id name;
//! - [`bucket_config`]: an S3Bucket's NATS stream config and the drift between two;
//! - [`secrets`]: the Secrets written for apps, and key generation;
//! - [`jwt_keys`]: an S3Bucket's JWT keys from the Secret values read;
//! - [`reasons`]: every condition reason;
//! - [`key`]: the identity of a namespaced object.

pub mod bucket_config;
pub mod gateway_config;
pub mod jwt_keys;
pub mod key;
pub mod name_claims;
pub mod reasons;
pub mod secrets;
