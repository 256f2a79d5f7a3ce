//! Finding the gateway pods: a watch on the Pods of `--gateway-namespace` matching
//! `--gateway-selector`. Every pod with an IP that is not terminating or finished is a
//! target, ready or not (a gateway is not ready precisely because it has no config yet).

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use tokio::sync::watch;

/// One gateway pod to push to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `namespace/name`, for logs.
    pub name: String,
    pub ip: IpAddr,
}

/// The targets by a key that changes when the pod is replaced, gets another IP, or its
/// container restarts (each of which needs a fresh look at what it holds).
pub type Targets = BTreeMap<String, Target>;

/// The target a pod is, if it is one.
pub fn target(pod: &Pod) -> Option<(String, Target)> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    let restarts: i32 = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    let key = format!("{}/{ip}/{restarts}", pod.uid().unwrap_or_default());
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    Some((key, Target { name, ip }))
}

/// Watches the pods and sends the targets (`None` until the first list is complete) until
/// the receiver is gone.
pub async fn run(api: Api<Pod>, selector: String, targets: watch::Sender<Option<Targets>>) {
    let (reader, writer) = reflector::store();
    let events = reflector(
        writer,
        watcher(api, watcher::Config::default().labels(&selector)),
    )
    .default_backoff();
    let mut events = std::pin::pin!(events);
    let mut listed = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => listed = true,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, %selector, "watching gateway pods failed; retrying");
                continue;
            }
        }
        if !listed {
            continue;
        }
        let now: Targets = reader.state().iter().filter_map(|p| target(p)).collect();
        targets.send_if_modified(|old| {
            let changed = old.as_ref() != Some(&now);
            *old = Some(now);
            changed
        });
        if targets.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pods_with_an_ip_are_targets_ready_or_not() {
        let base = json!({"metadata": {"name": "gw-1", "namespace": "ns", "uid": "u1"}});
        let mut p = base.clone();
        p["status"] = json!({"phase": "Pending"});
        assert_eq!(target(&pod(p.clone())), None);
        p["status"]["podIP"] = json!("10.0.0.7");
        let (key, t) = target(&pod(p.clone())).unwrap();
        assert_eq!(key, "u1/10.0.0.7/0");
        assert_eq!(t.name, "ns/gw-1");
        // A restarted container is a new key; a finished or terminating pod is no target.
        p["status"]["containerStatuses"] = json!([{
            "name": "gateway", "image": "x", "imageID": "", "ready": false, "restartCount": 2,
        }]);
        assert_eq!(target(&pod(p.clone())).unwrap().0, "u1/10.0.0.7/2");
        let mut done = p.clone();
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(target(&pod(done)), None);
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(target(&pod(p)), None);
    }
}
