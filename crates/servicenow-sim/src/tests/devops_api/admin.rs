//! The admin API deciding CRs, and `PUT …/changeInfo` updates.

use super::*;

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
