//! Everything that touches NATS: buckets as object-store streams, objects as chunk and
//! metadata messages, versions, the listing index, multipart upload state and the
//! collector that keeps each stream holding exactly its live data.
//!
//! Objects are stored exactly as the NATS object store lays them out, so native clients
//! read what the gateway writes and the other way round.
//!
//! # Version lifecycle
//!
//! Many gateways share one NATS cluster; any of them may be killed between two NATS calls,
//! and any request future may be dropped at any await. The rules that keep every
//! acknowledged byte and every started read whole:
//!
//! 1. **One commit point.** A new version's chunks (`$O.<b>.C.<nuid>`) are written and
//!    acknowledged first. Publishing its metadata on `$O.<b>.M.<key>`, as a compare-and-set
//!    on the key's last metadata sequence, is the one step that makes it current. Before
//!    that publish is sent, a failed write purges its own chunks; once it may have been
//!    sent, nothing on a request path purges them: an unacknowledged version left behind
//!    (dropped future, crash) is an orphan the collector removes.
//! 2. **Retire, never purge inline.** A version that a commit replaces or a delete hides
//!    (without versioning) is *retired*: a record in `jets3_gc` notes when
//!    ([`lifecycle`]). The collector purges its chunks once the grace period
//!    (`collector.graceSeconds`, measured on the clock that stamps the records, so a
//!    gateway whose clock is off never purges early) has passed and no read registered in
//!    `jets3_reads` holds it. A read that still has chunks to fetch after a quarter of the grace period
//!    registers there and keeps refreshing, so a GET that started returns the version it
//!    started on, whole, on any gateway, however long it takes. What lingers after an
//!    overwrite is bounded by the grace period plus one collector interval (metric
//!    `jets3_collector_pending_bytes`).
//! 3. **Orphans.** Chunks that no current version, noncurrent version, upload part or
//!    retire record references, and whose last chunk is older than
//!    `collector.orphanAfterSeconds`, are retired by the collector's scan (and purged after
//!    the grace period like any retired version). A writer never pauses half that long
//!    between two chunks, or between its last chunk and its commit, so live writes are
//!    never taken for orphans: no attempt to publish a commit runs past that point, even
//!    through a leader election (the write fails with 503 instead).
//! 4. **Atomic conditions.** Conditional writes and deletes check their condition on the
//!    version a compare-and-set then proves current. DeleteBucket first *fences* the stream
//!    (`max_msg_size` 1: every publish is refused, on every gateway, atomically on the
//!    server), then checks that the bucket is empty, as far as the stream leader holds, and
//!    deletes it, or lifts the fence.
//! 5. **Untrusted metadata.** Everything read from NATS is validated ([`meta::Record`]).
//!
//! Versioning ([`versions`]) keeps replaced versions on `$O.<b>.V.<key>.<versionId>`
//! instead of retiring them.

mod changes;
mod collector;
mod compaction;
pub mod completion;
mod config_lock;
mod direct;
mod index;
mod internal;
pub mod lifecycle;
mod md5_lanes;
pub mod meta;
pub mod new_keys;
mod objects;
mod reader;
mod scan;
mod small_reads;
mod subjects;
mod uploads;
pub mod versions;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType, Context};
use async_nats::Client;
use futures::StreamExt;
use jets3_nats::names::{self, stream_name};
use time::OffsetDateTime;

use crate::config::settings::{CacheSettings, CollectorSettings, NatsSettings};

use internal::InternalReplicas;
mod error;

pub use changes::{Change, Changes};
pub use collector::{Collector, CollectorStats, SnapshotPass};
pub use error::{StoreError, StoreResult, Unmet};
pub use index::{Index, KeyState, Need, SnapshotStats, Source, VersionEntry, View};
pub use meta::{decode_tags, encode_tags, Marker, ObjectMeta, Record, CHUNK_SIZE};
pub use objects::{Bucket, DeleteOutcome, Expect, Finished, NewObject, Prior};
pub use uploads::{Observer, PartInfo, UploadInfo};
pub use versions::Versioning;
pub use writer::Written;

/// Body bytes one object read holds at most (a Direct Get batch of chunks).
pub const READ_BUFFER_BYTES: usize = reader::CLIENT_BATCH * CHUNK_SIZE;
/// Body bytes one object write holds at most (the unacknowledged chunks and one filling).
pub const WRITE_BUFFER_BYTES: usize = (writer::ACK_WINDOW + 1) * CHUNK_SIZE;

use lifecycle::{Lifecycle, Timing};

/// How long one request waits for a bucket's stream to have a leader again (a NATS cluster
/// election takes a few seconds) before it fails with 503.
const FAILOVER_BUDGET: Duration = Duration::from_secs(10);
/// One attempt of a metadata read or write during that time.
const ATTEMPT: Duration = Duration::from_secs(2);
/// The pause between attempts.
const ATTEMPT_PAUSE: Duration = Duration::from_millis(200);

/// The longest a check for deleted KV buckets of jets3's may hold up a request.
const RESTORE_WAIT: Duration = Duration::from_secs(1);

/// How long a request waits for the client to reconnect (to another server of a cluster).
const RECONNECT_WAIT: Duration = Duration::from_secs(2);

/// Stream metadata key of the access key that created a bucket through the S3 API.
const OWNER_KEY: &str = "jets3.owner";

/// Stream metadata key of a fence: `<unix ms>,<max_msg_size before>`.
const CLOSING_KEY: &str = "jets3.closing";

/// A NATS failure, as the store met it.
#[derive(Debug)]
pub enum NatsError {
    /// The bucket's stream does not exist (NATS said so).
    NoStream,
    /// Nothing answered a request to the bucket's stream: it does not exist, or it is
    /// between leaders (a cluster election). [`Store::settle`] tells which.
    NoResponders,
    /// A conditional write lost: the object changed in between.
    WrongLastSequence,
    /// The bucket is fenced: it is being deleted.
    Closing,
    /// NATS did not answer in time (a leader election, a slow or frozen server).
    TimedOut,
    /// The bucket's `max_bytes`, or the server's (or account's) JetStream storage, is full;
    /// NATS's words.
    StorageFull(Full, String),
    /// NATS took no atomic batch, and stored nothing of it: atomic publishes are off for
    /// the stream, too many batches are in flight, or the batch's first message was lost (a
    /// leader change between its two messages).
    BatchRefused,
    /// Anything else: unreachable, timed out, refused.
    Other(String),
}

/// What has no room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The bucket holds its `max_bytes`.
    Bucket,
    /// The server's or the account's JetStream storage.
    Server,
}

/// JetStream's "message size exceeds maximum allowed": what a fenced stream answers.
const MSG_TOO_BIG: u64 = 10054;
/// JetStream's "storing the message failed", whose description says why: "maximum bytes
/// exceeded" when the stream holds its `max_bytes`.
const STORE_FAILED: u64 = 10077;
/// JetStream's answers when the account's or the server's storage has no room: account
/// resource limits, insufficient resources, memory, storage.
const NO_ROOM: [u64; 4] = [10002, 10023, 10028, 10047];
/// JetStream's "wrong last sequence" for a publish whose subject another proposal in flight
/// is writing (a replicated stream): a lost race, as the code async-nats knows.
const WRONG_LAST_SEQUENCE_IN_FLIGHT: u64 = 10164;
/// JetStream's answers to an atomic batch it did not take: atomic publish disabled, batch
/// incomplete, too many in flight.
const BATCH_REFUSED: [u64; 3] = [10174, 10176, 10210];

impl NatsError {
    fn publish(e: async_nats::jetstream::context::PublishError) -> Self {
        use async_nats::jetstream::context::PublishErrorKind as K;
        let answer = std::error::Error::source(&e)
            .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
        if let Some(answer) = answer {
            let text = answer.to_string();
            match answer.error_code().0 {
                WRONG_LAST_SEQUENCE_IN_FLIGHT => return NatsError::WrongLastSequence,
                c if BATCH_REFUSED.contains(&c) => return NatsError::BatchRefused,
                MSG_TOO_BIG => return NatsError::Closing,
                c if NO_ROOM.contains(&c) => return NatsError::StorageFull(Full::Server, text),
                STORE_FAILED if text.contains("maximum bytes exceeded") => {
                    return NatsError::StorageFull(Full::Bucket, text)
                }
                _ => {}
            }
        }
        match e.kind() {
            // async-nats reports a publish nothing answered as "stream not found": a stream
            // that is missing, or between leaders.
            K::StreamNotFound => NatsError::NoResponders,
            K::WrongLastSequence => NatsError::WrongLastSequence,
            K::TimedOut => NatsError::TimedOut,
            _ => {
                let text = e.to_string();
                if text.contains("no responders") {
                    NatsError::NoResponders
                } else {
                    NatsError::Other(text)
                }
            }
        }
    }

    /// A failed request to a stream (a KV bucket's publish, Direct Get or JetStream API
    /// request): what it met, somewhere in `e`'s sources.
    fn within(e: &(dyn std::error::Error + 'static)) -> Self {
        use async_nats::jetstream::context::{PublishError, PublishErrorKind as K};
        use async_nats::jetstream::context::{RequestError, RequestErrorKind as R};
        use async_nats::jetstream::stream::{DirectGetError, DirectGetErrorKind as D};
        let mut source = Some(e);
        while let Some(e) = source {
            if let Some(p) = e.downcast_ref::<PublishError>() {
                match p.kind() {
                    K::StreamNotFound => return NatsError::NoResponders,
                    K::TimedOut => return NatsError::TimedOut,
                    _ => {}
                }
            }
            if let Some(r) = e.downcast_ref::<RequestError>() {
                match r.kind() {
                    R::NoResponders => return NatsError::NoResponders,
                    R::TimedOut => return NatsError::TimedOut,
                    _ => {}
                }
            }
            if let Some(g) = e.downcast_ref::<DirectGetError>() {
                if matches!(g.kind(), D::ErrorResponse(c, _) if c == async_nats::StatusCode::NO_RESPONDERS)
                {
                    return NatsError::NoResponders;
                }
            }
            source = e.source();
        }
        NatsError::Other(e.to_string())
    }

    fn consumer(e: async_nats::jetstream::stream::ConsumerError) -> Self {
        let text = e.to_string();
        if text.contains("stream not found") {
            NatsError::NoStream
        } else {
            NatsError::Other(text)
        }
    }

    fn other(e: impl std::fmt::Display) -> Self {
        NatsError::Other(e.to_string())
    }

    /// A failure that a stream getting a leader again can end.
    fn transient(&self) -> bool {
        matches!(self, NatsError::NoResponders | NatsError::TimedOut)
    }

    /// This failure as a store error on bucket `bucket`.
    pub fn on(self, bucket: &str) -> StoreError {
        StoreError::Nats {
            bucket: bucket.to_string(),
            error: self,
        }
    }
}

/// A bucket as ListBuckets shows it.
#[derive(Debug, Clone)]
pub struct BucketInfo {
    pub nats: String,
    pub created: OffsetDateTime,
    /// Stream metadata (tags, CORS rules set through the S3 API).
    pub metadata: HashMap<String, String>,
}

impl BucketInfo {
    /// The access key that created the bucket through the S3 API (none for buckets the
    /// config declares or that were made another way).
    pub fn owner(&self) -> Option<&str> {
        self.metadata.get(OWNER_KEY).map(String::as_str)
    }
}

/// How to create a bucket.
#[derive(Debug, Clone)]
pub struct BucketOptions {
    pub memory: bool,
    pub replicas: usize,
}

/// Why DeleteBucket did not delete.
#[derive(Debug)]
pub enum DeleteBucketError {
    NotEmpty,
    Store(StoreError),
}

impl From<StoreError> for DeleteBucketError {
    fn from(e: StoreError) -> Self {
        DeleteBucketError::Store(e)
    }
}

/// How long the creation of a consumer that replays a whole bucket may take.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);

/// Counters of what the store met, for metrics.
#[derive(Default)]
pub struct StoreStats {
    /// Metadata messages refused as malformed.
    pub malformed: AtomicU64,
    /// What the listing snapshots did.
    pub snapshots: Arc<SnapshotStats>,
    /// Small reads served from memory, and not.
    pub small_reads: Arc<small_reads::SmallReadStats>,
    /// Blind writes that skipped the lookup of their key (see [`new_keys`]).
    pub new_key_guesses: Arc<new_keys::GuessStats>,
}

/// The connection to NATS and the cache of open buckets.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replicas of jets3's own KV buckets (see [`internal`]).
    internal_replicas: InternalReplicas,
    client: Client,
    js: Context,
    /// For consumers that replay a whole bucket: NATS takes seconds to create one over
    /// millions of subjects, longer than any request should wait.
    js_replay: Context,
    indexes: Mutex<HashMap<String, Arc<Index>>>,
    /// One index start at a time: requests that find none wait for it instead of each
    /// starting a replay.
    index_start: tokio::sync::Mutex<()>,
    snapshots: index::Snapshots,
    connects: Arc<AtomicU64>,
    /// Disconnects and dropped messages (slow consumer): gaps in subscriptions.
    interruptions: Arc<AtomicU64>,
    uploads: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
    lifecycle: Arc<Lifecycle>,
    /// The bytes of small objects read recently.
    small_reads: small_reads::SmallReads,
    versioning: versions::StateCache,
    new_keys: new_keys::NewKeys,
    stats: StoreStats,
    on_write: std::sync::OnceLock<WriteHook>,
}

/// Told of each write through a [`Store`] once it is over, whatever its outcome (a write
/// whose answer was lost may have landed): the NATS bucket, and the key (`None`: the whole
/// bucket).
pub type WriteHook = Box<dyn Fn(&str, Option<&str>) + Send + Sync>;

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

impl Store {
    /// Connects (retrying forever in the background if NATS is not up yet); listing indexes
    /// follow `cache` (snapshot pages' memory, largest replay).
    pub async fn connect(
        settings: &NatsSettings,
        collector: &CollectorSettings,
        cache: &CacheSettings,
    ) -> Result<Store, crate::Error> {
        let connects = Arc::new(AtomicU64::new(0));
        let interruptions = Arc::new(AtomicU64::new(0));
        let counter = connects.clone();
        let gaps = interruptions.clone();
        let options = jets3_nats::options("jets3-gateway")
            .request_timeout(Some(Duration::from_secs(5)))
            // A frozen or partitioned server keeps its socket open: PINGs find it in
            // seconds (two missed), and the client moves to another server of the cluster.
            .ping_interval(Duration::from_secs(2))
            .connection_timeout(Duration::from_secs(2))
            .event_callback(move |event| {
                let counter = counter.clone();
                let gaps = gaps.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            counter.fetch_add(1, Ordering::Relaxed);
                            tracing::info!("connected to NATS");
                        }
                        async_nats::Event::Disconnected => {
                            gaps.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("disconnected from NATS")
                        }
                        async_nats::Event::SlowConsumer(sid) => {
                            gaps.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(sid, "NATS dropped messages of a slow subscription")
                        }
                        other => tracing::info!(event = %other, "nats event"),
                    }
                }
            });
        let client = jets3_nats::connect(settings, options)
            .await
            .map_err(|e| crate::Error::Nats(e.to_string()))?;
        // Acks of chunk publishes: long enough for a busy server, short enough that a
        // write caught in a leader election fails soon after it (and the client retries).
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(3))
            .build(client.clone());
        let timing = Timing {
            grace: Duration::from_secs(collector.grace_seconds),
            orphan_after: Duration::from_secs(collector.orphan_after_seconds),
            completed: Duration::from_secs(collector.completed_upload_seconds),
        };
        let stats = StoreStats::default();
        let internal_replicas = InternalReplicas::default();
        let js_replay = jetstream::ContextBuilder::new()
            .timeout(REPLAY_TIMEOUT)
            .build(client.clone());
        let inner = Inner {
            lifecycle: Lifecycle::new(js.clone(), timing, internal_replicas.clone()),
            small_reads: small_reads::SmallReads::new(
                usize::try_from(cache.small_reads_bytes).unwrap_or(usize::MAX),
                stats.small_reads.clone(),
            ),
            client,
            js,
            js_replay,
            indexes: Mutex::new(HashMap::new()),
            index_start: tokio::sync::Mutex::new(()),
            snapshots: index::Snapshots::new(
                usize::try_from(cache.index_pages_bytes).unwrap_or(usize::MAX),
                stats.snapshots.clone(),
                collector.snapshot_interval().is_some(),
                // Buckets that get no snapshot are always replayed.
                match cache.replay_max_subjects {
                    0 => 0,
                    n => n.max(collector.snapshot_min_subjects),
                },
                internal_replicas.clone(),
            ),
            connects,
            interruptions,
            uploads: tokio::sync::OnceCell::new(),
            versioning: versions::StateCache::default(),
            new_keys: new_keys::NewKeys::new(stats.new_key_guesses.clone()),
            stats,
            on_write: std::sync::OnceLock::new(),
            internal_replicas,
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        Ok(store)
    }

    /// Raises jets3's own KV buckets to the replicas of the most replicated of `buckets`
    /// (NATS names; those that do not exist are skipped, and those counted before), never
    /// lowering them (see [`internal`]). The streams say how many replicas they have: a
    /// config may leave it to the operator.
    pub async fn raise_internal_replicas(
        &self,
        buckets: impl Iterator<Item = String>,
    ) -> StoreResult<()> {
        let internal = &self.inner.internal_replicas;
        let (mut replicas, mut found) = (1, Vec::new());
        for nats in internal.uncounted(buckets) {
            // Not through the bucket-state cache: filled here, as a config comes in, it
            // would keep a versioning state read before a change for its whole TTL.
            match self.inner.js.get_stream(stream_name(&nats)).await {
                Ok(s) => replicas = replicas.max(s.cached_info().config.num_replicas),
                // Counted once it exists.
                Err(e) if is_stream_not_found(&e) => continue,
                Err(e) => return Err(NatsError::other(e).on(&nats)),
            }
            found.push(nats);
        }
        let kvs = [
            lifecycle::GC_KV,
            lifecycle::READS_KV,
            lifecycle::LOCKS_KV,
            uploads::UPLOADS_KV,
            index::INDEX_KV,
        ];
        let raised = internal.raise(&self.inner.js, &kvs, replicas, found);
        raised.await.map_err(|e| e.on(""))
    }

    /// Makes jets3's own KV buckets that were deleted while this gateway runs again (see
    /// [`internal`]), within [`RESTORE_WAIT`] (in an election the check itself may wait on
    /// NATS); a failure is only logged: the next miss tries again.
    pub(super) async fn restore_internal_kvs(&self) {
        let internal = &self.inner.internal_replicas;
        let restore = internal.restore(&self.inner.js);
        match tokio::time::timeout(RESTORE_WAIT, restore).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = ?e, "could not check jets3's KV buckets"),
            Err(_) => tracing::debug!("no answer on jets3's KV buckets"),
        }
    }

    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// How many times the client has (re)connected.
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// Fails while NATS is unreachable, instead of queueing behind a reconnect; a
    /// reconnect to another server of a cluster (a node lost) is waited for a moment.
    pub async fn check_connected(&self) -> StoreResult<()> {
        if self.connected() || self.reconnected(RECONNECT_WAIT).await {
            Ok(())
        } else {
            Err(StoreError::Unavailable)
        }
    }

    /// Whether the connection is up again within `wait`.
    async fn reconnected(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if self.connected() {
                return true;
            }
        }
        false
    }

    /// Checks that JetStream answers now (for readiness).
    pub async fn ping(&self) -> bool {
        self.connected() && self.account_answers().await
    }

    /// Checks that JetStream answers, after a moment for a reconnect (for the circuit
    /// breaker: a client moving to another server of a cluster is not NATS failing).
    pub async fn ping_after_reconnect(&self) -> bool {
        (self.connected() || self.reconnected(RECONNECT_WAIT).await) && self.account_answers().await
    }

    async fn account_answers(&self) -> bool {
        tokio::time::timeout(Duration::from_secs(2), self.inner.js.query_account())
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// Every object-store bucket, with its creation time.
    pub async fn list_buckets(&self) -> StoreResult<Vec<BucketInfo>> {
        self.check_connected().await?;
        let mut streams = self.inner.js.streams();
        let mut out = Vec::new();
        while let Some(info) = streams.next().await {
            let info = info.map_err(|e| NatsError::Other(e.to_string()).on(""))?;
            if let Some(nats) = names::bucket_of_stream(&info.config.name) {
                out.push(BucketInfo {
                    nats: nats.to_string(),
                    created: info.created,
                    metadata: info.config.metadata.clone(),
                });
            }
        }
        Ok(out)
    }

    /// Subscribes to a core NATS subject (JetStream advisories).
    pub async fn subscribe(
        &self,
        subject: String,
    ) -> Result<async_nats::Subscriber, async_nats::SubscribeError> {
        self.inner.client.subscribe(subject).await
    }

    /// One bucket's info, or `None` if it does not exist.
    pub async fn bucket_info(&self, nats: &str) -> StoreResult<Option<BucketInfo>> {
        self.check_connected().await?;
        match self.inner.js.get_stream(stream_name(nats)).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| NatsError::Other(e.to_string()).on(nats))?;
                Ok(Some(BucketInfo {
                    nats: nats.to_string(),
                    created: info.created,
                    metadata: info.config.metadata.clone(),
                }))
            }
            Err(e) if is_stream_not_found(&e) => Ok(None),
            Err(e) => Err(NatsError::Other(e.to_string()).on(nats)),
        }
    }

    /// Creates an object-store bucket (the stream `create_object_store` makes, with the
    /// creator's access key and `metadata` in its metadata, all there from the start);
    /// `false` if it already existed.
    pub async fn create_bucket(
        &self,
        nats: &str,
        opts: &BucketOptions,
        owner: Option<&str>,
        mut metadata: HashMap<String, String>,
    ) -> StoreResult<bool> {
        self.check_connected().await?;
        if self.bucket_info(nats).await?.is_some() {
            return Ok(false);
        }
        let config = jetstream::stream::Config {
            storage: if opts.memory {
                StorageType::Memory
            } else {
                StorageType::File
            },
            num_replicas: opts.replicas,
            metadata: {
                if let Some(o) = owner {
                    metadata.insert(OWNER_KEY.to_string(), o.to_string());
                }
                metadata
            },
            ..names::object_store_stream(nats)
        };
        match self.inner.js.create_stream(config).await {
            Ok(_) => Ok(true),
            Err(e) => {
                if self.bucket_info(nats).await?.is_some() {
                    Ok(false)
                } else {
                    Err(NatsError::Other(e.to_string()).on(nats))
                }
            }
        }
    }

    /// Sets (or with `None` removes) one entry of the bucket stream's metadata.
    pub async fn set_bucket_metadata(
        &self,
        nats: &str,
        key: &str,
        value: Option<String>,
    ) -> StoreResult<()> {
        self.check_connected().await?;
        let key = key.to_string();
        self.update_stream(nats, move |config| match value {
            Some(v) => {
                config.metadata.insert(key, v);
            }
            None => {
                config.metadata.remove(&key);
            }
        })
        .await
        .map_err(|e| match e {
            NatsError::NoStream => StoreError::NoSuchBucket(nats.to_string()),
            e => e.on(nats),
        })
    }

    /// Deletes a bucket if it holds no version: fences the stream so that no write can
    /// land meanwhile, checks, then deletes it (uploads in progress go with it) or lifts
    /// the fence. From the fence on it runs detached: a request dropped midway (the client
    /// hung up, the request timed out) never leaves the fence up.
    pub async fn delete_bucket_if_empty(&self, nats: &str) -> Result<(), DeleteBucketError> {
        self.check_connected().await?;
        // Cheap refusal first: most non-empty buckets never need the fence.
        if !self.bucket(nats).is_empty().await? {
            return Err(DeleteBucketError::NotEmpty);
        }
        let (store, name) = (self.clone(), nats.to_string());
        tokio::spawn(async move { store.delete_fenced(&name).await })
            .await
            .map_err(|e| DeleteBucketError::Store(StoreError::internal(e)))?
    }

    /// [`Store::delete_bucket_if_empty`] from the fence on: whatever keeps the bucket from
    /// being deleted also lifts the fence.
    async fn delete_fenced(&self, nats: &str) -> Result<(), DeleteBucketError> {
        let deleted = match self.fence(nats).await {
            Ok(()) => self.delete_behind_fence(nats).await,
            // The fence may be up all the same (its answer lost on the way).
            Err(e) => Err(e.on(nats).into()),
        };
        if deleted.is_err() {
            if let Err(e) = self.unfence(nats).await {
                tracing::warn!(bucket = nats, error = ?e, "a DeleteBucket that did not delete could not lift its fence");
            }
        }
        deleted
    }

    /// Deletes the fenced bucket if it holds no version, as far as its stream leader holds.
    async fn delete_behind_fence(&self, nats: &str) -> Result<(), DeleteBucketError> {
        if !self.bucket(nats).is_empty().await? {
            return Err(DeleteBucketError::NotEmpty);
        }
        self.forget_uploads(nats).await?;
        self.forget_index(nats);
        self.forget_snapshot(nats).await;
        self.inner.versioning.forget(nats);
        self.inner.new_keys.forget(nats);
        self.inner
            .js
            .delete_stream(stream_name(nats))
            .await
            .map_err(|e| {
                if e.to_string().contains("not found") {
                    StoreError::NoSuchBucket(nats.to_string())
                } else {
                    NatsError::other(e).on(nats)
                }
            })?;
        self.wrote(nats, None);
        Ok(())
    }

    /// Refuses every publish to the bucket's stream from now on (see the module docs).
    async fn fence(&self, nats: &str) -> Result<(), NatsError> {
        self.update_stream(nats, |config| {
            if !config.metadata.contains_key(CLOSING_KEY) {
                let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
                let before = config.max_message_size;
                config
                    .metadata
                    .insert(CLOSING_KEY.into(), format!("{now},{before}"));
                config.max_message_size = 1;
            }
        })
        .await
    }

    /// Lifts a fence: the stream takes writes again.
    async fn unfence(&self, nats: &str) -> Result<(), NatsError> {
        self.update_stream(nats, |config| {
            if let Some(v) = config.metadata.remove(CLOSING_KEY) {
                config.max_message_size = v
                    .split_once(',')
                    .and_then(|(_, b)| b.parse().ok())
                    .unwrap_or(-1);
            }
        })
        .await
    }

    /// When the bucket's fence went up, if it is fenced.
    fn fenced_since(metadata: &HashMap<String, String>) -> Option<OffsetDateTime> {
        let v = metadata.get(CLOSING_KEY)?;
        let ms: i128 = v
            .split_once(',')
            .map_or(v.as_str(), |(t, _)| t)
            .parse()
            .ok()?;
        OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()
    }

    /// Reads the bucket's stream config, changes it with `change` and writes it back,
    /// holding the bucket's config lock throughout (see [`config_lock`]). It runs on its
    /// own: a request dropped midway (the client hung up) neither leaves the lock taken nor
    /// lets the next change in while its update may still land.
    async fn update_stream(
        &self,
        nats: &str,
        change: impl FnOnce(&mut jetstream::stream::Config) + Send + 'static,
    ) -> Result<(), NatsError> {
        let (store, nats) = (self.clone(), nats.to_string());
        tokio::spawn(async move {
            let _lock = store.lock_config(&nats).await?;
            store.update_stream_locked(&nats, change).await
        })
        .await
        .map_err(NatsError::other)?
    }

    async fn update_stream_locked(
        &self,
        nats: &str,
        change: impl FnOnce(&mut jetstream::stream::Config),
    ) -> Result<(), NatsError> {
        let mut stream = match self.inner.js.get_stream(stream_name(nats)).await {
            Ok(s) => s,
            Err(e) if is_stream_not_found(&e) => return Err(NatsError::NoStream),
            Err(e) => return Err(NatsError::other(e)),
        };
        let info = stream.info().await.map_err(NatsError::other)?;
        let mut config = info.config.clone();
        change(&mut config);
        if config != info.config {
            self.inner
                .js
                .update_stream(config)
                .await
                .map_err(NatsError::other)?;
        }
        Ok(())
    }

    /// Removes every upload of a bucket that is being deleted (its parts go with the stream).
    async fn forget_uploads(&self, nats: &str) -> StoreResult<()> {
        self.uploads().await?;
        purge_subject(
            &self.inner.js,
            &names::kv_stream(uploads::UPLOADS_KV),
            names::kv_subject(uploads::UPLOADS_KV, &format!("{nats}.>")),
        )
        .await
        .map_err(|e| e.on(nats))
    }

    /// The versioning state of a bucket (read at most [`versions::STATE_TTL`] ago).
    pub async fn versioning(&self, nats: &str) -> StoreResult<Versioning> {
        Ok(self.bucket_state(nats).await?.versioning)
    }

    /// The replicas of a bucket's stream (read at most [`versions::STATE_TTL`] ago).
    pub async fn replicas(&self, nats: &str) -> StoreResult<usize> {
        Ok(self.bucket_state(nats).await?.replicas)
    }

    /// Whether a small object's chunk and metadata go to the bucket as one atomic batch.
    pub(crate) async fn batched_writes(&self, nats: &str) -> StoreResult<bool> {
        Ok(self.bucket_state(nats).await?.batched_writes)
    }

    async fn bucket_state(&self, nats: &str) -> StoreResult<versions::BucketState> {
        if let Some(v) = self.inner.versioning.get(nats) {
            return Ok(v);
        }
        self.check_connected().await?;
        let mut stream = match self.inner.js.get_stream(stream_name(nats)).await {
            Ok(s) => s,
            Err(e) if is_stream_not_found(&e) => {
                return Err(StoreError::NoSuchBucket(nats.to_string()))
            }
            Err(e) => return Err(NatsError::other(e).on(nats)),
        };
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::other(e).on(nats))?;
        let has_v = info
            .config
            .subjects
            .contains(&versions::versions_filter(nats));
        let versioning = match info.config.metadata.get(versions::VERSIONING_KEY) {
            Some(s) => Versioning::parse(s).unwrap_or(Versioning::Suspended),
            None if has_v => Versioning::Suspended,
            None => Versioning::Off,
        };
        let replicas = info.config.num_replicas.max(1);
        let state = versions::BucketState {
            versioning,
            replicas,
            batched_writes: info.config.allow_atomic_publish
                && (replicas > 1 || info.config.storage == StorageType::Memory),
        };
        self.inner.versioning.set(nats, state);
        Ok(state)
    }

    /// Sets a bucket's versioning state (adding the noncurrent-version subjects to its
    /// stream the first time).
    pub async fn set_versioning(&self, nats: &str, v: Versioning) -> StoreResult<()> {
        self.check_connected().await?;
        let subject = versions::versions_filter(nats);
        self.update_stream(nats, move |config| {
            if !config.subjects.contains(&subject) {
                config.subjects.push(subject);
            }
            if let Some(status) = v.status() {
                config
                    .metadata
                    .insert(versions::VERSIONING_KEY.into(), status.into());
            }
        })
        .await
        .map_err(|e| e.on(nats))?;
        // Read again on next use (with the replicas).
        self.inner.versioning.forget(nats);
        // A listing index started before the subjects existed does not follow them.
        self.forget_index(nats);
        Ok(())
    }

    /// Turns an ambiguous failure into an authoritative one: after "no responders", asks
    /// the JetStream API whether the bucket's stream exists. Only a "not found" answer is
    /// `NoStream` (NoSuchBucket); a stream between leaders stays a retryable failure.
    pub(crate) async fn settle(&self, nats: &str, e: NatsError) -> NatsError {
        if !matches!(e, NatsError::NoResponders) {
            return e;
        }
        let asked = tokio::time::timeout(
            Duration::from_secs(2),
            self.inner.js.get_stream(stream_name(nats)),
        );
        match asked.await {
            Ok(Err(e)) if is_stream_not_found(&e) => NatsError::NoStream,
            _ => NatsError::NoResponders,
        }
    }

    /// Runs an idempotent metadata operation of bucket `nats` through a leader election:
    /// each attempt gets [`ATTEMPT`], and transient failures are tried again until
    /// [`FAILOVER_BUDGET`] is spent. A bucket that does not exist fails at once.
    pub(crate) async fn through_failover<T, F, Fut>(
        &self,
        nats: &str,
        op: F,
    ) -> Result<T, NatsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, NatsError>>,
    {
        self.through_failover_until(nats, None, op).await
    }

    /// The last message on `subject` in bucket `nats`'s stream as the stream's leader has it
    /// (the JetStream API, through a leader election if one is under way): its sequence and
    /// payload. On a replicated stream a Direct Get may be answered by a replica that is
    /// behind (one that was partitioned or frozen), which shows an older message or none.
    pub(crate) async fn leader_last(
        &self,
        nats: &str,
        subject: &str,
    ) -> Result<Option<(u64, bytes::Bytes)>, NatsError> {
        let m = self.leader_message(nats, subject).await?;
        Ok(m.map(|m| (m.sequence, m.payload)))
    }

    /// When the last message on `subject` in bucket `nats`'s stream was stored, as the
    /// stream's leader has it (see [`Store::leader_last`]).
    pub(crate) async fn leader_stored(
        &self,
        nats: &str,
        subject: &str,
    ) -> Result<Option<OffsetDateTime>, NatsError> {
        let m = self.leader_message(nats, subject).await?;
        Ok(m.map(|m| m.time))
    }

    /// The first message on `filter` (wildcards allowed) at or after sequence `from` in
    /// bucket `nats`'s stream, as its leader has it (see [`Store::leader_last`]): its
    /// sequence.
    pub(crate) async fn leader_next(
        &self,
        nats: &str,
        filter: &str,
        from: u64,
    ) -> Result<Option<u64>, NatsError> {
        let m = self
            .leader_query(nats, |s| {
                s.raw_message_builder()
                    .sequence(from)
                    .next_by_subject(filter)
            })
            .await?;
        Ok(m.map(|m| m.sequence))
    }

    async fn leader_message(
        &self,
        nats: &str,
        subject: &str,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, NatsError> {
        self.leader_query(nats, |s| s.raw_message_builder().last_by_subject(subject))
            .await
    }

    /// Sends the message request `ask` builds to bucket `nats`'s stream leader (the
    /// JetStream API), through a leader election if one is under way.
    async fn leader_query(
        &self,
        nats: &str,
        ask: impl Fn(&jetstream::stream::Stream<()>) -> jetstream::stream::RawMessageBuilder,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, NatsError> {
        let stream = self
            .inner
            .js
            .get_stream_no_info(stream_name(nats))
            .await
            .map_err(NatsError::other)?;
        self.through_failover(nats, || async {
            match direct::from_leader(ask(&stream)).await {
                Ok(m) => Ok(m),
                // A leader between terms answers with errors of its own: all of them are
                // tried again within the failover budget ("not found" is settled).
                Err(e) => {
                    tracing::debug!(error = %e, "the stream leader did not answer a read");
                    Err(NatsError::NoResponders)
                }
            }
        })
        .await
    }

    /// Like [`Store::through_failover`], but no attempt runs past `until`: an attempt
    /// started before it is cut off there, and none starts after it.
    pub(crate) async fn through_failover_until<T, F, Fut>(
        &self,
        nats: &str,
        until: Option<std::time::Instant>,
        mut op: F,
    ) -> Result<T, NatsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, NatsError>>,
    {
        let started = std::time::Instant::now();
        let until = until.unwrap_or(started + FAILOVER_BUDGET);
        loop {
            let attempt = ATTEMPT.min(until.saturating_duration_since(std::time::Instant::now()));
            let result = match tokio::time::timeout(attempt, op()).await {
                Ok(r) => r,
                Err(_) => Err(NatsError::TimedOut),
            };
            let e = match result {
                Err(e) if e.transient() => self.settle(nats, e).await,
                other => return other,
            };
            let now = std::time::Instant::now();
            if !e.transient()
                || now + ATTEMPT_PAUSE >= until
                || now + ATTEMPT_PAUSE >= started + FAILOVER_BUDGET
            {
                return Err(e);
            }
            tokio::time::sleep(ATTEMPT_PAUSE).await;
        }
    }

    /// Sets the hook told of every write through this store (the object cache, which so
    /// never serves what this gateway has overwritten); only the first call counts.
    pub fn on_write(&self, hook: WriteHook) {
        let _ = self.inner.on_write.set(hook);
    }

    /// Tells the write hook of a write to `key` of `nats` (`None`: the whole bucket).
    pub(super) fn wrote(&self, nats: &str, key: Option<&str>) {
        if let Some(hook) = self.inner.on_write.get() {
            hook(nats, key);
        }
    }

    /// A handle on one bucket's objects (no NATS round trip).
    pub fn bucket(&self, nats: &str) -> Bucket {
        Bucket::new(self.clone(), nats)
    }

    /// Removes a deleted bucket's listing snapshot (a bucket made again under the name
    /// would refuse it anyway: it names the stream it was taken of).
    async fn forget_snapshot(&self, nats: &str) {
        let removed = match self.inner.snapshots.shared(&self.inner.js).await {
            Ok(shared) => shared.forget(&self.inner.js, nats).await,
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            tracing::debug!(error = ?e, bucket = nats, "listing snapshot left behind");
        }
    }

    fn forget_index(&self, nats: &str) {
        self.inner
            .indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(nats);
    }

    /// What the store has met, for metrics.
    pub fn stats(&self) -> &StoreStats {
        &self.inner.stats
    }

    /// Counts a malformed metadata message.
    fn malformed(&self, subject: &str, why: &meta::Malformed) {
        self.inner.stats.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(subject, reason = %why, "skipping malformed object metadata");
    }
}

/// Removes one key of a KV bucket jets3 uses internally, leaving no purge marker behind
/// (those would pile up: one per retired version, one per finished upload).
async fn forget_key(js: &Context, kv: &str, key: &str) -> Result<(), NatsError> {
    purge_subject(js, &names::kv_stream(kv), names::kv_subject(kv, key)).await
}

/// Purges the messages of one subject.
async fn purge_subject(js: &Context, stream: &str, subject: String) -> Result<(), NatsError> {
    let s = js
        .get_stream_no_info(stream)
        .await
        .map_err(NatsError::other)?;
    s.purge().filter(subject).await.map_err(NatsError::other)?;
    Ok(())
}

/// Whether a failed request found nothing to answer it (see [`until_answered`]).
pub(super) trait Unanswered {
    fn unanswered(&self) -> bool;
}

impl<E: std::error::Error + 'static> Unanswered for E {
    fn unanswered(&self) -> bool {
        matches!(NatsError::within(self), NatsError::NoResponders)
    }
}

impl Unanswered for NatsError {
    fn unanswered(&self) -> bool {
        matches!(self, NatsError::NoResponders)
    }
}

/// Runs a request to one of jets3's own KV buckets again while nothing answers it (the KV's
/// stream between leaders, or just created): such an attempt read or stored nothing. Every
/// other failure is the caller's, a timeout included: a write that timed out may still
/// land, and writing it again could put it back over a newer one. No attempt but the first
/// starts past `until`, nor past [`FAILOVER_BUDGET`] from now; none is cut short here.
pub(super) async fn until_answered<T, E, F, Fut>(
    until: Option<std::time::Instant>,
    mut request: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Unanswered,
{
    let budget = std::time::Instant::now() + FAILOVER_BUDGET;
    let until = until.map_or(budget, |u| u.min(budget));
    loop {
        match request().await {
            Err(e) if e.unanswered() && std::time::Instant::now() + ATTEMPT_PAUSE < until => {
                tokio::time::sleep(ATTEMPT_PAUSE).await;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_nats::jetstream::context::{PublishError, PublishErrorKind};

    /// What a publish NATS refused with JetStream error `code` maps to.
    fn refused(code: u64, description: &str) -> NatsError {
        let answer: async_nats::jetstream::Error = serde_json::from_value(serde_json::json!({
            "code": 400, "err_code": code, "description": description
        }))
        .expect("a JetStream error");
        NatsError::publish(PublishError::with_source(PublishErrorKind::Other, answer))
    }

    /// A write to the uploads' KV that nothing answered (its stream between leaders) is an
    /// election, as on every other stream: not a failure of NATS for the circuit breaker.
    #[test]
    fn an_unanswered_uploads_kv_write_reads_as_an_election() {
        use async_nats::jetstream::kv::{UpdateError, UpdateErrorKind};
        let unanswered = PublishError::new(PublishErrorKind::StreamNotFound);
        let e = uploads::kv_err(UpdateError::from(unanswered));
        assert!(
            matches!(
                &e,
                StoreError::Nats {
                    error: NatsError::NoResponders,
                    ..
                }
            ),
            "{e:?}"
        );
        let stale = UpdateError::new(UpdateErrorKind::WrongLastRevision);
        let e = uploads::kv_err(stale);
        assert!(
            matches!(
                &e,
                StoreError::Nats {
                    error: NatsError::Other(_),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn a_refused_publish_is_read_by_its_jetstream_code() {
        assert!(matches!(
            refused(10164, "wrong last sequence"),
            NatsError::WrongLastSequence
        ));
        for code in BATCH_REFUSED {
            assert!(matches!(refused(code, "batch"), NatsError::BatchRefused));
        }
        assert!(matches!(
            refused(10054, "message size exceeds maximum allowed"),
            NatsError::Closing
        ));
        for code in NO_ROOM {
            assert!(matches!(
                refused(code, "insufficient resources"),
                NatsError::StorageFull(Full::Server, _)
            ));
        }
        assert!(matches!(
            refused(10077, "maximum bytes exceeded"),
            NatsError::StorageFull(Full::Bucket, _)
        ));
        assert!(matches!(
            refused(10077, "maximum messages exceeded"),
            NatsError::Other(_)
        ));
        assert!(matches!(
            refused(10999, "something new"),
            NatsError::Other(_)
        ));
    }
}
