//! What every reconcile, the config publisher and the config push share: the [`Context`]
//! (clients, settings, the reflector stores, the hub) and the operator-wide [`Settings`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use jets3_crds::k8s::{S3Bucket, S3Credential};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

use crate::hub::{Hub, Kind};
use crate::metrics::Metrics;
use crate::model::gateway_config::GatewayWide;
use crate::model::jwt_keys::JwtSecrets;
use crate::model::key::ObjKey;
use crate::nats::Nats;
use crate::push::client::PushClient;

/// Operator-wide settings the reconcilers use.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The gateway S3 Service URL (AWS_ENDPOINT_URL, status.endpoint).
    pub endpoint: String,
    /// The S3 region (AWS_REGION, the config's region).
    pub region: String,
    /// The config's gateway-wide limits and audit settings.
    pub gateway: GatewayWide,
    /// How often every resource is looked at again (drift, stats, NATS re-creation).
    pub resync: Duration,
    /// How long a deletion waits for an unreachable NATS before leaving the bucket.
    pub delete_timeout: Duration,
    /// The operator's namespace (Lease, state ConfigMap).
    pub namespace: String,
    /// This replica's name (Lease holder, Event reporter).
    pub instance: String,
    /// Namespaces to watch; empty: all.
    pub watch_namespaces: Vec<String>,
    /// Namespaces whose S3Buckets may adopt NATS buckets another namespace owns (`*`: all).
    pub adopt_across_namespaces: Vec<String>,
    /// Name of the ConfigMap holding the config generation and hash.
    pub config_state: String,
    /// Where to write each published config for a standalone gateway, if anywhere.
    pub config_file: Option<std::path::PathBuf>,
    /// The config push to gateway pods, if on.
    pub push: Option<PushSettings>,
}

/// The reflector stores of every watched namespace.
#[derive(Clone, Default)]
pub struct Stores {
    pub(crate) buckets: Vec<Store<S3Bucket>>,
    pub(crate) credentials: Vec<Store<S3Credential>>,
    pub(crate) secrets: Vec<Store<Secret>>,
    /// What each S3Bucket's JWT keys read from their Secrets.
    pub jwt_secrets: JwtSecrets,
}

impl Stores {
    /// Every S3Bucket.
    pub fn buckets(&self) -> Vec<Arc<S3Bucket>> {
        self.buckets.iter().flat_map(|s| s.state()).collect()
    }

    /// Every S3Credential.
    pub fn credentials(&self) -> Vec<Arc<S3Credential>> {
        self.credentials.iter().flat_map(|s| s.state()).collect()
    }

    /// Every Secret the operator manages.
    pub fn secrets(&self) -> Vec<Arc<Secret>> {
        self.secrets.iter().flat_map(|s| s.state()).collect()
    }

    /// Waits until every store has listed its objects once.
    pub async fn wait_ready(&self) {
        for s in &self.buckets {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.credentials {
            let _ = s.wait_until_ready().await;
        }
        for s in &self.secrets {
            let _ = s.wait_until_ready().await;
        }
    }
}

/// Senders that make the controllers reconcile one resource again.
#[derive(Clone, Default)]
pub struct Kicks {
    pub(crate) scopes: Vec<KickScope>,
}

/// The kick senders of one watched namespace (`None`: all namespaces).
#[derive(Clone)]
pub(crate) struct KickScope {
    pub(crate) namespace: Option<String>,
    pub(crate) buckets: mpsc::UnboundedSender<ObjectRef<S3Bucket>>,
    pub(crate) credentials: mpsc::UnboundedSender<ObjectRef<S3Credential>>,
}

impl Kicks {
    /// Re-runs the reconcile of each resource.
    pub fn send(&self, resources: Vec<(Kind, ObjKey)>) {
        for (kind, key) in resources {
            let Some(scope) = self
                .scopes
                .iter()
                .find(|s| s.namespace.as_deref().is_none_or(|n| n == key.namespace))
            else {
                continue;
            };
            // A closed channel means the controller is shutting down: nothing to re-run.
            let _ = match kind {
                Kind::Bucket => scope
                    .buckets
                    .unbounded_send(ObjectRef::new(&key.name).within(&key.namespace))
                    .map_err(drop),
                Kind::Credential => scope
                    .credentials
                    .unbounded_send(ObjectRef::new(&key.name).within(&key.namespace))
                    .map_err(drop),
            };
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub nats: Nats,
    pub metrics: Metrics,
    pub settings: Settings,
    pub hub: Arc<Hub>,
    pub stores: Stores,
    /// Re-runs reconciles of resources whose view changed.
    pub kicks: Kicks,
    recorder: Recorder,
    /// Consecutive failures per resource, for the retry backoff.
    failures: Mutex<HashMap<(Kind, ObjKey), u32>>,
    /// Object counts per NATS bucket, with the stream sequence they were counted at.
    counts: Mutex<HashMap<String, (u64, u64)>>,
}

impl Context {
    /// A context whose Events name this replica (`settings.instance`) as their reporter.
    pub fn new(
        client: Client,
        nats: Nats,
        metrics: Metrics,
        settings: Settings,
        hub: Arc<Hub>,
        stores: Stores,
        kicks: Kicks,
    ) -> Context {
        let reporter = Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: Some(settings.instance.clone()),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            nats,
            metrics,
            settings,
            hub,
            stores,
            kicks,
            failures: Mutex::default(),
            counts: Mutex::default(),
        }
    }

    /// Publishes an Event about `obj`; a failure is only logged.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// The object count of `bucket` if it was counted at stream sequence `seq`.
    pub fn cached_count(&self, bucket: &str, seq: u64) -> Option<u64> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .get(bucket)
            .and_then(|(s, c)| (*s == seq).then_some(*c))
    }

    /// Remembers the object count of `bucket` at stream sequence `seq`.
    pub fn cache_count(&self, bucket: &str, seq: u64, count: u64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.insert(bucket.to_string(), (seq, count));
    }

    /// Counts a failed reconcile of the resource; how many in a row.
    pub(crate) fn failed(&self, kind: Kind, key: ObjKey) -> u32 {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = f.entry((kind, key)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the resource's failures.
    pub(crate) fn succeeded(&self, kind: Kind, key: &ObjKey) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(&(kind, key.clone()));
    }
}

/// Where the gateways are and how to reach them.
#[derive(Clone)]
pub struct PushSettings {
    pub client: Arc<PushClient>,
    /// Label selector of the gateway pods.
    pub selector: String,
    /// Namespace of the gateway pods.
    pub namespace: String,
    /// How often each pod is asked again what it holds.
    pub check_interval: Duration,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSettings")
            .field("selector", &self.selector)
            .field("namespace", &self.namespace)
            .field("check_interval", &self.check_interval)
            .finish()
    }
}
