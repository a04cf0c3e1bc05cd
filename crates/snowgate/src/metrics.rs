//! Prometheus metrics (`GET /metrics`, text format). One registry per application: outbound
//! clients and the decision path record into it; gauges that mirror the store (gates by state,
//! outbox backlog) are refreshed when scraped.
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("snowgate");
        let gates = Family::<StateLabel, Gauge>::default();
        registry.register("gates", "Gates by state", gates.clone());
        let decisions = Family::<SourceLabel, Counter>::default();
        registry.register(
            "decisions",
            "Decisions applied, by where they came from",
            decisions.clone(),
        );
        let decision_latency = latency_histogram();
        registry.register(
            "decision_latency_seconds",
            "From a decision's arrival (callback, poll, operator, timer) to its commit and the wake-up of the waiting long-polls",
            decision_latency.clone(),
        );
        let release_latency = latency_histogram();
        registry.register(
            "long_poll_release_seconds",
            "From a deciding request's arrival (callback or operator) to the answer of each long-poll it released in this process (the decision latency of BENCHMARKS.md; also in the answer's Server-Timing header)",
            release_latency.clone(),
        );
        let time_pending = Histogram::new(exponential_buckets(1.0, 2.0, 20));
        registry.register(
            "gate_pending_seconds",
            "Time from a gate's opening to its decision",
            time_pending.clone(),
        );
        let servicenow_requests = Family::<CallLabels, Counter>::default();
        registry.register(
            "servicenow_requests",
            "ServiceNow requests by endpoint and status (status `error` = no answer)",
            servicenow_requests.clone(),
        );
        let servicenow_latency = Family::<EndpointLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "servicenow_request_duration_seconds",
            "ServiceNow request latency by endpoint",
            servicenow_latency.clone(),
        );
        let jenkins_requests = Family::<CallLabels, Counter>::default();
        registry.register(
            "jenkins_requests",
            "Jenkins requests by endpoint and status (status `error` = no answer)",
            jenkins_requests.clone(),
        );
        let jenkins_latency = Family::<EndpointLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "jenkins_request_duration_seconds",
            "Jenkins request latency by endpoint",
            jenkins_latency.clone(),
        );
        let outbox_backlog = Gauge::default();
        registry.register(
            "outbox_backlog",
            "Outbound actions (registrations, acknowledgements, Jenkins releases) not yet done",
            outbox_backlog.clone(),
        );
        let open_long_polls = Gauge::default();
        registry.register(
            "waiting_gates",
            "Gates with at least one open long-poll",
            open_long_polls.clone(),
        );
        Metrics {
            registry,
            gates,
            decisions,
            decision_latency,
            release_latency,
            time_pending,
            servicenow_requests,
            servicenow_latency,
            jenkins_requests,
            jenkins_latency,
            outbox_backlog,
            open_long_polls,
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
