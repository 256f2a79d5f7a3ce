//! The controllers: what they watch, the thin reconcile function per kind (tracing span,
//! metrics timer, finalizer) and the error policy; the wiring of [`crate::reconcile`],
//! [`crate::publish`] and [`crate::push`] around one [`Context`].
//!
//! Per watched namespace (or once for all namespaces) the operator keeps three reflector
//! stores, S3Buckets, S3Credentials and the Secrets it manages (by label), that both the
//! controllers and the config publisher read. Every watch event also tells the publisher to
//! rebuild the config; the publisher re-runs the reconciles of the resources whose view
//! changed (`reconcile_on`), so their `Served` condition follows the config.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt};
use jets3_crds::k8s::{S3Bucket, S3Credential};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::NamespaceResourceScope;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::context::{Context, KickScope, Kicks, Settings, Stores};
use crate::hub::{Hub, Kind};
use crate::metrics::Metrics;
use crate::model::jwt_keys;
use crate::model::key::ObjKey;
use crate::model::secrets::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::nats::Nats;
use crate::reconcile::bucket::{self, BucketExt};
use crate::reconcile::credential::CredentialExt;
use crate::{Error, Result};

/// One watched namespace (or all): where its watch events go, and its kick receivers.
struct Scope {
    namespace: Option<String>,
    buckets: Writer<S3Bucket>,
    credentials: Writer<S3Credential>,
    secrets: Writer<Secret>,
    bucket_kicks: mpsc::UnboundedReceiver<ObjectRef<S3Bucket>>,
    credential_kicks: mpsc::UnboundedReceiver<ObjectRef<S3Credential>>,
}

/// The retry delay after `n` consecutive failures: 1 s doubling up to 2 minutes.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(7)).min(Duration::from_secs(120))
}

async fn reconcile_bucket(b: Arc<S3Bucket>, ctx: Arc<Context>) -> Result<Action> {
    let key = ObjKey::of(b.as_ref());
    let span = tracing::info_span!("reconcile", kind = "S3Bucket", object = %key);
    async {
        let _timer = ctx.metrics.reconcile_started("S3Bucket");
        ctx.hub.wait_built().await;
        let api: Api<S3Bucket> = Api::namespaced(ctx.client.clone(), &key.namespace);
        let action = finalizer(&api, bucket::FINALIZER, b, |event| async {
            match event {
                Finalizer::Apply(b) => b.apply(&ctx).await,
                Finalizer::Cleanup(b) => b.cleanup(&ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))?;
        ctx.succeeded(Kind::Bucket, &key);
        Ok(action)
    }
    .instrument(span)
    .await
}

async fn reconcile_credential(c: Arc<S3Credential>, ctx: Arc<Context>) -> Result<Action> {
    let key = ObjKey::of(c.as_ref());
    let span = tracing::info_span!("reconcile", kind = "S3Credential", object = %key);
    async {
        let _timer = ctx.metrics.reconcile_started("S3Credential");
        ctx.hub.wait_built().await;
        // No finalizer: the Secrets are owned by the credential, and the config drops it as
        // soon as it is gone from the store.
        if c.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let action = c.apply(&ctx).await?;
        ctx.succeeded(Kind::Credential, &key);
        Ok(action)
    }
    .instrument(span)
    .await
}

fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let (kind, name) = match K::kind(&()).as_ref() {
        "S3Bucket" => (Kind::Bucket, "S3Bucket"),
        _ => (Kind::Credential, "S3Credential"),
    };
    ctx.metrics.reconcile_failed(name, error);
    let key = ObjKey::of(obj.as_ref());
    let n = ctx.failed(kind, key.clone());
    let delay = backoff(n);
    tracing::warn!(kind = name, object = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Checks that the CRDs are installed, with a message saying what to do if not. Asks in
/// the first of `watch_namespaces` (all namespaces when empty): with watched namespaces the
/// operator may hold Roles there only.
pub async fn check_crds(client: &Client, watch_namespaces: &[String]) -> Result<()> {
    let lp = ListParams::default().limit(1);
    let scope = watch_namespaces.first().cloned();
    for (what, result) in [
        (
            "s3buckets.jets3.io",
            scoped_api::<S3Bucket>(client, &scope)
                .list_metadata(&lp)
                .await
                .map(drop),
        ),
        (
            "s3credentials.jets3.io",
            scoped_api::<S3Credential>(client, &scope)
                .list_metadata(&lp)
                .await
                .map(drop),
        ),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(Error::Config(format!(
                    "the CustomResourceDefinition {what} is not installed: apply crds/yaml/jets3.io_crds.yaml (or install the Helm chart) first"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// An `Api` on one namespace, or on all.
fn scoped_api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    }
}

/// A future every controller can hold that resolves when shutdown starts.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Runs the controllers and the config publisher until `shutdown` resolves, then lets the
/// running reconciles finish.
pub async fn run(
    client: Client,
    nats: Nats,
    metrics: Metrics,
    settings: Settings,
    hub: Arc<Hub>,
    shutdown: Shutdown,
) -> Result<()> {
    check_crds(&client, &settings.watch_namespaces).await?;
    let namespaces: Vec<Option<String>> = if settings.watch_namespaces.is_empty() {
        vec![None]
    } else {
        settings
            .watch_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    let mut stores = Stores::default();
    let mut kicks = Kicks::default();
    let mut scopes = Vec::new();
    for namespace in namespaces {
        let (buckets, credentials, secrets) =
            (Writer::default(), Writer::default(), Writer::default());
        stores.buckets.push(buckets.as_reader());
        stores.credentials.push(credentials.as_reader());
        stores.secrets.push(secrets.as_reader());
        let (bucket_kick, bucket_kicks) = mpsc::unbounded();
        let (credential_kick, credential_kicks) = mpsc::unbounded();
        kicks.scopes.push(KickScope {
            namespace: namespace.clone(),
            buckets: bucket_kick,
            credentials: credential_kick,
        });
        scopes.push(Scope {
            namespace,
            buckets,
            credentials,
            secrets,
            bucket_kicks,
            credential_kicks,
        });
    }
    let ctx = Arc::new(Context::new(
        client.clone(),
        nats,
        metrics,
        settings,
        hub,
        stores,
        kicks,
    ));
    let mut controllers = Vec::new();
    for scope in scopes {
        controllers.push(bucket_controller(
            &ctx,
            &client,
            &scope.namespace,
            scope.buckets,
            scope.bucket_kicks,
            &shutdown,
        ));
        controllers.push(credential_controller(
            &ctx,
            &client,
            &scope.namespace,
            (scope.credentials, scope.secrets),
            scope.credential_kicks,
            &shutdown,
        ));
    }
    let push = ctx.settings.push.clone();
    if push.is_some() {
        ctx.hub.add_delivery();
    }
    let push = async {
        match push {
            Some(p) => crate::push::run(ctx.clone(), p).await,
            None => std::future::pending().await,
        }
    };
    let publisher = crate::publish::run(ctx.clone());
    tokio::select! {
        _ = futures::future::join_all(controllers) => Ok(()),
        r = publisher => r,
        _ = push => Err(Error::Config("the config push stopped".into())),
    }
}

/// Drops what the operator never reads from an object before a reflector store keeps it:
/// `managedFields` and kubectl's last-applied copy of the object (together often more than
/// the rest of the object, for every S3Bucket, S3Credential and managed Secret held).
fn trim<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
    if let Some(a) = o.meta_mut().annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

/// The annotation in which `kubectl apply` keeps the object it applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How long a controller waits for more events on an object before reconciling it.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The S3Bucket controller of one scope.
fn bucket_controller(
    ctx: &Arc<Context>,
    client: &Client,
    namespace: &Option<String>,
    writer: Writer<S3Bucket>,
    kicks: mpsc::UnboundedReceiver<ObjectRef<S3Bucket>>,
    shutdown: &Shutdown,
) -> BoxFuture<'static, ()> {
    let reader = writer.as_reader();
    let buckets =
        reflected(ctx, client, namespace, watcher::Config::default(), writer).applied_objects();
    // JWT key Secrets are the user's: watched by metadata only, to notice changes.
    let key_secrets = secret_metadata(client, namespace);
    let by_secret = reader.clone();
    // After a NATS outage, look at every bucket again at once rather than after its backoff.
    let reconnects = futures::stream::unfold(ctx.nats.reconnects(), |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(()) => return Some(((), rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Controller::for_stream(buckets, reader)
        .with_config(ControllerConfig::default().debounce(DEBOUNCE))
        .watches_stream(key_secrets, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            by_secret
                .state()
                .into_iter()
                .filter(|b| b.namespace() == ns && jwt_keys::secret_names(b).contains(&name))
                .map(|b| ObjectRef::from_obj(b.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_on(kicks)
        .reconcile_all_on(reconnects)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_bucket, error_policy, ctx.clone())
        .for_each(|_| async {})
        .boxed()
}

/// The S3Credential controller of one scope: its credentials, the Secrets they own, and the
/// keySource Secrets they read.
fn credential_controller(
    ctx: &Arc<Context>,
    client: &Client,
    namespace: &Option<String>,
    (writer, secrets): (Writer<S3Credential>, Writer<Secret>),
    kicks: mpsc::UnboundedReceiver<ObjectRef<S3Credential>>,
    shutdown: &Shutdown,
) -> BoxFuture<'static, ()> {
    let reader = writer.as_reader();
    let credentials =
        reflected(ctx, client, namespace, watcher::Config::default(), writer).applied_objects();
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let owned = reflected(ctx, client, namespace, managed, secrets).touched_objects();
    // keySource Secrets are the user's: watched by metadata only, to notice changes.
    let sources = secret_metadata(client, namespace);
    let by_source = reader.clone();
    Controller::for_stream(credentials, reader)
        .with_config(ControllerConfig::default().debounce(DEBOUNCE))
        .owns_stream(owned)
        .watches_stream(sources, move |secret| {
            let ns = secret.namespace();
            let name = secret.name_any();
            by_source
                .state()
                .into_iter()
                .filter(|c| {
                    c.namespace() == ns
                        && c.spec
                            .key_source
                            .secret_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name)
                })
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_on(kicks)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile_credential, error_policy, ctx.clone())
        .for_each(|_| async {})
        .boxed()
}

/// The watch events of `K` in one scope, trimmed, kept in `writer`'s store, each telling
/// the publisher that an input changed.
fn reflected<K>(
    ctx: &Arc<Context>,
    client: &Client,
    namespace: &Option<String>,
    config: watcher::Config,
    writer: Writer<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(scoped_api::<K>(client, namespace), config)
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .inspect(notify(&ctx.hub))
}

/// Changes to the Secrets of one scope, by metadata only (the user's Secrets: the operator
/// holds no watch on their data).
fn secret_metadata(
    client: &Client,
    namespace: &Option<String>,
) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static {
    watcher(
        scoped_api::<PartialObjectMeta<Secret>>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .touched_objects()
}

/// A stream inspector that tells the publisher an input changed.
fn notify<T>(hub: &Arc<Hub>) -> impl Fn(&T) + Send + 'static {
    let hub = hub.clone();
    move |_| hub.input_changed()
}

/// Makes a [`Shutdown`] from any future.
pub fn shutdown_on(f: impl Future<Output = ()> + Send + 'static) -> Shutdown {
    f.boxed().shared()
}

#[cfg(test)]
mod tests {
    use http::Method;
    use jets3_nats::names::object_store_stream;
    use serde_json::json;

    use super::*;
    use crate::fixtures;
    use crate::model::bucket_config::Desired;

    const BUCKET: &str = "/apis/jets3.io/v1alpha1/namespaces/team-a/s3buckets/media";

    /// What the stores keep of an object: no managedFields, no last-applied copy, the rest.
    #[test]
    fn trim_keeps_what_the_operator_reads() {
        let mut o: Secret = serde_json::from_value(json!({
            "metadata": {"name": "s", "annotations": {LAST_APPLIED: "{}", "team": "a"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "data": {"k": "dg=="}
        }))
        .unwrap();
        trim(&mut o);
        assert_eq!(o.metadata.managed_fields, None);
        let annotations = o.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert!(o.data.is_some_and(|d| d.contains_key("k")));
    }

    /// The first reconcile of an S3Bucket only adds the finalizer (the change brings the
    /// next reconcile): nothing is made in NATS before the finalizer is on.
    #[tokio::test]
    async fn a_new_bucket_gets_the_finalizer_first() {
        let (ctx, mut api, nats) = fixtures::context().await;
        fixtures::built(&ctx);
        let b = fixtures::bucket("media", json!({}));
        let stored = b.clone();
        let reconcile = reconcile_bucket(Arc::new(b), ctx.clone());
        let server = async move {
            api.expect(Method::PATCH, BUCKET, 200, |_| {
                let mut v = serde_json::to_value(&stored).unwrap();
                v["metadata"]["finalizers"] = json!([bucket::FINALIZER]);
                v
            })
            .await
        };
        let (action, patch) = tokio::join!(reconcile, server);
        assert_eq!(action.unwrap(), Action::await_change());
        let ops = patch.body.as_array().expect("a JSON patch").clone();
        assert!(
            ops.iter().any(|op| op["op"] == "add"
                && op["path"] == "/metadata/finalizers"
                && op["value"] == json!([bucket::FINALIZER])),
            "{ops:?}"
        );
        assert!(nats.bucket("media").await.is_none());
    }

    /// Deleting an S3Bucket with deletionPolicy Delete: the cleanup deletes the NATS bucket,
    /// tells so in an Event, and only then is the finalizer removed.
    #[tokio::test]
    async fn deletion_removes_the_nats_bucket_then_the_finalizer() {
        let (ctx, mut api, nats) = fixtures::context().await;
        fixtures::built(&ctx);
        let mut b = fixtures::bucket("media", json!({"deletionPolicy": "Delete"}));
        // Made by an earlier reconcile: the stream records its S3Bucket.
        let config = Desired::of(&b, 1).apply(object_store_stream("media"));
        ctx.nats.create_bucket(config).await.unwrap();
        b.metadata.finalizers = Some(vec![bucket::FINALIZER.to_string()]);
        b.metadata.deletion_timestamp = Some(jets3_crds::k8s::Time(crate::status::now()));
        b.status = Some(serde_json::from_value(json!({"natsBucket": "media"})).unwrap());
        let stored = b.clone();
        let reconcile = reconcile_bucket(Arc::new(b), ctx.clone());
        let server = async move {
            assert_eq!(api.event("team-a").await, "BucketDeleted");
            api.expect(Method::PATCH, BUCKET, 200, |_| {
                let mut v = serde_json::to_value(&stored).unwrap();
                v["metadata"]["finalizers"] = json!([]);
                v
            })
            .await
        };
        let (action, patch) = tokio::join!(reconcile, server);
        assert_eq!(action.unwrap(), Action::await_change());
        let ops = patch.body.as_array().expect("a JSON patch").clone();
        assert!(
            ops.iter()
                .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0"),
            "{ops:?}"
        );
        assert!(
            nats.bucket("media").await.is_none(),
            "the NATS bucket is gone"
        );
    }
}
