//! The demo timer and the change API's admin API.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_timer_implements_new_changes_of_the_change_api() {
    let sim = start(SimSettings {
        auto_approve_after: Some(Duration::from_millis(50)),
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (status, _) = answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
    assert_eq!(status, 200);
    let decoy = sim.chg_create(json!({}), "normal", "Closed").unwrap();
    for _ in 0..200 {
        if sim.chg_change("CHG0040001").unwrap().state == "Implement" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let change = sim.chg_change("CHG0040001").unwrap();
    assert_eq!(change.state, "Implement");
    assert_eq!(change.approval, "approved");
    assert_eq!(sim.chg_change(&decoy.number).unwrap().state, "Closed");
    sim.stop().await;
}

#[tokio::test]
async fn the_admin_api_plants_moves_and_reports() {
    let sim = start(SimSettings::default()).await.unwrap();
    let admin = |path: &str| format!("{}/__sim/chg/{path}", sim.url());
    let client = reqwest::Client::new();

    let (status, planted) = answer(client.post(admin("changes")).json(&json!({
        "type": "normal",
        "state": "Implement",
        "fields": {"short_description": TITLE},
    })))
    .await;
    assert_eq!(status, 200);
    assert_eq!(planted["number"], json!("CHG0040001"));
    assert_eq!(planted["state"], json!("Implement"));
    assert_eq!(planted["approval"], json!("approved"));
    assert_eq!(planted["createdByApi"], json!(false));

    let (status, moved) = answer(client.post(admin("changes/latest/state")).body(
        r#"{"state":"Scheduled","startDate":"2030-01-01 08:00:00","endDate":"2030-01-01 10:00:00"}"#,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(moved["state"], json!("Scheduled"));
    assert_eq!(moved["startDate"], json!("2030-01-01 08:00:00"));
    let (_, moved) = answer(
        client
            .post(admin("changes/CHG0040001/state"))
            .json(&json!({"endDate": "", "approval": "rejected"})),
    )
    .await;
    assert_eq!(moved["endDate"], Value::Null);
    assert_eq!(moved["approval"], json!("rejected"));
    assert_eq!(moved["state"], json!("Scheduled"));
    let (status, _) = answer(
        client
            .post(admin("changes/CHG0040001/state"))
            .json(&json!({"startDate": "soon"})),
    )
    .await;
    assert_eq!(status, 400);

    // The API sees the planted CR, dates as UTC values.
    let sys_id = sim.chg_change("CHG0040001").unwrap().sys_id;
    let (_, body) = answer(call(&sim, Method::GET, &format!("change/{sys_id}"))).await;
    assert_eq!(text(&body["result"], "start_date"), "2030-01-01 08:00:00");
    assert_eq!(text(&body["result"], "end_date"), "");
    answer(
        call(&sim, Method::PATCH, &format!("change/{sys_id}"))
            .json(&json!({"work_notes": "Waiting for the window"})),
    )
    .await;
    let (status, one) = answer(client.get(admin("changes/CHG0040001"))).await;
    assert_eq!(status, 200);
    assert_eq!(one["workNotes"][0]["text"], json!("Waiting for the window"));
    assert_eq!(one["workNotes"][0]["by"], json!("admin"));
    let (_, notes) = answer(client.get(admin("changes/CHG0040001/work-notes"))).await;
    assert_eq!(notes["workNotes"].as_array().unwrap().len(), 1);
    assert_eq!(answer(client.get(admin("changes/CHG0049999"))).await.0, 404);
    let (_, all) = answer(client.get(admin("changes"))).await;
    assert_eq!(all.as_array().unwrap().len(), 1);

    // Templates, roles, OAuth.
    let (_, template) = answer(
        client
            .post(admin("templates"))
            .json(&json!({"name": "Hotfix", "active": true})),
    )
    .await;
    assert_eq!(template["active"], json!(true));
    let (status, _) = answer(
        client
            .post(admin("templates/Hotfix"))
            .json(&json!({"active": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, templates) = answer(client.get(admin("templates"))).await;
    assert_eq!(templates[1]["active"], json!(false));
    let (_, roles) = answer(
        client
            .post(admin("roles"))
            .json(&json!({"roles": ["itil"]})),
    )
    .await;
    assert_eq!(roles, json!({"roles": ["itil"]}));
    assert_eq!(sim.chg_roles(), vec!["itil"]);

    password_grant(&sim).await;
    let (_, status) = answer(client.get(admin("oauth"))).await;
    assert_eq!(status["passwordGrants"], json!(1));
    assert_eq!(status["activeAccessTokens"], json!(1));
    let (_, status) = answer(client.post(admin("oauth/expire-tokens"))).await;
    assert_eq!(status["activeAccessTokens"], json!(0));
    answer(client.post(admin("oauth/revoke-refresh"))).await;
    assert_eq!(answer(client.get(admin("nothing"))).await.0, 404);

    // The sn_devops admin API next door still answers.
    assert_eq!(
        answer(client.get(format!("{}/__sim/changes", sim.url())))
            .await
            .0,
        200
    );
    // Admin calls are not recorded; API calls are.
    assert!(sim.requests().iter().all(|r| !r.path.starts_with("/__sim")));
    assert!(sim.requests().iter().any(|r| r.path == "/oauth_token.do"));
    sim.stop().await;
}
