//! One bucket's objects: lookups, reads, and the write paths with their single commit
//! point (see the lifecycle rules in the module docs of `store`).

use std::sync::Arc;
use std::time::Instant;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::{future, stream, FutureExt, Stream, StreamExt, TryStreamExt};
use time::OffsetDateTime;

use super::direct::{last_for_subject, next_for_subject};
use super::index::{self, Index, Need, Source, View, WalkError};
use super::lifecycle::{Lifecycle, Retired};
use super::meta::{
    absent_info, chunk_subject, digest_string, mark_chunk_before, meta_subject, tombstone_info,
    ObjectInfoJson, Record,
};
use super::scan::Reach;
use super::versions::{self, version_subject, Versioning};
use super::writer::{self, ChunkWriter, Written, OFFSET_HEADER};
use super::{purge_subject, reader, Marker, NatsError, ObjectMeta, Store};
use super::{StoreError, StoreResult, Unmet};

/// Compare-and-set attempts before a write gives up with a conflict.
const COMMIT_TRIES: usize = 64;

/// The pause after compare-and-set attempt `attempt` (from 0) lost a race, before the next:
/// random up to a bound that doubles from 1 ms to 64 ms, so that writers racing on a key
/// spread out instead of meeting again (a replicated stream refuses a publish to a subject
/// while another one to it is in flight).
async fn after_lost_race(attempt: usize) {
    use rand::Rng;
    let bound = 1u64 << attempt.min(6);
    let ms = rand::thread_rng().gen_range(0..=bound);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The headers of a metadata message: it replaces the subject's earlier ones, and with
/// `expected` only if the subject's last message is that sequence (0: none).
fn meta_headers(expected: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Rollup", "sub");
    if let Some(seq) = expected {
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            seq.to_string().as_str(),
        );
    }
    headers
}

/// Publishes a message and waits for JetStream's ack.
async fn publish_acked(
    js: &async_nats::jetstream::Context,
    subject: &str,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<async_nats::jetstream::publish::PublishAck, NatsError> {
    js.publish_with_headers(subject.to_string(), headers, payload)
        .await
        .map_err(NatsError::publish)?
        .await
        .map_err(NatsError::publish)
}

/// The headers of an atomic batch (NATS ADR-50).
const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// What a conditional write expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Any,
    /// No object may be there.
    Absent,
    /// An object must be there, whatever its ETag.
    Present,
    /// An object with one of these ETags must be there.
    Etag(Vec<String>),
}

/// A new object's attributes, chosen by the caller.
#[derive(Debug, Clone, Default)]
pub struct NewObject {
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub parts: Vec<u64>,
    /// The ACL the write sets (`None`: private).
    pub acl: Option<crate::access::acl::Acl>,
}

/// Checks a finished body before it becomes visible; returns the checksums to store
/// and their type, and the ETag (when it is not the MD5 of the content).
pub struct Finished {
    pub checksums: Vec<(String, String)>,
    pub checksum_type: Option<String>,
    pub etag: Option<String>,
}

impl Finished {
    /// A whole object's checksums (type `FULL_OBJECT` when there are any), its ETag the MD5.
    pub fn full_object(checksums: Vec<(String, String)>) -> Finished {
        let checksum_type = (!checksums.is_empty()).then(|| "FULL_OBJECT".to_string());
        Finished {
            checksums,
            checksum_type,
            etag: None,
        }
    }
}

/// What a delete did, for the response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// A delete marker was created or removed.
    pub marker: bool,
    /// The version created or removed (`Some(None)`: the null version), when versioned.
    pub version: Option<Option<String>>,
}

/// What a key's metadata subject holds now.
#[derive(Debug)]
pub(super) struct Lookup {
    pub(super) current: Record,
    /// Sequence of the last metadata message (0 if none).
    pub(super) last_seq: u64,
    at: Instant,
    /// Not looked up: a blind write's guess that the key has no current version.
    guessed: bool,
    /// Read from the stream's leader (or the only server of a one-replica stream): what a
    /// decision taken without a compare-and-set may rest on.
    settled: bool,
}

impl Lookup {
    /// The guess that the key has no current version (see [`super::new_keys`]).
    fn new_key() -> Lookup {
        Lookup {
            current: Record::Absent,
            last_seq: 0,
            at: Instant::now(),
            guessed: true,
            settled: false,
        }
    }

    fn object(&self) -> Option<&ObjectMeta> {
        match &self.current {
            Record::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Checks a conditional write's expectation against the current version.
    fn check(&self, key: &str, expect: &Expect) -> StoreResult<()> {
        match (expect, self.object()) {
            (Expect::Absent, Some(_)) => Err(StoreError::Unmet(Unmet::Exists)),
            (Expect::Etag(_) | Expect::Present, None) => {
                Err(StoreError::NoSuchKey(key.to_string()))
            }
            (Expect::Etag(tags), Some(m)) if !tags.contains(&m.etag) => {
                Err(StoreError::Unmet(Unmet::EtagDiffers))
            }
            _ => Ok(()),
        }
    }
}

/// A key's current version as a write's early check found it ([`Bucket::check_write`]): the
/// write starts from it instead of looking again (the commit looks again once it is old, and
/// its compare-and-set catches any change meanwhile).
pub struct Prior(Lookup);

/// Removes an uncommitted version's chunks unless disarmed (a failed write cleans up at
/// once). It is disarmed before the commit is sent: from there on only the collector may
/// remove the chunks, so a dropped request never purges a version that may be current.
pub(super) struct PurgeGuard {
    store: Store,
    stream: String,
    subject: Option<String>,
    pending: writer::Pending,
}

impl PurgeGuard {
    pub(super) fn disarm(mut self) {
        self.subject = None;
    }
}

impl Drop for PurgeGuard {
    fn drop(&mut self) {
        if let Some(subject) = self.subject.take() {
            let js = self.store.inner.js.clone();
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
                if let Err(e) = purge_subject(&js, &stream, subject.clone()).await {
                    // The collector finds these chunks as orphans.
                    tracing::debug!(error = ?e, subject, "could not purge an unfinished upload");
                }
            });
        }
    }
}

/// The metadata of a freshly written version (its version id and stamp are set when it
/// is committed).
pub(super) fn new_version_meta(
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
        part_checksums: Vec::new(),
        seq: written.seq,
        meta_seq: 0,
        is_link: false,
        version: None,
        stamp: 0,
        acl: obj.acl,
        segments: Vec::new(),
        spliced: None,
    }
}

/// The nuid a compacted version had while it was spliced.
fn spliced_from(r: &Record) -> Option<&str> {
    match r {
        Record::Object(m) => m.spliced.as_deref(),
        _ => None,
    }
}

/// One bucket's objects.
#[derive(Clone)]
pub struct Bucket {
    pub(super) store: Store,
    pub(super) nats: String,
    pub(super) stream: String,
    /// Versioning set by the gateway config (it then wins over the bucket's own state).
    declared: Option<Versioning>,
}

/// Tells the store's write hook of a write to one key when dropped: once the write is over,
/// whatever its outcome, and also when the request is dropped midway.
pub(super) struct WriteDone {
    store: Store,
    nats: String,
    key: String,
}

impl Drop for WriteDone {
    fn drop(&mut self) {
        self.store.wrote(&self.nats, Some(&self.key));
    }
}

impl Bucket {
    /// Held by each write path for its whole run: see [`WriteDone`].
    pub(super) fn writing(&self, key: &str) -> WriteDone {
        WriteDone {
            store: self.store.clone(),
            nats: self.nats.clone(),
            key: key.to_string(),
        }
    }

    pub(super) fn new(store: Store, nats: &str) -> Bucket {
        Bucket {
            store,
            nats: nats.to_string(),
            stream: jets3_nats::names::stream_name(nats),
            declared: None,
        }
    }

    /// This handle with the versioning the config declares for the bucket, if any.
    pub fn with_versioning(mut self, declared: Option<Versioning>) -> Bucket {
        self.declared = declared;
        self
    }

    /// The NATS bucket name.
    pub fn nats_name(&self) -> &str {
        &self.nats
    }

    pub(super) fn err(&self, e: NatsError) -> StoreError {
        e.on(&self.nats.replace('_', "."))
    }

    /// Like [`Bucket::err`], after asking NATS whether "no responders" means the bucket is
    /// gone or only between leaders.
    pub(super) async fn fail(&self, e: NatsError) -> StoreError {
        self.err(self.store.settle(&self.nats, e).await)
    }

    pub(super) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.store.inner.lifecycle
    }

    /// The bucket's versioning state (the config's, when it declares one).
    pub async fn versioning(&self) -> StoreResult<Versioning> {
        let stored = self.store.versioning(&self.nats).await?;
        match self.declared {
            Some(d) if d != stored => {
                self.store.set_versioning(&self.nats, d).await?;
                Ok(d)
            }
            _ => Ok(stored),
        }
    }

    /// The message last published on `subject`, decoded; malformed messages are counted
    /// and read as absent.
    async fn read_record(&self, subject: &str, key: &str) -> StoreResult<Option<(Record, u64)>> {
        let client = &self.store.inner.client;
        let msg = self
            .store
            .through_failover(&self.nats, || {
                last_for_subject(client, &self.stream, subject)
            })
            .await
            .map_err(|e| self.err(e))?;
        Ok(
            msg.map(|m| match Record::decode(&m.payload, Some(key), m.seq) {
                Ok(r) => (r, m.seq),
                Err(why) => {
                    self.store.malformed(subject, &why);
                    (Record::Absent, m.seq)
                }
            }),
        )
    }

    /// The key's current version and the sequence of its last metadata message, in one
    /// Direct Get.
    pub(super) async fn lookup(&self, key: &str) -> StoreResult<Lookup> {
        self.store.check_connected().await?;
        let at = Instant::now();
        Ok(
            match self
                .read_record(&meta_subject(&self.nats, key), key)
                .await?
            {
                None => Lookup {
                    current: Record::Absent,
                    last_seq: 0,
                    at,
                    guessed: false,
                    settled: false,
                },
                Some((current, last_seq)) => Lookup {
                    current,
                    last_seq,
                    at,
                    guessed: false,
                    settled: false,
                },
            },
        )
    }

    /// The key's current version, for a read or a decision taken without a compare-and-set.
    /// On a replicated stream a Direct Get may be answered by a replica that is behind (one
    /// that was partitioned or frozen, or has not yet applied a write acknowledged a moment
    /// ago), which would show an older version or none at all; so there the stream's leader
    /// answers (the JetStream API), through a leader election if one is under way. Chunks
    /// need no such care: a version's chunks never change, a replica that lacks them says so.
    pub(super) async fn settled_lookup(&self, key: &str) -> StoreResult<Lookup> {
        if self.store.replicas(&self.nats).await? <= 1 {
            let found = self.lookup(key).await?;
            return Ok(Lookup {
                settled: true,
                ..found
            });
        }
        self.store.check_connected().await?;
        let at = Instant::now();
        let subject = meta_subject(&self.nats, key);
        let got = self
            .store
            .leader_last(&self.nats, &subject)
            .await
            .map_err(|e| self.err(e))?;
        Ok(match got {
            None => Lookup {
                current: Record::Absent,
                last_seq: 0,
                at,
                guessed: false,
                settled: true,
            },
            Some((seq, payload)) => Lookup {
                current: Record::decode(&payload, Some(key), seq).unwrap_or_else(|why| {
                    self.store.malformed(&subject, &why);
                    Record::Absent
                }),
                last_seq: seq,
                at,
                guessed: false,
                settled: true,
            },
        })
    }

    /// What the key's metadata subject holds: its current version (object or marker).
    pub async fn current(&self, key: &str) -> StoreResult<Record> {
        Ok(self.settled_lookup(key).await?.current)
    }

    /// The object's metadata, or `None` if there is no such key.
    pub async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        Ok(self.settled_lookup(key).await?.current.object())
    }

    /// Checks a conditional write's expectation against the key's current version, which it
    /// returns for the write to start from ([`Bucket::put`]).
    pub async fn check_write(&self, key: &str, expect: &Expect) -> StoreResult<Prior> {
        let mut found = self.lookup(key).await?;
        if found.check(key, expect).is_err() {
            // Refused without a compare-and-set: only on what the stream leader holds.
            found = self.settle(key, found).await?;
        }
        found.check(key, expect)?;
        Ok(Prior(found))
    }

    /// `found` if a decision taken without a compare-and-set may rest on it, else the key's
    /// current version as the stream's leader holds it ([`Bucket::settled_lookup`]).
    async fn settle(&self, key: &str, found: Lookup) -> StoreResult<Lookup> {
        if found.settled || self.store.replicas(&self.nats).await? <= 1 {
            return Ok(found);
        }
        self.settled_lookup(key).await
    }

    /// One version of a key (`None`: the null version): the current one or a noncurrent
    /// one; `None` when there is no such version.
    pub async fn version(&self, key: &str, version: Option<&str>) -> StoreResult<Option<Record>> {
        let mut found = self.settled_lookup(key).await?;
        // Each further read follows a write to the key that landed meanwhile.
        for _ in 0..8 {
            if found.current.version() == Some(version) {
                return Ok(Some(found.current));
            }
            if self.versioning().await? == Versioning::Off {
                return Ok(None);
            }
            let old = self
                .noncurrent(key, version)
                .await?
                .map(|(r, _)| r)
                .filter(|r| r.version() == Some(version));
            if old.is_some() {
                return Ok(old);
            }
            // A write between the two reads may have moved the version: a new null
            // version becomes current before the noncurrent one is dropped.
            let again = self.settled_lookup(key).await?;
            if again.last_seq == found.last_seq {
                return Ok(None);
            }
            found = again;
        }
        Ok(None)
    }

    /// A noncurrent version's record and sequence: on a replicated stream from its leader,
    /// as [`Bucket::settled_lookup`] reads the current one (a replica behind would answer
    /// NoSuchVersion for a version that exists, or show one deleted since). Malformed
    /// metadata reads as absent.
    async fn noncurrent(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> StoreResult<Option<(Record, u64)>> {
        let subject = version_subject(&self.nats, key, version);
        if self.store.replicas(&self.nats).await? <= 1 {
            return self.read_record(&subject, key).await;
        }
        self.store.check_connected().await?;
        let got = self
            .store
            .leader_last(&self.nats, &subject)
            .await
            .map_err(|e| self.err(e))?;
        Ok(got.map(
            |(seq, payload)| match Record::decode(&payload, Some(key), seq) {
                Ok(r) => (r, seq),
                Err(why) => {
                    self.store.malformed(&subject, &why);
                    (Record::Absent, seq)
                }
            },
        ))
    }

    /// The key's version (current or noncurrent) whose chunks are `nuid`, if one is. A
    /// Complete taking over a dead one's decides from it whether that one committed, so on a
    /// replicated stream the leader answers (a replica behind would say no: a second commit).
    pub(super) async fn version_with_chunks(
        &self,
        key: &str,
        nuid: &str,
    ) -> StoreResult<Option<ObjectMeta>> {
        let current = self.settled_lookup(key).await?.current;
        if current.identity() == Some(nuid) || spliced_from(&current) == Some(nuid) {
            return Ok(current.object());
        }
        if !self.versioning().await?.has_history() {
            return Ok(None);
        }
        Ok(self
            .noncurrent_all(key)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .find(|r| r.identity() == Some(nuid) || spliced_from(r) == Some(nuid))
            .and_then(Record::object))
    }

    /// Every noncurrent version of a key (objects and markers), with their sequences. Writes
    /// decide from them (which version becomes current, whether a lapsed Complete committed),
    /// so on a replicated stream they are read as far as the leader holds them.
    async fn noncurrent_all(&self, key: &str) -> StoreResult<Vec<(Record, u64)>> {
        let filter = versions::key_versions_filter(&self.nats, key);
        let reach = match self.store.replicas(&self.nats).await? {
            0 | 1 => Reach::Any,
            _ => Reach::Leader,
        };
        let (js, client) = (&self.store.inner.js, &self.store.inner.client);
        let msgs = super::scan::last_messages(js, client, &self.stream, &filter, reach)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for m in msgs {
            match Record::decode(&m.payload, Some(key), m.seq) {
                Ok(r) if r.is_version() => out.push((r, m.seq)),
                Ok(_) => {}
                Err(why) => self.store.malformed(&m.subject, &why),
            }
        }
        Ok(out)
    }

    /// Streams bytes `[start, end)` of an object.
    pub fn read(
        &self,
        meta: &ObjectMeta,
        start: u64,
        end: u64,
    ) -> impl Stream<Item = StoreResult<Bytes>> + Send + 'static {
        self.read_batched(meta, start, end, reader::CLIENT_BATCH)
    }

    pub(super) fn read_batched(
        &self,
        meta: &ObjectMeta,
        start: u64,
        end: u64,
        batch: usize,
    ) -> impl Stream<Item = StoreResult<Bytes>> + Send + 'static {
        let kept = &self.store.inner.small_reads;
        if kept.covers(meta) && start < end && end <= meta.size {
            let range = start as usize..end as usize;
            if let Some(body) = kept
                .get(&self.stream, meta)
                .filter(|b| b.len() >= range.end)
            {
                let hit = future::ready(Ok(body.slice(range))).left_future();
                return stream::once(hit).left_stream();
            }
            // Read whole (it is one chunk) and kept, then cut to the range.
            let (this, meta) = (self.clone(), meta.clone());
            let read = async move {
                let pieces: Vec<Bytes> = this
                    .read_chunks(&meta, 0, meta.size, batch)
                    .try_collect()
                    .await?;
                let body = match <[Bytes; 1]>::try_from(pieces) {
                    Ok([one]) => one,
                    Err(pieces) => pieces.concat().into(),
                };
                if body.len() as u64 != meta.size {
                    let bucket = this.nats.replace('_', ".");
                    return Err(NatsError::Other("object chunks are missing".into()).on(&bucket));
                }
                this.store.inner.small_reads.put(&this.stream, &meta, &body);
                Ok(body.slice(range))
            };
            return stream::once(read.right_future()).left_stream();
        }
        self.read_chunks(meta, start, end, batch).right_stream()
    }

    /// Streams bytes `[start, end)` of an object from its chunks in NATS.
    fn read_chunks(
        &self,
        meta: &ObjectMeta,
        start: u64,
        end: u64,
        batch: usize,
    ) -> impl Stream<Item = StoreResult<Bytes>> + Send + 'static {
        let bucket = self.nats.replace('_', ".");
        // A read that fits one batch fetches everything at once; a longer one holds its
        // version through the read registry while it runs.
        let span = end.saturating_sub(start);
        let hold = (span > (batch * super::CHUNK_SIZE) as u64)
            .then(|| self.lifecycle().hold(&self.nats, &meta.nuid));
        let inner = &self.store.inner;
        let (nats, stream) = (
            (inner.client.clone(), inner.js.clone()),
            self.stream.clone(),
        );
        let pieces = if meta.segments.is_empty() {
            reader::read_range(nats, stream, &self.nats, meta, (start, end), batch).left_stream()
        } else {
            // A spliced version: each part's share of the range, in order.
            let mut ranges = Vec::new();
            let mut at = 0u64;
            for s in &meta.segments {
                let (lo, hi) = (start.max(at), end.min(at + s.size));
                if lo < hi {
                    ranges.push((s.as_object(), lo - at, hi - at));
                }
                at += s.size;
            }
            let bucket_name = self.nats.clone();
            stream::iter(ranges)
                .flat_map(move |(part, lo, hi)| {
                    let (nats, stream) = (nats.clone(), stream.clone());
                    reader::read_range(nats, stream, &bucket_name, &part, (lo, hi), batch)
                })
                .right_stream()
        };
        pieces.map(move |r| {
            let _held = &hold;
            r.map_err(|e| e.on(&bucket))
        })
    }

    /// Writes an object from a body stream. Nothing becomes visible unless the whole body
    /// arrives, `finish` accepts it, and `expect` holds. `prior`: what a [`Bucket::check_write`]
    /// of this write found.
    #[tracing::instrument(level = "debug", name = "nats.put", skip_all, fields(bucket = %self.nats))]
    pub async fn put<S, E>(
        &self,
        obj: NewObject,
        body: S,
        max_size: u64,
        (expect, prior): (Expect, Option<Prior>),
        finish: impl FnOnce(&Written) -> StoreResult<Finished>,
    ) -> StoreResult<ObjectMeta>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<StoreError>,
    {
        let _done = self.writing(&obj.key);
        self.store.check_connected().await?;
        // The version this one replaces: looked up first when the write is conditional
        // (refused before any upload); for a blind one guessed absent while the bucket's
        // blind writes mostly create keys, else looked up while the chunks are written (the
        // compare-and-set in `commit` catches a wrong guess or a change in between).
        let new_keys = &self.store.inner.new_keys;
        let hold = self.store.batched_writes(&self.nats).await?;
        let ((nuid, written, guard), found) = match prior {
            Some(Prior(found)) => (self.write_chunks(body, max_size, hold).await?, found),
            None if expect == Expect::Any && new_keys.expect_new(&self.nats) => (
                self.write_chunks(body, max_size, hold).await?,
                Lookup::new_key(),
            ),
            None if expect == Expect::Any => {
                let (w, found) = futures::try_join!(
                    self.write_chunks(body, max_size, hold),
                    self.lookup(&obj.key)
                )?;
                new_keys.saw(&self.nats, found.last_seq != 0);
                (w, found)
            }
            None => {
                let Prior(found) = self.check_write(&obj.key, &expect).await?;
                (self.write_chunks(body, max_size, hold).await?, found)
            }
        };
        let finished = finish(&written)?;
        let key = obj.key.clone();
        let meta = new_version_meta(obj, nuid, &written, finished);
        self.commit_written(&key, meta, &expect, found, guard, &written)
            .await
    }

    /// Commits a version whose chunks `guard` covers (see [`Bucket::commit`]).
    pub(super) async fn commit_written(
        &self,
        key: &str,
        meta: ObjectMeta,
        expect: &Expect,
        found: Lookup,
        guard: PurgeGuard,
        written: &Written,
    ) -> StoreResult<ObjectMeta> {
        self.commit_version(key, meta, expect, found, guard, written)
            .await
            .map_err(|(Committed::No(e) | Committed::Unknown(e))| e)
    }

    /// Like [`Bucket::commit_written`]; an error says whether the version may have been
    /// published.
    pub(super) async fn commit_version(
        &self,
        key: &str,
        meta: ObjectMeta,
        expect: &Expect,
        found: Lookup,
        guard: PurgeGuard,
        written: &Written,
    ) -> Result<ObjectMeta, Committed> {
        let until = written.last_write + self.lifecycle().timing.write_pause();
        if Instant::now() > until {
            // Too late: the collector may take these chunks for an orphan.
            return Err(Committed::No(StoreError::TooSlow(
                "The upload took too long to complete.",
            )));
        }
        let nuid = meta.nuid.clone();
        guard.disarm();
        match self
            .commit(
                key,
                Record::Object(Box::new(meta)),
                expect,
                found,
                Some(until),
                written.held.clone(),
            )
            .await
        {
            Ok(Record::Object(m)) => Ok(*m),
            Ok(_) => Err(Committed::Unknown(StoreError::internal(
                "commit returned no object",
            ))),
            Err(Committed::No(e)) => {
                // Never published: nothing can reference these chunks.
                let subject = chunk_subject(&self.nats, &nuid);
                if let Err(p) = purge_subject(&self.store.inner.js, &self.stream, subject).await {
                    tracing::debug!(error = ?p, "could not purge a refused version");
                }
                Err(Committed::No(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Commits a version whose chunks something else keeps until then (a spliced version's
    /// parts): nothing to purge if it is refused.
    pub(super) async fn commit_new(
        &self,
        key: &str,
        meta: ObjectMeta,
        expect: &Expect,
        found: Lookup,
    ) -> Result<ObjectMeta, Committed> {
        match self
            .commit(
                key,
                Record::Object(Box::new(meta)),
                expect,
                found,
                None,
                None,
            )
            .await?
        {
            Record::Object(m) => Ok(*m),
            _ => Err(Committed::Unknown(StoreError::internal(
                "commit returned no object",
            ))),
        }
    }

    /// A chunk writer for a new version and the guard that purges it unless disarmed.
    pub(super) fn new_version(&self, subject: String) -> (PurgeGuard, ChunkWriter) {
        let pending = writer::Pending::default();
        let guard = PurgeGuard {
            store: self.store.clone(),
            stream: self.stream.clone(),
            subject: Some(subject.clone()),
            pending: pending.clone(),
        };
        let writer = ChunkWriter::new(
            self.store.inner.js.clone(),
            subject,
            pending,
            self.lifecycle().timing.write_pause(),
        );
        (guard, writer)
    }

    /// Writes a body as chunks of a new version id; the guard purges them unless disarmed.
    /// `hold`: a body of one chunk is kept for the commit instead ([`Written::held`]).
    pub(super) async fn write_chunks<S, E>(
        &self,
        mut body: S,
        max_size: u64,
        hold: bool,
    ) -> StoreResult<(String, Written, PurgeGuard)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: Into<StoreError>,
    {
        let nuid = nuid::next().to_string();
        let subject = chunk_subject(&self.nats, &nuid);
        let (guard, mut writer) = self.new_version(subject);
        if hold {
            writer.hold_single_chunk();
        }
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(Into::into)?;
            writer.check_pause()?;
            if writer.len() + piece.len() as u64 > max_size {
                return Err(StoreError::TooLarge { max: max_size });
            }
            if let Err(e) = writer.write(piece).await {
                return Err(self.fail(e).await);
            }
        }
        let written = match writer.finish().await {
            Ok(w) => w,
            Err(e) => return Err(self.fail(e).await),
        };
        Ok((nuid, written, guard))
    }

    /// Makes `new` (an object, a delete marker, or `Absent` for an unversioned delete) the
    /// key's current version: a compare-and-set on the key's metadata subject against
    /// `found` (looked up again whenever it changed). The version it replaces is preserved
    /// as noncurrent (versioning) or retired. Errors say whether `new` may have been
    /// published. `until`: when the chunks `new` references may start to look like an
    /// orphan's to the collector; no attempt to publish it runs past that. `held`: the one
    /// chunk of `new`, not yet published: it goes with the metadata as one atomic batch, so
    /// both land or neither does (two publishes if NATS takes no batch).
    async fn commit(
        &self,
        key: &str,
        mut new: Record,
        expect: &Expect,
        mut found: Lookup,
        until: Option<Instant>,
        mut held: Option<Bytes>,
    ) -> Result<Record, Committed> {
        let mode = self.versioning().await.map_err(Committed::No)?;
        let pause = self.lifecycle().timing.write_pause();
        for attempt in 0..COMMIT_TRIES {
            if found.at.elapsed() > pause / 2 {
                found = self.lookup(key).await.map_err(Committed::No)?;
            }
            // A refused condition, or a delete of a key that shows no object, ends the commit
            // without a compare-and-set: only on what the stream leader holds.
            let unmet = found.check(key, expect).is_err();
            if unmet || matches!(new, Record::Absent) && found.object().is_none() {
                found = self.settle(key, found).await.map_err(Committed::No)?;
            }
            if let (Some(ours), Some(theirs)) = (new.identity(), found.current.identity()) {
                if ours == theirs {
                    // An attempt whose answer was lost did land: that is the commit.
                    return Ok(found.current);
                }
            }
            found.check(key, expect).map_err(Committed::No)?;
            if matches!(new, Record::Absent) && found.object().is_none() {
                return Ok(Record::Absent);
            }
            let stamp = versions::next_stamp(found.current.stamp());
            let version = (mode == Versioning::Enabled).then(|| versions::new_version_id(stamp));
            match &mut new {
                Record::Object(m) => (m.stamp, m.version) = (stamp, version),
                Record::Marker(m) => (m.stamp, m.version) = (stamp, version),
                _ => {}
            }
            // What becomes of the version being replaced.
            let keep = match mode {
                Versioning::Off => false,
                Versioning::Enabled => true,
                Versioning::Suspended => matches!(found.current.version(), Some(Some(_))),
            };
            let mut retire = None;
            if found.current.is_version() {
                let preserved = keep
                    && self
                        .preserve(key, &found.current)
                        .await
                        .map_err(Committed::No)?;
                if !preserved {
                    retire = Some(&found.current);
                }
            }
            // A new null version also replaces a noncurrent null version.
            let stale_null = match mode {
                Versioning::Suspended => self
                    .noncurrent(key, None)
                    .await
                    .map_err(Committed::No)?
                    .filter(|(r, _)| r.is_version()),
                _ => None,
            };
            let mut info = match &new {
                Record::Absent => {
                    absent_info(&self.nats, key, found.object().map_or("", |m| &m.nuid))
                }
                other => match other.to_info(&self.nats) {
                    Some(i) => i,
                    None => return Err(Committed::No(StoreError::internal("nothing to commit"))),
                },
            };
            let batch = match (&held, &new) {
                (Some(chunk), Record::Object(m)) => {
                    mark_chunk_before(&mut info);
                    Some((chunk_subject(&self.nats, &m.nuid), chunk.clone()))
                }
                _ => None,
            };
            if until.is_some_and(|u| Instant::now() >= u) {
                // NATS held this commit up (an election, a lost answer): too late now.
                return Err(Committed::No(self.err(NatsError::TimedOut)));
            }
            let payload = serde_json::to_vec(&info)
                .map_err(|e| Committed::No(self.err(NatsError::other(e))))?;
            let subject = meta_subject(&self.nats, key);
            let published = match batch {
                Some(batch) => {
                    self.publish_batch(batch, &subject, payload.into(), found.last_seq, until)
                        .await
                }
                None => {
                    self.publish_raw(&subject, payload.into(), Some(found.last_seq), until)
                        .await
                }
            };
            if found.guessed {
                match &published {
                    Ok(_) => self.store.inner.new_keys.guessed(&self.nats, false),
                    Err(NatsError::WrongLastSequence) => {
                        self.store.inner.new_keys.guessed(&self.nats, true)
                    }
                    Err(_) => {}
                }
            }
            match published {
                Ok(seq) => {
                    match &mut new {
                        Record::Object(m) if held.is_some() => {
                            // The batch's chunk sits right before its metadata.
                            m.seq = Some((seq - 1, seq - 1));
                            m.meta_seq = seq;
                        }
                        Record::Object(m) => m.meta_seq = seq,
                        Record::Marker(m) => m.meta_seq = seq,
                        _ => {}
                    }
                    if let Some(old) = retire {
                        if old.identity() != new.identity() {
                            self.retire_version(old, key, "replaced").await;
                        }
                    }
                    if let Some((old, seq)) = stale_null {
                        self.bury(key, &old, seq).await;
                    }
                    return Ok(new);
                }
                Err(NatsError::WrongLastSequence) => {
                    after_lost_race(attempt).await;
                    // Lost to another writer, or to a replica behind that showed an older
                    // version: the leader says which.
                    found = self.settled_lookup(key).await.map_err(Committed::Unknown)?;
                }
                Err(NatsError::BatchRefused) => {
                    // Nothing of the batch landed: the chunk alone first, then the metadata.
                    if let (Some(chunk), Record::Object(m)) = (held.take(), &mut new) {
                        let seq = self
                            .publish_chunk(&m.nuid, chunk)
                            .await
                            .map_err(|e| Committed::No(self.err(e)))?;
                        m.seq = Some((seq, seq));
                    }
                }
                Err(
                    e @ (NatsError::Closing | NatsError::NoStream | NatsError::StorageFull(..)),
                ) => return Err(Committed::No(self.err(e))),
                Err(e) => return Err(Committed::Unknown(self.err(e))),
            }
        }
        Err(Committed::Unknown(self.err(NatsError::WrongLastSequence)))
    }

    /// Keeps the current version `cur` as a noncurrent one before a commit replaces it;
    /// `false` when it was deleted by id meanwhile (it is then not kept).
    async fn preserve(&self, key: &str, cur: &Record) -> StoreResult<bool> {
        let Some(info) = cur.to_info(&self.nats) else {
            return Ok(true);
        };
        let version = cur.version().flatten();
        let subject = version_subject(&self.nats, key, version);
        let payload = serde_json::to_vec(&info).map_err(StoreError::internal)?;
        let replicated = self.store.replicas(&self.nats).await? > 1;
        for attempt in 0..COMMIT_TRIES {
            // After a refused compare-and-set, the leader says what the subject holds (a
            // replica behind may have shown an older message, or none).
            let existing = if attempt > 0 && replicated {
                self.store.leader_last(&self.nats, &subject).await
            } else {
                last_for_subject(&self.store.inner.client, &self.stream, &subject)
                    .await
                    .map(|m| m.map(|m| (m.seq, m.payload)))
            }
            .map_err(|e| self.err(e))?;
            let (expected, replaced) = match &existing {
                None => (0, None),
                Some((_, p)) if *p == payload => return Ok(true),
                Some((seq, p)) => match Record::decode(p, Some(key), *seq) {
                    Ok(Record::Gone { stamp }) if Some(stamp) == cur.stamp() => return Ok(false),
                    // A stale copy of this version, an older null version, or junk.
                    Ok(r) => (*seq, Some(r)),
                    Err(_) => (*seq, None),
                },
            };
            match self
                .publish_raw(&subject, payload.clone().into(), Some(expected), None)
                .await
            {
                Ok(_) => {
                    if let Some(old) = replaced {
                        if old.identity() != cur.identity() {
                            self.retire_version(&old, key, "replaced").await;
                        }
                    }
                    return Ok(true);
                }
                Err(NatsError::WrongLastSequence) => after_lost_race(attempt).await,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(self.err(NatsError::WrongLastSequence))
    }

    /// Replaces noncurrent version `old` (at sequence `seq`) by a tombstone and retires it.
    async fn bury(&self, key: &str, old: &Record, seq: u64) {
        let version = old.version().flatten();
        let info = tombstone_info(&self.nats, key, version, old.stamp().unwrap_or(0));
        let subject = version_subject(&self.nats, key, version);
        match self.publish_info(&subject, &info, Some(seq)).await {
            Ok(_) => self.retire_version(old, key, "replaced").await,
            Err(e) => tracing::debug!(error = ?e, key, "noncurrent version not buried"),
        }
    }

    /// Retires a version's chunks; on a NATS with no room left even for the record, frees
    /// them at once (the one case a request purges: a full bucket or server needs the room
    /// more than a read of a version nobody can see any more).
    pub(super) async fn retire(&self, nuid: &str, size: u64, key: &str, why: &str) {
        let record = Retired {
            key: key.to_string(),
            size,
            why: why.to_string(),
            owner: None,
        };
        self.retire_record(nuid, record).await
    }

    /// Retires every chunk subject of a version (a spliced one's parts name the version,
    /// whose reads hold them).
    pub(super) async fn retire_version(&self, version: &Record, key: &str, why: &str) {
        let owner = match version {
            Record::Object(m) if !m.segments.is_empty() => Some(m.nuid.clone()),
            _ => None,
        };
        for (nuid, size) in version.chunk_sets() {
            let record = Retired {
                key: key.to_string(),
                size,
                why: why.to_string(),
                owner: owner.clone(),
            };
            self.retire_record(nuid, record).await;
        }
    }

    async fn retire_record(&self, nuid: &str, record: Retired) {
        let key = record.key.clone();
        if let Err(e) = self.lifecycle().retire(&self.nats, nuid, record).await {
            tracing::warn!(bucket = %self.nats, key, error = ?e, "no room for a retire record: purging the replaced version now");
            let subject = chunk_subject(&self.nats, nuid);
            if let Err(e) = purge_subject(&self.store.inner.js, &self.stream, subject).await {
                tracing::warn!(bucket = %self.nats, error = ?e, "could not purge the replaced version");
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "nats.publish_meta", skip_all, fields(bucket = %self.nats))]
    async fn publish_info(
        &self,
        subject: &str,
        info: &ObjectInfoJson,
        expected: Option<u64>,
    ) -> Result<u64, NatsError> {
        let payload = serde_json::to_vec(info).map_err(NatsError::other)?;
        self.publish_raw(subject, payload.into(), expected, None)
            .await
    }

    /// Publishes a version's one chunk and its metadata (on `subject`, a compare-and-set
    /// against `expected`) as one atomic batch, through a leader election, never past
    /// `until`: both land or neither does. The chunk goes without a reply asked for (its
    /// errors come back as the commit's); an attempt is a new batch.
    async fn publish_batch(
        &self,
        (chunk_subject, chunk): (String, Bytes),
        subject: &str,
        payload: Bytes,
        expected: u64,
        until: Option<Instant>,
    ) -> Result<u64, NatsError> {
        let (client, js) = (&self.store.inner.client, &self.store.inner.js);
        let ack = self
            .store
            .through_failover_until(&self.nats, until, || async {
                let id = nuid::next().to_string();
                let mut first = HeaderMap::new();
                first.insert(BATCH_ID, id.as_str());
                first.insert(BATCH_SEQUENCE, "1");
                first.insert(OFFSET_HEADER, "0");
                client
                    .publish_with_headers(chunk_subject.clone(), first, chunk.clone())
                    .await
                    .map_err(NatsError::other)?;
                let mut last = meta_headers(Some(expected));
                last.insert(BATCH_ID, id.as_str());
                last.insert(BATCH_SEQUENCE, "2");
                last.insert(BATCH_COMMIT, "1");
                publish_acked(js, subject, last, payload.clone()).await
            })
            .await?;
        Ok(ack.sequence)
    }

    /// Publishes a version's one chunk on its own (an atomic batch refused); its sequence.
    async fn publish_chunk(&self, nuid: &str, chunk: Bytes) -> Result<u64, NatsError> {
        let mut headers = HeaderMap::new();
        headers.insert(OFFSET_HEADER, "0");
        let subject = chunk_subject(&self.nats, nuid);
        let ack = publish_acked(&self.store.inner.js, &subject, headers, chunk).await?;
        Ok(ack.sequence)
    }

    /// Publishes a metadata message through a leader election, never past `until`.
    pub(super) async fn publish_raw(
        &self,
        subject: &str,
        payload: Bytes,
        expected: Option<u64>,
        until: Option<Instant>,
    ) -> Result<u64, NatsError> {
        let mut headers = meta_headers(expected);
        // Tried again through a leader election: the message id makes NATS store it once
        // even when an attempt whose ack was lost did land.
        headers.insert("Nats-Msg-Id", nuid::next().to_string().as_str());
        let js = &self.store.inner.js;
        let ack = self
            .store
            .through_failover_until(&self.nats, until, || async {
                publish_acked(js, subject, headers.clone(), payload.clone()).await
            })
            .await?;
        Ok(ack.sequence)
    }

    /// Rewrites a version's metadata (tags, checksums) without touching its chunks,
    /// failing if the version changed since `meta` was read.
    #[tracing::instrument(level = "debug", name = "nats.update_meta", skip_all, fields(bucket = %self.nats))]
    pub async fn update_meta(&self, meta: &ObjectMeta) -> StoreResult<ObjectMeta> {
        let _done = self.writing(&meta.key);
        self.store.check_connected().await?;
        // Which subject holds the version decides where the compare-and-set goes.
        let found = self.settled_lookup(&meta.key).await?;
        let subject = if found.current.version() == Some(meta.version.as_deref()) {
            meta_subject(&self.nats, &meta.key)
        } else if self.versioning().await? == Versioning::Off {
            // Without versioning a version that is not current is gone (deleted or
            // replaced since `meta` was read), and the stream has no V subjects to try.
            return Err(self.err(NatsError::WrongLastSequence));
        } else {
            version_subject(&self.nats, &meta.key, meta.version.as_deref())
        };
        let seq = self
            .publish_info(&subject, &meta.to_info(&self.nats), Some(meta.meta_seq))
            .await
            .map_err(|e| self.err(e))?;
        let mut m = meta.clone();
        m.meta_seq = seq;
        Ok(m)
    }

    /// DeleteObject without a version id: removes the current version (retired), or with
    /// versioning adds a delete marker. Checks `expect` on the version the delete replaces.
    #[tracing::instrument(level = "debug", name = "nats.delete", skip_all, fields(bucket = %self.nats))]
    pub async fn delete(&self, key: &str, expect: &Expect) -> StoreResult<DeleteOutcome> {
        let _done = self.writing(key);
        self.store.check_connected().await?;
        let mode = self.versioning().await?;
        let found = self.lookup(key).await?;
        let new = match mode {
            Versioning::Off => Record::Absent,
            _ => Record::Marker(Marker {
                key: key.to_string(),
                version: None,
                stamp: 0,
                modified: OffsetDateTime::now_utc(),
                meta_seq: 0,
            }),
        };
        match self.commit(key, new, expect, found, None, None).await {
            Ok(Record::Marker(m)) => Ok(DeleteOutcome {
                marker: true,
                version: Some(m.version),
            }),
            Ok(_) => Ok(DeleteOutcome {
                marker: false,
                version: None,
            }),
            Err(Committed::No(e) | Committed::Unknown(e)) => Err(e),
        }
    }

    /// DeleteObject with a version id (`None`: the null version): removes that version for
    /// good; when it was current, the newest noncurrent version becomes current.
    #[tracing::instrument(level = "debug", name = "nats.delete_version", skip_all, fields(bucket = %self.nats))]
    pub async fn delete_version(
        &self,
        key: &str,
        version: Option<&str>,
    ) -> StoreResult<DeleteOutcome> {
        let _done = self.writing(key);
        self.store.check_connected().await?;
        let gone = DeleteOutcome {
            marker: false,
            version: Some(version.map(str::to_string)),
        };
        if self.versioning().await? == Versioning::Off {
            if version.is_some() {
                return Ok(gone);
            }
            return self.delete(key, &Expect::Any).await;
        }
        for attempt in 0..COMMIT_TRIES {
            // "No such version" ends it without a compare-and-set: asked of the leader.
            let found = self.settled_lookup(key).await?;
            let outcome = DeleteOutcome {
                marker: matches!(found.current, Record::Marker(_)),
                ..gone.clone()
            };
            if found.current.version() == Some(version) {
                if self.delete_current(key, version, &found).await? {
                    self.retire_version(&found.current, key, "deleted").await;
                    self.no_deleted_current(key).await?;
                    return Ok(outcome);
                }
                after_lost_race(attempt).await;
                continue;
            }
            let Some((old, seq)) = self.noncurrent(key, version).await? else {
                return Ok(gone);
            };
            if old.version() != Some(version) {
                return Ok(gone);
            }
            let info = tombstone_info(&self.nats, key, version, old.stamp().unwrap_or(0));
            match self
                .publish_info(&version_subject(&self.nats, key, version), &info, Some(seq))
                .await
            {
                Ok(_) => {
                    self.retire_version(&old, key, "deleted").await;
                    self.no_deleted_current(key).await?;
                    return Ok(DeleteOutcome {
                        marker: matches!(old, Record::Marker(_)),
                        ..gone
                    });
                }
                Err(NatsError::WrongLastSequence) => after_lost_race(attempt).await,
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(self.err(NatsError::WrongLastSequence))
    }

    /// Ends a race of two deletes by id: one of the current version makes the next newest
    /// current while the other deletes that one as noncurrent, and the version deleted comes
    /// back. Whichever of the two looks last finds the current version tombstoned (its
    /// version subject says deleted, with the same stamp) and deletes it as current, the next
    /// newest becoming current in its place, until the current version is one not deleted.
    async fn no_deleted_current(&self, key: &str) -> StoreResult<()> {
        for _ in 0..COMMIT_TRIES {
            let found = self.settled_lookup(key).await?;
            let Some(version) = found.current.version() else {
                return Ok(());
            };
            let deleted = match self.noncurrent(key, version).await? {
                Some((Record::Gone { stamp }, _)) => Some(stamp) == found.current.stamp(),
                _ => false,
            };
            if !deleted {
                return Ok(());
            }
            tracing::debug!(
                key,
                ?version,
                "a version deleted by id was made current meanwhile: deleting it again"
            );
            // Lost to another write of the key: look again at once (it made progress).
            self.delete_current(key, version, &found).await?;
        }
        Err(self.err(NatsError::WrongLastSequence))
    }

    /// Deletes the current version by id: a tombstone on its version subject (so no writer
    /// preserves it any more), then the newest noncurrent version becomes current. `false`
    /// when the key changed meanwhile (the caller looks again).
    async fn delete_current(
        &self,
        key: &str,
        version: Option<&str>,
        found: &Lookup,
    ) -> StoreResult<bool> {
        let stamp = found.current.stamp().unwrap_or(0);
        let subject = version_subject(&self.nats, key, version);
        self.publish_info(
            &subject,
            &tombstone_info(&self.nats, key, version, stamp),
            None,
        )
        .await
        .map_err(|e| self.err(e))?;
        let newest = self
            .noncurrent_all(key)
            .await?
            .into_iter()
            .filter(|(r, _)| r.version() != Some(version) && r.stamp() < Some(stamp))
            .max_by_key(|(r, _)| r.stamp());
        let info = match newest {
            Some((p, seq)) => {
                // Touch it first, so that a delete of it by id that read it before fails
                // its compare-and-set and finds it current instead.
                let subject = version_subject(&self.nats, key, p.version().flatten());
                let info = p
                    .to_info(&self.nats)
                    .ok_or_else(|| StoreError::internal("noncurrent version without info"))?;
                match self.publish_info(&subject, &info, Some(seq)).await {
                    Ok(_) => {}
                    Err(NatsError::WrongLastSequence) => return Ok(false),
                    Err(e) => return Err(self.err(e)),
                }
                info
            }
            None => absent_info(&self.nats, key, found.object().map_or("", |m| &m.nuid)),
        };
        match self
            .publish_info(&meta_subject(&self.nats, key), &info, Some(found.last_seq))
            .await
        {
            Ok(_) => Ok(true),
            Err(NatsError::WrongLastSequence) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The bucket's listing index, caught up with every write made before this call.
    #[tracing::instrument(level = "debug", name = "nats.index", skip_all, fields(bucket = %self.nats))]
    pub async fn index(&self) -> StoreResult<Arc<Index>> {
        self.store.check_connected().await?;
        let history = self.versioning().await?.has_history();
        let inner = &self.store.inner;
        if let Some(i) = self.live_index(history) {
            let max_age = inner.lifecycle.timing.orphan_after / 2;
            i.refresh(&inner.snapshots, &inner.js, &self.stream, max_age)
                .await;
            return self.caught_up(i).await;
        }
        // One start at a time: requests meanwhile wait for it, then find it.
        let starting = inner.index_start.lock().await;
        let index = match self.live_index(history) {
            Some(i) => i,
            None => {
                let i = match self.start_index(history).await {
                    Ok(Some(i)) => i,
                    Ok(None) => return Err(StoreError::Loading),
                    Err(e) => return Err(self.fail(e).await),
                };
                inner
                    .indexes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(self.nats.clone(), i.clone());
                i
            }
        };
        drop(starting);
        self.caught_up(index).await
    }

    /// The bucket's index if one is running and follows what `history` asks.
    fn live_index(&self, history: bool) -> Option<Arc<Index>> {
        let map = self
            .store
            .inner
            .indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(&self.nats)
            .filter(|i| i.is_alive() && i.has_history() == history)
            .cloned()
    }

    /// `index` once it has caught up with the stream, as far as the stream's leader holds
    /// it: on a replicated stream the leader says how far that is (the JetStream API), since
    /// a Direct Get may be answered by a replica that is behind and does not have a version
    /// just written yet (read-after-write across gateways).
    async fn caught_up(&self, index: Arc<Index>) -> StoreResult<Arc<Index>> {
        let client = &self.store.inner.client;
        let leader = self.store.replicas(&self.nats).await? > 1;
        let next = |filter: String, from: u64| async move {
            if leader {
                self.store.leader_next(&self.nats, &filter, from).await
            } else {
                let m = next_for_subject(client, &self.stream, &filter, from).await?;
                Ok(m.map(|m| m.seq))
            }
        };
        // A bucket deleted through another gateway answers "no responders" here.
        match index.catch_up(next).await {
            Ok(()) => Ok(index),
            Err(index::CatchUpError::Loading) => Err(StoreError::Loading),
            Err(index::CatchUpError::Nats(e)) => Err(self.fail(e).await),
        }
    }

    /// Starts the bucket's index, from its snapshot when a usable one exists. `None`: there
    /// is none and the bucket is too large to replay into memory (`cache.replayMaxSubjects`);
    /// listings wait for the collector's leader to write it.
    async fn start_index(&self, history: bool) -> Result<Option<Arc<Index>>, NatsError> {
        let inner = &self.store.inner;
        let stream = inner.js.get_stream(&self.stream).await.map_err(|e| {
            if super::is_stream_not_found(&e) {
                NatsError::NoStream
            } else {
                NatsError::other(e)
            }
        })?;
        let info = stream.cached_info();
        let expected = index::Expected {
            stream_created: info.created,
            last_seq: info.state.last_sequence,
            history,
            max_age: inner.lifecycle.timing.orphan_after / 2,
        };
        let snapshot =
            index::usable_snapshot(&inner.snapshots, &inner.js, &self.nats, &expected).await;
        let subjects = info.state.subjects_count;
        if snapshot.is_none() && inner.snapshots.too_large_to_replay(subjects) {
            tracing::debug!(bucket = %self.nats, subjects, "the listing waits for the bucket's snapshot");
            return Ok(None);
        }
        if snapshot.is_some() {
            inner
                .snapshots
                .stats
                .loaded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Index::start(
            &inner.js_replay,
            &self.stream,
            &self.nats,
            &expected,
            snapshot,
            self.store.clone(),
        )
        .await
        .map(Some)
    }

    /// Runs a listing walk over the caught-up index from `init`; `step` is called again,
    /// on the walk's state, after each snapshot page it asks for is loaded. A damaged
    /// snapshot is refused and the walk runs again from `init` on an index rebuilt without it;
    /// so is one whose KV was deleted (made again, empty, it lacks the pages).
    pub async fn walk<W: Clone>(
        &self,
        init: W,
        mut step: impl FnMut(&mut W, &View<'_>) -> Result<(), Need>,
    ) -> StoreResult<W> {
        let inner = &self.store.inner;
        let mut restored = false;
        for _ in 0..3 {
            let index = self.index().await?;
            let mut state = init.clone();
            match index
                .walk(&inner.snapshots, &inner.js, |v| step(&mut state, v))
                .await
            {
                Ok(()) => return Ok(state),
                Err(WalkError::Nats(NatsError::NoResponders)) if !restored => {
                    self.store.restore_internal_kvs().await;
                    restored = true;
                }
                Err(WalkError::Nats(e)) => return Err(self.fail(e).await),
                Err(WalkError::Corrupt) => self.store.forget_index(&self.nats),
            }
        }
        Err(self.err(NatsError::Other("the listing snapshot is damaged".into())))
    }

    /// Whether the bucket holds no version at all (nor a delete marker), as far as the
    /// stream's leader holds (see [`Bucket::caught_up`]): DeleteBucket's check.
    pub async fn is_empty(&self) -> StoreResult<bool> {
        let found = self
            .walk(false, |found, v| {
                *found = v.seek(std::ops::Bound::Unbounded)?.is_some();
                Ok(())
            })
            .await?;
        Ok(!found)
    }
}

/// Why a commit failed, and whether its version may have been published.
pub(super) enum Committed {
    /// Not published: its chunks may be purged at once.
    No(StoreError),
    /// Maybe published: only the collector may remove its chunks.
    Unknown(StoreError),
}
