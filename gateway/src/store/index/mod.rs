//! A per-bucket sorted index of live objects (and, with versioning, of every version),
//! kept current from the metadata subjects.
//!
//! A gateway starts a bucket's index from its shared snapshot ([`snapshot`], in the KV
//! bucket `jets3_index`, written by the collector's leader) when a usable one exists, and
//! follows the metadata subjects from the snapshot's sequence on: the changes since (the
//! [`view::Overlay`]) stay in memory, the snapshot's pages are read from NATS when a listing
//! reaches them and kept in a bounded cache. Without a usable snapshot it replays every
//! key's last metadata message, as before snapshots existed. Before a listing is answered
//! the index catches up to the last metadata message in the stream, which keeps S3's
//! read-after-write promise for writes through any gateway or native client.
//!
//! A snapshot is used only if it is of this very stream (its creation time), not ahead of
//! it, holds noncurrent versions when they are needed, passes every check of its bytes,
//! and is younger than half the orphan horizon (or nothing was written since): the
//! collector removes tombstones older than the horizon, so an older snapshot could miss a
//! deletion.

mod merge;
mod shared;
mod snapshot;
mod state;
mod view;
pub mod writer;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::Context;
use futures::StreamExt;
use jets3_nats::names;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::internal::InternalReplicas;
use super::meta::{token_key, Malformed, Record};
use super::versions::versions_filter;
use super::{NatsError, Store};
pub use shared::{ReadError, Shared, INDEX_KV};
pub use snapshot::{Manifest, Page};
pub use state::{KeyState, VersionEntry};
use view::Overlay;
pub use view::{Need, Source, View};

/// One change a metadata message makes.
pub enum Change {
    /// To a key's latest version (its metadata subject).
    Current(String, Option<VersionEntry>),
    /// To one noncurrent version (a version subject).
    Noncurrent(String, Box<str>, Option<VersionEntry>),
}

/// The subject prefixes of a bucket's metadata and versions.
pub struct Prefixes {
    meta: String,
    versions: String,
}

impl Prefixes {
    pub fn of(bucket: &str) -> Prefixes {
        Prefixes {
            meta: names::meta_prefix(bucket),
            versions: names::version_prefix(bucket),
        }
    }

    /// What one metadata message changes; `None` for other subjects.
    pub fn decode(
        &self,
        subject: &str,
        payload: &[u8],
        seq: u64,
    ) -> Result<Option<Change>, Malformed> {
        let bad = |what: &str| Malformed(format!("{what} in subject {subject:?}"));
        if let Some(token) = subject.strip_prefix(self.meta.as_str()) {
            let key = token_key(token).ok_or_else(|| bad("no key"))?;
            let record = Record::decode(payload, Some(&key), seq)?;
            Ok(Some(Change::Current(key, VersionEntry::of(record))))
        } else if let Some(rest) = subject.strip_prefix(self.versions.as_str()) {
            let (token, vid) = rest.rsplit_once('.').ok_or_else(|| bad("no version"))?;
            let key = token_key(token).ok_or_else(|| bad("no key"))?;
            let record = Record::decode(payload, Some(&key), seq)?;
            let named = match &record {
                Record::Object(_) | Record::Marker(_) => {
                    record.version() == Some((vid != "null").then_some(vid))
                }
                _ => true,
            };
            if !named {
                return Err(bad("another version"));
            }
            Ok(Some(Change::Noncurrent(
                key,
                vid.into(),
                VersionEntry::of(record),
            )))
        } else {
            Ok(None)
        }
    }
}

/// The metadata subjects an index follows.
pub fn filters(bucket: &str, history: bool) -> Vec<String> {
    let mut filters = vec![names::meta_filter(bucket)];
    if history {
        filters.push(versions_filter(bucket));
    }
    filters
}

/// Pages by id, and the memory they hold.
type Cached = (lru::LruCache<Box<str>, Arc<Page>>, usize);

/// Decoded snapshot pages shared by every bucket's index, up to a memory budget.
pub struct PageCache {
    pages: Mutex<Cached>,
    budget: usize,
}

impl PageCache {
    pub fn new(budget: usize) -> PageCache {
        PageCache {
            pages: Mutex::new((lru::LruCache::unbounded(), 0)),
            budget,
        }
    }

    fn get(&self, id: &str) -> Option<Arc<Page>> {
        self.pages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .get(id)
            .cloned()
    }

    fn insert(&self, id: &str, page: Arc<Page>) {
        let mut guard = self.pages.lock().unwrap_or_else(|p| p.into_inner());
        let (lru, used) = &mut *guard;
        *used += page.weight();
        if let Some(old) = lru.put(id.into(), page) {
            *used -= old.weight();
        }
        while *used > self.budget {
            match lru.pop_lru() {
                Some((_, p)) => *used -= p.weight(),
                None => break,
            }
        }
    }
}

/// Counters of the index's snapshots, for metrics.
#[derive(Default)]
pub struct SnapshotStats {
    /// Indexes started from a snapshot.
    pub loaded: AtomicU64,
    /// Snapshots refused (corrupt, of another stream, too old).
    pub refused: AtomicU64,
    /// Snapshots written by this gateway.
    pub written: AtomicU64,
    /// Pages read from NATS.
    pub pages_read: AtomicU64,
}

/// What every bucket's index shares: the snapshots, the page cache, refused manifests.
pub struct Snapshots {
    pub shared: tokio::sync::OnceCell<Shared>,
    replicas: InternalReplicas,
    pub cache: PageCache,
    pub refused: Mutex<HashSet<String>>,
    pub stats: Arc<SnapshotStats>,
    /// Off: every index replays (snapshots are neither read nor written here).
    pub enabled: bool,
    /// Larger buckets (in subjects, 0: none) wait for a snapshot instead of a replay.
    replay_max_subjects: u64,
}

impl Snapshots {
    pub fn new(
        cache_bytes: usize,
        stats: Arc<SnapshotStats>,
        enabled: bool,
        replay_max_subjects: u64,
        replicas: InternalReplicas,
    ) -> Snapshots {
        Snapshots {
            enabled,
            replay_max_subjects,
            shared: tokio::sync::OnceCell::new(),
            replicas,
            cache: PageCache::new(cache_bytes),
            refused: Mutex::new(HashSet::new()),
            stats,
        }
    }

    /// Whether a bucket of `subjects` without a usable snapshot must wait for one: a replay
    /// would hold every object in memory.
    pub fn too_large_to_replay(&self, subjects: u64) -> bool {
        self.enabled && self.replay_max_subjects > 0 && subjects > self.replay_max_subjects
    }

    /// The KV bucket of snapshots.
    pub async fn shared(&self, js: &Context) -> Result<&Shared, NatsError> {
        self.shared
            .get_or_try_init(|| Shared::open(js, &self.replicas))
            .await
    }

    fn refuse(&self, id: &str, why: &dyn std::fmt::Display) {
        tracing::warn!(manifest = id, reason = %why, "refusing a listing snapshot");
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
    }

    fn is_refused(&self, id: &str) -> bool {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
}

/// What a snapshot is checked against before it is used.
pub struct Expected {
    pub stream_created: OffsetDateTime,
    pub last_seq: u64,
    pub history: bool,
    /// Half the orphan horizon.
    pub max_age: Duration,
}

impl Expected {
    /// Why `m` cannot be used, if it cannot.
    fn refusal(&self, m: &Manifest) -> Option<String> {
        if m.stream_created != self.stream_created {
            return Some("it is of an earlier stream of that name".into());
        }
        if m.seq > self.last_seq {
            return Some("it is ahead of the stream".into());
        }
        if self.history && !m.history {
            return Some("it lacks noncurrent versions".into());
        }
        let age = OffsetDateTime::now_utc() - m.valid_from;
        if m.seq < self.last_seq && age > self.max_age {
            return Some(format!("it is {age} old"));
        }
        None
    }
}

/// The usable snapshot of `bucket`, if there is one.
pub async fn usable_snapshot(
    snapshots: &Snapshots,
    js: &Context,
    bucket: &str,
    expected: &Expected,
) -> Option<Manifest> {
    if !snapshots.enabled {
        return None;
    }
    let shared = match snapshots.shared(js).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = ?e, "no listing snapshots");
            return None;
        }
    };
    let head = match shared.head(bucket).await {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(e) => {
            tracing::debug!(error = ?e, bucket, "no listing snapshot head");
            return None;
        }
    };
    if snapshots.is_refused(&head.id) {
        return None;
    }
    match shared.manifest(bucket, &head).await {
        Ok(m) => match expected.refusal(&m) {
            None => Some(m),
            Some(why) => {
                tracing::info!(bucket, reason = %why, "not using a listing snapshot");
                None
            }
        },
        Err(ReadError::Corrupt(c)) => {
            snapshots.refuse(&head.id, &c);
            None
        }
        Err(ReadError::Nats(e)) => {
            tracing::debug!(error = ?e, bucket, "could not read a listing snapshot");
            None
        }
    }
}

/// Why an index did not catch up.
#[derive(Debug)]
pub enum CatchUpError {
    Nats(NatsError),
    /// Still delivering the messages that were there when it started.
    Loading,
}

impl From<NatsError> for CatchUpError {
    fn from(e: NatsError) -> Self {
        CatchUpError::Nats(e)
    }
}

/// Why a walk over the index stopped.
#[derive(Debug)]
pub enum WalkError {
    Nats(NatsError),
    /// The snapshot is damaged: the index must be rebuilt without it.
    Corrupt,
}

/// The snapshot an index rests on and the changes since.
struct Layers {
    snapshot: Option<Arc<Manifest>>,
    overlay: Overlay,
}

/// The sorted keys (and versions) of one bucket.
pub struct Index {
    bucket: String,
    layers: RwLock<Layers>,
    applied: watch::Sender<u64>,
    /// True once the consumer has delivered every message that existed when it started.
    loaded: watch::Sender<bool>,
    dead: AtomicBool,
    /// Follows the noncurrent-version subjects too.
    history: bool,
    stream_created: OffsetDateTime,
    /// When the snapshot head was last looked at.
    checked: Mutex<Instant>,
}

const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a listing looks for a newer snapshot.
const HEAD_CHECK: Duration = Duration::from_secs(10);

/// Pages a walk keeps at hand (more than a seek ever needs at once).
const PINNED: usize = 4;

impl Index {
    /// Starts following the bucket's metadata subjects (and version subjects with
    /// `history`), after `snapshot`'s sequence when there is one.
    pub async fn start(
        js: &Context,
        stream: &str,
        bucket: &str,
        expected: &Expected,
        snapshot: Option<Manifest>,
        store: Store,
    ) -> Result<Arc<Index>, NatsError> {
        let s = js
            .get_stream_no_info(stream)
            .await
            .map_err(NatsError::other)?;
        let history = expected.history;
        let from = snapshot.as_ref().map_or(0, |m| m.seq);
        let deliver_policy = match from {
            // Every message in order, each overriding the last of its subject: the same
            // state as the last per subject, without the server first finding the last
            // message of every subject (24 s at ten million objects, past any timeout).
            0 => DeliverPolicy::All,
            seq => DeliverPolicy::ByStartSequence {
                start_sequence: seq + 1,
            },
        };
        let consumer = s
            .create_consumer(OrderedConfig {
                filter_subjects: filters(bucket, history),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(NatsError::consumer)?;
        let mut messages = consumer.messages().await.map_err(NatsError::other)?;
        let (applied, _) = watch::channel(from);
        let (loaded, _) = watch::channel(false);
        let over_snapshot = snapshot.is_some();
        let index = Arc::new(Index {
            bucket: bucket.to_string(),
            layers: RwLock::new(Layers {
                snapshot: snapshot.map(Arc::new),
                overlay: Overlay::new(over_snapshot),
            }),
            applied,
            loaded,
            dead: AtomicBool::new(false),
            history,
            stream_created: expected.stream_created,
            checked: Mutex::new(Instant::now()),
        });
        let weak = Arc::downgrade(&index);
        let prefixes = Prefixes::of(bucket);
        tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                let Some(index) = weak.upgrade() else { return };
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "listing index lost its consumer");
                        index.dead.store(true, Ordering::Relaxed);
                        return;
                    }
                };
                let (seq, pending) = match msg.info() {
                    Ok(i) => (i.stream_sequence, i.pending),
                    Err(_) => continue,
                };
                match prefixes.decode(&msg.subject, &msg.payload, seq) {
                    Ok(Some(change)) => index.write().overlay.apply(change, seq),
                    Ok(None) => {}
                    Err(why) => store.malformed(&msg.subject, &why),
                }
                index.applied.send_replace(seq);
                if pending == 0 {
                    index.loaded.send_replace(true);
                }
            }
            if let Some(index) = weak.upgrade() {
                index.dead.store(true, Ordering::Relaxed);
            }
        });
        Ok(index)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// False once the consumer behind the index has failed.
    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }

    /// Whether the index follows noncurrent versions.
    pub fn has_history(&self) -> bool {
        self.history
    }

    /// Waits until every metadata message in the stream now has been applied: asks `next`
    /// for the sequence of the first metadata message after the last one applied (by
    /// subject filter), and waits for it, until there is none. That costs one request per
    /// followed subject tree when the index is current (a wildcard `last_by_subj` would scan
    /// every subject of the bucket). `next` must answer as far as the stream's leader holds:
    /// the index may follow a replica that is behind.
    pub async fn catch_up<F, Fut>(&self, next: F) -> Result<(), CatchUpError>
    where
        F: Fn(String, u64) -> Fut,
        Fut: std::future::Future<Output = Result<Option<u64>, NatsError>>,
    {
        let filters = filters(&self.bucket, self.history);
        let wait = async {
            let mut applied = self.applied.subscribe();
            let mut loaded = self.loaded.subscribe();
            let mut first = true;
            for filter in &filters {
                loop {
                    let from = *applied.borrow() + 1;
                    let Some(next) = next(filter.clone(), from).await? else {
                        break;
                    };
                    if first {
                        // Still loading: let the consumer finish its initial pass first.
                        let _ = loaded.wait_for(|l| *l).await;
                        first = false;
                    }
                    if applied.wait_for(|a| *a >= next).await.is_err() {
                        return Err(NatsError::Other("listing index stopped".into()).into());
                    }
                }
            }
            Ok(())
        };
        match tokio::time::timeout(CATCH_UP_TIMEOUT, wait).await {
            Ok(r) => r,
            Err(_) if !*self.loaded.borrow() && self.is_alive() => Err(CatchUpError::Loading),
            Err(_) => Err(NatsError::Other("listing index did not catch up".into()).into()),
        }
    }

    /// Moves to a newer snapshot when one was written (looked for at most every
    /// [`HEAD_CHECK`]); the changes it holds leave memory.
    pub async fn refresh(
        &self,
        snapshots: &Snapshots,
        js: &Context,
        stream: &str,
        max_age: Duration,
    ) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < HEAD_CHECK {
                return;
            }
            *checked = Instant::now();
        }
        let last_seq = match js.get_stream(stream).await {
            Ok(s) => s.cached_info().state.last_sequence,
            Err(e) => {
                tracing::debug!(error = %e, "no stream info for a snapshot check");
                return;
            }
        };
        let expected = Expected {
            stream_created: self.stream_created,
            last_seq,
            history: self.history,
            max_age,
        };
        let Some(m) = usable_snapshot(snapshots, js, &self.bucket, &expected).await else {
            return;
        };
        let mut layers = self.write();
        let newer = layers.snapshot.as_ref().is_none_or(|s| s.seq < m.seq);
        if newer && layers.overlay.can_rest_on(m.seq) {
            layers.overlay.rest_on(m.seq);
            layers.snapshot = Some(Arc::new(m));
            snapshots.stats.loaded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs `step` over the index until it finishes, loading the snapshot pages it asks for.
    pub async fn walk(
        &self,
        snapshots: &Snapshots,
        js: &Context,
        mut step: impl FnMut(&View<'_>) -> Result<(), Need>,
    ) -> Result<(), WalkError> {
        let mut pinned: Vec<(Box<str>, Arc<Page>)> = Vec::new();
        loop {
            let need = {
                let layers = self.read();
                let view = View {
                    manifest: layers.snapshot.as_deref(),
                    overlay: &layers.overlay,
                    pages: &pinned,
                };
                match step(&view) {
                    Ok(()) => return Ok(()),
                    Err(need) => need,
                }
            };
            let id = need.page.id;
            let page = match snapshots.cache.get(&id) {
                Some(p) => p,
                None => {
                    let shared = snapshots.shared(js).await.map_err(WalkError::Nats)?;
                    match shared.page(&self.bucket, &id).await {
                        Ok(p) => {
                            snapshots.stats.pages_read.fetch_add(1, Ordering::Relaxed);
                            let p = Arc::new(p);
                            snapshots.cache.insert(&id, p.clone());
                            p
                        }
                        Err(ReadError::Nats(e)) => return Err(WalkError::Nats(e)),
                        Err(ReadError::Corrupt(c)) => {
                            if let Some(m) = &self.read().snapshot {
                                if let Ok((mid, _)) = m.encode() {
                                    snapshots.refuse(&mid, &c);
                                }
                            }
                            self.dead.store(true, Ordering::Relaxed);
                            return Err(WalkError::Corrupt);
                        }
                    }
                }
            };
            if pinned.len() == PINNED {
                pinned.remove(0);
            }
            pinned.push((id, page));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_snapshots_it_cannot_trust() {
        let created = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let expected = Expected {
            stream_created: created,
            last_seq: 100,
            history: false,
            max_age: Duration::from_secs(1800),
        };
        let mut m = Manifest::empty("b", created, false);
        m.seq = 90;
        m.valid_from = OffsetDateTime::now_utc();
        assert_eq!(expected.refusal(&m), None);
        let mut other = m.clone();
        other.stream_created = OffsetDateTime::UNIX_EPOCH;
        assert!(expected.refusal(&other).is_some(), "another stream");
        let mut ahead = m.clone();
        ahead.seq = 101;
        assert!(expected.refusal(&ahead).is_some(), "ahead of the stream");
        let mut old = m.clone();
        old.valid_from = OffsetDateTime::now_utc() - time::Duration::hours(1);
        assert!(
            expected.refusal(&old).is_some(),
            "may miss purged tombstones"
        );
        old.seq = 100;
        assert_eq!(
            expected.refusal(&old),
            None,
            "old but nothing changed since"
        );
        let versioned = Expected {
            history: true,
            ..expected
        };
        assert!(versioned.refusal(&m).is_some(), "lacks noncurrent versions");
    }
}
