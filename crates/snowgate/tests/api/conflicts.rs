//! Conflict checks in change mode (`change.conflicts`): ServiceNow's conflict detection runs
//! before a CR in Implement approves its gate.
use serde_json::json;
use servicenow_sim::{ChgConflict, SimSettings};
use snowgate::configuration::{ConflictPolicy, Settings};
use snowgate::domain::GateState;

use crate::change::{change_app_with, open_change};
use crate::helpers::*;

fn with_ci(s: &mut Settings, policy: ConflictPolicy) {
    s.change.conflicts = policy;
    s.change.fields.insert("cmdb_ci".into(), "web-01".into());
}

fn maintenance(change_number: &str) -> ChgConflict {
    ChgConflict {
        change_number: change_number.into(),
        kind: "not_in_maintenance_window".into(),
        kind_display: "Not In Maintenance Window".into(),
        schedule: None,
    }
}

/// A blackout schedule the CR itself falls into (ServiceNow names the checked change then).
fn blackout(schedule: &str) -> ChgConflict {
    ChgConflict {
        change_number: "latest".into(),
        kind: "blackout".into(),
        kind_display: "Blackout".into(),
        schedule: Some(schedule.into()),
    }
}

/// The CR of another change-mode gate, to conflict with.
async fn other_change(app: &TestApp) -> String {
    let g = open_change(app, "Other", json!({})).await;
    cr_number(&g).unwrap().to_string()
}

/// A change-mode gate whose CR is in Implement with `conflicts` known to ServiceNow.
async fn approved_with(app: &TestApp, conflicts: Vec<ChgConflict>) -> (String, String) {
    let g = open_change(app, "Deploy", json!({})).await;
    let number = cr_number(&g).unwrap().to_string();
    for c in conflicts {
        app.sim.chg_add_conflict(&number, c).unwrap();
    }
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    (g.id.to_string(), number)
}

async fn until_message(app: &TestApp, id: &str, part: &str) -> snowgate::api::GateView {
    for _ in 0..200 {
        let g = app.gate(id).await;
        if g.message.contains(part) {
            return g;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("never `{part}`: {:?}", app.gate(id).await);
}

#[tokio::test]
async fn with_conflicts_ignored_an_approved_cr_approves_without_a_check() {
    let app = change_app_with(SimSettings::default(), |s| {
        s.change.fields.insert("cmdb_ci".into(), "web-01".into());
    })
    .await;
    let other = other_change(&app).await;
    let (id, number) = approved_with(&app, vec![maintenance(&other)]).await;
    let g = app.until_state(&id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert_eq!(app.sim.chg_conflict_checks(&number), 0);
}

#[tokio::test]
async fn with_conflicts_wait_the_gate_waits_while_servicenow_reports_conflicts() {
    let app = change_app_with(SimSettings::default(), |s| with_ci(s, ConflictPolicy::Wait)).await;
    let other = other_change(&app).await;
    let (id, number) = approved_with(&app, vec![maintenance(&other)]).await;
    let g = until_message(&app, &id, &format!("{other} (Not In Maintenance Window)")).await;
    assert_eq!(g.state, GateState::Pending, "{g:?}");
    assert!(g.message.contains("change.conflicts: wait"), "{g:?}");
    let checks = app.sim.chg_conflict_checks(&number);
    assert!(checks >= 1);
    // Rechecked at each poll: once the conflict is resolved, the gate proceeds.
    app.sim.chg_clear_conflicts(&number).unwrap();
    let g = app.until_state(&id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert!(app.sim.chg_conflict_checks(&number) > checks);
}

#[tokio::test]
async fn with_conflicts_fail_the_gate_fails_naming_the_changes_and_blackout_schedules() {
    let app = change_app_with(SimSettings::default(), |s| with_ci(s, ConflictPolicy::Fail)).await;
    let other = other_change(&app).await;
    let (id, _) = approved_with(&app, vec![maintenance(&other), blackout("Year end")]).await;
    let g = app.until_state(&id, GateState::Failed).await;
    assert_eq!(g.proceed, Some(false));
    assert!(
        g.message
            .contains(&format!("{other} (Not In Maintenance Window)"))
            && g.message.contains("schedule Year end (Blackout)")
            && g.message.contains("change.conflicts: fail"),
        "{g:?}"
    );
}

#[tokio::test]
async fn a_check_without_conflicts_approves_and_a_failing_check_keeps_the_gate_waiting() {
    let app = change_app_with(SimSettings::default(), |s| with_ci(s, ConflictPolicy::Fail)).await;
    let (id, number) = approved_with(&app, vec![]).await;
    let g = app.until_state(&id, GateState::Approved).await;
    assert_eq!(g.proceed, Some(true));
    assert_eq!(app.sim.chg_conflict_checks(&number), 1);

    // A check ServiceNow cannot run (here: 500s) never lets the stage through.
    let app = change_app_with(SimSettings::default(), |s| with_ci(s, ConflictPolicy::Fail)).await;
    app.sim.inject_fault(servicenow_sim::Fault {
        endpoint: "change.conflict.post".into(),
        fail_next: 1000,
        status: 500,
        latency_ms: 0,
    });
    let (id, _) = approved_with(&app, vec![]).await;
    let g = until_message(&app, &id, "conflict check could not run").await;
    assert_eq!(g.state, GateState::Pending, "{g:?}");
}

#[tokio::test]
async fn a_check_servicenow_runs_in_the_background_is_read_until_it_completes_not_restarted() {
    let app = change_app_with(SimSettings::default(), |s| with_ci(s, ConflictPolicy::Fail)).await;
    // A change of another team's, with no gate of its own here: one gate checks, once.
    let other = app
        .sim
        .chg_create(
            json!({"short_description": "DB migration"}),
            "normal",
            "Scheduled",
        )
        .unwrap()
        .number;
    let g = open_change(&app, "Deploy", json!({})).await;
    let number = cr_number(&g).unwrap().to_string();
    // Each check shows as running for three reads of its status; a POST meanwhile would start
    // it over, and a gate that starts one at every poll would never see it complete.
    app.sim
        .chg_keep_conflict_checks_running(&number, 3)
        .unwrap();
    app.sim
        .chg_add_conflict(&number, maintenance(&other))
        .unwrap();
    app.sim
        .chg_set_state(&number, "Implement", None, None)
        .unwrap();
    let id = g.id.to_string();
    until_message(
        &app,
        &id,
        "waiting for ServiceNow's conflict check to complete",
    )
    .await;
    let failed = app.until_state(&id, GateState::Failed).await;
    assert!(
        failed
            .message
            .contains(&format!("{other} (Not In Maintenance Window)")),
        "{failed:?}"
    );
    assert_eq!(
        app.sim.chg_conflict_checks(&number),
        1,
        "one check, read until it completed"
    );
}
