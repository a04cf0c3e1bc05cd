//! The simulator is as strict as a real instance: one scenario per rule, each showing the wrong
//! form refused and the plugin's form accepted (real HTTP on port 0).

use serde_json::{json, Value};

use super::plugin_forms::{plugin_acknowledgement, plugin_registration};
use super::*;

const USER: &str = "admin";
const PASSWORD: &str = "admin-password";

fn tool() -> String {
    SimSettings::default().tool_id
}

fn quiet(known_pipelines: Vec<&str>) -> SimSettings {
    SimSettings {
        send_notice: false,
        known_pipelines: known_pipelines.into_iter().map(str::to_string).collect(),
        ..SimSettings::default()
    }
}

/// `<sim>/api/sn_devops/<version>devops/<path>` with a raw query string, sent as is.
fn url(sim: &SimHandle, version: &str, path: &str, query: &str) -> String {
    format!("{}/api/sn_devops/{version}devops/{path}?{query}", sim.url())
}

async fn send(
    method: reqwest::Method,
    url: String,
    authorization: Option<String>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("Accept", "application/json");
    request = match authorization {
        Some(value) => request.header("Authorization", value),
        None => request.basic_auth(USER, Some(PASSWORD)),
    };
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(sim: &SimHandle, path: &str, query: &str) -> (u16, Value) {
    send(
        reqwest::Method::GET,
        url(sim, "v1/", path, query),
        None,
        None,
    )
    .await
}

async fn post(sim: &SimHandle, path: &str, query: &str, body: &Value) -> (u16, Value) {
    send(
        reqwest::Method::POST,
        url(sim, "v1/", path, query),
        None,
        Some(body),
    )
    .await
}

async fn put(sim: &SimHandle, path: &str, query: &str, body: &Value) -> (u16, Value) {
    send(
        reqwest::Method::PUT,
        url(sim, "v1/", path, query),
        None,
        Some(body),
    )
    .await
}

async fn register(sim: &SimHandle, body: &Value) -> (u16, Value) {
    let query = format!("toolId={}&toolType=jenkins", tool());
    post(sim, "orchestration/changeControl", &query, body).await
}

fn callback(token: &str) -> String {
    // Never called: the scenarios send no notices and decide nothing.
    format!("http://127.0.0.1:9/sn-devops/{token}")
}

fn first_error(body: &Value) -> String {
    body["result"]["details"]["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A stage event as the plugin's `DevOpsRunStatusModel` serializes it.
fn stage_event(job_url: &str, stage: &str, phase: &str, build: u32) -> Value {
    json!({
        "url": format!("{job_url}{build}/"),
        "number": build,
        "phase": "STARTED",
        "pronoun": "Pipeline",
        "isMultiBranch": "false",
        "timestamp": 1_700_000_000_000u64,
        "jobModel": {"name": "svc", "url": job_url, "fullName": "team/svc"},
        "stageModel": {
            "name": stage,
            "id": "15",
            "phase": phase,
            "url": format!("{job_url}{build}/execution/node/15/wfapi/describe"),
            "pipelineExecutionUrl": format!("{job_url}{build}/"),
            "timestamp": 1_700_000_000_000u64,
        },
    })
}

#[tokio::test]
async fn rule1_no_change_control_without_an_orchestration_task() {
    let job = "https://ci.example.com/job/team/job/svc/";
    let sim = start(quiet(vec![])).await.unwrap();

    // Unknown task: the seed's "not under change control", with the reason.
    let (status, body) = register(
        &sim,
        &plugin_registration(&callback("pipeline_r1a"), job, "Deploy", 1, None),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["result"]["changeControl"], json!(false));
    assert_eq!(body["result"]["status"], json!("Success"));
    let message = body["result"]["message"].as_str().unwrap();
    assert!(
        message.contains("Orchestration task not found"),
        "{message}"
    );
    assert!(sim.changes().is_empty());

    // stepMapping with a name that is not `<item>#<stage>` of its URL creates nothing.
    let mapping = format!("toolId={}&toolType=jenkins", tool());
    let task = "https://ci.example.com/job/team/job/svc#Deploy/";
    let (status, body) = post(
        &sim,
        "orchestration/stepMapping",
        &mapping,
        &json!({"orchestrationTaskURL": task, "orchestrationTaskName": "svc"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["result"]["stepValid"], json!(false));
    assert!(sim.orchestration_tasks().is_empty());
    // The plugin's form creates the task; the stage is then under change control.
    let (_, body) = post(
        &sim,
        "orchestration/stepMapping",
        &mapping,
        &json!({"orchestrationTaskURL": task, "orchestrationTaskName": "svc#Deploy"}),
    )
    .await;
    assert_eq!(body["result"]["stepValid"], json!(true));
    let (_, body) = register(
        &sim,
        &plugin_registration(&callback("pipeline_r1b"), job, "Deploy", 1, None),
    )
    .await;
    assert_eq!(body["result"]["changeControl"], json!(true));

    // A COMPLETED stage event creates no task, a STARTED one does.
    let events = format!("toolType=jenkins&toolId={}", tool());
    let (status, _) = post(
        &sim,
        "tool/orchestration",
        &events,
        &stage_event(job, "Test", "COMPLETED", 1),
    )
    .await;
    assert_eq!(status, 201);
    let (_, body) = register(
        &sim,
        &plugin_registration(&callback("pipeline_r1c"), job, "Test", 1, None),
    )
    .await;
    assert_eq!(body["result"]["changeControl"], json!(false));
    let (status, body) = post(
        &sim,
        "tool/orchestration",
        &events,
        &stage_event(job, "Test", "STARTED", 1),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["result"]["status"], json!("Success"));
    let (_, body) = register(
        &sim,
        &plugin_registration(&callback("pipeline_r1d"), job, "Test", 1, None),
    )
    .await;
    assert_eq!(body["result"]["changeControl"], json!(true));
    // An event not in the plugin's shape is refused.
    let mut bad = stage_event(job, "Lint", "STARTED", 1);
    bad["stageModel"]["url"] = Value::Null;
    let (status, body) = post(&sim, "tool/orchestration", &events, &bad).await;
    assert_eq!(status, 400);
    assert!(first_error(&body).contains("stageModel.url"), "{body}");
    assert_eq!(
        sim.orchestration_tasks()
            .iter()
            .map(|t| (t.task_url.as_str(), t.source.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (task, "stepMapping"),
            (
                "https://ci.example.com/job/team/job/svc#Test/",
                "stageEvent"
            )
        ]
    );
    assert_eq!(sim.orchestration_events().len(), 2);

    // A known pipeline: every stage of the job is a task.
    sim.set_known_pipelines(vec![job.to_string()]);
    let (_, body) = register(
        &sim,
        &plugin_registration(&callback("pipeline_r1e"), job, "Release", 1, None),
    )
    .await;
    assert_eq!(body["result"]["changeControl"], json!(true));
    assert_eq!(sim.changes().len(), 3);
    sim.stop().await;
}

#[tokio::test]
async fn rule2_change_info_is_found_only_under_the_plugins_spelling() {
    let sim = start(SimSettings {
        send_notice: false,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let mb = "https://ci.example.com/job/mb/job/feature%252Fx/";
    register(
        &sim,
        &plugin_registration(
            &callback("pipeline_r2a"),
            mb,
            "Deploy/Prod",
            7,
            Some("feature/x"),
        ),
    )
    .await;
    let plain = "https://ci.example.com/job/my%20app/";
    register(
        &sim,
        &plugin_registration(&callback("pipeline_r2b"), plain, "Deploy", 3, None),
    )
    .await;
    let t = tool();
    let found = |query: String| {
        let sim = &sim;
        async move {
            let (status, body) = get(sim, "orchestration/changeInfo", &query).await;
            assert_eq!(status, 200, "{query}: {body}");
            body["result"]["changeFound"] == json!(true)
        }
    };
    // JOB_NAME `mb/feature%2Fx`, stage path, branch: each value encoded once.
    let right = format!("toolId={t}&toolType=jenkins&pipelineName=mb%2Ffeature%252Fx&stageName=Deploy%2FProd&buildNumber=7&branchName=feature%2Fx");
    assert!(found(right.clone()).await);
    for wrong in [
        // The multibranch project, the branch item alone, the item decoded twice.
        right.replace("mb%2Ffeature%252Fx", "mb"),
        right.replace("mb%2Ffeature%252Fx", "feature%252Fx"),
        right.replace("mb%2Ffeature%252Fx", "mb%2Ffeature%2Fx"),
        // Encoded twice.
        right.replace("mb%2Ffeature%252Fx", "mb%252Ffeature%25252Fx"),
        right.replace("Deploy%2FProd", "Deploy%252FProd"),
        // The stage's own name instead of its path.
        right.replace("Deploy%2FProd", "Prod"),
        // No branch, or another one.
        right.replace("&branchName=feature%2Fx", ""),
        right.replace("branchName=feature%2Fx", "branchName=feature%252Fx"),
        right.replace("buildNumber=7", "buildNumber=07"),
    ] {
        assert!(!found(wrong.clone()).await, "{wrong}");
    }
    // URLEncoder's `+` for a space, and `%20`, decode the same in a form query.
    let space =
        format!("toolId={t}&toolType=jenkins&pipelineName=my+app&stageName=Deploy&buildNumber=3");
    assert!(found(space.clone()).await);
    assert!(found(space.replace("my+app", "my%20app")).await);
    for wrong in [
        space.replace("my+app", "my%2520app"),
        space.replace("my+app", "My+app"),
        format!("{space}&branchName=main"),
    ] {
        assert!(!found(wrong.clone()).await, "{wrong}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn rule3_change_info_answers_carry_status_and_the_state_name() {
    let sim = start(SimSettings {
        send_notice: false,
        numeric_states: true,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let job = "https://ci.example.com/job/shop/job/app/";
    register(
        &sim,
        &plugin_registration(&callback("pipeline_r3"), job, "Deploy", 42, None),
    )
    .await;
    let query = format!(
        "toolId={}&toolType=jenkins&pipelineName=shop%2Fapp&stageName=Deploy&buildNumber=42",
        tool()
    );
    let (_, body) = get(&sim, "orchestration/changeInfo", &query).await;
    let result = &body["result"];
    assert_eq!(result["status"], json!("Success"));
    assert_eq!(result["changeFound"], json!(true));
    assert_eq!(result["state"], json!("-5"));
    assert_eq!(result["stateDisplayValue"], json!("New"));
    sim.set_state("latest", "Implement", None, None).unwrap();
    let (_, body) = get(&sim, "orchestration/changeInfo", &query).await;
    assert_eq!(body["result"]["state"], json!("-1"));
    assert_eq!(body["result"]["stateDisplayValue"], json!("Implement"));
    // A miss still says `status`, so a reader that needs it can tell "not found".
    let (_, body) = get(
        &sim,
        "orchestration/changeInfo",
        &query.replace("buildNumber=42", "buildNumber=43"),
    )
    .await;
    assert_eq!(
        body,
        json!({"result": {"changeFound": false, "status": "Success"}})
    );
    sim.stop().await;
}

#[tokio::test]
async fn rule4_test_connection_answers_the_seeds_change_control_shape() {
    let sim = start(quiet(vec![])).await.unwrap();
    let t = tool();
    let (status, body) = get(
        &sim,
        "orchestration/changeControl",
        &format!("toolId={t}&toolType=jenkins&testConnection=true"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"result": {"changeControl": true, "status": "Success"}})
    );
    for (query, field) in [
        ("toolType=jenkins&testConnection=true".to_string(), "toolId"),
        (
            "toolId=0000&toolType=jenkins&testConnection=true".to_string(),
            "toolId",
        ),
        (
            format!("toolId={t}&toolType=gitlab&testConnection=true"),
            "toolType",
        ),
        (
            format!("toolId={t}&toolType=jenkins&testConnection=yes"),
            "testConnection",
        ),
    ] {
        let (status, body) = get(&sim, "orchestration/changeControl", &query).await;
        assert_eq!(status, 400, "{query}");
        assert!(first_error(&body).contains(field), "{query}: {body}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn rule5_change_info_put_applies_only_the_top_level_fields() {
    let sim = start(SimSettings {
        send_notice: false,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    register(
        &sim,
        &plugin_registration(
            &callback("pipeline_r5"),
            "https://ci.example.com/job/shop/job/app/",
            "Deploy",
            5,
            None,
        ),
    )
    .await;
    let query = "changeRequestNumber=CHG0030001";
    // The `data` wrapper of the seed's table, holding a JSON string: nothing changes.
    let (status, body) = put(
        &sim,
        "orchestration/changeInfo",
        query,
        &json!({"data": "{\"short_description\":\"wrapped\"}"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["result"]["status"], json!("Error"));
    assert_eq!(body["result"]["updateStatus"], json!("Error"));
    assert!(body["result"]["message"].as_str().unwrap().contains("data"));
    assert!(sim.changes()[0].fields.is_empty());
    // The fields object itself, as the plugin and the seed's example send it.
    let (status, body) = put(
        &sim,
        "orchestration/changeInfo",
        query,
        &json!({"short_description": "Deploy 5", "work_notes": "from Jenkins"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"result": {"updateStatus": "Done", "status": "Success", "message": "change request update successful"}})
    );
    let fields = &sim.changes()[0].fields;
    assert_eq!(fields["short_description"], json!("Deploy 5"));
    assert_eq!(fields["work_notes"], json!("from Jenkins"));
    assert_eq!(fields.len(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn rule6_authorization_forms_follow_the_api_version() {
    let sim = start(quiet(vec![])).await.unwrap();
    let s = SimSettings::default();
    let query = format!("toolId={}&toolType=jenkins&testConnection=true", s.tool_id);
    let token = format!("sn_devops.DevOpsToken {}:{}", s.tool_id, s.token);
    let basic = |user: &str, password: &str| {
        use base64::Engine;
        let pair = format!("{user}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let call = |version: &'static str, authorization: String| {
        let url = url(&sim, version, "orchestration/changeControl", &query);
        async move {
            send(reqwest::Method::GET, url, Some(authorization), None)
                .await
                .0
        }
    };
    // v2: the tool's token; Basic on every version.
    assert_eq!(call("v2/", token.clone()).await, 200);
    for version in ["v1/", "v2/", ""] {
        assert_eq!(call(version, basic(USER, PASSWORD)).await, 200, "{version}");
    }
    // Tokens only "starting with v2"; other schemes, another tool, no tool, a bad password.
    for (version, authorization) in [
        ("v1/", token.clone()),
        ("", token.clone()),
        ("v2/", format!("Bearer {}", s.token)),
        ("v2/", format!("sn_devops.DevOpsToken 0000:{}", s.token)),
        ("v2/", format!("sn_devops.DevOpsToken {}", s.token)),
        ("v2/", format!("sn_devops.DevOpsToken {}:wrong", s.tool_id)),
        ("v1/", basic(USER, "wrong")),
    ] {
        let url = url(&sim, version, "orchestration/changeControl", &query);
        let (status, body) =
            send(reqwest::Method::GET, url, Some(authorization.clone()), None).await;
        assert_eq!(status, 401, "{version} {authorization}");
        assert_eq!(
            body,
            json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn rule7_unknown_records_answer_404() {
    let sim = start(SimSettings {
        send_notice: false,
        controlled_stages: Some(vec!["Deploy".into()]),
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let job = "https://ci.example.com/job/shop/job/app/";
    let t = tool();
    // A token whose registration was answered `changeControl: false` has no record either.
    let test_stage = plugin_registration(&callback("pipeline_r7a"), job, "Test", 1, None);
    let (_, body) = register(&sim, &test_stage).await;
    assert_eq!(body["result"]["changeControl"], json!(false));
    for token in ["pipeline_never_registered", "pipeline_r7a"] {
        let (status, body) = put(
            &sim,
            &format!("orchestration/changeControl/{token}"),
            &format!("toolId={t}&toolType=jenkins"),
            &plugin_acknowledgement(&test_stage),
        )
        .await;
        assert_eq!(status, 404, "{token}");
        assert_eq!(body["result"]["status"], json!("error"));
        assert!(first_error(&body).contains(token), "{body}");
    }
    let (status, _) = get(
        &sim,
        "orchestration/callback",
        &format!("toolId={t}&taskExecutionURL=https%3A%2F%2Fci%2Fjob%2Fx%2F1%2F"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = put(
        &sim,
        "orchestration/changeInfo",
        "changeRequestNumber=CHG0039999",
        &json!({"work_notes": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["result"]["status"], json!("Error"));
    // The known ones answer.
    let deploy = plugin_registration(&callback("pipeline_r7b"), job, "Deploy", 1, None);
    register(&sim, &deploy).await;
    // The callback lookup by the stage execution URL, encoded once; encoded twice it is unknown.
    let execution = "https%3A%2F%2Fci.example.com%2Fjob%2Fshop%2Fjob%2Fapp%2F1%2Fexecution%2Fnode%2F15%2Fwfapi%2Fdescribe";
    let (status, body) = get(
        &sim,
        "orchestration/callback",
        &format!("toolId={t}&taskExecutionURL={execution}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["token"], json!("pipeline_r7b"));
    let (status, _) = get(
        &sim,
        "orchestration/callback",
        &format!(
            "toolId={t}&taskExecutionURL={}",
            execution.replace('%', "%25")
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = put(
        &sim,
        "orchestration/changeControl/pipeline_r7b",
        &format!("toolId={t}&toolType=jenkins"),
        &plugin_acknowledgement(&deploy),
    )
    .await;
    assert_eq!(status, 200);
    sim.stop().await;
}

#[tokio::test]
async fn registrations_the_plugin_never_sends_get_400_and_no_change() {
    let sim = start(SimSettings {
        send_notice: false,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let good = plugin_registration(
        &callback("pipeline_reg"),
        "https://ci.example.com/job/shop/job/app/",
        "Deploy",
        42,
        None,
    );
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation); 6] = [
        ("branchName is null", |v| v["branchName"] = Value::Null),
        ("isMultiBranch", |v| v["isMultiBranch"] = json!(false)),
        ("buildNumber", |v| {
            v["orchestrationTaskDetails"]["buildNumber"] = json!(42)
        }),
        ("orchestrationTaskName", |v| {
            v["orchestrationTaskName"] = json!("app#Deploy")
        }),
        ("parentNode", |v| {
            v.as_object_mut().unwrap().remove("parentNode");
        }),
        ("fullName", |v| {
            v["orchestrationTaskDetails"]["fullName"] = json!("app")
        }),
    ];
    for (member, mutate) in cases {
        let mut body = good.clone();
        mutate(&mut body);
        let (status, answer) = register(&sim, &body).await;
        assert_eq!(status, 400, "{member}");
        assert_eq!(answer["result"]["status"], json!("error"));
        assert!(first_error(&answer).contains(member), "{member}: {answer}");
    }
    assert!(sim.changes().is_empty());
    let (status, _) = register(&sim, &good).await;
    assert_eq!(status, 201);
    assert_eq!(sim.changes()[0].registration_body, good);
    assert_eq!(sim.changes()[0].pipeline_name, "shop/app");
    sim.stop().await;
}

#[tokio::test]
async fn acknowledgements_must_be_the_plugins_put() {
    let sim = start(SimSettings {
        send_notice: false,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let reg = plugin_registration(
        &callback("pipeline_ack"),
        "https://ci.example.com/job/shop/job/app/",
        "Deploy/Prod",
        42,
        None,
    );
    register(&sim, &reg).await;
    let good = plugin_acknowledgement(&reg);
    let path = "orchestration/changeControl/pipeline_ack";
    let query = format!("toolId={}&toolType=jenkins", tool());
    type Mutation = fn(&mut Value);
    let cases: [(&str, Mutation); 5] = [
        // The POST's plain item name instead of `<item>#<stage path>`.
        ("orchestrationTaskName", |v| {
            v["orchestrationTaskName"] = json!("app")
        }),
        ("parentTaskExecutionURL", |v| {
            v.as_object_mut().unwrap().remove("parentTaskExecutionURL");
        }),
        // The build URL instead of the stage execution URL it registered.
        ("taskExecutionURL", |v| {
            v["taskExecutionURL"] = json!("https://ci.example.com/job/shop/job/app/42/")
        }),
        ("callbackURL", |v| {
            v["callbackURL"] = json!("http://127.0.0.1:9/sn-devops/pipeline_other")
        }),
        ("isMultiBranch", |v| v["isMultiBranch"] = json!(false)),
    ];
    for (member, mutate) in cases {
        let mut body = good.clone();
        mutate(&mut body);
        let (status, answer) = put(&sim, path, &query, &body).await;
        assert_eq!(status, 400, "{member}");
        assert!(first_error(&answer).contains(member), "{member}: {answer}");
    }
    assert_eq!(sim.changes()[0].acknowledgements, 0);
    let (status, answer) = put(&sim, path, &query, &good).await;
    assert_eq!(status, 200);
    assert_eq!(answer, json!({"result": {"change_control": true}}));
    let change = &sim.changes()[0];
    assert_eq!(change.acknowledgements, 1);
    assert_eq!(change.acknowledgement_bodies, vec![good]);
    sim.stop().await;
}
