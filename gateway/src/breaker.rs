//! The circuit breaker around NATS: after `failureThreshold` requests in a row fail on
//! NATS (errors or timeouts) and JetStream itself does not answer a ping, requests fail at
//! once with 503 for `cooldownSeconds`; then one request probes JetStream (half-open) and
//! closes the circuit if it answers. While JetStream answers (one bucket's stream is
//! electing a leader, say), the circuit stays closed: requests wait for the election
//! instead of failing fast past it.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jets3_crds::CircuitBreaker;

use crate::error::{S3Code, S3Error, S3Result};
use crate::metrics::Metrics;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// What a request may do.
pub enum Admit {
    /// Go on.
    Pass,
    /// The cool-down is over: probe NATS, then [`Breaker::probed`].
    Probe,
}

/// The breaker's state; it outlives config reloads.
#[derive(Default)]
pub struct Breaker {
    state: AtomicU8,
    failures: AtomicU32,
    opened: Mutex<Option<Instant>>,
    /// A request is pinging JetStream to confirm the failures (one at a time).
    confirming: std::sync::atomic::AtomicBool,
}

fn circuit_open(retry: Duration) -> S3Error {
    S3Error::new(
        S3Code::ServiceUnavailable,
        "The storage backend is failing; the gateway is refusing requests for a moment. Please retry.",
    )
    .header("Retry-After", retry.as_secs().max(1).to_string())
}

impl Breaker {
    /// Whether requests are being refused (open or probing).
    pub fn is_open(&self) -> bool {
        self.state.load(Ordering::Relaxed) != CLOSED
    }

    fn set(&self, state: u8, m: &Metrics) {
        self.state.store(state, Ordering::Relaxed);
        m.circuit_state.set(state as i64);
    }

    /// Before a request that uses NATS.
    pub fn admit(&self, cfg: &CircuitBreaker, m: &Metrics) -> S3Result<Admit> {
        if cfg.failure_threshold == 0 || self.state.load(Ordering::Relaxed) == CLOSED {
            return Ok(Admit::Pass);
        }
        let cooldown = Duration::from_secs(cfg.cooldown_seconds);
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        let since = opened.map(|t| t.elapsed()).unwrap_or(cooldown);
        if self.state.load(Ordering::Relaxed) == OPEN && since >= cooldown {
            self.set(HALF_OPEN, m);
            *opened = Some(Instant::now());
            return Ok(Admit::Probe);
        }
        Err(circuit_open(cooldown.saturating_sub(since)))
    }

    /// The outcome of a probe: closes the circuit, or opens it for another cool-down.
    pub fn probed(&self, ok: bool, cfg: &CircuitBreaker, m: &Metrics) -> S3Result<()> {
        if ok {
            tracing::info!("NATS answers again: circuit closed");
            self.failures.store(0, Ordering::Relaxed);
            self.set(CLOSED, m);
            return Ok(());
        }
        *self.opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.set(OPEN, m);
        Err(circuit_open(Duration::from_secs(cfg.cooldown_seconds)))
    }

    /// Counts a request's outcome: a NATS failure, or anything else (NATS answered).
    /// `true`: the threshold is reached; ping JetStream, then [`Breaker::confirm`].
    pub fn record(&self, nats_failed: bool, cfg: &CircuitBreaker) -> bool {
        if cfg.failure_threshold == 0 {
            return false;
        }
        if !nats_failed {
            if self.failures.load(Ordering::Relaxed) != 0 {
                self.failures.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        n >= cfg.failure_threshold
            && self.state.load(Ordering::Relaxed) == CLOSED
            && !self.confirming.swap(true, Ordering::Relaxed)
    }

    /// The ping after the threshold: opens the circuit when JetStream did not answer,
    /// else starts counting again.
    pub fn confirm(&self, answered: bool, cfg: &CircuitBreaker, m: &Metrics) {
        self.confirming.store(false, Ordering::Relaxed);
        if answered {
            tracing::info!("requests fail on NATS but JetStream answers (a stream failing over?): circuit stays closed");
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        if self
            .state
            .compare_exchange(CLOSED, OPEN, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            *self.opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            m.circuit_state.set(OPEN as i64);
            m.circuit_opened.inc();
            tracing::warn!(
                cooldown_seconds = cfg.cooldown_seconds,
                "NATS keeps failing and JetStream does not answer: circuit open"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown() {
        let m = Metrics::new();
        let cfg = CircuitBreaker {
            failure_threshold: 3,
            cooldown_seconds: 1,
        };
        let b = Breaker::default();
        assert!(!b.record(true, &cfg));
        assert!(!b.record(true, &cfg));
        assert!(!b.record(false, &cfg));
        assert!(!b.record(true, &cfg));
        assert!(!b.record(true, &cfg));
        assert!(!b.is_open(), "a success in between resets the count");
        assert!(b.record(true, &cfg), "the threshold: confirm with a ping");
        assert!(!b.record(true, &cfg), "one ping at a time");
        b.confirm(true, &cfg, &m);
        assert!(!b.is_open(), "JetStream answered: still closed");
        assert!(!b.record(true, &cfg) && !b.record(true, &cfg));
        assert!(b.record(true, &cfg));
        b.confirm(false, &cfg, &m);
        assert!(b.is_open());
        let e = b.admit(&cfg, &m).err().expect("fails fast while open");
        assert_eq!(e.code.as_str(), "ServiceUnavailable");
        std::thread::sleep(Duration::from_millis(1050));
        assert!(matches!(b.admit(&cfg, &m), Ok(Admit::Probe)));
        assert!(b.admit(&cfg, &m).is_err(), "one probe at a time");
        assert!(b.probed(false, &cfg, &m).is_err());
        assert!(
            b.admit(&cfg, &m).is_err(),
            "open again after a failed probe"
        );
        std::thread::sleep(Duration::from_millis(1050));
        assert!(matches!(b.admit(&cfg, &m), Ok(Admit::Probe)));
        assert!(b.probed(true, &cfg, &m).is_ok());
        assert!(matches!(b.admit(&cfg, &m), Ok(Admit::Pass)));
        assert_eq!(m.circuit_state.get(), 0);
        assert_eq!(m.circuit_opened.get(), 1);
    }
}
