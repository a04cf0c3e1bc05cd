use super::change_control::parse_registration;
use super::change_info::is_change_request_field;
use super::*;
use crate::plugin_forms::plugin_registration;

fn body(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn plugin_body() -> Value {
    plugin_registration(
        "http://192.168.0.4:3000/jenkins/sn-devops/pipeline_839b7605-b98d-4831-bc87-96829de7da37",
        "http://192.168.0.4:3000/jenkins/job/java_sample_tests/",
        "deploy",
        129,
        None,
    )
}

#[test]
fn the_plugin_registration_parses() {
    let reg = parse_registration(&body(plugin_body())).unwrap();
    assert_eq!(reg.token, "pipeline_839b7605-b98d-4831-bc87-96829de7da37");
    assert_eq!(reg.stage, "deploy");
    assert_eq!(reg.build_number.as_deref(), Some("129"));
    assert_eq!(reg.plugin.full_name, "java_sample_tests");
    assert!(!reg.multibranch);
}

/// The API reference's second POST changeControl example is not what the plugin sends
/// (`orchestrationTaskName` `java_sample_tests#deploy`, no `stageName`, no parent fields).
#[test]
fn the_seeds_minimal_example_is_not_the_plugins_form() {
    let seed = json!({
        "callbackURL": "http://192.168.0.4:3000/jenkins/sn-devops/pipeline_839b7605-b98d-4831-bc87-96829de7da37",
        "orchestrationTaskURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests#deploy/",
        "isMultiBranch": "false",
        "orchestrationTaskName": "java_sample_tests#deploy",
        "orchestrationTaskDetails": {
            "triggerType": "upstream",
            "upstreamTaskExecutionURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests/129/execution/node/35/wfapi/describe",
            "taskExecutionURL": "http://192.168.0.4:3000/jenkins/job/java_sample_tests/129/execution/node/50/wfapi/describe"
        },
    });
    assert!(parse_registration(&body(seed)).is_err());
}

#[test]
fn registrations_breaking_the_seeds_rules_are_refused() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "callbackURL",
            Box::new(|v| drop(v.as_object_mut().unwrap().remove("callbackURL"))),
        ),
        (
            "orchestrationTaskURL",
            Box::new(|v| drop(v.as_object_mut().unwrap().remove("orchestrationTaskURL"))),
        ),
        (
            "orchestrationTaskDetails",
            Box::new(|v| {
                drop(
                    v.as_object_mut()
                        .unwrap()
                        .remove("orchestrationTaskDetails"),
                )
            }),
        ),
        (
            "triggerType",
            Box::new(|v| v["orchestrationTaskDetails"]["triggerType"] = json!("cron")),
        ),
        (
            "upstreamTaskExecutionURL",
            Box::new(|v| v["orchestrationTaskDetails"]["triggerType"] = json!("upstream")),
        ),
        (
            "risk",
            Box::new(|v| {
                v["changeRequestDetails"] = json!({"attributes": {"risk": "High"}});
            }),
        ),
        (
            "sys_id",
            Box::new(|v| v["changeRequestDetails"] = json!({"sys_id": "x"})),
        ),
        (
            "callbackURL must be an absolute",
            Box::new(|v| v["callbackURL"] = json!("not a url")),
        ),
    ];
    for (field, mutate) in cases {
        let mut value = plugin_body();
        mutate(&mut value);
        let err = parse_registration(&body(value)).unwrap_err();
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn only_change_request_fields_may_be_updated() {
    for ok in ["short_description", "work_notes", "close_code", "u_release"] {
        assert!(is_change_request_field(ok), "{ok}");
    }
    for bad in [
        "data",
        "attributes",
        "changeRequestDetails",
        "Short_Description",
    ] {
        assert!(!is_change_request_field(bad), "{bad}");
    }
}
