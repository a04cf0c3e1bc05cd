use servicenow_sim::{Fault, SimSettings};
use snowgate::api::GateView;
use snowgate::configuration::{Secret, ServiceNowAuth};
use snowgate::domain::GateState;
use snowgate::servicenow::DevOpsClient;

use crate::helpers::*;

fn posts(app: &TestApp) -> usize {
    app.sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/changeControl"))
        .count()
}

#[tokio::test]
async fn registration_is_retried_through_503s() {
    let app = spawn_app().await;
    app.sim.inject_fault(Fault {
        endpoint: "changeControl.post".into(),
        fail_next: 2,
        status: 503,
        latency_ms: 0,
    });
    let resp = app.open_gate(&gate_body("Deploy")).await;
    assert_eq!(resp.status(), 201);
    let gate: GateView = resp.json().await.unwrap();
    let id = gate.id;
    app.until_state(id, GateState::Pending).await;
    assert_eq!(posts(&app), 3);
    let kinds: Vec<String> = app.events(id).await.into_iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "register_retry").count(),
        2,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"registered".to_string()));
}

#[tokio::test]
async fn refused_credentials_fail_the_gate_with_a_clear_message() {
    let app = spawn_app_with(SimSettings::default(), |s| {
        s.servicenow.token = Secret::new("wrong-token");
    })
    .await;
    let gate = app.open("Deploy").await;
    assert_eq!(gate.state, GateState::Failed);
    assert_eq!(gate.proceed, Some(false));
    let msg = &gate.message;
    assert!(msg.contains("refused the credentials"), "{msg}");
    assert!(msg.contains("401"), "{msg}");
    assert!(!msg.contains("wrong-token"), "{msg}");
    // Permanent: tried once (the stepMapping POST, the first call), not retried.
    assert_eq!(app.sim.requests().len(), 1);
}

#[tokio::test]
async fn a_bad_request_fails_fast_with_servicenows_message_and_ignore_errors_proceeds() {
    let app = spawn_app().await;
    app.sim.inject_fault(Fault {
        endpoint: "changeControl.post".into(),
        fail_next: 2,
        status: 400,
        latency_ms: 0,
    });
    let gate = app.open("Deploy").await;
    assert_eq!(gate.state, GateState::Failed);
    assert_eq!(gate.proceed, Some(false));
    assert!(gate.message.contains("400"), "{gate:?}");
    let mut body = gate_body("Deploy 2");
    body["ignoreErrors"] = true.into();
    let resp = app.open_gate(&body).await;
    let gate: GateView = resp.json().await.unwrap();
    assert_eq!(gate.state, GateState::Failed);
    assert_eq!(gate.proceed, Some(true));
    assert!(gate.message.contains("ignoreErrors"));
}

#[tokio::test]
async fn basic_auth_uses_the_v1_api() {
    let sim_cfg = SimSettings::default();
    let (user, password) = (sim_cfg.user.clone(), sim_cfg.password.clone());
    let app = spawn_app_with(sim_cfg, move |s| {
        s.servicenow.auth = ServiceNowAuth::Basic;
        s.servicenow.user = user;
        s.servicenow.password = Secret::new(password);
    })
    .await;
    let gate = app.open("Deploy").await;
    assert_eq!(gate.state, GateState::Pending);
    let reg = app.registration_of("Deploy");
    assert!(reg
        .path
        .starts_with("/api/sn_devops/v1/devops/orchestration/changeControl"));
    let auth = reg.header("authorization").unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
}

#[tokio::test]
async fn the_connection_test_asks_changecontrol_with_test_connection() {
    let app = spawn_app().await;
    let client = DevOpsClient::new(&app.settings.servicenow).unwrap();
    let answer = client.test_connection().await.unwrap();
    assert_eq!(answer["result"]["status"], "Success");
    let req = app.sim.requests().pop().unwrap();
    assert_eq!(req.method, "GET");
    assert!(req.path.ends_with("/orchestration/changeControl"));
    let q = req.query_pairs();
    assert!(q.contains(&("testConnection".into(), "true".into())));
    assert!(q.contains(&("toolType".into(), "jenkins".into())));
}
