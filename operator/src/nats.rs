//! The operator's NATS side: the connection (servers and auth from flags) and the JetStream
//! calls on object-store buckets (create, inspect, update, delete, count objects).
//!
//! An object-store bucket is a stream laid out as async-nats and the NATS CLI create it
//! ([`jets3_nats::names::object_store_stream`]). The operator creates that stream itself,
//! because the object-store create call cannot set stream metadata, where the operator
//! records which S3Bucket owns the bucket.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{
    CreateStreamError, CreateStreamErrorKind, GetStreamErrorKind,
};
use async_nats::jetstream::{self, Context, ErrorCode};
use async_nats::jetstream::{kv, stream};
use async_nats::Client;
use futures::StreamExt;
use jets3_nats::config_lock::{holder, lock_until, locks_kv, ConfigLock, LOCKS_KV, WAIT};
use jets3_nats::names::stream_name;
use jets3_nats::NatsSettings;
use tokio::sync::{broadcast, OnceCell};

use crate::Error;

/// The JetStream connection, shared by every reconcile.
#[derive(Clone)]
pub struct Nats {
    client: Client,
    js: Context,
    reconnects: broadcast::Sender<()>,
    /// The locks' KV, once opened (see [`jets3_nats::config_lock`]).
    locks: Arc<OnceCell<kv::Store>>,
}

impl Nats {
    /// Connects, retrying forever in the background when NATS is not up yet (the operator
    /// reports NATS problems on the resources' conditions rather than refusing to start).
    pub async fn connect(settings: &NatsSettings) -> Result<Nats, Error> {
        let (reconnects, _) = broadcast::channel(4);
        let notify = reconnects.clone();
        let options = jets3_nats::options("jets3-operator")
            .request_timeout(Some(Duration::from_secs(10)))
            .connection_timeout(Duration::from_secs(3))
            .event_callback(move |event| {
                let notify = notify.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            let _ = notify.send(());
                        }
                        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                        other => tracing::info!(event = %other, "nats event"),
                    }
                }
            });
        let client = jets3_nats::connect(settings, options)
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        let js = jetstream::new(client.clone());
        Ok(Nats {
            client,
            js,
            reconnects,
            locks: Arc::default(),
        })
    }

    /// Whether the connection is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Servers of the NATS cluster, as far as the server's INFO tells: at least 3 when the
    /// server belongs to a cluster, 1 on a single server. Not the advertised URLs alone: the
    /// client keeps the INFO of its connect (async-nats ignores later ones), and an operator
    /// that connected while the cluster's routes were still forming saw one server and made a
    /// bucket with one replica on a three-server cluster. A stream of three replicas that
    /// NATS cannot place yet fails its reconcile, which is tried again until the peers are
    /// there.
    pub fn cluster_size(&self) -> usize {
        let info = self.client.server_info();
        let advertised = info.connect_urls.len().max(1);
        if info.cluster.is_some() {
            advertised.max(3)
        } else {
            advertised
        }
    }

    /// Whether the server takes atomic batches (NATS 2.12 and later; older servers drop the
    /// stream setting that allows them).
    pub fn has_atomic_batches(&self) -> bool {
        semver::Version::parse(&self.client.server_info().version)
            .is_ok_and(|v| (v.major, v.minor) >= (2, 12))
    }

    /// A message each time the connection is (re-)established.
    pub fn reconnects(&self) -> broadcast::Receiver<()> {
        self.reconnects.subscribe()
    }

    /// Fails at once while disconnected, instead of waiting for the request timeout.
    fn check_connected(&self) -> Result<(), Error> {
        if self.connected() {
            Ok(())
        } else {
            Err(Error::Nats("not connected to NATS".into()))
        }
    }

    /// The bucket's stream info, or `None` when the bucket does not exist.
    pub async fn bucket(&self, bucket: &str) -> Result<Option<stream::Info>, Error> {
        self.check_connected()?;
        match self.js.get_stream(stream_name(bucket)).await {
            Ok(s) => Ok(Some(s.cached_info().clone())),
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
                Ok(None)
            }
            Err(e) => Err(Error::Nats(e.to_string())),
        }
    }

    /// Creates the bucket's stream with `config` (see
    /// [`jets3_nats::names::object_store_stream`]).
    pub async fn create_bucket(&self, config: stream::Config) -> Result<stream::Info, Error> {
        self.check_connected()?;
        let mut s = self
            .js
            .create_stream(config)
            .await
            .map_err(refused_or_down)?;
        s.info()
            .await
            .cloned()
            .map_err(|e| Error::Nats(e.to_string()))
    }

    /// Replaces the bucket's stream config with what `desired` makes of the current one,
    /// holding the bucket's config lock from reading it to writing it back, so that a
    /// setting a gateway changes at once (a bucket policy, DeleteBucket's fence) stays.
    /// NATS refuses changes it cannot make.
    pub async fn update_bucket(
        &self,
        bucket: &str,
        desired: impl FnOnce(stream::Config) -> stream::Config,
    ) -> Result<stream::Info, Error> {
        self.check_connected()?;
        let _lock = self.lock_config(bucket).await?;
        let mut s = self
            .js
            .get_stream(stream_name(bucket))
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        let current = s
            .info()
            .await
            .map_err(|e| Error::Nats(e.to_string()))?
            .config
            .clone();
        self.js
            .update_stream(desired(current))
            .await
            .map_err(refused_or_down)
    }

    /// Takes the config lock of `bucket`, waiting for its holder to release it.
    async fn lock_config(&self, bucket: &str) -> Result<ConfigLock, Error> {
        let kv = self
            .locks
            .get_or_try_init(|| async {
                if let Ok(kv) = self.js.get_key_value(LOCKS_KV).await {
                    return Ok(kv);
                }
                match self.js.create_key_value(locks_kv()).await {
                    Ok(kv) => Ok(kv),
                    // A gateway made it meanwhile.
                    Err(_) => self
                        .js
                        .get_key_value(LOCKS_KV)
                        .await
                        .map_err(|e| Error::Nats(e.to_string())),
                }
            })
            .await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        lock_until(kv, bucket, &holder(), deadline, false)
            .await
            .map_err(|e| Error::Nats(e.to_string()))
    }

    /// Deletes the bucket and every object in it; `false` when it did not exist.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<bool, Error> {
        if self.bucket(bucket).await?.is_none() {
            return Ok(false);
        }
        match self.js.delete_stream(stream_name(bucket)).await {
            Ok(_) => Ok(true),
            Err(_) if self.bucket(bucket).await?.is_none() => Ok(false),
            Err(e) => Err(Error::Nats(e.to_string())),
        }
    }

    /// Counts the objects in the bucket (reads every object's metadata message once).
    pub async fn count_objects(&self, bucket: &str) -> Result<u64, Error> {
        self.check_connected()?;
        let store = self
            .js
            .get_object_store(bucket)
            .await
            .map_err(|e| Error::Nats(e.to_string()))?;
        let mut list = store.list().await.map_err(|e| Error::Nats(e.to_string()))?;
        let mut count = 0;
        while let Some(item) = list.next().await {
            item.map_err(|e| Error::Nats(e.to_string()))?;
            count += 1;
        }
        Ok(count)
    }
}

/// [`Error::NatsRefused`] when JetStream answered with an error, else [`Error::Nats`].
fn refused_or_down(e: CreateStreamError) -> Error {
    match e.kind() {
        CreateStreamErrorKind::JetStream(j) => Error::NatsRefused(j.to_string()),
        _ => Error::Nats(e.to_string()),
    }
}
