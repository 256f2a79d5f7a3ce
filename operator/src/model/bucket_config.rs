//! How an `S3Bucket` spec maps onto its object-store stream's config, and which differences
//! NATS can apply to an existing bucket.
//!
//! | spec            | stream config                                 |
//! |-----------------|-----------------------------------------------|
//! | description     | `description`                                 |
//! | storage         | `storage` (NATS cannot change it)             |
//! | replicas        | `num_replicas`                                |
//! | maxBytes        | `max_bytes` (unset: -1, no limit)             |
//! | ttl             | `max_age` (unset: 0, kept forever)            |
//! | compression     | `compression` (`s2` or `none`)                |
//! | placement       | `placement`                                   |
//! | metadata        | `metadata`, next to the keys below            |
//! | (none)          | `allow_atomic`: on, on servers that have it   |
//!
//! Atomic batches let the gateway write a small object's chunk and metadata in one publish
//! on replicated buckets; streams made before jets3 asked for them (or by other tools) get
//! them turned on, except mirrors and async-persist streams, where NATS has none.
//!
//! `maxObjectBytes` has no stream counterpart (objects are chunked, so the stream's message
//! size limit does not bound them): the gateway enforces it from the `GatewayConfig`.
//!
//! Stream metadata keys starting with `_nats.` (the server's own) and `jets3.` (the
//! gateway's bucket tagging and CORS, and [`OWNER_KEY`]) are not the spec's: they are kept as
//! they are, except the owner key, which the operator sets.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::stream::{self, Compression, PersistenceMode, Placement, StorageType};
use jets3_crds::k8s::{S3Bucket, StorageType as SpecStorage};

/// Stream metadata key naming the S3Bucket (`<namespace>/<name>`) the bucket belongs to.
pub const OWNER_KEY: &str = "jets3.owner";

/// Whether a stream metadata key is kept out of the spec's `metadata`.
fn reserved(key: &str) -> bool {
    key.starts_with("_nats.") || key.starts_with("jets3.")
}

/// The `<namespace>/<name>` an owned bucket records in [`OWNER_KEY`].
pub fn owner_id(bucket: &S3Bucket) -> String {
    format!(
        "{}/{}",
        bucket.metadata.namespace.as_deref().unwrap_or_default(),
        bucket.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The owner recorded on a stream, if any.
pub fn owner_of(config: &stream::Config) -> Option<&str> {
    config.metadata.get(OWNER_KEY).map(String::as_str)
}

/// The stream settings an `S3Bucket` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub storage: StorageType,
    pub replicas: usize,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub compression: bool,
    pub placement: Option<Placement>,
    pub description: Option<String>,
    /// The spec's metadata plus [`OWNER_KEY`].
    pub metadata: HashMap<String, String>,
    /// Atomic batches on (NATS 2.12 and later); never turned off.
    pub atomic: bool,
}

impl Desired {
    /// What `bucket`'s spec asks for, on a NATS cluster of `cluster_size` servers.
    pub fn of(bucket: &S3Bucket, cluster_size: usize) -> Desired {
        let spec = &bucket.spec;
        let mut metadata: HashMap<String, String> = spec
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.insert(OWNER_KEY.to_string(), owner_id(bucket));
        Desired {
            storage: match spec.storage {
                SpecStorage::File => StorageType::File,
                SpecStorage::Memory => StorageType::Memory,
            },
            replicas: match spec.replicas {
                Some(r) => r.clamp(1, 5) as usize,
                None => cluster_size.clamp(1, 3),
            },
            max_bytes: spec.max_bytes.unwrap_or(-1),
            max_age: spec.ttl.map(Duration::from).unwrap_or_default(),
            compression: spec.compression,
            placement: spec.placement.as_ref().map(|p| Placement {
                cluster: p.cluster.clone(),
                tags: p.tags.clone(),
            }),
            description: spec.description.clone(),
            metadata,
            atomic: false,
        }
    }

    /// These settings with atomic batches asked for when the servers have them.
    pub fn with_atomic(mut self, servers_have_them: bool) -> Desired {
        self.atomic = servers_have_them;
        self
    }

    /// Whether atomic batches are asked for and `actual` can have them.
    fn wants_atomic(&self, actual: &stream::Config) -> bool {
        self.atomic
            && actual.mirror.is_none()
            && actual.persist_mode != Some(PersistenceMode::Async)
    }

    /// Whether the stream's storage is the one asked for (NATS cannot change it).
    pub fn storage_matches(&self, actual: &stream::Config) -> bool {
        actual.storage == self.storage
    }

    /// The spec fields whose value differs on the stream, by their spec names, and "atomic
    /// batches" while those are off where they were asked for.
    pub fn differences(&self, actual: &stream::Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if actual.num_replicas.max(1) != self.replicas {
            out.push("replicas");
        }
        if normalize_limit(actual.max_bytes) != self.max_bytes {
            out.push("maxBytes");
        }
        if actual.max_age != self.max_age {
            out.push("ttl");
        }
        if matches!(actual.compression, Some(Compression::S2)) != self.compression {
            out.push("compression");
        }
        if normalize_placement(&actual.placement) != normalize_placement(&self.placement) {
            out.push("placement");
        }
        if actual.description.as_deref().filter(|d| !d.is_empty()) != self.description.as_deref() {
            out.push("description");
        }
        if actual.metadata.get(OWNER_KEY) != self.metadata.get(OWNER_KEY) {
            out.push("owner");
        }
        let theirs: HashMap<&String, &String> = actual
            .metadata
            .iter()
            .filter(|(k, _)| !reserved(k))
            .collect();
        let ours: HashMap<&String, &String> =
            self.metadata.iter().filter(|(k, _)| !reserved(k)).collect();
        if theirs != ours {
            out.push("metadata");
        }
        if self.wants_atomic(actual) && !actual.allow_atomic_publish {
            out.push("atomic batches");
        }
        out
    }

    /// `config` with these settings applied; the reserved metadata keys on it stay, except
    /// the owner key.
    pub fn apply(&self, mut config: stream::Config) -> stream::Config {
        config.storage = self.storage;
        config.num_replicas = self.replicas;
        config.max_bytes = self.max_bytes;
        config.max_age = self.max_age;
        config.compression = Some(if self.compression {
            Compression::S2
        } else {
            Compression::None
        });
        config.placement = self.placement.clone();
        config.description = self.description.clone();
        config
            .metadata
            .retain(|k, _| reserved(k) && k.as_str() != OWNER_KEY);
        config.metadata.extend(self.metadata.clone());
        if self.wants_atomic(&config) {
            config.allow_atomic_publish = true;
        }
        config
    }
}

fn normalize_limit(v: i64) -> i64 {
    if v <= 0 {
        -1
    } else {
        v
    }
}

fn normalize_placement(p: &Option<Placement>) -> Option<(Option<&str>, Vec<&str>)> {
    let p = p.as_ref()?;
    let cluster = p.cluster.as_deref().filter(|c| !c.is_empty());
    if cluster.is_none() && p.tags.is_empty() {
        return None;
    }
    let mut tags: Vec<&str> = p.tags.iter().map(String::as_str).collect();
    tags.sort_unstable();
    Some((cluster, tags))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jets3_crds::k8s::S3BucketSpec;
    use jets3_nats::names::object_store_stream;

    /// An S3Bucket `team-a/media` with this spec.
    pub(crate) fn bucket(spec: serde_json::Value) -> S3Bucket {
        let spec: S3BucketSpec = serde_json::from_value(spec).unwrap();
        let mut b = S3Bucket::new("media", spec);
        b.metadata.namespace = Some("team-a".into());
        b
    }

    #[test]
    fn replicas_default_to_the_cluster_size_at_most_three() {
        let unset = bucket(serde_json::json!({}));
        assert_eq!(Desired::of(&unset, 1).replicas, 1);
        assert_eq!(Desired::of(&unset, 3).replicas, 3);
        assert_eq!(Desired::of(&unset, 5).replicas, 3);
        let two = bucket(serde_json::json!({"replicas": 2}));
        assert_eq!(Desired::of(&two, 5).replicas, 2);
        assert_eq!(
            Desired::of(&two, 1).replicas,
            2,
            "what the spec says, NATS decides"
        );
    }

    #[test]
    fn maps_every_field() {
        let b = bucket(serde_json::json!({
            "description": "pics", "storage": "memory", "replicas": 3, "maxBytes": 1000,
            "ttl": "1h", "compression": true, "placement": {"cluster": "east", "tags": ["ssd"]},
            "metadata": {"team": "media"}
        }));
        let d = Desired::of(&b, 1);
        assert_eq!(d.storage, StorageType::Memory);
        assert_eq!(d.replicas, 3);
        assert_eq!(d.max_bytes, 1000);
        assert_eq!(d.max_age, Duration::from_secs(3600));
        assert!(d.compression);
        assert_eq!(
            d.placement,
            Some(Placement {
                cluster: Some("east".into()),
                tags: vec!["ssd".into()]
            })
        );
        assert_eq!(d.description.as_deref(), Some("pics"));
        assert_eq!(d.metadata["team"], "media");
        assert_eq!(d.metadata[OWNER_KEY], "team-a/media");
        let config = d.apply(object_store_stream("media"));
        assert_eq!(config.name, "OBJ_media");
        assert_eq!(config.compression, Some(Compression::S2));
        assert!(d.differences(&config).is_empty());
        assert!(d.storage_matches(&config));
    }

    #[test]
    fn defaults_mean_no_limits() {
        let d = Desired::of(&bucket(serde_json::json!({})), 1);
        assert_eq!(d.storage, StorageType::File);
        assert_eq!(d.replicas, 1);
        assert_eq!(d.max_bytes, -1);
        assert_eq!(d.max_age, Duration::ZERO);
        assert!(!d.compression && d.placement.is_none() && d.description.is_none());
        // What the server answers for a stream created without limits.
        let mut stored = d.apply(object_store_stream("media"));
        stored.max_bytes = -1;
        stored.placement = Some(Placement::default());
        stored.description = Some(String::new());
        stored.metadata.insert("_nats.level".into(), "1".into());
        assert!(
            d.differences(&stored).is_empty(),
            "{:?}",
            d.differences(&stored)
        );
    }

    #[test]
    fn reports_each_difference_by_spec_name() {
        let d = Desired::of(&bucket(serde_json::json!({"metadata": {"a": "1"}})), 1);
        let base = d.apply(object_store_stream("media"));
        type Change = Box<dyn Fn(&mut stream::Config)>;
        let cases: Vec<(&str, Change)> = vec![
            ("replicas", Box::new(|c| c.num_replicas = 3)),
            ("maxBytes", Box::new(|c| c.max_bytes = 5)),
            ("ttl", Box::new(|c| c.max_age = Duration::from_secs(1))),
            (
                "compression",
                Box::new(|c| c.compression = Some(Compression::S2)),
            ),
            (
                "placement",
                Box::new(|c| {
                    c.placement = Some(Placement {
                        cluster: None,
                        tags: vec!["x".into()],
                    })
                }),
            ),
            (
                "description",
                Box::new(|c| c.description = Some("x".into())),
            ),
            (
                "owner",
                Box::new(|c| {
                    c.metadata.insert(OWNER_KEY.into(), "other/b".into());
                }),
            ),
            (
                "metadata",
                Box::new(|c| {
                    c.metadata.insert("a".into(), "2".into());
                }),
            ),
        ];
        for (field, change) in cases {
            let mut actual = base.clone();
            change(&mut actual);
            assert_eq!(d.differences(&actual), vec![field]);
            assert!(d.differences(&d.apply(actual)).is_empty(), "{field}");
        }
    }

    #[test]
    fn apply_keeps_the_gateways_and_servers_metadata_and_drops_others() {
        let d = Desired::of(&bucket(serde_json::json!({"metadata": {"team": "x"}})), 1);
        let mut actual = object_store_stream("media");
        actual.metadata = HashMap::from([
            ("jets3.cors".to_string(), "[...]".to_string()),
            ("_nats.ver".to_string(), "2.15.1".to_string()),
            (OWNER_KEY.to_string(), "old/owner".to_string()),
            ("native".to_string(), "set by a NATS user".to_string()),
        ]);
        let applied = d.apply(actual);
        assert_eq!(applied.metadata["jets3.cors"], "[...]");
        assert_eq!(applied.metadata["_nats.ver"], "2.15.1");
        assert_eq!(applied.metadata[OWNER_KEY], "team-a/media");
        assert_eq!(applied.metadata["team"], "x");
        assert!(!applied.metadata.contains_key("native"));
    }

    #[test]
    fn atomic_batches_are_turned_on_where_the_stream_can_have_them() {
        let d = Desired::of(&bucket(serde_json::json!({})), 1).with_atomic(true);
        // A stream from before jets3 asked for them.
        let mut before = d.apply(object_store_stream("media"));
        before.allow_atomic_publish = false;
        assert_eq!(d.differences(&before), vec!["atomic batches"]);
        let after = d.apply(before.clone());
        assert!(after.allow_atomic_publish);
        assert!(d.differences(&after).is_empty());
        // A server without them, a mirror, an async-persist stream: left as they are.
        let old_server = Desired::of(&bucket(serde_json::json!({})), 1);
        assert!(old_server.differences(&before).is_empty());
        assert!(!old_server.apply(before.clone()).allow_atomic_publish);
        let mut mirror = before.clone();
        mirror.mirror = Some(stream::Source {
            name: "elsewhere".into(),
            ..Default::default()
        });
        let mut async_persist = before.clone();
        async_persist.persist_mode = Some(PersistenceMode::Async);
        for other in [mirror, async_persist] {
            assert!(d.differences(&other).is_empty());
            assert!(!d.apply(other).allow_atomic_publish);
        }
    }

    #[test]
    fn storage_mismatch_is_detected() {
        let d = Desired::of(&bucket(serde_json::json!({"storage": "file"})), 1);
        let mut actual = d.apply(object_store_stream("media"));
        actual.storage = StorageType::Memory;
        assert!(!d.storage_matches(&actual));
    }
}
