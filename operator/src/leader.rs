//! Leader election with a `coordination.k8s.io/v1` Lease, the way client-go does it: the
//! leader renews the Lease every `duration / 3`; a candidate takes it over when its holder is
//! empty (released) or its record has not changed for `duration`, as measured on the
//! candidate's own clock (so clock skew between nodes does not matter). Every write carries
//! the `resourceVersion` it read, so two candidates never both win.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::Result;

/// Who competes for which Lease.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity (the Lease holder when it leads).
    pub identity: String,
    /// How long a Lease is valid without renewal.
    pub duration: Duration,
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// Another holder's record as last seen: its resourceVersion and when it was first seen.
    observed: Option<(String, Instant)>,
}

impl Elector {
    pub fn new(client: Client, settings: LeaseSettings) -> Elector {
        Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: None,
        }
    }

    fn retry_period(&self) -> Duration {
        (self.settings.duration / 5).max(Duration::from_millis(200))
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: Lease call failed"),
            }
            tokio::time::sleep(self.retry_period()).await;
        }
    }

    /// Renews the Lease until it cannot for `2/3` of its duration, or another replica holds
    /// it; returns then (leadership is lost).
    pub async fn hold(&mut self) {
        let renew = self.settings.duration / 3;
        let deadline = self.settings.duration * 2 / 3;
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(renew).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_ok = Instant::now(),
                Ok(false) => {
                    tracing::error!("another replica holds the leader Lease");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot renew the Lease");
                    if last_ok.elapsed() >= deadline {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up so another replica can take it at once.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(e) => tracing::warn!(error = %e, "cannot release the leader Lease"),
        }
    }

    /// One round: `true` when this replica holds the Lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let now = MicroTime(Timestamp::now());
        let me = self.settings.identity.clone();
        let seconds = i32::try_from(self.settings.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        let pp = PostParams::default();
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&pp, &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() != Some(me.as_str()) {
            if holder.is_some() && !self.expired(&rv, spec.lease_duration_seconds) {
                return Ok(false);
            }
            spec.holder_identity = Some(me);
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        match self.api.replace(&self.settings.name, &pp, &lease).await {
            Ok(_) => {
                self.observed = None;
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether another holder's record (at `rv`) has gone unrenewed for its duration.
    fn expired(&mut self, rv: &str, seconds: Option<i32>) -> bool {
        let duration = seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.settings.duration);
        match &self.observed {
            Some((seen, since)) if seen == rv => since.elapsed() >= duration,
            _ => {
                self.observed = Some((rv.to_string(), Instant::now()));
                false
            }
        }
    }
}
