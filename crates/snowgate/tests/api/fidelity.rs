//! What snowgate sends ServiceNow, compared field by field with worked examples of the
//! official plugin 6.2.0 (plain job, nested stage, multibranch, parallel stages), as the strict
//! simulator received it; and the acknowledgement that follows every decision callback, also
//! one that arrives after polling decided.

use std::time::Duration;

use serde_json::{json, Value};
use servicenow_sim::{RecordedRequest, SimSettings};
use snowgate::api::GateView;
use snowgate::configuration::Dur;
use snowgate::domain::GateState;

use crate::callbacks::event_kinds;
use crate::helpers::*;

const JOB: &str = "https://ci/job/folder/job/app/";
const BUILD: &str = "https://ci/job/folder/job/app/42/";
const MULTIBRANCH_JOB: &str = "https://ci/job/mb/job/feature%252Fx/";

fn execution(build: &str, node: u32) -> String {
    format!("{build}execution/node/{node}/wfapi/describe")
}

/// A simulator whose instance knows the worked examples' jobs (as if discovered).
fn examples_sim() -> SimSettings {
    let mut sim = quiet_sim();
    sim.known_pipelines.push(JOB.into());
    sim.known_pipelines.push(MULTIBRANCH_JOB.into());
    sim
}

/// The gate request of the worked example: stage `Deploy` (node 15) after `Build` (node 9),
/// build 42 started by user alice.
fn deploy_after_build() -> Value {
    json!({
        "jobUrl": JOB,
        "jobName": "folder/app",
        "buildNumber": 42,
        "buildUrl": BUILD,
        "stageName": "Deploy",
        "flowNodeId": "15",
        "upstreamStageName": "Build",
        "upstreamStageUrl": execution(BUILD, 9),
        "triggerType": "user",
        "userName": "alice",
        "message": "Started by user alice",
    })
}

/// The one registration snowgate sent for `stage` (its full path).
fn registration(app: &TestApp, stage: &str) -> Value {
    let body = registration_in(&app.sim, stage).json().unwrap();
    assert_no_nulls(&body, "");
    body
}

/// The plugin leaves null members out; so does snowgate, at every depth.
fn assert_no_nulls(v: &Value, at: &str) {
    match v {
        Value::Null => panic!("{at} is null"),
        Value::Object(m) => m
            .iter()
            .for_each(|(k, v)| assert_no_nulls(v, &format!("{at}.{k}"))),
        Value::Array(a) => a.iter().for_each(|v| assert_no_nulls(v, at)),
        _ => {}
    }
}

async fn acknowledgements(app: &TestApp, token: &str, n: usize) -> Vec<RecordedRequest> {
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
    panic!("fewer than {n} acknowledgements for {token}");
}

async fn until_event(app: &TestApp, id: impl std::fmt::Display + Copy, kind: &str) {
    for _ in 0..200 {
        if event_kinds(app, id).await.iter().any(|k| k == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event for gate {id}");
}

fn token_of(callback_url: &str) -> String {
    callback_url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn the_plain_registration_is_the_worked_example_field_by_field() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    let resp = app.open_gate(&deploy_after_build()).await;
    assert_eq!(resp.status(), 201);
    let gate: GateView = resp.json().await.unwrap();
    assert_eq!(gate.state, GateState::Pending, "{gate:?}");
    let sent = registration(&app, "Deploy");
    let callback = sent["callbackURL"].as_str().unwrap().to_string();
    assert!(callback.contains("/sn-devops/pipeline_"), "{callback}");
    assert_eq!(
        sent,
        json!({"callbackURL": callback,
         "orchestrationTaskURL":"https://ci/job/folder/job/app#Deploy/","isMultiBranch":"false",
         "isFreestyle":"false","pipelineExecutionUrl":"https://ci/job/folder/job/app/42/",
         "orchestrationTaskName":"app","stageName":"Deploy","parentStageName":"app#Deploy",
         "parentStageURL":"https://ci/job/folder/job/app#Deploy/",
         "parentNode":{"id":"15","name":"Deploy","parentId":"","upstreamStageName":"Build",
           "upstreamTaskExecutionURL":"https://ci/job/folder/job/app/42/execution/node/9/wfapi/describe"},
         "parentStageExecutionURL":"https://ci/job/folder/job/app/42/execution/node/15/wfapi/describe",
         "orchestrationTaskDetails":{"message":"Started by user alice","triggerType":"user","userName":"alice",
           "buildNumber":"42","fullName":"folder/app",
           "taskExecutionURL":"https://ci/job/folder/job/app/42/execution/node/15/wfapi/describe"}})
    );
    let registration = app
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/orchestration/changeControl"))
        .unwrap();
    assert_eq!(
        registration.query_pairs(),
        vec![
            (
                "toolId".to_string(),
                app.settings.servicenow.tool_id.clone()
            ),
            ("toolType".to_string(), "jenkins".to_string()),
        ]
    );

    // The decision callback is acknowledged once, with sendBuildAndToken's body.
    let id = &gate.id.to_string();
    let token = token_of(&callback);
    assert_eq!(
        app.send_callback(&callback, r#"{"result":"succeeded","changeComments":"ok"}"#)
            .await
            .status(),
        200
    );
    app.until_state(id, GateState::Approved).await;
    let ack = acknowledgements(&app, &token, 1).await.pop().unwrap();
    assert!(ack
        .query_pairs()
        .contains(&("toolType".into(), "jenkins".into())));
    let node15 = execution(BUILD, 15);
    let ack = ack.json().unwrap();
    assert_no_nulls(&ack, "");
    assert_eq!(
        ack,
        json!({
            "callbackURL": callback,
            "orchestrationTaskURL": "https://ci/job/folder/job/app#Deploy/",
            "taskExecutionURL": node15,
            "isMultiBranch": "false",
            "orchestrationTaskName": "app#Deploy",
            "parentTaskExecutionURL": node15,
            "parentStageName": "app#Deploy",
            "parentStageURL": "https://ci/job/folder/job/app#Deploy/",
            "parentNode": {"id":"15","name":"Deploy","parentId":"","upstreamStageName":"Build",
                "upstreamTaskExecutionURL": execution(BUILD, 9)},
            "parentStageExecutionURL": node15,
        })
    );
}

#[tokio::test]
async fn a_nested_stage_registers_its_full_path_and_its_own_node() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    let body = json!({
        "jobUrl": JOB, "jobName": "folder/app", "buildNumber": "42", "buildUrl": BUILD,
        "stageName": "Prod", "parentStageName": "Deploy", "parentStageId": "15",
        "flowNodeId": "21", "message": "Started by user alice", "userName": "alice",
    });
    assert_eq!(app.open_gate(&body).await.status(), 201);
    let sent = registration(&app, "Deploy/Prod");
    let node21 = execution(BUILD, 21);
    assert_eq!(
        sent["orchestrationTaskURL"],
        "https://ci/job/folder/job/app#Deploy/Prod/"
    );
    assert_eq!(sent["orchestrationTaskName"], "app");
    assert_eq!(sent["parentStageName"], "app#Deploy/Prod");
    assert_eq!(
        sent["parentStageURL"],
        "https://ci/job/folder/job/app#Deploy/Prod/"
    );
    assert_eq!(
        sent["parentNode"],
        json!({"id":"21","name":"Deploy/Prod","parentId":"15"})
    );
    assert_eq!(sent["parentStageExecutionURL"], node21.as_str());
    assert_eq!(
        sent["orchestrationTaskDetails"]["taskExecutionURL"],
        node21.as_str()
    );
}

#[tokio::test]
async fn a_multibranch_job_registers_the_branch_item_and_its_full_name() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    let build = format!("{MULTIBRANCH_JOB}3/");
    let body = json!({
        "jobUrl": MULTIBRANCH_JOB, "jobName": "mb/feature%2Fx", "buildNumber": "3",
        "buildUrl": build, "stageName": "Deploy", "flowNodeId": "15",
        "isMultiBranch": true, "branchName": "feature/x", "triggerType": "scm",
        "message": "Branch indexing",
    });
    assert_eq!(app.open_gate(&body).await.status(), 201);
    let sent = registration(&app, "Deploy");
    assert_eq!(sent["orchestrationTaskName"], "feature%2Fx");
    assert_eq!(sent["parentStageName"], "feature%2Fx#Deploy");
    assert_eq!(
        sent["orchestrationTaskURL"],
        "https://ci/job/mb/job/feature%252Fx#Deploy/"
    );
    assert_eq!(sent["isMultiBranch"], "true");
    assert_eq!(sent["branchName"], "feature/x");
    assert_eq!(sent["pipelineExecutionUrl"], build.as_str());
    let details = &sent["orchestrationTaskDetails"];
    assert_eq!(details["fullName"], "mb/feature%2Fx");
    assert_eq!(details["triggerType"], "scm");
    assert_eq!(details["buildNumber"], "3");
    assert!(details.get("userName").is_none(), "{details}");
}

#[tokio::test]
async fn parallel_stages_register_twice_with_their_own_tokens_and_execution_urls() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    for (stage, node) in [("EU", "25"), ("US", "27")] {
        let body = json!({
            "jobUrl": JOB, "jobName": "folder/app", "buildNumber": "42", "buildUrl": BUILD,
            "stageName": stage, "parentStageName": "Deploy", "parentStageId": "15",
            "flowNodeId": node, "userName": "alice",
        });
        assert_eq!(app.open_gate(&body).await.status(), 201);
    }
    let eu = registration(&app, "Deploy/EU");
    let us = registration(&app, "Deploy/US");
    assert_ne!(eu["callbackURL"], us["callbackURL"]);
    assert_eq!(eu["parentNode"]["parentId"], "15");
    assert_eq!(us["parentNode"]["parentId"], "15");
    assert_eq!(
        eu["orchestrationTaskDetails"]["taskExecutionURL"],
        execution(BUILD, 25).as_str()
    );
    assert_eq!(
        us["orchestrationTaskDetails"]["taskExecutionURL"],
        execution(BUILD, 27).as_str()
    );
    // Without a cause text, Jenkins' own wording for the trigger (the plugin always sends one).
    assert_eq!(
        eu["orchestrationTaskDetails"]["message"],
        "Started by user alice"
    );
}

#[tokio::test]
async fn a_callback_after_polling_decided_is_acknowledged_once() {
    let app = spawn_app_with(examples_sim(), |s| {
        s.servicenow.poll_interval = Dur(Duration::from_millis(200));
    })
    .await;
    app.sim.set_drop_callbacks(true);
    let gate: GateView = app
        .open_gate(&deploy_after_build())
        .await
        .json()
        .await
        .unwrap();
    let id = gate.id;
    let number = app.change_of("Deploy");
    app.sim.approve(&number, "ok").await.unwrap();
    let decided = app.until_state(id, GateState::Approved).await;
    assert_eq!(decided.decided_by.as_deref(), Some("servicenow"));
    let callback = registration(&app, "Deploy")["callbackURL"]
        .as_str()
        .unwrap()
        .to_string();
    let token = token_of(&callback);
    // Polling decided: nothing is acknowledged yet (no callback arrived).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app
        .sim
        .requests()
        .iter()
        .all(|r| !(r.method == "PUT" && r.path.ends_with(&token))));
    // The late callback: the same decision is 200 and acknowledged, once; also when it comes
    // again while that acknowledgement is queued, and after it was sent.
    for _ in 0..2 {
        assert_eq!(
            app.send_callback(&callback, r#"{"result":"succeeded"}"#)
                .await
                .status(),
            200
        );
    }
    acknowledgements(&app, &token, 1).await;
    until_event(&app, id, "acknowledge_done").await;
    assert_eq!(
        app.send_callback(&callback, r#"{"result":"succeeded"}"#)
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(acknowledgements(&app, &token, 1).await.len(), 1);
    // A different late decision conflicts and changes nothing.
    assert_error(
        app.send_callback(&callback, r#"{"result":"rejected"}"#)
            .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(app.gate(id).await.state, GateState::Approved);
}

#[tokio::test]
async fn a_timed_out_gate_is_not_acknowledged_and_its_late_callback_is_gone() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    let mut body = deploy_after_build();
    body["changeCreationTimeoutSecs"] = json!(1);
    body["changeStepTimeoutSecs"] = json!(1);
    let gate: GateView = app.open_gate(&body).await.json().await.unwrap();
    app.until_state(gate.id, GateState::TimedOut).await;
    let callback = registration(&app, "Deploy")["callbackURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        app.send_callback(&callback, r#"{"result":"succeeded"}"#)
            .await,
        410,
        "gone",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = token_of(&callback);
    assert!(app
        .sim
        .requests()
        .iter()
        .all(|r| !(r.method == "PUT" && r.path.ends_with(&token))));
}

#[tokio::test]
async fn ignore_errors_never_turns_a_decision_into_proceed() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    for (stage, node, decision, state) in [
        (
            "Rejected",
            "31",
            r#"{"result":"rejected"}"#,
            GateState::Rejected,
        ),
        (
            "Canceled",
            "32",
            r#"{"result":"canceled"}"#,
            GateState::Canceled,
        ),
        (
            "Errored",
            "33",
            r#"{"result":"failed","isError":true,"changeComments":"no"}"#,
            GateState::Failed,
        ),
    ] {
        let mut body = deploy_after_build();
        body["stageName"] = json!(stage);
        body["flowNodeId"] = json!(node);
        body["ignoreErrors"] = json!(true);
        let gate: GateView = app.open_gate(&body).await.json().await.unwrap();
        let callback = registration(&app, stage)["callbackURL"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(app.send_callback(&callback, decision).await.status(), 200);
        let decided = app.until_state(gate.id, state).await;
        assert_eq!(decided.proceed, Some(false), "{stage}: {decided:?}");
    }
}

/// A job no instance has discovered: only a stepMapping POST or a STARTED event creates its
/// orchestration task.
const UNKNOWN_JOB: &str = "https://ci/job/new-app/";

fn unknown_job_gate(stage: &str) -> Value {
    json!({"jobUrl": UNKNOWN_JOB, "buildNumber": "5", "stageName": stage, "flowNodeId": "7"})
}

#[tokio::test]
async fn without_the_official_plugin_snowgate_creates_the_orchestration_task_first() {
    let app = spawn_app_with(examples_sim(), |_| {}).await;
    let gate: GateView = app
        .open_gate(&unknown_job_gate("Deploy"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(gate.state, GateState::Pending, "{gate:?}");
    let requests = app.sim.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(paths, ["stepMapping", "changeControl"], "{paths:?}");
    assert_eq!(
        requests[0].json().unwrap()["orchestrationTaskName"],
        "new-app#Deploy"
    );
}

#[tokio::test]
async fn with_the_official_plugin_declared_an_undiscovered_job_fails_closed() {
    let app = spawn_app_with(examples_sim(), |s| {
        s.servicenow.official_plugin = snowgate::configuration::OfficialPlugin::Installed;
    })
    .await;
    let gate: GateView = app
        .open_gate(&unknown_job_gate("Deploy"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(gate.state, GateState::Failed, "{gate:?}");
    assert_eq!(gate.proceed, Some(false));
    let message = &gate.message;
    assert!(
        message.contains("Orchestration task not found"),
        "{message}"
    );
    assert!(app
        .sim
        .requests()
        .iter()
        .all(|r| !r.path.ends_with("/stepMapping")));
}

#[tokio::test]
async fn stage_events_send_started_before_registering_and_completed_at_complete() {
    let app = spawn_app_with(examples_sim(), |s| {
        s.servicenow.step_mapping = Some(snowgate::configuration::StepMapping::Off);
        s.servicenow.stage_events = true;
    })
    .await;
    // The STARTED event alone creates the task, as the plugin's events do.
    let gate: GateView = app
        .open_gate(&unknown_job_gate("Deploy"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(gate.state, GateState::Pending, "{gate:?}");
    let id = gate.id;
    let requests = app.sim.requests();
    assert!(requests[0].path.ends_with("/devops/tool/orchestration"));
    assert_eq!(
        requests[0].query_pairs(),
        vec![
            ("toolType".to_string(), "jenkins".to_string()),
            (
                "toolId".to_string(),
                app.settings.servicenow.tool_id.clone()
            ),
        ]
    );
    assert!(requests[1].path.ends_with("/orchestration/changeControl"));
    let started = requests[0].json().unwrap();
    assert_no_nulls(&started, "");
    assert_eq!(started["url"], "https://ci/job/new-app/5/");
    assert_eq!(started["number"], 5);
    assert_eq!(started["pronoun"], "Pipeline");
    assert_eq!(
        started["jobModel"],
        json!({"name": "new-app", "url": UNKNOWN_JOB, "fullName": "new-app"})
    );
    assert_eq!(started["stageModel"]["name"], "Deploy");
    assert_eq!(started["stageModel"]["id"], "7");
    assert_eq!(started["stageModel"]["phase"], "STARTED");
    assert_eq!(
        started["stageModel"]["url"],
        "https://ci/job/new-app/5/execution/node/7/wfapi/describe"
    );

    let callback = registration(&app, "Deploy")["callbackURL"]
        .as_str()
        .unwrap()
        .to_string();
    app.send_callback(&callback, r#"{"result":"succeeded"}"#)
        .await;
    app.until_state(id, GateState::Approved).await;
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "failure"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let mut completed = None;
    for _ in 0..200 {
        completed = app
            .sim
            .orchestration_events()
            .into_iter()
            .find(|e| e["stageModel"]["phase"] == "COMPLETED");
        if completed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let completed = completed.expect("a COMPLETED event");
    assert_eq!(completed["stageModel"]["result"], "FAILURE");
    assert!(completed["stageModel"]["duration"].is_number());
}
