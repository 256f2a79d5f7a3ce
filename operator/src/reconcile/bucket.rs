//! `S3Bucket` -> a JetStream object-store bucket with the spec's configuration.
//!
//! - Created when missing, also when it disappears behind the operator's back (found at the
//!   next resync, or at once through the stream-deleted advisory).
//! - Updated where NATS allows; where it does not (storage) or refuses (replicas beyond the
//!   cluster size), `BucketProvisioned` is False with NATS's reason and the bucket stays as is.
//! - An existing NATS bucket not made for this S3Bucket (stream metadata `jets3.owner`) is
//!   adopted only with `spec.adopt`; otherwise Ready=False, reason `BucketExists`. Adoption
//!   takes a bucket without an owner record, or one owned in the S3Bucket's own namespace;
//!   another namespace's bucket (say one retained after its S3Bucket was deleted) only when
//!   `--adopt-across-namespaces` names the adopting namespace (else `AdoptionRefused`).
//! - A name another S3Bucket claimed first: Ready=False, reason `NameConflict`, NATS untouched.
//! - Deletion: `Delete` removes the NATS bucket (only if it is this S3Bucket's), `Retain`
//!   leaves it. While NATS is unreachable the finalizer retries with backoff and the status
//!   says why; after `--delete-timeout` it gives up, leaves the NATS bucket in place (Warning
//!   Event `BucketOrphaned`) and lets the S3Bucket go, so a namespace deletion never hangs.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::stream;
use jets3_crds::k8s::Time;
use jets3_crds::k8s::{conditions, human_size, DeletionPolicy, S3Bucket, S3BucketStatus};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Api;

use crate::context::Context;
use crate::model::bucket_config::{owner_id, owner_of, Desired};
use crate::model::jwt_keys::{self, KeyValues};
use crate::model::key::ObjKey;
use crate::model::name_claims::bucket_claim;
use crate::model::reasons::{self, INVALID_CONFIG, JWT_KEY_NOT_FOUND};
use crate::status::{self, condition, newly};
use crate::{Error, Result};

/// The finalizer on every S3Bucket.
pub const FINALIZER: &str = "jets3.io/bucket";

/// Whether `b` may adopt a NATS bucket whose owner record is `owner` (`<namespace>/<name>`):
/// one owned in its own namespace, or any when `across` (the operator's
/// `--adopt-across-namespaces`) names its namespace or is `*`.
fn may_adopt(b: &S3Bucket, owner: &str, across: &[String]) -> bool {
    let own = b.metadata.namespace.as_deref().unwrap_or_default();
    owner.split_once('/').is_some_and(|(ns, _)| ns == own)
        || across.iter().any(|n| n == "*" || n == own)
}

/// What provisioning found or did.
enum Provisioned {
    /// The bucket exists with the spec's configuration.
    Ok {
        info: Box<stream::Info>,
        /// Event reason and note when something was done.
        did: Option<(&'static str, String)>,
    },
    /// The bucket cannot be made to match (reason, message); it is left as it is.
    Refused {
        reason: &'static str,
        message: String,
        /// Whether the NATS bucket is this S3Bucket's (it exists and is owned).
        owned: bool,
    },
}

/// The reconcile logic of an S3Bucket.
pub(crate) trait BucketExt {
    /// Brings the NATS bucket and the status in line with the spec.
    async fn apply(&self, ctx: &Context) -> Result<Action>;
    /// Honours the deletion policy before the finalizer is removed.
    async fn cleanup(&self, ctx: &Context) -> Result<Action>;
}

impl BucketExt for S3Bucket {
    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let key = ObjKey::of(self);
        let old = self.status.clone().unwrap_or_default();
        let gen = self.metadata.generation;
        let mut status = S3BucketStatus {
            observed_generation: gen,
            bucket_name: Some(self.s3_bucket_name()),
            endpoint: Some(ctx.settings.endpoint.clone()),
            // Kept until the NATS bucket is known to be someone else's.
            nats_bucket: old.nats_bucket.clone(),
            size_bytes: old.size_bytes,
            size: old.size.clone(),
            object_count: old.object_count,
            stats_updated_at: old.stats_updated_at.clone(),
            conditions: Vec::new(),
        };

        // DataLost stays once set; a new loss replaces it (and its message).
        let mut data_lost = old
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::DATA_LOST)
            .cloned();
        let buckets = ctx.stores.buckets();
        let claim = bucket_claim(&key, buckets.iter().map(|b| b.as_ref()));
        let (provisioned, result) = if let Some(conflict) = claim {
            status.nats_bucket = None;
            let c = condition(
                conditions::BUCKET_PROVISIONED,
                false,
                reasons::NAME_CONFLICT,
                format!("{conflict}; the NATS bucket is left untouched"),
                gen,
                &old.conditions,
            );
            (c, Ok(()))
        } else {
            match provision(self, ctx).await {
                Ok(Provisioned::Ok { info, did }) => {
                    status.nats_bucket = Some(self.nats_bucket_name());
                    refresh_stats(self, ctx, &info, &mut status).await;
                    if let Some((reason, note)) = did {
                        let kind = if reason == reasons::BUCKET_RECREATED {
                            data_lost = Some(condition(
                                conditions::DATA_LOST,
                                true,
                                reason,
                                format!("{} at {}", note, status::now()),
                                gen,
                                &[],
                            ));
                            EventType::Warning
                        } else {
                            EventType::Normal
                        };
                        ctx.event(self, kind, reason, note).await;
                    }
                    let c = condition(
                        conditions::BUCKET_PROVISIONED,
                        true,
                        reasons::OK,
                        format!(
                            "NATS bucket {:?} has the spec's configuration",
                            self.nats_bucket_name()
                        ),
                        gen,
                        &old.conditions,
                    );
                    (c, Ok(()))
                }
                Ok(Provisioned::Refused {
                    reason,
                    message,
                    owned,
                }) => {
                    if !owned {
                        status.nats_bucket = None;
                    }
                    let c = condition(
                        conditions::BUCKET_PROVISIONED,
                        false,
                        reason,
                        message,
                        gen,
                        &old.conditions,
                    );
                    (c, Ok(()))
                }
                Err(e) => {
                    let c = condition(
                        conditions::BUCKET_PROVISIONED,
                        false,
                        reasons::NATS_UNAVAILABLE,
                        format!("cannot reach NATS, retrying: {e}"),
                        gen,
                        &old.conditions,
                    );
                    (c, Err(e))
                }
            }
        };
        if provisioned.status == "False" && newly(&provisioned, &old.conditions) {
            ctx.event(
                self,
                EventType::Warning,
                &provisioned.reason,
                provisioned.message.clone(),
            )
            .await;
        }
        // The JWT keys' Secrets, read before the Served view is taken: a change rebuilds the
        // config, whose new view kicks this bucket again.
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let values = read_jwt_secrets(&secrets, self).await?;
        if ctx.stores.jwt_secrets.set(&key, values) {
            ctx.hub.input_changed();
        }
        let (_, serving) = ctx.hub.bucket(&key);
        let served = status::served(&serving, gen, &old.conditions);
        if [INVALID_CONFIG, JWT_KEY_NOT_FOUND].contains(&served.reason.as_str())
            && newly(&served, &old.conditions)
        {
            ctx.event(
                self,
                EventType::Warning,
                &served.reason,
                served.message.clone(),
            )
            .await;
        }
        let ready = status::ready(
            &[&provisioned, &served],
            "the bucket is provisioned and served",
            gen,
            &old.conditions,
        );
        status.conditions = vec![ready, provisioned, served];
        status.conditions.extend(data_lost);
        if Some(&status) != self.status.as_ref() {
            let api: Api<S3Bucket> = Api::namespaced(ctx.client.clone(), &key.namespace);
            status::apply(&api, self, &status).await?;
        }
        result?;
        Ok(Action::requeue(ctx.settings.resync))
    }

    async fn cleanup(&self, ctx: &Context) -> Result<Action> {
        if ctx.stores.jwt_secrets.set(&ObjKey::of(self), None) {
            ctx.hub.input_changed();
        }
        let nats = self.nats_bucket_name();
        let owned = self.status.as_ref().and_then(|s| s.nats_bucket.as_deref()) == Some(&nats);
        if !owned {
            // Never provisioned for this S3Bucket (or lost its name): nothing of ours in NATS.
            return Ok(Action::await_change());
        }
        if self.spec.deletion_policy == DeletionPolicy::Retain {
            ctx.event(
                self,
                EventType::Normal,
                "BucketRetained",
                format!("deletionPolicy Retain: NATS bucket {nats:?} and its objects are kept"),
            )
            .await;
            return Ok(Action::await_change());
        }
        match delete_nats_bucket(self, ctx).await {
            Ok(note) => {
                ctx.event(self, EventType::Normal, "BucketDeleted", note)
                    .await;
                Ok(Action::await_change())
            }
            Err(e) => {
                let since = self
                    .metadata
                    .deletion_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .unwrap_or_else(Timestamp::now);
                let waited =
                    Duration::try_from(Timestamp::now().duration_since(since)).unwrap_or_default();
                if waited >= ctx.settings.delete_timeout {
                    ctx.metrics.orphaned_buckets.inc();
                    let note = format!(
                        "NATS stayed unreachable for {}s (--delete-timeout): the S3Bucket is removed and NATS bucket {nats:?} is left in place; delete it with `nats object del {nats}` ({e})",
                        ctx.settings.delete_timeout.as_secs()
                    );
                    tracing::warn!(bucket = %ObjKey::of(self), "{note}");
                    ctx.event(self, EventType::Warning, "BucketOrphaned", note)
                        .await;
                    return Ok(Action::await_change());
                }
                let old = self.status.clone().unwrap_or_default();
                let gen = self.metadata.generation;
                let blocked = condition(
                    conditions::READY,
                    false,
                    reasons::DELETION_BLOCKED,
                    format!(
                        "cannot delete NATS bucket {nats:?} (deletionPolicy Delete), retrying; after {}s of trying the S3Bucket is removed and the NATS bucket left in place: {e}",
                        ctx.settings.delete_timeout.as_secs()
                    ),
                    gen,
                    &old.conditions,
                );
                if newly(&blocked, &old.conditions) {
                    ctx.event(
                        self,
                        EventType::Warning,
                        reasons::DELETION_BLOCKED,
                        blocked.message.clone(),
                    )
                    .await;
                    let mut status = old.clone();
                    status.conditions.retain(|c| c.type_ != conditions::READY);
                    status.conditions.insert(0, blocked);
                    let api: Api<S3Bucket> =
                        Api::namespaced(ctx.client.clone(), &ObjKey::of(self).namespace);
                    status::apply(&api, self, &status).await?;
                }
                Err(e)
            }
        }
    }
}

/// Makes the NATS bucket exist with the spec's configuration, where NATS allows.
async fn provision(b: &S3Bucket, ctx: &Context) -> Result<Provisioned> {
    let nats = b.nats_bucket_name();
    let desired =
        Desired::of(b, ctx.nats.cluster_size()).with_atomic(ctx.nats.has_atomic_batches());
    let me = owner_id(b);
    let Some(info) = ctx.nats.bucket(&nats).await? else {
        let config = desired.apply(jets3_nats::names::object_store_stream(&nats));
        return match ctx.nats.create_bucket(config).await {
            Ok(info) => {
                let again =
                    b.status.as_ref().and_then(|s| s.nats_bucket.as_deref()) == Some(nats.as_str());
                let did = if again {
                    (reasons::BUCKET_RECREATED, format!("NATS bucket {nats:?} was missing (deleted outside the operator, or NATS lost its storage); created it again, empty: the objects it held are gone"))
                } else {
                    ("BucketCreated", format!("created NATS bucket {nats:?}"))
                };
                Ok(Provisioned::Ok {
                    info: Box::new(info),
                    did: Some(did),
                })
            }
            Err(Error::NatsRefused(m)) => Ok(Provisioned::Refused {
                reason: reasons::CREATE_REFUSED,
                message: format!("NATS refused to create bucket {nats:?}: {m}"),
                owned: false,
            }),
            Err(e) => Err(e),
        };
    };
    let owner = owner_of(&info.config);
    let mut did = None;
    if owner != Some(me.as_str()) {
        if !b.spec.adopt {
            let whose = match owner {
                Some(o) => format!("it belongs to S3Bucket {o}"),
                None => "it was not created by jets3".to_string(),
            };
            return Ok(Provisioned::Refused {
                reason: reasons::BUCKET_EXISTS,
                message: format!(
                    "NATS bucket {nats:?} already exists and {whose}; it is left untouched. Set spec.adopt: true to take it over"
                ),
                owned: false,
            });
        }
        if let Some(o) = owner.filter(|o| !may_adopt(b, o, &ctx.settings.adopt_across_namespaces)) {
            return Ok(Provisioned::Refused {
                reason: reasons::ADOPTION_REFUSED,
                message: format!(
                    "NATS bucket {nats:?} belongs to S3Bucket {o}, which is in another namespace; it is left untouched. An S3Bucket adopts only a NATS bucket without a jets3 owner or one owned in its own namespace, unless the operator's --adopt-across-namespaces names this namespace"
                ),
                owned: false,
            });
        }
        did = Some((
            "BucketAdopted",
            format!("adopted existing NATS bucket {nats:?}"),
        ));
    }
    if !desired.storage_matches(&info.config) {
        return Ok(Provisioned::Refused {
            reason: reasons::STORAGE_MISMATCH,
            message: format!(
                "NATS bucket {nats:?} uses {:?} storage but the spec asks for {:?}; NATS cannot change a bucket's storage (set spec.storage to match, or move the data to a new bucket)",
                info.config.storage, desired.storage
            ),
            owned: owner == Some(me.as_str()),
        });
    }
    let differences = desired.differences(&info.config);
    if differences.is_empty() {
        return Ok(Provisioned::Ok {
            info: Box::new(info),
            did,
        });
    }
    match ctx.nats.update_bucket(&nats, |c| desired.apply(c)).await {
        Ok(info) => {
            let did = did.or_else(|| {
                Some((
                    "BucketUpdated",
                    format!("updated NATS bucket {nats:?}: {}", differences.join(", ")),
                ))
            });
            Ok(Provisioned::Ok {
                info: Box::new(info),
                did,
            })
        }
        Err(Error::NatsRefused(m)) => Ok(Provisioned::Refused {
            reason: reasons::UPDATE_REFUSED,
            message: format!(
                "NATS refused to change {} of bucket {nats:?}, which keeps its current settings: {m}",
                differences.join(", ")
            ),
            owned: owner == Some(me.as_str()),
        }),
        Err(e) => Err(e),
    }
}

/// Size and object count; the count is read again only when the stream changed.
async fn refresh_stats(
    b: &S3Bucket,
    ctx: &Context,
    info: &stream::Info,
    status: &mut S3BucketStatus,
) {
    let nats = b.nats_bucket_name();
    let count = match ctx.cached_count(&nats, info.state.last_sequence) {
        Some(c) => Some(c),
        None => match ctx.nats.count_objects(&nats).await {
            Ok(c) => {
                ctx.cache_count(&nats, info.state.last_sequence, c);
                Some(c)
            }
            Err(e) => {
                tracing::warn!(bucket = %nats, error = %e, "cannot count objects");
                None
            }
        },
    };
    let bytes = i64::try_from(info.state.bytes).unwrap_or(i64::MAX);
    let count = count.map(|c| i64::try_from(c).unwrap_or(i64::MAX));
    if status.size_bytes != Some(bytes) || (count.is_some() && status.object_count != count) {
        status.size_bytes = Some(bytes);
        status.size = Some(human_size(info.state.bytes));
        if count.is_some() {
            status.object_count = count;
        }
        status.stats_updated_at = Some(Time(status::now()));
    }
}

/// Deletes the NATS bucket if it is this S3Bucket's; the Event note saying what happened.
async fn delete_nats_bucket(b: &S3Bucket, ctx: &Context) -> Result<String> {
    let nats = b.nats_bucket_name();
    let me = owner_id(b);
    match ctx.nats.bucket(&nats).await? {
        None => Ok(format!("NATS bucket {nats:?} was already gone")),
        Some(info) if owner_of(&info.config) != Some(me.as_str()) => Ok(format!(
            "NATS bucket {nats:?} now belongs to {}; not deleted",
            owner_of(&info.config).unwrap_or("no S3Bucket")
        )),
        Some(_) => {
            ctx.nats.delete_bucket(&nats).await?;
            Ok(format!(
                "deletionPolicy Delete: deleted NATS bucket {nats:?} and its objects"
            ))
        }
    }
}

/// Reads the values `b`'s JWT keys name from the Secrets in its namespace; `None` when it
/// names none.
async fn read_jwt_secrets(api: &Api<Secret>, b: &S3Bucket) -> Result<Option<KeyValues>> {
    let names = jwt_keys::secret_names(b);
    if names.is_empty() {
        return Ok(None);
    }
    let wanted: BTreeSet<(String, String)> = b
        .spec
        .jwt
        .iter()
        .flat_map(|j| &j.keys)
        .filter_map(|k| k.source())
        .map(|r| (r.name.clone(), r.key.clone()))
        .collect();
    let mut values = KeyValues::new();
    for name in names {
        let Some(secret) = api.get_opt(&name).await? else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        for (n, k) in wanted.iter().filter(|(n, _)| *n == name) {
            if let Some(v) = data.get(k) {
                values.insert((n.clone(), k.clone()), v.0.clone());
            }
        }
    }
    Ok(Some(values))
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::fixtures;
    use crate::model::bucket_config::tests::bucket;

    #[test]
    fn adoption_stays_in_the_namespace_unless_the_operator_allows_more() {
        let b = bucket(serde_json::json!({"adopt": true})); // team-a/media
        let none: Vec<String> = Vec::new();
        assert!(may_adopt(&b, "team-a/old", &none));
        assert!(!may_adopt(&b, "team-b/media", &none));
        assert!(!may_adopt(&b, "team-a", &none), "a record without a name");
        assert!(!may_adopt(&b, "team-ab/x", &none));
        assert!(may_adopt(&b, "team-b/media", &["team-a".to_string()]));
        assert!(!may_adopt(&b, "team-b/media", &["team-b".to_string()]));
        assert!(may_adopt(&b, "team-b/media", &["*".to_string()]));
    }

    /// A new S3Bucket: the reconcile creates the NATS bucket's stream, tells so in an
    /// Event, and writes a status that says it is provisioned but not served yet.
    #[tokio::test]
    async fn apply_creates_the_stream_and_writes_the_status() {
        let (ctx, mut api, nats) = fixtures::context().await;
        let b = fixtures::bucket("media", serde_json::json!({"maxBytes": 1000000}));
        let stored = b.clone();
        let reconcile = b.apply(&ctx);
        let server = async move {
            assert_eq!(api.event("team-a").await, "BucketCreated");
            let status = "/apis/jets3.io/v1alpha1/namespaces/team-a/s3buckets/media/status";
            let patch = api
                .expect(Method::PATCH, status, 200, |c| {
                    fixtures::with_status(&stored, &c.body)
                })
                .await;
            assert!(
                patch.query.contains("fieldManager=jets3-operator"),
                "{}",
                patch.query
            );
            patch.body
        };
        let (action, patch) = tokio::join!(reconcile, server);
        assert_eq!(action.unwrap(), Action::requeue(ctx.settings.resync));

        let stream = nats.bucket("media").await.expect("the stream is created");
        assert_eq!(stream.config.subjects, ["$O.media.C.>", "$O.media.M.>"]);
        assert_eq!(stream.config.max_bytes, 1000000);
        let status = &patch["status"];
        assert_eq!(status["natsBucket"], "media");
        assert_eq!(status["endpoint"], "http://jets3.test:9000");
        let reason = |type_: &str| {
            let c = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == type_)
                .cloned()
                .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
            (
                c["status"].as_str().unwrap().to_string(),
                c["reason"].as_str().unwrap().to_string(),
            )
        };
        assert_eq!(
            reason("BucketProvisioned"),
            ("True".into(), reasons::OK.into())
        );
        assert_eq!(reason("Served"), ("False".into(), reasons::PENDING.into()));
        assert_eq!(reason("Ready"), ("False".into(), reasons::PENDING.into()));
    }
}
