//! The ServiceNow pass-throughs of the pipeline API: step mappings, change info (read and
//! update), artifact and package registration — each checked against the exact request the
//! simulated ServiceNow received.
use std::time::Duration;

use serde_json::{json, Value};
use servicenow_sim::{Fault, RecordedRequest, SimSettings};
use snowgate::configuration::{Dur, Secret};

use crate::helpers::*;

/// The v2 token header snowgate must send for the default simulator.
fn devops_token() -> String {
    let s = SimSettings::default();
    format!("sn_devops.DevOpsToken {}:{}", s.tool_id, s.token)
}

fn tool_id() -> String {
    SimSettings::default().tool_id
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The one API request the simulator received (there must be exactly one).
fn only_request(app: &TestApp) -> RecordedRequest {
    let requests = app.sim.requests();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    requests.into_iter().next().unwrap()
}

fn assert_sent_by_snowgate(r: &RecordedRequest, method: &str, path: &str) {
    assert_eq!(r.method, method);
    assert_eq!(r.path, path);
    assert_eq!(r.header("authorization"), Some(devops_token().as_str()));
    assert_eq!(r.header("accept"), Some("application/json"));
    if method != "GET" {
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

async fn put_json(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .client
        .put(app.url(path))
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

/// Waits until the simulator's "created" notice linked the stage's CR to the gate.
async fn until_linked(app: &TestApp, id: &str, number: &str) {
    for _ in 0..200 {
        if cr_number(&app.gate(id).await) == Some(number) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the notice never linked {number} to gate {id}");
}

/// ServiceNow's artifact registration example, as a pipeline sends it to snowgate.
fn seed_artifacts() -> Value {
    json!({
        "artifacts": [
            {"name": "sa-web.jar", "version": "3.1", "semanticVersion": "3.1.0", "repositoryName": "services-1031"},
            {"name": "sa-frontend.jar", "version": "3.2", "semanticVersion": "3.2.0", "repositoryName": "services-1031"}
        ],
        "pipelineName": "spring-boot-app",
        "taskExecutionNumber": "160",
        "stageName": "Build",
        "branchName": "primary"
    })
}

#[tokio::test]
async fn a_step_mapping_is_created_in_servicenow_and_answers_step_valid() {
    let app = spawn_app().await;
    let body = json!({
        "jobUrl": "https://ci.example.com/job/shop/job/app/",
        "buildNumber": "42",
        "stageName": "Prod",
        "parentStageName": "Deploy",
        "pipelineName": "shop/app"
    });
    let resp = app
        .post_json("/api/v1/step-mappings", Some(PIPELINE_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"stepValid": true})
    );

    let r = only_request(&app);
    assert_sent_by_snowgate(
        &r,
        "POST",
        "/api/sn_devops/v2/devops/orchestration/stepMapping",
    );
    assert_eq!(
        r.query_pairs(),
        pairs(&[("toolId", &tool_id()), ("toolType", "jenkins")])
    );
    assert_eq!(
        r.json().unwrap(),
        json!({
            "orchestrationTaskURL": "https://ci.example.com/job/shop/job/app#Deploy/Prod/",
            "orchestrationTaskName": "app#Deploy/Prod",
            "isMultiBranch": "false",
            // The plugin's stage node params, which all describe the stage itself.
            "parentStageName": "app#Deploy/Prod",
            "parentStageURL": "https://ci.example.com/job/shop/job/app#Deploy/Prod/",
            "parentNode": {"id": "Deploy/Prod", "name": "Deploy/Prod", "parentId": ""},
            "parentStageExecutionURL": "https://ci.example.com/job/shop/job/app/42/",
        })
    );

    // ServiceNow's "not valid" is an answer, not an error; no build number is needed.
    app.sim.set_invalid_steps(vec!["app#Deploy/Prod".into()]);
    let mut no_build = body.clone();
    no_build.as_object_mut().unwrap().remove("buildNumber");
    let resp = app
        .post_json("/api/v1/step-mappings", Some(PIPELINE_TOKEN), &no_build)
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"stepValid": false})
    );

    // The stage's flow node (as the shim sends it) gives the node id and execution URL.
    app.sim.clear_requests();
    let mut with_node = body.clone();
    with_node["flowNodeId"] = json!("21");
    with_node["parentStageId"] = json!("15");
    with_node["buildUrl"] = json!("https://ci.example.com/job/shop/job/app/42/");
    let resp = app
        .post_json("/api/v1/step-mappings", Some(PIPELINE_TOKEN), &with_node)
        .await;
    assert_eq!(resp.status(), 200);
    let sent = only_request(&app).json().unwrap();
    assert_eq!(
        sent["parentNode"],
        json!({"id": "21", "name": "Deploy/Prod", "parentId": "15"})
    );
    assert_eq!(
        sent["parentStageExecutionURL"],
        "https://ci.example.com/job/shop/job/app/42/execution/node/21/wfapi/describe"
    );
}

#[tokio::test]
async fn change_info_is_answered_from_the_gate_once_a_notice_linked_its_change() {
    // No polling during the test: the only changeInfo call could come from the pass-through.
    let app = spawn_app_with(SimSettings::default(), |s| {
        s.servicenow.poll_interval = Dur(Duration::from_secs(3600));
    })
    .await;
    let gate = app.open("Deploy").await;
    let id = &gate.id.to_string();
    let number = app.change_of("Deploy");
    until_linked(&app, id, &number).await;
    let record = app.sim.change(&number).unwrap();
    app.sim.clear_requests();

    let resp = app
        .get(
            "/api/v1/change-info?pipelineName=shop%2Fapp&stageName=Deploy&buildNumber=42",
            Some(PIPELINE_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["source"], "snowgate", "{info}");
    assert_eq!(info["changeFound"], true);
    assert_eq!(info["number"], number.as_str());
    assert!(
        info["url"].as_str().unwrap().contains(&record.sys_id),
        "{info}"
    );
    assert!(app.sim.requests().is_empty(), "{:#?}", app.sim.requests());

    // Another build of the same stage is not the gate's: ServiceNow is asked.
    let resp = app
        .get(
            "/api/v1/change-info?pipelineName=shop%2Fapp&stageName=Deploy&buildNumber=41",
            Some(PIPELINE_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["source"], "servicenow");
    assert_eq!(info["changeFound"], false);
    assert_eq!(info["number"], Value::Null);
    assert_eq!(app.sim.requests().len(), 1);
}

#[tokio::test]
async fn change_info_asks_servicenow_when_snowgate_does_not_know_the_change() {
    // Without the notice the gate never learns its CR number, but ServiceNow knows it.
    let app = spawn_app_with(quiet_sim(), |s| {
        s.servicenow.poll_interval = Dur(Duration::from_secs(3600))
    })
    .await;
    app.open("Deploy to prod").await;
    let number = app.change_of("Deploy to prod");
    app.sim.clear_requests();

    let resp = app
        .get(
            "/api/v1/change-info?pipelineName=shop%2Fapp&stageName=Deploy%20to%20prod&buildNumber=42",
            Some(PIPELINE_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let info: Value = resp.json().await.unwrap();
    assert_eq!(info["source"], "servicenow", "{info}");
    assert_eq!(info["changeFound"], true);
    assert_eq!(info["number"], number.as_str());
    assert_eq!(info["state"], "New");
    assert_eq!(info["approvers"], "Ron Kettering, Christen Mitchell");
    assert_eq!(info["assignmentGroup"], "Change Management");
    assert_eq!(info["result"]["phase"], "requested");

    let r = only_request(&app);
    assert_sent_by_snowgate(
        &r,
        "GET",
        "/api/sn_devops/v2/devops/orchestration/changeInfo",
    );
    // Each value percent-encoded once, in ServiceNow's documented parameter order.
    assert_eq!(
        r.query,
        format!(
            "toolId={}&toolType=jenkins&pipelineName=shop%2Fapp&stageName=Deploy+to+prod&buildNumber=42",
            tool_id()
        )
    );
    assert_eq!(r.body, "");

    // projectName alone is enough (Freestyle and Maven projects), and is passed on.
    app.sim.clear_requests();
    let resp = app
        .get(
            "/api/v1/change-info?projectName=free%20style&buildNumber=7&branchName=main",
            Some(PIPELINE_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["changeFound"], false);
    assert_eq!(
        only_request(&app).query_pairs(),
        pairs(&[
            ("toolId", &tool_id()),
            ("toolType", "jenkins"),
            ("buildNumber", "7"),
            ("branchName", "main"),
            ("projectName", "free style"),
        ])
    );
}

#[tokio::test]
async fn change_info_updates_send_the_fields_object_itself() {
    let app = spawn_app().await;
    app.open("Deploy").await;
    let number = app.change_of("Deploy");
    app.sim.clear_requests();

    let fields = json!({"short_description": "Deploy shop 42", "priority": "1"});
    let resp = put_json(
        &app,
        &format!("/api/v1/change-info/{number}"),
        Some(PIPELINE_TOKEN),
        &json!({ "changeRequestDetails": fields }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"updated": true, "result": {
            "updateStatus": "Done", "status": "Success", "message": "change request update successful"
        }})
    );
    let r = only_request(&app);
    assert_sent_by_snowgate(
        &r,
        "PUT",
        "/api/sn_devops/v2/devops/orchestration/changeInfo",
    );
    assert_eq!(r.query_pairs(), pairs(&[("changeRequestNumber", &number)]));
    // The fields object itself, as the plugin and ServiceNow's example send it.
    assert_eq!(r.json().unwrap(), fields);
    assert_eq!(
        app.sim.change(&number).unwrap().fields["short_description"],
        "Deploy shop 42"
    );

    // The fields object itself is accepted too (what the plugin's step sends).
    let resp = put_json(
        &app,
        &format!("/api/v1/change-info/{number}"),
        Some(PIPELINE_TOKEN),
        &json!({"work_notes": "from Jenkins"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.sim.change(&number).unwrap().fields["work_notes"],
        "from Jenkins"
    );

    // ServiceNow's refusals keep its own words.
    let resp = put_json(
        &app,
        "/api/v1/change-info/CHG0039999",
        Some(PIPELINE_TOKEN),
        &json!({"work_notes": "x"}),
    )
    .await;
    let err = assert_error(resp, 404, "servicenow_not_found").await;
    assert!(
        err.error
            .message
            .contains("Change request CHG0039999 not found"),
        "{err:?}"
    );
    let resp = put_json(
        &app,
        &format!("/api/v1/change-info/{number}"),
        Some(PIPELINE_TOKEN),
        &json!({"state": "3", "close_code": "successful", "close_notes": "done"}),
    )
    .await;
    let err = assert_error(resp, 422, "servicenow_rejected").await;
    assert!(
        err.error
            .message
            .contains("must be in state Implement or Review"),
        "{err:?}"
    );
}

#[tokio::test]
async fn artifacts_are_registered_with_snowgates_orchestration_tool() {
    let app = spawn_app().await;
    let mut body = seed_artifacts();
    // What the shim adds for snowgate, and a build number given as a number.
    body["jobUrl"] = json!("https://ci.example.com/job/spring-boot-app/");
    body["buildUrl"] = json!("https://ci.example.com/job/spring-boot-app/160/");
    body["taskExecutionNumber"] = json!(160);
    let resp = app
        .post_json("/api/v1/artifacts", Some(PIPELINE_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["status"], "Success", "{result}");
    assert_eq!(
        result["response"]["artifact"]["create"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        result["response"]["artifact_repository"]["create"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = only_request(&app);
    assert_sent_by_snowgate(&r, "POST", "/api/sn_devops/v2/devops/artifact/registration");
    assert_eq!(
        r.query_pairs(),
        pairs(&[("orchestrationToolId", &tool_id())])
    );
    // ServiceNow's documented fields exactly; snowgate's own stay home.
    assert_eq!(r.json().unwrap(), seed_artifacts());
    let versions = app.sim.artifact_versions();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].name, "sa-web.jar");
    assert_eq!(
        versions[0].build.task_execution_number.as_deref(),
        Some("160")
    );

    // An artifact tool named by the pipeline is passed as toolId; it may supply the version.
    app.sim.clear_requests();
    let artifact_tool = SimSettings::default().artifact_tool_id;
    let body = json!({
        "artifactToolId": artifact_tool,
        "artifacts": [{"name": "sa-api.jar", "repositoryName": "services-1031"}],
        "projectName": "nightly"
    });
    let resp = app
        .post_json("/api/v1/artifacts", Some(PIPELINE_TOKEN), &body)
        .await;
    assert_eq!(resp.status(), 200);
    let r = only_request(&app);
    assert_eq!(
        r.query_pairs(),
        pairs(&[
            ("toolId", &artifact_tool),
            ("orchestrationToolId", &tool_id())
        ])
    );
    assert_eq!(
        r.json().unwrap(),
        json!({"artifacts": [{"name": "sa-api.jar", "repositoryName": "services-1031"}], "projectName": "nightly"})
    );
}

#[tokio::test]
async fn packages_are_registered_from_registered_artifact_versions() {
    let app = spawn_app().await;
    let resp = app
        .post_json("/api/v1/artifacts", Some(PIPELINE_TOKEN), &seed_artifacts())
        .await;
    assert_eq!(resp.status(), 200);
    app.sim.clear_requests();

    // One artifact by its version, one by this build (the plugin's `currentBuildInfo`).
    let package = json!({
        "name": "sentimentpackage",
        "artifacts": [
            {"name": "sa-web.jar", "repositoryName": "services-1031", "version": "3.1"},
            {"name": "sa-frontend.jar", "repositoryName": "services-1031", "currentBuildInfo": true}
        ],
        "pipelineName": "spring-boot-app",
        "taskExecutionNumber": "160",
        "stageName": "Build",
        "branchName": "primary"
    });
    let resp = app
        .post_json("/api/v1/packages", Some(PIPELINE_TOKEN), &package)
        .await;
    assert_eq!(resp.status(), 200);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["status"], "Success", "{result}");
    assert_eq!(
        result["response"]["sn_devops_package"]["create"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = only_request(&app);
    assert_sent_by_snowgate(&r, "POST", "/api/sn_devops/v2/devops/package/registration");
    assert_eq!(
        r.query_pairs(),
        pairs(&[("orchestrationToolId", &tool_id())])
    );
    let mut expected = package.clone();
    expected["artifacts"][1] = json!({
        "name": "sa-frontend.jar", "repositoryName": "services-1031",
        "pipelineName": "spring-boot-app", "taskExecutionNumber": "160", "stageName": "Build",
        "branchName": "primary"
    });
    assert_eq!(r.json().unwrap(), expected);
    let packages = app.sim.packages();
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].name, "sentimentpackage");
    let versions = app.sim.artifact_versions();
    let ids: Vec<&str> = versions.iter().map(|v| v.sys_id.as_str()).collect();
    assert_eq!(packages[0].artifact_versions, ids);
    assert!(!packages[0].staged);
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_reaches_servicenow() {
    let app = spawn_app().await;
    let job = "https://ci.example.com/job/shop/job/app/";
    let without = |mut v: Value, key: &str| {
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let mut no_artifact_name = seed_artifacts();
    no_artifact_name["artifacts"][1]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let mut no_version = seed_artifacts();
    no_version["artifacts"][0]
        .as_object_mut()
        .unwrap()
        .remove("version");
    let mut package = seed_artifacts();
    package["name"] = json!("release");
    let long = "s".repeat(161);

    let posts: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/step-mappings",
            json!({"stageName": "Deploy"}),
            "jobUrl",
        ),
        (
            "/api/v1/step-mappings",
            json!({"jobUrl": "not a url", "stageName": "Deploy"}),
            "jobUrl",
        ),
        ("/api/v1/step-mappings", json!({"jobUrl": job}), "stageName"),
        (
            "/api/v1/step-mappings",
            json!({"jobUrl": job, "stageName": long}),
            "stageName",
        ),
        (
            "/api/v1/step-mappings",
            json!({"jobUrl": job, "stageName": "D", "isMultiBranch": "maybe"}),
            "isMultiBranch",
        ),
        ("/api/v1/step-mappings", json!([1]), "body"),
        (
            "/api/v1/artifacts",
            without(seed_artifacts(), "artifacts"),
            "artifacts",
        ),
        ("/api/v1/artifacts", no_artifact_name, "artifacts[1].name"),
        ("/api/v1/artifacts", no_version, "artifacts[0].version"),
        (
            "/api/v1/artifacts",
            without(seed_artifacts(), "stageName"),
            "stageName",
        ),
        (
            "/api/v1/artifacts",
            without(seed_artifacts(), "pipelineName"),
            "pipelineName",
        ),
        ("/api/v1/packages", seed_artifacts(), "name"),
        (
            "/api/v1/packages",
            without(package, "taskExecutionNumber"),
            "taskExecutionNumber",
        ),
    ];
    for (path, body, field) in posts {
        let resp = app.post_json(path, Some(PIPELINE_TOKEN), &body).await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(
            err.error.field.as_deref(),
            Some(field),
            "{path} {body}: {err:?}"
        );
    }

    let gets = [
        ("pipelineName=a&stageName=s", "buildNumber"),
        ("buildNumber=1&stageName=s", "pipelineName"),
        ("buildNumber=1&pipelineName=a", "stageName"),
        ("buildNumber=1&pipelineName=a&stageName=", "stageName"),
    ];
    for (query, field) in gets {
        let resp = app
            .get(
                &format!("/api/v1/change-info?{query}"),
                Some(PIPELINE_TOKEN),
            )
            .await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(err.error.field.as_deref(), Some(field), "{query}: {err:?}");
    }
    let resp = app
        .get(
            &format!("/api/v1/change-info?buildNumber=1&pipelineName=a&stageName={long}"),
            Some(PIPELINE_TOKEN),
        )
        .await;
    let err = assert_error(resp, 400, "invalid_field").await;
    assert_eq!(err.error.field.as_deref(), Some("stageName"));

    let puts = [
        (
            "CHG%20001",
            json!({"work_notes": "x"}),
            "changeRequestNumber",
        ),
        (
            "CHG0030001%26x%3D1",
            json!({"work_notes": "x"}),
            "changeRequestNumber",
        ),
        ("CHG0030001", json!({}), "changeRequestDetails"),
        (
            "CHG0030001",
            json!({"changeRequestDetails": {}}),
            "changeRequestDetails",
        ),
        (
            "CHG0030001",
            json!({"changeRequestDetails": 5}),
            "changeRequestDetails",
        ),
        ("CHG0030001", json!("text"), "body"),
    ];
    for (number, body, field) in puts {
        let resp = put_json(
            &app,
            &format!("/api/v1/change-info/{number}"),
            Some(PIPELINE_TOKEN),
            &body,
        )
        .await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(
            err.error.field.as_deref(),
            Some(field),
            "{number} {body}: {err:?}"
        );
    }

    // Not JSON at all.
    let resp = app
        .client
        .post(app.url("/api/v1/artifacts"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(resp, 400, "malformed_json").await;
    let resp = app
        .client
        .post(app.url("/api/v1/packages"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(resp, 415, "unsupported_media_type").await;

    assert!(app.sim.requests().is_empty(), "{:#?}", app.sim.requests());
}

#[tokio::test]
async fn refused_servicenow_credentials_are_a_clear_error_without_the_secret() {
    let app = spawn_app_with(SimSettings::default(), |s| {
        s.servicenow.token = Secret::new("wrong-token-5f3a9c");
    })
    .await;
    let calls = [
        app.post_json(
            "/api/v1/step-mappings",
            Some(PIPELINE_TOKEN),
            &json!({"jobUrl": "https://ci.example.com/job/app/", "stageName": "Deploy"}),
        )
        .await,
        app.get(
            "/api/v1/change-info?pipelineName=app&stageName=Deploy&buildNumber=1",
            Some(PIPELINE_TOKEN),
        )
        .await,
        put_json(
            &app,
            "/api/v1/change-info/CHG0030001",
            Some(PIPELINE_TOKEN),
            &json!({"work_notes": "x"}),
        )
        .await,
        app.post_json("/api/v1/artifacts", Some(PIPELINE_TOKEN), &seed_artifacts())
            .await,
    ];
    for resp in calls {
        let err = assert_error(resp, 502, "servicenow_refused").await;
        let message = &err.error.message;
        assert!(message.contains("refused the credentials"), "{message}");
        assert!(message.contains("User Not Authenticated"), "{message}");
        assert!(!message.contains("wrong-token-5f3a9c"), "{message}");
    }
    assert_eq!(app.sim.requests().len(), 4);
}

#[tokio::test]
async fn servicenow_outages_are_reported_as_unavailable() {
    let app = spawn_app().await;
    app.sim.inject_fault(Fault {
        endpoint: "packageRegistration.post".into(),
        fail_next: 1,
        status: 503,
        latency_ms: 0,
    });
    app.sim.inject_fault(Fault {
        endpoint: "stepMapping.post".into(),
        fail_next: 1,
        status: 500,
        latency_ms: 0,
    });
    let mut package = seed_artifacts();
    package["name"] = json!("release");
    let resp = app
        .post_json("/api/v1/packages", Some(PIPELINE_TOKEN), &package)
        .await;
    let err = assert_error(resp, 503, "servicenow_unavailable").await;
    assert!(err.error.message.contains("503"), "{err:?}");
    let resp = app
        .post_json(
            "/api/v1/step-mappings",
            Some(PIPELINE_TOKEN),
            &json!({"jobUrl": "https://ci.example.com/job/app/", "stageName": "Deploy"}),
        )
        .await;
    assert_error(resp, 502, "servicenow_unavailable").await;
    // Not retried by snowgate: the pipeline step decides.
    assert_eq!(app.sim.requests().len(), 2);
}

#[tokio::test]
async fn a_pipeline_token_is_enough_and_no_token_is_refused() {
    let app = spawn_app().await;
    for token in [None, Some("not-a-token")] {
        let step = app
            .post_json(
                "/api/v1/step-mappings",
                token,
                &json!({"jobUrl": "https://ci.example.com/job/app/", "stageName": "Deploy"}),
            )
            .await;
        assert_error(step, 401, "unauthorized").await;
        let info = app
            .get(
                "/api/v1/change-info?pipelineName=app&stageName=Deploy&buildNumber=1",
                token,
            )
            .await;
        assert_error(info, 401, "unauthorized").await;
        let update = put_json(
            &app,
            "/api/v1/change-info/CHG0030001",
            token,
            &json!({"work_notes": "x"}),
        )
        .await;
        assert_error(update, 401, "unauthorized").await;
        let artifacts = app
            .post_json("/api/v1/artifacts", token, &seed_artifacts())
            .await;
        assert_error(artifacts, 401, "unauthorized").await;
        let packages = app
            .post_json("/api/v1/packages", token, &seed_artifacts())
            .await;
        assert_error(packages, 401, "unauthorized").await;
    }
    assert!(app.sim.requests().is_empty());
    // The operator token works as well as the pipeline token.
    let resp = app
        .get(
            "/api/v1/change-info?pipelineName=app&stageName=Deploy&buildNumber=1",
            Some(OPERATOR_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
}
