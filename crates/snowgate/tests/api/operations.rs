//! Metrics, request ids, and secrets kept out of logs and answers.
use std::time::Duration;

use serde_json::Value;
use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use snowgate::domain::GateState;

use crate::durability::{free_port, start_binary, write_config};
use crate::helpers::*;

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_gates_decisions_and_servicenow_calls() {
    let app = spawn_app().await;
    app.open("A").await;
    let b = app.open("B").await;
    app.sim.approve(&app.change_of("B"), "ok").await.unwrap();
    assert_eq!(app.gate(b.id).await.state, GateState::Approved);
    let resp = app.get("/metrics", None).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert_eq!(
        metric(&text, r#"snowgate_gates{state="pending"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"snowgate_gates{state="approved"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, r#"snowgate_gates{state="rejected"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"snowgate_servicenow_requests_total{endpoint="POST orchestration/changeControl",status="200"}"#
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"snowgate_decisions_total{source="servicenow"}"#),
        Some(1.0)
    );
    assert!(metric(&text, "snowgate_decision_latency_seconds_count").is_some_and(|n| n >= 1.0));
    assert!(text.contains("snowgate_outbox_backlog"));
    assert!(text.contains("snowgate_gate_pending_seconds_bucket"));
    // No secret ends up in a label.
    assert!(!text.contains("pipeline_"));
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/gates", Some(PIPELINE_TOKEN)).await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(id.len() >= 16);
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "jenkins-build-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "jenkins-build-42");
    // A request id that could forge log lines is replaced.
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "a b\tc")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "a b\tc");
}

#[tokio::test]
async fn no_configured_secret_appears_in_logs_or_error_bodies() {
    let sim_cfg = SimSettings::default();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "200ms");
    // Debug logs too: secrets must not leak at any level.
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("log:\n  level: debug\n");
    std::fs::write(&config, &yaml).unwrap();
    let log = dir.path().join("snowgate.log");
    let address = format!("http://127.0.0.1:{port}");
    let mut bin = start_binary(&config, &address, &log).await;
    let client = reqwest::Client::new();
    let mut bodies = String::new();

    // Normal traffic: open, notice, decision, acknowledgement, polling.
    let resp = client
        .post(format!("{address}/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(gate_body("Deploy").to_string())
        .send()
        .await
        .unwrap();
    // Read as raw JSON: its text joins the answers searched for secrets.
    let gate: Value = resp.json().await.unwrap();
    bodies.push_str(&gate.to_string());
    let callback = registration_in(&sim, "Deploy").json().unwrap()["callbackURL"]
        .as_str()
        .unwrap()
        .to_string();
    let token = callback.rsplit('/').next().unwrap().to_string();
    // Refused requests with wrong credentials of every kind.
    for (auth, path) in [
        (Some("wrong-token"), "/api/v1/gates".to_string()),
        (
            Some(PIPELINE_TOKEN),
            format!("/api/v1/gates/{}/abort", gate["id"].as_str().unwrap()),
        ),
        (None, "/api/v1/gates".to_string()),
    ] {
        let mut req = client
            .post(format!("{address}{path}"))
            .header("Content-Type", "application/json")
            .body("{\"reason\":\"x\"}");
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        bodies.push_str(&req.send().await.unwrap().text().await.unwrap());
    }
    for body in [
        "",
        r#"{"changeRequestId":"CHG1"}"#,
        r#"{"result":"succeeded"}"#,
        r#"{"result":"canceled"}"#,
    ] {
        let r = client.post(&callback).body(body).send().await.unwrap();
        bodies.push_str(&r.text().await.unwrap());
    }
    let wrong_cb = format!("{address}/sn-devops/pipeline_{}", "0".repeat(36));
    bodies.push_str(
        &client
            .post(&wrong_cb)
            .body("{}")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let events = client
        .get(format!(
            "{address}/api/v1/gates/{}/events",
            gate["id"].as_str().unwrap()
        ))
        .bearer_auth(PIPELINE_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    bodies.push_str(&events);
    tokio::time::sleep(Duration::from_millis(700)).await;
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("\"POST /sn-devops/sha256:")
                && l.contains(" HTTP/1.1\" 200 ")
                && l.contains("request_id=")),
        "the callbacks are in the access log, token as a fingerprint, with status and request id:\n{logged}"
    );
    // Tokens are identified by a fingerprint of their digest, never by their first characters.
    assert!(!logged.contains("pipeli…"), "{logged}");
    assert!(!logged.contains(&token[..15]), "{logged}");
    for secret in [
        sim_cfg.token.as_str(),
        PIPELINE_TOKEN,
        OPERATOR_TOKEN,
        token.as_str(),
    ] {
        assert!(
            !logged.contains(secret),
            "a secret is in the log:\n{logged}"
        );
        assert!(
            !bodies.contains(secret),
            "a secret is in an answer:\n{bodies}"
        );
    }
}

/// A long-poll on gate `id` (30 s), running in the background.
/// Until `n` gates have an open long-poll (`snowgate_waiting_gates`), so the decision that
/// follows releases a waiting long-poll rather than one that has not arrived yet.
async fn until_waiting(app: &TestApp, n: usize) {
    for _ in 0..600 {
        let metrics = app.get("/metrics", None).await.text().await.unwrap();
        if metric(&metrics, "snowgate_waiting_gates") == Some(n as f64) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} waiting gates never showed in /metrics");
}

fn spawn_wait(app: &TestApp, id: &str) -> tokio::task::JoinHandle<reqwest::Response> {
    let (client, url) = (
        app.client.clone(),
        app.url(&format!("/api/v1/gates/{id}/wait?timeout=30")),
    );
    tokio::spawn(async move {
        client
            .get(url)
            .bearer_auth(PIPELINE_TOKEN)
            .send()
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn a_released_long_poll_says_how_long_after_the_deciding_request_it_answered() {
    let app = spawn_app_with(quiet_sim(), |_| {}).await;
    let gate = app.open("Deploy").await;
    let id = gate.id.to_string();
    let waiter = spawn_wait(&app, &id);
    until_waiting(&app, 1).await;
    let cb = app.callback_url_of("Deploy");
    let resp = app
        .send_callback(&cb, r#"{"result":"succeeded","changeComments":"ok"}"#)
        .await;
    assert_eq!(resp.status(), 200);
    let waited = waiter.await.unwrap();
    assert_eq!(waited.status(), 200);
    let timing = waited.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_string();
    let ms: f64 = timing
        .strip_prefix("decision;dur=")
        .unwrap_or_else(|| panic!("unexpected Server-Timing `{timing}`"))
        .parse()
        .unwrap();
    assert!((0.0..30_000.0).contains(&ms), "{timing}");
    let body: GateView = waited.json().await.unwrap();
    assert_eq!(body.state, GateState::Approved);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert_eq!(
        metric(&metrics, "snowgate_long_poll_release_seconds_count"),
        Some(1.0),
        "{metrics}"
    );

    // An operator's resume times its released long-polls the same way.
    let other = app.open("Smoke").await;
    let other_id = other.id.to_string();
    let waiter = spawn_wait(&app, &other_id);
    until_waiting(&app, 1).await;
    let resumed = app
        .post_json(
            &format!("/api/v1/gates/{other_id}/resume"),
            Some(OPERATOR_TOKEN),
            &serde_json::json!({"reason": "ServiceNow is down; approved by phone"}),
        )
        .await;
    assert_eq!(resumed.status(), 200);
    let waited = waiter.await.unwrap();
    assert!(waited.headers()["server-timing"]
        .to_str()
        .unwrap()
        .starts_with("decision;dur="));

    // A long-poll that finds the gate already decided has no decision to time.
    let again = app
        .get(
            &format!("/api/v1/gates/{id}/wait?timeout=5"),
            Some(PIPELINE_TOKEN),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("server-timing").is_none());
}

/// snowgate runs a patched actix-http (vendor/README.md) whose connections start with a 1 KiB
/// read buffer: heads and bodies larger than that, and pipelined requests, must still be read
/// whole.
#[tokio::test]
async fn large_heads_large_bodies_and_pipelined_requests_are_read_whole() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(quiet_sim(), |_| {}).await;
    let host = app.address.trim_start_matches("http://").to_string();
    // A valid gate request padded with JSON whitespace to 100 KB, under a 6 KB header.
    let mut body = gate_body("Big").to_string();
    body.insert_str(1, &" ".repeat(100_000));
    let padding = "p".repeat(6_000);
    let requests = format!(
        "POST /api/v1/gates HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {PIPELINE_TOKEN}\r\n\
         Content-Type: application/json\r\nX-Padding: {padding}\r\nContent-Length: {}\r\n\r\n{body}\
         GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("all three answers before the connection closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = answer
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &answer[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["201", "200", "200"], "{answer}");
    // The padded request opened the gate: opening it again finds it.
    let again = app.open_gate(&gate_body("Big")).await;
    assert_eq!(again.status(), 200);
}
