//! Evidence on the change request: files (text or base64) through ServiceNow's Attachment
//! API, links as work notes, through the outbox, once per SHA-256.
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::GateView;

use crate::change::{change_app_with, notes, open_change, until_notes};
use crate::helpers::*;

async fn post(app: &TestApp, id: impl std::fmt::Display, body: &Value) -> reqwest::Response {
    app.post_json(
        &format!("/api/v1/gates/{id}/evidence"),
        Some(PIPELINE_TOKEN),
        body,
    )
    .await
}

async fn gate_with_cr(app: &TestApp) -> (GateView, String) {
    let g = open_change(app, "Deploy", json!({})).await;
    let sys_id = change_request(&g).sys_id.clone().expect("the CR's sys_id");
    (g, sys_id)
}

/// Until the simulator holds `n` attachments.
async fn until_attached(app: &TestApp, n: usize) -> Vec<servicenow_sim::AttachmentRecord> {
    for _ in 0..200 {
        let got = app.sim.attachments();
        if got.len() >= n {
            // Give a duplicate the chance to show.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return app.sim.attachments();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} attachments: {:?}",
        app.sim.attachments().len()
    );
}

async fn until_event(app: &TestApp, id: impl std::fmt::Display + Copy, kind: &str) -> String {
    for _ in 0..200 {
        if let Some(e) = app.events(id).await.into_iter().find(|e| e.kind == kind) {
            return e.message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event: {:?}", app.events(id).await);
}

#[tokio::test]
async fn a_text_file_is_attached_to_the_cr_once_and_its_sys_id_is_in_the_events() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let (g, sys_id) = gate_with_cr(&app).await;
    let body = json!({"name": "junit.xml", "contentType": "application/xml",
                      "content": "<testsuite tests=\"3\"/>\n"});
    let resp = post(&app, g.id, &body).await;
    assert_eq!(resp.status(), 202);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["status"], "queued");
    let attached = until_attached(&app, 1).await;
    assert_eq!(attached.len(), 1);
    let a = &attached[0];
    assert_eq!(a.table_name, "change_request");
    assert_eq!(a.table_sys_id, sys_id);
    assert_eq!(a.file_name, "junit.xml");
    assert_eq!(a.content_type, "application/xml");
    assert_eq!(a.content, b"<testsuite tests=\"3\"/>\n");
    assert_eq!(answer["sha256"], a.sha256.as_str());
    let done = until_event(&app, g.id, "attach_done").await;
    assert!(done.contains(&a.sys_id), "{done}");
    // The same content again is not sent again.
    let resp = post(&app, g.id, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "duplicate");
    assert_eq!(until_attached(&app, 1).await.len(), 1);
}

#[tokio::test]
async fn two_gates_sharing_one_change_request_send_it_the_same_evidence_once() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    // Two stages of one build and environment: one CR title, so one CR.
    let (deploy, sys_id) = gate_with_cr(&app).await;
    let verify = open_change(&app, "Verify", json!({})).await;
    assert_eq!(
        change_request(&verify).sys_id.as_deref(),
        Some(sys_id.as_str())
    );
    let body = json!({"name": "scan.txt", "contentType": "text/plain",
                      "content": "0 critical findings\n"});
    let resp = post(&app, deploy.id, &body).await;
    assert_eq!(resp.status(), 202);
    let resp = post(&app, verify.id, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "duplicate");
    let attached = until_attached(&app, 1).await;
    assert_eq!(attached.len(), 1, "the CR got the report once");
    assert_eq!(attached[0].table_sys_id, sys_id);
    // Other content for the same CR from the other gate still goes.
    let other = json!({"name": "scan.txt", "contentType": "text/plain",
                       "content": "1 critical finding\n"});
    assert_eq!(post(&app, verify.id, &other).await.status(), 202);
    assert_eq!(until_attached(&app, 2).await.len(), 2);
}

#[tokio::test]
async fn a_devops_mode_gate_with_basic_auth_attaches_to_the_cr_servicenow_devops_created() {
    // Basic auth (the Attachment API does not take the DevOps token), a DevOps-mode gate.
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let g = app.open("Deploy").await;
    assert_eq!(g.mode, snowgate::configuration::GateMode::Devops);
    let mut sys_id = None;
    for _ in 0..200 {
        sys_id = app.gate(g.id).await.change_request.and_then(|cr| cr.sys_id);
        if sys_id.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sys_id = sys_id.expect("ServiceNow's notice names the CR");
    let body = json!({"name": "junit.xml", "contentType": "application/xml",
                      "content": "<testsuite tests=\"1\"/>"});
    assert_eq!(post(&app, g.id, &body).await.status(), 202);
    let attached = until_attached(&app, 1).await;
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].table_sys_id, sys_id);
    until_event(&app, g.id, "attach_done").await;
}

#[tokio::test]
async fn bytes_in_base64_are_attached_as_they_were_after_a_503_is_retried() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let (g, _) = gate_with_cr(&app).await;
    app.sim.inject_fault(servicenow_sim::Fault {
        endpoint: "attachment.post".into(),
        fail_next: 1,
        status: 503,
        latency_ms: 0,
    });
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let body = json!({"name": "report.tar.gz", "contentType": "application/gzip",
        "contentBase64": base64::engine::general_purpose::STANDARD.encode(&bytes)});
    assert_eq!(post(&app, g.id, &body).await.status(), 202);
    let attached = until_attached(&app, 1).await;
    assert_eq!(attached.len(), 1, "sent once, after the retry");
    assert_eq!(attached[0].content, bytes);
    until_event(&app, g.id, "attach_retry").await;
    until_event(&app, g.id, "attach_done").await;
}

#[tokio::test]
async fn an_upload_whose_answer_was_lost_is_found_on_the_cr_and_not_sent_again() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.servicenow.timeout = snowgate::configuration::Dur(Duration::from_secs(1));
    })
    .await;
    let (g, sys_id) = gate_with_cr(&app).await;
    // ServiceNow stores the file but answers after snowgate has given up waiting.
    app.sim.set_attachment_answer_delay(Duration::from_secs(3));
    let body = json!({"name": "sbom.json", "contentType": "application/json",
                      "content": "{\"components\": []}"});
    assert_eq!(post(&app, g.id, &body).await.status(), 202);
    let done = until_event(&app, g.id, "attach_done").await;
    app.sim.set_attachment_answer_delay(Duration::ZERO);
    assert!(done.contains("already"), "{done}");
    let attached = until_attached(&app, 1).await;
    assert_eq!(attached.len(), 1, "sent once: {attached:?}");
    assert!(done.contains(&attached[0].sys_id), "{done}");
    assert_eq!(attached[0].table_sys_id, sys_id);
    let events = app.events(g.id).await;
    assert!(
        events.iter().any(|e| e.kind == "attach_retry"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_link_becomes_a_work_note_on_the_cr() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let (g, _) = gate_with_cr(&app).await;
    let number = cr_number(&g).unwrap().to_string();
    let before = notes(&app, &number).len();
    let body = json!({"name": "sonar", "url": "https://sonar.example.com/dashboard?id=shop"});
    assert_eq!(post(&app, g.id, &body).await.status(), 202);
    let n = until_notes(&app, &number, before + 1).await;
    assert!(
        n.iter()
            .any(|n| n.contains("evidence sonar: https://sonar.example.com/dashboard?id=shop")),
        "{n:?}"
    );
    assert!(app.sim.attachments().is_empty());
}

#[tokio::test]
async fn evidence_without_a_cr_is_409_and_too_large_is_413() {
    // The environment is not change-controlled: the gate never gets a CR.
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let g = open_at(
        &app.client,
        &app.address,
        &{
            let mut b = gate_body("Smoke test");
            b["mode"] = json!("change");
            b["environment"] = json!("Staging");
            b
        },
        &[201],
    )
    .await;
    let resp = post(
        &app,
        g.id,
        &json!({"name": "a.txt", "contentType": "text/plain", "content": "x"}),
    )
    .await;
    let err = assert_error(resp, 409, "conflict").await;
    assert!(err.error.message.contains("no change request"), "{err:?}");

    let (g, _) = gate_with_cr(&app).await;
    let big = vec![0u8; 5_000_001];
    let body = json!({"name": "big.bin", "contentType": "application/octet-stream",
        "contentBase64": base64::engine::general_purpose::STANDARD.encode(&big)});
    assert_error(post(&app, g.id, &body).await, 413, "payload_too_large").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.sim.attachments().is_empty());
}

#[tokio::test]
async fn with_the_devops_token_alone_evidence_is_refused_with_the_reason() {
    let app = spawn_app().await;
    let g = app.open("Deploy").await;
    let resp = post(
        &app,
        g.id,
        &json!({"name": "a.txt", "contentType": "text/plain", "content": "x"}),
    )
    .await;
    let err = assert_error(resp, 409, "conflict").await;
    assert!(err.error.message.contains("basic or oauth"), "{err:?}");
}

#[tokio::test]
async fn bad_evidence_requests_are_refused_by_field() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let (g, _) = gate_with_cr(&app).await;
    let text = json!({"name": "a.txt", "contentType": "text/plain", "content": "x"});
    let with = |k: &str, v: Value| {
        let mut b = text.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("name", Value::Null), "name"),
        (with("name", json!("../etc/passwd")), "name"),
        (
            with("name", json!(format!("{}.txt", "a".repeat(252)))),
            "name",
        ),
        (with("contentType", json!("t".repeat(256))), "contentType"),
        (with("contentType", Value::Null), "contentType"),
        (with("url", json!("https://x.example/")), "content"),
        (json!({"name": "a", "contentType": "text/plain"}), "content"),
        (
            json!({"name": "a", "contentType": "x/y", "contentBase64": "%%%"}),
            "contentBase64",
        ),
        (json!({"name": "a", "url": "ftp://x.example/"}), "url"),
        (with("content", json!(7)), "content"),
    ] {
        let err = assert_error(post(&app, g.id, &body).await, 400, "invalid_field").await;
        assert_eq!(err.error.field.as_deref(), Some(field), "{body}");
    }
    let resp = post(&app, uuid::Uuid::new_v4(), &text).await;
    assert_error(resp, 404, "not_found").await;
    let resp = app
        .post_json(&format!("/api/v1/gates/{}/evidence", g.id), None, &text)
        .await;
    assert_error(resp, 401, "unauthorized").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.sim.attachments().is_empty(), "nothing was sent");
}
