use serde_json::json;

use super::*;
use crate::plugin_forms::PluginRegistration;

fn registration(token: &str, stage: &str, build: &str) -> Registration {
    Registration {
        token: token.into(),
        callback_url: format!("http://127.0.0.1:1/sn-devops/{token}"),
        task_url: format!("https://ci/job/folder/job/app#{stage}/"),
        task_name: Some("app".into()),
        stage: stage.into(),
        branch: None,
        multibranch: false,
        build_number: Some(build.into()),
        task_execution_url: Some(format!("https://ci/job/folder/job/app/{build}/")),
        change_request_details: None,
        plugin: PluginRegistration {
            job_url: "https://ci/job/folder/job/app/".into(),
            full_name: "folder/app".into(),
            item: "app".into(),
            stage: stage.into(),
            multibranch: false,
            freestyle: false,
            branch: None,
            build_number: build.into(),
            task_execution_url: format!("https://ci/job/folder/job/app/{build}/"),
        },
        body: Value::Null,
    }
}

#[test]
fn registrations_create_numbered_changes_once_per_token() {
    let mut model = Model::default();
    let first = model.register(registration("pipeline_a", "Deploy", "1"));
    let Registered::Created { number, sys_id } = first else {
        panic!("expected a new CR")
    };
    assert_eq!(number, "CHG0030001");
    assert_eq!(sys_id.len(), 32);
    assert!(sys_id
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(
        model.register(registration("pipeline_a", "Deploy", "1")),
        Registered::Existing {
            number: "CHG0030001".into()
        }
    );
    assert!(matches!(
        model.register(registration("pipeline_b", "Deploy", "2")),
        Registered::Created { number, .. } if number == "CHG0030002"
    ));
    assert_eq!(model.find("latest").unwrap().number, "CHG0030002");
}

#[test]
fn decisions_move_the_change_and_build_the_plugin_bodies() {
    let mut model = Model::default();
    model.register(registration("pipeline_a", "Deploy", "1"));
    let out = model
        .decide("CHG0030001", Decision::Approve, "ok", false)
        .unwrap()
        .unwrap();
    assert_eq!(out.state, CrState::Implement);
    assert_eq!(
        out.body,
        json!({"result": "succeeded", "changeComments": "ok"})
    );
    assert!(matches!(
        model.decide("CHG0030001", Decision::Reject, "no", true),
        Ok(None)
    ));
    let err = Decision::Error.body("boom");
    assert_eq!(err["isError"], json!(true));
    assert_eq!(err["result"], json!("failed"));
    assert_eq!(
        model
            .decide("CHG9", Decision::Cancel, "", false)
            .unwrap_err(),
        ModelError::NotFound("CHG9".into())
    );
}

#[test]
fn change_info_matches_pipeline_stage_build_and_branch() {
    let mut model = Model::default();
    model.register(registration("pipeline_a", "Deploy", "7"));
    let mut query = ChangeQuery {
        pipeline: Some("folder/app".into()),
        stage: Some("Deploy".into()),
        build: "7".into(),
        ..ChangeQuery::default()
    };
    assert!(model.find_for_change_info(&query).is_some());
    // Only Jenkins' JOB_NAME: not the short name, not encoded twice.
    for other in ["app", "folder%2Fapp", "Folder/app"] {
        query.pipeline = Some(other.into());
        assert!(model.find_for_change_info(&query).is_none(), "{other}");
    }
    query.pipeline = Some("folder/app".into());
    query.branch = Some("main".into());
    assert!(model.find_for_change_info(&query).is_none());
    query.branch = Some(String::new());
    assert!(model.find_for_change_info(&query).is_some());
    query.branch = None;
    query.build = "8".into();
    assert!(model.find_for_change_info(&query).is_none());
    query.build = "7".into();
    query.stage = Some("Test".into());
    assert!(model.find_for_change_info(&query).is_none());
}

#[test]
fn change_info_updates_follow_the_api_reference_state_rules() {
    let mut model = Model::default();
    model.register(registration("pipeline_a", "Deploy", "1"));
    let fields = |v: Value| v.as_object().unwrap().clone();
    assert!(matches!(
        model.update_fields("CHG0030001", fields(json!({"state": "3"}))),
        Err(ModelError::Invalid(_))
    ));
    model
        .set_state("CHG0030001", "Implement", Some("2030-01-01 10:00:00"), None)
        .unwrap();
    assert!(model
        .update_fields("CHG0030001", fields(json!({"state": "4"})))
        .is_err());
    model
        .update_fields(
            "CHG0030001",
            fields(json!({"state": 3, "close_code": "successful", "close_notes": "done"})),
        )
        .unwrap();
    let change = model.find("CHG0030001").unwrap();
    assert_eq!(change.state, CrState::Closed);
    assert_eq!(change.planned_start.as_deref(), Some("2030-01-01 10:00:00"));
    assert!(model
        .set_state("CHG0030001", "Scheduled", Some("tomorrow"), None)
        .is_err());
    assert!(model
        .set_state("CHG0030001", "Sideways", None, None)
        .is_err());
}

#[test]
fn states_parse_by_name_or_value() {
    assert_eq!(CrState::parse("implement"), Some(CrState::Implement));
    assert_eq!(CrState::parse("-2"), Some(CrState::Scheduled));
    assert_eq!(CrState::parse("Cancelled"), Some(CrState::Canceled));
    assert_eq!(CrState::parse("later"), None);
}
