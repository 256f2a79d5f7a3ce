//! Token buckets: one for a whole scope, or one per key (client address, access key,
//! bucket) in sharded maps whose size is bounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jets3_crds::RateLimit;

/// Tokens left and when they were counted.
#[derive(Clone, Copy)]
struct Level {
    tokens: f64,
    at: Instant,
}

impl Level {
    fn full(limit: &RateLimit, now: Instant) -> Level {
        Level {
            tokens: limit.capacity(),
            at: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let cap = limit.capacity();
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.requests_per_second).min(cap);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / limit.requests_per_second,
            ))
        }
    }

    /// Refilled to capacity by now: forgetting it changes nothing.
    fn is_full(&self, limit: &RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * limit.requests_per_second >= limit.capacity()
    }
}

/// One token bucket.
pub struct Bucket(Mutex<Option<Level>>);

impl Bucket {
    pub const fn new() -> Bucket {
        Bucket(Mutex::new(None))
    }

    /// Takes a token under `limit`, or returns the wait until one is available.
    pub fn take(&self, limit: &RateLimit) -> Result<(), Duration> {
        let now = Instant::now();
        let mut level = self.0.lock().unwrap_or_else(|p| p.into_inner());
        level
            .get_or_insert_with(|| Level::full(limit, now))
            .take(limit, now)
    }
}

const SHARDS: usize = 16;

/// A token bucket per key, at most `max_keys` of them (idle full buckets are forgotten
/// first; a shard that is still full starts over).
pub struct Keyed<K> {
    shards: [Mutex<HashMap<K, Level>>; SHARDS],
    hasher: std::collections::hash_map::RandomState,
    max_per_shard: usize,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    pub fn new(max_keys: usize) -> Keyed<K> {
        Keyed {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: Default::default(),
            max_per_shard: (max_keys / SHARDS).max(1),
        }
    }

    /// Takes a token from `key`'s bucket under `limit`, or returns the wait.
    pub fn take<Q>(&self, key: &Q, limit: &RateLimit) -> Result<(), Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let now = Instant::now();
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(level) = map.get_mut(key) {
            return level.take(limit, now);
        }
        if map.len() >= self.max_per_shard {
            map.retain(|_, l| !l.is_full(limit, now));
            if map.len() >= self.max_per_shard {
                map.clear();
            }
        }
        let mut level = Level::full(limit, now);
        let r = level.take(limit, now);
        map.insert(key.to_owned(), level);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rps: f64, burst: u32) -> RateLimit {
        RateLimit {
            requests_per_second: rps,
            burst: Some(burst),
        }
    }

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = limit(10.0, 3);
        let b = Bucket::new();
        for _ in 0..3 {
            assert!(b.take(&l).is_ok());
        }
        let wait = b.take(&l).expect_err("burst spent");
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.take(&l).is_ok(), "one token back after 1/rate");
        assert!(b.take(&l).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets_and_the_map_stays_bounded() {
        let l = limit(1.0, 1);
        let k: Keyed<String> = Keyed::new(SHARDS * 4);
        assert!(k.take("a", &l).is_ok());
        assert!(k.take("a", &l).is_err());
        assert!(k.take("b", &l).is_ok());
        for i in 0..10_000 {
            let _ = k.take(format!("k{i}").as_str(), &l);
        }
        let total: usize = k.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * 4, "{total} keys held");
    }
}
