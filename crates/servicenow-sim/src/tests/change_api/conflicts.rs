//! Conflict checking (`POST`, `GET`, `DELETE /change/{sys_id}/conflict`) and the admin API
//! that plants conflicts.

use super::*;

/// A CR made through the API with a configuration item: (number, sys_id).
async fn change_with_ci(sim: &SimHandle) -> (String, String) {
    let (status, body) =
        answer(call(sim, Method::POST, "change/normal").json(
            &json!({"short_description": TITLE, "cmdb_ci": "b0c4030ac0a800090152e7a4564ca36c"}),
        ))
        .await;
    assert_eq!(status, 200);
    (
        text(&body["result"], "number"),
        text(&body["result"], "sys_id"),
    )
}

fn conflict_path(sys_id: &str) -> String {
    format!("change/{sys_id}/conflict")
}

fn is_sys_id(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn not_in_window(number: &str) -> ChgConflict {
    ChgConflict {
        change_number: number.to_string(),
        kind: "not_in_maintenance_window".into(),
        kind_display: "Not In Maintenance Window".into(),
        schedule: None,
    }
}

fn blackout(number: &str, schedule: &str) -> ChgConflict {
    ChgConflict {
        change_number: number.to_string(),
        kind: "blackout".into(),
        kind_display: "Blackout".into(),
        schedule: Some(schedule.into()),
    }
}

fn not_run() -> Value {
    json!({"result": {
        "status": "Not run",
        "last_run": "",
        "record_count": "0",
        "job_status": "0",
        "conflicts": [],
    }})
}

#[tokio::test]
async fn a_check_reports_the_conflicts_planted_before_it_ran() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    sim.chg_add_conflict(&number, not_in_window(&number))
        .unwrap();
    sim.chg_add_conflict(&number, blackout(&number, "Year-end freeze"))
        .unwrap();

    let before = crate::model::now();
    let (status, started) = answer(call(&sim, Method::POST, &conflict_path(&sys_id))).await;
    let after = crate::model::now();
    assert_eq!(status, 200, "{started}");
    assert!(is_sys_id(&started["result"]), "{started}");
    assert_ne!(started["result"], json!(sys_id));
    assert_eq!(sim.chg_conflict_checks(&number), 1);

    let (status, body) = answer(call(&sim, Method::GET, &conflict_path(&sys_id))).await;
    assert_eq!(status, 200);
    let result = &body["result"];
    let last_run = result["last_run"].as_str().unwrap();
    assert!(
        before.as_str() <= last_run && last_run <= after.as_str(),
        "{last_run}"
    );
    let schedule_id = result["conflicts"][1]["schedule"]["value"].clone();
    assert!(is_sys_id(&schedule_id), "{body}");
    assert_eq!(
        body,
        json!({"result": {
            "status": "Conflict",
            "last_run": last_run,
            "record_count": "1",
            "job_status": "2",
            "conflicts": [
                {
                    "change": {"display_value": number, "value": sys_id},
                    "type": {"display_value": "Not In Maintenance Window", "value": "not_in_maintenance_window"},
                },
                {
                    "change": {"display_value": number, "value": sys_id},
                    "type": {"display_value": "Blackout", "value": "blackout"},
                    "schedule": {"display_value": "Year-end freeze", "value": schedule_id},
                },
            ],
        }})
    );
    // The versioned path is the same endpoint.
    let (status, versioned) = answer(call(
        &sim,
        Method::GET,
        &format!("v1/{}", conflict_path(&sys_id)),
    ))
    .await;
    assert_eq!((status, &versioned), (200, &body));
    sim.stop().await;
}

#[tokio::test]
async fn a_check_without_conflicts_still_says_conflict_and_lists_none() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    let (status, _) = answer(call(&sim, Method::POST, &conflict_path(&sys_id))).await;
    assert_eq!(status, 200);
    let (_, body) = answer(call(&sim, Method::GET, &conflict_path(&sys_id))).await;
    assert_eq!(body["result"]["status"], json!("Conflict"));
    assert_eq!(body["result"]["job_status"], json!("2"));
    assert_eq!(body["result"]["conflicts"], json!([]));
    assert_eq!(sim.chg_conflict_checks(&number), 1);
    sim.stop().await;
}

#[tokio::test]
async fn before_any_check_the_status_is_not_run() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    // Planted conflicts are not results: no check ran.
    sim.chg_add_conflict(&number, not_in_window(&number))
        .unwrap();
    assert_eq!(
        answer(call(&sim, Method::GET, &conflict_path(&sys_id))).await,
        (200, not_run())
    );
    assert_eq!(sim.chg_conflict_checks(&number), 0);
    sim.stop().await;
}

#[tokio::test]
async fn a_change_without_a_configuration_item_cannot_start_a_check() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (_, none) = answer(call(&sim, Method::POST, "change/normal").json(&json!({}))).await;
    let (_, empty) =
        answer(call(&sim, Method::POST, "change/normal").json(&json!({"cmdb_ci": " "}))).await;
    let planted = sim
        .chg_create(
            json!({"short_description": "planted"}),
            "normal",
            "Scheduled",
        )
        .unwrap();
    for (number, sys_id) in [
        (
            text(&none["result"], "number"),
            text(&none["result"], "sys_id"),
        ),
        (
            text(&empty["result"], "number"),
            text(&empty["result"], "sys_id"),
        ),
        (planted.number, planted.sys_id),
    ] {
        let (status, body) = answer(call(&sim, Method::POST, &conflict_path(&sys_id))).await;
        assert_eq!(status, 400, "{number}");
        assert_eq!(
            body["error"]["message"],
            json!("Conflict checking was unable to start")
        );
        assert!(body["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("cmdb_ci"));
        assert_eq!(body["status"], json!("failure"));
        assert_eq!(sim.chg_conflict_checks(&number), 0, "{number}");
        assert_eq!(
            answer(call(&sim, Method::GET, &conflict_path(&sys_id))).await,
            (200, not_run()),
            "{number}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn an_unknown_change_is_not_found_and_other_methods_are_not_allowed() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (_, sys_id) = change_with_ci(&sim).await;
    let unknown = conflict_path("0f4ac6c4b750230096c3e4f6ee11a9fe");
    for method in [Method::POST, Method::GET, Method::DELETE] {
        let (status, body) = answer(call(&sim, method.clone(), &unknown)).await;
        assert_eq!(status, 404, "{method}");
        assert_eq!(
            body["error"]["message"],
            json!("No Record found"),
            "{method}"
        );
        assert_eq!(body["status"], json!("failure"), "{method}");
    }
    for method in [Method::PUT, Method::PATCH] {
        let (status, body) =
            answer(call(&sim, method.clone(), &conflict_path(&sys_id)).json(&json!({}))).await;
        assert_eq!(status, 405, "{method}");
        assert_eq!(body["error"]["message"], json!("Method not Supported"));
    }
    assert_eq!(
        answer(call(
            &sim,
            Method::GET,
            &format!("change/{sys_id}/conflict/x")
        ))
        .await
        .0,
        400
    );
    sim.stop().await;
}

#[tokio::test]
async fn delete_answers_without_a_body_and_keeps_the_last_results() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    sim.chg_add_conflict(&number, not_in_window(&number))
        .unwrap();
    answer(call(&sim, Method::POST, &conflict_path(&sys_id))).await;
    let response = call(&sim, Method::DELETE, &conflict_path(&sys_id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.bytes().await.unwrap().len(), 0);
    let (_, body) = answer(call(&sim, Method::GET, &conflict_path(&sys_id))).await;
    assert_eq!(body["result"]["status"], json!("Conflict"));
    assert_eq!(body["result"]["conflicts"].as_array().unwrap().len(), 1);
    sim.stop().await;
}

#[tokio::test]
async fn the_post_needs_accept_but_neither_a_body_nor_a_content_type() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    let path = conflict_path(&sys_id);
    let (status, _) = answer(call_without_accept(&sim, Method::POST, &path)).await;
    assert_eq!(status, 400);
    let (status, _) = answer(call_accepting(&sim, Method::GET, &path, "application/xml")).await;
    assert_eq!(status, 406);
    assert_eq!(sim.chg_conflict_checks(&number), 0);
    // No body and no Content-Type, as ServiceNow's example sends it.
    let request = call(&sim, Method::POST, &path).build().unwrap();
    assert!(request.headers().get("content-type").is_none());
    assert!(request.body().is_none());
    let (status, body) = answer(call(&sim, Method::POST, &path)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sim.chg_conflict_checks(&number), 1);
    sim.stop().await;
}

#[tokio::test]
async fn a_read_role_may_read_the_status_but_only_a_write_role_may_start_or_cancel() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    let path = conflict_path(&sys_id);
    // (roles, may GET, may POST and DELETE)
    let cases: [(&[&str], bool, bool); 4] = [
        (&["sn_change_read"], true, false),
        (&["sn_change_write"], false, true),
        (&["itil"], true, true),
        (&[], false, false),
    ];
    let mut checks = 0;
    for (roles, read, write) in cases {
        sim.chg_set_roles(roles.iter().copied());
        let expect = |allowed: bool| if allowed { 200 } else { 403 };
        let (status, body) = answer(call(&sim, Method::GET, &path)).await;
        assert_eq!(status, expect(read), "{roles:?} GET");
        if !read {
            assert_eq!(body["error"]["message"], json!("User Not Authorized"));
        }
        let (status, body) = answer(call(&sim, Method::POST, &path)).await;
        assert_eq!(status, expect(write), "{roles:?} POST");
        if write {
            checks += 1;
        } else {
            assert_eq!(body["error"]["message"], json!("User Not Authorized"));
            assert_eq!(body["status"], json!("failure"));
        }
        let (status, _) = answer(call(&sim, Method::DELETE, &path)).await;
        assert_eq!(status, expect(write), "{roles:?} DELETE");
        assert_eq!(sim.chg_conflict_checks(&number), checks, "{roles:?}");
    }
    sim.stop().await;
}

#[tokio::test]
async fn conflicts_planted_after_a_check_appear_only_after_the_next_check() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    let (other, _) = change_with_ci(&sim).await;
    let path = conflict_path(&sys_id);
    let listed = |body: &Value| body["result"]["conflicts"].as_array().unwrap().clone();

    answer(call(&sim, Method::POST, &path)).await;
    sim.chg_add_conflict(&number, blackout(&other, "Freeze"))
        .unwrap();
    let (_, body) = answer(call(&sim, Method::GET, &path)).await;
    assert_eq!(listed(&body), Vec::<Value>::new());

    answer(call(&sim, Method::POST, &path)).await;
    let (_, body) = answer(call(&sim, Method::GET, &path)).await;
    let conflicts = listed(&body);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0]["change"]["display_value"], json!(other));
    assert_eq!(conflicts[0]["schedule"]["display_value"], json!("Freeze"));

    // Clearing changes the next check, not the last one's results.
    sim.chg_clear_conflicts(&number).unwrap();
    let (_, body) = answer(call(&sim, Method::GET, &path)).await;
    assert_eq!(listed(&body).len(), 1);
    answer(call(&sim, Method::POST, &path)).await;
    let (_, body) = answer(call(&sim, Method::GET, &path)).await;
    assert_eq!(listed(&body), Vec::<Value>::new());
    assert_eq!(sim.chg_conflict_checks(&number), 3);
    assert_eq!(sim.chg_conflict_checks(&other), 0);
    sim.stop().await;
}

#[tokio::test]
async fn injected_faults_fail_the_conflict_calls_before_they_run() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    let path = conflict_path(&sys_id);
    for (endpoint, method, status) in [
        ("change.conflict.post", Method::POST, 503),
        ("change.conflict.get", Method::GET, 429),
        ("change.conflict.delete", Method::DELETE, 500),
    ] {
        sim.inject_fault(Fault {
            endpoint: endpoint.into(),
            fail_next: 1,
            status,
            latency_ms: 0,
        });
        let (got, body) = answer(call(&sim, method.clone(), &path)).await;
        assert_eq!(got, status, "{endpoint}");
        assert_eq!(body["status"], json!("failure"), "{endpoint}");
        assert_eq!(answer(call(&sim, method, &path)).await.0, 200, "{endpoint}");
    }
    assert_eq!(sim.chg_conflict_checks(&number), 1);
    sim.stop().await;
}

#[tokio::test]
async fn the_admin_api_plants_lists_and_clears_conflicts() {
    let sim = start(SimSettings::default()).await.unwrap();
    let (number, sys_id) = change_with_ci(&sim).await;
    let admin = format!("{}/__sim/chg/changes/{number}/conflicts", sim.url());
    let client = reqwest::Client::new();
    let planted = json!({
        "changeNumber": number,
        "kind": "blackout",
        "kindDisplay": "Blackout",
        "schedule": "Year-end freeze",
    });

    let (status, body) = answer(client.post(&admin).json(&planted)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"conflicts": [planted], "checks": 0}));
    answer(call(&sim, Method::POST, &conflict_path(&sys_id))).await;
    let (_, body) = answer(client.get(&admin)).await;
    assert_eq!(body["checks"], json!(1));
    let (status, body) = answer(client.delete(&admin)).await;
    assert_eq!((status, body), (200, json!({"conflicts": [], "checks": 1})));

    let refused = [
        (client.post(&admin).body("{"), 400),
        (
            client.post(&admin).json(&json!({"changeNumber": number})),
            400,
        ),
        (
            client.post(&admin).json(&json!({
                "changeNumber": "CHG0049999", "kind": "blackout", "kindDisplay": "Blackout",
            })),
            404,
        ),
        (
            client
                .post(format!(
                    "{}/__sim/chg/changes/CHG0049999/conflicts",
                    sim.url()
                ))
                .json(&planted),
            404,
        ),
        (
            client.get(format!(
                "{}/__sim/chg/changes/CHG0049999/conflicts",
                sim.url()
            )),
            404,
        ),
    ];
    for (request, expected) in refused {
        assert_eq!(answer(request).await.0, expected);
    }
    assert!(sim
        .chg_add_conflict("CHG0049999", not_in_window(&number))
        .is_err());
    assert!(sim.chg_clear_conflicts("CHG0049999").is_err());
    assert_eq!(sim.chg_conflict_checks("CHG0049999"), 0);
    sim.stop().await;
}
