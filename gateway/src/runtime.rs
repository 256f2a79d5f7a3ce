//! The config in force, compiled for per-request lookups.

use std::collections::HashMap;
use std::sync::Arc;

use jets3_crds::{BucketConfig, Credential, GatewayConfig, Permission};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{S3Code, S3Error, S3Result};
use crate::guards::BucketGuards;

/// A validated config with lookup tables.
pub struct Runtime {
    pub config: GatewayConfig,
    pub hash: String,
    creds: HashMap<String, CompiledCredential>,
    buckets: HashMap<String, BucketConfig>,
    guards: HashMap<String, Arc<BucketGuards>>,
}

struct CompiledCredential {
    cred: Credential,
    not_before: Option<OffsetDateTime>,
    not_after: Option<OffsetDateTime>,
}

/// A bucket the request addresses: its S3 name, NATS name and settings.
#[derive(Debug, Clone)]
pub struct BucketRef {
    pub s3: String,
    pub nats: String,
    pub config: Option<BucketConfig>,
    /// Compiled JWT settings and address filter, when the bucket has either.
    pub guards: Option<Arc<BucketGuards>>,
}

impl BucketRef {
    /// Anyone may read it.
    pub fn public_read(&self) -> bool {
        self.config
            .as_ref()
            .is_some_and(|c| c.access == jets3_crds::Access::PublicRead)
    }

    /// No one may write it.
    pub fn read_only(&self) -> bool {
        self.config.as_ref().is_some_and(|c| c.read_only)
    }

    /// The versioning the config sets for the bucket, if it sets one.
    pub fn declared_versioning(&self) -> Option<crate::store::Versioning> {
        self.config
            .as_ref()
            .and_then(|c| c.versioning)
            .map(|v| match v {
                jets3_crds::VersioningStatus::Enabled => crate::store::Versioning::Enabled,
                jets3_crds::VersioningStatus::Suspended => crate::store::Versioning::Suspended,
            })
    }
}

impl Runtime {
    /// Validates and compiles a config.
    pub fn new(config: GatewayConfig) -> Result<Runtime, jets3_crds::ValidationErrors> {
        config.validate()?;
        let guards = crate::guards::compile(&config)?;
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
        };
        let creds = config
            .credentials
            .iter()
            .map(|c| {
                (
                    c.access_key_id.clone(),
                    CompiledCredential {
                        not_before: parse(&c.not_before),
                        not_after: parse(&c.not_after),
                        cred: c.clone(),
                    },
                )
            })
            .collect();
        let buckets = config
            .buckets
            .iter()
            .map(|b| (b.name.clone(), b.clone()))
            .collect();
        Ok(Runtime {
            hash: config.content_hash(),
            config,
            creds,
            buckets,
            guards,
        })
    }

    /// The secret of a key that is valid now.
    pub fn secret(&self, access_key_id: &str, now: OffsetDateTime) -> Option<String> {
        let c = self.creds.get(access_key_id)?;
        if c.not_before.is_some_and(|t| now < t) || c.not_after.is_some_and(|t| now > t) {
            return None;
        }
        Some(c.cred.secret_access_key.clone())
    }

    /// The strongest permission a key has on a bucket.
    pub fn permission(&self, access_key_id: &str, bucket: &str) -> Option<Permission> {
        let c = self.creds.get(access_key_id)?;
        c.cred
            .grants
            .iter()
            .filter(|g| g.matches(bucket))
            .map(|g| g.permission)
            .max_by_key(|p| match p {
                Permission::Read => 0,
                Permission::Write => 1,
                Permission::ReadWrite => 2,
                Permission::Admin => 3,
            })
    }

    /// Resolves an S3 bucket name, refusing names that cannot map to NATS.
    pub fn bucket(&self, s3: &str) -> S3Result<BucketRef> {
        if let Some(b) = self.buckets.get(s3) {
            return Ok(BucketRef {
                s3: s3.to_string(),
                nats: b.nats_name(),
                config: Some(b.clone()),
                guards: self.guards.get(s3).cloned(),
            });
        }
        jets3_crds::validate_s3_bucket_name(s3).map_err(|why| {
            S3Error::new(
                S3Code::InvalidBucketName,
                format!("The specified bucket is not valid: {why}"),
            )
            .with("BucketName", s3)
        })?;
        Ok(BucketRef {
            s3: s3.to_string(),
            nats: jets3_crds::s3_to_nats_bucket(s3),
            config: None,
            guards: None,
        })
    }

    /// The S3 name of a NATS bucket, if it has one.
    pub fn s3_name(&self, nats: &str) -> Option<String> {
        self.buckets
            .values()
            .find(|b| b.nats_name() == nats)
            .map(|b| b.name.clone())
            .or_else(|| jets3_crds::nats_to_s3_bucket(nats))
    }
}
