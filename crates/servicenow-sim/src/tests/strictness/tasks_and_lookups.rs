//! Orchestration tasks, changeInfo lookups and their answers, and the test connection.

use super::*;

#[tokio::test]
async fn rule1_no_change_control_without_an_orchestration_task() {
    let job = "https://ci.example.com/job/team/job/svc/";
    let sim = start(quiet(vec![])).await.unwrap();

    // Unknown task: the API reference's "not under change control", with the reason.
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
