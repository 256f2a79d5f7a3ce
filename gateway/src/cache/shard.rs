//! One shard of the cache: least recently used entries go first when it is over its
//! byte or entry budget.

use std::sync::Arc;

use lru::LruCache;

use super::Entry;

pub struct Shard {
    lru: LruCache<String, Arc<Entry>>,
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
}

/// What an insert changed.
pub struct Delta {
    pub bytes: i64,
    pub entries: i64,
    pub evicted: u64,
}

impl Shard {
    pub fn new(max_bytes: usize, max_entries: usize) -> Shard {
        Shard {
            lru: LruCache::unbounded(),
            bytes: 0,
            max_bytes,
            max_entries,
        }
    }

    /// The entry, now the most recently used.
    pub fn get(&mut self, k: &str) -> Option<Arc<Entry>> {
        self.lru.get(k).cloned()
    }

    /// Removes an entry; returns the bytes freed (0 if absent).
    pub fn remove(&mut self, k: &str) -> usize {
        let freed = self.lru.pop(k).map_or(0, |e| e.size);
        self.bytes -= freed;
        freed
    }

    /// Removes every entry whose key matches; returns (entries, bytes) removed.
    pub fn remove_where(&mut self, matches: impl Fn(&str) -> bool) -> (usize, usize) {
        let keys: Vec<String> = self
            .lru
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(k, _)| k.clone())
            .collect();
        let freed: usize = keys.iter().map(|k| self.remove(k)).sum();
        (keys.len(), freed)
    }

    /// Inserts (or replaces) an entry, then evicts the least recently used ones until the
    /// shard is within budget. An entry larger than the shard is not kept.
    pub fn insert(&mut self, k: String, e: Arc<Entry>) -> Delta {
        let mut d = Delta {
            bytes: e.size as i64,
            entries: 1,
            evicted: 0,
        };
        if e.size > self.max_bytes {
            let freed = self.remove(&k);
            return Delta {
                bytes: -(freed as i64),
                entries: -i64::from(freed > 0),
                evicted: 0,
            };
        }
        self.bytes += e.size;
        if let Some(old) = self.lru.put(k, e) {
            self.bytes -= old.size;
            d.bytes -= old.size as i64;
            d.entries -= 1;
        }
        while self.bytes > self.max_bytes || self.lru.len() > self.max_entries {
            let Some((_, old)) = self.lru.pop_lru() else {
                break;
            };
            self.bytes -= old.size;
            d.bytes -= old.size as i64;
            d.entries -= 1;
            d.evicted += 1;
        }
        d
    }
}
