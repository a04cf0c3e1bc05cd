//! Requests refused the way ServiceNow refuses them, and injected faults.

use super::*;

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
