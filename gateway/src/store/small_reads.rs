//! The bytes of small objects, kept by the identity of their chunks.
//!
//! A version's chunks never change once written: every version gets a fresh nuid, and
//! the sequences its chunks were stored at are recorded with it. So a read that has
//! looked the key up (which decides the version served, as before) takes a small
//! object's bytes from memory instead of a second NATS round trip, and nothing stale can
//! be served: a replaced or deleted version is no longer named by any lookup.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lru::LruCache;

use super::meta::ObjectMeta;

/// The largest object kept (one chunk).
pub const MAX_OBJECT: u64 = 64 * 1024;

/// Bookkeeping counted per entry besides its bytes.
const ENTRY_OVERHEAD: usize = 128;

/// What identifies an object's bytes: its stream, its chunks' nuid and their sequences.
#[derive(Hash, PartialEq, Eq)]
struct ChunkId {
    stream: String,
    nuid: String,
    seq: (u64, u64),
}

/// Hits and misses, for the metrics.
#[derive(Default)]
pub struct SmallReadStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

/// The cache of one gateway (empty when its budget is 0).
pub struct SmallReads {
    state: Option<Mutex<State>>,
    pub stats: Arc<SmallReadStats>,
}

struct State {
    lru: LruCache<ChunkId, Bytes>,
    bytes: usize,
    max_bytes: usize,
}

impl SmallReads {
    /// A cache of at most `max_bytes` (0: none).
    pub fn new(max_bytes: usize, stats: Arc<SmallReadStats>) -> SmallReads {
        let state = (max_bytes > 0).then(|| {
            Mutex::new(State {
                lru: LruCache::unbounded(),
                bytes: 0,
                max_bytes,
            })
        });
        SmallReads { state, stats }
    }

    /// The sequence of `meta`'s one chunk when its bytes may be kept: a small object written
    /// by jets3 (which records where its chunks are) in one chunk.
    fn chunk_seq(meta: &ObjectMeta) -> Option<(u64, u64)> {
        let seq = meta.seq?;
        let small = meta.size > 0 && meta.size <= MAX_OBJECT && meta.chunks <= 1;
        (small && seq.0 == seq.1).then_some(seq)
    }

    fn id(stream: &str, meta: &ObjectMeta) -> Option<ChunkId> {
        Some(ChunkId {
            seq: Self::chunk_seq(meta)?,
            stream: stream.to_string(),
            nuid: meta.nuid.clone(),
        })
    }

    /// Whether reads of `meta` go through the cache.
    pub fn covers(&self, meta: &ObjectMeta) -> bool {
        self.state.is_some() && Self::chunk_seq(meta).is_some()
    }

    /// `meta`'s bytes, if kept.
    pub fn get(&self, stream: &str, meta: &ObjectMeta) -> Option<Bytes> {
        let state = self.state.as_ref()?;
        let id = Self::id(stream, meta)?;
        let hit = lock(state).lru.get(&id).cloned();
        let counter = if hit.is_some() {
            &self.stats.hits
        } else {
            &self.stats.misses
        };
        counter.fetch_add(1, Relaxed);
        hit
    }

    /// Keeps `body` as `meta`'s bytes (copied, so that it does not pin a larger buffer);
    /// a body of another length is not kept.
    pub fn put(&self, stream: &str, meta: &ObjectMeta, body: &[u8]) {
        let (Some(state), Some(id)) = (self.state.as_ref(), Self::id(stream, meta)) else {
            return;
        };
        if body.len() as u64 != meta.size {
            return;
        }
        let cost = |b: &Bytes| b.len() + ENTRY_OVERHEAD;
        let body = Bytes::copy_from_slice(body);
        let mut s = lock(state);
        s.bytes += cost(&body);
        if let Some(old) = s.lru.put(id, body) {
            s.bytes -= cost(&old);
        }
        while s.bytes > s.max_bytes {
            let Some((_, old)) = s.lru.pop_lru() else {
                break;
            };
            s.bytes -= cost(&old);
        }
    }

    /// Bytes held.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.state.as_ref().map_or(0, |s| lock(s).bytes)
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(nuid: &str, size: u64, seq: Option<(u64, u64)>) -> ObjectMeta {
        let mut m = crate::store::meta::Segment {
            nuid: nuid.into(),
            size,
            seq,
        }
        .as_object();
        m.chunks = seq.map_or(1, |(f, l)| l - f + 1);
        m
    }

    #[test]
    fn keeps_small_objects_by_their_chunks_within_budget() {
        let c = SmallReads::new(3 * (1000 + ENTRY_OVERHEAD), Arc::default());
        let a = meta("a", 1000, Some((5, 5)));
        assert!(c.get("S", &a).is_none());
        c.put("S", &a, &[1u8; 1000]);
        assert_eq!(c.get("S", &a).as_deref(), Some(&[1u8; 1000][..]));
        // Another stream, nuid or sequence is another object.
        assert!(c.get("T", &a).is_none());
        assert!(c.get("S", &meta("b", 1000, Some((5, 5)))).is_none());
        assert!(c.get("S", &meta("a", 1000, Some((6, 6)))).is_none());
        // A body of another length than the version's is not kept.
        let b = meta("b", 1000, Some((7, 7)));
        c.put("S", &b, &[2u8; 999]);
        assert!(c.get("S", &b).is_none());
        // The least recently used goes first.
        for (i, n) in ["c", "d", "e"].iter().enumerate() {
            c.put(
                "S",
                &meta(n, 1000, Some((10 + i as u64, 10 + i as u64))),
                &[3; 1000],
            );
        }
        assert!(c.held() <= 3 * (1000 + ENTRY_OVERHEAD));
        assert!(c.get("S", &a).is_none());
        assert_eq!(c.stats.hits.load(Relaxed), 1);
    }

    #[test]
    fn large_unpinned_or_empty_objects_are_not_kept() {
        let c = SmallReads::new(1 << 20, Arc::default());
        for m in [
            meta("big", MAX_OBJECT + 1, Some((1, 1))),
            meta("native", 10, None),
            meta("spread", 10, Some((1, 3))),
            meta("empty", 0, Some((1, 1))),
        ] {
            assert!(!c.covers(&m));
            c.put("S", &m, &vec![0; m.size as usize]);
            assert!(c.get("S", &m).is_none());
        }
        assert_eq!(c.held(), 0);
        let off = SmallReads::new(0, Arc::default());
        let m = meta("a", 10, Some((1, 1)));
        off.put("S", &m, &[0; 10]);
        assert!(off.get("S", &m).is_none() && !off.covers(&m));
    }
}
