//! Building the one `GatewayConfig` from every `S3Bucket` and `S3Credential`.
//!
//! [`build`] is a pure function of the resources (as the apiserver has them, status
//! included), the Secrets the operator wrote, and the time. Each resource contributes its
//! *part* (a bucket entry, or a credential's current and previous key); a part that is not
//! ready or breaks a rule of the shared `validate()` is left out and reported on the
//! resource's view, and never keeps the others out. The result is sorted, so the same
//! resources always give the same config and content hash.

use std::collections::HashMap;
use std::sync::Arc;

use jets3_crds::k8s::{conditions, S3Bucket, S3Credential};
use jets3_crds::{BucketConfig, Credential, GatewayConfig, Grant};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::claims::{bucket_claims, in_claim_order, Conflict, NameClaims, ObjKey};
use crate::secrets::{controlled_by, previous_secret_name, CurrentKey, PreviousKey};

/// Reasons a part is left out of the config (the `Served` condition's reason).
pub mod reasons {
    /// The resource is being deleted.
    pub const DELETING: &str = "Deleting";
    /// `S3Bucket`: the NATS bucket is not (yet) provisioned for this S3Bucket.
    pub const NOT_PROVISIONED: &str = "NotProvisioned";
    /// `S3Credential`: its Secret with the key is not written yet.
    pub const NO_KEY: &str = "NoKey";
    /// The part breaks a rule of the gateway config's validation.
    pub const INVALID_CONFIG: &str = "InvalidConfig";
    /// `S3Credential`: another credential, created first, uses the same access key id.
    pub const DUPLICATE_ACCESS_KEY: &str = "DuplicateAccessKey";
    /// A grant names an S3Bucket that does not exist.
    pub const BUCKET_NOT_FOUND: &str = "BucketNotFound";
    /// A grant names an S3Bucket in another namespace that does not allow this one.
    pub const GRANT_DENIED: &str = "GrantDenied";
    /// A grant names an S3Bucket whose part is not in the config.
    pub const BUCKET_NOT_SERVED: &str = "BucketNotServed";
}

/// What the resources are read from.
pub struct Inputs<'a> {
    pub buckets: &'a [Arc<S3Bucket>],
    pub credentials: &'a [Arc<S3Credential>],
    /// The Secrets the operator manages (labelled), in every watched namespace.
    pub secrets: &'a [Arc<Secret>],
    pub region: &'a str,
    pub now: Timestamp,
}

/// Whether a resource's part is in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// In the config; `hash` is the content hash of the part alone.
    Included { hash: String },
    /// Left out, with a reason (CamelCase) and a message for people.
    Excluded {
        reason: &'static str,
        message: String,
    },
}

impl Part {
    fn excluded(reason: &'static str, message: impl Into<String>) -> Part {
        Part::Excluded {
            reason,
            message: message.into(),
        }
    }
}

/// An S3Bucket as the config sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketView {
    /// Set when another S3Bucket holds this one's S3 or NATS bucket name.
    pub conflict: Option<Conflict>,
    pub part: Part,
}

/// One grant of an S3Credential: the S3Bucket it names and the S3 bucket name it resolved
/// to, or why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOutcome {
    pub bucket: ObjKey,
    pub result: Result<String, GrantProblem>,
}

/// Why a grant is not in the config: a reason (CamelCase) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantProblem {
    pub reason: &'static str,
    pub message: String,
}

fn grant_problem(reason: &'static str, message: String) -> GrantProblem {
    GrantProblem { reason, message }
}

/// An S3Credential as the config sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialView {
    pub part: Part,
    /// Every grant, in spec order.
    pub grants: Vec<GrantOutcome>,
    /// The S3 bucket name when the credential has exactly one grant and it resolved.
    pub bucket_name: Option<String>,
}

/// The config and what it says about every resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// The config, with generation 0 (the publisher numbers it).
    pub config: GatewayConfig,
    /// What `validate()` finds wrong with the config as a whole (it is not published then).
    pub problems: Vec<String>,
    pub buckets: HashMap<ObjKey, BucketView>,
    pub credentials: HashMap<ObjKey, CredentialView>,
    /// When the earliest previous key in the config expires (the config changes then).
    pub next_expiry: Option<Timestamp>,
}

/// Builds the config from `inputs`.
pub fn build(inputs: &Inputs) -> Build {
    let claims = bucket_claims(inputs.buckets.iter().map(Arc::as_ref));
    let mut buckets = HashMap::new();
    let mut bucket_entries = Vec::new();
    for b in in_claim_order(inputs.buckets.iter().map(Arc::as_ref)) {
        let key = ObjKey::of(b);
        let conflict = claims.get(&key).cloned().flatten();
        let part = match bucket_part(b, conflict.as_ref()) {
            Ok((entry, hash)) => {
                bucket_entries.push(entry);
                Part::Included { hash }
            }
            Err(excluded) => excluded,
        };
        buckets.insert(key, BucketView { conflict, part });
    }

    let by_key: HashMap<ObjKey, &S3Bucket> = inputs
        .buckets
        .iter()
        .map(|b| (ObjKey::of(b.as_ref()), b.as_ref()))
        .collect();
    let secrets: HashMap<ObjKey, &Secret> = inputs
        .secrets
        .iter()
        .map(|s| (ObjKey::of(s.as_ref()), s.as_ref()))
        .collect();
    let mut credentials = HashMap::new();
    let mut credential_list = Vec::new();
    let mut key_ids = NameClaims::default();
    let mut next_expiry: Option<Timestamp> = None;
    for c in in_claim_order(inputs.credentials.iter().map(Arc::as_ref)) {
        let grants = resolve_grants(c, &by_key, &buckets);
        let bucket_name = match grants.as_slice() {
            [only] => only.result.clone().ok(),
            _ => None,
        };
        let part = match credential_part(c, &grants, &secrets, inputs.now, &mut key_ids) {
            Ok((entries, hash, expiry)) => {
                if let Some(t) = expiry {
                    next_expiry = Some(next_expiry.map_or(t, |n| n.min(t)));
                }
                credential_list.extend(entries);
                Part::Included { hash }
            }
            Err(excluded) => excluded,
        };
        let view = CredentialView {
            part,
            grants,
            bucket_name,
        };
        credentials.insert(ObjKey::of(c), view);
    }

    let mut config = GatewayConfig {
        region: inputs.region.to_string(),
        buckets: bucket_entries,
        credentials: credential_list,
        ..Default::default()
    };
    config.buckets.sort_by(|a, b| a.name.cmp(&b.name));
    config
        .credentials
        .sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
    // Each part passed on its own and the claims rule out duplicates across parts, so only
    // a whole-config setting (the region) can still fail here.
    let problems = match config.validate() {
        Ok(()) => Vec::new(),
        Err(e) => {
            e.0.iter()
                .map(|f| format!("{}: {}", f.path, f.message))
                .collect()
        }
    };
    Build {
        config,
        problems,
        buckets,
        credentials,
        next_expiry,
    }
}

/// An S3Bucket's entry and its hash, or why it is left out.
fn bucket_part(b: &S3Bucket, conflict: Option<&Conflict>) -> Result<(BucketConfig, String), Part> {
    if b.metadata.deletion_timestamp.is_some() {
        return Err(Part::excluded(
            reasons::DELETING,
            "the S3Bucket is being deleted",
        ));
    }
    if let Some(c) = conflict {
        return Err(Part::excluded(
            conditions::REASON_NAME_CONFLICT,
            c.to_string(),
        ));
    }
    let entry = bucket_entry(b);
    let nats = entry.nats_name();
    if b.status.as_ref().and_then(|s| s.nats_bucket.as_deref()) != Some(nats.as_str()) {
        return Err(Part::excluded(
            reasons::NOT_PROVISIONED,
            format!("the NATS bucket {nats:?} is not provisioned yet"),
        ));
    }
    let hash = alone(vec![entry.clone()], vec![])
        .map_err(|p| Part::excluded(reasons::INVALID_CONFIG, p))?;
    Ok((entry, hash))
}

/// An S3Credential's entries, their hash and when its previous key expires; or why it is
/// left out. Claims the access key ids in `key_ids`.
fn credential_part(
    c: &S3Credential,
    grants: &[GrantOutcome],
    secrets: &HashMap<ObjKey, &Secret>,
    now: Timestamp,
    key_ids: &mut NameClaims,
) -> Result<(Vec<Credential>, String, Option<Timestamp>), Part> {
    if c.metadata.deletion_timestamp.is_some() {
        return Err(Part::excluded(
            reasons::DELETING,
            "the S3Credential is being deleted",
        ));
    }
    let (entries, expiry) = credential_entries(c, grants, secrets, now)
        .map_err(|m| Part::excluded(reasons::NO_KEY, m))?;
    let hash =
        alone(vec![], entries.clone()).map_err(|p| Part::excluded(reasons::INVALID_CONFIG, p))?;
    let ids: Vec<&str> = entries.iter().map(|e| e.access_key_id.as_str()).collect();
    key_ids
        .claim_all(&ObjKey::of(c), &ids)
        .map_err(|(id, holder)| {
            Part::excluded(
                reasons::DUPLICATE_ACCESS_KEY,
                format!(
                    "access key id {id} is already used by S3Credential {holder}, which was created first"
                ),
            )
        })?;
    Ok((entries, hash, expiry))
}

/// The bucket entry of an S3Bucket.
fn bucket_entry(b: &S3Bucket) -> BucketConfig {
    let spec = &b.spec;
    BucketConfig {
        name: b.s3_bucket_name(),
        nats_bucket: spec.nats_bucket.clone(),
        access: spec.access.into(),
        read_only: spec.read_only,
        create: false,
        storage: spec.storage.into(),
        replicas: spec.replicas.clamp(1, 5) as u8,
        cors: spec.cors.iter().map(Into::into).collect(),
    }
}

/// Resolves each grant of `c` against the S3Buckets and their views.
fn resolve_grants(
    c: &S3Credential,
    by_key: &HashMap<ObjKey, &S3Bucket>,
    views: &HashMap<ObjKey, BucketView>,
) -> Vec<GrantOutcome> {
    let own_ns = c.namespace().unwrap_or_default();
    c.spec
        .grants
        .iter()
        .map(|g| {
            let ns = g.namespace.clone().unwrap_or_else(|| own_ns.clone());
            let bucket = ObjKey::new(&ns, &g.bucket);
            let result = match by_key.get(&bucket) {
                None => Err(grant_problem(
                    reasons::BUCKET_NOT_FOUND,
                    format!("S3Bucket {bucket} does not exist"),
                )),
                Some(b)
                    if ns != own_ns
                        && !b
                            .spec
                            .allowed_namespaces
                            .iter()
                            .any(|a| a == "*" || *a == own_ns) =>
                {
                    Err(grant_problem(
                        reasons::GRANT_DENIED,
                        format!(
                            "S3Bucket {bucket} does not allow S3Credentials from namespace {own_ns} (its spec.allowedNamespaces)"
                        ),
                    ))
                }
                Some(b) => match views.get(&bucket).map(|v| &v.part) {
                    Some(Part::Included { .. }) => Ok(b.s3_bucket_name()),
                    Some(Part::Excluded { reason, .. }) => Err(grant_problem(
                        reasons::BUCKET_NOT_SERVED,
                        format!("S3Bucket {bucket} is not served ({reason})"),
                    )),
                    None => Err(grant_problem(
                        reasons::BUCKET_NOT_SERVED,
                        format!("S3Bucket {bucket} is not served"),
                    )),
                },
            };
            GrantOutcome { bucket, result }
        })
        .collect()
}

/// The credential's config entries (current key, and the previous one during an overlap)
/// and when that previous key expires; or why there is no key yet.
fn credential_entries(
    c: &S3Credential,
    grants: &[GrantOutcome],
    secrets: &HashMap<ObjKey, &Secret>,
    now: Timestamp,
) -> Result<(Vec<Credential>, Option<Timestamp>), String> {
    let ns = c.namespace().unwrap_or_default();
    let uid = c.uid().unwrap_or_default();
    let name = ObjKey::of(c).to_string();
    let secret_name = c.secret_name();
    let current = secrets
        .get(&ObjKey::new(&ns, &secret_name))
        .filter(|s| controlled_by(s, &uid))
        .and_then(|s| CurrentKey::read(s))
        .ok_or_else(|| format!("the Secret {secret_name} with the key is not written yet"))?;
    let granted: Vec<Grant> = c
        .spec
        .grants
        .iter()
        .zip(grants)
        .filter_map(|(g, o)| {
            o.result.as_ref().ok().map(|s3| Grant {
                bucket: s3.clone(),
                permission: g.permission.into(),
            })
        })
        .collect();
    let mut entries = vec![Credential {
        access_key_id: current.pair.access_key_id.clone(),
        secret_access_key: current.pair.secret_access_key.clone(),
        grants: granted.clone(),
        not_before: None,
        not_after: None,
        description: Some(name.clone()),
    }];
    let previous = secrets
        .get(&ObjKey::new(&ns, &previous_secret_name(c)))
        .filter(|s| controlled_by(s, &uid))
        .and_then(|s| PreviousKey::read(s))
        .filter(|p| p.expires_at > now && p.pair.access_key_id != current.pair.access_key_id);
    let expiry = previous.as_ref().map(|p| p.expires_at);
    if let Some(p) = previous {
        entries.push(Credential {
            access_key_id: p.pair.access_key_id,
            secret_access_key: p.pair.secret_access_key,
            grants: granted,
            not_before: None,
            not_after: Some(p.expires_at.to_string()),
            description: Some(format!("{name} (previous key)")),
        });
    }
    Ok((entries, expiry))
}

/// Validates a part on its own; the part's content hash, or its problems.
fn alone(buckets: Vec<BucketConfig>, credentials: Vec<Credential>) -> Result<String, String> {
    let config = GatewayConfig {
        buckets,
        credentials,
        ..Default::default()
    };
    match config.validate() {
        Ok(()) => Ok(config.content_hash()),
        Err(e) => Err(e
            .0
            .iter()
            .map(|f| format!("{}: {}", f.path, f.message))
            .collect::<Vec<_>>()
            .join("; ")),
    }
}
