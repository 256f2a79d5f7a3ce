//! Keeping every gateway pod on the published config: a task per pod (so one slow or dead pod
//! never delays the others) asks what the pod holds and pushes the current config when that
//! differs: at once for a new pod or a new config, then every `--push-check-interval` (which
//! notices a restarted gateway), sooner with exponential backoff after a failure.
//!
//! The pod tasks report here; a generation counts as delivered when every discovered pod holds
//! it, and with no pod at all the resources are `NoGateways`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::client::{Failure, Held, PushClient};
use super::discovery::{Target, Targets};
use crate::context::Context;
use crate::hub::Published;

/// First retry delay after a failure; doubled up to the check interval.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// What a pod was last seen to hold.
#[derive(Debug, Clone, PartialEq)]
enum PodState {
    /// Not asked yet.
    Unknown,
    Holds(Held),
    Failing(Failure),
}

struct Pod {
    target: Target,
    task: JoinHandle<()>,
    state: PodState,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs until the task is dropped: follows `targets` and the published config.
pub async fn run(
    ctx: Arc<Context>,
    client: Arc<PushClient>,
    check: Duration,
    mut targets: watch::Receiver<Option<Targets>>,
) {
    let mut published = ctx.hub.published();
    let (report, mut reports) = mpsc::unbounded_channel::<(String, PodState)>();
    let mut pods: HashMap<String, Pod> = HashMap::new();
    let mut last_summary = None;
    loop {
        tokio::select! {
            r = targets.changed() => {
                if r.is_err() {
                    return;
                }
                let now = targets.borrow_and_update().clone();
                let Some(now) = now else { continue };
                pods.retain(|key, pod| {
                    let keep = now.contains_key(key);
                    if !keep {
                        tracing::info!(pod = %pod.target.name, "gateway pod gone");
                    }
                    keep
                });
                for (key, target) in now {
                    if pods.contains_key(&key) {
                        continue;
                    }
                    tracing::info!(pod = %target.name, ip = %target.ip, "gateway pod found");
                    let task = tokio::spawn(pod_loop(
                        ctx.clone(),
                        client.clone(),
                        target.clone(),
                        check,
                        key.clone(),
                        report.clone(),
                    ));
                    pods.insert(key, Pod { target, task, state: PodState::Unknown });
                }
            }
            Some((key, state)) = reports.recv() => {
                if let Some(pod) = pods.get_mut(&key) {
                    pod.state = state;
                }
            }
            r = published.changed() => {
                if r.is_err() {
                    return;
                }
            }
        }
        if targets.borrow().is_none() {
            continue;
        }
        let current = published.borrow().clone();
        let summary = summarize(&ctx, &pods, current.as_deref());
        if last_summary != Some(summary) {
            let generation = current.as_ref().map(|p| p.generation);
            // The steps in between (a new config on its way) only at debug level.
            if last_summary.is_none_or(|(pods, _)| pods != summary.0) || summary.0 == summary.1 {
                tracing::info!(
                    pods = summary.0,
                    in_sync = summary.1,
                    generation,
                    "gateway pods in sync"
                );
            } else {
                tracing::debug!(
                    pods = summary.0,
                    in_sync = summary.1,
                    generation,
                    "gateway pods in sync"
                );
            }
            last_summary = Some(summary);
        }
    }
}

/// Updates the hub and the gauges; returns (pods, pods in sync).
fn summarize(
    ctx: &Context,
    pods: &HashMap<String, Pod>,
    current: Option<&Published>,
) -> (usize, usize) {
    let in_sync = current.map_or(0, |c| {
        pods.values()
            .filter(|p| matches!(&p.state, PodState::Holds(h) if h.hash.as_deref() == Some(c.hash.as_str())))
            .count()
    });
    ctx.metrics.gateway_pods.set(pods.len() as i64);
    ctx.metrics.gateway_pods_in_sync.set(in_sync as i64);
    ctx.kicks.send(ctx.hub.gateways(pods.len(), in_sync));
    if let Some(c) = current {
        if !pods.is_empty() && in_sync == pods.len() {
            ctx.kicks.send(ctx.hub.delivered(c.generation));
        }
    }
    (pods.len(), in_sync)
}

/// One pod's loop; see the module docs.
async fn pod_loop(
    ctx: Arc<Context>,
    client: Arc<PushClient>,
    target: Target,
    check: Duration,
    key: String,
    report: mpsc::UnboundedSender<(String, PodState)>,
) {
    let mut published = ctx.hub.published();
    let mut retry = FIRST_RETRY;
    let mut body: Option<(u64, Bytes)> = None;
    let mut last_failure: Option<Failure> = None;
    loop {
        let current = published.borrow_and_update().clone();
        let delay = match current {
            None => check,
            Some(p) => {
                let bytes = match &body {
                    Some((g, b)) if *g == p.generation => b.clone(),
                    _ => {
                        let b = Bytes::from(serde_json::to_vec(&*p.config).unwrap_or_default());
                        body = Some((p.generation, b.clone()));
                        b
                    }
                };
                match sync_pod(&ctx, &client, &target, &p, bytes).await {
                    Ok(held) => {
                        if last_failure.take().is_some() {
                            tracing::info!(pod = %target.name, "gateway pod reachable again");
                        }
                        let _ = report.send((key.clone(), PodState::Holds(held)));
                        retry = FIRST_RETRY;
                        check
                    }
                    Err(failure) => {
                        if let Failure::Stale(held) = failure {
                            ctx.hub.newer_generation_seen(held);
                        }
                        ctx.metrics
                            .push_failures
                            .with_label_values(&[failure.label()])
                            .inc();
                        if last_failure.as_ref() != Some(&failure) {
                            match &failure {
                                Failure::Invalid(_) => {
                                    tracing::error!(pod = %target.name, generation = p.generation, error = %failure, "config push refused")
                                }
                                _ => {
                                    tracing::warn!(pod = %target.name, generation = p.generation, error = %failure, "config push failed")
                                }
                            }
                        }
                        last_failure = Some(failure.clone());
                        let _ = report.send((key.clone(), PodState::Failing(failure)));
                        let delay = retry;
                        retry = (retry * 2).min(check.max(FIRST_RETRY));
                        delay
                    }
                }
            }
        };
        tokio::select! {
            r = published.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Asks what the pod holds, pushes `config` when it is something else.
async fn sync_pod(
    ctx: &Context,
    client: &PushClient,
    target: &Target,
    config: &Published,
    body: Bytes,
) -> Result<Held, Failure> {
    let held = client.held(target.ip).await?;
    if held.hash.as_deref() == Some(config.hash.as_str()) {
        return Ok(held);
    }
    ctx.metrics.push_attempts.inc();
    let started = Instant::now();
    client.push(target.ip, config, body).await?;
    ctx.metrics
        .push_duration
        .observe(started.elapsed().as_secs_f64());
    tracing::info!(pod = %target.name, generation = config.generation, held = ?held.generation, "config pushed");
    Ok(Held {
        generation: Some(config.generation),
        hash: Some(config.hash.clone()),
    })
}
