//! Prometheus metrics (`GET /metrics`, text format). One registry per application: outbound
//! clients and the decision path record into it; gauges that mirror the store (gates by state,
//! outbox backlog) are refreshed when scraped.
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub gates: Family<StateLabel, Gauge>,
    pub decisions: Family<SourceLabel, Counter>,
    pub decision_latency: Histogram,
    pub release_latency: Histogram,
    pub time_pending: Histogram,
    pub servicenow_requests: Family<CallLabels, Counter>,
    pub servicenow_latency: Family<EndpointLabel, Histogram>,
    pub jenkins_requests: Family<CallLabels, Counter>,
    pub jenkins_latency: Family<EndpointLabel, Histogram>,
    pub outbox_backlog: Gauge,
    pub open_long_polls: Gauge,
    pub liveness: Liveness,
}

/// What the alert rules watch for a gate held too long and a replica that stopped renewing its
/// lease (deploy/prometheus/alerts.yml).
pub struct Liveness {
    pub oldest_open_gate: Gauge,
    pub heartbeats: Family<ResultLabel, Counter>,
    pub replicas_alive: Gauge,
}

impl Liveness {
    fn register(r: &mut Registry) -> Liveness {
        Liveness {
            oldest_open_gate: register(
                r,
                "oldest_open_gate_age_seconds",
                "Age of the oldest gate still registering or pending (0 when none is)",
                Gauge::default(),
            ),
            heartbeats: register(
                r,
                "replica_heartbeats",
                "This replica's heartbeats in the store (its liveness lease), by result (ok, error)",
                heartbeat_family(),
            ),
            replicas_alive: register(
                r,
                "replicas_alive",
                "Replicas whose heartbeat is within store.lease_ttl, as this replica last counted",
                Gauge::default(),
            ),
        }
    }
}

/// Register `metric` under `name` and hand it back (the registry keeps a clone: metrics are
/// shared handles).
fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Both results exist from the start, so that an alert on `ok` not growing also fires for a
/// replica that never renewed.
fn heartbeat_family() -> Family<ResultLabel, Counter> {
    let family = Family::<ResultLabel, Counter>::default();
    for result in ["ok", "error"] {
        // A counter at 0; the guard it hands back is dropped at once.
        drop(family.get_or_create(&ResultLabel {
            result: result.into(),
        }));
    }
    family
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("snowgate");
        let endpoint_latency = || {
            Family::<EndpointLabel, Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            )
        };
        Metrics {
            gates: register(&mut r, "gates", "Gates by state", Family::default()),
            decisions: register(
                &mut r,
                "decisions",
                "Decisions applied, by where they came from",
                Family::default(),
            ),
            decision_latency: register(
                &mut r,
                "decision_latency_seconds",
                "From a decision's arrival (callback, poll, operator, timer) to its commit and the wake-up of the waiting long-polls",
                latency_histogram(),
            ),
            release_latency: register(
                &mut r,
                "long_poll_release_seconds",
                "From a deciding request's arrival (callback or operator) to the answer of each long-poll it released in this process (the decision latency of BENCHMARKS.md; also in the answer's Server-Timing header)",
                latency_histogram(),
            ),
            time_pending: register(
                &mut r,
                "gate_pending_seconds",
                "Time from a gate's opening to its decision",
                Histogram::new(exponential_buckets(1.0, 2.0, 20)),
            ),
            servicenow_requests: register(
                &mut r,
                "servicenow_requests",
                "ServiceNow requests by endpoint and status (status `error` = no answer)",
                Family::default(),
            ),
            servicenow_latency: register(
                &mut r,
                "servicenow_request_duration_seconds",
                "ServiceNow request latency by endpoint",
                endpoint_latency(),
            ),
            jenkins_requests: register(
                &mut r,
                "jenkins_requests",
                "Jenkins requests by endpoint and status (status `error` = no answer)",
                Family::default(),
            ),
            jenkins_latency: register(
                &mut r,
                "jenkins_request_duration_seconds",
                "Jenkins request latency by endpoint",
                endpoint_latency(),
            ),
            outbox_backlog: register(
                &mut r,
                "outbox_backlog",
                "Outbound actions (registrations, acknowledgements, Jenkins releases) not yet done",
                Gauge::default(),
            ),
            open_long_polls: register(
                &mut r,
                "waiting_gates",
                "Gates with at least one open long-poll",
                Gauge::default(),
            ),
            liveness: Liveness::register(&mut r),
            registry: r,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Record one outbound call.
pub fn record_call(
    family: &Family<CallLabels, Counter>,
    latency: &Family<EndpointLabel, Histogram>,
    endpoint: &str,
    status: Option<u16>,
    elapsed: Duration,
) {
    family
        .get_or_create(&CallLabels {
            endpoint: endpoint.to_string(),
            status: status.map_or_else(|| "error".to_string(), |s| s.to_string()),
        })
        .inc();
    latency
        .get_or_create(&EndpointLabel {
            endpoint: endpoint.to_string(),
        })
        .observe(elapsed.as_secs_f64());
}
