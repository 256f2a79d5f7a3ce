//! An in-memory cache of small hot objects (metadata and bytes) for buckets that opt in.
//!
//! Coherence across gateways: each cached bucket has a watch on its metadata subjects, so
//! a write or delete through any gateway or native client removes the entry as soon as
//! the message arrives (milliseconds). Writes through this gateway remove it before they
//! answer (the store tells the cache of each write: [`Store::on_write`]). A fill that an invalidation overtakes is dropped, and whenever the watch may
//! have missed something (not yet subscribed, disconnected, messages dropped) the bucket
//! is not served from the cache and is flushed once the watch is live again.

mod shard;
mod watch;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::watch as signal;

use crate::config::settings::CacheSettings;
use crate::metrics::Metrics;
use crate::store::{ObjectMeta, Store};

const SHARDS: usize = 8;
/// Bookkeeping counted per entry besides its key and bytes.
const ENTRY_OVERHEAD: usize = 512;

/// A cached object.
pub struct Entry {
    pub meta: ObjectMeta,
    pub body: Bytes,
    epoch: u64,
    size: usize,
}

/// The cache of one gateway; `None` inside when it is turned off (`maxBytes: 0`).
pub struct ObjectCache(Option<Arc<Inner>>);

struct Inner {
    store: Store,
    shards: Vec<Mutex<shard::Shard>>,
    hasher: std::collections::hash_map::RandomState,
    max_object: u64,
    buckets: Mutex<HashMap<String, Arc<BucketWatch>>>,
    /// Fills in progress, by cache key: set to true when an invalidation overtakes them.
    filling: Mutex<HashMap<String, (usize, bool)>>,
    m: CacheMetrics,
    stop: signal::Receiver<bool>,
}

struct CacheMetrics {
    hits: IntCounter,
    misses: IntCounter,
    evictions: IntCounter,
    invalidations: IntCounter,
    bytes: IntGauge,
    entries: IntGauge,
}

/// The watch state of one bucket.
#[derive(Default)]
struct BucketWatch {
    /// Entries from an older epoch are stale (the bucket was flushed).
    epoch: AtomicU64,
    /// The subscription is live.
    live: AtomicBool,
    /// [`Store::interruptions`] when it was made: any change means a gap.
    seen: AtomicU64,
}

fn cache_key(nats: &str, key: &str) -> String {
    let mut k = String::with_capacity(nats.len() + 1 + key.len());
    k.push_str(nats);
    k.push('\0');
    k.push_str(key);
    k
}

/// A fill in progress: inserts the object when it completes, unless it was overtaken.
pub struct Fill {
    inner: Arc<Inner>,
    key: String,
    epoch: u64,
    watch: Arc<BucketWatch>,
    max: u64,
}

impl ObjectCache {
    /// The cache with these limits (off when `maxBytes` or `maxEntries` is 0).
    pub fn new(
        s: &CacheSettings,
        store: Store,
        metrics: &Metrics,
        stop: signal::Receiver<bool>,
    ) -> ObjectCache {
        if s.max_bytes == 0 || s.max_entries == 0 {
            return ObjectCache(None);
        }
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(shard::Shard::new(
                    (s.max_bytes as usize / SHARDS).max(1),
                    (s.max_entries / SHARDS).max(1),
                ))
            })
            .collect();
        let inner = Arc::new(Inner {
            store: store.clone(),
            shards,
            hasher: Default::default(),
            max_object: s.max_object_bytes,
            buckets: Mutex::default(),
            filling: Mutex::default(),
            m: CacheMetrics {
                hits: metrics.cache_requests.with_label_values(&["hit"]),
                misses: metrics.cache_requests.with_label_values(&["miss"]),
                evictions: metrics.cache_evictions.clone(),
                invalidations: metrics.cache_invalidations.clone(),
                bytes: metrics.cache_bytes.clone(),
                entries: metrics.cache_entries.clone(),
            },
            stop,
        });
        // Writes through this gateway remove what they change before they answer: the
        // cache must not serve the old version, not even until the bucket's watch sees it.
        let weak = Arc::downgrade(&inner);
        store.on_write(Box::new(move |nats, key| {
            if let Some(inner) = weak.upgrade() {
                match key {
                    Some(key) => inner.invalidate(&cache_key(nats, key)),
                    None => inner.flush(nats),
                }
            }
        }));
        ObjectCache(Some(inner))
    }

    /// The cached object, if it is there and the bucket's watch is live.
    pub fn lookup(&self, nats: &str, key: &str) -> Option<Arc<Entry>> {
        let inner = self.0.as_ref()?;
        let watch = inner.watch(nats);
        if !inner.usable(&watch) {
            inner.m.misses.inc();
            return None;
        }
        let k = cache_key(nats, key);
        let epoch = watch.epoch.load(Ordering::Acquire);
        let mut shard = inner.shard(&k);
        match shard.get(&k) {
            Some(e) if e.epoch == epoch => {
                inner.m.hits.inc();
                Some(e)
            }
            Some(_) => {
                let freed = shard.remove(&k);
                inner.account(-(freed as i64), -1);
                inner.m.misses.inc();
                None
            }
            None => {
                inner.m.misses.inc();
                None
            }
        }
    }

    /// Starts filling `key` of bucket `nats` (objects up to `max` bytes), if the bucket's
    /// watch is live. Register before reading the object's metadata.
    pub fn begin_fill(&self, nats: &str, key: &str, max: u64) -> Option<Fill> {
        let inner = self.0.as_ref()?;
        let watch = inner.watch(nats);
        if !inner.usable(&watch) {
            return None;
        }
        let k = cache_key(nats, key);
        inner
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(k.clone())
            .or_insert((0, false))
            .0 += 1;
        Some(Fill {
            inner: inner.clone(),
            key: k,
            epoch: watch.epoch.load(Ordering::Acquire),
            watch,
            max: max.min(inner.max_object),
        })
    }

    /// Removes entries: of one bucket (or all), with a key prefix, or one key. Returns
    /// how many were removed.
    pub fn purge(&self, nats: Option<&str>, prefix: Option<&str>, key: Option<&str>) -> usize {
        let Some(inner) = &self.0 else { return 0 };
        let mut removed = 0;
        for shard in &inner.shards {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let (n, freed) = shard.remove_where(|k| {
                let (b, object) = k.split_once('\0').unwrap_or((k, ""));
                nats.is_none_or(|n| n == b)
                    && prefix.is_none_or(|p| object.starts_with(p))
                    && key.is_none_or(|want| object == want)
            });
            removed += n;
            inner.account(-(freed as i64), -(n as i64));
        }
        let mut filling = inner.filling.lock().unwrap_or_else(|p| p.into_inner());
        for (k, f) in filling.iter_mut() {
            if nats.is_none_or(|n| k.starts_with(&format!("{n}\0"))) {
                f.1 = true;
            }
        }
        removed
    }
}

impl Inner {
    fn shard(&self, k: &str) -> std::sync::MutexGuard<'_, shard::Shard> {
        let i = (self.hasher.hash_one(k) as usize) % self.shards.len();
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn account(&self, bytes: i64, entries: i64) {
        self.m.bytes.add(bytes);
        self.m.entries.add(entries);
    }

    fn usable(&self, w: &BucketWatch) -> bool {
        w.live.load(Ordering::Acquire)
            && self.store.connected()
            && self.store.interruptions() == w.seen.load(Ordering::Acquire)
    }

    /// The bucket's watch, started on first use.
    fn watch(self: &Arc<Self>, nats: &str) -> Arc<BucketWatch> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = buckets.get(nats) {
            return w.clone();
        }
        let w = Arc::new(BucketWatch::default());
        buckets.insert(nats.to_string(), w.clone());
        tokio::spawn(watch::run(
            Arc::downgrade(self),
            nats.to_string(),
            w.clone(),
            self.stop.clone(),
        ));
        w
    }

    fn invalidate(&self, k: &str) {
        if let Some(f) = self
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(k)
        {
            f.1 = true;
        }
        let freed = self.shard(k).remove(k);
        if freed > 0 {
            self.m.invalidations.inc();
            self.account(-(freed as i64), -1);
        }
    }

    /// Makes every entry of the bucket stale and drops its fills in progress.
    fn flush(&self, nats: &str) {
        let w = self
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(nats)
            .cloned();
        if let Some(w) = w {
            w.epoch.fetch_add(1, Ordering::AcqRel);
        }
        let prefix = format!("{nats}\0");
        let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
        for (k, f) in filling.iter_mut() {
            if k.starts_with(&prefix) {
                f.1 = true;
            }
        }
    }
}

impl Fill {
    /// The largest object this fill may store.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Stores the object unless an invalidation or flush overtook the fill.
    pub fn finish(self, meta: ObjectMeta, body: Bytes) {
        let overtaken = self
            .inner
            .filling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.key)
            .is_none_or(|f| f.1);
        if overtaken
            || self.watch.epoch.load(Ordering::Acquire) != self.epoch
            || !self.inner.usable(&self.watch)
            || body.len() as u64 > self.max
        {
            return;
        }
        let size = body.len() + self.key.len() + ENTRY_OVERHEAD;
        let entry = Arc::new(Entry {
            meta,
            body,
            epoch: self.epoch,
            size,
        });
        let d = self.inner.shard(&self.key).insert(self.key.clone(), entry);
        self.inner.m.evictions.inc_by(d.evicted);
        self.inner.account(d.bytes, d.entries);
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let mut filling = self.inner.filling.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = filling.get_mut(&self.key) {
            f.0 -= 1;
            if f.0 == 0 {
                filling.remove(&self.key);
            }
        }
    }
}

/// Passes an object's bytes through and completes `fill` with them once all arrived
/// (HTTP servers stop polling a body when its length is reached).
pub fn tee<S, E>(stream: S, fill: Fill, meta: ObjectMeta) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let buf = BytesMut::with_capacity(meta.size as usize);
    let mut state = Some((fill, meta, buf));
    stream.map(move |piece| {
        match &piece {
            Ok(b) => {
                if let Some((_, meta, buf)) = state.as_mut() {
                    buf.extend_from_slice(b);
                    if buf.len() as u64 >= meta.size {
                        if let Some((fill, meta, buf)) = state.take() {
                            if buf.len() as u64 == meta.size {
                                fill.finish(meta, buf.freeze());
                            }
                        }
                    }
                }
            }
            Err(_) => state = None,
        }
        piece
    })
}
