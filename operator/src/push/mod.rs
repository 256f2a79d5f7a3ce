//! The config push: the operator delivers each published `GatewayConfig` to every gateway pod
//! of the release, on the gateways' push API (README "Config push").
//!
//! [`discovery`] watches the gateway pods, [`sync`] keeps each on the current config through
//! [`client`], whose requests carry a [`signer`] token. Only the leader runs it (it runs with
//! the controllers).

pub mod client;
pub mod discovery;
pub mod signer;
pub mod sync;
mod watched;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::sync::watch;

use crate::context::{Context, PushSettings};

/// Pushes configs to the gateway pods until the task is dropped (the caller has declared the
/// delivery on the hub before anything was built).
pub async fn run(ctx: Arc<Context>, push: PushSettings) {
    let (targets, found) = watch::channel(None);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &push.namespace);
    tracing::info!(namespace = %push.namespace, selector = %push.selector, "config push: watching gateway pods");
    tokio::select! {
        _ = discovery::run(api, push.selector.clone(), targets) => {}
        _ = sync::run(ctx.clone(), push.client.clone(), push.check_interval, found) => {}
    }
}
