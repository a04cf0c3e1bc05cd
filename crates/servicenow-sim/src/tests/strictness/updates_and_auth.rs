//! changeInfo updates, authorization per API version, and unknown records.

use super::*;

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
    // The `data` wrapper of the API reference's table, holding a JSON string: nothing changes.
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
    // The fields object itself, as the plugin and the API reference's example send it.
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
