//! Prometheus metrics of the operator, served on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramTimer, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Error;

/// Every metric, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciliations: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    /// Resources the operator manages, by kind.
    pub managed: IntGaugeVec,
    /// Generation of the gateway config last published.
    pub config_generation: IntGauge,
    /// Resources whose part is left out of the gateway config, by kind.
    pub config_excluded: IntGaugeVec,
    /// Gateway configs built that failed validation as a whole (not published).
    pub config_invalid: IntCounter,
    /// NATS buckets left in place because NATS stayed unreachable past --delete-timeout.
    pub orphaned_buckets: IntCounter,
    /// 1 while this replica holds the leader Lease.
    pub leader: IntGauge,
    /// 1 while the NATS connection is up.
    pub nats_connected: IntGauge,
    /// Gateway pods the config push found.
    pub gateway_pods: IntGauge,
    /// Gateway pods holding the published config.
    pub gateway_pods_in_sync: IntGauge,
    /// Configs pushed (PUT) to a gateway pod.
    pub push_attempts: IntCounter,
    /// Failed requests to gateway pods, by reason.
    pub push_failures: IntCounterVec,
    /// Time a successful push (PUT) takes.
    pub push_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "jets3_operator_reconciliations_total",
                "Reconciliations started, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "jets3_operator_reconcile_failures_total",
                "Reconciliations that failed, by kind and reason",
            ),
            &["kind", "reason"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "jets3_operator_reconcile_duration_seconds",
                "Time a reconciliation takes, by kind",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["kind"],
        )
        .expect("valid metric");
        let managed = IntGaugeVec::new(
            Opts::new(
                "jets3_operator_managed_objects",
                "Resources the operator manages, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let config_generation = IntGauge::new(
            "jets3_operator_config_generation",
            "Generation of the gateway config last published",
        )
        .expect("valid metric");
        let config_excluded = IntGaugeVec::new(
            Opts::new(
                "jets3_operator_config_excluded",
                "Resources whose part is left out of the gateway config, by kind",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let config_invalid = IntCounter::new(
            "jets3_operator_config_invalid_total",
            "Gateway configs that failed validation as a whole and were not published",
        )
        .expect("valid metric");
        let orphaned_buckets = IntCounter::new(
            "jets3_operator_orphaned_buckets_total",
            "NATS buckets left in place because NATS stayed unreachable past --delete-timeout",
        )
        .expect("valid metric");
        let leader = IntGauge::new(
            "jets3_operator_leader",
            "Whether this replica holds the leader Lease (1) or stands by (0)",
        )
        .expect("valid metric");
        let nats_connected = IntGauge::new(
            "jets3_operator_nats_connected",
            "Whether the NATS connection is up (1) or not (0)",
        )
        .expect("valid metric");
        let gateway_pods = IntGauge::new(
            "jets3_operator_gateway_pods",
            "Gateway pods the config push found",
        )
        .expect("valid metric");
        let gateway_pods_in_sync = IntGauge::new(
            "jets3_operator_gateway_pods_in_sync",
            "Gateway pods holding the published config",
        )
        .expect("valid metric");
        let push_attempts = IntCounter::new(
            "jets3_operator_push_attempts_total",
            "Configs pushed (PUT) to a gateway pod",
        )
        .expect("valid metric");
        let push_failures = IntCounterVec::new(
            Opts::new(
                "jets3_operator_push_failures_total",
                "Failed requests to gateway pods, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let push_duration = Histogram::with_opts(
            HistogramOpts::new(
                "jets3_operator_push_duration_seconds",
                "Time a successful config push (PUT) to a gateway pod takes",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("valid metric");
        for c in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(managed.clone()),
            Box::new(config_generation.clone()),
            Box::new(config_excluded.clone()),
            Box::new(config_invalid.clone()),
            Box::new(orphaned_buckets.clone()),
            Box::new(leader.clone()),
            Box::new(nats_connected.clone()),
            Box::new(gateway_pods.clone()),
            Box::new(gateway_pods_in_sync.clone()),
            Box::new(push_attempts.clone()),
            Box::new(push_failures.clone()),
            Box::new(push_duration.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            reconciliations,
            failures,
            duration,
            managed,
            config_generation,
            config_excluded,
            config_invalid,
            orphaned_buckets,
            leader,
            nats_connected,
            gateway_pods,
            gateway_pods_in_sync,
            push_attempts,
            push_failures,
            push_duration,
        }
    }

    /// Counts a reconciliation of `kind` and times it until the timer drops.
    pub fn reconcile_started(&self, kind: &str) -> HistogramTimer {
        self.reconciliations.with_label_values(&[kind]).inc();
        self.duration.with_label_values(&[kind]).start_timer()
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_failed(&self, kind: &str, error: &Error) {
        self.failures
            .with_label_values(&[kind, error.metric_label()])
            .inc();
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
