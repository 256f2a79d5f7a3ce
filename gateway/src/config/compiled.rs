//! The config in force, compiled for per-request lookups.

use std::collections::HashMap;
use std::sync::Arc;

use jets3_crds::policy::{Policy, PrincipalId};
use jets3_crds::{BucketConfig, Credential, GatewayConfig, Permission};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::{S3Code, S3Error, S3Result};
use crate::guards::BucketGuards;

/// A validated config with lookup tables.
pub struct CompiledConfig {
    pub config: GatewayConfig,
    pub hash: String,
    creds: HashMap<String, CompiledCredential>,
    buckets: HashMap<String, BucketConfig>,
    guards: HashMap<String, Arc<BucketGuards>>,
    /// Bucket policies the config sets, compiled.
    policies: HashMap<String, Arc<Policy>>,
    /// Access key id by canonical user id.
    canonical: HashMap<String, String>,
}

struct CompiledCredential {
    cred: Credential,
    id: PrincipalId,
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
    /// The bucket policy the config sets.
    pub policy: Option<Arc<Policy>>,
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

impl CompiledConfig {
    /// Validates and compiles a config.
    pub fn new(config: GatewayConfig) -> Result<CompiledConfig, jets3_crds::ValidationErrors> {
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
                        id: PrincipalId::of_access_key(&c.access_key_id),
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
        // validate() parsed every policy already.
        let policies = config
            .buckets
            .iter()
            .filter_map(|b| {
                let p = Policy::parse(b.policy.as_deref()?, &b.name).ok()?;
                Some((b.name.clone(), Arc::new(p)))
            })
            .collect();
        let canonical = config
            .credentials
            .iter()
            .map(|c| {
                (
                    jets3_crds::policy::canonical_user_id(&c.access_key_id),
                    c.access_key_id.clone(),
                )
            })
            .collect();
        Ok(CompiledConfig {
            policies,
            canonical,
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

    /// The policy principal of a configured key.
    pub fn principal_id(&self, access_key_id: &str) -> Option<&PrincipalId> {
        self.creds.get(access_key_id).map(|c| &c.id)
    }

    /// Whether a canonical user id is a configured key's.
    pub fn known_canonical_id(&self, id: &str) -> bool {
        self.canonical.contains_key(id)
    }

    /// Whether an access key id is configured.
    pub fn known_access_key(&self, access_key_id: &str) -> bool {
        self.creds.contains_key(access_key_id)
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
    ///
    /// A NATS bucket a configured bucket uses is reachable by that bucket's name only: any
    /// other name mapping to it (`vault.store` for `{name: vault, natsBucket: vault_store}`)
    /// is `NoSuchBucket`, so no second name can bypass the bucket's settings.
    pub fn bucket(&self, s3: &str) -> S3Result<BucketRef> {
        if let Some(b) = self.buckets.get(s3) {
            return Ok(BucketRef {
                s3: s3.to_string(),
                nats: b.nats_name(),
                config: Some(b.clone()),
                guards: self.guards.get(s3).cloned(),
                policy: self.policies.get(s3).cloned(),
            });
        }
        jets3_crds::validate_s3_bucket_name(s3).map_err(|why| {
            S3Error::new(
                S3Code::InvalidBucketName,
                format!("The specified bucket is not valid: {why}"),
            )
            .with("BucketName", s3)
        })?;
        if self.alias_of(s3).is_some() {
            return Err(S3Error::no_such_bucket(s3));
        }
        Ok(BucketRef {
            s3: s3.to_string(),
            nats: jets3_crds::s3_to_nats_bucket(s3),
            config: None,
            guards: None,
            policy: None,
        })
    }

    /// The configured bucket whose NATS bucket the unconfigured name `s3` maps to.
    pub fn alias_of(&self, s3: &str) -> Option<&str> {
        if self.buckets.contains_key(s3) {
            return None;
        }
        let nats = jets3_crds::s3_to_nats_bucket(s3);
        self.buckets
            .values()
            .find(|b| b.nats_name() == nats)
            .map(|b| b.name.as_str())
    }

    /// The S3 name of a NATS bucket, if it has one (a NATS bucket whose own name belongs
    /// to a configured bucket stored elsewhere has none).
    pub fn s3_name(&self, nats: &str) -> Option<String> {
        self.buckets
            .values()
            .find(|b| b.nats_name() == nats)
            .map(|b| b.name.clone())
            .or_else(|| {
                jets3_crds::nats_to_s3_bucket(nats).filter(|s3| !self.buckets.contains_key(s3))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jets3_crds::BucketConfig;

    fn compiled() -> CompiledConfig {
        let b = |name: &str, nats: Option<&str>| BucketConfig {
            name: name.into(),
            nats_bucket: nats.map(str::to_string),
            ..Default::default()
        };
        CompiledConfig::new(GatewayConfig {
            buckets: vec![b("vault", Some("vault_store")), b("a.b", Some("custom"))],
            ..Default::default()
        })
        .expect("valid")
    }

    #[test]
    fn a_configured_nats_bucket_has_one_s3_name() {
        let compiled = compiled();
        assert_eq!(
            compiled.bucket("vault").expect("configured").nats,
            "vault_store"
        );
        let alias = compiled.bucket("vault.store").expect_err("alias");
        assert_eq!(alias.code, S3Code::NoSuchBucket);
        assert_eq!(compiled.alias_of("vault.store"), Some("vault"));
        assert_eq!(compiled.alias_of("vault"), None);
        assert_eq!(
            compiled.bucket("other.name").expect("plain").nats,
            "other_name"
        );
        assert_eq!(compiled.s3_name("vault_store").as_deref(), Some("vault"));
        assert_eq!(compiled.s3_name("custom").as_deref(), Some("a.b"));
        // The NATS bucket named like a configured bucket stored elsewhere has no S3 name.
        assert_eq!(compiled.s3_name("a_b"), None);
        assert_eq!(compiled.s3_name("free_one").as_deref(), Some("free.one"));
    }
}
