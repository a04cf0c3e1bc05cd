//! Releasing a Jenkins `input` step against the Jenkins fake.
use std::time::Duration;

use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::GateView;
use snowgate::configuration::{JenkinsSettings, Secret};
use snowgate::domain::GateState;

use crate::callbacks::event_kinds;
use crate::helpers::*;
use crate::jenkins_fake::JenkinsFake;

const BUILD: &str = "/job/shop/job/app/42/";

async fn app_with_jenkins(fake: &JenkinsFake) -> TestApp {
    let (url, user, token) = (
        format!("{}/", fake.url),
        fake.user.clone(),
        fake.token.clone(),
    );
    spawn_app_with(SimSettings::default(), move |s| {
        s.jenkins = Some(JenkinsSettings {
            url,
            // Pipelines see Jenkins under its public name; snowgate reaches it on loopback.
            allowed_urls: vec!["https://ci.example.com/".into()],
            user,
            api_token: Secret::new(token),
            ..JenkinsSettings::default()
        });
    })
    .await
}

fn input_gate(stage: &str) -> Value {
    let mut b = gate_body(stage);
    b["input"] = json!({"id": "snowgateApproval"});
    b
}

async fn open_input_gate(app: &TestApp, stage: &str) -> String {
    let resp = app.open_gate(&input_gate(stage)).await;
    assert_eq!(resp.status(), 201);
    let g: GateView = resp.json().await.unwrap();
    g.id.to_string()
}

async fn until_answered(fake: &JenkinsFake, id: &str) -> String {
    for _ in 0..200 {
        if let Some(a) = fake.answer_of(BUILD, id) {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "input {id} was never answered; requests: {:?}",
        fake.requests()
    );
}

async fn until_event(app: &TestApp, id: &str, kind: &str) {
    for _ in 0..200 {
        if event_kinds(app, id).await.iter().any(|k| k == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event: {:?}", app.events(id).await);
}

#[tokio::test]
async fn an_approval_answers_the_input_with_proceed_empty_and_preemptive_auth() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    let app = app_with_jenkins(&fake).await;
    let id = open_input_gate(&app, "Deploy").await;
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    assert_eq!(
        until_answered(&fake, "SnowgateApproval").await,
        "proceedEmpty"
    );
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(
        reqs[0].path,
        "/job/shop/job/app/42/input/SnowgateApproval/proceedEmpty"
    );
    assert_eq!(
        reqs[0].authorization.as_deref(),
        Some(fake.expected_auth().as_str())
    );
    until_event(&app, &id, "release_done").await;
}

#[tokio::test]
async fn a_rejection_aborts_the_input() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    let app = app_with_jenkins(&fake).await;
    open_input_gate(&app, "Deploy").await;
    app.sim
        .reject(&app.change_of("Deploy"), "no")
        .await
        .unwrap();
    assert_eq!(until_answered(&fake, "SnowgateApproval").await, "abort");
}

#[tokio::test]
async fn an_operator_resume_proceeds_and_abort_aborts() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    let app = app_with_jenkins(&fake).await;
    let id = open_input_gate(&app, "Deploy").await;
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/resume"),
            Some(OPERATOR_TOKEN),
            &json!({"reason": "emergency fix"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        until_answered(&fake, "SnowgateApproval").await,
        "proceedEmpty"
    );
}

#[tokio::test]
async fn an_input_reached_after_the_decision_is_released_after_retries() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", false);
    let app = app_with_jenkins(&fake).await;
    let id = open_input_gate(&app, "Deploy").await;
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.answer_of(BUILD, "SnowgateApproval"), None);
    fake.reach(BUILD, "SnowgateApproval");
    assert_eq!(
        until_answered(&fake, "SnowgateApproval").await,
        "proceedEmpty"
    );
    let kinds = event_kinds(&app, &id).await;
    assert!(
        kinds.iter().filter(|k| *k == "release_retry").count() >= 2,
        "{kinds:?}"
    );
    // Each retry asked whether the build still runs.
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.path == format!("{BUILD}api/json") && r.query == "tree=building,result"));
}

#[tokio::test]
async fn a_finished_build_makes_the_release_give_up_and_record_it() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", false);
    fake.finish_build(BUILD, "ABORTED");
    let app = app_with_jenkins(&fake).await;
    let id = open_input_gate(&app, "Deploy").await;
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    until_event(&app, &id, "release_failed").await;
    let events = app.events(&id).await;
    let failed = events.iter().find(|e| e.kind == "release_failed").unwrap();
    assert!(
        failed.message.contains("build is over (result ABORTED)"),
        "{failed:?}"
    );
    assert_eq!(app.gate(&id).await.state, GateState::Approved);
}

#[tokio::test]
async fn an_input_answered_by_someone_else_is_recorded_not_retried() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    let app = app_with_jenkins(&fake).await;
    let id = open_input_gate(&app, "Deploy").await;
    // A person clicks Proceed in Jenkins first.
    let client = reqwest::Client::new();
    client
        .post(format!(
            "{}{BUILD}input/SnowgateApproval/proceedEmpty",
            fake.url
        ))
        .header("Authorization", fake.expected_auth())
        .send()
        .await
        .unwrap();
    app.sim
        .cancel(&app.change_of("Deploy"), "withdrawn")
        .await
        .unwrap();
    until_event(&app, &id, "release_done").await;
    let done = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e.kind == "release_done")
        .unwrap();
    assert!(done.message.contains("already answered"), "{done:?}");
    assert_eq!(
        fake.answer_of(BUILD, "SnowgateApproval").as_deref(),
        Some("proceedEmpty")
    );
}

#[tokio::test]
async fn an_input_jenkins_user_may_not_submit_is_a_permission_failure_not_already_answered() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    fake.restrict(BUILD, "SnowgateApproval", "release-managers");
    let app = app_with_jenkins(&fake).await;
    let id = open_input_gate(&app, "Deploy").await;
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    until_event(&app, &id, "release_failed").await;
    let failed = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e.kind == "release_failed")
        .unwrap();
    let msg = &failed.message;
    assert!(
        msg.contains("may not answer input SnowgateApproval"),
        "{msg}"
    );
    assert!(msg.contains("You need to be release-managers"), "{msg}");
    assert!(!msg.contains("already answered"), "{msg}");
    assert_eq!(fake.answer_of(BUILD, "SnowgateApproval"), None);
}

#[tokio::test]
async fn refused_jenkins_credentials_are_reported_as_such() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    let url = format!("{}/", fake.url);
    let app = spawn_app_with(SimSettings::default(), move |s| {
        s.jenkins = Some(JenkinsSettings {
            url,
            allowed_urls: vec!["https://ci.example.com/".into()],
            user: "snowgate".into(),
            api_token: Secret::new("wrong-token-value"),
            ..JenkinsSettings::default()
        });
    })
    .await;
    let id = open_input_gate(&app, "Deploy").await;
    app.sim
        .approve(&app.change_of("Deploy"), "ok")
        .await
        .unwrap();
    until_event(&app, &id, "release_failed").await;
    let failed = app
        .events(&id)
        .await
        .into_iter()
        .find(|e| e.kind == "release_failed")
        .unwrap();
    let msg = &failed.message;
    assert!(msg.contains("refused the credentials (401)"), "{msg}");
    assert!(!msg.contains("wrong-token-value"));
}

#[tokio::test]
async fn a_build_url_elsewhere_is_refused_and_nothing_is_sent_there() {
    let fake = JenkinsFake::start().await;
    let elsewhere = JenkinsFake::start().await;
    let app = app_with_jenkins(&fake).await;
    let mut body = input_gate("Deploy");
    body["buildUrl"] = json!(format!("{}/job/shop/job/app/42/", elsewhere.url));
    let err = assert_error(app.open_gate(&body).await, 400, "invalid_field").await;
    assert_eq!(err.error.field.as_deref(), Some("buildUrl"));
    let mut no_build = input_gate("Deploy");
    no_build.as_object_mut().unwrap().remove("buildUrl");
    let err = assert_error(app.open_gate(&no_build).await, 400, "invalid_field").await;
    assert_eq!(err.error.field.as_deref(), Some("buildUrl"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(elsewhere.requests().is_empty());
    assert!(fake.requests().is_empty());
    assert!(app.sim.requests().is_empty(), "no gate, no registration");
}

#[tokio::test]
async fn an_input_gate_needs_a_jenkins_configuration() {
    let app = spawn_app().await;
    let err = assert_error(
        app.open_gate(&input_gate("Deploy")).await,
        400,
        "invalid_field",
    )
    .await;
    assert_eq!(err.error.field.as_deref(), Some("input"));
}

#[tokio::test]
async fn configured_parameters_pass_the_change_request_into_the_input() {
    let fake = JenkinsFake::start().await;
    fake.add_build(BUILD, "SnowgateApproval", true);
    let (url, user, token) = (
        format!("{}/", fake.url),
        fake.user.clone(),
        fake.token.clone(),
    );
    let app = spawn_app_with(SimSettings::default(), move |s| {
        s.jenkins = Some(JenkinsSettings {
            url,
            allowed_urls: vec!["https://ci.example.com/".into()],
            user,
            api_token: Secret::new(token),
            change_parameter: Some("CHANGE_REQUEST".into()),
            ..JenkinsSettings::default()
        });
    })
    .await;
    let id = open_input_gate(&app, "Deploy").await;
    let number = app.change_of("Deploy");
    // Wait for the notice to link the CR, then approve.
    for _ in 0..100 {
        if cr_number(&app.gate(&id).await) == Some(number.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.sim.approve(&number, "ok").await.unwrap();
    assert_eq!(until_answered(&fake, "SnowgateApproval").await, "proceed");
    let req = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/proceed"))
        .unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(req.body.as_bytes())
        .into_owned()
        .collect();
    let json: Value =
        serde_json::from_str(&form.iter().find(|(k, _)| k == "json").unwrap().1).unwrap();
    assert_eq!(json["parameter"][0]["name"], "CHANGE_REQUEST");
    assert_eq!(json["parameter"][0]["value"], number.as_str());
}
