//! Polling and timeouts against the in-process app: polling fallback, change windows, timeouts.
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use snowgate::configuration::Dur;
use snowgate::domain::GateState;

use crate::callbacks::event_kinds;
use crate::helpers::*;

async fn polling_app(sim: SimSettings) -> TestApp {
    spawn_app_with(sim, |s| {
        s.servicenow.poll_interval = Dur(Duration::from_millis(200));
    })
    .await
}

fn planned(offset_secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(offset_secs))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Poll (test side) until the gate's message contains `text`.
async fn until_message(app: &TestApp, id: &str, text: &str) -> GateView {
    for _ in 0..200 {
        let g = app.gate(id).await;
        if g.message.contains(text) {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gate {id} never said `{text}`: {:?}", app.gate(id).await);
}

#[tokio::test]
async fn a_lost_callback_is_made_up_for_by_polling() {
    let app = polling_app(SimSettings::default()).await;
    app.sim.set_drop_callbacks(true);
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let number = app.change_of("Deploy");
    assert_eq!(
        app.sim.approve(&number, "ok").await.unwrap(),
        None,
        "the callback is dropped"
    );
    let g = app.until_state(id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert_eq!(cr_number(&g), Some(number.as_str()));
    assert_eq!(change_request(&g).state.as_deref(), Some("Implement"));
    assert!(event_kinds(&app, id).await.contains(&"polled".to_string()));
    // The poll asked changeInfo with the pipeline's identity.
    let poll = app
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/orchestration/changeInfo"))
        .unwrap();
    let q = poll.query_pairs();
    for (k, v) in [
        ("pipelineName", "shop/app"),
        ("stageName", "Deploy"),
        ("buildNumber", "42"),
        ("toolType", "jenkins"),
    ] {
        assert!(q.contains(&(k.to_string(), v.to_string())), "{k} in {q:?}");
    }
}

#[tokio::test]
async fn numeric_states_are_understood() {
    let app = polling_app(SimSettings {
        numeric_states: true,
        ..SimSettings::default()
    })
    .await;
    app.sim.set_drop_callbacks(true);
    let a = app.open("A").await;
    let b = app.open("B").await;
    app.sim.approve(&app.change_of("A"), "ok").await.unwrap();
    app.sim
        .cancel(&app.change_of("B"), "withdrawn")
        .await
        .unwrap();
    let a = app.until_state(a.id, GateState::Approved).await;
    assert_eq!(change_request(&a).state.as_deref(), Some("Implement"));
    let b = app.until_state(b.id, GateState::Canceled).await;
    assert_eq!(b.proceed, Some(false));
}

#[tokio::test]
async fn polling_keeps_the_change_request_data_and_waits_in_assess() {
    let app = polling_app(SimSettings::default()).await;
    app.sim.set_drop_callbacks(true);
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let number = app.change_of("Deploy");
    app.sim.set_state(&number, "Assess", None, None).unwrap();
    let g = until_message(&app, id, "state Assess").await;
    assert_eq!(g.state, GateState::Pending);
    assert_eq!(change_request(&g).state.as_deref(), Some("Assess"));
    assert!(change_request(&g)
        .approvers
        .as_deref()
        .is_some_and(|a| !a.is_empty()));
    assert!(g.message.contains("approvers"));
    // A CR closed without approval rejects the stage.
    app.sim.set_state(&number, "Closed", None, None).unwrap();
    let g = app.until_state(id, GateState::Rejected).await;
    assert_eq!(g.proceed, Some(false));
}

#[tokio::test]
async fn an_approved_change_waits_for_its_window_to_open() {
    let app = polling_app(SimSettings::default()).await;
    app.sim.set_drop_callbacks(true);
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let number = app.change_of("Deploy");
    app.sim
        .set_state(&number, "Implement", Some(planned(3)), Some(planned(3600)))
        .unwrap();
    let g = until_message(&app, id, "waiting for its change window").await;
    assert_eq!(g.state, GateState::Pending);
    assert!(change_request(&g).planned_start_date.is_some());
    let g = app.until_state(id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
}

#[tokio::test]
async fn a_window_that_closed_before_approval_fails_the_gate() {
    let app = polling_app(SimSettings::default()).await;
    app.sim.set_drop_callbacks(true);
    // A decision, not an error: ignoreErrors does not let the stage go on.
    let mut body = gate_body("Deploy");
    body["ignoreErrors"] = json!(true);
    let gate: GateView = app.open_gate(&body).await.json().await.unwrap();
    let id = &gate.id.to_string();
    let number = app.change_of("Deploy");
    app.sim
        .set_state(
            &number,
            "Assess",
            Some(planned(-7200)),
            Some(planned(-3600)),
        )
        .unwrap();
    let g = app.until_state(id, GateState::Failed).await;
    assert_eq!(g.proceed, Some(false));
    assert!(g.message.starts_with("change window closed"), "{g:?}");
}

async fn timed_out(sim: SimSettings, body: Value) -> (TestApp, GateView) {
    let app = spawn_app_with(sim, |_| {}).await;
    let resp = app.open_gate(&body).await;
    assert_eq!(resp.status(), 201);
    let gate: GateView = resp.json().await.unwrap();
    let id = gate.id;
    let waited: GateView = app
        .get(
            &format!("/api/v1/gates/{id}/wait?timeout=60"),
            Some(PIPELINE_TOKEN),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(waited.state, GateState::TimedOut, "{waited:?}");
    (app, waited)
}

fn with(stage: &str, extra: Value) -> Value {
    let mut b = gate_body(stage);
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

#[tokio::test]
async fn the_change_creation_timeout_aborts_or_continues_by_its_flag() {
    // No notice and no poll within the test: the change request is never seen.
    let quiet = quiet_sim();
    let (app, g) = timed_out(
        quiet.clone(),
        with("Deploy", json!({"changeCreationTimeoutSecs": 1})),
    )
    .await;
    assert_eq!(g.proceed, Some(false));
    assert!(
        g.message
            .contains("Pipeline aborted due to change creation timeout"),
        "{g:?}"
    );
    assert!(event_kinds(&app, g.id)
        .await
        .contains(&"change_creation_timeout".to_string()));

    let (_, g) = timed_out(
        quiet,
        with(
            "Deploy",
            json!({"changeCreationTimeoutSecs": "1", "abortOnChangeCreationFailure": false}),
        ),
    )
    .await;
    assert_eq!(g.proceed, Some(true));
    assert!(g.message.contains("continues"), "{g:?}");
}

#[tokio::test]
async fn the_change_step_timeout_aborts_or_continues_by_its_flag() {
    let (app, g) = timed_out(
        SimSettings::default(),
        with("Deploy", json!({"changeStepTimeoutSecs": 1})),
    )
    .await;
    assert_eq!(g.proceed, Some(false));
    assert!(g.message.contains("change step timeout"), "{g:?}");
    assert!(event_kinds(&app, g.id)
        .await
        .contains(&"change_step_timeout".to_string()));

    let (_, g) = timed_out(
        SimSettings::default(),
        with(
            "Deploy",
            json!({"changeStepTimeoutSecs": 1, "abortOnChangeStepTimeout": false}),
        ),
    )
    .await;
    assert_eq!(g.proceed, Some(true));
}

#[tokio::test]
async fn a_decision_before_the_deadline_wins_and_the_timer_does_nothing() {
    let app = spawn_app().await;
    let resp = app
        .open_gate(&with("Deploy", json!({"changeStepTimeoutSecs": 2})))
        .await;
    let gate: GateView = resp.json().await.unwrap();
    let id = gate.id;
    assert!(gate.deadline.is_some(), "{gate:?}");
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let g = app.gate(id).await;
    assert_eq!(g.state, GateState::Approved);
    assert_eq!(g.deadline, None);
}
