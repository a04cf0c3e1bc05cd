use std::time::{Duration, Instant};

use serde_json::{json, Value};
use servicenow_sim::SimSettings;
use snowgate::api::{GateList, GateView};
use snowgate::domain::GateState;

use crate::helpers::*;

#[tokio::test]
async fn a_new_gate_is_registered_with_servicenow_and_pending() {
    let app = spawn_app().await;
    let resp = app.open_gate(&gate_body("Deploy")).await;
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    // Kept as raw JSON too: the callback token must not show anywhere in its text.
    let raw: Value = resp.json().await.unwrap();
    let gate: GateView = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(gate.state, GateState::Pending);
    assert_eq!(gate.proceed, None);
    assert_eq!(gate.build_number, "42");
    assert_eq!(gate.stage_name, "Deploy");
    assert_eq!(location, format!("/api/v1/gates/{}", gate.id));
    assert_eq!(gate.links.wait, format!("{location}/wait"));

    // Exactly what the plugin sends (the plugin's `POST …/orchestration/changeControl`).
    let reg = app.registration_of("Deploy");
    assert!(reg
        .path
        .starts_with("/api/sn_devops/v2/devops/orchestration/changeControl"));
    let q = reg.query_pairs();
    assert!(q.contains(&("toolId".into(), app.settings.servicenow.tool_id.clone())));
    assert!(q.contains(&("toolType".into(), "jenkins".into())));
    assert_eq!(
        reg.header("authorization").unwrap(),
        format!(
            "sn_devops.DevOpsToken {}:{}",
            app.settings.servicenow.tool_id,
            app.settings.servicenow.token.expose()
        )
    );
    assert!(reg
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(reg.header("accept").unwrap(), "application/json");
    let body = reg.json().unwrap();
    let callback = body["callbackURL"].as_str().unwrap();
    assert!(
        callback.starts_with(&format!("{}/sn-devops/pipeline_", app.address)),
        "{callback}"
    );
    assert!(callback.len() >= format!("{}/sn-devops/pipeline_", app.address).len() + 36);
    assert_eq!(
        body["orchestrationTaskURL"],
        "https://ci.example.com/job/shop/job/app#Deploy/"
    );
    assert_eq!(body["orchestrationTaskName"], "app");
    assert_eq!(body["stageName"], "Deploy");
    assert_eq!(body["isMultiBranch"], "false");
    assert_eq!(body["orchestrationTaskDetails"]["triggerType"], "user");
    assert_eq!(body["orchestrationTaskDetails"]["buildNumber"], "42");
    assert_eq!(
        body["orchestrationTaskDetails"]["taskExecutionURL"],
        "https://ci.example.com/job/shop/job/app/42/"
    );
    // The callback token is a secret: never in the API's answers.
    let token = callback.rsplit('/').next().unwrap();
    assert!(!raw.to_string().contains(token));
}

#[tokio::test]
async fn opening_the_same_stage_again_returns_the_existing_gate() {
    let app = spawn_app().await;
    let first = app.open("Deploy").await;
    let resp = app.open_gate(&gate_body("Deploy")).await;
    assert_eq!(resp.status(), 200);
    let again: GateView = resp.json().await.unwrap();
    assert_eq!(again.id, first.id);
    // Build numbers given as number or string name the same gate.
    let mut as_string = gate_body("Deploy");
    as_string["buildNumber"] = json!("42");
    let resp = app.open_gate(&as_string).await;
    assert_eq!(resp.status(), 200);
    let registrations = app
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/changeControl"))
        .count();
    assert_eq!(registrations, 1);
    // Another stage of the same build is another gate.
    let other = app.open("Smoke").await;
    assert_ne!(other.id, first.id);
}

/// A simulator that holds only `Deploy` under change control.
fn only_deploy_controlled() -> SimSettings {
    SimSettings {
        controlled_stages: Some(vec!["Deploy".into()]),
        ..SimSettings::default()
    }
}

#[tokio::test]
async fn a_stage_not_under_change_control_fails_closed_with_servicenows_words() {
    let app = spawn_app_with(only_deploy_controlled(), |_| {}).await;
    let gate = app.open("Unit tests").await;
    assert_eq!(gate.state, GateState::Failed, "{gate:?}");
    assert_eq!(gate.proceed, Some(false));
    let message = &gate.message;
    // ServiceNow's answer, and its own `result.message` saying why.
    assert!(message.contains("ServiceNow answered"), "{message}");
    assert!(message.contains("false"), "{message}");
    assert!(
        message.contains("The orchestration task app#Unit tests is not under change control"),
        "{message}"
    );
    let id = gate.id;
    let waited: GateView = app
        .get(
            &format!("/api/v1/gates/{id}/wait?timeout=5"),
            Some(PIPELINE_TOKEN),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(waited.proceed, Some(false));
}

#[tokio::test]
async fn ignore_errors_lets_a_stage_not_under_change_control_proceed_as_the_plugin_does() {
    let app = spawn_app_with(only_deploy_controlled(), |_| {}).await;
    let mut body = gate_body("Unit tests");
    body["ignoreErrors"] = json!(true);
    let gate: GateView = app.open_gate(&body).await.json().await.unwrap();
    assert_eq!(gate.state, GateState::Failed, "{gate:?}");
    assert_eq!(gate.proceed, Some(true));
}

#[tokio::test]
async fn not_controlled_proceed_keeps_the_old_behaviour_as_its_own_state() {
    let app = spawn_app_with(only_deploy_controlled(), |s| {
        s.servicenow.not_controlled = snowgate::configuration::NotControlled::Proceed;
    })
    .await;
    let gate = app.open("Unit tests").await;
    assert_eq!(gate.state, GateState::NotControlled, "{gate:?}");
    assert_eq!(gate.proceed, Some(true));
    // A stage ServiceNow does hold is still gated.
    let gate = app.open("Deploy").await;
    assert_eq!(gate.state, GateState::Pending, "{gate:?}");
}

#[tokio::test]
async fn multibranch_names_and_urls_are_the_plugins() {
    let app = spawn_app().await;
    let body = json!({
        "jobUrl": "https://ci.example.com/job/mb/job/feature%252Fx/",
        "buildNumber": "7",
        "stageName": "Deploy",
        "branchName": "feature/x",
        "isMultiBranch": true,
        "triggerType": "upstream",
        "upstreamTaskExecutionUrl": "https://ci.example.com/job/build/12/",
    });
    assert_eq!(app.open_gate(&body).await.status(), 201);
    let reg = app.registration_of("Deploy").json().unwrap();
    assert_eq!(
        reg["orchestrationTaskURL"],
        "https://ci.example.com/job/mb/job/feature%252Fx#Deploy/"
    );
    // The branch job's own item name, not the multibranch project.
    assert_eq!(reg["orchestrationTaskName"], "feature%2Fx");
    assert_eq!(reg["parentStageName"], "feature%2Fx#Deploy");
    assert_eq!(
        reg["orchestrationTaskDetails"]["fullName"],
        "mb/feature%2Fx"
    );
    assert_eq!(reg["branchName"], "feature/x");
    assert_eq!(reg["isMultiBranch"], "true");
    assert_eq!(reg["orchestrationTaskDetails"]["triggerType"], "upstream");
    assert_eq!(
        reg["orchestrationTaskDetails"]["upstreamTaskExecutionURL"],
        "https://ci.example.com/job/build/12/"
    );
}

#[tokio::test]
async fn step_mapping_validation_sends_the_task_url_encoded_as_the_seed_shows() {
    let app = spawn_app_with(SimSettings::default(), |s| {
        s.servicenow.step_mapping = Some(snowgate::configuration::StepMapping::Validate);
    })
    .await;
    let mut body = gate_body("Deploy PROD");
    body["jobUrl"] = json!("https://ci.example.com/job/my%20app/");
    assert_eq!(app.open_gate(&body).await.status(), 201);
    let check = app
        .sim
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/orchestration/stepMapping"))
        .expect("a stepMapping check");
    // The value is itself encoded, then encoded once more in the query string, as ServiceNow's
    // documented example shows; each time as Java's URLEncoder does (a space becomes `+`).
    assert!(
        check.query.contains("orchestrationTaskURL=https%253A%252F%252Fci.example.com%252Fjob%252Fmy%252520app%2523Deploy%2BPROD%252F"),
        "{}",
        check.query
    );
    assert!(
        check
            .query
            .contains("orchestrationTaskName=my+app%23Deploy+PROD"),
        "{}",
        check.query
    );
    assert!(check.query.contains("toolType=jenkins"));
}

#[tokio::test]
async fn bad_requests_are_refused_by_field_and_change_nothing() {
    let app = spawn_app().await;
    let mut cases: Vec<(Value, &str)> = vec![
        (json!({"buildNumber": 1, "stageName": "Deploy"}), "jobUrl"),
        (
            json!({"jobUrl": "https://ci/job/a/", "stageName": "Deploy"}),
            "buildNumber",
        ),
        (
            json!({"jobUrl": "https://ci/job/a/", "buildNumber": 1}),
            "stageName",
        ),
        (json!([1, 2, 3]), "body"),
    ];
    let bad_fields: Vec<(&str, Value)> = vec![
        ("stageName", json!("x".repeat(161))),
        ("stageName", json!(12)),
        ("stageName", json!("")),
        ("jobUrl", json!("ftp://ci/job/a/")),
        ("jobUrl", json!(["https://ci/job/a/"])),
        ("buildNumber", json!("forty-two")),
        ("buildNumber", json!({"n": 1})),
        ("buildUrl", json!("not a url")),
        ("triggerType", json!("cron")),
        ("isMultiBranch", json!("maybe")),
        ("changeRequestDetails", json!("{\"attributes\":{}}")),
        ("changeRequestDetails", json!({"attributes": []})),
        ("pollingIntervalSecs", json!("soon")),
        ("changeStepTimeoutSecs", json!(-5)),
        ("abortOnChangeStepTimeout", json!(1)),
        ("input", json!({"id": "no spaces allowed"})),
        ("message", json!("m".repeat(4001))),
    ];
    for (field, value) in &bad_fields {
        let mut b = gate_body("Deploy");
        b[*field] = value.clone();
        cases.push((b, field));
    }
    let mut upstream = gate_body("Deploy");
    upstream["triggerType"] = json!("upstream");
    cases.push((upstream, "upstreamTaskExecutionUrl"));
    for key in ["impact", "number", "risk", "risk_impact_analysis", "sys_id"] {
        let mut b = gate_body("Deploy");
        b["changeRequestDetails"] = json!({"attributes": {key: "1", "category": "Service"}});
        cases.push((b, "changeRequestDetails.attributes"));
    }
    for (body, field) in cases {
        let resp = app.open_gate(&body).await;
        let err = assert_error(resp, 400, "invalid_field").await;
        let named = err.error.field.as_deref().unwrap();
        assert!(named.starts_with(field), "{body} → {err:?}");
        assert!(err.error.message.contains(named));
    }

    let malformed = app
        .client
        .post(app.url("/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .body("{\"jobUrl\": ")
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "malformed_json").await;

    let empty = app
        .client
        .post(app.url("/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_error(empty, 400, "malformed_json").await;

    let not_json = app
        .client
        .post(app.url("/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "text/plain")
        .body(gate_body("Deploy").to_string())
        .send()
        .await
        .unwrap();
    assert_error(not_json, 415, "unsupported_media_type").await;

    let mut huge = gate_body("Deploy");
    huge["message"] = json!("x".repeat(2 * 1024 * 1024));
    let resp = app.open_gate(&huge).await;
    assert_error(resp, 413, "payload_too_large").await;

    // Nothing was created and ServiceNow heard nothing.
    let list: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.count, 0, "{list:?}");
    assert!(app.sim.requests().is_empty());
}

#[tokio::test]
async fn a_charset_in_the_content_type_is_accepted() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/api/v1/gates"))
        .bearer_auth(PIPELINE_TOKEN)
        .header("Content-Type", "application/json; charset=UTF-8")
        .body(gate_body("Deploy").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn unknown_gates_are_404_with_a_json_error() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/gates/6f0b3c1e-7d7e-4d38-9c1a-5b8e0e0a0a0a",
        "/api/v1/gates/not-a-uuid",
        "/api/v1/gates/6f0b3c1e-7d7e-4d38-9c1a-5b8e0e0a0a0a/wait?timeout=1",
        "/api/v1/gates/6f0b3c1e-7d7e-4d38-9c1a-5b8e0e0a0a0a/events",
        "/api/v1/nothing-here",
    ] {
        assert_error(app.get(path, Some(PIPELINE_TOKEN)).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn a_waiting_long_poll_answers_as_soon_as_servicenow_approves() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let waiter = {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/gates/{id}/wait?timeout=120"));
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = client
                .get(url)
                .bearer_auth(PIPELINE_TOKEN)
                .send()
                .await
                .unwrap();
            (
                resp.status(),
                resp.json::<GateView>().await.unwrap(),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the long-poll must hold while the gate is pending"
    );
    let number = app.change_of("Deploy");
    let status = app.sim.approve(&number, "CAB approved").await.unwrap();
    assert_eq!(status, Some(200));
    let (code, body, elapsed) = waiter.await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(body.state, GateState::Approved);
    assert_eq!(body.proceed, Some(true));
    assert_eq!(body.decided_by.as_deref(), Some("servicenow"));
    assert_eq!(cr_number(&body), Some(number.as_str()));
    // Answered by the decision, not by the 120 s timeout.
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
}

#[tokio::test]
async fn a_long_poll_times_out_with_the_pending_gate() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let resp = app
        .get(
            &format!("/api/v1/gates/{id}/wait?timeout=1"),
            Some(PIPELINE_TOKEN),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: GateView = resp.json().await.unwrap();
    assert_eq!(body.state, GateState::Pending);
    assert_eq!(body.proceed, None);
    for bad in ["301", "-1", "soon"] {
        let resp = app
            .get(
                &format!("/api/v1/gates/{id}/wait?timeout={bad}"),
                Some(PIPELINE_TOKEN),
            )
            .await;
        let err = assert_error(resp, 400, "invalid_field").await;
        assert_eq!(err.error.field.as_deref(), Some("timeout"));
    }
}

#[tokio::test]
async fn gates_are_listed_newest_first_and_filtered_by_state() {
    let app = spawn_app_with(
        SimSettings {
            controlled_stages: Some(vec!["Deploy".into(), "Prod".into()]),
            ..SimSettings::default()
        },
        |_| {},
    )
    .await;
    app.open("Deploy").await;
    app.open("Lint").await;
    app.open("Prod").await;
    let all: GateList = app
        .get("/api/v1/gates", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    let stages: Vec<&str> = all.gates.iter().map(|g| g.stage_name.as_str()).collect();
    assert_eq!(stages, vec!["Prod", "Lint", "Deploy"]);
    let pending: GateList = app
        .get("/api/v1/gates?state=pending&limit=1", Some(PIPELINE_TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending.count, 1);
    assert_eq!(pending.gates[0].stage_name, "Prod");
    let resp = app
        .get("/api/v1/gates?state=bogus", Some(PIPELINE_TOKEN))
        .await;
    assert_eq!(
        assert_error(resp, 400, "invalid_field")
            .await
            .error
            .field
            .as_deref(),
        Some("state")
    );
    let resp = app.get("/api/v1/gates?limit=0", Some(PIPELINE_TOKEN)).await;
    assert_eq!(
        assert_error(resp, 400, "invalid_field")
            .await
            .error
            .field
            .as_deref(),
        Some("limit")
    );
}

#[tokio::test]
async fn every_api_call_needs_a_known_bearer_token() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    for path in [
        "/api/v1/gates".to_string(),
        format!("/api/v1/gates/{id}"),
        format!("/api/v1/gates/{id}/wait?timeout=1"),
        format!("/api/v1/gates/{id}/events"),
    ] {
        let resp = app.get(&path, None).await;
        assert!(resp.headers().contains_key("www-authenticate"));
        assert_error(resp, 401, "unauthorized").await;
        assert_error(
            app.get(&path, Some("not-a-known-token-at-all")).await,
            401,
            "unauthorized",
        )
        .await;
        assert_eq!(app.get(&path, Some(OPERATOR_TOKEN)).await.status(), 200);
    }
    let resp = app
        .post_json("/api/v1/gates", None, &gate_body("Other"))
        .await;
    assert_error(resp, 401, "unauthorized").await;
    let resp = app
        .post_json("/api/v1/gates", Some(OPERATOR_TOKEN), &gate_body("Other"))
        .await;
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn stopping_answers_open_long_polls_with_the_current_gate() {
    let app = spawn_app().await;
    let gate = app.open("Deploy").await;
    let id = gate.id;
    let waiter = app.long_poll(id, 120);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.handle.stop().await;
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body.state, GateState::Pending);
    assert_eq!(body.id, id);
}
