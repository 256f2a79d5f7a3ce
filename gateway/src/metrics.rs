//! Prometheus metrics of the gateway.

use std::sync::atomic::Ordering::Relaxed;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::store::{CollectorStats, StoreStats};

/// The `result` labels of `jets3_config_pushes_total`: `malformed` counts bodies that are not
/// a config or do not match their hash header; `invalid` also counts generations out of range;
/// `busy` pushes turned away while too many tokens were in flight.
pub const PUSH_RESULTS: [&str; 7] = [
    "applied",
    "unchanged",
    "stale",
    "invalid",
    "unauthorized",
    "malformed",
    "busy",
];

/// All metrics, registered in their own registry.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub in_flight: IntGauge,
    pub nats_connected: IntGauge,
    pub nats_connects: IntGauge,
    /// A JetStream API round trip (account info), measured every 2 s while connected.
    pub nats_rtt: Histogram,
    pub config_generation: IntGauge,
    pub config_rejected: IntCounter,
    config_pushes: IntCounterVec,
    pub complete_seconds: Histogram,
    pub throttled: IntCounterVec,
    pub timeouts: IntCounterVec,
    pub circuit_state: IntGauge,
    pub circuit_opened: IntCounter,
    pub cache_requests: IntCounterVec,
    pub cache_evictions: IntCounter,
    pub cache_invalidations: IntCounter,
    pub cache_bytes: IntGauge,
    pub cache_entries: IntGauge,
    pub audit_dropped: IntCounter,
    /// Mirrors of the store's and collector's counters, synced at render time.
    store_gauges: Vec<(IntGauge, StatFn)>,
    store_counters: Vec<(IntCounter, StatFn)>,
}

/// Reads one number from the store's or collector's statistics.
type StatFn = fn(&StoreStats, &CollectorStats) -> u64;

/// Gauges mirrored from the store and the collector: name, help, value.
const STORE_GAUGES: [(&str, &str, StatFn); 6] = [
    (
        "collector_leader",
        "1 while this gateway runs the collector",
        |_, c| c.leader.load(Relaxed) as u64,
    ),
    (
        "collector_pending_versions",
        "Retired versions waiting for the collector (grace period running or over)",
        |_, c| c.pending.load(Relaxed),
    ),
    (
        "collector_pending_bytes",
        "Bytes of retired versions not yet purged: what lingers after overwrites and deletes",
        |_, c| c.pending_bytes.load(Relaxed),
    ),
    (
        "collector_oldest_pending_seconds",
        "Age of the oldest retired version not yet purged (grows when the collector falls behind)",
        |_, c| c.oldest_pending_seconds.load(Relaxed),
    ),
    (
        "collector_last_pass_milliseconds",
        "Duration of the collector's last pass",
        |_, c| c.last_pass_millis.load(Relaxed),
    ),
    (
        "collector_last_scan_milliseconds",
        "Duration of the collector's last scan for orphans",
        |_, c| c.last_scan_millis.load(Relaxed),
    ),
];

/// Counters mirrored from the store and the collector: name, help, value.
const STORE_COUNTERS: [(&str, &str, StatFn); 21] = [
    (
        "collector_passes_total",
        "Collector passes run here",
        |_, c| c.passes.load(Relaxed),
    ),
    (
        "collector_pass_errors_total",
        "Collector passes that failed",
        |_, c| c.pass_errors.load(Relaxed),
    ),
    (
        "collector_purged_versions_total",
        "Retired versions (and orphans) whose chunks the collector purged",
        |_, c| c.purged_versions.load(Relaxed),
    ),
    (
        "collector_purged_bytes_total",
        "Object bytes of the versions the collector purged",
        |_, c| c.purged_bytes.load(Relaxed),
    ),
    (
        "collector_held_by_reads_total",
        "Purges put off because a registered read still held the version",
        |_, c| c.held_by_reads.load(Relaxed),
    ),
    (
        "collector_deferred_new_registry_total",
        "Purges put off because the read registry was made again too lately to know every running read",
        |_, c| c.deferred_new_registry.load(Relaxed),
    ),
    (
        "collector_orphans_found_total",
        "Chunk sets that nothing referenced, found and retired by the collector",
        |_, c| c.orphans_found.load(Relaxed),
    ),
    (
        "collector_compacted_versions_total",
        "Spliced multipart versions the collector rewrote into the native layout",
        |_, c| c.compacted_versions.load(Relaxed),
    ),
    (
        "collector_compacted_bytes_total",
        "Object bytes of the versions the collector compacted",
        |_, c| c.compacted_bytes.load(Relaxed),
    ),
    (
        "collector_uploads_expired_total",
        "Multipart uploads removed for being older than the expiry",
        |_, c| c.uploads_expired.load(Relaxed),
    ),
    (
        "collector_tombstones_removed_total",
        "Tombstones of deleted versions removed after the orphan horizon",
        |_, c| c.tombstones_removed.load(Relaxed),
    ),
    (
        "collector_fences_lifted_total",
        "Fences of unfinished DeleteBucket calls lifted",
        |_, c| c.fences_lifted.load(Relaxed),
    ),
    (
        "metadata_malformed_total",
        "Object metadata messages from NATS refused as malformed (logged, skipped)",
        |s, _| s.malformed.load(Relaxed),
    ),
    (
        "index_snapshots_loaded_total",
        "Listing indexes started from (or moved to) a shared snapshot",
        |s, _| s.snapshots.loaded.load(Relaxed),
    ),
    (
        "index_snapshots_refused_total",
        "Listing snapshots refused as damaged (the index was rebuilt by replay)",
        |s, _| s.snapshots.refused.load(Relaxed),
    ),
    (
        "index_snapshots_written_total",
        "Listing snapshots written by this gateway (as the collector's leader)",
        |s, _| s.snapshots.written.load(Relaxed),
    ),
    (
        "index_pages_read_total",
        "Listing snapshot pages read from NATS (not found in the page cache)",
        |s, _| s.snapshots.pages_read.load(Relaxed),
    ),
    (
        "small_reads_hits_total",
        "Reads of small objects whose bytes were in memory (cache.smallReadsBytes)",
        |s, _| s.small_reads.hits.load(Relaxed),
    ),
    (
        "put_lookups_skipped_total",
        "Blind writes that guessed their key new, rightly, and so never looked it up",
        |s, _| s.new_key_guesses.right.load(Relaxed),
    ),
    (
        "put_guesses_wrong_total",
        "Blind writes that guessed their key new, wrongly (refused, looked up, committed again)",
        |s, _| s.new_key_guesses.wrong.load(Relaxed),
    ),
    (
        "small_reads_misses_total",
        "Reads of small objects whose bytes were read from NATS",
        |s, _| s.small_reads.misses.load(Relaxed),
    ),
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("jets3".into()), None).unwrap_or_else(|_| Registry::new());
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "S3 requests by operation and status"),
            &["operation", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "S3 request latency")
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 16).expect("buckets")),
            &["operation"],
        )
        .expect("valid metric");
        let bytes_in = IntCounter::new("bytes_received_total", "Request body bytes received")
            .expect("valid metric");
        let bytes_out =
            IntCounter::new("bytes_sent_total", "Object bytes sent").expect("valid metric");
        let in_flight =
            IntGauge::new("requests_in_flight", "Requests being served").expect("valid metric");
        let nats_connected =
            IntGauge::new("nats_connected", "1 while connected to NATS").expect("valid metric");
        let nats_connects =
            IntGauge::new("nats_connects_total", "Connections made to NATS").expect("valid metric");
        let config_generation =
            IntGauge::new("config_generation", "Generation of the config in force")
                .expect("valid metric");
        let config_rejected =
            IntCounter::new("config_rejected_total", "Configs refused as invalid")
                .expect("valid metric");
        let config_pushes = IntCounterVec::new(
            Opts::new("config_pushes_total", "Config pushes received, by result"),
            &["result"],
        )
        .expect("valid metric");
        for result in PUSH_RESULTS {
            config_pushes.with_label_values(&[result]);
        }
        let nats_rtt = Histogram::with_opts(
            HistogramOpts::new(
                "nats_rtt_seconds",
                "Round trip of a JetStream API request (account info), every 2 s while connected",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 13).expect("buckets")),
        )
        .expect("valid metric");
        let complete_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "multipart_complete_seconds",
                "Time to assemble a completed multipart upload",
            )
            .buckets(prometheus::exponential_buckets(0.01, 2.0, 14).expect("buckets")),
        )
        .expect("valid metric");
        let throttled = IntCounterVec::new(
            Opts::new(
                "requests_throttled_total",
                "Requests refused with SlowDown, by the limit they hit",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let timeouts = IntCounterVec::new(
            Opts::new("request_timeouts_total", "Requests cut off by a timeout"),
            &["timeout"],
        )
        .expect("valid metric");
        let circuit_state = IntGauge::new(
            "nats_circuit_state",
            "Circuit breaker around NATS: 0 closed, 1 open, 2 half-open",
        )
        .expect("valid metric");
        let circuit_opened = IntCounter::new(
            "nats_circuit_opened_total",
            "Times the circuit breaker around NATS opened",
        )
        .expect("valid metric");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "cache_requests_total",
                "Object cache lookups of GET and HEAD, by result (hit, miss)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let cache_evictions = IntCounter::new(
            "cache_evictions_total",
            "Objects dropped from the cache to stay within its limits",
        )
        .expect("valid metric");
        let cache_invalidations = IntCounter::new(
            "cache_invalidations_total",
            "Cached objects removed because they changed",
        )
        .expect("valid metric");
        let cache_bytes =
            IntGauge::new("cache_bytes", "Bytes held by the object cache").expect("valid metric");
        let cache_entries = IntGauge::new("cache_entries", "Objects held by the object cache")
            .expect("valid metric");
        let audit_dropped = IntCounter::new(
            "audit_records_dropped_total",
            "Audit records dropped because the audit log could not keep up",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(in_flight.clone()),
            Box::new(nats_connected.clone()),
            Box::new(nats_connects.clone()),
            Box::new(nats_rtt.clone()),
            Box::new(config_generation.clone()),
            Box::new(config_rejected.clone()),
            Box::new(config_pushes.clone()),
            Box::new(complete_seconds.clone()),
            Box::new(throttled.clone()),
            Box::new(timeouts.clone()),
            Box::new(circuit_state.clone()),
            Box::new(circuit_opened.clone()),
            Box::new(cache_requests.clone()),
            Box::new(cache_evictions.clone()),
            Box::new(cache_invalidations.clone()),
            Box::new(cache_bytes.clone()),
            Box::new(cache_entries.clone()),
            Box::new(audit_dropped.clone()),
        ] {
            let _ = registry.register(c);
        }
        let store_gauges: Vec<(IntGauge, StatFn)> = STORE_GAUGES
            .iter()
            .map(|(name, help, f)| {
                let g = IntGauge::new(*name, *help).expect("valid metric");
                let _ = registry.register(Box::new(g.clone()));
                (g, *f)
            })
            .collect();
        let store_counters: Vec<(IntCounter, StatFn)> = STORE_COUNTERS
            .iter()
            .map(|(name, help, f)| {
                let c = IntCounter::new(*name, *help).expect("valid metric");
                let _ = registry.register(Box::new(c.clone()));
                (c, *f)
            })
            .collect();
        Metrics {
            registry,
            requests,
            duration,
            bytes_in,
            bytes_out,
            in_flight,
            nats_connected,
            nats_connects,
            nats_rtt,
            config_generation,
            config_rejected,
            config_pushes,
            complete_seconds,
            throttled,
            timeouts,
            circuit_state,
            circuit_opened,
            cache_requests,
            cache_evictions,
            cache_invalidations,
            cache_bytes,
            cache_entries,
            audit_dropped,
            store_gauges,
            store_counters,
        }
    }

    /// Copies the store's and collector's numbers into their metrics.
    pub fn sync_store(&self, store: &StoreStats, collector: &CollectorStats) {
        for (g, f) in &self.store_gauges {
            g.set(i64::try_from(f(store, collector)).unwrap_or(i64::MAX));
        }
        for (c, f) in &self.store_counters {
            let (now, shown) = (f(store, collector), c.get());
            if now > shown {
                c.inc_by(now - shown);
            }
        }
    }

    /// Counts a config push with its result (one of [`PUSH_RESULTS`]).
    pub fn count_push(&self, result: &'static str) {
        self.config_pushes.with_label_values(&[result]).inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
