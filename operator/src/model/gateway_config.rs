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

use jets3_crds::k8s::{S3Bucket, S3Credential};
use jets3_crds::{
    AuditSettings, BucketConfig, Credential, GatewayConfig, Grant, Limits, PublicAccessBlock,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::jwt_keys::{self, KeyValues};
use super::key::ObjKey;
use super::name_claims::{bucket_claims, in_claim_order, Conflict, NameClaims};
use super::reasons;
use super::secrets::{controlled_by, previous_secret_name, CurrentKey, PreviousKey};

/// The config's gateway-wide settings, which no resource sets (operator flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayWide {
    pub limits: Limits,
    pub audit: AuditSettings,
    /// Block Public Access of buckets that set none.
    pub public_access_block: PublicAccessBlock,
}

/// What the resources are read from.
pub struct Inputs<'a> {
    pub buckets: &'a [Arc<S3Bucket>],
    pub credentials: &'a [Arc<S3Credential>],
    /// The Secrets the operator manages (labelled), in every watched namespace.
    pub secrets: &'a [Arc<Secret>],
    /// What each S3Bucket's JWT keys read from their Secrets.
    pub jwt_secrets: &'a HashMap<ObjKey, KeyValues>,
    pub region: &'a str,
    pub gateway: &'a GatewayWide,
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
        let part = match bucket_part(b, conflict.as_ref(), inputs.jwt_secrets.get(&key)) {
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
        limits: inputs.gateway.limits.clone(),
        audit: inputs.gateway.audit,
        public_access_block: inputs.gateway.public_access_block,
        ..Default::default()
    };
    config.buckets.sort_by(|a, b| a.name.cmp(&b.name));
    config
        .credentials
        .sort_by(|a, b| a.access_key_id.cmp(&b.access_key_id));
    // Each part passed on its own and the claims rule out duplicates across parts, so only
    // a whole-config setting (the region, the limits) can still fail here.
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
fn bucket_part(
    b: &S3Bucket,
    conflict: Option<&Conflict>,
    jwt_values: Option<&KeyValues>,
) -> Result<(BucketConfig, String), Part> {
    if b.metadata.deletion_timestamp.is_some() {
        return Err(Part::excluded(
            reasons::DELETING,
            "the S3Bucket is being deleted",
        ));
    }
    if let Some(c) = conflict {
        return Err(Part::excluded(reasons::NAME_CONFLICT, c.to_string()));
    }
    let nats = b.nats_bucket_name();
    if b.status.as_ref().and_then(|s| s.nats_bucket.as_deref()) != Some(nats.as_str()) {
        return Err(Part::excluded(
            reasons::NOT_PROVISIONED,
            format!("the NATS bucket {nats:?} is not provisioned yet"),
        ));
    }
    let keys = jwt_keys::resolve(b, jwt_values)
        .map_err(|m| Part::excluded(reasons::JWT_KEY_NOT_FOUND, m))?;
    let entry = b.gateway_bucket(keys);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::secrets::{app_secret, previous_secret, AppSettings, KeyPair};
    use jets3_crds::k8s::{S3BucketSpec, S3BucketStatus, S3CredentialSpec};
    use jets3_crds::{Access, Permission};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const SETTINGS: AppSettings = AppSettings {
        endpoint: "http://gw",
        region: "us-east-1",
        bucket_name: None,
    };

    fn meta<K: kube::Resource>(obj: &mut K, ns: &str, ts: i64) {
        let m = obj.meta_mut();
        m.namespace = Some(ns.into());
        m.uid = Some(format!("uid-{ns}-{}", m.name.clone().unwrap()));
        m.creation_timestamp = Some(Time(Timestamp::from_second(ts).unwrap()));
    }

    /// A provisioned bucket (status.natsBucket set, as the reconcile does).
    fn bucket(ns: &str, name: &str, spec: serde_json::Value, ts: i64) -> Arc<S3Bucket> {
        let mut b = S3Bucket::new(name, serde_json::from_value::<S3BucketSpec>(spec).unwrap());
        meta(&mut b, ns, ts);
        b.status = Some(S3BucketStatus {
            nats_bucket: Some(b.nats_bucket_name()),
            ..Default::default()
        });
        Arc::new(b)
    }

    fn credential(ns: &str, name: &str, spec: serde_json::Value, ts: i64) -> S3Credential {
        let mut c = S3Credential::new(
            name,
            serde_json::from_value::<S3CredentialSpec>(spec).unwrap(),
        );
        meta(&mut c, ns, ts);
        c
    }

    fn key(id: &str, secret: &str) -> CurrentKey {
        CurrentKey {
            pair: KeyPair {
                access_key_id: id.into(),
                secret_access_key: secret.into(),
            },
            created_at: None,
            rotate_handled: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_000_000).unwrap()
    }

    struct World {
        buckets: Vec<Arc<S3Bucket>>,
        credentials: Vec<Arc<S3Credential>>,
        secrets: Vec<Arc<Secret>>,
        jwt_secrets: HashMap<ObjKey, KeyValues>,
        region: String,
        gateway: GatewayWide,
    }

    impl World {
        fn new() -> World {
            World {
                buckets: vec![],
                credentials: vec![],
                secrets: vec![],
                jwt_secrets: HashMap::new(),
                region: "us-east-1".into(),
                gateway: GatewayWide::default(),
            }
        }

        /// Adds a credential with its app Secret holding `k`.
        fn credential(&mut self, c: S3Credential, k: Option<CurrentKey>) -> &mut Self {
            if let Some(k) = k {
                self.secrets.push(Arc::new(app_secret(&c, &k, &SETTINGS)));
            }
            self.credentials.push(Arc::new(c));
            self
        }

        fn build(&self) -> Build {
            build(&Inputs {
                buckets: &self.buckets,
                credentials: &self.credentials,
                secrets: &self.secrets,
                jwt_secrets: &self.jwt_secrets,
                region: &self.region,
                gateway: &self.gateway,
                now: now(),
            })
        }
    }

    fn excluded(part: &Part) -> (&'static str, &str) {
        match part {
            Part::Excluded { reason, message } => (reason, message.as_str()),
            Part::Included { .. } => panic!("included"),
        }
    }

    fn grants(spec: serde_json::Value) -> serde_json::Value {
        serde_json::json!({ "grants": spec })
    }

    #[test]
    fn provisioned_buckets_are_in_the_config_with_their_settings() {
        let mut w = World::new();
        w.buckets.push(bucket(
            "a",
            "media",
            serde_json::json!({"bucketName": "media.example", "access": "public-read", "readOnly": true,
                "replicas": 3, "storage": "memory",
                "cors": [{"allowedOrigins": ["*"], "allowedMethods": ["GET"], "maxAgeSeconds": 60}]}),
            1,
        ));
        w.buckets.push(bucket(
            "a",
            "raw",
            serde_json::json!({"natsBucket": "legacy_store"}),
            2,
        ));
        let b = w.build();
        assert!(b.problems.is_empty());
        let media = b.config.bucket("media.example").unwrap();
        assert_eq!(media.access, Access::PublicRead);
        assert!(media.read_only && !media.create);
        assert_eq!(
            (media.replicas, media.storage),
            (3, jets3_crds::StorageKind::Memory)
        );
        assert_eq!(media.nats_name(), "media_example");
        assert_eq!(media.cors[0].allowed_methods, ["GET"]);
        assert_eq!(media.cors[0].max_age_seconds, Some(60));
        assert_eq!(b.config.bucket("raw").unwrap().nats_name(), "legacy_store");
        assert!(matches!(
            b.buckets[&ObjKey::new("a", "media")].part,
            Part::Included { .. }
        ));
    }

    #[test]
    fn buckets_not_provisioned_deleting_or_in_conflict_are_left_out() {
        let mut w = World::new();
        let mut pending = (*bucket("a", "pending", serde_json::json!({}), 1)).clone();
        pending.status = None;
        let mut going = (*bucket("a", "going", serde_json::json!({}), 1)).clone();
        going.metadata.deletion_timestamp = Some(Time(now()));
        w.buckets = vec![
            Arc::new(pending),
            Arc::new(going),
            bucket("b", "logs", serde_json::json!({}), 5),
            bucket("a", "logs", serde_json::json!({}), 3),
        ];
        let b = w.build();
        assert_eq!(
            excluded(&b.buckets[&ObjKey::new("a", "pending")].part).0,
            reasons::NOT_PROVISIONED
        );
        assert_eq!(
            excluded(&b.buckets[&ObjKey::new("a", "going")].part).0,
            reasons::DELETING
        );
        let loser = &b.buckets[&ObjKey::new("b", "logs")];
        assert_eq!(excluded(&loser.part).0, reasons::NAME_CONFLICT);
        assert_eq!(
            loser.conflict.as_ref().unwrap().holder,
            ObjKey::new("a", "logs")
        );
        assert_eq!(b.config.buckets.len(), 1);
    }

    #[test]
    fn grants_resolve_to_s3_names_and_cross_namespace_needs_consent() {
        let mut w = World::new();
        w.buckets = vec![
            bucket(
                "apps",
                "own",
                serde_json::json!({"bucketName": "own.example"}),
                1,
            ),
            bucket(
                "data",
                "open",
                serde_json::json!({"allowedNamespaces": ["apps"]}),
                1,
            ),
            bucket(
                "data",
                "public",
                serde_json::json!({"allowedNamespaces": ["*"]}),
                1,
            ),
            bucket(
                "data",
                "closed",
                serde_json::json!({"allowedNamespaces": ["other"]}),
                1,
            ),
        ];
        let mut pending = (*bucket("apps", "pending", serde_json::json!({}), 1)).clone();
        pending.status = None;
        w.buckets.push(Arc::new(pending));
        let spec = grants(serde_json::json!([
            {"bucket": "own", "permission": "read-write"},
            {"bucket": "open", "namespace": "data", "permission": "read"},
            {"bucket": "public", "namespace": "data", "permission": "write"},
            {"bucket": "closed", "namespace": "data", "permission": "read"},
            {"bucket": "missing", "permission": "read"},
            {"bucket": "pending", "permission": "read"},
        ]));
        w.credential(
            credential("apps", "app", spec, 1),
            Some(key("AKIA0001", "secretsecret")),
        );
        let b = w.build();
        let view = &b.credentials[&ObjKey::new("apps", "app")];
        let outcomes: Vec<Result<&str, &str>> = view
            .grants
            .iter()
            .map(|g| g.result.as_ref().map(String::as_str).map_err(|p| p.reason))
            .collect();
        assert_eq!(
            outcomes,
            [
                Ok("own.example"),
                Ok("open"),
                Ok("public"),
                Err(reasons::GRANT_DENIED),
                Err(reasons::BUCKET_NOT_FOUND),
                Err(reasons::BUCKET_NOT_SERVED),
            ]
        );
        assert_eq!(view.bucket_name, None, "more than one grant");
        let entry = &b.config.credentials[0];
        let got: Vec<(&str, Permission)> = entry
            .grants
            .iter()
            .map(|g| (g.bucket.as_str(), g.permission))
            .collect();
        assert_eq!(
            got,
            [
                ("own.example", Permission::ReadWrite),
                ("open", Permission::Read),
                ("public", Permission::Write)
            ]
        );
        assert_eq!(entry.description.as_deref(), Some("apps/app"));
    }

    #[test]
    fn a_single_resolved_grant_names_the_bucket() {
        let mut w = World::new();
        w.buckets.push(bucket(
            "a",
            "one",
            serde_json::json!({"bucketName": "one.example"}),
            1,
        ));
        let spec = grants(serde_json::json!([{"bucket": "one", "permission": "read"}]));
        w.credential(
            credential("a", "c", spec, 1),
            Some(key("AKIA0001", "secretsecret")),
        );
        let spec = grants(serde_json::json!([{"bucket": "nope", "permission": "read"}]));
        w.credential(
            credential("a", "d", spec, 1),
            Some(key("AKIA0002", "secretsecret")),
        );
        let b = w.build();
        assert_eq!(
            b.credentials[&ObjKey::new("a", "c")].bucket_name.as_deref(),
            Some("one.example")
        );
        assert_eq!(b.credentials[&ObjKey::new("a", "d")].bucket_name, None);
    }

    #[test]
    fn a_credential_needs_its_own_secret() {
        let mut w = World::new();
        let spec = grants(serde_json::json!([{"bucket": "x-bucket", "permission": "read"}]));
        w.credential(credential("a", "nokey", spec.clone(), 1), None);
        // A Secret of the right name that another object controls does not count.
        let other = credential("a", "other", spec.clone(), 1);
        let mut stolen = app_secret(&other, &key("AKIA0003", "secretsecret"), &SETTINGS);
        stolen.metadata.name = Some("foreign".into());
        w.secrets.push(Arc::new(stolen));
        let foreign = credential("a", "foreign", spec, 1);
        w.credentials.push(Arc::new(foreign));
        let b = w.build();
        for name in ["nokey", "foreign"] {
            let (reason, message) = excluded(&b.credentials[&ObjKey::new("a", name)].part);
            assert_eq!(reason, reasons::NO_KEY);
            assert!(message.contains(name), "{message}");
        }
        assert!(b.config.credentials.is_empty());
    }

    #[test]
    fn the_previous_key_is_served_until_it_expires() {
        let mut w = World::new();
        let c = credential(
            "a",
            "rot",
            grants(serde_json::json!([{"bucket": "x-bucket", "permission": "read"}])),
            1,
        );
        let expires = now()
            .checked_add(std::time::Duration::from_secs(60))
            .unwrap();
        let previous = PreviousKey {
            pair: KeyPair {
                access_key_id: "AKIAOLD1".into(),
                secret_access_key: "oldsecretold".into(),
            },
            expires_at: expires,
        };
        w.secrets.push(Arc::new(previous_secret(&c, &previous)));
        w.credential(c, Some(key("AKIANEW1", "newsecretnew")));
        let b = w.build();
        let ids: Vec<(&str, Option<&str>)> = b
            .config
            .credentials
            .iter()
            .map(|c| (c.access_key_id.as_str(), c.not_after.as_deref()))
            .collect();
        assert_eq!(
            ids,
            [
                ("AKIANEW1", None),
                ("AKIAOLD1", Some(expires.to_string().as_str()))
            ]
        );
        assert_eq!(b.next_expiry, Some(expires));
        assert!(b.config.credentials[1]
            .description
            .as_ref()
            .unwrap()
            .ends_with("(previous key)"));

        // After the expiry it is gone.
        let later = build(&Inputs {
            buckets: &w.buckets,
            credentials: &w.credentials,
            secrets: &w.secrets,
            jwt_secrets: &w.jwt_secrets,
            region: "us-east-1",
            gateway: &w.gateway,
            now: expires,
        });
        assert_eq!(later.config.credentials.len(), 1);
        assert_eq!(later.next_expiry, None);
    }

    #[test]
    fn an_invalid_part_is_left_out_with_its_problems_and_the_rest_stays() {
        let mut w = World::new();
        w.buckets
            .push(bucket("a", "fine", serde_json::json!({}), 1));
        let spec = grants(serde_json::json!([{"bucket": "fine", "permission": "read"}]));
        w.credential(
            credential("a", "short", spec.clone(), 1),
            Some(key("AKIA0001", "short")),
        );
        w.credential(
            credential("a", "badid", spec.clone(), 1),
            Some(key("AK-1", "secretsecret")),
        );
        w.credential(
            credential("a", "good", spec, 1),
            Some(key("AKIA0002", "secretsecret")),
        );
        let b = w.build();
        let (reason, message) = excluded(&b.credentials[&ObjKey::new("a", "short")].part);
        assert_eq!(reason, reasons::INVALID_CONFIG);
        assert!(
            message.starts_with("credentials[0].secretAccessKey:"),
            "{message}"
        );
        let (_, message) = excluded(&b.credentials[&ObjKey::new("a", "badid")].part);
        assert!(
            message.starts_with("credentials[0].accessKeyId:"),
            "{message}"
        );
        assert!(matches!(
            b.credentials[&ObjKey::new("a", "good")].part,
            Part::Included { .. }
        ));
        assert_eq!(b.config.credentials.len(), 1);
        assert_eq!(b.config.buckets.len(), 1);
        assert!(b.config.validate().is_ok());
    }

    #[test]
    fn access_fields_and_jwt_keys_from_secrets_reach_the_config() {
        let mut w = World::new();
        let jwt = serde_json::json!({"jwt": {
            "keys": [{"kid": "k1", "algorithm": "HS256", "secretRef": {"name": "jwt", "key": "hmac"}}],
            "audiences": ["media"], "permission": "read-write"},
            "ipFilter": {"allow": ["10.0.0.0/8"]}, "cache": {"maxObjectBytes": 4096},
            "rateLimit": {"requestsPerSecond": 5, "burst": 10}});
        w.buckets.push(bucket("a", "keyed", jwt.clone(), 1));
        w.buckets.push(bucket("a", "nokey", jwt, 2));
        w.buckets
            .push(bucket("a", "plain", serde_json::json!({}), 3));
        let mut values = KeyValues::new();
        values.insert(("jwt".into(), "hmac".into()), b"s".repeat(32));
        w.jwt_secrets.insert(ObjKey::new("a", "keyed"), values);
        let b = w.build();
        assert!(b.problems.is_empty(), "{:?}", b.problems);
        let keyed = b.config.bucket("keyed").unwrap();
        let j = keyed.jwt.as_ref().unwrap();
        assert_eq!(j.keys.len(), 1);
        assert_eq!(j.permission, Permission::ReadWrite);
        assert_eq!(j.audiences, ["media"]);
        assert_eq!(keyed.ip_filter.as_ref().unwrap().allow, ["10.0.0.0/8"]);
        assert_eq!(keyed.cache.unwrap().max_object_bytes, 4096);
        assert_eq!(keyed.rate_limit.unwrap().burst, Some(10));
        let (reason, message) = excluded(&b.buckets[&ObjKey::new("a", "nokey")].part);
        assert_eq!(reason, reasons::JWT_KEY_NOT_FOUND);
        assert!(message.contains("Secret jwt does not exist"), "{message}");
        assert!(b.config.bucket("plain").is_some());

        // A secret too short for HS256 is the shared validation's to refuse.
        let mut w2 = World::new();
        let spec = serde_json::json!({"jwt": {"keys": [{"algorithm": "HS256", "secretRef": {"name": "jwt", "key": "hmac"}}]}});
        w2.buckets.push(bucket("a", "short", spec, 1));
        let mut short = KeyValues::new();
        short.insert(("jwt".into(), "hmac".into()), b"short".to_vec());
        w2.jwt_secrets.insert(ObjKey::new("a", "short"), short);
        let b2 = w2.build();
        let (reason, message) = excluded(&b2.buckets[&ObjKey::new("a", "short")].part);
        assert_eq!(reason, reasons::INVALID_CONFIG);
        assert!(message.contains("jwt.keys[0].secretBase64"), "{message}");
    }

    #[test]
    fn the_first_credential_keeps_a_shared_access_key_id() {
        let mut w = World::new();
        let spec = grants(serde_json::json!([{"bucket": "x-bucket", "permission": "read"}]));
        w.credential(
            credential("b", "late", spec.clone(), 9),
            Some(key("AKIASAME", "secretsecret")),
        );
        w.credential(
            credential("a", "early", spec, 2),
            Some(key("AKIASAME", "othersecret")),
        );
        let b = w.build();
        let (reason, message) = excluded(&b.credentials[&ObjKey::new("b", "late")].part);
        assert_eq!(reason, reasons::DUPLICATE_ACCESS_KEY);
        assert!(message.contains("a/early"), "{message}");
        assert_eq!(b.config.credentials.len(), 1);
        assert_eq!(b.config.credentials[0].secret_access_key, "othersecret");
    }

    #[test]
    fn the_same_resources_in_any_order_give_the_same_config() {
        let mut w = World::new();
        for (i, n) in ["zeta", "alpha", "mid"].iter().enumerate() {
            w.buckets
                .push(bucket("a", n, serde_json::json!({}), i as i64));
            let spec = grants(serde_json::json!([{"bucket": n, "permission": "read"}]));
            w.credential(
                credential("a", n, spec, i as i64),
                Some(key(&format!("AKIA{i}{n}"), "secretsecret")),
            );
        }
        let first = w.build();
        w.buckets.reverse();
        w.credentials.reverse();
        w.secrets.reverse();
        let second = w.build();
        assert_eq!(first.config, second.config);
        assert_eq!(first.config.content_hash(), second.config.content_hash());
        let names: Vec<&str> = first
            .config
            .buckets
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
    }

    #[test]
    fn a_bad_region_makes_the_whole_config_invalid() {
        let mut w = World::new();
        w.region = "Not A Region".into();
        let b = w.build();
        assert_eq!(b.problems.len(), 1);
        assert!(b.problems[0].starts_with("region:"), "{:?}", b.problems);
    }

    #[test]
    fn bucket_policies_are_checked_with_the_gateway_parser() {
        let mut w = World::new();
        let good = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::site/*"}]}"#;
        w.buckets.push(bucket(
            "a",
            "site",
            serde_json::json!({"policy": good,
                "publicAccessBlock": {"blockPublicPolicy": false, "restrictPublicBuckets": false}}),
            1,
        ));
        w.buckets.push(bucket(
            "a",
            "bad",
            serde_json::json!({"policy": r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:Fly","Resource":"arn:aws:s3:::bad/*"}]}"#}),
            2,
        ));
        let b = w.build();
        assert!(b.problems.is_empty());
        let site = b.config.bucket("site").unwrap();
        assert_eq!(site.policy.as_deref(), Some(good));
        let pab = site.public_access_block.unwrap();
        assert!(pab.block_public_acls && pab.ignore_public_acls);
        assert!(!pab.block_public_policy && !pab.restrict_public_buckets);
        let (reason, message) = excluded(&b.buckets[&ObjKey::new("a", "bad")].part);
        assert_eq!(reason, reasons::INVALID_CONFIG);
        assert!(
            message.contains("Policy has invalid action: s3:Fly"),
            "{message}"
        );
        assert!(b.config.bucket("bad").is_none());
    }

    #[test]
    fn gateway_wide_settings_are_in_the_config() {
        let mut w = World::new();
        w.gateway.limits.rate_limits.per_client_ip = Some(jets3_crds::RateLimit {
            requests_per_second: 20.0,
            burst: None,
        });
        w.gateway.limits.circuit_breaker.failure_threshold = 2;
        w.gateway.audit.reads = false;
        w.gateway.public_access_block = PublicAccessBlock::NONE;
        let b = w.build();
        assert!(b.problems.is_empty());
        assert_eq!(b.config.limits, w.gateway.limits);
        assert!(!b.config.audit.reads);
        assert_eq!(b.config.public_access_block, PublicAccessBlock::NONE);
    }
}
