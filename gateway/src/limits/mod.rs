//! Admission control: rate limits (gateway-wide, per client address, per access key, per
//! bucket), the number of requests in flight and the body bytes they may hold. Over a
//! limit a request gets `503 SlowDown` with `Retry-After`. Limits that are not configured
//! cost nothing per request.

mod client_ip;
mod rate;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jets3_crds::{Limits, RateLimit};

pub use client_ip::{ClientAddr, TrustedProxies};

use crate::error::{S3Code, S3Error, S3Result};
use crate::metrics::Metrics;

/// Client addresses (and access keys, and buckets) tracked at most, each.
const MAX_TRACKED: usize = 100_000;

/// The limiters of one gateway; their state outlives config reloads.
pub struct Limiter {
    trusted: TrustedProxies,
    global: rate::Bucket,
    per_ip: rate::Keyed<IpAddr>,
    per_key: rate::Keyed<String>,
    per_bucket: rate::Keyed<String>,
    /// Anonymous and failed-auth requests, per bucket.
    per_bucket_unauthenticated: rate::Keyed<String>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicU64,
    buffered: AtomicU64,
}

/// Held while a request is served (to the last byte of its response): its place among
/// the requests in flight and the body bytes it reserved.
pub struct Permit {
    counters: Arc<Counters>,
    in_flight: bool,
    bytes: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.in_flight {
            self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        if self.bytes > 0 {
            self.counters
                .buffered
                .fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

/// `503 SlowDown` with `Retry-After` (whole seconds, at least 1).
fn slow_down(wait: Duration) -> S3Error {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    S3Error::new(S3Code::SlowDown, "Please reduce your request rate.")
        .header("Retry-After", secs.max(1).to_string())
}

/// Adds `n` to `counter` unless that passes `max`.
fn reserve(counter: &AtomicU64, n: u64, max: u64) -> bool {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            (v + n <= max).then_some(v + n)
        })
        .is_ok()
}

impl Limiter {
    pub fn new(trusted: TrustedProxies) -> Limiter {
        Limiter {
            trusted,
            global: rate::Bucket::new(),
            per_ip: rate::Keyed::new(MAX_TRACKED),
            per_key: rate::Keyed::new(MAX_TRACKED),
            per_bucket: rate::Keyed::new(MAX_TRACKED),
            per_bucket_unauthenticated: rate::Keyed::new(MAX_TRACKED),
            counters: Arc::default(),
        }
    }

    /// The client of a request from `peer` (see [`TrustedProxies`]).
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> ClientAddr {
        self.trusted.client(peer, headers)
    }

    fn throttled(m: &Metrics, scope: &str, wait: Duration) -> S3Error {
        m.throttled.with_label_values(&[scope]).inc();
        slow_down(wait)
    }

    /// Admits a new request: a place among those in flight, the gateway-wide and the
    /// per-address rate. `None` when no such limit is set.
    pub fn admit(&self, l: &Limits, ip: IpAddr, m: &Metrics) -> S3Result<Option<Permit>> {
        let r = &l.rate_limits;
        if let Some(limit) = &r.global {
            self.global
                .take(limit)
                .map_err(|w| Self::throttled(m, "global", w))?;
        }
        if let Some(limit) = &r.per_client_ip {
            self.per_ip
                .take(&ip, limit)
                .map_err(|w| Self::throttled(m, "client_ip", w))?;
        }
        if l.max_in_flight_requests == 0 {
            return Ok(None);
        }
        if !reserve(
            &self.counters.in_flight,
            1,
            u64::from(l.max_in_flight_requests),
        ) {
            return Err(Self::throttled(m, "in_flight", Duration::from_secs(1)));
        }
        Ok(Some(Permit {
            counters: self.counters.clone(),
            in_flight: true,
            bytes: 0,
        }))
    }

    /// The bucket's own rate limit, with a budget of its own for requests that are not
    /// authenticated (anonymous, or whose authentication failed).
    pub fn bucket(
        &self,
        name: &str,
        authenticated: bool,
        limit: &RateLimit,
        m: &Metrics,
    ) -> S3Result<()> {
        let (budget, scope) = match authenticated {
            true => (&self.per_bucket, "bucket"),
            false => (&self.per_bucket_unauthenticated, "bucket_unauthenticated"),
        };
        budget
            .take(name, limit)
            .map_err(|w| Self::throttled(m, scope, w))
    }

    /// The per-access-key rate limit, for a request whose signature was checked.
    pub fn access_key(&self, key: &str, l: &Limits, m: &Metrics) -> S3Result<()> {
        match &l.rate_limits.per_access_key {
            Some(limit) => self
                .per_key
                .take(key, limit)
                .map_err(|w| Self::throttled(m, "access_key", w)),
            None => Ok(()),
        }
    }

    /// Reserves `bytes` of body memory under `maxBufferedBytes`, held by `permit`.
    pub fn buffer(
        &self,
        l: &Limits,
        bytes: u64,
        permit: &mut Option<Permit>,
        m: &Metrics,
    ) -> S3Result<()> {
        if l.max_buffered_bytes == 0 || bytes == 0 {
            return Ok(());
        }
        if !reserve(&self.counters.buffered, bytes, l.max_buffered_bytes) {
            return Err(Self::throttled(m, "buffered_bytes", Duration::from_secs(1)));
        }
        let p = permit.get_or_insert_with(|| Permit {
            counters: self.counters.clone(),
            in_flight: false,
            bytes: 0,
        });
        p.bytes += bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_down_rounds_retry_after_up() {
        let e = slow_down(Duration::from_millis(1500));
        assert_eq!(e.code.as_str(), "SlowDown");
        assert_eq!(e.headers, vec![("Retry-After", "2".to_string())]);
        assert_eq!(slow_down(Duration::from_millis(10)).headers[0].1, "1");
    }

    #[test]
    fn in_flight_and_bytes_are_released_with_the_permit() {
        let lim = Limiter::new(TrustedProxies::default());
        let m = Metrics::new();
        let l = Limits {
            max_in_flight_requests: 1,
            max_buffered_bytes: 100,
            ..Default::default()
        };
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut p = lim.admit(&l, ip, &m).unwrap();
        assert!(p.is_some());
        assert!(lim.admit(&l, ip, &m).is_err(), "second request in flight");
        lim.buffer(&l, 80, &mut p, &m).unwrap();
        let mut q = None;
        assert!(
            lim.buffer(&l, 30, &mut q, &m).is_err(),
            "over the byte budget"
        );
        drop(p);
        assert!(lim.admit(&l, ip, &m).unwrap().is_some());
        lim.buffer(&l, 100, &mut q, &m).unwrap();
    }
}
