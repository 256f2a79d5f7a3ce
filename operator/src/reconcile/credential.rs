//! `S3Credential` -> an access key pair in a Secret for apps, and its part of the config.
//!
//! - The key is generated (CSPRNG, AWS format) or copied from the keySource Secret. It lives
//!   in the app Secret, so a restarted operator finds it again and never re-generates it.
//! - Rotation: when `rotation.interval` has passed since the key was made, when the
//!   `jets3.io/rotate` annotation has a value not handled yet, or when the keySource Secret
//!   holds another key. The previous key keeps working for `rotation.overlap` (it is written
//!   to the previous-key Secret first, then the new key to the app Secret, so a crash in
//!   between loses nothing), then the operator deletes it and the config drops it.
//! - Grants are resolved by the config build (bucket names, cross-namespace permission); the
//!   app Secret carries `BUCKET_NAME` when there is exactly one grant and it resolved.

use std::time::Duration;

use jets3_crds::k8s::{
    conditions, KeySourceType, S3Credential, S3CredentialStatus, Time, ROTATE_ANNOTATION,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::model::key::ObjKey;
use crate::model::reasons;
use crate::model::secrets::{
    app_secret, controlled_by, previous_secret, previous_secret_name, AppSettings, CurrentKey,
    KeyPair, PreviousKey,
};
use crate::status::{self, condition, newly};
use crate::Result;

/// A key change: the Event reason and why.
struct Change {
    reason: &'static str,
    note: String,
}

/// The reconcile logic of an S3Credential.
pub(crate) trait CredentialExt {
    /// Writes the key to the app Secret (rotating it when due) and the status.
    async fn apply(&self, ctx: &Context) -> Result<Action>;
}

impl CredentialExt for S3Credential {
    async fn apply(&self, ctx: &Context) -> Result<Action> {
        let key = ObjKey::of(self);
        let uid = self.uid().unwrap_or_default();
        let old = self.status.clone().unwrap_or_default();
        let gen = self.metadata.generation;
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let now = status::now();
        let app_name = self.secret_name();
        let mut status = S3CredentialStatus {
            observed_generation: gen,
            secret_name: Some(app_name.clone()),
            buckets: Some(self.spec.buckets_summary()),
            ..Default::default()
        };

        let app = api.get_opt(&app_name).await?;
        let written = match &app {
            Some(s) if !controlled_by(s, &uid) => Err((
                reasons::SECRET_EXISTS,
                format!(
                    "Secret {app_name} already exists and is not managed by this S3Credential; it is left untouched (set spec.secretName to another name, or delete that Secret)"
                ),
            )),
            _ => {
                let previous = api.get_opt(&previous_secret_name(self)).await?;
                write_key(self, ctx, &api, app.as_ref(), previous, now, &mut status).await?
            }
        };

        let (view, serving) = ctx.hub.credential(&key);
        let secret_written = match &written {
            Ok(()) => condition(
                conditions::SECRET_WRITTEN,
                true,
                reasons::OK,
                format!("Secret {app_name} holds the current key"),
                gen,
                &old.conditions,
            ),
            Err((reason, message)) => condition(
                conditions::SECRET_WRITTEN,
                false,
                reason,
                message.clone(),
                gen,
                &old.conditions,
            ),
        };
        let problems: Vec<_> = view
            .iter()
            .flat_map(|v| v.grants.iter())
            .filter_map(|g| g.result.as_ref().err())
            .collect();
        let grants = match problems.first() {
            None => condition("Grants", true, reasons::OK, "", gen, &[]),
            Some(first) => condition(
                "Grants",
                false,
                first.reason,
                problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                gen,
                &[],
            ),
        };
        let served = status::served(&serving, gen, &old.conditions);
        let ready = status::ready(
            &[&secret_written, &grants, &served],
            "the key is written and served on every granted bucket",
            gen,
            &old.conditions,
        );
        // Ready carries the first problem; waiting for delivery is not one.
        let waiting = [
            reasons::AWAITING_PUSH,
            reasons::DELIVERING,
            reasons::PENDING,
        ];
        if ready.status == "False"
            && !waiting.contains(&ready.reason.as_str())
            && newly(&ready, &old.conditions)
        {
            ctx.event(
                self,
                EventType::Warning,
                &ready.reason,
                ready.message.clone(),
            )
            .await;
        }
        status.conditions = vec![ready, secret_written, served];
        if Some(&status) != self.status.as_ref() {
            let creds: Api<S3Credential> = Api::namespaced(ctx.client.clone(), &key.namespace);
            status::apply(&creds, self, &status).await?;
        }
        Ok(Action::requeue(next_check(
            self,
            &status,
            now,
            ctx.settings.resync,
        )))
    }
}

/// What the key should be now, and the change that leads there (if any).
fn desired_key(
    cred: &S3Credential,
    current: Option<CurrentKey>,
    source: Option<KeyPair>,
    now: Timestamp,
) -> (CurrentKey, Option<Change>) {
    let request = cred.annotations().get(ROTATE_ANNOTATION).cloned();
    let fresh = |pair: KeyPair| CurrentKey {
        pair,
        created_at: Some(now),
        rotate_handled: request.clone(),
    };
    match (source, current) {
        (None, None) => (
            fresh(KeyPair::generate()),
            Some(Change {
                reason: "KeyGenerated",
                note: "generated a new access key".into(),
            }),
        ),
        (Some(pair), None) => (
            fresh(pair),
            Some(Change {
                reason: "KeyImported",
                note: "took the access key from the keySource Secret".into(),
            }),
        ),
        (Some(pair), Some(c)) if pair != c.pair => (
            fresh(pair),
            Some(Change {
                reason: "KeyChanged",
                note: format!(
                    "the keySource Secret holds a new access key; the previous one ({}) keeps working for {}",
                    c.pair.access_key_id,
                    overlap(cred).map_or("no time".into(), |d| format!("{}s", d.as_secs()))
                ),
            }),
        ),
        (Some(_), Some(c)) => {
            // A given key cannot be rotated by the operator: the request is noted as handled.
            let handled = CurrentKey {
                rotate_handled: request.clone(),
                ..c
            };
            (handled, None)
        }
        (None, Some(c)) => {
            let requested = request.is_some() && request != c.rotate_handled;
            let due = rotation_due(cred, &c).is_some_and(|t| t <= now);
            if !(requested || due) {
                return (c, None);
            }
            let why = if requested {
                format!("the {ROTATE_ANNOTATION} annotation asked for it")
            } else {
                "rotation.interval has passed".to_string()
            };
            (
                fresh(KeyPair::generate()),
                Some(Change {
                    reason: "KeyRotated",
                    note: format!(
                        "rotated the access key ({why}); the previous one ({}) keeps working for {}",
                        c.pair.access_key_id,
                        overlap(cred).map_or("no time".into(), |d| format!("{}s", d.as_secs()))
                    ),
                }),
            )
        }
    }
}

/// When a generated key is due for rotation by interval.
fn rotation_due(cred: &S3Credential, key: &CurrentKey) -> Option<Timestamp> {
    let interval: Duration = cred.spec.rotation.interval?.into();
    key.created_at?.checked_add(interval).ok()
}

/// The overlap window, or `None` when it is zero.
fn overlap(cred: &S3Credential) -> Option<Duration> {
    let d: Duration = cred.spec.rotation.overlap.into();
    (!d.is_zero()).then_some(d)
}

/// When to look again: the next rotation, the previous key's expiry, or the resync.
fn next_check(
    cred: &S3Credential,
    status: &S3CredentialStatus,
    now: Timestamp,
    resync: Duration,
) -> Duration {
    let mut next = resync;
    let mut consider = |t: Option<Timestamp>| {
        if let Some(t) = t {
            let d = Duration::try_from(t.duration_since(now)).unwrap_or_default();
            next = next.min(d.max(Duration::from_secs(1)));
        }
    };
    consider(status.previous_key_expires_at.as_ref().map(|t| t.0));
    if cred.spec.key_source.r#type == KeySourceType::Generated {
        let created = status.key_creation_timestamp.as_ref().map(|t| t.0);
        let interval: Option<Duration> = cred.spec.rotation.interval.map(Into::into);
        if let (Some(c), Some(i)) = (created, interval) {
            consider(c.checked_add(i).ok());
        }
    }
    next
}

/// Decides the key, writes the previous-key and app Secrets where they change, and fills the
/// key fields of `status`. `Ok(Err((reason, message)))` when no key can be written.
async fn write_key(
    cred: &S3Credential,
    ctx: &Context,
    api: &Api<Secret>,
    app: Option<&Secret>,
    previous_secret_found: Option<Secret>,
    now: Timestamp,
    status: &mut S3CredentialStatus,
) -> Result<std::result::Result<(), (&'static str, String)>> {
    let uid = cred.uid().unwrap_or_default();
    let current = app.and_then(CurrentKey::read);
    let previous_exists = previous_secret_found.is_some();
    let previous = previous_secret_found
        .filter(|s| controlled_by(s, &uid))
        .and_then(|s| PreviousKey::read(&s));
    let source = match (
        &cred.spec.key_source.r#type,
        &cred.spec.key_source.secret_ref,
    ) {
        (KeySourceType::Generated, _) => None,
        (KeySourceType::Secret, r) => {
            let pair = match r {
                Some(r) => api
                    .get_opt(&r.name)
                    .await?
                    .and_then(|s| KeyPair::from_source(&s, r)),
                None => None,
            };
            match pair {
                Some(p) => Some(p),
                None => {
                    fill_key_status(status, current.as_ref(), previous.as_ref(), now);
                    let what =
                        r.as_ref()
                            .map_or("keySource.secretRef is not set".to_string(), |r| {
                                format!(
                                    "Secret {} does not exist or lacks the keys {} and {}",
                                    r.name, r.access_key_id_key, r.secret_access_key_key
                                )
                            });
                    return Ok(Err((reasons::SOURCE_SECRET_INVALID, what)));
                }
            }
        }
    };
    let before = current.clone();
    let (key, change) = desired_key(cred, current, source, now);
    let mut previous = previous.filter(|p| p.expires_at > now);
    let mut previous_written = false;
    if let Some(change) = change {
        if let Some(old) = before.filter(|o| o.pair != key.pair) {
            previous = overlap(cred).and_then(|d| {
                Some(PreviousKey {
                    pair: old.pair,
                    expires_at: now.checked_add(d).ok()?,
                })
            });
            if let Some(p) = &previous {
                // First the old key's new home, then the new key: a crash in between loses
                // neither.
                apply_secret(api, &previous_secret(cred, p)).await?;
                previous_written = true;
            }
        }
        ctx.event(cred, EventType::Normal, change.reason, change.note)
            .await;
    }
    let (view, _) = ctx.hub.credential(&ObjKey::of(cred));
    let settings = AppSettings {
        endpoint: &ctx.settings.endpoint,
        region: &ctx.settings.region,
        bucket_name: view.as_ref().and_then(|v| v.bucket_name.as_deref()),
    };
    let desired = app_secret(cred, &key, &settings);
    if app.is_none_or(|a| differs(a, &desired)) {
        apply_secret(api, &desired).await?;
    }
    if previous.is_none() && previous_exists && !previous_written {
        api.delete(&previous_secret_name(cred), &DeleteParams::default())
            .await
            .map(|_| ())
            .or_else(ignore_not_found)?;
        ctx.event(
            cred,
            EventType::Normal,
            "PreviousKeyRevoked",
            "the previous access key's overlap is over; it no longer works".to_string(),
        )
        .await;
    }
    fill_key_status(status, Some(&key), previous.as_ref(), now);
    Ok(Ok(()))
}

/// Whether the Secret on the server lacks something the operator writes.
fn differs(actual: &Secret, desired: &Secret) -> bool {
    let subset = |want: &std::collections::BTreeMap<String, String>,
                  have: &std::collections::BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    actual.data != desired.data
        || !subset(desired.annotations(), actual.annotations())
        || !subset(desired.labels(), actual.labels())
        || actual.owner_references() != desired.owner_references()
}

/// Server-side applies a Secret the operator owns.
async fn apply_secret(api: &Api<Secret>, secret: &Secret) -> Result<()> {
    api.patch(
        &secret.name_any(),
        &PatchParams::apply(crate::FIELD_MANAGER).force(),
        &Patch::Apply(secret),
    )
    .await?;
    Ok(())
}

fn ignore_not_found(e: kube::Error) -> std::result::Result<(), kube::Error> {
    match &e {
        kube::Error::Api(s) if s.code == 404 => Ok(()),
        _ => Err(e),
    }
}

/// The key fields of the status (never the secret).
fn fill_key_status(
    status: &mut S3CredentialStatus,
    current: Option<&CurrentKey>,
    previous: Option<&PreviousKey>,
    now: Timestamp,
) {
    status.access_key_id = current.map(|k| k.pair.access_key_id.clone());
    status.key_creation_timestamp = current.and_then(|k| k.created_at).map(Time);
    status.last_rotate_request = current.and_then(|k| k.rotate_handled.clone());
    let previous = previous.filter(|p| p.expires_at > now);
    status.previous_access_key_id = previous.map(|p| p.pair.access_key_id.clone());
    status.previous_key_expires_at = previous.map(|p| Time(p.expires_at));
}

#[cfg(test)]
mod tests {
    use http::Method;
    use jets3_crds::k8s::secret_keys;

    use super::*;
    use crate::fixtures;

    /// A new S3Credential with a generated key: the reconcile finds neither Secret, writes
    /// the app Secret (owned by the credential, with the key, endpoint and region) by
    /// server-side apply, and puts the access key id, never the secret, in the status.
    #[tokio::test]
    async fn apply_writes_the_app_secret_and_the_status() {
        let (ctx, mut api, _nats) = fixtures::context().await;
        let c = fixtures::credential(
            "media-app",
            serde_json::json!({
                "grants": [{"bucket": "media", "permission": "read-write"}],
                "secretName": "media-app-s3"
            }),
        );
        let stored = c.clone();
        let reconcile = c.apply(&ctx);
        let server = async move {
            let secrets = "/api/v1/namespaces/team-a/secrets";
            for name in ["media-app-s3", "jets3-previous-key-uid-media-app"] {
                let path = format!("{secrets}/{name}");
                api.expect(Method::GET, &path, 404, |_| fixtures::not_found(name))
                    .await;
            }
            assert_eq!(api.event("team-a").await, "KeyGenerated");
            let path = format!("{secrets}/media-app-s3");
            let secret = api
                .expect(Method::PATCH, &path, 200, |c| c.body.clone())
                .await;
            assert!(secret.query.contains("force=true"), "{}", secret.query);
            let status = "/apis/jets3.io/v1alpha1/namespaces/team-a/s3credentials/media-app/status";
            let patch = api
                .expect(Method::PATCH, status, 200, |c| {
                    fixtures::with_status(&stored, &c.body)
                })
                .await;
            (secret.body, patch.body)
        };
        let (action, (secret, patch)) = tokio::join!(reconcile, server);
        action.unwrap();

        let value = |key: &str| {
            let b64 = secret["data"][key].as_str().unwrap_or_default();
            let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                .unwrap_or_else(|_| panic!("{key} is base64"));
            String::from_utf8(raw).unwrap()
        };
        let access_key_id = value(secret_keys::ACCESS_KEY_ID);
        assert_eq!(access_key_id.len(), 20);
        assert_eq!(value(secret_keys::SECRET_ACCESS_KEY).len(), 40);
        assert_eq!(value(secret_keys::ENDPOINT_URL), "http://jets3.test:9000");
        let owner = &secret["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["uid"].as_str(), owner["controller"].as_bool()),
            (Some("uid-media-app"), Some(true))
        );

        let status = &patch["status"];
        assert_eq!(status["accessKeyId"], access_key_id.as_str());
        assert_eq!(status["secretName"], "media-app-s3");
        assert!(
            !patch
                .to_string()
                .contains(&value(secret_keys::SECRET_ACCESS_KEY)),
            "the secret key is not in the status"
        );
    }
}
