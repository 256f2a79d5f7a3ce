//! The config publisher: rebuilds the `GatewayConfig` whenever a watched resource or Secret
//! changes (and when a previous key expires), numbers it and publishes it on the [`Hub`].
//!
//! Generation: the same content keeps its generation; new content gets the next one. The
//! generation and content hash are persisted in a ConfigMap (`--config-state`, in the
//! operator's namespace; it never holds secrets) before a config is published, so the
//! generation only grows, across restarts and leader changes. When a gateway holds a higher
//! generation than that (the ConfigMap was lost, or another leader raced), the push reports
//! it ([`Hub::newer_generation_seen`]) and the config is published again above it.
//!
//! With `--config-file`, each published config is also written there (YAML, mode 0600), which
//! is the file a standalone gateway (`jets3-gateway --config FILE`) reloads; writing it counts
//! as delivering the config (unless the config push is on: then only the push delivers).
//!
//! [`Hub`]: crate::hub::Hub

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jets3_crds::{GatewayConfig, MAX_GENERATION_STEP};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

use crate::context::Context;
use crate::hub::Published;
use crate::model::gateway_config::{build, Inputs, Part};
use crate::model::secrets::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::Result;

/// How long the publisher waits after a change for more changes to arrive.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The persisted generation state.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    generation: u64,
    hash: Option<String>,
    resource_version: Option<String>,
}

/// Reads and writes the state ConfigMap.
struct StateStore {
    api: Api<ConfigMap>,
    name: String,
}

impl StateStore {
    async fn load(&self) -> Result<State> {
        let Some(cm) = self.api.get_opt(&self.name).await? else {
            return Ok(State::default());
        };
        let data = cm.data.unwrap_or_default();
        Ok(State {
            generation: data
                .get("generation")
                .and_then(|g| g.parse().ok())
                .unwrap_or(0),
            hash: data.get("hash").cloned(),
            resource_version: cm.metadata.resource_version,
        })
    }

    /// The generation for content `hash`: the stored one when the hash is the stored hash
    /// and it is above `floor`, else the next one above both, persisted. Retries a lost race
    /// with another writer.
    async fn generation_for(&self, state: &mut State, hash: &str, floor: u64) -> Result<u64> {
        let floor = followable(state.generation, floor);
        loop {
            if state.hash.as_deref() == Some(hash) && state.generation > floor {
                return Ok(state.generation);
            }
            let next = state.generation.max(floor) + 1;
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    resource_version: state.resource_version.clone(),
                    labels: Some(BTreeMap::from([(
                        MANAGED_BY_LABEL.to_string(),
                        MANAGED_BY.to_string(),
                    )])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([
                    ("generation".to_string(), next.to_string()),
                    ("hash".to_string(), hash.to_string()),
                ])),
                ..Default::default()
            };
            // An existing ConfigMap (the chart makes it) gets only its data written, at the
            // resourceVersion read: its labels stay its owner's, so `helm upgrade` (a
            // server-side apply) never conflicts with the operator.
            let written = match &state.resource_version {
                Some(rv) => {
                    let patch = serde_json::json!({
                        "metadata": {"resourceVersion": rv},
                        "data": cm.data,
                    });
                    self.api
                        .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                }
                None => self.api.create(&PostParams::default(), &cm).await,
            };
            match written {
                Ok(cm) => {
                    *state = State {
                        generation: next,
                        hash: Some(hash.to_string()),
                        resource_version: cm.metadata.resource_version,
                    };
                    return Ok(next);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => *state = self.load().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// `reported`, the highest generation a gateway said it holds, if the operator can follow it
/// (publish above it): at most [`MAX_GENERATION_STEP`] above its own `generation`, else 0.
/// Gateways refuse a config more than that step ahead of theirs, so a gateway can only be
/// further ahead through pushes the operator did not make; following it would move the
/// config where every other gateway refuses it. That gateway is left on what it holds (its
/// resources stay `Delivering`) until its pod restarts.
fn followable(generation: u64, reported: u64) -> u64 {
    if reported > generation.saturating_add(MAX_GENERATION_STEP) {
        tracing::warn!(
            reported,
            ours = generation,
            "a gateway holds a generation too far above ours to follow; restart that gateway pod"
        );
        0
    } else {
        reported
    }
}

/// Builds and publishes configs until the task is dropped.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    ctx.stores.wait_ready().await;
    let store = StateStore {
        api: Api::namespaced(ctx.client.clone(), &ctx.settings.namespace),
        name: ctx.settings.config_state.clone(),
    };
    // With the push on, the file is a copy for debugging and delivers nothing.
    let file_delivers = ctx.settings.config_file.is_some() && ctx.settings.push.is_none();
    if file_delivers {
        ctx.hub.add_delivery();
    }
    let mut delay = Backoff::default();
    let mut state = loop {
        match store.load().await {
            Ok(s) => break s,
            Err(e) => delay.wait(&e).await,
        }
    };
    let mut published_as: Option<(u64, String)> = None;
    loop {
        let (buckets, credentials, secrets) = (
            ctx.stores.buckets(),
            ctx.stores.credentials(),
            ctx.stores.secrets(),
        );
        let jwt_secrets = ctx.stores.jwt_secrets.snapshot();
        let built = build(&Inputs {
            buckets: &buckets,
            credentials: &credentials,
            secrets: &secrets,
            jwt_secrets: &jwt_secrets,
            region: &ctx.settings.region,
            gateway: &ctx.settings.gateway,
            now: Timestamp::now(),
        });
        record_metrics(&ctx, &built, buckets.len(), credentials.len());
        let next_expiry = built.next_expiry;
        if built.problems.is_empty() {
            let hash = built.config.content_hash();
            let generation = loop {
                match store
                    .generation_for(&mut state, &hash, ctx.hub.newer_generation_floor())
                    .await
                {
                    Ok(g) => break g,
                    Err(e) => delay.wait(&e).await,
                }
            };
            let is_new = published_as.as_ref() != Some(&(generation, hash.clone()));
            let published = is_new.then(|| {
                let mut config = built.config.clone();
                config.generation = generation;
                Published {
                    generation,
                    hash: hash.clone(),
                    config: Arc::new(config),
                }
            });
            let file_copy = published.as_ref().map(|p| p.config.clone());
            ctx.kicks
                .send(ctx.hub.install(built, generation, published));
            if is_new {
                tracing::info!(generation, hash = %hash, "gateway config published");
                ctx.metrics.config_generation.set(generation as i64);
                published_as = Some((generation, hash));
            }
            if let (Some(path), Some(config)) = (&ctx.settings.config_file, file_copy) {
                match write_config_file(path, &config).await {
                    Ok(()) if file_delivers => ctx.kicks.send(ctx.hub.delivered(config.generation)),
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "cannot write the config file")
                    }
                }
            }
        } else {
            ctx.metrics.config_invalid.inc();
            tracing::error!(problems = ?built.problems, "gateway config is invalid as a whole; not published");
        }
        wait_for_change(&ctx, next_expiry).await;
    }
}

/// Waits for an input change (then a short debounce) or the next previous-key expiry.
async fn wait_for_change(ctx: &Context, next_expiry: Option<Timestamp>) {
    let until_expiry = next_expiry
        .and_then(|t| Duration::try_from(t.duration_since(Timestamp::now())).ok())
        .map(|d| d + Duration::from_millis(10));
    tokio::select! {
        _ = ctx.hub.wait_input_changed() => tokio::time::sleep(DEBOUNCE).await,
        _ = async {
            match until_expiry {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => {}
    }
}

fn record_metrics(
    ctx: &Context,
    built: &crate::model::gateway_config::Build,
    buckets: usize,
    credentials: usize,
) {
    let m = &ctx.metrics;
    m.managed
        .with_label_values(&["S3Bucket"])
        .set(buckets as i64);
    m.managed
        .with_label_values(&["S3Credential"])
        .set(credentials as i64);
    let excluded = |parts: &mut dyn Iterator<Item = &Part>| {
        parts.filter(|p| matches!(p, Part::Excluded { .. })).count() as i64
    };
    m.config_excluded
        .with_label_values(&["S3Bucket"])
        .set(excluded(&mut built.buckets.values().map(|v| &v.part)));
    m.config_excluded
        .with_label_values(&["S3Credential"])
        .set(excluded(&mut built.credentials.values().map(|v| &v.part)));
}

/// Retry delays for the state ConfigMap: 1 s doubling to 30 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_secs(1))
    }
}

impl Backoff {
    async fn wait(&mut self, error: &crate::Error) {
        tracing::warn!(error = %error, retry_in = ?self.0, "config state: Kubernetes API call failed");
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }
}

/// Writes `config` to `path` as YAML, atomically (a temporary file renamed over it), mode 0600.
pub async fn write_config_file(path: &Path, config: &GatewayConfig) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_yaml::to_string(config).map_err(|e| crate::Error::Config(e.to_string()))?;
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })
    .await
    .map_err(|e| crate::Error::Config(e.to_string()))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_generation_is_followed_within_the_step() {
        // A lost state ConfigMap: gateways hold 5000, the operator starts over.
        assert_eq!(followable(0, 5000), 5000);
        assert_eq!(
            followable(9, MAX_GENERATION_STEP + 9),
            MAX_GENERATION_STEP + 9
        );
        assert_eq!(followable(9, MAX_GENERATION_STEP + 10), 0);
        assert_eq!(followable(9, u64::MAX), 0);
        assert_eq!(followable(u64::MAX - 1, u64::MAX), u64::MAX);
    }
}
