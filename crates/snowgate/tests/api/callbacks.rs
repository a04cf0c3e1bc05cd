use std::time::Duration;

use serde_json::json;
use servicenow_sim::{Fault, SimSettings};
use snowgate::domain::GateState;

use crate::helpers::*;

const RESULT: &str = "Jenkins webhook triggered successfully";

#[tokio::test]
async fn each_decision_body_sets_the_plugins_outcome() {
    let app = spawn_app().await;
    let cases = [
        (
            "A",
            r#"{"result":"succeeded","changeComments":"ok by CAB"}"#,
            GateState::Approved,
            true,
        ),
        (
            "B",
            r#"{"result":"canceled","changeComments":"withdrawn"}"#,
            GateState::Canceled,
            false,
        ),
        (
            "C",
            r#"{"result":"rejected","changeComments":"too risky"}"#,
            GateState::Rejected,
            false,
        ),
        (
            "D",
            r#"{"result":"failed","isError":true,"changeComments":"CR update failed"}"#,
            GateState::Failed,
            false,
        ),
        (
            "E",
            r#"{"result":"anything else"}"#,
            GateState::Rejected,
            false,
        ),
        ("F", "this is not json", GateState::Rejected, false),
    ];
    for (stage, body, state, proceed) in cases {
        let gate = app.open(stage).await;
        let url = app.callback_url_of(stage);
        let resp = app.send_callback(&url, body).await;
        assert_eq!(resp.status(), 200, "{stage}");
        assert_eq!(resp.headers()["result"], RESULT);
        let g = app.gate(gate.id).await;
        assert_eq!(g.state, state, "{stage}: {g:?}");
        assert_eq!(g.proceed, Some(proceed), "{stage}");
        assert!(g.decided_at.is_some());
        if stage == "D" {
            assert!(g.message.contains("CR update failed"), "{g:?}");
        }
    }
}

#[tokio::test]
async fn a_notice_records_the_change_request_and_keeps_the_gate_pending() {
    let app = spawn_app_with(quiet_sim(), |_| {}).await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let url = app.callback_url_of("Deploy");
    let notice = json!({
        "changeRequestId": "CHG0031234",
        "changeRequestUrl": "https://example.service-now.com/change_request.do?sys_id=abc",
        "changeComments": "Change request created",
        "configResult": {"message": ""}
    });
    let resp = app.send_callback(&url, &notice.to_string()).await;
    assert_eq!(resp.status(), 200);
    let g = app.gate(id).await;
    assert_eq!(g.state, GateState::Pending);
    assert_eq!(cr_number(&g), Some("CHG0031234"));
    assert_eq!(
        g.change_request.as_ref().and_then(|c| c.url.as_deref()),
        Some("https://example.service-now.com/change_request.do?sys_id=abc")
    );
    assert!(g.message.contains("CHG0031234"));
}

#[tokio::test]
async fn the_simulators_notice_links_the_change_request() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let number = app.change_of("Deploy");
    for _ in 0..100 {
        if cr_number(&app.gate(id).await) == Some(number.as_str()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the notice never linked {number}");
}

#[tokio::test]
async fn repeated_and_conflicting_decisions() {
    let app = spawn_app().await;
    app.open("Deploy").await;
    let url = app.callback_url_of("Deploy");
    let approve = r#"{"result":"succeeded"}"#;
    assert_eq!(app.send_callback(&url, approve).await.status(), 200);
    let again = app.send_callback(&url, approve).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["result"], RESULT);
    let conflict = app.send_callback(&url, r#"{"result":"canceled"}"#).await;
    assert_error(conflict, 409, "conflict").await;
}

#[tokio::test]
async fn unknown_tokens_and_empty_bodies_are_gone() {
    let app = spawn_app().await;
    app.open("Deploy").await;
    let url = app.callback_url_of("Deploy");
    let unknown = format!(
        "{}/sn-devops/pipeline_00000000-0000-4000-8000-000000000000",
        app.address
    );
    assert_error(
        app.send_callback(&unknown, r#"{"result":"succeeded"}"#)
            .await,
        410,
        "gone",
    )
    .await;
    assert_error(app.send_callback(&url, "").await, 410, "gone").await;
    // Not UTF-8: unreadable.
    let resp = app
        .client
        .post(&url)
        .body(vec![0xff, 0xfe, 0x00, 0x41])
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "bad_request").await;
    // Any method is accepted, like the plugin's endpoint.
    let resp = app
        .client
        .put(&url)
        .body(r#"{"result":"succeeded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_decision_is_acknowledged_to_servicenow() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let url = app.callback_url_of("Deploy");
    let token = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        app.send_callback(&url, r#"{"result":"succeeded"}"#)
            .await
            .status(),
        200
    );
    let put = wait_for_put(&app, &token, 1).await.pop().unwrap();
    assert_eq!(
        put.path,
        format!("/api/sn_devops/v2/devops/orchestration/changeControl/{token}")
    );
    assert!(put
        .query_pairs()
        .contains(&("toolId".into(), app.settings.servicenow.tool_id.clone())));
    assert!(put
        .query_pairs()
        .contains(&("toolType".into(), "jenkins".into())));
    // The plugin's sendBuildAndToken body, field for field (no stageName, no
    // orchestrationTaskDetails); without a flow node id the execution URL is the build's.
    let body = put.json().unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "callbackURL": url,
            "orchestrationTaskURL": "https://ci.example.com/job/shop/job/app#Deploy/",
            "taskExecutionURL": "https://ci.example.com/job/shop/job/app/42/",
            "isMultiBranch": "false",
            "orchestrationTaskName": "app#Deploy",
            "parentTaskExecutionURL": "https://ci.example.com/job/shop/job/app/42/",
            "parentStageName": "app#Deploy",
            "parentStageURL": "https://ci.example.com/job/shop/job/app#Deploy/",
            // Without a flow node id, the node id is the stage path.
            "parentNode": {"id": "Deploy", "name": "Deploy", "parentId": ""},
            "parentStageExecutionURL": "https://ci.example.com/job/shop/job/app/42/",
        })
    );
    let kinds = event_kinds(&app, id).await;
    assert!(kinds.contains(&"acknowledge_done".to_string()), "{kinds:?}");
}

#[tokio::test]
async fn a_failing_acknowledgement_is_retried_until_it_succeeds() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let url = app.callback_url_of("Deploy");
    let token = url.rsplit('/').next().unwrap().to_string();
    app.sim.inject_fault(Fault {
        endpoint: "changeControl.put".into(),
        fail_next: 2,
        status: 503,
        latency_ms: 0,
    });
    assert_eq!(
        app.send_callback(&url, r#"{"result":"succeeded"}"#)
            .await
            .status(),
        200
    );
    let puts = wait_for_put(&app, &token, 3).await;
    assert_eq!(puts.len(), 3);
    for _ in 0..100 {
        let kinds = event_kinds(&app, id).await;
        if kinds.contains(&"acknowledge_done".to_string()) {
            assert_eq!(
                kinds.iter().filter(|k| *k == "acknowledge_retry").count(),
                2,
                "{kinds:?}"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the acknowledgement was never recorded as done");
}

#[tokio::test]
async fn callbacks_need_basic_auth_when_configured() {
    let app = spawn_app_with(
        SimSettings {
            callback_user: Some("servicenow".into()),
            callback_password: Some("callback-secret-123".into()),
            ..SimSettings::default()
        },
        |s| {
            s.callback.basic_auth = Some(snowgate::configuration::BasicAuth {
                user: "servicenow".into(),
                password: snowgate::configuration::Secret::new("callback-secret-123"),
                password_file: None,
            });
        },
    )
    .await;
    let gate = app.open("Deploy").await;
    let url = app.callback_url_of("Deploy");
    assert_error(
        app.send_callback(&url, r#"{"result":"succeeded"}"#).await,
        401,
        "unauthorized",
    )
    .await;
    let wrong = app
        .client
        .post(&url)
        .basic_auth("servicenow", Some("wrong"))
        .body(r#"{"result":"succeeded"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(app.gate(gate.id).await.state, GateState::Pending);
    // The simulator sends the configured credentials, as a ServiceNow tool record would.
    let number = app.change_of("Deploy");
    assert_eq!(app.sim.approve(&number, "ok").await.unwrap(), Some(200));
    assert_eq!(app.gate(gate.id).await.state, GateState::Approved);
}

#[tokio::test]
async fn rejection_and_cancel_from_the_simulator_stop_the_stage() {
    let app = spawn_app().await;
    let a = app.open("A").await;
    let b = app.open("B").await;
    let c = app.open("C").await;
    assert_eq!(
        app.sim
            .reject(&app.change_of("A"), "too risky")
            .await
            .unwrap(),
        Some(200)
    );
    assert_eq!(
        app.sim
            .cancel(&app.change_of("B"), "withdrawn")
            .await
            .unwrap(),
        Some(200)
    );
    assert_eq!(
        app.sim
            .error(&app.change_of("C"), "update failed")
            .await
            .unwrap(),
        Some(200)
    );
    let a = app.gate(a.id).await;
    assert_eq!((a.state, a.proceed), (GateState::Rejected, Some(false)));
    assert!(a.message.contains("too risky"));
    assert_eq!(app.gate(b.id).await.state, GateState::Canceled);
    assert_eq!(app.gate(c.id).await.state, GateState::Failed);
}

pub async fn event_kinds(app: &TestApp, id: impl std::fmt::Display) -> Vec<String> {
    app.events(id).await.into_iter().map(|e| e.kind).collect()
}

async fn wait_for_put(
    app: &TestApp,
    token: &str,
    n: usize,
) -> Vec<servicenow_sim::RecordedRequest> {
    for _ in 0..200 {
        let puts: Vec<_> = app
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT" && r.path.ends_with(&format!("/changeControl/{token}")))
            .collect();
        if puts.len() >= n {
            return puts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} acknowledgements arrived");
}
