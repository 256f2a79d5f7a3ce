//! The collector: makes every bucket's stream hold exactly its live data.
//!
//! One gateway at a time runs it (a lock in `jets3_locks` that the leader refreshes every
//! pass and that expires when it dies); everything it does is idempotent, so two passes
//! that overlap while leadership moves do no harm. Each pass:
//! 1. purges the chunks of retired versions whose grace period is over and that no
//!    registered read holds (at most `maxPurgesPerPass`, oldest first), after checking
//!    that nothing references them again;
//! 2. every `scanIntervalSeconds`, scans each bucket: chunk subjects that no current or
//!    noncurrent version, upload part or retire record references and whose last chunk is
//!    older than the orphan horizon are retired as orphans, and purged by a later scan that
//!    still finds them unreferenced once the grace period is over (so a commit that reached
//!    NATS late but before that scan, or a first scan that read a replica behind, costs no
//!    version its chunks; an orphan referenced by then is forgotten), tombstones of
//!    deleted versions older than the horizon are removed, part records of vanished
//!    uploads and uploads older than the multipart expiry are removed, and a fence left by
//!    a DeleteBucket that died half way is lifted.
//!
//! 3. compacts the spliced multipart versions that records mark (one at a time, in the
//!    background; see `compaction`).
//!
//! A gateway killed at any point leaves only retire records, orphans or stale records,
//! which the next passes clean.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::compaction::Compacted;
use super::direct::{last_for_subject, RawMsg};
use super::index::writer;
use super::lifecycle::{Retired, GC_KV, READS_KV};
use super::meta::{chunk_subject, meta_subject, valid_nuid, Record};
use super::scan::{self, Reach};
use super::subjects::leader_subjects;
use super::uploads::{PartInfo, UploadInfo};
use super::versions::{key_versions_filter, versions_filter};
use jets3_nats::names::{self, stream_name};

use super::{purge_subject, NatsError, Store};
use crate::config::settings::CollectorSettings;

/// Retired versions purged at once. Each purge is a few JetStream round trips (two of them
/// replicated), so one at a time held the collector to about a hundred versions a second on
/// a loaded three-node cluster, behind a steady stream of overwrites.
const PURGE_CONCURRENCY: usize = 16;

/// How long the collector's lock lives without a refresh.
const LOCK_TTL: Duration = super::lifecycle::LOCKS_TTL;
/// The lock's key.
const LOCK_KEY: &str = "collector";
/// A fence older than this was left by a DeleteBucket that died.
const STALE_FENCE: Duration = Duration::from_secs(60);
/// Retire records read per pass at most.
const MAX_RECORDS: usize = 100_000;
/// The key of the clock probe in the retire records' bucket (no `.`: never a record).
const CLOCK_KEY: &str = "clock";
/// How long the collector's own small writes (its lock, the clock probe) may take.
const WRITE_WAIT: Duration = Duration::from_secs(2);

/// Which share of a bucket's versions a scan pass looks at.
struct ScanPass<'a> {
    nats: &'a str,
    history: bool,
    /// This pass's share, of how many.
    share: (u64, u64),
    seed: &'a std::collections::hash_map::RandomState,
    /// Whether this pass also removes old tombstones (the first does).
    tombstones: bool,
}

impl ScanPass<'_> {
    /// The hash of `nuid` if its version falls in this pass's share.
    fn mine(&self, nuid: &str) -> Option<u64> {
        use std::hash::BuildHasher;
        let h = self.seed.hash_one(nuid);
        (h % self.share.1 == self.share.0).then_some(h)
    }
}

/// What the collector did, for metrics.
#[derive(Default)]
pub struct CollectorStats {
    pub leader: AtomicBool,
    pub passes: AtomicU64,
    pub pass_errors: AtomicU64,
    /// Retire records waiting (their grace period running or over).
    pub pending: AtomicU64,
    pub pending_bytes: AtomicU64,
    /// Age of the oldest retire record, in seconds (a collector that falls behind shows).
    pub oldest_pending_seconds: AtomicU64,
    pub purged_versions: AtomicU64,
    pub purged_bytes: AtomicU64,
    /// Retired versions kept past their grace period by a registered read.
    pub held_by_reads: AtomicU64,
    /// Purges put off because the read registry was too new to know every running read.
    pub deferred_new_registry: AtomicU64,
    pub orphans_found: AtomicU64,
    pub uploads_expired: AtomicU64,
    pub tombstones_removed: AtomicU64,
    pub fences_lifted: AtomicU64,
    /// Spliced multipart versions rewritten into the native layout, and their bytes.
    pub compacted_versions: AtomicU64,
    pub compacted_bytes: AtomicU64,
    /// Duration of the last pass, in milliseconds.
    pub last_pass_millis: AtomicU64,
    /// Duration of the last scan, in milliseconds.
    pub last_scan_millis: AtomicU64,
}

/// How soon a snapshot pass that failed for some bucket runs again.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(60);

/// What a pass of listing snapshots did, over every bucket.
#[derive(Debug, Default)]
pub struct SnapshotPass {
    /// Buckets whose snapshot moved.
    pub buckets: u64,
    pub pages_written: u64,
    pub bytes_written: u64,
    /// Sorted runs merged (changes too many to hold at once).
    pub runs: u64,
    /// Buckets whose snapshot could not be written.
    pub failed: u64,
}

/// Brings every bucket's listing snapshot up to date (see the index's `writer`); a bucket
/// that fails is logged and left for the next time.
async fn write_snapshots(
    store: &Store,
    settings: &CollectorSettings,
) -> Result<SnapshotPass, NatsError> {
    let mut pass = SnapshotPass::default();
    let buckets = store
        .list_buckets()
        .await
        .map_err(|e| NatsError::Other(e.to_string()))?;
    for b in buckets {
        let nats = b.nats;
        let history = match store.versioning(&nats).await {
            Ok(v) => v.has_history(),
            Err(e) => {
                tracing::debug!(bucket = nats, error = %e, "no snapshot: versioning unknown");
                continue;
            }
        };
        let info = match store.inner.js.get_stream(stream_name(&nats)).await {
            Ok(s) => s.cached_info().clone(),
            Err(e) => {
                tracing::debug!(bucket = nats, error = %e, "no snapshot: no stream info");
                continue;
            }
        };
        let state = writer::StreamState {
            created: info.created,
            last_seq: info.state.last_sequence,
            subjects: info.state.subjects_count,
        };
        let inner = &store.inner;
        let started = Instant::now();
        let limits = writer::Limits {
            min_subjects: settings.snapshot_min_subjects,
            batch: settings.snapshot_batch_keys,
            refresh: Duration::from_secs(settings.orphan_after_seconds / 4),
        };
        match writer::write(
            &inner.snapshots,
            &inner.js_replay,
            &inner.client,
            &nats,
            history,
            &state,
            &limits,
        )
        .await
        {
            Ok(w) if w.manifests > 0 => {
                inner
                    .snapshots
                    .stats
                    .written
                    .fetch_add(w.manifests, Ordering::Relaxed);
                pass.buckets += 1;
                pass.pages_written += w.pages_written;
                pass.bytes_written += w.bytes_written;
                pass.runs += w.runs;
                tracing::info!(
                    bucket = nats,
                    pages = w.pages_written,
                    bytes = w.bytes_written,
                    messages = w.messages,
                    runs = w.runs,
                    millis = started.elapsed().as_millis() as u64,
                    "listing snapshot written"
                );
            }
            Ok(_) => {}
            Err(e) => {
                pass.failed += 1;
                tracing::warn!(bucket = nats, error = ?e, "listing snapshot failed");
            }
        }
    }
    Ok(pass)
}

/// The collector of one gateway (it works only while it holds the lock).
pub struct Collector {
    store: Store,
    settings: CollectorSettings,
    id: String,
    /// The lock while this gateway holds it: its revision, and when it was last refreshed.
    lock: std::sync::Mutex<Option<(u64, Instant)>>,
    /// The last clock probe that went through: when, and the time it read.
    clock: std::sync::Mutex<Option<(Instant, OffsetDateTime)>>,
    stats: Arc<CollectorStats>,
    last_snapshot: Arc<std::sync::Mutex<Option<Instant>>>,
    /// A snapshot pass is running.
    snapshotting: Arc<AtomicBool>,
    /// Compactions are running.
    compacting: Arc<AtomicBool>,
}

/// A retire record as read from `jets3_gc`.
struct RetireRecord {
    bucket: String,
    nuid: String,
    record: Retired,
    age: Duration,
}

impl RetireRecord {
    /// Retired by a scan: purged only once a later scan confirms it (see the module doc).
    fn orphan(&self) -> bool {
        self.record.why == ORPHAN
    }

    /// A spliced version to compact, not chunks to purge.
    fn compaction(&self) -> bool {
        self.record.why == COMPACT
    }
}

/// Retire records by bucket and nuid.
type Pending<'a> = HashMap<(String, String), &'a RetireRecord>;

/// Why a version found by a scan was retired.
const ORPHAN: &str = "orphan";
/// Why a record marks a spliced version to compact.
pub(super) const COMPACT: &str = "compact";

impl Collector {
    pub fn new(store: Store, settings: CollectorSettings) -> Collector {
        Collector {
            store,
            settings,
            id: nuid::next().to_string(),
            lock: std::sync::Mutex::new(None),
            clock: std::sync::Mutex::new(None),
            stats: Arc::default(),
            last_snapshot: Arc::default(),
            snapshotting: Arc::default(),
            compacting: Arc::default(),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<CollectorStats> {
        self.stats.clone()
    }

    /// Runs passes until `stop`; `expiry` gives the multipart expiry in force (seconds).
    pub async fn run(
        self,
        expiry: impl Fn() -> Option<u64> + Send,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.settings.interval_seconds));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let scan_every = Duration::from_secs(self.settings.scan_interval_seconds);
        let mut last_scan: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if !self.store.connected() {
                continue;
            }
            let scan = last_scan.is_none_or(|t| t.elapsed() >= scan_every);
            match self.pass(expiry(), scan).await {
                Ok(true) if scan => last_scan = Some(Instant::now()),
                Ok(_) => {}
                Err(e) => {
                    self.stats.pass_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = ?e, "collector pass failed");
                    // One of its KV buckets deleted would fail every pass from now on.
                    self.store.restore_internal_kvs().await;
                }
            }
        }
    }

    /// One pass; `Ok(false)` when another gateway leads.
    pub async fn pass(&self, expiry: Option<u64>, scan: bool) -> Result<bool, NatsError> {
        if !self.lead().await? {
            self.stats.leader.store(false, Ordering::Relaxed);
            return Ok(false);
        }
        self.stats.leader.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let records = self.retire_records().await?;
        self.purge_retired(&records).await?;
        self.start_compactions(&records);
        if scan {
            let scan_started = Instant::now();
            let pending: Pending = records
                .iter()
                .map(|r| ((r.bucket.clone(), r.nuid.clone()), r))
                .collect();
            self.scan(&pending, expiry).await?;
            self.stats
                .last_scan_millis
                .store(scan_started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        let snapshot_due = self.settings.snapshot_interval().is_some_and(|every| {
            let last = *self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner());
            last.is_none_or(|t| t.elapsed() >= every)
        });
        if snapshot_due && !self.snapshotting.swap(true, Ordering::AcqRel) {
            // In the background: a bucket's first snapshot can take minutes, and retired
            // versions must not wait for it.
            *self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            let (store, settings) = (self.store.clone(), self.settings.clone());
            let running = self.snapshotting.clone();
            let last = self.last_snapshot.clone();
            tokio::spawn(async move {
                let failed = match write_snapshots(&store, &settings).await {
                    Ok(pass) => pass.failed > 0,
                    Err(e) => {
                        tracing::warn!(error = ?e, "listing snapshots not written");
                        true
                    }
                };
                if failed {
                    store.restore_internal_kvs().await;
                    // Again in a minute, not a whole interval later.
                    let every = settings.snapshot_interval().unwrap_or_default();
                    let again = Instant::now().checked_sub(every.saturating_sub(SNAPSHOT_RETRY));
                    *last.lock().unwrap_or_else(|p| p.into_inner()) = again;
                }
                running.store(false, Ordering::Release);
            });
        }
        self.stats.passes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .last_pass_millis
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        Ok(true)
    }

    /// Brings every bucket's listing snapshot up to date now.
    pub async fn write_snapshots(&self) -> Result<SnapshotPass, NatsError> {
        write_snapshots(&self.store, &self.settings).await
    }

    /// Takes or keeps the lock. A refresh that NATS did not take (it is full, slow or
    /// between leaders) keeps a lock refreshed less than half its lifetime ago: nobody else
    /// can have it, and a full server needs the collector's purges most.
    async fn lead(&self) -> Result<bool, NatsError> {
        use async_nats::jetstream::kv::UpdateErrorKind;
        let kv = self.store.inner.lifecycle.locks().await?;
        let held = *self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let value = Bytes::from(self.id.clone());
        let result = match held {
            Some((rev, refreshed)) => {
                let update = kv.update(LOCK_KEY, value.clone(), rev);
                match tokio::time::timeout(WRITE_WAIT, update).await {
                    Ok(Ok(r)) => Some(r),
                    Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                        self.take(kv, value).await
                    }
                    _ if refreshed.elapsed() < LOCK_TTL / 2 => {
                        tracing::debug!("collector lock not refreshed: kept");
                        return Ok(true);
                    }
                    Ok(Err(e)) => return Err(NatsError::other(e)),
                    Err(_) => return Err(NatsError::TimedOut),
                }
            }
            None => self.take(kv, value).await,
        };
        *self.lock.lock().unwrap_or_else(|p| p.into_inner()) = result.map(|r| (r, Instant::now()));
        Ok(result.is_some())
    }

    /// Takes the lock if it is free, or back if it still holds this gateway's id (a refresh
    /// whose answer was lost); its revision then.
    async fn take(&self, kv: &async_nats::jetstream::kv::Store, value: Bytes) -> Option<u64> {
        use async_nats::jetstream::kv::CreateErrorKind;
        match kv.create(LOCK_KEY, value.clone()).await {
            Ok(r) => Some(r),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                let ours = kv.entry(LOCK_KEY).await.ok().flatten()?;
                if ours.value != value {
                    tracing::debug!("collector lock held elsewhere");
                    return None;
                }
                kv.update(LOCK_KEY, value, ours.revision).await.ok()
            }
            Err(e) => {
                tracing::debug!(error = %e, "collector lock not taken");
                None
            }
        }
    }

    /// The time on the clock that stamps retire records: a probe written to their KV bucket.
    /// Ages compare two stamps of that clock, so a gateway whose own clock is off never
    /// purges early. When NATS takes no write (it is full, or slow), the last probe's time
    /// moved on by this gateway's monotonic clock (a little behind the true time: never
    /// early either).
    async fn gc_clock(&self) -> Result<OffsetDateTime, NatsError> {
        let probe = async {
            let gc = self.store.inner.lifecycle.gc().await?;
            gc.put(CLOCK_KEY, Bytes::new())
                .await
                .map_err(NatsError::other)?;
            let entry = gc
                .entry(CLOCK_KEY)
                .await
                .map_err(NatsError::other)?
                .ok_or_else(|| NatsError::Other("the clock probe vanished".into()))?;
            Ok::<_, NatsError>(entry.created)
        };
        let last = &self.clock;
        match tokio::time::timeout(WRITE_WAIT, probe).await {
            Ok(Ok(now)) => {
                *last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), now));
                Ok(now)
            }
            failed => self.clock_since_probe().ok_or(match failed {
                Ok(Err(e)) => e,
                _ => NatsError::TimedOut,
            }),
        }
    }

    /// [`Collector::gc_clock`] from its last probe, moved on by the monotonic clock.
    fn clock_since_probe(&self) -> Option<OffsetDateTime> {
        let last = *self.clock.lock().unwrap_or_else(|p| p.into_inner());
        last.map(|(at, then)| then + at.elapsed())
    }

    /// Every retire record, oldest first, with the waiting-work gauges updated.
    async fn retire_records(&self) -> Result<Vec<RetireRecord>, NatsError> {
        let now = self.gc_clock().await?;
        let (js, client) = (&self.store.inner.js, &self.store.inner.client);
        let prefix = names::kv_prefix(GC_KV);
        let stream = names::kv_stream(GC_KV);
        let mut out = Vec::new();
        // A record a replica does not show yet waits for a later pass.
        let filter = format!("{prefix}>");
        let msgs = scan::last_messages(js, client, &stream, &filter, Reach::Any).await?;
        for m in msgs {
            if matches!(m.header("KV-Operation"), Some("DEL") | Some("PURGE")) {
                continue;
            }
            let Some((bucket, nuid)) = m
                .subject
                .strip_prefix(&prefix)
                .and_then(|r| r.split_once('.'))
            else {
                continue;
            };
            if out.len() >= MAX_RECORDS {
                break;
            }
            out.push(RetireRecord {
                bucket: bucket.to_string(),
                nuid: nuid.to_string(),
                record: serde_json::from_slice(&m.payload).unwrap_or_default(),
                age: age(&m, now),
            });
        }
        let retired = || out.iter().filter(|r| !r.compaction());
        let bytes: u64 = retired().map(|r| r.record.size).sum();
        let oldest = retired().map(|r| r.age).max().unwrap_or_default();
        self.stats
            .pending
            .store(retired().count() as u64, Ordering::Relaxed);
        self.stats.pending_bytes.store(bytes, Ordering::Relaxed);
        self.stats
            .oldest_pending_seconds
            .store(oldest.as_secs(), Ordering::Relaxed);
        Ok(out)
    }

    /// Compacts the spliced versions that records mark, one at a time, in the background
    /// (a large one takes a while, and purges must not wait for it); unless the last
    /// compactions are still running.
    fn start_compactions(&self, records: &[RetireRecord]) {
        let due: Vec<(String, String, String)> = records
            .iter()
            .filter(|r| r.compaction())
            .map(|r| (r.bucket.clone(), r.record.key.clone(), r.nuid.clone()))
            .collect();
        if due.is_empty() || self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, stats, running) = (
            self.store.clone(),
            self.stats.clone(),
            self.compacting.clone(),
        );
        tokio::spawn(async move {
            for (bucket, key, nuid) in due {
                let done = match store.bucket(&bucket).compact(&key, &nuid).await {
                    Ok(Compacted::Done(bytes)) => {
                        stats.compacted_versions.fetch_add(1, Ordering::Relaxed);
                        stats.compacted_bytes.fetch_add(bytes, Ordering::Relaxed);
                        true
                    }
                    Ok(Compacted::Gone) => true,
                    Ok(Compacted::Later) => false,
                    Err(e) => {
                        tracing::warn!(bucket, key, error = %e, "compaction failed");
                        false
                    }
                };
                let record = format!("{bucket}.{nuid}");
                if done {
                    if let Err(e) = super::forget_key(&store.inner.js, GC_KV, &record).await {
                        tracing::debug!(record, error = ?e, "compaction record not removed");
                    }
                }
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Purges retired versions whose grace period is over, [`PURGE_CONCURRENCY`] at a time.
    async fn purge_retired(&self, records: &[RetireRecord]) -> Result<(), NatsError> {
        let grace = self.store.inner.lifecycle.timing.grace;
        let due: Vec<&RetireRecord> = records
            .iter()
            .filter(|r| r.age >= grace && !r.orphan() && !r.compaction())
            .take(self.settings.max_purges_per_pass)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut due = due.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < PURGE_CONCURRENCY {
                let Some(r) = due.next() else { break };
                running.push(self.purge_one(r));
            }
            match running.next().await {
                Some(done) => {
                    done?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Whether the read registry had been there two renewal periods at `asked`, the time a
    /// question to it was sent: one made again (deleted under running gateways, even in the
    /// middle of this pass) lacks the running reads until each renews its registration, and
    /// a purge on its word would cut them.
    async fn read_registry_settled(&self, asked: OffsetDateTime) -> Result<bool, NatsError> {
        let lifecycle = &self.store.inner.lifecycle;
        let registry = names::kv_stream(READS_KV);
        let info = self.store.inner.js.get_stream(&registry).await;
        let created = info.map_err(NatsError::other)?.cached_info().created;
        Ok(asked - created >= 2 * lifecycle.timing.register_every())
    }

    /// Purges one retired version unless it is referenced or read; `true` if purged.
    async fn purge_one(&self, r: &RetireRecord) -> Result<bool, NatsError> {
        let forget = || self.forget(r);
        if !valid_nuid(&r.nuid) {
            forget().await?;
            return Ok(false);
        }
        let stream = stream_name(&r.bucket);
        // A bucket deleted since: its chunks went with it.
        match self.store.inner.js.get_stream(&stream).await {
            Ok(_) => {}
            Err(e) if super::is_stream_not_found(&e) => {
                forget().await?;
                return Ok(false);
            }
            Err(e) => return Err(NatsError::other(e)),
        }
        if !r.record.key.is_empty() && self.referenced(&r.bucket, &r.record.key, &r.nuid).await? {
            tracing::debug!(bucket = %r.bucket, nuid = %r.nuid, "retired version is referenced again");
            forget().await?;
            return Ok(false);
        }
        let lifecycle = &self.store.inner.lifecycle;
        // Probed by this pass's reading of the retire records.
        let asked = match self.clock_since_probe() {
            Some(now) => now,
            None => self.gc_clock().await?,
        };
        let read = lifecycle.is_read(&r.bucket, &r.nuid).await?
            || match &r.record.owner {
                Some(owner) => lifecycle.is_read(&r.bucket, owner).await?,
                None => false,
            };
        if read {
            self.stats.held_by_reads.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        // The registry that answered is the one there now: made again since it was asked,
        // it is younger than `asked`.
        if !self.read_registry_settled(asked).await? {
            tracing::debug!(bucket = %r.bucket, nuid = %r.nuid, "the read registry is new: the purge waits for running reads to renew");
            self.stats
                .deferred_new_registry
                .fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        purge_subject(
            &self.store.inner.js,
            &stream,
            chunk_subject(&r.bucket, &r.nuid),
        )
        .await?;
        forget().await?;
        self.stats.purged_versions.fetch_add(1, Ordering::Relaxed);
        self.stats
            .purged_bytes
            .fetch_add(r.record.size, Ordering::Relaxed);
        tracing::info!(bucket = %r.bucket, key = %r.record.key, nuid = %r.nuid, bytes = r.record.size, why = %r.record.why, "collector purged a retired version");
        Ok(true)
    }

    /// Removes a retire record.
    async fn forget(&self, r: &RetireRecord) -> Result<(), NatsError> {
        let record_key = format!("{}.{}", r.bucket, r.nuid);
        super::forget_key(&self.store.inner.js, GC_KV, &record_key).await
    }

    /// Whether key `key`'s current or a noncurrent version uses chunks `nuid`: the last check
    /// before a purge. On a replicated stream the stream's leader answers (see
    /// [`Store::leader_last`]): a replica that is behind could miss the version that took
    /// these chunks back, and they would be purged under it.
    async fn referenced(&self, bucket: &str, key: &str, nuid: &str) -> Result<bool, NatsError> {
        let uses = |payload: &[u8], seq| {
            Record::decode(payload, Some(key), seq).is_ok_and(|r| r.uses(nuid))
        };
        let (meta, filter) = (meta_subject(bucket, key), key_versions_filter(bucket, key));
        let replicas = self
            .store
            .replicas(bucket)
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        if replicas > 1 {
            if let Some((seq, payload)) = self.store.leader_last(bucket, &meta).await? {
                if uses(&payload, seq) {
                    return Ok(true);
                }
            }
            let (js, stream) = (&self.store.inner.js, stream_name(bucket));
            let versions = self
                .store
                .through_failover(bucket, || leader_subjects(js, &stream, &filter))
                .await?;
            for subject in versions {
                if let Some((seq, payload)) = self.store.leader_last(bucket, &subject).await? {
                    if uses(&payload, seq) {
                        return Ok(true);
                    }
                }
            }
            return Ok(false);
        }
        let client = &self.store.inner.client;
        let stream = stream_name(bucket);
        if let Some(m) = last_for_subject(client, &stream, &meta).await? {
            if uses(&m.payload, m.seq) {
                return Ok(true);
            }
        }
        let js = &self.store.inner.js;
        Ok(
            scan::last_messages(js, client, &stream, &filter, Reach::Any)
                .await?
                .iter()
                .any(|m| uses(&m.payload, m.seq)),
        )
    }

    /// Scans every bucket for orphans, old tombstones, stale uploads and stale fences.
    async fn scan(&self, pending: &Pending<'_>, expiry: Option<u64>) -> Result<(), NatsError> {
        let buckets = self
            .store
            .list_buckets()
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?;
        let uploads = self.uploads().await?;
        // Orphans of buckets deleted since went with them.
        let names: HashSet<&str> = buckets.iter().map(|b| b.nats.as_str()).collect();
        for r in pending.values() {
            if (r.orphan() || r.compaction()) && !names.contains(r.bucket.as_str()) {
                self.forget(r).await?;
            }
        }
        for b in buckets {
            if let Some(since) = Store::fenced_since(&b.metadata) {
                if OffsetDateTime::now_utc() - since > STALE_FENCE {
                    self.store.unfence(&b.nats).await?;
                    self.stats.fences_lifted.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(bucket = %b.nats, "lifted the fence of a DeleteBucket that did not finish");
                }
                continue;
            }
            match self.scan_bucket(&b.nats, pending, &uploads).await {
                Ok(()) | Err(NatsError::NoStream) => {}
                Err(e) => {
                    tracing::warn!(bucket = %b.nats, error = ?e, "collector scan of a bucket failed")
                }
            }
        }
        self.clean_uploads(&uploads, expiry).await
    }

    /// Upload records and part records of every bucket: (KV key, value); all the leader
    /// holds, since a part a replica does not show yet would look like an orphan.
    async fn uploads(&self) -> Result<Vec<(String, Bytes)>, NatsError> {
        self.store
            .kv_scan(">")
            .await
            .map_err(|e| NatsError::Other(e.to_string()))
    }

    /// Retires one bucket's orphan chunks and removes its old tombstones.
    ///
    /// Memory stays bounded whatever the bucket's size: a pass holds the chunk references of
    /// one share of the versions (by a hash of their nuid, seeded anew for every scan), 8
    /// bytes each, and a bucket with more subjects than `collector.scanBatchObjects` is
    /// read once per share. Two nuids with the same hash only keep an orphan until a later
    /// scan; a referenced version is never taken for an orphan.
    async fn scan_bucket(
        &self,
        nats: &str,
        pending: &Pending<'_>,
        uploads: &[(String, Bytes)],
    ) -> Result<(), NatsError> {
        let stream = stream_name(nats);
        let history = self
            .store
            .versioning(nats)
            .await
            .map_err(|e| NatsError::Other(e.to_string()))?
            .has_history();
        let js_stream = self
            .store
            .inner
            .js
            .get_stream(&stream)
            .await
            .map_err(NatsError::other)?;
        let subjects = js_stream.cached_info().state.subjects_count;
        let shares = subjects.div_ceil(self.settings.scan_batch_objects).max(1);
        let seed = std::collections::hash_map::RandomState::new();
        for share in 0..shares {
            let pass = ScanPass {
                nats,
                history,
                share: (share, shares),
                seed: &seed,
                tombstones: share == 0,
            };
            self.scan_share(&pass, &js_stream, pending, uploads).await?;
        }
        Ok(())
    }

    /// One pass of a bucket's scan: its share of the orphans, and (in the first pass) the
    /// old tombstones.
    async fn scan_share(
        &self,
        pass: &ScanPass<'_>,
        js_stream: &async_nats::jetstream::stream::Stream,
        pending: &Pending<'_>,
        uploads: &[(String, Bytes)],
    ) -> Result<(), NatsError> {
        let started = Instant::now();
        let (nats, timing) = (pass.nats, self.store.inner.lifecycle.timing);
        let stream = stream_name(nats);
        let mut referenced: Vec<u64> = Vec::new();
        let meta_prefix = names::meta_prefix(nats);
        let mut unmarked = Vec::new();
        // Each subject's last message decides whether it is an old tombstone.
        let mut tombstones: std::collections::HashMap<String, bool> = Default::default();
        let mut filters = vec![names::meta_filter(nats)];
        if pass.history {
            filters.push(versions_filter(nats));
        }
        // On a replicated bucket the replay must reach what the leader holds; a single
        // server holds all there is (and asking it for the last of every metadata subject
        // would walk them all).
        let replicated = js_stream.cached_info().config.num_replicas > 1;
        let reach = if replicated {
            Reach::Leader
        } else {
            Reach::Any
        };
        let (js, client) = (&self.store.inner.js_replay, &self.store.inner.client);
        scan::replay(js, client, &stream, filters, reach, |m| {
            let record = Record::decode(m.payload, None, m.seq);
            if pass.tombstones {
                let old = matches!(record, Ok(Record::Gone { .. }))
                    && OffsetDateTime::now_utc() - m.stored > timing.orphan_after;
                if old || tombstones.contains_key(m.subject) {
                    tombstones.insert(m.subject.to_string(), old);
                }
            }
            match record {
                Ok(Record::Gone { .. }) => {}
                Ok(r) => {
                    referenced.extend(r.chunk_sets().filter_map(|(nuid, _)| pass.mine(nuid)));
                    if let Record::Object(o) = &r {
                        // A spliced current version whose compaction record was lost.
                        let current = m.subject.starts_with(&meta_prefix);
                        let marked = || pending.contains_key(&(nats.to_string(), o.nuid.clone()));
                        if current && !o.segments.is_empty() && pass.tombstones && !marked() {
                            unmarked.push((o.key.clone(), o.nuid.clone(), o.size));
                        }
                    }
                }
                Err(_) => {}
            }
        })
        .await?;
        for (key, value) in uploads {
            if key.split('.').next() == Some(nats) {
                if let Ok(p) = serde_json::from_slice::<PartInfo>(value) {
                    referenced.extend(pass.mine(&p.nuid));
                }
            }
        }
        referenced.sort_unstable();
        referenced.dedup();
        let prefix = names::chunk_prefix(nats);
        let mut subjects = js_stream
            .info_with_subjects(names::chunk_filter(nats))
            .await
            .map_err(NatsError::other)?;
        let mut candidates = Vec::new();
        // Orphans retired by an earlier scan: still unreferenced (purged once their grace
        // period is over), or referenced again (forgotten).
        let (mut confirmed, mut revived) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        while let Some((subject, _count)) = subjects.try_next().await.map_err(NatsError::other)? {
            let Some(nuid) = subject.strip_prefix(&prefix) else {
                continue;
            };
            let Some(h) = pass.mine(nuid) else {
                continue;
            };
            let unreferenced = referenced.binary_search(&h).is_err();
            match pending.get(&(nats.to_string(), nuid.to_string())) {
                Some(r) if r.orphan() => {
                    seen.insert(nuid.to_string());
                    if !unreferenced {
                        revived.push(*r);
                    } else if r.age >= timing.grace {
                        confirmed.push(*r);
                    }
                }
                Some(_) => {}
                None if unreferenced && valid_nuid(nuid) => candidates.push(nuid.to_string()),
                None => {}
            }
        }
        drop(referenced);
        for r in revived {
            tracing::info!(bucket = nats, nuid = %r.nuid, "an orphan was committed after all: kept");
            self.forget(r).await?;
        }
        // Orphan records whose chunks are gone (purged by an earlier pass that did not
        // forget them, or by DeleteBucket).
        for r in pending.values() {
            if r.orphan()
                && r.bucket == nats
                && pass.mine(&r.nuid).is_some()
                && !seen.contains(&r.nuid)
            {
                self.forget(r).await?;
            }
        }
        // Taking longer than this would let a version committed after the replay look like
        // an orphan: leave the rest to the next scan.
        let fresh = || started.elapsed() <= timing.orphan_after / 4;
        for r in confirmed {
            if !fresh() {
                break;
            }
            self.purge_one(r).await?;
        }
        for nuid in candidates {
            if !fresh() {
                break;
            }
            let subject = chunk_subject(nats, &nuid);
            // On a replicated bucket the leader says when the chunks were last written: a
            // replica behind shows an older message, and an upload still writing them would
            // look abandoned.
            let stored = if replicated {
                self.store.leader_stored(nats, &subject).await?
            } else {
                last_for_subject(&self.store.inner.client, &stream, &subject)
                    .await?
                    .and_then(|m| stored_at(&m))
            };
            let Some(stored) = stored else {
                continue;
            };
            if OffsetDateTime::now_utc() - stored < timing.orphan_after {
                continue;
            }
            let record = Retired {
                key: String::new(),
                size: 0,
                why: ORPHAN.into(),
                owner: None,
            };
            self.store
                .inner
                .lifecycle
                .retire_acked(nats, &nuid, record)
                .await?;
            self.stats.orphans_found.fetch_add(1, Ordering::Relaxed);
            tracing::info!(bucket = nats, nuid = %nuid, "collector found orphan chunks");
        }
        for (key, nuid, size) in unmarked {
            let record = Retired {
                key,
                size,
                why: COMPACT.into(),
                owner: None,
            };
            self.store
                .inner
                .lifecycle
                .retire_acked(nats, &nuid, record)
                .await?;
        }
        let old_tombstones = tombstones.into_iter().filter(|(_, old)| *old);
        for (subject, _) in old_tombstones {
            purge_subject(&self.store.inner.js, &stream, subject).await?;
            self.stats
                .tombstones_removed
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Removes expired uploads, the results of completed ones past their window, and the
    /// part records of uploads that are gone.
    async fn clean_uploads(
        &self,
        records: &[(String, Bytes)],
        expiry: Option<u64>,
    ) -> Result<(), NatsError> {
        let now = OffsetDateTime::now_utc();
        let mut live: HashSet<(String, String)> = HashSet::new();
        for (key, value) in records {
            let mut parts = key.split('.');
            let (Some(bucket), Some(id), None) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let Ok(info) = serde_json::from_slice::<UploadInfo>(value) else {
                continue;
            };
            let window = self.store.inner.lifecycle.timing.completed;
            let done = info.completion.as_ref().and_then(|c| c.done.as_ref());
            if done.is_some_and(|d| d.age() > window) {
                self.store
                    .bucket(bucket)
                    .forget_upload(id)
                    .await
                    .map_err(|e| NatsError::Other(e.to_string()))?;
                tracing::debug!(
                    bucket,
                    upload_id = id,
                    "removed a completed upload's result"
                );
                continue;
            }
            let expired = done.is_none()
                && expiry
                    .is_some_and(|s| now - info.initiated_at() > time::Duration::seconds(s as i64));
            if expired {
                self.store
                    .bucket(bucket)
                    .forget_upload(id)
                    .await
                    .map_err(|e| NatsError::Other(e.to_string()))?;
                self.stats.uploads_expired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(bucket, upload_id = id, key = %info.key, "expired multipart upload");
            } else {
                // Its parts go with its record (which names the key they may be spliced
                // into), not before.
                live.insert((bucket.to_string(), id.to_string()));
            }
        }
        let orphan_after = self.store.inner.lifecycle.timing.orphan_after;
        for (key, value) in records {
            let mut parts = key.split('.');
            let (Some(bucket), Some(id), Some(_n)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if live.contains(&(bucket.to_string(), id.to_string())) {
                continue;
            }
            let Ok(part) = serde_json::from_slice::<PartInfo>(value) else {
                continue;
            };
            // Only parts old enough that their UploadPart has surely ended.
            if now - part.modified_at() < orphan_after {
                continue;
            }
            super::forget_key(&self.store.inner.js, super::uploads::UPLOADS_KV, key).await?;
            self.store
                .bucket(bucket)
                .retire(&part.nuid, part.size, &part.key, "part")
                .await;
        }
        Ok(())
    }
}

/// How long before `now` NATS stored a message read by Direct Get (zero when unknown).
fn age(m: &RawMsg, now: OffsetDateTime) -> Duration {
    match stored_at(m) {
        Some(t) => (now - t).try_into().unwrap_or_default(),
        None => Duration::ZERO,
    }
}

/// When NATS stored a message a Direct Get answered.
fn stored_at(m: &RawMsg) -> Option<OffsetDateTime> {
    m.header("Nats-Time-Stamp")
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_age_comes_from_the_server_timestamp() {
        let mut headers = async_nats::HeaderMap::new();
        let t = OffsetDateTime::now_utc() - time::Duration::seconds(90);
        headers.insert(
            "Nats-Time-Stamp",
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
                .as_str(),
        );
        let m = RawMsg {
            seq: 1,
            subject: "s".into(),
            headers: Some(headers),
            payload: Bytes::new(),
        };
        let a = age(&m, OffsetDateTime::now_utc()).as_secs();
        assert!((89..=91).contains(&a), "{a}");
    }
}
