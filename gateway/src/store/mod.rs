//! Everything that touches NATS: buckets as object-store streams, objects as chunk and
//! metadata messages, the listing index and multipart upload state.
//!
//! Objects are stored exactly as the NATS object store lays them out, so native clients
//! read what the gateway writes and the other way round.

mod changes;
mod direct;
mod index;
mod meta;
mod reader;
mod uploads;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, stream::StorageType, Context};
use async_nats::{Client, ConnectOptions, HeaderMap};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use time::OffsetDateTime;

use crate::error::{S3Error, S3Result};
use crate::settings::NatsSettings;

pub use changes::{Change, Changes};
pub use index::{Entry, Index};
pub use meta::{decode_tags, encode_tags, ObjectMeta, CHUNK_SIZE};
pub use uploads::{PartInfo, UploadInfo};
pub use writer::Written;

/// Body bytes one object read holds at most (a Direct Get batch of chunks).
pub const READ_BUFFER_BYTES: usize = reader::CLIENT_BATCH * CHUNK_SIZE;
/// Body bytes one object write holds at most (the unacknowledged chunks and one filling).
pub const WRITE_BUFFER_BYTES: usize = (writer::ACK_WINDOW + 1) * CHUNK_SIZE;

use direct::last_for_subject;
use meta::{chunk_subject, digest_string, meta_subject, ObjectInfoJson};
use writer::ChunkWriter;

/// A NATS failure, before it is turned into an S3 error.
#[derive(Debug)]
pub enum NatsError {
    /// The bucket's stream does not exist.
    NoStream,
    /// A conditional write lost: the object changed in between.
    WrongLastSequence,
    /// Anything else: unreachable, timed out, refused.
    Other(String),
}

impl NatsError {
    fn publish(e: async_nats::jetstream::context::PublishError) -> Self {
        use async_nats::jetstream::context::PublishErrorKind as K;
        match e.kind() {
            K::StreamNotFound => NatsError::NoStream,
            K::WrongLastSequence => NatsError::WrongLastSequence,
            _ => {
                let text = e.to_string();
                if text.contains("no responders") {
                    NatsError::NoStream
                } else {
                    NatsError::Other(text)
                }
            }
        }
    }

    fn consumer(e: async_nats::jetstream::stream::ConsumerError) -> Self {
        let text = e.to_string();
        if text.contains("stream not found") {
            NatsError::NoStream
        } else {
            NatsError::Other(text)
        }
    }

    /// The S3 error for this failure in bucket `bucket`.
    pub fn into_s3(self, bucket: &str) -> S3Error {
        match self {
            NatsError::NoStream => S3Error::no_such_bucket(bucket),
            NatsError::WrongLastSequence => S3Error::new(
                crate::error::S3Code::ConditionalRequestConflict,
                "The conditional request cannot succeed due to a conflicting operation against this resource.",
            ),
            NatsError::Other(text) => {
                tracing::warn!(error = %text, bucket, "nats operation failed");
                S3Error::unavailable()
            }
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

/// How to create a bucket.
#[derive(Debug, Clone)]
pub struct BucketOptions {
    pub memory: bool,
    pub replicas: usize,
}

/// What a conditional write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Any,
    /// `If-None-Match: *`.
    Absent,
    /// `If-Match: "<etag>"`.
    Etag(String),
}

/// What a key's metadata subject holds now.
#[derive(Debug, Default)]
struct Lookup {
    /// The current version; `None` when there is none (never written, or deleted).
    current: Option<ObjectMeta>,
    /// Sequence of the last metadata message (a delete marker too), 0 if none.
    last_seq: u64,
}

impl Lookup {
    /// Checks a conditional write's expectation against the current version.
    fn check(&self, key: &str, expect: &Expect) -> S3Result<()> {
        match (expect, &self.current) {
            (Expect::Absent, Some(_)) => Err(S3Error::precondition_failed("If-None-Match")),
            (Expect::Etag(_), None) => Err(S3Error::no_such_key(key)),
            (Expect::Etag(e), Some(m)) if !etag_matches(e, &m.etag) => {
                Err(S3Error::precondition_failed("If-Match"))
            }
            _ => Ok(()),
        }
    }
}

/// The connection to NATS and the cache of open buckets.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    js: Context,
    indexes: Mutex<HashMap<String, Arc<Index>>>,
    connects: Arc<AtomicU64>,
    /// Disconnects and dropped messages (slow consumer): gaps in subscriptions.
    interruptions: Arc<AtomicU64>,
    uploads: tokio::sync::OnceCell<async_nats::jetstream::kv::Store>,
    /// Versions being read here: their chunks outlive an overwrite or delete until the
    /// last reader is done, so a GET that started never comes back cut short.
    readers: Mutex<HashMap<String, Readers>>,
}

#[derive(Default)]
struct Readers {
    count: usize,
    /// Replaced or deleted meanwhile: purge when the last reader finishes.
    retired: bool,
}

/// Held by a reading stream; on drop, releases its version (and purges it if retired).
struct ReadLease {
    inner: Arc<Inner>,
    stream: String,
    subject: String,
}

impl Drop for ReadLease {
    fn drop(&mut self) {
        let mut readers = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = readers.get_mut(&self.subject) else {
            return;
        };
        r.count -= 1;
        if r.count > 0 {
            return;
        }
        let retired = r.retired;
        readers.remove(&self.subject);
        if retired {
            let (js, stream, subject) = (
                self.inner.js.clone(),
                self.stream.clone(),
                self.subject.clone(),
            );
            tokio::spawn(async move { purge_subject(&js, &stream, subject).await });
        }
    }
}

fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Object-store streams are named `OBJ_<bucket>`.
fn stream_name(bucket: &str) -> String {
    format!("OBJ_{bucket}")
}

impl Store {
    /// Connects (retrying forever in the background if NATS is not up yet).
    pub async fn connect(settings: &NatsSettings) -> Result<Store, crate::Error> {
        let connects = Arc::new(AtomicU64::new(0));
        let interruptions = Arc::new(AtomicU64::new(0));
        let counter = connects.clone();
        let gaps = interruptions.clone();
        let mut opts = ConnectOptions::new()
            .name("jets3-gateway")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(Duration::from_secs(5)))
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((100 * 2u64.pow(attempts.min(5) as u32)).min(2000))
            })
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
        if let (Some(u), Some(p)) = (&settings.user, &settings.password) {
            opts = opts.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &settings.token {
            opts = opts.token(t.clone());
        }
        if let Some(seed) = &settings.nkey_seed {
            opts = opts.nkey(seed.clone());
        }
        if let Some(path) = &settings.creds_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| crate::Error::Nats(format!("{}: {e}", path.display())))?;
        }
        if let Some(ca) = &settings.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if settings.tls_required {
            opts = opts.require_tls(true);
        }
        let servers: Vec<async_nats::ServerAddr> = settings
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()
            .map_err(|e| crate::Error::Nats(format!("bad server url: {e}")))?;
        if servers.is_empty() {
            return Err(crate::Error::Nats("no NATS servers configured".into()));
        }
        let client = opts
            .connect(servers)
            .await
            .map_err(|e| crate::Error::Nats(e.to_string()))?;
        let js = jetstream::new(client.clone());
        let inner = Inner {
            client,
            js,
            indexes: Mutex::new(HashMap::new()),
            connects,
            interruptions,
            uploads: tokio::sync::OnceCell::new(),
            readers: Mutex::new(HashMap::new()),
        };
        let store = Store {
            inner: Arc::new(inner),
        };
        Ok(store)
    }

    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        self.inner.client.connection_state() == async_nats::connection::State::Connected
    }

    /// How many times the client has (re)connected.
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// Fails fast while NATS is unreachable, instead of queueing behind a reconnect.
    pub fn check_connected(&self) -> S3Result<()> {
        if self.connected() {
            Ok(())
        } else {
            Err(S3Error::unavailable())
        }
    }

    /// Checks that JetStream answers (for readiness).
    pub async fn ping(&self) -> bool {
        self.connected()
            && tokio::time::timeout(Duration::from_secs(2), self.inner.js.query_account())
                .await
                .map(|r| r.is_ok())
                .unwrap_or(false)
    }

    /// Every object-store bucket, with its creation time.
    pub async fn list_buckets(&self) -> S3Result<Vec<BucketInfo>> {
        self.check_connected()?;
        let mut streams = self.inner.js.streams();
        let mut out = Vec::new();
        while let Some(info) = streams.next().await {
            let info = info.map_err(|e| NatsError::Other(e.to_string()).into_s3(""))?;
            if let Some(nats) = info.config.name.strip_prefix("OBJ_") {
                out.push(BucketInfo {
                    nats: nats.to_string(),
                    created: info.created,
                    metadata: info.config.metadata.clone(),
                });
            }
        }
        Ok(out)
    }

    /// One bucket's info, or `None` if it does not exist.
    pub async fn bucket_info(&self, nats: &str) -> S3Result<Option<BucketInfo>> {
        self.check_connected()?;
        match self.inner.js.get_stream(stream_name(nats)).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| NatsError::Other(e.to_string()).into_s3(nats))?;
                Ok(Some(BucketInfo {
                    nats: nats.to_string(),
                    created: info.created,
                    metadata: info.config.metadata.clone(),
                }))
            }
            Err(e) if is_stream_not_found(&e) => Ok(None),
            Err(e) => Err(NatsError::Other(e.to_string()).into_s3(nats)),
        }
    }

    /// Creates an object-store bucket; `false` if it already existed.
    pub async fn create_bucket(&self, nats: &str, opts: &BucketOptions) -> S3Result<bool> {
        self.check_connected()?;
        if self.bucket_info(nats).await?.is_some() {
            return Ok(false);
        }
        let config = jetstream::object_store::Config {
            bucket: nats.to_string(),
            storage: if opts.memory {
                StorageType::Memory
            } else {
                StorageType::File
            },
            num_replicas: opts.replicas,
            ..Default::default()
        };
        match self.inner.js.create_object_store(config).await {
            Ok(_) => Ok(true),
            Err(e) => {
                if self.bucket_info(nats).await?.is_some() {
                    Ok(false)
                } else {
                    Err(NatsError::Other(e.to_string()).into_s3(nats))
                }
            }
        }
    }

    /// Deletes a bucket's stream.
    pub async fn delete_bucket(&self, nats: &str) -> S3Result<()> {
        self.check_connected()?;
        self.forget_index(nats);
        self.inner
            .js
            .delete_stream(stream_name(nats))
            .await
            .map_err(|e| {
                if e.to_string().contains("not found") {
                    S3Error::no_such_bucket(nats)
                } else {
                    NatsError::Other(e.to_string()).into_s3(nats)
                }
            })?;
        Ok(())
    }

    /// Sets (or with `None` removes) one entry of the bucket stream's metadata.
    pub async fn set_bucket_metadata(
        &self,
        nats: &str,
        key: &str,
        value: Option<String>,
    ) -> S3Result<()> {
        self.check_connected()?;
        let mut stream = self
            .inner
            .js
            .get_stream(stream_name(nats))
            .await
            .map_err(|_| S3Error::no_such_bucket(nats))?;
        let info = stream
            .info()
            .await
            .map_err(|e| NatsError::Other(e.to_string()).into_s3(nats))?;
        let mut config = info.config.clone();
        match value {
            Some(v) => config.metadata.insert(key.to_string(), v),
            None => config.metadata.remove(key),
        };
        self.inner
            .js
            .update_stream(config)
            .await
            .map_err(|e| NatsError::Other(e.to_string()).into_s3(nats))?;
        Ok(())
    }

    /// A handle on one bucket's objects (no NATS round trip).
    pub fn bucket(&self, nats: &str) -> Bucket {
        Bucket {
            store: self.clone(),
            nats: nats.to_string(),
            stream: stream_name(nats),
        }
    }

    fn forget_index(&self, nats: &str) {
        self.inner
            .indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(nats);
    }
}

/// Removes chunks unless disarmed: a cut-off or failed upload leaves nothing behind,
/// even when the request future is dropped mid-way.
struct PurgeGuard {
    js: Context,
    stream: String,
    subject: Option<String>,
    pending: writer::Pending,
}

impl PurgeGuard {
    fn disarm(mut self) {
        self.subject = None;
    }
}

impl Drop for PurgeGuard {
    fn drop(&mut self) {
        if let Some(subject) = self.subject.take() {
            let js = self.js.clone();
            let stream = self.stream.clone();
            let pending: Vec<_> = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
                .collect();
            tokio::spawn(async move {
                for ack in pending {
                    let _ = ack.await;
                }
                purge_subject(&js, &stream, subject).await
            });
        }
    }
}

async fn purge_subject(js: &Context, stream: &str, subject: String) {
    let result = async {
        let s = js.get_stream_no_info(stream).await?;
        s.purge().filter(subject.clone()).await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, subject, "could not purge chunks");
    }
}

/// A new object's attributes, chosen by the caller.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub parts: Vec<u64>,
}

/// Checks a finished body before it becomes visible; returns the checksums to store
/// and their type, and the ETag (when it is not the MD5 of the content).
pub struct Finished {
    pub checksums: Vec<(String, String)>,
    pub checksum_type: Option<String>,
    pub etag: Option<String>,
}

/// The metadata of a freshly written version.
fn new_version_meta(
    obj: NewObject,
    nuid: String,
    written: &Written,
    finished: Finished,
) -> ObjectMeta {
    ObjectMeta {
        key: obj.key,
        size: written.size,
        etag: finished.etag.unwrap_or_else(|| hex::encode(written.md5)),
        modified: OffsetDateTime::now_utc(),
        nuid,
        chunks: written.chunks,
        digest: Some(digest_string(&written.sha256)),
        headers: obj.headers,
        tags: obj.tags,
        checksums: finished.checksums,
        checksum_type: finished.checksum_type,
        parts: obj.parts,
        seq: written.seq,
        meta_seq: 0,
        is_link: false,
    }
}

/// One bucket's objects.
#[derive(Clone)]
pub struct Bucket {
    store: Store,
    nats: String,
    stream: String,
}

impl Bucket {
    /// The NATS bucket name.
    pub fn nats_name(&self) -> &str {
        &self.nats
    }

    fn err(&self, e: NatsError) -> S3Error {
        e.into_s3(&self.nats.replace('_', "."))
    }

    /// The object's metadata, or `None` if there is no such key.
    pub async fn head(&self, key: &str) -> S3Result<Option<ObjectMeta>> {
        Ok(self.lookup(key).await?.current)
    }

    /// Checks a conditional write's expectation against the key's current version.
    pub async fn check_write(&self, key: &str, expect: &Expect) -> S3Result<()> {
        self.lookup(key).await?.check(key, expect)
    }

    /// The key's current version and the sequence of its last metadata message, in one
    /// Direct Get.
    async fn lookup(&self, key: &str) -> S3Result<Lookup> {
        self.store.check_connected()?;
        let msg = last_for_subject(
            &self.store.inner.client,
            &self.stream,
            &meta_subject(&self.nats, key),
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(match msg {
            None => Lookup::default(),
            Some(m) => Lookup {
                last_seq: m.seq,
                current: serde_json::from_slice::<ObjectInfoJson>(&m.payload)
                    .ok()
                    .and_then(|info| ObjectMeta::from_info(info, m.seq)),
            },
        })
    }

    /// Streams bytes `[start, end)` of an object.
    pub fn read(
        &self,
        meta: &ObjectMeta,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = Result<Bytes, S3Error>> + Send + 'static {
        self.read_batched(meta, start, end, reader::CLIENT_BATCH)
    }

    fn read_batched(
        &self,
        meta: &ObjectMeta,
        start: u64,
        end: u64,
        batch: usize,
    ) -> impl Stream<Item = Result<Bytes, S3Error>> + Send + 'static {
        let bucket = self.nats.replace('_', ".");
        let lease = self.lease(&meta.nuid);
        reader::read_range(
            self.store.inner.client.clone(),
            self.stream.clone(),
            &self.nats,
            meta,
            (start, end),
            batch,
        )
        .map(move |r| {
            let _held = &lease;
            r.map_err(|e| e.into_s3(&bucket))
        })
    }

    /// Writes an object from a body stream. Nothing becomes visible unless the whole body
    /// arrives, `finish` accepts it, and `expect` holds; otherwise its chunks are purged.
    #[tracing::instrument(level = "debug", name = "nats.put", skip_all, fields(bucket = %self.nats))]
    pub async fn put<S>(
        &self,
        obj: NewObject,
        body: S,
        max_size: u64,
        expect: Expect,
        finish: impl FnOnce(&Written) -> S3Result<Finished>,
    ) -> S3Result<ObjectMeta>
    where
        S: Stream<Item = S3Result<Bytes>> + Send + Unpin,
    {
        self.store.check_connected()?;
        // The version this one replaces: looked up first when the write is conditional
        // (refused before any upload), else while the chunks are written (the compare-and-set
        // in `commit` catches a change in between).
        let ((nuid, written, guard), found) = if expect == Expect::Any {
            futures::try_join!(self.write_chunks(body, max_size), self.lookup(&obj.key))?
        } else {
            let found = self.lookup(&obj.key).await?;
            found.check(&obj.key, &expect)?;
            (self.write_chunks(body, max_size).await?, found)
        };
        let finished = finish(&written)?;
        let meta = new_version_meta(obj, nuid, &written, finished);
        let stored = self.commit(meta, &expect, found).await?;
        guard.disarm();
        Ok(stored)
    }

    /// A chunk writer for a new version and the guard that purges it unless disarmed.
    fn new_version(&self, subject: String) -> (PurgeGuard, ChunkWriter) {
        let pending = writer::Pending::default();
        let guard = PurgeGuard {
            js: self.store.inner.js.clone(),
            stream: self.stream.clone(),
            subject: Some(subject.clone()),
            pending: pending.clone(),
        };
        let writer = ChunkWriter::new(self.store.inner.js.clone(), subject, pending);
        (guard, writer)
    }

    /// Writes a body as chunks of a new version id; the guard purges them unless disarmed.
    async fn write_chunks<S>(
        &self,
        mut body: S,
        max_size: u64,
    ) -> S3Result<(String, Written, PurgeGuard)>
    where
        S: Stream<Item = S3Result<Bytes>> + Send + Unpin,
    {
        let nuid = nuid::next().to_string();
        let subject = chunk_subject(&self.nats, &nuid);
        let (guard, mut writer) = self.new_version(subject);
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if writer.len() + piece.len() as u64 > max_size {
                return Err(S3Error::new(
                    crate::error::S3Code::EntityTooLarge,
                    "Your proposed upload exceeds the maximum allowed size",
                )
                .with("MaxSizeAllowed", max_size.to_string()));
            }
            writer.write(piece).await.map_err(|e| self.err(e))?;
        }
        let written = writer.finish().await.map_err(|e| self.err(e))?;
        Ok((nuid, written, guard))
    }

    /// Publishes the metadata of a new version (compare-and-set against `found`, the version
    /// it replaces, looked up again if that changed meanwhile) and purges the replaced
    /// version's chunks.
    async fn commit(
        &self,
        mut meta: ObjectMeta,
        expect: &Expect,
        mut found: Lookup,
    ) -> S3Result<ObjectMeta> {
        for _ in 0..16 {
            found.check(&meta.key, expect)?;
            match self.publish_meta(&meta, Some(found.last_seq)).await {
                Ok(seq) => {
                    meta.meta_seq = seq;
                    if let Some(old) = found.current {
                        if old.nuid != meta.nuid && !old.nuid.is_empty() {
                            self.retire(&old.nuid).await;
                        }
                    }
                    return Ok(meta);
                }
                Err(NatsError::WrongLastSequence) => found = self.lookup(&meta.key).await?,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(self.err(NatsError::WrongLastSequence))
    }

    async fn publish_meta(
        &self,
        meta: &ObjectMeta,
        expected: Option<u64>,
    ) -> Result<u64, NatsError> {
        let info = meta.to_info(&self.nats);
        self.publish_info(&info, expected).await
    }

    #[tracing::instrument(level = "debug", name = "nats.publish_meta", skip_all, fields(bucket = %self.nats))]
    async fn publish_info(
        &self,
        info: &ObjectInfoJson,
        expected: Option<u64>,
    ) -> Result<u64, NatsError> {
        let payload = serde_json::to_vec(info).map_err(|e| NatsError::Other(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Rollup", "sub");
        if let Some(seq) = expected {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                seq.to_string().as_str(),
            );
        }
        let ack = self
            .store
            .inner
            .js
            .publish_with_headers(
                meta_subject(&self.nats, &info.name),
                headers,
                payload.into(),
            )
            .await
            .map_err(NatsError::publish)?
            .await
            .map_err(NatsError::publish)?;
        Ok(ack.sequence)
    }

    /// Rewrites an object's metadata (tags, headers) without touching its chunks,
    /// failing if the object changed since `meta` was read.
    #[tracing::instrument(level = "debug", name = "nats.update_meta", skip_all, fields(bucket = %self.nats))]
    pub async fn update_meta(&self, meta: &ObjectMeta) -> S3Result<ObjectMeta> {
        self.store.check_connected()?;
        let seq = self
            .publish_meta(meta, Some(meta.meta_seq))
            .await
            .map_err(|e| self.err(e))?;
        let mut m = meta.clone();
        m.meta_seq = seq;
        Ok(m)
    }

    /// Deletes an object (a delete marker as native clients write it, then a purge).
    #[tracing::instrument(level = "debug", name = "nats.delete", skip_all, fields(bucket = %self.nats))]
    pub async fn delete(&self, key: &str) -> S3Result<()> {
        self.store.check_connected()?;
        for _ in 0..16 {
            let Some(current) = self.head(key).await? else {
                return Ok(());
            };
            let info = ObjectInfoJson {
                name: key.to_string(),
                bucket: self.nats.clone(),
                nuid: current.nuid.clone(),
                mtime: OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok(),
                deleted: true,
                ..Default::default()
            };
            match self.publish_info(&info, Some(current.meta_seq)).await {
                Ok(_) => {
                    self.retire(&current.nuid).await;
                    return Ok(());
                }
                Err(NatsError::WrongLastSequence) => continue,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(self.err(NatsError::WrongLastSequence))
    }

    /// Marks a version as being read until the returned lease drops.
    fn lease(&self, nuid: &str) -> ReadLease {
        let subject = chunk_subject(&self.nats, nuid);
        let inner = &self.store.inner;
        inner
            .readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(subject.clone())
            .or_default()
            .count += 1;
        ReadLease {
            inner: inner.clone(),
            stream: self.stream.clone(),
            subject,
        }
    }

    /// Purges a replaced or deleted version now, or when its last reader here finishes.
    async fn retire(&self, nuid: &str) {
        let subject = chunk_subject(&self.nats, nuid);
        {
            let mut readers = self
                .store
                .inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(r) = readers.get_mut(&subject) {
                r.retired = true;
                return;
            }
        }
        purge_subject(&self.store.inner.js, &self.stream, subject).await;
    }

    /// The bucket's listing index, caught up with every write made before this call.
    #[tracing::instrument(level = "debug", name = "nats.index", skip_all, fields(bucket = %self.nats))]
    pub async fn index(&self) -> S3Result<Arc<Index>> {
        self.store.check_connected()?;
        let existing = {
            let map = self
                .store
                .inner
                .indexes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            map.get(&self.nats).filter(|i| i.is_alive()).cloned()
        };
        let index = match existing {
            Some(i) => i,
            None => {
                let i = Index::start(&self.store.inner.js, &self.stream, &self.nats)
                    .await
                    .map_err(|e| self.err(e))?;
                self.store
                    .inner
                    .indexes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.nats.clone(), i.clone());
                i
            }
        };
        index
            .catch_up(&self.store.inner.client, &self.stream, &self.nats)
            .await
            .map_err(|e| self.err(e))?;
        Ok(index)
    }
}

/// Compares an `If-Match`-style ETag (quoted or not, or `*`) with a stored one.
pub fn etag_matches(given: &str, stored: &str) -> bool {
    given
        .split(',')
        .map(|e| e.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|e| e == "*" || e == stored)
}
