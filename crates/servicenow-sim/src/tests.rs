//! Scenarios against a running simulator (real HTTP on port 0) and a small callback receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use super::plugin_forms::{plugin_acknowledgement, plugin_registration};
use super::*;

/// The callbacks a [`Receiver`] got: `Authorization` header and JSON body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A pipeline-side endpoint that records every callback it gets.
struct Receiver {
    url: String,
    seen: Seen,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start() -> Receiver {
        let seen: Seen = Arc::default();
        let data = web::Data::new(Arc::clone(&seen));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).default_service(web::to(
                |req: HttpRequest, body: web::Bytes, seen: web::Data<Seen>| async move {
                    let auth = req
                        .headers()
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((auth, body));
                    HttpResponse::Ok().json(json!({"ok": true}))
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Receiver {
            url,
            seen,
            server: handle,
        }
    }

    fn callback_url(&self, token: &str) -> String {
        format!("{}/sn-devops/{token}", self.url)
    }

    fn seen(&self) -> Vec<(Option<String>, Value)> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<(Option<String>, Value)> {
        for _ in 0..200 {
            let seen = self.seen();
            if seen.len() >= count {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {count} callbacks, got {:?}", self.seen());
    }

    async fn stop(self) {
        self.server.stop(false).await;
    }
}

fn api(sim: &SimHandle, version: &str, resource: &str) -> String {
    let version = if version.is_empty() {
        String::new()
    } else {
        format!("{version}/")
    };
    format!(
        "{}/api/sn_devops/{version}devops/orchestration/{resource}",
        sim.url()
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn tool_id() -> String {
    SimSettings::default().tool_id
}

/// The official plugin's registration for `stage` of build `build` of a known pipeline.
fn registration(callback_url: &str, stage: &str, build: u32) -> Value {
    plugin_registration(
        callback_url,
        "https://ci.example.com/job/folder/job/app/",
        stage,
        build,
        None,
    )
}

async fn register(sim: &SimHandle, body: &Value) -> (u16, Value) {
    let response = client()
        .post(api(sim, "v1", "changeControl"))
        .query(&[("toolId", tool_id().as_str()), ("toolType", "jenkins")])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

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

#[tokio::test]
async fn requests_are_refused_like_servicenow_refuses_them() {
    let sim = start(SimSettings::default()).await.unwrap();
    let url = api(&sim, "v1", "changeControl");
    let good = registration("http://127.0.0.1:9/sn-devops/pipeline_y", "Deploy", 3);
    let tool = tool_id();

    // No credentials.
    let r = client()
        .post(&url)
        .query(&[("toolId", &tool)])
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"}, "status": "failure"})
    );

    // A token on v1.
    let r = client()
        .get(&url)
        .query(&[("toolId", tool.as_str()), ("testConnection", "true")])
        .header(
            "Authorization",
            format!("sn_devops.DevOpsToken {tool}:sim-devops-token"),
        )
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Missing Accept on a GET.
    let r = client()
        .get(api(&sim, "v2", "stepMapping"))
        .query(&[
            ("toolId", tool.as_str()),
            ("toolType", "jenkins"),
            ("orchestrationTaskName", "app#Deploy"),
            (
                "orchestrationTaskURL",
                "https%3A%2F%2Fci%2Fjob%2Fapp%23Deploy%2F",
            ),
        ])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Wrong content type, bad JSON, missing or wrong toolId, missing fields.
    let r = client()
        .post(&url)
        .query(&[("toolId", &tool)])
        .basic_auth("admin", Some("admin-password"))
        .header("Content-Type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = client()
        .post(&url)
        .query(&[("toolId", &tool)])
        .basic_auth("admin", Some("admin-password"))
        .header("Content-Type", "application/json; charset=UTF-8")
        .body("{\"callbackURL\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    for query in [vec![], vec![("toolId", "0123")]] {
        let r = client()
            .post(&url)
            .query(&query)
            .basic_auth("admin", Some("admin-password"))
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["result"]["status"], json!("error"));
        assert!(body["result"]["details"]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("toolId"));
    }
    let mut no_callback = good.clone();
    no_callback.as_object_mut().unwrap().remove("callbackURL");
    let (status, _) = register(&sim, &no_callback).await;
    assert_eq!(status, 400);
    let mut forbidden = good.clone();
    forbidden["changeRequestDetails"] = json!({"attributes": {"impact": "1"}});
    let (status, _) = register(&sim, &forbidden).await;
    assert_eq!(status, 400);
    assert!(sim.changes().is_empty());

    // Unknown acknowledgement and changeInfo without buildNumber.
    let r = client()
        .put(format!("{url}/pipeline_unknown"))
        .query(&[("toolId", &tool)])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client()
        .get(api(&sim, "", "changeInfo"))
        .query(&[
            ("toolId", tool.as_str()),
            ("pipelineName", "app"),
            ("stageName", "Deploy"),
        ])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(sim.requests().len(), 11);
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_fail_the_next_calls_then_clear() {
    let sim = start(SimSettings {
        send_notice: false,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    sim.inject_fault(Fault {
        endpoint: "changeControl.post".into(),
        fail_next: 2,
        status: 503,
        latency_ms: 0,
    });
    let body = registration("http://127.0.0.1:9/sn-devops/pipeline_z", "Deploy", 5);
    let (status, error) = register(&sim, &body).await;
    assert_eq!(status, 503);
    assert_eq!(error["status"], json!("failure"));
    assert_eq!(register(&sim, &body).await.0, 503);
    assert_eq!(register(&sim, &body).await.0, 201);
    assert_eq!(sim.changes().len(), 1);

    sim.inject_fault(Fault {
        endpoint: "*".into(),
        fail_next: 1,
        status: 429,
        latency_ms: 0,
    });
    let r = client()
        .get(api(&sim, "v1", "changeControl"))
        .query(&[("toolId", tool_id().as_str()), ("testConnection", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    sim.stop().await;
}

#[tokio::test]
async fn the_admin_api_decides_the_latest_change_and_drops_callbacks_on_request() {
    let receiver = Receiver::start().await;
    let sim = start(SimSettings {
        send_notice: false,
        callback_user: Some("servicenow".into()),
        callback_password: Some("s3cret".into()),
        ..SimSettings::default()
    })
    .await
    .unwrap();
    register(
        &sim,
        &registration(&receiver.callback_url("pipeline_1"), "Deploy", 1),
    )
    .await;
    register(
        &sim,
        &registration(&receiver.callback_url("pipeline_2"), "Deploy", 2),
    )
    .await;

    let admin = format!("{}/__sim", sim.url());
    let r = client()
        .post(format!("{admin}/changes/latest/reject"))
        .body(r#"{"comments":"Too risky"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"number": "CHG0030002", "state": "Closed", "callbackStatus": 200})
    );
    let seen = receiver.wait_for(1).await;
    assert_eq!(
        seen[0].1,
        json!({"result": "rejected", "changeComments": "Too risky"})
    );
    assert_eq!(seen[0].0.as_deref(), Some("Basic c2VydmljZW5vdzpzM2NyZXQ="));

    client()
        .post(format!("{admin}/callbacks"))
        .body(r#"{"drop":true}"#)
        .send()
        .await
        .unwrap();
    let r: Value = client()
        .post(format!("{admin}/changes/CHG0030001/error"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["callbackStatus"], Value::Null);
    assert_eq!(receiver.seen().len(), 1);
    assert_eq!(sim.changes()[0].decision_result.as_deref(), Some("failed"));

    let r = client()
        .post(format!("{admin}/changes/CHG0039999/approve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = client()
        .post(format!("{admin}/changes/CHG0030001/state"))
        .body(r#"{"state":"Scheduled","plannedStartDate":"2030-01-01 08:00:00"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        sim.changes()[0].planned_start_date.as_deref(),
        Some("2030-01-01 08:00:00")
    );
    let r = client()
        .post(format!("{admin}/faults"))
        .body(r#"{"endpoint":"changeInfo.get","failNext":1,"status":500}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let requests: Value = client()
        .get(format!("{admin}/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requests.as_array().unwrap().len(), 2);
    sim.stop().await;
    receiver.stop().await;
}

#[tokio::test]
async fn change_info_updates_take_the_fields_themselves() {
    let sim = start(SimSettings {
        send_notice: false,
        numeric_states: true,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    register(
        &sim,
        &registration("http://127.0.0.1:9/sn-devops/pipeline_u", "Deploy", 9),
    )
    .await;
    let put = |number: &str, body: Value| {
        client()
            .put(api(&sim, "v1", "changeInfo"))
            .query(&[("changeRequestNumber", number)])
            .basic_auth("admin", Some("admin-password"))
            .header("Accept", "application/json")
            .json(&body)
            .send()
    };
    let r = put("CHG0030001", json!({"short_description": "my short desc"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["result"]["status"],
        json!("Success")
    );
    let r = put("CHG0030001", json!({"start_date": "2031-02-05 08:00:00"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = put("CHG0039999", json!({"work_notes": "x"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = put("CHG0030001", json!({})).await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let change = &sim.changes()[0];
    assert_eq!(change.fields["short_description"], json!("my short desc"));
    assert_eq!(
        change.planned_start_date.as_deref(),
        Some("2031-02-05 08:00:00")
    );

    let info: Value = client()
        .get(api(&sim, "v1", "changeInfo"))
        .query(&[
            ("toolId", tool_id().as_str()),
            ("pipelineName", "folder/app"),
            ("stageName", "Deploy"),
            ("buildNumber", "9"),
        ])
        .basic_auth("admin", Some("admin-password"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["result"]["state"], json!("-5"));
    assert_eq!(info["result"]["stateDisplayValue"], json!("New"));
    assert_eq!(
        info["result"]["plannedStartDate"],
        json!("2031-02-05 08:00:00")
    );
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
