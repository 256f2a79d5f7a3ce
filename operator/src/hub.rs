//! Where the gateway config meets the rest of the operator.
//!
//! The publisher ([`crate::publish`]) installs each [`Build`] with the generation it
//! published; reconcilers read their resource's view and [`Serving`] state from here to write
//! the `Served` condition; whoever delivers configs to gateways (the push, or the config file
//! writer) subscribes to [`Hub::published`] and reports what it delivered with
//! [`Hub::delivered`]. The hub tells which resources' status changed, so only those are
//! reconciled again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use jets3_crds::GatewayConfig;
use tokio::sync::{watch, Notify};

use crate::model::gateway_config::{BucketView, Build, CredentialView, Part};
use crate::model::key::ObjKey;

/// A published gateway config.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub generation: u64,
    /// `GatewayConfig::content_hash()` of `config`.
    pub hash: String,
    /// The config, with `generation` set.
    pub config: Arc<GatewayConfig>,
}

/// Whether a resource's part of the config reaches the gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// No config has been built yet (the operator is starting).
    Unknown,
    /// Left out of the config.
    Excluded {
        reason: &'static str,
        message: String,
    },
    /// In config generation `generation`, which the gateways hold.
    Served { generation: u64 },
    /// In config generation `generation`, not yet delivered to every gateway.
    Delivering { generation: u64 },
    /// In config generation `generation`; nothing delivers configs to gateways.
    AwaitingPush { generation: u64 },
    /// In config generation `generation`; the push finds no gateway pod to deliver it to.
    NoGateways { generation: u64 },
}

/// Which kind a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Bucket,
    Credential,
}

#[derive(Default)]
struct State {
    build: Option<Arc<Build>>,
    /// Per included part: its hash and the first generation that held exactly that part.
    since: HashMap<(Kind, ObjKey), (String, u64)>,
    delivered: Option<u64>,
    /// Gateway pods found by the push, and how many of them hold the published config.
    gateways: Option<Gateways>,
}

/// The gateway pods the push delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Gateways {
    pub pods: usize,
    pub in_sync: usize,
}

/// The shared config state. See the module docs.
pub struct Hub {
    state: RwLock<State>,
    changed: Notify,
    published: watch::Sender<Option<Arc<Published>>>,
    built: watch::Sender<bool>,
    has_delivery: AtomicBool,
    newer_generation: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            state: RwLock::default(),
            changed: Notify::new(),
            published: watch::channel(None).0,
            built: watch::channel(false).0,
            has_delivery: AtomicBool::new(false),
            newer_generation: AtomicU64::new(0),
        }
    }
}

impl Hub {
    /// Tells the publisher that an input changed (a watch event on a resource or Secret).
    pub fn input_changed(&self) {
        self.changed.notify_one();
    }

    /// Tells the publisher that a gateway holds config generation `generation`, newer than
    /// the published one: the next config must be numbered above it.
    pub fn newer_generation_seen(&self, generation: u64) {
        if self
            .newer_generation
            .fetch_max(generation, Ordering::Relaxed)
            < generation
        {
            self.input_changed();
        }
    }

    /// The highest generation reported by [`Hub::newer_generation_seen`] (0: none).
    pub fn newer_generation_floor(&self) -> u64 {
        self.newer_generation.load(Ordering::Relaxed)
    }

    /// Waits for [`Hub::input_changed`].
    pub async fn wait_input_changed(&self) {
        self.changed.notified().await;
    }

    /// The published config, as it changes.
    pub fn published(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.published.subscribe()
    }

    /// Declares that something delivers configs to gateways; until then every included part
    /// is [`Serving::AwaitingPush`].
    pub fn add_delivery(&self) {
        self.has_delivery.store(true, Ordering::Relaxed);
    }

    /// Waits until the first config has been built (reconcilers wait for it at start-up, so
    /// that they never act on an incomplete picture).
    pub async fn wait_built(&self) {
        let mut rx = self.built.subscribe();
        let _ = rx.wait_for(|b| *b).await;
    }

    /// The latest build.
    pub fn build(&self) -> Option<Arc<Build>> {
        self.read().build.clone()
    }

    /// The view of an S3Bucket and whether it is served.
    pub fn bucket(&self, key: &ObjKey) -> (Option<BucketView>, Serving) {
        let state = self.read();
        let view = state
            .build
            .as_ref()
            .and_then(|b| b.buckets.get(key))
            .cloned();
        let serving = serving(
            &state,
            self.delivery(),
            Kind::Bucket,
            key,
            view.as_ref().map(|v| &v.part),
        );
        (view, serving)
    }

    /// The view of an S3Credential and whether it is served.
    pub fn credential(&self, key: &ObjKey) -> (Option<CredentialView>, Serving) {
        let state = self.read();
        let view = state
            .build
            .as_ref()
            .and_then(|b| b.credentials.get(key))
            .cloned();
        let serving = serving(
            &state,
            self.delivery(),
            Kind::Credential,
            key,
            view.as_ref().map(|v| &v.part),
        );
        (view, serving)
    }

    /// Installs a build and the generation of the config published for it (with `published`
    /// set when that config is new). Returns the resources whose view or serving state changed.
    pub fn install(
        &self,
        build: Build,
        generation: u64,
        published: Option<Published>,
    ) -> Vec<(Kind, ObjKey)> {
        let changed = self.update(|state| {
            let mut since = HashMap::new();
            let parts = build
                .buckets
                .iter()
                .map(|(k, v)| (Kind::Bucket, k, &v.part))
                .chain(
                    build
                        .credentials
                        .iter()
                        .map(|(k, v)| (Kind::Credential, k, &v.part)),
                );
            for (kind, key, part) in parts {
                if let Part::Included { hash } = part {
                    let id = (kind, key.clone());
                    let first = match state.since.get(&id) {
                        Some((h, g)) if h == hash => *g,
                        _ => generation,
                    };
                    since.insert(id, (hash.clone(), first));
                }
            }
            state.since = since;
            state.build = Some(Arc::new(build));
        });
        if let Some(p) = published {
            self.published.send_replace(Some(Arc::new(p)));
        }
        self.built.send_replace(true);
        changed
    }

    /// Records that every gateway holds config `generation` (or a later one). Returns the
    /// resources whose serving state changed.
    pub fn delivered(&self, generation: u64) -> Vec<(Kind, ObjKey)> {
        self.update(|state| {
            state.delivered = Some(state.delivered.map_or(generation, |d| d.max(generation)));
        })
    }

    /// Records how many gateway pods there are and how many hold the published config (zero
    /// pods make every included part [`Serving::NoGateways`]). Returns the resources whose
    /// serving state changed.
    pub fn gateways(&self, pods: usize, in_sync: usize) -> Vec<(Kind, ObjKey)> {
        self.update(|state| state.gateways = Some(Gateways { pods, in_sync }))
    }

    /// The last [`Hub::gateways`] report (none without a push).
    pub fn gateway_pods(&self) -> Option<Gateways> {
        self.read().gateways
    }

    fn delivery(&self) -> bool {
        self.has_delivery.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` and returns the resources whose (view, serving) differs afterwards.
    fn update(&self, f: impl FnOnce(&mut State)) -> Vec<(Kind, ObjKey)> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        let before = snapshot(&state, self.delivery());
        f(&mut state);
        let after = snapshot(&state, self.delivery());
        let mut changed: Vec<(Kind, ObjKey)> = after
            .iter()
            .filter(|(id, now)| before.get(*id) != Some(*now))
            .map(|(id, _)| id.clone())
            .collect();
        changed.extend(before.into_keys().filter(|id| !after.contains_key(id)));
        changed
    }
}

/// A resource's view, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum View {
    Bucket(BucketView),
    Credential(CredentialView),
}

/// Everything a resource's status takes from the hub, per resource.
type Snapshot = HashMap<(Kind, ObjKey), (View, Serving)>;

fn snapshot(state: &State, delivery: bool) -> Snapshot {
    let Some(build) = &state.build else {
        return HashMap::new();
    };
    let buckets = build.buckets.iter().map(|(k, v)| {
        (
            (Kind::Bucket, k.clone()),
            (
                View::Bucket(v.clone()),
                serving(state, delivery, Kind::Bucket, k, Some(&v.part)),
            ),
        )
    });
    let credentials = build.credentials.iter().map(|(k, v)| {
        (
            (Kind::Credential, k.clone()),
            (
                View::Credential(v.clone()),
                serving(state, delivery, Kind::Credential, k, Some(&v.part)),
            ),
        )
    });
    buckets.chain(credentials).collect()
}

fn serving(
    state: &State,
    delivery: bool,
    kind: Kind,
    key: &ObjKey,
    part: Option<&Part>,
) -> Serving {
    match part {
        None => Serving::Unknown,
        Some(Part::Excluded { reason, message }) => Serving::Excluded {
            reason,
            message: message.clone(),
        },
        Some(Part::Included { .. }) => {
            let Some((_, generation)) = state.since.get(&(kind, key.clone())) else {
                return Serving::Unknown;
            };
            let generation = *generation;
            match state.delivered {
                _ if !delivery => Serving::AwaitingPush { generation },
                _ if state.gateways.is_some_and(|g| g.pods == 0) => {
                    Serving::NoGateways { generation }
                }
                Some(d) if d >= generation => Serving::Served { generation },
                _ => Serving::Delivering { generation },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reasons;

    fn build(parts: &[(&str, Part)]) -> Build {
        Build {
            config: GatewayConfig::default(),
            problems: vec![],
            buckets: parts
                .iter()
                .map(|(n, p)| {
                    (
                        ObjKey::new("ns", n),
                        BucketView {
                            conflict: None,
                            part: p.clone(),
                        },
                    )
                })
                .collect(),
            credentials: HashMap::new(),
            next_expiry: None,
        }
    }

    fn included(hash: &str) -> Part {
        Part::Included { hash: hash.into() }
    }

    fn published(generation: u64) -> Option<Published> {
        Some(Published {
            generation,
            hash: format!("h{generation}"),
            config: Arc::new(GatewayConfig::default()),
        })
    }

    #[test]
    fn serving_follows_delivery_and_unchanged_parts_keep_their_generation() {
        let hub = Hub::default();
        let a = ObjKey::new("ns", "a");
        let b = ObjKey::new("ns", "b");
        assert_eq!(hub.bucket(&a).1, Serving::Unknown);
        let changed = hub.install(build(&[("a", included("1"))]), 1, published(1));
        assert_eq!(changed, vec![(Kind::Bucket, a.clone())]);
        assert_eq!(hub.bucket(&a).1, Serving::AwaitingPush { generation: 1 });
        assert_eq!(hub.published().borrow().as_ref().unwrap().generation, 1);

        hub.add_delivery();
        assert_eq!(hub.bucket(&a).1, Serving::Delivering { generation: 1 });
        assert_eq!(hub.delivered(1), vec![(Kind::Bucket, a.clone())]);
        assert_eq!(hub.bucket(&a).1, Serving::Served { generation: 1 });

        // Generation 2 adds b; a's part is unchanged, so a stays served and is not kicked.
        let changed = hub.install(
            build(&[("a", included("1")), ("b", included("2"))]),
            2,
            published(2),
        );
        assert_eq!(changed, vec![(Kind::Bucket, b.clone())]);
        assert_eq!(hub.bucket(&a).1, Serving::Served { generation: 1 });
        assert_eq!(hub.bucket(&b).1, Serving::Delivering { generation: 2 });
        assert_eq!(hub.delivered(2), vec![(Kind::Bucket, b.clone())]);

        // a changes in generation 3 and is delivering again; a stale delivery report of 2
        // changes nothing.
        hub.install(
            build(&[("a", included("1b")), ("b", included("2"))]),
            3,
            published(3),
        );
        assert_eq!(hub.bucket(&a).1, Serving::Delivering { generation: 3 });
        assert!(hub.delivered(2).is_empty());
        assert_eq!(hub.bucket(&b).1, Serving::Served { generation: 2 });

        // No gateway pod: nobody serves anything; pods back, what they held is served again.
        assert_eq!(hub.gateways(0, 0).len(), 2);
        assert_eq!(hub.bucket(&b).1, Serving::NoGateways { generation: 2 });
        assert_eq!(hub.gateways(2, 1).len(), 2);
        assert_eq!(hub.bucket(&b).1, Serving::Served { generation: 2 });
        assert_eq!(
            hub.gateway_pods(),
            Some(Gateways {
                pods: 2,
                in_sync: 1
            })
        );

        // A part left out, and a resource gone, are changes too.
        let out = Part::Excluded {
            reason: reasons::NAME_CONFLICT,
            message: "taken".into(),
        };
        let mut changed = hub.install(build(&[("a", out)]), 4, published(4));
        changed.sort_by(|x, y| x.1.cmp(&y.1));
        assert_eq!(
            changed,
            vec![(Kind::Bucket, a.clone()), (Kind::Bucket, b.clone())]
        );
        assert!(matches!(
            hub.bucket(&a).1,
            Serving::Excluded {
                reason: reasons::NAME_CONFLICT,
                ..
            }
        ));
        assert_eq!(hub.bucket(&b), (None, Serving::Unknown));
    }

    #[tokio::test]
    async fn wait_built_returns_once_something_is_installed() {
        let hub = Arc::new(Hub::default());
        let waiter = tokio::spawn({
            let hub = hub.clone();
            async move { hub.wait_built().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        hub.install(build(&[]), 0, None);
        waiter.await.unwrap();
    }
}
