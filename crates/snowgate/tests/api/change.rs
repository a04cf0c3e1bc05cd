//! Change mode against the simulator's Change Management API and OAuth server.
use std::time::Duration;

use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::{GateList, GateView};
use snowgate::configuration::{AutoTransition, Dur, GateMode, Secret, ServiceNowAuth, Settings};
use snowgate::domain::GateState;

use crate::helpers::*;

const TITLE: &str = "Jenkins: Deploy \"shop/app\" build 42 to \"Production\"";

fn change_settings(s: &mut Settings, sim: &SimSettings) {
    s.servicenow.auth = ServiceNowAuth::Basic;
    s.servicenow.user = sim.user.clone();
    s.servicenow.password = Secret::new(sim.password.clone());
    s.servicenow.poll_interval = Dur(Duration::from_millis(200));
    s.change.environments = vec!["Production".into()];
}

async fn change_app() -> TestApp {
    change_app_with(SimSettings::default(), |_| {}).await
}

pub(crate) async fn change_app_with(
    sim: SimSettings,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let sim_for = sim.clone();
    spawn_app_with(sim, move |s| {
        change_settings(s, &sim_for);
        tweak(s);
    })
    .await
}

fn change_gate(stage: &str, extra: Value) -> Value {
    let mut b = gate_body(stage);
    b["mode"] = json!("change");
    b["environment"] = json!("Production");
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

pub(crate) async fn open_change(app: &TestApp, stage: &str, extra: Value) -> GateView {
    let resp = app.open_gate(&change_gate(stage, extra)).await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

fn chg_requests(app: &TestApp) -> usize {
    app.sim
        .requests()
        .iter()
        .filter(|r| r.path.contains("/sn_chg_rest/"))
        .count()
}

async fn until<F: Fn(&GateView) -> bool>(app: &TestApp, id: &str, what: &str, f: F) -> GateView {
    for _ in 0..200 {
        let g = app.gate(id).await;
        if f(&g) {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gate {id}: never {what}: {:?}", app.gate(id).await);
}

#[tokio::test]
async fn without_a_cr_one_normal_cr_is_created_waits_and_is_approved_at_implement() {
    let app = change_app().await;
    let gate = open_change(
        &app,
        "Deploy",
        json!({"changeRequestDetails": {"attributes": {"category": "Software", "justification": "release 42"}}}),
    )
    .await;
    assert_eq!(gate.state, GateState::Pending, "{gate:?}");
    assert_eq!(gate.mode, GateMode::Change);
    let id = &gate.id.to_string();
    let crs = app.sim.chg_changes();
    assert_eq!(crs.len(), 1);
    let cr = &crs[0];
    assert_eq!(cr.change_type, "normal");
    assert_eq!(cr.short_description, TITLE);
    assert_eq!(
        cr.fields.get("category").map(String::as_str),
        Some("Software")
    );
    assert_eq!(cr_number(&gate), Some(cr.number.as_str()));
    assert_eq!(
        change_request(&gate).sys_id.as_deref(),
        Some(cr.sys_id.as_str())
    );
    let url = change_request(&gate).url.as_deref().unwrap();
    assert!(
        url.ends_with(&format!(
            "/nav_to.do?uri=change_request.do?sys_id={}",
            cr.sys_id
        )),
        "{url}"
    );

    app.sim
        .chg_set_state(&cr.number, "Assess", None, None)
        .unwrap();
    let g = until(&app, id, "shows Assess", |g| {
        g.change_request.as_ref().and_then(|c| c.state.as_deref()) == Some("Assess")
    })
    .await;
    assert_eq!(g.state, GateState::Pending);
    assert!(g.message.contains("state Assess"), "{g:?}");

    app.sim
        .chg_set_state(&cr.number, "Implement", None, None)
        .unwrap();
    let g = app.until_state(id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    // The create request carried the title and attributes as a JSON body.
    let create = app
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/change/normal"))
        .unwrap();
    assert!(create
        .header("authorization")
        .unwrap()
        .starts_with("Basic "));
    let body = create.json().unwrap();
    assert_eq!(body["short_description"], TITLE);
    assert_eq!(body["justification"], "release 42");
}

#[tokio::test]
async fn an_environment_outside_change_control_is_not_controlled_and_asks_nothing() {
    let app = change_app().await;
    let mut body = change_gate("Deploy", json!({}));
    body["environment"] = json!("Staging");
    let resp = app.open_gate(&body).await;
    let g: GateView = resp.json().await.unwrap();
    assert_eq!(g.state, GateState::NotControlled, "{g:?}");
    assert_eq!(g.proceed, Some(true));
    // A job outside change.jobs neither.
    let app2 = change_app_with(SimSettings::default(), |s| {
        s.change.jobs = vec!["deploy-*".into()]
    })
    .await;
    let g: GateView = app2
        .open_gate(&change_gate("Deploy", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g.state, GateState::NotControlled, "{g:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chg_requests(&app), 0);
    assert_eq!(chg_requests(&app2), 0);
    assert!(app.sim.chg_changes().is_empty());
}

#[tokio::test]
async fn a_supplied_number_is_the_only_cr_checked() {
    let app = change_app().await;
    // A decoy with the matching title, already in Implement.
    app.sim
        .chg_create(json!({"short_description": TITLE}), "normal", "Implement")
        .unwrap();
    let target = app
        .sim
        .chg_create(
            json!({"short_description": "CAB-approved release train"}),
            "normal",
            "Assess",
        )
        .unwrap();
    let g = open_change(
        &app,
        "Deploy",
        json!({"changeRequestNumber": target.number}),
    )
    .await;
    let id = &g.id.to_string();
    assert_eq!(cr_number(&g), Some(target.number.as_str()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let g = app.gate(id).await;
    assert_eq!(
        g.state,
        GateState::Pending,
        "the decoy must not approve it: {g:?}"
    );
    assert_eq!(app.sim.chg_changes().len(), 2, "no CR created");
    assert!(!app
        .sim
        .requests()
        .iter()
        .any(|r| r.method == "POST" && r.path.contains("/change/")));

    // An unknown number fails the gate, naming it.
    let g = open_change(&app, "Other", json!({"changeRequestNumber": "CHG9999999"})).await;
    assert_eq!(g.state, GateState::Failed);
    assert!(g.message.contains("CHG9999999"), "{g:?}");
}

#[tokio::test]
async fn the_open_cr_with_the_exact_title_is_linked_and_others_are_ignored() {
    let app = change_app().await;
    app.sim
        .chg_create(json!({"short_description": TITLE}), "normal", "Closed")
        .unwrap();
    app.sim
        .chg_create(
            json!({"short_description": TITLE.to_lowercase()}),
            "normal",
            "Assess",
        )
        .unwrap();
    app.sim
        .chg_create(
            json!({"short_description": format!("{TITLE} (copy)")}),
            "normal",
            "Assess",
        )
        .unwrap();
    let open = app
        .sim
        .chg_create(json!({"short_description": TITLE}), "normal", "Authorize")
        .unwrap();
    let g = open_change(&app, "Deploy", json!({})).await;
    assert_eq!(cr_number(&g), Some(open.number.as_str()), "{g:?}");
    assert_eq!(app.sim.chg_changes().len(), 4, "nothing created");
}

#[tokio::test]
async fn a_rerun_reuses_the_open_cr_and_racing_gates_create_one() {
    let app = change_app().await;
    // Two stages of the same job, build and environment race for the same title.
    let (body_a, body_b) = (
        change_gate("Deploy", json!({})),
        change_gate("Verify", json!({})),
    );
    let (a, b) = tokio::join!(app.open_gate(&body_a), app.open_gate(&body_b));
    let a: GateView = a.json().await.unwrap();
    let b: GateView = b.json().await.unwrap();
    assert_eq!(app.sim.chg_changes().len(), 1);
    assert_eq!(cr_number(&a), cr_number(&b));
    // A re-run (another stage name, same build and environment) finds it again.
    let c = open_change(&app, "Deploy again", json!({})).await;
    assert_eq!(cr_number(&c), cr_number(&a));
    assert_eq!(app.sim.chg_changes().len(), 1);
    // A short_description from the attributes replaces the title, and is what is matched.
    let d = open_change(
        &app,
        "Custom",
        json!({"changeRequestDetails": {"attributes": {"short_description": "Quarterly release"}}}),
    )
    .await;
    let e = open_change(
        &app,
        "Custom 2",
        json!({"changeRequestDetails": {"attributes": {"short_description": "Quarterly release"}}}),
    )
    .await;
    assert_ne!(cr_number(&d), cr_number(&a));
    assert_eq!(cr_number(&d), cr_number(&e));
    assert_eq!(app.sim.chg_changes().len(), 2);
}

#[tokio::test]
async fn emergency_and_standard_changes_are_created_as_asked() {
    let app = change_app().await;
    let g = open_change(
        &app,
        "Hotfix",
        json!({"emergency": true, "buildNumber": 43}),
    )
    .await;
    let number = cr_number(&g).unwrap().to_string();
    assert_eq!(
        app.sim.chg_change(&number).unwrap().change_type,
        "emergency"
    );

    let app = change_app_with(SimSettings::default(), |s| {
        s.change.standard_template = Some("Jenkins deployment".into());
    })
    .await;
    let g = open_change(&app, "Deploy", json!({})).await;
    let number = cr_number(&g).unwrap().to_string();
    let cr = app.sim.chg_change(&number).unwrap();
    assert_eq!(cr.change_type, "standard");
    assert_eq!(cr.template.as_deref(), Some("Jenkins deployment"));
    // A template that does not exist fails the gate, naming it.
    let g = open_change(
        &app,
        "Other",
        json!({"standardChangeTemplate": "No such template", "buildNumber": 44}),
    )
    .await;
    assert_eq!(g.state, GateState::Failed);
    assert!(g.message.contains("No such template"), "{g:?}");
}

#[tokio::test]
async fn a_canceled_or_closed_cr_fails_the_gate_naming_the_state() {
    let app = change_app().await;
    for (stage, state) in [("A", "Canceled"), ("B", "Closed")] {
        let mut extra = json!({});
        extra["changeRequestDetails"] =
            json!({"attributes": {"short_description": format!("release {stage}")}});
        // A decision, not an error: ignoreErrors does not let the stage go on.
        extra["ignoreErrors"] = json!(true);
        let g = open_change(&app, stage, extra).await;
        let id = &g.id.to_string();
        let number = cr_number(&g).unwrap();
        app.sim.chg_set_state(number, state, None, None).unwrap();
        let g = app.until_state(id, GateState::Failed).await;
        assert_eq!(g.proceed, Some(false));
        assert!(g.message.contains(state), "{g:?}");
    }
}

#[tokio::test]
async fn change_windows_hold_and_close() {
    let app = change_app().await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let g = open_change(
        &app,
        "A",
        json!({"changeRequestDetails": {"attributes": {"short_description": "window A"}}}),
    )
    .await;
    let a = g.id.to_string();
    let number = cr_number(&g).unwrap().to_string();
    app.sim
        .chg_set_state(&number, "Implement", Some(&soon), None)
        .unwrap();
    until(&app, &a, "waits for its window", |g| {
        g.message.contains("waiting for its change window")
    })
    .await;
    assert_eq!(
        app.until_state(&a, GateState::Approved).await.proceed,
        Some(true)
    );

    let g = open_change(
        &app,
        "B",
        json!({"changeRequestDetails": {"attributes": {"short_description": "window B"}}}),
    )
    .await;
    let b = g.id.to_string();
    let number = cr_number(&g).unwrap().to_string();
    app.sim
        .chg_set_state(&number, "Assess", None, Some(&past))
        .unwrap();
    let g = app.until_state(&b, GateState::Failed).await;
    assert!(g.message.starts_with("change window closed"), "{g:?}");
}

pub(crate) fn notes(app: &TestApp, number: &str) -> Vec<String> {
    app.sim
        .chg_work_notes(number)
        .unwrap()
        .into_iter()
        .map(|n| n.text)
        .collect()
}

pub(crate) async fn until_notes(app: &TestApp, number: &str, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let got = notes(app, number);
        if got.len() >= n {
            // Give a duplicate the chance to show.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return notes(app, number);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "fewer than {n} work notes on {number}: {:?}",
        notes(app, number)
    );
}

#[tokio::test]
async fn work_notes_are_written_once_per_lifecycle_point() {
    let app = change_app_with(SimSettings::default(), |s| s.change.work_notes = true).await;
    let g = open_change(&app, "Deploy", json!({})).await;
    let id = &g.id.to_string();
    let number = cr_number(&g).unwrap().to_string();
    let n = until_notes(&app, &number, 1).await;
    assert_eq!(n.len(), 1, "{n:?}");
    assert!(
        n[0].contains("created") && n[0].contains("https://ci.example.com/job/shop/job/app/42/"),
        "{n:?}"
    );

    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/resume"),
            Some(OPERATOR_TOKEN),
            &json!({"reason": "CAB by phone"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let n = until_notes(&app, &number, 2).await;
    assert_eq!(n.len(), 2, "{n:?}");
    assert!(
        n[1].contains("resumed")
            && n[1].contains("operator:alice")
            && n[1].contains("CAB by phone"),
        "{n:?}"
    );

    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "success"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    // The same report again is idempotent; another result conflicts.
    let again = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "success"}),
        )
        .await;
    assert_eq!(again.status(), 200);
    let other = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "failure"}),
        )
        .await;
    assert_error(other, 409, "conflict").await;
    let n = until_notes(&app, &number, 3).await;
    assert_eq!(n.len(), 3, "{n:?}");
    assert!(n[2].contains("finished: success"), "{n:?}");
}

#[tokio::test]
async fn a_standard_change_is_moved_through_the_cd_audit_states() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.change.standard_template = Some("Jenkins deployment".into());
        s.change.auto_transition = Some(AutoTransition::Closed);
    })
    .await;
    let g = open_change(&app, "Deploy", json!({})).await;
    let id = &g.id.to_string();
    let number = cr_number(&g).unwrap().to_string();
    // snowgate moves its own pre-approved CR to Implement, and the poll then approves the gate.
    let g = app.until_state(id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert_eq!(app.sim.chg_change(&number).unwrap().state, "Implement");
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "failure"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    for _ in 0..200 {
        let cr = app.sim.chg_change(&number).unwrap();
        if cr.state == "Closed" {
            assert_eq!(
                cr.fields.get("close_code").map(String::as_str),
                Some("unsuccessful")
            );
            assert!(cr
                .fields
                .get("close_notes")
                .is_some_and(|n| n.contains("failure")));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the CR was never closed: {:?}", app.sim.chg_change(&number));
}

#[tokio::test]
async fn complete_needs_a_decided_gate_and_a_valid_result() {
    let app = change_app().await;
    let g = open_change(&app, "Deploy", json!({})).await;
    let id = &g.id.to_string();
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "success"}),
        )
        .await;
    assert_error(resp, 409, "conflict").await;
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{id}/complete"),
            Some(PIPELINE_TOKEN),
            &json!({"result": "maybe"}),
        )
        .await;
    assert_eq!(
        assert_error(resp, 400, "invalid_field")
            .await
            .error
            .field
            .as_deref(),
        Some("result")
    );
}

fn oauth(s: &mut Settings, sim: &SimSettings) {
    s.servicenow.auth = ServiceNowAuth::Oauth;
    s.servicenow.client_id = sim.oauth_client_id.clone();
    s.servicenow.client_secret = Secret::new(sim.oauth_client_secret.clone());
}

#[tokio::test]
async fn oauth_tokens_are_shared_refreshed_and_regranted_without_failing_a_gate() {
    let sim = SimSettings::default();
    let sim_for = sim.clone();
    let app = change_app_with(sim, move |s| oauth(s, &sim_for)).await;
    for stage in ["A", "B", "C"] {
        let mut extra = json!({});
        extra["changeRequestDetails"] =
            json!({"attributes": {"short_description": format!("oauth {stage}")}});
        let g = open_change(&app, stage, extra).await;
        assert_eq!(g.state, GateState::Pending, "{g:?}");
    }
    // One password grant serves every gate and every poll.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.sim.oauth_grants(), (1, 0));
    let bearer = app
        .sim
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.path.contains("/sn_chg_rest/"))
        .unwrap();
    assert!(bearer
        .header("authorization")
        .unwrap()
        .starts_with("Bearer "));
    // The token dies early: the next call gets 401, snowgate refreshes and carries on.
    app.sim.oauth_expire_tokens();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (password, refresh) = app.sim.oauth_grants();
    assert_eq!(password, 1);
    assert!(refresh >= 1);
    // Refresh tokens revoked too: a fresh password grant.
    app.sim.oauth_revoke_refresh();
    app.sim.oauth_expire_tokens();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.sim.oauth_grants().0, 2);
    let list: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    for g in &list.gates {
        assert_eq!(g.state, GateState::Pending, "{g:?}");
    }
    // The token form is form-encoded, never JSON.
    let grant = app
        .sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/oauth_token.do")
        .unwrap();
    assert!(grant
        .header("content-type")
        .unwrap()
        .starts_with("application/x-www-form-urlencoded"));
}

#[tokio::test]
async fn a_wrong_client_secret_fails_the_gate_clearly() {
    let sim = SimSettings::default();
    let sim_for = sim.clone();
    let app = change_app_with(sim, move |s| {
        oauth(s, &sim_for);
        s.servicenow.client_secret = Secret::new("not-the-secret");
    })
    .await;
    let g = open_change(&app, "Deploy", json!({})).await;
    assert_eq!(g.state, GateState::Failed, "{g:?}");
    let msg = &g.message;
    assert!(
        msg.contains("OAuth") && msg.contains("client_secret"),
        "{msg}"
    );
    assert!(!msg.contains("not-the-secret"));
}

#[tokio::test]
async fn missing_roles_fail_the_gate_naming_them() {
    let app = change_app().await;
    app.sim.chg_set_roles(["sn_change_read"]);
    let g = open_change(&app, "Deploy", json!({})).await;
    assert_eq!(g.state, GateState::Failed, "{g:?}");
    let msg = &g.message;
    assert!(
        msg.contains("403") && msg.contains("sn_change_write"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_change_mode_requests_are_refused_by_field() {
    let app = change_app().await;
    let mut no_env = change_gate("Deploy", json!({}));
    no_env.as_object_mut().unwrap().remove("environment");
    let err = assert_error(app.open_gate(&no_env).await, 400, "invalid_field").await;
    assert_eq!(err.error.field.as_deref(), Some("environment"));
    for (field, value, named) in [
        ("changeRequestNumber", json!("CHG 1"), "changeRequestNumber"),
        ("changeRequestNumber", json!(42), "changeRequestNumber"),
        ("emergency", json!("yes"), "emergency"),
        (
            "standardChangeTemplate",
            json!(["x"]),
            "standardChangeTemplate",
        ),
        ("environment", json!(""), "environment"),
        (
            "changeRequestDetails",
            json!({"attributes": {"risk": "1"}}),
            "changeRequestDetails.attributes.risk",
        ),
    ] {
        let body = change_gate("Deploy", json!({ field: value }));
        let err = assert_error(app.open_gate(&body).await, 400, "invalid_field").await;
        assert_eq!(err.error.field.as_deref(), Some(named), "{body}");
    }
    // A DevOps-token configuration cannot run change mode.
    let devops = spawn_app().await;
    let err = assert_error(
        devops.open_gate(&change_gate("Deploy", json!({}))).await,
        400,
        "invalid_field",
    )
    .await;
    assert_eq!(err.error.field.as_deref(), Some("mode"));
    assert!(app.sim.chg_changes().is_empty());
}

#[tokio::test]
async fn work_notes_are_written_once_across_a_restart() {
    use crate::durability::{free_port, start_binary};
    let sim_cfg = SimSettings::default();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("snowgate.yaml");
    std::fs::write(
        &config,
        format!(
            r#"server:
  bind: "127.0.0.1:{port}"
callback:
  public_base_url: "{address}/"
servicenow:
  instance_url: "{instance}"
  tool_id: "{tool}"
  auth: basic
  user: "{user}"
  password: "{password}"
  poll_interval: 200ms
store:
  url: "sqlite://{db}"
outbox:
  initial_backoff: 50ms
  max_backoff: 300ms
auth:
  pipeline_tokens: [ {{ name: jenkins, token: "{PIPELINE_TOKEN}" }} ]
  operator_tokens: [ {{ name: alice, token: "{OPERATOR_TOKEN}" }} ]
change:
  environments: [ "Production" ]
  work_notes: true
"#,
            instance = sim.url(),
            tool = sim_cfg.tool_id,
            user = sim_cfg.user,
            password = sim_cfg.password,
            db = dir.path().join("s.db").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("snowgate.log");
    let client = reqwest::Client::new();
    let mut bin = start_binary(&config, &address, &log).await;
    let resp = client
        .post(format!("{address}/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body(change_gate("Deploy", json!({})).to_string())
        .send()
        .await
        .unwrap();
    let g: GateView = resp.json().await.unwrap();
    let id = g.id.to_string();
    let number = cr_number(&g).unwrap().to_string();
    // Work-note writes fail for now, so the "linked" note is still in the outbox at the kill.
    sim.inject_fault(servicenow_sim::Fault {
        endpoint: "change.patch".into(),
        fail_next: 1_000_000,
        status: 503,
        latency_ms: 0,
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    sim.clear_faults();
    sim.chg_set_state(&number, "Implement", None, None).unwrap();

    let mut bin = start_binary(&config, &address, &log).await;
    for _ in 0..200 {
        let g: GateView = crate::durability::gate(&client, &address, &id).await;
        if g.state == GateState::Approved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..200 {
        if sim.chg_work_notes(&number).unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate the chance to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let notes = sim.chg_work_notes(&number).unwrap();
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    let texts: Vec<String> = notes.into_iter().map(|n| n.text).collect();
    assert_eq!(
        texts.len(),
        2,
        "one note when linked, one when decided: {texts:?}"
    );
    // The "linked" note was retried after the restart, so the two may land in either order.
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains(": created to Jenkins"))
            .count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        texts.iter().filter(|t| t.contains(": approved:")).count(),
        1,
        "{texts:?}"
    );
}
