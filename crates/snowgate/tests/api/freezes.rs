//! Change freezes: ServiceNow's approval of a gate a freeze covers is held until the freeze
//! ends (or fails the gate), an operator's resume overrides it on the record, and the
//! freezes are declared, listed and deleted through the API.
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::{FreezeList, FreezeView, GateView};
use snowgate::configuration::{FreezeAction, FreezeSettings};
use snowgate::domain::GateState;

use crate::change::{change_app_with, open_change, until_notes};
use crate::helpers::*;

/// RFC 3339, `secs` from now.
fn at(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn freeze(name: &str, from: i64, until: i64, jobs: &[&str]) -> Value {
    json!({"name": name, "start": at(from), "end": at(until),
           "reason": "year-end: no production changes", "jobs": jobs})
}

async fn declare(app: &TestApp, body: &Value) -> FreezeView {
    let resp = app
        .post_json("/api/v1/freezes", Some(OPERATOR_TOKEN), body)
        .await;
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

async fn delete(app: &TestApp, path: impl AsRef<str>, token: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path.as_ref()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// An operator deletes the freeze `f` (204).
async fn lift(app: &TestApp, f: &FreezeView) {
    let path = format!("/api/v1/freezes/{}", f.freeze.id);
    assert_eq!(delete(app, &path, OPERATOR_TOKEN).await.status(), 204);
}

async fn freezes(app: &TestApp) -> FreezeList {
    let resp = app.get("/api/v1/freezes", Some(PIPELINE_TOKEN)).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn approve(app: &TestApp, stage: &str) {
    let status = app
        .sim
        .approve(&app.change_of(stage), "approved by the CAB")
        .await
        .unwrap();
    assert_eq!(status, Some(200), "the callback is answered 200 (stored)");
}

/// Until the gate's events hold one of `kind`.
async fn until_event(app: &TestApp, id: impl std::fmt::Display + Copy, kind: &str) {
    for _ in 0..200 {
        if app.events(id).await.iter().any(|e| e.kind == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} event: {:?}", app.events(id).await);
}

/// A change-mode gate whose CR reached Implement during the freeze the caller declared: its
/// approval held. The gate and the CR's number.
async fn held_in_change_mode(app: &TestApp) -> (GateView, String) {
    let g = open_change(app, "Deploy", json!({})).await;
    let number = cr_number(&g).unwrap().to_string();
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    until_event(app, g.id, "freeze_hold").await;
    (g, number)
}

#[tokio::test]
async fn an_approval_during_a_freeze_is_held_and_proceeds_by_itself_when_the_freeze_ends() {
    let app = spawn_app().await;
    let f = declare(&app, &freeze("Year end", -60, 3, &["shop/*"])).await;
    assert!(f.active);
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    until_event(&app, gate.id, "freeze_hold").await;
    let held = app.gate(gate.id).await;
    assert_eq!(held.state, GateState::Pending, "{held:?}");
    assert_eq!(held.proceed, None);
    assert!(
        held.message.contains("ServiceNow approved") && held.message.contains("`Year end`"),
        "{held:?}"
    );
    assert!(held
        .message
        .contains(&f.freeze.end.to_rfc3339_opts(SecondsFormat::Secs, true)));
    let listed = freezes(&app).await;
    assert_eq!(listed.freezes.len(), 1);
    assert_eq!(listed.freezes[0].held_gates, vec![gate.id]);
    // ServiceNow's callback was acknowledged as usual.
    let acks = || {
        app.sim
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.contains("changeControl"))
            .count()
    };
    for _ in 0..100 {
        if acks() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(acks(), 1);

    let approved = app.until_state(gate.id, GateState::Approved).await;
    assert_eq!(approved.proceed, Some(true));
    assert!(
        approved
            .message
            .contains("held by change freeze `Year end`"),
        "{approved:?}"
    );
    let kinds: Vec<String> = app
        .events(gate.id)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.ends_with(&["freeze_hold".into(), "freeze_released".into()])
            || kinds.contains(&"freeze_released".to_string()),
        "{kinds:?}"
    );
    assert!(
        freezes(&app).await.freezes.is_empty(),
        "an ended freeze is not listed"
    );
}

#[tokio::test]
async fn deleting_a_freeze_early_releases_the_approvals_it_held() {
    let app = spawn_app().await;
    let f = declare(&app, &freeze("Incident 4711", -60, 3600, &[])).await;
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    until_event(&app, gate.id, "freeze_hold").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.gate(gate.id).await.state, GateState::Pending);
    lift(&app, &f).await;
    let g = app.until_state(gate.id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert!(freezes(&app).await.freezes.is_empty());
}

#[tokio::test]
async fn operators_and_pipelines_both_read_the_freezes_and_the_gates_they_hold() {
    let app = spawn_app().await;
    let f = declare(&app, &freeze("Incident 4712", -60, 3600, &[])).await;
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    until_event(&app, gate.id, "freeze_hold").await;
    for token in [PIPELINE_TOKEN, OPERATOR_TOKEN] {
        let resp = app.get("/api/v1/freezes", Some(token)).await;
        assert_eq!(resp.status(), 200);
        let list: FreezeList = resp.json().await.unwrap();
        assert_eq!(list.freezes.len(), 1);
        assert_eq!(list.freezes[0].freeze.id, f.freeze.id);
        assert_eq!(list.freezes[0].held_gates, vec![gate.id]);
    }
}

#[tokio::test]
async fn with_freeze_action_fail_an_approval_during_a_freeze_fails_the_gate_naming_it() {
    let app = spawn_app_with(sim_settings(), |s| s.freeze.action = FreezeAction::Fail).await;
    declare(&app, &freeze("Black Friday", -60, 3600, &["shop/app"])).await;
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    let g = app.until_state(gate.id, GateState::Failed).await;
    assert_eq!(g.proceed, Some(false));
    assert!(
        g.message.contains("`Black Friday`") && g.message.contains("freeze.action: fail"),
        "{g:?}"
    );
}

#[tokio::test]
async fn a_freeze_that_does_not_cover_the_job_or_is_upcoming_leaves_the_gate_alone() {
    let app = spawn_app().await;
    declare(&app, &freeze("Billing only", -60, 3600, &["billing/*"])).await;
    let upcoming = declare(&app, &freeze("Next week", 7 * 86400, 8 * 86400, &[])).await;
    assert!(!upcoming.active);
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    let g = app.until_state(gate.id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    let listed = freezes(&app).await;
    assert_eq!(listed.freezes.len(), 2, "active and upcoming are listed");
    assert_eq!(listed.freezes[0].freeze.name, "Billing only");
    assert!(listed.freezes.iter().all(|f| f.held_gates.is_empty()));
}

#[tokio::test]
async fn an_operator_resume_during_a_freeze_is_a_recorded_break_glass_override() {
    let app = spawn_app().await;
    declare(&app, &freeze("Year end", -60, 3600, &[])).await;
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    until_event(&app, gate.id, "freeze_hold").await;
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{}/resume", gate.id),
            Some(OPERATOR_TOKEN),
            &json!({"reason": "hotfix for INC0012345"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let g: GateView = resp.json().await.unwrap();
    assert_eq!(g.state, GateState::Resumed);
    assert_eq!(g.proceed, Some(true));
    let events = app.events(gate.id).await;
    let last = events
        .iter()
        .find(|e| e.to_state == Some(GateState::Resumed))
        .unwrap();
    assert_eq!(last.kind, "freeze_override");
    assert_eq!(last.actor, "operator:alice");
    assert!(
        last.message.contains("`Year end`") && last.message.contains("INC0012345"),
        "{last:?}"
    );
    assert!(freezes(&app).await.freezes[0].held_gates.is_empty());
}

#[tokio::test]
async fn in_change_mode_a_freeze_covers_its_environments_and_an_override_is_noted_on_the_cr() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let mut staging_only = freeze("Staging freeze", -60, 3600, &[]);
    staging_only["environments"] = json!(["Staging"]);
    declare(&app, &staging_only).await;
    let mut production = freeze("Production freeze", -60, 3600, &[]);
    production["environments"] = json!(["production"]);
    declare(&app, &production).await;
    let (g, number) = held_in_change_mode(&app).await;
    let held = app.gate(g.id).await;
    assert_eq!(held.state, GateState::Pending);
    assert!(held.message.contains("`Production freeze`"), "{held:?}");
    let resp = app
        .post_json(
            &format!("/api/v1/gates/{}/resume", g.id),
            Some(OPERATOR_TOKEN),
            &json!({"reason": "CAB chair by phone"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let notes = until_notes(&app, &number, 1).await;
    assert!(
        notes
            .iter()
            .any(|n| n.contains("overriding the freeze") && n.contains("CAB chair")),
        "{notes:?}"
    );
}

#[tokio::test]
async fn a_configured_freeze_is_listed_and_cannot_be_deleted_through_the_api() {
    let app = spawn_app_with(sim_settings(), |s| {
        s.freezes = vec![FreezeSettings {
            name: "Configured".into(),
            start: at(-60),
            end: at(3600),
            reason: "declared in the file".into(),
            jobs: vec!["shop/*".into()],
            environments: vec![],
        }];
    })
    .await;
    let listed = freezes(&app).await;
    assert_eq!(listed.freezes.len(), 1);
    let f = &listed.freezes[0];
    assert_eq!(
        f.freeze.source,
        snowgate::domain::freeze::FreezeSource::Configuration
    );
    assert!(f.active);
    let resp = delete(
        &app,
        &format!("/api/v1/freezes/{}", f.freeze.id),
        OPERATOR_TOKEN,
    )
    .await;
    assert_error(resp, 409, "conflict").await;
    let gate = app.open("Deploy").await;
    approve(&app, "Deploy").await;
    until_event(&app, gate.id, "freeze_hold").await;
}

#[tokio::test]
async fn bad_freeze_requests_are_refused_by_field_and_store_nothing() {
    let app = spawn_app().await;
    let good = freeze("Year end", -60, 3600, &[]);
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    for (body, field) in [
        (with("name", Value::Null), "name"),
        (with("name", json!("n".repeat(161))), "name"),
        (with("start", json!("tomorrow")), "start"),
        (with("end", json!(at(-120))), "end"),
        (with("reason", json!(42)), "reason"),
        (with("jobs", json!({"a": 1})), "jobs"),
        (with("environments", json!([7])), "environments[0]"),
        // A misspelt key would otherwise make the freeze cover every environment.
        (with("enviroments", json!(["Production"])), "enviroments"),
    ] {
        let resp = app
            .post_json("/api/v1/freezes", Some(OPERATOR_TOKEN), &body)
            .await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(err.error.field.as_deref(), Some(field), "{body}");
    }
    let resp = app
        .post_json("/api/v1/freezes", Some(PIPELINE_TOKEN), &good)
        .await;
    assert_error(resp, 403, "forbidden").await;
    let resp = app.post_json("/api/v1/freezes", None, &good).await;
    assert_error(resp, 401, "unauthorized").await;
    let resp = delete(&app, "/api/v1/freezes/no-such-freeze", OPERATOR_TOKEN).await;
    assert_error(resp, 404, "not_found").await;
    let resp = delete(&app, "/api/v1/freezes/no-such-freeze", PIPELINE_TOKEN).await;
    assert_error(resp, 403, "forbidden").await;
    assert!(freezes(&app).await.freezes.is_empty(), "nothing was stored");
    let resp = app.get("/api/v1/freezes", None).await;
    assert_error(resp, 401, "unauthorized").await;
}

#[tokio::test]
async fn a_held_approval_survives_a_restart_and_proceeds_after_the_freeze() {
    use crate::durability::{free_port, gate, start_binary, write_config};
    let sim_cfg = SimSettings::default();
    let sim = servicenow_sim::start(sim_cfg.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, &sim, &sim_cfg, "1h");
    let log = dir.path().join("snowgate.log");
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut bin = start_binary(&config, &address, &log).await;
    let resp = client
        .post(format!("{address}/api/v1/freezes"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&freeze("Short", -60, 4, &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let g = open_at(&client, &address, &gate_body("Deploy"), &[201]).await;
    let id = g.id.to_string();
    let number = sim
        .changes()
        .into_iter()
        .find(|c| c.stage_name == "Deploy")
        .unwrap()
        .number;
    assert_eq!(sim.approve(&number, "ok").await.unwrap(), Some(200));
    assert_eq!(gate(&client, &address, &id).await.state, GateState::Pending);
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
    // The freeze ends while snowgate is down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut bin = start_binary(&config, &address, &log).await;
    let mut last = gate(&client, &address, &id).await;
    for _ in 0..200 {
        if last.state == GateState::Approved {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = gate(&client, &address, &id).await;
    }
    assert_eq!(last.state, GateState::Approved, "{last:?}");
    assert_eq!(last.proceed, Some(true));
    bin.child.kill().unwrap();
    bin.child.wait().unwrap();
}

#[tokio::test]
async fn a_repeated_approval_callback_for_a_held_gate_is_answered_200_and_acknowledged_once() {
    let app = spawn_app().await;
    declare(&app, &freeze("Year end", -60, 3600, &["shop/*"])).await;
    let gate = app.open("Deploy").await;
    let url = app.callback_url_of("Deploy");
    let approve = r#"{"result":"succeeded"}"#;
    // ServiceNow resends when it is unsure the first one arrived: at once, and again later.
    let first = app.send_callback(&url, approve).await;
    assert_eq!(first.status(), 200);
    let again = app.send_callback(&url, approve).await;
    assert_eq!(again.status(), 200, "{:?}", again.text().await);
    until_event(&app, gate.id, "freeze_hold").await;
    let later = app.send_callback(&url, approve).await;
    assert_eq!(later.status(), 200, "{:?}", later.text().await);
    let held = app.gate(gate.id).await;
    assert_eq!(held.state, GateState::Pending, "{held:?}");
    let holds = app
        .events(gate.id)
        .await
        .into_iter()
        .filter(|e| e.kind == "freeze_hold")
        .count();
    assert_eq!(holds, 1, "one hold for one approval");
    // One acknowledgement PUT for the three callbacks, once the outbox has sent it.
    let acks = || {
        app.sim
            .requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path.contains("changeControl"))
            .count()
    };
    for _ in 0..100 {
        if acks() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second one would follow the first at once; give it the time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(acks(), 1);
}

#[tokio::test]
async fn a_timeout_that_would_let_the_stage_continue_is_held_by_a_freeze_too() {
    let app = spawn_app().await;
    let f = declare(&app, &freeze("Quarter close", -60, 3600, &[])).await;
    let mut body = gate_body("Deploy");
    body["changeStepTimeoutSecs"] = json!(1);
    body["abortOnChangeStepTimeout"] = json!(false);
    let resp = app.open_gate(&body).await;
    assert_eq!(resp.status(), 201);
    let gate: GateView = resp.json().await.unwrap();
    // The step timeout passes: it would continue the stage, but the freeze holds it.
    until_event(&app, gate.id, "freeze_hold").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let held = app.gate(gate.id).await;
    assert_eq!((held.state, held.proceed), (GateState::Pending, None));
    assert!(
        held.message.contains("No change decision within 1s")
            && held
                .message
                .contains("held by change freeze `Quarter close`"),
        "{held:?}"
    );
    lift(&app, &f).await;
    let g = app.until_state(gate.id, GateState::TimedOut).await;
    assert_eq!(g.proceed, Some(true));
    assert_eq!(g.decided_by.as_deref(), Some("snowgate"), "{g:?}");
    assert!(g.message.contains("continues"), "{g:?}");
}

#[tokio::test]
async fn a_change_request_canceled_during_a_freeze_fails_its_held_gate_at_once() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    declare(&app, &freeze("Release freeze", -60, 3600, &[])).await;
    let (g, number) = held_in_change_mode(&app).await;
    app.sim
        .chg_set_state(&number, "Canceled", None, None)
        .unwrap();
    // Still frozen: the polls go on, and the cancellation decides.
    let failed = app.until_state(g.id, GateState::Failed).await;
    assert_eq!(failed.proceed, Some(false));
    assert!(failed.message.contains("was canceled"), "{failed:?}");
}

#[tokio::test]
async fn when_a_freeze_ends_a_held_change_request_is_read_again_before_the_stage_proceeds() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    let f = declare(&app, &freeze("Release freeze", -60, 3600, &[])).await;
    let (g, number) = held_in_change_mode(&app).await;
    // Sent back for another assessment while the freeze held it.
    app.sim
        .chg_set_state(&number, "Assess", None, None)
        .unwrap();
    lift(&app, &f).await;
    // The release reads the CR again (its event), and the CR as it is keeps the gate waiting.
    let mut read_again = false;
    for _ in 0..200 {
        read_again = app
            .events(g.id)
            .await
            .iter()
            .any(|e| e.message.contains("reading") && e.message.contains(&number));
        if read_again {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read_again, "{:?}", app.events(g.id).await);
    for _ in 0..200 {
        if app
            .gate(g.id)
            .await
            .message
            .contains("Waiting for approval")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waiting = app.gate(g.id).await;
    assert_eq!((waiting.state, waiting.proceed), (GateState::Pending, None));
    assert!(
        waiting.message.contains("Waiting for approval"),
        "the stale approval is not applied: {waiting:?}"
    );
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let approved = app.until_state(g.id, GateState::Approved).await;
    assert_eq!(approved.proceed, Some(true));
}

#[tokio::test]
async fn in_change_mode_freeze_action_fail_fails_the_gate_whose_cr_reaches_implement() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.freeze.action = FreezeAction::Fail;
    })
    .await;
    let mut production = freeze("Production freeze", -60, 3600, &[]);
    production["environments"] = json!(["Production"]);
    declare(&app, &production).await;
    let g = open_change(&app, "Deploy", json!({})).await;
    let number = cr_number(&g).unwrap().to_string();
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let failed = app.until_state(g.id, GateState::Failed).await;
    assert_eq!(failed.proceed, Some(false));
    assert!(
        failed.message.contains("`Production freeze`")
            && failed.message.contains("freeze.action: fail"),
        "{failed:?}"
    );
    assert!(app
        .events(g.id)
        .await
        .iter()
        .any(|e| e.kind == "freeze_failed"));
}

#[tokio::test]
async fn an_approval_found_again_during_a_freeze_is_held_again_with_no_timeout_running() {
    let app = change_app_with(SimSettings::default(), |_| {}).await;
    declare(&app, &freeze("Release freeze", -60, 3600, &[])).await;
    let g = open_change(&app, "Deploy", json!({"changeStepTimeoutSecs": 3})).await;
    let number = cr_number(&g).unwrap().to_string();
    let until_message = |part: &'static str| {
        let app = &app;
        async move {
            for _ in 0..200 {
                let g = app.gate(g.id).await;
                if g.message.contains(part) {
                    return g;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("never {part:?}: {:?}", app.gate(g.id).await);
        }
    };
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    until_message("held by change freeze").await;
    // Sent back, then approved again, while the freeze lasts.
    app.sim
        .chg_set_state(&number, "Assess", None, None)
        .unwrap();
    until_message("Waiting for approval").await;
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let held = until_message("held by change freeze").await;
    assert_eq!(
        held.deadline, None,
        "no timeout runs for a held approval: {held:?}"
    );
    // Past the 3 s step timeout: still held, not timed out.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let g = app.gate(g.id).await;
    assert_eq!((g.state, g.proceed), (GateState::Pending, None), "{g:?}");
    let holds = app
        .events(g.id)
        .await
        .iter()
        .filter(|e| e.kind == "freeze_hold")
        .count();
    assert_eq!(holds, 1, "the same approval again adds no hold");
}
