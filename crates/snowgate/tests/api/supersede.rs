//! Superseded runs: a newer build's gate for the same job, branch and stage decides the older
//! ones still waiting `superseded`, releases their long-polls, tells their CRs, and a later
//! callback for them is answered 410.
use std::time::Duration;

use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use snowgate::domain::GateState;

use crate::change::{change_app_with, notes, open_change, until_notes};
use crate::helpers::*;

fn build(number: u32, stage: &str, extra: Value) -> Value {
    let mut b = gate_body(stage);
    b["buildNumber"] = json!(number);
    b["buildUrl"] = json!(format!("https://ci.example.com/job/shop/job/app/{number}/"));
    b["branchName"] = json!("main");
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

async fn open_build(app: &TestApp, number: u32, stage: &str, extra: Value) -> GateView {
    open_at(
        &app.client,
        &app.address,
        &build(number, stage, extra),
        &[201],
    )
    .await
}

#[tokio::test]
async fn a_newer_build_with_supersede_decides_the_older_waiting_gates_and_releases_their_long_polls(
) {
    let app = spawn_app().await;
    let old = open_build(&app, 41, "Deploy", json!({})).await;
    let older = open_build(&app, 40, "Deploy", json!({})).await;
    // Not older runs of the same identity: another stage, another branch, a newer build.
    let other_stage = open_build(&app, 41, "Test", json!({})).await;
    let other_branch = open_build(&app, 39, "Deploy", json!({"branchName": "feature"})).await;
    let later = open_build(&app, 44, "Deploy", json!({})).await;
    for g in [&old, &older, &other_stage, &other_branch, &later] {
        assert_eq!(g.state, GateState::Pending, "{g:?}");
    }
    let waiter = app.long_poll(old.id, 60);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the older gate waits");

    let newer = open_build(&app, 43, "Deploy", json!({"supersede": true})).await;
    assert_eq!(newer.state, GateState::Pending, "{newer:?}");
    let (status, released) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(released.state, GateState::Superseded, "{released:?}");
    assert_eq!(released.proceed, Some(false));
    assert!(
        released.message.contains("build 43") && released.message.contains(&newer.id.to_string()),
        "{released:?}"
    );
    assert_eq!(released.decided_by.as_deref(), Some("snowgate"));
    let events = app.events(old.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind, "superseded");
    assert_eq!(last.from_state, Some(GateState::Pending));
    assert_eq!(last.to_state, Some(GateState::Superseded));
    assert!(last.message.contains("build 43"), "{last:?}");
    assert_eq!(app.gate(older.id).await.state, GateState::Superseded);
    for g in [&other_stage, &other_branch, &later] {
        assert_eq!(app.gate(g.id).await.state, GateState::Pending, "{g:?}");
    }
    // Listed by its state, like any other.
    let listed: snowgate::api::GateList = app
        .get("/api/v1/gates?state=superseded", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let mut ids: Vec<_> = listed.gates.iter().map(|g| g.id).collect();
    ids.sort();
    let mut want = vec![old.id, older.id];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn without_supersede_a_newer_build_leaves_the_older_gates_waiting() {
    let app = spawn_app().await;
    let old = open_build(&app, 41, "Deploy", json!({})).await;
    open_build(&app, 42, "Deploy", json!({"supersede": false})).await;
    assert_eq!(app.gate(old.id).await.state, GateState::Pending);
}

#[tokio::test]
async fn supersede_jobs_in_the_configuration_supersede_without_the_flag() {
    let app = spawn_app_with(sim_settings(), |s| {
        s.supersede.jobs = vec!["shop/*".into()];
    })
    .await;
    let old = open_build(&app, 41, "Deploy", json!({})).await;
    let newer = open_build(&app, 42, "Deploy", json!({})).await;
    assert_eq!(
        app.until_state(old.id, GateState::Superseded).await.state,
        GateState::Superseded
    );
    assert_eq!(app.gate(newer.id).await.state, GateState::Pending);
}

#[tokio::test]
async fn a_callback_for_a_superseded_gate_is_answered_410_and_not_acknowledged() {
    let app = spawn_app().await;
    let old = open_build(&app, 41, "Deploy", json!({})).await;
    let callback = app.callback_url_of("Deploy");
    open_build(&app, 42, "Deploy", json!({"supersede": true})).await;
    app.until_state(old.id, GateState::Superseded).await;
    let resp = app
        .send_callback(
            &callback,
            r#"{"result":"succeeded","changeComments":"late"}"#,
        )
        .await;
    assert_eq!(resp.status(), 410);
    // A notice (the CR's number) gets 410 too: the plugin has forgotten the token either way.
    let before = app.gate(old.id).await;
    let resp = app
        .send_callback(
            &callback,
            r#"{"changeRequestId":"CHG0099999","changeRequestUrl":"https://example.service-now.com/chg"}"#,
        )
        .await;
    assert_eq!(resp.status(), 410);
    let g = app.gate(old.id).await;
    assert_eq!(
        g.state,
        GateState::Superseded,
        "the late approval changes nothing"
    );
    assert_eq!(g.change_request, before.change_request, "nor the notice");
    assert!(!app
        .events(old.id)
        .await
        .iter()
        .any(|e| e.kind == "late_callback"));
}

#[tokio::test]
async fn a_supersede_that_is_not_a_boolean_is_refused_by_name() {
    let app = spawn_app().await;
    let resp = app
        .open_gate(&build(41, "Deploy", json!({"supersede": "yes"})))
        .await;
    let err = assert_error(resp, 400, "invalid_field").await;
    assert!(err.error.message.contains("supersede"), "{err:?}");
    assert!(app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json::<snowgate::api::GateList>()
        .await
        .unwrap()
        .gates
        .is_empty());
}

async fn change_build(app: &TestApp, number: u32, extra: Value) -> GateView {
    let mut extra = extra;
    extra["buildNumber"] = json!(number);
    extra["buildUrl"] = json!(format!("https://ci.example.com/job/shop/job/app/{number}/"));
    open_change(app, "Deploy", extra).await
}

#[tokio::test]
async fn in_change_mode_the_superseded_gate_s_change_request_gets_a_work_note() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let old = change_build(&app, 41, json!({})).await;
    let number = cr_number(&old).unwrap().to_string();
    change_build(&app, 42, json!({"supersede": true})).await;
    app.until_state(old.id, GateState::Superseded).await;
    let n = until_notes(&app, &number, 1).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        n[0].contains("superseded") && n[0].contains("build 42"),
        "{n:?}"
    );
    assert_eq!(
        app.sim.chg_change(&number).unwrap().state,
        "New",
        "without change.cancel_superseded the CR stays as it is"
    );
}

#[tokio::test]
async fn with_cancel_superseded_a_change_request_the_gate_adopted_is_left_open() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.change.cancel_superseded = true;
    })
    .await;
    // The release train's CR, raised by hand in ServiceNow: not snowgate's to cancel.
    let train = app
        .sim
        .chg_create(
            json!({"short_description": "Release train 12"}),
            "normal",
            "Assess",
        )
        .unwrap();
    let old = change_build(&app, 41, json!({"changeRequestNumber": train.number})).await;
    assert_eq!(cr_number(&old), Some(train.number.as_str()));
    change_build(&app, 42, json!({"supersede": true})).await;
    app.until_state(old.id, GateState::Superseded).await;
    let n = until_notes(&app, &train.number, 1).await;
    assert!(n.iter().any(|n| n.contains("superseded")), "{n:?}");
    assert_eq!(
        app.sim.chg_change(&train.number).unwrap().state,
        "Assess",
        "an adopted CR is never canceled"
    );
    assert!(!app
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "PATCH" && r.body.contains("canceled")));
}

#[tokio::test]
async fn with_cancel_superseded_a_change_request_closed_since_the_last_poll_is_left_closed() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.change.cancel_superseded = true;
        // No poll within the test: snowgate last saw the CR in New.
        s.servicenow.poll_interval = snowgate::configuration::Dur(Duration::from_secs(600));
    })
    .await;
    let old = change_build(&app, 41, json!({})).await;
    let number = cr_number(&old).unwrap().to_string();
    app.sim
        .chg_set_state(&number, "Closed", None, None)
        .unwrap();
    change_build(&app, 42, json!({"supersede": true})).await;
    app.until_state(old.id, GateState::Superseded).await;
    let mut said = None;
    for _ in 0..200 {
        said = app
            .events(old.id)
            .await
            .into_iter()
            .find(|e| e.message.contains("cancellation (superseded) not written"));
        if said.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let said = said.expect("the cancellation's outcome in the events");
    assert!(said.message.contains("Closed"), "{said:?}");
    assert_eq!(app.sim.chg_change(&number).unwrap().state, "Closed");
}

#[tokio::test]
async fn with_cancel_superseded_the_change_request_snowgate_created_is_canceled() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.change.cancel_superseded = true;
        s.change.work_notes = true;
    })
    .await;
    let old = change_build(&app, 41, json!({})).await;
    let number = cr_number(&old).unwrap().to_string();
    let newer = change_build(&app, 42, json!({"supersede": true})).await;
    assert_ne!(
        cr_number(&newer).unwrap(),
        number,
        "each build has its own CR"
    );
    app.until_state(old.id, GateState::Superseded).await;
    for _ in 0..200 {
        if app.sim.chg_change(&number).unwrap().state == "Canceled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.sim.chg_change(&number).unwrap().state, "Canceled");
    assert!(
        notes(&app, &number)
            .iter()
            .any(|n| n.contains("superseded")),
        "{:?}",
        notes(&app, &number)
    );
    assert_ne!(
        app.sim
            .chg_change(cr_number(&newer).unwrap())
            .unwrap()
            .state,
        "Canceled",
        "the newer build's CR is left alone"
    );
}
