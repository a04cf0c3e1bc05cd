//! The Grafana dashboard and the Prometheus alert rules of `deploy/`: every metric they query is
//! one the real app's `/metrics` serves, and the rules pass promtool's check and unit tests.
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use snowgate::domain::GateState;

use crate::helpers::*;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Every `snowgate_…` name in `text` (queries, or a whole rule file).
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("snowgate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names.sort();
    names.dedup();
    names
}

/// `/metrics`' text.
async fn metrics_text(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The families `/metrics` declares (`# TYPE name kind`), by name.
async fn served_families(app: &TestApp) -> BTreeMap<String, String> {
    let text = metrics_text(app).await;
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// Whether `name` is a series of a served family: a gauge by its name, a counter's `_total`,
/// a histogram's `_bucket`, `_sum` or `_count`.
fn is_served(name: &str, families: &BTreeMap<String, String>) -> bool {
    let kind_of = |base: &str| families.get(base).map(String::as_str);
    if kind_of(name).is_some_and(|k| k == "gauge") {
        return true;
    }
    if let Some(base) = name.strip_suffix("_total") {
        if kind_of(base) == Some("counter") {
            return true;
        }
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| kind_of(base) == Some("histogram"))
    })
}

/// Every query (`expr`) of the dashboard's panels, with the panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read("grafana/snowgate.json"))
        .expect("deploy/grafana/snowgate.json is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string()))
        })
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alert_rules_query_is_served_by_metrics() {
    let app = spawn_app().await;
    let families = served_families(&app).await;
    let queries = dashboard_queries();
    let mut used = metric_names(&read("prometheus/alerts.yml"));
    for (_, expr) in &queries {
        used.extend(metric_names(expr));
    }
    used.sort();
    used.dedup();
    let missing: Vec<&String> = used.iter().filter(|n| !is_served(n, &families)).collect();
    assert!(
        missing.is_empty(),
        "not served by /metrics: {missing:?}\nserved: {families:?}"
    );
    // What operators look at first, each with a panel that queries its metric.
    for (topic, metric) in [
        ("waiting", "snowgate_gates"),
        ("time to decision", "snowgate_gate_pending_seconds_bucket"),
        ("servicenow errors", "snowgate_servicenow_requests_total"),
        ("jenkins errors", "snowgate_jenkins_requests_total"),
        ("outbox backlog", "snowgate_outbox_backlog"),
        (
            "decision latency",
            "snowgate_decision_latency_seconds_bucket",
        ),
    ] {
        assert!(
            queries.iter().any(|(title, expr)| {
                title.to_lowercase().contains(topic)
                    && metric_names(expr).iter().any(|n| n == metric)
            }),
            "no panel about {topic:?} querying {metric}: {queries:?}"
        );
    }
    // The check itself can fail: a name /metrics does not serve is caught.
    assert!(!is_served("snowgate_no_such_metric_total", &families));
    assert!(!is_served("snowgate_outbox_backlog_total", &families));
}

/// Labels Prometheus adds itself (the scrape target's, and a histogram's buckets): never on
/// snowgate's own series.
const SCRAPE_LABELS: [&str; 3] = ["job", "instance", "le"];

/// The labels `expr` reads: in its selectors (`{state=~"…"}`) and its groupings (`by (…)`),
/// without the scrape target's.
fn labels_read(expr: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut names = |list: &str| {
        for part in list.split(',') {
            let name: String = part
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !SCRAPE_LABELS.contains(&name.as_str()) {
                labels.push(name);
            }
        }
    };
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        names(&rest[open + 1..close]);
        rest = &rest[close..];
    }
    let mut rest = expr;
    while let Some(at) = rest.find("by (").or_else(|| rest.find("by(")) {
        let open = at + rest[at..].find('(').unwrap();
        let close = rest[open..].find(')').map_or(rest.len(), |c| open + c);
        names(&rest[open + 1..close]);
        rest = &rest[close..];
    }
    labels.sort();
    labels.dedup();
    labels
}

/// Every alert rule's `expr`.
fn rule_exprs() -> Vec<String> {
    let doc = yaml_rust2::YamlLoader::load_from_str(&read("prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml is YAML")
        .remove(0);
    doc["groups"]
        .as_vec()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_vec().cloned().unwrap_or_default())
        .filter_map(|r| r["expr"].as_str().map(str::to_string))
        .collect()
}

/// The label names each served series family carries, from `/metrics`' sample lines (a
/// counter's `_total`, a histogram's `_bucket` under their own names).
async fn served_labels(app: &TestApp) -> BTreeMap<String, Vec<String>> {
    let text = metrics_text(app).await;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = out.entry(name.to_string()).or_default();
        for pair in rest.split("\",") {
            if let Some((label, _)) = pair.split_once('=') {
                let label = label.trim_matches(|c| c == ',' || c == ' ').to_string();
                if !labels.contains(&label) {
                    labels.push(label);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_label_the_dashboard_and_the_alert_rules_read_is_on_the_metrics_they_query() {
    let app = spawn_app().await;
    // Traffic, so the labelled series exist: a registration, a decision, an acknowledgement.
    let g = app.open("Deploy").await;
    app.until_state(g.id, GateState::Pending).await;
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    app.until_state(g.id, GateState::Approved).await;
    let served = served_labels(&app).await;
    let mut exprs: Vec<String> = dashboard_queries().into_iter().map(|(_, e)| e).collect();
    exprs.extend(rule_exprs());
    let mut checked = 0;
    for expr in &exprs {
        let metrics = metric_names(expr);
        for label in labels_read(expr) {
            let carried = metrics
                .iter()
                .filter_map(|m| served.get(m))
                .any(|labels| labels.contains(&label));
            // Jenkins is not configured here: its series do not exist, and its labels are
            // those of ServiceNow's requests (the same `RequestLabels`).
            let jenkins_only = metrics.iter().all(|m| m.starts_with("snowgate_jenkins_"));
            assert!(
                carried || jenkins_only,
                "{expr}: the label {label:?} is on no series of {metrics:?}: {served:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "the check read labels: {checked}");
    assert!(
        labels_read(r#"sum by (reason) (snowgate_gates{job="x", state="pending"})"#)
            == ["reason", "state"]
    );
}

#[tokio::test]
async fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .expect("promtool runs (Debian package prometheus; scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each alert the rules promise is there, with a unit test that expects it to fire.
    let rules = read("prometheus/alerts.yml");
    let tests = read("prometheus/alerts.test.yml");
    for alert in [
        "SnowgateServiceNowUnreachable",
        "SnowgateOutboxBacklogGrowing",
        "SnowgateGateWaitingTooLong",
        "SnowgateReplicaWithoutLeaseRenewals",
    ] {
        assert!(rules.contains(&format!("alert: {alert}")), "{alert}");
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert}");
    }
}

/// The value of the one sample `series` (name and labels as `/metrics` prints them).
async fn sample(app: &TestApp, series: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_oldest_open_gates_age_and_the_heartbeats_the_alerts_use_are_reported() {
    let app = spawn_app().await;
    assert_eq!(
        sample(&app, "snowgate_oldest_open_gate_age_seconds").await,
        0.0
    );
    let gate = app.open("Deploy").await;
    let id = gate.id.to_string();
    app.until_state(&id, GateState::Pending).await;
    // Ages are whole seconds: after 2.1 s the gate is at least 2 s old, however slow the machine.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(sample(&app, "snowgate_oldest_open_gate_age_seconds").await >= 2.0);
    // The replica heartbeat runs at start and every lease_ttl / 3.
    assert!(sample(&app, "snowgate_replica_heartbeats_total{result=\"ok\"}").await >= 1.0);
    assert_eq!(
        sample(&app, "snowgate_replica_heartbeats_total{result=\"error\"}").await,
        0.0
    );
    assert_eq!(sample(&app, "snowgate_replicas_alive").await, 1.0);
    // Decided, the gate is no longer open.
    let answer = app
        .sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    assert_eq!(answer, Some(200));
    app.until_state(&id, GateState::Approved).await;
    assert_eq!(
        sample(&app, "snowgate_oldest_open_gate_age_seconds").await,
        0.0
    );
}
