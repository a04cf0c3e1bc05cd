use serde_json::json;

use super::*;

/// The plugin's worked example (a): `https://ci/job/folder/job/app/`, stage `Deploy` after
/// `Build`, build 42 started by alice.
fn worked_example() -> Value {
    json!({"callbackURL":"https://sg/sn-devops/pipeline_1b4e28ba-2fa1-41d2-883f-0016d3cca427",
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
}

fn map(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn the_worked_examples_pass() {
    let reg = check_registration(&map(worked_example())).unwrap();
    assert_eq!(reg.job_url, "https://ci/job/folder/job/app/");
    assert_eq!(reg.full_name, "folder/app");
    assert_eq!(reg.item, "app");
    assert_eq!(reg.stage, "Deploy");
    assert_eq!(reg.build_number, "42");

    // (c) multibranch: the item is the branch job, decoded once.
    let mut mb = worked_example();
    let task = "https://ci/job/mb/job/feature%252Fx#Deploy/";
    let exec = "https://ci/job/mb/job/feature%252Fx/42/execution/node/15/wfapi/describe";
    mb["orchestrationTaskURL"] = json!(task);
    mb["parentStageURL"] = json!(task);
    mb["isMultiBranch"] = json!("true");
    mb["branchName"] = json!("feature/x");
    mb["pipelineExecutionUrl"] = json!("https://ci/job/mb/job/feature%252Fx/42/");
    mb["orchestrationTaskName"] = json!("feature%2Fx");
    mb["parentStageName"] = json!("feature%2Fx#Deploy");
    mb["parentStageExecutionURL"] = json!(exec);
    mb["orchestrationTaskDetails"]["fullName"] = json!("mb/feature%2Fx");
    mb["orchestrationTaskDetails"]["taskExecutionURL"] = json!(exec);
    let reg = check_registration(&map(mb)).unwrap();
    assert_eq!(reg.full_name, "mb/feature%2Fx");
    assert_eq!(reg.item, "feature%2Fx");
    assert_eq!(reg.branch.as_deref(), Some("feature/x"));
}

#[test]
fn forms_the_plugin_never_sends_are_refused_naming_the_member() {
    type Mutation = fn(&mut Value);
    let cases: Vec<(&str, Mutation)> = vec![
        ("branchName", |v| v["branchName"] = Value::Null),
        ("isMultiBranch", |v| v["isMultiBranch"] = json!(false)),
        ("isFreestyle", |v| {
            v.as_object_mut().unwrap().remove("isFreestyle");
        }),
        ("orchestrationTaskName", |v| {
            v["orchestrationTaskName"] = json!("app#Deploy")
        }),
        ("orchestrationTaskName", |v| {
            v["orchestrationTaskName"] = json!("folder/app")
        }),
        ("stageName", |v| v["stageName"] = json!("Prod")),
        ("parentStageName", |v| {
            v.as_object_mut().unwrap().remove("parentStageName");
        }),
        ("parentNode", |v| v["parentNode"] = json!("15")),
        ("parentNode.parentId", |v| {
            v["parentNode"].as_object_mut().unwrap().remove("parentId");
        }),
        ("parentNode.name", |v| v["parentNode"]["name"] = json!("x")),
        ("buildNumber", |v| {
            v["orchestrationTaskDetails"]["buildNumber"] = json!(42)
        }),
        ("fullName", |v| {
            v["orchestrationTaskDetails"]["fullName"] = json!("app")
        }),
        ("taskExecutionURL", |v| {
            v["orchestrationTaskDetails"]["taskExecutionURL"] =
                json!("https://ci/job/folder/job/app/42/")
        }),
        ("orchestrationTaskDetails.userName", |v| {
            v["orchestrationTaskDetails"]["userName"] = Value::Null
        }),
        ("changeRequestDetails", |v| {
            v["changeRequestDetails"] = json!("{\"a\":1}")
        }),
        ("pipelineExecutionUrl", |v| {
            v["pipelineExecutionUrl"] = json!("https://ci/job/folder/job/app/41/")
        }),
    ];
    for (member, mutate) in cases {
        let mut body = worked_example();
        mutate(&mut body);
        let err = check_registration(&map(body)).unwrap_err();
        assert!(err.contains(member), "{member}: {err}");
    }
}

#[test]
fn the_builders_make_what_the_checks_accept() {
    let reg = plugin_registration(
        "https://sg/sn-devops/pipeline_x",
        "https://ci/job/mb/job/feature%252Fx/",
        "Deploy/Prod",
        7,
        Some("feature/x"),
    );
    let checked = check_registration(&map(reg.clone())).unwrap();
    assert_eq!(checked.full_name, "mb/feature%2Fx");
    let ack = plugin_acknowledgement(&reg);
    assert_eq!(
        ack["orchestrationTaskName"],
        json!("feature%2Fx#Deploy/Prod")
    );
    check_acknowledgement(
        &map(ack.clone()),
        "https://sg/sn-devops/pipeline_x",
        "https://ci/job/mb/job/feature%252Fx#Deploy/Prod/",
        &checked,
    )
    .unwrap();
    let mut wrong = ack;
    wrong["orchestrationTaskName"] = json!("feature%2Fx");
    let err = check_acknowledgement(
        &map(wrong),
        "https://sg/sn-devops/pipeline_x",
        "https://ci/job/mb/job/feature%252Fx#Deploy/Prod/",
        &checked,
    )
    .unwrap_err();
    assert!(err.contains("orchestrationTaskName"), "{err}");
}

#[test]
fn stage_events_need_the_plugin_shape() {
    let good = json!({"url":"https://ci/job/folder/job/app/42/","number":42,"phase":"STARTED",
        "pronoun":"Pipeline","isMultiBranch":"false","timestamp":1700000000000u64,
        "jobModel":{"name":"app","url":"https://ci/job/folder/job/app/","fullName":"folder/app"},
        "stageModel":{"name":"Deploy","id":"15","phase":"STARTED",
          "url":"https://ci/job/folder/job/app/42/execution/node/15/wfapi/describe",
          "pipelineExecutionUrl":"https://ci/job/folder/job/app/42/","timestamp":1700000000000u64}});
    let event = check_event(&map(good.clone())).unwrap();
    assert_eq!(event.stage.as_deref(), Some("Deploy"));
    assert_eq!(event.phase, "STARTED");
    let mut bad = good.clone();
    bad["stageModel"]["phase"] = json!("started");
    assert!(check_event(&map(bad))
        .unwrap_err()
        .contains("stageModel.phase"));
    let mut bad = good.clone();
    bad["number"] = json!("42");
    assert!(check_event(&map(bad)).unwrap_err().contains("number"));
    let mut bad = good;
    bad["stageModel"]["result"] = Value::Null;
    assert!(check_event(&map(bad)).unwrap_err().contains("null"));
}
