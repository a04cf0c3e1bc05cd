//! Creating CRs of each type, the other answer shapes, and standard templates.

use super::*;

#[tokio::test]
async fn each_change_type_is_created_new_with_number_meta_and_fields() {
    let sim = start(SimSettings::default()).await.unwrap();

    // Normal, fields as a JSON body.
    let (status, body) = answer(call(&sim, Method::POST, "change/normal").json(&json!({
        "short_description": TITLE,
        "description": "Build 42",
        "assigned_to": "beth.anglin",
        "start_date": "2030-01-01 08:00:00",
        "number": "CHG9999999",
        "sys_id": "0123",
        "Not A Field": "x",
    })))
    .await;
    assert_eq!(status, 200);
    let normal = &body["result"];
    assert!(normal.is_object(), "a create answers one object: {body}");
    assert_eq!(
        normal["number"],
        json!({"value": "CHG0040001", "display_value": "CHG0040001"})
    );
    let sys_id = text(normal, "sys_id");
    assert_eq!(sys_id.len(), 32);
    assert!(sys_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        normal["type"],
        json!({"value": "normal", "display_value": "Normal"})
    );
    assert_eq!(
        normal["state"],
        json!({"value": "-5", "display_value": "New"})
    );
    assert_eq!(
        normal["active"],
        json!({"value": "true", "display_value": "true"})
    );
    assert_eq!(
        normal["approval"],
        json!({"value": "not requested", "display_value": "Not Yet Requested"})
    );
    assert_eq!(text(normal, "short_description"), TITLE);
    assert_eq!(text(normal, "assigned_to"), "beth.anglin");
    for empty in ["close_code", "close_notes", "assignment_group", "end_date"] {
        assert_eq!(text(normal, empty), "", "{empty}");
    }
    assert_eq!(
        normal["start_date"],
        json!({
            "value": "2030-01-01 08:00:00",
            "display_value": "01/01/2030 12:00:00 AM",
            "display_value_internal": "2030-01-01 00:00:00",
        })
    );
    assert_eq!(
        normal["__meta"]["ignoredFields"],
        json!(["Not A Field", "number", "sys_id"])
    );

    // Emergency, fields as query parameters and an empty JSON body.
    let (status, body) = answer(
        call(&sim, Method::POST, "v1/change/emergency")
            .query(&[("short_description", "Hotfix"), ("sysparm_fields", "")])
            .header("Content-Type", "application/json"),
    )
    .await;
    assert_eq!(status, 200);
    let emergency = &body["result"];
    assert_eq!(text(emergency, "number"), "CHG0040002");
    assert_eq!(text(emergency, "type"), "emergency");
    assert_eq!(text(emergency, "short_description"), "Hotfix");
    assert_eq!(emergency["__meta"]["ignoredFields"], json!([]));

    // Standard, from the template found by name; the template gives the title unless given.
    let (status, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", "name=Jenkins deployment^active=true")]),
    )
    .await;
    assert_eq!(status, 200);
    let template_id = text(&body["result"][0], "sys_id");
    let (status, body) = answer(
        call(
            &sim,
            Method::POST,
            &format!("change/standard/{template_id}"),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let standard = &body["result"];
    assert_eq!(text(standard, "type"), "standard");
    assert_eq!(text(standard, "state"), "-5");
    assert_eq!(text(standard, "short_description"), "Jenkins deployment");

    let changes = sim.chg_changes();
    assert_eq!(changes.len(), 3);
    assert_eq!(changes[2].template.as_deref(), Some("Jenkins deployment"));
    assert_eq!(changes[0].fields["description"], "Build 42");
    assert!(changes.iter().all(|c| c.created_by_api));

    // GET one by sys_id; an unknown one is a 404.
    let (status, body) = answer(call(&sim, Method::GET, &format!("change/{sys_id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(text(&body["result"], "number"), "CHG0040001");
    let (status, body) = answer(call(&sim, Method::GET, "change/0000")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], json!("No Record found"));

    // Bad values are refused.
    for bad in [
        json!({"start_date": "tomorrow"}),
        json!({"short_description": {"value": "x"}}),
    ] {
        let (status, _) = answer(call(&sim, Method::POST, "change/normal").json(&bad)).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(sim.chg_changes().len(), 3);
    sim.stop().await;
}

#[tokio::test]
async fn the_other_answer_shapes_are_available_for_clients_that_must_read_them() {
    let sim = start(SimSettings {
        chg_create_as_array: true,
        chg_numeric_values: true,
        chg_plain_sys_id: true,
        ..SimSettings::default()
    })
    .await
    .unwrap();
    let (status, body) =
        answer(call(&sim, Method::POST, "change/normal").json(&json!({"short_description": "x"})))
            .await;
    assert_eq!(status, 200);
    let record = &body["result"][0];
    assert!(record["sys_id"].is_string());
    assert_eq!(
        record["state"],
        json!({"value": -5, "display_value": "New"})
    );
    assert_eq!(
        record["active"],
        json!({"value": true, "display_value": "true"})
    );
    sim.stop().await;
}

#[tokio::test]
async fn standard_templates_must_exist_and_be_active() {
    let sim = start(SimSettings::default()).await.unwrap();
    let old = sim.chg_add_template("Old deployment", false);
    let lookup = |name: &str| format!("name={name}^active=true");

    let (status, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", lookup("Old deployment"))]),
    )
    .await;
    assert_eq!((status, body), (200, json!({"result": []})));

    let (status, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", "nameSTARTSWITHOld")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["result"][0],
        json!({
            "sys_id": {"value": old.sys_id, "display_value": old.sys_id},
            "name": {"value": "Old deployment", "display_value": "Old deployment"},
            "active": {"value": "false", "display_value": "false"},
            "short_description": {"value": "Old deployment", "display_value": "Old deployment"},
        })
    );

    let (status, body) = answer(
        call(
            &sim,
            Method::POST,
            &format!("change/standard/{}", old.sys_id),
        )
        .json(&json!({})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], json!("failure"));
    let (status, _) =
        answer(call(&sim, Method::POST, "change/standard/ffffffff").json(&json!({}))).await;
    assert_eq!(status, 404);

    sim.chg_set_template_active("Jenkins deployment", false)
        .unwrap();
    let (_, body) = answer(
        call(&sim, Method::GET, "change/standard/template")
            .query(&[("sysparm_query", lookup("Jenkins deployment"))]),
    )
    .await;
    assert_eq!(body, json!({"result": []}));
    assert!(sim.chg_set_template_active("No such", true).is_err());
    assert!(sim.chg_changes().is_empty());
    sim.stop().await;
}
