//! Registrations and acknowledgements must be the plugin's own bodies.

use super::*;

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
