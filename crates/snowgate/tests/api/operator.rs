use serde_json::{json, Value};
use snowgate::api::GateView;
use snowgate::domain::GateState;

use crate::helpers::*;

async fn act(app: &TestApp, id: &str, action: &str, token: &str, body: Value) -> reqwest::Response {
    app.post_json(&format!("/api/v1/gates/{id}/{action}"), Some(token), &body)
        .await
}

#[tokio::test]
async fn an_operator_resumes_a_held_stage_with_a_reason() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let resp = act(
        &app,
        id,
        "resume",
        OPERATOR_TOKEN,
        json!({"reason": "CAB approved by phone"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let g: GateView = resp.json().await.unwrap();
    assert_eq!(g.state, GateState::Resumed);
    assert_eq!(g.proceed, Some(true));
    assert_eq!(g.decided_by.as_deref(), Some("operator:alice"));
    let events = app.events(id).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind, "resumed");
    assert_eq!(last.actor, "operator:alice");
    assert_eq!(last.from_state, Some(GateState::Pending));
    assert_eq!(last.to_state, Some(GateState::Resumed));
    assert!(last.message.contains("CAB approved by phone"));
    // The plugin forgets the token of a gate an operator decided: a later ServiceNow
    // decision gets 410, and no acknowledgement is sent.
    let url = app.callback_url_of("Deploy");
    assert_error(
        app.send_callback(&url, r#"{"result":"rejected"}"#).await,
        410,
        "gone",
    )
    .await;
    assert!(
        !app.sim
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/orchestration/changeControl/")),
        "an operator's decision is not acknowledged"
    );
}

#[tokio::test]
async fn an_operator_aborts_a_held_stage() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let resp = act(
        &app,
        id,
        "abort",
        OPERATOR_TOKEN,
        json!({"reason": "wrong artifact"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let g: GateView = resp.json().await.unwrap();
    assert_eq!(g.state, GateState::Aborted);
    assert_eq!(g.proceed, Some(false));
    // Already terminal: 409, and nothing changes.
    let again = act(
        &app,
        id,
        "resume",
        OPERATOR_TOKEN,
        json!({"reason": "changed my mind"}),
    )
    .await;
    assert_error(again, 409, "conflict").await;
    assert_eq!(app.gate(id).await.state, GateState::Aborted);
}

#[tokio::test]
async fn operator_actions_need_a_reason_and_an_operator_token() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    for body in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "   "}),
        json!({"reason": 5}),
        json!({"reason": "r".repeat(1001)}),
    ] {
        let resp = act(&app, id, "abort", OPERATOR_TOKEN, body).await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(err.error.field.as_deref(), Some("reason"));
    }
    let resp = act(&app, id, "abort", PIPELINE_TOKEN, json!({"reason": "x"})).await;
    assert_error(resp, 403, "forbidden").await;
    let resp = act(&app, id, "resume", PIPELINE_TOKEN, json!({"reason": "x"})).await;
    assert_error(resp, 403, "forbidden").await;
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/abort"),
            None,
            &json!({"reason": "x"}),
        )
        .await;
    assert_error(resp, 401, "unauthorized").await;
    let resp = act(
        &app,
        "6f0b3c1e-7d7e-4d38-9c1a-5b8e0e0a0a0a",
        "abort",
        OPERATOR_TOKEN,
        json!({"reason": "x"}),
    )
    .await;
    assert_error(resp, 404, "not_found").await;
    assert_eq!(app.gate(id).await.state, GateState::Pending);
}
