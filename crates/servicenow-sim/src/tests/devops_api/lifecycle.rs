//! A CR from registration to decision, the demo timer, and the simulator starting and stopping.

use super::*;

#[tokio::test]
async fn a_controlled_stage_gets_a_change_a_notice_and_the_decision() {
    let receiver = Receiver::start().await;
    let sim = start(SimSettings::default()).await.unwrap();
    let callback_url = receiver.callback_url("pipeline_0f6c");
    let reg = registration(&callback_url, "Deploy", 42);

    let (status, body) = register(&sim, &reg).await;
    assert_eq!(status, 201);
    assert_eq!(
        body,
        json!({"result": {"changeControl": true, "status": "Success"}})
    );

    let seen = receiver.wait_for(1).await;
    assert_eq!(seen[0].1["changeRequestId"], json!("CHG0030001"));
    assert_eq!(
        seen[0].1["changeComments"],
        json!("Change request CHG0030001 created")
    );
    let change = &sim.changes()[0];
    assert_eq!(change.state, "New");
    assert_eq!(change.callback_token, "pipeline_0f6c");
    assert_eq!(change.build_number.as_deref(), Some("42"));
    assert_eq!(change.approvers, "Ron Kettering, Christen Mitchell");

    let info: Value = client()
        .get(api(&sim, "v1", "changeInfo"))
        .query(&[
            ("toolId", tool_id().as_str()),
            ("toolType", "jenkins"),
            ("pipelineName", "folder/app"),
            ("stageName", "Deploy"),
            ("buildNumber", "42"),
            ("branchName", ""),
        ])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["result"]["changeFound"], json!(true));
    assert_eq!(info["result"]["status"], json!("Success"));
    assert_eq!(info["result"]["number"], json!("CHG0030001"));
    assert_eq!(info["result"]["state"], json!("New"));
    assert_eq!(info["result"]["stateDisplayValue"], json!("New"));

    assert_eq!(sim.approve("CHG0030001", "LGTM").await.unwrap(), Some(200));
    let seen = receiver.wait_for(2).await;
    assert_eq!(
        seen[1].1,
        json!({"result": "succeeded", "changeComments": "LGTM"})
    );
    assert_eq!(sim.changes()[0].state, "Implement");

    let ack = client()
        .put(format!(
            "{}/pipeline_0f6c",
            api(&sim, "v1", "changeControl")
        ))
        .query(&[("toolId", tool_id().as_str())])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .json(&plugin_acknowledgement(&reg))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status().as_u16(), 200);
    assert_eq!(
        ack.json::<Value>().await.unwrap(),
        json!({"result": {"change_control": true}})
    );
    assert_eq!(sim.changes()[0].acknowledgements, 1);
    assert_eq!(sim.changes()[0].registration_body, reg);
    assert_eq!(
        sim.changes()[0].acknowledgement_bodies,
        vec![plugin_acknowledgement(&reg)]
    );

    let callback: Value = client()
        .get(api(&sim, "v2", "callback"))
        .query(&[
            ("toolId", tool_id().as_str()),
            (
                "taskExecutionURL",
                "https://ci.example.com/job/folder/job/app/42/execution/node/15/wfapi/describe",
            ),
        ])
        .header(
            "Authorization",
            format!("sn_devops.DevOpsToken {}:sim-devops-token", tool_id()),
        )
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        callback,
        json!({"result": {"result": "succeeded", "token": "pipeline_0f6c", "changeComments": "LGTM"}})
    );

    assert_eq!(sim.requests().len(), 4);
    assert_eq!(
        sim.requests()[0].header("Content-Type"),
        Some("application/json")
    );
    sim.stop().await;
    receiver.stop().await;
}

#[tokio::test]
async fn stages_outside_change_control_get_no_change() {
    let sim = start(SimSettings {
        controlled_stages: Some(vec!["Deploy".into()]),
        send_notice: false,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (status, body) = register(
        &sim,
        &registration("http://127.0.0.1:9/sn-devops/pipeline_x", "Test", 1),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body["result"]["changeControl"], json!(false));
    assert!(sim.changes().is_empty());

    let check = |name: &'static str| {
        client()
            .get(api(&sim, "", "changeControl"))
            .query(&[
                ("toolId", tool_id()),
                ("toolType", "jenkins".into()),
                ("orchestrationTaskName", name.into()),
            ])
            .basic_auth("admin", Some("admin-password"))
            .header("Accept", "application/json")
            .send()
    };
    let body: Value = check("app#Deploy").await.unwrap().json().await.unwrap();
    assert_eq!(body["result"]["changeControl"], json!(true));
    let body: Value = check("app#Test").await.unwrap().json().await.unwrap();
    assert_eq!(body, json!({"result": {"changeControl": false}}));
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_timer_approves_new_changes() {
    let receiver = Receiver::start().await;
    let sim = start(SimSettings {
        auto_approve_after: Some(Duration::from_millis(50)),
        ..SimSettings::default()
    })
    .await
    .unwrap();
    register(
        &sim,
        &registration(&receiver.callback_url("pipeline_demo"), "Deploy", 1),
    )
    .await;
    let seen = receiver.wait_for(2).await;
    assert_eq!(seen[1].1["result"], json!("succeeded"));
    assert_eq!(sim.changes()[0].state, "Implement");
    assert_eq!(sim.callbacks().len(), 2);
    sim.stop().await;
    receiver.stop().await;
}

#[tokio::test]
async fn stopping_is_quick_and_frees_the_port() {
    let sim = start(SimSettings::default()).await.unwrap();
    let addr = sim.addr();
    // Leave a keep-alive connection open.
    let c = client();
    c.get(format!("{}/__sim/changes", sim.url()))
        .send()
        .await
        .unwrap();
    let began = std::time::Instant::now();
    sim.stop().await;
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "{:?}",
        began.elapsed()
    );
    assert!(std::net::TcpListener::bind(addr).is_ok());
}

#[test]
fn recorded_requests_decode_their_query_once() {
    let request = RecordedRequest {
        method: "GET".into(),
        path: "/api/sn_devops/v1/devops/orchestration/stepMapping".into(),
        query: "toolId=abc&orchestrationTaskURL=https%253A%252F%252Fci%252Fjob%252Fa%2520b%252F&name=a+b"
            .into(),
        headers: vec![("accept".into(), "application/json".into())],
        body: "{\"a\":1}".into(),
    };
    assert_eq!(
        request.query_pairs(),
        vec![
            ("toolId".to_string(), "abc".to_string()),
            (
                "orchestrationTaskURL".to_string(),
                "https%3A%2F%2Fci%2Fjob%2Fa%20b%2F".to_string()
            ),
            ("name".to_string(), "a b".to_string()),
        ]
    );
    assert_eq!(request.header("Accept"), Some("application/json"));
    assert_eq!(request.json(), Some(json!({"a": 1})));
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = start(SimSettings::default()).await.unwrap();
    let addr = sim.addr();
    drop(sim);
    for _ in 0..100 {
        if std::net::TcpListener::bind(addr).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("port still bound");
}
